// Rows split across arrays (fastsoftmax.dask: a reduced axis cut into chunks): the
// softmax family's two passes exposed one at a time. Each chunk's rows reduce to
// partials (max, sum, rest; partial.h), the chunks' partials are merged elsewhere (the
// same merge as a long row's blocks, merge.h), and each chunk is finished from the
// merged (max, sum, rest) of its rows. docs/contract.md §13.
#pragma once

#include <cstdint>

#include "driver.h"

namespace fastsoftmax {

// `rows` contiguous rows of length n, row r at x + r * ldx elements (a dask chunk that
// is a view of a larger array: no copy), float32 or float64.
struct RowsProblem {
  DType dtype = DType::f32;
  const void* x = nullptr;
  void* y = nullptr;  // finish only: x's dtype, C-contiguous (rows, n)
  int64_t rows = 0, n = 0, ldx = 0;
  // Per row, float64: written by row_partials, read by row_finish.
  double *max = nullptr, *sum = nullptr, *rest = nullptr;
  Op op = Op::softmax;  // finish: softmax or log_softmax
  int threads = 1;
};

// Each row's Partial, its blocks of kBlock merged in order (as the driver's long rows);
// a row of length 0 gives max -inf, sum 0, rest 0.
void row_partials(const RowsProblem& p);

// y = exp(x - max) / sum (softmax) or (x - max) - log1p(rest) (log_softmax) per row,
// by the table's finish kernels; a row whose max is not finite takes its special
// value (docs/contract.md §3). Without the GIL; never throws.
void row_finish(const RowsProblem& p);

}  // namespace fastsoftmax
