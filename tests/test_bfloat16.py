"""bfloat16 (ml_dtypes.bfloat16; docs/contract.md §2.3, §5, §11) on every ISA (the
``isa`` fixture: every test that runs kernels takes it).

softmax and log_softmax results must be within 1 ULP of the correctly rounded
bfloat16 of the exact value (long double reference, rounded to bfloat16 directly:
no double rounding through float32), logsumexp within 1 ULP of max(1, |exact|);
softmax and log_softmax results below 1e-30 may be off by that much instead (the
float32 floor: the SIMD kernels flush subnormals). top_k values are x's own elements,
bit for bit. The conversions themselves are checked on every bfloat16 bit pattern (loads) and on
random and edge float32 values against ml_dtypes' own cast (stores).
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import scipy.special
import scipy.stats

import fastsoftmax as fs
from _ref import LD, Ref, random_values, run_python
from test_sample import SETTINGS, near_boundary, ref_kept, ref_token

# Without ml_dtypes (the test extra has it) or the test hooks these tests do not skip:
# conftest.py stops the run unless they are deselected (-m "not bfloat16" / "not hooks").
pytestmark = pytest.mark.bfloat16
try:
    import ml_dtypes
except ModuleNotFoundError:
    ml_dtypes = None
BF16 = np.dtype(ml_dtypes.bfloat16) if ml_dtypes else None
try:
    T = importlib.import_module("fastsoftmax._testing")
except ModuleNotFoundError as e:  # an install without the hooks (a published wheel)
    if e.name != "fastsoftmax._testing":
        raise
    T = None
LENGTHS = (1, 15, 16, 17, 31, 32, 33, 63, 64, 65, 1000)


# ------------------------------------------------------------------------- helpers
def bits(a) -> np.ndarray:
    return np.ascontiguousarray(a).view(np.uint16)


def round_bf16(r) -> np.ndarray:
    """Exact (long double) values rounded to bfloat16 directly, nearest even: 8
    significant bits, a fixed quantum 2^-133 below 2^-126 (subnormals), inf from 2^128."""
    r = np.asarray(r, LD)
    fin = np.isfinite(r)
    with np.errstate(all="ignore"):
        _, e = np.frexp(np.where(fin, r, LD(0)))
        q = np.ldexp(LD(1), np.maximum(e, -125) - 8)
        v = np.rint(np.where(fin, r, LD(0)) / q) * q
        v = np.where(np.abs(v) >= LD(2) ** 128, np.copysign(LD(np.inf), r), v)
        v = np.where(fin, v, r)
        return v.astype(np.float32).astype(BF16)  # exact: v is a bfloat16 value


def ulps_apart(a, b) -> np.ndarray:
    """ULP distance between bfloat16 arrays (finite values)."""
    def key(v):
        i = bits(v).astype(np.int64)
        return np.where(i & 0x8000, -(i & 0x7FFF), i)
    return np.abs(key(a) - key(b))


def fail(msg, y, r, bad):
    idx = np.argwhere(bad)[:5]
    at = [f"  at {tuple(int(i) for i in ix)}: got {y[tuple(ix)]!r}, exact {r[tuple(ix)]!r}"
          for ix in idx]
    raise AssertionError(f"{msg}: {int(np.count_nonzero(bad))} of {bad.size}\n" + "\n".join(at))


def check_nan_inf(y, r, what, poison_ok=None):
    yf = np.asarray(y).astype(np.float32)
    ok = np.zeros(r.shape, bool) if poison_ok is None else poison_ok
    bad = (np.isnan(r) != np.isnan(yf)) & ~ok
    if bad.any():
        fail(f"{what}: NaN pattern differs from the special-value table", y, r, bad)
    bad = np.isinf(r) & (yf != r) & ~ok
    if bad.any():
        fail(f"{what}: expected an infinity", y, r, bad)
    return np.isfinite(r) & ~ok


def check_softmax(y, ref: Ref):
    assert isinstance(y, np.ndarray) and y.dtype == BF16 and y.shape == ref.sm.shape
    r = ref.sm
    yf = y.astype(np.float32)
    # a masked entry of a NaN row: 0 (where=) or NaN (the row) both read as right (§2.6)
    poison_ok = ref.poisoned & ref.masked & ((yf == 0) | np.isnan(yf))
    fin = check_nan_inf(y, r, "softmax", poison_ok)
    bad = fin & ref.hard0 & (yf != 0)
    if bad.any():
        fail("softmax must be exactly 0 at -inf / masked entries", y, r, bad)
    with np.errstate(invalid="ignore"):
        near = ulps_apart(y, round_bf16(r)) <= 1
        floor = (np.abs(r) < LD(1e-30)) & (np.abs(yf.astype(LD) - r) <= LD(1e-30))
    bad = fin & ~near & ~floor
    if bad.any():
        fail("bfloat16 softmax more than 1 ULP from the correctly rounded value", y, r, bad)


def check_log_softmax(y, ref: Ref):
    assert isinstance(y, np.ndarray) and y.dtype == BF16 and y.shape == ref.lsm.shape
    r = ref.lsm
    yf = y.astype(np.float32)
    poison_ok = ref.poisoned & ref.masked & ((yf == -np.inf) | np.isnan(yf))
    fin = check_nan_inf(y, r, "log_softmax", poison_ok)
    with np.errstate(invalid="ignore"):
        near = ulps_apart(y, round_bf16(r)) <= 1
        floor = (np.abs(r) < LD(1e-30)) & (np.abs(yf.astype(LD) - r) <= LD(1e-30))
        bad = fin & ~near & ~floor
    if bad.any():
        fail("bfloat16 log_softmax more than 1 ULP from the correctly rounded value", y, r, bad)


def check_lse_values(y, r, what="logsumexp"):
    """|y - r| <= 1 ulp(max(1, |r|)) in bfloat16 (the float32 bound plus the rounding)."""
    y = np.asarray(y)
    assert y.dtype == BF16 and y.shape == r.shape, (y.dtype, y.shape, r.shape)
    fin = check_nan_inf(y, r, what)
    with np.errstate(all="ignore"):
        _, e = np.frexp(np.maximum(LD(1), np.abs(np.where(fin, r, LD(1)))))
        tol = np.ldexp(LD(1), e - 8)
        bad = fin & ~(np.abs(y.astype(np.float32).astype(LD) - r) <= tol)
    if bad.any():
        fail(f"{what}: error above 1 ULP of max(1, |exact|)", y, r, bad)


def bf16_values(rng, shape, scale=4.0, spread=True):
    return random_values(rng, shape, np.float32, scale, spread).astype(BF16)


def check_all(x, axis=-1, where=None, temperature=None):
    """softmax / log_softmax / logsumexp of bfloat16 x against the reference."""
    kw = {} if temperature is None else {"temperature": temperature}
    xv = x.astype(np.float32)
    if temperature is not None:
        xv = xv / np.float32(temperature)  # x / T in float32 (§2.5)
    ref = Ref(xv, axis, where)
    check_softmax(fs.softmax(x, axis, where=where, **kw), ref)
    check_log_softmax(fs.log_softmax(x, axis, where=where, **kw), ref)
    if temperature is None:
        check_lse_values(np.asarray(fs.logsumexp(x, axis, where=where)), ref.lse)


# --------------------------------------------------------------------- conversions
@pytest.mark.hooks
def test_loads_every_bit_pattern(isa):
    h = np.arange(1 << 16, dtype=np.uint16)
    want = h.view(BF16).astype(np.float32)
    got = T.bf16_widen(isa, h)
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))  # exact, NaNs too
    # through the kernels: the logsumexp of a one-element row is the element itself
    y = fs.logsumexp(h.view(BF16).reshape(-1, 1))
    nan = np.isnan(want)
    np.testing.assert_array_equal(y[~nan].astype(np.float32), want[~nan])  # (-0.0: +0.0)
    assert np.isnan(y[nan].astype(np.float32)).all()


def edge_floats() -> np.ndarray:
    """float32 bit patterns around every rounding decision of float32 -> bfloat16."""
    hi = np.array([0x0000, 0x0001, 0x007F, 0x0080, 0x0081, 0x3F80, 0x3F81, 0x7F7E, 0x7F7F,
                   0x7F80, 0x7F81, 0x7FBF, 0x7FC0, 0x7FFF], np.uint32)
    lo = np.array([0x0000, 0x0001, 0x7FFF, 0x8000, 0x8001, 0xFFFF], np.uint32)
    u = (hi[:, None] << 16 | lo[None, :]).ravel()
    return np.concatenate([u, u | 0x80000000]).view(np.float32)


@pytest.mark.hooks
@pytest.mark.parametrize("variant", ["table", "integer"])
def test_stores_round_to_nearest_even(isa, variant):
    rng = np.random.default_rng(5)
    f = np.concatenate([edge_floats(), rng.integers(0, 1 << 32, 1 << 20, dtype=np.uint32)
                        .view(np.float32)])
    u = f.view(np.uint32)
    got = T.bf16_narrow(isa, f, variant)
    nan = np.isnan(f)
    with np.errstate(invalid="ignore"):
        want = f.astype(BF16).view(np.uint16)
    # NaN: its sign and upper payload, made quiet (as vcvtneps2bf16)
    want = np.where(nan, ((u | 0x00400000) >> 16).astype(np.uint16), want)
    if isa == "avx512":  # float32 subnormals become +-0 (the instruction's, on every CPU)
        sub = (u & 0x7F800000 == 0) & (u & 0x007FFFFF != 0)
        want = np.where(sub, ((u >> 16) & 0x8000).astype(np.uint16), want)
    bad = got != want
    assert not bad.any(), [(hex(a), hex(b), hex(c)) for a, b, c in
                           zip(u[bad][:5], got[bad][:5], want[bad][:5])]
    # every bfloat16 value stores back as itself (NaNs quieted)
    h = np.arange(1 << 16, dtype=np.uint16)
    back = T.bf16_narrow(isa, h.view(BF16).astype(np.float32), variant)
    hn = np.isnan(h.view(BF16).astype(np.float32))
    keep = ~hn
    if isa == "avx512":
        keep &= ~((h & 0x7F80 == 0) & (h & 0x7F != 0))  # (subnormals: +-0)
    np.testing.assert_array_equal(back[keep], h[keep])
    np.testing.assert_array_equal(back[hn], h[hn] | 0x40)


@pytest.mark.hooks
def test_native_and_integer_stores_agree():
    if not T.bf16_native():
        pytest.skip("this CPU has no AVX512_BF16: the avx512 table uses the integer form")
    rng = np.random.default_rng(6)
    f = np.concatenate([edge_floats(), rng.integers(0, 1 << 32, 1 << 20, dtype=np.uint32)
                        .view(np.float32)])
    np.testing.assert_array_equal(T.bf16_narrow("avx512", f, "table"),
                                  T.bf16_narrow("avx512", f, "integer"))


@pytest.mark.hooks
def test_float64_results_round_once():
    """The driver's store of float64 results (logsumexp) rounds to bfloat16 directly."""
    rng = np.random.default_rng(7)
    d = rng.standard_normal(1 << 16) * np.exp2(rng.integers(-140, 130, 1 << 16))
    ties = np.float64(edge_floats()[np.isfinite(edge_floats())])
    more = [1 + 2.0**-8 + 2.0**-40, 1 + 2.0**-8 - 2.0**-40, 2.0**-134, 2.0**-134 * 1.0000001,
            3.4e38, -1e39]  # (round to odd through float32 keeps the sticky bit)
    d = np.concatenate([d, ties, ties * (1 + 2.0**-40), ties * (1 - 2.0**-40), more])
    got = T.bf16_from_double(d)
    want = bits(round_bf16(d.astype(LD)))
    bad = got != want
    assert not bad.any(), list(zip(d[bad][:5], got[bad][:5], want[bad][:5]))


