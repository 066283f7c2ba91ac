// fastsoftmax's thread pool (engine/threads.h): persistent workers, one call at a time.
//
// A call publishes its job in one atomic word (generation | threads | chunks | next
// chunk); the caller and the woken workers claim chunks by compare-and-swap on it, and
// completion is counted by chunks done. A worker that wakes late finds nothing left,
// takes no part and goes back to waiting; the caller never waits for it. A worker
// that claimed a chunk is waited for (it holds part of the result). Workers spin
// (pausing, yielding now and then) for about a millisecond of their own time after a
// call, so back-to-back calls find them awake, then sleep on a condition variable. The pool is never destroyed: its workers are detached and end
// with the process; a forked child starts a new pool on its first parallel call.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include <cstdlib>

#include "engine/threads.h"

#ifdef FASTSOFTMAX_OPENMP
#include <omp.h>
#endif

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define FASTSOFTMAX_PAUSE() _mm_pause()
#elif defined(__aarch64__)
#define FASTSOFTMAX_PAUSE() asm volatile("yield")
#else
#define FASTSOFTMAX_PAUSE() ((void)0)
#endif

namespace fastsoftmax {
namespace pool {

thread_local int tl_slot = 0;

namespace {

// The claim word: generation (32 bits) | threads (8) | chunks (12) | next chunk (12).
constexpr int kNextBits = 12, kChunkBits = 12, kLimitBits = 8;
constexpr uint64_t kMask12 = (uint64_t(1) << 12) - 1;
inline uint64_t next_of(uint64_t s) { return s & kMask12; }
inline uint64_t chunks_of(uint64_t s) { return (s >> kNextBits) & kMask12; }
inline int limit_of(uint64_t s) { return int((s >> (kNextBits + kChunkBits)) & 0xff); }
inline uint32_t gen_of(uint64_t s) { return uint32_t(s >> (kNextBits + kChunkBits + kLimitBits)); }
static_assert(kMaxThreads < 256 && kMaxChunks < (1 << 12), "claim word");

// Spins. A worker after its last chunk looks for the next call kWorkerSpins times
// (pause instructions, 35-50 ns each here: ~1 ms on a core; libgomp's default spins
// longer), then sleeps;
// counted, not timed, so that a worker preempted while it spins is still awake for
// the next call when it runs again (back-to-back calls under load found it asleep,
// and paid a wake-up each). The caller waiting for a claimed chunk: see run().
constexpr int kWorkerSpins = 20000;
constexpr int64_t kJoinSpinExtraNs = 3'000;
constexpr int64_t kJoinSpinNoChunkNs = 20'000;
constexpr int64_t kJoinSpinMaxNs = 200'000;

// Contention: whether other threads (another process's, or this process's other
// Python threads) want the cores our workers would use. Where the OS shows it (Linux:
// /proc/loadavg's count of runnable threads, sampled at most every kSampleNs while
// calls come), a sample finds other threads running beside the caller and the workers
// awake; elsewhere, a pool call whose workers computed at under kSlowWorker of the
// caller's rate (chunks per ns) counts as one that did. The score (0..256) keeps
// 3/4 (sampled) or 7/8 (pool calls) of itself and gains kEventWeight for each such
// sample or call: at kContendedAt or more the pool is contended (contended()), and
// threads_for keeps calls too short to outlast a preempted worker on their caller's
// thread. A busy neighbour shows in two samples, a quiet machine within three.
constexpr double kSlowWorker = 0.6;
constexpr int kEventWeight = 64;
constexpr int kContendedAt = 128;
constexpr int64_t kSampleNs = 2'000'000;
std::atomic<int> g_contention{0};
std::atomic<int64_t> g_last_sample_ns{0};
std::atomic<int> g_loadavg_fd{-2};  // -2 not opened yet, -1 not available
std::atomic<int> g_contention_force{-1};  // test hook: -1 measured, 0 quiet, 1 contended

void add_event(bool event, int keep_den) {
  const int s = g_contention.load(std::memory_order_relaxed);
  g_contention.store(std::min(256, s - s / keep_den + (event ? kEventWeight : 0)),
                     std::memory_order_relaxed);
}

// The score's verdict without a new sample (contended() samples: it counts the thread
// calling it as the caller, so only a call's planning may ask it).
inline bool score_contended() {
  const int f = g_contention_force.load(std::memory_order_relaxed);
  if (f >= 0) return f == 1;
  return g_contention.load(std::memory_order_relaxed) >= kContendedAt;
}

// One step of a spin: a pause, and under contention every 64th a yield: when the
// thread we wait for (the caller, preempted by this worker's wake-up; a worker holding
// a chunk) waits for this very core, the yield lets it run. On a quiet machine the
// yields cost: (4096, 512) axis 0 at 2 threads went bimodal, half its calls ~1.5x
// slower, and the yields' removal took its p50 from 1,050 to 690-860 µs (same run).
inline void spin_step(int i) {
  if ((i & 63) == 63 && score_contended())
    std::this_thread::yield();
  else
    FASTSOFTMAX_PAUSE();
}

inline int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Parallel calls in progress, from every Python thread: more than one means more
// callers than the pool serves; the later ones run on their own threads, and idle
// workers sleep at once instead of spinning (the callers need the cores).
std::atomic<int> g_active{0};
// Counters for the test hook (_core._pool_stats).
std::atomic<int64_t> g_join_sleeps{0}, g_worker_chunks{0}, g_pool_calls{0}, g_wakes{0};

// One call's balance into the score where the OS shows no run queue: its workers'
// rate per thread against the caller's.
void note_balance(int64_t chunks, int64_t mine, int nt, int64_t t0, int64_t t1, int64_t t2) {
  if (g_loadavg_fd.load(std::memory_order_relaxed) >= 0) return;  // sampled instead
  if (mine <= 0 || t1 <= t0 || t2 <= t0 || nt < 2) return;
  const double worker_rate = double(chunks - mine) / double(nt - 1) / double(t2 - t0);
  const double caller_rate = double(mine) / double(t1 - t0);
  add_event(worker_rate < kSlowWorker * caller_rate, 8);
}

struct Pool {
  std::atomic<uint64_t> state{0};
  std::atomic<int64_t> done{0};
  // the job, written by the caller before it publishes state, read after a claim
  ChunkFn fn = nullptr;
  void* ctx = nullptr;
  int64_t count = 0;

