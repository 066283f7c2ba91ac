// pybind11 binding of the training family (training.h): `_core._xent_sparse`,
// `_core._xent_dense`, `_core._softmax_backward`. They are internal entries:
// fastsoftmax._xent owns every argument rule and raises the user's errors
// (docs/contract.md §4, §9), handing over native aligned arrays with the classes last.
// The checks here ("internal: ...") only keep a wrong internal call from crashing or
// writing out of bounds. The one user-facing error raised here is a rule about the
// data, not the arguments: a sparse label out of [0, C), found in the pass over the
// labels that counts the rows.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "driver.h"
#include "numpy_view.h"
#include "training.h"

namespace py = pybind11;

namespace fastsoftmax {
namespace {

ArrayView checked_view(const py::array& a, const char* name) {
  const ArrayView v = view_of(a);
  if (!native_aligned(v))
    throw py::value_error(std::string("internal: ") + name + " must be aligned and native");
  return v;
}

DType float_dtype(const ArrayView& v, const char* name) {
  DType d;
  if (!dtype_of(v.type_num, d) || d == DType::bf16)  // (no bfloat16 training kernels)
    throw py::type_error(std::string("internal: ") + name + " must be float16/32/64");
  return d;
}

// v's shape is ref's dims [0, nd) (nd = v.nd).
void check_shape(const ArrayView& v, const ArrayView& ref, int nd, const char* name) {
  bool ok = v.nd == nd;
  for (int d = 0; ok && d < nd; ++d) ok = v.shape[d] == ref.shape[d];
  if (!ok) throw py::value_error(std::string("internal: bad shape of ") + name);
}

void check_output(const ArrayView& v, DType dt, const char* name) {
  if (float_dtype(v, name) != dt || !(v.flags & kFlagWriteable))
    throw py::value_error(std::string("internal: ") + name + " must be writable, of the logits dtype");
}

int reduction_of(int red) {
  if (red < kNone || red > kMean) throw py::value_error("internal: bad reduction");
  return red;
}

// The outer dims (every dim of x but the last) with up to four operands' strides over
// them (nullptr: absent, stride 0), collapsed in order (training.h).
DimVec<Dim> outer_dims(const ArrayView& x, const Py_intptr_t* const st[4], int64_t* rows) {
  DimVec<Dim> dims;
  *rows = 1;
  for (int d = 0; d + 1 < x.nd; ++d) {
    *rows *= x.shape[d];
    if (x.shape[d] == 1) continue;
    Dim dim{x.shape[d], {}};
    for (int k = 0; k < 4; ++k) dim.st[k] = st[k] ? st[k][d] : 0;
    dims.push_back(dim);
  }
  collapse(dims, false);
  return dims;
}

// The logits, loss and grad of a cross-entropy call, checked (the labels are the
// caller's): loss of the batch shape for "none", else 0-d; grad like the logits.
struct XentViews {
  ArrayView x, loss, grad;
  DType dt;
  int red;
  bool has_grad;
};

XentViews xent_views(const py::array& logits, const py::array& loss, const py::object& grad,
                     int reduction) {
  XentViews v{};
  v.x = checked_view(logits, "logits");
  v.dt = float_dtype(v.x, "logits");
  if (v.x.nd < 1) throw py::value_error("internal: logits must have a class axis");
  v.red = reduction_of(reduction);
  v.loss = checked_view(loss, "loss");
  check_output(v.loss, v.dt, "loss");
  check_shape(v.loss, v.x, v.red == kNone ? v.x.nd - 1 : 0, "loss");
  v.has_grad = !grad.is_none();
  if (v.has_grad) {
    v.grad = checked_view(grad.cast<py::array>(), "grad");
    check_output(v.grad, v.dt, "grad");
    check_shape(v.grad, v.x, v.x.nd, "grad");
  }
  return v;
}

// The fields both cross-entropy problems share (label_strides: the labels' strides
// over the outer dims).
template <class Problem>
void fill_xent(Problem& a, const XentViews& v, const Py_intptr_t* label_strides, double eps) {
  a.dt = v.dt;
  a.n = v.x.shape[v.x.nd - 1];
  a.x = v.x.data;
  a.xs = v.x.strides[v.x.nd - 1];
  a.eps = eps;
  a.red = v.red;
  a.loss = v.loss.data;
  a.grad = v.has_grad ? v.grad.data : nullptr;
  a.gs = v.has_grad ? v.grad.strides[v.grad.nd - 1] : 0;
  a.threads = current_num_threads();
  const Py_intptr_t* const st[4] = {v.x.strides, label_strides,
                                    v.red == kNone ? v.loss.strides : nullptr,
                                    v.has_grad ? v.grad.strides : nullptr};
  a.outer = outer_dims(v.x, st, &a.rows);
}

// sparse: logits (..., C); labels (...) int32/int64; loss (...) or (); grad like logits.
void xent_sparse(py::array logits, py::array labels, py::object ignore_index, double eps,
                 int reduction, py::array loss, py::object grad) {
  const XentViews v = xent_views(logits, loss, grad, reduction);
  const ArrayView lv = checked_view(labels, "labels");
  const int64_t lsize = int64_t(labels.itemsize());
  const bool is_int64 = lsize == 8 && (lv.type_num == kNpyLong || lv.type_num == kNpyLongLong);
  const bool is_int32 = lsize == 4 && (lv.type_num == kNpyInt || lv.type_num == kNpyLong);
  if (!is_int64 && !is_int32) throw py::type_error("internal: labels must be int32 or int64");
  check_shape(lv, v.x, v.x.nd - 1, "labels");
  SparseXent a{};
  fill_xent(a, v, lv.strides, eps);
  a.lab = lv.data;
  a.lab64 = is_int64;
  a.has_ignore = !ignore_index.is_none();
  a.ignore = a.has_ignore ? ignore_index.cast<int64_t>() : 0;

  // Every label is checked before anything is written; the error names the first
  // bad one in row-major order of the labels' shape.
  int64_t bad_value = 0, count = 0, bad;
  {
    py::gil_scoped_release release;
    bad = first_bad_label(a, &bad_value, &count);
  }
  if (bad >= 0) {
    std::string pos;
    for (int d = v.x.nd - 2, first = 1; d >= 0; --d, first = 0) {
      pos = std::to_string(bad % v.x.shape[d]) + (first ? "" : ", ") + pos;
      bad /= v.x.shape[d];
    }
    throw py::value_error("labels" + (pos.empty() ? std::string() : "[" + pos + "]") + " = " +
                          std::to_string(bad_value) + " is out of range [0, " +
                          std::to_string(a.n) + ")");
  }
  py::gil_scoped_release release;
  run_sparse_xent(a, count);
}

// dense: labels and logits (..., C) (labels any float dtype, zero strides allowed).
void xent_dense(py::array labels, py::array logits, double eps, int reduction, py::array loss,
                py::object grad) {
  const XentViews v = xent_views(logits, loss, grad, reduction);
  const ArrayView lv = checked_view(labels, "labels");
  const int64_t lsize = int64_t(labels.itemsize());
  Elem ldt;
  if (lv.type_num == kNpyBool)
    ldt = Elem::b8;
  else if (lsize == 8 && (lv.type_num == kNpyLong || lv.type_num == kNpyLongLong))
    ldt = Elem::i64;
  else if (lsize == 4 && (lv.type_num == kNpyInt || lv.type_num == kNpyLong))
    ldt = Elem::i32;
  else
    ldt = elem_of(float_dtype(lv, "labels"));
  check_shape(lv, v.x, v.x.nd, "labels");
  DenseXent a{};
  fill_xent(a, v, lv.strides, eps);
  a.ldt = ldt;
  a.lab = lv.data;
  a.ls = lv.strides[lv.nd - 1];
  py::gil_scoped_release release;
  run_dense_xent(a);
}

// grad, y, out (..., C), all of one dtype; grad and y may have zero strides.
void softmax_backward_core(bool log, py::array grad, py::array y, py::array out) {
  const ArrayView gv = checked_view(grad, "grad");
  const DType dt = float_dtype(gv, "grad");
  if (gv.nd < 1) throw py::value_error("internal: need a class axis");
  const ArrayView yv = checked_view(y, "y");
  const ArrayView ov = checked_view(out, "out");
  if (float_dtype(yv, "y") != dt) throw py::value_error("internal: y dtype");
  check_output(ov, dt, "out");
  check_shape(yv, gv, gv.nd, "y");
  check_shape(ov, gv, gv.nd, "out");
  SoftmaxBackward a{};
  a.log = log;
  a.dt = dt;
  a.n = gv.shape[gv.nd - 1];
  a.g = gv.data;
  a.gs = gv.strides[gv.nd - 1];
  a.y = yv.data;
  a.ys = yv.strides[yv.nd - 1];
  a.out = ov.data;
  a.os = ov.strides[ov.nd - 1];
  a.threads = current_num_threads();
  const Py_intptr_t* const st[4] = {gv.strides, yv.strides, ov.strides, nullptr};
  a.outer = outer_dims(gv, st, &a.rows);
  py::gil_scoped_release release;
  run_softmax_backward(a);
}

}  // namespace

void register_training(py::module_& m) {
  using namespace pybind11::literals;
  m.def("_xent_sparse", &xent_sparse, "logits"_a, "labels"_a, "ignore_index"_a, "eps"_a,
        "reduction"_a, "loss"_a, "grad"_a,
        "Sparse softmax cross-entropy core (arguments normalized by fastsoftmax._xent).");
  m.def("_xent_dense", &xent_dense, "labels"_a, "logits"_a, "eps"_a, "reduction"_a, "loss"_a,
        "grad"_a, "Dense softmax cross-entropy core (arguments normalized by fastsoftmax._xent).");
  m.def("_softmax_backward", &softmax_backward_core, "log"_a, "grad"_a, "y"_a, "out"_a,
        "softmax / log_softmax backward core (arguments normalized by fastsoftmax._xent).");
}

}  // namespace fastsoftmax
