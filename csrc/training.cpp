// The training family's driver: cross-entropy with logits (sparse and dense labels)
// and the softmax / log_softmax backward passes, on the engine the softmax family
// uses (engine/: layout and walks, row schedule, blocks and their merge, streaming
// rule) and the table's kernels (training family, and the softmax family's finish).
//
// A "row" is one slice along the classes (training.h). Rows whose classes are
// contiguous in the dtype of the math (float32, float64) are read in place; any other
// layout, and float16 (computed in float32), is gathered one kBlock block at a time
// into a per-thread buffer and the gradient scattered back from another: never a
// temporary of the input's size.
//
// Sparse loss, one pass over memory per row: for each block the training `reduce`
// gives (max, sum exp(x - max)) while the block is in cache (with label smoothing
// also sum(x - max) of the block); the partials are merged in block order, then
//     loss = log S + (1 - eps) (M - x[label]) + eps (M - mean x).
// The dense loss reads the labels alongside: sum l and sum l (x - M) over l != 0
// (0 * -inf := 0), loss = sum(t) log S - sum t (x - M) with t = (1-eps) l + eps/C.
// With a gradient, a finish pass per block (from cache for rows that fit in L2)
// writes softmax * sum(t) * scale with the softmax family's `softmax_finish`, then
// subtracts the target; one-block sparse rows use the fused `grad_row`. The backward
// passes are two passes per row: the block partials of sum(g * y) (or sum g), merged
// in block order, then the write.
//
// Determinism (docs/contract.md §6): a row is always cut into the same blocks whose
// partials are combined in block order, whichever threads run them; per-row losses of
// "sum"/"mean" go to a row-sized array and are added in row order with a compensated
// sum.
#include "training.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "engine/blocks.h"
#include "engine/threads.h"
#include "fastsoftmax/common.h"
#include "fastsoftmax/kernels.h"

namespace fastsoftmax {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

// Rows are finished in chunks of this many elements: exp(...) goes into an L1
// buffer first, then the output is written from it in one (streamed) pass.
constexpr int64_t kChunk = 2048;

// ---- storage <-> compute: engine/blocks.h (load, store, gather_as) ---------------

template <class C>
void gather(Elem src, const char* p, int64_t st, int64_t n, C* dst) {
  switch (src) {
    case Elem::f16: return gather_as<uint16_t>(p, st, n, dst);
    case Elem::f32: return gather_as<float>(p, st, n, dst);
    case Elem::f64: return gather_as<double>(p, st, n, dst);
    case Elem::b8: return gather_as<uint8_t>(p, st, n, dst);
    case Elem::i32: return gather_as<int32_t>(p, st, n, dst);
    case Elem::i64: return gather_as<int64_t>(p, st, n, dst);
  }
}
template <class Dst, class C>
void scatter(const C* src, int64_t n, char* p, int64_t st) {
  for (int64_t i = 0; i < n; ++i) store(reinterpret_cast<Dst*>(p + i * st), double(src[i]));
}
template <class S>
void fill_row(char* p, int64_t st, int64_t n, double v) {
  for (int64_t i = 0; i < n; ++i) store(reinterpret_cast<S*>(p + i * st), v);
}

template <class C>
constexpr DType dtype_of() {
  return std::is_same<C, float>::value ? DType::f32 : DType::f64;
}

template <class C>
struct Scratch {
  Buf<C> x, l, g;
  std::vector<Partial> parts;
  std::vector<double> e0, e1, e2;  // per-block extras
  void size_blocks(int64_t nb) {
    if (int64_t(parts.size()) < nb) {
      parts.resize(size_t(nb));
      e0.resize(size_t(nb));
      e1.resize(size_t(nb));
      e2.resize(size_t(nb));
    }
  }
};

// One operand's row: base pointer and byte stride along the classes.
struct RowRef {
  char* p;
  int64_t st;
};

// The block b of a row as a contiguous compute-type array: in place when the row is
// contiguous in C, else gathered into buf.
template <class C>
const C* block_in(Elem dt, RowRef r, int64_t b, int64_t len, C* buf, bool direct) {
  const char* p = r.p + b * kBlock * r.st;
  if (direct) return reinterpret_cast<const C*>(p);
  gather<C>(dt, p, r.st, len, buf);
  return buf;
}

// ---- reductions over rows ----------------------------------------------------------
double fixed_order_sum(const std::vector<double>& v) {
  CompensatedSum s;
  double plain = 0.0;
  for (double x : v) {
    s.add(x);
    plain += x;
  }
  return std::isfinite(plain) ? s.value() : plain;
}

// Runs loss_of(r, off, pool, nt) -> the row's loss for every row (engine for_rows) and
// keeps the losses: written to the per-row output (reduction "none", operand slot
// kLoss) or summed in row order into *total.
template <class S, class C, class Problem, class LossFn>
void loss_rows(const Problem& a, double* total, LossFn&& loss_of) {
  std::vector<double> row_loss(a.red == kNone ? 0 : size_t(a.rows));
  for_rows<Scratch<C>>(a.outer, a.rows, a.n, a.threads,
                       [&](int64_t r, const int64_t* off, Scratch<C>* pool, int nt) {
                         const double loss = loss_of(r, off, pool, nt);
                         if (a.red == kNone)
                           store(reinterpret_cast<S*>(a.loss + off[kLoss]), loss);
                         else
                           row_loss[size_t(r)] = loss;
                       });
  if (a.red != kNone) *total = fixed_order_sum(row_loss);
}

// The gradient's write pass over the blocks of one row (threads share them when
// nt > 1): block b's output, in place or in the thread's buffer scattered after, is
// NaN on a NaN row, else written by block(b, len, scratch, out).
template <class S, class C, class BlockFn>
void grad_blocks(int64_t n, int nt, Scratch<C>* pool, RowRef gr, bool direct_g, bool nan_row,
                 BlockFn&& block) {
  parallel_chunks(num_blocks(n), nt, [&](int64_t b0, int64_t b1) {
    Scratch<C>& s = pool[nt > 1 ? thread_id() : 0];
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t len = block_len(n, b);
      C* gb = direct_g ? reinterpret_cast<C*>(gr.p) + b * kBlock : s.g.get(len);
      if (nan_row)
        std::fill(gb, gb + len, std::numeric_limits<C>::quiet_NaN());
      else
        block(b, len, s, gb);
      if (!direct_g) scatter<S>(gb, len, gr.p + b * kBlock * gr.st, gr.st);
    }
  });
}

