// Cross-entropy with logits and the softmax backward passes (the training side).
//
// Every operation sees its arrays as (outer dims..., classes): fastsoftmax._xent
// moves the reduced axis last (a view) before calling in. A "row" is one slice along
// the classes. Rows whose classes are contiguous in the dtype of the math (float32,
// float64) are read in place; any other layout, and float16 (computed in float32),
// is gathered one kBlock block at a time into a per-thread buffer and the gradient
// scattered back from another: never a temporary of the input's size.
//
// Sparse loss, one pass over memory per row: for each block of kBlock classes the
// table's `reduce` gives (max, sum exp(x - max)) while the block is in cache (with
// label smoothing also sum(x - max) of the block); the partials are merged in block
// order exactly as driver.cpp merges them, then
//     loss = log S + (1 - eps) (M - x[label]) + eps (M - mean x).
// The dense loss reads the labels alongside: sum l and sum l (x - M) over l != 0
// (0 * -inf := 0), loss = sum(t) log S - sum t (x - M) with t = (1-eps) l + eps/C.
// With a gradient, a finish pass per block (from cache for rows that fit in L2)
// writes softmax * sum(t) * scale with the table's `softmax_finish`, then subtracts
// the target. The backward passes are two passes per row: the block partials of
// sum(g * y) (or sum g), merged in block order, then the write.
//
// Determinism: a row is always cut into the same kBlock blocks whose partials are
// combined in block order, whether one thread runs the row or several share its
// blocks; per-row losses of "sum"/"mean" go to a row-sized array and are added in
// row order with a compensated sum. So no bit depends on the thread count or on
// the batch around a row.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "driver.h"
#include "fastsoftmax/common.h"
#include "fastsoftmax/kernels.h"
#include "fastsoftmax/merge.h"
#include "parallel.h"

#ifdef FASTSOFTMAX_OPENMP
#include <omp.h>
#endif

namespace py = pybind11;

// ---- the inner loops, once per instruction set ---------------------------------
#if defined(__x86_64__) && defined(__GNUC__)
#define FASTSOFTMAX_XENT_X86 1
#if !defined(__clang__) && __GNUC__ < 13
// GCC 12's AVX-512 intrinsics initialize their "undefined" operands with `__Y = __Y`
// and then warn about it (GCC PR 105593) wherever they are inlined (as avx512.cpp).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#endif

namespace fastsoftmax {
namespace xent_scalar {  // the baseline build: SSE2 on x86-64, plain C++ elsewhere
#ifdef FASTSOFTMAX_XENT_X86
#define FASTSOFTMAX_XENT_VEC 128
#else
#define FASTSOFTMAX_XENT_VEC 0
#endif
#include "xent_loops.h"
#undef FASTSOFTMAX_XENT_VEC
}  // namespace xent_scalar
}  // namespace fastsoftmax

#ifdef FASTSOFTMAX_XENT_X86
#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace fastsoftmax {
namespace xent_avx2 {
#define FASTSOFTMAX_XENT_VEC 256
#include "xent_loops.h"
#undef FASTSOFTMAX_XENT_VEC
}  // namespace xent_avx2
}  // namespace fastsoftmax
#pragma GCC pop_options
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")
namespace fastsoftmax {
namespace xent_avx512 {
#define FASTSOFTMAX_XENT_VEC 512
#include "xent_loops.h"
#undef FASTSOFTMAX_XENT_VEC
}  // namespace xent_avx512
}  // namespace fastsoftmax
#pragma GCC pop_options
#endif

