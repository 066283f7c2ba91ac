// The neon ISA. Placeholder until its kernels land: reports "not compiled".
#include "fastsoftmax/kernels.h"
#include "kernels/exp_hooks.h"

namespace fastsoftmax {
bool fill_neon(KernelTable&) { return false; }
bool exp_hooks_neon(ExpHooks&) { return false; }
}  // namespace fastsoftmax
