// pybind11 binding. The public functions live here so that the common call — a
// native float16/32/64 (or bfloat16) ndarray and an int axis, with or without a
// temperature, a bool where= that broadcasts to x and a matching out= (logsumexp:
// where=, out= and keepdims) — reaches the driver with almost no Python work
// (about 0.6 µs for a (1, 1000) float32 call here). Everything else (lists, casts,
// tuple axes, where= lists or scalars, b=, an out= that needs a temporary, ...) is normalized by
// fastsoftmax._api and comes back through `_compute` with arrays the driver can take
// as they are.
//
// Ownership of the argument rules: Python (fastsoftmax._api, ._xent) is the one place
// that validates and raises. The fast entries here only *recognize* calls that are
// already valid and simple; anything else, including every error, even a malformed
// call, is declined to the Python function, which raises. `_compute` and `_xent_*` are
// internal entries for normalized arguments: their checks ("internal: ...") only keep a
// wrong internal call from crashing or writing out of bounds.
#include <pybind11/pybind11.h>
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <atomic>
#include <cmath>
#include <stdexcept>
#include <string>

#include "driver.h"
#include "gil.h"
#include "engine/threads.h"
#include "numpy_view.h"
#include "fastsoftmax/common.h"
#include "fastsoftmax/kernels.h"

#ifdef FASTSOFTMAX_OPENMP
#include <omp.h>
#endif

namespace py = pybind11;
using namespace pybind11::literals;

