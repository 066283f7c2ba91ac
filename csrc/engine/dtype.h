// The storage dtypes the drivers compute on (float16 is computed in float32).
#pragma once

#include <cstdint>

namespace fastsoftmax {

enum class DType : int { f16 = 0, f32 = 1, f64 = 2 };

inline int64_t itemsize(DType d) { return d == DType::f16 ? 2 : d == DType::f32 ? 4 : 8; }

}  // namespace fastsoftmax
