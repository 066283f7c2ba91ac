// Part of the ISA-generic softmax family (softmax_family.h): the Ops interface that
// every header of the family relies on, the shared macros, Kind, and the row passes
// (rows_max ... rows_softmax, rows_log_softmax, rows_reduce: R rows in lockstep).
// The first header of the family: it relies only on the including ISA file.
//
// An Ops class T (one per storage dtype) provides
//   S, C        storage and compute types (uint16_t/float, float/float, double/double)
//   V, W        the vector of C and its lane count
//   kStoreExp   true when S == C: softmax stores exp(x - max) and rescales in place;
//               false (float16): the exps wait in a float stack buffer (rows up to
//               kExpBuffer) or are recomputed in the write pass
//   kPanelV     vectors per panel group (register budget)
//   Acc         per-lane accumulator of exp values: double lanes for float data,
//               compensated (Neumaier) double lanes for float64
//   load(p) / store(p, v)         W elements
//   load_n(p, k) / store_n(p,k,v) the first k (1 <= k <= W) elements; the other lanes
//                                  load as -inf and are never written. The same vector
//                                  code as full vectors: a lane's bits never depend
//                                  on its position (determinism).
//   loadc(const C*) / storec(C*, v)  W compute-type values (per-lane panel state)
//   set1, max, sub, mul, div (IEEE, as the scalar /), exp (full range), exp_le0 (for x <= 0 or NaN: x - max in the
//   row kernels, where max is the row's or the merged max), hmax (horizontal max;
//   NaN semantics may vary: callers never rely on max for NaN detection, see below)
//   acc_zero, acc_add(a, v), acc_add2(a, v0, v1) (two vectors into one accumulator)
//   and acc_add4(a[4], v0..v3) (four vectors into up to four accumulators): float
//   data may pre-add them pairwise in float (one or two roundings of relative 2^-24
//   on positive terms), acc_merge(a, b),
//   acc_total(a) -> SumExp {sum, rest}: the sum, and the sum minus 1 (the max's own
//                   term set apart) accurate to the last bits of the sum's low part,
//   acc_parts(a, double* s, double* c)  the W per-lane sums and their compensations
//                   (0 where the accumulator keeps none), and acc_from_parts(s, c)
//                   its inverse: the panels keep per-lane sums in memory
//   s_is_nan(S)
// and the ISA file defines F64 (the float64 Ops) before including the family: the
// panels rescale their per-lane double sums with its vector exp.
//
// Row plan (n <= kBlock): pass 1 max; pass 2 e = exp(x - max) stored in y and summed
// in double lanes; pass 3 y *= 1 / sum. log_softmax: max, sum (no store), then
// y = (x - max) - log1p(rest), rest = sum - 1 (docs/contract.md §5: the largest term set apart, so
// a dominant entry keeps full precision). NaN handling: a max pass cannot see NaN
// reliably (vector max drops it depending on operand order), but exp(NaN - max) = NaN
// makes the sum NaN whenever the max is finite, and a non-finite max sends the row to
// the careful path (special_row), which scans for NaN. Special rows are written with
// the canonical NaN / 0 / -inf, never by arithmetic on NaNs (whose payload would
// depend on operand order), so their bits are deterministic too.

enum class Kind { softmax, log_softmax, lse };

// The per-vector loops of a panel group (kV <= 4) must be unrolled before GCC's
// scalar replacement, or the per-lane state arrays live on the stack (store-forward
// latency on every row).
#if defined(__clang__)
#define FASTSOFTMAX_UNROLL _Pragma("unroll")
#elif defined(__GNUC__)
#define FASTSOFTMAX_UNROLL _Pragma("GCC unroll 4")
#else
#define FASTSOFTMAX_UNROLL
#endif

// The passes of a row are inlined into the row kernel: as calls they would pass their
// per-row state through memory and reload every constant, on a latency-bound path.
#if defined(__GNUC__)
#define FASTSOFTMAX_PASS inline __attribute__((always_inline))
#else
#define FASTSOFTMAX_PASS inline
#endif

using simd::SumExp;

