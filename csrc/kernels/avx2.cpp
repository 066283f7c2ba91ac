// The avx2 ISA: AVX2 + FMA + F16C, 8 float / 4 double lanes.
//
// Compiled in a target region (no -m flags: the rest of the build stays generic
// x86-64); dispatch.cpp only hands this table out when the CPU and OS support it.
// The kernel bodies are the ISA-generic templates of generic/*.h, instantiated
// with the Ops classes below. Tails: vmaskmov loads/stores for float32/float64
// (masked-off lanes read as -inf), a padded copy through a small stack buffer for
// float16 — always the same vector code, so a lane's bits never depend on its
// position.
#include "fastsoftmax/kernels.h"
#include "kernels/isa_entries.h"
#include "testing/exp_hooks.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <type_traits>

#include "fastsoftmax/common.h"
#include "fastsoftmax/merge.h"  // generic/training_rows.h
#include "kernels/simd_common.h"

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c,bmi2"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,bmi2")
#endif

namespace fastsoftmax {
namespace avx2 {
namespace {

using simd::SumExp;

constexpr int kExpF16 = 1;    // exp_ps's shorter forms (see there)
constexpr int kExpTrain = 2;

// exp(x) on 8 float32 lanes.
//   Accuracy: for x >= -87.33654 (= -0x1.5d589ep+6, the smallest float with
//   exp(x) >= 2^-126, the smallest normal) the result is within 1 ULP of the
//   correctly rounded exp(x): tests/test_exp.py checks every float in [-104, 0]
//   (max 1 ULP, < 0.95 ULP against the exact value) and a sample up to 88.72.
//   Underflow: x < -87.33654 gives +0: results that would be subnormal are flushed,
//   such x are clamped before any arithmetic, and 2^n is applied by an integer add to
//   the exponent field, so no subnormal is ever produced or consumed.
//   Overflow: x > 88.72283 (= 0x1.62e42ep+6, the largest float with a finite exp)
//   gives +inf. Specials: exp(NaN) = NaN, exp(-inf) = +0, exp(+inf) = +inf.
//   Method: as the avx512 exp_ps (n = rint(x·log2 e) by the 1.5·2^23 bias, two-part
//   ln2 Cody–Waite reduction, degree-6 polynomial with FMA), then p·2^n as
//   bits(p) + (n << 23): for x in [-87.34, 88.72], n is in [-126, 128] and the result
//   is a normal float (n = -126 only with p >= 1, n = 128 only with p < 1).
//   kLe0 = true: the variant for x <= 0 (or NaN) that the row kernels use on x - max,
//   bit-identical to the full one there (tested), unspecified for x > 0 (not a crash:
//   only a NaN row can get there). With n in [-126, 0], 2^n is a normal float built
//   from t's bits (bias 127 folded into the rounding constant) and p·2^n an exact
//   multiply, through which NaN propagates: no upper clamp and no blend.
//   kShort: shorter forms where the result needs less than 1 ULP of float32, with
//   r = x - n·ln2 from one constant (absolute error < 3e-7 in r), exp(0) = 1 exactly
//   and the same range handling (tests/test_exp.py bounds both over [-88, 0]):
//   kExpF16, results rounded to float16 (the F16 kernels: 11-bit significand): q of
//   degree 2, fitted to 5.4e-6 relative error (0.006 float16 ULP), three operations
//   fewer; kExpTrain, the cross-entropy and backward kernels, whose docs/contract.md §5 bound is 64 ε
//   times the row's scale: q of degree 3, 4.5e-7 relative (about 4 ULP), two fewer.
//   kNoFlush (with kLe0): for x known to be >= lo or NaN (the caller has checked its
//   row's range): no clamp and no flush, the same bits there, three operations fewer.
constexpr float kExpPsMinArg = -0x1.5d589ep+6f;
template <bool kLe0 = false, int kShort = 0, bool kNoFlush = false>
inline __m256 exp_ps(__m256 x) {
  static_assert(kLe0 || !kNoFlush, "kNoFlush is for x <= 0");
  const __m256 lo = _mm256_set1_ps(kExpPsMinArg);
  const __m256 hi = _mm256_set1_ps(0x1.62e42ep+6f);
  const __m256 magic = _mm256_set1_ps(kLe0 ? 0x1.8p23f + 127.0f : 0x1.8p23f);
  __m256 xc = kNoFlush ? x : _mm256_max_ps(lo, x);  // NaN flows through (second operand)
  if (!kLe0) xc = _mm256_min_ps(hi, xc);
  const __m256 t = _mm256_fmadd_ps(xc, _mm256_set1_ps(0x1.715476p+0f), magic);
  const __m256 n = _mm256_sub_ps(t, magic);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.62e430p-1f), xc);
  if (kShort == 0) r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-0x1.05c610p-29f), r);
  constexpr const float* q = kShort == kExpF16     ? simd::kExpQF16
                             : kShort == kExpTrain ? simd::kExpQTrain
                                                   : simd::kExpQ;
  constexpr int nq = kShort == kExpF16 ? 3 : kShort == kExpTrain ? 4 : 5;
  __m256 p = _mm256_set1_ps(q[0]);
  for (int k = 1; k < nq; ++k) p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(q[k]));  // unrolled
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  if (kLe0) {  // t's low mantissa bits hold n + 127: shifted by 23 they are 2^n
    const __m256 s = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_castps_si256(t), 23));
    if (kNoFlush) return _mm256_mul_ps(p, s);
    return _mm256_and_ps(_mm256_mul_ps(p, s), _mm256_cmp_ps(x, lo, _CMP_NLT_UQ));
  }
  // t's low mantissa bits hold n (two's complement): shifted by 23 they are n << 23.
  __m256 res = _mm256_castsi256_ps(_mm256_add_epi32(
      _mm256_castps_si256(p), _mm256_slli_epi32(_mm256_castps_si256(t), 23)));
  // x > hi or NaN: x + inf is +inf or NaN (the exponent add above garbles NaN bits).
  const __m256 big = _mm256_cmp_ps(x, hi, _CMP_NLE_UQ);
  res = _mm256_blendv_ps(res, _mm256_add_ps(x, _mm256_set1_ps(HUGE_VALF)), big);
  return _mm256_and_ps(res, _mm256_cmp_ps(x, lo, _CMP_NLT_UQ));  // x < lo: +0
}