// One block of the gradient, in L1 chunks: e = exp(x - M) * sm (the softmax family's
// finish; 0 on a row of -inf, xb unused), then sub(e, c, cl) writes chunk c's output.
template <class C, class SubFn>
void grad_chunks(const SoftmaxKernels<C, C>& k, const C* xb, int64_t len, bool minus_inf_row,
                 C M, C sm, SubFn&& sub) {
  C e[kChunk];
  for (int64_t c = 0; c < len; c += kChunk) {
    const int64_t cl = std::min(kChunk, len - c);
    if (minus_inf_row)
      std::fill(e, e + cl, C(0));  // softmax of a row of -inf is 0
    else
      k.softmax_finish(xb + c, e, cl, M, sm);
    sub(e, c, cl);
  }
}

// ---- sparse cross-entropy ------------------------------------------------------------
int64_t label_at(const SparseXent& a, int64_t off) {
  return a.lab64 ? *reinterpret_cast<const int64_t*>(a.lab + off)
                 : int64_t(*reinterpret_cast<const int32_t*>(a.lab + off));
}

template <class S, class C>
void sparse_run(const SparseXent& a, int64_t count, double* total) {
  const KernelTable& table = kernels();
  const SoftmaxKernels<C, C>& k = softmax_set<C, C>(table);
  const TrainingKernels<C>& tk = training_set<C>(table);
  const int64_t n = a.n, nb = num_blocks(n);
  const bool direct_x = in_place<S, C>(a.xs), direct_g = in_place<S, C>(a.gs);
  const double eps = a.eps, keep = 1.0 - eps;
  const double scale = a.red == kMean ? 1.0 / double(count) : 1.0;
  const bool stream = streams_output(a.rows * n * int64_t(sizeof(S)));

  auto row = [&](int64_t r, const int64_t* off, Scratch<C>* pool, int nt) {
    const int64_t t = label_at(a, off[1]);
    const RowRef xr{a.x + off[0], a.xs};
    const RowRef gr{a.grad ? a.grad + off[3] : nullptr, a.gs};
    double loss;
    if (a.has_ignore && t == a.ignore) {
      loss = 0.0;
      if (a.grad) fill_row<S>(gr.p, gr.st, n, 0.0);
    } else {
      Scratch<C>& s0 = pool[0];
      s0.size_blocks(nb);
      Partial* parts = s0.parts.data();
      double* sx = s0.e2.data();
      const C cb = C(scale * eps / double(n));  // gradient: scale * eps / C at every class
      const C ct = C(scale * keep);             // and scale * (1 - eps) at the label
      // A gradient row of one block: the table's fused kernel writes the gradient
      // (softmax * scale - cb, minus ct at the label) in the passes that reduce the row
      // (one exp per element) and returns the row's Partial, the bits of `reduce`.
      const bool fused = a.grad && nb == 1 && tk.grad_row;
      C* gf = nullptr;
      if (fused) {
        const C* xb = block_in<C>(elem_of(a.dt), xr, 0, n, s0.x.get(n), direct_x);
        gf = direct_g ? reinterpret_cast<C*>(gr.p) : s0.g.get(n);
        parts[0] = tk.grad_row(xb, gf, n, scale, cb, t, ct, stream && direct_g);
        if (eps != 0.0) {
          const double m = parts[0].max;
          sx[0] = std::isfinite(m) ? tk.sum_minus(xb, n, m) : tk.sum_minus(xb, n, 0.0);
        }
      } else {
        parallel_chunks(nb, nt, [&](int64_t b0, int64_t b1) {
          Scratch<C>& s = pool[nt > 1 ? thread_id() : 0];
          for (int64_t b = b0; b < b1; ++b) {
            const int64_t len = block_len(n, b);
            const C* xb = block_in<C>(elem_of(a.dt), xr, b, len, s.x.get(len), direct_x);
            parts[b] = tk.reduce(xb, len);
            if (eps != 0.0) {
              const double m = parts[b].max;
              sx[b] = std::isfinite(m) ? tk.sum_minus(xb, len, m) : tk.sum_minus(xb, len, 0.0);
            }
          }
        });
      }
      const Merged mg = merge(parts, nb);
      const double xt = double(load(reinterpret_cast<const S*>(xr.p + t * xr.st)));
      const double M = mg.max;
      double sum_xm = 0.0;  // sum (x - M), smoothing only
      if (eps != 0.0) {
        CompensatedSum acc;
        double plain = 0.0;
        for (int64_t b = 0; b < nb; ++b) {
          const double m = parts[b].max;
          acc.add(sx[b]);
          plain += sx[b];
          if (std::isfinite(M) && std::isfinite(m) && m != M)
            acc.add((m - M) * double(block_len(n, b)));
        }
        sum_xm = !std::isfinite(M) ? -kInf : std::isfinite(plain) ? acc.value() : plain;
      }
      if (std::isnan(M) || M == kInf) {
        loss = kNaN;
      } else if (M == -kInf) {
        loss = kInf;  // the target has mass on a -inf logit
      } else {
        loss = std::log(mg.sum);
        if (keep != 0.0) loss += keep * (M - xt);
        if (eps != 0.0) loss -= eps * (sum_xm / double(n));
      }
      if (fused) {
        // the kernel wrote finite rows, the label's term included; special rows here
        if (std::isnan(M) || M == kInf) {
          std::fill(gf, gf + n, std::numeric_limits<C>::quiet_NaN());
        } else if (M == -kInf) {
          std::fill(gf, gf + n, C(C(0) - cb));  // softmax of a row of -inf is 0
          gf[t] = C(gf[t] - ct);
        }
        if (!direct_g) scatter<S>(gf, n, gr.p, gr.st);
      } else if (a.grad) {
        const bool special = !std::isfinite(M);
        const C sm = special ? C(0) : C(scale / mg.sum);
        const bool st = stream && direct_g;
        grad_blocks<S, C>(n, nt, pool, gr, direct_g, std::isnan(M) || M == kInf,
                          [&](int64_t b, int64_t len, Scratch<C>& s, C* gb) {
          // nb == 1 and gathered: the buffer still holds the row
          const C* xb = special ? nullptr
                        : (!direct_x && nb == 1 && nt == 1)
                            ? s.x.get(len)
                            : block_in<C>(elem_of(a.dt), xr, b, len, s.x.get(len), direct_x);
          grad_chunks(k, xb, len, special, C(M), sm, [&](C* e, int64_t c, int64_t cl) {
            const int64_t ti = t - b * kBlock - c;
            if (ti >= 0 && ti < cl) e[ti] -= ct;
            tk.store_sub(e, gb + c, cl, cb, st);
          });
        });
      }
    }
    return loss;
  };
  loss_rows<S, C>(a, total, row);
}

