// The table entries and exp test hooks of one SIMD ISA, from the Ops classes its
// file defines: F32, F64, F16, and F32Train (the training kernels' Ops) and F16Exp
// (the float16 kernels' exp on float arrays, for its test hook), which are aliases
// of F32 where the ISA has no shorter exp. Included, like softmax_impl.h and
// xent_impl.h, inside the ISA's namespace and target region, after them.

inline void fill_table(KernelTable& t, Isa isa) {
  t.isa = isa;
  fill_set<F32>(t.softmax.f32);
  fill_set<F64>(t.softmax.f64);
  fill_set<F16>(t.softmax.f16);
  fill_training<F32Train>(t.training.f32);
  fill_training<F64>(t.training.f64);
}

inline void fill_exp_hooks(ExpHooks& h) {
  h.exp_f32 = exp_array<F32, false>;
  h.exp_f64 = exp_array<F64, false>;
  h.exp_f32_le0 = exp_array<F32, true>;
  h.exp_f64_le0 = exp_array<F64, true>;
  h.exp_f16 = exp_array<F16Exp, false>;
  h.exp_f16_le0 = exp_array<F16Exp, true>;
  h.exp_train = exp_array<F32Train, false>;
  h.exp_train_le0 = exp_array<F32Train, true>;
  if constexpr (HasExpNf<F32>::value) h.exp_f32_le0_nf = exp_array<F32, true, true>;
  if constexpr (HasExpNf<F64>::value) h.exp_f64_le0_nf = exp_array<F64, true, true>;
  if constexpr (HasExpNf<F16Exp>::value) h.exp_f16_le0_nf = exp_array<F16Exp, true, true>;
  if constexpr (HasExpNf<F32Train>::value) h.exp_train_le0_nf = exp_array<F32Train, true, true>;
  h.log1p_rest_f32 = log1p_rest_array<F32>;
}
