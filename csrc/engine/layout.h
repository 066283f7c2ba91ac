// How an op sees its operands: dimensions of one shared shape, each with one byte
// stride per operand (0 broadcasts or marks an absent operand), split into "outer"
// (kept) dims walked row by row and "reduced" dims walked inside a row.
// `collapse` drops nothing but merges neighbours that are contiguous in every operand;
// OuterWalk gives every operand's offset at outer row r; RowWalk walks the elements
// of one row. Used by every family's driver (driver.cpp, training.cpp).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>

#include "engine/dims.h"

namespace fastsoftmax {

// The most operands one op walks together (softmax: x, y, where, b, sign).
constexpr int kMaxOperands = 5;

struct Dim {
  int64_t size;
  int64_t st[kMaxOperands];  // byte strides, one per operand
};

// Merges neighbours of `dims` (outermost first) that are contiguous in every
// operand. With sort_by_first, the dims are first ordered by operand 0's |stride|,
// largest first (the softmax driver: any dim order gives the same rows, only the
// walk changes); without it the order is kept, so rows stay in row-major order of
// the shape (the training ops sum per-row losses in that order).
inline void collapse(DimVec<Dim>& dims, bool sort_by_first) {
  if (sort_by_first)
    std::stable_sort(dims.begin(), dims.end(), [](const Dim& a, const Dim& b) {
      return std::llabs(a.st[0]) > std::llabs(b.st[0]);
    });
  DimVec<Dim> merged;
  for (const Dim& d : dims) {
    if (!merged.empty()) {
      Dim& o = merged.back();
      bool ok = true;
      for (int k = 0; k < kMaxOperands; ++k) ok &= (o.st[k] == d.st[k] * d.size);
      if (ok) {
        o.size *= d.size;
        for (int k = 0; k < kMaxOperands; ++k) o.st[k] = d.st[k];
        continue;
      }
    }
    merged.push_back(d);
  }
  dims = merged;
}

inline int64_t product(const DimVec<Dim>& dims) {
  int64_t p = 1;
  for (const Dim& d : dims) p *= d.size;
  return p;
}

// Byte offsets of every operand at outer row r, row-major over `dims` (outermost
// first), kept incrementally within a contiguous range of rows.
struct OuterWalk {
  const DimVec<Dim>& dims;
  int64_t idx[kMaxDims];
  int64_t off[kMaxOperands] = {};
  explicit OuterWalk(const DimVec<Dim>& d) : dims(d) {}
  void seek(int64_t r) {
    std::fill(off, off + kMaxOperands, 0);
    for (int d = int(dims.size()) - 1; d >= 0; --d) {
      idx[d] = r % dims[d].size;
      r /= dims[d].size;
      for (int k = 0; k < kMaxOperands; ++k) off[k] += idx[d] * dims[d].st[k];
    }
  }
  void next() {
    for (int d = int(dims.size()) - 1; d >= 0; --d) {
      for (int k = 0; k < kMaxOperands; ++k) off[k] += dims[d].st[k];
      if (++idx[d] < dims[d].size) return;
      for (int k = 0; k < kMaxOperands; ++k) off[k] -= dims[d].size * dims[d].st[k];
      idx[d] = 0;
    }
  }
};

// Walks the elements [e0, e0 + cnt) of one row (row-major over the reduced dims),
// calling f(i, off) with the byte offsets of every operand (relative to the row).
struct RowWalk {
  const DimVec<Dim>& dims;
  explicit RowWalk(const DimVec<Dim>& d) : dims(d) {}
  template <class F>
  void for_range(int64_t e0, int64_t cnt, F&& f) const {
    const int nd = int(dims.size());
    int64_t idx[kMaxDims];
    int64_t off[kMaxOperands] = {};
    int64_t rem = e0;
    for (int d = nd - 1; d >= 0; --d) {
      idx[d] = rem % dims[d].size;
      rem /= dims[d].size;
      for (int k = 0; k < kMaxOperands; ++k) off[k] += idx[d] * dims[d].st[k];
    }
    const Dim& in = dims[nd - 1];
    int64_t i = 0;
    while (true) {
      const int64_t run = std::min(in.size - idx[nd - 1], cnt - i);
      for (int64_t j = 0; j < run; ++j, ++i) {
        f(i, off);
        for (int k = 0; k < kMaxOperands; ++k) off[k] += in.st[k];
      }
      if (i >= cnt) return;
      // The innermost dim is exhausted: rewind it and carry into the outer ones.
      for (int k = 0; k < kMaxOperands; ++k) off[k] -= in.size * in.st[k];
      idx[nd - 1] = 0;
      for (int d = nd - 2; d >= 0; --d) {
        for (int k = 0; k < kMaxOperands; ++k) off[k] += dims[d].st[k];
        if (++idx[d] < dims[d].size) break;
        for (int k = 0; k < kMaxOperands; ++k) off[k] -= dims[d].size * dims[d].st[k];
        idx[d] = 0;
      }
    }
  }
};

}  // namespace fastsoftmax
