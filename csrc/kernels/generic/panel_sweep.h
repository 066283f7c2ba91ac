// Part of the ISA-generic softmax family (softmax_family.h): panels (lanes contiguous,
// reduced axis strided) swept in memory order in blocks of rows with per-lane online
// normalizers: SweepState, sweep_sum_group, sweep_sum, sweep_chunk. Relies on
// row_passes.h (Kind, kInfC, log1p_rest), row_entries.h (HasStream, stream_row) and the
// ISA's F64 Ops.

// ---- panels ----------------------------------------------------------------------
// Lanes contiguous, reduced axis strided: element (i, j) is x[i * ldx + j], i < n the
// reduced index, j < w the lane. The panel is swept in memory order — every pass
// reads whole row segments of up to kSweepLanes lanes, so the hardware prefetchers
// stream it and each page is used whole (a narrow column tile would touch a new page
// per element row and defeat them) — in blocks of kSweepRows rows:
//   a  the block's max per lane (from memory),
//   b  the block's sum of exp(x - mu) per lane, mu = the running max including this
//      block (the block is still in cache; the next one is prefetched meanwhile),
//      merged into the running sum, which is first rescaled by exp(mu_old - mu_new)
//      where the max grew: the online normalizer of Milakov & Gimelshein, per block
//      and lane rather than per element;
// then one write pass y = exp(x - mu) / sum (log_softmax: (x - mu) - log sum).
// x is read twice from memory and y written once, the traffic of the long-row plan,
// at any n. Lanes never interact and every lane runs the same operations whatever w
// or its position (tails are masked), with fixed blocks, so a lane's bits depend only
// on its own column.
//
// Per-lane specials without branches in the loops: mu = the max where finite, +inf
// where it is +inf (softmax, log_softmax), else 0, so x - mu <= 0 or NaN and the
// x <= 0 exp serves; the sum is NaN iff the lane holds a NaN or a +inf (then the lane
// is all NaN either way). logsumexp must tell those apart (+inf alone gives +inf): it
// subtracts 0 on a +inf lane and uses the full-range exp, whose +inf only gives +inf.
// The rescale factor is 0 while the lane has only met -inf (its sum is 0, or NaN,
// which stays NaN), 1 where mu did not move, else exp(mu_old - mu_new) in double (the
// ISA's F64 exp, vectorized). The write pass then uses a per-lane factor a: 1/sum,
// NaN (a NaN or +inf in the lane: NaN everywhere) or 0 (only -inf: exp(-inf - 0) * 0
// = 0); log_softmax: a = log(sum), NaN, or 0 (then (-inf - 0) - 0 = -inf).
//
// Accuracy: the max's own term is exactly 1 in its block's sum (x - mu = 0) and is
// never rescaled afterwards (mu no longer moves), so rest = (sum - 1) + compensation
// keeps the "largest term set apart" of docs/contract.md §5; a rescaled partial sum carries the rounding
// of mu_old - mu_new, the same |x - max| / 2 ULP every float softmax pays per term.

// Lanes per chunk: a 16 KiB float32 row segment. Narrower segments at a large stride
// cost up to 1.8x in memory time here (measured with plain copies of column chunks:
// 4 KiB segments 1.8x, 16 KiB and up 1.0-1.2x of a whole copy).
constexpr int64_t kSweepLanes = 4096;
// Rows per block: a block of x (kSweepLanes wide) is ~256 KiB, so it and the next
// one (prefetched during pass b) share the L2. A constant per dtype: the blocks set
// the order of a lane's sum, so they must not depend on the panel's shape.
template <class S>
constexpr int64_t kSweepRows = std::max<int64_t>(4, (int64_t(256) << 10) / (kSweepLanes * int64_t(sizeof(S))));

// Panels whose output is at least this large are written with streaming stores.
constexpr int64_t kSweepStreamBytes = int64_t(4) << 20;
// Software prefetch of `bytes` from p (integer arithmetic: the rows ahead may lie past
// the panel; a prefetch never faults).
template <int kRw>
inline void prefetch_span(uintptr_t p, uintptr_t bytes) {
  for (uintptr_t b = 0; b < bytes; b += 64)
    __builtin_prefetch(reinterpret_cast<const void*>(p + b), kRw, 3);
  __builtin_prefetch(reinterpret_cast<const void*>(p + bytes - 1), kRw, 3);
}

