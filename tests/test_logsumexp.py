"""logsumexp: keepdims, b=, return_sign= (as scipy.special.logsumexp), scalar results."""

import numpy as np
import pytest
import scipy.special

import fastsoftmax as fs
from _ref import FLOATS, LD, MANT, Ref, assert_bits_equal, check_log_values, check_logsumexp
from _ref import random_values

pytestmark = pytest.mark.usefixtures("isa")


@pytest.mark.aarch64
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape,axis", [((4, 7), -1), ((4, 7), 0), ((3, 4, 5), 1),
                                        ((3, 4, 5), (0, 2)), ((3, 4, 5), None), ((6,), 0),
                                        ((6,), None)], ids=str)
def test_keepdims(dtype, shape, axis, rng):
    x = random_values(rng, shape, dtype)
    y = fs.logsumexp(x, axis=axis, keepdims=True)
    ref = Ref(x, axis)
    assert isinstance(y, np.ndarray)
    assert y.shape == np.sum(x, axis=axis, keepdims=True).shape
    check_logsumexp(y, ref, np.dtype(dtype), keepdims=True)
    y2 = fs.logsumexp(x, axis=axis)
    assert np.asarray(y2).shape == np.sum(x, axis=axis).shape
    np.testing.assert_array_equal(np.asarray(y2), y.reshape(np.asarray(y2).shape))


@pytest.mark.parametrize("dtype", FLOATS)
def test_scalar_result_type(dtype, rng):
    x = random_values(rng, (3, 5), dtype)
    r = fs.logsumexp(x, axis=None)
    assert isinstance(r, np.floating) and not isinstance(r, np.ndarray)
    assert type(r) is np.dtype(dtype).type and r.dtype == dtype
    check_logsumexp(r, Ref(x, None), np.dtype(dtype))
    r1 = fs.logsumexp(x[0])  # 1-D, default axis: also a scalar
    assert isinstance(r1, np.floating) and r1.dtype == dtype
    r2 = fs.logsumexp(x, axis=(0, 1))
    assert isinstance(r2, np.floating) and r2.dtype == dtype
    r3 = fs.logsumexp([1, 2, 3])
    assert isinstance(r3, np.float64)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_keepdims_and_out_take_either_path_with_the_same_bits(dtype, axis, rng):
    # An int axis with keepdims=True/False or a matching out= goes straight to the C++
    # core; a 1-tuple axis or keepdims=1 through the Python layer: the same bits, and
    # out= is what comes back
    x = random_values(rng, (5, 6, 7), dtype)
    kept = fs.logsumexp(x, axis=(axis,), keepdims=True)
    check_logsumexp(kept, Ref(x, axis), np.dtype(dtype), keepdims=True)
    for keep in (True, False, 1, 0):
        want = kept if keep else kept.squeeze(axis)
        assert_bits_equal(fs.logsumexp(x, axis=axis, keepdims=keep), want, f"keepdims={keep!r}")
        out = np.full(want.shape, 7, dtype)
        assert fs.logsumexp(x, axis=axis, keepdims=keep, out=out) is out
        assert_bits_equal(out, want, f"keepdims={keep!r}, out=")
        wrong = np.empty(want.shape + (1,), dtype)
        with pytest.raises(ValueError, match="out has shape"):
            fs.logsumexp(x, axis=axis, keepdims=keep, out=wrong)


def test_scalar_result_matches_scipy_type(rng):
    x = rng.standard_normal(10).astype(np.float32)
    r, s = fs.logsumexp(x), scipy.special.logsumexp(x)
    assert type(r) is type(s)


# ----------------------------------------------------------------------------- b
def _ref_b(x, b, axis):
    """Exact (long double) sum(b * exp(x)) as (log|s|, sign(s))."""
    ref = Ref(x, axis, b=np.broadcast_to(b, np.broadcast_shapes(np.shape(x), np.shape(b))))
    return ref.lse, ref.sign


def _cond_tol(x, b, axis, dtype):
    """4 ULP of max(1,|r|) times the condition number of the signed sum (>= 1)."""
    xl = np.asarray(x).astype(LD)
    bl = np.broadcast_to(np.asarray(b).astype(LD), xl.shape)
    m = np.max(xl, axis=axis, keepdims=True)
    e = np.exp(xl - m)
    cond = np.sum(np.abs(bl) * e, axis=axis) / np.abs(np.sum(bl * e, axis=axis))
    return np.maximum(cond, 1)


