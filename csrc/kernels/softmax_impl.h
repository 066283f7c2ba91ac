// ISA-generic bodies of the row, block and panel kernels.
//
// This file is included INSIDE an ISA's namespace and target region (avx512.cpp,
// avx2.cpp, neon.cpp), after that file has defined its `Ops` classes, so every
// function here is compiled for that ISA and lives in that ISA's namespace: an
// AVX-512 instantiation can never be linked into another path. It includes nothing
// itself (the including file has <algorithm>, <cmath>, <cstring>, <limits>, <memory>,
// <type_traits>, kernels.h, common.h, simd_common.h above its region).
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
// and the ISA file defines F64 (the float64 Ops) before including this file: the
// panels rescale their per-lane double sums with its vector exp.
//
// Row plan (n <= kBlock): pass 1 max; pass 2 e = exp(x - max) stored in y and summed
// in double lanes; pass 3 y *= 1 / sum. log_softmax: max, sum (no store), then
// y = (x - max) - log1p(rest), rest = sum - 1 (SPEC: the largest term set apart, so
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
  FASTSOFTMAX_UNROLL
  for (int r = 0; r < R; ++r) vs[r] = T::set1(scale[r]);
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
  FASTSOFTMAX_UNROLL
  for (int r = 0; r < R; ++r) vs[r] = T::set1(scale[r]);
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
  FASTSOFTMAX_UNROLL
  for (int r = 0; r < R; ++r) {
    vm[r] = T::set1(m[r]);
    vs[r] = T::set1(scale[r]);
  }
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
  FASTSOFTMAX_UNROLL
  for (int r = 0; r < R; ++r) {
    vm[r] = T::set1(m[r]);
    vl[r] = T::set1(log_sum[r]);
  }
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

// The careful path for a row whose max is not finite (rare): the SPEC table decides.
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

// ---- lanes' write factors (short rows across rows, panel tiles) --------------------
// For W lanes with max m and sum parts s, c (rest = (s - 1) + c, the max's own term set
// apart; the sums of exps <= 1 are finite or NaN): a = 1 / sum (softmax) or log1p(rest)
// (log_softmax), 0 where the lane is all -inf (or padding) or holds a NaN or +inf; bad
// marks the latter (their outputs are written NaN after). In GCC/Clang vector
// extensions, W lanes at once: one scalar division or log per row cost as much as the
// exps of a row of 4.
template <class T>
using LanesC = typename simd::VecOf<typename T::C, T::W>::type;
template <class T>
using LanesD = typename simd::VecOf<double, T::W>::type;
template <class T>
using LanesI = typename simd::VecOf<int64_t, T::W>::type;

template <class T, Kind kKind>
FASTSOFTMAX_PASS void lane_factors(const LanesC<T>& m, const double* s, const double* c,
                                   LanesC<T>& a, LanesI<T>& bad) {
  using DV = LanesD<T>;
  using IV = LanesI<T>;
  DV sv, cv;
  std::memcpy(&sv, s, sizeof sv);
  std::memcpy(&cv, c, sizeof cv);
  const DV rest = (sv - 1.0) + cv;
  const DV md = __builtin_convertvector(m, DV);
  bad = (rest != rest) | (md == HUGE_VAL);
  DV ad;
  if constexpr (kKind == Kind::softmax) {
    ad = 1.0 / (1.0 + rest);
  } else if constexpr (std::is_same_v<typename T::C, float>) {
    ad = rest;
    simd::log1p_sum_f32v<DV, IV>(ad);
  } else {
    for (int64_t l = 0; l < T::W; ++l) ad[l] = simd::log1p_sum(rest[l]);
  }
  ad = (DV)((IV)ad & ~bad & ((md - md) == 0.0));
  a = __builtin_convertvector(ad, LanesC<T>);
}

// ---- short rows, across rows ------------------------------------------------------
// Rows of at most kShortRowMax elements spend more on per-row work (horizontal max and
// sum, the division, masked tails) than on their exps: W rows at a time go through a
// stack buffer, transposed (lane l = row r0 + l), and their passes run vectorized
// across the rows as a panel tile's do: max (and min), the exps and their per-lane sums
// (float32: four elements at a time, float64: one by one, compensated), the lanes'
// factors, the write; then back. A row's lane takes the same operations whatever the
// other lanes hold (padding lanes repeat the last row) and wherever the row sits in the
// batch, and every kernel entry that takes a contiguous row this short comes here
// (softmax_row, log_softmax_row, reduce and the batches, streamed or not): a row's bits
// are its own (SPEC). float16 rows keep the row kernels. Measured on a Zen 3 (AVX2), float32 out of cache,
// x copy, row kernels -> here: n = 2 51 -> 13 (onnxruntime 23), 5 23 -> 6.9 (12),
// 10 13 -> 6.0 (6.6), 15 7.8 -> 4.6 (5.0); n = 16 and 24 were faster in the row
// kernels (no masked tails), n = 32 much faster (in cache 0.85 against 1.5 ns per
// element): the scalar moves of the transposes cost about 0.8 ns per element.
constexpr int64_t kShortRowMax = 15;
template <class T>
constexpr bool kShortRows = std::is_same_v<typename T::S, typename T::C>;

// Kind::lse: each row's Partial (as rows_reduce's: {NaN} with a NaN, {+inf} / {-inf}
// for rows whose max is that, else max, sum, rest and min) to parts, y unused; its lanes
// subtract 0 where the max is not finite and take the full-range exp, so that a +inf
// row sums to +inf and only a NaN gives a NaN (as the panels' logsumexp).
template <class T, Kind kKind>
void short_rows(const typename T::S* x, int64_t ldx, typename T::S* y, int64_t ldy, int64_t n,
                int64_t rows, Partial* parts = nullptr) {
  static_assert(kShortRows<T>);
  constexpr bool kLse = kKind == Kind::lse;
  using C = typename T::C;
  using V = typename T::V;
  constexpr int64_t W = T::W;
  using CV = LanesC<T>;  // the lanes' own work in vector extensions (lane_factors)
  alignas(64) C buf[kShortRowMax * W];  // buf[j * W + l]: element j of row r0 + l
  alignas(64) double s[W], c[W];
  for (int64_t r0 = 0; r0 < rows; r0 += W) {
    const int64_t cnt = std::min<int64_t>(W, rows - r0);
    int64_t off[W];  // padding lanes repeat the last row (their results are dropped)
    for (int64_t l = 0; l < W; ++l) off[l] = (r0 + std::min(l, cnt - 1)) * ldx;
    for (int64_t j = 0; j < n; ++j)
      for (int64_t l = 0; l < W; ++l) buf[j * W + l] = x[off[l] + j];
    V vm = T::set1(-kInfC<T>), vmn = T::set1(kInfC<T>);
    for (int64_t j = 0; j < n; ++j) {
      const V v = T::loadc(buf + j * W);
      vm = T::max(vm, v);  // (a NaN may be dropped: the lane's sum catches it)
      if constexpr (HasExpNf<T>::value) vmn = T::min(vmn, v);
    }
    CV m, mn, mu;
    T::storec(reinterpret_cast<C*>(&m), vm);
    T::storec(reinterpret_cast<C*>(&mn), vmn);
    // as tile_mu: the max where finite or +inf (logsumexp: where finite), else 0
    using MV = decltype(m == m);
    const CV zero = m - m;  // 0, or NaN where m is not finite
    mu = (CV)((MV)m & (kLse ? zero == 0 : (zero == 0) | (m == kInfC<T>)));
    bool nf = HasExpNf<T>::value && !kLse;
    if constexpr (HasExpNf<T>::value && !kLse) {  // (false for a NaN or non-finite max or min)
      const MV ok = (mn - m) >= T::kExpLe0NfMin;
      for (int64_t l = 0; l < W; ++l) nf &= ok[l] != 0;
    }
    const V vmu = T::loadc(reinterpret_cast<const C*>(&mu));
    const auto sums = [&](auto kNf) {
      constexpr bool kNoFlush = decltype(kNf)::value;
      typename T::Acc acc = T::acc_zero();
      const auto exps = [&](int64_t j, int q, V* e) {
        for (int k = 0; k < q; ++k) {
          const V d = T::sub(T::loadc(buf + (j + k) * W), vmu);
          e[k] = kLse ? T::exp(d) : exp_le0_maybe_nf<T, kNoFlush>(d);
          if constexpr (kKind == Kind::softmax) T::storec(buf + (j + k) * W, e[k]);
        }
      };
      int64_t j = 0;
      V e[4];
      if constexpr (std::is_same_v<C, double>) {
        // one compensated add per exp: a row's terms share a lane, and a tree would
        // round the max's own 1 with the others' tiny sum (float64 log_softmax must
        // keep a dominant entry's precision; float32's error there is far below 1 ULP)
        for (; j < n; ++j) {
          exps(j, 1, e);
          T::acc_add(acc, e[0]);
        }
      }
      for (; j + 4 <= n; j += 4) {  // four at a time, a pair, one: as the tiles
        exps(j, 4, e);
        if constexpr (OneAcc<T>::value) {
          T::acc_add4(&acc, e[0], e[1], e[2], e[3]);
        } else {
          T::acc_add2(acc, e[0], e[1]);
          T::acc_add2(acc, e[2], e[3]);
        }
      }
      if (j + 2 <= n) {
        exps(j, 2, e);
        T::acc_add2(acc, e[0], e[1]);
        j += 2;
      }
      if (j < n) {
        exps(j, 1, e);
        T::acc_add(acc, e[0]);
      }
      T::acc_parts(acc, s, c);
    };
    if (nf)
      sums(std::true_type());
    else
      sums(std::false_type());
    if constexpr (kLse) {
      for (int64_t l = 0; l < cnt; ++l) {
        Partial& p = parts[r0 + l];
        const double ml = double(m[l]);
        if (s[l] != s[l])
          p = {std::numeric_limits<double>::quiet_NaN(), 0.0, 0.0};
        else if (!(ml - ml == 0.0))
          p = {ml, 0.0, 0.0};
        else
          p = {ml, s[l] + c[l], (s[l] - 1.0) + c[l]};
        if constexpr (HasExpNf<T>::value) p.min = double(mn[l]);  // (else -inf: not taken)
      }
      continue;
    }
    CV a;
    LanesI<T> bad;
    lane_factors<T, kKind>(m, s, c, a, bad);
    bool poisoned = false;
    for (int64_t l = 0; l < cnt; ++l) poisoned |= bad[l] != 0;
    const V va = T::loadc(reinterpret_cast<const C*>(&a));
    for (int64_t j = 0; j < n; ++j) {
      const V v = T::loadc(buf + j * W);
      T::storec(buf + j * W, kKind == Kind::softmax ? T::mul(v, va) : T::sub(T::sub(v, vmu), va));
    }
    if (poisoned)
      for (int64_t l = 0; l < cnt; ++l)
        if (bad[l])
          for (int64_t j = 0; j < n; ++j) buf[j * W + l] = kNaNC<T>;
    for (int64_t l = 0; l < cnt; ++l) {
      C* const yr = y + (r0 + l) * ldy;
      for (int64_t j = 0; j < n; ++j) yr[j] = buf[j * W + l];
    }
  }
}

