// The avx512 ISA: AVX-512 F/BW/DQ/VL (+ FMA, F16C), 16 float / 8 double lanes.
//
// Compiled in a target region (no -m flags: the rest of the build stays generic
// x86-64); dispatch.cpp only hands this table out when the CPU and OS support it.
// The kernel bodies are the ISA-generic templates of generic/*.h, instantiated
// with the Ops classes below; tails use masked loads/stores (masked-off lanes load
// -inf), so a lane's result never depends on its position.
#include "fastsoftmax/kernels.h"
#include "kernels/isa_entries.h"
#include "testing/exp_hooks.h"

#if defined(__x86_64__) || defined(_M_X64)
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
// GCC 12's AVX-512 intrinsics initialize their "undefined" operands with
// `__Y = __Y` and then warn about it (GCC PR 105593) wherever they are inlined.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
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
#pragma clang attribute push(__attribute__((target( \
    "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c,bmi2"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c,bmi2")
#endif

namespace fastsoftmax {
namespace avx512 {
namespace {

using simd::SumExp;

constexpr int kExpF16 = 1;    // exp_ps's shorter forms (see there)
constexpr int kExpTrain = 2;

// exp(x) on 16 float32 lanes.
//   Accuracy: for x >= -87.33654 (= -0x1.5d589ep+6, the smallest float with
//   exp(x) >= 2^-126, the smallest normal) the result is within 1 ULP of the
//   correctly rounded exp(x): tests/test_exp.py checks every float in [-104, 0]
//   (max 1 ULP; 0.943 ULP against the exact value) and a sample up to 88.72.
//   Underflow: x < -87.33654 gives +0: results that would be subnormal are flushed,
//   and such x are clamped before any arithmetic, so no subnormal is ever produced
//   or consumed (no microcode assists; callers never touch MXCSR).
//   Overflow: x > 88.72283 gives +inf. Specials: exp(NaN) = NaN, exp(-inf) = +0,
//   exp(+inf) = +inf. Raises no exception anyone reads.
//   Method: n = rint(x·log2 e) with the 1.5·2^23 rounding bias (exact because x is
//   clamped to [-87.34, 128]); r = x − n·ln2 with ln2 in two parts (Cody–Waite; the
//   first step is exact under FMA), |r| <= ln2/2; exp(r) = 1 + r + r²·q(r), q of
//   degree 4 (Chebyshev fit, relative error 1e-8), Horner with FMA; result
//   scalef(p, n) = p·2^n, zero-masked where x < -87.33654 (NaN lanes kept).
//   kLe0 = true: the variant for x <= 0 (or NaN) that the row kernels use on x - max,
//   without the upper clamp; bit-identical to the full one there (tested), and for
//   x > 0 its result is unspecified (not a crash: only a NaN row can get there).
//   kShort: shorter forms where the result needs less than 1 ULP of float32, with
//   r = x - n·ln2 from one constant (absolute error < 3e-7 in r), exp(0) = 1 exactly
//   and the same range handling (tests/test_exp.py bounds both over [-88, 0]):
//   kExpF16, results rounded to float16 (the F16 kernels: 11-bit significand): q of
//   degree 2, fitted to 5.4e-6 relative error (0.006 float16 ULP), three operations
//   fewer; kExpTrain, the cross-entropy and backward kernels, whose docs/contract.md §5 bound is 64 ε
//   times the row's scale: q of degree 3, 4.5e-7 relative (about 4 ULP), two fewer.
template <bool kLe0 = false, int kShort = 0>
inline __m512 exp_ps(__m512 x) {
  const __m512 lo = _mm512_set1_ps(-0x1.5d589ep+6f);
  const __m512 magic = _mm512_set1_ps(0x1.8p23f);
  // No lower clamp: lanes with x < lo (-inf included) are zeroed by the final
  // maskz_scalef whatever garbage they carry until then (no subnormal arises from
  // the ops in between). min returns its second operand on NaN: NaN flows through.
  __m512 xc = x;
  if (!kLe0) xc = _mm512_min_ps(_mm512_set1_ps(128.0f), xc);
  const __m512 t = _mm512_fmadd_ps(xc, _mm512_set1_ps(0x1.715476p+0f), magic);
  const __m512 n = _mm512_sub_ps(t, magic);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0x1.62e430p-1f), xc);
  if (kShort == 0) r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-0x1.05c610p-29f), r);
  constexpr const float* q = kShort == kExpF16     ? simd::kExpQF16
                             : kShort == kExpTrain ? simd::kExpQTrain
                                                   : simd::kExpQ;
  constexpr int nq = kShort == kExpF16 ? 3 : kShort == kExpTrain ? 4 : 5;
  __m512 p = _mm512_set1_ps(q[0]);
  for (int k = 1; k < nq; ++k) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(q[k]));  // unrolled
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  const __mmask16 keep = _mm512_cmp_ps_mask(x, lo, _CMP_NLT_UQ);  // x >= lo, or NaN
  return _mm512_maskz_scalef_ps(keep, p, n);
}