namespace fastsoftmax {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

// The inner loops of one ISA for compute type C.
template <class C>
struct Loops {
  double (*sum_minus)(const C*, int64_t, double);
  double (*dot)(const C*, const C*, int64_t);
  void (*label_terms)(const C*, const C*, int64_t, double, double*, double*);
  void (*store_sub)(const C*, C*, int64_t, C, bool);
  void (*store_sub_affine)(const C*, const C*, C*, int64_t, C, C, bool);
  void (*softmax_bwd)(const C*, const C*, C*, int64_t, C, bool);
  void (*log_softmax_bwd)(const C*, const C*, C*, int64_t, C, bool);
  bool (*all_nonpositive)(const C*, int64_t);
  double (*sum_check)(const C*, const C*, int64_t, bool*);
};

#define FASTSOFTMAX_XENT_LOOPS(ns, C)                                                     \
  Loops<C> {                                                                             \
    ns::sum_minus, ns::dot, ns::label_terms, ns::store_sub, ns::store_sub_affine,        \
        ns::softmax_bwd, ns::log_softmax_bwd, ns::all_nonpositive, ns::sum_check         \
  }

// The loops matching the active kernel table's ISA (FASTSOFTMAX_ISA=scalar gives
// the baseline build's loops too).
template <class C>
Loops<C> loops_for(Isa isa) {
#ifdef FASTSOFTMAX_XENT_X86
  if (isa == Isa::avx512) return FASTSOFTMAX_XENT_LOOPS(xent_avx512, C);
  if (isa == Isa::avx2) return FASTSOFTMAX_XENT_LOOPS(xent_avx2, C);
#endif
  (void)isa;
  return FASTSOFTMAX_XENT_LOOPS(xent_scalar, C);
}

template <class C>
const KernelSet<C, C>& set_for(const KernelTable& t) {
  if constexpr (std::is_same<C, float>::value)
    return t.f32;
  else
    return t.f64;
}

// Outputs at least this large are written with non-temporal stores (when written in
// place, x86): together with the inputs they read they would fill a 16-32 MiB
// last-level cache anyway, and skipping the read-for-ownership of every output line
// saves a third of the memory traffic of a loss+gradient or backward pass.
constexpr int64_t kStreamBytes = int64_t(8) << 20;

// Rows are finished in chunks of this many elements: exp(...) goes into an L1
// buffer first, then the output is written from it in one (streamed) pass.
constexpr int64_t kChunk = 2048;

// ---- threads: parallel.h (the same rules as driver.cpp) --------------------------
using nd::load;
using nd::parallel_chunks;
using nd::store;
using nd::thread_id;
using nd::threads_for;

// ---- storage <-> compute --------------------------------------------------------
inline double load(const uint8_t* p) { return *p ? 1.0 : 0.0; }  // bool
inline double load(const int32_t* p) { return double(*p); }
inline double load(const int64_t* p) { return double(*p); }

template <class Src, class C>
void gather_as(const char* p, int64_t st, int64_t n, C* dst) {
  for (int64_t i = 0; i < n; ++i) dst[i] = C(load(reinterpret_cast<const Src*>(p + i * st)));
}
// Element types a row can be gathered from: the float dtypes, and the bool and
// integer labels of the dense cross-entropy (read as they are, never cast to a
// full-size float copy first).
enum class Elem : int { f16, f32, f64, b8, i32, i64 };
inline Elem elem_of(DType d) {
  return d == DType::f16 ? Elem::f16 : d == DType::f32 ? Elem::f32 : Elem::f64;
}

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
template <class S>
constexpr DType storage_dtype() {
  return std::is_same<S, uint16_t>::value ? DType::f16
         : std::is_same<S, float>::value  ? DType::f32
                                          : DType::f64;
}

// ---- blocks and their merge (merge.h, as driver.cpp) ---------------------------------------
int64_t num_blocks(int64_t n) { return (n + kBlock - 1) / kBlock; }
int64_t block_len(int64_t n, int64_t b) { return std::min(kBlock, n - b * kBlock); }

struct Merged {
  double max;  // NaN, +inf, -inf (special rows) or finite
  double sum;  // valid when max is finite
};

Merged merge(const Partial* parts, int64_t nb) {
  const Partial r = merge_partials(parts, nb);
  return {r.max, r.sum};
}

// ---- outer dims: rows in row-major order, several operands walked together ----------
constexpr int kMaxOps = 4;

struct Outer {
  struct Dim {
    int64_t size;
    int64_t st[kMaxOps];
  };
  std::vector<Dim> dims;  // outermost first; size-1 dims dropped, neighbours merged
  int64_t rows = 1;
};

// strides[k] holds operand k's byte strides over the outer dims (empty: stride 0).
Outer make_outer(const std::vector<int64_t>& shape,
                 const std::array<std::vector<int64_t>, kMaxOps>& strides) {
  Outer o;
  for (size_t d = 0; d < shape.size(); ++d) {
    o.rows *= shape[d];
    if (shape[d] == 1) continue;
    Outer::Dim dim{shape[d], {}};
    for (int k = 0; k < kMaxOps; ++k) dim.st[k] = strides[k].empty() ? 0 : strides[k][d];
    if (!o.dims.empty()) {
      Outer::Dim& p = o.dims.back();
      bool ok = true;
      for (int k = 0; k < kMaxOps; ++k) ok &= p.st[k] == dim.st[k] * dim.size;
      if (ok) {
        p.size *= dim.size;
        for (int k = 0; k < kMaxOps; ++k) p.st[k] = dim.st[k];
        continue;
      }
    }
    o.dims.push_back(dim);
  }
  return o;
}

using OuterWalk = nd::OuterWalk<std::vector<Outer::Dim>, kMaxOps>;  // parallel.h

// Calls row(r, offsets, pool, nt_inner) for every row: rows split across threads,
// or, for a few rows longer than kBlock, rows in turn with their blocks split.
// pool is one Scratch per thread that may touch a row at once.
template <class Scratch, class RowFn>
void for_rows(const Outer& outer, int64_t n, int threads, RowFn&& row) {
  const int64_t rows = outer.rows;
  if (rows == 0) return;
  const int nt = threads_for(rows * std::max<int64_t>(n, 1), threads);
  if (n > kBlock && rows < nt) {
    std::vector<Scratch> pool(size_t(std::min<int64_t>(nt, num_blocks(n))));
    OuterWalk w(outer.dims);
    w.seek(0);
    for (int64_t r = 0; r < rows; ++r, w.next()) row(r, w.off, pool.data(), nt);
    return;
  }
  parallel_chunks(rows, nt, [&](int64_t r0, int64_t r1) {
    Scratch s;
    OuterWalk w(outer.dims);
    w.seek(r0);
    for (int64_t r = r0; r < r1; ++r, w.next()) row(r, w.off, &s, 1);
  });
}

// A per-thread row buffer of the compute type, grown on first use.
template <class C>
struct Buf {
  std::unique_ptr<C[]> p;
  int64_t cap = 0;
  C* get(int64_t n) {
    if (n > cap) {
      p.reset(new C[size_t(n)]);
      cap = n;
    }
    return p.get();
  }
};

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
enum Reduction : int { kNone = 0, kSum = 1, kMean = 2 };

double fixed_order_sum(const std::vector<double>& v) {
  CompensatedSum s;
  double plain = 0.0;
  for (double x : v) {
    s.add(x);
    plain += x;
  }
  return std::isfinite(plain) ? s.value() : plain;
}

// ---- sparse cross-entropy ------------------------------------------------------------
struct SparseArgs {
  DType dt;
  int64_t n;                 // classes
  const Outer* outer;        // ops: 0 logits, 1 labels, 2 loss (none), 3 grad
  char* x;                   // logits, class stride xs
  int64_t xs;
  const char* lab;           // int32 or int64 labels
  bool lab64;
  bool has_ignore;
  int64_t ignore;
  double eps;
  int red;
  char* loss;                // reduction "none": per-row output; else the 0-d output
  char* grad;                // optional, class stride gs
  int64_t gs;
  int threads;
};

int64_t label_at(const SparseArgs& a, int64_t off) {
  return a.lab64 ? *reinterpret_cast<const int64_t*>(a.lab + off)
                 : int64_t(*reinterpret_cast<const int32_t*>(a.lab + off));
}

template <class S, class C>
void sparse_run(const SparseArgs& a, int64_t count, double* total) {
  const KernelTable& table = kernels();
  const KernelSet<C, C>& k = set_for<C>(table);
  const Loops<C> lp = loops_for<C>(table.isa);
  const int64_t n = a.n, nb = num_blocks(n);
  const bool same = std::is_same<S, C>::value;
  const bool direct_x = same && a.xs == int64_t(sizeof(C));
  const bool direct_g = same && a.gs == int64_t(sizeof(C));
  const double eps = a.eps, keep = 1.0 - eps;
  const double scale = a.red == kMean ? 1.0 / double(count) : 1.0;
  const bool stream = a.outer->rows * n * int64_t(sizeof(S)) >= kStreamBytes;
  std::vector<double> row_loss(a.red == kNone ? 0 : size_t(a.outer->rows));

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
      const bool fused = a.grad && nb == 1 && k.xent_grad_row;
      C* gf = nullptr;
      if (fused) {
        const C* xb = block_in<C>(elem_of(a.dt), xr, 0, n, s0.x.get(n), direct_x);
        gf = direct_g ? reinterpret_cast<C*>(gr.p) : s0.g.get(n);
        parts[0] = k.xent_grad_row(xb, gf, n, scale, cb, t, ct, stream && direct_g);
        if (eps != 0.0) {
          const double m = parts[0].max;
          sx[0] = std::isfinite(m) ? lp.sum_minus(xb, n, m) : lp.sum_minus(xb, n, 0.0);
        }
      } else {
        parallel_chunks(nb, nt, [&](int64_t b0, int64_t b1) {
          Scratch<C>& s = pool[nt > 1 ? thread_id() : 0];
          for (int64_t b = b0; b < b1; ++b) {
            const int64_t len = block_len(n, b);
            const C* xb = block_in<C>(elem_of(a.dt), xr, b, len, s.x.get(len), direct_x);
            parts[b] = k.reduce_xent(xb, len);
            if (eps != 0.0) {
              const double m = parts[b].max;
              sx[b] = std::isfinite(m) ? lp.sum_minus(xb, len, m) : lp.sum_minus(xb, len, 0.0);
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
        parallel_chunks(nb, nt, [&](int64_t b0, int64_t b1) {
          Scratch<C>& s = pool[nt > 1 ? thread_id() : 0];
          for (int64_t b = b0; b < b1; ++b) {
            const int64_t len = block_len(n, b);
            C* gb = direct_g ? reinterpret_cast<C*>(gr.p) + b * kBlock : s.g.get(len);
            if (std::isnan(M) || M == kInf) {
              std::fill(gb, gb + len, std::numeric_limits<C>::quiet_NaN());
            } else {
              // nb == 1 and gathered: the buffer still holds the row
              const C* xb = special ? nullptr
                            : (!direct_x && nb == 1 && nt == 1)
                                ? s.x.get(len)
                                : block_in<C>(elem_of(a.dt), xr, b, len, s.x.get(len), direct_x);
              const bool st = stream && direct_g;
              C e[kChunk];
              for (int64_t c = 0; c < len; c += kChunk) {
                const int64_t cl = std::min(kChunk, len - c);
                if (special)
                  std::fill(e, e + cl, C(0));  // softmax of a row of -inf is 0
                else
                  k.softmax_finish(xb + c, e, cl, C(M), sm);
                const int64_t ti = t - b * kBlock - c;
                if (ti >= 0 && ti < cl) e[ti] -= ct;
                lp.store_sub(e, gb + c, cl, cb, st);
              }
            }
            if (!direct_g) scatter<S>(gb, len, gr.p + b * kBlock * gr.st, gr.st);
          }
        });
      }
    }
    if (a.red == kNone)
      store(reinterpret_cast<S*>(a.loss + off[2]), loss);
    else
      row_loss[size_t(r)] = loss;
  };
  for_rows<Scratch<C>>(*a.outer, n, a.threads, row);
  if (a.red != kNone) *total = fixed_order_sum(row_loss);
}

// ---- dense cross-entropy -----------------------------------------------------------------
struct DenseArgs {
  DType dt;        // logits (and grad)
  Elem ldt;        // labels
  int64_t n;
  const Outer* outer;  // ops: 0 logits, 1 labels, 2 loss (none), 3 grad
  char* x;
  int64_t xs;
  const char* lab;
  int64_t ls;
  double eps;
  int red;
  char* loss;
  char* grad;
  int64_t gs;
  int threads;
};

template <class S, class C>
void dense_run(const DenseArgs& a, double* total) {
  const KernelTable& table = kernels();
  const KernelSet<C, C>& k = set_for<C>(table);
  const Loops<C> lp = loops_for<C>(table.isa);
  const int64_t n = a.n, nb = num_blocks(n);
  const bool same = std::is_same<S, C>::value;
  const bool direct_x = same && a.xs == int64_t(sizeof(C));
  const bool direct_g = same && a.gs == int64_t(sizeof(C));
  const bool direct_l = a.ldt == elem_of(dtype_of<C>()) && a.ls == int64_t(sizeof(C));
  const double eps = a.eps, keep = 1.0 - eps;
  const double scale = a.red == kMean ? 1.0 / double(a.outer->rows) : 1.0;
  const bool stream = a.outer->rows * n * int64_t(sizeof(S)) >= kStreamBytes;
  std::vector<double> row_loss(a.red == kNone ? 0 : size_t(a.outer->rows));

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
          parts[b] = k.reduce_xent(xb, len);
          const double m = parts[b].max;
          if (std::isnan(m) || m == kInf) continue;  // the row is NaN
          const double ref = m == -kInf ? 0.0 : m;
          lp.label_terms(lb, xb, len, ref, &sl[b], &slx[b]);
          if (eps != 0.0) sx[b] = lp.sum_minus(xb, len, ref);
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
        parallel_chunks(nb, nt, [&](int64_t b0, int64_t b1) {
          Scratch<C>& s = pool[nt > 1 ? thread_id() : 0];
          for (int64_t b = b0; b < b1; ++b) {
            const int64_t len = block_len(n, b);
            C* gb = direct_g ? reinterpret_cast<C*>(gr.p) + b * kBlock : s.g.get(len);
            if (nan_row) {
              std::fill(gb, gb + len, std::numeric_limits<C>::quiet_NaN());
            } else {
              const bool reuse = nb == 1 && nt == 1;  // gathered buffers still hold the row
              const C* lb = (!direct_l && reuse)
                                ? s.l.get(len)
                                : block_in<C>(a.ldt, lr, b, len, s.l.get(len), direct_l);
              const bool special = M == -kInf;
              const C* xb = special ? nullptr
                            : (!direct_x && reuse)
                                ? s.x.get(len)
                                : block_in<C>(elem_of(a.dt), xr, b, len, s.x.get(len), direct_x);
              const bool st = stream && direct_g;
              C e[kChunk];
              for (int64_t c = 0; c < len; c += kChunk) {
                const int64_t cl = std::min(kChunk, len - c);
                if (special)
                  std::fill(e, e + cl, C(0));
                else
                  k.softmax_finish(xb + c, e, cl, C(M), sm);
                if (keep != 0.0)
                  lp.store_sub_affine(e, lb + c, gb + c, cl, ca, cb, st);
                else
                  lp.store_sub(e, gb + c, cl, cb, st);
              }
            }
            if (!direct_g) scatter<S>(gb, len, gr.p + b * kBlock * gr.st, gr.st);
          }
        });
      }
    }
    if (a.red == kNone)
      store(reinterpret_cast<S*>(a.loss + off[2]), loss);
    else
      row_loss[size_t(r)] = loss;
  };
  for_rows<Scratch<C>>(*a.outer, n, a.threads, row);
  if (a.red != kNone) *total = fixed_order_sum(row_loss);
}

