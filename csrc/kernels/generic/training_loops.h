// The training family's row loops (fastsoftmax/training_kernels.h): sums, label
// terms and write loops on contiguous rows of the compute type (float or double).
//
// Like the other generic headers, included INSIDE an ISA's namespace and target
// region (kernels/<isa>.cpp), so GCC vectorizes the same plain C++ for that ISA and
// the copies can never be merged by the linker. The including file defines
// FASTSOFTMAX_TRAIN_VEC (0, 128, 256 or 512): which x86 vectors the explicit loops
// below use (128: the x86-64 baseline, SSE2; 0: plain loops, e.g. aarch64).
//
// Accuracy. float data: products of two floats are exact in double, so sums run in
// double with kSumLanes independent accumulators (relative error ~n * 2^-53, far below
// float's epsilon). double data: kSumLanes lanes of Knuth's TwoSum (sum + carry) folded
// by a compensated sum, so the error is ~2 eps |sum| + eps * sum |term rounding|,
// independent of the row length. A lane that meets +-inf or NaN keeps it in its
// sum (the carry goes NaN); finals return the plain sum when it is not finite.

constexpr int kSumLanes = 16;

// Fold kSumLanes lane sums (and carries) in a fixed order.
inline double fold(const double* s, const double* c) {
  CompensatedSum acc;
  double plain = 0.0;
  for (int j = 0; j < kSumLanes; ++j) {
    acc.add(s[j]);
    plain += s[j];
  }
  if (!std::isfinite(plain)) return plain;
  for (int j = 0; j < kSumLanes; ++j) acc.add(c[j]);
  return acc.value();
}


// ---- sums ----------------------------------------------------------------------
// sum of (x_i - ref), in double (ref = 0 for a plain sum).
inline double sum_minus(const float* x, int64_t n, double ref) {
  double s[kSumLanes] = {}, c[kSumLanes] = {};
  int64_t i = 0;
  for (; i + kSumLanes <= n; i += kSumLanes)
    for (int j = 0; j < kSumLanes; ++j) s[j] += double(x[i + j]) - ref;
  for (int j = 0; j < kSumLanes && i < n; ++i, ++j) s[j] += double(x[i]) - ref;
  return fold(s, c);
}
inline double sum_minus(const double* x, int64_t n, double ref) {
  double s[kSumLanes] = {}, c[kSumLanes] = {};
  int64_t i = 0;
  for (; i + kSumLanes <= n; i += kSumLanes)
    for (int j = 0; j < kSumLanes; ++j) simd::two_sum(s[j], c[j], x[i + j] - ref);
  for (int j = 0; j < kSumLanes && i < n; ++i, ++j) simd::two_sum(s[j], c[j], x[i] - ref);
  return fold(s, c);
}

// sum of a_i * b_i.
inline double dot(const float* a, const float* b, int64_t n) {
  double s[kSumLanes] = {}, c[kSumLanes] = {};
  int64_t i = 0;
  for (; i + kSumLanes <= n; i += kSumLanes)
    for (int j = 0; j < kSumLanes; ++j) s[j] += double(a[i + j]) * double(b[i + j]);
  for (int j = 0; j < kSumLanes && i < n; ++i, ++j) s[j] += double(a[i]) * double(b[i]);
  return fold(s, c);
}
inline double dot(const double* a, const double* b, int64_t n) {
  double s[kSumLanes] = {}, c[kSumLanes] = {};
  int64_t i = 0;
  for (; i + kSumLanes <= n; i += kSumLanes)
    for (int j = 0; j < kSumLanes; ++j) simd::two_sum(s[j], c[j], a[i + j] * b[i + j]);
  for (int j = 0; j < kSumLanes && i < n; ++i, ++j) simd::two_sum(s[j], c[j], a[i] * b[i]);
  return fold(s, c);
}

