"""The vector exp at the heart of every SIMD ISA, against a correctly rounded reference.

The contract (written above exp_ps / exp_pd in csrc/kernels/<isa>.cpp):

* float32: within 1 ULP of the correctly rounded exp(x) for every x >= -87.33654
  (the smallest float whose exp is a normal number); checked here for *every* float in
  [-104, 0] and for a sample of (0, 88.72].
* float64: within 1 ULP for x >= -708.3964185322641, on tens of millions of random
  samples against ``expl``.
* Underflow is a documented flush: where the exact result is below the smallest normal
  the result is +0 (no subnormal is ever produced or consumed). Overflow gives +inf.
* exp(nan) = nan, exp(-inf) = +0, exp(+inf) = +inf, and a lane's result does not depend
  on its position (tails run the same vector code).

The sweeps run in C++ (``fastsoftmax._testing``, the test hooks: an extension the
README's test command builds, never shipped in a wheel), with OpenMP.  Where the
kernels run on an emulated CPU (test_avx512_emulated.py, ~3M elements/s) the
environment sets FASTSOFTMAX_TEST_SPARSE: the sweeps then take every SPARSE-th input
(windows of consecutive floats for the variants' agreement), the same assertions.
"""

import importlib
import os

import fastsoftmax
import numpy as np
import pytest

try:
    T = importlib.import_module("fastsoftmax._testing")
except ModuleNotFoundError as e:  # an install without the hooks (a published wheel):
    if e.name != "fastsoftmax._testing":  # conftest.py then stops the run unless these
        raise  # tests are deselected (-m "not hooks"); they never skip
    T = None

VECTOR_ISAS = [i for i in fastsoftmax.available_isas() if i != "scalar"]
SPARSE = int(os.environ.get("FASTSOFTMAX_TEST_SPARSE", "1"))  # 1: every input

# smallest float / double whose exp is >= the smallest normal number
F32_MIN_ARG = float.fromhex("-0x1.5d589ep+6")  # -87.33654
F64_MIN_ARG = float.fromhex("-0x1.6232bdd7abcd2p+9")  # -708.3964185322641
# largest float / double whose exp is finite
F32_MAX_ARG = float.fromhex("0x1.62e42ep+6")  # 88.72283
F64_MAX_ARG = float.fromhex("0x1.62e42fefa39efp+9")  # 709.782712893384

pytestmark = [pytest.mark.hooks,
              pytest.mark.skipif(not VECTOR_ISAS, reason="no SIMD ISA on this CPU/build")]


def f32_bits(v):
    return int(np.array(v, np.float32).view(np.uint32))


def _show(r):
    return (f"max {r['max_ulp']} ULP at x={r['worst_input']!r}, {r['max_err']:.3f} ULP vs exact "
            f"at x={r['max_err_input']!r}, {r['flushed']} flushed, {r['bad']} bad "
            f"(first {r['first_bad_input']!r})")


@pytest.mark.slow
@pytest.mark.parametrize("isa", VECTOR_ISAS)
def test_exp_f32_every_float_in_minus104_0(isa):
    # the x <= 0 variant the row kernels use; the full-range one (panels) must give the
    # same bits there (next test)
    lo, hi = f32_bits(-0.0), f32_bits(-104.0)  # negative floats: bits grow with |x|
    r = T.exp_f32_check(isa, lo, hi, stride=SPARSE, variant="le0")
    checked = (hi - lo) // SPARSE + 1  # hi - lo + 1 when every float is checked
    assert r["checked"] == checked
    assert r["bad"] == 0, _show(r)
    assert r["max_ulp"] <= 1, _show(r)
    assert r["max_err"] < 1.0, _show(r)
    # exactly the floats below F32_MIN_ARG (bits above its bits) are flushed to +0
    not_flushed = (f32_bits(F32_MIN_ARG) - lo) // SPARSE + 1
    assert r["flushed"] == checked - not_flushed, _show(r)


