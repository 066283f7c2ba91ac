// ISA-generic bodies of the row, block and panel kernels: the softmax family's headers,
// in order.
//
// Included INSIDE an ISA's namespace and target region (avx512.cpp, avx2.cpp,
// neon.cpp), after that file has defined its `Ops` classes (and F64, the float64 Ops),
// so every function here is compiled for that ISA and lives in that ISA's namespace: an
// AVX-512 instantiation can never be linked into another path. The headers include
// nothing but each other (the including file has <algorithm>, <cmath>, <cstring>,
// <limits>, <memory>, <type_traits>, kernels.h, common.h, simd_common.h above its
// region); each relies on the ones before it, so the order below is part of the code.
//
//   row_passes.h     the Ops interface, macros, Kind; the row passes (R rows in lockstep)
//   short_rows.h     the lanes' write factors; short rows run across rows, transposed
//   row_entries.h    the single-row table entries and finishes; stream_row
//   row_batches.h    batches of rows: streamed batches, lockstep groups, batch entries
//   panel_sweep.h    panels swept in memory order with per-lane online normalizers
//   panel_tiles.h    panels in column tiles; the panel entries (tiles or sweep)
//   gather.h         gather_row / mask_values, narrow_row, weighted_exp_sum
//   softmax_table.h  fill_set: one dtype's KernelSet from the entries above
//
// The test hooks into the same Ops (exp_array, log1p_rest_array, fill_exp_hooks) are
// in testing/isa_exp_hooks.h, included after this family and generic/training_rows.h.

#include "kernels/generic/row_passes.h"
#include "kernels/generic/short_rows.h"
#include "kernels/generic/row_entries.h"
#include "kernels/generic/row_batches.h"
#include "kernels/generic/panel_sweep.h"
#include "kernels/generic/panel_tiles.h"
#include "kernels/generic/gather.h"
#include "kernels/generic/sampler_sums.h"
#include "kernels/generic/softmax_table.h"
