// The selection family's kernel (fastsoftmax/select_kernels.h): top_k of a row.
//
// Plain C++ written once and included INSIDE each ISA's namespace and target region
// (and by scalar.cpp), so the chunk test below is vectorized for that ISA. Needs
// <algorithm> and <cstdint> above the region.
//
// Order (largest): a before b iff key(a) > key(b), or the keys are equal and a's index
// is lower; key(NaN) is above +inf and -0.0 equals +0.0. Smallest: the keys reversed,
// the index rule kept (NaN last). The scan visits the row in index order, so an entry
// that only ties the running k-th best can never enter: "better" is strict.

// a before b in the order above.
template <bool kLargest, class C>
inline bool ranks_before(const Ranked<C>& a, const Ranked<C>& b) {
  const bool an = a.v != a.v, bn = b.v != b.v;
  if (an || bn) {
    if (an && bn) return a.i < b.i;
    return kLargest ? an : bn;  // NaN is the largest key
  }
  if (a.v != b.v) return kLargest ? a.v > b.v : a.v < b.v;
  return a.i < b.i;
}

// Whether x[0..len) holds an entry strictly better than the running k-th best t (not
// NaN); one vectorized pass of compares, no branch per entry.
template <bool kLargest, class C>
inline bool chunk_has_better(const C* x, int64_t len, C t) {
  int any = 0;
  if (kLargest) {  // x > t or NaN: one unordered compare
    for (int64_t j = 0; j < len; ++j) any |= !(x[j] <= t);
  } else {
    for (int64_t j = 0; j < len; ++j) any |= (x[j] < t);
  }
  return any != 0;
}

// The same test on a full chunk of kSelectChunk entries. An ISA file may define
// FASTSOFTMAX_SELECT_CHUNK and a struct SelectChunk with above(x, t) (an entry > t
// or NaN) and below(x, t) (an entry < t) on kSelectChunk entries, in mask
// registers (the plain loop's OR reduces through integer vectors and a horizontal
// OR per chunk, about twice the instructions), and the primitives of max_nan and
// min_above's vector loops below (unord, either, any, keep_min, min): GCC 12 does not
// vectorize the plain loops' selects well (3-6x slower).
template <bool kLargest, class C>
inline bool full_chunk_has_better(const C* x, C t) {
#ifdef FASTSOFTMAX_SELECT_CHUNK
  return kLargest ? SelectChunk::above(x, t) : SelectChunk::below(x, t);
#else
  return chunk_has_better<kLargest>(x, kSelectChunk, t);
#endif
}

template <bool kLargest, class C>
inline bool any_better(const C* x, int64_t len, C t) {
  return len == kSelectChunk ? full_chunk_has_better<kLargest>(x, t)
                             : chunk_has_better<kLargest>(x, len, t);
}

// A chunk that holds a better entry is searched in sub-chunks of this many entries
// (one vector of float32 on AVX-512): the scalar test runs on 16 entries, not 64.
constexpr int64_t kSelectSub = 16;

// Keeps the k best of work[0..count): they end in work[0..k), the k-th best at k - 1.
template <bool kLargest, class C>
inline void keep_best(Ranked<C>* work, int64_t count, int64_t k) {
  std::nth_element(work, work + (k - 1), work + count, ranks_before<kLargest, C>);
}

