// The softmax family's problem (softmax, log_softmax, logsumexp) and its driver
// (driver.cpp): (shape, strides, reduced axes) into calls of the row and panel
// kernels of the active table, or rows gathered through per-thread buffers when
// neither the reduced axis nor a kept axis is contiguous.
#pragma once

#include <cstdint>
#include <cstddef>
#include <initializer_list>

#include "engine/dims.h"
#include "engine/dtype.h"

namespace fastsoftmax {

enum class Op : int { softmax = 0, log_softmax = 1, logsumexp = 2 };

// One strided operand, strides in bytes, one per dimension of the problem's shape.
// A stride of 0 broadcasts; for logsumexp's outputs the reduced dims have stride 0.
struct Operand {
  char* data = nullptr;
  DimVec<int64_t> strides;
};

struct Problem {
  Op op = Op::softmax;
  DType dtype = DType::f32;  // of x and y (same dtype; casts happen in Python)
  DimVec<int64_t> shape;
  DimVec<bool> reduced;  // per dimension
  Operand x, y;
  double temperature = 1.0;  // != 1: x / T formed in the compute dtype
  Operand mask;              // optional (data == nullptr): bool bytes, False = excluded
  // logsumexp only: optional float64 weights `b` and a sign output (same dtype as y).
  Operand b, sign;
  int threads = 1;
};

// Runs the problem. Must be called without the GIL; never throws after it starts
// computing (argument errors are raised by the caller before).
void run(const Problem& p);

// The thread count the next call may use: set_num_threads/threads(n) if set, else
// OpenMP's (OMP_NUM_THREADS, threadpoolctl). Defined in module.cpp.
int current_num_threads();

}  // namespace fastsoftmax
