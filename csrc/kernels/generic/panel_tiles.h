// Part of the ISA-generic softmax family (softmax_family.h): panels in column tiles
// (Tile, TileWork, the tiles' passes, panel_tiles) and the panel entries of the kernel
// table (panel picks the tiles or the sweep; softmax_panel, log_softmax_panel,
// logsumexp_panel). Relies on row_passes.h, short_rows.h (lane_factors),
// row_entries.h (stream_row) and panel_sweep.h (SweepState, sweep_chunk, prefetch_span).

// ---- panel tiles -----------------------------------------------------------------
// Where a few hundred bytes of every row fit in the scratch (n rows of tw lanes in
// kTileScratchBytes, tw * sizeof(S) >= kTileMinBytes), the panel goes in column
// tiles of tw lanes, each in the three passes of a short row:
//   0  each lane's max over the n rows;
//   1  e = exp(x - mu) and its per-lane sum, e kept in the scratch (x from cache: a
//      tile's x, a few MiB, was read by pass 0 just before);
//   2  y = e * (1 / sum), streamed when large (log_softmax keeps no e: y = (x - mu)
//      - log(sum), x from cache again).
// Pass 0 of tile t + 1 runs in the sweep down the rows of pass 1 of tile t, its rows
// prefetched (into L2) kTileAhead rows ahead from inside the exps, so the memory
// reads x under the exps; alone, pass 0 left the ALUs idle for a third of the time.
// So x is read once from memory and y written once, with one exp per element: the
// traffic and arithmetic of the short-row plan, where the sweep below reads x twice
// and takes two exps (softmax). Rows go in memory order: a group of lanes down the
// rows would hit one cache set per row at strides of 4 KiB multiples. Tiles start on
// y's 64-byte lines: a line shared by two tiles would be written in two halves at
// different times (a streamed partial line is written back with a read) and, x being
// placed as y as a rule, read twice. (Measured on a Zen 3, AVX2, (4096, 4096) axis 0:
// pass by pass 2.6x copy; with pass 0 in pass 1 and both prefetches 2.2x; writing the
// tile before in that sweep too was no faster: its scratch then competes with x for
// the L3.) Ops with exp_le0_nf (AVX2): pass 0 also takes each lane's min, and a tile
// whose every lane's x - max is above the exp's underflow bound takes that exp (the
// same bits, three operations fewer) in pass 1.
// A lane's sum runs over its rows in order, four at a time (acc_add4, as the rows'
// sums), then a pair, then one, whatever the tile: its bits depend on its column
// alone. Specials as the sweep.
constexpr int64_t kTileScratchBytes = int64_t(2) << 20;
constexpr int64_t kTileMaxLanes = 1024;
// Narrower row segments at a large stride cost 2.5x (128 B) to 4x (64 B) a copy
// here, 256 B 1.1-1.2x, 512 B 1.0x (plain copies of column tiles, 16 KiB stride).
constexpr int64_t kTileMinBytes = 256;
// Rows ahead: the next tile's (from memory) and this tile's (from the L3).
constexpr int64_t kTileAhead = 8;

// Lanes per 64-byte line of x (at least a vector): tiles are whole lines.
template <class T>
constexpr int64_t kTileLine = std::max<int64_t>(T::W, 64 / int64_t(sizeof(typename T::S)));

// One tile: its place and per-lane state.
template <class T>
struct Tile {
  using S = typename T::S;
  using C = typename T::C;
  static constexpr int64_t kPad = 64;  // stream_row's vectors may pass the last lane
  alignas(64) C m[kTileMaxLanes + kPad];   // pass 0's max (NaN may be dropped)
  alignas(64) C mn[kTileMaxLanes + kPad];  // and min (Ops with exp_le0_nf)
  alignas(64) C mu[kTileMaxLanes + kPad];  // what is subtracted
  alignas(64) C a[kTileMaxLanes + kPad];   // the write factor
  alignas(64) double s[kTileMaxLanes], c[kTileMaxLanes];  // sum, compensation
  alignas(64) unsigned char bad[kTileMaxLanes];            // NaN or +inf in the lane
  const S* x;
  S* y;
  int64_t wc, nv, kp, lanes;
  bool nf;  // every lane's x - mu is >= T::kExpLe0NfMin: pass 1 takes exp_le0_nf
};

// Per thread and dtype, allocated on the thread's first tiled panel and kept: two
// tiles' state and the scratch (2 MiB + a row of padding).
template <class T>
struct TileWork {
  using C = typename T::C;
  Tile<T> t[2];
  std::unique_ptr<C[]> e{new C[kTileScratchBytes / sizeof(C) + Tile<T>::kPad]};
};
template <class T>
TileWork<T>& tile_work() {
  static thread_local std::unique_ptr<TileWork<T>> w;
  if (!w) w.reset(new TileWork<T>);
  return *w;
}

