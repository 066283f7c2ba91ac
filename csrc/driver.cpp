// The N-D driver.
//
// 1. Normalize: drop length-1 dims, split kept ("outer") and reduced dims, sort
//    each by x stride and merge neighbours that are contiguous in every operand
//    (tuple axes collapse into one where the strides allow).
// 2. Pick a mode:
//    ROW    one reduced dim, contiguous in x (and y): row kernels straight on memory.
//    PANEL  one reduced dim, strided, and a kept dim contiguous in x (and y): panel
//           kernels across that dim (column tiles whose exps stay in cache, or a
//           sweep for very long reduced dims: kernels/generic/panel_*.h).
//    GATHER anything else, or where=/temperature, or a dtype without kernels: each
//           row (or kBlock block of a long row) is gathered into a per-thread buffer
//           in the compute type (contiguous rows by the ISA's vector gather_row),
//           computed there, scattered back. Never an input-sized temporary.
//    (logsumexp with b=: in double, element by element, SciPy's signed sums;
//    return_sign without b: any of the above, then the signs from the results.)
// 3. Threads: rows are split in contiguous chunks; a few rows longer than kBlock
//    are split by blocks instead. Each row is always computed the same way (blocks
//    of kBlock, partials merged in block order), so bits never depend on threads.
#include "driver.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <numeric>

#include "fastsoftmax/common.h"
#include "fastsoftmax/kernels.h"
#include "kernels/simd_common.h"
#include "engine/blocks.h"
#include "engine/layout.h"
#include "engine/threads.h"

#ifdef FASTSOFTMAX_OPENMP
#include <omp.h>
#endif

namespace fastsoftmax {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

// Rows shorter than this are written with plain stores even then: most of their lines
// are partial (a row at 16 bytes past a line, as large NumPy arrays start, has a head
// and a tail line shared with its neighbours, written by plain or masked stores after
// a read for ownership), so streaming saves little and mixes the two kinds of stores.
// Measured on a Zen 3 (AVX2), x copy, streamed -> plain: (262144, 16) 10.2 -> 3.8,
// (65536, 32) 7.7 -> 2.0, (32768, 64) 5.1 -> 2.2, log_softmax 2.5 -> 1.9; (16384, 100)
// and (8192, 128) level.
constexpr int64_t kStreamRowMinBytes = 512;

// Panels are cut into this many lanes per call (fewer where the threads need more
// pieces): the panel kernels cut a call into their own column tiles, or sweep it row
// by row (kernels/generic/panel_tiles.h, panel_sweep.h), the same way for every lane whatever the call's width,
// so the width only sets how the work is shared; it never changes a lane's bits.
constexpr int64_t kPanelCallLanes = 4096;

// Operand slots (Dim::st): x, y, where, b, sign.
enum Opnd { X = 0, Y = 1, M = 2, B = 3, SG = 4 };
static_assert(SG < kMaxOperands, "engine/layout.h: one slot per operand");

struct Layout {
  DimVec<Dim> outer;  // kept dims, outermost first
  DimVec<Dim> red;    // reduced dims, outermost first
  int64_t rows = 1;        // product of outer sizes
  int64_t n = 1;           // product of reduced sizes
};

const Operand& operand(const Problem& p, int k) {
  switch (k) {
    case X: return p.x;
    case Y: return p.y;
    case M: return p.mask;
    case B: return p.b;
    default: return p.sign;
  }
}

Layout normalize(const Problem& p) {
  Layout L;
  for (size_t d = 0; d < p.shape.size(); ++d) {
    if (p.shape[d] == 1) continue;
    Dim dim{p.shape[d], {}};
    for (int k = 0; k < kMaxOperands; ++k) {
      const Operand& o = operand(p, k);
      dim.st[k] = o.data ? o.strides[d] : 0;
    }
    (p.reduced[d] ? L.red : L.outer).push_back(dim);
  }
  collapse(L.outer, true);
  collapse(L.red, true);
  L.rows = product(L.outer);
  L.n = product(L.red);
  return L;
}

// S: the output's storage type. Results that end in float32 or float16 take the
// inline log1p (simd_common.h; no libm call per row of a batch).
template <class S>
double lse_value(const Merged& r) {
  const double l = std::is_same<S, double>::value ? std::log1p(r.rest) : simd::log1p_sum_f32(r.rest);
  return std::isfinite(r.max) ? r.max + l : r.max;  // NaN/+inf/-inf as is
}

// Value a special (non-finite max) row takes everywhere.
double special_value(double max, Op op) {
  if (max == -kInf) return op == Op::log_softmax ? -kInf : 0.0;
  return kNaN;
}

// ---- one contiguous row, any length (ROW mode and gathered rows) --------------
// `nt` > 1 splits the blocks of a long row across threads (same bits).
template <class S, class C>
void row_contiguous(const SoftmaxKernels<S, C>& k, Op op, const S* x, S* y, int64_t n, int nt,
                    double* lse_out) {
  if (n <= kBlock) {
    if (op == Op::softmax) {
      k.softmax_row(x, y, n);
    } else if (op == Op::log_softmax) {
      k.log_softmax_row(x, y, n);
    } else {
      *lse_out = lse_value<S>(merged_of(k.reduce(x, n)));
    }
    return;
  }
  const int64_t nb = num_blocks(n);
  std::unique_ptr<Partial[]> parts(new Partial[nb]);
  parallel_chunks(nb, nt, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) parts[b] = k.reduce(x + b * kBlock, block_len(n, b));
  });
  const Merged r = merge(parts.get(), nb);
  if (op == Op::logsumexp) {
    *lse_out = lse_value<S>(r);
    return;
  }
  if (!std::isfinite(r.max)) {
    const double v = special_value(r.max, op);
    for (int64_t i = 0; i < n; ++i) store(y + i, v);
    return;
  }
  const C m = C(r.max);
  const C a = op == Op::softmax ? C(1.0 / r.sum) : C(std::log1p(r.rest));
  // The row is longer than a block: its output will not be re-read from cache, so
  // it is streamed where the ISA can (same bits as the plain finish). With every
  // block's min (the reduce's, -inf where it took none), the ISA's streamed finish
  // may skip its exp's clamp and flush (the same bits).
  if (op == Op::softmax && k.softmax_finish_min) {
    double mn = HUGE_VAL;
    for (int64_t b = 0; b < nb; ++b) mn = std::min(mn, parts[b].min);
    parallel_chunks(nb, nt, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b)
        k.softmax_finish_min(x + b * kBlock, y + b * kBlock, block_len(n, b), m, a, C(mn));
    });
    return;
  }
  auto finish = op == Op::softmax
                    ? (k.softmax_finish_stream ? k.softmax_finish_stream : k.softmax_finish)
                    : (k.log_softmax_finish_stream ? k.log_softmax_finish_stream
                                                   : k.log_softmax_finish);
  parallel_chunks(nb, nt, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) finish(x + b * kBlock, y + b * kBlock, block_len(n, b), m, a);
  });
}