template <bool kLargest, class C>
void top_k_impl(const C* x, int64_t n, int64_t k, int64_t* idx, C* vals, Ranked<C>* work) {
  const int64_t cap = select_work_size(n, k) - kSelectChunk;  // prune when reached
  int64_t count = 0;
  bool have_t = false;  // the running k-th best, once k candidates were pruned to
  Ranked<C> t{};
  for (int64_t s = 0; s < n; s += kSelectChunk) {
    const int64_t len = std::min(kSelectChunk, n - s);
    if (!have_t) {
      for (int64_t j = 0; j < len; ++j) work[count++] = {x[s + j], s + j};
    } else {
      if (!any_better<kLargest>(x + s, len, t.v)) continue;
      // a later entry beats the k-th best only strictly: a plain compare (NaN: largest)
      for (int64_t q = 0; q < len; q += kSelectSub) {
        const int64_t ql = std::min(kSelectSub, len - q);
        const C* xq = x + s + q;
        if (!chunk_has_better<kLargest>(xq, ql, t.v)) continue;
        for (int64_t j = 0; j < ql; ++j) {
          const C v = xq[j];
          if (kLargest ? !(v <= t.v) : v < t.v) work[count++] = {v, s + q + j};
        }
      }
    }
    if (count >= cap) {
      keep_best<kLargest>(work, count, k);
      count = k;
      t = work[k - 1];
      have_t = true;
      // largest: a NaN k-th best cannot be beaten by a later entry (ties lose)
      if (t.v != t.v) {
        if (kLargest) break;
      }
    }
    if (have_t && t.v != t.v && !kLargest) {
      // smallest with a NaN k-th best: every later non-NaN entry is better; the
      // chunk test cannot express it, so take the rest of the row as candidates
      for (int64_t j = s + len; j < n; ++j)
        if (x[j] == x[j]) {
          work[count++] = {x[j], j};
          if (count >= cap) {
            keep_best<kLargest>(work, count, k);
            count = k;
          }
        }
      break;
    }
  }
  if (count > k) keep_best<kLargest>(work, count, k);
  std::sort(work, work + k, ranks_before<kLargest, C>);
  for (int64_t j = 0; j < k; ++j) {
    idx[j] = work[j].i;
    vals[j] = work[j].v;
  }
}

// Small k: the k best so far in a heap whose root is the k-th best, so the running
// threshold is always exact (about k ln(n / k) entries ever enter on data in random
// order; O(n log k) at worst, for every entry entering).
constexpr int64_t kSelectHeapMax = 128;

// Restores the heap below `at` (the root: the worst of the k; children are better).
template <bool kLargest, class C>
inline void sift_down(Ranked<C>* h, int64_t k, int64_t at) {
  const Ranked<C> v = h[at];
  while (true) {
    int64_t c = 2 * at + 1;
    if (c >= k) break;
    if (c + 1 < k && ranks_before<kLargest>(h[c], h[c + 1])) ++c;  // the worse child
    if (!ranks_before<kLargest>(v, h[c])) break;
    h[at] = h[c];
    at = c;
  }
  h[at] = v;
}

template <bool kLargest, class C>
void top_k_heap(const C* x, int64_t n, int64_t k, int64_t* idx, C* vals, Ranked<C>* h) {
  for (int64_t j = 0; j < k; ++j) h[j] = {x[j], j};
  for (int64_t j = k / 2; j-- > 0;) sift_down<kLargest>(h, k, j);
  // largest: nothing beats a NaN k-th best (ties lose); smallest: a NaN k-th best is
  // beaten by every non-NaN entry, which the chunk test below cannot express
  for (int64_t s = k; s < n && !(kLargest && h[0].v != h[0].v); s += kSelectChunk) {
    const int64_t len = std::min(kSelectChunk, n - s);
    if (h[0].v == h[0].v && !any_better<kLargest>(x + s, len, h[0].v)) continue;
    for (int64_t q = 0; q < len; q += kSelectSub) {
      const int64_t ql = std::min(kSelectSub, len - q);
      const C* xq = x + s + q;
      if (h[0].v == h[0].v && !chunk_has_better<kLargest>(xq, ql, h[0].v)) continue;
      for (int64_t j = 0; j < ql; ++j) {
        // strictly better than the root (a later index loses ties): a plain compare;
        // a NaN root is beaten by nothing (largest) or by every non-NaN entry (smallest)
        const C v = xq[j], t = h[0].v;
        const bool better = t == t ? (kLargest ? !(v <= t) : v < t) : (!kLargest && v == v);
        if (better) {
          h[0] = {v, s + q + j};
          sift_down<kLargest>(h, k, 0);
        }
      }
    }
  }
  std::sort(h, h + k, ranks_before<kLargest, C>);
  for (int64_t j = 0; j < k; ++j) {
    idx[j] = h[j].i;
    vals[j] = h[j].v;
  }
}

template <class C>
void top_k_row(const C* x, int64_t n, int64_t k, bool largest, int64_t* idx, C* vals,
               Ranked<C>* work) {
  if (k <= kSelectHeapMax)
    return largest ? top_k_heap<true>(x, n, k, idx, vals, work)
                   : top_k_heap<false>(x, n, k, idx, vals, work);
  if (largest)
    top_k_impl<true>(x, n, k, idx, vals, work);
  else
    top_k_impl<false>(x, n, k, idx, vals, work);
}