  std::exception_ptr worker_err;  // the first exception a worker's chunk threw
  std::atomic<bool> worker_failed{false};
  std::atomic<bool> busy{false};      // a call holds the pool
  std::atomic<int> sleepers{0};       // workers asleep on wake_cv
  std::atomic<bool> caller_waits{false};
  std::mutex m;
  std::condition_variable wake_cv, done_cv;
  std::atomic<int> workers{0};  // started; grown only by the call that holds busy

  // Claims and runs chunks of the current job as `slot` while any are left; false
  // when the word shows none for this thread (another generation, or none left).
  bool claim_one(uint64_t& s, int slot) {
    for (;;) {
      if (slot >= limit_of(s) || next_of(s) >= chunks_of(s)) return false;
      if (!state.compare_exchange_weak(s, s + 1, std::memory_order_acq_rel,
                                       std::memory_order_acquire))
        continue;
      // The chunk is ours and its call cannot return before it is done: the job's
      // fields are this generation's.
      const int64_t c = int64_t(next_of(s)), k = int64_t(chunks_of(s));
      const int prev = tl_slot;
      tl_slot = slot;
      try {
        fn(ctx, count * c / k, count * (c + 1) / k);
      } catch (...) {
        tl_slot = prev;
        if (slot == 0) throw;  // the caller's own: run() closes the job
        if (!worker_failed.exchange(true)) worker_err = std::current_exception();
      }
      if (slot) g_worker_chunks.fetch_add(1, std::memory_order_relaxed);
      tl_slot = prev;
      chunk_done();
      s = state.load(std::memory_order_acquire);
      return true;
    }
  }

  void chunk_done() {
    const uint64_t s = state.load(std::memory_order_relaxed);
    const int64_t d = done.fetch_add(1, std::memory_order_seq_cst) + 1;
    if (d == int64_t(chunks_of(s)) && caller_waits.load(std::memory_order_seq_cst)) {
      std::lock_guard<std::mutex> g(m);
      done_cv.notify_one();
    }
  }

  // seen: the generation current when the worker was started (its first call is the
  // next one, published after the start).
  void worker(int slot, uint32_t seen) {
    for (;;) {
      uint64_t s = state.load(std::memory_order_acquire);
      for (int i = 0; gen_of(s) == seen; s = state.load(std::memory_order_acquire), ++i) {
        if (i < kWorkerSpins && g_active.load(std::memory_order_relaxed) <= 1) {
          spin_step(i);
          continue;
        }
        std::unique_lock<std::mutex> lk(m);
        sleepers.fetch_add(1, std::memory_order_seq_cst);
        while (gen_of(state.load(std::memory_order_seq_cst)) == seen) wake_cv.wait(lk);
        sleepers.fetch_sub(1, std::memory_order_relaxed);
      }
      while (claim_one(s, slot)) {
      }
      seen = gen_of(s);  // s: the word as last seen, nothing left in it for this worker
    }
  }