template <class S, class C>
void run_rows(const Problem& p, const Layout& L, const SoftmaxKernels<S, C>& k) {
  const int64_t n = L.n, rows = L.rows;
  const int nt = threads_for(rows * n, p.threads);
  // Rows at one constant stride (a single outer dim): the batch kernels, in chunks
  // so logsumexp's partials stay on the stack. Same bits as one row at a time.
  const bool batch = n <= kBlock && L.outer.size() == 1 && k.softmax_rows && k.log_softmax_rows &&
                     k.reduce_rows && L.outer[0].st[X] % int64_t(sizeof(S)) == 0 &&
                     L.outer[0].st[Y] % int64_t(sizeof(S)) == 0;
  if (batch) {
    const int64_t ldx = L.outer[0].st[X] / int64_t(sizeof(S));
    const int64_t ldy = L.outer[0].st[Y] / int64_t(sizeof(S));
    const S* x0 = reinterpret_cast<const S*>(p.x.data);
    S* y0 = reinterpret_cast<S*>(p.y.data);
    // Outputs this large are not re-read from cache: streaming stores, no
    // read-for-ownership of y (kernels/generic/row_batches.h), unless the ISA keeps plain stores
    // for rows this long (avx2.cpp).
    const bool stream = streams_output(rows * n * int64_t(sizeof(S))) &&
                        n * int64_t(sizeof(S)) >= kStreamRowMinBytes &&
                        n * int64_t(sizeof(S)) < k.stream_rows_below_bytes;
    auto softmax_rows = stream && k.softmax_rows_stream ? k.softmax_rows_stream : k.softmax_rows;
    auto log_softmax_rows =
        stream && k.log_softmax_rows_stream ? k.log_softmax_rows_stream : k.log_softmax_rows;
    parallel_chunks(rows, nt, [&](int64_t r0, int64_t r1) {
      if (p.op == Op::softmax) return softmax_rows(x0 + r0 * ldx, ldx, y0 + r0 * ldy, ldy, n, r1 - r0);
      if (p.op == Op::log_softmax)
        return log_softmax_rows(x0 + r0 * ldx, ldx, y0 + r0 * ldy, ldy, n, r1 - r0);
      constexpr int64_t kChunk = 64;
      Partial parts[kChunk];
      for (int64_t c = r0; c < r1; c += kChunk) {
        const int64_t cnt = std::min(kChunk, r1 - c);
        k.reduce_rows(x0 + c * ldx, ldx, n, cnt, parts);
        for (int64_t j = 0; j < cnt; ++j) store(y0 + (c + j) * ldy, lse_value<S>(merged_of(parts[j])));
      }
    });
    return;
  }
  // One row at a time (a few long rows: in turn, their blocks split across threads).
  struct NoScratch {};
  for_rows<NoScratch>(L.outer, rows, n, p.threads, [&](int64_t, const int64_t* off, NoScratch*, int nt_row) {
    const S* x = reinterpret_cast<const S*>(p.x.data + off[X]);
    S* y = reinterpret_cast<S*>(p.y.data + off[Y]);
    double lse;
    row_contiguous(k, p.op, x, y, n, nt_row, &lse);
    if (p.op == Op::logsumexp) store(y, lse);
  });
}

