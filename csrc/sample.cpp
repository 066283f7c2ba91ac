// The sampler's driver (selection family): per row, z = logits / T (masked tokens
// -inf), then min_p, top_k and top_p as thresholds on z, then one inverse-CDF draw in
// token-id order (docs/contract.md §12). Never sorts the vocabulary:
//  * the row max and top_k's k-th value come from the selection kernel's O(n) scan;
//  * top_p over many survivors: their masses at kLevels levels of z below the max (one
//    vectorized pass, two for a level of many tokens), the one level that crosses the
//    mass p * S compacted out and refined by the same levels on its members (a tie
//    group is decided whole), refine_top_p's histogram on the last few hundred,
//    sorting at most kSortMax candidates at the end: O(n) per row whatever the logits
//    (the histogram of every token, kBuckets buckets, where rounding makes the levels'
//    float sums pick a level that does not cross);
//  * small top_k (k <= kSmallK, no tie beyond the k-th): the k selected entries alone
//    carry the filters and the draw (no pass over the row after the scan);
//  * masses exp(z - M) by the softmax family's finish kernel, sums in double.
// A row's token depends only on its logits, parameters and uniform u: never on the
// batch, its position, the thread count (beyond u within rounding of a boundary).
#include "sample.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include "engine/blocks.h"
#include "engine/threads.h"
#include "fastsoftmax/kernels.h"
#include "fastsoftmax/philox.h"