// ---- dense cross-entropy -----------------------------------------------------------------
template <class S, class C>
void dense_run(const DenseXent& a, double* total) {
  const KernelTable& table = kernels();
  const SoftmaxKernels<C, C>& k = softmax_set<C, C>(table);
  const TrainingKernels<C>& tk = training_set<C>(table);
  const int64_t n = a.n, nb = num_blocks(n);
  const bool direct_x = in_place<S, C>(a.xs), direct_g = in_place<S, C>(a.gs);
  const bool direct_l = a.ldt == elem_of(dtype_of<C>()) && a.ls == int64_t(sizeof(C));
  const double eps = a.eps, keep = 1.0 - eps;
  const double scale = a.red == kMean ? 1.0 / double(a.rows) : 1.0;
  const bool stream = streams_output(a.rows * n * int64_t(sizeof(S)));

  auto row = [&](int64_t r, const int64_t* off, Scratch<C>* pool, int nt) {
    const RowRef xr{a.x + off[0], a.xs};
    const RowRef lr{const_cast<char*>(a.lab) + off[1], a.ls};
    const RowRef gr{a.grad ? a.grad + off[3] : nullptr, a.gs};
    double loss = 0.0;
    if (n > 0) {
      Scratch<C>& s0 = pool[0];
      s0.size_blocks(nb);
      Partial* parts = s0.parts.data();
      double *sl = s0.e0.data(), *slx = s0.e1.data(), *sx = s0.e2.data();
      parallel_chunks(nb, nt, [&](int64_t b0, int64_t b1) {
        Scratch<C>& s = pool[nt > 1 ? thread_id() : 0];
        for (int64_t b = b0; b < b1; ++b) {
          const int64_t len = block_len(n, b);
          const C* xb = block_in<C>(elem_of(a.dt), xr, b, len, s.x.get(len), direct_x);
          const C* lb = block_in<C>(a.ldt, lr, b, len, s.l.get(len), direct_l);
          parts[b] = tk.reduce(xb, len);
          const double m = parts[b].max;
          if (std::isnan(m) || m == kInf) continue;  // the row is NaN
          const double ref = m == -kInf ? 0.0 : m;
          tk.label_terms(lb, xb, len, ref, &sl[b], &slx[b]);
          if (eps != 0.0) sx[b] = tk.sum_minus(xb, len, ref);
        }
      });
      const Merged mg = merge(parts, nb);
      const double M = mg.max;
      const bool nan_row = std::isnan(M) || M == kInf;
      // Totals relative to M (finite) or to 0 (a row of -inf).
      double sum_l = 0.0, sum_lx = 0.0, sum_xm = 0.0;
      if (!nan_row) {
        CompensatedSum cl, clx, cx;
        double plain_lx = 0.0, plain_x = 0.0;
        for (int64_t b = 0; b < nb; ++b) {
          const double m = parts[b].max;
          const double ref = m == -kInf ? 0.0 : m;
          const double shift = std::isfinite(M) ? ref - M : 0.0;
          cl.add(sl[b]);
          clx.add(slx[b]);
          plain_lx += slx[b];
          if (shift != 0.0 && sl[b] != 0.0) clx.add(shift * sl[b]);
          if (eps != 0.0) {
            cx.add(sx[b]);
            plain_x += sx[b];
            if (shift != 0.0) cx.add(shift * double(block_len(n, b)));
          }
        }
        sum_l = cl.value();
        sum_lx = std::isfinite(plain_lx) ? clx.value() : plain_lx;
        sum_xm = std::isfinite(plain_x) ? cx.value() : plain_x;
      }
      // target t = keep * l + eps / n
      const double sum_t = keep * sum_l + eps;
      double tx = 0.0;  // sum t (x - M)   (0 * -inf := 0)
      if (keep != 0.0) tx += keep * sum_lx;
      if (eps != 0.0) tx += eps * (sum_xm / double(n));
      if (nan_row) {
        loss = kNaN;
      } else if (M == -kInf) {
        loss = -tx;  // log_softmax is -inf everywhere: only the target's mass counts
      } else {
        loss = sum_t * std::log(mg.sum) - tx;
      }
      if (a.grad) {
        const C ca = C(scale * keep), cb = C(scale * eps / double(n));
        const C sm = std::isfinite(M) ? C(scale * sum_t / mg.sum) : C(0);
        const bool st = stream && direct_g;
        grad_blocks<S, C>(n, nt, pool, gr, direct_g, nan_row,
                          [&](int64_t b, int64_t len, Scratch<C>& s, C* gb) {
          const bool reuse = nb == 1 && nt == 1;  // gathered buffers still hold the row
          const C* lb = (!direct_l && reuse)
                            ? s.l.get(len)
                            : block_in<C>(a.ldt, lr, b, len, s.l.get(len), direct_l);
          const bool special = M == -kInf;
          const C* xb = special ? nullptr
                        : (!direct_x && reuse)
                            ? s.x.get(len)
                            : block_in<C>(elem_of(a.dt), xr, b, len, s.x.get(len), direct_x);
          grad_chunks(k, xb, len, special, C(M), sm, [&](C* e, int64_t c, int64_t cl) {
            if (keep != 0.0)
              tk.store_sub_affine(e, lb + c, gb + c, cl, ca, cb, st);
            else
              tk.store_sub(e, gb + c, cl, cb, st);
          });
        });
      }
    }
    return loss;
  };
  loss_rows<S, C>(a, total, row);
}