// log1p of a row's rest (see simd_common.h): inline for results that end in float32.
template <class T>
inline double log1p_rest(double r) {
  if constexpr (std::is_same_v<typename T::C, float>)
    return simd::log1p_sum_f32x1(r);
  else
    return simd::log1p_sum(r);
}
// log1p_rest of four rows (float32 results: one vector log, same bits as one by one).
template <class T>
inline void log1p_rest4(const double* r, double* out) {
  if constexpr (std::is_same_v<typename T::C, float>) {
    simd::log1p_sum_f32x4(r, out);
  } else {
    for (int i = 0; i < 4; ++i) out[i] = simd::log1p_sum(r[i]);
  }
}

template <class T>
constexpr typename T::C kInfC = std::numeric_limits<typename T::C>::infinity();
template <class T>
constexpr typename T::C kNaNC = std::numeric_limits<typename T::C>::quiet_NaN();

// The row pointers, copied into the pass's own array: a SIMD store (a may_alias
// vector type) could otherwise alias the caller's array of pointers, and the compiler
// would reload y[r] (and x[r]) before every store and load.
#define FASTSOFTMAX_LOCAL_ROWS(type, name)          \
  type name[R];                                     \
  FASTSOFTMAX_UNROLL                                \
  for (int r_ = 0; r_ < R; ++r_) name[r_] = name##_in[r_]

// ---- rows ------------------------------------------------------------------------
// Every row function below runs R rows in lockstep (R = 1; or 2 or 4 for short rows of
// a batch, whose passes are latency-bound: independent chains fill the pipeline; see
// grouped_rows).
// The per-row arithmetic is the same whatever R — same accumulators, same order — so
// a row's bits never depend on the batch around it.

// v[r] = a vector of c[r], for each of the R rows.
template <class T, int R>
FASTSOFTMAX_PASS void set1_rows(const typename T::C* c, typename T::V* v) {
  FASTSOFTMAX_UNROLL
  for (int r = 0; r < R; ++r) v[r] = T::set1(c[r]);
}

// Max of each row (exact when the row holds no NaN). Four accumulators hide latency.
template <class T, int R>
FASTSOFTMAX_PASS void rows_max(const typename T::S* const* x, int64_t n, typename T::C* m) {
  using V = typename T::V;
  constexpr int64_t W = T::W;
  V a[R][4];
  FASTSOFTMAX_UNROLL
  for (int r = 0; r < R; ++r) a[r][0] = a[r][1] = a[r][2] = a[r][3] = T::set1(-kInfC<T>);
  int64_t i = 0;
  for (; i + 4 * W <= n; i += 4 * W) {
    FASTSOFTMAX_UNROLL
    for (int r = 0; r < R; ++r) {
      a[r][0] = T::max(a[r][0], T::load(x[r] + i));
      a[r][1] = T::max(a[r][1], T::load(x[r] + i + W));
      a[r][2] = T::max(a[r][2], T::load(x[r] + i + 2 * W));
      a[r][3] = T::max(a[r][3], T::load(x[r] + i + 3 * W));
    }
  }
  for (; i + W <= n; i += W) {
    FASTSOFTMAX_UNROLL
    for (int r = 0; r < R; ++r) a[r][0] = T::max(a[r][0], T::load(x[r] + i));
  }
  if (i < n) {
    FASTSOFTMAX_UNROLL
    for (int r = 0; r < R; ++r) a[r][0] = T::max(a[r][0], T::load_n(x[r] + i, n - i));
  }
  FASTSOFTMAX_UNROLL
  for (int r = 0; r < R; ++r)
    m[r] = T::hmax(T::max(T::max(a[r][0], a[r][1]), T::max(a[r][2], a[r][3])));
}

// Ops whose exp_le0_nf skips exp_le0's clamp and flush for arguments known to be
// >= T::kExpLe0NfMin (the same bits there): the row kernels take it for rows whose
// range allows it, learnt from the max pass, which then also takes the min.
template <class T, class = void>
struct HasExpNf : std::false_type {};
template <class T>
struct HasExpNf<T, std::void_t<decltype(T::kExpLe0NfMin)>> : std::true_type {};

// (kNf on Ops without it is exp_le0: rows_max_nf never says nf there)
template <class T, bool kNf>
FASTSOFTMAX_PASS typename T::V exp_le0_maybe_nf(typename T::V d) {
  if constexpr (kNf && HasExpNf<T>::value)
    return T::exp_le0_nf(d);
  else
    return T::exp_le0(d);
}