template <class T>
FASTSOFTMAX_PASS void tile_max_row(const typename T::S* r, Tile<T>& t) {
  using V = typename T::V;
  constexpr int64_t W = T::W;
  const int64_t nv = t.nv, kp = t.kp;  // (locals: the stores may alias t's fields)
  typename T::C* const m = t.m;
  typename T::C* const mn = t.mn;
  const auto step = [&](int64_t j, V v) {
    T::storec(m + j, T::max(T::loadc(m + j), v));
    if constexpr (HasExpNf<T>::value) T::storec(mn + j, T::min(T::loadc(mn + j), v));
  };
  for (int64_t v = 0; v < nv - 1; ++v) step(v * W, T::load(r + v * W));
  step((nv - 1) * W, T::load_n(r + (nv - 1) * W, kp));  // (padding: -inf, never read)
}

// Pass 1 for kR (4, 2 or 1) rows from row i: e (softmax) to the scratch rows, the
// exps added to the per-lane sums, loaded and stored per vector (four rows: pre-added
// in float by acc_add4 where it adds into one accumulator, else as two pairs). One 64-byte line
// per row in each of the first `pf_lanes` lanes at pf (the next tile's rows ahead)
// and of this tile's rows kTileAhead ahead is prefetched per line of lanes.
template <class T, Kind kKind, int kR, bool kNf>
FASTSOFTMAX_PASS void tile_sum_rows(Tile<T>& t, typename T::C* scratch, int64_t i, int64_t ldx,
                                    uintptr_t pf, int64_t pf_lanes) {
  using S = typename T::S;
  using V = typename T::V;
  constexpr int64_t W = T::W;
  constexpr int64_t kLineLanes = kTileLine<T>;
  const uintptr_t xs = uintptr_t(ldx) * sizeof(S);
  // (locals: the stores below may alias t's fields)
  const int64_t nv = t.nv, kp = t.kp, lanes = t.lanes;
  const S* const r = t.x + i * ldx;
  typename T::C* const o = scratch + i * lanes;
  const uintptr_t ahead = reinterpret_cast<uintptr_t>(r) + kTileAhead * xs;
  const auto step = [&](int64_t j, int64_t k) {
    if (j % kLineLanes == 0) {
      const uintptr_t off = uintptr_t(j) * sizeof(S);
      FASTSOFTMAX_UNROLL
      for (int q = 0; q < kR; ++q) __builtin_prefetch(reinterpret_cast<const void*>(ahead + q * xs + off), 0, 3);
      if (j < pf_lanes) {
        FASTSOFTMAX_UNROLL
        for (int q = 0; q < kR; ++q) __builtin_prefetch(reinterpret_cast<const void*>(pf + q * xs + off), 0, 1);
      }
    }
    const V mu = T::loadc(t.mu + j);
    V e[kR];
    FASTSOFTMAX_UNROLL
    for (int q = 0; q < kR; ++q) {
      const S* const rq = r + q * ldx;
      if (k == W)  // (kNf: a tail's padding lanes, -inf, need the flush)
        e[q] = exp_le0_maybe_nf<T, kNf>(T::sub(T::load(rq + j), mu));
      else
        e[q] = T::exp_le0(T::sub(T::load_n(rq + j, k), mu));
      if constexpr (kKind == Kind::softmax) T::storec(o + q * lanes + j, e[q]);
    }
    typename T::Acc acc = T::acc_from_parts(t.s + j, t.c + j);
    if constexpr (kR == 4 && OneAcc<T>::value) {
      T::acc_add4(&acc, e[0], e[1], e[2], e[3]);
    } else if constexpr (kR == 4) {  // (acc_add4 would use four accumulators)
      T::acc_add2(acc, e[0], e[1]);
      T::acc_add2(acc, e[2], e[3]);
    } else if constexpr (kR == 2)
      T::acc_add2(acc, e[0], e[1]);
    else
      T::acc_add(acc, e[0]);
    T::acc_parts(acc, t.s + j, t.c + j);
  };
  for (int64_t v = 0; v < nv - 1; ++v) step(v * W, W);
  step((nv - 1) * W, kp);
}

// After pass 0: mu = the max where finite, +inf where +inf (x - mu is then -inf or
// NaN), else 0; the sums start at 0.
template <class T>
void tile_mu(Tile<T>& t) {
  using C = typename T::C;
  bool nf = HasExpNf<T>::value;
  for (int64_t l = 0; l < t.lanes; ++l) {
    const C m = t.m[l];
    t.mu[l] = (m - m == C(0)) || m == kInfC<T> ? m : C(0);
    t.s[l] = t.c[l] = 0.0;
    if constexpr (HasExpNf<T>::value)  // (false for a NaN or non-finite max or min)
      if (l < t.wc) nf &= C(t.mn[l] - m) >= T::kExpLe0NfMin;
  }
  t.nf = nf;
}

