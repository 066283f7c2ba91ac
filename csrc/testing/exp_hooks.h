// Test hooks into each ISA's vector exp, row-batch kernels and bfloat16 conversions (used by
// csrc/testing/testing.cpp and the C++ kernel tests). Plain declarations, no ISA code.
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
  // The float16 kernels' exp (full range and x <= 0), on float arrays: the float32
  // exp where the ISA has no shorter one for float16 results.
  void (*exp_f16)(const float* x, float* y, int64_t n) = nullptr;
  void (*exp_f16_le0)(const float* x, float* y, int64_t n) = nullptr;
  // The float32 exp of the cross-entropy and backward kernels (generic/training_rows.h).
  void (*exp_train)(const float* x, float* y, int64_t n) = nullptr;
  void (*exp_train_le0)(const float* x, float* y, int64_t n) = nullptr;
  // The no-flush forms of the four x <= 0 variants, where the ISA has them
  // (generic/row_passes.h HasExpNf), else null: for x >= the ISA's kExpLe0NfMin (or NaN)
  // they must give exactly the bits of their x <= 0 variant.
  void (*exp_f32_le0_nf)(const float* x, float* y, int64_t n) = nullptr;
  void (*exp_f64_le0_nf)(const double* x, double* y, int64_t n) = nullptr;
  void (*exp_f16_le0_nf)(const float* x, float* y, int64_t n) = nullptr;
  void (*exp_train_le0_nf)(const float* x, float* y, int64_t n) = nullptr;
  // y[i] = log1p(r[i]) as the float32 row kernels take a row's log (r = sum - 1 >= 0,
  // or +inf / NaN): four at a time as log_softmax's groups of short rows do, the last
  // n % 4 one by one as a single row does.
  void (*log1p_rest_f32)(const double* r, double* y, int64_t n) = nullptr;
  // y = x rounded to bfloat16 by the ISA's BF16 Ops (the integer form, also where the
  // table takes the CPU's own conversions: avx512.cpp's BF16Native gives the same bits).
  void (*bf16_narrow)(const float* x, bf16_t* y, int64_t n) = nullptr;
};

// Defined in csrc/kernels/<isa>.cpp; false when that ISA is not compiled in (the
// CPU may still lack it: check cpu_supports() before calling through the hooks).
bool exp_hooks_avx512(ExpHooks& h);
bool exp_hooks_avx2(ExpHooks& h);
bool exp_hooks_neon(ExpHooks& h);


}  // namespace fastsoftmax
