// The storage dtypes the drivers compute on (float16 and bfloat16 are computed in
// float32).
#pragma once

#include <cstdint>

namespace fastsoftmax {

// bf16: ml_dtypes.bfloat16 (stored as fastsoftmax::bf16_t, common.h); its NumPy type
// number is assigned at run time (numpy_view.h dtype_of).
enum class DType : int { f16 = 0, f32 = 1, f64 = 2, bf16 = 3 };

inline int64_t itemsize(DType d) {
  return d == DType::f16 || d == DType::bf16 ? 2 : d == DType::f32 ? 4 : 8;
}

}  // namespace fastsoftmax
