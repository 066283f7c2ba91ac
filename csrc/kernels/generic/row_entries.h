// Part of the ISA-generic softmax family (softmax_family.h): the single-row entries of
// the kernel table (softmax_row, log_softmax_row, reduce, reduce_entry, the finishes
// and their streamed forms) and the streaming store of a row (HasStream, stream_row).
// Relies on row_passes.h (the row passes) and short_rows.h (short_rows).

// ---- the row entries of the kernel table -------------------------------------------

template <class T>
void softmax_row(const typename T::S* x, typename T::S* y, int64_t n) {
  if constexpr (kShortRows<T>)
    if (n <= kShortRowMax) return short_rows<T, Kind::softmax>(x, n, y, n, n, 1);
  rows_softmax<T, 1>(&x, &y, n);
}

template <class T>
void log_softmax_row(const typename T::S* x, typename T::S* y, int64_t n) {
  if constexpr (kShortRows<T>)
    if (n <= kShortRowMax) return short_rows<T, Kind::log_softmax>(x, n, y, n, n, 1);
  rows_log_softmax<T, 1>(&x, &y, n);
}

template <class T>
Partial reduce(const typename T::S* x, int64_t n) {
  Partial p;
  rows_reduce<T, 1>(&x, n, &p);
  return p;
}

// The table's reduce (the driver's rows and blocks): short rows as the batches take
// them. (The training kernels keep `reduce`, whose passes their gradients share.)
template <class T>
Partial reduce_entry(const typename T::S* x, int64_t n) {
  if constexpr (kShortRows<T>) {
    if (n <= kShortRowMax) {
      Partial p;
      short_rows<T, Kind::lse>(x, n, nullptr, 0, n, 1, &p);
      return p;
    }
  }
  return reduce<T>(x, n);
}

// reduce_entry given the row's exact, finite max: the sum pass alone (short rows: the
// whole reduce). The sum takes the plain exp, whose bits the no-flush exp repeats.
template <class T>
Partial reduce_max(const typename T::S* x, int64_t n, typename T::C m) {
  if constexpr (kShortRows<T>)
    if (n <= kShortRowMax) return reduce_entry<T>(x, n);
  SumExp s;
  typename T::S* none = nullptr;
  rows_sum_exp_rt<T, 1, false>(&x, &none, n, &m, &s, prefetch_row<T, 1>(n), false);
  if (s.sum != s.sum) return {std::numeric_limits<double>::quiet_NaN(), 0.0, 0.0};
  return {double(m), s.sum, s.rest};
}

template <class T>
void softmax_finish(const typename T::S* x, typename T::S* y, int64_t n, typename T::C m,
                    typename T::C scale) {
  rows_exp_scale<T, 1>(&x, &y, n, &m, &scale);
}

template <class T>
void log_softmax_finish(const typename T::S* x, typename T::S* y, int64_t n, typename T::C m,
                        typename T::C log_sum) {
  rows_log_finish<T, 1>(&x, &y, n, &m, &log_sum);
}

// Streaming variants (long rows' second pass, large batches and panels): stream_row
// writes the head of a row up to a 64-byte boundary and its tail with plain masked
// stores, non-temporal stores in between. Every element gets the same arithmetic as
// in the plain kernels, so the bits are equal.
template <class T, class = void>
struct HasStream : std::false_type {};
template <class T>
struct HasStream<T, std::void_t<decltype(T::stream(static_cast<typename T::S*>(nullptr),
                                                   T::set1(typename T::C(0))))>>
    : std::true_type {};

// y[0, n) = value(i, k) for the vector at i (k lanes), streamed where aligned.
template <class T, class F>
FASTSOFTMAX_PASS void stream_row(typename T::S* y, int64_t n, F&& value) {
  constexpr int64_t W = T::W;
  const uintptr_t addr = reinterpret_cast<uintptr_t>(y);
  int64_t i = 0;
  if (addr % sizeof(typename T::S) == 0) {
    int64_t head = std::min<int64_t>(n, int64_t((64 - addr % 64) % 64 / sizeof(typename T::S)));
    for (; i < head; i += W) {
      const int64_t k = std::min<int64_t>(W, head - i);
      T::store_n(y + i, k, value(i, k));
    }
    i = head;
    // whole 64-byte lines only: a line that the next row's (or the caller's) data shares
    // would sit half-written in a write-combining buffer until a plain store to its
    // other half flushed it (a partial line write to memory, then a read for
    // ownership): rows of 4000 bytes 1.7x -> 1.2x a copy (AVX2)
    constexpr int64_t kLine = 64 / int64_t(sizeof(typename T::S));
    static_assert(kLine % W == 0);
    const int64_t body_end = i + (n - i) / kLine * kLine;
    for (; i < body_end; i += W) T::stream(y + i, value(i, W));
  }
  for (; i < n; i += W) {
    const int64_t k = std::min<int64_t>(W, n - i);
    if (k == W)
      T::store(y + i, value(i, W));
    else
      T::store_n(y + i, k, value(i, k));
  }
}

template <class T, bool kLog, bool kNf = false>
void finish_stream(const typename T::S* x, typename T::S* y, int64_t n, typename T::C m,
                   typename T::C a) {
  using S = typename T::S;
  using V = typename T::V;
  if constexpr (HasStream<T>::value && std::is_same_v<S, typename T::C>) {
    const V vm = T::set1(m), va = T::set1(a);
    stream_row<T>(y, n, [&](int64_t i, int64_t k) {
      if (k == T::W) {
        const V d = T::sub(T::load(x + i), vm);
        return kLog ? T::sub(d, va) : T::mul(exp_le0_maybe_nf<T, kNf>(d), va);
      }
      const V d = T::sub(T::load_n(x + i, k), vm);  // (padding: -inf, needs the flush)
      return kLog ? T::sub(d, va) : T::mul(T::exp_le0(d), va);
    });
    T::fence();
  } else if constexpr (kLog) {
    rows_log_finish<T, 1>(&x, &y, n, &m, &a);
  } else {
    rows_exp_scale<T, 1, kNf>(&x, &y, n, &m, &a);
  }
}

// softmax's finish given the row's min (the reduce's Partial::min, merged), streamed
// as softmax_finish_stream: the no-flush exp where every x - m is >= kExpLe0NfMin.
template <class T>
void softmax_finish_min(const typename T::S* x, typename T::S* y, int64_t n, typename T::C m,
                        typename T::C scale, typename T::C min) {
  if constexpr (HasExpNf<T>::value) {
    if (typename T::C(min - m) >= T::kExpLe0NfMin) return finish_stream<T, false, true>(x, y, n, m, scale);
  }
  finish_stream<T, false>(x, y, n, m, scale);
}

template <class T>
void softmax_finish_stream(const typename T::S* x, typename T::S* y, int64_t n, typename T::C m,
                           typename T::C scale) {
  finish_stream<T, false>(x, y, n, m, scale);
}

template <class T>
void log_softmax_finish_stream(const typename T::S* x, typename T::S* y, int64_t n,
                               typename T::C m, typename T::C log_sum) {
  finish_stream<T, true>(x, y, n, m, log_sum);
}