// ---- PANEL mode ----------------------------------------------------------------
template <class S, class C>
void run_panels(const Problem& p, const Layout& L, const SoftmaxKernels<S, C>& k, size_t lane_dim) {
  const int64_t isz = int64_t(sizeof(S));
  DimVec<Dim> outer = L.outer;
  const Dim lanes = outer[lane_dim];
  outer.erase_at(int(lane_dim));
  const Dim& red = L.red[0];
  const int64_t n = red.size, W = lanes.size;
  const int64_t ldx = red.st[X] / isz, ldy = red.st[Y] / isz;
  int64_t outer_rows = 1;
  for (const Dim& d : outer) outer_rows *= d.size;
  const int nt = threads_for(L.rows * n, p.threads);
  int64_t tiles = (W + kPanelCallLanes - 1) / kPanelCallLanes;
  if (outer_rows * tiles < nt) tiles = std::min((W + 15) / 16, (nt + outer_rows - 1) / outer_rows);
  const int64_t tw = std::min(W, ((W + tiles - 1) / tiles + 15) / 16 * 16);
  tiles = (W + tw - 1) / tw;
  parallel_chunks(outer_rows * tiles, nt, [&](int64_t i0, int64_t i1) {
    OuterWalk w(outer);
    std::unique_ptr<C[]> lse;
    if (p.op == Op::logsumexp) lse.reset(new C[tw]);
    int64_t cur_row = -1;
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t r = i / tiles, t = i % tiles;
      if (r != cur_row) {
        if (cur_row + 1 == r && cur_row >= 0)
          w.next();
        else
          w.seek(r);
        cur_row = r;
      }
      const int64_t j0 = t * tw, wc = std::min(tw, W - j0);
      const S* x = reinterpret_cast<const S*>(p.x.data + w.off[X] + j0 * lanes.st[X]);
      char* ybase = p.y.data + w.off[Y] + j0 * lanes.st[Y];
      if (p.op == Op::softmax) {
        k.softmax_panel(x, ldx, reinterpret_cast<S*>(ybase), ldy, n, wc);
      } else if (p.op == Op::log_softmax) {
        k.log_softmax_panel(x, ldx, reinterpret_cast<S*>(ybase), ldy, n, wc);
      } else {
        k.logsumexp_panel(x, ldx, n, wc, lse.get());
        for (int64_t j = 0; j < wc; ++j)
          store(reinterpret_cast<S*>(ybase + j * lanes.st[Y]), double(lse[j]));
      }
    }
  });
}

