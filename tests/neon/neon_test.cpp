// Stand-alone kernel test (no Python): every SIMD kernel table this binary and CPU
// support (neon on aarch64; avx512/avx2 on x86-64) against the scalar table and an
// extended-precision reference, within docs/contract.md's accuracy bounds, plus special
// values at every position of a vector and its tail, blocked long rows (reduce +
// finish as the driver uses them), panels, determinism, the vector exp and the
// driver's gather helpers.
//
// Built by tests/test_neon_qemu.py as
//   aarch64-linux-gnu-g++ -std=c++17 -O2 -static -I csrc/include -I csrc
//       tests/neon/neon_test.cpp csrc/kernels/*.cpp csrc/dispatch.cpp
// and run under qemu-aarch64; natively the same command with g++ tests the x86 ISAs.
// Exit status 0 when every check passes; failures are printed (the first few of each
// kind) and counted.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "fastsoftmax/common.h"
#include "fastsoftmax/kernels.h"
#include "testing/exp_check.h"
#include "testing/exp_hooks.h"

using namespace fastsoftmax;

namespace {

using LD = long double;
constexpr float kInfF = std::numeric_limits<float>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

int g_failures = 0;
int g_checks = 0;
bool g_quick = false;  // fewer lengths/positions (under emulation)

void fail(const std::string& what) {
  if (++g_failures <= 40) std::printf("FAIL: %s\n", what.c_str());
}

// ---- element types ------------------------------------------------------------

template <class S>
struct Elem;
template <>
struct Elem<float> {
  using C = float;
  static constexpr double eps = 0x1p-23;
  static constexpr double K = 4;
  static constexpr double tiny = 1e-30;
  static constexpr const char* name = "f32";
  static float from(double v) { return float(v); }
  static double to(float v) { return v; }
  static SoftmaxKernels<float, float> set(const KernelTable& t) { return t.softmax.f32; }
};
template <>
struct Elem<double> {
  using C = double;
  static constexpr double eps = 0x1p-52;
  static constexpr double K = 16;
  static constexpr double tiny = 1e-290;
  static constexpr const char* name = "f64";
  static double from(double v) { return v; }
  static double to(double v) { return v; }
  static SoftmaxKernels<double, double> set(const KernelTable& t) { return t.softmax.f64; }
};
template <>
struct Elem<uint16_t> {
  using C = float;
  static constexpr double eps = 0x1p-10;
  static constexpr double K = 4;
  static constexpr double tiny = 0;
  static constexpr const char* name = "f16";
  static uint16_t from(double v) { return float_to_half(float(v)); }
  static double to(uint16_t v) { return half_to_float(v); }
  static SoftmaxKernels<uint16_t, float> set(const KernelTable& t) { return t.softmax.f16; }
};

template <>
struct Elem<bf16_t> {
  using C = float;
  static constexpr double eps = 0x1p-7;
  static constexpr double K = 4;
  static constexpr double tiny = 0;
  static constexpr const char* name = "bf16";
  static bf16_t from(double v) { return {double_to_bf16(v)}; }
  static double to(bf16_t v) { return bf16_to_float(v.bits); }
  static SoftmaxKernels<bf16_t, float> set(const KernelTable& t) { return t.softmax.bf16; }
};

template <class S>
bool same_bits(S a, S b) {
  return std::memcmp(&a, &b, sizeof(S)) == 0;
}
template <class S>
bool is_nan(S v) {
  return std::isnan(Elem<S>::to(v));
}

// Ordered ULP distance between two values of the storage type.
template <class S>
int64_t ulp_dist(S a, S b) {
  auto key = [](S v) -> int64_t {
    if constexpr (sizeof(S) == 2) {  // float16 or bfloat16 bits
      uint16_t u;
      std::memcpy(&u, &v, 2);
      const int64_t m = u & 0x7fff;
      return (u & 0x8000) ? -m : m;
    } else if constexpr (sizeof(S) == 4) {
      uint32_t u;
      std::memcpy(&u, &v, 4);
      const int64_t m = u & 0x7fffffff;
      return (u >> 31) ? -m : m;
    } else {
      uint64_t u;
      std::memcpy(&u, &v, 8);
      const int64_t m = int64_t(u & 0x7fffffffffffffffull);
      return (u >> 63) ? -m : m;
    }
  };
  const int64_t d = key(a) - key(b);
  return d < 0 ? -d : d;
}

// ---- reference ----------------------------------------------------------------

struct Ref {
  LD m = 0;
  LD sum = 0;
  bool nan = false, pinf = false, all_ninf = true;
};

template <class S>
Ref reference(const S* x, int64_t n, int64_t stride = 1) {
  Ref r;
  r.m = -std::numeric_limits<LD>::infinity();
  for (int64_t i = 0; i < n; ++i) {
    const LD v = Elem<S>::to(x[i * stride]);
    if (std::isnan(v)) r.nan = true;
    if (v == std::numeric_limits<LD>::infinity()) r.pinf = true;
    if (v != -std::numeric_limits<LD>::infinity()) r.all_ninf = false;
    if (v > r.m) r.m = v;
  }
  if (!r.nan && !r.pinf && !r.all_ninf)
    for (int64_t i = 0; i < n; ++i) r.sum += std::exp(LD(Elem<S>::to(x[i * stride])) - r.m);
  return r;
}

// Checks one softmax / log_softmax output element against the bounds of docs/contract.md §5.
template <class S>
bool check_elem(S xv, S yv, const Ref& r, bool log, std::string* why) {
  using E = Elem<S>;
  const double y = E::to(yv);
  const LD x = E::to(xv);
  if (r.nan || r.pinf) {
    if (!std::isnan(y)) {
      *why = "expected NaN";
      return false;
    }
    return true;
  }
  if (r.all_ninf) {
    const bool ok = log ? (y == -kInfF) : (y == 0 && !std::signbit(y));
    if (!ok) *why = log ? "expected -inf" : "expected +0";
    return ok;
  }
  if (!log) {
    const LD ref = std::exp(x - r.m) / r.sum;
    if constexpr (sizeof(S) == 2) {
      const S cr = E::from(double(ref));
      if (ulp_dist(yv, cr) > 1) {
        *why = std::string(E::name) + " softmax more than 1 ULP from the correctly rounded value";
        return false;
      }
      return true;
    }
    const LD bound = E::eps * (E::K + std::fabs(x - r.m) / 2);
    const LD err = std::fabs(LD(y) - ref);
    const bool ok = ref < E::tiny ? err <= bound * E::tiny : err <= bound * ref;
    if (!ok) {
      char buf[200];
      std::snprintf(buf, sizeof buf, "softmax rel err %.3g > bound %.3g (ref %.9Lg, y %.9g)",
                    double(err / ref), double(bound), ref, y);
      *why = buf;
    }
    return ok;
  } else {
    const LD ref = (x - r.m) - std::log(r.sum);
    if (x == -std::numeric_limits<LD>::infinity()) {
      if (y != -kInfF) *why = "log_softmax: expected -inf";
      return y == -kInfF;
    }
    const LD big = std::max<LD>(1, std::fabs(ref));
    const LD ulp = std::ldexp(LD(E::eps), std::ilogb(big));
    const LD err = std::fabs(LD(y) - ref);
    if (err > 4 * ulp) {
      char buf[200];
      std::snprintf(buf, sizeof buf, "log_softmax err %.3g ULP (ref %.12Lg, y %.12g)",
                    double(err / ulp), ref, y);
      *why = buf;
      return false;
    }
    return true;
  }
}

// ---- data -----------------------------------------------------------------------

std::mt19937_64 g_rng(12345);

template <class S>
std::vector<S> random_row(int64_t n, double scale, double offset) {
  std::normal_distribution<double> nd(0.0, 1.0);
  std::vector<S> v(static_cast<size_t>(std::max<int64_t>(n, 1)));
  for (auto& e : v) e = Elem<S>::from(offset + scale * nd(g_rng));
  return v;
}

std::vector<int64_t> row_lengths() {
  std::vector<int64_t> ns;
  for (int64_t n = 1; n <= 70; ++n) ns.push_back(n);
  for (int64_t n : {127, 128, 129, 255, 256, 257, 1000, 4099}) ns.push_back(n);
  if (!g_quick) {
    ns.push_back(kBlock - 1);
    ns.push_back(kBlock);
  }
  return ns;
}

// ---- rows -------------------------------------------------------------------------

template <class S>
void check_row(const SoftmaxKernels<S, typename Elem<S>::C>& k, const SoftmaxKernels<S, typename Elem<S>::C>* ks,
               const std::vector<S>& x, int64_t n, const std::string& tag) {
  using E = Elem<S>;
  const Ref r = reference(x.data(), n);
  std::vector<S> y(static_cast<size_t>(n)), y2(size_t(n) + 3), ys(static_cast<size_t>(n));
  for (int log = 0; log < 2; ++log) {
    auto row = log ? k.log_softmax_row : k.softmax_row;
    if (!row) continue;
    row(x.data(), y.data(), n);
    ++g_checks;
    int bad = 0;
    for (int64_t i = 0; i < n && bad < 1; ++i) {
      std::string why;
      if (!check_elem(x[size_t(i)], y[size_t(i)], r, log, &why)) {
        fail(tag + (log ? " log_softmax" : " softmax") + " n=" + std::to_string(n) +
             " i=" + std::to_string(i) + ": " + why);
        ++bad;
      }
    }
    // Determinism: the same row at another address (offset by 3 elements), and in
    // place, gives the same bits.
    std::vector<S> xo(size_t(n) + 3);
    std::copy(x.begin(), x.begin() + n, xo.begin() + 3);
    row(xo.data() + 3, y2.data() + 3, n);
    std::vector<S> inplace(x.begin(), x.begin() + n);
    row(inplace.data(), inplace.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      if (!same_bits(y[size_t(i)], y2[size_t(i) + 3]) || !same_bits(y[size_t(i)], inplace[size_t(i)])) {
        fail(tag + " row bits depend on address / in-place, n=" + std::to_string(n));
        break;
      }
    }
    // Against the scalar kernels: both within bounds; report gross differences.
    if (ks) {
      auto srow = log ? ks->log_softmax_row : ks->softmax_row;
      if (srow) {
        srow(x.data(), ys.data(), n);
        for (int64_t i = 0; i < n; ++i) {
          const double a = E::to(y[size_t(i)]), b = E::to(ys[size_t(i)]);
          if (std::isnan(a) != std::isnan(b) ||
              (!std::isnan(a) && std::fabs(a - b) > 64 * E::eps * std::max(1.0, std::fabs(b)))) {
            fail(tag + " differs from scalar, n=" + std::to_string(n));
            break;
          }
        }
      }
    }
  }
  // reduce: exact max, sum of exp(x - max) within a few eps.
  if (k.reduce) {
    const Partial p = k.reduce(x.data(), n);
    ++g_checks;
    if (r.nan) {
      if (!std::isnan(p.max)) fail(tag + " reduce: expected NaN max");
    } else if (r.pinf || r.all_ninf) {
      if (LD(p.max) != r.m) fail(tag + " reduce: expected max " + std::to_string(double(r.m)));
    } else {
      if (LD(p.max) != r.m) fail(tag + " reduce: max not exact n=" + std::to_string(n));
      const double ceps = sizeof(typename E::C) == 4 ? 0x1p-23 : 0x1p-52;
      const LD rel = std::fabs(LD(p.sum) - r.sum) / r.sum;
      if (rel > 4 * ceps)
        fail(tag + " reduce: sum rel err " + std::to_string(double(rel / ceps)) + " eps, n=" +
             std::to_string(n));
    }
  }
}

template <class S>
void test_rows(const KernelTable& t, const KernelTable& sc, const char* isa) {
  using E = Elem<S>;
  const auto k = E::set(t);
  const auto ksc = E::set(sc);
  const bool have_scalar = ksc.softmax_row != nullptr;
  if (!k.softmax_row) {
    std::printf("  %s %s: no kernels (driver converts through float32)\n", isa, E::name);
    return;
  }
  const std::string tag = std::string(isa) + " " + E::name;
  for (int64_t n : row_lengths()) {
    for (double scale : {1.0, 10.0}) {
      if (g_quick && scale > 1 && n > 70) continue;
      auto x = random_row<S>(n, scale, sizeof(S) == 2 ? 0.0 : 1000.0);
      check_row<S>(k, have_scalar ? &ksc : nullptr, x, n, tag);
    }
  }
  // Wide range: exps that underflow (flushed) next to normal ones, and large values.
  for (int64_t n : {5, 17, 33, 100}) {
    std::vector<S> x(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i)
      x[size_t(i)] = E::from(sizeof(S) == 2 ? -0.3 * double(i) : -1.7 * double(i) + 50.0);
    check_row<S>(k, have_scalar ? &ksc : nullptr, x, n, tag + " range");
    // values where exp(x - max) is near the smallest normal (x - max in (-87.4, -87))
    for (int64_t i = 0; i < n; ++i)
      x[size_t(i)] = E::from(i == 0 ? 0.0 : -87.0 - 0.4 * double(i) / double(n));
    if (sizeof(S) != 2) check_row<S>(k, have_scalar ? &ksc : nullptr, x, n, tag + " near-underflow");
  }
  // A dominant entry: log_softmax there is -log1p(tiny) and must keep its relative
  // precision (docs/contract.md §5: the largest term set apart), in rows and in panel lanes.
  if (sizeof(S) == 8 && k.log_softmax_row) {
    for (int64_t n : {4, 19, 40}) {
      std::vector<S> x(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) x[size_t(i)] = E::from(i == 1 ? 0.0 : -25.0 - 0.37 * double(i));
      std::vector<S> y(static_cast<size_t>(n));
      k.log_softmax_row(x.data(), y.data(), n);
      const Ref r = reference(x.data(), n);
      LD rest = 0;  // the other terms, summed apart from the max's 1
      for (int64_t i = 0; i < n; ++i)
        if (i != 1) rest += std::exp(LD(E::to(x[size_t(i)])));
      const LD want = -std::log1p(rest);
      ++g_checks;
      if (std::fabs(LD(E::to(y[1])) - want) > 1e-13L * std::fabs(want))
        fail(tag + " dominant entry lost precision in log_softmax_row, n=" + std::to_string(n));
      std::vector<typename E::C> l(1);
      k.logsumexp_panel(x.data(), 1, n, 1, l.data());
      if (std::fabs(LD(l[0]) - (r.m - want)) > 1e-13L * std::fabs(want))
        fail(tag + " dominant entry lost precision in logsumexp_panel, n=" + std::to_string(n));
      k.log_softmax_panel(x.data(), 1, y.data(), 1, n, 1);
      if (std::fabs(LD(E::to(y[1])) - want) > 1e-13L * std::fabs(want))
        fail(tag + " dominant entry lost precision in log_softmax_panel, n=" + std::to_string(n));
    }
  }
  // [1000, 5] and [-1e30, 0] style rows
  {
    std::vector<S> x = {E::from(1000.0), E::from(5.0)};
    if (sizeof(S) == 2) x = {E::from(60000.0), E::from(5.0)};
    check_row<S>(k, nullptr, x, 2, tag + " big");
    std::vector<S> z = {E::from(sizeof(S) == 2 ? -60000.0 : -1e30), E::from(0.0)};
    check_row<S>(k, nullptr, z, 2, tag + " -1e30");
  }
}

// Special values at every position of a vector plus its tail.
template <class S>
void test_specials(const KernelTable& t, const char* isa) {
  using E = Elem<S>;
  const auto k = E::set(t);
  if (!k.softmax_row) return;
  const std::string tag = std::string(isa) + " " + E::name + " specials";
  const double specials[] = {kNaN, double(kInfF), -double(kInfF)};
  const int64_t nmax = g_quick ? 20 : 40;
  for (int64_t n = 1; n <= nmax; ++n) {
    auto base = random_row<S>(n, 3.0, 0.0);
    for (int64_t pos = 0; pos < n; ++pos) {
      for (double sv : specials) {
        auto x = base;
        x[size_t(pos)] = E::from(sv);
        check_row<S>(k, nullptr, x, n, tag);
      }
      // NaN together with +inf / -inf elsewhere
      auto x = base;
      x[size_t(pos)] = E::from(kNaN);
      x[size_t((pos + 1) % n)] = E::from(double(kInfF));
      check_row<S>(k, nullptr, x, n, tag + " nan+inf");
    }
    // all -inf, all -inf + one NaN, all +inf
    std::vector<S> ninf(size_t(n), E::from(-double(kInfF)));
    check_row<S>(k, nullptr, ninf, n, tag + " all -inf");
    auto ninf_nan = ninf;
    ninf_nan[size_t(n / 2)] = E::from(kNaN);
    check_row<S>(k, nullptr, ninf_nan, n, tag + " -inf+nan");
    std::vector<S> pinf(size_t(n), E::from(double(kInfF)));
    check_row<S>(k, nullptr, pinf, n, tag + " all +inf");
  }
}

// Long rows through reduce + finish, merged as the driver does: blocks of kBlock,
// partials combined in block order, sum rescaled to the global max in double.
template <class S>
void test_blocked(const KernelTable& t, const char* isa) {
  using E = Elem<S>;
  using C = typename E::C;
  const auto k = E::set(t);
  if (!k.reduce) return;
  const std::string tag = std::string(isa) + " " + E::name + " blocked";
  std::vector<int64_t> lens = {kBlock + 1, 2 * kBlock + 7};
  if (sizeof(S) == 8 && !g_quick) lens.push_back(3000000);
  if (g_quick) lens = {kBlock + 1};
  for (int64_t n : lens) {
    auto x = random_row<S>(n, sizeof(S) == 2 ? 2.0 : 3.0, 0.0);
    x[size_t(n - 1)] = E::from(sizeof(S) == 2 ? 12.0 : 25.0);  // max in the last block
    std::vector<Partial> parts;
    for (int64_t b = 0; b < n; b += kBlock) parts.push_back(k.reduce(x.data() + b, std::min(kBlock, n - b)));
    double M = -std::numeric_limits<double>::infinity();
    for (auto& p : parts) M = std::max(M, p.max);
    CompensatedSum S_;
    for (auto& p : parts) S_.add(p.sum * std::exp(p.max - M));
    const double total = S_.value();
    const Ref r = reference(x.data(), n);
    ++g_checks;
    const double ceps = sizeof(C) == 4 ? 0x1p-23 : 0x1p-52;
    if (LD(M) != r.m) fail(tag + " max");
    const LD rel = std::fabs(LD(total) - r.sum) / r.sum;
    if (rel > 8 * ceps) fail(tag + " sum rel err " + std::to_string(double(rel / ceps)) + " eps");
    std::vector<S> y(static_cast<size_t>(n));
    for (int log = 0; log < 2; ++log) {
      for (int64_t b = 0; b < n; b += kBlock) {
        const int64_t len = std::min(kBlock, n - b);
        if (log)
          k.log_softmax_finish(x.data() + b, y.data() + b, len, C(M), C(std::log(total)));
        else
          k.softmax_finish(x.data() + b, y.data() + b, len, C(M), C(1.0 / total));
      }
      for (int64_t i = 0; i < n; ++i) {
        std::string why;
        if (!check_elem(x[size_t(i)], y[size_t(i)], r, log, &why)) {
          fail(tag + (log ? " log" : "") + " n=" + std::to_string(n) + " i=" + std::to_string(i) + ": " + why);
          break;
        }
      }
    }
  }
}

// Panels: lanes contiguous, reduced axis strided; every lane against the reference,
// and lane bits independent of the panel width and the lane's position.
template <class S>
void test_panels(const KernelTable& t, const char* isa) {
  using E = Elem<S>;
  using C = typename E::C;
  const auto k = E::set(t);
  if (!k.softmax_panel) return;
  const std::string tag = std::string(isa) + " " + E::name + " panel";
  std::vector<std::pair<int64_t, int64_t>> shapes;  // (n, w)
  for (int64_t w = 1; w <= 40; ++w)
    for (int64_t n = 1; n <= 20; n += (g_quick ? 3 : 1)) shapes.push_back({n, w});
  for (auto s : {std::pair<int64_t, int64_t>{100, 100}, {257, 67}, {3, 200}, {1000, 9}})
    shapes.push_back(s);
  for (auto [n, w] : shapes) {
    const int64_t ldx = w + 5, ldy = w + 2;
    auto x = random_row<S>(n * ldx, 4.0, 0.0);
    // a few specials in some lanes
    if (w > 2 && n > 1) {
      x[size_t(1 * ldx + 1)] = E::from(kNaN);
      x[size_t(0 * ldx + (w - 1))] = E::from(double(kInfF));
      for (int64_t i = 0; i < n; ++i) x[size_t(i * ldx + w / 2)] = E::from(-double(kInfF));
    }
    std::vector<S> y(static_cast<size_t>(n * ldy)), yw(size_t(n * (ldy + 40)));
    std::vector<C> lse(static_cast<size_t>(w)), lsew(size_t(w + 40));
    for (int log = 0; log < 2; ++log) {
      auto pan = log ? k.log_softmax_panel : k.softmax_panel;
      pan(x.data(), ldx, y.data(), ldy, n, w);
      ++g_checks;
      for (int64_t j = 0; j < w; ++j) {
        const Ref r = reference(x.data() + j, n, ldx);
        for (int64_t i = 0; i < n; ++i) {
          std::string why;
          if (!check_elem(x[size_t(i * ldx + j)], y[size_t(i * ldy + j)], r, log, &why)) {
            fail(tag + (log ? " log" : "") + " n=" + std::to_string(n) + " w=" + std::to_string(w) +
                 " lane " + std::to_string(j) + " i=" + std::to_string(i) + ": " + why);
            j = w;
            break;
          }
        }
      }
      // The same columns inside a wider panel, shifted by 7 lanes.
      const int64_t W2 = w + 23, ldx2 = W2 + 1, ldy2 = W2;
      std::vector<S> x2(static_cast<size_t>(n * ldx2));
      auto fill2 = random_row<S>(n * ldx2, 2.0, 0.0);
      x2 = fill2;
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < w; ++j) x2[size_t(i * ldx2 + 7 + j)] = x[size_t(i * ldx + j)];
      std::vector<S> y2(static_cast<size_t>(n * ldy2));
      pan(x2.data(), ldx2, y2.data(), ldy2, n, W2);
      bool same = true;
      for (int64_t i = 0; i < n && same; ++i)
        for (int64_t j = 0; j < w; ++j)
          if (!same_bits(y[size_t(i * ldy + j)], y2[size_t(i * ldy2 + 7 + j)])) same = false;
      if (!same) fail(tag + " lane bits depend on panel width/position n=" + std::to_string(n) + " w=" + std::to_string(w));
      // In place.
      {
        std::vector<S> xi = x;
        pan(xi.data(), ldx, xi.data(), ldx, n, w);
        for (int64_t i = 0; i < n && same; ++i)
          for (int64_t j = 0; j < w; ++j)
            if (!same_bits(y[size_t(i * ldy + j)], xi[size_t(i * ldx + j)])) {
              fail(tag + " in-place panel differs");
              i = n;
              break;
            }
      }
    }
    k.logsumexp_panel(x.data(), ldx, n, w, lse.data());
    for (int64_t j = 0; j < w; ++j) {
      const Ref r = reference(x.data() + j, n, ldx);
      const double v = lse[size_t(j)];
      bool ok;
      if (r.nan) ok = std::isnan(v);
      else if (r.pinf) ok = v == double(kInfF);
      else if (r.all_ninf) ok = v == -double(kInfF);
      else {
        const LD ref = r.m + std::log(r.sum);
        const double ceps = sizeof(C) == 4 ? 0x1p-23 : 0x1p-52;
        const LD ulp = std::ldexp(LD(ceps), std::ilogb(std::max<LD>(1, std::fabs(ref))));
        ok = std::fabs(LD(v) - ref) <= 4 * ulp;
      }
      if (!ok) {
        fail(tag + " logsumexp lane " + std::to_string(j) + " n=" + std::to_string(n) + " w=" + std::to_string(w));
        break;
      }
    }
  }
}

