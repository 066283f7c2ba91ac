// Small portable helpers shared by the driver and the scalar kernels:
// IEEE float16 <-> float32 and bfloat16 <-> float32 conversions and a compensated
// (Neumaier) sum.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace fastsoftmax {

// float16 bits -> float32, exact (every float16 is a float32).
inline float half_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0x1fu) {
    bits = sign | 0x7f800000u | (mant << 13);  // inf / nan (payload kept)
  } else if (exp != 0) {
    bits = sign | ((exp + 112u) << 23) | (mant << 13);
  } else if (mant == 0) {
    bits = sign;
  } else {  // subnormal float16: normalize
    int e = -1;
    do {
      ++e;
      mant <<= 1;
    } while ((mant & 0x400u) == 0);
    bits = sign | (uint32_t(112 - e) << 23) | ((mant & 0x3ffu) << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// float32 -> float16 bits, round to nearest even (overflow -> inf, nan stays nan).
inline uint16_t float_to_half(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint16_t sign = uint16_t((x >> 16) & 0x8000u);
  const uint32_t ax = x & 0x7fffffffu;
  if (ax >= 0x7f800000u) {  // inf or nan
    return uint16_t(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u : 0u));
  }
  if (ax >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // rounds to >= 65520: inf
  if (ax < 0x38800000u) {  // below the smallest normal float16 (2^-14): subnormal or 0
    if (ax < 0x33000000u) return sign;  // < 2^-25: rounds to 0 (2^-25 itself ties to 0)
    const uint32_t e = ax >> 23;
    const uint32_t m = (ax & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126u - e;  // 14..24 (value = m * 2^(e-150), unit 2^-24)
    uint32_t q = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1u);
    const uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u))) ++q;
    return uint16_t(sign | q);
  }
  // normal: rebias exponent 127 -> 15, keep 10 mantissa bits, round to nearest even
  uint32_t r = ax - (112u << 23);
  const uint32_t rem = r & 0x1fffu;
  r >>= 13;
  if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) ++r;  // may carry into exponent: fine
  return uint16_t(sign | r);
}

// bfloat16 (ml_dtypes.bfloat16: float32's sign and exponent, 7 fraction bits), stored
// as its bits. A type of its own, not uint16_t: float16 is two bytes too, and the
// kernel sets (kernels.h softmax_set), the driver's load/store (engine/blocks.h) and
// the ISAs' Ops tell the two apart by type.
struct bf16_t {
  uint16_t bits;
};
static_assert(sizeof(bf16_t) == 2 && alignof(bf16_t) == 2, "bfloat16 is two bytes");

// bfloat16 bits -> float32, exact: the bits are float32's upper half.
inline float bf16_to_float(uint16_t h) {
  const uint32_t bits = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// float32 -> bfloat16 bits, round to nearest even (overflow -> inf, subnormals
// rounded as they are); a NaN stays a NaN of its sign and upper payload, made quiet
// (as the AVX512_BF16 conversion; the vector stores of every ISA do the same).
inline uint16_t float_to_bf16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7fffffffu) > 0x7f800000u) return uint16_t((x | 0x00400000u) >> 16);
  return uint16_t((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);  // a carry moves the exponent: fine
}

// float64 -> bfloat16 bits, correctly rounded (nearest even; no double rounding
// through float32): rounded to float32 by round-to-odd first (exact where float32
// holds the value, else truncated with the last bit set), which float_to_bf16's
// 16 fewer bits then round correctly.
inline uint16_t double_to_bf16(double d) {
  float f = float(d);
  if (double(f) != d && d == d) {
    uint32_t x;
    std::memcpy(&x, &f, 4);
    if (std::fabs(double(f)) > std::fabs(d)) --x;  // toward zero (f may be inf: then FLT_MAX)
    x |= 1u;
    std::memcpy(&f, &x, 4);
  }
  return float_to_bf16(f);
}

// Neumaier's compensated summation: error ~2 eps regardless of the number of terms.
struct CompensatedSum {
  double sum = 0.0;
  double comp = 0.0;
  void add(double v) {
    const double t = sum + v;
    if (std::fabs(sum) >= std::fabs(v))
      comp += (sum - t) + v;
    else
      comp += (v - t) + sum;
    sum = t;
  }
  double value() const { return sum + comp; }
};

}  // namespace fastsoftmax