// ---- softmax / log_softmax backward -----------------------------------------------------
struct BackwardArgs {
  bool log;  // log_softmax_backward
  DType dt;
  int64_t n;
  const Outer* outer;  // ops: 0 grad, 1 y, 2 out
  const char* g;
  int64_t gs;
  const char* y;
  int64_t ys;
  char* out;
  int64_t os;
  int threads;
};

template <class S, class C>
void backward_run(const BackwardArgs& a) {
  const KernelTable& table = kernels();
  const KernelSet<C, C>& k = set_for<C>(table);
  const Loops<C> lp = loops_for<C>(table.isa);
  const int64_t n = a.n, nb = num_blocks(n);
  if (n == 0) return;
  const bool same = std::is_same<S, C>::value;
  const bool direct_g = same && a.gs == int64_t(sizeof(C));
  const bool direct_y = same && a.ys == int64_t(sizeof(C));
  const bool direct_o = same && a.os == int64_t(sizeof(C));
  const bool stream = a.outer->rows * n * int64_t(sizeof(S)) >= kStreamBytes;

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
        if (nonpos || lp.all_nonpositive(y + c, cl)) {
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
          part[b] = lp.sum_check(gb, yb, len, &nonpos);
          ok[b] = nonpos ? 1.0 : 0.0;
        } else {
          part[b] = lp.dot(gb, yb, len);
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
          lp.softmax_bwd(gb, yb, ob, len, sc, st);
        } else if (ok[b] != 0.0 && nb == 1 && k.log_softmax_backward_row) {
          // one block of log-probabilities: exp, product and store in one table kernel
          // (which also prefetches the next row for the first pass)
          k.log_softmax_backward_row(gb, yb, ob, len, sc, st);
        } else {
          C e[kChunk];
          for (int64_t c = 0; c < len; c += kChunk) {
            const int64_t cl = std::min(kChunk, len - c);
            exp_of(yb + c, e, cl, ok[b] != 0.0);
            lp.log_softmax_bwd(gb + c, e, ob + c, cl, sc, st);
          }
        }
        if (!direct_o) scatter<S>(ob, len, orow.p + b * kBlock * orow.st, orow.st);
      }
    });
  };
  for_rows<Scratch<C>>(*a.outer, n, a.threads, row);
}

