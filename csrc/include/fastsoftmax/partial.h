// What every family's row kernels share: the block length that cuts long rows and
// the Partial a block reduces to (merged in block order by merge.h).
#pragma once

#include <cstdint>

namespace fastsoftmax {

// Rows longer than this are processed as blocks of exactly kBlock elements (the last
// one shorter), whatever the thread count: a row's bits never depend on it. 2^17 float32 = 512 KiB:
// a block's x and y fit in this machine's 2 MiB L2 together.
constexpr int64_t kBlock = int64_t(1) << 17;

// Result of reducing one block (or a whole row) of x:
//   max: NaN if the block holds a NaN; otherwise the exact maximum (+inf/-inf allowed).
//   sum: when max is finite, sum over the block of exp(x_i - max), accumulated so
//        that its relative error is a few units of the *compute* type's epsilon
//        (float32 data: accumulate in double; float64: compensated/blocked).
//        Unspecified when max is not finite.
//   rest: sum - 1 with the max's own term (exactly 1) set apart, accurate to the
//        low-order bits of the other terms (docs/contract.md §5: logsumexp = max + log1p(rest), so a
//        dominant entry loses no precision). NaN means "not provided": the driver
//        then uses sum - 1.
struct Partial {
  double max;
  double sum;
  double rest = __builtin_nan("");
  // The block's min where the kernel took it (for softmax_finish_min), else -inf.
  double min = -__builtin_inf();
};

}  // namespace fastsoftmax
