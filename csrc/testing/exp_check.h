// Accuracy measurement of a vector exp against a correctly rounded reference.
// Plain C++ (OpenMP when compiled with it); used by the Python test hooks
// (csrc/testing/testing.cpp) and by the stand-alone kernel test
// (tests/neon/neon_test.cpp).
//
// float32: every float whose bit pattern lies in [lo_bits, hi_bits] (a stride may
// thin the sweep); reference = exp in double (glibc, < 1 ULP of double) rounded to
// float, recomputed in long double when the double lands within 2^-45 of a rounding
// midpoint. float64: random samples in [lo, hi] against expl rounded to double.
// Where the exact result is below the smallest normal, the kernels' contract is a
// flush to +0: such inputs are counted in `flushed`, and any other result there is
// `bad`. ULP distance = difference of the (positive) bit patterns.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

namespace fastsoftmax {
namespace expcheck {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

struct Report {
  int64_t checked = 0;     // inputs compared
  int64_t max_ulp = 0;     // max |bits(result) - bits(correctly rounded)|
  double worst_input = std::numeric_limits<double>::quiet_NaN();
  double max_err = 0.0;    // max |result - exact| in ULPs of the correctly rounded value
  double max_err_input = std::numeric_limits<double>::quiet_NaN();
  int64_t flushed = 0;     // exact result subnormal: result +0 as documented
  int64_t bad = 0;         // wrong special / flush / NaN handling
  double first_bad_input = std::numeric_limits<double>::quiet_NaN();

