// Plain types shared by the SIMD kernel files (no ISA code: safe to include
// anywhere, outside the target regions).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace fastsoftmax {
namespace simd {

// log1p(r) for r >= 0 (r = sum - 1 of a row's exps), within a few ULP: Kahan's
// log(u) * (r / (u - 1)) with u = 1 + r, which is exact in r's low bits where it
// matters (u == 1: log1p(r) = r). glibc's log is table-driven and about twice as
// short on the critical path as its log1p, and a row pays this once.
inline double log1p_sum(double r) {
  const double u = 1.0 + r;
  if (u == 1.0) return r;
  return std::log(u) * (r / (u - 1.0));
}

// Knuth's TwoSum: sum += v, and the rounding error of that addition added to comp
// (exact whatever the signs and magnitudes). V a double or a vector of them (by
// reference and always inlined, as log_of_m below: no vector crosses a call).
template <class V>
inline __attribute__((always_inline)) void two_sum(V& sum, V& comp, const V& v) {
  const V t = sum + v, bp = t - sum;
  comp += (sum - (t - bp)) + (v - bp);
  sum = t;
}

// m = log m = 2 atanh(f) = 2 f + 2 f s p(s), f = (m - 1)/(m + 1), s = f^2, for m in
// [sqrt(1/2), sqrt(2)); V a double or a vector of them (the two forms below; in place:
// no vector crosses a call).
template <class V>
inline __attribute__((always_inline)) void log_of_m(V& m) {
  const V f = (m - 1.0) / (m + 1.0), s = f * f;
  V p = s * (1.0 / 17) + 1.0 / 15;
  p = p * s + 1.0 / 13;
  p = p * s + 1.0 / 11;
  p = p * s + 1.0 / 9;
  p = p * s + 1.0 / 7;
  p = p * s + 1.0 / 5;
  p = p * s + 1.0 / 3;
  m = 2.0 * f + 2.0 * f * s * p;
}

// log1p_sum for results that end in float32 (float16/float32 data): the same Kahan
// form, with log(u) inline instead of a libm call (about 10 ns a row, a fifth of a
// 128-element row's whole log_softmax here): u = 2^e m, m in [sqrt(1/2), sqrt(2)),
// log m = 2 atanh(f) = 2 (f + f^3/3 + ... + f^17/17), f = (m - 1)/(m + 1), |f| <= 0.172;
// the truncation is below 2^-50 relative, a few double ULP in all: far below float.
//
// In GCC/Clang vector extensions, V a vector of doubles and I one of int64 of the same
// width, so that a batch of short rows pays one vector log per four rows (the
// kernels' log1p_rest4). Written with masks and bit operations, not branches and
// int64 -> double conversions: as scalar code, GCC kept the 8 logs of a log_softmax
// group a scalar loop (-ftrapping-math stops it if-converting the branches, and AVX2
// converts no int64 to double): 13% of log_softmax (8192, 128)'s time on AVX2.
// r in place, by reference: always inlined, no vector crosses a call (the ABI of a
// 32-byte vector differs outside an AVX target region).
template <class V, class I>
inline __attribute__((always_inline)) void log1p_sum_f32v(V& r) {
  const V u = 1.0 + r;
  const I bits = (I)u;  // u >= 1: a normal number (or +inf / NaN)
  const V m1 = (V)((bits & 0x000fffffffffffffll) | 0x3ff0000000000000ll);  // [1, 2)
  const I big = (m1 > 1.4142135623730951) & 1;  // 1 where m1 > sqrt(2): m1 / 2, e + 1
  V m = (V)((I)m1 - (big << 52));
  // e as a double without an int64 -> double conversion: 2^52 + k holds k in its low bits
  const V e = (V)((((bits >> 52) & 0x7ff) + big) | 0x4330000000000000ll) -
              (4503599627370496.0 + 1023.0);
  log_of_m(m);
  const V log_u = e * 0.6931471805599453 + m;
  const I v = (I)(log_u * (r / (u - 1.0)));
  const I pass = (I)(u + r);  // +inf / NaN pass through
  const I one = u == 1.0;     // log1p(r) = r (tiny r)
  const I finite = u < HUGE_VAL;
  r = (V)((one & (I)r) | (~one & ((finite & v) | (~finite & pass))));
}

// A GCC/Clang vector of N E's (a typedef in a class template: GCC drops a dependent
// vector_size on a typedef local to a function template).
template <class E, int64_t N>
struct VecOf {
  typedef E type __attribute__((vector_size(sizeof(E) * N)));
};

using F64x2 = double __attribute__((vector_size(16)));
using I64x2 = int64_t __attribute__((vector_size(16)));
using F64x4 = double __attribute__((vector_size(32)));
using I64x4 = int64_t __attribute__((vector_size(32)));

// Four rows' logs (built from scalars in registers: a stack array written lane by lane
// would make the vector load wait on a failed store forwarding).
inline __attribute__((always_inline)) void log1p_sum_f32x4(const double* r, double* out) {
  F64x4 v = {r[0], r[1], r[2], r[3]};
  log1p_sum_f32v<F64x4, I64x4>(v);
  for (int i = 0; i < 4; ++i) out[i] = v[i];
}

// One row's, the same bits as in a group of four by construction (lane 0 of the same
// vector code; a single SSE/NEON vector).
inline __attribute__((always_inline)) double log1p_sum_f32x1(double r) {
  F64x2 v = {r, r};
  log1p_sum_f32v<F64x2, I64x2>(v);
  return v[0];
}

// The same arithmetic as plain scalar code, for the driver's logsumexp (generic
// x86-64: SSE2 has no vector compares of 64-bit integers, and the vector form's
// lanes came out slower there). 9M samples gave the vector form's bits, compiled as
// generic x86-64 and as AVX2 + FMA code alike.
inline double log1p_sum_f32(double r) {
  const double u = 1.0 + r;
  uint64_t bits;
  std::memcpy(&bits, &u, sizeof bits);
  int64_t e = int64_t(bits >> 52) - 1023;  // u >= 1: a normal number (or inf/NaN)
  bits = (bits & 0x000fffffffffffffull) | 0x3ff0000000000000ull;
  double m;
  std::memcpy(&m, &bits, sizeof m);  // [1, 2)
  const bool big = m > 1.4142135623730951;
  m = big ? m * 0.5 : m;
  e += big ? 1 : 0;
  log_of_m(m);
  const double log_u = double(e) * 0.6931471805599453 + m;
  const double v = log_u * (r / (u - 1.0));
  // u == 1: log1p(r) = r (tiny r); +inf / NaN pass through
  return u == 1.0 ? r : (u < HUGE_VAL ? v : u + r);
}

// The float32 exp's polynomials, for exp_ps in avx2.cpp and avx512.cpp (see there):
// exp(r) ~ 1 + r + r^2 q(r) on |r| <= ln2/2, q's coefficients from the highest degree.
// kExpQ: within 1 ULP (with the two-constant reduction); kExpQF16 / kExpQTrain: the
// shorter forms of the float16 and of the training kernels.
inline constexpr float kExpQ[] = {0x1.6d10fcp-10f, 0x1.120b62p-7f, 0x1.55551ap-5f,
                                  0x1.5554dep-3f, 0x1p-1f};
inline constexpr float kExpQF16[] = {0x1.522512p-5f, 0x1.571c54p-3f, 0x1.0006b6p-1f};
inline constexpr float kExpQTrain[] = {0x1.1061fep-7f, 0x1.5729acp-5f, 0x1.5557aep-3f,
                                       0x1.fffdfep-2f};

// A row's (or block's) sum of e_i = exp(x_i - max), max finite.
struct SumExp {
  double sum;   // the sum (>= 1: the max's own term is exp(0) = 1 exactly)
  double rest;  // sum - 1, accurate to the sum's low-order bits: log_softmax and
                // logsumexp use log1p(rest), the largest term set apart (docs/contract.md §5)
};

}  // namespace simd
}  // namespace fastsoftmax
