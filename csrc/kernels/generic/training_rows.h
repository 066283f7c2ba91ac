// The training family's SIMD row kernels (fastsoftmax/training_kernels.h): the fused
// sparse cross-entropy gradient of a one-block row (grad_row) and the log_softmax
// backward row, plus fill_training, which fills the family's set.
//
// Included INSIDE an ISA's namespace and target region after the softmax family's
// headers, whose row passes (rows_max, rows_sum_exp, special_max, finite, HasStream,
// kPrefetchRow) it reuses, so a row's max, sum and exps are exactly those of reduce /
// softmax_row; and after training_loops.h. Beyond the Ops interface (row_passes.h) it
// needs T::fma(a, b, c) = a * b + c with one rounding. Only the S == C Ops (float32,
// float64) are used: the training driver converts float16 rows to float32 buffers.

// Products and sums here use T::fma (one rounding) explicitly, never mul then sub:
// the compiler may contract the latter into an FMA in one copy of the code and not in
// another (a masked tail, a streamed head), and a row's bits would then depend on its
// alignment.

// One vector of the affine pass: fma(e, f, -b) for elements j..j+W of the row, and
// (e_t * f - b) - c in the lane of element t when it falls in this vector (a branch
// that is taken once per row).
template <class T>
FASTSOFTMAX_PASS typename T::V affine_v(typename T::V e, int64_t j, typename T::V vf,
                                        typename T::V vb, int64_t t, typename T::C c) {
  using V = typename T::V;
  V v = T::fma(e, vf, vb);
  if (uint64_t(t - j) < uint64_t(T::W)) {
    alignas(64) typename T::C tmp[T::W];
    T::storec(tmp, v);
    tmp[t - j] = tmp[t - j] - c;
    v = T::loadc(tmp);
  }
  return v;
}

// y = fma(y, f, -b) in place over n elements (y holds the exps), and minus c at element t
// when 0 <= t < n: the element is patched in its vector, never re-read from memory.
template <class T>
FASTSOFTMAX_PASS void rows_affine(typename T::S* y, int64_t n, typename T::C f,
                                  typename T::C b, int64_t t, typename T::C c) {
  using V = typename T::V;
  constexpr int64_t W = T::W;
  const V vf = T::set1(f), vb = T::set1(-b);
  int64_t i = 0;
  for (; i + 4 * W <= n; i += 4 * W) {
    const V e0 = T::load(y + i), e1 = T::load(y + i + W);
    const V e2 = T::load(y + i + 2 * W), e3 = T::load(y + i + 3 * W);
    T::store(y + i, affine_v<T>(e0, i, vf, vb, t, c));
    T::store(y + i + W, affine_v<T>(e1, i + W, vf, vb, t, c));
    T::store(y + i + 2 * W, affine_v<T>(e2, i + 2 * W, vf, vb, t, c));
    T::store(y + i + 3 * W, affine_v<T>(e3, i + 3 * W, vf, vb, t, c));
  }
  for (; i + W <= n; i += W) T::store(y + i, affine_v<T>(T::load(y + i), i, vf, vb, t, c));
  if (i < n) T::store_n(y + i, n - i, affine_v<T>(T::load_n(y + i, n - i), i, vf, vb, t, c));
}

// Training rows longer than kTrainSub elements are reduced in sub-blocks of that
// length, merged in order (reduce_train; fastsoftmax/merge.h, as the driver's blocks): a 64 KiB sub-block's max pass reads what
// the previous sub-block's exp pass prefetched, and the pair fits in L2 with room
// to spare (a whole 500 KiB row and the next one, prefetched, filled it: ~10% slower
// per element on (64, 128256) than on rows of 32000). xent_grad_row reduces the
// same sub-blocks the same way, so the loss keeps its bits with the gradient.
constexpr int64_t kTrainSub = 16384;

template <class T>
Partial reduce_train(const typename T::S* x, int64_t n) {
  if (n <= kTrainSub) return reduce<T>(x, n);
  Partial p[kBlock / kTrainSub];
  int64_t ns = 0;
  for (int64_t i = 0; i < n; i += kTrainSub) p[ns++] = reduce<T>(x + i, std::min(kTrainSub, n - i));
  return merge_partials(p, ns);
}

