// The avx512 ISA. Placeholder until its kernels land: reports "not compiled".
#include "fastsoftmax/kernels.h"

namespace fastsoftmax {
bool fill_avx512(KernelTable&) { return false; }
}  // namespace fastsoftmax