# ----------------------------------------------------------------------- functions
@pytest.mark.parametrize("n", LENGTHS)
def test_lengths_against_reference(n, rng, isa):
    check_all(bf16_values(rng, (5, n)))  # a batch of rows
    check_all(bf16_values(rng, (1, n)))  # one row
    check_all(bf16_values(rng, (n,)))


def test_dominant_and_tiny_values(rng, isa):
    """Peaked rows (log_softmax of the max is a tiny -log1p(rest)), huge and tiny
    magnitudes, subnormal bfloat16 inputs, results near the subnormal range."""
    x = np.zeros((6, 40), np.float32)
    x[0] = -40.0
    x[0, 3] = 0.0  # rest ~ 39 e^-40: log_softmax of the max ~ -1.7e-16
    x[1] = rng.standard_normal(40) * 1e-38  # subnormal bfloat16 values
    x[2] = rng.standard_normal(40) * 1e38
    x[3] = np.linspace(-120, 0, 40)  # softmax down to ~1e-52: below the float32 floor
    x[4] = rng.standard_normal(40) * 1e3
    x[5] = np.float32(3.3e38)
    check_all(x.astype(BF16))
    # the others' exps below float32's normal range: log_softmax of the max ~ -6e-39,
    # flushed to 0 by the SIMD exps (inside the 1e-30 floor)
    x = np.full((2, 33), -88.0, np.float32)
    x[:, 7] = 0.0
    x[1, 9:] = -100.0
    check_all(x.astype(BF16))


