// pybind11 binding of the selection family (select.h): `_core._top_k`, an internal
// entry. fastsoftmax._select owns every argument rule and raises the user's errors
// (docs/contract.md §11); it hands over a native aligned x, a normalized axis, a k in
// [0, n] and the two outputs it allocated. The checks here ("internal: ...") only keep
// a wrong internal call from crashing or writing out of bounds.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "driver.h"
#include "numpy_view.h"
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
  DType dt;
  internal_check(dtype_of(xv.type_num, dt) && native_aligned(xv), "x");
  internal_check(axis >= 0 && axis < xv.nd, "axis");
  const int64_t n = xv.shape[axis];
  internal_check(k >= 0 && k <= n, "k");
  internal_check(transform >= 0 && transform <= 2, "transform");
  const ArrayView vv = view_of(values), iv = view_of(indices);
  check_result(vv, xv, axis, k, xv.type_num, itemsize(dt), values, "values");
  check_result(iv, xv, axis, k, iv.type_num, 8, indices, "indices");
  internal_check(iv.type_num == kNpyLong || iv.type_num == kNpyLongLong, "indices");
  TopK a{};
  a.dt = dt;
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

}  // namespace

void register_select(py::module_& m) {
  using namespace pybind11::literals;
  m.def("_top_k", &top_k_core, "x"_a, "axis"_a, "k"_a, "largest"_a, "transform"_a, "values"_a,
        "indices"_a, "top_k core (arguments normalized by fastsoftmax._select).");
}

}  // namespace fastsoftmax