// ---- the row entries of the kernel table -------------------------------------------

template <class T>
void softmax_row(const typename T::S* x, typename T::S* y, int64_t n) {
  if constexpr (kShortRows<T>)
    if (n <= kShortRowMax) return short_rows<T, Kind::softmax>(x, n, y, n, n, 1);
  rows_softmax<T, 1>(&x, &y, n);
}

template <class T>
void log_softmax_row(const typename T::S* x, typename T::S* y, int64_t n) {
  if constexpr (kShortRows<T>)
    if (n <= kShortRowMax) return short_rows<T, Kind::log_softmax>(x, n, y, n, n, 1);
  rows_log_softmax<T, 1>(&x, &y, n);
}

template <class T>
Partial reduce(const typename T::S* x, int64_t n) {
  Partial p;
  rows_reduce<T, 1>(&x, n, &p);
  return p;
}

// The table's reduce (the driver's rows and blocks): short rows as the batches take
// them. (The training kernels keep `reduce`, whose passes their gradients share.)
template <class T>
Partial reduce_entry(const typename T::S* x, int64_t n) {
  if constexpr (kShortRows<T>) {
    if (n <= kShortRowMax) {
      Partial p;
      short_rows<T, Kind::lse>(x, n, nullptr, 0, n, 1, &p);
      return p;
    }
  }
  return reduce<T>(x, n);
}

template <class T>
void softmax_finish(const typename T::S* x, typename T::S* y, int64_t n, typename T::C m,
                    typename T::C scale) {
  rows_exp_scale<T, 1>(&x, &y, n, &m, &scale);
}

template <class T>
void log_softmax_finish(const typename T::S* x, typename T::S* y, int64_t n, typename T::C m,
                        typename T::C log_sum) {
  rows_log_finish<T, 1>(&x, &y, n, &m, &log_sum);
}

// Streaming variants (long rows' second pass, large batches and panels): stream_row
// writes the head of a row up to a 64-byte boundary and its tail with plain masked
// stores, non-temporal stores in between. Every element gets the same arithmetic as
// in the plain kernels, so the bits are equal.
template <class T, class = void>
struct HasStream : std::false_type {};
template <class T>
struct HasStream<T, std::void_t<decltype(T::stream(static_cast<typename T::S*>(nullptr),
                                                   T::set1(typename T::C(0))))>>
    : std::true_type {};

// y[0, n) = value(i, k) for the vector at i (k lanes), streamed where aligned.
template <class T, class F>
FASTSOFTMAX_PASS void stream_row(typename T::S* y, int64_t n, F&& value) {
  constexpr int64_t W = T::W;
  const uintptr_t addr = reinterpret_cast<uintptr_t>(y);
  int64_t i = 0;
  if (addr % sizeof(typename T::S) == 0) {
    int64_t head = std::min<int64_t>(n, int64_t((64 - addr % 64) % 64 / sizeof(typename T::S)));
    for (; i < head; i += W) {
      const int64_t k = std::min<int64_t>(W, head - i);
      T::store_n(y + i, k, value(i, k));
    }
    i = head;
    // whole 64-byte lines only: a line that the next row's (or the caller's) data shares
    // would sit half-written in a write-combining buffer until a plain store to its
    // other half flushed it (a partial line write to memory, then a read for
    // ownership): rows of 4000 bytes 1.7x -> 1.2x a copy (AVX2)
    constexpr int64_t kLine = 64 / int64_t(sizeof(typename T::S));
    static_assert(kLine % W == 0);
    const int64_t body_end = i + (n - i) / kLine * kLine;
    for (; i < body_end; i += W) T::stream(y + i, value(i, W));
  }
  for (; i < n; i += W) {
    const int64_t k = std::min<int64_t>(W, n - i);
    if (k == W)
      T::store(y + i, value(i, W));
    else
      T::store_n(y + i, k, value(i, k));
  }
}

template <class T, bool kLog, bool kNf = false>
void finish_stream(const typename T::S* x, typename T::S* y, int64_t n, typename T::C m,
                   typename T::C a) {
  using S = typename T::S;
  using V = typename T::V;
  if constexpr (HasStream<T>::value && std::is_same_v<S, typename T::C>) {
    const V vm = T::set1(m), va = T::set1(a);
    stream_row<T>(y, n, [&](int64_t i, int64_t k) {
      if (k == T::W) {
        const V d = T::sub(T::load(x + i), vm);
        return kLog ? T::sub(d, va) : T::mul(exp_le0_maybe_nf<T, kNf>(d), va);
      }
      const V d = T::sub(T::load_n(x + i, k), vm);  // (padding: -inf, needs the flush)
      return kLog ? T::sub(d, va) : T::mul(T::exp_le0(d), va);
    });
    T::fence();
  } else if constexpr (kLog) {
    rows_log_finish<T, 1>(&x, &y, n, &m, &a);
  } else {
    rows_exp_scale<T, 1, kNf>(&x, &y, n, &m, &a);
  }
}

// softmax's finish given the row's min (the reduce's Partial::min, merged), streamed
// as softmax_finish_stream: the no-flush exp where every x - m is >= kExpLe0NfMin.
template <class T>
void softmax_finish_min(const typename T::S* x, typename T::S* y, int64_t n, typename T::C m,
                        typename T::C scale, typename T::C min) {
  if constexpr (HasExpNf<T>::value) {
    if (typename T::C(min - m) >= T::kExpLe0NfMin) return finish_stream<T, false, true>(x, y, n, m, scale);
  }
  finish_stream<T, false>(x, y, n, m, scale);
}

template <class T>
void softmax_finish_stream(const typename T::S* x, typename T::S* y, int64_t n, typename T::C m,
                           typename T::C scale) {
  finish_stream<T, false>(x, y, n, m, scale);
}

template <class T>
void log_softmax_finish_stream(const typename T::S* x, typename T::S* y, int64_t n,
                               typename T::C m, typename T::C log_sum) {
  finish_stream<T, true>(x, y, n, m, log_sum);
}

// Batches: row r at x + r * ldx (y + r * ldy). Short rows go in pairs (bit-identical
// to one at a time, see above); long rows are throughput-bound and go one by one.

// ---- streaming batches ---------------------------------------------------------
// For outputs too large to stay in cache (the driver decides): a normal store first
// reads each output line from memory (read-for-ownership), so the plain kernels move
// three arrays' worth (x, and y in and out) where a copy moves two. Here softmax's exps
// wait in a per-thread buffer instead of y, and the last pass writes y with
// non-temporal stores from there (log_softmax: straight from x): the head of a row up
// to a 64-byte boundary and its tail with plain masked stores. The arithmetic is the
// plain kernels' (an exp stored to the buffer is the float that would be stored to y),
// so the bits are theirs (float16: the exps wait in a float buffer, as in the plain
// kernel's rows up to kExpBuffer; longer plain rows recompute the same exps). Only
// where the Ops have streaming stores.

// A thread's buffer of at least n compute-type values (kept and grown on demand).
template <class T>
typename T::C* row_buffer(int64_t n) {
  static thread_local std::unique_ptr<typename T::C[]> buf;
  static thread_local int64_t cap = 0;
  if (cap < n) {
    cap = std::max<int64_t>(n, 4096);
    buf.reset(new typename T::C[cap]);
  }
  return buf.get();
}

