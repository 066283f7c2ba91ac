// Part of the ISA-generic softmax family (softmax_family.h): the kernel table's
// element-wise helpers of the driver: gather_row (with mask_values), narrow_row and
// weighted_exp_sum. Relies on row_passes.h (FASTSOFTMAX_PASS, kInfC).

// y = C(x) / t, -inf where the mask is false (KernelSet::gather_row): whole vectors,
// then the tail through a vector's worth of stack (y holds exactly n elements).
template <class T, bool kDivide>
FASTSOFTMAX_PASS void gather_values(const typename T::S* x, typename T::C* y, int64_t n,
                                    typename T::V vt) {
  using V = typename T::V;
  constexpr int64_t W = T::W;
  const auto value = [&](V v) { return kDivide ? T::div(v, vt) : v; };
  int64_t i = 0;
  for (; i + 2 * W <= n; i += 2 * W) {
    T::storec(y + i, value(T::load(x + i)));
    T::storec(y + i + W, value(T::load(x + i + W)));
  }
  for (; i + W <= n; i += W) T::storec(y + i, value(T::load(x + i)));
  if (i < n) {
    alignas(64) typename T::C tail[W];
    T::storec(tail, value(T::load_n(x + i, n - i)));
    for (int64_t k = 0; i + k < n; ++k) y[i + k] = tail[k];
  }
}
// y = m ? y : -inf in integer bit operations, which the compiler vectorizes (as a
// select it kept a branch per element, mispredicted on any mixed mask).
template <class T>
FASTSOFTMAX_PASS void mask_values(const bool* m, typename T::C* y, int64_t n) {
  using C = typename T::C;
  using U = std::conditional_t<sizeof(C) == 4, uint32_t, uint64_t>;
  typedef U __attribute__((may_alias)) UA;  // (y's floats read and written as bits)
  static_assert(sizeof(U) == sizeof(C));
  const C ninf = -kInfC<T>;
  U ninf_bits;
  std::memcpy(&ninf_bits, &ninf, sizeof ninf);
  UA* __restrict yb = reinterpret_cast<UA*>(y);
  const unsigned char* __restrict mb = reinterpret_cast<const unsigned char*>(m);
  for (int64_t i = 0; i < n; ++i) {
    const U keep = U(0) - U(mb[i] != 0);
    yb[i] = (yb[i] & keep) | (ninf_bits & ~keep);
  }
}

// With a mask, chunk by chunk, so that the mask's pass finds its chunk of y still in
// L1 (a row is up to kBlock elements, half a MiB: a second pass over all of it went
// to L2).
constexpr int64_t kGatherChunk = 2048;
template <class T>
void gather_row(const typename T::S* x, const bool* m, typename T::C* y, int64_t n,
                typename T::C t) {
  using C = typename T::C;
  const auto values = [&](int64_t i, int64_t cnt) {
    if (t != C(1))
      gather_values<T, true>(x + i, y + i, cnt, T::set1(t));
    else
      gather_values<T, false>(x + i, y + i, cnt, T::set1(t));
  };
  if (!m) return values(0, n);
  for (int64_t i = 0; i < n; i += kGatherChunk) {  // (whole vectors but the last chunk)
    const int64_t cnt = std::min(kGatherChunk, n - i);
    values(i, cnt);
    mask_values<T>(m + i, y + i, cnt);
  }
}

// y = x rounded to S (KernelSet::narrow_row): as gather_row, x holds exactly n elements.
template <class T>
void narrow_row(const typename T::C* x, typename T::S* y, int64_t n) {
  constexpr int64_t W = T::W;
  int64_t i = 0;
  for (; i + W <= n; i += W) T::store(y + i, T::loadc(x + i));
  if (i < n) {
    alignas(64) typename T::C tail[W] = {};
    for (int64_t k = 0; i + k < n; ++k) tail[k] = x[i + k];
    T::store_n(y + i, n - i, T::loadc(tail));
  }
}

// KernelSet::weighted_exp_sum (T: the float64 Ops): per lane, s + c accumulates
// w * exp(d) by TwoSum (exact whatever the signs, unlike the row kernels' sums of
// positive terms); the lanes, then the tail's terms one by one, are merged the same way.
template <class T>
void weighted_exp_sum(const double* d, const double* w, int64_t n, double* out) {
  using V = typename T::V;  // (a vector type: GCC's operators apply)
  constexpr int64_t W = T::W;
  V s = T::set1(0.0), c = T::set1(0.0);
  int64_t i = 0;
  for (; i + W <= n; i += W) {
    const V term = T::loadc(w + i) * T::exp_le0(T::loadc(d + i));
    simd::two_sum(s, c, term);
  }
  alignas(64) double ls[W], lc[W];
  T::storec(ls, s);
  T::storec(lc, c);
  double sum = 0.0, comp = 0.0;
  for (int64_t l = 0; l < W; ++l) {
    simd::two_sum(sum, comp, ls[l]);
    comp += lc[l];
  }
  if (i < n) {
    alignas(64) double dt[W], wt[W], et[W];
    for (int64_t l = 0; l < W; ++l) {
      dt[l] = i + l < n ? d[i + l] : -HUGE_VAL;
      wt[l] = i + l < n ? w[i + l] : 0.0;
    }
    T::storec(et, T::loadc(wt) * T::exp_le0(T::loadc(dt)));
    for (int64_t l = 0; i + l < n; ++l) simd::two_sum(sum, comp, et[l]);
  }
  out[0] = sum;
  out[1] = comp;
}