// exp(x) on 8 float64 lanes.
//   Accuracy: for x >= -708.3964185322641 (the smallest double with
//   exp(x) >= 2^-1022) within 1 ULP of the correctly rounded exp(x) (tests: tens of
//   millions of samples in [-745, 0] against expl). x below that gives +0 (no
//   subnormals, as above); x > 709.78271289338397 gives +inf; NaN -> NaN,
//   -inf -> +0, +inf -> +inf.
//   Method as exp_ps with the 1.5·2^52 bias, x clamped to [-708.40, 1024], and
//   exp(r) = 1 + r + r²·q(r) with q of degree 9 (relative error 1.6e-17).
//   kLe0: as for exp_ps.
template <bool kLe0 = false>
inline __m512d exp_pd(__m512d x) {
  const __m512d lo = _mm512_set1_pd(-0x1.6232bdd7abcd2p+9);
  const __m512d magic = _mm512_set1_pd(0x1.8p52);
  __m512d xc = x;  // no lower clamp: as in exp_ps
  if (!kLe0) xc = _mm512_min_pd(_mm512_set1_pd(1024.0), xc);
  const __m512d t = _mm512_fmadd_pd(xc, _mm512_set1_pd(0x1.71547652b82fep+0), magic);
  const __m512d n = _mm512_sub_pd(t, magic);
  __m512d r = _mm512_fnmadd_pd(n, _mm512_set1_pd(0x1.62e42fefa39efp-1), xc);
  r = _mm512_fnmadd_pd(n, _mm512_set1_pd(0x1.abc9e3b39803fp-56), r);
  __m512d p = _mm512_set1_pd(0x1.af389ecfc4b9cp-26);
  p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(0x1.28917c89a43a7p-22));
  p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(0x1.71de0db2f6b19p-19));
  p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(0x1.a019b9149a41cp-16));
  p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(0x1.a01a01a7c2efep-13));
  p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(0x1.6c16c17889ef1p-10));
  p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(0x1.11111111109b5p-7));
  p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(0x1.5555555553d68p-5));
  p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(0x1.5555555555556p-3));
  p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(0x1.0000000000001p-1));
  p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(1.0));
  p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(1.0));
  const __mmask8 keep = _mm512_cmp_pd_mask(x, lo, _CMP_NLT_UQ);
  return _mm512_maskz_scalef_pd(keep, p, n);
}

inline __mmask16 mask16(int64_t k) { return __mmask16((1u << k) - 1u); }  // 1 <= k <= 16
inline __mmask8 mask8(int64_t k) { return __mmask8((1u << k) - 1u); }     // 1 <= k <= 8

