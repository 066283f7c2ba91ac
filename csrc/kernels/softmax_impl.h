// ISA-generic bodies of the row, block and panel kernels.
//
// This file is included INSIDE an ISA's namespace and target region (avx512.cpp,
// avx2.cpp, neon.cpp), after that file has defined its `Ops` classes, so every
// function here is compiled for that ISA and lives in that ISA's namespace: an
// AVX-512 instantiation can never be linked into another path. It includes nothing
// itself (the including file has <cmath>, <cstring>, <limits>, <type_traits>,
// kernels.h, common.h, simd_common.h above its region).
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
//   set1, max, sub, mul, exp (full range), exp_le0 (for x <= 0 or NaN: x - max in the
//   row kernels, where max is the row's or the merged max), hmax (horizontal max;
//   NaN semantics may vary: callers never rely on max for NaN detection, see below)
//   acc_zero, acc_add(a, v), acc_add2(a, v0, v1) (two vectors into one accumulator)
//   and acc_add4(a[4], v0..v3) (four vectors into up to four accumulators): float
//   data may pre-add them pairwise in float (one or two roundings of relative 2^-24
//   on positive terms), acc_merge(a, b),
//   acc_total(a) -> SumExp {sum, rest}: the sum, and the sum minus 1 (the max's own
//                   term set apart) accurate to the last bits of the sum's low part,
//   acc_lanes(a, double* out)  the W per-lane `rest` values (+inf for a lane whose
//                   sum overflowed, NaN for a lane that met a NaN)
//   s_is_nan(S)
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

template <class T>
constexpr typename T::C kInfC = std::numeric_limits<typename T::C>::infinity();
template <class T>
constexpr typename T::C kNaNC = std::numeric_limits<typename T::C>::quiet_NaN();

// ---- rows ------------------------------------------------------------------------
// Every row function below runs R rows in lockstep (R = 1; or 2 for short rows of a
// batch, whose passes are latency-bound: two independent chains fill the pipeline).
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
constexpr int64_t kPrefetchRow = 8192;  // bytes

//
// D = T::C (float16 rows): kStore writes the exps to a compute-type buffer padded to a
// whole vector, instead of y.
template <class T, int R, bool kStore, bool kPrefetch, class D = typename T::S>
FASTSOFTMAX_PASS void rows_sum_exp(const typename T::S* const* x, D* const* y, int64_t n,
                                   const typename T::C* m, SumExp* out) {
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
  int64_t i = 0;
  for (; i + 4 * W <= n; i += 4 * W) {
    if constexpr (kPrefetch) {
      // integer arithmetic: the address may lie past the end of the array
      const uintptr_t next = reinterpret_cast<uintptr_t>(x[0] + i) + uintptr_t(n) * sizeof(*x[0]);
      for (uintptr_t b = 0; b < 4 * W * sizeof(*x[0]); b += 64)
        __builtin_prefetch(reinterpret_cast<const void*>(next + b), 0, 2);
      if constexpr (!kToY) {
      } else if constexpr (!kStore) {
        if (y[0])
          for (uintptr_t b = 0; b < 4 * W * sizeof(*x[0]); b += 64)
            __builtin_prefetch(reinterpret_cast<const char*>(y[0] + i) + b, 1, 2);
      } else {  // the next row's output, so that its stores here find their lines
        const uintptr_t ynext =
            reinterpret_cast<uintptr_t>(y[0] + i) + uintptr_t(n) * sizeof(*x[0]);
        for (uintptr_t b = 0; b < 4 * W * sizeof(*x[0]); b += 64)
          __builtin_prefetch(reinterpret_cast<const void*>(ynext + b), 1, 2);
      }
    }
    FASTSOFTMAX_UNROLL
    for (int r = 0; r < R; ++r) {
      const V e0 = T::exp_le0(T::sub(T::load(x[r] + i), vm[r]));
      const V e1 = T::exp_le0(T::sub(T::load(x[r] + i + W), vm[r]));
      const V e2 = T::exp_le0(T::sub(T::load(x[r] + i + 2 * W), vm[r]));
      const V e3 = T::exp_le0(T::sub(T::load(x[r] + i + 3 * W), vm[r]));
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
      const V e = T::exp_le0(T::sub(T::load(x[r] + i), vm[r]));
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
      const V e = T::exp_le0(T::sub(T::load_n(x[r] + i, n - i), vm[r]));
      if constexpr (kStore && kToY)
        T::store_n(y[r] + i, n - i, e);
      else if constexpr (kStore)
        T::storec(y[r] + i, e);  // the buffer is padded to whole vectors
      T::acc_add(a[r][0], e);
    }
  }
  FASTSOFTMAX_UNROLL
  for (int r = 0; r < R; ++r) {
    T::acc_merge(a[r][0], a[r][1]);
    T::acc_merge(a[r][2], a[r][3]);
    T::acc_merge(a[r][0], a[r][2]);
    out[r] = T::acc_total(a[r][0]);
  }
}