// ---- softmax / log_softmax backward -----------------------------------------------------
template <class S, class C>
void backward_run(const SoftmaxBackward& a) {
  const KernelTable& table = kernels();
  const SoftmaxKernels<C, C>& k = softmax_set<C, C>(table);
  const TrainingKernels<C>& tk = training_set<C>(table);
  const int64_t n = a.n, nb = num_blocks(n);
  if (n == 0) return;
  const bool direct_g = in_place<S, C>(a.gs), direct_y = in_place<S, C>(a.ys);
  const bool direct_o = in_place<S, C>(a.os);
  const bool stream = streams_output(a.rows * n * int64_t(sizeof(S)));

  auto row = [&](int64_t, const int64_t* off, Scratch<C>* pool, int nt) {
    const RowRef gr{const_cast<char*>(a.g) + off[0], a.gs};
    const RowRef yr{const_cast<char*>(a.y) + off[1], a.ys};
    const RowRef orow{a.out + off[2], a.os};
    Scratch<C>& s0 = pool[0];
    s0.size_blocks(nb);
    double* part = s0.e0.data();
    double* ok = s0.e1.data();  // log: every y of the block is <= 0 (1) or not (0)
    // y <= 0 (log-probabilities) is the domain of the table's exp; other y get std::exp.
    auto exp_of = [&](const C* y, C* e, int64_t len, bool nonpos) {  // e = exp(y)
      for (int64_t c = 0; c < len; c += kChunk) {
        const int64_t cl = std::min(kChunk, len - c);
        if (nonpos || tk.all_nonpositive(y + c, cl)) {
          k.softmax_finish(y + c, e + c, cl, C(0), C(1));
        } else {
          for (int64_t i = 0; i < cl; ++i) e[c + i] = std::exp(y[c + i]);
        }
      }
    };
    parallel_chunks(nb, nt, [&](int64_t b0, int64_t b1) {
      Scratch<C>& s = pool[nt > 1 ? thread_id() : 0];
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t len = block_len(n, b);
        const C* gb = block_in<C>(elem_of(a.dt), gr, b, len, s.g.get(len), direct_g);
        const C* yb = block_in<C>(elem_of(a.dt), yr, b, len, s.x.get(len), direct_y);
        if (a.log) {
          bool nonpos;
          part[b] = tk.sum_check(gb, yb, len, &nonpos);
          ok[b] = nonpos ? 1.0 : 0.0;
        } else {
          part[b] = tk.dot(gb, yb, len);
        }
      }
    });
    double total;
    if (nb == 1) {
      total = part[0];
    } else {
      CompensatedSum acc;
      double plain = 0.0;
      for (int64_t b = 0; b < nb; ++b) {
        acc.add(part[b]);
        plain += part[b];
      }
      total = std::isfinite(plain) ? acc.value() : plain;
    }
    const C sc = C(total);
    parallel_chunks(nb, nt, [&](int64_t b0, int64_t b1) {
      Scratch<C>& s = pool[nt > 1 ? thread_id() : 0];
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t len = block_len(n, b);
        const bool reuse = nb == 1 && nt == 1;  // gathered buffers still hold the row
        const C* gb = (!direct_g && reuse) ? s.g.get(len)
                                           : block_in<C>(elem_of(a.dt), gr, b, len, s.g.get(len), direct_g);
        const C* yb = (!direct_y && reuse)
                          ? s.x.get(len)
                          : block_in<C>(elem_of(a.dt), yr, b, len, s.x.get(len), direct_y);
        // The output may be the same array as g or y: written element by element
        // after reading, or into the l buffer when scattered.
        C* ob = direct_o ? reinterpret_cast<C*>(orow.p) + b * kBlock : s.l.get(len);
        const bool st = stream && direct_o;
        if (!a.log) {
          tk.softmax_bwd(gb, yb, ob, len, sc, st);
        } else if (ok[b] != 0.0 && nb == 1 && tk.log_softmax_backward_row) {
          // one block of log-probabilities: exp, product and store in one table kernel
          // (which also prefetches the next row for the first pass)
          tk.log_softmax_backward_row(gb, yb, ob, len, sc, st);
        } else {
          C e[kChunk];
          for (int64_t c = 0; c < len; c += kChunk) {
            const int64_t cl = std::min(kChunk, len - c);
            exp_of(yb + c, e, cl, ok[b] != 0.0);
            tk.log_softmax_bwd(gb + c, e, ob + c, cl, sc, st);
          }
        }
        if (!direct_o) scatter<S>(ob, len, orow.p + b * kBlock * orow.st, orow.st);
      }
    });
  };
  for_rows<Scratch<C>>(a.outer, a.rows, n, a.threads, row);
}

