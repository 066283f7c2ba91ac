// The training family's kernels: softmax cross-entropy (loss and fused gradient) and
// the softmax / log_softmax backward passes, on contiguous rows of the compute type
// (float32, float64; float16 rows are converted to float32 buffers by the driver).
//   what      per-row block partials of the loss, the fused gradient of one-block rows,
//             the sums (g . y, sum g, label terms) and the write loops of the backward
//             passes and of the gradient
//   accuracy  docs/contract.md §5: 64 ε times the row's scale. The float32 exp may be
//             shorter than the softmax family's (4.5e-7 relative on avx512/avx2);
//             sums of float data run in double lanes, of double data in TwoSum lanes
//   specials  a partial's max as Partial's (NaN, +inf, -inf); the driver writes
//             special rows itself; lanes that meet inf/NaN keep it in their sums
//   method    one pass per block for the loss while the block is in cache, then the
//             gradient / backward write pass (streamed where `stream` is set)
#pragma once

#include <cstdint>

#include "fastsoftmax/partial.h"

namespace fastsoftmax {

template <class C>
struct TrainingKernels {
  // The loss's reduction of one block (1 <= n <= kBlock): reduce with the training exp.
  Partial (*reduce)(const C* x, int64_t n) = nullptr;
  // Sparse cross-entropy gradient of one row (1 <= n <= kBlock):
  //   y_i = exp(x_i - max) * C(a / sum) - b  (one rounding, as fma),
  //   and (that) - c at i == t  (the label; none when t is outside [0, n))
  // (a: the reduction's scale; b, c: the target's shares, label smoothing folded in).
  // Returns the row's Partial, bit-identical to reduce(x, n). When its max is not
  // finite y is unspecified and the caller writes it. `stream`: long rows keep the
  // exps in the thread's row buffer and write y once, non-temporal (same bits).
  Partial (*grad_row)(const C* x, C* y, int64_t n, double a, C b, int64_t t, C c,
                      bool stream) = nullptr;
  // log_softmax backward of one row of log-probabilities y (every y_i <= 0 or NaN;
  // any n >= 1): out_i = g_i - exp(y_i) * s (one rounding, as fma), training exp.
  // out may be g or y (in place). Long rows prefetch the next row (g + n, y + n).
  void (*log_softmax_backward_row)(const C* g, const C* y, C* out, int64_t n, C s,
                                   bool stream) = nullptr;

  // Row loops (any n >= 0; `stream`: non-temporal stores, same bits):
  // sum of (x_i - ref) (ref = 0: the plain sum).
  double (*sum_minus)(const C* x, int64_t n, double ref) = nullptr;
  // sum of a_i * b_i.
  double (*dot)(const C* a, const C* b, int64_t n) = nullptr;
  // sum of l_i and of l_i * (x_i - ref) over l_i != 0 (0 * -inf := 0).
  void (*label_terms)(const C* l, const C* x, int64_t n, double ref, double* sum_l,
                      double* sum_lx) = nullptr;
  // o_i = e_i - b.
  void (*store_sub)(const C* e, C* o, int64_t n, C b, bool stream) = nullptr;
  // o_i = e_i - (a * l_i + b).
  void (*store_sub_affine)(const C* e, const C* l, C* o, int64_t n, C a, C b,
                           bool stream) = nullptr;
  // softmax backward: o_i = y_i * (g_i - s).
  void (*softmax_bwd)(const C* g, const C* y, C* o, int64_t n, C s, bool stream) = nullptr;
  // log_softmax backward from the exps: o_i = g_i - e_i * s.
  void (*log_softmax_bwd)(const C* g, const C* e, C* o, int64_t n, C s, bool stream) = nullptr;
  // every y_i <= 0 (false on NaN).
  bool (*all_nonpositive)(const C* y, int64_t n) = nullptr;
  // sum of g_i, and *nonpos = every y_i <= 0.
  double (*sum_check)(const C* g, const C* y, int64_t n, bool* nonpos) = nullptr;
};

}  // namespace fastsoftmax