namespace fastsoftmax {
void register_training(py::module_& m);
void register_select(py::module_& m);
void register_partials(py::module_& m);

namespace {

static_assert(sizeof(void*) == 8, "64-bit only");


// ---- threads -------------------------------------------------------------------
std::atomic<int> g_thread_override{0};  // 0: follow OpenMP (OMP_NUM_THREADS, threadpoolctl)

int num_procs() {
#ifdef FASTSOFTMAX_OPENMP
  return omp_get_num_procs();
#else
  return 1;
#endif
}

}  // namespace

// The calling thread's own count, above every other setting (0 = none): fastsoftmax.dask
// runs each task on one thread when several run at once (python/fastsoftmax/dask.py).
thread_local int t_thread_override = 0;

int current_num_threads() {
  if (t_thread_override > 0) return t_thread_override;
  const int o = g_thread_override.load(std::memory_order_relaxed);
  if (o > 0) return o;
#ifdef FASTSOFTMAX_OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

namespace {

int get_num_threads() { return current_num_threads(); }

// Internal: fastsoftmax._api._thread_count owns the rule and raises the user's errors.
int validate_threads(py::handle n) {
  if (!PyLong_Check(n.ptr()) || PyBool_Check(n.ptr()))
    throw py::value_error("internal: _set_num_threads: n must be an int");
  const long long v = n.cast<long long>();
  if (v == -1) return num_procs();
  if (v < 1 || v > (1 << 16)) throw py::value_error("internal: _set_num_threads: bad n");
  return int(v);
}

// Returns the previous override (0 = none) so threads(n) can restore it exactly.
int set_num_threads(py::handle n) {
  const int v = validate_threads(n);
  return g_thread_override.exchange(v);
}

// ---- arrays --------------------------------------------------------------------
PyTypeObject* g_ndarray_type = nullptr;
// The Python fallbacks; owned references that are deliberately never released
// (a static py::object would be destroyed after the interpreter is gone).
PyObject* g_fallback[3] = {nullptr, nullptr, nullptr};

py::handle fallback(Op op) {
  if (!g_fallback[int(op)]) throw std::runtime_error("fastsoftmax: fallbacks not registered");
  return g_fallback[int(op)];
}

}  // namespace

// An ndarray the kernels can read directly: native float16/32/64 (or bfloat16, once
// registered), aligned.
// Declines; _api._prepare / _api._compute_dtype own the rules for x.
bool fast_array(py::handle x, DType& dt) {
  if (Py_TYPE(x.ptr()) != g_ndarray_type) return false;
  const ArrayView v = view_of(x);
  return dtype_of(v.type_num, dt) && (v.byteorder == '=' || v.byteorder == '<') &&
         (v.flags & kFlagAligned);
}

namespace {

// Allocates the result: Fortran order for Fortran-contiguous inputs (so a
// transposed view keeps its panel layout), C order otherwise.
py::array empty_like_layout(const ArrayView& v, DType dt, const DimVec<int64_t>& shape,
                            bool fortran) {
  const int64_t isz = itemsize(dt);
  const int nd = int(shape.size());
  Py_intptr_t sh[kMaxDims], st[kMaxDims];
  int64_t acc = isz;
  for (int k = 0; k < nd; ++k) {
    const int d = fortran ? k : nd - 1 - k;
    sh[d] = Py_intptr_t(shape[d]);
    st[d] = Py_intptr_t(acc);
    acc *= std::max<int64_t>(1, shape[d]);
  }
  // Straight through NumPy's C API (as pybind11 does, minus its temporaries).
  auto& api = py::detail::npy_api::get();
  const int type_num = dt == DType::f16    ? kNpyHalf
                       : dt == DType::f32  ? kNpyFloat
                       : dt == DType::f64  ? kNpyDouble
                                           : g_bf16_type_num.load(std::memory_order_relaxed);
  PyObject* descr = api.PyArray_DescrFromType_(type_num);  // reference stolen below
  PyObject* arr =
      api.PyArray_NewFromDescr_(api.PyArray_Type_, descr, nd, sh, st, nullptr, 0, nullptr);
  if (!arr) throw py::error_already_set();
  return py::reinterpret_steal<py::array>(arr);
}

Operand operand_of(py::handle a) {
  const ArrayView v = view_of(a);
  Operand o;
  o.data = v.data;
  o.strides.assign(v.strides, v.strides + v.nd);
  return o;
}

// Strides of a kept-dims output (logsumexp) spread over x's dims: 0 on reduced dims.
DimVec<int64_t> spread_strides(const ArrayView& out, const DimVec<bool>& reduced) {
  DimVec<int64_t> st;
  st.assign(int(reduced.size()), int64_t(0));
  const bool keepdims = size_t(out.nd) == reduced.size();
  int j = 0;
  for (size_t d = 0; d < reduced.size(); ++d) {
    if (keepdims)
      st[d] = reduced[d] ? 0 : out.strides[d];
    else if (!reduced[d])
      st[d] = out.strides[j++];
  }
  return st;
}

// Releases the GIL while the core computes; calls too small for another Python
// thread to gain anything from it (a few µs) keep it and save the round trip.
void run_released(const Problem& p) {
  int64_t elements = 1;
  for (int64_t s : p.shape) elements *= s;
  if (elements < 4096) return run(p);
  ReleaseGil release;
  run(p);
}

// How `out` relates to `x` in memory: 0 disjoint, 1 the very same elements
// (in place: every kernel allows y == x), 2 any other overlap (compute into a
// temporary). Conservative: compares the byte ranges the two arrays span.
int overlap(py::handle x, py::handle out) {
  const ArrayView a = view_of(x), b = view_of(out);
  auto span = [](const ArrayView& v, char*& lo, char*& hi) {
    lo = hi = v.data;
    for (int d = 0; d < v.nd; ++d) {
      if (v.shape[d] == 0) { hi = lo; return false; }
      const int64_t ext = int64_t(v.shape[d] - 1) * v.strides[d];
      (ext < 0 ? lo : hi) += ext;
    }
    return true;
  };
  char *alo, *ahi, *blo, *bhi;
  if (!span(a, alo, ahi) || !span(b, blo, bhi)) return 0;
  auto isz = [](py::handle h, const ArrayView& v) -> int64_t {
    DType d;
    return dtype_of(v.type_num, d) ? itemsize(d) : py::cast<py::array>(h).itemsize();
  };
  const int64_t aisz = isz(x, a), bisz = isz(out, b);
  if (ahi + aisz <= blo || bhi + bisz <= alo) return 0;
  if (a.data == b.data && a.nd == b.nd && aisz == bisz) {
    bool same = true;
    for (int d = 0; d < a.nd; ++d) same &= a.shape[d] == b.shape[d] && a.strides[d] == b.strides[d];
    if (same) return 1;
  }
  return 2;
}

// out= the fast path can take: an exact ndarray of the result's shape and x's dtype,
// writable, aligned, and either disjoint from x or x itself. Anything else: the
// Python path (which raises the errors or computes through a temporary).
// Declines; _api._out owns the rule (and shares `overlap`, as _core._overlap).
bool fast_out(py::handle x, py::handle out, const int64_t* shape, int nd) {
  if (Py_TYPE(out.ptr()) != g_ndarray_type) return false;
  const ArrayView v = view_of(x), o = view_of(out);
  if (o.type_num != v.type_num || o.nd != nd || !(o.flags & kFlagWriteable) ||
      !(o.flags & kFlagAligned) || !(o.byteorder == '=' || o.byteorder == '<'))
    return false;
  for (int d = 0; d < nd; ++d)
    if (int64_t(o.shape[d]) != shape[d]) return false;
  return overlap(x, out) != 2;
}

// where= the fast path can take: None, or a bool ndarray that broadcasts to x's shape
// (any strides), as the operand the driver reads (broadcast dims: stride 0, as
// np.broadcast_to). Anything else (lists, other dtypes, shapes that do not
// broadcast): the Python path, which converts or raises.
// Declines; _api._where owns the rule.
bool fast_where(py::handle x, py::handle where, Operand& mask) {
  if (where.is_none()) return true;
  if (Py_TYPE(where.ptr()) != g_ndarray_type) return false;
  const ArrayView v = view_of(x), w = view_of(where);
  if (w.type_num != kNpyBool || w.nd > v.nd) return false;
  mask.data = w.data;
  mask.strides.assign(v.nd, int64_t(0));
  for (int d = v.nd - w.nd; d < v.nd; ++d) {
    const int wd = d - (v.nd - w.nd);
    if (w.shape[wd] == v.shape[d])
      mask.strides[d] = w.strides[wd];
    else if (w.shape[wd] != 1)
      return false;
  }
  return true;
}

// ---- the fast entry points -------------------------------------------------------
// An exact int in [-nd, nd) (not a bool, not a NumPy integer, not a tuple).
// Declines; _api._axes owns the rule.
bool int_axis(py::handle axis, int nd, int& out) {
  if (!PyLong_CheckExact(axis.ptr())) return false;
  int overflow = 0;
  const long a = PyLong_AsLongAndOverflow(axis.ptr(), &overflow);
  if (overflow || a < -nd || a >= nd) return false;
  out = int(a < 0 ? a + nd : a);
  return true;
}

// A temperature the fast path can take: an exact float or int, finite and > 0 (bools,
// other types and bad values go to the Python path, which raises).
// Declines; _api._temperature owns the rule.
bool fast_temperature(py::handle t, double& out) {
  if (PyFloat_CheckExact(t.ptr())) {
    out = PyFloat_AS_DOUBLE(t.ptr());
    return std::isfinite(out) && out > 0;
  }
  if (!PyLong_CheckExact(t.ptr())) return false;
  int overflow = 0;
  const long v = PyLong_AsLongAndOverflow(t.ptr(), &overflow);
  out = double(v);
  return !overflow && v > 0;
}

// The fast entries: compute a call the predicates above all recognize, else pass it
// unchanged to the Python function (fallback), which normalizes or raises. They raise
// nothing themselves. dtype= (and logsumexp's b=, return_sign=True, a keepdims that is
// not a bool) always take the Python path.
py::object softmax_like(Op op, py::handle x, py::handle axis, py::handle temperature,
                        py::handle where, py::handle dtype, py::handle out) {
  DType dt;
  int ax;
  double t;
  Operand mask;
  if (dtype.is_none() && fast_temperature(temperature, t) && fast_array(x, dt) &&
      fast_where(x, where, mask)) {
    const ArrayView v = view_of(x);
    if (v.nd >= 1 && int_axis(axis, v.nd, ax)) {
      Problem p;
      p.op = op;
      p.dtype = dt;
      p.shape.assign(v.shape, v.shape + v.nd);
      if (!out.is_none() && !fast_out(x, out, p.shape.begin(), v.nd)) goto general;
      p.reduced.assign(v.nd, false);
      p.reduced[ax] = true;
      p.temperature = t;
      p.x = operand_of(x);
      p.mask = mask;
      if (!out.is_none()) {
        p.y = operand_of(out);
        p.threads = get_num_threads();
        run_released(p);
        return py::reinterpret_borrow<py::object>(out);
      }
      const bool fortran = (v.flags & kFlagF) && !(v.flags & kFlagC);
      py::array y = empty_like_layout(v, dt, p.shape, fortran);
      p.y = operand_of(y);
      p.threads = get_num_threads();
      run_released(p);
      return std::move(y);
    }
  }
general:
  return fallback(op)(x, axis, "temperature"_a = temperature, "where"_a = where,
                             "dtype"_a = dtype, "out"_a = out);
}

py::object logsumexp_entry(py::handle x, py::handle axis, py::handle keepdims, py::handle b,
                           py::handle return_sign, py::handle where, py::handle dtype,
                           py::handle out) {
  DType dt;
  int ax;
  const bool keep = keepdims.ptr() == Py_True;
  Operand mask;
  if (b.is_none() && dtype.is_none() && (keep || keepdims.ptr() == Py_False) &&
      return_sign.ptr() == Py_False && fast_array(x, dt) && fast_where(x, where, mask)) {
    const ArrayView v = view_of(x);
    if (v.nd >= 1 && int_axis(axis, v.nd, ax)) {
      Problem p;
      p.op = Op::logsumexp;
      p.dtype = dt;
      p.shape.assign(v.shape, v.shape + v.nd);
      p.reduced.assign(v.nd, false);
      p.reduced[ax] = true;
      DimVec<int64_t> oshape;
      for (int d = 0; d < v.nd; ++d)
        if (d != ax || keep) oshape.push_back(d == ax ? 1 : v.shape[d]);
      if (!out.is_none() && !fast_out(x, out, oshape.begin(), int(oshape.size()))) goto general;
      py::object y = out.is_none() ? py::object(empty_like_layout(v, dt, oshape, false))
                                   : py::reinterpret_borrow<py::object>(out);
      p.x = operand_of(x);
      p.mask = mask;
      const ArrayView yv = view_of(y);
      p.y.data = yv.data;
      p.y.strides = spread_strides(yv, p.reduced);
      p.threads = get_num_threads();
      run_released(p);
      if (oshape.empty() && out.is_none()) return y[py::tuple()];  // a NumPy scalar
      return y;
    }
  }
general:
  return fallback(Op::logsumexp)(x, axis, "keepdims"_a = keepdims, "b"_a = b,
                                        "return_sign"_a = return_sign, "where"_a = where,
                                        "dtype"_a = dtype, "out"_a = out);
}

// ---- the general entry, called by fastsoftmax._api with normalized arguments ------
// Internal and trusted: fastsoftmax._api has validated every argument (and raised the
// user's errors). The checks below are not argument rules: they only keep a wrong
// internal call from crashing or writing out of bounds, and raise "internal: ...".
// x: native aligned float16/32/64 or bfloat16 ndarray; axes: sorted distinct non-negative ints;
// out: None (softmax, log_softmax: allocated here, in empty_like_layout's order, as
// the fast path does) or writable, aligned, native, of x's dtype and of the result's
// shape (logsumexp: with or without keepdims); where: bool array of x's shape (any
// strides) or None; b: float64 array of x's shape or None; sign: like out or None.
// Returns out.
void internal_check(bool ok, const char* what) {
  if (!ok) throw py::value_error(std::string("internal: _compute: bad ") + what);
}

// A native aligned ndarray of `type_num` (any ndarray subclass).
ArrayView internal_array(py::handle a, int type_num, const char* what) {
  internal_check(PyObject_TypeCheck(a.ptr(), g_ndarray_type), what);
  const ArrayView v = view_of(a);
  internal_check(v.type_num == type_num && (v.flags & kFlagAligned) &&
                     (v.byteorder == '=' || v.byteorder == '<' || v.byteorder == '|'),
                 what);
  return v;
}

py::object compute(int op, py::handle x, const std::vector<int>& axes, double temperature,
                   py::handle where, py::handle out, py::handle b, py::handle sign) {
  DType dt = DType::f32;  // set by dtype_of below (checked)
  internal_check(op >= 0 && op <= int(Op::logsumexp), "op");
  internal_check(PyObject_TypeCheck(x.ptr(), g_ndarray_type), "x");
  const ArrayView v = view_of(x);
  internal_check(dtype_of(v.type_num, dt) && (v.flags & kFlagAligned) &&
                     (v.byteorder == '=' || v.byteorder == '<'),
                 "x");
  Problem p;
  p.op = Op(op);
  p.dtype = dt;
  p.shape.assign(v.shape, v.shape + v.nd);
  p.reduced.assign(v.nd, false);
  for (int a : axes) {
    internal_check(a >= 0 && a < v.nd && !p.reduced[a], "axes");
    p.reduced[a] = true;
  }
  // The shape of a result: x's (softmax), or kept dims (logsumexp, either form).
  auto check_result = [&](const ArrayView& r, const char* what) {
    if (p.op != Op::logsumexp) {
      internal_check(r.nd == v.nd, what);
      for (int d = 0; d < v.nd; ++d) internal_check(r.shape[d] == v.shape[d], what);
      return;
    }
    const bool keep = r.nd == v.nd;
    int j = 0;
    for (int d = 0; d < v.nd; ++d) {
      if (p.reduced[d] && !keep) continue;
      internal_check(j < r.nd && r.shape[j] == (p.reduced[d] ? 1 : v.shape[d]), what);
      ++j;
    }
    internal_check(j == r.nd, what);
  };
  p.temperature = temperature;
  p.x = operand_of(x);
  py::object y;
  if (out.is_none()) {
    internal_check(p.op != Op::logsumexp, "out");
    const bool fortran = (v.flags & kFlagF) && !(v.flags & kFlagC);
    y = empty_like_layout(v, dt, p.shape, fortran);
  } else {
    y = py::reinterpret_borrow<py::object>(out);
  }
  const ArrayView ov = internal_array(y, v.type_num, "out");
  internal_check(ov.flags & kFlagWriteable, "out");
  check_result(ov, "out");
  if (p.op == Op::logsumexp) {
    p.y.data = ov.data;
    p.y.strides = spread_strides(ov, p.reduced);
  } else {
    p.y = operand_of(y);
  }
  auto check_full = [&](py::handle a, int type_num, const char* what) {
    const ArrayView av = internal_array(a, type_num, what);
    internal_check(av.nd == v.nd, what);
    for (int d = 0; d < v.nd; ++d) internal_check(av.shape[d] == v.shape[d], what);
  };
  if (!where.is_none()) {
    check_full(where, kNpyBool, "where");
    p.mask = operand_of(where);
  }
  if (!b.is_none()) {
    internal_check(p.op == Op::logsumexp, "b");
    check_full(b, kNpyDouble, "b");
    p.b = operand_of(b);
  }
  if (!sign.is_none()) {
    internal_check(p.op == Op::logsumexp, "sign");
    const ArrayView sv = internal_array(sign, v.type_num, "sign");
    internal_check(sv.flags & kFlagWriteable, "sign");
    check_result(sv, "sign");
    p.sign.data = sv.data;
    p.sign.strides = spread_strides(sv, p.reduced);
  }
  p.threads = get_num_threads();
  run_released(p);
  return y;
}

// float16 -> float32 for the Python layer's dtype= casts (NumPy converts one element
// at a time, ~2 ns each here): x and out C-contiguous, of the same size; with the
// ISA's float16 gather (F16C / AVX-512 / NEON conversions, exact), else one by one.
void widen_f16(py::array x, py::array out) {
  const ArrayView v = view_of(x), o = view_of(out);
  if (v.type_num != kNpyHalf || o.type_num != kNpyFloat || !(v.flags & kFlagC) ||
      !(o.flags & kFlagC) || !(o.flags & kFlagWriteable) || x.size() != out.size())
    throw py::type_error("_widen_f16: x must be C-contiguous float16, out float32 of its size");
  const auto* src = reinterpret_cast<const uint16_t*>(v.data);
  auto* dst = reinterpret_cast<float*>(o.data);
  const int64_t n = int64_t(x.size());
  const auto gather = kernels().softmax.f16.gather_row;
  ReleaseGil release;
  for (int64_t i = 0; i < n; i += kBlock) {
    const int64_t cnt = std::min(kBlock, n - i);
    if (gather)
      gather(src + i, nullptr, dst + i, cnt, 1.0f);
    else
      for (int64_t k = 0; k < cnt; ++k) dst[i + k] = half_to_float(src[i + k]);
  }
}

// Internal: fastsoftmax._api hands over ml_dtypes' bfloat16 dtype once it has
// recognized it (numpy_view.h g_bf16_type_num); from then on dtype_of, and so the fast
// entries and every binding, take its arrays.
void register_bfloat16(py::dtype d) {
  if (d.itemsize() != 2 || d.num() < 256)
    throw py::value_error("internal: _register_bfloat16: not a two-byte user-defined dtype");
  g_bf16_type_num.store(d.num(), std::memory_order_relaxed);
}

// ---- METH_FASTCALL entry points ----------------------------------------------------
// pybind11's dispatcher costs ~250 ns more per call once keywords are passed; these
// parse (args, kwnames) directly. Semantics match a Python signature
//   softmax(x, axis=-1, *, temperature=1.0, where=None, dtype=None, out=None).
struct ParamSpec {
  const char* name;
  PyObject* interned;
  PyObject* default_value;  // borrowed (immortal-ish: owned by this table), or nullptr = required
};

PyObject* g_minus_one = nullptr;
PyObject* g_one = nullptr;

ParamSpec kSoftmaxParams[] = {{"x", nullptr, nullptr},         {"axis", nullptr, nullptr},
                              {"temperature", nullptr, nullptr}, {"where", nullptr, Py_None},
                              {"dtype", nullptr, Py_None},       {"out", nullptr, Py_None}};
ParamSpec kLogsumexpParams[] = {{"x", nullptr, nullptr},          {"axis", nullptr, nullptr},
                                {"keepdims", nullptr, Py_False},  {"b", nullptr, Py_None},
                                {"return_sign", nullptr, Py_False}, {"where", nullptr, Py_None},
                                {"dtype", nullptr, Py_None},      {"out", nullptr, Py_None}};

void init_vectorcall_defaults() {
  g_minus_one = PyLong_FromLong(-1);
  g_one = PyFloat_FromDouble(1.0);
  kSoftmaxParams[1].default_value = g_minus_one;
  kSoftmaxParams[2].default_value = g_one;
  kLogsumexpParams[1].default_value = g_minus_one;
  for (ParamSpec& p : kSoftmaxParams) p.interned = PyUnicode_InternFromString(p.name);
  for (ParamSpec& p : kLogsumexpParams) p.interned = PyUnicode_InternFromString(p.name);
}

// Fills out[0..np) from positional args (at most kPositional) and keywords. Returns
// false, setting no error, for a call it does not recognize (too many positional
// arguments, an unknown or repeated keyword, x missing): the caller hands the call as
// it is to the Python function, whose signature raises the TypeError.
template <size_t NP>
bool parse_args(ParamSpec (&spec)[NP], PyObject* const* args, Py_ssize_t nargs,
                PyObject* kwnames, PyObject* (&out)[NP]) {
  constexpr Py_ssize_t kPositional = 2;
  if (nargs > kPositional) return false;
  for (size_t i = 0; i < NP; ++i) out[i] = nullptr;
  for (Py_ssize_t i = 0; i < nargs; ++i) out[i] = args[i];
  const Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
  for (Py_ssize_t k = 0; k < nkw; ++k) {
    PyObject* key = PyTuple_GET_ITEM(kwnames, k);
    size_t found = NP;
    for (size_t i = 0; i < NP && found == NP; ++i)
      if (key == spec[i].interned) found = i;
    for (size_t i = 0; i < NP && found == NP; ++i)
      if (PyUnicode_Compare(key, spec[i].interned) == 0) found = i;
    if (found == NP || out[found]) return false;
    out[found] = args[nargs + k];
  }
  for (size_t i = 0; i < NP; ++i) {
    if (out[i]) continue;
    if (!spec[i].default_value) return false;
    out[i] = spec[i].default_value;
  }
  return true;
}

// A call parse_args declined, passed on unchanged to the Python function.
PyObject* decline_call(Op op, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  if (!g_fallback[int(op)]) {
    PyErr_SetString(PyExc_RuntimeError, "fastsoftmax: fallbacks not registered");
    return nullptr;
  }
  return PyObject_Vectorcall(g_fallback[int(op)], args, size_t(nargs), kwnames);
}

template <class F>
PyObject* guarded(F&& f) {
  try {
    return f().release().ptr();
  } catch (py::error_already_set& e) {
    e.restore();
  } catch (py::builtin_exception& e) {
    e.set_error();
  } catch (const std::invalid_argument& e) {
    PyErr_SetString(PyExc_ValueError, e.what());
  } catch (const std::bad_alloc&) {
    PyErr_NoMemory();
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
  }
  return nullptr;
}

template <Op kOp>
PyObject* softmax_vc(PyObject*, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  PyObject* a[6];
  if (!parse_args(kSoftmaxParams, args, nargs, kwnames, a))
    return decline_call(kOp, args, nargs, kwnames);
  return guarded([&] { return softmax_like(kOp, a[0], a[1], a[2], a[3], a[4], a[5]); });
}

PyObject* logsumexp_vc(PyObject*, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  PyObject* a[8];
  if (!parse_args(kLogsumexpParams, args, nargs, kwnames, a))
    return decline_call(Op::logsumexp, args, nargs, kwnames);
  return guarded([&] { return logsumexp_entry(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]); });
}

PyMethodDef kSoftmaxDef = {
    "softmax", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(softmax_vc<Op::softmax>)),
    METH_FASTCALL | METH_KEYWORDS,
    "softmax($module, /, x, axis=-1, *, temperature=1.0, where=None, dtype=None, out=None)\n--\n\n"
    "exp(x/T - max) / sum(exp(x/T - max)) along `axis` (an int, a tuple of ints or None).\n\n"
    "x: array_like (any dtype that is float16/32/64, bfloat16, integer or bool; any strides).\n"
    "temperature: finite > 0. where: boolean mask broadcastable to x; False entries\n"
    "give 0 and take no part. dtype: the output/compute dtype. out: an array of the\n"
    "result's shape and dtype (any strides; out=x works in place); returned."};
PyMethodDef kLogSoftmaxDef = {
    "log_softmax",
    reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(softmax_vc<Op::log_softmax>)),
    METH_FASTCALL | METH_KEYWORDS,
    "log_softmax($module, /, x, axis=-1, *, temperature=1.0, where=None, dtype=None, "
    "out=None)\n--\n\n"
    "(x/T - max) - log1p(sum of exp(x/T - max) over the other entries) along `axis`.\n"
    "Arguments as softmax; masked entries give -inf."};