// ---- GATHER mode -----------------------------------------------------------------
// The gathered span is read from memory while the kernels that follow compute with
// memory idle: the loop also prefetches (into L2) as many bytes ahead as it reads,
// which is the next row's span where rows are adjacent (x[:, ::2]), so the next
// gather finds its lines in cache and the two overlap.
template <int kStride, class C>
void gather_stride(const C* __restrict src, int64_t cnt, C* __restrict buf) {
  constexpr int64_t kChunk = 64;  // elements per step: kStride lines of source
  constexpr uintptr_t kStep = uintptr_t(kChunk * kStride) * sizeof(C);
  // integer arithmetic: the bytes ahead may lie past the array (a prefetch never faults)
  uintptr_t ahead = reinterpret_cast<uintptr_t>(src) + uintptr_t(cnt * kStride) * sizeof(C);
  int64_t i = 0;
  for (; i + kChunk <= cnt; i += kChunk, ahead += kStep) {
    for (uintptr_t b = 0; b < kStep; b += 64)
      __builtin_prefetch(reinterpret_cast<const void*>(ahead + b), 0, 2);
    for (int64_t j = i; j < i + kChunk; ++j) buf[j] = src[j * kStride];
  }
  for (; i < cnt; ++i) buf[i] = src[i * kStride];
}

// The ISA's helpers for gathered rows (nullptr where it has none): gather_row for a
// contiguous row of x (and of the mask), narrow_row for float16 and bfloat16 results
// into a contiguous row of y.
template <class S, class C>
struct GatherKernels {
  void (*gather)(const S* x, const bool* m, C* y, int64_t n, C t);
  void (*narrow)(const C* x, S* y, int64_t n);
};

template <class S, class C>
void gather_block(const Problem& p, const RowWalk& walk, const int64_t base[kMaxOperands],
                  int64_t e0, int64_t cnt, C* buf, const GatherKernels<S, C>& g) {
  const char* xb = p.x.data + base[X];
  const bool scale = p.temperature != 1.0;
  const C T = C(p.temperature);
  const char* mb = p.mask.data ? p.mask.data + base[M] : nullptr;
  if (walk.dims.size() == 1 && (scale || mb) && g.gather &&
      walk.dims[0].st[X] == int64_t(sizeof(S)) && (!mb || walk.dims[0].st[M] == 1)) {
    // in vectors: the per-element walk below costs several times the kernels
    return g.gather(reinterpret_cast<const S*>(xb) + e0,
                    mb ? reinterpret_cast<const bool*>(mb) + e0 : nullptr, buf, cnt, T);
  }
  if (walk.dims.size() == 1 && !scale && !mb) {  // the common case: one strided axis
    const int64_t st = walk.dims[0].st[X];
    const char* src = xb + e0 * st;
    if constexpr (std::is_same<S, C>::value) {
      // Small element strides (x[:, ::2], a channel of interleaved data): a loop with
      // the stride known at compile time, which the compiler vectorizes with shuffles.
      if (st % int64_t(sizeof(S)) == 0 && reinterpret_cast<uintptr_t>(src) % sizeof(S) == 0) {
        const S* s = reinterpret_cast<const S*>(src);
        switch (st / int64_t(sizeof(S))) {
          case 2: return gather_stride<2>(s, cnt, buf);
          case 3: return gather_stride<3>(s, cnt, buf);
          case 4: return gather_stride<4>(s, cnt, buf);
          default: break;
        }
      }
    }
    for (int64_t i = 0; i < cnt; ++i) buf[i] = C(load(reinterpret_cast<const S*>(src + i * st)));
    return;
  }
  walk.for_range(e0, cnt, [&](int64_t i, const int64_t* off) {
    C v = C(load(reinterpret_cast<const S*>(xb + off[X])));
    if (scale) v = v / T;
    if (mb && !mb[off[M]]) v = -std::numeric_limits<C>::infinity();
    buf[i] = v;
  });
}

template <class S, class C>
void scatter_block(const Problem& p, const RowWalk& walk, const int64_t base[kMaxOperands],
                   int64_t e0, int64_t cnt, const C* buf, const GatherKernels<S, C>& g) {
  char* yb = p.y.data + base[Y];
  if (walk.dims.size() == 1) {
    const int64_t st = walk.dims[0].st[Y];
    char* dst = yb + e0 * st;
    // float16 / bfloat16 into a contiguous row: converted in vectors (the scalar
    // conversion below costs ten times the kernels)
    if (g.narrow && st == int64_t(sizeof(S))) return g.narrow(buf, reinterpret_cast<S*>(dst), cnt);
    for (int64_t i = 0; i < cnt; ++i) store(reinterpret_cast<S*>(dst + i * st), double(buf[i]));
    return;
  }
  walk.for_range(e0, cnt, [&](int64_t i, const int64_t* off) {
    store(reinterpret_cast<S*>(yb + off[Y]), double(buf[i]));
  });
}

