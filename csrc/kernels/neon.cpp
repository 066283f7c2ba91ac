// The neon ISA. Placeholder until its kernels land: reports "not compiled".
#include "fastsoftmax/kernels.h"

namespace fastsoftmax {
bool fill_neon(KernelTable&) { return false; }
}  // namespace fastsoftmax
