// The selection family's kernels: the k best entries of a row (top_k; the sampler
// builds on it), on contiguous rows of the compute type (float32, float64; float16
// rows are converted to float32 by the driver).
//   what      the k largest (or smallest) entries of x[0..n), ordered best first:
//             ties broken by the lower index first; NaN ranks above +inf (largest:
//             first; smallest: last), -0.0 ties with +0.0 (docs/contract.md §11)
//   accuracy  exact: values are compared, never computed
//   specials  as above; no entry is special otherwise
//   method    one scan in chunks against the running k-th best (a chunk with no
//             better entry costs one vectorized compare); small k keep the best in a
//             heap (the threshold always exact), larger k in a buffer pruned by
//             selection when full (O(n) whatever the order of x); the k survivors
//             sorted at the end (O(k log k))
#pragma once

#include <algorithm>
#include <cstdint>

namespace fastsoftmax {

// One candidate: a value and its index in the row.
template <class C>
struct Ranked {
  C v;
  int64_t i;
};

// top_p's level thresholds per pass (csrc/sample.cpp): level_sums' t[kLevels].
constexpr int kLevels = 8;
// Room past n that compact_level's outputs need (whole vectors stored).
constexpr int64_t kCompactPad = 64;

// Entries scanned per compare against the running k-th best.
constexpr int64_t kSelectChunk = 64;

// Room the top_k kernel needs in `work` for a row of n entries and k results.
inline int64_t select_work_size(int64_t n, int64_t k) {
  return std::min(n, std::max<int64_t>(2 * k, 256)) + kSelectChunk;
}

template <class C>
struct SelectKernels {
  // The k (1 <= k <= n) best entries of x[0..n): their indices in idx[0..k) and their
  // values in vals[0..k), best first. work: select_work_size(n, k) entries.
  void (*top_k)(const C* x, int64_t n, int64_t k, bool largest, int64_t* idx, C* vals,
                Ranked<C>* work) = nullptr;

  // The sampler's row passes (csrc/sample.cpp), vectorized for the ISA:
  // the max of x[0..n) (n >= 1), or NaN when x holds a NaN.
  C (*max_nan)(const C* x, int64_t n) = nullptr;
  // The index of x's first max (n >= 1; 0 when every entry is -inf), or -1 when x holds
  // a NaN: greedy decoding's one pass.
  int64_t (*argmax_nan)(const C* x, int64_t n) = nullptr;
  // The least entry >= t (t when there is none); x holds no NaN.
  C (*min_above)(const C* x, int64_t n, C t) = nullptr;
  // The entries equal to v (finite; x holds no NaN) in index order: the first cap of
  // them to idx / vals; returns how many there are.
  int64_t (*find_equal)(const C* x, int64_t n, C v, int64_t* idx, C* vals,
                        int64_t cap) = nullptr;
  // sums[b] = the sum in double of e[i] over the i of block b (`block` entries, the
  // last one shorter) with z[i] >= t; returns their total.
  double (*kept_block_sums)(const C* z, const C* e, int64_t n, C t, int64_t block,
                            double* sums) = nullptr;
  // bucket[i] = min(last, int((top - z[i]) * inv)) where z[i] >= t, else last + 1
  // (top >= every z; monotone: a larger z never gets a later bucket).
  void (*bucketize)(const C* z, int64_t n, C top, C inv, C t, int32_t last,
                    int32_t* bucket) = nullptr;
  // top_p's coarse levels: sums[j] = the sum of e[i] over the i with z[i] >= t[j], for
  // the kLevels thresholds t (any order; e finite >= 0, z no NaN). Approximate (float
  // partial sums): it only chooses the level to refine, which compact_level's exact
  // sums then check.
  void (*level_sums)(const C* z, const C* e, int64_t n, const C* t, double* sums) = nullptr;
  // The entries with lo <= z[i] < hi, in index order: z to oz, e to oe (each with room
  // for n + kCompactPad); returns how many. first[b] (when not null) = how many of
  // them lie before block b (`block` entries, the last one shorter). The masses about
  // them, exact (in double): above[b] = the sum of e[i] over the i of block b with
  // z[i] >= hi; rest[0] = the sum over z[i] >= fl, rest[1] over z[i] < fl (fl <= lo).
  int64_t (*compact_level)(const C* z, const C* e, int64_t n, C fl, C lo, C hi, int64_t block,
                           double* above, int64_t* first, double* rest, C* oz, C* oe) = nullptr;
};

}  // namespace fastsoftmax
