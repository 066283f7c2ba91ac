// fastsoftmax._testing, a separate extension built only with -DFASTSOFTMAX_TEST_HOOKS=ON
// (the README's test command): direct access to per-ISA helpers (the vector exp) for
// exhaustive accuracy tests. Never in a published wheel; not public API. It links the
// same engine objects as _core (CMakeLists.txt), and has its own copy of dispatch.cpp's
// CPU detection.
//
//   exp_f32(isa, x) / exp_f64(isa, x) -> ndarray
//       the ISA's vector exp over a 1-D array (tails through the same vector code)
//   exp_f32_check(isa, lo_bits, hi_bits, stride=1, reference="fast") -> dict
//       every float32 whose bit pattern is in [lo_bits, hi_bits] (every stride-th)
//       against the correctly rounded exp; reference "fast" rounds the ISA's own
//       float64 exp (checked by exp_f64_check), "libm" rounds std::exp(double);
//       both fall back to expl near a rounding midpoint
//   exp_f64_check(isa, lo, hi, count, seed=1, variant="full") -> dict
//       `count` uniform random doubles in [lo, hi] against expl
//   log1p_rest_f32(isa, r) -> ndarray
//       log1p(r) as the ISA's float32 row kernels take a row's log (r = sum - 1):
//       four at a time as log_softmax's groups do, the last len % 4 one by one as
//       single rows do; "scalar": the scalar form of the driver's logsumexp
//   exp_f32_variants_differ(isa, lo_bits, hi_bits, a="full", b="le0") -> int
//       how many floats in the bit range get different bits from variants a and b
//       (by default the full-range exp and the x <= 0 variant the row kernels use:
//       0 expected for x <= 0)
// variant="full" (default) is the full-range exp (panels); "le0" the x <= 0 variant
// (rows, finish kernels): exp_f32/exp_f64/exp_f32_check/exp_f64_check take it too;
// exp_f32 also takes "f16" / "f16_le0": the exp of the float16 kernels, and "train" /
// "train_le0": that of the cross-entropy and backward kernels; "le0_nf", "f16_le0_nf",
// "train_le0_nf": the no-flush forms of the x <= 0 variants, where the ISA has them.
// The dicts hold: checked, max_ulp (bit distance to the correctly rounded value),
// worst_input, max_err (|result - exact| in ULPs), max_err_input, flushed (exact
// result subnormal and result +0, as the kernels' exp documents), bad (any other
// result there, or a NaN/sign error), first_bad_input.
//   bf16_narrow(isa, x, variant="table") -> uint16 ndarray
//       float32 -> bfloat16 bits as the ISA's kernels store them: "table" its table's
//       narrow_row (on avx512 the AVX512_BF16 instruction where the CPU has it),
//       "integer" its BF16 Ops' integer form; "scalar": float_to_bf16
//   bf16_widen(isa, bits) -> float32 ndarray
//       bfloat16 bits -> float32 by the table's gather_row ("scalar": bf16_to_float)
//   bf16_native() -> bool: whether the avx512 table converts with AVX512_BF16
//   bf16_from_double(x) -> uint16 ndarray: double_to_bf16 (the driver's store of
//       results formed in float64: logsumexp), correctly rounded
// ISA names as everywhere ("scalar", "avx2", "avx512", "neon"); an unknown name or
// one this CPU/build lacks raises ValueError. "scalar" means std::exp.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <stdexcept>
#include <string>

#include "fastsoftmax/common.h"
#include "fastsoftmax/kernels.h"
#include "testing/exp_check.h"
#include "testing/exp_hooks.h"
#include "kernels/simd_common.h"

namespace py = pybind11;