  void ensure_workers(int n) {
    const uint32_t g = gen_of(state.load(std::memory_order_relaxed));
    for (int w = workers.load(std::memory_order_relaxed); w < n; ++w) {
      try {
        std::thread([this, w, g] { worker(w + 1, g); }).detach();
      } catch (const std::system_error&) {
        return;  // no more threads: the call runs on those it has (the caller at least)
      }
      workers.store(w + 1, std::memory_order_relaxed);
    }
  }

  void run(int64_t cnt, int64_t chunks, int nt, ChunkFn f, void* c) {
    ensure_workers(nt - 1);
    fn = f;
    ctx = c;
    count = cnt;
    done.store(0, std::memory_order_relaxed);
    const uint64_t prev = state.load(std::memory_order_relaxed);
    const uint64_t gen = uint64_t(gen_of(prev) + 1);
    uint64_t s = gen << (kNextBits + kChunkBits + kLimitBits) |
                 uint64_t(nt) << (kNextBits + kChunkBits) | uint64_t(chunks) << kNextBits;
    state.store(s, std::memory_order_seq_cst);
    if (sleepers.load(std::memory_order_seq_cst) > 0) {
      g_wakes.fetch_add(1, std::memory_order_relaxed);
      std::lock_guard<std::mutex> g(m);
      wake_cv.notify_all();
    }
    // The caller claims too; what no worker has claimed, it computes.
    std::exception_ptr err;
    const int64_t t0 = now_ns();
    int64_t mine = 0;
    try {
      while (claim_one(s, 0)) ++mine;
    } catch (...) {
      err = std::current_exception();
      // Close the job: the unclaimed chunks count as done; wait for the claimed ones.
      uint64_t t = state.load(std::memory_order_acquire);
      while (next_of(t) < chunks_of(t) &&
             !state.compare_exchange_weak(t, t - next_of(t) + chunks_of(t),
                                          std::memory_order_acq_rel)) {
      }
      const int64_t left = int64_t(chunks_of(t) - std::min(next_of(t), chunks_of(t)));
      done.fetch_add(left + 1, std::memory_order_seq_cst);  // + the chunk that threw
    }
    // Join: only claimed chunks are waited for. A worker that is running finishes its
    // chunk within about a chunk's time: spin that long (twice the caller's own mean
    // chunk time, a few µs more); past it the worker is probably preempted, and the
    // caller sleeps, freeing its core for it.
    const int64_t t1 = now_ns();
    if (done.load(std::memory_order_acquire) < chunks) {
      const int64_t per = mine > 0 ? (t1 - t0) / mine : kJoinSpinNoChunkNs;
      const int64_t until = t1 + std::min<int64_t>(2 * per + kJoinSpinExtraNs, kJoinSpinMaxNs);
      for (int i = 0; done.load(std::memory_order_acquire) < chunks; ++i) {
        spin_step(i);
        if ((i & 15) == 0 && now_ns() > until) break;
      }
      if (done.load(std::memory_order_acquire) < chunks) {
        g_join_sleeps.fetch_add(1, std::memory_order_relaxed);
        std::unique_lock<std::mutex> lk(m);
        caller_waits.store(true, std::memory_order_seq_cst);
        while (done.load(std::memory_order_seq_cst) < chunks) done_cv.wait(lk);
        caller_waits.store(false, std::memory_order_relaxed);
      }
    }
    note_balance(chunks, mine, nt, t0, t1, now_ns());
    if (worker_failed.load(std::memory_order_acquire)) {
      if (!err) err = worker_err;
      worker_err = nullptr;
      worker_failed.store(false, std::memory_order_relaxed);
    }
    if (err) std::rethrow_exception(err);
  }
};

std::atomic<Pool*> g_pool{nullptr};
std::atomic<int64_t> g_inline{0};

// A forked child has none of the parent's workers: it forgets the pool (leaked, as its
// mutex may be held) and starts its own on its first parallel call.
void after_fork_child() {
  g_pool.store(nullptr, std::memory_order_relaxed);
  g_active.store(0, std::memory_order_relaxed);  // the parent's other callers are not here
}

Pool* get_pool() {
  Pool* p = g_pool.load(std::memory_order_acquire);
  if (p) return p;
  static const int registered = pthread_atfork(nullptr, nullptr, after_fork_child);
  (void)registered;
  Pool* fresh = new Pool;
  if (g_pool.compare_exchange_strong(p, fresh, std::memory_order_acq_rel)) return fresh;
  delete fresh;  // another thread installed one first (no workers started yet)
  return p;
}

void run_here(int64_t count, int64_t chunks, ChunkFn fn, void* ctx) {
  const int prev = tl_slot;
  tl_slot = 0;
  for (int64_t c = 0; c < chunks; ++c) fn(ctx, count * c / chunks, count * (c + 1) / chunks);
  tl_slot = prev;
}

}  // namespace

void run(int64_t count, int64_t chunks, int nt, ChunkFn fn, void* ctx) {
  // The policy: one call at a time on the pool; a call that starts while another is
  // in progress (another Python thread's) or inside an OpenMP parallel region (the
  // user's threads already fill the cores) computes its chunks on its own thread.
  struct Active {
    Active() { n = g_active.fetch_add(1, std::memory_order_acq_rel) + 1; }
    ~Active() { g_active.fetch_sub(1, std::memory_order_acq_rel); }
    int n;
  } active;
  bool alone = active.n == 1;
#ifdef FASTSOFTMAX_OPENMP
  alone = alone && omp_in_parallel() == 0;
#endif
  Pool* p = alone ? get_pool() : nullptr;
  if (!p || p->busy.exchange(true, std::memory_order_acquire)) {
    g_inline.fetch_add(1, std::memory_order_relaxed);
    return run_here(count, chunks, fn, ctx);
  }
  struct Release {
    Pool* p;
    ~Release() { p->busy.store(false, std::memory_order_release); }
  } release{p};
  g_pool_calls.fetch_add(1, std::memory_order_relaxed);
  p->run(count, chunks, nt, fn, ctx);
}

// Runnable threads now, system-wide (/proc/loadavg's fourth field, "running/total"),
// or -1 where not available.
int runnable_now() {
  int fd = g_loadavg_fd.load(std::memory_order_relaxed);
  if (fd == -2) {
    int expected = -2;
    const int opened = ::open("/proc/loadavg", O_RDONLY | O_CLOEXEC);
    if (!g_loadavg_fd.compare_exchange_strong(expected, opened < 0 ? -1 : opened)) {
      if (opened >= 0) ::close(opened);
    }
    fd = g_loadavg_fd.load(std::memory_order_relaxed);
  }
  if (fd < 0) return -1;
  char buf[128];
  const ssize_t n = ::pread(fd, buf, sizeof(buf) - 1, 0);
  if (n <= 0) return -1;
  buf[n] = 0;
  const char* p = buf;
  for (int field = 0; field < 3 && *p; ++p)
    if (*p == ' ') ++field;
  return std::atoi(p);
}

bool contended() {
  if (g_contention_force.load(std::memory_order_relaxed) >= 0) return score_contended();
  const int64_t now = now_ns();
  int64_t last = g_last_sample_ns.load(std::memory_order_relaxed);
  if (now - last >= kSampleNs &&
      g_last_sample_ns.compare_exchange_strong(last, now, std::memory_order_relaxed)) {
    const int running = runnable_now();
    if (running >= 0) {
      // ours among them: this thread and at most every worker (a worker just woken
      // is runnable before it counts itself awake: counting the sleepers too keeps
      // our own wake-ups from reading as contention)
      Pool* p = g_pool.load(std::memory_order_acquire);
      const int awake = p ? p->workers.load(std::memory_order_relaxed) : 0;
      add_event(running - 1 - std::max(0, awake) >= 1, 4);
    }
  }
  return score_contended();
}
bool available() {
  bool in_use = g_active.load(std::memory_order_relaxed) != 0;
#ifdef FASTSOFTMAX_OPENMP
  in_use = in_use || omp_in_parallel();
#endif
  if (in_use) g_inline.fetch_add(1, std::memory_order_relaxed);
  return !in_use;
}
int contention_score() { return g_contention.load(std::memory_order_relaxed); }
void force_contention(int mode) { g_contention_force.store(mode, std::memory_order_relaxed); }

int workers_started() {
  Pool* p = g_pool.load(std::memory_order_acquire);
  return p ? p->workers.load(std::memory_order_relaxed) : 0;
}

int64_t calls_inline() { return g_inline.load(std::memory_order_relaxed); }
int64_t stat(int i) {
  const std::atomic<int64_t>* c[] = {&g_pool_calls, &g_worker_chunks, &g_join_sleeps, &g_wakes};
  return i >= 0 && i < 4 ? c[i]->load() : -1;
}

}  // namespace pool
}  // namespace fastsoftmax