// A thread's buffers for gathered rows: the row (or one block of a long row) in the
// compute type, and a long row's block partials (the first thread's, shared).
template <class C>
struct GatherScratch {
  Buf<C> buf;
  Buf<Partial> parts;
};

template <class S, class C>
void gathered_row(const Problem& p, const Layout& L, const SoftmaxKernels<C, C>& k,
                  const GatherKernels<S, C>& g, const int64_t base[kMaxOperands],
                  GatherScratch<C>* pool, int nt) {
  const RowWalk walk(L.red);
  const int64_t n = L.n;
  S* yrow = reinterpret_cast<S*>(p.y.data + base[Y]);
  if (n <= kBlock) {
    C* buf = pool[0].buf.get(n);
    gather_block<S, C>(p, walk, base, 0, n, buf, g);
    if (p.op == Op::logsumexp) {
      store(yrow, lse_value<S>(merged_of(k.reduce(buf, n))));
      return;
    }
    // The output row is contiguous and of the compute type: write it directly.
    const bool direct = std::is_same<S, C>::value && L.red.size() == 1 &&
                        L.red[0].st[Y] == int64_t(sizeof(S));
    C* dst = direct ? reinterpret_cast<C*>(yrow) : buf;
    if (p.op == Op::softmax)
      k.softmax_row(buf, dst, n);
    else
      k.log_softmax_row(buf, dst, n);
    if (!direct) scatter_block<S, C>(p, walk, base, 0, n, buf, g);
    return;
  }
  // Long row: reduce block by block, merge in order, then finish block by block.
  const int64_t nb = num_blocks(n);
  const int nt_eff = int(std::min<int64_t>(nt, nb));
  Partial* parts = pool[0].parts.get(nb);
  // each thread's own block buffer (for_rows: one scratch per thread sharing the row)
  auto block_buf = [&]() { return pool[nt_eff > 1 ? thread_id() : 0].buf.get(kBlock); };
  parallel_chunks(nb, nt_eff, [&](int64_t b0, int64_t b1) {
    C* tb = block_buf();
    for (int64_t b = b0; b < b1; ++b) {
      gather_block<S, C>(p, walk, base, b * kBlock, block_len(n, b), tb, g);
      parts[b] = k.reduce(tb, block_len(n, b));
    }
  });
  const Merged r = merge(parts, nb);
  if (p.op == Op::logsumexp) {
    store(yrow, lse_value<S>(r));
    return;
  }
  const bool special = !std::isfinite(r.max);
  const double sv = special_value(r.max, p.op);
  const C m = C(r.max);
  const C a = special ? C(0) : p.op == Op::softmax ? C(1.0 / r.sum) : C(std::log1p(r.rest));
  parallel_chunks(nb, nt_eff, [&](int64_t b0, int64_t b1) {
    C* tb = block_buf();
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t len = block_len(n, b);
      if (special) {
        std::fill(tb, tb + len, C(sv));
      } else {
        gather_block<S, C>(p, walk, base, b * kBlock, len, tb, g);
        if (p.op == Op::softmax)
          k.softmax_finish(tb, tb, len, m, a);
        else
          k.log_softmax_finish(tb, tb, len, m, a);
      }
      scatter_block<S, C>(p, walk, base, b * kBlock, len, tb, g);
    }
  });
}

template <class S, class C>
void run_gather(const Problem& p, const Layout& L, const SoftmaxKernels<C, C>& k,
                const GatherKernels<S, C>& g) {
  for_rows<GatherScratch<C>>(L.outer, L.rows, L.n, p.threads,
                             [&](int64_t, const int64_t* off, GatherScratch<C>* pool, int nt) {
                               gathered_row<S, C>(p, L, k, g, off, pool, nt);
                             });
}

// ---- logsumexp with b= (and return_sign): in double, scipy's semantics ----------
// Entries with b == 0 (or masked out) take no part. sign is that of sum(b*exp(x)).
// The sum goes in chunks through the float64 set's weighted_exp_sum where the ISA has
// one (x - max and the weights gathered into double buffers first: std::exp one
// element at a time was most of the time); a row whose sum comes out near the exp's
// flush to zero (terms cancelling down to subnormal size) is redone with std::exp.
constexpr int64_t kWeightedChunk = 2048;
constexpr double kWeightedTiny = 0x1p-960;