template <class T, int R>
void rows_softmax_stream(const typename T::S* const* x, typename T::S* const* y, int64_t n,
                         typename T::C* const* bufs) {
  using C = typename T::C;
  C m[R];
  bool nf;
  rows_max_nf<T, R>(x, n, m, nf);
  bool ok = true;
  for (int r = 0; r < R; ++r) ok &= finite<T>(m[r]);
  SumExp s[R];
  if (ok) {
    rows_sum_exp_rt<T, R, true, C>(x, bufs, n, m, s, prefetch_row<T, R>(n), nf);
    for (int r = 0; r < R; ++r) ok &= s[r].sum == s[r].sum;
  }
  if (!ok) {  // rare (a special row): the plain kernel, row by row
    for (int r = 0; r < R; ++r) rows_softmax<T, 1>(x + r, y + r, n);
    return;
  }
  for (int r = 0; r < R; ++r) {
    const typename T::V sc = T::set1(C(1.0 / s[r].sum));
    const C* b = bufs[r];
    stream_row<T>(y[r], n, [&](int64_t i, int64_t k) {
      (void)k;  // a tail reads whole vectors from the padded buffer
      return T::mul(T::loadc(b + i), sc);
    });
  }
}

// Streaming batches need the Ops' stream (float32, float64; float16 on AVX-512, which
// converts on the way out).
template <class T>
constexpr bool kCanStreamRows = HasStream<T>::value;
// Rows from which the driver should not stream them (KernelSet's
// stream_rows_below_bytes): Ops whose exps are slow against the memory set
// kStreamRowsBelowBytes (see avx2.cpp); long rows' plain stores' reads for ownership
// then hide under the exps, where a streamed batch's separate write pass would not.
template <class T, class = void>
struct StreamRowsBelow : std::integral_constant<int64_t, INT64_MAX> {};
template <class T>
struct StreamRowsBelow<T, std::void_t<decltype(T::kStreamRowsBelowBytes)>>
    : std::integral_constant<int64_t, T::kStreamRowsBelowBytes> {};

// Batches of short rows: each step prefetches the rows about kRowsAheadBytes ahead:
// their max pass otherwise waited on memory (a quarter of the time on (8192, 128));
// the hardware prefetcher alone kept too few lines in flight. Addresses in integer
// arithmetic: they may lie past the end of the array (a prefetch never faults).
constexpr int64_t kRowsAheadBytes = 4096;
template <class T>
int64_t rows_ahead(int64_t n) {
  const int64_t row = std::max<int64_t>(1, n * int64_t(sizeof(typename T::S)));
  return std::max<int64_t>(1, kRowsAheadBytes / row);
}
// Rows r .. r + cnt - 1 of x (row stride ldx elements).
template <class T>
FASTSOFTMAX_PASS void prefetch_rows(const typename T::S* x, int64_t ldx, int64_t n, int64_t r,
                                    int64_t cnt) {
  const uintptr_t bytes = uintptr_t(n) * sizeof(typename T::S);
  for (int64_t k = 0; k < cnt; ++k) {
    const uintptr_t px = reinterpret_cast<uintptr_t>(x) + uintptr_t((r + k) * ldx) * sizeof(typename T::S);
    for (uintptr_t b = 0; b < bytes; b += 64) __builtin_prefetch(reinterpret_cast<const void*>(px + b), 0, 3);
  }
}

// Runs f(r, R) over the batch's rows in lockstep groups of R = 4 (rows of at most
// kQuadRowsMaxBytes, where kQuads) and then 2 (at most kPairRowsMaxBytes), each group's
// rows ahead prefetched; returns the first row left for the caller to run alone. A
// short row is a chain of dependent steps (max, its horizontal reduction, exps, sum,
// division, scale): side by side, R rows' chains overlap. Four rather than two:
// float32 rows of 16-64 elements 3-15% faster (hot, Zen 3, AVX2); longer rows gain
// nothing. Each row takes the same arithmetic whatever R (SPEC's determinism).
template <class T, bool kQuads, class F>
FASTSOFTMAX_PASS int64_t grouped_rows(const typename T::S* x, int64_t ldx, int64_t n, int64_t rows,
                                      F&& f) {
  const int64_t bytes = n * int64_t(sizeof(typename T::S));
  const int64_t ahead = rows_ahead<T>(n);
  int64_t r = 0;
  const auto run = [&](auto group) {
    constexpr int R = decltype(group)::value;
    for (; r + R <= rows; r += R) {
      prefetch_rows<T>(x, ldx, n, r + ahead, R);
      f(r, group);
    }
  };
  if constexpr (kQuads)
    if (bytes <= kQuadRowsMaxBytes) run(std::integral_constant<int, 4>());
  if (bytes <= kPairRowsMaxBytes) run(std::integral_constant<int, 2>());
  return r;
}

// The row pointers of a group of R rows from row r.
template <class P, int R>
struct GroupPtrs {
  P p[R];
  P* data() { return p; }
};
template <class P, class G>
FASTSOFTMAX_PASS GroupPtrs<P, G::value> group_ptrs(P base, int64_t ld, int64_t r, G) {
  GroupPtrs<P, G::value> g;
  for (int q = 0; q < G::value; ++q) g.p[q] = base + (r + q) * ld;
  return g;
}

template <class T, bool kStream>
void softmax_rows_impl(const typename T::S* x, int64_t ldx, typename T::S* y, int64_t ldy,
                       int64_t n, int64_t rows) {
  if constexpr (kShortRows<T>)
    if (n <= kShortRowMax) return short_rows<T, Kind::softmax>(x, ldx, y, ldy, n, rows);
  typename T::C* bufs[2] = {};
  if constexpr (kStream) {
    typename T::C* buf = row_buffer<T>(2 * (n + T::W));  // + W: tails store whole vectors
    bufs[0] = buf;
    bufs[1] = buf + n + T::W;
  }
  // (streamed batches: rows of kStreamRowMinBytes and more, never four at a time)
  int64_t r = grouped_rows<T, !kStream>(x, ldx, n, rows, [&](int64_t r0, auto group) {
    auto xs = group_ptrs(x, ldx, r0, group);
    auto ys = group_ptrs(y, ldy, r0, group);
    constexpr int R = decltype(group)::value;
    if constexpr (kStream)
      rows_softmax_stream<T, R>(xs.data(), ys.data(), n, bufs);
    else
      rows_softmax<T, R>(xs.data(), ys.data(), n);
  });
  for (; r < rows; ++r) {
    const typename T::S* xr = x + r * ldx;
    typename T::S* yr = y + r * ldy;
    if constexpr (kStream)
      rows_softmax_stream<T, 1>(&xr, &yr, n, bufs);
    else
      softmax_row<T>(xr, yr, n);
  }
  if constexpr (kStream) T::fence();
}

template <class T>
void softmax_rows(const typename T::S* x, int64_t ldx, typename T::S* y, int64_t ldy,
                  int64_t n, int64_t rows) {
  softmax_rows_impl<T, false>(x, ldx, y, ldy, n, rows);
}
template <class T>
void softmax_rows_stream(const typename T::S* x, int64_t ldx, typename T::S* y, int64_t ldy,
                         int64_t n, int64_t rows) {
  if constexpr (kCanStreamRows<T>) softmax_rows_impl<T, true>(x, ldx, y, ldy, n, rows);
}

// log_softmax's write pass for R rows (plain, or streamed).
template <class T, int R, bool kStream>
FASTSOFTMAX_PASS void log_finish_rows(const typename T::S* const* x, typename T::S* const* y,
                                      int64_t n, const typename T::C* m,
                                      const typename T::C* ls) {
  if constexpr (kStream) {
    for (int r = 0; r < R; ++r) {
      const typename T::V vm = T::set1(m[r]), vl = T::set1(ls[r]);
      const typename T::S* xr = x[r];
      stream_row<T>(y[r], n, [&](int64_t i, int64_t k) {
        const typename T::V xv = k == T::W ? T::load(xr + i) : T::load_n(xr + i, k);
        return T::sub(T::sub(xv, vm), vl);
      });
    }
  } else {
    rows_log_finish<T, R>(x, y, n, m, ls);
  }
}

// One row of log_softmax (rows_log_softmax's passes), its write pass plain or streamed.
template <class T, bool kStream>
void log_softmax_one(const typename T::S* x, typename T::S* y, int64_t n) {
  using C = typename T::C;
  if constexpr (!kStream) {
    log_softmax_row<T>(x, y, n);
  } else {
    typename T::S* none[1] = {};
    C m;
    bool nf;
    rows_max_nf<T, 1>(&x, n, &m, nf);
    SumExp s;
    bool ok = finite<T>(m);
    if (ok) {
      rows_sum_exp_rt<T, 1, false>(&x, none, n, &m, &s, prefetch_row<T, 1>(n), nf);
      ok = s.sum == s.sum;
    }
    if (!ok) return rows_log_softmax<T, 1>(&x, &y, n);  // a special row: plain
    const C ls = C(log1p_rest<T>(s.rest));
    log_finish_rows<T, 1, true>(&x, &y, n, &m, &ls);
  }
}