// rows_max, and whether every x - max (max finite) is >= kExpLe0NfMin: the min over
// whole vectors (a tail is covered by the row's last W elements, which overlap the
// vectors before it; a row shorter than W answers false). Two accumulators of each.
template <class T, int R>
FASTSOFTMAX_PASS void rows_max_nf(const typename T::S* const* x, int64_t n, typename T::C* m,
                                  bool& nf, typename T::C* mins = nullptr) {
  using V = typename T::V;
  using C = typename T::C;
  constexpr int64_t W = T::W;
  if (!HasExpNf<T>::value || n < W) {  // (Ops without the exp: rows_max, nf false)
    rows_max<T, R>(x, n, m);
    nf = false;
    if (mins)
      for (int r = 0; r < R; ++r) mins[r] = -kInfC<T>;
    return;
  }
  if constexpr (HasExpNf<T>::value) {
  V a[R][2], b[R][2];
  FASTSOFTMAX_UNROLL
  for (int r = 0; r < R; ++r) {
    a[r][0] = a[r][1] = T::set1(-kInfC<T>);
    b[r][0] = b[r][1] = T::set1(kInfC<T>);
  }
  int64_t i = 0;
  for (; i + 2 * W <= n; i += 2 * W) {
    FASTSOFTMAX_UNROLL
    for (int r = 0; r < R; ++r) {
      const V v0 = T::load(x[r] + i), v1 = T::load(x[r] + i + W);
      a[r][0] = T::max(a[r][0], v0);
      a[r][1] = T::max(a[r][1], v1);
      b[r][0] = T::min(b[r][0], v0);
      b[r][1] = T::min(b[r][1], v1);
    }
  }
  if (i < n) {  // the rest: one or two vectors, the last ending at n
    FASTSOFTMAX_UNROLL
    for (int r = 0; r < R; ++r) {
      if (i + W < n) {
        const V v = T::load(x[r] + i);
        a[r][0] = T::max(a[r][0], v);
        b[r][0] = T::min(b[r][0], v);
      }
      const V v = T::load(x[r] + n - W);
      a[r][1] = T::max(a[r][1], v);
      b[r][1] = T::min(b[r][1], v);
    }
  }
  nf = true;
  FASTSOFTMAX_UNROLL
  for (int r = 0; r < R; ++r) {
    m[r] = T::hmax(T::max(a[r][0], a[r][1]));
    // min = -max(-v): negation is exact
    const V zero = T::set1(C(0));
    const C mn = -T::hmax(T::max(T::sub(zero, b[r][0]), T::sub(zero, b[r][1])));
    nf &= C(mn - m[r]) >= T::kExpLe0NfMin;  // false for a NaN or non-finite max
    if (mins) mins[r] = mn;
  }
  }
}


// Ops whose acc_add4 adds into a[0] alone (the float sets: their four vectors are
// summed in float first) say so with kOneAcc = true: the other three accumulators
// stay +0, and merging them (six vector adds a row, which GCC cannot drop: x + 0 is
// not x for x = -0) is skipped. Same bits: a[0]'s lanes are >= +0.
template <class T, class = void>
struct OneAcc : std::false_type {};
template <class T>
struct OneAcc<T, std::void_t<decltype(T::kOneAcc)>> : std::bool_constant<T::kOneAcc> {};

// Sum over each row of e_i = exp(x_i - m) (m finite), optionally storing e_i to y.
// Four accumulators (acc_add4), merged in a fixed order; the tail runs the same
// vector code (its masked lanes load -inf, whose exp is +0).
//
// kPrefetch (long rows, R = 1): also prefetch the next row, x[n, 2n), into L2 while
// this compute-bound pass runs: rows of a batch (and blocks of a long row) are
// usually adjacent, and the next max pass then streams from L2 instead of waiting on
// DRAM. Without kStore, a non-null y is prefetched for writing (log_softmax's last
// pass); with kStore, the next row's y (its stores then find their lines in cache
// instead of stalling on read-for-ownership). A prefetch is only a hint: it never
// faults or changes a result, even past the end of the array.
constexpr int64_t kPrefetchRow = 1024;  // bytes

//
// D = T::C (float16 rows): kStore writes the exps to a compute-type buffer padded to a
// whole vector, instead of y.
//
// kPrefetchY = false: y is a buffer that the next row reuses (nothing to fetch there).
//
// kStoreDiff (with !kStore): store d = x - m to y instead (log_softmax's short rows:
// their write pass then finishes y in place from L1, and y's lines are fetched for
// ownership while this pass computes, not while the light write pass runs).
template <class T, int R, bool kStore, bool kPrefetch, class D = typename T::S,
          bool kPrefetchY = true, bool kStoreDiff = false, bool kNf = false>
