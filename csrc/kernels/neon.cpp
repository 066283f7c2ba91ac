// The neon ISA: AArch64 Advanced SIMD (baseline armv8-a: no target region needed),
// 4 float / 2 double lanes. On any other architecture this file only reports "not
// compiled".
//
// The kernel bodies are the ISA-generic templates of generic/*.h, instantiated
// with the Ops classes below. NEON has no masked loads: tails go through a small
// stack buffer padded with -inf and run the same vector code, so a lane's bits never
// depend on its position. Tested under qemu-aarch64 by tests/test_neon_qemu.py.
#include "fastsoftmax/kernels.h"
#include "kernels/isa_entries.h"
#include "testing/exp_hooks.h"

#if defined(__aarch64__)
#include <arm_neon.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <type_traits>

#include "fastsoftmax/common.h"
#include "fastsoftmax/merge.h"  // generic/training_rows.h
#include "kernels/simd_common.h"

namespace fastsoftmax {
namespace neon {
namespace {

using simd::SumExp;

// exp(x) on 4 float32 lanes.
//   Accuracy: for x >= -87.33654 (= -0x1.5d589ep+6, the smallest float with
//   exp(x) >= 2^-126, the smallest normal) within 1 ULP of the correctly rounded
//   exp(x) (tests/neon/neon_test.cpp sweeps [-104, 0] under qemu: max 1 ULP).
//   Underflow: x < -87.33654 gives +0 (results that would be subnormal are flushed;
//   such x are clamped before any arithmetic and 2^n is an integer add to the
//   exponent field, so no subnormal is produced or consumed). Overflow: x > 88.72283
//   gives +inf. Specials: exp(NaN) = NaN, exp(-inf) = +0, exp(+inf) = +inf.
//   Method: as the avx2 exp_ps (n = rint(x·log2 e) by the 1.5·2^23 bias, two-part
//   ln2 Cody–Waite reduction, degree-6 polynomial with FMA, bits(p) + (n << 23)).
//   kLe0 = true: the variant for x <= 0 (or NaN) used by the row kernels on x - max
//   (bit-identical there; unspecified for x > 0): n in [-126, 0], so 2^n is a normal
//   float built from t's bits and p·2^n an exact multiply that keeps NaN.
template <bool kLe0 = false>
inline float32x4_t exp_ps(float32x4_t x) {
  const float32x4_t lo = vdupq_n_f32(-0x1.5d589ep+6f);
  const float32x4_t hi = vdupq_n_f32(0x1.62e42ep+6f);
  const float32x4_t magic = vdupq_n_f32(kLe0 ? 0x1.8p23f + 127.0f : 0x1.8p23f);
  float32x4_t xc = vmaxq_f32(lo, x);  // FMAX/FMIN keep NaN
  if (!kLe0) xc = vminq_f32(hi, xc);
  const float32x4_t t = vfmaq_f32(magic, xc, vdupq_n_f32(0x1.715476p+0f));
  const float32x4_t n = vsubq_f32(t, magic);
  float32x4_t r = vfmsq_f32(xc, n, vdupq_n_f32(0x1.62e430p-1f));
  r = vfmsq_f32(r, n, vdupq_n_f32(-0x1.05c610p-29f));
  float32x4_t p = vdupq_n_f32(0x1.6d10fcp-10f);
  p = vfmaq_f32(vdupq_n_f32(0x1.120b62p-7f), p, r);
  p = vfmaq_f32(vdupq_n_f32(0x1.55551ap-5f), p, r);
  p = vfmaq_f32(vdupq_n_f32(0x1.5554dep-3f), p, r);
  p = vfmaq_f32(vdupq_n_f32(0x1p-1f), p, r);
  p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
  p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
  if (kLe0) {  // n in [-126, 0]: 2^n from t's bits (n + 127), p·2^n exact, NaN kept
    const float32x4_t s = vreinterpretq_f32_s32(vshlq_n_s32(vreinterpretq_s32_f32(t), 23));
    return vreinterpretq_f32_u32(
        vbicq_u32(vreinterpretq_u32_f32(vmulq_f32(p, s)), vcltq_f32(x, lo)));
  }
  float32x4_t res = vreinterpretq_f32_s32(
      vaddq_s32(vreinterpretq_s32_f32(p), vshlq_n_s32(vreinterpretq_s32_f32(t), 23)));
  // x > hi or NaN: x + inf is +inf or NaN (the exponent add garbles NaN bits).
  res = vbslq_f32(vcleq_f32(x, hi), res, vaddq_f32(x, vdupq_n_f32(HUGE_VALF)));
  // x < lo: +0 (false for NaN, which stays NaN)
  return vreinterpretq_f32_u32(vbicq_u32(vreinterpretq_u32_f32(res), vcltq_f32(x, lo)));
}

// exp(x) on 2 float64 lanes: x >= -708.3964185322641 within 1 ULP; below: +0;
// above 709.782712893384: +inf; NaN -> NaN. Degree-11 polynomial, as avx2 exp_pd.
template <bool kLe0 = false>
inline float64x2_t exp_pd(float64x2_t x) {
  const float64x2_t lo = vdupq_n_f64(-0x1.6232bdd7abcd2p+9);
  const float64x2_t hi = vdupq_n_f64(0x1.62e42fefa39efp+9);
  const float64x2_t magic = vdupq_n_f64(kLe0 ? 0x1.8p52 + 1023.0 : 0x1.8p52);
  float64x2_t xc = vmaxq_f64(lo, x);
  if (!kLe0) xc = vminq_f64(hi, xc);
  const float64x2_t t = vfmaq_f64(magic, xc, vdupq_n_f64(0x1.71547652b82fep+0));
  const float64x2_t n = vsubq_f64(t, magic);
  float64x2_t r = vfmsq_f64(xc, n, vdupq_n_f64(0x1.62e42fefa39efp-1));
  r = vfmsq_f64(r, n, vdupq_n_f64(0x1.abc9e3b39803fp-56));
  float64x2_t p = vdupq_n_f64(0x1.af389ecfc4b9cp-26);
  p = vfmaq_f64(vdupq_n_f64(0x1.28917c89a43a7p-22), p, r);
  p = vfmaq_f64(vdupq_n_f64(0x1.71de0db2f6b19p-19), p, r);
  p = vfmaq_f64(vdupq_n_f64(0x1.a019b9149a41cp-16), p, r);
  p = vfmaq_f64(vdupq_n_f64(0x1.a01a01a7c2efep-13), p, r);
  p = vfmaq_f64(vdupq_n_f64(0x1.6c16c17889ef1p-10), p, r);
  p = vfmaq_f64(vdupq_n_f64(0x1.11111111109b5p-7), p, r);
  p = vfmaq_f64(vdupq_n_f64(0x1.5555555553d68p-5), p, r);
  p = vfmaq_f64(vdupq_n_f64(0x1.5555555555556p-3), p, r);
  p = vfmaq_f64(vdupq_n_f64(0x1.0000000000001p-1), p, r);
  p = vfmaq_f64(vdupq_n_f64(1.0), p, r);
  p = vfmaq_f64(vdupq_n_f64(1.0), p, r);
  if (kLe0) {
    const float64x2_t s = vreinterpretq_f64_s64(vshlq_n_s64(vreinterpretq_s64_f64(t), 52));
    return vreinterpretq_f64_u64(
        vbicq_u64(vreinterpretq_u64_f64(vmulq_f64(p, s)), vcltq_f64(x, lo)));
  }
  float64x2_t res = vreinterpretq_f64_s64(
      vaddq_s64(vreinterpretq_s64_f64(p), vshlq_n_s64(vreinterpretq_s64_f64(t), 52)));
  res = vbslq_f64(vcleq_f64(x, hi), res, vaddq_f64(x, vdupq_n_f64(HUGE_VAL)));
  return vreinterpretq_f64_u64(vbicq_u64(vreinterpretq_u64_f64(res), vcltq_f64(x, lo)));
}

// Sums of float exps in double lanes: 4 floats -> two vectors of 2 doubles.
struct AccF {
  float64x2_t lo, hi;
};
inline void accf_add(AccF& a, float32x4_t e) {
  a.lo = vaddq_f64(a.lo, vcvt_f64_f32(vget_low_f32(e)));
  a.hi = vaddq_f64(a.hi, vcvt_high_f64_f32(e));
}

struct F32 {
  using S = float;
  using C = float;
  using V = float32x4_t;
  using Acc = AccF;
  static constexpr int64_t W = 4;
  static constexpr bool kOneAcc = true;  // acc_add4 sums into a[0] alone
  static constexpr bool kStoreExp = true;
  static constexpr int kPanelV = 4;
  static V load(const S* p) { return vld1q_f32(p); }
  // Tails lane by lane (k < W is the same for every row of a batch: the branches
  // predict): a buffer written piecewise and read as one vector would stall on store
  // forwarding, and a memcpy of k elements is a call.
  static V load_n(const S* p, int64_t k) {
    if (k == W) return load(p);
    V v = vld1q_lane_f32(p, vdupq_n_f32(-HUGE_VALF), 0);
    if (k > 1) v = vld1q_lane_f32(p + 1, v, 1);
    if (k > 2) v = vld1q_lane_f32(p + 2, v, 2);
    return v;
  }
  static void store(S* p, V v) { vst1q_f32(p, v); }
  static void store_n(S* p, int64_t k, V v) {
    if (k == W) return store(p, v);
    vst1q_lane_f32(p, v, 0);
    if (k > 1) vst1q_lane_f32(p + 1, v, 1);
    if (k > 2) vst1q_lane_f32(p + 2, v, 2);
  }
  static V loadc(const C* p) { return vld1q_f32(p); }
  static void storec(C* p, V v) { vst1q_f32(p, v); }
  static V set1(C v) { return vdupq_n_f32(v); }
  static V max(V a, V b) { return vmaxq_f32(a, b); }
  static V sub(V a, V b) { return vsubq_f32(a, b); }
  static V mul(V a, V b) { return vmulq_f32(a, b); }
  static V div(V a, V b) { return vdivq_f32(a, b); }
  static V fma(V a, V b, V c) { return vfmaq_f32(c, a, b); }  // a * b + c, one rounding
  // 1 where e == 1, else +0 (generic/set_apart.h)
  static V ones(V e) {
    const V one = vdupq_n_f32(1.0f);
    return vreinterpretq_f32_u32(vandq_u32(vceqq_f32(e, one), vreinterpretq_u32_f32(one)));
  }
  static V exp(V v) { return exp_ps(v); }
  static V exp_le0(V v) { return exp_ps<true>(v); }
  static C hmax(V v) { return vmaxvq_f32(v); }
  static Acc acc_zero() { return {vdupq_n_f64(0.0), vdupq_n_f64(0.0)}; }
  static void acc_add(Acc& a, V e) { accf_add(a, e); }
  // ((e0 + e1) + (e2 + e3)) in float (two roundings of relative 2^-24 at most on
  // positive terms), then into the double lanes.
  static void acc_add2(Acc& a, V e0, V e1) { accf_add(a, vaddq_f32(e0, e1)); }
  static void acc_add4(Acc* a, V e0, V e1, V e2, V e3) {
    accf_add(a[0], vaddq_f32(vaddq_f32(e0, e1), vaddq_f32(e2, e3)));
  }
  static void acc_merge(Acc& a, const Acc& b) {
    a.lo = vaddq_f64(a.lo, b.lo);
    a.hi = vaddq_f64(a.hi, b.hi);
  }
  static SumExp acc_total(const Acc& a) {
    const double s = vaddvq_f64(vaddq_f64(a.lo, a.hi));
    return {s, s - 1.0};  // exact: s >= 1 (the max's own term) whenever it matters
  }
  static void acc_parts(const Acc& a, double* s, double* c) {
    vst1q_f64(s, a.lo);
    vst1q_f64(s + 2, a.hi);
    vst1q_f64(c, vdupq_n_f64(0.0));
    vst1q_f64(c + 2, vdupq_n_f64(0.0));
  }
  static Acc acc_from_parts(const double* s, const double*) { return {vld1q_f64(s), vld1q_f64(s + 2)}; }
  static bool s_is_nan(S v) { return v != v; }
};

// float16 storage, float32 compute: FCVTL/FCVTN fused into loads and stores (round
// to nearest even, the FPCR default); tails lane by lane (as F32's), padded with -inf
// (0xfc00).
struct F16 : F32 {
  using S = uint16_t;
  static constexpr bool kStoreExp = false;
  static V from_half(uint16x4_t h) { return vcvt_f32_f16(vreinterpret_f16_u16(h)); }
  static uint16x4_t to_half(V v) { return vreinterpret_u16_f16(vcvt_f16_f32(v)); }
  static V load(const S* p) { return from_half(vld1_u16(p)); }
  static V load_n(const S* p, int64_t k) {
    if (k == W) return load(p);
    uint16x4_t h = vld1_lane_u16(p, vdup_n_u16(0xfc00), 0);
    if (k > 1) h = vld1_lane_u16(p + 1, h, 1);
    if (k > 2) h = vld1_lane_u16(p + 2, h, 2);
    return from_half(h);
  }
  static void store(S* p, V v) { vst1_u16(p, to_half(v)); }
  static void store_n(S* p, int64_t k, V v) {
    if (k == W) return store(p, v);
    const uint16x4_t h = to_half(v);
    vst1_lane_u16(p, h, 0);
    if (k > 1) vst1_lane_u16(p + 1, h, 1);
    if (k > 2) vst1_lane_u16(p + 2, h, 2);
  }
  static bool s_is_nan(S h) { return (h & 0x7fffu) > 0x7c00u; }
};

// bfloat16 storage, float32 compute: loads widen by a 16-bit shift (SHLL, exact),
// stores round to nearest even in integer lanes (float_to_bf16's bits, common.h: a
// NaN keeps its sign and upper payload, made quiet) and narrow by SHRN; tails lane by
// lane, padded with -inf (0xff80).
struct BF16 : F32 {
  using S = bf16_t;
  static constexpr bool kStoreExp = false;
  static const uint16_t* bits(const S* p) { return reinterpret_cast<const uint16_t*>(p); }
  static V widen(uint16x4_t h) { return vreinterpretq_f32_u32(vshll_n_u16(h, 16)); }
  static uint16x4_t narrow(V v) {
    const uint32x4_t x = vreinterpretq_u32_f32(v);
    const uint32x4_t lsb = vandq_u32(vshrq_n_u32(x, 16), vdupq_n_u32(1));
    const uint32x4_t r = vaddq_u32(vaddq_u32(x, vdupq_n_u32(0x7fff)), lsb);
    const uint32x4_t q = vorrq_u32(x, vdupq_n_u32(0x00400000));
    return vshrn_n_u32(vbslq_u32(vceqq_f32(v, v), r, q), 16);  // (v == v: not NaN)
  }
  static V load(const S* p) { return widen(vld1_u16(bits(p))); }
  static V load_n(const S* p, int64_t k) {
    if (k == W) return load(p);
    uint16x4_t h = vld1_lane_u16(bits(p), vdup_n_u16(0xff80), 0);
    if (k > 1) h = vld1_lane_u16(bits(p) + 1, h, 1);
    if (k > 2) h = vld1_lane_u16(bits(p) + 2, h, 2);
    return widen(h);
  }
  static void store(S* p, V v) { vst1_u16(reinterpret_cast<uint16_t*>(p), narrow(v)); }
  static void store_n(S* p, int64_t k, V v) {
    if (k == W) return store(p, v);
    uint16_t* q = reinterpret_cast<uint16_t*>(p);
    const uint16x4_t h = narrow(v);
    vst1_lane_u16(q, h, 0);
    if (k > 1) vst1_lane_u16(q + 1, h, 1);
    if (k > 2) vst1_lane_u16(q + 2, h, 2);
  }
  static bool s_is_nan(S h) { return (h.bits & 0x7fffu) > 0x7f80u; }
};
using BF16Native = BF16;  // (no native conversions)
inline bool bf16_native() { return false; }

// Compensated (Neumaier) sums per double lane (the exps are >= 0, so Fast2Sum with
// max/min ordering is exact).
struct AccD {
  float64x2_t s, c;
};

struct F64 {
  using S = double;
  using C = double;
  using V = float64x2_t;
  using Acc = AccD;
  static constexpr int64_t W = 2;
  static constexpr bool kStoreExp = true;
  static constexpr int kPanelV = 4;
  static V load(const S* p) { return vld1q_f64(p); }
  static V load_n(const S* p, int64_t k) {
    if (k == W) return load(p);
    return vsetq_lane_f64(p[0], vdupq_n_f64(-HUGE_VAL), 0);  // k == 1
  }
  static void store(S* p, V v) { vst1q_f64(p, v); }
  static void store_n(S* p, int64_t k, V v) {
    if (k == W) return store(p, v);
    p[0] = vgetq_lane_f64(v, 0);
  }
  static V loadc(const C* p) { return vld1q_f64(p); }
  static void storec(C* p, V v) { vst1q_f64(p, v); }
  static V set1(C v) { return vdupq_n_f64(v); }
  static V max(V a, V b) { return vmaxq_f64(a, b); }
  static V sub(V a, V b) { return vsubq_f64(a, b); }
  static V mul(V a, V b) { return vmulq_f64(a, b); }
  static V div(V a, V b) { return vdivq_f64(a, b); }
  static V fma(V a, V b, V c) { return vfmaq_f64(c, a, b); }
  static V exp(V v) { return exp_pd(v); }
  static V exp_le0(V v) { return exp_pd<true>(v); }
  static C hmax(V v) { return vmaxvq_f64(v); }
  static Acc acc_zero() { return {vdupq_n_f64(0.0), vdupq_n_f64(0.0)}; }
  static void acc_add(Acc& a, V e) {
    const V t = vaddq_f64(a.s, e);
    const V err = vaddq_f64(vsubq_f64(vmaxq_f64(a.s, e), t), vminq_f64(a.s, e));
    a.c = vaddq_f64(a.c, err);
    a.s = t;
  }
  static void acc_add2(Acc& a, V e0, V e1) {
    acc_add(a, e0);
    acc_add(a, e1);
  }
  static void acc_add4(Acc* a, V e0, V e1, V e2, V e3) {
    acc_add(a[0], e0);
    acc_add(a[1], e1);
    acc_add(a[2], e2);
    acc_add(a[3], e3);
  }
  static void acc_merge(Acc& a, const Acc& b) {
    const V t = vaddq_f64(a.s, b.s);
    const V err = vaddq_f64(vsubq_f64(vmaxq_f64(a.s, b.s), t), vminq_f64(a.s, b.s));
    a.c = vaddq_f64(vaddq_f64(a.c, b.c), err);
    a.s = t;
  }
  // sum = hi + lo (compensated over the lanes); rest = (hi - 1) + lo, hi - 1 exact.
  static SumExp acc_total(const Acc& a) {
    CompensatedSum sum;
    sum.add(vgetq_lane_f64(a.s, 0));
    sum.add(vgetq_lane_f64(a.s, 1));
    if (std::isinf(sum.sum)) return {sum.sum, sum.sum};  // c is inf - inf = NaN: +inf, not NaN
    sum.add(vgetq_lane_f64(a.c, 0) + vgetq_lane_f64(a.c, 1));
    return {sum.value(), (sum.sum - 1.0) + sum.comp};
  }
  static void acc_parts(const Acc& a, double* s, double* c) {
    vst1q_f64(s, a.s);
    vst1q_f64(c, a.c);
  }
  static Acc acc_from_parts(const double* s, const double* c) { return {vld1q_f64(s), vld1q_f64(c)}; }
  static bool s_is_nan(S v) { return v != v; }
};

// NEON has no shorter exps: its float16 and training kernels use the float32 one.
using F32Train = F32;
using F16Exp = F32;

#define FASTSOFTMAX_TRAIN_VEC 0
#include "kernels/isa_table.h"  // every family for these Ops; fill_table

}  // namespace
}  // namespace neon
}  // namespace fastsoftmax

FASTSOFTMAX_ISA_ENTRIES(neon)
#else
FASTSOFTMAX_ISA_MISSING(neon)
#endif
