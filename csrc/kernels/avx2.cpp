// The avx2 ISA. Placeholder until its kernels land: reports "not compiled".
#include "fastsoftmax/kernels.h"
#include "kernels/exp_hooks.h"

namespace fastsoftmax {
bool fill_avx2(KernelTable&) { return false; }
bool exp_hooks_avx2(ExpHooks&) { return false; }
}  // namespace fastsoftmax