// exp(x) on 4 float64 lanes.
//   Accuracy: for x >= -708.3964185322641 (the smallest double with
//   exp(x) >= 2^-1022) within 1 ULP of the correctly rounded exp(x) (tests: tens of
//   millions of samples in [-745, 0] against expl). x below that gives +0 (no
//   subnormals, as above); x > 709.782712893384 gives +inf; NaN -> NaN,
//   -inf -> +0, +inf -> +inf.
//   Method as exp_ps with the 1.5·2^52 bias, exp(r) = 1 + r + r²·q(r), q of degree 9
//   (relative error 1.6e-17), 2^n added to the exponent field (n in [-1022, 1024]).
//   kLe0, kNoFlush: as for exp_ps.
constexpr double kExpPdMinArg = -0x1.6232bdd7abcd2p+9;
template <bool kLe0 = false, bool kNoFlush = false>
inline __m256d exp_pd(__m256d x) {
  static_assert(kLe0 || !kNoFlush, "kNoFlush is for x <= 0");
  const __m256d lo = _mm256_set1_pd(kExpPdMinArg);
  const __m256d hi = _mm256_set1_pd(0x1.62e42fefa39efp+9);
  const __m256d magic = _mm256_set1_pd(kLe0 ? 0x1.8p52 + 1023.0 : 0x1.8p52);
  __m256d xc = kNoFlush ? x : _mm256_max_pd(lo, x);
  if (!kLe0) xc = _mm256_min_pd(hi, xc);
  const __m256d t = _mm256_fmadd_pd(xc, _mm256_set1_pd(0x1.71547652b82fep+0), magic);
  const __m256d n = _mm256_sub_pd(t, magic);
  __m256d r = _mm256_fnmadd_pd(n, _mm256_set1_pd(0x1.62e42fefa39efp-1), xc);
  r = _mm256_fnmadd_pd(n, _mm256_set1_pd(0x1.abc9e3b39803fp-56), r);
  __m256d p = _mm256_set1_pd(0x1.af389ecfc4b9cp-26);
  p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(0x1.28917c89a43a7p-22));
  p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(0x1.71de0db2f6b19p-19));
  p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(0x1.a019b9149a41cp-16));
  p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(0x1.a01a01a7c2efep-13));
  p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(0x1.6c16c17889ef1p-10));
  p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(0x1.11111111109b5p-7));
  p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(0x1.5555555553d68p-5));
  p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(0x1.5555555555556p-3));
  p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(0x1.0000000000001p-1));
  p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0));
  p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0));
  if (kLe0) {  // 2^n from t's bits (n + 1023), p·2^n exact, NaN propagates
    const __m256d s = _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_castpd_si256(t), 52));
    if (kNoFlush) return _mm256_mul_pd(p, s);
    return _mm256_and_pd(_mm256_mul_pd(p, s), _mm256_cmp_pd(x, lo, _CMP_NLT_UQ));
  }
  __m256d res = _mm256_castsi256_pd(_mm256_add_epi64(
      _mm256_castpd_si256(p), _mm256_slli_epi64(_mm256_castpd_si256(t), 52)));
  const __m256d big = _mm256_cmp_pd(x, hi, _CMP_NLE_UQ);
  res = _mm256_blendv_pd(res, _mm256_add_pd(x, _mm256_set1_pd(HUGE_VAL)), big);
  return _mm256_and_pd(res, _mm256_cmp_pd(x, lo, _CMP_NLT_UQ));
}