FASTSOFTMAX_PASS void rows_sum_exp(const typename T::S* const* x_in, D* const* y_in, int64_t n,
                                   const typename T::C* m, SumExp* out, int64_t ahead = 0) {
  FASTSOFTMAX_LOCAL_ROWS(const typename T::S*, x);
  FASTSOFTMAX_LOCAL_ROWS(D*, y);
  // kPrefetch: how far ahead, in elements (0: n, the next row)
  const uintptr_t ahead_bytes = uintptr_t(ahead > 0 ? ahead : n) * sizeof(*x[0]);
  constexpr bool kToY = std::is_same_v<D, typename T::S>;
  using V = typename T::V;
  using Acc = typename T::Acc;
  constexpr int64_t W = T::W;
  V vm[R];
  Acc a[R][4];
  FASTSOFTMAX_UNROLL
  for (int r = 0; r < R; ++r) {
    vm[r] = T::set1(m[r]);
    a[r][0] = a[r][1] = a[r][2] = a[r][3] = T::acc_zero();
  }
  // kNf: every x - m is >= kExpLe0NfMin (rows_max_nf); the tail's padding lanes
  // (-inf) still need exp_le0's flush
  constexpr auto exp_main = exp_le0_maybe_nf<T, kNf>;
  int64_t i = 0;
  for (; i + 4 * W <= n; i += 4 * W) {
    if constexpr (kPrefetch) {
      // integer arithmetic: the address may lie past the end of the array
      const uintptr_t next = reinterpret_cast<uintptr_t>(x[0] + i) + ahead_bytes;
      for (uintptr_t b = 0; b < 4 * W * sizeof(*x[0]); b += 64)
        __builtin_prefetch(reinterpret_cast<const void*>(next + b), 0, 2);
      if constexpr (!kToY || !kPrefetchY) {
      } else if constexpr (!kStore) {
        if (y[0])
          for (uintptr_t b = 0; b < 4 * W * sizeof(*x[0]); b += 64)
            __builtin_prefetch(reinterpret_cast<const char*>(y[0] + i) + b, 1, 2);
      } else {  // the next row's output, so that its stores here find their lines
        const uintptr_t ynext = reinterpret_cast<uintptr_t>(y[0] + i) + ahead_bytes;
        for (uintptr_t b = 0; b < 4 * W * sizeof(*x[0]); b += 64)
          __builtin_prefetch(reinterpret_cast<const void*>(ynext + b), 1, 2);
      }
    }
    FASTSOFTMAX_UNROLL
    for (int r = 0; r < R; ++r) {
      const V d0 = T::sub(T::load(x[r] + i), vm[r]);
      const V d1 = T::sub(T::load(x[r] + i + W), vm[r]);
      const V d2 = T::sub(T::load(x[r] + i + 2 * W), vm[r]);
      const V d3 = T::sub(T::load(x[r] + i + 3 * W), vm[r]);
      if constexpr (kStoreDiff) {
        T::store(y[r] + i, d0);
        T::store(y[r] + i + W, d1);
        T::store(y[r] + i + 2 * W, d2);
        T::store(y[r] + i + 3 * W, d3);
      }
      const V e0 = exp_main(d0), e1 = exp_main(d1), e2 = exp_main(d2), e3 = exp_main(d3);
      if constexpr (kStore && kToY) {
        T::store(y[r] + i, e0);
        T::store(y[r] + i + W, e1);
        T::store(y[r] + i + 2 * W, e2);
        T::store(y[r] + i + 3 * W, e3);
      } else if constexpr (kStore) {
        T::storec(y[r] + i, e0);
        T::storec(y[r] + i + W, e1);
        T::storec(y[r] + i + 2 * W, e2);
        T::storec(y[r] + i + 3 * W, e3);
      }
      T::acc_add4(a[r], e0, e1, e2, e3);
    }
  }
  for (; i + W <= n; i += W) {
    FASTSOFTMAX_UNROLL
    for (int r = 0; r < R; ++r) {
      const V d = T::sub(T::load(x[r] + i), vm[r]);
      if constexpr (kStoreDiff) T::store(y[r] + i, d);
      const V e = exp_main(d);
      if constexpr (kStore && kToY)
        T::store(y[r] + i, e);
      else if constexpr (kStore)
        T::storec(y[r] + i, e);
      T::acc_add(a[r][0], e);
    }
  }
  if (i < n) {
    FASTSOFTMAX_UNROLL
    for (int r = 0; r < R; ++r) {
      const V d = T::sub(T::load_n(x[r] + i, n - i), vm[r]);
      if constexpr (kStoreDiff) T::store_n(y[r] + i, n - i, d);
      const V e = T::exp_le0(d);
      if constexpr (kStore && kToY)
        T::store_n(y[r] + i, n - i, e);
      else if constexpr (kStore)
        T::storec(y[r] + i, e);  // the buffer is padded to whole vectors
      T::acc_add(a[r][0], e);
    }
  }
  FASTSOFTMAX_UNROLL
  for (int r = 0; r < R; ++r) {
    if constexpr (!OneAcc<T>::value) {
      T::acc_merge(a[r][0], a[r][1]);
      T::acc_merge(a[r][2], a[r][3]);
      T::acc_merge(a[r][0], a[r][2]);
    }
    out[r] = T::acc_total(a[r][0]);
  }
}

