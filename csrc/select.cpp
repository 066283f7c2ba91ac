// The selection family's driver: top_k over rows of any layout (engine/), through the
// table's selection kernels; with transform=, the selected entries of softmax(x) /
// log_softmax(x) from the row's merged (max, sum) (the softmax family's reduce and
// finish kernels), without writing the full result.
//
// Rows whose elements are contiguous in the compute type are read in place; others
// (strided, float16, bfloat16) are gathered into a per-thread compute-type buffer. Each row is
// one thread's work (rows split across threads); values are exact copies of x's
// elements (transform none) or computed in the compute type and stored once, in x's
// dtype or (values_compute: the sampler's float32 top_logprobs of bfloat16) unrounded.
#include "select.h"

#include <cmath>
#include <cstring>
#include <limits>

#include "engine/blocks.h"
#include "engine/threads.h"
#include "fastsoftmax/kernels.h"

namespace fastsoftmax {
namespace {

template <class C>
struct SelectScratch {
  Buf<C> row;           // the gathered row (compute type)
  Buf<Ranked<C>> work;  // the kernel's candidates
  Buf<int64_t> idx;
  Buf<C> vals, out;
  Buf<Partial> parts;   // a long row's block partials (transform)
};

// The k selected values as softmax / log_softmax entries of the row (out[0..k)).
template <class C>
void transform_values(const SoftmaxKernels<C, C>& k, Transform tr, const Merged& m, const C* vals,
                      int64_t kk, C* out) {
  if (!std::isfinite(m.max)) {  // a NaN or +inf row: NaN; a row of -inf: 0 / -inf
    const C v = m.max == -HUGE_VAL ? (tr == Transform::softmax ? C(0) : -std::numeric_limits<C>::infinity())
                                   : std::numeric_limits<C>::quiet_NaN();
    for (int64_t j = 0; j < kk; ++j) out[j] = v;
    return;
  }
  if (tr == Transform::softmax)
    k.softmax_finish(vals, out, kk, C(m.max), C(1.0 / m.sum));
  else
    k.log_softmax_finish(vals, out, kk, C(m.max), C(std::log1p(m.rest)));
}

template <class S, class C>
void top_k_rows(const TopK& a) {
  const KernelTable& table = kernels();
  const SelectKernels<C>& sel = select_set<C>(table);
  const SoftmaxKernels<C, C>& sm = gathered_set<S, C>(table);
  const int64_t n = a.n, kk = a.k;
  const bool direct = in_place<S, C>(a.xs);
  for_rows<SelectScratch<C>>(a.outer, a.rows, n, a.threads,
                             [&](int64_t, const int64_t* off, SelectScratch<C>* pool, int) {
    SelectScratch<C>& s = pool[0];
    const char* xb = a.x + off[kTopKX];
    const C* row;
    if (direct) {
      row = reinterpret_cast<const C*>(xb);
    } else {
      C* g = s.row.get(n);
      gather_as<S>(xb, a.xs, n, g);
      row = g;
    }
    int64_t* idx = s.idx.get(kk);
    C* vals = s.vals.get(kk);
    sel.top_k(row, n, kk, a.largest, idx, vals, s.work.get(select_work_size(n, kk)));
    char* ib = a.indices + off[kTopKIndices];
    for (int64_t j = 0; j < kk; ++j) std::memcpy(ib + j * a.is, &idx[j], sizeof(int64_t));
    char* vb = a.values + off[kTopKValues];
    if (a.transform == Transform::none) {  // x's own elements, bit for bit
      for (int64_t j = 0; j < kk; ++j) std::memcpy(vb + j * a.vs, xb + idx[j] * a.xs, sizeof(S));
      return;
    }
    // The row's (max, sum): for largest, the best entry is the max (or says the row is
    // special: NaN, +inf, or only -inf), and one sum pass is left (reduce_max).
    Merged m;
    if (a.largest && !std::isfinite(double(vals[0])))
      m = {double(vals[0]), 0.0, 0.0};
    else if (a.largest && n <= kBlock)
      m = merged_of(sm.reduce_max(row, n, vals[0]));
    else
      m = reduce_row(sm, row, n, s.parts);
    C* out = s.out.get(kk);
    transform_values(sm, a.transform, m, vals, kk, out);
    if (a.values_compute)
      for (int64_t j = 0; j < kk; ++j) std::memcpy(vb + j * a.vs, &out[j], sizeof(C));
    else
      for (int64_t j = 0; j < kk; ++j) store(reinterpret_cast<S*>(vb + j * a.vs), double(out[j]));
  });
}

}  // namespace

void run_top_k(const TopK& a) {
  if (a.rows == 0 || a.k == 0) return;
  switch (a.dt) {
    case DType::f16: return top_k_rows<uint16_t, float>(a);
    case DType::f32: return top_k_rows<float, float>(a);
    case DType::f64: return top_k_rows<double, double>(a);
    case DType::bf16: return top_k_rows<bf16_t, float>(a);
  }
}

}  // namespace fastsoftmax
