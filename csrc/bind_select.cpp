// pybind11 binding of the selection family (select.h, sample.h): `_core._top_k` and
// `_core._sample`, internal entries. fastsoftmax._select and ._sample own every
// argument rule and raise the user's errors (docs/contract.md §11, §12); they hand over
// native aligned arrays and the outputs they allocated. The checks here ("internal:
// ...") only keep a wrong internal call from crashing or writing out of bounds.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

#include "driver.h"
#include "gil.h"
#include "numpy_view.h"
#include "sample.h"
#include "select.h"

namespace py = pybind11;

namespace fastsoftmax {
namespace {

void internal_check(bool ok, const char* what) {
  if (!ok) throw py::value_error(std::string("internal: _top_k: bad ") + what);
}

// values (x's dtype) and indices (int64): x's shape with `axis` of length k, writable.
void check_result(const ArrayView& r, const ArrayView& x, int axis, int64_t k, int type_num,
                  int64_t itemsize, const py::array& arr, const char* what) {
  internal_check(r.nd == x.nd && r.type_num == type_num && int64_t(arr.itemsize()) == itemsize &&
                     (r.flags & kFlagWriteable) && native_aligned(r),
                 what);
  for (int d = 0; d < x.nd; ++d) internal_check(r.shape[d] == (d == axis ? k : x.shape[d]), what);
}

void top_k_core(py::array x, int axis, int64_t k, bool largest, int transform, py::array values,
                py::array indices) {
  const ArrayView xv = view_of(x);
  DType dt = DType::f32;
  internal_check(dtype_of(xv.type_num, dt) && native_aligned(xv), "x");
  internal_check(axis >= 0 && axis < xv.nd, "axis");
  const int64_t n = xv.shape[axis];
  internal_check(k >= 0 && k <= n, "k");
  internal_check(transform >= 0 && transform <= 2, "transform");
  const ArrayView vv = view_of(values), iv = view_of(indices);
  // values in x's dtype; or, for bfloat16 x with a transform, float32 (the sampler's
  // top_logprobs are in its logprobs' dtype, docs/contract.md §12.3)
  const bool values_compute = dt == DType::bf16 && transform != 0 && vv.type_num == kNpyFloat;
  check_result(vv, xv, axis, k, values_compute ? kNpyFloat : xv.type_num,
               values_compute ? 4 : itemsize(dt), values, "values");
  check_result(iv, xv, axis, k, iv.type_num, 8, indices, "indices");
  internal_check(iv.type_num == kNpyLong || iv.type_num == kNpyLongLong, "indices");
  TopK a{};
  a.dt = dt;
  a.values_compute = values_compute;
  a.n = n;
  a.k = k;
  a.largest = largest;
  a.transform = Transform(transform);
  a.x = xv.data;
  a.xs = xv.strides[axis];
  a.values = vv.data;
  a.vs = vv.strides[axis];
  a.indices = iv.data;
  a.is = iv.strides[axis];
  a.threads = current_num_threads();
  a.rows = 1;
  for (int d = 0; d < xv.nd; ++d) {
    if (d == axis) continue;
    a.rows *= xv.shape[d];
    if (xv.shape[d] == 1) continue;
    a.outer.push_back(Dim{xv.shape[d], {xv.strides[d], vv.strides[d], iv.strides[d], 0, 0}});
  }
  collapse(a.outer, true);
  if (n == 0 || k == 0) return;
  ReleaseGil release;
  run_top_k(a);
}

// A C-contiguous array of `count` elements of `isz` bytes of NumPy kind `kind`.
const void* flat(const py::handle& h, int64_t count, char kind, int64_t isz, bool writable,
                 const char* what) {
  internal_check(py::isinstance<py::array>(h), what);
  const py::array arr = py::reinterpret_borrow<py::array>(h);
  const ArrayView v = view_of(arr);
  internal_check(arr.dtype().kind() == kind && int64_t(arr.itemsize()) == isz &&
                     int64_t(arr.size()) == count && (v.flags & kFlagC) && native_aligned(v) &&
                     (!writable || (v.flags & kFlagWriteable)),
                 what);
  return v.data;
}

// A per-row input: a Python number (one value for every row, kept in `one`) or a flat
// array of `rows` entries.
template <class T>
RowParam<T> row_param(const py::handle& h, int64_t rows, T& one, char kind, const char* what) {
  if (py::isinstance<py::array>(h)) return {static_cast<const T*>(flat(h, rows, kind, 8, false, what)), 1};
  internal_check(PyFloat_Check(h.ptr()) || PyLong_Check(h.ptr()), what);
  one = h.cast<T>();
  return {&one, 0};
}

// The layout half of a SampleProblem: logits (..., V) and the optional where= view of
// its shape; rows in row-major order of the batch shape (the per-row arrays' order).
void set_layout(SampleProblem& a, const ArrayView& xv, DType dt, const ArrayView* wv) {
  a.dt = dt;
  a.n = xv.shape[xv.nd - 1];
  a.x = xv.data;
  a.xs = xv.strides[xv.nd - 1];
  if (wv) {
    a.mask = wv->data;
    a.ms = wv->strides[xv.nd - 1];
  }
  a.rows = 1;
  for (int d = 0; d + 1 < xv.nd; ++d) {
    a.rows *= xv.shape[d];
    if (xv.shape[d] == 1) continue;
    a.outer.push_back(Dim{xv.shape[d], {xv.strides[d], wv ? wv->strides[d] : 0, 0, 0, 0}});
  }
  collapse(a.outer, false);
  a.threads = current_num_threads();
}

void run_released(const SampleProblem& a) {
  if (a.rows * a.n >= 4096) {
    ReleaseGil release;
    run_sample(a);
  } else {
    run_sample(a);
  }
}

// logits (..., V) native aligned float; where: None or a bool view of logits' shape;
// per-row inputs: numbers or C-contiguous arrays (`rows` entries, row-major over
// logits.shape[:-1]); u None (then seed and offset) or per-row uniforms.
void sample_core(py::array logits, py::object where, py::object temperature, py::object top_k,
                 py::object top_p, py::object min_p, py::object u, py::object seed,
                 py::object offset, int logprobs, py::object tokens, py::object logprob) {
  const ArrayView xv = view_of(logits);
  DType dt = DType::f32;
  internal_check(dtype_of(xv.type_num, dt) && native_aligned(xv) && xv.nd >= 1, "logits");
  internal_check(logprobs >= 0 && logprobs <= 2, "logprobs");
  internal_check(xv.shape[xv.nd - 1] >= 1, "vocabulary");
  ArrayView wv{};
  if (!where.is_none()) {
    internal_check(py::isinstance<py::array>(where), "where");
    wv = view_of(where);
    internal_check(wv.type_num == kNpyBool && wv.nd == xv.nd, "where");
    for (int d = 0; d < xv.nd; ++d) internal_check(wv.shape[d] == xv.shape[d], "where");
  }
  SampleProblem a{};
  set_layout(a, xv, dt, where.is_none() ? nullptr : &wv);
  double t1, p1, mp1, u1;
  int64_t k1;
  uint64_t s1, o1;
  a.temperature = row_param(temperature, a.rows, t1, 'f', "temperature");
  a.top_k = row_param(top_k, a.rows, k1, 'i', "top_k");
  a.top_p = row_param(top_p, a.rows, p1, 'f', "top_p");
  a.min_p = row_param(min_p, a.rows, mp1, 'f', "min_p");
  a.has_u = !u.is_none();
  if (a.has_u) {
    a.u = row_param(u, a.rows, u1, 'f', "u");
  } else {
    a.seed = row_param(seed, a.rows, s1, 'u', "seed");
    a.offset = row_param(offset, a.rows, o1, 'u', "offset");
  }
  a.logprobs = Logprobs(logprobs);
  a.tokens = static_cast<int64_t*>(const_cast<void*>(flat(tokens, a.rows, 'i', 8, true, "tokens")));
  if (a.logprobs != Logprobs::none)
    a.logprob = static_cast<double*>(const_cast<void*>(flat(logprob, a.rows, 'f', 8, true, "logprob")));
  run_released(a);
}

// ---- fastsoftmax.sample: the plain call in C++ ------------------------------------------
// `fastsoftmax.sample` is this function. A call it recognizes (logits an aligned native
// float32/float64 ndarray with a vocabulary; every parameter one Python number within
// its range; no where=, u= or rng=; seed None or an int, offset an int; logprobs None,
// "raw" or "processed"; top_logprobs 0) is computed here: fastsoftmax._sample's
// argument handling costs ~8 µs a call, a fifth of a 128k-token row's softmax. Anything
// else, every error included, goes unchanged to fastsoftmax._sample.sample, the one
// owner of the rules; both paths give the same results (tests/test_sample.py).

PyObject* g_one_f = nullptr;  // the defaults: 1.0, 0, 0.0, "raw"
PyObject* g_zero_i = nullptr;
PyObject* g_zero_f = nullptr;
PyObject* g_raw = nullptr;
PyObject* g_sample_py = nullptr;       // fastsoftmax._sample.sample
PyObject* g_sample_type = nullptr;     // fastsoftmax._sample.Sample
PyObject* g_fresh_uniforms = nullptr;  // fastsoftmax._sample._fresh_uniforms(batch)

constexpr int kSampleArgs = 12;
const char* const kSampleNames[kSampleArgs] = {
    "logits", "temperature", "top_k", "top_p", "min_p", "where",
    "seed",   "offset",      "rng",   "u",     "logprobs", "top_logprobs"};
PyObject* g_sample_interned[kSampleArgs] = {};

// A Python float or int (not bool, not a subclass) as a double.
bool py_number(PyObject* o, double& v) {
  if (PyFloat_CheckExact(o)) {
    v = PyFloat_AS_DOUBLE(o);
    return true;
  }
  if (!PyLong_CheckExact(o)) return false;
  v = PyLong_AsDouble(o);
  if (v == -1.0 && PyErr_Occurred()) {
    PyErr_Clear();
    return false;
  }
  return true;
}

bool py_int64(PyObject* o, int64_t& v) {
  if (!PyLong_CheckExact(o)) return false;
  int overflow = 0;
  v = PyLong_AsLongLongAndOverflow(o, &overflow);
  if (overflow || (v == -1 && PyErr_Occurred())) {
    PyErr_Clear();
    return false;
  }
  return true;
}

bool py_uint64(PyObject* o, uint64_t& v) {
  if (!PyLong_CheckExact(o)) return false;
  v = PyLong_AsUnsignedLongLong(o);
  if (v == uint64_t(-1) && PyErr_Occurred()) {  // negative or beyond 2^64 - 1
    PyErr_Clear();
    return false;
  }
  return true;
}

// The recognized plain call as a SampleProblem (outputs not yet set), or false.
bool plain_sample(PyObject* const* arg, SampleProblem& a, ArrayView& xv, bool& seeded) {
  DType dt;
  if (!fast_array(arg[0], dt) || (dt != DType::f32 && dt != DType::f64)) return false;
  xv = view_of(arg[0]);
  if (xv.nd < 1 || xv.shape[xv.nd - 1] < 1) return false;
  double t, p, mp;
  int64_t k;
  if (!py_number(arg[1], t) || !(t >= 0.0)) return false;
  if (!py_int64(arg[2], k) || k < 0) return false;
  if (!py_number(arg[3], p) || !(p > 0.0 && p <= 1.0)) return false;
  if (!py_number(arg[4], mp) || !(mp >= 0.0 && mp <= 1.0)) return false;
  if (arg[5] != Py_None || arg[8] != Py_None || arg[9] != Py_None) return false;  // where, rng, u
  seeded = arg[6] != Py_None;
  uint64_t seed = 0, offset = 0;
  if (seeded ? !py_uint64(arg[6], seed) || !py_uint64(arg[7], offset)
             : !py_uint64(arg[7], offset) || offset != 0)
    return false;
  int64_t top_logprobs;
  if (!py_int64(arg[11], top_logprobs) || top_logprobs != 0) return false;
  if (arg[10] == Py_None) {
    a.logprobs = Logprobs::none;
  } else if (PyUnicode_CheckExact(arg[10]) && PyUnicode_CompareWithASCIIString(arg[10], "raw") == 0) {
    a.logprobs = Logprobs::raw;
  } else if (PyUnicode_CheckExact(arg[10]) &&
             PyUnicode_CompareWithASCIIString(arg[10], "processed") == 0) {
    a.logprobs = Logprobs::processed;
  } else {
    return false;
  }
  set_layout(a, xv, dt, nullptr);
  a.one = {t, p, mp, k, seed, offset};
  a.temperature = {&a.one.temperature, 0};
  a.top_p = {&a.one.top_p, 0};
  a.min_p = {&a.one.min_p, 0};
  a.top_k = {&a.one.top_k, 0};
  a.seed = {&a.one.seed, 0};
  a.offset = {&a.one.offset, 0};
  return true;
}

// An array of the batch shape as the Python path returns it: a NumPy scalar when 0-d.
PyObject* shaped(py::array arr) {
  if (arr.ndim() != 0) return arr.release().ptr();
  py::tuple empty;
  return PyObject_GetItem(arr.ptr(), empty.ptr());
}

PyObject* sample_vc(PyObject*, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  auto decline = [&] { return PyObject_Vectorcall(g_sample_py, args, size_t(nargs), kwnames); };
  if (!g_sample_py) {
    PyErr_SetString(PyExc_RuntimeError, "fastsoftmax: sample fallback not registered");
    return nullptr;
  }
  if (nargs > 1) return decline();
  PyObject* arg[kSampleArgs] = {nullptr, g_one_f, g_zero_i, g_one_f, g_zero_f, Py_None,
                                Py_None, g_zero_i, Py_None,  Py_None, g_raw,   g_zero_i};
  arg[0] = nargs ? args[0] : nullptr;
  const Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
  bool seen[kSampleArgs] = {nargs == 1};
  for (Py_ssize_t i = 0; i < nkw; ++i) {
    PyObject* key = PyTuple_GET_ITEM(kwnames, i);
    int found = -1;
    for (int j = 0; j < kSampleArgs && found < 0; ++j)
      if (key == g_sample_interned[j]) found = j;
    for (int j = 0; j < kSampleArgs && found < 0; ++j)
      if (PyUnicode_Compare(key, g_sample_interned[j]) == 0) found = j;
    if (found < 0 || seen[found]) return decline();
    seen[found] = true;
    arg[found] = args[nargs + i];
  }
  if (!arg[0]) return decline();
  try {
    SampleProblem a{};
    ArrayView xv{};
    bool seeded = false;
    if (!plain_sample(arg, a, xv, seeded)) return decline();
    std::vector<py::ssize_t> batch(xv.shape, xv.shape + xv.nd - 1);
    py::object u;
    if (!seeded) {  // the process's generator (fastsoftmax._sample), as the Python path
      py::tuple shape(batch.size());
      for (size_t d = 0; d < batch.size(); ++d) shape[d] = py::int_(batch[d]);
      u = py::reinterpret_steal<py::object>(PyObject_CallOneArg(g_fresh_uniforms, shape.ptr()));
      if (!u) return nullptr;
      a.has_u = true;
      a.u = {static_cast<const double*>(flat(u, a.rows, 'f', 8, false, "u")), 1};
    }
    py::array_t<int64_t> tokens(batch);
    a.tokens = tokens.mutable_data();
    py::object lp;  // (a default py::array is an empty array, not null)
    std::vector<double> lp64;
    if (a.logprobs != Logprobs::none) {
      if (a.dt == DType::f64) {
        py::array_t<double> l(batch);
        a.logprob = l.mutable_data();
        lp = l;
      } else {
        lp64.resize(size_t(a.rows));
        a.logprob = lp64.data();
      }
    }
    run_released(a);
    if (a.logprobs != Logprobs::none && a.dt == DType::f32) {  // lp.astype(float32)
      py::array_t<float> l(batch);
      float* d = l.mutable_data();
      for (int64_t r = 0; r < a.rows; ++r) d[r] = float(lp64[size_t(r)]);
      lp = l;
    }
    PyObject* t = shaped(std::move(tokens));
    if (!t) return nullptr;
    PyObject* l = Py_None;
    Py_INCREF(l);
    if (lp.ptr()) {
      Py_DECREF(l);
      l = shaped(py::reinterpret_borrow<py::array>(lp));
      if (!l) {
        Py_DECREF(t);
        return nullptr;
      }
    }
    PyObject* res = PyObject_CallFunctionObjArgs(g_sample_type, t, l, Py_None, Py_None, nullptr);
    Py_DECREF(t);
    Py_DECREF(l);
    return res;
  } catch (py::error_already_set& e) {
    e.restore();
  } catch (const std::bad_alloc&) {
    PyErr_NoMemory();
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
  }
  return nullptr;
}

PyMethodDef kSampleDef = {
    "sample", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(sample_vc)),
    METH_FASTCALL | METH_KEYWORDS,
    "sample($module, /, logits, *, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, "
    "where=None, seed=None, offset=0, rng=None, u=None, logprobs='raw', top_logprobs=0)\n--\n\n"
    "Draw the next token of each row of `logits` (..., V): temperature, min_p, top_k and\n"
    "top_p filters, then one inverse-CDF draw in token-id order (docs/contract.md §12).\n"
    "Returns Sample(tokens, logprobs, top_tokens, top_logprobs); see\n"
    "fastsoftmax._sample.sample for the full description."};

}  // namespace

