// The body every SIMD ISA file shares: included once, INSIDE the ISA's namespace and
// target region, after its Ops classes F32, F64, F16, BF16, F32Train (the training
// kernels' Ops) and F16Exp (the float16 kernels' exp on float arrays, a test hook),
// the last two aliases of F32 where the ISA has no shorter exp; BF16Native and
// bf16_native(): the bfloat16 Ops with the CPU's own conversions and whether this CPU
// has them (BF16 and false where the ISA has none; the same bits either way); F32's
// ones(e) (generic/set_apart.h); and after
// FASTSOFTMAX_TRAIN_VEC (the training loops' x86 vector width: 512, 256 or 0).
// It instantiates every family's generic kernels for those Ops and fills the table;
// FASTSOFTMAX_ISA_ENTRIES (isa_entries.h) then exports them.

#include "kernels/generic/set_apart.h"
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
  // bfloat16: log_softmax's and logsumexp's sums set the max's terms apart
  // (set_apart.h), in its own kernels and in those of its rows gathered into float32
  // buffers (softmax_table.h)
  if (bf16_native())
    fill_set<BF16Native, SetApart<BF16Native>>(t.softmax.bf16);
  else
    fill_set<BF16, SetApart<BF16>>(t.softmax.bf16);
  fill_row_entries<F32, SetApart<F32>>(t.softmax.bf16_f32);
  fill_training<F32Train>(t.training.f32);
  fill_training<F64>(t.training.f64);
  fill_select(t.select.f32);
  fill_select(t.select.f64);
}

#include "testing/isa_exp_hooks.h"
