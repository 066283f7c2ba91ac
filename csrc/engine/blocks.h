// The rules every driver shares for the data of one row: rows longer than kBlock are
// cut into blocks of exactly kBlock elements whose partials merge in block order (so
// a row's bits never depend on threads or on the batch around it), outputs large
// enough to leave the cache are streamed, and storage types convert to compute types
// one way. See docs/contract.md §6 (determinism).
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <type_traits>

#include "fastsoftmax/common.h"
#include "fastsoftmax/kernels.h"
#include "fastsoftmax/merge.h"

namespace fastsoftmax {

inline int64_t num_blocks(int64_t n) { return (n + kBlock - 1) / kBlock; }
inline int64_t block_len(int64_t n, int64_t b) { return std::min(kBlock, n - b * kBlock); }

// A row's partials merged in block order (merge.h).
struct Merged {
  double max;   // NaN, +inf, -inf (special rows) or finite
  double sum;   // valid when max is finite
  double rest;  // sum - 1, the max's own term set apart (log1p; docs/contract.md §5)
};

inline Merged merge(const Partial* parts, int64_t nb) {
  const Partial r = merge_partials(parts, nb);
  return {r.max, r.sum, r.rest};
}
inline Merged merged_of(const Partial& p) { return {p.max, p.sum, rest_of(p)}; }

// An op whose output is at least this large writes it with non-temporal stores where
// its kernels can: with the inputs it reads, it would fill a 16-32 MiB last-level
// cache anyway, and skipping the read-for-ownership of every output line saves a
// third of the memory traffic.
constexpr int64_t kStreamOutputBytes = int64_t(8) << 20;
inline bool streams_output(int64_t bytes) { return bytes >= kStreamOutputBytes; }

// Storage <-> compute conversions (float16 and bfloat16 are stored as their bits;
// a bfloat16 result is rounded from the double once, correctly).
inline float load(const uint16_t* p) { return half_to_float(*p); }
inline float load(const bf16_t* p) { return bf16_to_float(p->bits); }
inline float load(const float* p) { return *p; }
inline double load(const double* p) { return *p; }
// The dense cross-entropy's labels, read as they are: bool, int32, int64.
inline double load(const uint8_t* p) { return *p ? 1.0 : 0.0; }
inline double load(const int32_t* p) { return double(*p); }
inline double load(const int64_t* p) { return double(*p); }
inline void store(uint16_t* p, double v) { *p = float_to_half(float(v)); }
inline void store(bf16_t* p, double v) { p->bits = double_to_bf16(v); }
inline void store(float* p, double v) { *p = float(v); }
inline void store(double* p, double v) { *p = v; }

// A row of storage type S read (or written) in place as compute type C: contiguous,
// and S == C (float16 and bfloat16 rows go through float32 buffers).
template <class S, class C>
bool in_place(int64_t stride) {
  return std::is_same<S, C>::value && stride == int64_t(sizeof(C));
}

// A per-thread buffer of T, grown on first use and kept for the call.
template <class T>
struct Buf {
  std::unique_ptr<T[]> p;
  int64_t cap = 0;
  T* get(int64_t n) {
    if (n > cap) {
      p.reset(new T[size_t(n)]);
      cap = n;
    }
    return p.get();
  }
};

// n elements of type Src at byte stride st, converted to the compute type C: a
// strided, float16 or bfloat16 row gathered into a contiguous buffer.
template <class Src, class C>
void gather_as(const char* p, int64_t st, int64_t n, C* dst) {
  if (st == int64_t(sizeof(Src))) {  // contiguous: a loop the compiler vectorizes
    const Src* src = reinterpret_cast<const Src*>(p);  // (bfloat16: a 16-bit shift)
    for (int64_t i = 0; i < n; ++i) dst[i] = C(load(src + i));
    return;
  }
  for (int64_t i = 0; i < n; ++i) dst[i] = C(load(reinterpret_cast<const Src*>(p + i * st)));
}

// A contiguous row's merged (max, sum, rest) on one thread: blocks of kBlock reduced
// by the softmax family's `reduce` and merged in order, as the softmax driver does for
// a long row (K: SoftmaxKernels<C, C>).
template <class K, class C>
Merged reduce_row(const K& k, const C* x, int64_t n, Buf<Partial>& parts) {
  if (n <= kBlock) return merged_of(k.reduce(x, n));
  const int64_t nb = num_blocks(n);
  Partial* p = parts.get(nb);
  for (int64_t b = 0; b < nb; ++b) p[b] = k.reduce(x + b * kBlock, block_len(n, b));
  return merge(p, nb);
}

}  // namespace fastsoftmax
