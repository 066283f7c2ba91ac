// The selection family's problems as the binding (bind_select.cpp) hands them to
// their driver (select.cpp). top_k: per row of x along one axis, the k best entries'
// values (or their softmax / log_softmax) and int64 indices, written along the same
// axis of two outputs of x's shape with that axis of length k.
#pragma once

#include <cstdint>

#include "engine/dtype.h"
#include "engine/layout.h"

namespace fastsoftmax {

// Operand slots (Dim::st) of top_k's outer dims.
enum TopKOperand : int { kTopKX = 0, kTopKValues = 1, kTopKIndices = 2 };

enum class Transform : int { none = 0, softmax = 1, log_softmax = 2 };

struct TopK {
  DType dt;             // of x (and of values, unless values_compute)
  bool values_compute;  // transform= values stored in the compute type (float32 for
                        // bfloat16 x: the sampler's top_logprobs), not x's dtype
  int64_t n;            // row length
  int64_t k;            // 1 <= k <= n
  bool largest;
  Transform transform;
  DimVec<Dim> outer;    // slots TopKOperand
  int64_t rows;
  const char* x;
  int64_t xs;           // byte stride along the row
  char* values;
  int64_t vs;           // byte stride along the k results
  char* indices;        // int64
  int64_t is;
  int threads;
};

// Run without the GIL; never throws.
void run_top_k(const TopK& a);

}  // namespace fastsoftmax