// ---- Python arrays ---------------------------------------------------------------------
// _xent_sparse, _xent_dense and _softmax_backward are internal entries: fastsoftmax._xent
// owns every argument rule and raises the user's errors. The checks here ("internal:
// ...") only keep a wrong internal call from crashing or writing out of bounds. The one
// user-facing error raised here is a rule about the data, not the arguments: a sparse
// label out of [0, C), found in the pass over the labels that counts the rows.
constexpr int kNpyHalf = 23, kNpyFloat = 11, kNpyDouble = 12;
constexpr int kNpyLong = 7, kNpyLongLong = 9, kNpyInt = 5, kNpyBool = 0;
constexpr int kFlagAligned = 0x100, kFlagWriteable = 0x400;

struct View {
  char* data;
  int nd;
  std::vector<int64_t> shape, strides;
  int type_num;
  int itemsize;
  char byteorder;
  int flags;
};

View view_of(const py::array& a, const char* name) {
  auto* p = py::detail::array_proxy(a.ptr());
  auto* d = py::detail::array_descriptor_proxy(p->descr);
  View v;
  v.data = p->data;
  v.nd = p->nd;
  v.shape.assign(p->dimensions, p->dimensions + p->nd);
  v.strides.assign(p->strides, p->strides + p->nd);
  v.type_num = d->type_num;
  v.itemsize = int(a.itemsize());
  v.byteorder = d->byteorder;
  v.flags = p->flags;
  if (!(v.flags & kFlagAligned) || v.byteorder == '>')
    throw py::value_error(std::string("internal: ") + name + " must be aligned and native");
  return v;
}