PyMethodDef kLogsumexpDef = {
    "logsumexp", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(logsumexp_vc)),
    METH_FASTCALL | METH_KEYWORDS,
    "logsumexp($module, /, x, axis=-1, *, keepdims=False, b=None, return_sign=False, "
    "where=None, dtype=None, out=None)\n--\n\n"
    "log(sum(b * exp(x))) along `axis`, as scipy.special.logsumexp (b, return_sign).\n"
    "A 0-d result is a NumPy scalar; with return_sign=True returns (value, sign)."};

py::list available_isas() {
  py::list l;
  for (int i = kNumIsas - 1; i >= 0; --i)
    if (cpu_supports(Isa(i))) l.append(isa_name(Isa(i)));
  return l;
}

}  // namespace
}  // namespace fastsoftmax

PYBIND11_MODULE(_core, m) {
  using namespace fastsoftmax;
  m.doc() = "fastsoftmax C++ core (kernels, dispatch, N-D driver)";
  g_ndarray_type = reinterpret_cast<PyTypeObject*>(py::module_::import("numpy").attr("ndarray").ptr());

  init_vectorcall_defaults();
  for (PyMethodDef* def : {&kSoftmaxDef, &kLogSoftmaxDef, &kLogsumexpDef}) {
    PyObject* f = PyCFunction_NewEx(def, m.ptr(), m.attr("__name__").ptr());
    if (!f) throw py::error_already_set();
    m.add_object(def->ml_name, py::reinterpret_steal<py::object>(f));
  }
  m.def("_compute", &compute, "op"_a, "x"_a, "axes"_a, "temperature"_a, "where"_a, "out"_a,
        "b"_a, "sign"_a);
  m.def("_overlap", &overlap, "x"_a, "out"_a);
  m.def("_widen_f16", &widen_f16, "x"_a, "out"_a);
  m.def("_register_bfloat16", &register_bfloat16, "dtype"_a);
  m.def("_set_fallbacks", [](py::object s, py::object l, py::object e) {
    const py::object fns[3] = {s, l, e};
    for (int i = 0; i < 3; ++i) {
      Py_XDECREF(g_fallback[i]);
      g_fallback[i] = fns[i].inc_ref().ptr();
    }
  });
  m.def("get_num_threads", &get_num_threads,
        "The number of threads the next call may use (set_num_threads, else OpenMP's).");
  m.def("_set_num_threads", &set_num_threads, "n"_a);
  m.def("_set_thread_local_threads", [](int n) {  // internal: 0 <= n, returns the previous
    if (n < 0 || n > (1 << 16)) throw py::value_error("internal: _set_thread_local_threads: bad n");
    const int prev = t_thread_override;
    t_thread_override = n;
    return prev;
  });
  m.def("_restore_num_threads", [](int prev) { g_thread_override.store(prev); });
  // Test hook (not public API): the pool's counters (engine/threads.h): workers
  // started, calls run on their own thread as the pool was busy, and since import the
  // calls on the pool, chunks the workers computed, joins that slept, wake-ups.
  m.def("_pool_stats", []() {
    return py::dict("workers"_a = pool::workers_started(),
                    "inline_calls"_a = pool::calls_inline(), "pool_calls"_a = pool::stat(0),
                    "worker_chunks"_a = pool::stat(1), "join_sleeps"_a = pool::stat(2),
                    "wakes"_a = pool::stat(3), "contention"_a = pool::contention_score(),
                    "contended"_a = pool::contended());
  });
  // Test hook: force the pool's contention estimate (1 contended, 0 not, -1 measured).
  m.def("_force_contention", [](int mode) { pool::force_contention(mode < 0 ? -1 : mode > 0); });
  m.def("isa", []() { return std::string(isa_name(kernels().isa)); },
        "The instruction set of the kernels in use: avx512, avx2, neon or scalar.");
  m.def("available_isas", &available_isas,
        "The instruction sets this build and CPU can run, widest first.");
  m.def("_set_isa", [](const std::string& name) {
    try {
      set_active_isa(parse_isa(name.c_str()));
    } catch (const std::invalid_argument& e) {
      throw py::value_error(e.what());
    }
  });
  m.attr("has_openmp") =
#ifdef FASTSOFTMAX_OPENMP
      true;
#else
      false;
#endif
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const std::invalid_argument& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    }
  });
  register_training(m);
  register_select(m);
  register_partials(m);
}