  void merge(const Report& o) {
    checked += o.checked;
    flushed += o.flushed;
    if (o.max_ulp > max_ulp || (o.max_ulp == max_ulp && o.max_ulp > 0 &&
                                std::fabs(o.worst_input) < std::fabs(worst_input))) {
      max_ulp = o.max_ulp;
      worst_input = o.worst_input;
    }
    if (o.max_err > max_err) {
      max_err = o.max_err;
      max_err_input = o.max_err_input;
    }
    if (o.bad && (bad == 0 || std::fabs(o.first_bad_input) < std::fabs(first_bad_input)))
      first_bad_input = o.first_bad_input;
    bad += o.bad;
  }
  // One finite, non-flushed result at input x: its distance in bits from the correctly
  // rounded value, and its error in ULPs of it (NaN where that is not finite).
  void note(double x, int64_t ulp_dist, double err) {
    if (ulp_dist > max_ulp) {
      max_ulp = ulp_dist;
      worst_input = x;
    }
    if (err > max_err) {
      max_err = err;
      max_err_input = x;
    }
  }
  void note_bad(double x) {
    if (bad == 0 || std::fabs(x) < std::fabs(first_bad_input)) first_bad_input = x;
    ++bad;
  }
};

inline uint32_t bits_of(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}
inline uint64_t bits_of(double f) {
  uint64_t b;
  std::memcpy(&b, &f, 8);
  return b;
}

// Correctly rounded float exp(x) from d, an approximation of exp(x) within 1 ULP of
// double (x finite, result normal or larger); `exact` gets the best estimate. The
// rounding of d to float is only in doubt when the 29 bits below float precision are
// within a few units of the half-way pattern: then expl decides.
inline float ref_exp_f32(float x, double d, double* exact) {
  const uint64_t low = bits_of(d) & ((uint64_t(1) << 29) - 1);
  const uint64_t half = uint64_t(1) << 28;
  if ((low > half ? low - half : half - low) < 16) {
    const long double e = std::exp((long double)x);
    *exact = double(e);  // only used for the error estimate
    return float(e);
  }
  *exact = d;
  return float(d);
}

// 1 / (one ULP) of a positive normal float, as a double.
inline double inv_ulp_f32(float f) {
  const uint64_t e = (bits_of(f) >> 23) & 0xffu;
  const uint64_t b = (1023 + 127 + 23 - e) << 52;  // 2^(127 + 23 - e)
  double u;
  std::memcpy(&u, &b, 8);
  return u;
}

// One ULP of a positive normal float (as a double).
inline double ulp_f32(float f) {
  const uint64_t e = (bits_of(f) >> 23) & 0xffu;
  const uint64_t b = (e - 23 + 1023 - 127) << 52;  // 2^(e - 127 - 23)
  double u;
  std::memcpy(&u, &b, 8);
  return u;
}

// ref64: a float64 exp within 1 ULP used as the reference before rounding (e.g. an
// ISA's vector exp, itself checked against expl by check_f64_random: fast enough for
// an exhaustive sweep), or nullptr for libm's exp.
using ExpF64 = void (*)(const double*, double*, int64_t);

template <class ExpFn>
Report check_f32_range(ExpFn fn, uint32_t lo_bits, uint32_t hi_bits, uint32_t stride,
                       ExpF64 ref64 = nullptr) {
  if (stride == 0) stride = 1;
  const uint64_t count = (uint64_t(hi_bits) - lo_bits) / stride + 1;
  constexpr uint64_t kChunk = 1 << 14;
  const int64_t nchunks = int64_t((count + kChunk - 1) / kChunk);
  Report total;
#if defined(_OPENMP)
#pragma omp parallel
#endif
  {
    Report local;
    std::vector<float> xs(kChunk), ys(kChunk);
    std::vector<double> xd(kChunk), yd(kChunk);
#if defined(_OPENMP)
#pragma omp for schedule(dynamic, 16)
#endif
    for (int64_t c = 0; c < nchunks; ++c) {
      const uint64_t first = uint64_t(c) * kChunk;
      const int64_t len = int64_t(first + kChunk <= count ? kChunk : count - first);
      for (int64_t k = 0; k < len; ++k) {
        const uint32_t b = uint32_t(lo_bits + (first + uint64_t(k)) * stride);
        std::memcpy(&xs[size_t(k)], &b, 4);
      }
      fn(xs.data(), ys.data(), len);
      for (int64_t k = 0; k < len; ++k) xd[size_t(k)] = double(xs[size_t(k)]);
      if (ref64)
        ref64(xd.data(), yd.data(), len);
      else
        for (int64_t k = 0; k < len; ++k) yd[size_t(k)] = std::exp(xd[size_t(k)]);
      // Fast pass (vectorizable): max ULP distance and error over the ordinary
      // elements; the rare special ones (NaN, flushed, near a rounding midpoint) and
      // the index of a new maximum are found by the careful pass below.
      int64_t cmax = 0, nspecial = 0;
      double emax = 0.0;
      for (int64_t k = 0; k < len; ++k) {
        const float x = xs[size_t(k)], y = ys[size_t(k)];
        const double d = yd[size_t(k)];
        const float rf = float(d);
        const uint64_t low = bits_of(d) & ((uint64_t(1) << 29) - 1);
        const int64_t dist_half = int64_t(low) - (int64_t(1) << 28);
        const bool special = (x != x) | (y != y) | (d < double(std::numeric_limits<float>::min())) |
                             (dist_half < 16 && dist_half > -16) | (rf > 3.0e38f);
        const int32_t diff = int32_t(bits_of(y) - bits_of(rf));
        const int64_t ad = diff < 0 ? -int64_t(diff) : int64_t(diff);
        const double err = std::fabs(double(y) - d) * inv_ulp_f32(rf);
        nspecial += special;
        cmax = (!special && ad > cmax) ? ad : cmax;
        emax = (!special && err > emax) ? err : emax;
      }
      local.checked += len;
      if (nspecial == 0 && cmax <= local.max_ulp && emax <= local.max_err) continue;
      for (int64_t k = 0; k < len; ++k) {
        const float x = xs[size_t(k)], y = ys[size_t(k)];
        if (std::isnan(x)) {
          if (!std::isnan(y)) local.note_bad(x);
          continue;
        }
        double exact;
        const float ref = ref_exp_f32(x, yd[size_t(k)], &exact);
        if (exact < double(std::numeric_limits<float>::min())) {
          if (bits_of(y) == 0)
            ++local.flushed;
          else
            local.note_bad(x);
          continue;
        }
        if (std::isnan(y) || y < 0) {
          local.note_bad(x);
          continue;
        }
        const int64_t d = int64_t(bits_of(y)) - int64_t(bits_of(ref));
        local.note(x, d < 0 ? -d : d,
                   std::isfinite(ref) ? std::fabs(double(y) - exact) / ulp_f32(ref) : kNaN);
      }
    }
#if defined(_OPENMP)
#pragma omp critical
#endif
    total.merge(local);
  }
  return total;
}

// How many floats with bit patterns in [lo_bits, hi_bits] get different result bits
// from f and g (e.g. the full-range exp and its x <= 0 variant).
template <class ExpFn>
int64_t count_differences(ExpFn f, ExpFn g, uint32_t lo_bits, uint32_t hi_bits) {
  const uint64_t count = uint64_t(hi_bits) - lo_bits + 1;
  constexpr uint64_t kChunk = 1 << 14;
  const int64_t nchunks = int64_t((count + kChunk - 1) / kChunk);
  int64_t differ = 0;
#if defined(_OPENMP)
#pragma omp parallel reduction(+ : differ)
#endif
  {
    std::vector<float> xs(kChunk), a(kChunk), b(kChunk);
#if defined(_OPENMP)
#pragma omp for schedule(dynamic, 16)
#endif
    for (int64_t c = 0; c < nchunks; ++c) {
      const uint64_t first = uint64_t(c) * kChunk;
      const int64_t len = int64_t(first + kChunk <= count ? kChunk : count - first);
      for (int64_t k = 0; k < len; ++k) {
        const uint32_t bits = uint32_t(lo_bits + first + uint64_t(k));
        std::memcpy(&xs[size_t(k)], &bits, 4);
      }
      f(xs.data(), a.data(), len);
      g(xs.data(), b.data(), len);
      if (std::memcmp(a.data(), b.data(), size_t(len) * 4) != 0)
        for (int64_t k = 0; k < len; ++k) differ += bits_of(a[size_t(k)]) != bits_of(b[size_t(k)]);
    }
  }
  return differ;
}

// splitmix64: deterministic per-index randoms, whatever the thread count.
inline uint64_t splitmix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

template <class ExpFn>
Report check_f64_random(ExpFn fn, double lo, double hi, int64_t count, uint64_t seed) {
  constexpr int64_t kChunk = 1 << 13;
  const int64_t nchunks = (count + kChunk - 1) / kChunk;
  Report total;
#if defined(_OPENMP)
#pragma omp parallel
#endif
  {
    Report local;
    std::vector<double> xs(kChunk), ys(kChunk);
#if defined(_OPENMP)
#pragma omp for schedule(dynamic, 8)
#endif
    for (int64_t c = 0; c < nchunks; ++c) {
      const int64_t first = c * kChunk;
      const int64_t len = first + kChunk <= count ? kChunk : count - first;
      for (int64_t k = 0; k < len; ++k) {
        const uint64_t r = splitmix64(seed * 0x2545f4914f6cdd1dull + uint64_t(first + k));
        const double u = double(r >> 11) * 0x1p-53;  // [0, 1)
        xs[size_t(k)] = lo + (hi - lo) * u;
      }
      fn(xs.data(), ys.data(), len);
      for (int64_t k = 0; k < len; ++k) {
        const double x = xs[size_t(k)], y = ys[size_t(k)];
        ++local.checked;
        const long double exact = std::exp((long double)x);
        if (exact < (long double)std::numeric_limits<double>::min()) {
          if (bits_of(y) == 0)
            ++local.flushed;
          else
            local.note_bad(x);
          continue;
        }
        const double ref = double(exact);
        if (std::isnan(y) || y < 0) {
          local.note_bad(x);
          continue;
        }
        const int64_t d = int64_t(bits_of(y) - bits_of(ref));
        local.note(x, d < 0 ? -d : d,
                   std::isfinite(ref) ? double(std::fabs((long double)y - exact) /
                                               std::ldexp(1.0L, std::ilogb(ref) - 52))
                                      : kNaN);
      }
    }
#if defined(_OPENMP)
#pragma omp critical
#endif
    total.merge(local);
  }
  return total;
}

}  // namespace expcheck
}  // namespace fastsoftmax