namespace fastsoftmax {
namespace {

void scalar_exp_f32(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = std::exp(x[i]);
}
void scalar_exp_f64(const double* x, double* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = std::exp(x[i]);
}
// "scalar": the plain scalar form the driver's logsumexp takes (the scalar kernels
// call std::log1p).
void scalar_log1p_rest_f32(const double* r, double* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = simd::log1p_sum_f32(r[i]);
}

struct Exp {
  void (*f32)(const float*, float*, int64_t);
  void (*f64)(const double*, double*, int64_t);
};

ExpHooks hooks_for(const std::string& name);

Exp exp_for(const std::string& isa, const std::string& variant) {
  const ExpHooks h = hooks_for(isa);
  if (variant == "full") return {h.exp_f32, h.exp_f64};
  if (variant == "f16" || variant == "f16_le0") {  // float32 in and out; no float64 form
    if (!h.exp_f16 || !h.exp_f16_le0)
      throw std::invalid_argument("ISA '" + isa + "' has no float16 exp hook");
    return {variant == "f16" ? h.exp_f16 : h.exp_f16_le0, nullptr};
  }
  if (variant == "train" || variant == "train_le0") {
    if (!h.exp_train || !h.exp_train_le0)
      throw std::invalid_argument("ISA '" + isa + "' has no training exp hook");
    return {variant == "train" ? h.exp_train : h.exp_train_le0, nullptr};
  }
  if (variant == "le0") {
    if (!h.exp_f32_le0 || !h.exp_f64_le0)
      throw std::invalid_argument("ISA '" + isa + "' has no le0 exp variant");
    return {h.exp_f32_le0, h.exp_f64_le0};
  }
  const Exp nf = variant == "le0_nf"         ? Exp{h.exp_f32_le0_nf, h.exp_f64_le0_nf}
                 : variant == "f16_le0_nf"   ? Exp{h.exp_f16_le0_nf, nullptr}
                 : variant == "train_le0_nf" ? Exp{h.exp_train_le0_nf, nullptr}
                                             : Exp{nullptr, nullptr};
  if (nf.f32) return nf;
  if (variant == "le0_nf" || variant == "f16_le0_nf" || variant == "train_le0_nf")
    throw std::invalid_argument("ISA '" + isa + "' has no no-flush exp (" + variant + ")");
  throw std::invalid_argument(
      "variant must be 'full', 'le0', 'f16', 'f16_le0', 'train', 'train_le0', 'le0_nf', "
      "'f16_le0_nf' or 'train_le0_nf'");
}

ExpHooks hooks_for(const std::string& name) {
  const Isa isa = parse_isa(name.c_str());
  if (!cpu_supports(isa))
    throw std::invalid_argument("ISA '" + name + "' is not supported by this CPU or build");
  ExpHooks h;
  bool ok = false;
  switch (isa) {
    case Isa::scalar:
      h.exp_f32 = h.exp_f32_le0 = h.exp_f16 = h.exp_f16_le0 = scalar_exp_f32;
      h.exp_train = h.exp_train_le0 = scalar_exp_f32;
      h.exp_f64 = h.exp_f64_le0 = scalar_exp_f64;
      h.log1p_rest_f32 = scalar_log1p_rest_f32;
      ok = true;
      break;
    case Isa::avx2: ok = exp_hooks_avx2(h); break;
    case Isa::avx512: ok = exp_hooks_avx512(h); break;
    case Isa::neon: ok = exp_hooks_neon(h); break;
  }
  if (!ok || !h.exp_f32 || !h.exp_f64)
    throw std::invalid_argument("ISA '" + name + "' has no exp hooks in this build");
  return h;
}

py::dict to_dict(const expcheck::Report& r) {
  py::dict d;
  d["checked"] = r.checked;
  d["max_ulp"] = r.max_ulp;
  d["worst_input"] = r.worst_input;
  d["max_err"] = r.max_err;
  d["max_err_input"] = r.max_err_input;
  d["flushed"] = r.flushed;
  d["bad"] = r.bad;
  d["first_bad_input"] = r.first_bad_input;
  return d;
}

template <class T>
py::array_t<T> apply(void (*fn)(const T*, T*, int64_t),
                     py::array_t<T, py::array::c_style | py::array::forcecast> x) {
  if (!fn) throw std::invalid_argument("this variant has no exp for this dtype");
  if (x.ndim() != 1) throw std::invalid_argument("x must be 1-D");
  py::array_t<T> y(x.shape(0));
  const T* xp = x.data();
  T* yp = y.mutable_data();
  const int64_t n = x.shape(0);
  {
    py::gil_scoped_release nogil;
    fn(xp, yp, n);
  }
  return y;
}

// The bfloat16 conversions of an ISA (bf16_narrow / bf16_widen above).
py::array_t<uint16_t> bf16_narrow(const std::string& isa,
                                  py::array_t<float, py::array::c_style | py::array::forcecast> x,
                                  const std::string& variant) {
  if (x.ndim() != 1) throw std::invalid_argument("x must be 1-D");
  if (variant != "table" && variant != "integer")
    throw std::invalid_argument("variant must be 'table' or 'integer'");
  const Isa id = parse_isa(isa.c_str());
  void (*fn)(const float*, bf16_t*, int64_t) = kernels_for(id).softmax.bf16.narrow_row;
  if (id != Isa::scalar && variant == "integer") fn = hooks_for(isa).bf16_narrow;
  const int64_t n = x.shape(0);
  py::array_t<uint16_t> y(n);
  const float* xp = x.data();
  auto* yp = reinterpret_cast<bf16_t*>(y.mutable_data());
  if (id == Isa::scalar)
    for (int64_t i = 0; i < n; ++i) yp[i].bits = float_to_bf16(xp[i]);
  else if (n > 0)
    fn(xp, yp, n);
  return y;
}

py::array_t<float> bf16_widen(const std::string& isa,
                              py::array_t<uint16_t, py::array::c_style | py::array::forcecast> h) {
  if (h.ndim() != 1) throw std::invalid_argument("bits must be 1-D");
  const Isa id = parse_isa(isa.c_str());
  const auto gather = kernels_for(id).softmax.bf16.gather_row;
  const int64_t n = h.shape(0);
  py::array_t<float> y(n);
  const auto* hp = reinterpret_cast<const bf16_t*>(h.data());
  float* yp = y.mutable_data();
  if (id == Isa::scalar)
    for (int64_t i = 0; i < n; ++i) yp[i] = bf16_to_float(hp[i].bits);
  else if (n > 0)
    gather(hp, nullptr, yp, n, 1.0f);
  return y;
}

}  // namespace

void register_testing(py::module_& m) {
  m.doc() = "fastsoftmax test hooks (built with -DFASTSOFTMAX_TEST_HOOKS=ON; not public API)";
  m.def("bf16_narrow", &bf16_narrow, py::arg("isa"), py::arg("x"), py::arg("variant") = "table",
        "float32 -> bfloat16 bits by the ISA's kernels' stores.");
  m.def("bf16_widen", &bf16_widen, py::arg("isa"), py::arg("bits"),
        "bfloat16 bits -> float32 by the ISA's kernels' loads.");
  m.def(
      "bf16_from_double",
      [](py::array_t<double, py::array::c_style | py::array::forcecast> x) {
        if (x.ndim() != 1) throw std::invalid_argument("x must be 1-D");
        py::array_t<uint16_t> y(x.shape(0));
        uint16_t* yp = y.mutable_data();
        for (py::ssize_t i = 0; i < x.shape(0); ++i) yp[i] = double_to_bf16(x.data()[i]);
        return y;
      },
      py::arg("x"), "float64 -> bfloat16 bits as the driver stores float64 results.");
  m.def("bf16_native", &cpu_has_avx512_bf16,
        "Whether the avx512 table converts bfloat16 with AVX512_BF16.");
  m.def(
      "exp_f32",
      [](const std::string& isa, py::array_t<float, py::array::c_style | py::array::forcecast> x,
         const std::string& variant) { return apply<float>(exp_for(isa, variant).f32, x); },
      py::arg("isa"), py::arg("x"), py::arg("variant") = "full",
      "The ISA's vector float32 exp over a 1-D array.");
  m.def(
      "exp_f64",
      [](const std::string& isa, py::array_t<double, py::array::c_style | py::array::forcecast> x,
         const std::string& variant) { return apply<double>(exp_for(isa, variant).f64, x); },
      py::arg("isa"), py::arg("x"), py::arg("variant") = "full",
      "The ISA's vector float64 exp over a 1-D array.");
  m.def(
      "log1p_rest_f32",
      [](const std::string& isa, py::array_t<double, py::array::c_style | py::array::forcecast> r) {
        return apply<double>(hooks_for(isa).log1p_rest_f32, r);
      },
      py::arg("isa"), py::arg("r"),
      "log1p(r) as the ISA's float32 row kernels take a row's log: four at a time, the "
      "tail one by one.");
  m.def(
      "exp_f32_variants_differ",
      [](const std::string& isa, uint32_t lo_bits, uint32_t hi_bits, const std::string& a,
         const std::string& b) {
        if (hi_bits < lo_bits) throw std::invalid_argument("hi_bits < lo_bits");
        const Exp ea = exp_for(isa, a), eb = exp_for(isa, b);
        int64_t differ = 0;
        {
          py::gil_scoped_release nogil;
          differ = expcheck::count_differences(ea.f32, eb.f32, lo_bits, hi_bits);
        }
        return differ;
      },
      py::arg("isa"), py::arg("lo_bits"), py::arg("hi_bits"), py::arg("a") = "full",
      py::arg("b") = "le0",
      "Floats in the bit range where exp variants a and b (default: the full-range and "
      "x <= 0 exps) differ in bits.");
  m.def(
      "exp_f32_check",
      [](const std::string& isa, uint32_t lo_bits, uint32_t hi_bits, uint32_t stride,
         const std::string& reference, const std::string& variant) {
        if (hi_bits < lo_bits) throw std::invalid_argument("hi_bits < lo_bits");
        if (reference != "fast" && reference != "libm")
          throw std::invalid_argument("reference must be 'fast' or 'libm'");
        const Exp e = exp_for(isa, variant);
        expcheck::ExpF64 ref = nullptr;
        if (reference == "fast" && isa != "scalar") ref = hooks_for(isa).exp_f64;
        expcheck::Report r;
        {
          py::gil_scoped_release nogil;
          r = expcheck::check_f32_range(e.f32, lo_bits, hi_bits, stride, ref);
        }
        return to_dict(r);
      },
      py::arg("isa"), py::arg("lo_bits"), py::arg("hi_bits"), py::arg("stride") = 1,
      py::arg("reference") = "fast", py::arg("variant") = "full",
      "Max ULP error of the ISA's float32 exp over a range of bit patterns.");
  m.def(
      "exp_f64_check",
      [](const std::string& isa, double lo, double hi, int64_t count, uint64_t seed,
         const std::string& variant) {
        if (!(hi >= lo) || count < 0) throw std::invalid_argument("need lo <= hi and count >= 0");
        const Exp e = exp_for(isa, variant);
        if (!e.f64) throw std::invalid_argument("this variant has no float64 exp");
        expcheck::Report r;
        {
          py::gil_scoped_release nogil;
          r = expcheck::check_f64_random(e.f64, lo, hi, count, seed);
        }
        return to_dict(r);
      },
      py::arg("isa"), py::arg("lo"), py::arg("hi"), py::arg("count"), py::arg("seed") = 1,
      py::arg("variant") = "full",
      "Max ULP error of the ISA's float64 exp on random samples (expl reference).");
}

}  // namespace fastsoftmax

PYBIND11_MODULE(_testing, m) { fastsoftmax::register_testing(m); }