// After pass 1: the write factor a per lane, as the sweep's (rest = sum - 1, the
// max's own term set apart); returns whether a lane holds a NaN or +inf.
template <class T, Kind kKind>
bool tile_factors(Tile<T>& t) {
  using CV = LanesC<T>;
  bool poisoned = false;
  for (int64_t l0 = 0; l0 < t.lanes; l0 += T::W) {  // (lanes: whole vectors)
    CV m, a;
    LanesI<T> bad;
    std::memcpy(&m, t.m + l0, sizeof m);
    lane_factors<T, kKind>(m, t.s + l0, t.c + l0, a, bad);
    std::memcpy(t.a + l0, &a, sizeof a);
    for (int64_t q = 0; q < T::W; ++q) {
      t.bad[l0 + q] = bad[q] != 0;
      poisoned |= bad[q] != 0 && l0 + q < t.wc;
    }
  }
  return poisoned;
}

// Pass 2, then the lanes with a NaN or +inf: the canonical NaN, as the sweep's.
template <class T, Kind kKind>
void tile_write(const Tile<T>& t, const typename T::C* scratch, int64_t n, int64_t ldx,
                int64_t ldy, bool stream, bool poisoned) {
  using S = typename T::S;
  using V = typename T::V;
  constexpr int64_t W = T::W;
  constexpr bool kCanStream = HasStream<T>::value && std::is_same_v<S, typename T::C>;
  const int64_t wc = t.wc, lanes = t.lanes;  // (locals: the stores may alias t's fields)
  const S* const x = t.x;
  S* const y = t.y;
  const uintptr_t row_bytes = uintptr_t(wc) * sizeof(S);
  for (int64_t i = 0; i < n; ++i) {
    const S* const r = x + i * ldx;
    const typename T::C* const e = scratch + i * lanes;
    S* const o = y + i * ldy;
    if constexpr (kKind == Kind::log_softmax)
      prefetch_span<0>(reinterpret_cast<uintptr_t>(r + kTileAhead * ldx), row_bytes);
    const auto value = [&](int64_t j, int64_t k) {
      if constexpr (kKind == Kind::log_softmax) {
        const V xv = k == W ? T::load(r + j) : T::load_n(r + j, k);
        return T::sub(T::sub(xv, T::loadc(t.mu + j)), T::loadc(t.a + j));
      } else {
        return T::mul(T::loadc(e + j), T::loadc(t.a + j));
      }
    };
    if constexpr (kCanStream) {
      if (stream) {
        stream_row<T>(o, wc, value);
        continue;
      }
    }
    int64_t j = 0;
    for (; j + W <= wc; j += W) T::store(o + j, value(j, W));
    if (j < wc) T::store_n(o + j, wc - j, value(j, wc - j));
  }
  if constexpr (kCanStream)
    if (stream) T::fence();
  if (!poisoned) return;
  S nan_s[W];
  T::store(nan_s, T::set1(kNaNC<T>));
  for (int64_t l = 0; l < t.wc; ++l)
    if (t.bad[l])
      for (int64_t i = 0; i < n; ++i) t.y[i * ldy + l] = nan_s[0];
}