template <class T, bool kStream>
void log_softmax_rows_impl(const typename T::S* x, int64_t ldx, typename T::S* y,
                           int64_t ldy, int64_t n, int64_t rows) {
  if constexpr (kShortRows<T>)
    if (n <= kShortRowMax) return short_rows<T, Kind::log_softmax>(x, ldx, y, ldy, n, rows);
  using S = typename T::S;
  using C = typename T::C;
  int64_t r = 0;
  if (n * int64_t(sizeof(S)) <= kPairRowsMaxBytes) {
    // Groups of kLogGroup rows: the max and sum passes of every pair first, then the
    // rows' logs together, then the write passes. A row's log is a chain of ~60 cycles
    // that its write pass waits on; side by side the logs overlap (8192 rows of 128:
    // 1.5x -> 1.25x a copy, the cost of softmax). Each row gets the arithmetic of
    // rows_log_softmax (same bits); a group with a special row redoes its rows alone.
    constexpr int kLogGroup = 8;  // a multiple of 4 (log1p_rest4)
    static_assert(kLogGroup % 4 == 0);
    const int64_t ahead = rows_ahead<T>(n);
    // Not streamed: the sum pass stores x - m to y, so that y's lines are fetched for
    // ownership while the exps are computed, not in the light write pass (which then
    // reads y from L1; -10% time on (8192, 128) out of cache). In place, a group that
    // falls back below redoes some rows from x - m instead of x: the same bits (its
    // max is exactly 0, and d - 0 = d). Not for float16, whose y would round x - m.
    const bool diff = !kStream && std::is_same_v<S, C>;
    for (; r + kLogGroup <= rows; r += kLogGroup) {
      C m[kLogGroup], ls[kLogGroup];
      SumExp s[kLogGroup];
      const S* xs[kLogGroup];
      S* ys[kLogGroup];
      for (int g = 0; g < kLogGroup; ++g) {
        xs[g] = x + (r + g) * ldx;
        ys[g] = y + (r + g) * ldy;
      }
      bool ok = true;
      // the max and sum passes four rows at a time where short (as grouped_rows)
      const auto sums = [&](auto group) {
        constexpr int R = decltype(group)::value;
        S* none[R] = {};
        for (int g = 0; g < kLogGroup; g += R) {
          prefetch_rows<T>(x, ldx, n, r + g + ahead, R);
          bool nf;
          rows_max_nf<T, R>(xs + g, n, m + g, nf);
          for (int q = 0; q < R; ++q) ok &= finite<T>(m[g + q]);
          if (!ok) continue;
          if (diff)  // x - m to y (finished in place below)
            rows_sum_exp_rt<T, R, false, S, true>(xs + g, ys + g, n, m + g, s + g, false, nf);
          else
            rows_sum_exp_rt<T, R, false>(xs + g, none, n, m + g, s + g, false, nf);
        }
      };
      if (n * int64_t(sizeof(S)) <= kQuadRowsMaxBytes)
        sums(std::integral_constant<int, 4>());
      else
        sums(std::integral_constant<int, 2>());
      for (int g = 0; ok && g < kLogGroup; ++g) ok &= s[g].sum == s[g].sum;
      if (!ok) {
        for (int g = 0; g < kLogGroup; ++g) log_softmax_one<T, kStream>(xs[g], ys[g], n);
        continue;
      }
      alignas(64) double rest[kLogGroup], lg[kLogGroup];
      for (int g = 0; g < kLogGroup; ++g) rest[g] = s[g].rest;
      for (int g = 0; g < kLogGroup; g += 4) log1p_rest4<T>(rest + g, lg + g);
      for (int g = 0; g < kLogGroup; ++g) ls[g] = C(lg[g]);
      if (diff) {
        // y holds x - m: ((x - m) - 0) - ls, the bits of rows_log_finish from x
        const C zero[2] = {C(0), C(0)};
        for (int g = 0; g < kLogGroup; g += 2)
          log_finish_rows<T, 2, false>(ys + g, ys + g, n, zero, ls + g);
      } else {
        for (int g = 0; g < kLogGroup; g += 2)
          log_finish_rows<T, 2, kStream>(xs + g, ys + g, n, m + g, ls + g);
      }
    }
    for (; !kStream && r + 2 <= rows; r += 2) {
      const typename T::S* xs[2] = {x + r * ldx, x + (r + 1) * ldx};
      typename T::S* ys[2] = {y + r * ldy, y + (r + 1) * ldy};
      rows_log_softmax<T, 2>(xs, ys, n);
    }
  }
  for (; r < rows; ++r) log_softmax_one<T, kStream>(x + r * ldx, y + r * ldy, n);
  if constexpr (kStream) T::fence();
}

template <class T>
void log_softmax_rows(const typename T::S* x, int64_t ldx, typename T::S* y, int64_t ldy,
                      int64_t n, int64_t rows) {
  log_softmax_rows_impl<T, false>(x, ldx, y, ldy, n, rows);
}
template <class T>
void log_softmax_rows_stream(const typename T::S* x, int64_t ldx, typename T::S* y,
                             int64_t ldy, int64_t n, int64_t rows) {
  if constexpr (kCanStreamRows<T>) log_softmax_rows_impl<T, true>(x, ldx, y, ldy, n, rows);
}

template <class T>
void reduce_rows(const typename T::S* x, int64_t ldx, int64_t n, int64_t rows, Partial* out) {
  if constexpr (kShortRows<T>)
    if (n <= kShortRowMax) return short_rows<T, Kind::lse>(x, ldx, nullptr, 0, n, rows, out);
  int64_t r = grouped_rows<T, true>(x, ldx, n, rows, [&](int64_t r0, auto group) {
    auto xs = group_ptrs(x, ldx, r0, group);
    rows_reduce<T, decltype(group)::value>(xs.data(), n, out + r0);
  });
  for (; r < rows; ++r) out[r] = reduce<T>(x + r * ldx, n);
}

// ---- panels ----------------------------------------------------------------------
// Lanes contiguous, reduced axis strided: element (i, j) is x[i * ldx + j], i < n the
// reduced index, j < w the lane. The panel is swept in memory order — every pass
// reads whole row segments of up to kSweepLanes lanes, so the hardware prefetchers
// stream it and each page is used whole (a narrow column tile would touch a new page
// per element row and defeat them) — in blocks of kSweepRows rows:
//   a  the block's max per lane (from memory),
//   b  the block's sum of exp(x - mu) per lane, mu = the running max including this
//      block (the block is still in cache; the next one is prefetched meanwhile),
//      merged into the running sum, which is first rescaled by exp(mu_old - mu_new)
//      where the max grew: the online normalizer of Milakov & Gimelshein, per block
//      and lane rather than per element;
// then one write pass y = exp(x - mu) / sum (log_softmax: (x - mu) - log sum).
// x is read twice from memory and y written once, the traffic of the long-row plan,
// at any n. Lanes never interact and every lane runs the same operations whatever w
// or its position (tails are masked), with fixed blocks, so a lane's bits depend only
// on its own column.
//
// Per-lane specials without branches in the loops: mu = the max where finite, +inf
// where it is +inf (softmax, log_softmax), else 0, so x - mu <= 0 or NaN and the
// x <= 0 exp serves; the sum is NaN iff the lane holds a NaN or a +inf (then the lane
// is all NaN either way). logsumexp must tell those apart (+inf alone gives +inf): it
// subtracts 0 on a +inf lane and uses the full-range exp, whose +inf only gives +inf.
// The rescale factor is 0 while the lane has only met -inf (its sum is 0, or NaN,
// which stays NaN), 1 where mu did not move, else exp(mu_old - mu_new) in double (the
// ISA's F64 exp, vectorized). The write pass then uses a per-lane factor a: 1/sum,
// NaN (a NaN or +inf in the lane: NaN everywhere) or 0 (only -inf: exp(-inf - 0) * 0
// = 0); log_softmax: a = log(sum), NaN, or 0 (then (-inf - 0) - 0 = -inf).
//
// Accuracy: the max's own term is exactly 1 in its block's sum (x - mu = 0) and is
// never rescaled afterwards (mu no longer moves), so rest = (sum - 1) + compensation
// keeps SPEC's "largest term set apart"; a rescaled partial sum carries the rounding
// of mu_old - mu_new, the same |x - max| / 2 ULP every float softmax pays per term.

// Lanes per chunk: a 16 KiB float32 row segment. Narrower segments at a large stride
// cost up to 1.8x in memory time here (measured with plain copies of column chunks:
// 4 KiB segments 1.8x, 16 KiB and up 1.0-1.2x of a whole copy).
constexpr int64_t kSweepLanes = 4096;
// Rows per block: a block of x (kSweepLanes wide) is ~256 KiB, so it and the next
// one (prefetched during pass b) share the L2. A constant per dtype: the blocks set
// the order of a lane's sum, so they must not depend on the panel's shape.
template <class S>
constexpr int64_t kSweepRows = std::max<int64_t>(4, (int64_t(256) << 10) / (kSweepLanes * int64_t(sizeof(S))));