// rows_sum_exp with its runtime choices: kPrefetch where pf, the no-flush exp where nf.
template <class T, int R, bool kStore, class D = typename T::S, bool kStoreDiff = false>
FASTSOFTMAX_PASS void rows_sum_exp_rt(const typename T::S* const* x, D* const* y, int64_t n,
                                      const typename T::C* m, SumExp* out, bool pf, bool nf) {
  if (pf && nf)
    rows_sum_exp<T, R, kStore, true, D, true, kStoreDiff, true>(x, y, n, m, out);
  else if (pf)
    rows_sum_exp<T, R, kStore, true, D, true, kStoreDiff>(x, y, n, m, out);
  else if (nf)
    rows_sum_exp<T, R, kStore, false, D, true, kStoreDiff, true>(x, y, n, m, out);
  else
    rows_sum_exp<T, R, kStore, false, D, true, kStoreDiff>(x, y, n, m, out);
}

// Whether a row pass prefetches ahead (one row of at least kPrefetchRow bytes).
template <class T, int R>
constexpr bool prefetch_row(int64_t n) {
  return R == 1 && n * int64_t(sizeof(typename T::S)) >= kPrefetchRow;
}

// y *= scale (S == C only).
template <class T, int R>
FASTSOFTMAX_PASS void rows_scale(typename T::S* const* y_in, int64_t n, const typename T::C* scale) {
  FASTSOFTMAX_LOCAL_ROWS(typename T::S*, y);
  using V = typename T::V;
  constexpr int64_t W = T::W;
  V vs[R];
  set1_rows<T, R>(scale, vs);
  int64_t i = 0;
  for (; i + 4 * W <= n; i += 4 * W) {
    FASTSOFTMAX_UNROLL
    for (int r = 0; r < R; ++r) {
      T::store(y[r] + i, T::mul(T::load(y[r] + i), vs[r]));
      T::store(y[r] + i + W, T::mul(T::load(y[r] + i + W), vs[r]));
      T::store(y[r] + i + 2 * W, T::mul(T::load(y[r] + i + 2 * W), vs[r]));
      T::store(y[r] + i + 3 * W, T::mul(T::load(y[r] + i + 3 * W), vs[r]));
    }
  }
  for (; i + W <= n; i += W) {
    FASTSOFTMAX_UNROLL
    for (int r = 0; r < R; ++r) T::store(y[r] + i, T::mul(T::load(y[r] + i), vs[r]));
  }
  if (i < n) {
    FASTSOFTMAX_UNROLL
    for (int r = 0; r < R; ++r)
      T::store_n(y[r] + i, n - i, T::mul(T::load_n(y[r] + i, n - i), vs[r]));
  }
}