// The first k (1 <= k < W) lanes of v to p, as 4-, 2- and 1-lane stores. Not
// vmaskmov: on AMD's Zen 2/3 a masked 256-bit store is microcoded (tens of cycles), and
// it was most of a short row's tail: softmax rows of 100 floats 72 -> 58 ns, of 20
// floats 38 -> 28 ns (hot, Zen 3). k is the same for every row of a batch, so the
// branches predict.
inline void store_part_ps(float* p, int64_t k, __m256 v) {
  __m128 q = _mm256_castps256_ps128(v);
  if (k & 4) {
    _mm_storeu_ps(p, q);
    q = _mm256_extractf128_ps(v, 1);
    p += 4;
  }
  if (k & 2) {
    _mm_storel_pi(reinterpret_cast<__m64*>(p), q);
    q = _mm_movehl_ps(q, q);
    p += 2;
  }
  if (k & 1) _mm_store_ss(p, q);
}
inline void store_part_pd(double* p, int64_t k, __m256d v) {
  __m128d q = _mm256_castpd256_pd128(v);
  if (k & 2) {
    _mm_storeu_pd(p, q);
    q = _mm256_extractf128_pd(v, 1);
    p += 2;
  }
  if (k & 1) _mm_store_sd(p, q);
}

// The first k (1 <= k < W) lanes from p, the others -inf (as 4-, 2- and 1-lane loads).
inline __m256 load_part_ps(const float* p, int64_t k) {
  const __m128 ninf = _mm_set1_ps(-HUGE_VALF);
  __m128 lo = ninf, r = ninf;
  if (k & 4) {
    lo = _mm_loadu_ps(p);
    p += 4;
  }
  if (k & 2) {
    r = _mm_loadl_pi(r, reinterpret_cast<const __m64*>(p));
    if (k & 1) r = _mm_insert_ps(r, _mm_load_ss(p + 2), 0x20);
  } else if (k & 1) {
    r = _mm_move_ss(r, _mm_load_ss(p));
  }
  return k & 4 ? _mm256_set_m128(r, lo) : _mm256_set_m128(ninf, r);
}
inline __m256d load_part_pd(const double* p, int64_t k) {
  const __m128d ninf = _mm_set1_pd(-HUGE_VAL);
  __m128d lo = ninf, r = ninf;
  if (k & 2) {
    lo = _mm_loadu_pd(p);
    p += 2;
  }
  if (k & 1) r = _mm_loadl_pd(r, p);
  return k & 2 ? _mm256_set_m128d(r, lo) : _mm256_set_m128d(ninf, r);
}