// Panels whose output is at least this large are written with streaming stores.
constexpr int64_t kSweepStreamBytes = int64_t(4) << 20;
// Software prefetch of `bytes` from p (integer arithmetic: the rows ahead may lie past
// the panel; a prefetch never faults).
template <int kRw>
inline void prefetch_span(uintptr_t p, uintptr_t bytes) {
  for (uintptr_t b = 0; b < bytes; b += 64)
    __builtin_prefetch(reinterpret_cast<const void*>(p + b), kRw, 3);
  __builtin_prefetch(reinterpret_cast<const void*>(p + bytes - 1), kRw, 3);
}

template <class T, Kind kKind>
FASTSOFTMAX_PASS typename T::V panel_exp(typename T::V d) {
  if constexpr (kKind == Kind::lse)
    return T::exp(d);
  else
    return T::exp_le0(d);
}

// Per-chunk state, one entry per lane (a chunk's lanes are padded to whole vectors;
// the padding lanes load -inf and are never written). The write pass's vectors start
// at a 64-byte boundary of y, so they may read up to a vector past the last lane.
template <class T>
struct SweepState {
  using C = typename T::C;
  static constexpr int64_t kPad = 64;
  alignas(64) C m[kSweepLanes];            // running max (NaN may be dropped: see rows)
  alignas(64) C mu[kSweepLanes + kPad];    // what is subtracted (see above)
  alignas(64) C bm[kSweepLanes + kPad];    // this block's max, then the write factor
  alignas(64) double s[kSweepLanes], c[kSweepLanes];  // running sum, compensation
};

// Pass b for one group of kV vectors at lane offset j (the last vector holding kp
// lanes): where the block's max exceeds a lane's running max, mu moves and the
// lane's running sum is rescaled (in memory, before it is loaded); then the block
// [i0, i0 + nb) is added to the running sums, which live in the accumulators while
// the group's rows are summed. The next block's rows of this group are prefetched
// meanwhile, so pass a of that block reads from cache.
template <class T, int kV, Kind kKind>
void sweep_sum_group(const typename T::S* x, int64_t ldx, int64_t i0, int64_t nb, int64_t kp,
                     int64_t j, SweepState<T>& st) {
  using C = typename T::C;
  using V = typename T::V;
  using Acc = typename T::Acc;
  constexpr int64_t W = T::W;
  constexpr int64_t L = kV * W;
  constexpr C kInf = kInfC<T>;
  constexpr uintptr_t kRowBytes = uintptr_t(L) * sizeof(typename T::S);
  const uintptr_t xs = uintptr_t(ldx) * sizeof(*x);
  const uintptr_t next =
      reinterpret_cast<uintptr_t>(x + j) + uintptr_t(i0 + kSweepRows<typename T::S>) * xs;

  C* const m = st.m + j;
  C* const mu = st.mu + j;
  const C* const bm = st.bm + j;
  double* const s = st.s + j;
  double* const c = st.c + j;
  bool moved = false;  // (a NaN block max compares false: NaN lanes go NaN by their sum)
  for (int64_t l = 0; l < L; ++l) moved |= bm[l] > m[l];
  if (moved) {
    alignas(64) double f[L];
    for (int64_t l = 0; l < L; ++l) {
      const C mo = m[l], mn = bm[l] > mo ? bm[l] : mo;
      const C muo = mu[l];
      const C mun = (mn - mn == C(0))                           ? mn
                    : (kKind != Kind::lse && mn == kInf) ? mn
                                                         : C(0);
      f[l] = mo == -kInf ? -HUGE_VAL : muo == mun ? 0.0 : double(muo) - double(mun);
      m[l] = mn;
      mu[l] = mun;
    }
    for (int64_t l = 0; l < L; l += F64::W) F64::storec(f + l, F64::exp(F64::loadc(f + l)));
    for (int64_t l = 0; l < L; ++l) {
      s[l] *= f[l];
      c[l] *= f[l];
    }
  }

  V vmu[kV];
  Acc acc[kV];
  FASTSOFTMAX_UNROLL
  for (int v = 0; v < kV; ++v) {
    vmu[v] = T::loadc(mu + v * W);
    acc[v] = T::acc_from_parts(s + v * W, c + v * W);
  }
  auto row_exps = [&](int64_t i, V* e) {
    prefetch_span<0>(next + uintptr_t(i - i0) * xs, kRowBytes);
    const typename T::S* r = x + i * ldx + j;
    FASTSOFTMAX_UNROLL
    for (int v = 0; v < kV - 1; ++v) e[v] = panel_exp<T, kKind>(T::sub(T::load(r + v * W), vmu[v]));
    e[kV - 1] = panel_exp<T, kKind>(T::sub(T::load_n(r + (kV - 1) * W, kp), vmu[kV - 1]));
  };
  // Rows in pairs: acc_add2 may pre-add the two exps in float (as acc_add4 does); the
  // pairing depends only on the row's place in its block.
  int64_t i = i0;
  for (; i + 2 <= i0 + nb; i += 2) {
    V e0[kV], e1[kV];
    row_exps(i, e0);
    row_exps(i + 1, e1);
    FASTSOFTMAX_UNROLL
    for (int v = 0; v < kV; ++v) T::acc_add2(acc[v], e0[v], e1[v]);
  }
  if (i < i0 + nb) {
    V e0[kV];
    row_exps(i, e0);
    FASTSOFTMAX_UNROLL
    for (int v = 0; v < kV; ++v) T::acc_add(acc[v], e0[v]);
  }
  FASTSOFTMAX_UNROLL
  for (int v = 0; v < kV; ++v) T::acc_parts(acc[v], s + v * W, c + v * W);
}

// Pass b over a chunk of nv vectors (the last holding kp lanes), in groups of kPanelV.
template <class T, Kind kKind>
void sweep_sum(const typename T::S* x, int64_t ldx, int64_t i0, int64_t nb, int64_t nv,
               int64_t kp, SweepState<T>& st) {
  constexpr int64_t W = T::W;
  constexpr int kG = T::kPanelV;
  int64_t v0 = 0;
  for (; v0 + kG < nv; v0 += kG) sweep_sum_group<T, kG, kKind>(x, ldx, i0, nb, W, v0 * W, st);
  switch (nv - v0) {  // 1 <= nv - v0 <= kPanelV <= 4
    case 1: sweep_sum_group<T, 1, kKind>(x, ldx, i0, nb, kp, v0 * W, st); break;
    case 2:
      if constexpr (kG >= 2) sweep_sum_group<T, 2, kKind>(x, ldx, i0, nb, kp, v0 * W, st);
      break;
    case 3:
      if constexpr (kG >= 3) sweep_sum_group<T, 3, kKind>(x, ldx, i0, nb, kp, v0 * W, st);
      break;
    case 4:
      if constexpr (kG >= 4) sweep_sum_group<T, 4, kKind>(x, ldx, i0, nb, kp, v0 * W, st);
      break;
    default: break;
  }
}