// ---- the sampler's row passes (fastsoftmax/select_kernels.h) -------------------------
// Plain loops over fixed lane arrays: the compiler keeps each lane array in vector
// registers (one compare, blend or add per vector) and reduces it once per call.

constexpr int kPassLanes = 16;

#ifdef FASTSOFTMAX_SELECT_CHUNK
// The vector loops on the ISA's Ops and SelectChunk's primitives.
template <class C>
using SelectOps = std::conditional_t<sizeof(C) == 4, F32, F64>;

// Four vector maxima and the NaN lanes OR-ed (a vector max drops NaN).
template <class C>
C max_nan(const C* x, int64_t n) {
  using Ops = SelectOps<C>;
  constexpr int64_t W = Ops::W;
  const typename Ops::V lo = Ops::set1(-std::numeric_limits<C>::infinity());
  typename Ops::V m0 = lo, m1 = lo, m2 = lo, m3 = lo;
  auto bad = SelectChunk::unord(lo);  // no lane
  int64_t i = 0;
  for (; i + 4 * W <= n; i += 4 * W) {
    const auto v0 = Ops::load(x + i), v1 = Ops::load(x + i + W);
    const auto v2 = Ops::load(x + i + 2 * W), v3 = Ops::load(x + i + 3 * W);
    m0 = Ops::max(m0, v0), m1 = Ops::max(m1, v1), m2 = Ops::max(m2, v2), m3 = Ops::max(m3, v3);
    bad = SelectChunk::either(
        bad, SelectChunk::either(SelectChunk::either(SelectChunk::unord(v0), SelectChunk::unord(v1)),
                                 SelectChunk::either(SelectChunk::unord(v2), SelectChunk::unord(v3))));
  }
  for (; i < n; i += W) {  // load_n: the missing lanes -inf
    const auto v = Ops::load_n(x + i, std::min<int64_t>(W, n - i));
    m0 = Ops::max(m0, v);
    bad = SelectChunk::either(bad, SelectChunk::unord(v));
  }
  const C r = Ops::hmax(Ops::max(Ops::max(m0, m1), Ops::max(m2, m3)));
  return SelectChunk::any(bad) ? std::numeric_limits<C>::quiet_NaN() : r;
}

