// The softmax family's kernels: softmax, log_softmax and logsumexp over rows, blocks
// of long rows and panels (docs/contract.md §3, §5).
//   what      exp(x - max) / sum, (x - max) - log1p(rest), max + log1p(rest) per row
//   accuracy  float32 4 ULP + |x - max|/2 ULP, float64 16; sums wider or compensated;
//             logs with the largest term set apart (rest = sum - 1)
//   specials  a row with a NaN: all NaN; else with +inf: all NaN (logsumexp +inf);
//             only -inf: 0 (log_softmax, logsumexp: -inf); canonical NaN only
//   method    max pass, exp-and-sum pass, scale pass per row (n <= kBlock); long rows
//             as blocks: reduce, merge (driver), finish; panels vectorize across lanes
#pragma once

#include <cstdint>

#include "fastsoftmax/partial.h"

namespace fastsoftmax {

// Kernels for one storage dtype. S is the storage type (float, double, uint16_t for
// IEEE float16, bf16_t for bfloat16); C is the compute type (float for float16,
// bfloat16 and float32, double for float64). float16 and bfloat16 kernels are
// optional (nullptr): the driver then converts through a float32 buffer and calls
// the float32 kernels.
template <class S, class C>
struct SoftmaxKernels {
  // Whole row, 1 <= n <= kBlock. softmax: y = exp(x - max) / sum exp(x - max).
  void (*softmax_row)(const S* x, S* y, int64_t n) = nullptr;
  // log_softmax: y = (x - max) - log(sum exp(x - max)).
  void (*log_softmax_row)(const S* x, S* y, int64_t n) = nullptr;
  // One block (1 <= n <= kBlock): its Partial. Also the logsumexp of short rows.
  Partial (*reduce)(const S* x, int64_t n) = nullptr;
  // reduce given the block's exact, finite max m (another kernel found it: top_k):
  // the same Partial as reduce, without the max pass. Given a finite m above the
  // block's max instead, its sum is still sum exp(x - m) (max and rest are then not
  // the block's: the sampler's block sums use only the sum).
  Partial (*reduce_max)(const S* x, int64_t n, C m) = nullptr;
  // Second pass of a long row, given the merged max (finite) and scale = 1 / total sum:
  // y = exp(x - max) * scale.
  void (*softmax_finish)(const S* x, S* y, int64_t n, C max, C scale) = nullptr;
  // y = (x - max) - log_sum   (max finite; x - max formed first, for accuracy).
  void (*log_softmax_finish)(const S* x, S* y, int64_t n, C max, C log_sum) = nullptr;

  // Optional: the finish kernels with non-temporal (streaming) stores, for the second
  // pass of rows too long for the cache, whose output is not re-read soon. Same bits
  // as the plain finish kernels (the arithmetic is elementwise).
  void (*softmax_finish_stream)(const S* x, S* y, int64_t n, C max, C scale) = nullptr;
  void (*log_softmax_finish_stream)(const S* x, S* y, int64_t n, C max, C log_sum) = nullptr;
  // Optional: softmax_finish_stream given the row's min (merged from the reduce's
  // Partial::min), which the kernel may use to skip its exp's clamp and flush where
  // every x - max allows (the same bits).
  void (*softmax_finish_min)(const S* x, S* y, int64_t n, C max, C scale, C min) = nullptr;

  // Optional batches of `rows` contiguous rows of equal length n <= kBlock, row r at
  // x + r * ldx (y + r * ldy): the same bits as calling the row kernels one row at a
  // time (short rows are processed in pairs to hide the latency of one row's passes).
  void (*softmax_rows)(const S* x, int64_t ldx, S* y, int64_t ldy, int64_t n,
                       int64_t rows) = nullptr;
  void (*log_softmax_rows)(const S* x, int64_t ldx, S* y, int64_t ldy, int64_t n,
                           int64_t rows) = nullptr;
  void (*reduce_rows)(const S* x, int64_t ldx, int64_t n, int64_t rows, Partial* out) = nullptr;
  // Optional: the batches with non-temporal stores, for outputs that will not stay in
  // cache (the driver picks them by size). Same bits as softmax_rows/log_softmax_rows.
  void (*softmax_rows_stream)(const S* x, int64_t ldx, S* y, int64_t ldy, int64_t n,
                              int64_t rows) = nullptr;
  void (*log_softmax_rows_stream)(const S* x, int64_t ldx, S* y, int64_t ldy, int64_t n,
                                  int64_t rows) = nullptr;
  // Rows of at least this many bytes are not streamed even then (the ISA's choice:
  // where the exps are slow, plain stores' reads for ownership hide under them).
  int64_t stream_rows_below_bytes = INT64_MAX;

  // Panels: the reduced axis is strided and `w` lanes next to each other are
  // contiguous. Element (i, j) (reduced index i < n, lane j < w) is x[i * ldx + j];
  // the output is y[i * ldy + j]. Every lane is an independent row of length n
  // (n >= 1, any length, no blocking); a lane's bits must not depend on w or on
  // its position in the panel (vector tails use masks, never different code).
  void (*softmax_panel)(const S* x, int64_t ldx, S* y, int64_t ldy, int64_t n,
                        int64_t w) = nullptr;
  void (*log_softmax_panel)(const S* x, int64_t ldx, S* y, int64_t ldy, int64_t n,
                            int64_t w) = nullptr;
  // logsumexp of each lane, written to out[0..w) (contiguous, compute type).
  void (*logsumexp_panel)(const S* x, int64_t ldx, int64_t n, int64_t w, C* out) = nullptr;
  // Optional: the driver's gather of a contiguous row with a temperature t and/or a
  // where= mask m (contiguous bools, or nullptr): y_i = -inf where m_i is false, else
  // C(x_i) / t, an IEEE division in the compute type (the bits of the scalar loop; no
  // division when t == 1), for i < n (n >= 1). y is a compute-type buffer of n
  // elements, disjoint from x.
  void (*gather_row)(const S* x, const bool* m, C* y, int64_t n, C t) = nullptr;
  // Optional, where S != C (float16, bfloat16): y_i = x_i rounded to S (nearest
  // even, the bits of the driver's scalar store; the kernels' outputs hold no NaN but
  // the canonical one), for the driver's scatter of a gathered row into a contiguous
  // output.
  void (*narrow_row)(const C* x, S* y, int64_t n) = nullptr;
  // Optional, float64 set: logsumexp's weighted sum (b=) over one chunk of a row,
  // sum_i w_i * exp(d_i) for d_i <= 0 or -inf (-inf with w_i = 0 for an entry that
  // takes no part), with the exp of the row kernels and error-free (TwoSum) additions:
  // out[0] the sum, out[1] its compensation (the terms' signs may differ).
  void (*weighted_exp_sum)(const double* d, const double* w, int64_t n, double* out) = nullptr;
};

}  // namespace fastsoftmax
