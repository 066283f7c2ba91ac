// Part of the ISA-generic softmax family (softmax_family.h): the sampler's passes over
// a row (csrc/sample.cpp, the draw without filters). The masses are exp((x - m) * s):
// x - m formed first, as the row kernels do, so the max's own mass is exactly 1 and a
// temperature never overflows; s = 1 / T (s == 1: the plain exps, no multiply).

// One pass over x[0..n) given its max m (finite) and s > 0: returns the Partial of the
// raw sum exp(x - m) (rest set apart), and writes per block of `block` entries (a
// multiple of the vector width) the sum of the masses to block_sums. A NaN in x makes
// the raw sum NaN.
template <class T>
Partial exp_sums(const typename T::S* x, int64_t n, typename T::C m, typename T::C s,
                 int64_t block, double* block_sums) {
  using C = typename T::C;
  using V = typename T::V;
  constexpr int64_t W = T::W;
  const V vm = T::set1(m), vs = T::set1(s);
  const bool scaled = s != C(1);
  using Acc = decltype(T::acc_zero());
  // four vectors a step into four accumulators (acc_add4: float data pre-add pairs in
  // float); one accumulator's chain of double adds would bound the loop
  Acc raw[4] = {T::acc_zero(), T::acc_zero(), T::acc_zero(), T::acc_zero()};
  for (int64_t b = 0, i0 = 0; i0 < n; ++b, i0 += block) {
    const int64_t i1 = std::min(n, i0 + block);
    Acc acc[4] = {T::acc_zero(), T::acc_zero(), T::acc_zero(), T::acc_zero()};
    int64_t i = i0;
    for (; i + 4 * W <= i1; i += 4 * W) {
      const V d0 = T::sub(T::load(x + i), vm), d1 = T::sub(T::load(x + i + W), vm);
      const V d2 = T::sub(T::load(x + i + 2 * W), vm), d3 = T::sub(T::load(x + i + 3 * W), vm);
      const V e0 = T::exp_le0(d0), e1 = T::exp_le0(d1), e2 = T::exp_le0(d2), e3 = T::exp_le0(d3);
      if (scaled) {
        T::acc_add4(raw, e0, e1, e2, e3);
        T::acc_add4(acc, T::exp_le0(T::mul(d0, vs)), T::exp_le0(T::mul(d1, vs)),
                    T::exp_le0(T::mul(d2, vs)), T::exp_le0(T::mul(d3, vs)));
      } else {
        T::acc_add4(acc, e0, e1, e2, e3);
      }
    }
    for (; i < i1; i += W) {  // load_n's missing lanes are -inf: exp gives 0, scaled or not
      const V d = T::sub(i + W <= i1 ? T::load(x + i) : T::load_n(x + i, i1 - i), vm);
      const V e = T::exp_le0(d);
      if (scaled) {
        T::acc_add(raw[0], e);
        T::acc_add(acc[0], T::exp_le0(T::mul(d, vs)));
      } else {
        T::acc_add(acc[0], e);
      }
    }
    T::acc_merge(acc[0], acc[1]);
    T::acc_merge(acc[2], acc[3]);
    T::acc_merge(acc[0], acc[2]);
    block_sums[b] = T::acc_total(acc[0]).sum;
    if (!scaled) T::acc_merge(raw[0], acc[0]);
  }
  T::acc_merge(raw[0], raw[1]);
  T::acc_merge(raw[2], raw[3]);
  T::acc_merge(raw[0], raw[2]);
  const SumExp r = T::acc_total(raw[0]);
  if (r.sum != r.sum) return {std::numeric_limits<double>::quiet_NaN(), r.sum, r.sum};
  return {double(m), r.sum, r.rest};
}

// y[0..n) = the masses exp_sums sums, exp((x - m) * s) (the same bits), in the compute
// type.
template <class T>
void exp_scaled(const typename T::S* x, typename T::C* y, int64_t n, typename T::C m,
                typename T::C s) {
  using C = typename T::C;
  using V = typename T::V;
  constexpr int64_t W = T::W;
  const V vm = T::set1(m), vs = T::set1(s);
  const bool scaled = s != C(1);
  int64_t i = 0;
  for (; i + W <= n; i += W) {
    const V d = T::sub(T::load(x + i), vm);
    T::storec(y + i, T::exp_le0(scaled ? T::mul(d, vs) : d));
  }
  if (i < n) {
    const V d = T::sub(T::load_n(x + i, n - i), vm);
    alignas(64) C tail[W];
    T::storec(tail, T::exp_le0(scaled ? T::mul(d, vs) : d));
    for (int64_t j = 0; i + j < n; ++j) y[i + j] = tail[j];
  }
}