def dominant(rng, rows, n, gap):
    """Rows whose max stands `gap` above a few runners-up (log_softmax there is
    -log1p(rest) ~ -rest, tiny), the rest far below: the runners-up share the max's
    vector lanes and row groups (where float sums pre-add them with the max's 1), one
    sits at the start (a panel sweep rescales its sum when the max comes); a few rows
    hold the max twice (rest >= 1)."""
    x = -gap - 40 - rng.uniform(0, 20, (rows, n)).astype(np.float32)
    p = n - 1 - rng.integers(0, min(n, 3), rows)
    for d in (1, 2, 3, 8, 16, 32, 48):
        q = np.maximum(p - d, 0)
        x[np.arange(rows), q] = -gap - rng.uniform(0, 2, rows).astype(np.float32)
    x[:, 0] = -gap
    x[np.arange(rows), p] = 0.0
    x[1::4, n // 2] = 0.0  # twice: rest >= 1
    return (x + rng.uniform(-50, 50, (rows, 1)).astype(np.float32)).astype(BF16)


@pytest.mark.parametrize("gap", [9.0, 30.0, 75.0])
@pytest.mark.parametrize("path", ["rows", "batch", "tiles", "sweep", "gather", "strided",
                                  "long", "top_k"])
def test_dominant_max_every_path(path, gap, rng, isa):
    """bfloat16 log_softmax within 1 ULP at the max of a dominant row too: every path's
    sums set the max's terms apart (kernels/generic/set_apart.h)."""
    t = None
    if path == "rows":
        x, axis = dominant(rng, 3, 3000, gap), -1
    elif path == "batch":
        x, axis = dominant(rng, 16, 40, gap), -1
    elif path == "tiles":
        x, axis = np.ascontiguousarray(dominant(rng, 40, 300, gap).T), 0
    elif path == "sweep":
        x, axis = np.ascontiguousarray(dominant(rng, 40, 5000, gap).T), 0
    elif path == "gather":
        x, axis, t = dominant(rng, 5, 3000, gap), -1, 1.5
    elif path == "strided":
        x, axis = dominant(rng, 5, 3000, gap)[:, ::-1], -1
    elif path == "long":
        x, axis = dominant(rng, 2, (1 << 17) + 777, gap), -1
    else:
        x = dominant(rng, 6, 3000, gap)
        r = fs.top_k(x, 3, transform="log_softmax")
        want = np.take_along_axis(Ref(x.astype(np.float32), -1).lsm, r.indices, -1)
        with np.errstate(invalid="ignore"):
            bad = ~(ulps_apart(r.values, round_bf16(want)) <= 1)
        if bad.any():
            fail("top_k log_softmax more than 1 ULP from the correctly rounded value",
                 r.values, want, bad)
        return
    xv = x.astype(np.float32) if t is None else x.astype(np.float32) / np.float32(t)
    ref = Ref(xv, axis)
    y = fs.log_softmax(x, axis) if t is None else fs.log_softmax(x, axis, temperature=t)
    check_log_softmax(y, ref)
    if t is None:
        check_softmax(fs.softmax(x, axis), ref)
        check_lse_values(np.asarray(fs.logsumexp(x, axis)), ref.lse)


SPECIAL_ROWS = {
    "nan": [1.0, np.nan, 2.0],
    "pinf": [1.0, np.inf, 2.0],
    "nan_pinf": [np.nan, np.inf, -np.inf],
    "ninf_some": [-np.inf, 1.0, -np.inf],
    "all_ninf": [-np.inf, -np.inf, -np.inf],
    "big_gap": [3e38, -3e38, 0.0],
}


@pytest.mark.parametrize("kind", sorted(SPECIAL_ROWS))
@pytest.mark.parametrize("n", [3, 17, 40])
def test_special_rows(kind, n, rng, isa):
    x = bf16_values(rng, (4, n))
    vals = np.array(SPECIAL_ROWS[kind], np.float32).astype(BF16)
    for r in range(4):  # the special entries at every place of the vectors
        pos = (np.arange(3) * (r + 1) * 5 + r) % n
        x[r, pos] = vals
    check_all(x)
    check_all(x, axis=0)  # panels
    check_all(np.asfortranarray(x).T, axis=0)


def test_where_masks(rng, isa):
    x = bf16_values(rng, (6, 70))
    x[0, 5] = np.nan  # masked NaN: takes no part
    x[1, 9] = np.inf
    m = rng.random((6, 70)) < 0.7
    m[0, 5] = m[1, 9] = False
    m[2] = False  # fully masked: a row of -inf
    m[3, 7] = True
    x[3, 7] = np.nan  # a NaN that takes part
    check_all(x, where=m)
    check_all(x, axis=0, where=m)
    check_all(x, where=m[0])  # broadcast


def test_temperature(rng, isa):
    x = bf16_values(rng, (4, 300))
    for t in (0.7, 2.0, 3):
        check_all(x, temperature=t)
        check_all(x, axis=0, temperature=t)


def test_layouts(rng, isa):
    base = bf16_values(rng, (40, 130))
    views = {
        "panels": (base, 0),
        "transposed": (base.T, -1),
        "strided": (base[:, ::2], -1),
        "reversed": (base[::-1, ::-3], -1),
        "tuple": (base.reshape(8, 5, 130), (0, 2)),
        "none": (base[:7, :9], None),
        "3d_mid": (base.reshape(4, 10, 130), 1),
    }
    for x, axis in views.values():
        check_all(x, axis)
        ref = Ref(x.astype(np.float32), axis)
        o = np.zeros(x.shape + (2,), BF16)[..., 0]  # a strided out= (scalar stores)
        assert fs.softmax(x, axis, out=o) is o
        check_softmax(o, ref)
        assert fs.log_softmax(x, axis, out=o) is o
        check_log_softmax(o, ref)


@pytest.mark.parametrize("n", [(1 << 17) + 3000, 300_001])
def test_long_rows_and_threads(n, rng, isa):
    x = bf16_values(rng, (2, n), scale=3.0)
    ref = Ref(x.astype(np.float32), -1)
    outs = {}
    for th in (1, 2):
        with fs.threads(th):
            outs[th] = (fs.softmax(x), fs.log_softmax(x), fs.logsumexp(x),
                        fs.softmax(x[:, ::-1]), fs.softmax(x, temperature=1.5))
    check_softmax(outs[1][0], ref)
    check_log_softmax(outs[1][1], ref)
    check_lse_values(outs[1][2], ref.lse)
    for a, b in zip(outs[1], outs[2]):
        np.testing.assert_array_equal(bits(a), bits(b))


def test_threads_bit_identical(rng, isa):
    x = bf16_values(rng, (64, 3000))
    got = {}
    for th in (1, 2):
        with fs.threads(th):
            got[th] = [fs.softmax(x), fs.log_softmax(x), fs.logsumexp(x), fs.softmax(x, 0),
                       fs.log_softmax(x.T, 0), fs.softmax(x[:, ::2]),
                       fs.top_k(x, 7).values, fs.top_k(x, 5, transform="softmax").values]
    for a, b in zip(got[1], got[2]):
        np.testing.assert_array_equal(bits(a), bits(b))


def test_batch_invariance(rng, isa):
    """A row's bits do not depend on the rows around it (§6)."""
    x = bf16_values(rng, (9, 100))
    for f in (fs.softmax, fs.log_softmax):
        whole = f(x)
        for r in range(9):
            np.testing.assert_array_equal(bits(f(x[r:r + 1])), bits(whole[r:r + 1]))


# ------------------------------------------------------------ arguments and dtypes
def test_fast_and_python_paths_agree(rng, isa):
    x = bf16_values(rng, (3, 50))
    for f, fp in ((fs.softmax, fs._api.softmax), (fs.log_softmax, fs._api.log_softmax)):
        np.testing.assert_array_equal(bits(f(x)), bits(fp(x)))
        np.testing.assert_array_equal(bits(f(x, 0)), bits(fp(x, (0,))))
    np.testing.assert_array_equal(bits(fs.logsumexp(x)), bits(fs._api.logsumexp(x)))
    o = np.empty_like(x)
    assert fs.softmax(x, out=o) is o
    np.testing.assert_array_equal(bits(o), bits(fs.softmax(x)))
    assert fs.softmax(x, out=x) is x  # in place
    np.testing.assert_array_equal(bits(x), bits(o))


def test_dtype_argument(rng, isa):
    x32 = random_values(rng, (3, 40), np.float32)
    xb = x32.astype(BF16)
    for dt in (ml_dtypes.bfloat16, BF16, "bfloat16"):
        y = fs.softmax(x32, dtype=dt)
        assert y.dtype == BF16
        np.testing.assert_array_equal(bits(y), bits(fs.softmax(xb)))
    y = fs.softmax(xb, dtype=np.float32)  # bfloat16 in, float32 out
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, fs.softmax(xb.astype(np.float32)))
    assert fs.log_softmax(np.arange(5), dtype=BF16).dtype == BF16
    assert fs.logsumexp(xb, dtype=np.float64).dtype == np.float64
    assert fs.softmax([1.0, 2.0], dtype=BF16).dtype == BF16