// The same for 8 float16 lanes (-inf: 0xfc00; bfloat16: 0xff80 given as kNegInf4),
// through general registers: a buffer written piecewise and read as one vector stalls
// on store forwarding.
inline __m128i load_part_epi16(const uint16_t* p, int64_t k,
                               uint64_t kNegInf4 = 0xfc00fc00fc00fc00u) {
  uint64_t lo = kNegInf4, r = kNegInf4;
  if (k & 4) {
    std::memcpy(&lo, p, 8);
    p += 4;
  }
  if (k & 2) {
    uint32_t two;
    std::memcpy(&two, p, 4);
    r = (r & ~uint64_t(0xffffffffu)) | two;
    p += 2;
  }
  if (k & 1) {
    uint16_t one;
    std::memcpy(&one, p, 2);
    const int at = k & 2 ? 32 : 0;
    r = (r & ~(uint64_t(0xffffu) << at)) | (uint64_t(one) << at);
  }
  return k & 4 ? _mm_set_epi64x(int64_t(r), int64_t(lo)) : _mm_set_epi64x(int64_t(kNegInf4), int64_t(r));
}
inline void store_part_epi16(uint16_t* p, int64_t k, __m128i h) {
  if (k & 4) {
    _mm_storel_epi64(reinterpret_cast<__m128i*>(p), h);
    h = _mm_unpackhi_epi64(h, h);
    p += 4;
  }
  uint32_t low = uint32_t(_mm_cvtsi128_si32(h));
  if (k & 2) {
    std::memcpy(p, &low, 4);
    low = uint32_t(_mm_extract_epi16(h, 2));
    p += 2;
  }
  if (k & 1) {
    const uint16_t one = uint16_t(low);
    std::memcpy(p, &one, 2);
  }
}

