"""Hypothesis properties: range, normalisation, shift invariance, the extended reference."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastsoftmax as fs
from _ref import (
    LD,
    Ref,
    check_log_softmax,
    check_log_values,
    check_logsumexp,
    check_softmax,
)

pytestmark = pytest.mark.usefixtures("isa")

DT = {"float16": np.float16, "float32": np.float32, "float64": np.float64}
BOUND = {np.float16: 6e4, np.float32: 1e30, np.float64: 1e300}


def arrays(dtype, max_dims=3, max_side=40, bound=None, allow_special=False):
    bound = float(dtype(BOUND[dtype] if bound is None else bound))
    width = {np.float16: 16, np.float32: 32, np.float64: 64}[dtype]
    elems = st.floats(-bound, bound, width=width, allow_nan=False, allow_infinity=False)
    if allow_special:
        elems = st.one_of(elems, st.sampled_from([np.inf, -np.inf, np.nan]))
    return hnp.arrays(dtype, hnp.array_shapes(min_dims=1, max_dims=max_dims, min_side=1,
                                              max_side=max_side), elements=elems)


@st.composite
def array_and_axis(draw, dtype, **kw):
    x = draw(arrays(dtype, **kw))
    axis = draw(st.one_of(st.integers(-x.ndim, x.ndim - 1), st.none(),
                          st.lists(st.integers(0, x.ndim - 1), min_size=1, max_size=x.ndim,
                                   unique=True).map(tuple)))
    return x, axis


@pytest.mark.aarch64
@pytest.mark.parametrize("dt", list(DT))
@given(data=st.data())
def test_matches_reference(dt, data):
    dtype = DT[dt]
    x, axis = data.draw(array_and_axis(dtype))
    ref = Ref(x, axis)
    check_softmax(fs.softmax(x, axis=axis), ref, dtype)
    check_log_softmax(fs.log_softmax(x, axis=axis), ref, dtype)
    lse = fs.logsumexp(x, axis=axis)
    check_logsumexp(lse, ref, dtype)


@pytest.mark.aarch64
@pytest.mark.parametrize("dt", list(DT))
@given(data=st.data())
def test_special_values_match_reference(dt, data):
    dtype = DT[dt]
    x, axis = data.draw(array_and_axis(dtype, max_side=20, allow_special=True))
    ref = Ref(x, axis)
    check_softmax(fs.softmax(x, axis=axis), ref, dtype)
    check_log_softmax(fs.log_softmax(x, axis=axis), ref, dtype)
    check_logsumexp(fs.logsumexp(x, axis=axis), ref, dtype)


@pytest.mark.parametrize("dt", ["float32", "float64"])
@given(data=st.data())
def test_range_and_sum(dt, data):
    dtype = DT[dt]
    x, axis = data.draw(array_and_axis(dtype, max_dims=2, max_side=300))
    y = fs.softmax(x, axis=axis)
    assert np.all((y >= 0) & (y <= 1))
    s = np.sum(y.astype(np.float64), axis=axis)
    if dtype == np.float32:
        assert np.all(np.abs(s - 1) <= 1e-6), s
    else:
        # the exact sum of the outputs is within the sum of the per-element bounds
        ref = Ref(x, axis)
        eps = LD(2.0**-52)
        bound = np.sum(ref.sm * eps * (16 + ref.dist / 2), axis=axis)
        sl = np.sum(y.astype(LD), axis=axis)
        assert np.all(np.abs(sl - 1) <= bound), (sl, bound)


@given(x=arrays(np.float16, max_dims=2, max_side=60))
def test_range_float16(x):
    y = fs.softmax(x)
    assert np.all((y >= 0) & (y <= 1))


@pytest.mark.parametrize("dt", ["float32", "float64"])
@given(data=st.data())
def test_shift_invariance(dt, data):
    # x holds multiples of 1/64 and c is an integer, so x + c is exact in the dtype and
    # softmax(x + c) has exactly the reference of softmax(x)
    dtype = DT[dt]
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=50))
    k = data.draw(hnp.arrays(np.int64, shape, elements=st.integers(-2**12, 2**12)))
    c = data.draw(st.integers(-2**10, 2**10))
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = (k / 64).astype(dtype)
    xs = (x + dtype(c)).astype(dtype)
    assert np.array_equal(xs.astype(np.float64) - c, x.astype(np.float64))  # exact shift
    ref = Ref(x, axis)
    y, ys = fs.softmax(x, axis=axis), fs.softmax(xs, axis=axis)
    check_softmax(ys, ref, dtype)  # softmax(x + c) is within the bound of exact softmax(x)
    eps = {np.float32: 2.0**-23, np.float64: 2.0**-52}[dtype]
    kk = {np.float32: 4, np.float64: 16}[dtype]
    tol = 2 * eps * (kk + ref.dist.astype(np.float64) / 2) * ref.sm.astype(np.float64)
    assert np.all(np.abs(ys.astype(np.float64) - y) <= np.maximum(tol, 2e-30))
    check_log_softmax(fs.log_softmax(xs, axis=axis), ref, dtype)
    check_log_values(np.asarray(fs.logsumexp(xs, axis=axis)), ref.lse + LD(c), dtype,
                     "logsumexp(x + c)")


@pytest.mark.aarch64
@given(data=st.data())
def test_matches_reference_strided(data):
    x, axis = data.draw(array_and_axis(np.float32, max_dims=3, max_side=30))
    steps = tuple(data.draw(st.sampled_from([1, 2, -1, -3])) for _ in range(x.ndim))
    big_shape = tuple(s * abs(st_) for s, st_ in zip(x.shape, steps))
    big = np.zeros(big_shape, np.float32)
    sl = tuple(slice(None, None, st_) for st_ in steps)
    big[sl][tuple(slice(0, s) for s in x.shape)] = x
    xv = big[sl][tuple(slice(0, s) for s in x.shape)]
    assert np.array_equal(xv, x)
    ref = Ref(x, axis)
    check_softmax(fs.softmax(xv, axis=axis), ref, np.float32)
    check_log_softmax(fs.log_softmax(xv, axis=axis), ref, np.float32)
    check_logsumexp(fs.logsumexp(xv, axis=axis), ref, np.float32)


@pytest.mark.aarch64
@given(data=st.data())
def test_where_property(data):
    x, axis = data.draw(array_and_axis(np.float64, max_dims=2, max_side=40, bound=1e3))
    w = data.draw(hnp.arrays(np.bool_, x.shape))
    ref = Ref(x, axis, where=w)
    check_softmax(fs.softmax(x, axis=axis, where=w), ref, np.float64)
    check_log_softmax(fs.log_softmax(x, axis=axis, where=w), ref, np.float64)
    check_logsumexp(fs.logsumexp(x, axis=axis, where=w), ref, np.float64)