def _variants_differ(isa, lo, hi, a, b):
    """Floats in [lo, hi] (bit patterns) where variants a and b differ in bits: every
    one, or under SPARSE 256 windows of consecutive floats, the last ending at hi."""
    if SPARSE == 1:
        return T.exp_f32_variants_differ(isa, lo, hi, a=a, b=b)
    width = max(1, (hi - lo + 1) // (256 * SPARSE))
    starts = np.linspace(lo, hi - width + 1, 256).astype(np.int64).tolist()
    return sum(T.exp_f32_variants_differ(isa, s, s + width - 1, a=a, b=b) for s in starts)


@pytest.mark.parametrize("isa", VECTOR_ISAS)
def test_exp_variants_agree_for_nonpositive_x(isa):
    # every float in [-inf, 0] (NaNs included: bits 0xff800001.. are negative NaNs)
    assert _variants_differ(isa, f32_bits(-0.0), 0xFFFFFFFF, "full", "le0") == 0
    x = -np.abs(np.random.default_rng(3).standard_normal(2_000_000 // SPARSE) * 300)
    x[:4] = [-0.0, -np.inf, np.nan, -745.5]
    a, b = T.exp_f64(isa, x), T.exp_f64(isa, x, variant="le0")
    assert np.array_equal(a.view(np.uint64), b.view(np.uint64))


# The ISAs whose Ops have a no-flush exp (generic/row_passes.h HasExpNf), which the row
# kernels take for rows whose every x - max is >= its bound; the others offer no hook.
NO_FLUSH_ISAS = {"avx2"}


@pytest.mark.parametrize("variant", ["le0", "f16_le0", "train_le0"])
@pytest.mark.parametrize("isa", VECTOR_ISAS)
def test_exp_no_flush_forms_give_the_same_bits(isa, variant):
    nf = variant + "_nf"
    if isa not in NO_FLUSH_ISAS:
        with pytest.raises(ValueError, match="no-flush"):
            T.exp_f32(isa, np.zeros(3, np.float32), variant=nf)
        return
    # every float in [F32_MIN_ARG, 0] (the bound of every no-flush form) and every NaN
    for lo, hi in [(f32_bits(-0.0), f32_bits(F32_MIN_ARG)), (f32_bits(0.0), f32_bits(0.0)),
                   (0x7F800001, 0x7FFFFFFF), (0xFF800001, 0xFFFFFFFF)]:
        assert _variants_differ(isa, lo, hi, variant, nf) == 0, (hex(lo), hex(hi))
    if variant == "le0":  # float64: random samples down to F64_MIN_ARG, and its ends
        x = np.random.default_rng(11).uniform(F64_MIN_ARG, 0.0, 2_000_000 // SPARSE)
        x[:5] = [F64_MIN_ARG, np.nextafter(F64_MIN_ARG, 0.0), -0.0, 0.0, np.nan]
        a, b = T.exp_f64(isa, x, variant="le0"), T.exp_f64(isa, x, variant="le0_nf")
        assert np.array_equal(a.view(np.uint64), b.view(np.uint64))


@pytest.mark.parametrize("isa", VECTOR_ISAS)
def test_exp_f32_against_libm_sample(isa):
    # an independent reference (std::exp in double, rounded) on every 61st float, so the
    # exhaustive sweep's fast reference (the ISA's float64 exp) is itself cross-checked
    r = T.exp_f32_check(isa, f32_bits(-0.0), f32_bits(-104.0), stride=61 * SPARSE,
                        reference="libm")
    assert r["bad"] == 0 and r["max_ulp"] <= 1, _show(r)


@pytest.mark.parametrize("isa", VECTOR_ISAS)
def test_exp_f32_positive_side(isa):
    r = T.exp_f32_check(isa, f32_bits(0.0), f32_bits(F32_MAX_ARG), stride=13 * SPARSE)
    assert r["bad"] == 0 and r["max_ulp"] <= 1, _show(r)
    assert r["flushed"] == 0
    # every float in the last stretch before overflow
    r = T.exp_f32_check(isa, f32_bits(88.0), f32_bits(F32_MAX_ARG), reference="libm")
    assert r["bad"] == 0 and r["max_ulp"] <= 1, _show(r)


@pytest.mark.parametrize("isa", VECTOR_ISAS)
@pytest.mark.parametrize("lo,hi,count", [(-745.0, 0.0, 20_000_000), (-1.0, 0.0, 4_000_000),
                                         (-1e-6, 0.0, 1_000_000), (-720.0, -700.0, 2_000_000),
                                         (0.0, F64_MAX_ARG, 2_000_000)], ids=str)
def test_exp_f64_random(isa, lo, hi, count):
    variant = "le0" if hi <= 0 else "full"
    count //= SPARSE
    r = T.exp_f64_check(isa, lo, hi, count, seed=count, variant=variant)
    assert r["checked"] == count
    assert r["bad"] == 0, _show(r)
    assert r["max_ulp"] <= 1, _show(r)
    assert r["max_err"] < 1.0, _show(r)


@pytest.mark.aarch64
@pytest.mark.parametrize("isa", VECTOR_ISAS)
def test_exp_f32_specials(isa):
    nan = np.float32(np.nan)
    x = np.array([nan, -nan, -np.inf, np.inf, 0.0, -0.0, -1e30, 1e30, -1e-45, 1e-45,
                  np.nextafter(np.float32(F32_MAX_ARG), np.float32(np.inf)), 89.0, -88.0,
                  np.nextafter(np.float32(F32_MIN_ARG), np.float32(-np.inf)), -104.0, -1000.0],
                 np.float32)
    y = T.exp_f32(isa, x)
    assert np.isnan(y[0]) and np.isnan(y[1])
    assert y[2] == 0 and not np.signbit(y[2])
    assert y[3] == np.inf
    assert y[4] == 1 and y[5] == 1
    assert y[6] == 0 and y[7] == np.inf
    assert y[8] == 1 and y[9] == 1
    assert y[10] == np.inf and y[11] == np.inf
    # below F32_MIN_ARG: flushed to +0 (documented), never a subnormal
    assert np.all(y[12:] == 0) and not np.any(np.signbit(y[12:]))


@pytest.mark.aarch64
@pytest.mark.parametrize("isa", VECTOR_ISAS)
def test_exp_f32_near_underflow_is_normal_and_accurate(isa):
    # oneDNN returns 0 here although the true result is a normal float
    x = np.linspace(-87.34, -87.0, 20001, dtype=np.float32)
    y = T.exp_f32(isa, x)
    ref = np.exp(x.astype(np.float64)).astype(np.float32)
    tiny = np.finfo(np.float32).tiny
    normal = x >= np.float32(F32_MIN_ARG)
    assert np.all(y[normal] >= tiny)
    d = np.abs(y[normal].view(np.int32).astype(np.int64) - ref[normal].view(np.int32))
    assert d.max() <= 1
    assert np.all(y[~normal] == 0)
    assert np.all(x[~normal] < np.float32(F32_MIN_ARG))


@pytest.mark.aarch64
@pytest.mark.parametrize("isa", VECTOR_ISAS)
def test_exp_f64_specials(isa):
    x = np.array([np.nan, -np.inf, np.inf, 0.0, -0.0, -1e300, 1e300, -5e-324,
                  np.nextafter(F64_MAX_ARG, np.inf), F64_MAX_ARG,
                  np.nextafter(F64_MIN_ARG, -np.inf), F64_MIN_ARG, -745.2])
    y = T.exp_f64(isa, x)
    assert np.isnan(y[0])
    assert y[1] == 0 and not np.signbit(y[1])
    assert y[2] == np.inf
    assert y[3] == 1 and y[4] == 1
    assert y[5] == 0 and y[6] == np.inf and y[7] == 1
    assert y[8] == np.inf and np.isfinite(y[9]) and y[9] > 1.79e308
    assert y[10] == 0  # flushed: the exact result is subnormal
    assert y[11] >= np.finfo(np.float64).tiny
    assert y[12] == 0


@pytest.mark.aarch64
@pytest.mark.parametrize("isa", VECTOR_ISAS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exp_lane_result_independent_of_position(isa, dtype):
    rng = np.random.default_rng(5)
    x = (rng.standard_normal(70) * 30).astype(dtype)
    x[::7] = -np.inf
    x[3] = np.nan
    f = T.exp_f32 if dtype == np.float32 else T.exp_f64
    full = f(isa, x)
    for k in range(1, 20):
        part = f(isa, x[k:])
        assert np.array_equal(part.view(np.uint8), full[k:].view(np.uint8)), k
        part = f(isa, x[: len(x) - k])
        assert np.array_equal(part.view(np.uint8), full[: len(x) - k].view(np.uint8)), k


def test_hooks_reject_unknown_or_missing_isa():
    with pytest.raises(ValueError):
        T.exp_f32("sse9", np.zeros(3, np.float32))
    missing = [i for i in ("avx2", "avx512", "neon") if i not in fastsoftmax.available_isas()]
    for name in missing:
        with pytest.raises(ValueError):
            T.exp_f64(name, np.zeros(3))


@pytest.mark.parametrize("variant", ["f16", "f16_le0"])
@pytest.mark.parametrize("isa", VECTOR_ISAS)
def test_exp_of_the_float16_kernels(isa, variant):
    # The float16 kernels round every result to float16 (2^-11 relative): their exp
    # (AVX-512, AVX2) is a shorter one, documented at 5.4e-6 relative error. Every
    # float32 in [-88, 0] at a stride of 7 bit patterns (about 1.3e8 values would be
    # every one; 1.5e8 / 7 here), then the range and specials of the float32 exp.
    lo, hi = f32_bits(-0.0), f32_bits(-88.0)
    bits = np.arange(lo, hi + 1, 7 * SPARSE, dtype=np.uint32)
    x = bits.view(np.float32)
    y = T.exp_f32(isa, x, variant=variant).astype(np.float64)
    ref = np.exp(x.astype(np.float64))
    normal = x >= np.float32(F32_MIN_ARG)
    rel = np.abs(y[normal] / ref[normal] - 1.0)
    assert rel.max() <= 6e-6, f"max relative error {rel.max():.3g} at x={x[normal][rel.argmax()]!r}"
    assert np.all(y[~normal] == 0.0)  # flushed, never subnormal
    # exactly 1 at 0 (a row's max term: log1p(rest), docs/contract.md §5, relies on it)
    assert T.exp_f32(isa, np.array([0.0, -0.0], np.float32), variant=variant).tolist() == [1.0, 1.0]
    sp = T.exp_f32(isa, np.array([np.nan, -np.inf, -1000.0], np.float32), variant=variant)
    assert np.isnan(sp[0]) and sp[1] == 0.0 and sp[2] == 0.0
    if variant == "f16":  # the full-range one: the positive side too
        xp = np.linspace(0.0, F32_MAX_ARG, 100001, dtype=np.float32)
        yp = T.exp_f32(isa, xp, variant=variant).astype(np.float64)
        assert np.abs(yp / np.exp(xp.astype(np.float64)) - 1.0).max() <= 6e-6
        big = T.exp_f32(isa, np.array([89.0, np.inf], np.float32), variant=variant)
        assert np.all(big == np.inf)
    with pytest.raises(ValueError):
        T.exp_f64(isa, np.zeros(3), variant=variant)


@pytest.mark.parametrize("variant", ["train", "train_le0"])
@pytest.mark.parametrize("isa", VECTOR_ISAS)
def test_exp_of_the_training_kernels(isa, variant):
    # The cross-entropy and backward kernels (docs/contract.md §5: 64 eps times the row's scale)
    # use a shorter float32 exp on AVX-512/AVX2, documented at 4.5e-7 relative error;
    # NEON and scalar use the row kernels' exp. Every 7th float32 in [-88, 0], then the
    # range and specials of the float32 exp.
    lo, hi = f32_bits(-0.0), f32_bits(-88.0)
    x = np.arange(lo, hi + 1, 7 * SPARSE, dtype=np.uint32).view(np.float32)
    y = T.exp_f32(isa, x, variant=variant).astype(np.float64)
    ref = np.exp(x.astype(np.float64))
    normal = x >= np.float32(F32_MIN_ARG)
    rel = np.abs(y[normal] / ref[normal] - 1.0)
    assert rel.max() <= 5e-7, f"max relative error {rel.max():.3g} at x={x[normal][rel.argmax()]!r}"
    assert np.all(y[~normal] == 0.0)
    assert T.exp_f32(isa, np.array([0.0, -0.0], np.float32), variant=variant).tolist() == [1.0, 1.0]
    sp = T.exp_f32(isa, np.array([np.nan, -np.inf, -1000.0], np.float32), variant=variant)
    assert np.isnan(sp[0]) and sp[1] == 0.0 and sp[2] == 0.0
    if variant == "train":
        xp = np.linspace(0.0, F32_MAX_ARG, 100001, dtype=np.float32)
        yp = T.exp_f32(isa, xp, variant=variant).astype(np.float64)
        assert np.abs(yp / np.exp(xp.astype(np.float64)) - 1.0).max() <= 5e-7
        assert np.all(T.exp_f32(isa, np.array([89.0, np.inf], np.float32), variant=variant) == np.inf)


@pytest.mark.aarch64
@pytest.mark.parametrize("isa", ["scalar"] + VECTOR_ISAS)
def test_log1p_of_a_rows_rest(isa):
    # The float32 row kernels take a row's log as log1p(rest), rest = sum - 1 >= 0, with
    # an inline log (simd_common.h, documented within a few double ULP: far below a
    # float's), four rows at a time in log_softmax's groups and one at a time for a
    # single row; "scalar" is the scalar form of the driver's logsumexp. Against a long
    # double log1p, every range a row's rest takes (tiny, around the sqrt(2) split of
    # the mantissa, up to rows of 2^40), and in and out of the groups of four.
    rng = np.random.default_rng(11)
    k = 60000 // SPARSE
    split = np.sqrt(2.0) * 2.0 ** rng.integers(0, 40, k) - 1.0
    r = np.concatenate([
        [0.0, 5e-324, 1e-300, 2.0**-60, 2.0**-53, 2.0**-52, 1e-17, 1e-8, 1.0, 3.0, 7.0],
        rng.random(k), rng.random(k) * 1e7, 10.0 ** rng.uniform(-300, 0, k),
        2.0 ** rng.integers(0, 60, k) - 1.0, split, np.nextafter(split, 0), np.nextafter(split, 9),
    ])
    y = T.log1p_rest_f32(isa, r)
    ref = np.log1p(r.astype(np.longdouble))
    ulp = np.spacing(np.abs(ref).astype(np.float64))
    err = (np.abs(y - ref) / ulp).astype(np.float64)
    assert err.max() <= 16, f"{err.max():.1f} double ULP at r={r[err.argmax()]!r}"
    assert T.log1p_rest_f32(isa, np.array([0.0, 5e-324]))[1] == 5e-324  # exactly r when 1 + r == 1
    sp = T.log1p_rest_f32(isa, np.array([np.inf, np.nan, 1.0, np.inf, np.nan]))
    assert sp[0] == np.inf and sp[3] == np.inf and np.isnan(sp[1]) and np.isnan(sp[4])
    # a rest's log has the same bits in any lane of a group of four or alone (tail)
    for start in range(4):
        part = r[start:start + 4001]
        ys = T.log1p_rest_f32(isa, part)
        alone = np.array([T.log1p_rest_f32(isa, part[i:i + 1])[0] for i in range(0, 4001, 97)])
        assert np.array_equal(ys.view(np.int64), y[start:start + 4001].view(np.int64))
        assert np.array_equal(alone.view(np.int64), ys[::97].view(np.int64))
