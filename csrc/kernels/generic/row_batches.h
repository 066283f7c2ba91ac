// Part of the ISA-generic softmax family (softmax_family.h): batches of rows (row r at
// x + r * ldx): the streamed batches' row buffer and rows_softmax_stream, the
// lockstep groups (grouped_rows) and the batch entries softmax_rows, log_softmax_rows
// (plain and streamed) and reduce_rows. Relies on row_passes.h, short_rows.h and
// row_entries.h (stream_row, HasStream, softmax_row, log_softmax_row, reduce).

// Batches: row r at x + r * ldx (y + r * ldy). Short rows go in pairs (bit-identical
// to one at a time, see above); long rows are throughput-bound and go one by one.

// ---- streaming batches ---------------------------------------------------------
// For outputs too large to stay in cache (the driver decides): a normal store first
// reads each output line from memory (read-for-ownership), so the plain kernels move
// three arrays' worth (x, and y in and out) where a copy moves two. Here softmax's exps
// wait in a per-thread buffer instead of y, and the last pass writes y with
// non-temporal stores from there (log_softmax: straight from x): the head of a row up
// to a 64-byte boundary and its tail with plain masked stores. The arithmetic is the
// plain kernels' (an exp stored to the buffer is the float that would be stored to y),
// so the bits are theirs (float16: the exps wait in a float buffer, as in the plain
// kernel's rows up to kExpBuffer; longer plain rows recompute the same exps). Only
// where the Ops have streaming stores.

// A thread's buffer of at least n compute-type values (kept and grown on demand).
template <class T>
typename T::C* row_buffer(int64_t n) {
  static thread_local std::unique_ptr<typename T::C[]> buf;
  static thread_local int64_t cap = 0;
  if (cap < n) {
    cap = std::max<int64_t>(n, 4096);
    buf.reset(new typename T::C[cap]);
  }
  return buf.get();
}

template <class T, int R>
void rows_softmax_stream(const typename T::S* const* x, typename T::S* const* y, int64_t n,
                         typename T::C* const* bufs) {
  using C = typename T::C;
  C m[R];
  bool nf;
  rows_max_nf<T, R>(x, n, m, nf);
  bool ok = true;
  for (int r = 0; r < R; ++r) ok &= finite<T>(m[r]);
  SumExp s[R];
  if (ok) {
    rows_sum_exp_rt<T, R, true, C>(x, bufs, n, m, s, prefetch_row<T, R>(n), nf);
    for (int r = 0; r < R; ++r) ok &= s[r].sum == s[r].sum;
  }
  if (!ok) {  // rare (a special row): the plain kernel, row by row
    for (int r = 0; r < R; ++r) rows_softmax<T, 1>(x + r, y + r, n);
    return;
  }
  for (int r = 0; r < R; ++r) {
    const typename T::V sc = T::set1(C(1.0 / s[r].sum));
    const C* b = bufs[r];
    stream_row<T>(y[r], n, [&](int64_t i, int64_t k) {
      (void)k;  // a tail reads whole vectors from the padded buffer
      return T::mul(T::loadc(b + i), sc);
    });
  }
}

// Streaming batches need the Ops' stream (float32, float64; float16 on AVX-512, which
// converts on the way out).
template <class T>
constexpr bool kCanStreamRows = HasStream<T>::value;
// Rows from which the driver should not stream them (KernelSet's
// stream_rows_below_bytes): Ops whose exps are slow against the memory set
// kStreamRowsBelowBytes (see avx2.cpp); long rows' plain stores' reads for ownership
// then hide under the exps, where a streamed batch's separate write pass would not.
template <class T, class = void>
struct StreamRowsBelow : std::integral_constant<int64_t, INT64_MAX> {};
template <class T>
struct StreamRowsBelow<T, std::void_t<decltype(T::kStreamRowsBelowBytes)>>
    : std::integral_constant<int64_t, T::kStreamRowsBelowBytes> {};