@pytest.mark.aarch64
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("axis", [-1, 0])
def test_b_positive_and_zeros(dtype, axis, rng):
    x = random_values(rng, (5, 23), dtype)
    b = rng.uniform(0.1, 3.0, (5, 23)).astype(dtype)
    b[:, ::4] = 0  # zeros: those entries take no part
    y = fs.logsumexp(x, axis=axis, b=b)
    r, _ = _ref_b(x, b, axis)
    check_log_values(y, r, dtype, "logsumexp b>=0")
    np.testing.assert_allclose(y, scipy.special.logsumexp(x, axis=axis, b=b),
                               rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6)
    # a zero b at a huge x leaves the maximum out of the sum
    x2 = x.copy()
    x2[2, 5] = 1e4 if dtype == np.float32 else 1e200
    b2 = b.copy()
    b2[2, 5] = 0
    y2 = fs.logsumexp(x2, axis=-1, b=b2)
    r2, _ = _ref_b(x2, b2, -1)
    check_log_values(y2, r2, dtype, "logsumexp b zero at max")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_b_broadcasting(dtype, rng):
    x = random_values(rng, (6, 11), dtype)
    for b in (rng.uniform(0.5, 2, 11).astype(dtype),  # (n,)
              rng.uniform(0.5, 2, (6, 1)).astype(dtype),  # (m, 1)
              np.asarray(2.0, dtype),  # scalar
              rng.uniform(0.5, 2, (1, 11)).astype(dtype)):
        for axis in (-1, 0, None):
            y = fs.logsumexp(x, axis=axis, b=b)
            r, _ = _ref_b(x, b, axis)
            check_log_values(np.asarray(y), r, dtype, f"b shape {np.shape(b)}")
            np.testing.assert_allclose(y, scipy.special.logsumexp(x, axis=axis, b=b),
                                       rtol=1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_b_scalar_equals_shift(dtype, rng):
    x = random_values(rng, (4, 30), dtype)
    y = fs.logsumexp(x, b=np.asarray(4.0, dtype))
    r = Ref(x, -1).lse + np.log(LD(4))
    check_log_values(y, r, dtype, "b=4")


@pytest.mark.aarch64
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_b_negative_return_sign(dtype, rng):
    x = random_values(rng, (8, 13), dtype, spread=False)
    b = rng.uniform(-2, 2, (8, 13)).astype(dtype)
    b[0] = -np.abs(b[0]) - 0.1  # all negative: sign -1, no cancellation
    b[1] = np.abs(b[1]) + 0.1  # all positive
    y, s = fs.logsumexp(x, axis=-1, b=b, return_sign=True)
    ys, ss = scipy.special.logsumexp(x, axis=-1, b=b, return_sign=True)
    r, rs = _ref_b(x, b, -1)
    assert y.dtype == dtype and s.dtype == dtype
    np.testing.assert_array_equal(s, ss)
    np.testing.assert_array_equal(s, rs.astype(dtype))
    assert s[0] == -1 and s[1] == 1
    # accuracy scaled by the cancellation in the signed sum
    cond = _cond_tol(x, b, -1, dtype)
    tol = 4 * cond * np.ldexp(1.0, np.frexp(np.maximum(1, np.abs(r.astype(np.float64))))[1]
                              - 1 - MANT[np.dtype(dtype)])
    assert np.all(np.abs(y.astype(LD) - r) <= tol), (y, r, tol)
    check_log_values(y[:2], r[:2], dtype, "no-cancellation rows")


@pytest.mark.aarch64
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_b_long_rows_strided_and_masked(dtype, rng):
    # the weighted sums go in chunks of 2048 through the float64 kernels (contiguous x
    # and b by direct loops, anything else by the general walk): long signed rows,
    # strided x, a mask and a broadcast b agree with the exact result
    x = random_values(rng, (3, 5000), dtype, spread=False)
    b = rng.uniform(-0.5, 2, (3, 5000)).astype(dtype)
    w = rng.random((3, 5000)) < 0.8
    for xv, bv, kw in ((x, b, {}), (x[:, ::-1], b[:, ::-1], {}), (x, b, {"where": w}),
                       (x, b[0], {})):
        y, sg = fs.logsumexp(xv, axis=-1, b=bv, return_sign=True, **kw)
        bb = np.broadcast_to(bv, xv.shape)
        if "where" in kw:
            bb = np.where(w, bb, 0)
        r, rs = _ref_b(xv, bb, -1)
        np.testing.assert_array_equal(sg, rs.astype(dtype))
        cond = _cond_tol(xv, bb, -1, dtype)
        tol = 4 * cond * np.ldexp(1.0, np.frexp(np.maximum(1, np.abs(r.astype(np.float64))))[1]
                                  - 1 - MANT[np.dtype(dtype)])
        assert np.all(np.abs(y.astype(LD) - r) <= tol), (sorted(kw), y, r, tol)


def test_b_cancelling_to_a_subnormal_sum():
    # the two largest terms cancel exactly; what is left, exp(-720), is below the
    # vector exp's flush to zero: the row is redone with libm's exp, as SciPy
    x = np.array([[0.0, 0.0, -720.0], [0.0, 0.0, -700.0]])
    b = np.array([[1.0, -1.0, 1.0], [1.0, -1.0, -2.0]])
    y, s = fs.logsumexp(x, axis=-1, b=b, return_sign=True)
    ys, ss = scipy.special.logsumexp(x, axis=-1, b=b, return_sign=True)
    np.testing.assert_allclose(y, ys, rtol=1e-15)
    np.testing.assert_array_equal(s, ss)
    assert s[1] == -1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_return_sign_without_b(dtype, rng):
    x = random_values(rng, (3, 9), dtype)
    y, s = fs.logsumexp(x, return_sign=True)
    assert y.dtype == dtype and s.dtype == dtype
    np.testing.assert_array_equal(s, np.ones(3, dtype))
    check_logsumexp(y, Ref(x, -1), np.dtype(dtype))
    y0, s0 = fs.logsumexp(x, axis=None, return_sign=True)
    assert isinstance(y0, np.floating) and y0.dtype == dtype and s0 == 1


@pytest.mark.aarch64
@pytest.mark.parametrize("dtype", FLOATS)
def test_return_sign_without_b_specials_and_layouts(dtype, rng):
    # without b the terms are >= 0: the values are the kernels' (the bits of the call
    # without return_sign) and each sign follows SciPy: NaN with a NaN, 0 where the sum
    # is 0 (all -inf, fully masked), else 1 (+inf included)
    x = random_values(rng, (7, 40), dtype)
    x[1] = -np.inf
    x[2, 5] = np.nan
    x[3, 7] = np.inf
    x[4, ::2] = -np.inf
    w = np.ones(x.shape, bool)
    w[5] = False
    for axis, kw in ((-1, {}), (0, {}), (-1, {"where": w}), (None, {})):
        y, s = fs.logsumexp(x, axis=axis, return_sign=True, **kw)
        assert_bits_equal(y, fs.logsumexp(x, axis=axis, **kw), f"axis={axis} {sorted(kw)}")
        y64 = np.asarray(y, np.float64)
        want = np.where(np.isnan(y64), np.nan, np.where(y64 == -np.inf, 0.0, 1.0))
        np.testing.assert_array_equal(np.asarray(s, np.float64), want)
        if not kw:
            ys, ss = scipy.special.logsumexp(x.astype(np.float64), axis=axis, return_sign=True)
            np.testing.assert_array_equal(np.asarray(s, np.float64), ss)
            assert np.asarray(s).dtype == dtype


def test_return_sign_zero_sum_and_empty_rows():
    x = np.array([[1.0, 2.0], [-np.inf, -np.inf], [3.0, 3.0]])
    b = np.array([[0.0, 0.0], [1.0, 1.0], [1.0, -1.0]])
    y, s = fs.logsumexp(x, axis=-1, b=b, return_sign=True)
    ys, ss = scipy.special.logsumexp(x, axis=-1, b=b, return_sign=True)
    np.testing.assert_array_equal(y, ys)  # -inf for each: the sums are exactly 0
    np.testing.assert_array_equal(s, ss)
    assert np.all(y == -np.inf)


def test_negative_sum_without_return_sign_is_nan():
    x = np.array([1.0, 2.0])
    b = np.array([-1.0, 0.1])  # -e + 0.1 e^2 < 0
    y = fs.logsumexp(x, b=b)
    assert np.isnan(y)
    assert np.isnan(scipy.special.logsumexp(x, b=b))


def test_b_with_where(rng):
    x = rng.standard_normal((4, 12))
    b = rng.uniform(0.5, 2, (4, 12))
    w = rng.random((4, 12)) < 0.6
    y = fs.logsumexp(x, b=b, where=w)
    r = Ref(x, -1, where=w, b=b).lse
    check_log_values(y, r, np.float64, "b with where")


def test_b_int_and_list(rng):
    x = rng.standard_normal((3, 5))
    y = fs.logsumexp(x, b=[1, 2, 3, 4, 5])
    r, _ = _ref_b(x, np.array([1, 2, 3, 4, 5.0]), -1)
    check_log_values(y, r, np.float64, "list b")


@pytest.mark.aarch64
@pytest.mark.parametrize("dtype", FLOATS)
def test_logsumexp_matches_scipy(dtype, rng):
    x = random_values(rng, (7, 50), dtype, spread=False)
    for axis in (-1, 0, None):
        y = fs.logsumexp(x, axis=axis)
        ys = scipy.special.logsumexp(x.astype(np.float64), axis=axis)
        np.testing.assert_allclose(np.asarray(y, np.float64), ys,
                                   rtol={np.float16: 4e-3, np.float32: 1e-6,
                                         np.float64: 1e-14}[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dominant_entry(dtype):
    # logsumexp([0, -50, ...]) is 0 + tiny: computed via log1p, so not rounded to 0 badly
    x = np.array([[0.0, -20.0, -30.0], [5.0, 5.0 - 40, 5.0 - 60]], dtype)
    y = fs.logsumexp(x)
    check_logsumexp(y, Ref(x, -1), np.dtype(dtype))