template <class C>
C min_above(const C* x, int64_t n, C t) {
  using Ops = SelectOps<C>;
  constexpr int64_t W = Ops::W;
  const auto vt = Ops::set1(t), inf = Ops::set1(std::numeric_limits<C>::infinity());
  auto m0 = inf, m1 = inf;
  int64_t i = 0;
  for (; i + 2 * W <= n; i += 2 * W) {
    m0 = SelectChunk::keep_min(m0, Ops::load(x + i), vt);
    m1 = SelectChunk::keep_min(m1, Ops::load(x + i + W), vt);
  }
  for (; i < n; i += W) m0 = SelectChunk::keep_min(m0, Ops::load_n(x + i, std::min<int64_t>(W, n - i)), vt);
  const C r = -Ops::hmax(Ops::sub(Ops::set1(C(0)), SelectChunk::min(m0, m1)));
  return r == std::numeric_limits<C>::infinity() ? t : r;
}
// The index of x's first max in one pass (-1 when x holds a NaN; n >= 1): per lane the
// max and its first index (a strict compare keeps the first; indices as C values, exact
// within segments of 2^24 float32 / 2^52 float64 entries), then the lowest index among
// the lanes at the max.
template <class C>
int64_t argmax_nan(const C* x, int64_t n) {
  using Ops = SelectOps<C>;
  using V = typename Ops::V;
  constexpr int64_t W = Ops::W;
  constexpr int64_t kSeg = sizeof(C) == 4 ? int64_t(1) << 24 : int64_t(1) << 52;
  const V lo = Ops::set1(-std::numeric_limits<C>::infinity()), one = Ops::set1(C(1));
  alignas(64) C lane[W];
  for (int64_t j = 0; j < W; ++j) lane[j] = C(j);
  const V first = Ops::loadc(lane), step = Ops::set1(C(W)), step2 = Ops::set1(C(2 * W));
  auto bad = SelectChunk::unord(lo);
  C best = -std::numeric_limits<C>::infinity();
  int64_t best_i = 0;
  for (int64_t s0 = 0; s0 < n; s0 += kSeg) {
    const int64_t len = std::min(kSeg, n - s0);
    const C* xs = x + s0;
    V m0 = lo, m1 = lo, i0 = Ops::set1(C(0)), i1 = i0;
    V c0 = first, c1 = Ops::fma(one, first, step);  // c + W: exact integers
    int64_t i = 0;
    for (; i + 2 * W <= len; i += 2 * W) {
      const V v0 = Ops::load(xs + i), v1 = Ops::load(xs + i + W);
      const auto g0 = SelectChunk::gt(v0, m0), g1 = SelectChunk::gt(v1, m1);
      m0 = SelectChunk::select(g0, v0, m0), i0 = SelectChunk::select(g0, c0, i0);
      m1 = SelectChunk::select(g1, v1, m1), i1 = SelectChunk::select(g1, c1, i1);
      bad = SelectChunk::either(bad, SelectChunk::either(SelectChunk::unord(v0), SelectChunk::unord(v1)));
      c0 = Ops::fma(one, c0, step2), c1 = Ops::fma(one, c1, step2);
    }
    for (; i < len; i += W) {  // load_n: the missing lanes -inf, never above the max
      const V v = Ops::load_n(xs + i, std::min<int64_t>(W, len - i));
      const auto g = SelectChunk::gt(v, m0);
      m0 = SelectChunk::select(g, v, m0), i0 = SelectChunk::select(g, c0, i0);
      bad = SelectChunk::either(bad, SelectChunk::unord(v));
      c0 = Ops::fma(one, c0, step);
    }
    alignas(64) C mv[2 * W], iv[2 * W];
    Ops::storec(mv, m0), Ops::storec(mv + W, m1), Ops::storec(iv, i0), Ops::storec(iv + W, i1);
    C m = mv[0];
    for (int64_t j = 1; j < 2 * W; ++j) m = mv[j] > m ? mv[j] : m;
    if (m > best) {  // a later segment takes over only with a larger max
      int64_t at = len;
      for (int64_t j = 0; j < 2 * W; ++j)
        if (mv[j] == m) at = std::min(at, int64_t(iv[j]));
      best = m, best_i = s0 + at;
    }
  }
  return SelectChunk::any(bad) ? -1 : best_i;
}
#else
template <class C>
C max_nan(const C* x, int64_t n) {
  C m[kPassLanes];
  int bad[kPassLanes] = {};
  for (int j = 0; j < kPassLanes; ++j) m[j] = -std::numeric_limits<C>::infinity();
  int64_t i = 0;
  for (; i + kPassLanes <= n; i += kPassLanes)
    for (int j = 0; j < kPassLanes; ++j) {
      const C v = x[i + j];
      m[j] = v > m[j] ? v : m[j];
      bad[j] |= v != v;
    }
  for (int j = 0; i < n; ++i, ++j) {
    const C v = x[i];
    m[j] = v > m[j] ? v : m[j];
    bad[j] |= v != v;
  }
  C r = m[0];
  int any = bad[0];
  for (int j = 1; j < kPassLanes; ++j) {
    r = m[j] > r ? m[j] : r;
    any |= bad[j];
  }
  return any ? std::numeric_limits<C>::quiet_NaN() : r;
}

// The least entry of x[0..n) at or above t (t itself when none is): x holds no NaN.
template <class C>
C min_above(const C* x, int64_t n, C t) {
  C m[kPassLanes];
  for (int j = 0; j < kPassLanes; ++j) m[j] = std::numeric_limits<C>::infinity();
  int64_t i = 0;
  for (; i + kPassLanes <= n; i += kPassLanes)
    for (int j = 0; j < kPassLanes; ++j) {
      const C v = x[i + j] >= t ? x[i + j] : std::numeric_limits<C>::infinity();
      m[j] = v < m[j] ? v : m[j];
    }
  for (int j = 0; i < n; ++i, ++j) {
    const C v = x[i] >= t ? x[i] : std::numeric_limits<C>::infinity();
    m[j] = v < m[j] ? v : m[j];
  }
  C r = m[0];
  for (int j = 1; j < kPassLanes; ++j) r = m[j] < r ? m[j] : r;
  return r == std::numeric_limits<C>::infinity() ? t : r;
}
#endif  // FASTSOFTMAX_SELECT_CHUNK