// Sums of float exps in double lanes: 16 floats -> two vectors of 8 doubles.
struct AccF {
  __m512d lo, hi;
};
inline AccF accf_zero() { return {_mm512_setzero_pd(), _mm512_setzero_pd()}; }
inline void accf_add(AccF& a, __m512 e) {
  a.lo = _mm512_add_pd(a.lo, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
  a.hi = _mm512_add_pd(a.hi, _mm512_cvtps_pd(_mm512_extractf32x8_ps(e, 1)));
}
// Four vectors of exps (each <= 1): ((e0 + e1) + (e2 + e3)) in float, two roundings
// of relative 2^-24 at most on positive terms, then into the double lanes: 8 vector
// ops per 64 elements instead of 20, and the sum stays within 1 ULP of float.
inline void accf_add4(AccF* a, __m512 e0, __m512 e1, __m512 e2, __m512 e3) {
  accf_add(a[0], _mm512_add_ps(_mm512_add_ps(e0, e1), _mm512_add_ps(e2, e3)));
}
inline void accf_merge(AccF& a, const AccF& b) {
  a.lo = _mm512_add_pd(a.lo, b.lo);
  a.hi = _mm512_add_pd(a.hi, b.hi);
}
inline SumExp accf_total(const AccF& a) {
  const double s = _mm512_reduce_add_pd(_mm512_add_pd(a.lo, a.hi));
  return {s, s - 1.0};  // exact: s >= 1 (the max's own term) whenever it matters
}
inline AccF accf_from_parts(const double* s) {
  return {_mm512_loadu_pd(s), _mm512_loadu_pd(s + 8)};
}
inline void accf_parts(const AccF& a, double* s, double* c) {
  _mm512_storeu_pd(s, a.lo);
  _mm512_storeu_pd(s + 8, a.hi);
  _mm512_storeu_pd(c, _mm512_setzero_pd());
  _mm512_storeu_pd(c + 8, _mm512_setzero_pd());
}

struct F32 {
  using S = float;
  using C = float;
  using V = __m512;
  using Acc = AccF;
  static constexpr int64_t W = 16;
  static constexpr bool kOneAcc = true;  // acc_add4 sums into a[0] alone
  static constexpr bool kStoreExp = true;
  static constexpr int kPanelV = 4;
  static V load(const S* p) { return _mm512_loadu_ps(p); }
  static V load_n(const S* p, int64_t k) {
    return _mm512_mask_loadu_ps(_mm512_set1_ps(-std::numeric_limits<float>::infinity()),
                                mask16(k), p);
  }
  static void store(S* p, V v) { _mm512_storeu_ps(p, v); }
  static void store_n(S* p, int64_t k, V v) { _mm512_mask_storeu_ps(p, mask16(k), v); }
  static V loadc(const C* p) { return _mm512_loadu_ps(p); }
  static void storec(C* p, V v) { _mm512_storeu_ps(p, v); }
  static void stream(S* p, V v) { _mm512_stream_ps(p, v); }  // p 64-byte aligned
  static void fence() { _mm_sfence(); }
  static V set1(C v) { return _mm512_set1_ps(v); }
  static V max(V a, V b) { return _mm512_max_ps(a, b); }
  static V sub(V a, V b) { return _mm512_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V div(V a, V b) { return _mm512_div_ps(a, b); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }  // a * b + c, one rounding
  // 1 where e == 1, else +0 (generic/set_apart.h)
  static V ones(V e) {
    const V one = _mm512_set1_ps(1.0f);
    return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(e, one, _CMP_EQ_OQ), one);
  }
  static V exp(V v) { return exp_ps(v); }
  static V exp_le0(V v) { return exp_ps<true>(v); }
  static C hmax(V v) { return _mm512_reduce_max_ps(v); }
  static Acc acc_zero() { return accf_zero(); }
  static void acc_add(Acc& a, V e) { accf_add(a, e); }
  static void acc_add2(Acc& a, V e0, V e1) { accf_add(a, _mm512_add_ps(e0, e1)); }
  static void acc_add4(Acc* a, V e0, V e1, V e2, V e3) { accf_add4(a, e0, e1, e2, e3); }
  static void acc_merge(Acc& a, const Acc& b) { accf_merge(a, b); }
  static SumExp acc_total(const Acc& a) { return accf_total(a); }
  static void acc_parts(const Acc& a, double* s, double* c) { accf_parts(a, s, c); }
  static Acc acc_from_parts(const double* s, const double*) { return accf_from_parts(s); }
  static bool s_is_nan(S v) { return v != v; }
};

// float16 storage, float32 compute: F16C conversions fused into loads and stores
// (round to nearest even on the way out); -inf is 0xfc00.
struct F16 : F32 {
  using S = uint16_t;
  static constexpr bool kStoreExp = false;
  static V exp(V v) { return exp_ps<false, kExpF16>(v); }
  static V exp_le0(V v) { return exp_ps<true, kExpF16>(v); }
  static V load(const S* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static V load_n(const S* p, int64_t k) {
    return _mm512_cvtph_ps(_mm256_mask_loadu_epi16(_mm256_set1_epi16(short(0xfc00)), mask16(k), p));
  }
  static __m256i to_half(V v) {
    return _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  }
  static void store(S* p, V v) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), to_half(v)); }
  static void store_n(S* p, int64_t k, V v) { _mm256_mask_storeu_epi16(p, mask16(k), to_half(v)); }
  // non-temporal: 16 halves = 32 bytes, p 32-byte aligned (stream_row aligns y + i to
  // 64 bytes, then steps by 32)
  static void stream(S* p, V v) { _mm256_stream_si256(reinterpret_cast<__m256i*>(p), to_half(v)); }
  static bool s_is_nan(S h) { return (h & 0x7fffu) > 0x7c00u; }
};