DType float_dtype(const View& v, const char* name) {
  if (v.type_num == kNpyHalf) return DType::f16;
  if (v.type_num == kNpyFloat) return DType::f32;
  if (v.type_num == kNpyDouble) return DType::f64;
  throw py::type_error(std::string("internal: ") + name + " must be float16/32/64");
}

void check_shape(const View& v, const std::vector<int64_t>& shape, const char* name) {
  if (v.shape != shape) throw py::value_error(std::string("internal: bad shape of ") + name);
}

void check_output(const View& v, DType dt, const char* name) {
  if (float_dtype(v, name) != dt || !(v.flags & kFlagWriteable))
    throw py::value_error(std::string("internal: ") + name + " must be writable, of the logits dtype");
}

template <class Fn>
void dispatch_dtype(DType dt, Fn&& fn) {
  switch (dt) {
    case DType::f16: return fn(uint16_t{}, float{});
    case DType::f32: return fn(float{}, float{});
    case DType::f64: return fn(double{}, double{});
  }
}

void store_scalar(char* p, DType dt, double v) {
  switch (dt) {
    case DType::f16: return store(reinterpret_cast<uint16_t*>(p), v);
    case DType::f32: return store(reinterpret_cast<float*>(p), v);
    case DType::f64: return store(reinterpret_cast<double*>(p), v);
  }
}