// sum of g_i, and whether every y_i <= 0 (false on NaN), for log_softmax_backward.
// sum_check_acc continues the kSumLanes lane sums s[] (and carries c[], float64) over
// the next n elements: lane j takes element i = j mod kSumLanes, so consecutive calls
// on chunks whose lengths are multiples of kSumLanes (the last one excepted) give the
// bits of one call over the whole row; sum_check folds them. Returns whether every
// y_i <= 0. x86 builds spell the vectors out (GCC turned the y test into one scalar
// compare per element, a third of the backward pass's time); same lanes, same bits.
#if FASTSOFTMAX_TRAIN_VEC == 512
inline bool sum_check_acc(const float* g, const float* y, int64_t n, double* s, double*) {
  __m512d s0 = _mm512_loadu_pd(s), s1 = _mm512_loadu_pd(s + 8);
  __mmask16 bad = 0;
  const __m512 zero = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + kSumLanes <= n; i += kSumLanes) {
    const __m512 gv = _mm512_loadu_ps(g + i);
    s0 = _mm512_add_pd(s0, _mm512_cvtps_pd(_mm512_castps512_ps256(gv)));
    s1 = _mm512_add_pd(s1, _mm512_cvtps_pd(_mm512_extractf32x8_ps(gv, 1)));
    bad |= _mm512_cmp_ps_mask(_mm512_loadu_ps(y + i), zero, _CMP_NLE_UQ);
  }
  _mm512_storeu_pd(s, s0);
  _mm512_storeu_pd(s + 8, s1);
  int bad_tail = 0;
  for (int j = 0; j < kSumLanes && i < n; ++i, ++j) {
    s[j] += double(g[i]);
    bad_tail |= !(y[i] <= 0.0f);
  }
  return bad == 0 && bad_tail == 0;
}
inline bool sum_check_acc(const double* g, const double* y, int64_t n, double* s, double* c) {
  __m512d sv[2] = {_mm512_loadu_pd(s), _mm512_loadu_pd(s + 8)};
  __m512d cv[2] = {_mm512_loadu_pd(c), _mm512_loadu_pd(c + 8)};
  __mmask8 bad = 0;
  const __m512d zero = _mm512_setzero_pd();
  int64_t i = 0;
  for (; i + kSumLanes <= n; i += kSumLanes)
    for (int h = 0; h < 2; ++h) {  // two_sum_add, lane by lane
      const __m512d v = _mm512_loadu_pd(g + i + 8 * h);
      const __m512d t = _mm512_add_pd(sv[h], v);
      const __m512d bp = _mm512_sub_pd(t, sv[h]);
      cv[h] = _mm512_add_pd(cv[h], _mm512_add_pd(_mm512_sub_pd(sv[h], _mm512_sub_pd(t, bp)),
                                                 _mm512_sub_pd(v, bp)));
      sv[h] = t;
      bad |= _mm512_cmp_pd_mask(_mm512_loadu_pd(y + i + 8 * h), zero, _CMP_NLE_UQ);
    }
  for (int h = 0; h < 2; ++h) {
    _mm512_storeu_pd(s + 8 * h, sv[h]);
    _mm512_storeu_pd(c + 8 * h, cv[h]);
  }
  int bad_tail = 0;
  for (int j = 0; j < kSumLanes && i < n; ++i, ++j) {
    simd::two_sum(s[j], c[j], g[i]);
    bad_tail |= !(y[i] <= 0.0);
  }
  return bad == 0 && bad_tail == 0;
}
#elif FASTSOFTMAX_TRAIN_VEC == 256
inline bool sum_check_acc(const float* g, const float* y, int64_t n, double* s, double*) {
  __m256d sv[4];
  for (int q = 0; q < 4; ++q) sv[q] = _mm256_loadu_pd(s + 4 * q);
  __m256 bad = _mm256_setzero_ps();
  const __m256 zero = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + kSumLanes <= n; i += kSumLanes)
    for (int h = 0; h < 2; ++h) {
      const __m256 gv = _mm256_loadu_ps(g + i + 8 * h);
      sv[2 * h] = _mm256_add_pd(sv[2 * h], _mm256_cvtps_pd(_mm256_castps256_ps128(gv)));
      sv[2 * h + 1] = _mm256_add_pd(sv[2 * h + 1], _mm256_cvtps_pd(_mm256_extractf128_ps(gv, 1)));
      bad = _mm256_or_ps(bad, _mm256_cmp_ps(_mm256_loadu_ps(y + i + 8 * h), zero, _CMP_NLE_UQ));
    }
  for (int q = 0; q < 4; ++q) _mm256_storeu_pd(s + 4 * q, sv[q]);
  int bad_tail = 0;
  for (int j = 0; j < kSumLanes && i < n; ++i, ++j) {
    s[j] += double(g[i]);
    bad_tail |= !(y[i] <= 0.0f);
  }
  return _mm256_movemask_ps(bad) == 0 && bad_tail == 0;
}
inline bool sum_check_acc(const double* g, const double* y, int64_t n, double* s, double* c) {
  __m256d sv[4], cv[4];
  for (int q = 0; q < 4; ++q) {
    sv[q] = _mm256_loadu_pd(s + 4 * q);
    cv[q] = _mm256_loadu_pd(c + 4 * q);
  }
  __m256d bad = _mm256_setzero_pd();
  const __m256d zero = _mm256_setzero_pd();
  int64_t i = 0;
  for (; i + kSumLanes <= n; i += kSumLanes)
    for (int q = 0; q < 4; ++q) {  // two_sum_add, lane by lane
      const __m256d v = _mm256_loadu_pd(g + i + 4 * q);
      const __m256d t = _mm256_add_pd(sv[q], v);
      const __m256d bp = _mm256_sub_pd(t, sv[q]);
      cv[q] = _mm256_add_pd(cv[q], _mm256_add_pd(_mm256_sub_pd(sv[q], _mm256_sub_pd(t, bp)),
                                                 _mm256_sub_pd(v, bp)));
      sv[q] = t;
      bad = _mm256_or_pd(bad, _mm256_cmp_pd(_mm256_loadu_pd(y + i + 4 * q), zero, _CMP_NLE_UQ));
    }
  for (int q = 0; q < 4; ++q) {
    _mm256_storeu_pd(s + 4 * q, sv[q]);
    _mm256_storeu_pd(c + 4 * q, cv[q]);
  }
  int bad_tail = 0;
  for (int j = 0; j < kSumLanes && i < n; ++i, ++j) {
    simd::two_sum(s[j], c[j], g[i]);
    bad_tail |= !(y[i] <= 0.0);
  }
  return _mm256_movemask_pd(bad) == 0 && bad_tail == 0;
}
#else
inline bool sum_check_acc(const float* g, const float* y, int64_t n, double* s, double*) {
  int bad = 0;
  int64_t i = 0;
  for (; i + kSumLanes <= n; i += kSumLanes)
    for (int j = 0; j < kSumLanes; ++j) {
      s[j] += double(g[i + j]);
      bad |= !(y[i + j] <= 0.0f);
    }
  for (int j = 0; j < kSumLanes && i < n; ++i, ++j) {
    s[j] += double(g[i]);
    bad |= !(y[i] <= 0.0f);
  }
  return bad == 0;
}
inline bool sum_check_acc(const double* g, const double* y, int64_t n, double* s, double* c) {
  int bad = 0;
  int64_t i = 0;
  for (; i + kSumLanes <= n; i += kSumLanes)
    for (int j = 0; j < kSumLanes; ++j) {
      simd::two_sum(s[j], c[j], g[i + j]);
      bad |= !(y[i + j] <= 0.0);
    }
  for (int j = 0; j < kSumLanes && i < n; ++i, ++j) {
    simd::two_sum(s[j], c[j], g[i]);
    bad |= !(y[i] <= 0.0);
  }
  return bad == 0;
}
#endif
// Pairs of rows read in chunks of 1 KiB each, the lines 4 KiB ahead in both
// prefetched first (a hint: it never faults, even past the end of the array). The
// backward's first pass, which mostly waits on memory: the hardware prefetcher alone
// kept too few lines in flight for two streams (-10% time on (256, 32000) with it).
constexpr int64_t kPairChunkBytes = 1024, kPairAheadBytes = 4096;
template <class C>
inline void prefetch_pair_chunk(const C* a, const C* b) {
  const uintptr_t pa = reinterpret_cast<uintptr_t>(a) + kPairAheadBytes;
  const uintptr_t pb = reinterpret_cast<uintptr_t>(b) + kPairAheadBytes;
  for (uintptr_t o = 0; o < uintptr_t(kPairChunkBytes); o += 64) {
    __builtin_prefetch(reinterpret_cast<const void*>(pa + o), 0, 2);
    __builtin_prefetch(reinterpret_cast<const void*>(pb + o), 0, 2);
  }
}

