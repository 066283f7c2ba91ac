// The kernel table: one entry per (operation, dtype), filled once per ISA.
//
// Every ISA file (csrc/kernels/<isa>.cpp) provides a function
//     bool fill_<isa>(KernelTable& t);
// that writes its kernels into `t` and returns false when it was compiled without
// support for that ISA (e.g. avx512 on an aarch64 build). dispatch.cpp decides
// which one runs; the driver (driver.cpp) only ever calls through the table.
//
// Contracts shared by every kernel below (the scalar ISA is the readable reference):
//  * `x` and `y` are contiguous along the row (panels: along the lanes); `y == x`
//    (in place) is allowed, any other overlap is not.
//  * A "row" has n >= 1 elements. Row kernels are only called with n <= kBlock;
//    longer rows are cut into blocks of exactly kBlock elements (the last one
//    shorter), reduced with `reduce`, merged in block order by the driver and
//    finished block by block. kBlock is fixed, so a row's bits never depend on the
//    thread count or on the batch around it.
//  * Special values follow SPEC.md's table: a row with a NaN is all NaN; else a
//    row with +inf is all NaN (logsumexp: +inf); a row of only -inf gives 0
//    (log_softmax: -inf; logsumexp: -inf).
//  * No kernel may emit floating-point exceptions that matter (we never read the
//    flags), nor touch memory outside [x, x+n) / [y, y+n), nor allocate, except once
//    per thread: the panels' sweep state, their tiles' state and scratch, and the
//    row buffer of streamed batches (and of streamed sparse gradients) are
//    thread_local, allocated on a thread's first such call and kept.
#pragma once

#include <cstddef>
#include <cstdint>

namespace fastsoftmax {

enum class Isa : int { scalar = 0, avx2 = 1, avx512 = 2, neon = 3 };
constexpr int kNumIsas = 4;
const char* isa_name(Isa isa);

// Rows longer than this are processed as blocks (see above). 2^17 float32 = 512 KiB:
// a block's x and y fit in this machine's 2 MiB L2 together.
constexpr int64_t kBlock = int64_t(1) << 17;

// Result of reducing one block (or a whole row) of x:
//   max: NaN if the block holds a NaN; otherwise the exact maximum (+inf/-inf allowed).
//   sum: when max is finite, sum over the block of exp(x_i - max), accumulated so
//        that its relative error is a few units of the *compute* type's epsilon
//        (float32 data: accumulate in double; float64: compensated/blocked).
//        Unspecified when max is not finite.
//   rest: sum - 1 with the max's own term (exactly 1) set apart, accurate to the
//        low-order bits of the other terms (SPEC: logsumexp = max + log1p(rest), so a
//        dominant entry loses no precision). NaN means "not provided": the driver
//        then uses sum - 1.
struct Partial {
  double max;
  double sum;
  double rest = __builtin_nan("");
  // The block's min where the kernel took it (for softmax_finish_min), else -inf.
  double min = -__builtin_inf();
};

// Kernels for one storage dtype. S is the storage type (float, double, or uint16_t
// for IEEE float16); C is the compute type (float for float16 and float32, double
// for float64). float16 kernels are optional (nullptr): the driver then converts
// through a float32 buffer and calls the float32 kernels.
template <class S, class C>
struct KernelSet {
  // Whole row, 1 <= n <= kBlock. softmax: y = exp(x - max) / sum exp(x - max).
  void (*softmax_row)(const S* x, S* y, int64_t n) = nullptr;
  // log_softmax: y = (x - max) - log(sum exp(x - max)).
  void (*log_softmax_row)(const S* x, S* y, int64_t n) = nullptr;
  // One block (1 <= n <= kBlock): its Partial. Also the logsumexp of short rows.
  Partial (*reduce)(const S* x, int64_t n) = nullptr;
  // Second pass of a long row, given the merged max (finite) and scale = 1 / total sum:
  // y = exp(x - max) * scale.
  void (*softmax_finish)(const S* x, S* y, int64_t n, C max, C scale) = nullptr;
  // y = (x - max) - log_sum   (max finite; x - max formed first, for accuracy).
  void (*log_softmax_finish)(const S* x, S* y, int64_t n, C max, C log_sum) = nullptr;

  // Optional: the finish kernels with non-temporal (streaming) stores, for the second
  // pass of rows too long for the cache, whose output is not re-read soon. Same bits
  // as the plain finish kernels (the arithmetic is elementwise).
  void (*softmax_finish_stream)(const S* x, S* y, int64_t n, C max, C scale) = nullptr;
  void (*log_softmax_finish_stream)(const S* x, S* y, int64_t n, C max, C log_sum) = nullptr;
  // Optional: softmax_finish_stream given the row's min (merged from the reduce's
  // Partial::min), which the kernel may use to skip its exp's clamp and flush where
  // every x - max allows (the same bits).
  void (*softmax_finish_min)(const S* x, S* y, int64_t n, C max, C scale, C min) = nullptr;

  // Optional batches of `rows` contiguous rows of equal length n <= kBlock, row r at
  // x + r * ldx (y + r * ldy): the same bits as calling the row kernels one row at a
  // time (short rows are processed in pairs to hide the latency of one row's passes).
  void (*softmax_rows)(const S* x, int64_t ldx, S* y, int64_t ldy, int64_t n,
                       int64_t rows) = nullptr;
  void (*log_softmax_rows)(const S* x, int64_t ldx, S* y, int64_t ldy, int64_t n,
                           int64_t rows) = nullptr;
  void (*reduce_rows)(const S* x, int64_t ldx, int64_t n, int64_t rows, Partial* out) = nullptr;
  // Optional: the batches with non-temporal stores, for outputs that will not stay in
  // cache (the driver picks them by size). Same bits as softmax_rows/log_softmax_rows.
  void (*softmax_rows_stream)(const S* x, int64_t ldx, S* y, int64_t ldy, int64_t n,
                              int64_t rows) = nullptr;
  void (*log_softmax_rows_stream)(const S* x, int64_t ldx, S* y, int64_t ldy, int64_t n,
                                  int64_t rows) = nullptr;
  // Rows of at least this many bytes are not streamed even then (the ISA's choice:
  // where the exps are slow, plain stores' reads for ownership hide under them).
  int64_t stream_rows_below_bytes = INT64_MAX;