int reduction_of(int red) {
  if (red < kNone || red > kMean) throw py::value_error("internal: bad reduction");
  return red;
}

// sparse: logits (..., C); labels (...) int32/int64; loss (...) or (); grad like logits.
void xent_sparse(py::array logits, py::array labels, py::object ignore_index, double eps,
                 int reduction, py::array loss, py::object grad) {
  const View xv = view_of(logits, "logits");
  const DType dt = float_dtype(xv, "logits");
  if (xv.nd < 1) throw py::value_error("internal: logits must have a class axis");
  const View lv = view_of(labels, "labels");
  const bool is_int64 = lv.itemsize == 8 && (lv.type_num == kNpyLong || lv.type_num == kNpyLongLong);
  const bool is_int32 = lv.itemsize == 4 && (lv.type_num == kNpyInt || lv.type_num == kNpyLong);
  if (!is_int64 && !is_int32) throw py::type_error("internal: labels must be int32 or int64");
  std::vector<int64_t> oshape(xv.shape.begin(), xv.shape.end() - 1);
  check_shape(lv, oshape, "labels");
  const int red = reduction_of(reduction);
  const View ov = view_of(loss, "loss");
  check_output(ov, dt, "loss");
  check_shape(ov, red == kNone ? oshape : std::vector<int64_t>{}, "loss");
  View gv{};
  if (!grad.is_none()) {
    gv = view_of(grad.cast<py::array>(), "grad");
    check_output(gv, dt, "grad");
    check_shape(gv, xv.shape, "grad");
  }
  SparseArgs a{};
  a.dt = dt;
  a.n = xv.shape.back();
  a.x = xv.data;
  a.xs = xv.strides.back();
  a.lab = lv.data;
  a.lab64 = is_int64;
  a.has_ignore = !ignore_index.is_none();
  a.ignore = a.has_ignore ? ignore_index.cast<int64_t>() : 0;
  a.eps = eps;
  a.red = red;
  a.loss = ov.data;
  a.grad = grad.is_none() ? nullptr : gv.data;
  a.gs = grad.is_none() ? 0 : gv.strides.back();
  a.threads = current_num_threads();
  std::array<std::vector<int64_t>, kMaxOps> st;
  st[0].assign(xv.strides.begin(), xv.strides.end() - 1);
  st[1] = lv.strides;
  if (red == kNone) st[2] = ov.strides;
  if (a.grad) st[3].assign(gv.strides.begin(), gv.strides.end() - 1);
  const Outer outer = make_outer(oshape, st);
  a.outer = &outer;

  // Check every label before anything is written; find the first bad one in
  // row-major order of the labels' shape.
  int64_t bad = -1, bad_value = 0, count = 0;
  {
    py::gil_scoped_release release;
    std::array<std::vector<int64_t>, kMaxOps> lst;
    lst[1] = lv.strides;
    const Outer lo = make_outer(oshape, lst);
    if (lo.rows > 0) {
      OuterWalk w(lo.dims);
      w.seek(0);
      for (int64_t r = 0; r < lo.rows; ++r, w.next()) {
        const int64_t t = label_at(a, w.off[1]);
        if (a.has_ignore && t == a.ignore) continue;
        if (t < 0 || t >= a.n) {
          bad = r;
          bad_value = t;
          break;
        }
        ++count;
      }
    }
  }
  if (bad >= 0) {
    std::vector<int64_t> idx(oshape.size());
    int64_t r = bad;
    for (size_t d = oshape.size(); d-- > 0;) {
      idx[d] = r % oshape[d];
      r /= oshape[d];
    }
    std::string pos;
    for (size_t d = 0; d < idx.size(); ++d) pos += (d ? ", " : "") + std::to_string(idx[d]);
    throw py::value_error("labels" + (idx.empty() ? std::string() : "[" + pos + "]") + " = " +
                          std::to_string(bad_value) + " is out of range [0, " +
                          std::to_string(a.n) + ")");
  }
  double total = 0.0;
  {
    py::gil_scoped_release release;
    dispatch_dtype(dt, [&](auto s, auto c) {
      sparse_run<decltype(s), decltype(c)>(a, count, &total);
    });
    if (red != kNone) store_scalar(a.loss, dt, red == kMean ? total / double(count) : total);
  }
}