void register_select(py::module_& m) {
  using namespace pybind11::literals;
  m.def("_top_k", &top_k_core, "x"_a, "axis"_a, "k"_a, "largest"_a, "transform"_a, "values"_a,
        "indices"_a, "top_k core (arguments normalized by fastsoftmax._select).");
  g_one_f = PyFloat_FromDouble(1.0);
  g_zero_i = PyLong_FromLong(0);
  g_zero_f = PyFloat_FromDouble(0.0);
  g_raw = PyUnicode_InternFromString("raw");
  for (int j = 0; j < kSampleArgs; ++j) g_sample_interned[j] = PyUnicode_InternFromString(kSampleNames[j]);
  PyObject* f = PyCFunction_NewEx(&kSampleDef, m.ptr(), m.attr("__name__").ptr());
  if (!f) throw py::error_already_set();
  m.add_object("sample", py::reinterpret_steal<py::object>(f));
  // Owned references deliberately never released (no destruction after the interpreter).
  m.def("_set_sample_fallback", [](py::object fn, py::object type, py::object fresh) {
    for (PyObject** g : {&g_sample_py, &g_sample_type, &g_fresh_uniforms}) Py_XDECREF(*g);
    g_sample_py = fn.inc_ref().ptr();
    g_sample_type = type.inc_ref().ptr();
    g_fresh_uniforms = fresh.inc_ref().ptr();
  });
  m.def("_sample", &sample_core, "logits"_a, "where"_a, "temperature"_a, "top_k"_a, "top_p"_a,
        "min_p"_a, "u"_a, "seed"_a, "offset"_a, "logprobs"_a, "tokens"_a, "logprob"_a,
        "sampler core (arguments normalized by fastsoftmax._sample).");
}

}  // namespace fastsoftmax