// One chunk of wc <= kSweepLanes lanes.
template <class T, Kind kKind>
void sweep_chunk(const typename T::S* x, int64_t ldx, typename T::S* y, int64_t ldy, int64_t n,
                 int64_t wc, typename T::C* lse, SweepState<T>& st) {
  using C = typename T::C;
  using V = typename T::V;
  constexpr int64_t W = T::W;
  const int64_t nv = (wc + W - 1) / W, kp = wc - (nv - 1) * W, lanes = nv * W;
  constexpr C kInf = kInfC<T>;
  for (int64_t j = 0; j < lanes; ++j) {
    st.m[j] = -kInf;
    st.mu[j] = C(0);
    st.s[j] = st.c[j] = 0.0;
  }
  constexpr int64_t kRows = kSweepRows<typename T::S>;
  for (int64_t i0 = 0; i0 < n; i0 += kRows) {
    const int64_t nb = std::min(kRows, n - i0);
    // a: the block's max, row by row (memory order)
    for (int64_t v = 0; v < nv; ++v) T::storec(st.bm + v * W, T::set1(-kInf));
    for (int64_t i = i0; i < i0 + nb; ++i) {
      const typename T::S* r = x + i * ldx;
      for (int64_t v = 0; v < nv - 1; ++v)
        T::storec(st.bm + v * W, T::max(T::loadc(st.bm + v * W), T::load(r + v * W)));
      T::storec(st.bm + (nv - 1) * W,
                T::max(T::loadc(st.bm + (nv - 1) * W), T::load_n(r + (nv - 1) * W, kp)));
    }
    // b: the block's sums, merged into the running ones
    sweep_sum<T, kKind>(x, ldx, i0, nb, nv, kp, st);
  }

  // rest = sum - 1, the max's own term set apart; +inf where the sum met +inf
  // (logsumexp's +inf lanes: the compensation is then inf - inf), NaN where a NaN.
  auto rest_of = [&](int64_t j) { return st.s[j] == HUGE_VAL ? HUGE_VAL : (st.s[j] - 1.0) + st.c[j]; };
  if constexpr (kKind == Kind::lse) {
    for (int64_t j = 0; j < wc; ++j) {
      const C mj = st.m[j];
      const double rest = rest_of(j);
      lse[j] = (rest != rest)       ? kNaNC<T>
               : !(mj - mj == C(0)) ? mj  // +inf or -inf
                                    : C(double(mj) + log1p_rest<T>(rest));
    }
    return;
  } else {
    // the write pass's factor a (kept in st.bm, whose block work is done)
    C* a = st.bm;
    int64_t poisoned = 0;
    for (int64_t j = 0; j < lanes; ++j) {
      const C mj = st.m[j];
      const double rest = rest_of(j);
      if (rest != rest || mj == kInf) {
        a[j] = C(0);  // any: the lane is overwritten with NaN below
        poisoned += j < wc;
      } else if (!(mj - mj == C(0))) {  // -inf (or a padding lane)
        a[j] = C(0);
      } else {
        a[j] = kKind == Kind::softmax ? C(1.0 / (1.0 + rest)) : C(log1p_rest<T>(rest));
      }
    }
    // The write pass, row by row in memory order. Large panels (whose output would
    // not stay in cache anyway) are written with non-temporal stores where the ISA has
    // them: the head of each row segment up to a 64-byte boundary and its tail with
    // plain masked stores, the same arithmetic everywhere (the same bits).
    const auto value = [&](const typename T::S* r, int64_t j, int64_t k) {
      const V xv = k == W ? T::load(r + j) : T::load_n(r + j, k);
      const V muv = T::loadc(st.mu + j), av = T::loadc(a + j);
      if constexpr (kKind == Kind::log_softmax)
        return T::sub(T::sub(xv, muv), av);
      else
        return T::mul(T::exp_le0(T::sub(xv, muv)), av);
    };
    constexpr bool kCanStream = HasStream<T>::value && std::is_same_v<typename T::S, C>;
    const bool stream = kCanStream && n * wc * int64_t(sizeof(C)) >= kSweepStreamBytes;
    for (int64_t i = 0; i < n; ++i) {
      const typename T::S* r = x + i * ldx;
      typename T::S* o = y + i * ldy;
      if constexpr (kCanStream) {
        if (stream) {
          stream_row<T>(o, wc, [&](int64_t j, int64_t k) { return value(r, j, k); });
          continue;
        }
      }
      int64_t j = 0;
      for (; j + W <= wc; j += W) T::store(o + j, value(r, j, W));
      if (j < wc) T::store_n(o + j, wc - j, value(r, j, wc - j));
    }
    if constexpr (kCanStream)
      if (stream) T::fence();
    // Lanes with a NaN or +inf are all NaN: the canonical NaN, as the row kernels
    // write, since arithmetic on two NaNs keeps either payload depending on operand
    // order, which the compiler may pick differently for full and masked vectors.
    if (poisoned) {
      typename T::S nan_s[W];
      T::store(nan_s, T::set1(kNaNC<T>));
      for (int64_t j = 0; j < wc; ++j) {
        if (!(rest_of(j) != rest_of(j) || st.m[j] == kInf)) continue;
        for (int64_t i = 0; i < n; ++i) y[i * ldy + j] = nan_s[0];
      }
    }
  }
}

// ---- panel tiles -----------------------------------------------------------------
// Where a few hundred bytes of every row fit in the scratch (n rows of tw lanes in
// kTileScratchBytes, tw * sizeof(S) >= kTileMinBytes), the panel goes in column
// tiles of tw lanes, each in the three passes of a short row:
//   0  each lane's max over the n rows;
//   1  e = exp(x - mu) and its per-lane sum, e kept in the scratch (x from cache: a
//      tile's x, a few MiB, was read by pass 0 just before);
//   2  y = e * (1 / sum), streamed when large (log_softmax keeps no e: y = (x - mu)
//      - log(sum), x from cache again).
// Pass 0 of tile t + 1 runs in the sweep down the rows of pass 1 of tile t, its rows
// prefetched (into L2) kTileAhead rows ahead from inside the exps, so the memory
// reads x under the exps; alone, pass 0 left the ALUs idle for a third of the time.
// So x is read once from memory and y written once, with one exp per element: the
// traffic and arithmetic of the short-row plan, where the sweep below reads x twice
// and takes two exps (softmax). Rows go in memory order: a group of lanes down the
// rows would hit one cache set per row at strides of 4 KiB multiples. Tiles start on
// y's 64-byte lines: a line shared by two tiles would be written in two halves at
// different times (a streamed partial line is written back with a read) and, x being
// placed as y as a rule, read twice. (Measured on a Zen 3, AVX2, (4096, 4096) axis 0:
// pass by pass 2.6x copy; with pass 0 in pass 1 and both prefetches 2.2x; writing the
// tile before in that sweep too was no faster: its scratch then competes with x for
// the L3.) Ops with exp_le0_nf (AVX2): pass 0 also takes each lane's min, and a tile
// whose every lane's x - max is above the exp's underflow bound takes that exp (the
// same bits, three operations fewer) in pass 1.
// A lane's sum runs over its rows in order, four at a time (acc_add4, as the rows'
// sums), then a pair, then one, whatever the tile: its bits depend on its column
// alone. Specials as the sweep.
constexpr int64_t kTileScratchBytes = int64_t(2) << 20;
constexpr int64_t kTileMaxLanes = 1024;
// Narrower row segments at a large stride cost 2.5x (128 B) to 4x (64 B) a copy
// here, 256 B 1.1-1.2x, 512 B 1.0x (plain copies of column tiles, 16 KiB stride).
constexpr int64_t kTileMinBytes = 256;
// Rows ahead: the next tile's (from memory) and this tile's (from the L3).
constexpr int64_t kTileAhead = 8;

// Lanes per 64-byte line of x (at least a vector): tiles are whole lines.
template <class T>
constexpr int64_t kTileLine = std::max<int64_t>(T::W, 64 / int64_t(sizeof(typename T::S)));

// One tile: its place and per-lane state.
template <class T>
struct Tile {
  using S = typename T::S;
  using C = typename T::C;
  static constexpr int64_t kPad = 64;  // stream_row's vectors may pass the last lane
  alignas(64) C m[kTileMaxLanes + kPad];   // pass 0's max (NaN may be dropped)
  alignas(64) C mn[kTileMaxLanes + kPad];  // and min (Ops with exp_le0_nf)
  alignas(64) C mu[kTileMaxLanes + kPad];  // what is subtracted
  alignas(64) C a[kTileMaxLanes + kPad];   // the write factor
  alignas(64) double s[kTileMaxLanes], c[kTileMaxLanes];  // sum, compensation
  alignas(64) unsigned char bad[kTileMaxLanes];            // NaN or +inf in the lane
  const S* x;
  S* y;
  int64_t wc, nv, kp, lanes;
  bool nf;  // every lane's x - mu is >= T::kExpLe0NfMin: pass 1 takes exp_le0_nf
};

// Per thread and dtype, allocated on the thread's first tiled panel and kept: two
// tiles' state and the scratch (2 MiB + a row of padding).
template <class T>
struct TileWork {
  using C = typename T::C;
  Tile<T> t[2];
  std::unique_ptr<C[]> e{new C[kTileScratchBytes / sizeof(C) + Tile<T>::kPad]};
};
template <class T>
TileWork<T>& tile_work() {
  static thread_local std::unique_ptr<TileWork<T>> w;
  if (!w) w.reset(new TileWork<T>);
  return *w;
}

template <class T>
FASTSOFTMAX_PASS void tile_max_row(const typename T::S* r, Tile<T>& t) {
  using V = typename T::V;
  constexpr int64_t W = T::W;
  const int64_t nv = t.nv, kp = t.kp;  // (locals: the stores may alias t's fields)
  typename T::C* const m = t.m;
  typename T::C* const mn = t.mn;
  const auto step = [&](int64_t j, V v) {
    T::storec(m + j, T::max(T::loadc(m + j), v));
    if constexpr (HasExpNf<T>::value) T::storec(mn + j, T::min(T::loadc(mn + j), v));
  };
  for (int64_t v = 0; v < nv - 1; ++v) step(v * W, T::load(r + v * W));
  step((nv - 1) * W, T::load_n(r + (nv - 1) * W, kp));  // (padding: -inf, never read)
}

