// The sampler's problem (selection family) as the binding (bind_select.cpp) hands it
// to its driver (sample.cpp): per row of logits (..., V), the next token drawn from the
// softmax of logits / temperature after the min_p, top_k and top_p filters
// (docs/contract.md §12). Per-row parameters and random inputs are one value or flat
// C arrays of `rows` entries, in row-major order of the batch shape.
#pragma once

#include <cstdint>

#include "engine/dtype.h"
#include "engine/layout.h"

namespace fastsoftmax {

// Operand slots (Dim::st) of the sampler's outer (batch) dims.
enum SampleOperand : int { kSampleLogits = 0, kSampleMask = 1 };

enum class Logprobs : int { none = 0, raw = 1, processed = 2 };

// A per-row input: p[r * st] for row r (st 0: one value for every row).
template <class T>
struct RowParam {
  const T* p = nullptr;
  int64_t st = 0;
  T at(int64_t r) const { return p[r * st]; }
};

struct SampleProblem {
  DType dt;
  int64_t n;                   // vocabulary
  DimVec<Dim> outer;           // batch dims, collapsed in order (rows row-major)
  int64_t rows;
  const char* x;               // logits, byte stride xs along the vocabulary
  int64_t xs;
  const char* mask;            // optional bool where= (False: the token is not allowed)
  int64_t ms;
  RowParam<double> temperature;  // >= 0 (0: greedy)
  RowParam<int64_t> top_k;       // 0 or >= n: off
  RowParam<double> top_p;        // (0, 1]; 1: off
  RowParam<double> min_p;        // [0, 1]; 0: off
  bool has_u;                  // the uniforms given (u), else from seed and offset:
  RowParam<double> u;
  RowParam<uint64_t> seed;     // Philox key: counter [offset, r, 0, 0] for one key
  RowParam<uint64_t> offset;   // shared by the batch (seed.st == 0), else [offset, 0, 0, 0]
  Logprobs logprobs;
  int64_t* tokens;             // out: -1 for an invalid row
  double* logprob;             // out (unless logprobs none): NaN for an invalid row
  int threads;
  // Storage for one-value parameters the binding sets itself (its fast path).
  struct {
    double temperature, top_p, min_p;
    int64_t top_k;
    uint64_t seed, offset;
  } one;
};

// Run without the GIL; never throws.
void run_sample(const SampleProblem& a);

}  // namespace fastsoftmax
