// The two passes of a row split across arrays (partials.h): the table's reduce and
// finish kernels over blocks of kBlock, rows split across threads by parallel_chunks
// (each row computed the same way whoever runs it: the bits never depend on threads).
#include "partials.h"

#include <cmath>
#include <limits>

#include "engine/blocks.h"
#include "engine/threads.h"
#include "fastsoftmax/kernels.h"

namespace fastsoftmax {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

template <class C>
void partials_as(const RowsProblem& p) {
  const auto& k = softmax_set<C, C>(kernels());
  const C* x = static_cast<const C*>(p.x);
  const int64_t n = p.n;
  parallel_chunks(p.rows, threads_for(p.rows * n, p.threads), [&](int64_t r0, int64_t r1) {
    Buf<Partial> parts;
    for (int64_t r = r0; r < r1; ++r) {
      Merged m{-kInf, 0.0, 0.0};
      if (n > 0) m = reduce_row(k, x + r * p.ldx, n, parts);
      if (!std::isfinite(m.max)) m.sum = m.rest = 0.0;
      p.max[r] = m.max;
      p.sum[r] = m.sum;
      p.rest[r] = m.rest;
    }
  });
}

template <class C>
void finish_as(const RowsProblem& p) {
  const auto& k = softmax_set<C, C>(kernels());
  const C* x = static_cast<const C*>(p.x);
  C* y = static_cast<C*>(p.y);
  const int64_t n = p.n;
  const bool sm = p.op == Op::softmax;
  // An output this large leaves the cache before it is read again: streamed stores
  // where the ISA has them (no read for ownership of y; the same bits), as the
  // driver's long rows.
  const bool stream = streams_output(p.rows * n * int64_t(sizeof(C)));
  const auto sm_finish =
      stream && k.softmax_finish_stream ? k.softmax_finish_stream : k.softmax_finish;
  const auto ls_finish =
      stream && k.log_softmax_finish_stream ? k.log_softmax_finish_stream : k.log_softmax_finish;
  parallel_chunks(p.rows, threads_for(p.rows * n, p.threads), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const C* xr = x + r * p.ldx;
      C* yr = y + r * n;
      const double mx = p.max[r];
      if (!std::isfinite(mx)) {  // NaN and +inf rows: NaN; -inf (all masked): 0 / -inf
        const C v = mx == -kInf ? (sm ? C(0) : C(-kInf)) : C(std::numeric_limits<double>::quiet_NaN());
        for (int64_t i = 0; i < n; ++i) yr[i] = v;
        continue;
      }
      const C m = C(mx);
      const C a = sm ? C(1.0 / p.sum[r]) : C(std::log1p(p.rest[r]));
      for (int64_t b = 0; b < num_blocks(n); ++b) {
        const int64_t off = b * kBlock, len = block_len(n, b);
        (sm ? sm_finish : ls_finish)(xr + off, yr + off, len, m, a);
      }
    }
  });
}

}  // namespace

void row_partials(const RowsProblem& p) {
  if (p.dtype == DType::f64)
    partials_as<double>(p);
  else
    partials_as<float>(p);
}

void row_finish(const RowsProblem& p) {
  if (p.dtype == DType::f64)
    finish_as<double>(p);
  else
    finish_as<float>(p);
}

}  // namespace fastsoftmax