// Batches of short rows: each step prefetches the rows about kRowsAheadBytes ahead:
// their max pass otherwise waited on memory (a quarter of the time on (8192, 128));
// the hardware prefetcher alone kept too few lines in flight. Addresses in integer
// arithmetic: they may lie past the end of the array (a prefetch never faults).
constexpr int64_t kRowsAheadBytes = 4096;
template <class T>
int64_t rows_ahead(int64_t n) {
  const int64_t row = std::max<int64_t>(1, n * int64_t(sizeof(typename T::S)));
  return std::max<int64_t>(1, kRowsAheadBytes / row);
}
// Rows r .. r + cnt - 1 of x (row stride ldx elements).
template <class T>
FASTSOFTMAX_PASS void prefetch_rows(const typename T::S* x, int64_t ldx, int64_t n, int64_t r,
                                    int64_t cnt) {
  const uintptr_t bytes = uintptr_t(n) * sizeof(typename T::S);
  for (int64_t k = 0; k < cnt; ++k) {
    const uintptr_t px = reinterpret_cast<uintptr_t>(x) + uintptr_t((r + k) * ldx) * sizeof(typename T::S);
    for (uintptr_t b = 0; b < bytes; b += 64) __builtin_prefetch(reinterpret_cast<const void*>(px + b), 0, 3);
  }
}

// Runs f(r, R) over the batch's rows in lockstep groups of R = 4 (rows of at most
// kQuadRowsMaxBytes, where kQuads) and then 2 (at most kPairRowsMaxBytes), each group's
// rows ahead prefetched; returns the first row left for the caller to run alone. A
// short row is a chain of dependent steps (max, its horizontal reduction, exps, sum,
// division, scale): side by side, R rows' chains overlap. Four rather than two:
// float32 rows of 16-64 elements 3-15% faster (hot, Zen 3, AVX2); longer rows gain
// nothing. Each row takes the same arithmetic whatever R (determinism, docs/contract.md §6).
template <class T, bool kQuads, class F>
FASTSOFTMAX_PASS int64_t grouped_rows(const typename T::S* x, int64_t ldx, int64_t n, int64_t rows,
                                      F&& f) {
  const int64_t bytes = n * int64_t(sizeof(typename T::S));
  const int64_t ahead = rows_ahead<T>(n);
  int64_t r = 0;
  const auto run = [&](auto group) {
    constexpr int R = decltype(group)::value;
    for (; r + R <= rows; r += R) {
      prefetch_rows<T>(x, ldx, n, r + ahead, R);
      f(r, group);
    }
  };
  if constexpr (kQuads)
    if (bytes <= kQuadRowsMaxBytes) run(std::integral_constant<int, 4>());
  if (bytes <= kPairRowsMaxBytes) run(std::integral_constant<int, 2>());
  return r;
}

// The row pointers of a group of R rows from row r.
template <class P, int R>
struct GroupPtrs {
  P p[R];
  P* data() { return p; }
};
template <class P, class G>
FASTSOFTMAX_PASS GroupPtrs<P, G::value> group_ptrs(P base, int64_t ld, int64_t r, G) {
  GroupPtrs<P, G::value> g;
  for (int q = 0; q < G::value; ++q) g.p[q] = base + (r + q) * ld;
  return g;
}

template <class T, bool kStream>
void softmax_rows_impl(const typename T::S* x, int64_t ldx, typename T::S* y, int64_t ldy,
                       int64_t n, int64_t rows) {
  if constexpr (kShortRows<T>)
    if (n <= kShortRowMax) return short_rows<T, Kind::softmax>(x, ldx, y, ldy, n, rows);
  typename T::C* bufs[2] = {};
  if constexpr (kStream) {
    typename T::C* buf = row_buffer<T>(2 * (n + T::W));  // + W: tails store whole vectors
    bufs[0] = buf;
    bufs[1] = buf + n + T::W;
  }
  // (streamed batches: rows of kStreamRowMinBytes and more, never four at a time)
  int64_t r = grouped_rows<T, !kStream>(x, ldx, n, rows, [&](int64_t r0, auto group) {
    auto xs = group_ptrs(x, ldx, r0, group);
    auto ys = group_ptrs(y, ldy, r0, group);
    constexpr int R = decltype(group)::value;
    if constexpr (kStream)
      rows_softmax_stream<T, R>(xs.data(), ys.data(), n, bufs);
    else
      rows_softmax<T, R>(xs.data(), ys.data(), n);
  });
  for (; r < rows; ++r) {
    const typename T::S* xr = x + r * ldx;
    typename T::S* yr = y + r * ldy;
    if constexpr (kStream)
      rows_softmax_stream<T, 1>(&xr, &yr, n, bufs);
    else
      softmax_row<T>(xr, yr, n);
  }
  if constexpr (kStream) T::fence();
}