// bfloat16 storage, float32 compute (the F16 kernels' exp: 8-bit significands need no
// more). Loads widen by a 16-bit shift (exact); stores round to nearest even,
// float_to_bf16's bits (common.h: a NaN keeps its sign and upper payload, made quiet),
// except that float32 subnormals become +-0, as AVX512_BF16's vcvtneps2bf16 makes them:
// kNative uses that instruction (the table takes it where the CPU has the extension,
// fill_table), the integer form gives the same bits on every other AVX-512 CPU. (Only
// softmax results below 2^-126 are subnormal: inside docs/contract.md §5's floor.)
// The instruction is inline assembly, so that no other code of this ISA is compiled
// for a target with that extension. -inf is 0xff80.
inline __m512 bf16_widen(__m256i h) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
template <bool kNative>
inline __m256i bf16_narrow(__m512 v) {
  if constexpr (kNative) {
    __m256i h;
    __asm__("vcvtneps2bf16 %1, %0" : "=v"(h) : "v"(v));
    return h;
  } else {
    const __m512i x = _mm512_castps_si512(v);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(x, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_add_epi32(_mm512_add_epi32(x, _mm512_set1_epi32(0x7fff)), lsb);
    const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    r = _mm512_mask_or_epi32(r, nan, x, _mm512_set1_epi32(0x00400000));
    const __mmask16 sub = _mm512_fpclass_ps_mask(v, 0x20);  // subnormal: +-0
    r = _mm512_mask_and_epi32(r, sub, x, _mm512_set1_epi32(int(0x80000000u)));
    return _mm512_cvtepi32_epi16(_mm512_srli_epi32(r, 16));
  }
}
template <bool kNative>
struct BF16T : F32 {
  using S = bf16_t;
  static constexpr bool kStoreExp = false;
  static V exp(V v) { return exp_ps<false, kExpF16>(v); }
  static V exp_le0(V v) { return exp_ps<true, kExpF16>(v); }
  static V load(const S* p) {
    return bf16_widen(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static V load_n(const S* p, int64_t k) {
    return bf16_widen(_mm256_mask_loadu_epi16(_mm256_set1_epi16(short(0xff80)), mask16(k), p));
  }
  static void store(S* p, V v) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), bf16_narrow<kNative>(v));
  }
  static void store_n(S* p, int64_t k, V v) {
    _mm256_mask_storeu_epi16(p, mask16(k), bf16_narrow<kNative>(v));
  }
  // non-temporal: as F16's (32 bytes, p 32-byte aligned)
  static void stream(S* p, V v) {
    _mm256_stream_si256(reinterpret_cast<__m256i*>(p), bf16_narrow<kNative>(v));
  }
  static bool s_is_nan(S h) { return (h.bits & 0x7fffu) > 0x7f80u; }
};
using BF16 = BF16T<false>;
using BF16Native = BF16T<true>;
inline bool bf16_native() { return cpu_has_avx512_bf16(); }

// Compensated (Neumaier) sums per double lane: the exps are >= 0, so the larger
// of the two addends is their max and Fast2Sum's error term is exact.
struct AccD {
  __m512d s, c;
};