template <class T, Kind kKind>
FASTSOFTMAX_PASS typename T::V panel_exp(typename T::V d) {
  if constexpr (kKind == Kind::lse)
    return T::exp(d);
  else
    return T::exp_le0(d);
}

// Per-chunk state, one entry per lane (a chunk's lanes are padded to whole vectors;
// the padding lanes load -inf and are never written). The write pass's vectors start
// at a 64-byte boundary of y, so they may read up to a vector past the last lane.
template <class T>
struct SweepState {
  using C = typename T::C;
  static constexpr int64_t kPad = 64;
  alignas(64) C m[kSweepLanes];            // running max (NaN may be dropped: see rows)
  alignas(64) C mu[kSweepLanes + kPad];    // what is subtracted (see above)
  alignas(64) C bm[kSweepLanes + kPad];    // this block's max, then the write factor
  alignas(64) double s[kSweepLanes], c[kSweepLanes];  // running sum, compensation
};

// Pass b for one group of kV vectors at lane offset j (the last vector holding kp
// lanes): where the block's max exceeds a lane's running max, mu moves and the
// lane's running sum is rescaled (in memory, before it is loaded); then the block
// [i0, i0 + nb) is added to the running sums, which live in the accumulators while
// the group's rows are summed. The next block's rows of this group are prefetched
// meanwhile, so pass a of that block reads from cache.
template <class T, int kV, Kind kKind>
void sweep_sum_group(const typename T::S* x, int64_t ldx, int64_t i0, int64_t nb, int64_t kp,
                     int64_t j, SweepState<T>& st) {
  using C = typename T::C;
  using V = typename T::V;
  using Acc = typename T::Acc;
  constexpr int64_t W = T::W;
  constexpr int64_t L = kV * W;
  constexpr C kInf = kInfC<T>;
  constexpr uintptr_t kRowBytes = uintptr_t(L) * sizeof(typename T::S);
  const uintptr_t xs = uintptr_t(ldx) * sizeof(*x);
  const uintptr_t next =
      reinterpret_cast<uintptr_t>(x + j) + uintptr_t(i0 + kSweepRows<typename T::S>) * xs;

  C* const m = st.m + j;
  C* const mu = st.mu + j;
  const C* const bm = st.bm + j;
  double* const s = st.s + j;
  double* const c = st.c + j;
  bool moved = false;  // (a NaN block max compares false: NaN lanes go NaN by their sum)
  for (int64_t l = 0; l < L; ++l) moved |= bm[l] > m[l];
  if (moved) {
    alignas(64) double f[L];
    for (int64_t l = 0; l < L; ++l) {
      const C mo = m[l], mn = bm[l] > mo ? bm[l] : mo;
      const C muo = mu[l];
      const C mun = (mn - mn == C(0))                           ? mn
                    : (kKind != Kind::lse && mn == kInf) ? mn
                                                         : C(0);
      f[l] = mo == -kInf ? -HUGE_VAL : muo == mun ? 0.0 : double(muo) - double(mun);
      m[l] = mn;
      mu[l] = mun;
    }
    for (int64_t l = 0; l < L; l += F64::W) F64::storec(f + l, F64::exp(F64::loadc(f + l)));
    if constexpr (IsSetApart<T>::value) {
      // (set_apart.h: the count stays an integer; where the max moved, the block holds
      // its new max, counted from 0)
      for (int64_t l = 0; l < L; ++l) {
        if (f[l] == 1.0) continue;
        c[l] = (s[l] + c[l]) * f[l];
        s[l] = 0.0;
      }
    } else {
      for (int64_t l = 0; l < L; ++l) {
        s[l] *= f[l];
        c[l] *= f[l];
      }
    }
  }

  V vmu[kV];
  Acc acc[kV];
  FASTSOFTMAX_UNROLL
  for (int v = 0; v < kV; ++v) {
    vmu[v] = T::loadc(mu + v * W);
    acc[v] = T::acc_from_parts(s + v * W, c + v * W);
  }
  auto row_exps = [&](int64_t i, V* e) {
    prefetch_span<0>(next + uintptr_t(i - i0) * xs, kRowBytes);
    const typename T::S* r = x + i * ldx + j;
    FASTSOFTMAX_UNROLL
    for (int v = 0; v < kV - 1; ++v) e[v] = panel_exp<T, kKind>(T::sub(T::load(r + v * W), vmu[v]));
    e[kV - 1] = panel_exp<T, kKind>(T::sub(T::load_n(r + (kV - 1) * W, kp), vmu[kV - 1]));
  };
  // Rows in pairs: acc_add2 may pre-add the two exps in float (as acc_add4 does); the
  // pairing depends only on the row's place in its block.
  int64_t i = i0;
  for (; i + 2 <= i0 + nb; i += 2) {
    V e0[kV], e1[kV];
    row_exps(i, e0);
    row_exps(i + 1, e1);
    FASTSOFTMAX_UNROLL
    for (int v = 0; v < kV; ++v) T::acc_add2(acc[v], e0[v], e1[v]);
  }
  if (i < i0 + nb) {
    V e0[kV];
    row_exps(i, e0);
    FASTSOFTMAX_UNROLL
    for (int v = 0; v < kV; ++v) T::acc_add(acc[v], e0[v]);
  }
  FASTSOFTMAX_UNROLL
  for (int v = 0; v < kV; ++v) T::acc_parts(acc[v], s + v * W, c + v * W);
}