// dense: labels and logits (..., C) (labels any float dtype, zero strides allowed).
void xent_dense(py::array labels, py::array logits, double eps, int reduction, py::array loss,
                py::object grad) {
  const View xv = view_of(logits, "logits");
  const DType dt = float_dtype(xv, "logits");
  if (xv.nd < 1) throw py::value_error("internal: logits must have a class axis");
  const View lv = view_of(labels, "labels");
  Elem ldt;
  if (lv.type_num == kNpyBool)
    ldt = Elem::b8;
  else if (lv.itemsize == 8 && (lv.type_num == kNpyLong || lv.type_num == kNpyLongLong))
    ldt = Elem::i64;
  else if (lv.itemsize == 4 && (lv.type_num == kNpyInt || lv.type_num == kNpyLong))
    ldt = Elem::i32;
  else
    ldt = elem_of(float_dtype(lv, "labels"));
  check_shape(lv, xv.shape, "labels");
  std::vector<int64_t> oshape(xv.shape.begin(), xv.shape.end() - 1);
  const int red = reduction_of(reduction);
  const View ov = view_of(loss, "loss");
  check_output(ov, dt, "loss");
  check_shape(ov, red == kNone ? oshape : std::vector<int64_t>{}, "loss");
  View gv{};
  if (!grad.is_none()) {
    gv = view_of(grad.cast<py::array>(), "grad");
    check_output(gv, dt, "grad");
    check_shape(gv, xv.shape, "grad");
  }
  DenseArgs a{};
  a.dt = dt;
  a.ldt = ldt;
  a.n = xv.shape.back();
  a.x = xv.data;
  a.xs = xv.strides.back();
  a.lab = lv.data;
  a.ls = lv.strides.back();
  a.eps = eps;
  a.red = red;
  a.loss = ov.data;
  a.grad = grad.is_none() ? nullptr : gv.data;
  a.gs = grad.is_none() ? 0 : gv.strides.back();
  a.threads = current_num_threads();
  std::array<std::vector<int64_t>, kMaxOps> st;
  st[0].assign(xv.strides.begin(), xv.strides.end() - 1);
  st[1].assign(lv.strides.begin(), lv.strides.end() - 1);
  if (red == kNone) st[2] = ov.strides;
  if (a.grad) st[3].assign(gv.strides.begin(), gv.strides.end() - 1);
  const Outer outer = make_outer(oshape, st);
  a.outer = &outer;
  py::gil_scoped_release release;
  double total = 0.0;
  dispatch_dtype(dt, [&](auto s, auto c) { dense_run<decltype(s), decltype(c)>(a, &total); });
  if (red != kNone)
    store_scalar(a.loss, dt, red == kMean ? total / double(outer.rows) : total);
}

