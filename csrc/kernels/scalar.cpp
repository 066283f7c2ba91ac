// The scalar ISA: the readable reference for every kernel of the table.
// Plain C++; every SIMD kernel is tested against these and against float64.
//
// Row plan (n <= kBlock): one pass for the max (tracking NaN), one pass that
// computes e_i = exp(x_i - max) and accumulates their sum in double (float32) or
// compensated double (float64), then y_i = e_i * (1 / sum) (softmax) or
// y_i = (x_i - max) - log(sum) (log_softmax).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "fastsoftmax/common.h"
#include "fastsoftmax/kernels.h"
#include "kernels/simd_common.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>  // SSE2, the x86-64 baseline: the training loops' stores
#define FASTSOFTMAX_TRAIN_VEC 128
#else
#define FASTSOFTMAX_TRAIN_VEC 0
#endif

namespace fastsoftmax {
namespace scalar {
namespace {

template <class C>
constexpr C kNaN = std::numeric_limits<C>::quiet_NaN();
template <class C>
constexpr C kInf = std::numeric_limits<C>::infinity();

// Exact max of x[0..n) as double, NaN if any element is NaN.
template <class C>
double row_max(const C* x, int64_t n) {
  C m = -kInf<C>;
  bool nan = false;
  for (int64_t i = 0; i < n; ++i) {
    const C v = x[i];
    nan |= (v != v);
    m = v > m ? v : m;
  }
  return nan ? std::numeric_limits<double>::quiet_NaN() : double(m);
}

// Sum of exp(x_i - m), m finite, with the max's term set apart: the entries
// equal to m are counted (each contributes exactly 1), the others are summed
// (float: exp in float, summed in double; double: compensated), so
// rest = sum - 1 keeps the low-order bits of the small terms.
struct SumRest {
  double sum;
  double rest;
};

template <class C>
SumRest sum_exp(const C* x, int64_t n, C m) {
  int64_t at_max = 0;
  CompensatedSum others;
  double others_f = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    if (x[i] == m) {
      ++at_max;
      continue;
    }
    const C e = std::exp(x[i] - m);
    if constexpr (sizeof(C) == 4)
      others_f += double(e);
    else
      others.add(e);
  }
  const double o = sizeof(C) == 4 ? others_f : others.value();
  return {double(at_max) + o, double(at_max - 1) + o};
}

template <class C>
Partial reduce(const C* x, int64_t n) {
  const double m = row_max(x, n);
  if (!std::isfinite(m)) return {m, 0.0, 0.0};
  const SumRest s = sum_exp(x, n, C(m));
  return {m, s.sum, s.rest};
}

// reduce given the row's exact, finite max.
template <class C>
Partial reduce_max(const C* x, int64_t n, C m) {
  const SumRest s = sum_exp(x, n, m);
  return {double(m), s.sum, s.rest};
}

template <class C>
void fill(C* y, int64_t n, C v) {
  for (int64_t i = 0; i < n; ++i) y[i] = v;
}

template <class C>
void softmax_finish(const C* x, C* y, int64_t n, C m, C scale) {
  for (int64_t i = 0; i < n; ++i) y[i] = std::exp(x[i] - m) * scale;
}

template <class C>
void log_softmax_finish(const C* x, C* y, int64_t n, C m, C log_sum) {
  for (int64_t i = 0; i < n; ++i) y[i] = (x[i] - m) - log_sum;
}

// Non-finite max: the whole row is decided by the special-value table.
// Returns true when it wrote the row.
template <class C>
bool special_row(double m, C* y, int64_t n, bool log) {
  if (std::isfinite(m)) return false;
  if (m == -kInf<double>)
    fill(y, n, log ? -kInf<C> : C(0));
  else
    fill(y, n, kNaN<C>);  // NaN, or +inf present
  return true;
}

template <class C>
void softmax_row(const C* x, C* y, int64_t n) {
  const double m = row_max(x, n);
  if (special_row(m, y, n, false)) return;
  const C mc = C(m);
  // Store the exps while summing (same bits as recomputing them), then scale.
  double s;
  if constexpr (sizeof(C) == 4) {
    double acc = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      const C e = std::exp(x[i] - mc);
      y[i] = e;
      acc += double(e);
    }
    s = acc;
  } else {
    CompensatedSum acc;
    for (int64_t i = 0; i < n; ++i) {
      const C e = std::exp(x[i] - mc);
      y[i] = e;
      acc.add(e);
    }
    s = acc.value();
  }
  if (s != s) {  // a NaN that the max could not see cannot exist; keep the table safe
    fill(y, n, kNaN<C>);
    return;
  }
  const C scale = C(1.0 / s);
  for (int64_t i = 0; i < n; ++i) y[i] *= scale;
}

template <class C>
void log_softmax_row(const C* x, C* y, int64_t n) {
  const double m = row_max(x, n);
  if (special_row(m, y, n, true)) return;
  const C mc = C(m);
  const C log_sum = C(std::log1p(sum_exp(x, n, mc).rest));
  log_softmax_finish(x, y, n, mc, log_sum);
}

// ---- panels: lanes contiguous, reduced axis strided --------------------------
// Processed in chunks of kLanes lanes so the per-lane state lives on the stack;
// each lane runs exactly the row algorithm above, so results match row kernels.
constexpr int64_t kLanes = 64;

template <class C>
struct LaneState {
  C max[kLanes];
  double sum[kLanes];   // of the entries below the max (then: total, see below)
  double comp[kLanes];
  double rest[kLanes];  // total - 1, the max's own term set apart
  int64_t at_max[kLanes];
  bool nan[kLanes];
};

template <class C>
void panel_reduce(const C* x, int64_t ldx, int64_t n, int64_t w, LaneState<C>& st) {
  for (int64_t j = 0; j < w; ++j) {
    st.max[j] = -kInf<C>;
    st.nan[j] = false;
    st.sum[j] = 0.0;
    st.comp[j] = 0.0;
    st.at_max[j] = 0;
  }
  for (int64_t i = 0; i < n; ++i) {
    const C* r = x + i * ldx;
    for (int64_t j = 0; j < w; ++j) {
      const C v = r[j];
      st.nan[j] |= (v != v);
      st.max[j] = v > st.max[j] ? v : st.max[j];
    }
  }
  for (int64_t i = 0; i < n; ++i) {
    const C* r = x + i * ldx;
    for (int64_t j = 0; j < w; ++j) {
      if (!std::isfinite(st.max[j])) continue;
      if (r[j] == st.max[j]) {
        ++st.at_max[j];
        continue;
      }
      const double e = double(std::exp(r[j] - st.max[j]));
      if constexpr (sizeof(C) == 4) {
        st.sum[j] += e;
      } else {  // Neumaier, as CompensatedSum
        const double t = st.sum[j] + e;
        st.comp[j] += std::fabs(st.sum[j]) >= std::fabs(e) ? (st.sum[j] - t) + e
                                                          : (e - t) + st.sum[j];
        st.sum[j] = t;
      }
    }
  }
  for (int64_t j = 0; j < w; ++j) {
    const double others = st.sum[j] + st.comp[j];
    st.sum[j] = double(st.at_max[j]) + others;
    st.rest[j] = double(st.at_max[j] - 1) + others;
  }
}

template <class C, bool kLog>
void softmax_panel_impl(const C* x, int64_t ldx, C* y, int64_t ldy, int64_t n, int64_t w) {
  LaneState<C> st;
  for (int64_t j0 = 0; j0 < w; j0 += kLanes) {
    const int64_t wc = std::min(kLanes, w - j0);
    panel_reduce(x + j0, ldx, n, wc, st);
    C a[kLanes];  // scale (softmax) or log_sum (log_softmax)
    for (int64_t j = 0; j < wc; ++j) {
      if (st.nan[j]) st.max[j] = kNaN<C>;
      a[j] = kLog ? C(std::log1p(st.rest[j])) : C(1.0 / st.sum[j]);
    }
    for (int64_t i = 0; i < n; ++i) {
      const C* r = x + i * ldx + j0;
      C* o = y + i * ldy + j0;
      for (int64_t j = 0; j < wc; ++j) {
        const C m = st.max[j];
        C v;
        if (std::isfinite(m))
          v = kLog ? (r[j] - m) - a[j] : std::exp(r[j] - m) * a[j];
        else if (m == -kInf<C>)
          v = kLog ? -kInf<C> : C(0);
        else
          v = kNaN<C>;
        o[j] = v;
      }
    }
  }
}

template <class C>
void softmax_panel(const C* x, int64_t ldx, C* y, int64_t ldy, int64_t n, int64_t w) {
  softmax_panel_impl<C, false>(x, ldx, y, ldy, n, w);
}
template <class C>
void log_softmax_panel(const C* x, int64_t ldx, C* y, int64_t ldy, int64_t n, int64_t w) {
  softmax_panel_impl<C, true>(x, ldx, y, ldy, n, w);
}

template <class C>
void logsumexp_panel(const C* x, int64_t ldx, int64_t n, int64_t w, C* out) {
  LaneState<C> st;
  for (int64_t j0 = 0; j0 < w; j0 += kLanes) {
    const int64_t wc = std::min(kLanes, w - j0);
    panel_reduce(x + j0, ldx, n, wc, st);
    for (int64_t j = 0; j < wc; ++j) {
      const C m = st.max[j];
      out[j0 + j] = st.nan[j]            ? kNaN<C>
                    : !std::isfinite(m) ? m
                                         : C(double(m) + std::log1p(st.rest[j]));
    }
  }
}

// ---- training side -------------------------------------------------------------
// Sparse cross-entropy gradient row: the softmax_row plan with
// y = e * (a / sum) - b (and minus c at the label t) as its last pass; the Partial as
// reduce computes it (the same max and sum).
template <class C>
Partial xent_grad_row(const C* x, C* y, int64_t n, double a, C b, int64_t t, C c, bool) {
  const Partial p = reduce(x, n);
  if (!std::isfinite(p.max)) return p;
  const C m = C(p.max);
  for (int64_t i = 0; i < n; ++i) y[i] = std::exp(x[i] - m);
  const C f = C(a / p.sum);
  for (int64_t i = 0; i < n; ++i) y[i] = y[i] * f - b;
  if (t >= 0 && t < n) y[t] = y[t] - c;
  return p;
}

// log_softmax backward row: out = g - exp(y) * s.
template <class C>
void log_softmax_backward_row(const C* g, const C* y, C* out, int64_t n, C s, bool) {
  for (int64_t i = 0; i < n; ++i) out[i] = g[i] - std::exp(y[i]) * s;
}

// The training family's row loops, the same generic code as the SIMD ISAs' (for the
// baseline vectors: SSE2 on x86-64, plain loops elsewhere).
#include "kernels/generic/training_loops.h"
#undef FASTSOFTMAX_TRAIN_VEC

template <class C>
void fill_training(TrainingKernels<C>& k) {
  k.reduce = reduce<C>;
  k.grad_row = xent_grad_row<C>;
  k.log_softmax_backward_row = log_softmax_backward_row<C>;
  fill_training_loops(k);
}

// The selection family: the same generic code as the SIMD ISAs'.
#include "kernels/generic/select_rows.h"

template <class C>
void fill_set(SoftmaxKernels<C, C>& k) {
  k.softmax_row = softmax_row<C>;
  k.log_softmax_row = log_softmax_row<C>;
  k.reduce = reduce<C>;
  k.reduce_max = reduce_max<C>;
  k.softmax_finish = softmax_finish<C>;
  k.log_softmax_finish = log_softmax_finish<C>;
  k.softmax_panel = softmax_panel<C>;
  k.log_softmax_panel = log_softmax_panel<C>;
  k.logsumexp_panel = logsumexp_panel<C>;
}

}  // namespace
}  // namespace scalar

bool fill_scalar(KernelTable& t) {
  t.isa = Isa::scalar;
  scalar::fill_set(t.softmax.f32);
  scalar::fill_set(t.softmax.f64);
  t.softmax.f16 = SoftmaxKernels<uint16_t, float>{};  // float16 goes through float32 buffers
  t.softmax.bf16 = SoftmaxKernels<bf16_t, float>{};   // bfloat16 too,
  t.softmax.bf16_f32 = t.softmax.f32;  // whose sums set the max's terms apart already
  scalar::fill_training(t.training.f32);
  scalar::fill_training(t.training.f64);
  scalar::fill_select(t.select.f32);
  scalar::fill_select(t.select.f64);
  return true;
}

}  // namespace fastsoftmax