// Row batches: every row bit-identical to the single-row kernels, whatever its
// neighbour (special rows next to ordinary ones exercise the pair fallbacks), with
// gaps between rows and in place.
template <class S>
void test_row_batches(const KernelTable& t, const char* isa) {
  using E = Elem<S>;
  const auto k = E::set(t);
  const auto& b = k;  // the batch entries live in the same SoftmaxKernels
  if (!b.softmax_rows || !k.softmax_row) return;
  const std::string tag = std::string(isa) + " " + E::name + " row batches";
  std::vector<int64_t> ns;
  for (int64_t n = 1; n <= (g_quick ? 40 : 70); ++n) ns.push_back(n);
  for (int64_t n : {127, 128, 129, 255, 256, 257, 511, 512, 513, 1023, 1024, 1025, 3000})
    ns.push_back(n);
  for (int64_t n : ns) {
    for (int64_t rows : {1, 2, 3, 6}) {
      const int64_t ld = n + 3;
      auto x = random_row<S>(rows * ld, 5.0, 0.0);
      if (rows >= 3) {
        x[size_t(1 * ld + n / 2)] = E::from(kNaN);  // row 1: NaN (pairs with row 0)
        if (rows >= 6) {
          x[size_t(2 * ld)] = E::from(double(kInfF));  // row 2: +inf
          for (int64_t i = 0; i < n; ++i) x[size_t(4 * ld + i)] = E::from(-double(kInfF));
        }
      }
      for (int op = 0; op < 3; ++op) {
        ++g_checks;
        std::vector<S> y(size_t(rows * ld), E::from(7.0)), y1(size_t(rows * ld), E::from(7.0));
        std::vector<Partial> p(static_cast<size_t>(rows)), p1(static_cast<size_t>(rows));
        std::vector<S> xi = x;
        if (op == 0) {
          b.softmax_rows(x.data(), ld, y.data(), ld, n, rows);
          b.softmax_rows(xi.data(), ld, xi.data(), ld, n, rows);
          for (int64_t r = 0; r < rows; ++r) k.softmax_row(x.data() + r * ld, y1.data() + r * ld, n);
        } else if (op == 1) {
          b.log_softmax_rows(x.data(), ld, y.data(), ld, n, rows);
          b.log_softmax_rows(xi.data(), ld, xi.data(), ld, n, rows);
          for (int64_t r = 0; r < rows; ++r) k.log_softmax_row(x.data() + r * ld, y1.data() + r * ld, n);
        } else {
          b.reduce_rows(x.data(), ld, n, rows, p.data());
          for (int64_t r = 0; r < rows; ++r) p1[size_t(r)] = k.reduce(x.data() + r * ld, n);
        }
        bool same = true;
        if (op < 2) {
          for (int64_t r = 0; r < rows; ++r)
            for (int64_t i = 0; i < ld; ++i) {
              const size_t at = size_t(r * ld + i);
              if (!same_bits(y[at], y1[at])) same = false;  // the gaps stay untouched too
              if (i < n && !same_bits(xi[at], y1[at])) same = false;
            }
        } else {
          for (int64_t r = 0; r < rows; ++r)
            if (std::memcmp(&p[size_t(r)], &p1[size_t(r)], sizeof(Partial)) != 0) same = false;
        }
        if (!same)
          fail(tag + (op == 0 ? " softmax" : op == 1 ? " log_softmax" : " reduce") +
               " differs from the single-row kernel, n=" + std::to_string(n) + " rows=" +
               std::to_string(rows));
      }
    }
  }
}

