// The merge of a row's block partials (kernels.h Partial), in block order: shared by
// the N-D driver (blocks of kBlock), the cross-entropy core, and the training
// kernels' sub-blocks (kernels/generic/training_rows.h). Plain scalar code: SIMD files include it
// at their top, outside their target regions, so that the one inline copy the linker
// keeps runs on any x86-64/aarch64.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "fastsoftmax/common.h"
#include "fastsoftmax/kernels.h"

namespace fastsoftmax {

// A partial's rest, or sum - 1 where its kernel left rest NaN ("not provided").
inline double rest_of(const Partial& p) { return std::isnan(p.rest) ? p.sum - 1.0 : p.rest; }

// max: NaN if any partial's is NaN, else the largest; when it is not finite the row is
// special and sum = rest = 0. Otherwise sum = the partials' sums rescaled by
// exp(max_b - max) (compensated), and rest = the rest of the first partial holding
// the max plus every other partial's whole rescaled sum (docs/contract.md §5: log1p, the largest
// term set apart).
inline Partial merge_partials(const Partial* p, int64_t nb) {
  constexpr double kInf = std::numeric_limits<double>::infinity();
  double m = -kInf;
  for (int64_t b = 0; b < nb; ++b) {
    if (std::isnan(p[b].max)) return {std::numeric_limits<double>::quiet_NaN(), 0.0, 0.0};
    m = std::max(m, p[b].max);
  }
  if (!std::isfinite(m)) return {m, 0.0, 0.0};
  CompensatedSum s, r;
  bool apart = false;
  for (int64_t b = 0; b < nb; ++b) {
    if (p[b].max == -kInf) continue;
    const double scaled = p[b].sum * std::exp(p[b].max - m);
    s.add(scaled);
    if (!apart && p[b].max == m) {
      r.add(rest_of(p[b]));
      apart = true;
    } else {
      r.add(scaled);
    }
  }
  return {m, s.value(), r.value()};
}

}  // namespace fastsoftmax