// y = buf * scale, buf a compute-type buffer padded to whole vectors (float16 rows).
template <class T, int R>
FASTSOFTMAX_PASS void rows_scale_from(const typename T::C* const* buf_in, typename T::S* const* y_in,
                                      int64_t n, const typename T::C* scale) {
  FASTSOFTMAX_LOCAL_ROWS(const typename T::C*, buf);
  FASTSOFTMAX_LOCAL_ROWS(typename T::S*, y);
  using V = typename T::V;
  constexpr int64_t W = T::W;
  V vs[R];
  set1_rows<T, R>(scale, vs);
  int64_t i = 0;
  for (; i + 2 * W <= n; i += 2 * W) {
    FASTSOFTMAX_UNROLL
    for (int r = 0; r < R; ++r) {
      T::store(y[r] + i, T::mul(T::loadc(buf[r] + i), vs[r]));
      T::store(y[r] + i + W, T::mul(T::loadc(buf[r] + i + W), vs[r]));
    }
  }
  for (; i + W <= n; i += W) {
    FASTSOFTMAX_UNROLL
    for (int r = 0; r < R; ++r) T::store(y[r] + i, T::mul(T::loadc(buf[r] + i), vs[r]));
  }
  if (i < n) {
    FASTSOFTMAX_UNROLL
    for (int r = 0; r < R; ++r) T::store_n(y[r] + i, n - i, T::mul(T::loadc(buf[r] + i), vs[r]));
  }
}

// softmax_finish: y = exp(x - m) * scale.
template <class T, int R, bool kNf = false>
FASTSOFTMAX_PASS void rows_exp_scale(const typename T::S* const* x_in, typename T::S* const* y_in,
                                     int64_t n, const typename T::C* m,
                                     const typename T::C* scale) {
  FASTSOFTMAX_LOCAL_ROWS(const typename T::S*, x);
  FASTSOFTMAX_LOCAL_ROWS(typename T::S*, y);
  using V = typename T::V;
  constexpr int64_t W = T::W;
  V vm[R], vs[R];
  set1_rows<T, R>(m, vm);
  set1_rows<T, R>(scale, vs);
  int64_t i = 0;
  for (; i + 2 * W <= n; i += 2 * W) {
    FASTSOFTMAX_UNROLL
    for (int r = 0; r < R; ++r) {
      const V e0 = exp_le0_maybe_nf<T, kNf>(T::sub(T::load(x[r] + i), vm[r]));
      const V e1 = exp_le0_maybe_nf<T, kNf>(T::sub(T::load(x[r] + i + W), vm[r]));
      T::store(y[r] + i, T::mul(e0, vs[r]));
      T::store(y[r] + i + W, T::mul(e1, vs[r]));
    }
  }
  for (; i + W <= n; i += W) {
    FASTSOFTMAX_UNROLL
    for (int r = 0; r < R; ++r)
      T::store(y[r] + i, T::mul(exp_le0_maybe_nf<T, kNf>(T::sub(T::load(x[r] + i), vm[r])), vs[r]));
  }
  if (i < n) {
    FASTSOFTMAX_UNROLL
    for (int r = 0; r < R; ++r)
      T::store_n(y[r] + i, n - i,
                 T::mul(T::exp_le0(T::sub(T::load_n(x[r] + i, n - i), vm[r])), vs[r]));
  }
}

// log_softmax_finish: y = (x - m) - log_sum.
template <class T, int R>
FASTSOFTMAX_PASS void rows_log_finish(const typename T::S* const* x_in, typename T::S* const* y_in,
                                      int64_t n, const typename T::C* m,
                                      const typename T::C* log_sum) {
  FASTSOFTMAX_LOCAL_ROWS(const typename T::S*, x);
  FASTSOFTMAX_LOCAL_ROWS(typename T::S*, y);
  using V = typename T::V;
  constexpr int64_t W = T::W;
  V vm[R], vl[R];
  set1_rows<T, R>(m, vm);
  set1_rows<T, R>(log_sum, vl);
  int64_t i = 0;
  for (; i + 4 * W <= n; i += 4 * W) {
    FASTSOFTMAX_UNROLL
    for (int r = 0; r < R; ++r) {
      T::store(y[r] + i, T::sub(T::sub(T::load(x[r] + i), vm[r]), vl[r]));
      T::store(y[r] + i + W, T::sub(T::sub(T::load(x[r] + i + W), vm[r]), vl[r]));
      T::store(y[r] + i + 2 * W, T::sub(T::sub(T::load(x[r] + i + 2 * W), vm[r]), vl[r]));
      T::store(y[r] + i + 3 * W, T::sub(T::sub(T::load(x[r] + i + 3 * W), vm[r]), vl[r]));
    }
  }
  for (; i + W <= n; i += W) {
    FASTSOFTMAX_UNROLL
    for (int r = 0; r < R; ++r)
      T::store(y[r] + i, T::sub(T::sub(T::load(x[r] + i), vm[r]), vl[r]));
  }
  if (i < n) {
    FASTSOFTMAX_UNROLL
    for (int r = 0; r < R; ++r)
      T::store_n(y[r] + i, n - i, T::sub(T::sub(T::load_n(x[r] + i, n - i), vm[r]), vl[r]));
  }
}

