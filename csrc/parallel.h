// Shared by the N-D drivers (driver.cpp, xent.cpp): the thread-count rule, the
// contiguous-chunk OpenMP split, the walk over outer rows, and storage <-> compute
// conversions.
#pragma once

#include <algorithm>
#include <cstdint>

#include "driver.h"
#include "fastsoftmax/common.h"

#ifdef FASTSOFTMAX_OPENMP
#include <omp.h>
#endif

namespace fastsoftmax {
namespace nd {

// Below this many elements a call runs on the calling thread; above it each
// thread gets at least kMinPerThread elements. A parallel region costs a few µs.
constexpr int64_t kParallelMin = int64_t(1) << 15;
constexpr int64_t kMinPerThread = int64_t(1) << 14;

inline int threads_for(int64_t elements, int threads) {
  if (threads <= 1 || elements < kParallelMin) return 1;
  return int(std::max<int64_t>(1, std::min<int64_t>(threads, elements / kMinPerThread)));
}

inline int thread_id() {
#ifdef FASTSOFTMAX_OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

// Calls fn(begin, end) on contiguous chunks of [0, count), one per thread. The
// split depends only on (count, thread count); results never depend on it anyway.
template <class F>
void parallel_chunks(int64_t count, int nt, F&& fn) {
  nt = int(std::min<int64_t>(nt, count));
  if (nt <= 1) {
    if (count > 0) fn(int64_t(0), count);
    return;
  }
#ifdef FASTSOFTMAX_OPENMP
#pragma omp parallel num_threads(nt)
  {
    const int64_t t = omp_get_thread_num(), T = omp_get_num_threads();
    const int64_t b = count * t / T, e = count * (t + 1) / T;
    if (b < e) fn(b, e);
  }
#else
  fn(int64_t(0), count);
#endif
}

// Byte offsets of kOps operands at outer row r, row-major over `dims` (outermost
// first, at most kMaxDims, each {size, st[kOps]}: DimVec or std::vector), kept
// incrementally within a contiguous range of rows.
template <class Dims, int kOps>
struct OuterWalk {
  const Dims& dims;
  int64_t idx[kMaxDims];
  int64_t off[kOps] = {};
  explicit OuterWalk(const Dims& d) : dims(d) {}
  void seek(int64_t r) {
    std::fill(off, off + kOps, 0);
    for (int d = int(dims.size()) - 1; d >= 0; --d) {
      idx[d] = r % dims[d].size;
      r /= dims[d].size;
      for (int k = 0; k < kOps; ++k) off[k] += idx[d] * dims[d].st[k];
    }
  }
  void next() {
    for (int d = int(dims.size()) - 1; d >= 0; --d) {
      for (int k = 0; k < kOps; ++k) off[k] += dims[d].st[k];
      if (++idx[d] < dims[d].size) return;
      for (int k = 0; k < kOps; ++k) off[k] -= dims[d].size * dims[d].st[k];
      idx[d] = 0;
    }
  }
};

// Storage <-> compute conversions (float16 is stored as its bits).
inline float load(const uint16_t* p) { return half_to_float(*p); }
inline float load(const float* p) { return *p; }
inline double load(const double* p) { return *p; }
inline void store(uint16_t* p, double v) { *p = float_to_half(float(v)); }
inline void store(float* p, double v) { *p = float(v); }
inline void store(double* p, double v) { *p = v; }

}  // namespace nd
}  // namespace fastsoftmax