void test_exp(const char* isa, const ExpHooks& h) {
  const uint32_t stride = g_quick ? 1009 : 97;
  const auto r = expcheck::check_f32_range(h.exp_f32, 0x80000000u, 0xc2d00000u, stride);
  ++g_checks;
  std::printf("  %s exp f32 [-104, 0] every %u-th float: %lld checked, max %lld ULP (%.3f vs exact), %lld flushed, %lld bad\n",
              isa, stride, (long long)r.checked, (long long)r.max_ulp, r.max_err,
              (long long)r.flushed, (long long)r.bad);
  if (r.max_ulp > 1 || r.bad) fail(std::string(isa) + " exp f32: max ULP " + std::to_string(r.max_ulp));
  const auto rp = expcheck::check_f32_range(h.exp_f32, 0x00000000u, 0x42b17217u, stride);
  if (rp.max_ulp > 1 || rp.bad) fail(std::string(isa) + " exp f32 (0, 88.72]: max ULP " + std::to_string(rp.max_ulp));
  const int64_t cnt = g_quick ? 200000 : 2000000;
  const auto r64 = expcheck::check_f64_random(h.exp_f64, -745.0, 0.0, cnt, 7);
  const auto r64b = expcheck::check_f64_random(h.exp_f64, -1.0, 0.0, cnt / 4, 8);
  std::printf("  %s exp f64 [-745, 0] %lld samples: max %lld ULP (%.3f vs exact), %lld flushed, %lld bad\n",
              isa, (long long)r64.checked, (long long)r64.max_ulp, r64.max_err, (long long)r64.flushed,
              (long long)r64.bad);
  if (r64.max_ulp > 1 || r64.bad || r64b.max_ulp > 1 || r64b.bad)
    fail(std::string(isa) + " exp f64: max ULP " + std::to_string(std::max(r64.max_ulp, r64b.max_ulp)));
  // Specials.
  const float xs[] = {std::numeric_limits<float>::quiet_NaN(), -kInfF, kInfF, 0.0f, -0.0f, -87.5f, -88.0f, 89.0f, -1e30f};
  float ys[9];
  h.exp_f32(xs, ys, 9);
  if (!std::isnan(ys[0]) || ys[1] != 0 || ys[2] != kInfF || ys[3] != 1 || ys[4] != 1 || ys[5] != 0 ||
      ys[6] != 0 || ys[7] != kInfF || ys[8] != 0)
    fail(std::string(isa) + " exp f32 specials");
  const double xd[] = {kNaN, -double(kInfF), double(kInfF), 0.0, -710.0, 710.0};
  double yd[6];
  h.exp_f64(xd, yd, 6);
  if (!std::isnan(yd[0]) || yd[1] != 0 || yd[2] != double(kInfF) || yd[3] != 1 || yd[4] != 0 ||
      yd[5] != double(kInfF))
    fail(std::string(isa) + " exp f64 specials");
}