template <class T>
void row_fill(typename T::S* y, int64_t n, typename T::C v) {
  using V = typename T::V;
  constexpr int64_t W = T::W;
  const V vv = T::set1(v);
  int64_t i = 0;
  for (; i + W <= n; i += W) T::store(y + i, vv);
  if (i < n) T::store_n(y + i, n - i, vv);
}

template <class T>
bool row_has_nan(const typename T::S* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    if (T::s_is_nan(x[i])) return true;
  return false;
}

// The careful path for a row whose max is not finite (rare): the table of docs/contract.md §3 decides.
// Returns what the row's max "is": NaN if any NaN, else +inf or -inf.
template <class T>
typename T::C special_max(const typename T::S* x, int64_t n, typename T::C m) {
  return (m != m || row_has_nan<T>(x, n)) ? kNaNC<T> : m;
}

template <class T>
void special_row(const typename T::S* x, typename T::S* y, int64_t n, typename T::C m,
                 bool log) {
  using C = typename T::C;
  const C sm = special_max<T>(x, n, m);
  // NaN or +inf anywhere: all NaN; only -inf: 0 (log_softmax: -inf).
  row_fill<T>(y, n, sm == -kInfC<T> ? (log ? -kInfC<T> : C(0)) : kNaNC<T>);
}

template <class T>
bool finite(typename T::C v) {
  return v - v == typename T::C(0);
}

// Longest float16 row whose exps wait in a stack buffer (16 KiB of float).
constexpr int64_t kExpBuffer = 4096;
// Batches process rows of at most this many bytes in pairs, and of at most
// kQuadRowsMaxBytes four at a time (see grouped_rows).
constexpr int64_t kPairRowsMaxBytes = 1024;
constexpr int64_t kQuadRowsMaxBytes = 256;

template <class T, int R>
void rows_softmax(const typename T::S* const* x, typename T::S* const* y, int64_t n) {
  using C = typename T::C;
  C m[R];
  bool nf;
  rows_max_nf<T, R>(x, n, m, nf);
  if constexpr (R > 1) {
    bool ok = true;
    for (int r = 0; r < R; ++r) ok &= finite<T>(m[r]);
    if (!ok) {  // rare: each row on its own (nothing was written yet)
      for (int r = 0; r < R; ++r) rows_softmax<T, 1>(x + r, y + r, n);
      return;
    }
  } else if (!finite<T>(m[0])) {
    special_row<T>(x[0], y[0], n, m[0], false);
    return;
  }
  SumExp s[R];
  C scale[R];
  constexpr bool kStore = T::kStoreExp;
  if constexpr (!kStore) {
    // float16: the exps wait in a float buffer on the stack when the row fits, so
    // that each is computed once (same bits as recomputing them); else recompute.
    // (pairs only hold short rows: their buffers stay small)
    constexpr int64_t kBufN =
        R == 1 ? kExpBuffer : kPairRowsMaxBytes / int64_t(sizeof(typename T::S));
    if (n <= kBufN) {
      alignas(64) C buf[R][kBufN + T::W];  // + W: the tail stores a whole vector
      C* bufs[R];
      for (int r = 0; r < R; ++r) bufs[r] = buf[r];
      rows_sum_exp_rt<T, R, true, C>(x, bufs, n, m, s, prefetch_row<T, R>(n), nf);
      bool nan = false;
      for (int r = 0; r < R; ++r) {
        nan |= s[r].sum != s[r].sum;
        scale[r] = C(1.0 / s[r].sum);
      }
      if (nan) {
        for (int r = 0; r < R; ++r) {
          if (s[r].sum != s[r].sum)
            row_fill<T>(y[r], n, kNaNC<T>);
          else
            rows_scale_from<T, 1>(bufs + r, y + r, n, scale + r);
        }
        return;
      }
      rows_scale_from<T, R>(bufs, y, n, scale);
      return;
    }
  }
  // kStore: the exps go to y; else (long float16 rows) y is only prefetched for the
  // last pass, which recomputes them
  // (nf: the no-flush exp, see rows_max_nf)
  rows_sum_exp_rt<T, R, kStore>(x, y, n, m, s, prefetch_row<T, R>(n), nf);
  bool nan = false;
  for (int r = 0; r < R; ++r) {
    nan |= s[r].sum != s[r].sum;  // a NaN the max pass could not see
    scale[r] = C(1.0 / s[r].sum);
  }
  if (nan) {
    for (int r = 0; r < R; ++r) {
      if (s[r].sum != s[r].sum)
        row_fill<T>(y[r], n, kNaNC<T>);
      else if constexpr (kStore)
        rows_scale<T, 1>(y + r, n, scale + r);
      else
        rows_exp_scale<T, 1>(x + r, y + r, n, m + r, scale + r);
    }
    return;
  }
  if constexpr (kStore)
    rows_scale<T, R>(y, n, scale);
  else
    rows_exp_scale<T, R>(x, y, n, m, scale);
}

