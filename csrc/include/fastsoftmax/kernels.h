// The kernel table: per ISA, one set of kernels per op family and dtype, filled once.
//
// Every ISA file (csrc/kernels/<isa>.cpp) provides `bool fill_<isa>(KernelTable& t)`,
// which writes its kernels into `t` and returns false when it was compiled without
// that ISA (e.g. avx512 on an aarch64 build). dispatch.cpp decides which table runs;
// the drivers (driver.cpp: softmax, training.cpp: training, select.cpp: selection) only ever
// call through it. A new family is one more member here, its kernels filled by the
// same fill_<isa> (ARCHITECTURE.md, "Adding an op").
//
// Rules every kernel keeps (the scalar ISA is the readable reference):
//  * Inputs and outputs are contiguous along the row (panels: along the lanes);
//    in place (y == x) is allowed where the entry says so, no other overlap.
//  * Row kernels take 1 <= n <= kBlock; the drivers cut longer rows into blocks of
//    kBlock and merge their Partials in block order (partial.h, merge.h).
//  * Special values as docs/contract.md §3: special rows written with the canonical
//    NaN / 0 / -inf, never by arithmetic on NaNs, so their bits are deterministic.
//  * No floating-point exception that matters (the flags are never read), no access
//    outside the row, no allocation except once per thread (thread_local buffers,
//    kept: panel sweep and tile state, streamed batches' and gradients' row buffers).
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "fastsoftmax/common.h"  // bf16_t
#include "fastsoftmax/partial.h"
#include "fastsoftmax/select_kernels.h"
#include "fastsoftmax/softmax_kernels.h"
#include "fastsoftmax/training_kernels.h"

namespace fastsoftmax {

enum class Isa : int { scalar = 0, avx2 = 1, avx512 = 2, neon = 3 };
constexpr int kNumIsas = 4;
const char* isa_name(Isa isa);

// softmax, log_softmax, logsumexp: every storage dtype (float16 and bfloat16 entries
// optional: the driver converts through float32 buffers where they are nullptr).
struct SoftmaxFamily {
  SoftmaxKernels<float, float> f32;
  SoftmaxKernels<double, double> f64;
  SoftmaxKernels<uint16_t, float> f16;
  SoftmaxKernels<bf16_t, float> bf16;
  // The single-row entries (fill_row_entries) for bfloat16 rows gathered into float32
  // buffers (GATHER mode, top_k's transform): float32 kernels whose sums set the max's
  // own terms apart (kernels/generic/set_apart.h), for bfloat16's 1-ULP log_softmax.
  SoftmaxKernels<float, float> bf16_f32;
};

// cross-entropy and backward passes: compute types only.
struct TrainingFamily {
  TrainingKernels<float> f32;
  TrainingKernels<double> f64;
};

// top_k (and the sampler): compute types only.
struct SelectFamily {
  SelectKernels<float> f32;
  SelectKernels<double> f64;
};

struct KernelTable {
  Isa isa = Isa::scalar;
  SoftmaxFamily softmax;
  TrainingFamily training;
  SelectFamily select;
};

// The set of a family for storage type S (compute type C).
template <class S, class C>
const SoftmaxKernels<S, C>& softmax_set(const KernelTable& t) {
  if constexpr (std::is_same<S, bf16_t>::value) return t.softmax.bf16;
  else if constexpr (std::is_same<S, uint16_t>::value) return t.softmax.f16;
  else if constexpr (sizeof(S) == 4) return t.softmax.f32;
  else return t.softmax.f64;
}
// The compute-type set that rows of S gathered into C buffers take: C's own, but
// bfloat16's (bf16_f32: its entries for single rows only).
template <class S, class C>
const SoftmaxKernels<C, C>& gathered_set(const KernelTable& t) {
  if constexpr (std::is_same<S, bf16_t>::value) return t.softmax.bf16_f32;
  else return softmax_set<C, C>(t);
}
template <class C>
const TrainingKernels<C>& training_set(const KernelTable& t) {
  if constexpr (sizeof(C) == 4) return t.training.f32;
  else return t.training.f64;
}
template <class C>
const SelectKernels<C>& select_set(const KernelTable& t) {
  if constexpr (sizeof(C) == 4) return t.select.f32;
  else return t.select.f64;
}

// Provided by csrc/kernels/<isa>.cpp. Return false if not compiled for this target.
bool fill_scalar(KernelTable& t);
bool fill_avx2(KernelTable& t);
bool fill_avx512(KernelTable& t);
bool fill_neon(KernelTable& t);

// dispatch.cpp
bool cpu_supports(Isa isa);          // compiled in AND the CPU + OS support it
bool cpu_has_avx512_bf16();          // AVX512_BF16 (the avx512 table's bf16 conversions)
const KernelTable& kernels();        // the active table (chosen on first use)
const KernelTable& kernels_for(Isa isa);  // a specific table (throws if unsupported)
void set_active_isa(Isa isa);        // throws std::invalid_argument if unsupported
Isa parse_isa(const char* name);     // throws std::invalid_argument on unknown names

}  // namespace fastsoftmax