// Pass 1 for kR (4, 2 or 1) rows from row i: e (softmax) to the scratch rows, the
// exps added to the per-lane sums, loaded and stored per vector (four rows: pre-added
// in float by acc_add4 where it adds into one accumulator, else as two pairs). One 64-byte line
// per row in each of the first `pf_lanes` lanes at pf (the next tile's rows ahead)
// and of this tile's rows kTileAhead ahead is prefetched per line of lanes.
template <class T, Kind kKind, int kR, bool kNf>
FASTSOFTMAX_PASS void tile_sum_rows(Tile<T>& t, typename T::C* scratch, int64_t i, int64_t ldx,
                                    uintptr_t pf, int64_t pf_lanes) {
  using S = typename T::S;
  using V = typename T::V;
  constexpr int64_t W = T::W;
  constexpr int64_t kLineLanes = kTileLine<T>;
  const uintptr_t xs = uintptr_t(ldx) * sizeof(S);
  // (locals: the stores below may alias t's fields)
  const int64_t nv = t.nv, kp = t.kp, lanes = t.lanes;
  const S* const r = t.x + i * ldx;
  typename T::C* const o = scratch + i * lanes;
  const uintptr_t ahead = reinterpret_cast<uintptr_t>(r) + kTileAhead * xs;
  const auto step = [&](int64_t j, int64_t k) {
    if (j % kLineLanes == 0) {
      const uintptr_t off = uintptr_t(j) * sizeof(S);
      FASTSOFTMAX_UNROLL
      for (int q = 0; q < kR; ++q) __builtin_prefetch(reinterpret_cast<const void*>(ahead + q * xs + off), 0, 3);
      if (j < pf_lanes) {
        FASTSOFTMAX_UNROLL
        for (int q = 0; q < kR; ++q) __builtin_prefetch(reinterpret_cast<const void*>(pf + q * xs + off), 0, 1);
      }
    }
    const V mu = T::loadc(t.mu + j);
    V e[kR];
    FASTSOFTMAX_UNROLL
    for (int q = 0; q < kR; ++q) {
      const S* const rq = r + q * ldx;
      if (k == W)  // (kNf: a tail's padding lanes, -inf, need the flush)
        e[q] = exp_le0_maybe_nf<T, kNf>(T::sub(T::load(rq + j), mu));
      else
        e[q] = T::exp_le0(T::sub(T::load_n(rq + j, k), mu));
      if constexpr (kKind == Kind::softmax) T::storec(o + q * lanes + j, e[q]);
    }
    typename T::Acc acc = T::acc_from_parts(t.s + j, t.c + j);
    if constexpr (kR == 4 && OneAcc<T>::value) {
      T::acc_add4(&acc, e[0], e[1], e[2], e[3]);
    } else if constexpr (kR == 4) {  // (acc_add4 would use four accumulators)
      T::acc_add2(acc, e[0], e[1]);
      T::acc_add2(acc, e[2], e[3]);
    } else if constexpr (kR == 2)
      T::acc_add2(acc, e[0], e[1]);
    else
      T::acc_add(acc, e[0]);
    T::acc_parts(acc, t.s + j, t.c + j);
  };
  for (int64_t v = 0; v < nv - 1; ++v) step(v * W, W);
  step((nv - 1) * W, kp);
}

// After pass 0: mu = the max where finite, +inf where +inf (x - mu is then -inf or
// NaN), else 0; the sums start at 0.
template <class T>
void tile_mu(Tile<T>& t) {
  using C = typename T::C;
  bool nf = HasExpNf<T>::value;
  for (int64_t l = 0; l < t.lanes; ++l) {
    const C m = t.m[l];
    t.mu[l] = (m - m == C(0)) || m == kInfC<T> ? m : C(0);
    t.s[l] = t.c[l] = 0.0;
    if constexpr (HasExpNf<T>::value)  // (false for a NaN or non-finite max or min)
      if (l < t.wc) nf &= C(t.mn[l] - m) >= T::kExpLe0NfMin;
  }
  t.nf = nf;
}

// After pass 1: the write factor a per lane, as the sweep's (rest = sum - 1, the
// max's own term set apart); returns whether a lane holds a NaN or +inf.
template <class T, Kind kKind>
bool tile_factors(Tile<T>& t) {
  using CV = LanesC<T>;
  bool poisoned = false;
  for (int64_t l0 = 0; l0 < t.lanes; l0 += T::W) {  // (lanes: whole vectors)
    CV m, a;
    LanesI<T> bad;
    std::memcpy(&m, t.m + l0, sizeof m);
    lane_factors<T, kKind>(m, t.s + l0, t.c + l0, a, bad);
    std::memcpy(t.a + l0, &a, sizeof a);
    for (int64_t q = 0; q < T::W; ++q) {
      t.bad[l0 + q] = bad[q] != 0;
      poisoned |= bad[q] != 0 && l0 + q < t.wc;
    }
  }
  return poisoned;
}

// Pass 2, then the lanes with a NaN or +inf: the canonical NaN, as the sweep's.
template <class T, Kind kKind>
void tile_write(const Tile<T>& t, const typename T::C* scratch, int64_t n, int64_t ldx,
                int64_t ldy, bool stream, bool poisoned) {
  using S = typename T::S;
  using V = typename T::V;
  constexpr int64_t W = T::W;
  constexpr bool kCanStream = HasStream<T>::value && std::is_same_v<S, typename T::C>;
  const int64_t wc = t.wc, lanes = t.lanes;  // (locals: the stores may alias t's fields)
  const S* const x = t.x;
  S* const y = t.y;
  const uintptr_t row_bytes = uintptr_t(wc) * sizeof(S);
  for (int64_t i = 0; i < n; ++i) {
    const S* const r = x + i * ldx;
    const typename T::C* const e = scratch + i * lanes;
    S* const o = y + i * ldy;
    if constexpr (kKind == Kind::log_softmax)
      prefetch_span<0>(reinterpret_cast<uintptr_t>(r + kTileAhead * ldx), row_bytes);
    const auto value = [&](int64_t j, int64_t k) {
      if constexpr (kKind == Kind::log_softmax) {
        const V xv = k == W ? T::load(r + j) : T::load_n(r + j, k);
        return T::sub(T::sub(xv, T::loadc(t.mu + j)), T::loadc(t.a + j));
      } else {
        return T::mul(T::loadc(e + j), T::loadc(t.a + j));
      }
    };
    if constexpr (kCanStream) {
      if (stream) {
        stream_row<T>(o, wc, value);
        continue;
      }
    }
    int64_t j = 0;
    for (; j + W <= wc; j += W) T::store(o + j, value(j, W));
    if (j < wc) T::store_n(o + j, wc - j, value(j, wc - j));
  }
  if constexpr (kCanStream)
    if (stream) T::fence();
  if (!poisoned) return;
  S nan_s[W];
  T::store(nan_s, T::set1(kNaNC<T>));
  for (int64_t l = 0; l < t.wc; ++l)
    if (t.bad[l])
      for (int64_t i = 0; i < n; ++i) t.y[i * ldy + l] = nan_s[0];
}

// The panel in tiles of tw lanes, the first one `first` lanes (see above).
template <class T, Kind kKind>
void panel_tiles(const typename T::S* x, int64_t ldx, typename T::S* y, int64_t ldy, int64_t n,
                 int64_t w, int64_t tw, int64_t first) {
  using S = typename T::S;
  constexpr int64_t W = T::W;
  TileWork<T>& wk = tile_work<T>();
  typename T::C* const scratch = wk.e.get();
  const bool stream = n * w * int64_t(sizeof(typename T::C)) >= kSweepStreamBytes;
  int64_t j = 0;  // the next tile's first lane
  const auto start = [&](Tile<T>& t) {
    const int64_t wc = std::min(j == 0 ? first : tw, w - j);
    t.x = x + j;
    t.y = y + j;
    t.wc = wc;
    t.nv = (wc + W - 1) / W;
    t.kp = wc - (t.nv - 1) * W;
    t.lanes = t.nv * W;
    for (int64_t v = 0; v < t.nv; ++v) {
      T::storec(t.m + v * W, T::set1(-kInfC<T>));
      T::storec(t.mn + v * W, T::set1(kInfC<T>));
    }
    j += wc;
  };

  Tile<T>* cur = &wk.t[0];
  start(*cur);
  const uintptr_t xs = uintptr_t(ldx) * sizeof(S);
  for (int64_t i = 0; i < n; ++i) {  // pass 0 of the first tile alone
    prefetch_span<0>(reinterpret_cast<uintptr_t>(cur->x) + uintptr_t(i + kTileAhead) * xs,
                     uintptr_t(cur->wc) * sizeof(S));
    tile_max_row<T>(cur->x + i * ldx, *cur);
  }
  tile_mu<T>(*cur);
  for (;;) {
    Tile<T>* next = nullptr;
    if (j < w) {
      next = cur == &wk.t[0] ? &wk.t[1] : &wk.t[0];
      start(*next);
    }
    // one sweep down the rows: pass 1 of this tile, pass 0 of the next
    const auto rows = [&](int64_t i, auto kR) {
      uintptr_t pf = 0;
      int64_t pf_lanes = 0;
      if (next) {
        pf = reinterpret_cast<uintptr_t>(next->x + (i + kTileAhead) * ldx);
        pf_lanes = next->wc;
        if (next->wc > cur->lanes)  // (a first tile narrower than the next)
          for (int q = 0; q < kR; ++q)
            prefetch_span<0>(pf + q * xs + uintptr_t(cur->lanes) * sizeof(S),
                             uintptr_t(next->wc - cur->lanes) * sizeof(S));
        for (int q = 0; q < kR; ++q) tile_max_row<T>(next->x + (i + q) * ldx, *next);
      }
      if (cur->nf)
        tile_sum_rows<T, kKind, decltype(kR)::value, true>(*cur, scratch, i, ldx, pf, pf_lanes);
      else
        tile_sum_rows<T, kKind, decltype(kR)::value, false>(*cur, scratch, i, ldx, pf, pf_lanes);
    };
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) rows(i, std::integral_constant<int, 4>());
    if (i + 2 <= n) {
      rows(i, std::integral_constant<int, 2>());
      i += 2;
    }
    if (i < n) rows(i, std::integral_constant<int, 1>());
    const bool poisoned = tile_factors<T, kKind>(*cur);
    tile_write<T, kKind>(*cur, scratch, n, ldx, ldy, stream, poisoned);
    if (!next) break;
    tile_mu<T>(*next);
    cur = next;
  }
}