struct F64 {
  using S = double;
  using C = double;
  using V = __m512d;
  using Acc = AccD;
  static constexpr int64_t W = 8;
  static constexpr bool kStoreExp = true;
  static constexpr int kPanelV = 4;
  static V load(const S* p) { return _mm512_loadu_pd(p); }
  static V load_n(const S* p, int64_t k) {
    return _mm512_mask_loadu_pd(_mm512_set1_pd(-std::numeric_limits<double>::infinity()),
                                mask8(k), p);
  }
  static void store(S* p, V v) { _mm512_storeu_pd(p, v); }
  static void store_n(S* p, int64_t k, V v) { _mm512_mask_storeu_pd(p, mask8(k), v); }
  static V loadc(const C* p) { return _mm512_loadu_pd(p); }
  static void storec(C* p, V v) { _mm512_storeu_pd(p, v); }
  static void stream(S* p, V v) { _mm512_stream_pd(p, v); }  // p 64-byte aligned
  static void fence() { _mm_sfence(); }
  static V set1(C v) { return _mm512_set1_pd(v); }
  static V max(V a, V b) { return _mm512_max_pd(a, b); }
  static V sub(V a, V b) { return _mm512_sub_pd(a, b); }
  static V mul(V a, V b) { return _mm512_mul_pd(a, b); }
  static V div(V a, V b) { return _mm512_div_pd(a, b); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }
  static V exp(V v) { return exp_pd(v); }
  static V exp_le0(V v) { return exp_pd<true>(v); }
  static C hmax(V v) { return _mm512_reduce_max_pd(v); }
  static Acc acc_zero() { return {_mm512_setzero_pd(), _mm512_setzero_pd()}; }
  // s + e = t + err exactly, err = (max(s, e) - t) + min(s, e)   (s, e >= 0)
  static void acc_add(Acc& a, V e) {
    const V t = _mm512_add_pd(a.s, e);
    const V err = _mm512_add_pd(_mm512_sub_pd(_mm512_max_pd(a.s, e), t), _mm512_min_pd(a.s, e));
    a.c = _mm512_add_pd(a.c, err);
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
    acc_add(a[0], _mm512_add_pd(_mm512_add_pd(e0, e1), _mm512_add_pd(e2, e3)));
  }
  static void acc_merge(Acc& a, const Acc& b) {
    const V t = _mm512_add_pd(a.s, b.s);
    const V err =
        _mm512_add_pd(_mm512_sub_pd(_mm512_max_pd(a.s, b.s), t), _mm512_min_pd(a.s, b.s));
    a.c = _mm512_add_pd(_mm512_add_pd(a.c, b.c), err);
    a.s = t;
  }
  // sum = hi + lo as a compensated sum of the lanes; rest = (hi - 1) + lo, where
  // hi - 1 is exact (hi >= 1), so the max's term is set apart without loss.
  static SumExp acc_total(const Acc& a) {
    alignas(64) double s[8], c[8];
    _mm512_store_pd(s, a.s);
    _mm512_store_pd(c, a.c);
    CompensatedSum sum;
    for (int j = 0; j < 8; ++j) sum.add(s[j]);
    if (std::isinf(sum.sum)) return {sum.sum, sum.sum};  // c is inf - inf = NaN: +inf, not NaN
    double comp = 0.0;
    for (int j = 0; j < 8; ++j) comp += c[j];
    sum.add(comp);
    return {sum.value(), (sum.sum - 1.0) + sum.comp};
  }
  static void acc_parts(const Acc& a, double* s, double* c) {
    _mm512_storeu_pd(s, a.s);
    _mm512_storeu_pd(c, a.c);
  }
  static Acc acc_from_parts(const double* s, const double* c) {
    return {_mm512_loadu_pd(s), _mm512_loadu_pd(c)};
  }
  static bool s_is_nan(S v) { return v != v; }
};