template <class S>
void run_lse_weighted(const Problem& p, const Layout& L) {
  const int64_t n = L.n, rows = L.rows;
  const int nt = threads_for(rows * n, p.threads);
  const auto wsum = kernels().softmax.f64.weighted_exp_sum;
  parallel_chunks(rows, nt, [&](int64_t r0, int64_t r1) {
    std::unique_ptr<double[]> dbuf, wbuf;
    if (wsum) {
      dbuf.reset(new double[size_t(std::min(n, kWeightedChunk))]);
      wbuf.reset(new double[size_t(std::min(n, kWeightedChunk))]);
    }
    const RowWalk walk(L.red);
    OuterWalk w(L.outer);
    w.seek(r0);
    for (int64_t r = r0; r < r1; ++r, w.next()) {
      const char* xb = p.x.data + w.off[X];
      const char* bb = p.b.data ? p.b.data + w.off[B] : nullptr;
      const char* mb = p.mask.data ? p.mask.data + w.off[M] : nullptr;
      auto weight = [&](const int64_t* off) {
        if (mb && !mb[off[M]]) return 0.0;
        return bb ? *reinterpret_cast<const double*>(bb + off[B]) : 1.0;
      };
      // f(i, x_i, weight_i) for the elements [e0, e0 + cnt): straight loops where x
      // and b are contiguous along the row (no mask), else the general walk
      const bool flat = walk.dims.size() == 1 && !mb && bb &&
                        walk.dims[0].st[X] == int64_t(sizeof(S)) &&
                        walk.dims[0].st[B] == int64_t(sizeof(double));
      auto each = [&](int64_t e0, int64_t cnt, auto&& f) {
        if (flat) {
          const S* xs = reinterpret_cast<const S*>(xb) + e0;
          const double* bs = reinterpret_cast<const double*>(bb) + e0;
          for (int64_t i = 0; i < cnt; ++i) f(i, double(load(xs + i)), bs[i]);
          return;
        }
        walk.for_range(e0, cnt, [&](int64_t i, const int64_t* off) {
          f(i, double(load(reinterpret_cast<const S*>(xb + off[X]))), weight(off));
        });
      };
      double m = -kInf;
      bool nan = false, inf_pos = false, inf_neg = false;
      each(0, n, [&](int64_t, double v, double bw) {
        if (bw == 0.0) return;
        nan |= std::isnan(v) || std::isnan(bw);
        if (v == kInf) (bw > 0 ? inf_pos : inf_neg) = true;
        m = v > m ? v : m;
      });
      double value, sign;
      if (nan || (inf_pos && inf_neg)) {
        value = sign = kNaN;
      } else if (m == kInf) {
        value = kInf;
        sign = inf_pos ? 1.0 : -1.0;
      } else if (m == -kInf) {
        value = -kInf;
        sign = 0.0;
      } else {
        double sum = 0.0;
        if (wsum) {
          double total = 0.0, comp = 0.0;
          for (int64_t e0 = 0; e0 < n; e0 += kWeightedChunk) {
            const int64_t cnt = std::min(kWeightedChunk, n - e0);
            each(e0, cnt, [&](int64_t i, double v, double bw) {
              wbuf[i] = bw;
              dbuf[i] = bw == 0.0 ? -kInf : v - m;
            });
            double part[2];
            wsum(dbuf.get(), wbuf.get(), cnt, part);
            simd::two_sum(total, comp, part[0]);
            comp += part[1];
          }
          sum = total + comp;
        }
        if (!wsum || std::fabs(sum) < kWeightedTiny) {
          CompensatedSum s;
          each(0, n, [&](int64_t, double v, double bw) {
            if (bw != 0.0) s.add(bw * std::exp(v - m));
          });
          sum = s.value();
        }
        if (sum == 0.0) {
          value = -kInf;
          sign = 0.0;
        } else {
          value = m + std::log(std::fabs(sum));
          sign = sum > 0 ? 1.0 : -1.0;
          if (!p.sign.data && sum < 0) value = kNaN;  // scipy: log of a negative sum
        }
      }
      store(reinterpret_cast<S*>(p.y.data + w.off[Y]), value);
      if (p.sign.data) store(reinterpret_cast<S*>(p.sign.data + w.off[SG]), sign);
    }
  });
}