// The state (112-160 KiB) is too big for every thread's stack (musl gives threads
// 128 KiB): one per thread and dtype, allocated on the thread's first panel and kept
// (the only allocation in the kernels).
template <class T>
SweepState<T>& sweep_state() {
  static thread_local std::unique_ptr<SweepState<T>> st;
  if (!st) st.reset(new SweepState<T>);
  return *st;
}

template <class T, Kind kKind>
void panel(const typename T::S* x, int64_t ldx, typename T::S* y, int64_t ldy, int64_t n,
           int64_t w, typename T::C* lse) {
  using S = typename T::S;
  using C = typename T::C;
  if constexpr (kKind != Kind::lse) {
    // whole 64-byte lines of lanes, as many as the scratch holds for n rows
    constexpr int64_t kLine = kTileLine<T>;
    int64_t tw = std::min(kTileMaxLanes, kTileScratchBytes / (n * int64_t(sizeof(C))) / kLine * kLine);
    if (tw * int64_t(sizeof(S)) >= kTileMinBytes) {
      const int64_t tiles = (w + tw - 1) / tw;
      tw = std::min(tw, ((w + tiles - 1) / tiles + kLine - 1) / kLine * kLine);  // balanced
      // tiles end on y's lines (the first one early where y starts mid-line)
      const uintptr_t ya = reinterpret_cast<uintptr_t>(y);
      const int64_t head = ya % sizeof(S) ? 0 : int64_t((64 - ya % 64) % 64 / sizeof(S));
      panel_tiles<T, kKind>(x, ldx, y, ldy, n, w, tw, head ? head - kLine + tw : tw);
      return;
    }
  }
  SweepState<T>& st = sweep_state<T>();
  for (int64_t j = 0; j < w; j += kSweepLanes)
    sweep_chunk<T, kKind>(x + j, ldx, y ? y + j : y, ldy, n, std::min(kSweepLanes, w - j),
                          lse ? lse + j : lse, st);
}

template <class T>
void softmax_panel(const typename T::S* x, int64_t ldx, typename T::S* y, int64_t ldy,
                   int64_t n, int64_t w) {
  panel<T, Kind::softmax>(x, ldx, y, ldy, n, w, nullptr);
}
template <class T>
void log_softmax_panel(const typename T::S* x, int64_t ldx, typename T::S* y, int64_t ldy,
                       int64_t n, int64_t w) {
  panel<T, Kind::log_softmax>(x, ldx, y, ldy, n, w, nullptr);
}
template <class T>
void logsumexp_panel(const typename T::S* x, int64_t ldx, int64_t n, int64_t w,
                     typename T::C* out) {
  panel<T, Kind::lse>(x, ldx, nullptr, 0, n, w, out);
}

// y = C(x) / t, -inf where the mask is false (KernelSet::gather_row): whole vectors,
// then the tail through a vector's worth of stack (y holds exactly n elements).
template <class T, bool kDivide>
FASTSOFTMAX_PASS void gather_values(const typename T::S* x, typename T::C* y, int64_t n,
                                    typename T::V vt) {
  using V = typename T::V;
  constexpr int64_t W = T::W;
  const auto value = [&](V v) { return kDivide ? T::div(v, vt) : v; };
  int64_t i = 0;
  for (; i + 2 * W <= n; i += 2 * W) {
    T::storec(y + i, value(T::load(x + i)));
    T::storec(y + i + W, value(T::load(x + i + W)));
  }
  for (; i + W <= n; i += W) T::storec(y + i, value(T::load(x + i)));
  if (i < n) {
    alignas(64) typename T::C tail[W];
    T::storec(tail, value(T::load_n(x + i, n - i)));
    for (int64_t k = 0; i + k < n; ++k) y[i + k] = tail[k];
  }
}
// y = m ? y : -inf in integer bit operations, which the compiler vectorizes (as a
// select it kept a branch per element, mispredicted on any mixed mask).
template <class T>
FASTSOFTMAX_PASS void mask_values(const bool* m, typename T::C* y, int64_t n) {
  using C = typename T::C;
  using U = std::conditional_t<sizeof(C) == 4, uint32_t, uint64_t>;
  typedef U __attribute__((may_alias)) UA;  // (y's floats read and written as bits)
  static_assert(sizeof(U) == sizeof(C));
  const C ninf = -kInfC<T>;
  U ninf_bits;
  std::memcpy(&ninf_bits, &ninf, sizeof ninf);
  UA* __restrict yb = reinterpret_cast<UA*>(y);
  const unsigned char* __restrict mb = reinterpret_cast<const unsigned char*>(m);
  for (int64_t i = 0; i < n; ++i) {
    const U keep = U(0) - U(mb[i] != 0);
    yb[i] = (yb[i] & keep) | (ninf_bits & ~keep);
  }
}

// With a mask, chunk by chunk, so that the mask's pass finds its chunk of y still in
// L1 (a row is up to kBlock elements, half a MiB: a second pass over all of it went
// to L2).
constexpr int64_t kGatherChunk = 2048;
template <class T>
void gather_row(const typename T::S* x, const bool* m, typename T::C* y, int64_t n,
                typename T::C t) {
  using C = typename T::C;
  const auto values = [&](int64_t i, int64_t cnt) {
    if (t != C(1))
      gather_values<T, true>(x + i, y + i, cnt, T::set1(t));
    else
      gather_values<T, false>(x + i, y + i, cnt, T::set1(t));
  };
  if (!m) return values(0, n);
  for (int64_t i = 0; i < n; i += kGatherChunk) {  // (whole vectors but the last chunk)
    const int64_t cnt = std::min(kGatherChunk, n - i);
    values(i, cnt);
    mask_values<T>(m + i, y + i, cnt);
  }
}

// y = x rounded to S (KernelSet::narrow_row): as gather_row, x holds exactly n elements.
template <class T>
void narrow_row(const typename T::C* x, typename T::S* y, int64_t n) {
  constexpr int64_t W = T::W;
  int64_t i = 0;
  for (; i + W <= n; i += W) T::store(y + i, T::loadc(x + i));
  if (i < n) {
    alignas(64) typename T::C tail[W] = {};
    for (int64_t k = 0; i + k < n; ++k) tail[k] = x[i + k];
    T::store_n(y + i, n - i, T::loadc(tail));
  }
}

// KernelSet::weighted_exp_sum (T: the float64 Ops): per lane, s + c accumulates
// w * exp(d) by TwoSum (exact whatever the signs, unlike the row kernels' sums of
// positive terms); the lanes, then the tail's terms one by one, are merged the same way.
template <class T>
void weighted_exp_sum(const double* d, const double* w, int64_t n, double* out) {
  using V = typename T::V;  // (a vector type: GCC's operators apply)
  constexpr int64_t W = T::W;
  V s = T::set1(0.0), c = T::set1(0.0);
  int64_t i = 0;
  for (; i + W <= n; i += W) {
    const V term = T::loadc(w + i) * T::exp_le0(T::loadc(d + i));
    simd::two_sum(s, c, term);
  }
  alignas(64) double ls[W], lc[W];
  T::storec(ls, s);
  T::storec(lc, c);
  double sum = 0.0, comp = 0.0;
  for (int64_t l = 0; l < W; ++l) {
    simd::two_sum(sum, comp, ls[l]);
    comp += lc[l];
  }
  if (i < n) {
    alignas(64) double dt[W], wt[W], et[W];
    for (int64_t l = 0; l < W; ++l) {
      dt[l] = i + l < n ? d[i + l] : -HUGE_VAL;
      wt[l] = i + l < n ? w[i + l] : 0.0;
    }
    T::storec(et, T::loadc(wt) * T::exp_le0(T::loadc(dt)));
    for (int64_t l = 0; i + l < n; ++l) simd::two_sum(sum, comp, et[l]);
  }
  out[0] = sum;
  out[1] = comp;
}

template <class T, class Set>
void fill_set(Set& k) {
  k.softmax_row = softmax_row<T>;
  k.log_softmax_row = log_softmax_row<T>;
  k.reduce = reduce_entry<T>;
  k.softmax_finish = softmax_finish<T>;
  k.log_softmax_finish = log_softmax_finish<T>;
  k.softmax_finish_stream = softmax_finish_stream<T>;
  k.log_softmax_finish_stream = log_softmax_finish_stream<T>;
  if constexpr (HasExpNf<T>::value) k.softmax_finish_min = softmax_finish_min<T>;
  k.softmax_rows = softmax_rows<T>;
  k.log_softmax_rows = log_softmax_rows<T>;
  k.reduce_rows = reduce_rows<T>;
  if constexpr (kCanStreamRows<T>) {
    k.softmax_rows_stream = softmax_rows_stream<T>;
    k.log_softmax_rows_stream = log_softmax_rows_stream<T>;
    k.stream_rows_below_bytes = StreamRowsBelow<T>::value;
  }
  k.softmax_panel = softmax_panel<T>;
  k.log_softmax_panel = log_softmax_panel<T>;
  k.logsumexp_panel = logsumexp_panel<T>;
  k.gather_row = gather_row<T>;
  if constexpr (!std::is_same_v<typename T::S, typename T::C>) k.narrow_row = narrow_row<T>;
  if constexpr (std::is_same_v<typename T::S, double>) k.weighted_exp_sum = weighted_exp_sum<T>;
}
