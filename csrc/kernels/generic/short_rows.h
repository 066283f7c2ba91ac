// Part of the ISA-generic softmax family (softmax_family.h): the lanes' write factors
// (lane_factors, shared with the panel tiles) and short rows run across rows
// (short_rows, kShortRowMax, kShortRows). Relies on row_passes.h (Kind, HasExpNf,
// OneAcc, exp_le0_maybe_nf, kInfC, Partial).

// ---- lanes' write factors (short rows across rows, panel tiles) --------------------
// For W lanes with max m and sum parts s, c (rest = (s - 1) + c, the max's own term set
// apart; the sums of exps <= 1 are finite or NaN): a = 1 / sum (softmax) or log1p(rest)
// (log_softmax), 0 where the lane is all -inf (or padding) or holds a NaN or +inf; bad
// marks the latter (their outputs are written NaN after). In GCC/Clang vector
// extensions, W lanes at once: one scalar division or log per row cost as much as the
// exps of a row of 4.
template <class T>
using LanesC = typename simd::VecOf<typename T::C, T::W>::type;
template <class T>
using LanesD = typename simd::VecOf<double, T::W>::type;
template <class T>
using LanesI = typename simd::VecOf<int64_t, T::W>::type;

template <class T, Kind kKind>
FASTSOFTMAX_PASS void lane_factors(const LanesC<T>& m, const double* s, const double* c,
                                   LanesC<T>& a, LanesI<T>& bad) {
  using DV = LanesD<T>;
  using IV = LanesI<T>;
  DV sv, cv;
  std::memcpy(&sv, s, sizeof sv);
  std::memcpy(&cv, c, sizeof cv);
  const DV rest = (sv - 1.0) + cv;
  const DV md = __builtin_convertvector(m, DV);
  bad = (rest != rest) | (md == HUGE_VAL);
  DV ad;
  if constexpr (kKind == Kind::softmax) {
    ad = 1.0 / (1.0 + rest);
  } else if constexpr (std::is_same_v<typename T::C, float>) {
    ad = rest;
    simd::log1p_sum_f32v<DV, IV>(ad);
  } else {
    for (int64_t l = 0; l < T::W; ++l) ad[l] = simd::log1p_sum(rest[l]);
  }
  ad = (DV)((IV)ad & ~bad & ((md - md) == 0.0));
  a = __builtin_convertvector(ad, LanesC<T>);
}

// ---- short rows, across rows ------------------------------------------------------
// Rows of at most kShortRowMax elements spend more on per-row work (horizontal max and
// sum, the division, masked tails) than on their exps: W rows at a time go through a
// stack buffer, transposed (lane l = row r0 + l), and their passes run vectorized
// across the rows as a panel tile's do: max (and min), the exps and their per-lane sums
// (float32: four elements at a time, float64: one by one, compensated), the lanes'
// factors, the write; then back. A row's lane takes the same operations whatever the
// other lanes hold (padding lanes repeat the last row) and wherever the row sits in the
// batch, and every kernel entry that takes a contiguous row this short comes here
// (softmax_row, log_softmax_row, reduce and the batches, streamed or not): a row's bits
// are its own (docs/contract.md §6). float16 rows keep the row kernels. Measured on a Zen 3 (AVX2), float32 out of cache,
// x copy, row kernels -> here: n = 2 51 -> 13 (onnxruntime 23), 5 23 -> 6.9 (12),
// 10 13 -> 6.0 (6.6), 15 7.8 -> 4.6 (5.0); n = 16 and 24 were faster in the row
// kernels (no masked tails), n = 32 much faster (in cache 0.85 against 1.5 ns per
// element): the scalar moves of the transposes cost about 0.8 ns per element.
constexpr int64_t kShortRowMax = 15;
template <class T>
constexpr bool kShortRows = std::is_same_v<typename T::S, typename T::C>;