// Streamed gradients (`stream`: a large output): rows of at least this many bytes
// keep their exps in the thread's row buffer (row_buffer, generic/row_batches.h) instead of
// y, and the affine pass writes y once with non-temporal stores: y then crosses the
// memory bus once instead of three times (read for ownership, written back, read and
// written again): -11% to -23% time on (64, 128256) and (256, 32000). Shorter rows
// would pay a fence and masked head/tail stores per row (3x slower on (8192, 128)).
constexpr int64_t kGradStreamBytes = int64_t(64) << 10;

// Sparse cross-entropy gradient of one row (1 <= n <= kBlock):
// y_i = fma(exp(x_i - max), C(a / sum), -b), and (that) - c at i == t. The softmax_row
// plan, per sub-block of reduce_train: max; e = exp(x - max) stored (in y, or in the
// row buffer when streamed) and summed (the same passes as reduce, so the returned
// Partial has reduce_train's bits); then the affine pass (a sub-block's exps scaled
// by C(a * exp(max_c - max) / sum)), in place from cache or streamed to y. When the
// max is not finite or the row holds a NaN, y is unspecified: the caller writes such
// rows from the Partial.
template <class T>
Partial xent_grad_row(const typename T::S* x, typename T::S* y, int64_t n, double a,
                      typename T::C b, int64_t t, typename T::C c, bool stream) {
  using C = typename T::C;
  using S = typename T::S;
  static_assert(std::is_same_v<S, C>, "float32 / float64 rows only");
  // Each sub-block (the whole row when n <= kTrainSub) as reduce_train: max, then
  // e = exp(x - max) stored in y and summed, so its Partial has reduce's bits.
  Partial p[kBlock / kTrainSub];
  int64_t ns = 0;
  bool streamed = false;
  S* e = y;  // where the exps wait
  (void)stream;
  if constexpr (HasStream<T>::value) {
    if (stream && n * int64_t(sizeof(S)) >= kGradStreamBytes) {
      e = row_buffer<T>(n + T::W);
      streamed = true;
    }
  }
  for (int64_t i = 0; i < n; i += kTrainSub, ++ns) {
    const int64_t len = std::min(kTrainSub, n - i);
    C m;
    const S* xi = x + i;
    S* yi = e + i;
    rows_max<T, 1>(&xi, len, &m);
    if (!finite<T>(m)) {
      p[ns] = {double(special_max<T>(xi, len, m)), 0.0, 0.0};
      continue;
    }
    SumExp s;
    // long rows prefetch the next row of x (and of y for writing, unless the exps
    // go to the row buffer): its sub-block at this one's place (the affine pass
    // below runs before the next row, so the next sub-block's distance would leave
    // it too late)
    if (streamed)
      rows_sum_exp<T, 1, true, true, S, false>(&xi, &yi, len, &m, &s, n);
    else if (n * int64_t(sizeof(S)) >= kPrefetchRow)
      rows_sum_exp<T, 1, true, true>(&xi, &yi, len, &m, &s, n);
    else
      rows_sum_exp<T, 1, true, false>(&xi, &yi, len, &m, &s);
    p[ns] = s.sum != s.sum ? Partial{std::numeric_limits<double>::quiet_NaN(), 0.0, 0.0}
                           : Partial{double(m), s.sum, s.rest};
  }
  const Partial r = ns == 1 ? p[0] : merge_partials(p, ns);
  if (!(r.max - r.max == 0.0)) return r;
  // the affine rescale in place, from cache: a sub-block's exps were taken against
  // its own max, hence its factor a * exp(m_c - M) / sum; an all -inf sub-block
  // (exps 0, never written) is zeroed first
  for (int64_t i = 0, q = 0; i < n; i += kTrainSub, ++q) {
    const int64_t len = std::min(kTrainSub, n - i);
    C f = C(0);
    if (p[q].max == -std::numeric_limits<double>::infinity())
      row_fill<T>(e + i, len, C(0));
    else
      f = C(ns == 1 ? a / r.sum : a * std::exp(p[q].max - r.max) / r.sum);
    if constexpr (HasStream<T>::value) {
      if (streamed) {
        const typename T::V vf = T::set1(f), vb = T::set1(-b);
        const C* ei = e + i;
        const int64_t ti = t - i;
        stream_row<T>(y + i, len, [&](int64_t j, int64_t) {
          return affine_v<T>(T::load(ei + j), j, vf, vb, ti, c);
        });
        continue;
      }
    }
    rows_affine<T>(y + i, len, f, b, t - i, c);
  }
  if constexpr (HasStream<T>::value)
    if (streamed) T::fence();
  return r;
}