// The float32 Ops of the cross-entropy and backward kernels (generic/training_rows.h): the
// shorter exp their docs/contract.md §5 bound allows.
// Its sums of exps: float partial sums (each group of four vectors added as a tree,
// then into one float vector) flushed into AccF's double lanes every kTrainFlush
// groups, so a float lane never holds more than 64 exps (each <= 1): relative error
// at most ~(2 + 16) ε/2 before the double sum, inside the 64 ε of that bound. Four
// vector adds per 64 exps instead of eight (the loss is compute-bound in this loop).
struct AccTrain {
  __m512 f;
  int k;
  AccF d;
};
constexpr int kTrainFlush = 16;
inline void acct_flush(AccTrain& a) {
  accf_add(a.d, a.f);
  a.f = _mm512_setzero_ps();
  a.k = 0;
}
struct F32Train : F32 {
  using Acc = AccTrain;
  static V exp(V v) { return exp_ps<false, kExpTrain>(v); }
  static V exp_le0(V v) { return exp_ps<true, kExpTrain>(v); }
  static Acc acc_zero() { return {_mm512_setzero_ps(), 0, accf_zero()}; }
  static void acc_add(Acc& a, V e) {
    a.f = _mm512_add_ps(a.f, e);
    if (++a.k == kTrainFlush) acct_flush(a);
  }
  static void acc_add4(Acc* a, V e0, V e1, V e2, V e3) {
    acc_add(a[0], _mm512_add_ps(_mm512_add_ps(e0, e1), _mm512_add_ps(e2, e3)));
  }
  static void acc_merge(Acc& a, Acc& b) {
    acct_flush(a);
    acct_flush(b);
    accf_merge(a.d, b.d);
  }
  static SumExp acc_total(Acc& a) {
    acct_flush(a);
    return accf_total(a.d);
  }
};

// The float16 kernels' exp over float arrays (the test hook exp_f16).
struct F16Exp : F32 {
  static V exp(V v) { return exp_ps<false, kExpF16>(v); }
  static V exp_le0(V v) { return exp_ps<true, kExpF16>(v); }
};