// y *= scale (S == C only).
template <class T, int R>
FASTSOFTMAX_PASS void rows_scale(typename T::S* const* y, int64_t n, const typename T::C* scale) {
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
FASTSOFTMAX_PASS void rows_scale_from(const typename T::C* const* buf, typename T::S* const* y,
                                      int64_t n, const typename T::C* scale) {
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
template <class T, int R>
FASTSOFTMAX_PASS void rows_exp_scale(const typename T::S* const* x, typename T::S* const* y,
                                     int64_t n, const typename T::C* m,
                                     const typename T::C* scale) {
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
      const V e0 = T::exp_le0(T::sub(T::load(x[r] + i), vm[r]));
      const V e1 = T::exp_le0(T::sub(T::load(x[r] + i + W), vm[r]));
      T::store(y[r] + i, T::mul(e0, vs[r]));
      T::store(y[r] + i + W, T::mul(e1, vs[r]));
    }
  }
  for (; i + W <= n; i += W) {
    FASTSOFTMAX_UNROLL
    for (int r = 0; r < R; ++r)
      T::store(y[r] + i, T::mul(T::exp_le0(T::sub(T::load(x[r] + i), vm[r])), vs[r]));
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
FASTSOFTMAX_PASS void rows_log_finish(const typename T::S* const* x, typename T::S* const* y,
                                      int64_t n, const typename T::C* m,
                                      const typename T::C* log_sum) {
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
// Batches process rows of at most this many bytes in pairs (see softmax_rows).
constexpr int64_t kPairRowsMaxBytes = 1024;

template <class T, int R>
void rows_softmax(const typename T::S* const* x, typename T::S* const* y, int64_t n) {
  using C = typename T::C;
  C m[R];
  rows_max<T, R>(x, n, m);
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
      if (R == 1 && n * int64_t(sizeof(typename T::S)) >= kPrefetchRow)
        rows_sum_exp<T, R, true, true, C>(x, bufs, n, m, s);
      else
        rows_sum_exp<T, R, true, false, C>(x, bufs, n, m, s);
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
  if (R == 1 && n * int64_t(sizeof(typename T::S)) >= kPrefetchRow)
    rows_sum_exp<T, R, kStore, true>(x, y, n, m, s);
  else
    rows_sum_exp<T, R, kStore, false>(x, y, n, m, s);
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

template <class T, int R>
void rows_log_softmax(const typename T::S* const* x, typename T::S* const* y, int64_t n) {
  using C = typename T::C;
  C m[R];
  rows_max<T, R>(x, n, m);
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
  // y is only prefetched here, written by the last pass
  if (R == 1 && n * int64_t(sizeof(typename T::S)) >= kPrefetchRow)
    rows_sum_exp<T, R, false, true>(x, y, n, m, s);
  else
    rows_sum_exp<T, R, false, false>(x, y, n, m, s);
  bool nan = false;
  for (int r = 0; r < R; ++r) {
    nan |= s[r].sum != s[r].sum;
    ls[r] = C(simd::log1p_sum(s[r].rest));
  }
  if (nan) {
    for (int r = 0; r < R; ++r) {
      if (s[r].sum != s[r].sum)
        row_fill<T>(y[r], n, kNaNC<T>);
      else
        rows_log_finish<T, 1>(x + r, y + r, n, m + r, ls + r);
    }
    return;
  }
  rows_log_finish<T, R>(x, y, n, m, ls);
}

template <class T, int R>
void rows_reduce(const typename T::S* const* x, int64_t n, Partial* out) {
  using C = typename T::C;
  C m[R];
  rows_max<T, R>(x, n, m);
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
  if (R == 1 && n * int64_t(sizeof(typename T::S)) >= kPrefetchRow)
    rows_sum_exp<T, R, false, true>(x, none, n, m, s);
  else
    rows_sum_exp<T, R, false, false>(x, none, n, m, s);
  for (int r = 0; r < R; ++r)
    out[r] = s[r].sum != s[r].sum ? Partial{std::numeric_limits<double>::quiet_NaN(), 0.0, 0.0}
                                  : Partial{double(m[r]), s[r].sum, s[r].rest};
}

// ---- the row entries of the kernel table -------------------------------------------

template <class T>
void softmax_row(const typename T::S* x, typename T::S* y, int64_t n) {
  rows_softmax<T, 1>(&x, &y, n);
}

template <class T>
void log_softmax_row(const typename T::S* x, typename T::S* y, int64_t n) {
  rows_log_softmax<T, 1>(&x, &y, n);
}

template <class T>
Partial reduce(const typename T::S* x, int64_t n) {
  Partial p;
  rows_reduce<T, 1>(&x, n, &p);
  return p;
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

// Streaming variants (long rows' second pass): the plain finish on the head up to a
// 64-byte boundary of y and on the tail, non-temporal stores in between. Every
// element gets the same arithmetic as in the plain kernels, so the bits are equal.
template <class T, class = void>
struct HasStream : std::false_type {};
template <class T>
struct HasStream<T, std::void_t<decltype(T::stream(static_cast<typename T::S*>(nullptr),
                                                   T::set1(typename T::C(0))))>>
    : std::true_type {};

template <class T, bool kLog>
void finish_stream(const typename T::S* x, typename T::S* y, int64_t n, typename T::C m,
                   typename T::C a) {
  using S = typename T::S;
  using V = typename T::V;
  constexpr int64_t W = T::W;
  auto plain = [&](int64_t i0, int64_t len) {
    if (len <= 0) return;
    const S* xi = x + i0;
    S* yi = y + i0;
    if constexpr (kLog)
      rows_log_finish<T, 1>(&xi, &yi, len, &m, &a);
    else
      rows_exp_scale<T, 1>(&xi, &yi, len, &m, &a);
  };
  if constexpr (HasStream<T>::value && std::is_same_v<S, typename T::C>) {
    const uintptr_t addr = reinterpret_cast<uintptr_t>(y);
    if (addr % sizeof(S) == 0) {
      const int64_t head = std::min<int64_t>(n, int64_t((64 - addr % 64) % 64 / sizeof(S)));
      plain(0, head);
      const V vm = T::set1(m), va = T::set1(a);
      int64_t i = head;
      for (; i + W <= n; i += W) {
        const V d = T::sub(T::load(x + i), vm);
        T::stream(y + i, kLog ? T::sub(d, va) : T::mul(T::exp_le0(d), va));
      }
      T::fence();
      plain(i, n - i);
      return;
    }
  }
  plain(0, n);
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

template <class T>
void softmax_rows(const typename T::S* x, int64_t ldx, typename T::S* y, int64_t ldy,
                  int64_t n, int64_t rows) {
  int64_t r = 0;
  if (n * int64_t(sizeof(typename T::S)) <= kPairRowsMaxBytes) {
    for (; r + 2 <= rows; r += 2) {
      const typename T::S* xs[2] = {x + r * ldx, x + (r + 1) * ldx};
      typename T::S* ys[2] = {y + r * ldy, y + (r + 1) * ldy};
      rows_softmax<T, 2>(xs, ys, n);
    }
  }
  for (; r < rows; ++r) softmax_row<T>(x + r * ldx, y + r * ldy, n);
}

template <class T>
void log_softmax_rows(const typename T::S* x, int64_t ldx, typename T::S* y, int64_t ldy,
                      int64_t n, int64_t rows) {
  int64_t r = 0;
  if (n * int64_t(sizeof(typename T::S)) <= kPairRowsMaxBytes) {
    for (; r + 2 <= rows; r += 2) {
      const typename T::S* xs[2] = {x + r * ldx, x + (r + 1) * ldx};
      typename T::S* ys[2] = {y + r * ldy, y + (r + 1) * ldy};
      rows_log_softmax<T, 2>(xs, ys, n);
    }
  }
  for (; r < rows; ++r) log_softmax_row<T>(x + r * ldx, y + r * ldy, n);
}

template <class T>
void reduce_rows(const typename T::S* x, int64_t ldx, int64_t n, int64_t rows, Partial* out) {
  int64_t r = 0;
  if (n * int64_t(sizeof(typename T::S)) <= kPairRowsMaxBytes) {
    for (; r + 2 <= rows; r += 2) {
      const typename T::S* xs[2] = {x + r * ldx, x + (r + 1) * ldx};
      rows_reduce<T, 2>(xs, n, out + r);
    }
  }
  for (; r < rows; ++r) out[r] = reduce<T>(x + r * ldx, n);
}

// ---- panels ----------------------------------------------------------------------
// Lanes contiguous, reduced axis strided: a group of kV vectors (kV * W lanes, the
// last vector holding kp lanes) runs the row plan down the reduced axis: pass 1 max,
// pass 2 exp summed per lane (softmax with S == C also stores it), pass 3 writes.
// Every lane does exactly the same operations whatever kV, kp or its position, so its
// bits depend only on its own column.
//
// Per-lane specials without branches in the loops: pass 2 subtracts mu = the max
// where finite, +inf where it is +inf (softmax, log_softmax), else 0, so x - mu <= 0
// or NaN and the x <= 0 exp serves; the sum is NaN iff the lane holds a NaN or a
// +inf (then the lane is all NaN either way). logsumexp must tell those apart (+inf
// alone gives +inf): it subtracts 0 on a +inf lane and uses the full-range exp, whose
// +inf only gives +inf. The write pass then uses a per-lane factor a: 1/sum, NaN (a
// NaN or +inf in the lane: NaN everywhere) or 0 (only -inf: exp(-inf - 0) * 0 = 0);
// log_softmax: a = log(sum), NaN, or 0 (then (-inf - 0) - 0 = -inf).

// Software prefetch of one panel row's group (`bytes` from p), `rw` = 1 for writing.
// Strided panels defeat the hardware prefetchers (every row is a new page) and, with
// power-of-two strides, alias into a few cache sets: the passes fetch a fixed number
// of bytes ahead themselves. Integer arithmetic: the rows ahead may lie past the
// panel; a prefetch never faults.
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

// One row of a panel group's exp pass (pass 2): e[v] = exp(x - mu), stored to y for
// softmax with S == C (a function, not a lambda: every target-region form covers it).
template <class T, int kV>
struct PanelRow {
  const typename T::S* x;
  int64_t ldx;
  typename T::S* y;
  int64_t ldy, kp;
  const typename T::V* vmu;
  uintptr_t xb, xs, yb, ys;
};

template <class T, int kV, Kind kKind>
FASTSOFTMAX_PASS void panel_exp_row(const PanelRow<T, kV>& p, int64_t i, typename T::V* e) {
  constexpr int64_t W = T::W;
  constexpr bool kStore = kKind == Kind::softmax && T::kStoreExp;
  constexpr uintptr_t kRowBytes = uintptr_t(kV * W) * sizeof(typename T::S);
  constexpr int64_t kAhead = kRowBytes >= 512 ? 4 : 2048 / int64_t(kRowBytes);
  prefetch_span<0>(p.xb + uintptr_t(i + kAhead) * p.xs, kRowBytes);
  if constexpr (kStore) prefetch_span<1>(p.yb + uintptr_t(i + kAhead) * p.ys, kRowBytes);
  const typename T::S* r = p.x + i * p.ldx;
  FASTSOFTMAX_UNROLL
  for (int v = 0; v < kV - 1; ++v) {
    e[v] = panel_exp<T, kKind>(T::sub(T::load(r + v * W), p.vmu[v]));
    if constexpr (kStore) T::store(p.y + i * p.ldy + v * W, e[v]);
  }
  e[kV - 1] = panel_exp<T, kKind>(T::sub(T::load_n(r + (kV - 1) * W, p.kp), p.vmu[kV - 1]));
  if constexpr (kStore) T::store_n(p.y + i * p.ldy + (kV - 1) * W, p.kp, e[kV - 1]);
}

template <class T, int kV, Kind kKind>
void panel_group(const typename T::S* x, int64_t ldx, typename T::S* y, int64_t ldy,
                 int64_t n, int64_t kp, typename T::C* lse) {
  using C = typename T::C;
  using V = typename T::V;
  using Acc = typename T::Acc;
  constexpr int64_t W = T::W;
  constexpr int64_t L = int64_t(kV) * W;
  constexpr bool kStore = kKind == Kind::softmax && T::kStoreExp;
  constexpr uintptr_t kRowBytes = uintptr_t(L) * sizeof(typename T::S);
  constexpr int64_t kAhead = kRowBytes >= 512 ? 4 : 2048 / int64_t(kRowBytes);
  const uintptr_t xb = reinterpret_cast<uintptr_t>(x), yb = reinterpret_cast<uintptr_t>(y);
  const uintptr_t xs = uintptr_t(ldx) * sizeof(*x), ys = uintptr_t(ldy) * sizeof(*x);

  V m[kV];
  FASTSOFTMAX_UNROLL
  for (int v = 0; v < kV; ++v) m[v] = T::set1(-kInfC<T>);
  for (int64_t i = 0; i < n; ++i) {
    prefetch_span<0>(xb + uintptr_t(i + kAhead) * xs, kRowBytes);
    const typename T::S* r = x + i * ldx;
    FASTSOFTMAX_UNROLL
    for (int v = 0; v < kV - 1; ++v) m[v] = T::max(m[v], T::load(r + v * W));
    m[kV - 1] = T::max(m[kV - 1], T::load_n(r + (kV - 1) * W, kp));
  }

  alignas(64) C mv[L];
  alignas(64) C mu[L];
  alignas(64) double sv[L];
  FASTSOFTMAX_UNROLL
  for (int v = 0; v < kV; ++v) T::storec(mv + v * W, m[v]);
  for (int64_t j = 0; j < L; ++j)
    mu[j] = (mv[j] - mv[j] == C(0))                           ? mv[j]
            : (kKind != Kind::lse && mv[j] == kInfC<T>) ? mv[j]
                                                        : C(0);

  V vmu[kV];
  Acc acc[kV];
  FASTSOFTMAX_UNROLL
  for (int v = 0; v < kV; ++v) {
    vmu[v] = T::loadc(mu + v * W);
    acc[v] = T::acc_zero();
  }
  // Rows in pairs: acc_add2 may pre-add the two exps in float (as acc_add4 does);
  // the pairing depends only on i, so a lane's bits still depend only on its column.
  const PanelRow<T, kV> pr{x, ldx, y, ldy, kp, vmu, xb, xs, yb, ys};
  int64_t i2 = 0;
  for (; i2 + 2 <= n; i2 += 2) {
    V e0[kV], e1[kV];
    panel_exp_row<T, kV, kKind>(pr, i2, e0);
    panel_exp_row<T, kV, kKind>(pr, i2 + 1, e1);
    FASTSOFTMAX_UNROLL
    for (int v = 0; v < kV; ++v) T::acc_add2(acc[v], e0[v], e1[v]);
  }
  if (i2 < n) {
    V e0[kV];
    panel_exp_row<T, kV, kKind>(pr, i2, e0);
    FASTSOFTMAX_UNROLL
    for (int v = 0; v < kV; ++v) T::acc_add(acc[v], e0[v]);
  }
  FASTSOFTMAX_UNROLL
  for (int v = 0; v < kV; ++v) T::acc_lanes(acc[v], sv + v * W);

  const int64_t lanes = (kV - 1) * W + kp;
  if constexpr (kKind == Kind::lse) {
    for (int64_t j = 0; j < lanes; ++j) {
      const C mj = mv[j];
      const double rest = sv[j];
      lse[j] = (rest != rest)        ? kNaNC<T>
               : !(mj - mj == C(0))  ? mj  // +inf or -inf
                                     : C(double(mj) + simd::log1p_sum(rest));
    }
    return;
  } else {
    alignas(64) C a[L];
    int64_t poisoned[L];
    int64_t npoisoned = 0;
    for (int64_t j = 0; j < L; ++j) {
      const C mj = mv[j];
      const double rest = sv[j];
      if (rest != rest || mj == kInfC<T>) {
        a[j] = C(0);  // any: the lane is overwritten with NaN below
        if (j < lanes) poisoned[npoisoned++] = j;
      } else if (!(mj - mj == C(0))) {  // -inf (or a masked-off lane)
        a[j] = C(0);
      } else {
        a[j] = kKind == Kind::softmax ? C(1.0 / (1.0 + rest)) : C(simd::log1p_sum(rest));
      }
    }
    V va[kV];
    FASTSOFTMAX_UNROLL
    for (int v = 0; v < kV; ++v) va[v] = T::loadc(a + v * W);
    for (int64_t i = 0; i < n; ++i) {
      if constexpr (!kStore) prefetch_span<0>(xb + uintptr_t(i + kAhead) * xs, kRowBytes);
      prefetch_span<1>(yb + uintptr_t(i + kAhead) * ys, kRowBytes);
      const typename T::S* r = x + i * ldx;
      typename T::S* o = y + i * ldy;
      FASTSOFTMAX_UNROLL
      for (int v = 0; v < kV; ++v) {
        const bool last = v == kV - 1;
        V out;
        if constexpr (kKind == Kind::log_softmax) {
          const V xv = last ? T::load_n(r + v * W, kp) : T::load(r + v * W);
          out = T::sub(T::sub(xv, vmu[v]), va[v]);
        } else if constexpr (kStore) {
          const V ev = last ? T::load_n(o + v * W, kp) : T::load(o + v * W);
          out = T::mul(ev, va[v]);
        } else {
          const V xv = last ? T::load_n(r + v * W, kp) : T::load(r + v * W);
          out = T::mul(T::exp_le0(T::sub(xv, vmu[v])), va[v]);
        }
        if (last)
          T::store_n(o + v * W, kp, out);
        else
          T::store(o + v * W, out);
      }
    }
    // Lanes with a NaN or +inf are all NaN: the canonical NaN, as the row kernels
    // write, since arithmetic on two NaNs keeps either payload depending on operand
    // order, which the compiler may pick differently for full and masked vectors.
    if (npoisoned) {
      typename T::S nan_s[W];
      T::store(nan_s, T::set1(kNaNC<T>));
      for (int64_t i = 0; i < n; ++i)
        for (int64_t k = 0; k < npoisoned; ++k) y[i * ldy + poisoned[k]] = nan_s[0];
    }
  }
}

template <class T, Kind kKind>
void panel(const typename T::S* x, int64_t ldx, typename T::S* y, int64_t ldy, int64_t n,
           int64_t w, typename T::C* lse) {
  constexpr int64_t W = T::W;
  constexpr int kG = T::kPanelV;
  int64_t j = 0;
  for (; j + kG * W <= w; j += kG * W)
    panel_group<T, kG, kKind>(x + j, ldx, y ? y + j : y, ldy, n, W, lse ? lse + j : lse);
  const int64_t rem = w - j;
  if (rem <= 0) return;
  const int nv = int((rem + W - 1) / W);
  const int64_t kp = rem - int64_t(nv - 1) * W;
  typename T::S* yj = y ? y + j : y;
  typename T::C* lj = lse ? lse + j : lse;
  switch (nv) {  // 1 <= nv <= kPanelV <= 4
    case 1: panel_group<T, 1, kKind>(x + j, ldx, yj, ldy, n, kp, lj); break;
    case 2:
      if constexpr (kG >= 2) panel_group<T, 2, kKind>(x + j, ldx, yj, ldy, n, kp, lj);
      break;
    case 3:
      if constexpr (kG >= 3) panel_group<T, 3, kKind>(x + j, ldx, yj, ldy, n, kp, lj);
      break;
    case 4:
      if constexpr (kG >= 4) panel_group<T, 4, kKind>(x + j, ldx, yj, ldy, n, kp, lj);
      break;
    default: break;
  }
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

template <class T, class Set>
void fill_set(Set& k) {
  k.softmax_row = softmax_row<T>;
  k.log_softmax_row = log_softmax_row<T>;
  k.reduce = reduce<T>;
  k.softmax_finish = softmax_finish<T>;
  k.log_softmax_finish = log_softmax_finish<T>;
  k.softmax_finish_stream = softmax_finish_stream<T>;
  k.log_softmax_finish_stream = log_softmax_finish_stream<T>;
  k.softmax_rows = softmax_rows<T>;
  k.log_softmax_rows = log_softmax_rows<T>;
  k.reduce_rows = reduce_rows<T>;
  k.softmax_panel = softmax_panel<T>;
  k.log_softmax_panel = log_softmax_panel<T>;
  k.logsumexp_panel = logsumexp_panel<T>;
}

// exp over an array with the ISA's vector exp (test hook; tails via load_n/store_n).
template <class T, bool kLe0>
typename T::V exp_variant(typename T::V v) {
  if constexpr (kLe0)
    return T::exp_le0(v);
  else
    return T::exp(v);
}

template <class T, bool kLe0>
void exp_array(const typename T::C* x, typename T::C* y, int64_t n) {
  constexpr int64_t W = T::W;
  int64_t i = 0;
  for (; i + W <= n; i += W) T::store(y + i, exp_variant<T, kLe0>(T::load(x + i)));
  if (i < n) T::store_n(y + i, n - i, exp_variant<T, kLe0>(T::load_n(x + i, n - i)));
}