// Chunks are multiples of kSumLanes: the bits of one sum_check_acc over the row.
template <class C>
inline double sum_check_t(const C* g, const C* y, int64_t n, bool* nonpos) {
  double s[kSumLanes] = {}, c[kSumLanes] = {};
  constexpr int64_t kStep = kPairChunkBytes / int64_t(sizeof(C));
  bool ok = true;
  for (int64_t i = 0; i < n; i += kStep) {
    prefetch_pair_chunk(g + i, y + i);
    ok &= sum_check_acc(g + i, y + i, std::min(kStep, n - i), s, c);
  }
  *nonpos = ok;
  return fold(s, c);
}
inline double sum_check(const float* g, const float* y, int64_t n, bool* nonpos) {
  return sum_check_t(g, y, n, nonpos);
}
inline double sum_check(const double* g, const double* y, int64_t n, bool* nonpos) {
  return sum_check_t(g, y, n, nonpos);
}

// Dense cross-entropy terms of one block: *sum_l = sum l_i and
// *sum_lx = sum over l_i != 0 of l_i * (x_i - ref)   (0 * -inf := 0, as xlogy).
inline void label_terms(const float* l, const float* x, int64_t n, double ref, double* sum_l,
                        double* sum_lx) {
  double s[kSumLanes] = {}, t[kSumLanes] = {}, c[kSumLanes] = {};
  int64_t i = 0;
  for (; i + kSumLanes <= n; i += kSumLanes)
    for (int j = 0; j < kSumLanes; ++j) {
      const double lv = l[i + j];
      const double p = lv * (double(x[i + j]) - ref);
      s[j] += lv;
      t[j] += lv != 0.0 ? p : 0.0;
    }
  for (int j = 0; j < kSumLanes && i < n; ++i, ++j) {
    const double lv = l[i];
    s[j] += lv;
    t[j] += lv != 0.0 ? lv * (double(x[i]) - ref) : 0.0;
  }
  *sum_l = fold(s, c);
  *sum_lx = fold(t, c);
}
inline void label_terms(const double* l, const double* x, int64_t n, double ref, double* sum_l,
                        double* sum_lx) {
  double s[kSumLanes] = {}, cs[kSumLanes] = {}, t[kSumLanes] = {}, ct[kSumLanes] = {};
  int64_t i = 0;
  for (; i + kSumLanes <= n; i += kSumLanes)
    for (int j = 0; j < kSumLanes; ++j) {
      const double lv = l[i + j];
      const double p = lv * (x[i + j] - ref);
      simd::two_sum(s[j], cs[j], lv);
      simd::two_sum(t[j], ct[j], lv != 0.0 ? p : 0.0);
    }
  for (int j = 0; j < kSumLanes && i < n; ++i, ++j) {
    const double lv = l[i];
    simd::two_sum(s[j], cs[j], lv);
    simd::two_sum(t[j], ct[j], lv != 0.0 ? lv * (x[i] - ref) : 0.0);
  }
  *sum_l = fold(s, cs);
  *sum_lx = fold(t, ct);
}

