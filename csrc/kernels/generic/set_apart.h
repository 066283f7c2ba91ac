// Ops whose sums set the max's own terms apart, as the scalar reference does: SetApart<B>
// is the Ops B (a float32-compute Ops: F32, BF16) with another accumulator. Every exp
// that is exactly 1 (x_i == max: x - max = 0) is counted apart, the others are summed as
// B sums them, so rest = (count - 1) + others is accurate to the others' own last bits
// however small it is, where B's sum - 1 is accurate to those of the sum (B pre-adds
// four exps in float: a 1 there drops the others' bits below 2^-24).
//
// Why: bfloat16's log_softmax is promised within 1 ULP of the correctly rounded value
// (docs/contract.md §5), also at the max of a dominant row, where it is -log1p(rest)
// ~ -rest: rest must be accurate relative to itself. The bfloat16 sets take these Ops
// for log_softmax and logsumexp (isa_table.h, softmax_table.h's TLog); softmax needs
// no more than B's sums, and the float32 set keeps B's bits. Cost: about five vector
// operations more per vector of exps in the sum pass.
//
// Included INSIDE an ISA's namespace and target region, before the family (isa_table.h);
// B provides ones(e): 1 where e == 1, else +0 (a NaN lane: +0, so the NaN stays in
// the others' sum).
//
// Parts (panels: acc_parts / acc_from_parts): s = the count, c = the others' sum, so
// the panels' rest = (s - 1) + c is this rest; B's accumulator keeps no compensation
// (its parts' c is 0). The sweep keeps the count an integer: where a lane's max moves
// it folds the rescaled count into c (panel_sweep.h, kSetApart).

template <class B>
struct SetApart : B {
  using V = typename B::V;
  struct Acc {
    typename B::Acc one;   // the count of exps equal to 1
    typename B::Acc rest;  // the other exps
  };
  static_assert(B::kOneAcc, "SetApart: B's acc_add4 must sum into a[0] alone");
  static constexpr bool kOneAcc = true;
  static constexpr bool kSetApart = true;
  static Acc acc_zero() { return {B::acc_zero(), B::acc_zero()}; }
  static void acc_add(Acc& a, V e) {
    const V o = B::ones(e);
    B::acc_add(a.one, o);
    B::acc_add(a.rest, B::sub(e, o));
  }
  static void acc_add2(Acc& a, V e0, V e1) {
    const V o0 = B::ones(e0), o1 = B::ones(e1);
    B::acc_add2(a.one, o0, o1);
    B::acc_add2(a.rest, B::sub(e0, o0), B::sub(e1, o1));
  }
  static void acc_add4(Acc* a, V e0, V e1, V e2, V e3) {
    const V o0 = B::ones(e0), o1 = B::ones(e1), o2 = B::ones(e2), o3 = B::ones(e3);
    B::acc_add4(&a[0].one, o0, o1, o2, o3);  // (exact: small integers)
    B::acc_add4(&a[0].rest, B::sub(e0, o0), B::sub(e1, o1), B::sub(e2, o2), B::sub(e3, o3));
  }
  static void acc_merge(Acc& a, const Acc& b) {
    B::acc_merge(a.one, b.one);
    B::acc_merge(a.rest, b.rest);
  }
  static simd::SumExp acc_total(const Acc& a) {
    const double k = B::acc_total(a.one).sum, r = B::acc_total(a.rest).sum;
    return {k + r, (k - 1.0) + r};
  }
  static void acc_parts(const Acc& a, double* s, double* c) {
    alignas(64) double none[B::W];
    B::acc_parts(a.one, s, none);
    B::acc_parts(a.rest, c, none);
  }
  static Acc acc_from_parts(const double* s, const double* c) {
    return {B::acc_from_parts(s, s), B::acc_from_parts(c, c)};
  }
};

// Whether Ops T sets the max's terms apart (SetApart).
template <class T, class = void>
struct IsSetApart : std::false_type {};
template <class T>
struct IsSetApart<T, std::void_t<decltype(T::kSetApart)>> : std::bool_constant<T::kSetApart> {};