template <class S, class C>
void run_kernels(const Problem& p, const Layout& L) {
  const KernelTable& table = kernels();
  const SoftmaxKernels<S, C>& ks = softmax_set<S, C>(table);
  const SoftmaxKernels<C, C>& kc = gathered_set<S, C>(table);
  const int64_t isz = int64_t(sizeof(S));
  const bool lse = p.op == Op::logsumexp;
  const bool plain = p.temperature == 1.0 && !p.mask.data && ks.reduce != nullptr;
  if (plain && L.red.size() == 1) {
    const Dim& r = L.red[0];
    if (r.st[X] == isz && (lse || r.st[Y] == isz)) return run_rows<S, C>(p, L, ks);
    const bool strides_ok = r.st[X] % isz == 0 && (lse || r.st[Y] % isz == 0);
    if (strides_ok) {
      // the innermost kept dim that is contiguous in x (and y) carries the lanes
      for (size_t d = L.outer.size(); d-- > 0;) {
        const Dim& o = L.outer[d];
        if (o.st[X] == isz && (lse || o.st[Y] == isz)) return run_panels<S, C>(p, L, ks, d);
      }
    }
  }
  run_gather<S, C>(p, L, kc, {ks.gather_row, ks.narrow_row});
}

// logsumexp's return_sign without b: every term exp(x - max) is >= 0, so the sign of
// the sum follows from the result alone (SciPy's rules): NaN with the NaN, 0 where
// the sum is 0 (-inf: an empty, all -inf or fully masked row), else 1. The values
// come from the kernels, the same bits as without return_sign.
template <class S>
void fill_signs(const Problem& p, const Layout& L) {
  OuterWalk w(L.outer);
  w.seek(0);
  for (int64_t r = 0; r < L.rows; ++r, w.next()) {
    const double v = double(load(reinterpret_cast<const S*>(p.y.data + w.off[Y])));
    store(reinterpret_cast<S*>(p.sign.data + w.off[SG]), v != v ? kNaN : v == -kInf ? 0.0 : 1.0);
  }
}

template <class S, class C>
void run_typed(const Problem& p, const Layout& L) {
  const bool lse = p.op == Op::logsumexp;
  if (lse && p.b.data) return run_lse_weighted<S>(p, L);
  run_kernels<S, C>(p, L);
  if (lse && p.sign.data) fill_signs<S>(p, L);
}

}  // namespace

void run(const Problem& p) {
  Layout L = normalize(p);
  if (L.rows == 0) return;
  for (size_t d = 0; d < p.shape.size(); ++d)
    if (p.reduced[d] && p.shape[d] == 0) L.n = 0;
  if (L.n == 0) {
    // Empty reduction: softmax outputs are empty too; logsumexp gives -inf (sign 0).
    if (p.op != Op::logsumexp) return;
    auto fill = [&](auto* type) {
      using S = std::remove_pointer_t<decltype(type)>;
      OuterWalk w(L.outer);
      w.seek(0);
      for (int64_t r = 0; r < L.rows; ++r, w.next()) {
        store(reinterpret_cast<S*>(p.y.data + w.off[Y]), -kInf);
        if (p.sign.data) store(reinterpret_cast<S*>(p.sign.data + w.off[SG]), 0.0);
      }
    };
    switch (p.dtype) {
      case DType::f16: return fill(static_cast<uint16_t*>(nullptr));
      case DType::f32: return fill(static_cast<float*>(nullptr));
      case DType::f64: return fill(static_cast<double*>(nullptr));
      case DType::bf16: return fill(static_cast<bf16_t*>(nullptr));
    }
    return;
  }
  if (L.red.empty()) {  // every reduced dim had length 1: rows of one element
    const int64_t isz = itemsize(p.dtype);
    L.red.push_back(Dim{1, {isz, isz, 0, 0, 0}});
  }
  if (L.outer.empty()) L.outer.push_back(Dim{1, {0, 0, 0, 0, 0}});
  switch (p.dtype) {
    case DType::f16: return run_typed<uint16_t, float>(p, L);
    case DType::f32: return run_typed<float, float>(p, L);
    case DType::f64: return run_typed<double, double>(p, L);
    case DType::bf16: return run_typed<bf16_t, float>(p, L);
  }
}

}  // namespace fastsoftmax