// Kind::lse: each row's Partial (as rows_reduce's: {NaN} with a NaN, {+inf} / {-inf}
// for rows whose max is that, else max, sum, rest and min) to parts, y unused; its lanes
// subtract 0 where the max is not finite and take the full-range exp, so that a +inf
// row sums to +inf and only a NaN gives a NaN (as the panels' logsumexp).
template <class T, Kind kKind>
void short_rows(const typename T::S* x, int64_t ldx, typename T::S* y, int64_t ldy, int64_t n,
                int64_t rows, Partial* parts = nullptr) {
  static_assert(kShortRows<T>);
  constexpr bool kLse = kKind == Kind::lse;
  using C = typename T::C;
  using V = typename T::V;
  constexpr int64_t W = T::W;
  using CV = LanesC<T>;  // the lanes' own work in vector extensions (lane_factors)
  alignas(64) C buf[kShortRowMax * W];  // buf[j * W + l]: element j of row r0 + l
  alignas(64) double s[W], c[W];
  for (int64_t r0 = 0; r0 < rows; r0 += W) {
    const int64_t cnt = std::min<int64_t>(W, rows - r0);
    int64_t off[W];  // padding lanes repeat the last row (their results are dropped)
    for (int64_t l = 0; l < W; ++l) off[l] = (r0 + std::min(l, cnt - 1)) * ldx;
    for (int64_t j = 0; j < n; ++j)
      for (int64_t l = 0; l < W; ++l) buf[j * W + l] = x[off[l] + j];
    V vm = T::set1(-kInfC<T>), vmn = T::set1(kInfC<T>);
    for (int64_t j = 0; j < n; ++j) {
      const V v = T::loadc(buf + j * W);
      vm = T::max(vm, v);  // (a NaN may be dropped: the lane's sum catches it)
      if constexpr (HasExpNf<T>::value) vmn = T::min(vmn, v);
    }
    CV m, mn, mu;
    T::storec(reinterpret_cast<C*>(&m), vm);
    T::storec(reinterpret_cast<C*>(&mn), vmn);
    // as tile_mu: the max where finite or +inf (logsumexp: where finite), else 0
    using MV = decltype(m == m);
    const CV zero = m - m;  // 0, or NaN where m is not finite
    mu = (CV)((MV)m & (kLse ? zero == 0 : (zero == 0) | (m == kInfC<T>)));
    bool nf = HasExpNf<T>::value && !kLse;
    if constexpr (HasExpNf<T>::value && !kLse) {  // (false for a NaN or non-finite max or min)
      const MV ok = (mn - m) >= T::kExpLe0NfMin;
      for (int64_t l = 0; l < W; ++l) nf &= ok[l] != 0;
    }
    const V vmu = T::loadc(reinterpret_cast<const C*>(&mu));
    const auto sums = [&](auto kNf) {
      constexpr bool kNoFlush = decltype(kNf)::value;
      typename T::Acc acc = T::acc_zero();
      const auto exps = [&](int64_t j, int q, V* e) {
        for (int k = 0; k < q; ++k) {
          const V d = T::sub(T::loadc(buf + (j + k) * W), vmu);
          e[k] = kLse ? T::exp(d) : exp_le0_maybe_nf<T, kNoFlush>(d);
          if constexpr (kKind == Kind::softmax) T::storec(buf + (j + k) * W, e[k]);
        }
      };
      int64_t j = 0;
      V e[4];
      if constexpr (std::is_same_v<C, double>) {
        // one compensated add per exp: a row's terms share a lane, and a tree would
        // round the max's own 1 with the others' tiny sum (float64 log_softmax must
        // keep a dominant entry's precision; float32's error there is far below 1 ULP)
        for (; j < n; ++j) {
          exps(j, 1, e);
          T::acc_add(acc, e[0]);
        }
      }
      for (; j + 4 <= n; j += 4) {  // four at a time, a pair, one: as the tiles
        exps(j, 4, e);
        if constexpr (OneAcc<T>::value) {
          T::acc_add4(&acc, e[0], e[1], e[2], e[3]);
        } else {
          T::acc_add2(acc, e[0], e[1]);
          T::acc_add2(acc, e[2], e[3]);
        }
      }
      if (j + 2 <= n) {
        exps(j, 2, e);
        T::acc_add2(acc, e[0], e[1]);
        j += 2;
      }
      if (j < n) {
        exps(j, 1, e);
        T::acc_add(acc, e[0]);
      }
      T::acc_parts(acc, s, c);
    };
    if (nf)
      sums(std::true_type());
    else
      sums(std::false_type());
    if constexpr (kLse) {
      for (int64_t l = 0; l < cnt; ++l) {
        Partial& p = parts[r0 + l];
        const double ml = double(m[l]);
        if (s[l] != s[l])
          p = {std::numeric_limits<double>::quiet_NaN(), 0.0, 0.0};
        else if (!(ml - ml == 0.0))
          p = {ml, 0.0, 0.0};
        else
          p = {ml, s[l] + c[l], (s[l] - 1.0) + c[l]};
        if constexpr (HasExpNf<T>::value) p.min = double(mn[l]);  // (else -inf: not taken)
      }
      continue;
    }
    CV a;
    LanesI<T> bad;
    lane_factors<T, kKind>(m, s, c, a, bad);
    bool poisoned = false;
    for (int64_t l = 0; l < cnt; ++l) poisoned |= bad[l] != 0;
    const V va = T::loadc(reinterpret_cast<const C*>(&a));
    for (int64_t j = 0; j < n; ++j) {
      const V v = T::loadc(buf + j * W);
      T::storec(buf + j * W, kKind == Kind::softmax ? T::mul(v, va) : T::sub(T::sub(v, vmu), va));
    }
    if (poisoned)
      for (int64_t l = 0; l < cnt; ++l)
        if (bad[l])
          for (int64_t j = 0; j < n; ++j) buf[j * W + l] = kNaNC<T>;
    for (int64_t l = 0; l < cnt; ++l) {
      C* const yr = y + (r0 + l) * ldy;
      for (int64_t j = 0; j < n; ++j) yr[j] = buf[j * W + l];
    }
  }
}
