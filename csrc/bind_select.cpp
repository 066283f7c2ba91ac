// pybind11 binding of the selection family (select.h, sample.h): `_core._top_k` and
// `_core._sample`, internal entries. fastsoftmax._select and ._sample own every
// argument rule and raise the user's errors (docs/contract.md §11, §12); they hand over
// native aligned arrays and the outputs they allocated. The checks here ("internal:
// ...") only keep a wrong internal call from crashing or writing out of bounds.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "driver.h"
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
  py::gil_scoped_release release;
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
  SampleProblem a{};
  a.dt = dt;
  a.n = xv.shape[xv.nd - 1];
  internal_check(a.n >= 1, "vocabulary");
  a.x = xv.data;
  a.xs = xv.strides[xv.nd - 1];
  const Py_intptr_t* mst = nullptr;
  if (!where.is_none()) {
    internal_check(py::isinstance<py::array>(where), "where");
    const ArrayView wv = view_of(where);
    internal_check(wv.type_num == kNpyBool && wv.nd == xv.nd, "where");
    for (int d = 0; d < xv.nd; ++d) internal_check(wv.shape[d] == xv.shape[d], "where");
    a.mask = wv.data;
    a.ms = wv.strides[xv.nd - 1];
    mst = wv.strides;
  }
  a.rows = 1;
  for (int d = 0; d + 1 < xv.nd; ++d) {
    a.rows *= xv.shape[d];
    if (xv.shape[d] == 1) continue;
    a.outer.push_back(Dim{xv.shape[d], {xv.strides[d], mst ? mst[d] : 0, 0, 0, 0}});
  }
  collapse(a.outer, false);  // rows in row-major order: the per-row arrays' order
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
  a.threads = current_num_threads();
  if (a.rows * a.n >= 4096) {
    py::gil_scoped_release release;
    run_sample(a);
  } else {
    run_sample(a);
  }
}

}  // namespace

void register_select(py::module_& m) {
  using namespace pybind11::literals;
  m.def("_top_k", &top_k_core, "x"_a, "axis"_a, "k"_a, "largest"_a, "transform"_a, "values"_a,
        "indices"_a, "top_k core (arguments normalized by fastsoftmax._select).");
  m.def("_sample", &sample_core, "logits"_a, "where"_a, "temperature"_a, "top_k"_a, "top_p"_a,
        "min_p"_a, "u"_a, "seed"_a, "offset"_a, "logprobs"_a, "tokens"_a, "logprob"_a,
        "sampler core (arguments normalized by fastsoftmax._sample).");
}

}  // namespace fastsoftmax