def test_logsumexp_options(rng, isa):
    x = bf16_values(rng, (4, 30))
    r = Ref(x.astype(np.float32), -1)
    v = fs.logsumexp(x, keepdims=True)
    assert v.dtype == BF16 and v.shape == (4, 1)
    v, s = fs.logsumexp(x, return_sign=True)
    assert v.dtype == s.dtype == BF16
    np.testing.assert_array_equal(bits(v), bits(fs.logsumexp(x)))
    np.testing.assert_array_equal(s.astype(np.float32), np.ones(4, np.float32))
    sc = fs.logsumexp(x, axis=None)
    assert isinstance(sc, ml_dtypes.bfloat16)
    out = np.empty(4, BF16)
    assert fs.logsumexp(x, out=out) is out
    check_lse_values(out, r.lse)
    # b=: sums in float64 (§2.7); a bfloat16 b keeps bfloat16, a float64 b promotes
    b = rng.uniform(0.5, 2.0, (4, 30))
    bb = b.astype(BF16)
    want = scipy.special.logsumexp(x.astype(np.float64), axis=-1, b=bb.astype(np.float64))
    y = fs.logsumexp(x, b=bb)
    assert y.dtype == BF16
    np.testing.assert_array_equal(bits(y), bits(round_bf16(want.astype(LD))), err_msg="b=")
    assert fs.logsumexp(x, b=b).dtype == np.float64
    assert fs.logsumexp(x, b=np.ones(30, np.int32)).dtype == np.float64
    e = fs.logsumexp(np.empty((3, 0), BF16), return_sign=True)
    assert e[0].dtype == BF16 and np.isneginf(e[0].astype(np.float32)).all()


