// One view of a NumPy array for every binding (module.cpp, bind_training.cpp): its
// data, shape, strides, dtype number, byte order and flags straight from the
// PyArrayObject (no pybind11 temporaries: the small-call path is sub-microsecond),
// and the operand strides the engine walks.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <atomic>
#include <cstdint>

#include "engine/dims.h"
#include "engine/dtype.h"

namespace fastsoftmax {

// NumPy's type numbers and flags (numpy/ndarraytypes.h).
constexpr int kNpyBool = 0, kNpyInt = 5, kNpyLong = 7, kNpyLongLong = 9, kNpyFloat = 11,
              kNpyDouble = 12, kNpyHalf = 23;
constexpr int kFlagC = 0x1, kFlagF = 0x2, kFlagAligned = 0x100, kFlagWriteable = 0x400;

struct ArrayView {
  char* data;
  int nd;
  const Py_intptr_t* shape;
  const Py_intptr_t* strides;
  int type_num;
  char byteorder;
  int flags;
};

inline ArrayView view_of(pybind11::handle h) {
  auto* a = pybind11::detail::array_proxy(h.ptr());
  auto* d = pybind11::detail::array_descriptor_proxy(a->descr);
  return {a->data, a->nd, a->dimensions, a->strides, d->type_num, d->byteorder, a->flags};
}

// ml_dtypes' bfloat16 has no fixed type number: NumPy assigns one (>= NPY_USERDEF,
// 256) when ml_dtypes registers the dtype. fastsoftmax._api recognizes the dtype and
// hands its number over (_core._register_bfloat16) the first time it sees it (or at
// import, when ml_dtypes is loaded already); -1 until then.
inline std::atomic<int> g_bf16_type_num{-1};

// The float dtype of a NumPy type number, if it is one the drivers compute on.
inline bool dtype_of(int type_num, DType& out) {
  switch (type_num) {
    case kNpyHalf: out = DType::f16; return true;
    case kNpyFloat: out = DType::f32; return true;
    case kNpyDouble: out = DType::f64; return true;
    default:
      if (type_num < 256 || type_num != g_bf16_type_num.load(std::memory_order_relaxed))
        return false;
      out = DType::bf16;
      return true;
  }
}

inline bool native_aligned(const ArrayView& v) {
  return (v.byteorder == '=' || v.byteorder == '<' || v.byteorder == '|') &&
         (v.flags & kFlagAligned);
}

// dims [d0, d1) of the shape / strides, as the engine's DimVec.
inline DimVec<int64_t> shape_of(const ArrayView& v, int d0, int d1) {
  DimVec<int64_t> s;
  s.assign(v.shape + d0, v.shape + d1);
  return s;
}
inline DimVec<int64_t> strides_of(const ArrayView& v, int d0, int d1) {
  DimVec<int64_t> s;
  s.assign(v.strides + d0, v.strides + d1);
  return s;
}

}  // namespace fastsoftmax