// Sums of float exps in double lanes: 8 floats -> two vectors of 4 doubles.
struct AccF {
  __m256d lo, hi;
};
inline void accf_add(AccF& a, __m256 e) {
  a.lo = _mm256_add_pd(a.lo, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
  a.hi = _mm256_add_pd(a.hi, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
}
inline double hsum(__m256d v) {
  const __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
  return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}

struct F32 {
  using S = float;
  using C = float;
  using V = __m256;
  using Acc = AccF;
  static constexpr int64_t W = 8;
  static constexpr bool kOneAcc = true;  // acc_add4 sums into a[0] alone
  static constexpr bool kStoreExp = true;
  static constexpr int kPanelV = 2;  // 16 ymm registers: exp constants + accumulators
  // Batches of rows of 64 KiB and more with plain stores (generic/row_batches.h
  // StreamRowsBelow): with 8 lanes the exps are slow enough that y's reads for
  // ownership hide under them, where streaming leaves a write pass of its own.
  // Measured on a Zen 3 (AVX2 only), same process, x copy, streamed -> plain:
  // (256, 32000) 1.58 -> 1.29, (64, 128256) 1.60 -> 1.37, (512, 16384) 1.68 -> 1.54,
  // log_softmax -6% to -17%; but rows of 16-32 KiB mixed (log_softmax (4096, 4096)
  // 1.42 -> 1.83). Long rows' finish (-6% to +6% over two runs) and the panels,
  // whose write pass is separate, still stream.
  static constexpr int64_t kStreamRowsBelowBytes = int64_t(64) << 10;
  static V load(const S* p) { return _mm256_loadu_ps(p); }
  // k == W (a panel's last vector when w is a multiple of W): the plain move; the
  // branch is loop-invariant in every caller.
  static V load_n(const S* p, int64_t k) {
    if (k == W) return load(p);
    return load_part_ps(p, k);
  }
  static void store(S* p, V v) { _mm256_storeu_ps(p, v); }
  static void store_n(S* p, int64_t k, V v) {
    if (k == W) return store(p, v);
    store_part_ps(p, k, v);
  }
  static V loadc(const C* p) { return _mm256_loadu_ps(p); }
  static void storec(C* p, V v) { _mm256_storeu_ps(p, v); }
  static void stream(S* p, V v) { _mm256_stream_ps(p, v); }  // p 64-byte aligned
  static void fence() { _mm_sfence(); }
  static V set1(C v) { return _mm256_set1_ps(v); }
  static V max(V a, V b) { return _mm256_max_ps(a, b); }
  static V sub(V a, V b) { return _mm256_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V div(V a, V b) { return _mm256_div_ps(a, b); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }  // a * b + c, one rounding
  // 1 where e == 1, else +0 (generic/set_apart.h)
  static V ones(V e) {
    const V one = _mm256_set1_ps(1.0f);
    return _mm256_and_ps(_mm256_cmp_ps(e, one, _CMP_EQ_OQ), one);
  }
  static V exp(V v) { return exp_ps(v); }
  static V exp_le0(V v) { return exp_ps<true>(v); }
  // exp_le0 for x >= kExpLe0NfMin (or NaN): the same bits, no clamp and no flush
  // (generic/row_passes.h HasExpNf: the row kernels check a row's range first)
  static constexpr C kExpLe0NfMin = kExpPsMinArg;
  static V exp_le0_nf(V v) { return exp_ps<true, 0, true>(v); }
  static V min(V a, V b) { return _mm256_min_ps(a, b); }
  static C hmax(V v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
  }
  static Acc acc_zero() { return {_mm256_setzero_pd(), _mm256_setzero_pd()}; }
  static void acc_add(Acc& a, V e) { accf_add(a, e); }
  // ((e0 + e1) + (e2 + e3)) in float (two roundings of relative 2^-24 at most on
  // positive terms, the sum stays within 1 ULP of float), then into the double lanes.
  static void acc_add2(Acc& a, V e0, V e1) { accf_add(a, _mm256_add_ps(e0, e1)); }
  static void acc_add4(Acc* a, V e0, V e1, V e2, V e3) {
    accf_add(a[0], _mm256_add_ps(_mm256_add_ps(e0, e1), _mm256_add_ps(e2, e3)));
  }
  static void acc_merge(Acc& a, const Acc& b) {
    a.lo = _mm256_add_pd(a.lo, b.lo);
    a.hi = _mm256_add_pd(a.hi, b.hi);
  }
  static SumExp acc_total(const Acc& a) {
    const double s = hsum(_mm256_add_pd(a.lo, a.hi));
    return {s, s - 1.0};  // exact: s >= 1 (the max's own term) whenever it matters
  }
  static void acc_parts(const Acc& a, double* s, double* c) {
    _mm256_storeu_pd(s, a.lo);
    _mm256_storeu_pd(s + 4, a.hi);
    _mm256_storeu_pd(c, _mm256_setzero_pd());
    _mm256_storeu_pd(c + 4, _mm256_setzero_pd());
  }
  static Acc acc_from_parts(const double* s, const double*) {
    return {_mm256_loadu_pd(s), _mm256_loadu_pd(s + 4)};
  }
  static bool s_is_nan(S v) { return v != v; }
};

// float16 storage, float32 compute: F16C conversions fused into loads and stores
// (round to nearest even on the way out). AVX2 has no 16-bit masked moves: tails go
// through general registers (load_part_epi16, store_part_epi16).
struct F16 : F32 {
  using S = uint16_t;
  static constexpr bool kStoreExp = false;
  static V exp(V v) { return exp_ps<false, kExpF16>(v); }
  static V exp_le0(V v) { return exp_ps<true, kExpF16>(v); }
  static V exp_le0_nf(V v) { return exp_ps<true, kExpF16, true>(v); }
  static V load(const S* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static V load_n(const S* p, int64_t k) {
    if (k == W) return load(p);
    return _mm256_cvtph_ps(load_part_epi16(p, k));
  }
  static __m128i to_half(V v) { return _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT); }
  static void store(S* p, V v) { _mm_storeu_si128(reinterpret_cast<__m128i*>(p), to_half(v)); }
  static void store_n(S* p, int64_t k, V v) {
    if (k == W) return store(p, v);
    store_part_epi16(p, k, to_half(v));
  }
  // non-temporal: 8 halves = 16 bytes, p 16-byte aligned (stream_row aligns y + i to
  // 64 bytes, then steps by 16)
  static void stream(S* p, V v) { _mm_stream_si128(reinterpret_cast<__m128i*>(p), to_half(v)); }
  static bool s_is_nan(S h) { return (h & 0x7fffu) > 0x7c00u; }
};

// bfloat16 storage, float32 compute, F16's exp: loads widen by a 16-bit shift
// (exact), stores round to nearest even in integer lanes (float_to_bf16's bits,
// common.h: a NaN keeps its sign and upper payload, made quiet); tails as F16's,
// padded with -inf (0xff80).
inline __m256 bf16_widen(__m128i h) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
inline __m128i bf16_narrow(__m256 v) {
  const __m256i x = _mm256_castps_si256(v);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(1));
  const __m256i r = _mm256_add_epi32(_mm256_add_epi32(x, _mm256_set1_epi32(0x7fff)), lsb);
  const __m256i q = _mm256_or_si256(x, _mm256_set1_epi32(0x00400000));
  const __m256 nan = _mm256_cmp_ps(v, v, _CMP_UNORD_Q);
  const __m256 sel = _mm256_blendv_ps(_mm256_castsi256_ps(r), _mm256_castsi256_ps(q), nan);
  const __m256i h = _mm256_srli_epi32(_mm256_castps_si256(sel), 16);
  // (each lane < 2^16: the pack's unsigned saturation keeps it)
  return _mm_packus_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}
struct BF16 : F32 {
  using S = bf16_t;
  static constexpr bool kStoreExp = false;
  static V exp(V v) { return F16::exp(v); }
  static V exp_le0(V v) { return F16::exp_le0(v); }
  static V exp_le0_nf(V v) { return F16::exp_le0_nf(v); }
  static const uint16_t* bits(const S* p) { return reinterpret_cast<const uint16_t*>(p); }
  static V load(const S* p) {
    return bf16_widen(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static V load_n(const S* p, int64_t k) {
    if (k == W) return load(p);
    return bf16_widen(load_part_epi16(bits(p), k, 0xff80ff80ff80ff80u));
  }
  static void store(S* p, V v) { _mm_storeu_si128(reinterpret_cast<__m128i*>(p), bf16_narrow(v)); }
  static void store_n(S* p, int64_t k, V v) {
    if (k == W) return store(p, v);
    store_part_epi16(reinterpret_cast<uint16_t*>(p), k, bf16_narrow(v));
  }
  // non-temporal: as F16's (16 bytes, p 16-byte aligned)
  static void stream(S* p, V v) { _mm_stream_si128(reinterpret_cast<__m128i*>(p), bf16_narrow(v)); }
  static bool s_is_nan(S h) { return (h.bits & 0x7fffu) > 0x7f80u; }
};
using BF16Native = BF16;  // (no native conversions)
inline bool bf16_native() { return false; }

// Compensated (Neumaier) sums per double lane: the exps are >= 0, so the larger
// of the two addends is their max and Fast2Sum's error term is exact.
struct AccD {
  __m256d s, c;
};

struct F64 {
  using S = double;
  using C = double;
  using V = __m256d;
  using Acc = AccD;
  static constexpr int64_t W = 4;
  static constexpr bool kStoreExp = true;
  static constexpr int kPanelV = 2;
  static constexpr int64_t kStreamRowsBelowBytes = int64_t(64) << 10;  // as F32's
  static V load(const S* p) { return _mm256_loadu_pd(p); }
  static V load_n(const S* p, int64_t k) {
    if (k == W) return load(p);
    return load_part_pd(p, k);
  }
  static void store(S* p, V v) { _mm256_storeu_pd(p, v); }
  static void store_n(S* p, int64_t k, V v) {
    if (k == W) return store(p, v);
    store_part_pd(p, k, v);
  }
  static V loadc(const C* p) { return _mm256_loadu_pd(p); }
  static void storec(C* p, V v) { _mm256_storeu_pd(p, v); }
  static void stream(S* p, V v) { _mm256_stream_pd(p, v); }  // p 64-byte aligned
  static void fence() { _mm_sfence(); }
  static V set1(C v) { return _mm256_set1_pd(v); }
  static V max(V a, V b) { return _mm256_max_pd(a, b); }
  static V sub(V a, V b) { return _mm256_sub_pd(a, b); }
  static V mul(V a, V b) { return _mm256_mul_pd(a, b); }
  static V div(V a, V b) { return _mm256_div_pd(a, b); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
  static V exp(V v) { return exp_pd(v); }
  static V exp_le0(V v) { return exp_pd<true>(v); }
  static constexpr C kExpLe0NfMin = kExpPdMinArg;  // as F32's
  static V exp_le0_nf(V v) { return exp_pd<true, true>(v); }
  static V min(V a, V b) { return _mm256_min_pd(a, b); }
  static C hmax(V v) {
    const __m128d m = _mm_max_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_max_sd(m, _mm_unpackhi_pd(m, m)));
  }
  static Acc acc_zero() { return {_mm256_setzero_pd(), _mm256_setzero_pd()}; }
  // s + e = t + err exactly, err = (max(s, e) - t) + min(s, e)   (s, e >= 0)
  static void acc_add(Acc& a, V e) {
    const V t = _mm256_add_pd(a.s, e);
    const V err = _mm256_add_pd(_mm256_sub_pd(_mm256_max_pd(a.s, e), t), _mm256_min_pd(a.s, e));
    a.c = _mm256_add_pd(a.c, err);
    a.s = t;
  }
  static void acc_add2(Acc& a, V e0, V e1) {
    acc_add(a, e0);
    acc_add(a, e1);
  }
  // Four vectors of exps (each <= 1): ((e0 + e1) + (e2 + e3)) first, two roundings
  // of relative 2^-53 at most on positive terms, then one compensated add: 8 vector
  // ops per four vectors instead of 20 (the sum stays within 2 ULP; docs/contract.md §5's float64
  // budget is 16). Into a[0] alone (kOneAcc).
  static constexpr bool kOneAcc = true;
  static void acc_add4(Acc* a, V e0, V e1, V e2, V e3) {
    acc_add(a[0], _mm256_add_pd(_mm256_add_pd(e0, e1), _mm256_add_pd(e2, e3)));
  }
  static void acc_merge(Acc& a, const Acc& b) {
    const V t = _mm256_add_pd(a.s, b.s);
    const V err =
        _mm256_add_pd(_mm256_sub_pd(_mm256_max_pd(a.s, b.s), t), _mm256_min_pd(a.s, b.s));
    a.c = _mm256_add_pd(_mm256_add_pd(a.c, b.c), err);
    a.s = t;
  }
  // sum = hi + lo as a compensated sum of the lanes; rest = (hi - 1) + lo, where
  // hi - 1 is exact (hi >= 1), so the max's term is set apart without loss.
  static SumExp acc_total(const Acc& a) {
    alignas(32) double s[4], c[4];
    _mm256_store_pd(s, a.s);
    _mm256_store_pd(c, a.c);
    CompensatedSum sum;
    for (int j = 0; j < 4; ++j) sum.add(s[j]);
    if (std::isinf(sum.sum)) return {sum.sum, sum.sum};  // c is inf - inf = NaN: +inf, not NaN
    sum.add((c[0] + c[1]) + (c[2] + c[3]));
    return {sum.value(), (sum.sum - 1.0) + sum.comp};
  }
  static void acc_parts(const Acc& a, double* s, double* c) {
    _mm256_storeu_pd(s, a.s);
    _mm256_storeu_pd(c, a.c);
  }
  static Acc acc_from_parts(const double* s, const double* c) {
    return {_mm256_loadu_pd(s), _mm256_loadu_pd(c)};
  }
  static bool s_is_nan(S v) { return v != v; }
};

// The float32 Ops of the cross-entropy and backward kernels (generic/training_rows.h): the
// shorter exp their docs/contract.md §5 bound allows.
struct F32Train : F32 {
  static V exp(V v) { return exp_ps<false, kExpTrain>(v); }
  static V exp_le0(V v) { return exp_ps<true, kExpTrain>(v); }
  static V exp_le0_nf(V v) { return exp_ps<true, kExpTrain, true>(v); }
};

// The float16 kernels' exp over float arrays (the test hook exp_f16): F16's own.
struct F16Exp : F32 {
  static V exp(V v) { return F16::exp(v); }
  static V exp_le0(V v) { return F16::exp_le0(v); }
  static V exp_le0_nf(V v) { return F16::exp_le0_nf(v); }
};

// The selection scan's test of a full chunk (generic/select_rows.h): compares OR-ed
// in vectors, one movemask per chunk.
struct SelectChunk {
  static_assert(kSelectChunk == 64, "eight float32 / sixteen float64 vectors a chunk");
  template <int kCmp>
  static bool any(const float* x, float t) {
    const __m256 v = _mm256_set1_ps(t);
    __m256 m = _mm256_cmp_ps(_mm256_loadu_ps(x), v, kCmp);
    for (int j = 1; j < 8; ++j) m = _mm256_or_ps(m, _mm256_cmp_ps(_mm256_loadu_ps(x + 8 * j), v, kCmp));
    return _mm256_movemask_ps(m) != 0;
  }
  template <int kCmp>
  static bool any(const double* x, double t) {
    const __m256d v = _mm256_set1_pd(t);
    __m256d m = _mm256_cmp_pd(_mm256_loadu_pd(x), v, kCmp);
    for (int j = 1; j < 16; ++j) m = _mm256_or_pd(m, _mm256_cmp_pd(_mm256_loadu_pd(x + 4 * j), v, kCmp));
    return _mm256_movemask_pd(m) != 0;
  }
  template <class C>
  static bool above(const C* x, C t) { return any<_CMP_NLE_UQ>(x, t); }  // > t or NaN
  template <class C>
  static bool below(const C* x, C t) { return any<_CMP_LT_OQ>(x, t); }
  // The primitives of generic/select_rows.h's max_nan and min_above: NaN lanes as a
  // vector (OR-able), and a min over the lanes at or above t.
  static __m256 unord(__m256 v) { return _mm256_cmp_ps(v, v, _CMP_UNORD_Q); }
  static __m256d unord(__m256d v) { return _mm256_cmp_pd(v, v, _CMP_UNORD_Q); }
  static __m256 either(__m256 a, __m256 b) { return _mm256_or_ps(a, b); }
  static __m256d either(__m256d a, __m256d b) { return _mm256_or_pd(a, b); }
  static bool any(__m256 v) { return _mm256_movemask_ps(v) != 0; }
  static bool any(__m256d v) { return _mm256_movemask_pd(v) != 0; }
  static __m256 keep_min(__m256 m, __m256 v, __m256 t) {
    const __m256 inf = _mm256_set1_ps(std::numeric_limits<float>::infinity());
    return _mm256_min_ps(m, _mm256_blendv_ps(inf, v, _mm256_cmp_ps(v, t, _CMP_GE_OQ)));
  }
  static __m256d keep_min(__m256d m, __m256d v, __m256d t) {
    const __m256d inf = _mm256_set1_pd(std::numeric_limits<double>::infinity());
    return _mm256_min_pd(m, _mm256_blendv_pd(inf, v, _mm256_cmp_pd(v, t, _CMP_GE_OQ)));
  }
  static __m256 min(__m256 a, __m256 b) { return _mm256_min_ps(a, b); }
  static __m256d min(__m256d a, __m256d b) { return _mm256_min_pd(a, b); }
  // argmax: lanes above the running max, and a blend by them
  static __m256 gt(__m256 a, __m256 b) { return _mm256_cmp_ps(a, b, _CMP_GT_OQ); }
  static __m256d gt(__m256d a, __m256d b) { return _mm256_cmp_pd(a, b, _CMP_GT_OQ); }
  static __m256 select(__m256 m, __m256 a, __m256 b) { return _mm256_blendv_ps(b, a, m); }
  static __m256d select(__m256d m, __m256d a, __m256d b) { return _mm256_blendv_pd(b, a, m); }
  // top_p's level_sums: acc + e on the lanes with z >= t (e AND-ed with the compare)
  static __m256 add_ge(__m256 acc, __m256 z, __m256 t, __m256 e) {
    return _mm256_add_ps(acc, _mm256_and_ps(_mm256_cmp_ps(z, t, _CMP_GE_OQ), e));
  }
  static __m256d add_ge(__m256d acc, __m256d z, __m256d t, __m256d e) {
    return _mm256_add_pd(acc, _mm256_and_pd(_mm256_cmp_pd(z, t, _CMP_GE_OQ), e));
  }
};
#define FASTSOFTMAX_SELECT_CHUNK 1

#define FASTSOFTMAX_TRAIN_VEC 256
#include "kernels/isa_table.h"  // every family for these Ops; fill_table

}  // namespace
}  // namespace avx2
}  // namespace fastsoftmax

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

FASTSOFTMAX_ISA_ENTRIES(avx2)
#else
FASTSOFTMAX_ISA_MISSING(avx2)
#endif
