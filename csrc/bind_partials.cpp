// pybind11 binding of partials.h: `_core._row_partials` and `_core._row_finish`,
// internal entries of fastsoftmax.dask, which owns every argument rule (it hands over
// C-contiguous float32/float64 (rows, n) arrays and float64 per-row arrays it made).
// The checks here ("internal: ...") only keep a wrong internal call from crashing.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "numpy_view.h"
#include "partials.h"

namespace py = pybind11;

namespace fastsoftmax {
namespace {

void internal_check(bool ok, const char* what) {
  if (!ok) throw py::value_error(std::string("internal: _row_partials/_row_finish: bad ") + what);
}

// x: a native float32/float64 (rows, n) array of contiguous rows (any row stride >= 0
// that is a multiple of the item size).
RowsProblem rows_of(const py::array& x) {
  const ArrayView v = view_of(x);
  RowsProblem p;
  internal_check(v.nd == 2 && native_aligned(v) && dtype_of(v.type_num, p.dtype) &&
                     p.dtype != DType::f16,
                 "x");
  const int64_t isz = itemsize(p.dtype);
  const bool one_row = v.shape[0] <= 1;
  internal_check(v.shape[0] == 0 ||  // nothing is read
                     ((v.shape[1] <= 1 || v.strides[1] == isz) &&
                      (one_row || (v.strides[0] >= 0 && v.strides[0] % isz == 0))),
                 "x strides");
  p.x = v.data;
  p.rows = v.shape[0];
  p.n = v.shape[1];
  p.ldx = one_row ? p.n : v.strides[0] / isz;
  p.threads = current_num_threads();
  return p;
}

// A C-contiguous float64 array of `rows` entries.
double* per_row(const py::array& a, int64_t rows, bool writable, const char* what) {
  const ArrayView v = view_of(a);
  internal_check(v.nd == 1 && v.shape[0] == rows && v.type_num == kNpyDouble &&
                     (v.flags & kFlagC) && native_aligned(v) &&
                     (!writable || (v.flags & kFlagWriteable)),
                 what);
  return reinterpret_cast<double*>(v.data);
}

void partials_entry(py::array x, py::array max, py::array sum, py::array rest) {
  RowsProblem p = rows_of(x);
  p.max = per_row(max, p.rows, true, "max");
  p.sum = per_row(sum, p.rows, true, "sum");
  p.rest = per_row(rest, p.rows, true, "rest");
  py::gil_scoped_release release;
  row_partials(p);
}

void finish_entry(int op, py::array x, py::array y, py::array max, py::array sum,
                  py::array rest) {
  internal_check(op == int(Op::softmax) || op == int(Op::log_softmax), "op");
  RowsProblem p = rows_of(x);
  p.op = Op(op);
  const ArrayView yv = view_of(y), xv = view_of(x);
  internal_check(yv.nd == 2 && yv.shape[0] == p.rows && yv.shape[1] == p.n &&
                     yv.type_num == xv.type_num && (yv.flags & kFlagC) &&
                     (yv.flags & kFlagWriteable) && native_aligned(yv),
                 "y");
  p.y = yv.data;
  p.max = per_row(max, p.rows, false, "max");
  p.sum = per_row(sum, p.rows, false, "sum");
  p.rest = per_row(rest, p.rows, false, "rest");
  py::gil_scoped_release release;
  row_finish(p);
}

}  // namespace

void register_partials(py::module_& m) {
  using namespace pybind11::literals;
  m.def("_row_partials", &partials_entry, "x"_a, "max"_a, "sum"_a, "rest"_a,
        "internal (fastsoftmax.dask): per contiguous row of a (rows, n) float32/64 x, "
        "its (max, sum, rest) partial, written to three float64 arrays.");
  m.def("_row_finish", &finish_entry, "op"_a, "x"_a, "y"_a, "max"_a, "sum"_a, "rest"_a,
        "internal (fastsoftmax.dask): softmax (op 0) or log_softmax (op 1) of each row of "
        "x into y, from the row's merged (max, sum, rest).");
}

}  // namespace fastsoftmax