// ---- element-wise writes -------------------------------------------------------
// o may be the same array as an input (in place), never a shifted one. With
// `stream` (large outputs, x86) o is written with non-temporal stores: the output
// goes to memory without first being read into the cache, which is a third of a
// write-heavy kernel's memory traffic; an sfence ends every streamed call.
//
// Every element gets the same operations whether it falls in a vector, in the
// scalar head (up to the store alignment) or in the tail: explicit FMA on both
// sides where the ISA has it, none where it does not (GCC cannot contract without
// it), so a row's bits never depend on its alignment or on streaming.
#if FASTSOFTMAX_TRAIN_VEC == 512
struct VecF {
  using T = float;
  using V = __m512;
  static constexpr int W = 16;
  static V load(const T* p) { return _mm512_loadu_ps(p); }
  static V set1(T v) { return _mm512_set1_ps(v); }
  static V sub(V a, V b) { return _mm512_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static void storeu(T* p, V v) { _mm512_storeu_ps(p, v); }
  static void stream(T* p, V v) { _mm512_stream_ps(p, v); }
};
struct VecD {
  using T = double;
  using V = __m512d;
  static constexpr int W = 8;
  static V load(const T* p) { return _mm512_loadu_pd(p); }
  static V set1(T v) { return _mm512_set1_pd(v); }
  static V sub(V a, V b) { return _mm512_sub_pd(a, b); }
  static V mul(V a, V b) { return _mm512_mul_pd(a, b); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }
  static void storeu(T* p, V v) { _mm512_storeu_pd(p, v); }
  static void stream(T* p, V v) { _mm512_stream_pd(p, v); }
};
#define FASTSOFTMAX_XENT_HAS_FMA 1
#elif FASTSOFTMAX_TRAIN_VEC == 256
struct VecF {
  using T = float;
  using V = __m256;
  static constexpr int W = 8;
  static V load(const T* p) { return _mm256_loadu_ps(p); }
  static V set1(T v) { return _mm256_set1_ps(v); }
  static V sub(V a, V b) { return _mm256_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static void storeu(T* p, V v) { _mm256_storeu_ps(p, v); }
  static void stream(T* p, V v) { _mm256_stream_ps(p, v); }
};
struct VecD {
  using T = double;
  using V = __m256d;
  static constexpr int W = 4;
  static V load(const T* p) { return _mm256_loadu_pd(p); }
  static V set1(T v) { return _mm256_set1_pd(v); }
  static V sub(V a, V b) { return _mm256_sub_pd(a, b); }
  static V mul(V a, V b) { return _mm256_mul_pd(a, b); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
  static void storeu(T* p, V v) { _mm256_storeu_pd(p, v); }
  static void stream(T* p, V v) { _mm256_stream_pd(p, v); }
};
#define FASTSOFTMAX_XENT_HAS_FMA 1
#elif FASTSOFTMAX_TRAIN_VEC == 128
struct VecF {
  using T = float;
  using V = __m128;
  static constexpr int W = 4;
  static V load(const T* p) { return _mm_loadu_ps(p); }
  static V set1(T v) { return _mm_set1_ps(v); }
  static V sub(V a, V b) { return _mm_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm_mul_ps(a, b); }
  static V fma(V a, V b, V c) { return _mm_add_ps(_mm_mul_ps(a, b), c); }
  static void storeu(T* p, V v) { _mm_storeu_ps(p, v); }
  static void stream(T* p, V v) { _mm_stream_ps(p, v); }
};
struct VecD {
  using T = double;
  using V = __m128d;
  static constexpr int W = 2;
  static V load(const T* p) { return _mm_loadu_pd(p); }
  static V set1(T v) { return _mm_set1_pd(v); }
  static V sub(V a, V b) { return _mm_sub_pd(a, b); }
  static V mul(V a, V b) { return _mm_mul_pd(a, b); }
  static V fma(V a, V b, V c) { return _mm_add_pd(_mm_mul_pd(a, b), c); }
  static void storeu(T* p, V v) { _mm_storeu_pd(p, v); }
  static void stream(T* p, V v) { _mm_stream_pd(p, v); }
};
#define FASTSOFTMAX_XENT_HAS_FMA 0
#endif

// a * b + c, rounded as the vector code rounds it.
template <class T>
inline T fma_like(T a, T b, T c) {
#if defined(FASTSOFTMAX_XENT_HAS_FMA) && FASTSOFTMAX_XENT_HAS_FMA
  return std::fma(a, b, c);
#else
  return a * b + c;
#endif
}

#ifdef FASTSOFTMAX_XENT_HAS_FMA
// o[i] = op(i): vectors of W where possible; streamed stores start at the first
// vector-aligned element (o is at least element-aligned).
template <class VT, class Vop, class Sop>
inline void write_each(typename VT::T* o, int64_t n, bool stream, Vop vop, Sop sop) {
  using T = typename VT::T;
  constexpr int64_t W = VT::W;
  int64_t i = 0;
  if (stream) {
    const uintptr_t mis = (reinterpret_cast<uintptr_t>(o) / sizeof(T)) % W;
    const int64_t head = std::min<int64_t>(n, mis ? W - int64_t(mis) : 0);
    for (; i < head; ++i) o[i] = sop(i);
    for (; i + W <= n; i += W) VT::stream(o + i, vop(i));
    for (; i < n; ++i) o[i] = sop(i);
    _mm_sfence();
    return;
  }
  for (; i + W <= n; i += W) VT::storeu(o + i, vop(i));
  for (; i < n; ++i) o[i] = sop(i);
}

template <class T>
struct VecOf;
template <>
struct VecOf<float> {
  using type = VecF;
};
template <>
struct VecOf<double> {
  using type = VecD;
};

// softmax backward: o_i = y_i * (g_i - s)
template <class T>
inline void softmax_bwd_t(const T* g, const T* y, T* o, int64_t n, T s, bool stream) {
  using VT = typename VecOf<T>::type;
  const auto vs = VT::set1(s);
  write_each<VT>(
      o, n, stream, [&](int64_t i) { return VT::mul(VT::load(y + i), VT::sub(VT::load(g + i), vs)); },
      [&](int64_t i) { return y[i] * (g[i] - s); });
}
// log_softmax backward, given e_i = exp(y_i): o_i = g_i - e_i * s
template <class T>
inline void log_softmax_bwd_t(const T* g, const T* e, T* o, int64_t n, T s, bool stream) {
  using VT = typename VecOf<T>::type;
  const auto vms = VT::set1(-s);
  write_each<VT>(
      o, n, stream, [&](int64_t i) { return VT::fma(VT::load(e + i), vms, VT::load(g + i)); },
      [&](int64_t i) { return fma_like(e[i], -s, g[i]); });
}
// o_i = e_i - b   (sparse gradient: e = softmax * scale)
template <class T>
inline void store_sub_t(const T* e, T* o, int64_t n, T b, bool stream) {
  using VT = typename VecOf<T>::type;
  const auto vb = VT::set1(b);
  write_each<VT>(
      o, n, stream, [&](int64_t i) { return VT::sub(VT::load(e + i), vb); },
      [&](int64_t i) { return e[i] - b; });
}
// o_i = e_i - (a * l_i + b)   (dense gradient: target = a * l + b)
template <class T>
inline void store_sub_affine_t(const T* e, const T* l, T* o, int64_t n, T a, T b, bool stream) {
  using VT = typename VecOf<T>::type;
  const auto va = VT::set1(a), vb = VT::set1(b);
  write_each<VT>(
      o, n, stream,
      [&](int64_t i) { return VT::sub(VT::load(e + i), VT::fma(va, VT::load(l + i), vb)); },
      [&](int64_t i) { return e[i] - fma_like(a, l[i], b); });
}
#else   // no x86 vectors: plain loops that the compiler vectorizes; no streaming
template <class T>
inline void softmax_bwd_t(const T* g, const T* y, T* o, int64_t n, T s, bool) {
  for (int64_t i = 0; i < n; ++i) o[i] = y[i] * (g[i] - s);
}
template <class T>
inline void log_softmax_bwd_t(const T* g, const T* e, T* o, int64_t n, T s, bool) {
  for (int64_t i = 0; i < n; ++i) o[i] = std::fma(e[i], -s, g[i]);
}
template <class T>
inline void store_sub_t(const T* e, T* o, int64_t n, T b, bool) {
  for (int64_t i = 0; i < n; ++i) o[i] = e[i] - b;
}
template <class T>
inline void store_sub_affine_t(const T* e, const T* l, T* o, int64_t n, T a, T b, bool) {
  for (int64_t i = 0; i < n; ++i) o[i] = e[i] - std::fma(a, l[i], b);
}
#endif

inline void softmax_bwd(const float* g, const float* y, float* o, int64_t n, float s, bool st) {
  softmax_bwd_t(g, y, o, n, s, st);
}
inline void softmax_bwd(const double* g, const double* y, double* o, int64_t n, double s,
                        bool st) {
  softmax_bwd_t(g, y, o, n, s, st);
}
inline void log_softmax_bwd(const float* g, const float* e, float* o, int64_t n, float s,
                            bool st) {
  log_softmax_bwd_t(g, e, o, n, s, st);
}
inline void log_softmax_bwd(const double* g, const double* e, double* o, int64_t n, double s,
                            bool st) {
  log_softmax_bwd_t(g, e, o, n, s, st);
}
inline void store_sub(const float* e, float* o, int64_t n, float b, bool st) {
  store_sub_t(e, o, n, b, st);
}
inline void store_sub(const double* e, double* o, int64_t n, double b, bool st) {
  store_sub_t(e, o, n, b, st);
}
inline void store_sub_affine(const float* e, const float* l, float* o, int64_t n, float a,
                             float b, bool st) {
  store_sub_affine_t(e, l, o, n, a, b, st);
}
inline void store_sub_affine(const double* e, const double* l, double* o, int64_t n, double a,
                             double b, bool st) {
  store_sub_affine_t(e, l, o, n, a, b, st);
}

// True when every y_i <= 0 (false on NaN): the domain where the table's exp
// (softmax_finish with max = 0) is specified.
template <class C>
inline bool all_nonpositive_t(const C* y, int64_t n) {
  int bad = 0;
  for (int64_t i = 0; i < n; ++i) bad |= !(y[i] <= C(0));
  return bad == 0;
}
inline bool all_nonpositive(const float* y, int64_t n) { return all_nonpositive_t(y, n); }
inline bool all_nonpositive(const double* y, int64_t n) { return all_nonpositive_t(y, n); }

#undef FASTSOFTMAX_XENT_HAS_FMA

template <class Set>
void fill_training_loops(Set& k) {
  k.sum_minus = sum_minus;
  k.dot = dot;
  k.label_terms = label_terms;
  k.store_sub = store_sub;
  k.store_sub_affine = store_sub_affine;
  k.softmax_bwd = softmax_bwd;
  k.log_softmax_bwd = log_softmax_bwd;
  k.all_nonpositive = all_nonpositive;
  k.sum_check = sum_check;
}