def test_empty_and_0d(isa):
    assert fs.softmax(np.empty((3, 0), BF16)).shape == (3, 0)
    assert fs.softmax(np.empty((0, 5), BF16)).dtype == BF16
    y = fs.softmax(np.array(2.5, BF16), axis=None)
    assert y.dtype == BF16 and y.shape == () and float(y) == 1.0


def test_out_dtype_errors(rng, isa):
    x = bf16_values(rng, (2, 8))
    for wrong in (np.float16, np.float32):
        with pytest.raises(TypeError, match="out has dtype"):
            fs.softmax(x, out=np.empty((2, 8), wrong))
    with pytest.raises(TypeError, match="out has dtype bfloat16"):
        fs.softmax(x.astype(np.float16), out=np.empty((2, 8), BF16))
    with pytest.raises(TypeError, match="out has dtype bfloat16"):
        fs.logsumexp(x.astype(np.float32), out=np.empty(2, BF16))


def test_errors_unchanged(rng, isa):
    """bfloat16 joins the softmax family, top_k and sample only; every other rule stands."""
    x = bf16_values(rng, (2, 8))
    labels = np.zeros(2, np.int64)
    with pytest.raises(TypeError, match="logits has unsupported dtype bfloat16"):
        fs.sparse_softmax_cross_entropy_with_logits(labels, x)
    with pytest.raises(TypeError, match="logits has unsupported dtype bfloat16"):
        fs.softmax_cross_entropy_with_logits(np.ones((2, 8)), x)
    with pytest.raises(TypeError, match="unsupported dtype bfloat16"):
        fs.softmax_backward(x, x)
    with pytest.raises(TypeError, match="dtype must be"):
        fs.softmax(x, dtype=np.complex64)
    with pytest.raises(TypeError, match="x has unsupported dtype complex"):
        fs.softmax(np.ones(3, np.complex64))
    with pytest.raises(TypeError, match="x has unsupported dtype"):
        fs.softmax(np.zeros(3, "V2"))  # a two-byte void is not bfloat16
    with pytest.raises(ValueError, match="temperature"):
        fs.softmax(x, temperature=0.0)
    with pytest.raises(fs._api.AxisError):
        fs.softmax(x, axis=2)
    with pytest.raises(ValueError, match="where"):
        fs.softmax(x, where=np.ones(3, bool))