// The selection scan's test of a full chunk (generic/select_rows.h): compares into
// mask registers, OR-ed, one test per chunk.
struct SelectChunk {
  static_assert(kSelectChunk == 64, "four float32 / eight float64 vectors a chunk");
  template <int kCmp>
  static bool any(const float* x, float t) {
    const __m512 v = _mm512_set1_ps(t);
    __mmask16 m = _mm512_cmp_ps_mask(_mm512_loadu_ps(x), v, kCmp);
    for (int j = 1; j < 4; ++j) m |= _mm512_cmp_ps_mask(_mm512_loadu_ps(x + 16 * j), v, kCmp);
    return m != 0;
  }
  template <int kCmp>
  static bool any(const double* x, double t) {
    const __m512d v = _mm512_set1_pd(t);
    __mmask8 m = _mm512_cmp_pd_mask(_mm512_loadu_pd(x), v, kCmp);
    for (int j = 1; j < 8; ++j) m |= _mm512_cmp_pd_mask(_mm512_loadu_pd(x + 8 * j), v, kCmp);
    return m != 0;
  }
  template <class C>
  static bool above(const C* x, C t) { return any<_CMP_NLE_UQ>(x, t); }  // > t or NaN
  template <class C>
  static bool below(const C* x, C t) { return any<_CMP_LT_OQ>(x, t); }
  // The primitives of generic/select_rows.h's max_nan and min_above: NaN lanes as a mask
  // (OR-able), and a min over the lanes at or above t.
  static uint32_t unord(__m512 v) { return _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q); }
  static uint32_t unord(__m512d v) { return _mm512_cmp_pd_mask(v, v, _CMP_UNORD_Q); }
  static uint32_t either(uint32_t a, uint32_t b) { return a | b; }
  static bool any(uint32_t a) { return a != 0; }
  static __m512 keep_min(__m512 m, __m512 v, __m512 t) {
    return _mm512_mask_min_ps(m, _mm512_cmp_ps_mask(v, t, _CMP_GE_OQ), m, v);
  }
  static __m512d keep_min(__m512d m, __m512d v, __m512d t) {
    return _mm512_mask_min_pd(m, _mm512_cmp_pd_mask(v, t, _CMP_GE_OQ), m, v);
  }
  static __m512 min(__m512 a, __m512 b) { return _mm512_min_ps(a, b); }
  static __m512d min(__m512d a, __m512d b) { return _mm512_min_pd(a, b); }
  // argmax: lanes above the running max, and a blend by them
  static __mmask16 gt(__m512 a, __m512 b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ); }
  static __mmask8 gt(__m512d a, __m512d b) { return _mm512_cmp_pd_mask(a, b, _CMP_GT_OQ); }
  static __m512 select(__mmask16 m, __m512 a, __m512 b) { return _mm512_mask_blend_ps(m, b, a); }
  static __m512d select(__mmask8 m, __m512d a, __m512d b) { return _mm512_mask_blend_pd(m, b, a); }
  // top_p's level_sums: acc + e on the lanes with z >= t, a masked add
  static __m512 add_ge(__m512 acc, __m512 z, __m512 t, __m512 e) {
    return _mm512_mask_add_ps(acc, _mm512_cmp_ps_mask(z, t, _CMP_GE_OQ), acc, e);
  }
  static __m512d add_ge(__m512d acc, __m512d z, __m512d t, __m512d e) {
    return _mm512_mask_add_pd(acc, _mm512_cmp_pd_mask(z, t, _CMP_GE_OQ), acc, e);
  }
  // top_p's compact_level on float32 (generic/select_rows.h): the sums above in
  // double by masked adds of the two halves, the level's entries by vcompressps into
  // registers and whole-vector stores (Zen 4's compress to memory is microcoded).
  static int64_t compact_level(const float* z, const float* e, int64_t n, float fl, float lo,
                               float hi, int64_t block, double* above, int64_t* first,
                               double* rest, float* oz, float* oe) {
    const __m512 vfl = _mm512_set1_ps(fl), vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);
    // below fl: only where fl is above every finite value (z -inf has mass 0)
    const bool lows = fl > std::numeric_limits<float>::lowest();
    __m512d s0 = _mm512_setzero_pd(), s1 = s0, l0 = s0, l1 = s0;
    int64_t c = 0;
    for (int64_t b = 0, i0 = 0; i0 < n; ++b, i0 += block) {
      const int64_t i1 = std::min(n, i0 + block);
      if (first) first[b] = c;
      __m512d a0 = _mm512_setzero_pd(), a1 = _mm512_setzero_pd();
      for (int64_t i = i0; i < i1; i += 16) {
        const __mmask16 live = i + 16 <= i1 ? __mmask16(0xffff) : mask16(i1 - i);
        const __m512 v = _mm512_maskz_loadu_ps(live, z + i), ev = _mm512_maskz_loadu_ps(live, e + i);
        const __mmask16 up = _mm512_mask_cmp_ps_mask(live, v, vhi, _CMP_GE_OQ);
        const __mmask16 in = _mm512_mask_cmp_ps_mask(live, v, vlo, _CMP_GE_OQ) & ~up;
        const __m512d e0 = _mm512_cvtps_pd(_mm512_castps512_ps256(ev));
        const __m512d e1 = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(ev), 1)));
        a0 = _mm512_mask_add_pd(a0, __mmask8(up), a0, e0);
        a1 = _mm512_mask_add_pd(a1, __mmask8(up >> 8), a1, e1);
        if (lows) {
          const __mmask16 sur = _mm512_mask_cmp_ps_mask(live, v, vfl, _CMP_GE_OQ), low = live & ~sur;
          s0 = _mm512_mask_add_pd(s0, __mmask8(sur), s0, e0);
          s1 = _mm512_mask_add_pd(s1, __mmask8(sur >> 8), s1, e1);
          l0 = _mm512_mask_add_pd(l0, __mmask8(low), l0, e0);
          l1 = _mm512_mask_add_pd(l1, __mmask8(low >> 8), l1, e1);
        } else {  // every entry a survivor (a -inf has mass 0; the missing lanes 0)
          s0 = _mm512_add_pd(s0, e0), s1 = _mm512_add_pd(s1, e1);
        }
        // branch-free: the level's entries are scattered, a test per vector mispredicts
        _mm512_storeu_ps(oz + c, _mm512_maskz_compress_ps(in, v));
        _mm512_storeu_ps(oe + c, _mm512_maskz_compress_ps(in, ev));
        c += __builtin_popcount(unsigned(in));
      }
      above[b] = _mm512_reduce_add_pd(_mm512_add_pd(a0, a1));
    }
    rest[0] = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
    rest[1] = _mm512_reduce_add_pd(_mm512_add_pd(l0, l1));
    return c;
  }
};
#define FASTSOFTMAX_SELECT_CHUNK 1
#define FASTSOFTMAX_SELECT_COMPACT 1

#define FASTSOFTMAX_TRAIN_VEC 512
#include "kernels/isa_table.h"  // every family for these Ops; fill_table

}  // namespace
}  // namespace avx512
}  // namespace fastsoftmax

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

FASTSOFTMAX_ISA_ENTRIES(avx512)
#else
FASTSOFTMAX_ISA_MISSING(avx512)
#endif