// grad, y, out (..., C), all of one dtype; grad and y may have zero strides.
void softmax_backward_core(bool log, py::array grad, py::array y, py::array out) {
  const View gv = view_of(grad, "grad");
  const DType dt = float_dtype(gv, "grad");
  if (gv.nd < 1) throw py::value_error("internal: need a class axis");
  const View yv = view_of(y, "y");
  const View ov = view_of(out, "out");
  if (float_dtype(yv, "y") != dt) throw py::value_error("internal: y dtype");
  check_output(ov, dt, "out");
  check_shape(yv, gv.shape, "y");
  check_shape(ov, gv.shape, "out");
  BackwardArgs a{};
  a.log = log;
  a.dt = dt;
  a.n = gv.shape.back();
  a.g = gv.data;
  a.gs = gv.strides.back();
  a.y = yv.data;
  a.ys = yv.strides.back();
  a.out = ov.data;
  a.os = ov.strides.back();
  a.threads = current_num_threads();
  std::vector<int64_t> oshape(gv.shape.begin(), gv.shape.end() - 1);
  std::array<std::vector<int64_t>, kMaxOps> st;
  st[0].assign(gv.strides.begin(), gv.strides.end() - 1);
  st[1].assign(yv.strides.begin(), yv.strides.end() - 1);
  st[2].assign(ov.strides.begin(), ov.strides.end() - 1);
  const Outer outer = make_outer(oshape, st);
  a.outer = &outer;
  py::gil_scoped_release release;
  dispatch_dtype(dt, [&](auto s, auto c) { backward_run<decltype(s), decltype(c)>(a); });
}

}  // namespace

void register_xent(py::module_& m) {
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