namespace fastsoftmax {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr int kBuckets = 512;  // 4 interleaved double histograms: 16 KiB, in L1
constexpr size_t kSortMax = 64;
constexpr int64_t kRefineMax = 512;  // top_p: the level refinement hands over to refine_top_p
constexpr int64_t kSmallK = 1024;
constexpr int64_t kDrawBlock = 1024;  // the draw sums masses per block, then walks one

template <class C>
struct SampleScratch {
  Buf<C> z, e, raw;
  Buf<Ranked<C>> work;
  Buf<int64_t> idx;
  Buf<C> vals;
  Buf<Partial> parts;
  Buf<double> block_sums;
  Buf<int32_t> bucket;  // top_p: each token's histogram bucket (the fallback)
  Buf<C> lz, le, lz2, le2, lz3, le3;  // top_p: the crossing level's (z, mass), refined
  Buf<int64_t> first;       // the first level's members before each draw block
  std::vector<std::pair<double, double>> cand;  // (z, mass) of the bucket being refined
};

// z's histogram bucket: 0 at the max M, monotone in z (a larger z never lands in a
// later bucket), values further than `span` below M in the last bucket.
struct Bucketer {
  double top, inv;
  int operator()(double z) const {
    const double b = (top - z) * inv;
    return b < double(kBuckets - 1) ? int(b) : kBuckets - 1;
  }
};

// The top_p threshold tau among candidates (z, mass) that all lie below the `before`
// mass of better tokens: every candidate with z >= tau is kept (docs/contract.md §12:
// token i is kept iff the mass strictly above it is < target).
double refine_top_p(std::vector<std::pair<double, double>>& cand, double before, double target) {
  while (cand.size() > kSortMax) {
    double lo = cand[0].first, hi = cand[0].first;
    for (const auto& c : cand) {
      lo = std::min(lo, c.first);
      hi = std::max(hi, c.first);
    }
    if (lo == hi) return lo;  // one tie group: `before` < target, so all of it is kept
    const Bucketer bk{hi, double(kBuckets) / (hi - lo)};
    double mass[kBuckets] = {};
    for (const auto& c : cand) mass[bk(c.first)] += c.second;
    int b = 0;
    for (; b < kBuckets - 1 && before + mass[b] < target; ++b) before += mass[b];
    std::vector<std::pair<double, double>> next;
    for (const auto& c : cand)
      if (bk(c.first) == b) next.push_back(c);
    if (next.empty()) return lo;  // (rounding) no crossing found: keep every candidate
    cand.swap(next);
  }
  std::sort(cand.begin(), cand.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  double tau = cand[0].first;
  for (size_t i = 0; i < cand.size();) {
    if (!(before < target)) break;
    size_t j = i;
    double group = 0.0;
    for (; j < cand.size() && cand[j].first == cand[i].first; ++j) group += cand[j].second;
    tau = cand[i].first;
    before += group;
    i = j;
  }
  return tau;
}

template <class S, class C>
struct RowSampler {
  const SampleProblem& a;
  const SoftmaxKernels<C, C>& sm;
  const SoftmaxKernels<S, C>& ss;
  const SelectKernels<C>& sel;

  // The row's z = x / T (masked -inf) in s.z, or x itself where no work is needed.
  const C* load_z(const char* xb, const bool* mb, double T, SampleScratch<C>& s) const {
    const int64_t n = a.n;
    const C t = C(T == 0.0 ? 1.0 : T);
    if (!mb && t == C(1) && in_place<S, C>(a.xs)) return reinterpret_cast<const C*>(xb);
    C* z = s.z.get(n);
    const bool mask_contig = !mb || a.ms == 1;
    if (ss.gather_row && a.xs == int64_t(sizeof(S)) && mask_contig) {
      ss.gather_row(reinterpret_cast<const S*>(xb), mb, z, n, t);
      return z;
    }
    for (int64_t i = 0; i < n; ++i) {
      C v = C(load(reinterpret_cast<const S*>(xb + i * a.xs)));
      if (t != C(1)) v = v / t;
      z[i] = mb && !mb[i * a.ms] ? -std::numeric_limits<C>::infinity() : v;
    }
    return z;
  }

  // The raw row (the logits as given) in the compute type.
  const C* load_raw(const char* xb, SampleScratch<C>& s) const {
    if (in_place<S, C>(a.xs)) return reinterpret_cast<const C*>(xb);
    C* r = s.raw.get(a.n);
    gather_as<S>(xb, a.xs, a.n, r);
    return r;
  }

  // log_softmax(x)[tok] of the raw logits; `raw_max` when known (no mask, T 1 or 0:
  // the max of z is x's), else NaN: then one max pass (NaN when x holds one). The
  // sum exp(x - max) by the softmax family's reduce_max, block by block.
  // `raw_sum`: sum exp(x - raw_max) where a pass already has it (top_p's histogram), else NaN.
  double raw_logprob(const char* xb, int64_t tok, double raw_max, double raw_sum,
                     SampleScratch<C>& s) const {
    const C* raw = load_raw(xb, s);
    const int64_t n = a.n;
    const C mx = raw_max == raw_max ? C(raw_max) : sel.max_nan(raw, n);
    if (!std::isfinite(double(mx))) return mx == -std::numeric_limits<C>::infinity() ? -HUGE_VAL : kNaN;
    if (raw_max == raw_max && raw_sum == raw_sum) return (double(raw[tok]) - raw_max) - std::log(raw_sum);
    double log_sum;
    if (n <= kBlock) {  // the max's own term set apart (docs/contract.md §5)
      const Merged m = merged_of(sm.reduce_max(raw, n, mx));
      log_sum = std::log1p(m.rest);
    } else {
      double sum = 0.0;
      for (int64_t i0 = 0; i0 < n; i0 += kBlock)
        sum += sm.reduce_max(raw + i0, std::min(kBlock, n - i0), mx).sum;
      log_sum = std::log(sum);
    }
    if (!(log_sum == log_sum)) return kNaN;  // a NaN among the logits
    return (double(raw[tok]) - double(mx)) - log_sum;
  }

  // Draw among the tokens with z >= thr (masses e, all n) in id order.
  int64_t draw_all(const C* z, const C* e, double thr, double u, double* total,
                   SampleScratch<C>& s) const {
    const int64_t nb = (a.n + kDrawBlock - 1) / kDrawBlock;
    double* bs = s.block_sums.get(nb);
    const C t = C(thr);  // thr is -inf or a z value: exact in C
    *total = sel.kept_block_sums(z, e, a.n, t, kDrawBlock, bs);
    return walk(z, e, t, u, *total, bs);
  }

  // The inverse-CDF walk given the kept mass per block bs and their total.
  int64_t walk(const C* z, const C* e, C t, double u, double total_mass, const double* bs) const {
    const int64_t n = a.n, nb = (n + kDrawBlock - 1) / kDrawBlock;
    const double target = u * total_mass;
    double acc = 0.0;
    int64_t last = -1;
    for (int64_t b = 0; b < nb; ++b) {
      if (!(acc + bs[b] > target) && b + 1 < nb) {
        acc += bs[b];
        continue;
      }
      const int64_t i1 = std::min(n, (b + 1) * kDrawBlock);
      for (int64_t i = b * kDrawBlock; i < i1; ++i) {
        if (!(z[i] >= t) || !(e[i] > C(0))) continue;  // never a token of mass 0
        acc += double(e[i]);
        last = i;
        if (acc > target) return i;
      }
    }
    return last;  // u within rounding of 1: the last kept token
  }

  // The draw over every token of v (no filter): one pass of the softmax family's
  // exp_sums (block sums of the masses exp((v - m) * sc); the Partial of sum exp(v - m)
  // in *sums), then the one block that crosses u times the total, its masses by
  // exp_scaled (the same bits). -1 when v holds a NaN.
  int64_t draw_unfiltered(const C* v, C m, C sc, double u, Merged* sums, double* total,
                          SampleScratch<C>& s) const {
    const int64_t n = a.n, nb = (n + kDrawBlock - 1) / kDrawBlock;
    double* bs = s.block_sums.get(nb);
    *sums = merged_of(sm.exp_sums(v, n, m, sc, kDrawBlock, bs));
    if (!(sums->max == sums->max)) return -1;
    double total_mass = 0.0;
    for (int64_t b = 0; b < nb; ++b) total_mass += bs[b];
    *total = total_mass;
    const double target = u * total_mass;
    double acc = 0.0;
    int64_t last = -1;
    C* e = s.e.get(kDrawBlock);
    for (int64_t b = 0; b < nb; ++b) {
      if (!(acc + bs[b] > target) && b + 1 < nb) {
        acc += bs[b];
        continue;
      }
      const int64_t i0 = b * kDrawBlock, len = std::min(kDrawBlock, n - i0);
      sm.exp_scaled(v + i0, e, len, m, sc);
      for (int64_t j = 0; j < len; ++j) {
        if (!(e[j] > C(0))) continue;  // never a token of mass 0
        acc += double(e[j]);
        last = i0 + j;
        if (acc > target) return last;
      }
    }
    return last;  // u within rounding of 1: the last token of mass > 0
  }

  // A row without filters or mask (and 0 < T, 1 / T finite): the logits as given, one max
  // pass and one pass of exps for both the masses exp((x - max) / T) and the raw
  // log-probabilities' sum; z = x / T is formed for the chosen token alone.
  void unfiltered(int64_t r, const char* xb, double T, double u, SampleScratch<C>& s) const {
    const C* x = load_raw(xb, s);
    const C mx = sel.max_nan(x, a.n);
    Merged raw{};
    double total = 0.0;
    const C sc = T == 1.0 ? C(1) : C(1.0 / T);
    const int64_t tok = std::isfinite(double(mx)) ? draw_unfiltered(x, mx, sc, u, &raw, &total, s) : -1;
    a.tokens[r] = tok;
    if (a.logprobs == Logprobs::none) return;
    if (tok < 0) {  // NaN or +inf logit, or every logit -inf
      a.logprob[r] = kNaN;
      return;
    }
    const double log_raw = std::log1p(raw.rest);  // the max's own term set apart
    if (a.logprobs == Logprobs::raw) {
      a.logprob[r] = (double(x[tok]) - double(mx)) - log_raw;
    } else if (T == 1.0) {
      a.logprob[r] = (double(x[tok]) - double(mx)) - log_raw;
    } else {
      const C t = C(T);  // z = x / T in the compute type, as every other path forms it
      a.logprob[r] = (double(x[tok] / t) - double(mx / t)) - std::log(total);
    }
  }

  double uniform(int64_t r) const {
    if (a.has_u) return a.u.at(r);
    const uint64_t counter[4] = {a.offset.at(r), a.seed.st == 0 ? uint64_t(r) : 0, 0, 0};
    return philox_uniform(a.seed.at(r), counter);
  }

  // The top_p threshold over the tokens with z >= thr (masses e): each token's bucket
  // below the max in one vectorized pass (in C: monotone in z, the last bucket taking
  // everything further than the span), the masses added into four interleaved
  // histograms (no store-to-load chain on runs of one bucket), then the bucket that
  // crosses p times the total refined on its members alone.
  double top_p_threshold(const C* z, const C* e, double M, double thr, double p,
                         double* all_mass, SampleScratch<C>& s) const {
    const int64_t n = a.n;
    int32_t* bucket = s.bucket.get(n);
    // buckets over the survivors' span (at most 48 / 64 below the max: masses below
    // e^-48 go to the last bucket; the refinement decides them if it must)
    const double cap = sizeof(C) == 4 ? 48.0 : 64.0;
    const double lo = double(sel.min_above(z, n, C(std::max(thr, M - cap))));
    const C inv = C(kBuckets / std::max(M - lo, 1e-30) * 0.999);  // the least z in bucket kBuckets-1
    sel.bucketize(z, n, C(M), inv, C(thr), kBuckets - 1, bucket);  // kBuckets: filtered out
    double h[4][kBuckets + 1] = {};
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
      for (int j = 0; j < 4; ++j) h[j][bucket[i + j]] += double(e[i + j]);
    for (int j = 0; i < n; ++i, ++j) h[j][bucket[i]] += double(e[i]);
    double mass[kBuckets], total_mass = 0.0;
    for (int b = 0; b < kBuckets; ++b) {
      mass[b] = (h[0][b] + h[1][b]) + (h[2][b] + h[3][b]);
      total_mass += mass[b];
    }
    // every token's mass, the filtered ones' (bucket kBuckets) included
    *all_mass = total_mass + ((h[0][kBuckets] + h[1][kBuckets]) + (h[2][kBuckets] + h[3][kBuckets]));
    const double target = p * total_mass;
    double before = 0.0;
    int b = 0;
    for (; b < kBuckets - 1 && before + mass[b] < target; ++b) before += mass[b];
    s.cand.clear();
    for (int64_t j = 0; j < n; ++j)
      if (bucket[j] == b) s.cand.push_back({double(z[j]), double(e[j])});
    return s.cand.empty() ? thr : refine_top_p(s.cand, before, target);
  }

  // top_p by coarse levels (O(n), no per-token bucket): the masses at or above
  // kLevels thresholds (level_sums: float partial sums) spread over the survivors'
  // span, at most ln(n / (1 - p)) below the max (the tokens further below cannot hold
  // the mass 1 - p: the max's own mass is 1), the level that crosses p times the total
  // compacted out with the exact masses about it (compact_level, double), the same on
  // the compacted (z, mass) until at most kRefineMax remain, then refine_top_p.
  // Returns tau (the survivors with z >= tau kept), the kept mass per draw block in
  // s.block_sums and its total; or NaN where the exact masses show the level chosen
  // does not cross (float rounding at a level's edge): then the caller takes the full
  // histogram (top_p_threshold).
  double top_p_levels(const C* z, const C* e, double M, double thr, double p, double* all_mass,
                      double* kept_total, SampleScratch<C>& s) const {
    constexpr C kInf = std::numeric_limits<C>::infinity();
    constexpr int kLast = kLevels - 1;
    const int64_t n = a.n, nb = (n + kDrawBlock - 1) / kDrawBlock;
    const double cap = std::min(sizeof(C) == 4 ? 48.0 : 64.0, std::log(double(n) / (1.0 - p)) + 1.0);
    // the survivors: z >= C(thr); a -inf token (mass 0) is never a candidate
    const C fl = std::max(C(thr), std::numeric_limits<C>::lowest());
    // the levels' floor: the least survivor at most `cap` below the max, of 16 runs of
    // 256 spread over a long row (only the levels' spacing depends on it: a token
    // below it lands in the lowest level)
    const C floor_t = C(std::max(thr, M - cap));
    constexpr int64_t kRuns = 16, kRun = 256;
    C least = C(M);
    if (n <= 2 * kRuns * kRun) {
      least = sel.min_above(z, n, floor_t);
    } else {
      for (int64_t r = 0; r < kRuns; ++r)
        least = std::min(least, sel.min_above(z + r * (n - kRun) / (kRuns - 1), kRun, floor_t));
    }
    const double lo = double(least);
    // t[0..kLast) spread over (lo, M], t[kLast] the survivors' bound
    C t[kLevels];
    double w = (M - lo) / kLevels;
    for (int j = 0; j < kLast; ++j) t[j] = C(M - (j + 1) * w);
    t[kLast] = fl;
    double sums[kLevels];
    sel.level_sums(z, e, n, t, sums);
    int j = 0;
    while (j < kLast && sums[j] < p * sums[kLast]) ++j;
    C lvl_lo = t[j], lvl_hi = j == 0 ? kInf : t[j - 1];
    // a level of many tokens (about its mass over the mass at its middle; flat rows):
    // the same levels within it, a second pass
    const double lvl_mass = sums[j] - (j == 0 ? 0.0 : sums[j - 1]);
    const double mid = j == kLast ? double(lvl_lo) : j == 0 ? M - 0.5 * w : double(lvl_lo) + 0.5 * w;
    if (lvl_mass > double(n / 16) * std::exp(mid - M)) {
      const double top = j == 0 ? M : double(lvl_hi), bottom = j == kLast ? lo : double(lvl_lo);
      w = (top - bottom) / kLevels;
      C u[kLevels];
      for (int k = 0; k < kLast; ++k) u[k] = C(top - (k + 1) * w);
      u[kLast] = lvl_lo;
      const double approx_target = p * sums[kLast];
      sel.level_sums(z, e, n, u, sums);
      int k = 0;
      while (k < kLast && sums[k] < approx_target) ++k;
      lvl_lo = u[k], lvl_hi = k == 0 ? lvl_hi : u[k - 1];
    }
    C* cz = s.lz.get(n + kCompactPad);
    C* ce = s.le.get(n + kCompactPad);
    int64_t* first = s.first.get(nb + 1);
    double* bs = s.block_sums.get(nb);
    double rest[2];
    const int64_t c1 = sel.compact_level(z, e, n, fl, lvl_lo, lvl_hi, kDrawBlock, bs, first, rest, cz, ce);
    first[nb] = c1;
    double before = 0.0;
    for (int64_t b = 0; b < nb; ++b) before += bs[b];
    const double total_mass = rest[0];
    *all_mass = rest[0] + rest[1];  // every token's mass, the filtered ones' included
    const double target = p * total_mass;
    if (!(before < target && target <= before + kept_sum(cz, ce, 0, c1, lvl_lo))) return kNaN;
    // the level's members refined: the same levels over their span until few remain
    const C* rz = cz;
    const C* re = ce;
    int64_t c = c1;
    C* bufz[2] = {s.lz2.get(c1 + kCompactPad), nullptr};
    C* bufe[2] = {s.le2.get(c1 + kCompactPad), nullptr};
    double tau = kNaN;
    for (int pass = 0; c > kRefineMax; ++pass) {
      const C hi_c = sel.max_nan(rz, c), lo_c = sel.min_above(rz, c, fl);
      if (lo_c == hi_c) {  // one tie group, above the mass before it: all kept
        tau = double(lo_c);
        break;
      }
      w = (double(hi_c) - double(lo_c)) / kLevels;
      for (int k = 0; k < kLast; ++k) t[k] = C(double(hi_c) - (k + 1) * w);
      t[kLast] = lo_c;
      sel.level_sums(rz, re, c, t, sums);
      int k = 0;
      while (k < kLast && before + sums[k] < target) ++k;
      lvl_lo = t[k], lvl_hi = k == 0 ? kInf : t[k - 1];
      const int o = pass & 1;
      if (!bufz[o]) bufz[o] = s.lz3.get(c1 + kCompactPad), bufe[o] = s.le3.get(c1 + kCompactPad);
      double above;
      const int64_t c2 = sel.compact_level(rz, re, c, lvl_lo, lvl_lo, lvl_hi, c, &above, nullptr,
                                           rest, bufz[o], bufe[o]);
      // a level that does not cross (rounding) or no progress: refine what is left
      if (c2 == c || !(before + above < target && target <= before + rest[0]))
        break;
      before += above;
      rz = bufz[o], re = bufe[o], c = c2;
    }
    if (!(tau == tau)) {
      s.cand.clear();
      for (int64_t i = 0; i < c; ++i) s.cand.push_back({double(rz[i]), double(re[i])});
      tau = refine_top_p(s.cand, before, target);
    }
    // the kept mass per block: above the first level, and its members at or above tau
    const C ctau = C(tau);
    double kept = 0.0;
    for (int64_t b = 0; b < nb; ++b) {
      bs[b] += kept_sum(cz, ce, first[b], first[b + 1], ctau);
      kept += bs[b];
    }
    *kept_total = kept;
    return tau;
  }

  // The sum in double of e[i] over i in [i0, i1) with z[i] >= t: the selection
  // family's kept_block_sums over one block.
  double kept_sum(const C* z, const C* e, int64_t i0, int64_t i1, C t) const {
    double sum = 0.0;
    return i1 > i0 ? sel.kept_block_sums(z + i0, e + i0, i1 - i0, t, i1 - i0, &sum) : 0.0;
  }

  void row(int64_t r, const int64_t* off, SampleScratch<C>& s) const {
    const int64_t n = a.n;
    const char* xb = a.x + off[kSampleLogits];
    const bool* mb = a.mask ? reinterpret_cast<const bool*>(a.mask + off[kSampleMask]) : nullptr;
    const double T = a.temperature.at(r);
    int64_t* idx = s.idx.get(std::min<int64_t>(n, kSmallK));
    C* vals = s.vals.get(std::min<int64_t>(n, kSmallK));
    Ranked<C>* work = s.work.get(select_work_size(n, std::min<int64_t>(n, kSmallK)));
    const int64_t k = T == 0.0 ? 0 : a.top_k.at(r);
    if (!mb && T > 0.0 && std::isfinite(double(C(1.0 / T))) && (k == 0 || k >= n) &&
        a.top_p.at(r) >= 1.0 && !(a.min_p.at(r) > 0.0))
      return unfiltered(r, xb, T, uniform(r), s);
    const C* z = load_z(xb, mb, T, s);
    const bool small = k > 0 && k < n && k <= kSmallK;
    // the row max: a small top_k's selection gives it (NaN ranks first), else one max
    // pass (NaN when z holds one)
    // (greedy: the first max's index in the same pass)
    if (small) sel.top_k(z, n, k, true, idx, vals, work);
    const int64_t top = T == 0.0 ? sel.argmax_nan(z, n) : -1;
    const double M = small ? double(vals[0])
                     : T == 0.0 ? (top < 0 ? kNaN : double(z[top]))
                                : double(sel.max_nan(z, n));
    if (!std::isfinite(M)) {  // NaN or +inf allowed logit, or nothing allowed
      a.tokens[r] = -1;
      if (a.logprobs != Logprobs::none) a.logprob[r] = kNaN;
      return;
    }
    // z's max is x's where z == x (no mask, T 1 or 0); a division may tie distinct x
    const double raw_max = (mb || (T != 1.0 && T != 0.0)) ? kNaN : M;
    auto finish = [&](int64_t tok, double processed, double raw_sum = kNaN) {
      a.tokens[r] = tok;
      if (a.logprobs == Logprobs::processed) a.logprob[r] = processed;
      if (a.logprobs == Logprobs::raw) a.logprob[r] = raw_logprob(xb, tok, raw_max, raw_sum, s);
    };
    if (T == 0.0) return finish(top, 0.0);  // greedy: the lowest index of the max

    const double u = uniform(r);
    const double minp = a.min_p.at(r), p = a.top_p.at(r);
    double thr = minp > 0.0 ? M + std::log(minp) : -HUGE_VAL;
    if (k > 0 && k < n) {
      if (small) {
        const C zk = vals[k - 1];
        // the kept set is every z >= zk: the selected above zk (vals descending), then
        // the whole tie group at zk in index order (bfloat16 logits tie often), when
        // it fits the small path's buffers; else the path over the whole row
        int64_t above = 0;
        while (vals[above] > zk) ++above;
        const int64_t cap = std::min<int64_t>(n, kSmallK) - above;
        const int64_t group = std::isfinite(double(zk))
                                  ? sel.find_equal(z, n, zk, idx + above, vals + above, cap)
                                  : cap + 1;
        if (group <= cap)
          return small_k(above + group, M, std::max(thr, double(zk)), p, u, idx, vals, finish);
        thr = std::max(thr, double(zk));
      } else {  // a large k: its k-th value by the selection buffer
        Ranked<C>* big = s.work.get(select_work_size(n, k));
        int64_t* bidx = s.idx.get(k);
        C* bvals = s.vals.get(k);
        sel.top_k(z, n, k, true, bidx, bvals, big);
        thr = std::max(thr, double(bvals[k - 1]));
      }
    }
    if (thr == -HUGE_VAL && p >= 1.0) {  // nothing filtered: every token keeps its mass
      Merged sums;
      double total;
      const int64_t tok = draw_unfiltered(z, C(M), C(1), u, &sums, &total, s);
      return finish(tok, (double(z[tok]) - M) - std::log1p(sums.rest));
    }
    C* e = s.e.get(n);
    sm.softmax_finish(z, e, n, C(M), C(1));  // masses exp(z - M); -inf gives 0
    double all_mass = kNaN;
    if (p < 1.0) {
      double kept;
      const double tau = top_p_levels(z, e, M, thr, p, &all_mass, &kept, s);
      if (tau == tau) {
        const int64_t tok = walk(z, e, C(tau), u, kept, s.block_sums.get((n + kDrawBlock - 1) / kDrawBlock));
        return finish(tok, (double(z[tok]) - M) - std::log(kept), all_mass);
      }
      thr = std::max(thr, top_p_threshold(z, e, M, thr, p, &all_mass, s));
    }
    double total;
    const int64_t tok = draw_all(z, e, thr, u, &total, s);
    // where z == x the histogram's total is the raw sum exp(x - M): no second exp pass
    finish(tok, (double(z[tok]) - M) - std::log(total), all_mass);
  }

  // top_k <= kSmallK with no tie beyond the k-th: the k selected carry everything.
  template <class F>
  void small_k(int64_t k, double M, double thr, double p, double u, const int64_t* idx,
               const C* vals, F&& finish) const {
    int64_t kept = 0;
    while (kept < k && double(vals[kept]) >= thr) ++kept;  // vals descending
    double mass[kSmallK];
    for (int64_t j = 0; j < kept; ++j) mass[j] = std::exp(double(vals[j]) - M);
    if (p < 1.0) {
      double total_mass = 0.0;
      for (int64_t j = 0; j < kept; ++j) total_mass += mass[j];
      const double target = p * total_mass;
      double before = 0.0;
      int64_t j = 0;
      while (j < kept && before < target) {  // whole tie groups
        const C v = vals[j];
        for (; j < kept && vals[j] == v; ++j) before += mass[j];
      }
      kept = j;
    }
    // the draw in token-id order over the kept entries
    std::pair<int64_t, double> byid[kSmallK];
    for (int64_t j = 0; j < kept; ++j) byid[j] = {idx[j], mass[j]};
    std::sort(byid, byid + kept);
    double total_mass = 0.0;
    for (int64_t j = 0; j < kept; ++j) total_mass += byid[j].second;
    const double target = u * total_mass;
    double acc = 0.0;
    int64_t at = -1;
    for (int64_t j = 0; j < kept; ++j) {
      if (!(byid[j].second > 0.0)) continue;  // never a token of mass 0
      acc += byid[j].second;
      at = j;
      if (acc > target) break;
    }
    const int64_t tok = byid[at].first;  // u within rounding of 1: the last of mass > 0
    finish(tok, std::log(byid[at].second) - std::log(total_mass));
  }
};

template <class S, class C>
void sample_rows(const SampleProblem& a) {
  const KernelTable& t = kernels();
  const RowSampler<S, C> rs{a, softmax_set<C, C>(t), softmax_set<S, C>(t), select_set<C>(t)};
  for_rows<SampleScratch<C>>(a.outer, a.rows, a.n, a.threads,
                             [&](int64_t r, const int64_t* off, SampleScratch<C>* pool, int) {
                               rs.row(r, off, pool[0]);
                             });
}

}  // namespace

void run_sample(const SampleProblem& a) {
  if (a.rows == 0) return;
  switch (a.dt) {
    case DType::f16: return sample_rows<uint16_t, float>(a);
    case DType::f32: return sample_rows<float, float>(a);
    case DType::f64: return sample_rows<double, double>(a);
    case DType::bf16: return sample_rows<bf16_t, float>(a);  // rows read into float32
  }
}

}  // namespace fastsoftmax