// ---- the driver's gather helpers ----------------------------------------------------
// gather_row: y = C(x) / t, -inf where the mask is false, each an IEEE division (the
// scalar loop's bits); narrow_row (float16): y = x rounded to nearest even, as
// float_to_half. Every length up to a few vectors, with and without a mask, t = 1 too.
template <class S>
void test_gather(const KernelTable& t, const char* isa) {
  using E = Elem<S>;
  using C = typename E::C;
  const auto k = E::set(t);
  if (!k.gather_row) {
    fail(std::string(isa) + " " + E::name + ": no gather_row");
    return;
  }
  std::uniform_int_distribution<int> coin(0, 3);
  for (int64_t n = 1; n <= 70; ++n) {
    const std::vector<S> x = random_row<S>(n, 5.0, 0.0);
    std::vector<unsigned char> m(static_cast<size_t>(n));
    for (auto& b : m) b = coin(g_rng) != 0;
    for (const C tv : {C(1), C(0.75), C(3)}) {
      for (int masked = 0; masked < 2; ++masked) {
        std::vector<C> y(static_cast<size_t>(n), C(7));
        k.gather_row(x.data(), masked ? reinterpret_cast<const bool*>(m.data()) : nullptr, y.data(), n, tv);
        ++g_checks;
        for (int64_t i = 0; i < n; ++i) {
          const C want = masked && !m[i] ? -std::numeric_limits<C>::infinity()
                                         : (tv == C(1) ? C(E::to(x[i])) : C(C(E::to(x[i])) / tv));
          if (std::memcmp(&y[i], &want, sizeof want) != 0) {
            fail(std::string(isa) + " " + E::name + " gather_row n=" + std::to_string(n) + " i=" +
                 std::to_string(i));
            break;
          }
        }
      }
    }
    if constexpr (std::is_same<S, double>::value) {
      // weighted_exp_sum: sum w * exp(d), d <= 0 (or -inf with w = 0), signed w; within
      // a few ULP of the terms' absolute sum (error-free additions, 1-ULP exps)
      if (!k.weighted_exp_sum) {
        fail(std::string(isa) + ": no weighted_exp_sum");
        continue;
      }
      std::vector<double> d(static_cast<size_t>(n)), wt(static_cast<size_t>(n));
      std::uniform_real_distribution<double> u(-1.0, 1.0);
      LD want = 0, mag = 0;
      for (int64_t i = 0; i < n; ++i) {
        d[i] = -std::fabs(E::to(x[i])) * 8.0;
        wt[i] = m[i] ? u(g_rng) : 0.0;
        if (!m[i]) d[i] = -std::numeric_limits<double>::infinity();
        const LD term = LD(wt[i]) * std::exp(LD(d[i]));
        want += term;
        mag += std::fabs(term);
      }
      double got[2];
      k.weighted_exp_sum(d.data(), wt.data(), n, got);
      ++g_checks;
      if (std::fabs(LD(got[0]) + LD(got[1]) - want) > 4 * 0x1p-52 * mag + 1e-300)
        fail(std::string(isa) + " weighted_exp_sum n=" + std::to_string(n));
    }
    if constexpr (!std::is_same<S, C>::value) {
      if (!k.narrow_row) {
        fail(std::string(isa) + " " + E::name + ": no narrow_row");
        continue;
      }
      std::vector<C> v(static_cast<size_t>(n));
      for (auto& e : v) e = C(E::to(x[0])) * C(1.0009765625) + C(std::normal_distribution<double>(0, 3)(g_rng));
      v[0] = std::numeric_limits<C>::quiet_NaN();
      if (n > 1) v[1] = -std::numeric_limits<C>::infinity();
      const S mark = E::from(1234.0);
      std::vector<S> y(static_cast<size_t>(n) + 1, mark);
      k.narrow_row(v.data(), y.data(), n);
      ++g_checks;
      for (int64_t i = 0; i < n; ++i)
        if (!same_bits(y[i], E::from(double(v[i])))) {
          fail(std::string(isa) + " " + E::name + " narrow_row n=" + std::to_string(n) + " i=" +
               std::to_string(i));
          break;
        }
      if (!same_bits(y[n], mark))
        fail(std::string(isa) + " " + E::name + " narrow_row wrote past n=" + std::to_string(n));
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (std::strcmp(argv[i], "--quick") == 0) g_quick = true;
  const KernelTable& sc = kernels_for(Isa::scalar);
  struct {
    Isa isa;
    bool (*hooks)(ExpHooks&);
  } isas[] = {{Isa::avx512, exp_hooks_avx512},
              {Isa::avx2, exp_hooks_avx2},
              {Isa::neon, exp_hooks_neon}};
  int tested = 0;
  for (auto& e : isas) {
    const char* name = isa_name(e.isa);
    if (!cpu_supports(e.isa)) {
      std::printf("%s: not compiled in or not supported by this CPU, skipped\n", name);
      continue;
    }
    ++tested;
    std::printf("%s:\n", name);
    const KernelTable& t = kernels_for(e.isa);
    ExpHooks h;
    if (e.hooks(h)) test_exp(name, h);
    const int before = g_failures;
    test_rows<float>(t, sc, name);
    test_rows<double>(t, sc, name);
    test_rows<uint16_t>(t, sc, name);
    test_rows<bf16_t>(t, sc, name);
    test_specials<float>(t, name);
    test_specials<double>(t, name);
    test_specials<uint16_t>(t, name);
    test_specials<bf16_t>(t, name);
    test_blocked<float>(t, name);
    test_blocked<double>(t, name);
    test_blocked<uint16_t>(t, name);
    test_blocked<bf16_t>(t, name);
    test_panels<float>(t, name);
    test_panels<double>(t, name);
    test_panels<uint16_t>(t, name);
    test_panels<bf16_t>(t, name);
    test_row_batches<float>(t, name);
    test_row_batches<double>(t, name);
    test_row_batches<uint16_t>(t, name);
    test_row_batches<bf16_t>(t, name);
    test_gather<float>(t, name);
    test_gather<double>(t, name);
    test_gather<uint16_t>(t, name);
    test_gather<bf16_t>(t, name);
    std::printf("  %s kernels: %d failures\n", name, g_failures - before);
  }
  std::printf("%d SIMD ISA(s) tested, %d checks, %d failures\n", tested, g_checks, g_failures);
  if (tested == 0) {
    std::printf("no SIMD ISA available: nothing tested\n");
    return 2;
  }
  return g_failures ? 1 : 0;
}