constexpr int64_t kLogDiffMaxBytes = 16384;
template <class T, int R>
void rows_log_softmax(const typename T::S* const* x, typename T::S* const* y, int64_t n) {
  using C = typename T::C;
  C m[R];
  bool nf;
  rows_max_nf<T, R>(x, n, m, nf);
  if constexpr (R > 1) {
    bool ok = true;
    for (int r = 0; r < R; ++r) ok &= finite<T>(m[r]);
    if (!ok) {
      for (int r = 0; r < R; ++r) rows_log_softmax<T, 1>(x + r, y + r, n);
      return;
    }
  } else if (!finite<T>(m[0])) {
    special_row<T>(x[0], y[0], n, m[0], true);
    return;
  }
  SumExp s[R];
  C ls[R];
  // Rows that stay in L1 (float32/float64): the sum pass stores x - m to y and the
  // last pass finishes y in place ((x - m) - 0 - ls: the same bits), so y's lines are
  // fetched for ownership under the exps (as in the grouped short rows). Longer rows:
  // y is only prefetched here, written by the last pass.
  const bool diff = std::is_same_v<typename T::S, C> &&
                    n * int64_t(sizeof(typename T::S)) <= kLogDiffMaxBytes;
  if (diff)
    rows_sum_exp_rt<T, R, false, typename T::S, true>(x, y, n, m, s, false, nf);
  else
    rows_sum_exp_rt<T, R, false>(x, y, n, m, s, prefetch_row<T, R>(n), nf);
  bool nan = false;
  for (int r = 0; r < R; ++r) {
    nan |= s[r].sum != s[r].sum;
    ls[r] = C(log1p_rest<T>(s[r].rest));
  }
  const typename T::S* const* src = diff ? y : x;
  C m0[R];
  for (int r = 0; r < R; ++r) m0[r] = diff ? C(0) : m[r];
  if (nan) {
    for (int r = 0; r < R; ++r) {
      if (s[r].sum != s[r].sum)
        row_fill<T>(y[r], n, kNaNC<T>);
      else
        rows_log_finish<T, 1>(src + r, y + r, n, m0 + r, ls + r);
    }
    return;
  }
  rows_log_finish<T, R>(src, y, n, m0, ls);
}

template <class T, int R>
void rows_reduce(const typename T::S* const* x, int64_t n, Partial* out) {
  using C = typename T::C;
  C m[R], mins[R];
  bool nf;
  rows_max_nf<T, R>(x, n, m, nf, mins);
  if constexpr (R > 1) {
    bool ok = true;
    for (int r = 0; r < R; ++r) ok &= finite<T>(m[r]);
    if (!ok) {
      for (int r = 0; r < R; ++r) rows_reduce<T, 1>(x + r, n, out + r);
      return;
    }
  } else if (!finite<T>(m[0])) {
    out[0] = {double(special_max<T>(x[0], n, m[0])), 0.0, 0.0};
    return;
  }
  SumExp s[R];
  typename T::S* none[R] = {};
  rows_sum_exp_rt<T, R, false>(x, none, n, m, s, prefetch_row<T, R>(n), nf);
  for (int r = 0; r < R; ++r) {
    out[r] = s[r].sum != s[r].sum ? Partial{std::numeric_limits<double>::quiet_NaN(), 0.0, 0.0}
                                  : Partial{double(m[r]), s[r].sum, s[r].rest};
    out[r].min = double(mins[r]);
  }
}
