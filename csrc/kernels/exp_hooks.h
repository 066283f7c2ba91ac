// Test hooks into each ISA's vector exp and row-batch kernels (used by
// csrc/testing.cpp and the C++ kernel tests). Plain declarations, no ISA code.
#pragma once

#include <cstdint>

#include "fastsoftmax/kernels.h"

namespace fastsoftmax {

struct ExpHooks {
  // y[i] = exp(x[i]) with the ISA's vector exp, tails through the same vector code.
  void (*exp_f32)(const float* x, float* y, int64_t n) = nullptr;
  void (*exp_f64)(const double* x, double* y, int64_t n) = nullptr;
  // The variants for x <= 0 (or NaN) that the row kernels use on x - max: the same
  // bits as the full-range exp there, unspecified results for x > 0.
  void (*exp_f32_le0)(const float* x, float* y, int64_t n) = nullptr;
  void (*exp_f64_le0)(const double* x, double* y, int64_t n) = nullptr;
};

// Defined in csrc/kernels/<isa>.cpp; false when that ISA is not compiled in (the
// CPU may still lack it: check cpu_supports() before calling through the hooks).
bool exp_hooks_avx512(ExpHooks& h);
bool exp_hooks_avx2(ExpHooks& h);
bool exp_hooks_neon(ExpHooks& h);

// Batches of rows: row r at x + r * ldx (y + r * ldy), 1 <= n <= kBlock. Every row's
// bits equal those of the single-row kernel on it; short rows are processed in pairs
// so that their latency-bound passes overlap. The kernel table fills its entries of
// the same names and types wherever kernels.h declares them.
template <class S>
struct RowBatchKernels {
  void (*softmax_rows)(const S* x, int64_t ldx, S* y, int64_t ldy, int64_t n,
                       int64_t rows) = nullptr;
  void (*log_softmax_rows)(const S* x, int64_t ldx, S* y, int64_t ldy, int64_t n,
                           int64_t rows) = nullptr;
  void (*reduce_rows)(const S* x, int64_t ldx, int64_t n, int64_t rows, Partial* out) = nullptr;
};
struct RowBatchHooks {
  RowBatchKernels<float> f32;
  RowBatchKernels<double> f64;
  RowBatchKernels<uint16_t> f16;
};
bool row_batch_hooks_avx512(RowBatchHooks& h);
bool row_batch_hooks_avx2(RowBatchHooks& h);
bool row_batch_hooks_neon(RowBatchHooks& h);

}  // namespace fastsoftmax