  // Panels: the reduced axis is strided and `w` lanes next to each other are
  // contiguous. Element (i, j) (reduced index i < n, lane j < w) is x[i * ldx + j];
  // the output is y[i * ldy + j]. Every lane is an independent row of length n
  // (n >= 1, any length, no blocking); a lane's bits must not depend on w or on
  // its position in the panel (vector tails use masks, never different code).
  void (*softmax_panel)(const S* x, int64_t ldx, S* y, int64_t ldy, int64_t n,
                        int64_t w) = nullptr;
  void (*log_softmax_panel)(const S* x, int64_t ldx, S* y, int64_t ldy, int64_t n,
                            int64_t w) = nullptr;
  // logsumexp of each lane, written to out[0..w) (contiguous, compute type).
  void (*logsumexp_panel)(const S* x, int64_t ldx, int64_t n, int64_t w, C* out) = nullptr;
  // Optional: the driver's gather of a contiguous row with a temperature t and/or a
  // where= mask m (contiguous bools, or nullptr): y_i = -inf where m_i is false, else
  // C(x_i) / t, an IEEE division in the compute type (the bits of the scalar loop; no
  // division when t == 1), for i < n (n >= 1). y is a compute-type buffer of n
  // elements, disjoint from x.
  void (*gather_row)(const S* x, const bool* m, C* y, int64_t n, C t) = nullptr;
  // Optional, where S != C (float16): y_i = x_i rounded to S (nearest even; the
  // kernels' outputs hold no NaN but the canonical one), for the driver's scatter of a
  // gathered row into a contiguous output.
  void (*narrow_row)(const C* x, S* y, int64_t n) = nullptr;
  // Optional, float64 set: logsumexp's weighted sum (b=) over one chunk of a row,
  // sum_i w_i * exp(d_i) for d_i <= 0 or -inf (-inf with w_i = 0 for an entry that
  // takes no part), with the exp of the row kernels and error-free (TwoSum) additions:
  // out[0] the sum, out[1] its compensation (the terms' signs may differ).
  void (*weighted_exp_sum)(const double* d, const double* w, int64_t n, double* out) = nullptr;

  // ---- training side (csrc/xent.cpp); float32/float64 sets only (float16: nullptr) ----
  // Their exp may be shorter than the row kernels' where SPEC's cross-entropy bound
  // (64 ε times the row's scale) allows: float32 uses one of 4.5e-7 relative error
  // (avx512/avx2; see exp_ps there), float64 the row kernels' own.
  // The loss's reduction of one block: reduce with the training exp.
  Partial (*reduce_xent)(const S* x, int64_t n) = nullptr;
  // Sparse cross-entropy gradient of one row (1 <= n <= kBlock):
  //   y_i = exp(x_i - max) * C(a / sum) - b  (one rounding, as fma),
  //   and (that) - c at i == t  (the label; none when t is outside [0, n)),
  //   sum = sum exp(x - max)
  // (a: the reduction's scale; b, c: the target's shares, label smoothing folded in).
  // Returns the row's Partial, bit-identical to reduce_xent(x, n), so the loss is
  // computed from it exactly as from reduce_xent. When the returned max is not finite (NaN, +inf,
  // -inf: special rows) y is unspecified and the caller writes it. `stream`: the
  // caller's output is too large to stay in cache; long rows (SIMD sets) then keep
  // the exps in the thread's row buffer and write y once, with non-temporal stores
  // (same bits).
  Partial (*xent_grad_row)(const S* x, S* y, int64_t n, double a, C b, int64_t t, C c,
                           bool stream) = nullptr;
  // log_softmax backward of one row of log-probabilities y (every y_i <= 0 or NaN;
  // any n >= 1): out_i = g_i - exp(y_i) * s (one rounding, as fma), with the
  // training exp. out may be g or y (in place), no other overlap. `stream`:
  // non-temporal stores for out (same bits). Long rows prefetch the next row
  // (g + n, y + n) while they compute.
  void (*log_softmax_backward_row)(const S* g, const S* y, S* out, int64_t n, C s,
                                   bool stream) = nullptr;
};

struct KernelTable {
  Isa isa = Isa::scalar;
  KernelSet<float, float> f32;
  KernelSet<double, double> f64;
  KernelSet<uint16_t, float> f16;  // optional entries
};

// Provided by csrc/kernels/<isa>.cpp. Return false if not compiled for this target.
bool fill_scalar(KernelTable& t);
bool fill_avx2(KernelTable& t);
bool fill_avx512(KernelTable& t);
bool fill_neon(KernelTable& t);

// dispatch.cpp
bool cpu_supports(Isa isa);          // compiled in AND the CPU + OS support it
const KernelTable& kernels();        // the active table (chosen on first use)
const KernelTable& kernels_for(Isa isa);  // a specific table (throws if unsupported)
void set_active_isa(Isa isa);        // throws std::invalid_argument if unsupported
Isa parse_isa(const char* name);     // throws std::invalid_argument on unknown names

}  // namespace fastsoftmax
