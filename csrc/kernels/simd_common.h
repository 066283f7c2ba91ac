// Plain types shared by the SIMD kernel files (no ISA code: safe to include
// anywhere, outside the target regions).
#pragma once

#include <cmath>

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

// A row's (or block's) sum of e_i = exp(x_i - max), max finite.
struct SumExp {
  double sum;   // the sum (>= 1: the max's own term is exp(0) = 1 exactly)
  double rest;  // sum - 1, accurate to the sum's low-order bits: log_softmax and
                // logsumexp use log1p(rest), the largest term set apart (SPEC)
};

}  // namespace simd
}  // namespace fastsoftmax
