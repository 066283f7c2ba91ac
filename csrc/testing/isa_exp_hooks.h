// The exp test hooks of one SIMD ISA (ExpHooks, testing/exp_hooks.h): its vector exp
// over arrays, the float32 row kernels' log1p of a row's rest, and its BF16 Ops'
// rounding (narrow_row). Test-only code,
// used by testing/testing.cpp and tests/neon/neon_test.cpp through exp_hooks_<isa>().
//
// Included, like kernels/generic/softmax_family.h, INSIDE the ISA's namespace and
// target region, after the family, generic/training_rows.h and isa_table.h: it relies on the
// family's HasExpNf, log1p_rest and log1p_rest4, and on the Ops classes the ISA file
// defines: F32, F64, F16Exp, F32Train and BF16 (see isa_table.h).

// exp over an array with the ISA's vector exp (test hook; tails via load_n/store_n).
// kNf (with kLe0): the no-flush form, on Ops that have it.
template <class T, bool kLe0, bool kNf>
typename T::V exp_variant(typename T::V v) {
  static_assert(!kNf || (kLe0 && HasExpNf<T>::value), "no-flush: x <= 0 Ops that have it");
  if constexpr (kNf)
    return T::exp_le0_nf(v);
  else if constexpr (kLe0)
    return T::exp_le0(v);
  else
    return T::exp(v);
}

template <class T>
void log1p_rest_array(const double* r, double* y, int64_t n) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) log1p_rest4<T>(r + i, y + i);
  for (; i < n; ++i) y[i] = log1p_rest<T>(r[i]);
}

template <class T, bool kLe0, bool kNf = false>
void exp_array(const typename T::C* x, typename T::C* y, int64_t n) {
  constexpr int64_t W = T::W;
  int64_t i = 0;
  for (; i + W <= n; i += W) T::store(y + i, exp_variant<T, kLe0, kNf>(T::load(x + i)));
  if (i < n) T::store_n(y + i, n - i, exp_variant<T, kLe0, kNf>(T::load_n(x + i, n - i)));
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
  h.bf16_narrow = narrow_row<BF16>;
}