// m is x's max and x holds no NaN: an entry equals m iff it is above the float just
// below m, the selection scan's chunk test.
template <class C>
int64_t first_max(const C* x, int64_t n, C m) {
  const C below = std::nextafter(m, -std::numeric_limits<C>::infinity());
  int64_t i = 0;
  while (i + kSelectChunk <= n && !full_chunk_has_better<true>(x + i, below)) i += kSelectChunk;
  for (; i < n; ++i)
    if (x[i] == m) return i;
  return -1;
}

#ifndef FASTSOFTMAX_SELECT_CHUNK
template <class C>
int64_t argmax_nan(const C* x, int64_t n) {  // two passes: the max, then its first index
  const C m = max_nan(x, n);
  if (m != m) return -1;
  return m == -std::numeric_limits<C>::infinity() ? 0 : first_max(x, n, m);
}
#endif

// The entries equal to v (finite; x holds no NaN), in index order: the first `cap` of
// them to idx/vals; returns how many there are. Chunks with no entry >= v are skipped
// by the scan's chunk test.
template <class C>
int64_t find_equal(const C* x, int64_t n, C v, int64_t* idx, C* vals, int64_t cap) {
  const C below = std::nextafter(v, -std::numeric_limits<C>::infinity());
  int64_t c = 0;
  for (int64_t i = 0; i < n; i += kSelectChunk) {
    const int64_t len = std::min(kSelectChunk, n - i);
    if (!any_better<true>(x + i, len, below)) continue;
    for (int64_t j = i; j < i + len; ++j)
      if (x[j] == v) {
        if (c < cap) idx[c] = j, vals[c] = v;
        ++c;
      }
  }
  return c;
}

template <class C>
double kept_block_sums(const C* z, const C* e, int64_t n, C t, int64_t block, double* sums) {
  // double lanes: the inverse CDF needs no float sums. e * (z >= t), not a select:
  // GCC 12 vectorizes `lane += z >= t ? e : 0` wrongly for float64 on AVX2 (4 of
  // 40 kept entries lost; tests/test_sample.py caught it). e is finite and >= 0.
  constexpr int kLanes = 8;
  double total = 0.0;
  for (int64_t b = 0, i0 = 0; i0 < n; ++b, i0 += block) {
    const int64_t i1 = std::min(n, i0 + block);
    double lane[kLanes] = {};
    int64_t i = i0;
    for (; i + kLanes <= i1; i += kLanes)
      for (int j = 0; j < kLanes; ++j) lane[j] += double(e[i + j]) * double(z[i + j] >= t);
    for (int j = 0; i < i1; ++i, ++j) lane[j] += double(e[i]) * double(z[i] >= t);
    double acc = 0.0;
    for (int j = 0; j < kLanes; ++j) acc += lane[j];
    sums[b] = acc;
    total += acc;
  }
  return total;
}

template <class C>
void bucketize(const C* z, int64_t n, C top, C inv, C t, int32_t last, int32_t* bucket) {
  const C lastc = C(last);
  for (int64_t i = 0; i < n; ++i) {
    const C b = std::min(lastc, (top - z[i]) * inv);  // z = -inf: +inf, clamped
    bucket[i] = z[i] >= t ? int32_t(b) : last + 1;
  }
}

