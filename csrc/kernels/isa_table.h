// The table entries and exp test hooks of one SIMD ISA, from the Ops classes its
// file defines: F32, F64, F16, and F32Train (the training kernels' Ops) and F16Exp
// (the float16 kernels' exp on float arrays, for its test hook), which are aliases
// of F32 where the ISA has no shorter exp. Included, like softmax_impl.h and
// xent_impl.h, inside the ISA's namespace and target region, after them.

inline void fill_table(KernelTable& t, Isa isa) {
  t.isa = isa;
  fill_set<F32>(t.f32);
  fill_set<F64>(t.f64);
  fill_set<F16>(t.f16);
  fill_xent<F32Train>(t.f32);
  fill_xent<F64>(t.f64);
}
