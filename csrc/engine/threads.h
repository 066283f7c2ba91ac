// How every driver shares a call among OpenMP threads: the thread-count rule, the
// contiguous-chunk split, and the row schedule (rows split across threads, or a few
// rows longer than a block computed in turn with their blocks split). The split
// never changes a bit: rows and blocks are computed the same way whoever runs them.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "engine/blocks.h"
#include "engine/layout.h"

#ifdef FASTSOFTMAX_OPENMP
#include <omp.h>
#endif

namespace fastsoftmax {

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
// split depends only on (count, thread count).
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

// The row schedule: calls row(r, off, pool, nt) for every outer row r of `outer`
// (`rows` of them, each of n elements), with off the operands' byte offsets (OuterWalk).
// Many rows: contiguous chunks of rows per thread, nt = 1, pool = that thread's own
// Scratch. A few rows longer than kBlock (fewer than the threads): the rows in turn,
// nt > 1, and pool holds one Scratch per thread that may share the row's blocks
// (index it by thread_id() when nt > 1; parallel_chunks over the blocks).
template <class Scratch, class RowFn>
void for_rows(const DimVec<Dim>& outer, int64_t rows, int64_t n, int threads, RowFn&& row) {
  if (rows == 0) return;
  const int nt = threads_for(rows * std::max<int64_t>(n, 1), threads);
  if (n > kBlock && rows < nt) {
    std::vector<Scratch> pool(size_t(std::min<int64_t>(nt, num_blocks(n))));
    OuterWalk w(outer);
    w.seek(0);
    for (int64_t r = 0; r < rows; ++r, w.next()) row(r, w.off, pool.data(), nt);
    return;
  }
  parallel_chunks(rows, nt, [&](int64_t r0, int64_t r1) {
    Scratch s;
    OuterWalk w(outer);
    w.seek(r0);
    for (int64_t r = r0; r < r1; ++r, w.next()) row(r, w.off, &s, 1);
  });
}

}  // namespace fastsoftmax