// top_p's coarse levels (select_kernels.h). Float32 partial sums over a block, then
// double: the level chosen is checked by compact_level's double sums.
template <class C>
void level_sums(const C* z, const C* e, int64_t n, const C* t, double* sums) {
  constexpr int64_t kBlock = 1024;
  for (int j = 0; j < kLevels; ++j) sums[j] = 0.0;
  int64_t i = 0;
#ifdef FASTSOFTMAX_SELECT_CHUNK
  using Ops = SelectOps<C>;
  using V = typename Ops::V;
  constexpr int64_t W = Ops::W;
  V vt[kLevels];
  for (int j = 0; j < kLevels; ++j) vt[j] = Ops::set1(t[j]);
  for (; i + W <= n;) {
    const int64_t i1 = std::min(n, i + kBlock) - W;
    V acc[kLevels];
    for (int j = 0; j < kLevels; ++j) acc[j] = Ops::set1(C(0));
    for (; i <= i1; i += W) {
      const V v = Ops::load(z + i), ev = Ops::load(e + i);
      for (int j = 0; j < kLevels; ++j) acc[j] = SelectChunk::add_ge(acc[j], v, vt[j], ev);
    }
    alignas(64) C lane[W];
    for (int j = 0; j < kLevels; ++j) {
      Ops::storec(lane, acc[j]);
      double s = 0.0;
      for (int64_t l = 0; l < W; ++l) s += double(lane[l]);
      sums[j] += s;
    }
  }
#else
  for (; i + kPassLanes <= n;) {
    const int64_t i1 = std::min(n, i + kBlock) - kPassLanes;
    C acc[kLevels][kPassLanes] = {};
    for (; i <= i1; i += kPassLanes)
      for (int j = 0; j < kLevels; ++j)
        for (int l = 0; l < kPassLanes; ++l) acc[j][l] += e[i + l] * C(z[i + l] >= t[j]);
    for (int j = 0; j < kLevels; ++j) {
      double s = 0.0;
      for (int l = 0; l < kPassLanes; ++l) s += double(acc[j][l]);
      sums[j] += s;
    }
  }
#endif
  for (; i < n; ++i)
    for (int j = 0; j < kLevels; ++j) sums[j] += z[i] >= t[j] ? double(e[i]) : 0.0;
}

// top_p's compaction of one level (select_kernels.h): the exact sums about it in
// double lanes (as kept_block_sums), the entries in it copied out (branch-free) from
// the runs of kPassLanes that hold any.
template <class C>
int64_t compact_level(const C* z, const C* e, int64_t n, C fl, C lo, C hi, int64_t block,
                      double* above, int64_t* first, double* rest, C* oz, C* oe) {
#ifdef FASTSOFTMAX_SELECT_COMPACT
  if constexpr (std::is_same<C, float>::value)
    return SelectChunk::compact_level(z, e, n, fl, lo, hi, block, above, first, rest, oz, oe);
#endif
  constexpr int kLanes = 8;
  double sur[kLanes] = {}, low[kLanes] = {};
  int64_t c = 0;
  for (int64_t b = 0, i0 = 0; i0 < n; ++b, i0 += block) {
    const int64_t i1 = std::min(n, i0 + block);
    if (first) first[b] = c;
    double up[kLanes] = {};
    int64_t i = i0;
    for (; i + kLanes <= i1; i += kLanes)
      for (int j = 0; j < kLanes; ++j) {
        const double m = double(e[i + j]);
        const C v = z[i + j];
        up[j] += m * double(v >= hi);
        sur[j] += m * double(v >= fl);
        low[j] += m * double(v < fl);
      }
    for (int j = 0; i < i1; ++i, ++j) {
      const double m = double(e[i]);
      up[j] += m * double(z[i] >= hi);
      sur[j] += m * double(z[i] >= fl);
      low[j] += m * double(z[i] < fl);
    }
    double acc = 0.0;
    for (int j = 0; j < kLanes; ++j) acc += up[j];
    above[b] = acc;
    for (i = i0; i < i1; i += kPassLanes) {
      const int64_t len = std::min<int64_t>(kPassLanes, i1 - i);
      int any = 0;
      for (int64_t j = 0; j < len; ++j) any |= int(z[i + j] >= lo) & int(z[i + j] < hi);
      if (!any) continue;
      for (int64_t j = 0; j < len; ++j) {
        const C v = z[i + j];
        oz[c] = v, oe[c] = e[i + j];
        c += int64_t(v >= lo) & int64_t(v < hi);
      }
    }
  }
  rest[0] = rest[1] = 0.0;
  for (int j = 0; j < kLanes; ++j) rest[0] += sur[j], rest[1] += low[j];
  return c;
}

template <class Set>
void fill_select(Set& k) {
  k.level_sums = level_sums;
  k.compact_level = compact_level;
  k.top_k = top_k_row;
  k.max_nan = max_nan;
  k.argmax_nan = argmax_nan;
  k.find_equal = find_equal;
  k.min_above = min_above;
  k.kept_block_sums = kept_block_sums;
  k.bucketize = bucketize;
}
