// DimVec: the fixed-capacity vector of per-dimension values (shape, strides, flags)
// that every call's bookkeeping uses, so a call never touches the heap for it (the
// small-call path is sub-microsecond).
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>

namespace fastsoftmax {

// NumPy's NPY_MAXDIMS (64 since NumPy 2).
constexpr int kMaxDims = 64;

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

}  // namespace fastsoftmax
