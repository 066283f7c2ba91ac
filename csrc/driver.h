// The N-D driver: turns (shape, strides, reduced axes) into calls of the row and
// panel kernels of the active table, or gathers rows through per-thread buffers
// when neither the reduced axis nor a kept axis is contiguous.
#pragma once

#include <cstdint>
#include <cstddef>
#include <initializer_list>

namespace fastsoftmax {

// NumPy's NPY_MAXDIMS (64 since NumPy 2).
constexpr int kMaxDims = 64;

// A fixed-capacity vector: the per-call bookkeeping never touches the heap, which
// matters for the sub-microsecond small-call path.
template <class T>
struct DimVec {
  T v[kMaxDims];
  int n = 0;
  DimVec() = default;
  DimVec(std::initializer_list<T> l) { for (const T& e : l) push_back(e); }
  template <class It>
  void assign(It b, It e) {
    n = 0;
    for (; b != e; ++b) push_back(T(*b));
  }
  void assign(int count, const T& value) {
    n = 0;
    for (int i = 0; i < count; ++i) push_back(value);
  }
  void push_back(const T& e) { v[n++] = e; }
  void erase_at(int i) {
    for (int j = i; j + 1 < n; ++j) v[j] = v[j + 1];
    --n;
  }
  T& operator[](size_t i) { return v[i]; }
  const T& operator[](size_t i) const { return v[i]; }
  T& back() { return v[n - 1]; }
  size_t size() const { return size_t(n); }
  bool empty() const { return n == 0; }
  T* begin() { return v; }
  T* end() { return v + n; }
  const T* begin() const { return v; }
  const T* end() const { return v + n; }
};

enum class Op : int { softmax = 0, log_softmax = 1, logsumexp = 2 };
enum class DType : int { f16 = 0, f32 = 1, f64 = 2 };

inline int64_t itemsize(DType d) { return d == DType::f16 ? 2 : d == DType::f32 ? 4 : 8; }

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