// fma(exp(y), -s, g) on one vector (k < W: the first k lanes; the others are not
// stored).
// Functions, not lambdas: clang's target attribute push covers only functions.
template <class T>
FASTSOFTMAX_PASS typename T::V lsm_bwd_v(const typename T::S* g, const typename T::S* y,
                                         typename T::V vs) {
  return T::fma(T::exp_le0(T::load(y)), vs, T::load(g));
}
template <class T>
FASTSOFTMAX_PASS typename T::V lsm_bwd_n(const typename T::S* g, const typename T::S* y,
                                         int64_t k, typename T::V vs) {
  return T::fma(T::exp_le0(T::load_n(y, k)), vs, T::load_n(g, k));
}

template <class T>
void log_softmax_backward_row(const typename T::S* g, const typename T::S* y,
                              typename T::S* out, int64_t n, typename T::C s, bool stream) {
  using S = typename T::S;
  using V = typename T::V;
  constexpr int64_t W = T::W;
  const V vs = T::set1(-s);
  const bool prefetch = n * int64_t(sizeof(S)) >= kPrefetchRow;
  const uintptr_t gnext = reinterpret_cast<uintptr_t>(g) + uintptr_t(n) * sizeof(S);
  const uintptr_t ynext = reinterpret_cast<uintptr_t>(y) + uintptr_t(n) * sizeof(S);
  int64_t i = 0;
  bool streamed = false;
  if constexpr (HasStream<T>::value) {
    const uintptr_t addr = reinterpret_cast<uintptr_t>(out);
    if (stream && addr % sizeof(S) == 0) {
      const int64_t head = std::min<int64_t>(n, int64_t((64 - addr % 64) % 64 / sizeof(S)));
      for (; i < head; i += W) {  // head may exceed one vector (AVX2 floats)
        const int64_t k = std::min(W, head - i);
        T::store_n(out + i, k, lsm_bwd_n<T>(g + i, y + i, k, vs));
      }
      i = head;
      streamed = true;
    }
  }
  (void)stream;
  for (; i + 4 * W <= n; i += 4 * W) {
    if (prefetch) {
      // integer arithmetic: the next row may lie past the end of the array (a
      // prefetch never faults)
      const uintptr_t off = uintptr_t(i) * sizeof(S);
      for (uintptr_t o = 0; o < 4 * W * sizeof(S); o += 64) {
        __builtin_prefetch(reinterpret_cast<const void*>(gnext + off + o), 0, 2);
        __builtin_prefetch(reinterpret_cast<const void*>(ynext + off + o), 0, 2);
      }
    }
    const V o0 = lsm_bwd_v<T>(g + i, y + i, vs);
    const V o1 = lsm_bwd_v<T>(g + i + W, y + i + W, vs);
    const V o2 = lsm_bwd_v<T>(g + i + 2 * W, y + i + 2 * W, vs);
    const V o3 = lsm_bwd_v<T>(g + i + 3 * W, y + i + 3 * W, vs);
    if constexpr (HasStream<T>::value) {
      if (streamed) {
        T::stream(out + i, o0);
        T::stream(out + i + W, o1);
        T::stream(out + i + 2 * W, o2);
        T::stream(out + i + 3 * W, o3);
        continue;
      }
    }
    T::store(out + i, o0);
    T::store(out + i + W, o1);
    T::store(out + i + 2 * W, o2);
    T::store(out + i + 3 * W, o3);
  }
  for (; i + W <= n; i += W) {
    const V o = lsm_bwd_v<T>(g + i, y + i, vs);
    if constexpr (HasStream<T>::value) {
      if (streamed) {
        T::stream(out + i, o);
        continue;
      }
    }
    T::store(out + i, o);
  }
  if constexpr (HasStream<T>::value)
    if (streamed) T::fence();
  if (i < n) T::store_n(out + i, n - i, lsm_bwd_n<T>(g + i, y + i, n - i, vs));
}

// The training family's set for Ops T (its loops from training_loops.h).
template <class T, class Set>
void fill_training(Set& k) {
  k.reduce = reduce_train<T>;
  k.grad_row = xent_grad_row<T>;
  k.log_softmax_backward_row = log_softmax_backward_row<T>;
  fill_training_loops(k);
}
