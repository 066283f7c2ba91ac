// How every driver shares a call among threads: the thread-count rule, the chunked
// split, and the row schedule (rows split across threads, or a few rows longer than a
// block computed in turn with their blocks split). The split never changes a bit:
// rows and blocks are computed the same way whoever runs them, in whatever order.
//
// The threads are fastsoftmax's own small pool (engine/pool.cpp), not an OpenMP team:
// a call's work is cut into claimable chunks, the calling thread claims chunks beside
// the workers, and the call returns once every chunk is done, never waiting for a
// worker that claimed none (one the OS has not scheduled: under load, a time slice).
// A call that finds the pool busy (another Python thread's call), or that runs inside
// an OpenMP parallel region, runs its chunks on its own thread. OpenMP still gives the
// default thread count (OMP_NUM_THREADS, threadpoolctl; module.cpp).
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

#include "engine/blocks.h"
#include "engine/layout.h"

namespace fastsoftmax {

// Below this many elements a call runs on the calling thread; above it each
// thread gets at least kMinPerThread elements. Waking the pool costs a few µs, and a
// call of ~20 µs ((64, 1000) float32) gained nothing from a second thread even on a
// quiet machine, while under load its p90 / p99 paid for a preempted worker.
constexpr int64_t kParallelMin = int64_t(1) << 17;
constexpr int64_t kMinPerThread = int64_t(1) << 14;
// A parallel call is cut into chunks: at least kChunksPerThread per thread, and about
// kChunkElems elements each where the call is larger (tens of µs of work), at most
// kMaxChunks. A thread the OS has preempted holds at most one chunk: the others take
// over the rest, and the one it holds is short once it runs again (threads.h, pool.cpp).
constexpr int64_t kChunksPerThread = 4;
constexpr int64_t kChunkElems = int64_t(1) << 16;
constexpr int64_t kMaxChunks = 1024;
// The most threads one call uses (the pool's claim word holds the count in 8 bits).
constexpr int kMaxThreads = 255;

// Where other threads want the cores (another process's, or more Python threads than
// cores: pool::contended, asked only here, by the caller), a worker the OS preempts
// in the middle of a chunk holds the call for a time slice (milliseconds: the
// scheduler does not move a thread that just ran to the core the caller frees): calls
// below kContendedParallelMin elements (about 2 ms on one thread) then run on their
// caller's thread, whose core is its own.
constexpr int64_t kContendedParallelMin = int64_t(1) << 22;
namespace pool {
bool contended();
// No parallel call in progress (from any Python thread) and not inside an OpenMP
// parallel region. A call that finds the pool in use plans for one thread (its own),
// and is counted in calls_inline().
bool available();
}

inline int threads_for(int64_t elements, int threads) {
  if (threads <= 1 || elements < kParallelMin) return 1;
  if (!pool::available()) return 1;  // the pool is another call's: this one runs on its thread
  if (elements < kContendedParallelMin && pool::contended()) return 1;
  return int(std::max<int64_t>(1, std::min<int64_t>(threads, elements / kMinPerThread)));
}

namespace pool {
using ChunkFn = void (*)(void* ctx, int64_t begin, int64_t end);
// Runs fn(ctx, b, e) on the chunks [count * c / chunks, count * (c + 1) / chunks),
// c < chunks, on up to nt threads (the caller one of them); returns when all are done.
void run(int64_t count, int64_t chunks, int nt, ChunkFn fn, void* ctx);
// This thread's slot in the call it is computing: 0 for the caller, 1..nt-1 for the
// workers that joined; distinct among the threads computing one call at once.
extern thread_local int tl_slot;
// Test hooks: the number of worker threads started, and the calls that found the pool
// busy (or ran inside an OpenMP region) and ran on their caller's thread; stat(i):
// 0 calls that used the pool, 1 chunks computed by workers, 2 joins that slept
// (waiting for a claimed chunk), 3 calls that woke sleeping workers.
int workers_started();
// Test hooks: the contention score (0..256), and forcing it (-1 measured, 0 no, 1 yes).
int contention_score();
void force_contention(int mode);
int64_t calls_inline();
int64_t stat(int i);
}  // namespace pool

// Indexes per-thread scratch inside a parallel_chunks call of nt > 1 threads: always
// below that call's nt (after its min with the count).
inline int thread_id() { return pool::tl_slot; }

// Calls fn(begin, end) on contiguous chunks of [0, count), at most nt of them at once,
// in any order and on any of the call's threads. `elements`: the call's size in
// elements (0: unknown), which sets the chunk count; the chunks depend only on
// (count, nt, elements), and no caller's bits depend on them.
template <class F>
void parallel_chunks(int64_t count, int nt, F&& fn, int64_t elements = 0) {
  nt = int(std::min<int64_t>(std::min(nt, kMaxThreads), count));
  if (nt <= 1) {
    if (count > 0) fn(int64_t(0), count);
    return;
  }
  using Fn = std::remove_reference_t<F>;
  const int64_t chunks = std::min(
      {count, kMaxChunks, std::max<int64_t>(nt * kChunksPerThread, elements / kChunkElems)});
  pool::run(count, chunks, nt,
            [](void* ctx, int64_t b, int64_t e) { (*static_cast<Fn*>(ctx))(b, e); },
            const_cast<void*>(static_cast<const void*>(&fn)));
}

// parallel_chunks over the kBlock-element blocks of a row: a chunk per block.
template <class F>
void parallel_blocks(int64_t nb, int nt, F&& fn) {
  parallel_chunks(nb, nt, std::forward<F>(fn), nb * kBlock);
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
  parallel_chunks(
      rows, nt,
      [&](int64_t r0, int64_t r1) {
        Scratch s;
        OuterWalk w(outer);
        w.seek(r0);
        for (int64_t r = r0; r < r1; ++r, w.next()) row(r, w.off, &s, 1);
      },
      rows * std::max<int64_t>(n, 1));
}

}  // namespace fastsoftmax