template <class T>
void softmax_rows(const typename T::S* x, int64_t ldx, typename T::S* y, int64_t ldy,
                  int64_t n, int64_t rows) {
  softmax_rows_impl<T, false>(x, ldx, y, ldy, n, rows);
}
template <class T>
void softmax_rows_stream(const typename T::S* x, int64_t ldx, typename T::S* y, int64_t ldy,
                         int64_t n, int64_t rows) {
  if constexpr (kCanStreamRows<T>) softmax_rows_impl<T, true>(x, ldx, y, ldy, n, rows);
}

// log_softmax's write pass for R rows (plain, or streamed).
template <class T, int R, bool kStream>
FASTSOFTMAX_PASS void log_finish_rows(const typename T::S* const* x, typename T::S* const* y,
                                      int64_t n, const typename T::C* m,
                                      const typename T::C* ls) {
  if constexpr (kStream) {
    for (int r = 0; r < R; ++r) {
      const typename T::V vm = T::set1(m[r]), vl = T::set1(ls[r]);
      const typename T::S* xr = x[r];
      stream_row<T>(y[r], n, [&](int64_t i, int64_t k) {
        const typename T::V xv = k == T::W ? T::load(xr + i) : T::load_n(xr + i, k);
        return T::sub(T::sub(xv, vm), vl);
      });
    }
  } else {
    rows_log_finish<T, R>(x, y, n, m, ls);
  }
}

// One row of log_softmax (rows_log_softmax's passes), its write pass plain or streamed.
template <class T, bool kStream>
void log_softmax_one(const typename T::S* x, typename T::S* y, int64_t n) {
  using C = typename T::C;
  if constexpr (!kStream) {
    log_softmax_row<T>(x, y, n);
  } else {
    typename T::S* none[1] = {};
    C m;
    bool nf;
    rows_max_nf<T, 1>(&x, n, &m, nf);
    SumExp s;
    bool ok = finite<T>(m);
    if (ok) {
      rows_sum_exp_rt<T, 1, false>(&x, none, n, &m, &s, prefetch_row<T, 1>(n), nf);
      ok = s.sum == s.sum;
    }
    if (!ok) return rows_log_softmax<T, 1>(&x, &y, n);  // a special row: plain
    const C ls = C(log1p_rest<T>(s.rest));
    log_finish_rows<T, 1, true>(&x, &y, n, &m, &ls);
  }
}