// Pass b over a chunk of nv vectors (the last holding kp lanes), in groups of kPanelV.
template <class T, Kind kKind>
void sweep_sum(const typename T::S* x, int64_t ldx, int64_t i0, int64_t nb, int64_t nv,
               int64_t kp, SweepState<T>& st) {
  constexpr int64_t W = T::W;
  constexpr int kG = T::kPanelV;
  int64_t v0 = 0;
  for (; v0 + kG < nv; v0 += kG) sweep_sum_group<T, kG, kKind>(x, ldx, i0, nb, W, v0 * W, st);
  switch (nv - v0) {  // 1 <= nv - v0 <= kPanelV <= 4
    case 1: sweep_sum_group<T, 1, kKind>(x, ldx, i0, nb, kp, v0 * W, st); break;
    case 2:
      if constexpr (kG >= 2) sweep_sum_group<T, 2, kKind>(x, ldx, i0, nb, kp, v0 * W, st);
      break;
    case 3:
      if constexpr (kG >= 3) sweep_sum_group<T, 3, kKind>(x, ldx, i0, nb, kp, v0 * W, st);
      break;
    case 4:
      if constexpr (kG >= 4) sweep_sum_group<T, 4, kKind>(x, ldx, i0, nb, kp, v0 * W, st);
      break;
    default: break;
  }
}