# ----------------------------------------------------------------------------- top_k
@pytest.mark.parametrize("n", [1, 17, 65, 1000])
@pytest.mark.parametrize("largest", [True, False])
def test_top_k(n, largest, rng, isa):
    x = bf16_values(rng, (4, n))
    x[1, :: max(1, n // 3)] = x[1, 0]  # ties
    if n > 3:
        x[2, 2] = np.nan
        x[3, 1] = -np.inf
    k = min(n, 5)
    r = fs.top_k(x, k, largest=largest)
    r32 = fs.top_k(x.astype(np.float32), k, largest=largest)  # the same order (exact widening)
    assert r.values.dtype == BF16 and r.indices.dtype == np.int64
    np.testing.assert_array_equal(r.indices, r32.indices)
    np.testing.assert_array_equal(bits(r.values), bits(np.take_along_axis(x, r.indices, -1)))
    ra = fs.top_k(x.T, k, axis=0, largest=largest)  # strided rows
    np.testing.assert_array_equal(ra.indices, r.indices.T)
    np.testing.assert_array_equal(bits(ra.values), bits(r.values.T))


@pytest.mark.parametrize("transform", ["softmax", "log_softmax"])
def test_top_k_transform(transform, rng, isa):
    x = bf16_values(rng, (5, 3000))
    x[3] = -np.inf
    x[4, 9] = np.nan
    r = fs.top_k(x, 6, transform=transform)
    assert r.values.dtype == BF16
    np.testing.assert_array_equal(r.indices, fs.top_k(x, 6).indices)
    ref = Ref(x.astype(np.float32), -1)
    full = ref.sm if transform == "softmax" else ref.lsm
    want = np.take_along_axis(full, r.indices, -1)
    sub = Ref.__new__(Ref)  # the reference restricted to the selected entries
    sub.sm = sub.lsm = want
    sub.masked = np.zeros(want.shape, bool)
    sub.poisoned = np.isnan(want).astype(bool)
    sub.hard0 = np.take_along_axis(ref.hard0, r.indices, -1)
    (check_softmax if transform == "softmax" else check_log_softmax)(r.values, sub)


@pytest.mark.parametrize("largest", [True, False])
@pytest.mark.parametrize("transform", ["softmax", "log_softmax"])
def test_top_k_transform_layouts(transform, largest, rng, isa):
    """transform= on strided rows (gathered into float32), axis 0 and 1 of a 3-D array,
    long rows (merged blocks), threads: the float64 reference of the float32-converted
    input, rounded to bfloat16 (§11.2); the values are bfloat16, the indices those of the
    float32 values (their order is the same: the widening is exact)."""
    base = bf16_values(rng, (6, 40, 50))
    cases = [(base, 1), (base, 0), (base[:, ::-2, :], 1), (base.transpose(2, 0, 1), -1),
             (bf16_values(rng, (2, (1 << 17) + 333), scale=3.0), -1)]
    for x, axis in cases:
        k = 4
        got = {}
        for th in (1, 2):
            with fs.threads(th):
                got[th] = fs.top_k(x, k, axis, largest=largest, transform=transform)
        r = got[1]
        np.testing.assert_array_equal(bits(r.values), bits(got[2].values))
        xf = x.astype(np.float32)
        want_idx = np.take(np.argsort(-xf if largest else xf, axis=axis, kind="stable"),
                           np.arange(k), axis=axis)
        np.testing.assert_array_equal(r.indices, want_idx)
        assert r.values.dtype == BF16
        ref = Ref(xf, axis)
        full = ref.sm if transform == "softmax" else ref.lsm
        want = np.take_along_axis(full, r.indices, axis)
        with np.errstate(invalid="ignore"):
            near = ulps_apart(r.values, round_bf16(want)) <= 1
            floor = (np.abs(want) < LD(1e-30)) & (
                np.abs(r.values.astype(np.float32).astype(LD) - want) <= LD(1e-30))
        bad = ~(near | floor)
        if bad.any():
            fail(f"top_k {transform} (axis {axis}) more than 1 ULP from the correctly "
                 "rounded value", r.values, want, bad)


# ---------------------------------------------------------------------------- sample
def bf16_logits(rng, shape, scale=2.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32).astype(BF16)


def raw_logprob_ok(got, x32, tokens):
    """float32 logprobs within 4 ULP of max(1, |r|) of the float64 log_softmax (§12.3)."""
    want = scipy.special.log_softmax(x32.astype(np.float64), axis=-1)
    want = np.take_along_axis(want, tokens[..., None], -1)[..., 0]
    return np.abs(got.astype(np.float64) - want) <= 4 * 2.0**-23 * np.maximum(1, np.abs(want))


@pytest.mark.parametrize("setting", SETTINGS,
                         ids=lambda s: ",".join(f"{a}={b}" for a, b in s.items()) or "plain")
def test_sample_tokens_for_given_u(setting, isa):
    """bfloat16 logits are sampled from their float32 values (§2.3, §12.1): tokens and
    processed logprobs against the float64 sorting reference of x.astype(float32)."""
    rng = np.random.default_rng(4)
    x = bf16_logits(rng, (24, 3000))
    x[1, 100:140] = (x[1].astype(np.float32).max() + 1).astype(BF16)  # a plateau of maxima
    x[2, ::3] = 0.5  # many ties (bfloat16 makes more of them everywhere)
    x32 = x.astype(np.float32)
    u = rng.random(24)
    T, k, p, mp = (setting.get("T", 1.0), setting.get("k", 0), setting.get("p", 1.0),
                   setting.get("minp", 0.0))
    r = fs.sample(x, u=u, temperature=T, top_k=k, top_p=p, min_p=mp, logprobs="processed")
    assert r.tokens.dtype == np.int64 and r.logprobs.dtype == np.float32
    for i in range(24):
        keep, e = ref_kept(x32[i], T, k, p, mp)
        tok, c = ref_token(e, u[i])
        assert keep[r.tokens[i]], "a token outside the kept set"
        if not near_boundary(c, u[i]):
            assert r.tokens[i] == tok, (i, r.tokens[i], tok)
            want = np.log(e[tok] / e.sum())
            assert abs(r.logprobs[i] - want) <= 4 * 2.0**-23 * max(1, abs(want)) + 1e-6


def test_sample_raw_logprobs_layouts_threads(rng, isa):
    """Raw logprobs (float32) with temperature, where=, strided and 3-D logits, per-row
    seeds: a row's token depends on its own row only (threads, batch position)."""
    x = bf16_logits(rng, (8, 5000), scale=3.0)
    w = rng.random((8, 5000)) < 0.5
    seeds = rng.integers(0, 2**63, 8).astype(np.uint64)
    for xv, wv in ((x, w), (x[:, ::-1], w[:, ::-1]), (np.asfortranarray(x), w)):
        got = {}
        for th in (1, 2):
            with fs.threads(th):
                got[th] = fs.sample(xv, temperature=0.6, where=wv, top_p=0.9, seed=seeds)
        r = got[1]
        np.testing.assert_array_equal(r.tokens, got[2].tokens)
        assert r.logprobs.tobytes() == got[2].logprobs.tobytes()
        assert r.logprobs.dtype == np.float32
        assert wv[np.arange(8), r.tokens].all()
        assert raw_logprob_ok(r.logprobs, xv.astype(np.float32), r.tokens).all()
        perm = rng.permutation(8)
        c = fs.sample(xv[perm], temperature=0.6, where=wv[perm], top_p=0.9, seed=seeds[perm])
        np.testing.assert_array_equal(c.tokens, r.tokens[perm])
    # long rows (more than one block) and a 3-D batch, raw logprobs with top_k
    y = bf16_logits(rng, (2, 3, (1 << 17) + 100))
    r = fs.sample(y, top_k=50, seed=11)
    assert r.tokens.shape == (2, 3) and r.logprobs.dtype == np.float32
    assert raw_logprob_ok(r.logprobs, y.astype(np.float32), r.tokens).all()
    y32 = y.astype(np.float32)
    kth = -np.sort(-y32, axis=-1)[..., 49]
    assert (np.take_along_axis(y32, r.tokens[..., None], -1)[..., 0] >= kth).all()


def test_sample_greedy_top_logprobs_invalid(isa):
    x = np.array([[1.0, 3.0, 3.0, 2.0, -1.0], [0.0, -1.0, 5.0, 5.0, 0.25],
                  [1.0, np.nan, 0.0, 0.0, 0.0], [0.0, np.inf, 0.0, 0.0, 0.0]],
                 np.float32).astype(BF16)
    r = fs.sample(x, temperature=0.0, top_logprobs=3)
    np.testing.assert_array_equal(r.tokens, [1, 2, -1, -1])  # lowest index on ties
    assert r.logprobs.dtype == np.float32
    assert raw_logprob_ok(r.logprobs[:2], x[:2].astype(np.float32), r.tokens[:2]).all()
    assert np.isnan(r.logprobs[2:]).all()
    # the raw distribution's best n: float32 log-probabilities, ties by the lower index
    assert r.top_logprobs.dtype == np.float32 and r.top_tokens.dtype == np.int64
    np.testing.assert_array_equal(r.top_tokens[:2], [[1, 2, 3], [2, 3, 4]])
    want = scipy.special.log_softmax(x[:2].astype(np.float64), axis=-1)
    want = np.take_along_axis(want, r.top_tokens[:2], -1)
    assert (np.abs(r.top_logprobs[:2] - want) <= 4 * 2.0**-23 * np.maximum(1, np.abs(want))).all()
    assert np.isnan(r.top_logprobs[2:]).all()
    np.testing.assert_array_equal(fs.sample(x, temperature=0.0, logprobs="processed").logprobs[:2],
                                  [0.0, 0.0])
    # a longer row: top_logprobs against the reference, chosen token's logprob among them
    rng = np.random.default_rng(12)
    y = bf16_logits(rng, (3, 4000), scale=3.0)
    s = fs.sample(y, temperature=0.0, top_logprobs=5)
    y32 = y.astype(np.float32)
    order = np.argsort(-y32, axis=-1, kind="stable")[:, :5]
    np.testing.assert_array_equal(s.top_tokens, order)
    want = np.take_along_axis(scipy.special.log_softmax(y32.astype(np.float64), axis=-1), order, -1)
    assert (np.abs(s.top_logprobs - want) <= 4 * 2.0**-23 * np.maximum(1, np.abs(want))).all()
    np.testing.assert_array_equal(s.tokens, order[:, 0])


def test_sample_seeded_chi_square(isa):
    v = np.array([0.0, 1.0, 2.0, 3.0, 2.5, -1.0, 0.5, 1.5], np.float32).astype(BF16)
    n = 120_000
    for setting in (dict(), dict(top_k=4, top_p=0.8)):
        toks = fs.sample(np.broadcast_to(v, (n, v.size)), seed=2024, logprobs=None,
                         **setting).tokens
        keep, e = ref_kept(v.astype(np.float32), 1.0, setting.get("top_k", 0),
                           setting.get("top_p", 1.0))
        counts = np.bincount(toks, minlength=v.size)
        assert counts[~keep].sum() == 0
        assert scipy.stats.chisquare(counts[keep], e[keep] / e.sum() * n).pvalue > 1e-4


# ------------------------------------------------------------- ml_dtypes is optional
def test_not_a_runtime_dependency():
    """Importing fastsoftmax does not import ml_dtypes; importing it later is enough."""
    code = (
        "import sys, numpy as np, fastsoftmax as fs\n"
        "assert 'ml_dtypes' not in sys.modules\n"
        "assert fs._api._bf16 is None\n"
        "import ml_dtypes\n"
        "x = np.array([[1.0, 2.0, 3.0]], ml_dtypes.bfloat16)\n"
        "y = fs.softmax(x)\n"
        "assert y.dtype == x.dtype and fs._api._bf16 == x.dtype\n"
        "assert fs.softmax(x).tobytes() == y.tobytes()\n"  # now through the fast path
        "print('ok')\n"
    )
    p = run_python(code)
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr[-3000:]
    # loaded before fastsoftmax: recognized at import
    p = run_python("import ml_dtypes, fastsoftmax as fs\nassert fs._api._bf16 is not None\n")
    assert p.returncode == 0, p.stderr[-3000:]