template <class T, bool kStream>
void log_softmax_rows_impl(const typename T::S* x, int64_t ldx, typename T::S* y,
                           int64_t ldy, int64_t n, int64_t rows) {
  if constexpr (kShortRows<T>)
    if (n <= kShortRowMax) return short_rows<T, Kind::log_softmax>(x, ldx, y, ldy, n, rows);
  using S = typename T::S;
  using C = typename T::C;
  int64_t r = 0;
  if (n * int64_t(sizeof(S)) <= kPairRowsMaxBytes) {
    // Groups of kLogGroup rows: the max and sum passes of every pair first, then the
    // rows' logs together, then the write passes. A row's log is a chain of ~60 cycles
    // that its write pass waits on; side by side the logs overlap (8192 rows of 128:
    // 1.5x -> 1.25x a copy, the cost of softmax). Each row gets the arithmetic of
    // rows_log_softmax (same bits); a group with a special row redoes its rows alone.
    constexpr int kLogGroup = 8;  // a multiple of 4 (log1p_rest4)
    static_assert(kLogGroup % 4 == 0);
    const int64_t ahead = rows_ahead<T>(n);
    // Not streamed: the sum pass stores x - m to y, so that y's lines are fetched for
    // ownership while the exps are computed, not in the light write pass (which then
    // reads y from L1; -10% time on (8192, 128) out of cache). In place, a group that
    // falls back below redoes some rows from x - m instead of x: the same bits (its
    // max is exactly 0, and d - 0 = d). Not for float16, whose y would round x - m.
    const bool diff = !kStream && std::is_same_v<S, C>;
    for (; r + kLogGroup <= rows; r += kLogGroup) {
      C m[kLogGroup], ls[kLogGroup];
      SumExp s[kLogGroup];
      const S* xs[kLogGroup];
      S* ys[kLogGroup];
      for (int g = 0; g < kLogGroup; ++g) {
        xs[g] = x + (r + g) * ldx;
        ys[g] = y + (r + g) * ldy;
      }
      bool ok = true;
      // the max and sum passes four rows at a time where short (as grouped_rows)
      const auto sums = [&](auto group) {
        constexpr int R = decltype(group)::value;
        S* none[R] = {};
        for (int g = 0; g < kLogGroup; g += R) {
          prefetch_rows<T>(x, ldx, n, r + g + ahead, R);
          bool nf;
          rows_max_nf<T, R>(xs + g, n, m + g, nf);
          for (int q = 0; q < R; ++q) ok &= finite<T>(m[g + q]);
          if (!ok) continue;
          if (diff)  // x - m to y (finished in place below)
            rows_sum_exp_rt<T, R, false, S, true>(xs + g, ys + g, n, m + g, s + g, false, nf);
          else
            rows_sum_exp_rt<T, R, false>(xs + g, none, n, m + g, s + g, false, nf);
        }
      };
      if (n * int64_t(sizeof(S)) <= kQuadRowsMaxBytes)
        sums(std::integral_constant<int, 4>());
      else
        sums(std::integral_constant<int, 2>());
      for (int g = 0; ok && g < kLogGroup; ++g) ok &= s[g].sum == s[g].sum;
      if (!ok) {
        for (int g = 0; g < kLogGroup; ++g) log_softmax_one<T, kStream>(xs[g], ys[g], n);
        continue;
      }
      alignas(64) double rest[kLogGroup], lg[kLogGroup];
      for (int g = 0; g < kLogGroup; ++g) rest[g] = s[g].rest;
      for (int g = 0; g < kLogGroup; g += 4) log1p_rest4<T>(rest + g, lg + g);
      for (int g = 0; g < kLogGroup; ++g) ls[g] = C(lg[g]);
      if (diff) {
        // y holds x - m: ((x - m) - 0) - ls, the bits of rows_log_finish from x
        const C zero[2] = {C(0), C(0)};
        for (int g = 0; g < kLogGroup; g += 2)
          log_finish_rows<T, 2, false>(ys + g, ys + g, n, zero, ls + g);
      } else {
        for (int g = 0; g < kLogGroup; g += 2)
          log_finish_rows<T, 2, kStream>(xs + g, ys + g, n, m + g, ls + g);
      }
    }
    for (; !kStream && r + 2 <= rows; r += 2) {
      const typename T::S* xs[2] = {x + r * ldx, x + (r + 1) * ldx};
      typename T::S* ys[2] = {y + r * ldy, y + (r + 1) * ldy};
      rows_log_softmax<T, 2>(xs, ys, n);
    }
  }
  for (; r < rows; ++r) log_softmax_one<T, kStream>(x + r * ldx, y + r * ldy, n);
  if constexpr (kStream) T::fence();
}

template <class T>
void log_softmax_rows(const typename T::S* x, int64_t ldx, typename T::S* y, int64_t ldy,
                      int64_t n, int64_t rows) {
  log_softmax_rows_impl<T, false>(x, ldx, y, ldy, n, rows);
}
template <class T>
void log_softmax_rows_stream(const typename T::S* x, int64_t ldx, typename T::S* y,
                             int64_t ldy, int64_t n, int64_t rows) {
  if constexpr (kCanStreamRows<T>) log_softmax_rows_impl<T, true>(x, ldx, y, ldy, n, rows);
}

template <class T>
void reduce_rows(const typename T::S* x, int64_t ldx, int64_t n, int64_t rows, Partial* out) {
  if constexpr (kShortRows<T>)
    if (n <= kShortRowMax) return short_rows<T, Kind::lse>(x, ldx, nullptr, 0, n, rows, out);
  int64_t r = grouped_rows<T, true>(x, ldx, n, rows, [&](int64_t r0, auto group) {
    auto xs = group_ptrs(x, ldx, r0, group);
    rows_reduce<T, decltype(group)::value>(xs.data(), n, out + r0);
  });
  for (; r < rows; ++r) out[r] = reduce<T>(x + r * ldx, n);
}
