// Inner loops of the cross-entropy and backward kernels (csrc/xent.cpp), on
// contiguous rows of the compute type (float or double).
//
// This file has no include guard and no includes on purpose: xent.cpp includes it
// once per instruction set, inside a namespace of that ISA's name and a
// `#pragma GCC target` region, so GCC vectorizes the same plain C++ for SSE2,
// AVX2+FMA and AVX-512 and the copies can never be merged by the linker (the ODR
// trap of inline functions compiled for different targets). The std headers it
// uses (<cmath>, <cstdint>, <limits>) and fastsoftmax/common.h are included by
// xent.cpp above every region.
//
// Accuracy. float data: products of two floats are exact in double, so sums run in
// double with kLanes independent accumulators (relative error ~n * 2^-53, far below
// float's epsilon). double data: kLanes lanes of Knuth's TwoSum (sum + carry) folded
// by a compensated sum, so the error is ~2 eps |sum| + eps * sum |term rounding|,
// independent of the row length. A lane that meets +-inf or NaN keeps it in its
// sum (the carry goes NaN); finals return the plain sum when it is not finite.

constexpr int kLanes = 16;

// Fold kLanes lane sums (and carries) in a fixed order.
inline double fold(const double* s, const double* c) {
  CompensatedSum acc;
  double plain = 0.0;
  for (int j = 0; j < kLanes; ++j) {
    acc.add(s[j]);
    plain += s[j];
  }
  if (!std::isfinite(plain)) return plain;
  for (int j = 0; j < kLanes; ++j) acc.add(c[j]);
  return acc.value();
}

inline void two_sum_add(double& s, double& c, double v) {
  const double t = s + v;
  const double bp = t - s;
  c += (s - (t - bp)) + (v - bp);
  s = t;
}

// ---- sums ----------------------------------------------------------------------
// sum of (x_i - ref), in double (ref = 0 for a plain sum).
inline double sum_minus(const float* x, int64_t n, double ref) {
  double s[kLanes] = {}, c[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; ++j) s[j] += double(x[i + j]) - ref;
  for (int j = 0; i < n; ++i, ++j) s[j] += double(x[i]) - ref;
  return fold(s, c);
}
inline double sum_minus(const double* x, int64_t n, double ref) {
  double s[kLanes] = {}, c[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; ++j) two_sum_add(s[j], c[j], x[i + j] - ref);
  for (int j = 0; i < n; ++i, ++j) two_sum_add(s[j], c[j], x[i] - ref);
  return fold(s, c);
}

// sum of a_i * b_i.
inline double dot(const float* a, const float* b, int64_t n) {
  double s[kLanes] = {}, c[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; ++j) s[j] += double(a[i + j]) * double(b[i + j]);
  for (int j = 0; i < n; ++i, ++j) s[j] += double(a[i]) * double(b[i]);
  return fold(s, c);
}
inline double dot(const double* a, const double* b, int64_t n) {
  double s[kLanes] = {}, c[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; ++j) two_sum_add(s[j], c[j], a[i + j] * b[i + j]);
  for (int j = 0; i < n; ++i, ++j) two_sum_add(s[j], c[j], a[i] * b[i]);
  return fold(s, c);
}

// Dense cross-entropy terms of one block: *sum_l = sum l_i and
// *sum_lx = sum over l_i != 0 of l_i * (x_i - ref)   (0 * -inf := 0, as xlogy).
inline void label_terms(const float* l, const float* x, int64_t n, double ref, double* sum_l,
                        double* sum_lx) {
  double s[kLanes] = {}, t[kLanes] = {}, c[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; ++j) {
      const double lv = l[i + j];
      const double p = lv * (double(x[i + j]) - ref);
      s[j] += lv;
      t[j] += lv != 0.0 ? p : 0.0;
    }
  for (int j = 0; i < n; ++i, ++j) {
    const double lv = l[i];
    s[j] += lv;
    t[j] += lv != 0.0 ? lv * (double(x[i]) - ref) : 0.0;
  }
  *sum_l = fold(s, c);
  *sum_lx = fold(t, c);
}
inline void label_terms(const double* l, const double* x, int64_t n, double ref, double* sum_l,
                        double* sum_lx) {
  double s[kLanes] = {}, cs[kLanes] = {}, t[kLanes] = {}, ct[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; ++j) {
      const double lv = l[i + j];
      const double p = lv * (x[i + j] - ref);
      two_sum_add(s[j], cs[j], lv);
      two_sum_add(t[j], ct[j], lv != 0.0 ? p : 0.0);
    }
  for (int j = 0; i < n; ++i, ++j) {
    const double lv = l[i];
    two_sum_add(s[j], cs[j], lv);
    two_sum_add(t[j], ct[j], lv != 0.0 ? lv * (x[i] - ref) : 0.0);
  }
  *sum_l = fold(s, cs);
  *sum_lx = fold(t, ct);
}

// ---- element-wise writes (o may be the same array as an input, never a shifted one)
// g_i -= a * l_i + b   (dense gradient: target = a * l + b)
template <class C>
inline void sub_affine_t(C* g, const C* l, int64_t n, C a, C b) {
  for (int64_t i = 0; i < n; ++i) g[i] = g[i] - (a * l[i] + b);
}
inline void sub_affine(float* g, const float* l, int64_t n, float a, float b) {
  sub_affine_t(g, l, n, a, b);
}
inline void sub_affine(double* g, const double* l, int64_t n, double a, double b) {
  sub_affine_t(g, l, n, a, b);
}
template <class C>
inline void sub_const_t(C* g, int64_t n, C b) {
  for (int64_t i = 0; i < n; ++i) g[i] -= b;
}
inline void sub_const(float* g, int64_t n, float b) { sub_const_t(g, n, b); }
inline void sub_const(double* g, int64_t n, double b) { sub_const_t(g, n, b); }

// softmax backward: o_i = y_i * (g_i - s)
template <class C>
inline void softmax_bwd_t(const C* g, const C* y, C* o, int64_t n, C s) {
  for (int64_t i = 0; i < n; ++i) o[i] = y[i] * (g[i] - s);
}
inline void softmax_bwd(const float* g, const float* y, float* o, int64_t n, float s) {
  softmax_bwd_t(g, y, o, n, s);
}
inline void softmax_bwd(const double* g, const double* y, double* o, int64_t n, double s) {
  softmax_bwd_t(g, y, o, n, s);
}

// log_softmax backward, given e_i = exp(y_i): o_i = g_i - e_i * s
template <class C>
inline void log_softmax_bwd_t(const C* g, const C* e, C* o, int64_t n, C s) {
  for (int64_t i = 0; i < n; ++i) o[i] = g[i] - e[i] * s;
}
inline void log_softmax_bwd(const float* g, const float* e, float* o, int64_t n, float s) {
  log_softmax_bwd_t(g, e, o, n, s);
}
inline void log_softmax_bwd(const double* g, const double* e, double* o, int64_t n, double s) {
  log_softmax_bwd_t(g, e, o, n, s);
}

// True when every y_i <= 0 (false on NaN): the domain where the table's exp
// (softmax_finish with max = 0) is specified.
template <class C>
inline bool all_nonpositive_t(const C* y, int64_t n) {
  int bad = 0;
  for (int64_t i = 0; i < n; ++i) bad |= !(y[i] <= C(0));
  return bad == 0;
}
inline bool all_nonpositive(const float* y, int64_t n) { return all_nonpositive_t(y, n); }
inline bool all_nonpositive(const double* y, int64_t n) { return all_nonpositive_t(y, n); }
