// The sampler's driver (selection family): per row, z = logits / T (masked tokens
// -inf), then min_p, top_k and top_p as thresholds on z, then one inverse-CDF draw in
// token-id order (docs/contract.md §12). Never sorts the vocabulary:
//  * the row max and top_k's k-th value come from the selection kernel's O(n) scan;
//  * top_p over many survivors: a histogram of their masses over z below the max
//    (kBuckets buckets), the one bucket that crosses the mass p * S refined by the
//    same bucketing on its members (a tie group is decided whole), sorting at most
//    kSortMax candidates at the end: O(n) per row whatever the logits;
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
constexpr int kBuckets = 1024;
constexpr size_t kSortMax = 64;
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
  Buf<int32_t> bucket;  // top_p: each token's histogram bucket
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

  // log_softmax(x)[tok] of the raw logits; `raw_max` when known (no mask: the max of z
  // is at the max of x), else NaN.
  double raw_logprob(const char* xb, int64_t tok, double raw_max, SampleScratch<C>& s) const {
    const C* raw = load_raw(xb, s);
    Merged m;
    if (std::isfinite(raw_max) && a.n <= kBlock)
      m = merged_of(sm.reduce_max(raw, a.n, C(raw_max)));
    else
      m = reduce_row(sm, raw, a.n, s.parts);
    if (!std::isfinite(m.max)) return m.max == -HUGE_VAL ? -HUGE_VAL : kNaN;
    return (double(raw[tok]) - m.max) - std::log1p(m.rest);
  }

  // Draw among the tokens with z >= thr (masses e, all n) in id order.
  int64_t draw_all(const C* z, const C* e, double thr, double u, double* total,
                   SampleScratch<C>& s) const {
    const int64_t n = a.n, nb = (n + kDrawBlock - 1) / kDrawBlock;
    double* bs = s.block_sums.get(nb);
    double total_mass = 0.0;
    const C t = C(thr);  // thr is -inf or a z value: exact in C
    for (int64_t b = 0; b < nb; ++b) {
      // kLanes independent sums: the compiler vectorizes them without reassociating
      constexpr int kLanes = 8;
      double lane[kLanes] = {};
      const int64_t i0 = b * kDrawBlock, i1 = std::min(n, i0 + kDrawBlock);
      int64_t i = i0;
      for (; i + kLanes <= i1; i += kLanes)
        for (int j = 0; j < kLanes; ++j) lane[j] += z[i + j] >= t ? double(e[i + j]) : 0.0;
      for (int j = 0; i < i1; ++i, ++j) lane[j] += z[i] >= t ? double(e[i]) : 0.0;
      double acc = 0.0;
      for (int j = 0; j < kLanes; ++j) acc += lane[j];
      bs[b] = acc;
      total_mass += acc;
    }
    *total = total_mass;
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

  // The draw over every token (no filter): block sums of exp(z - M) by the softmax
  // family's reduce_max (exps summed in vectors, none stored; M is at least every z, as
  // its sum needs), then the one block that crosses u times the total, its masses by
  // the family's finish kernel.
  int64_t draw_unfiltered(const C* z, double M, double u, double* total, SampleScratch<C>& s) const {
    const int64_t n = a.n, nb = (n + kDrawBlock - 1) / kDrawBlock;
    double* bs = s.block_sums.get(nb);
    double total_mass = 0.0;
    for (int64_t b = 0; b < nb; ++b) {
      const int64_t i0 = b * kDrawBlock, len = std::min(kDrawBlock, n - i0);
      if (len >= 16) {
        bs[b] = sm.reduce_max(z + i0, len, C(M)).sum;
      } else {  // reduce_max takes a short row's own max: sum this one directly
        C e[16];
        sm.softmax_finish(z + i0, e, len, C(M), C(1));
        bs[b] = 0.0;
        for (int64_t j = 0; j < len; ++j) bs[b] += double(e[j]);
      }
      total_mass += bs[b];
    }
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
      sm.softmax_finish(z + i0, e, len, C(M), C(1));
      for (int64_t j = 0; j < len; ++j) {
        if (!(e[j] > C(0))) continue;  // never a token of mass 0
        acc += double(e[j]);
        last = i0 + j;
        if (acc > target) return last;
      }
    }
    return last;  // u within rounding of 1: the last token of mass > 0
  }

  // The top_p threshold over the tokens with z >= thr (masses e): each token's bucket
  // below the max in one vectorized pass (in C: monotone in z, the last bucket taking
  // everything further than the span), the masses added into four interleaved
  // histograms (no store-to-load chain on runs of one bucket), then the bucket that
  // crosses p times the total refined on its members alone.
  double top_p_threshold(const C* z, const C* e, double M, double thr, double p,
                         SampleScratch<C>& s) const {
    const int64_t n = a.n;
    int32_t* bucket = s.bucket.get(n);
    const C mc = C(M), inv = C(kBuckets / (sizeof(C) == 4 ? 48.0 : 64.0)), t = C(thr);
    const C last = C(kBuckets - 1);
    for (int64_t i = 0; i < n; ++i) {
      const C b = std::min(last, (mc - z[i]) * inv);  // z = -inf: +inf, clamped
      bucket[i] = z[i] >= t ? int32_t(b) : kBuckets;  // kBuckets: filtered out
    }
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
    const double target = p * total_mass;
    double before = 0.0;
    int b = 0;
    for (; b < kBuckets - 1 && before + mass[b] < target; ++b) before += mass[b];
    s.cand.clear();
    for (int64_t j = 0; j < n; ++j)
      if (bucket[j] == b) s.cand.push_back({double(z[j]), double(e[j])});
    return s.cand.empty() ? thr : refine_top_p(s.cand, before, target);
  }

  void row(int64_t r, const int64_t* off, SampleScratch<C>& s) const {
    const int64_t n = a.n;
    const char* xb = a.x + off[kSampleLogits];
    const bool* mb = a.mask ? reinterpret_cast<const bool*>(a.mask + off[kSampleMask]) : nullptr;
    const double T = a.temperature.at(r);
    int64_t* idx = s.idx.get(std::min<int64_t>(n, kSmallK));
    C* vals = s.vals.get(std::min<int64_t>(n, kSmallK));
    Ranked<C>* work = s.work.get(select_work_size(n, std::min<int64_t>(n, kSmallK)));
    const C* z = load_z(xb, mb, T, s);
    // one scan: a small top_k's selection also gives the max (and the argmax)
    const int64_t k = T == 0.0 ? 0 : a.top_k.at(r);
    const int64_t kscan = (k > 0 && k < n && k <= kSmallK) ? k : 1;
    sel.top_k(z, n, kscan, true, idx, vals, work);
    const double M = double(vals[0]);
    const int64_t top = idx[0];
    if (!std::isfinite(M)) {  // NaN or +inf allowed logit, or nothing allowed
      a.tokens[r] = -1;
      if (a.logprobs != Logprobs::none) a.logprob[r] = kNaN;
      return;
    }
    // z's max is x's where z == x (no mask, T 1 or 0); a division may tie distinct x
    const double raw_max = (mb || (T != 1.0 && T != 0.0))
                               ? kNaN
                               : double(load(reinterpret_cast<const S*>(xb + top * a.xs)));
    auto finish = [&](int64_t tok, double processed) {
      a.tokens[r] = tok;
      if (a.logprobs == Logprobs::processed) a.logprob[r] = processed;
      if (a.logprobs == Logprobs::raw) a.logprob[r] = raw_logprob(xb, tok, raw_max, s);
    };
    if (T == 0.0) return finish(top, 0.0);  // greedy: the lowest index of the max

    double u;
    if (a.has_u) {
      u = a.u.at(r);
    } else {
      const uint64_t counter[4] = {a.offset.at(r), a.seed.st == 0 ? uint64_t(r) : 0, 0, 0};
      u = philox_uniform(a.seed.at(r), counter);
    }
    const double minp = a.min_p.at(r), p = a.top_p.at(r);
    double thr = minp > 0.0 ? M + std::log(minp) : -HUGE_VAL;
    if (k > 0 && k < n) {
      if (k <= kSmallK) {
        const C zk = vals[k - 1];
        int64_t ties = 0;  // entries equal to the k-th beyond the k selected
        for (int64_t i = 0; i < n; ++i) ties += z[i] == zk;
        for (int64_t j = 0; j < k; ++j) ties -= vals[j] == zk;
        if (ties == 0) return small_k(k, M, std::max(thr, double(zk)), p, u, idx, vals, finish);
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
      double total;
      const int64_t tok = draw_unfiltered(z, M, u, &total, s);
      return finish(tok, (double(z[tok]) - M) - std::log(total));
    }
    C* e = s.e.get(n);
    sm.softmax_finish(z, e, n, C(M), C(1));  // masses exp(z - M); -inf gives 0
    if (p < 1.0) thr = std::max(thr, top_p_threshold(z, e, M, thr, p, s));
    double total;
    const int64_t tok = draw_all(z, e, thr, u, &total, s);
    finish(tok, (double(z[tok]) - M) - std::log(total));
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