template <class Fn>
void dispatch_dtype(DType dt, Fn&& fn) {
  switch (dt) {
    case DType::f16: return fn(uint16_t{}, float{});
    case DType::f32: return fn(float{}, float{});
    case DType::f64: return fn(double{}, double{});
    case DType::bf16: return;  // not a training dtype: bind_training.cpp refuses it
  }
}

void store_scalar(char* p, DType dt, double v) {
  switch (dt) {
    case DType::f16: return store(reinterpret_cast<uint16_t*>(p), v);
    case DType::f32: return store(reinterpret_cast<float*>(p), v);
    case DType::f64: return store(reinterpret_cast<double*>(p), v);
    case DType::bf16: return;  // (never: as above)
  }
}

}  // namespace

int64_t first_bad_label(const SparseXent& a, int64_t* bad_value, int64_t* count) {
  *count = 0;
  if (a.rows == 0) return -1;
  OuterWalk w(a.outer);
  w.seek(0);
  for (int64_t r = 0; r < a.rows; ++r, w.next()) {
    const int64_t t = label_at(a, w.off[kLabels]);
    if (a.has_ignore && t == a.ignore) continue;
    if (t < 0 || t >= a.n) {
      *bad_value = t;
      return r;
    }
    ++*count;
  }
  return -1;
}

void run_sparse_xent(const SparseXent& a, int64_t count) {
  double total = 0.0;
  dispatch_dtype(a.dt, [&](auto s, auto c) { sparse_run<decltype(s), decltype(c)>(a, count, &total); });
  if (a.red != kNone) store_scalar(a.loss, a.dt, a.red == kMean ? total / double(count) : total);
}

void run_dense_xent(const DenseXent& a) {
  double total = 0.0;
  dispatch_dtype(a.dt, [&](auto s, auto c) { dense_run<decltype(s), decltype(c)>(a, &total); });
  if (a.red != kNone) store_scalar(a.loss, a.dt, a.red == kMean ? total / double(a.rows) : total);
}

void run_softmax_backward(const SoftmaxBackward& a) {
  dispatch_dtype(a.dt, [&](auto s, auto c) { backward_run<decltype(s), decltype(c)>(a); });
}

}  // namespace fastsoftmax
