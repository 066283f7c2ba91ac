// The two functions every ISA file exports: fill_<isa> (kernels.h, for dispatch.cpp)
// and exp_hooks_<isa> (testing/exp_hooks.h, for the test hooks). An ISA file compiled
// for its target ends with FASTSOFTMAX_ISA_ENTRIES(<isa>) after its target region
// (the table is filled by the region's fill_table / fill_exp_hooks); compiled for
// another architecture, it has only FASTSOFTMAX_ISA_MISSING(<isa>): "not compiled".
#pragma once

#include "fastsoftmax/kernels.h"
#include "testing/exp_hooks.h"

#define FASTSOFTMAX_ISA_ENTRIES(name)                  \
  namespace fastsoftmax {                              \
  bool fill_##name(KernelTable& t) {                   \
    name::fill_table(t, Isa::name);                    \
    return true;                                       \
  }                                                    \
  bool exp_hooks_##name(ExpHooks& h) {                 \
    name::fill_exp_hooks(h);                           \
    return true;                                       \
  }                                                    \
  }

#define FASTSOFTMAX_ISA_MISSING(name)                          \
  namespace fastsoftmax {                                      \
  bool fill_##name(KernelTable&) { return false; }             \
  bool exp_hooks_##name(ExpHooks&) { return false; }           \
  }
