// The body every SIMD ISA file shares: included once, INSIDE the ISA's namespace and
// target region, after its Ops classes F32, F64, F16, F32Train (the training
// kernels' Ops) and F16Exp (the float16 kernels' exp on float arrays, a test hook),
// the last two aliases of F32 where the ISA has no shorter exp, and after
// FASTSOFTMAX_TRAIN_VEC (the training loops' x86 vector width: 512, 256 or 0).
// It instantiates every family's generic kernels for those Ops and fills the table;
// FASTSOFTMAX_ISA_ENTRIES (isa_entries.h) then exports them.

#include "kernels/generic/softmax_family.h"
#include "kernels/generic/training_loops.h"
#undef FASTSOFTMAX_TRAIN_VEC
#include "kernels/generic/training_rows.h"
#include "kernels/generic/select_rows.h"

inline void fill_table(KernelTable& t, Isa isa) {
  t.isa = isa;
  fill_set<F32>(t.softmax.f32);
  fill_set<F64>(t.softmax.f64);
  fill_set<F16>(t.softmax.f16);
  fill_training<F32Train>(t.training.f32);
  fill_training<F64>(t.training.f64);
  fill_select(t.select.f32);
  fill_select(t.select.f64);
}

#include "testing/isa_exp_hooks.h"
