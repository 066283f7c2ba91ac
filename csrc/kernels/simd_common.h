// Plain types shared by the SIMD kernel files (no ISA code: safe to include
// anywhere, outside the target regions).
#pragma once

namespace fastsoftmax {
namespace simd {

// A row's (or block's) sum of e_i = exp(x_i - max), max finite.
struct SumExp {
  double sum;   // the sum (>= 1: the max's own term is exp(0) = 1 exactly)
  double rest;  // sum - 1, accurate to the sum's low-order bits: log_softmax and
                // logsumexp use log1p(rest), the largest term set apart (SPEC)
};

}  // namespace simd
}  // namespace fastsoftmax