// The panel in tiles of tw lanes, the first one `first` lanes (see above).
template <class T, Kind kKind>
void panel_tiles(const typename T::S* x, int64_t ldx, typename T::S* y, int64_t ldy, int64_t n,
                 int64_t w, int64_t tw, int64_t first) {
  using S = typename T::S;
  constexpr int64_t W = T::W;
  TileWork<T>& wk = tile_work<T>();
  typename T::C* const scratch = wk.e.get();
  const bool stream = n * w * int64_t(sizeof(typename T::C)) >= kSweepStreamBytes;
  int64_t j = 0;  // the next tile's first lane
  const auto start = [&](Tile<T>& t) {
    const int64_t wc = std::min(j == 0 ? first : tw, w - j);
    t.x = x + j;
    t.y = y + j;
    t.wc = wc;
    t.nv = (wc + W - 1) / W;
    t.kp = wc - (t.nv - 1) * W;
    t.lanes = t.nv * W;
    for (int64_t v = 0; v < t.nv; ++v) {
      T::storec(t.m + v * W, T::set1(-kInfC<T>));
      T::storec(t.mn + v * W, T::set1(kInfC<T>));
    }
    j += wc;
  };

  Tile<T>* cur = &wk.t[0];
  start(*cur);
  const uintptr_t xs = uintptr_t(ldx) * sizeof(S);
  for (int64_t i = 0; i < n; ++i) {  // pass 0 of the first tile alone
    prefetch_span<0>(reinterpret_cast<uintptr_t>(cur->x) + uintptr_t(i + kTileAhead) * xs,
                     uintptr_t(cur->wc) * sizeof(S));
    tile_max_row<T>(cur->x + i * ldx, *cur);
  }
  tile_mu<T>(*cur);
  for (;;) {
    Tile<T>* next = nullptr;
    if (j < w) {
      next = cur == &wk.t[0] ? &wk.t[1] : &wk.t[0];
      start(*next);
    }
    // one sweep down the rows: pass 1 of this tile, pass 0 of the next
    const auto rows = [&](int64_t i, auto kR) {
      uintptr_t pf = 0;
      int64_t pf_lanes = 0;
      if (next) {
        pf = reinterpret_cast<uintptr_t>(next->x + (i + kTileAhead) * ldx);
        pf_lanes = next->wc;
        if (next->wc > cur->lanes)  // (a first tile narrower than the next)
          for (int q = 0; q < kR; ++q)
            prefetch_span<0>(pf + q * xs + uintptr_t(cur->lanes) * sizeof(S),
                             uintptr_t(next->wc - cur->lanes) * sizeof(S));
        for (int q = 0; q < kR; ++q) tile_max_row<T>(next->x + (i + q) * ldx, *next);
      }
      if (cur->nf)
        tile_sum_rows<T, kKind, decltype(kR)::value, true>(*cur, scratch, i, ldx, pf, pf_lanes);
      else
        tile_sum_rows<T, kKind, decltype(kR)::value, false>(*cur, scratch, i, ldx, pf, pf_lanes);
    };
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) rows(i, std::integral_constant<int, 4>());
    if (i + 2 <= n) {
      rows(i, std::integral_constant<int, 2>());
      i += 2;
    }
    if (i < n) rows(i, std::integral_constant<int, 1>());
    const bool poisoned = tile_factors<T, kKind>(*cur);
    tile_write<T, kKind>(*cur, scratch, n, ldx, ldy, stream, poisoned);
    if (!next) break;
    tile_mu<T>(*next);
    cur = next;
  }
}

// The state (112-160 KiB) is too big for every thread's stack (musl gives threads
// 128 KiB): one per thread and dtype, allocated on the thread's first panel and kept
// (the only allocation in the kernels).
template <class T>
SweepState<T>& sweep_state() {
  static thread_local std::unique_ptr<SweepState<T>> st;
  if (!st) st.reset(new SweepState<T>);
  return *st;
}

template <class T, Kind kKind>
void panel(const typename T::S* x, int64_t ldx, typename T::S* y, int64_t ldy, int64_t n,
           int64_t w, typename T::C* lse) {
  using S = typename T::S;
  using C = typename T::C;
  if constexpr (kKind != Kind::lse) {
    // whole 64-byte lines of lanes, as many as the scratch holds for n rows
    constexpr int64_t kLine = kTileLine<T>;
    int64_t tw = std::min(kTileMaxLanes, kTileScratchBytes / (n * int64_t(sizeof(C))) / kLine * kLine);
    if (tw * int64_t(sizeof(S)) >= kTileMinBytes) {
      const int64_t tiles = (w + tw - 1) / tw;
      tw = std::min(tw, ((w + tiles - 1) / tiles + kLine - 1) / kLine * kLine);  // balanced
      // tiles end on y's lines (the first one early where y starts mid-line)
      const uintptr_t ya = reinterpret_cast<uintptr_t>(y);
      const int64_t head = ya % sizeof(S) ? 0 : int64_t((64 - ya % 64) % 64 / sizeof(S));
      panel_tiles<T, kKind>(x, ldx, y, ldy, n, w, tw, head ? head - kLine + tw : tw);
      return;
    }
  }
  SweepState<T>& st = sweep_state<T>();
  for (int64_t j = 0; j < w; j += kSweepLanes)
    sweep_chunk<T, kKind>(x + j, ldx, y ? y + j : y, ldy, n, std::min(kSweepLanes, w - j),
                          lse ? lse + j : lse, st);
}

template <class T>
void softmax_panel(const typename T::S* x, int64_t ldx, typename T::S* y, int64_t ldy,
                   int64_t n, int64_t w) {
  panel<T, Kind::softmax>(x, ldx, y, ldy, n, w, nullptr);
}
template <class T>
void log_softmax_panel(const typename T::S* x, int64_t ldx, typename T::S* y, int64_t ldy,
                       int64_t n, int64_t w) {
  panel<T, Kind::log_softmax>(x, ldx, y, ldy, n, w, nullptr);
}
template <class T>
void logsumexp_panel(const typename T::S* x, int64_t ldx, int64_t n, int64_t w,
                     typename T::C* out) {
  panel<T, Kind::lse>(x, ldx, nullptr, 0, n, w, out);
}