// One chunk of wc <= kSweepLanes lanes.
template <class T, Kind kKind>
void sweep_chunk(const typename T::S* x, int64_t ldx, typename T::S* y, int64_t ldy, int64_t n,
                 int64_t wc, typename T::C* lse, SweepState<T>& st) {
  using C = typename T::C;
  using V = typename T::V;
  constexpr int64_t W = T::W;
  const int64_t nv = (wc + W - 1) / W, kp = wc - (nv - 1) * W, lanes = nv * W;
  constexpr C kInf = kInfC<T>;
  for (int64_t j = 0; j < lanes; ++j) {
    st.m[j] = -kInf;
    st.mu[j] = C(0);
    st.s[j] = st.c[j] = 0.0;
  }
  constexpr int64_t kRows = kSweepRows<typename T::S>;
  for (int64_t i0 = 0; i0 < n; i0 += kRows) {
    const int64_t nb = std::min(kRows, n - i0);
    // a: the block's max, row by row (memory order)
    for (int64_t v = 0; v < nv; ++v) T::storec(st.bm + v * W, T::set1(-kInf));
    for (int64_t i = i0; i < i0 + nb; ++i) {
      const typename T::S* r = x + i * ldx;
      for (int64_t v = 0; v < nv - 1; ++v)
        T::storec(st.bm + v * W, T::max(T::loadc(st.bm + v * W), T::load(r + v * W)));
      T::storec(st.bm + (nv - 1) * W,
                T::max(T::loadc(st.bm + (nv - 1) * W), T::load_n(r + (nv - 1) * W, kp)));
    }
    // b: the block's sums, merged into the running ones
    sweep_sum<T, kKind>(x, ldx, i0, nb, nv, kp, st);
  }

  // rest = sum - 1, the max's own term set apart; +inf where the sum met +inf
  // (logsumexp's +inf lanes: the compensation is then inf - inf), NaN where a NaN.
  auto rest_of = [&](int64_t j) { return st.s[j] == HUGE_VAL ? HUGE_VAL : (st.s[j] - 1.0) + st.c[j]; };
  if constexpr (kKind == Kind::lse) {
    for (int64_t j = 0; j < wc; ++j) {
      const C mj = st.m[j];
      const double rest = rest_of(j);
      lse[j] = (rest != rest)       ? kNaNC<T>
               : !(mj - mj == C(0)) ? mj  // +inf or -inf
                                    : C(double(mj) + log1p_rest<T>(rest));
    }
    return;
  } else {
    // the write pass's factor a (kept in st.bm, whose block work is done)
    C* a = st.bm;
    int64_t poisoned = 0;
    for (int64_t j = 0; j < lanes; ++j) {
      const C mj = st.m[j];
      const double rest = rest_of(j);
      if (rest != rest || mj == kInf) {
        a[j] = C(0);  // any: the lane is overwritten with NaN below
        poisoned += j < wc;
      } else if (!(mj - mj == C(0))) {  // -inf (or a padding lane)
        a[j] = C(0);
      } else {
        a[j] = kKind == Kind::softmax ? C(1.0 / (1.0 + rest)) : C(log1p_rest<T>(rest));
      }
    }
    // The write pass, row by row in memory order. Large panels (whose output would
    // not stay in cache anyway) are written with non-temporal stores where the ISA has
    // them: the head of each row segment up to a 64-byte boundary and its tail with
    // plain masked stores, the same arithmetic everywhere (the same bits).
    const auto value = [&](const typename T::S* r, int64_t j, int64_t k) {
      const V xv = k == W ? T::load(r + j) : T::load_n(r + j, k);
      const V muv = T::loadc(st.mu + j), av = T::loadc(a + j);
      if constexpr (kKind == Kind::log_softmax)
        return T::sub(T::sub(xv, muv), av);
      else
        return T::mul(T::exp_le0(T::sub(xv, muv)), av);
    };
    constexpr bool kCanStream = HasStream<T>::value && std::is_same_v<typename T::S, C>;
    const bool stream = kCanStream && n * wc * int64_t(sizeof(C)) >= kSweepStreamBytes;
    for (int64_t i = 0; i < n; ++i) {
      const typename T::S* r = x + i * ldx;
      typename T::S* o = y + i * ldy;
      if constexpr (kCanStream) {
        if (stream) {
          stream_row<T>(o, wc, [&](int64_t j, int64_t k) { return value(r, j, k); });
          continue;
        }
      }
      int64_t j = 0;
      for (; j + W <= wc; j += W) T::store(o + j, value(r, j, W));
      if (j < wc) T::store_n(o + j, wc - j, value(r, j, wc - j));
    }
    if constexpr (kCanStream)
      if (stream) T::fence();
    // Lanes with a NaN or +inf are all NaN: the canonical NaN, as the row kernels
    // write, since arithmetic on two NaNs keeps either payload depending on operand
    // order, which the compiler may pick differently for full and masked vectors.
    if (poisoned) {
      typename T::S nan_s[W];
      T::store(nan_s, T::set1(kNaNC<T>));
      for (int64_t j = 0; j < wc; ++j) {
        if (!(rest_of(j) != rest_of(j) || st.m[j] == kInf)) continue;
        for (int64_t i = 0; i < n; ++i) y[i * ldy + j] = nan_s[0];
      }
    }
  }
}
