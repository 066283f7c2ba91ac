// The training family's problems (cross-entropy with logits, softmax / log_softmax
// backward) as the binding (bind_training.cpp) hands them to their driver
// (training.cpp). Every operand is seen as (outer dims..., classes): fastsoftmax._xent
// moves the reduced axis last (a view) first. The outer dims are collapsed in order
// (engine/layout.h, no sort), so rows are in row-major order of the outer shape: the
// order "sum"/"mean" add the per-row losses in.
#pragma once

#include <cstdint>

#include "engine/dtype.h"
#include "engine/layout.h"

namespace fastsoftmax {

enum Reduction : int { kNone = 0, kSum = 1, kMean = 2 };

// Element types a row can be read from: the float dtypes, and the bool and integer
// labels of the dense cross-entropy (read as they are, never cast to a full-size
// float copy first).
enum class Elem : int { f16, f32, f64, b8, i32, i64 };
inline Elem elem_of(DType d) {
  return d == DType::f16 ? Elem::f16 : d == DType::f32 ? Elem::f32 : Elem::f64;
}

// Operand slots (Dim::st) of the cross-entropy problems' outer dims.
enum XentOperand : int { kLogits = 0, kLabels = 1, kLoss = 2, kGrad = 3 };

struct SparseXent {
  DType dt;                  // logits (and loss, grad)
  int64_t n;                 // classes
  DimVec<Dim> outer;         // slots XentOperand
  int64_t rows;
  char* x;                   // logits, class stride xs
  int64_t xs;
  const char* lab;           // int32 or int64 labels
  bool lab64;
  bool has_ignore;
  int64_t ignore;
  double eps;                // label smoothing
  int red;                   // Reduction
  char* loss;                // reduction "none": per-row output; else the 0-d output
  char* grad;                // optional, class stride gs
  int64_t gs;
  int threads;
};

struct DenseXent {
  DType dt;        // logits (and loss, grad)
  Elem ldt;        // labels
  int64_t n;
  DimVec<Dim> outer;  // slots XentOperand
  int64_t rows;
  char* x;
  int64_t xs;
  const char* lab;
  int64_t ls;
  double eps;
  int red;
  char* loss;
  char* grad;
  int64_t gs;
  int threads;
};

// Operand slots of the backward problems' outer dims.
enum BackwardOperand : int { kBwdGrad = 0, kBwdY = 1, kBwdOut = 2 };

struct SoftmaxBackward {
  bool log;  // log_softmax_backward
  DType dt;
  int64_t n;
  DimVec<Dim> outer;  // slots BackwardOperand
  int64_t rows;
  const char* g;
  int64_t gs;
  const char* y;
  int64_t ys;
  char* out;
  int64_t os;
  int threads;
};

// The first label (row-major) outside [0, n) that is not ignore_index: its row, or
// -1 with *count = the number of rows that are not ignored.
int64_t first_bad_label(const SparseXent& a, int64_t* bad_value, int64_t* count);

// Run without the GIL; never throw. Reductions "sum"/"mean" write the 0-d loss: the
// per-row losses added in row order (compensated), "mean" divided by `count` (sparse:
// the rows not ignored) or by the rows (dense).
void run_sparse_xent(const SparseXent& a, int64_t count);
void run_dense_xent(const DenseXent& a);
void run_softmax_backward(const SoftmaxBackward& a);

}  // namespace fastsoftmax
