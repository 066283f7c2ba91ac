"""docs/contract.md §1, §2: dtypes, axis forms, input kinds, temperature, dtype=."""

import inspect

import numpy as np
import pytest
import scipy.special

import fastsoftmax as fs
from _ref import (
    FLOATS,
    Ref,
    assert_log_softmax_close,
    assert_logsumexp_close,
    assert_softmax_close,
    check_func,
    random_values,
)

pytestmark = pytest.mark.usefixtures("isa")

AXIS_CASES = [
    ((4, 9), -1),
    ((4, 9), 1),
    ((4, 9), 0),
    ((4, 9), -2),
    ((3, 5, 7), 1),
    ((3, 5, 7), -3),
    ((3, 5, 7), (0, 2)),
    ((3, 5, 7), (2, 0)),
    ((3, 5, 7), (-1, -2)),
    ((3, 5, 7), (0, 1, 2)),
    ((3, 5, 7), ()),
    ((3, 5, 7), None),
    ((2, 3, 4, 5), (1, 3)),
    ((17,), None),
    ((17,), 0),
]


@pytest.mark.aarch64
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape,axis", AXIS_CASES, ids=str)
def test_axis_forms(func_name, dtype, shape, axis, rng):
    x = random_values(rng, shape, dtype)
    y = getattr(fs, func_name)(x, axis=axis)
    check_func(func_name, y, x, axis)


@pytest.mark.aarch64
@pytest.mark.parametrize("shape,axis", [((3, 5, 7), (0, 2)), ((4, 6), None), ((2, 3, 4), (1, 2))],
                         ids=str)
def test_tuple_axis_matches_scipy(shape, axis, rng):
    x = rng.standard_normal(shape)
    np.testing.assert_allclose(fs.softmax(x, axis=axis), scipy.special.softmax(x, axis=axis),
                               rtol=1e-13, atol=1e-300)
    np.testing.assert_allclose(fs.log_softmax(x, axis=axis),
                               scipy.special.log_softmax(x, axis=axis), rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(fs.logsumexp(x, axis=axis),
                               scipy.special.logsumexp(x, axis=axis), rtol=1e-13, atol=1e-14)


def test_default_axis_is_last(func_name, rng):
    x = rng.standard_normal((3, 4, 5))
    y = getattr(fs, func_name)(x)
    check_func(func_name, y, x, -1)


@pytest.mark.aarch64
@pytest.mark.parametrize("dtype", FLOATS)
def test_zero_d_axis_none(dtype):
    x = np.array(3.5, dtype=dtype)
    y = fs.softmax(x, axis=None)
    assert np.asarray(y).shape == () and np.asarray(y).dtype == dtype
    assert float(y) == 1.0
    ly = fs.log_softmax(x, axis=None)
    assert np.asarray(ly).shape == () and np.asarray(ly).dtype == dtype
    assert float(ly) == 0.0
    r = fs.logsumexp(x, axis=None)
    assert isinstance(r, np.floating) and r.dtype == dtype
    assert float(r) == 3.5


@pytest.mark.parametrize("axis", [0, -1, 1])
def test_zero_d_int_axis_is_axis_error(func_name, axis):
    with pytest.raises(np.exceptions.AxisError):
        getattr(fs, func_name)(np.float64(2.0), axis=axis)


def test_python_scalar_default_axis_is_axis_error(func_name):
    # default axis=-1 on a 0-d input: AxisError, as NumPy
    with pytest.raises(np.exceptions.AxisError):
        getattr(fs, func_name)(2.0)


@pytest.mark.parametrize("dtype", FLOATS)
def test_same_dtype_out(func_name, dtype, rng):
    x = random_values(rng, (5, 33), dtype)
    y = getattr(fs, func_name)(x)
    assert y.dtype == dtype
    check_func(func_name, y, x)


@pytest.mark.aarch64
@pytest.mark.parametrize("in_dtype", [np.bool_, np.int8, np.uint8, np.int16, np.uint16,
                                      np.int32, np.uint32, np.int64, np.uint64])
def test_bool_and_int_compute_in_float64(func_name, in_dtype, rng):
    if in_dtype is np.bool_:
        x = rng.integers(0, 2, (4, 19)).astype(bool)
    else:
        info = np.iinfo(in_dtype)
        lo, hi = max(int(info.min), -40), min(int(info.max), 40)
        x = rng.integers(lo, hi + 1, (4, 19)).astype(in_dtype)
    y = getattr(fs, func_name)(x)
    assert y.dtype == np.float64
    check_func(func_name, y, x)


def test_large_int64_values(func_name):
    x = np.array([[2**60, 2**60 + 1024, -(2**62)], [0, 1, 2]], dtype=np.int64)
    y = getattr(fs, func_name)(x)
    assert y.dtype == np.float64
    check_func(func_name, y, x)


def test_list_and_nested_list_inputs(func_name):
    y = getattr(fs, func_name)([[1.0, 2.0, 3.0], [0.5, -1.0, 10.0]])
    assert y.dtype == np.float64
    check_func(func_name, y, np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 10.0]]))
    y = getattr(fs, func_name)([1, 2, 3])  # Python ints: float64
    assert y.dtype == np.float64
    check_func(func_name, y, np.array([1, 2, 3]))


class WithArray:
    def __init__(self, a):
        self._a = a

    def __array__(self, dtype=None, copy=None):
        return self._a if dtype is None else self._a.astype(dtype)


def test_object_with_array_interface(func_name, rng):
    a = rng.standard_normal((3, 10)).astype(np.float32)
    y = getattr(fs, func_name)(WithArray(a))
    assert y.dtype == np.float32
    check_func(func_name, y, a)


# ------------------------------------------------------------------------- dtype=
DTYPE_ARG_CASES = [
    (np.float16, np.float32),
    (np.float16, np.float64),
    (np.float32, np.float64),
    (np.float64, np.float32),
    (np.float32, np.float16),
    (np.float64, np.float16),
    (np.int32, np.float32),
    (np.int64, np.float16),
    (np.bool_, np.float32),
    (np.float32, np.float32),
]


@pytest.mark.aarch64
@pytest.mark.parametrize("in_dtype,out_dtype", DTYPE_ARG_CASES, ids=str)
def test_dtype_argument(func_name, in_dtype, out_dtype, rng):
    if np.dtype(in_dtype).kind == "f":
        x = random_values(rng, (4, 21), in_dtype, spread=False)
    elif in_dtype is np.bool_:
        x = rng.integers(0, 2, (4, 21)).astype(bool)
    else:
        x = rng.integers(-20, 20, (4, 21)).astype(in_dtype)
    y = getattr(fs, func_name)(x, dtype=out_dtype)
    assert np.asarray(y).dtype == out_dtype
    # the input is cast to dtype first, then computed in it
    check_func(func_name, y, x, -1, dtype=out_dtype)


@pytest.mark.parametrize("spelling", ["float32", np.float32, np.dtype("float32"), "f4"])
def test_dtype_argument_spellings(spelling, rng):
    x = rng.standard_normal((2, 9))
    y = fs.softmax(x, dtype=spelling)
    assert y.dtype == np.float32
    assert_softmax_close(y, x, -1, np.float32)


def test_float16_widened_by_the_kernels_as_numpy(func_name, rng):
    # dtype=float32 on a C-contiguous float16 input widens it with the ISA's conversions
    # (_core._widen_f16): every float16 bit pattern gives NumPy's float32 (NaNs stay
    # NaN), and the results are those of the NumPy-cast input, bit for bit
    every = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    wide = np.empty(every.shape, np.float32)
    fs._core._widen_f16(every, wide)
    ref = every.astype(np.float32)
    nan = np.isnan(ref)
    np.testing.assert_array_equal(wide[~nan].view(np.uint32), ref[~nan].view(np.uint32))
    assert np.all(np.isnan(wide[nan]))
    f = getattr(fs, func_name)
    x = random_values(rng, (5, 300_001 // 5 + 3), np.float16)  # past one kBlock of elements
    for xv in (x, x[:, ::2], np.asfortranarray(x)):
        want = np.asarray(f(xv.astype(np.float32)))
        got = np.asarray(f(xv, dtype=np.float32))
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


def test_float16_in_float32_out_is_more_accurate_than_float16(rng):
    x = random_values(rng, (8, 40), np.float16, spread=False)
    y32 = fs.softmax(x, dtype=np.float32)
    # the float32 bound on the float16 input values: far tighter than a float16 result
    assert_softmax_close(y32, x.astype(np.float32), -1, np.float32)


# --------------------------------------------------------------------- temperature
TEMPS = {
    np.float16: [0.5, 2.0, 0.25],  # exact in float16 and float32 alike
    np.float32: [0.75, 1.5, 3.0, 0.3125, 1e-3, 1e3],
    np.float64: [0.75, 1.5, 3.0, 0.1, 1e-3, 1e3],
}


@pytest.mark.aarch64
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("ti", range(3))
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_temperature(name, dtype, ti, rng):
    temps = TEMPS[dtype]
    for t in temps[ti::3]:
        x = random_values(rng, (5, 37), dtype, scale=3.0, spread=False)
        y = getattr(fs, name)(x, temperature=t)
        check_func(name, y, x, -1, temperature=t)
        y0 = getattr(fs, name)(x, axis=0, temperature=t)
        check_func(name, y0, x, 0, temperature=t)


def test_temperature_one_is_default(rng):
    x = rng.standard_normal((3, 50)).astype(np.float32)
    np.testing.assert_array_equal(fs.softmax(x, temperature=1.0), fs.softmax(x))
    np.testing.assert_array_equal(fs.log_softmax(x, temperature=1.0), fs.log_softmax(x))


def test_temperature_limits(rng):
    x = rng.standard_normal((2, 10))
    # very high T: nearly uniform; very low T: nearly one-hot (argmax)
    y = fs.softmax(x, temperature=1e12)
    assert_softmax_close(y, x, -1, temperature=1e12)
    np.testing.assert_allclose(y, 0.1, rtol=1e-9)
    y = fs.softmax(x, temperature=1e-6)
    assert_softmax_close(y, x, -1, temperature=1e-6)
    np.testing.assert_array_equal(y.argmax(-1), x.argmax(-1))
    np.testing.assert_allclose(y.max(-1), 1.0)


def test_temperature_int_input(rng):
    x = rng.integers(-10, 10, (3, 12))
    y = fs.softmax(x, temperature=2.5)
    assert y.dtype == np.float64
    assert_softmax_close(y, x, -1, temperature=2.5)


def test_temperature_with_dtype(rng):
    x = random_values(rng, (3, 12), np.float64, spread=False)
    y = fs.softmax(x, temperature=0.75, dtype=np.float32)
    assert y.dtype == np.float32
    assert_softmax_close(y, x, -1, np.float32, temperature=0.75)


# -------------------------------------------------------------- scipy as a second witness
@pytest.mark.aarch64
@pytest.mark.parametrize("axis", [-1, 0, None, (0, 1)], ids=str)
def test_matches_scipy_float64(axis, rng):
    x = rng.standard_normal((6, 23)) * 10
    np.testing.assert_allclose(fs.softmax(x, axis=axis), scipy.special.softmax(x, axis=axis),
                               rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(fs.log_softmax(x, axis=axis),
                               scipy.special.log_softmax(x, axis=axis), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(fs.logsumexp(x, axis=axis),
                               scipy.special.logsumexp(x, axis=axis), rtol=1e-12, atol=1e-12)


def test_log_softmax_dominant_entry_loses_no_precision():
    # docs/contract.md §5: m + log1p(sum of the others), so a dominant entry keeps full precision
    for dtype in (np.float32, np.float64):
        x = np.array([0.0, -30.0, -40.0, -25.0], dtype=dtype)
        ly = fs.log_softmax(x)
        assert_log_softmax_close(ly, x)
        r = fs.logsumexp(x)
        assert_logsumexp_close(r, x)
        ref = Ref(x)
        # the result for the dominant entry is about -1.4e-11: tiny but not 0 in float64
        if dtype == np.float64:
            assert abs(float(ly[0]) - float(ref.lsm[0])) <= 1e-24
            assert abs(float(r) - float(ref.lse)) <= 1e-24


def test_every_public_function_has_a_signature():
    # help(), IDEs and inspect read these; the pybind11 builtins isa, get_num_threads and
    # available_isas had none (issue #18): they are Python functions now
    for name in fs.__all__:
        inspect.signature(getattr(fs, name))
    for name, ret in (("isa", "str"), ("get_num_threads", "int"), ("available_isas", "list[str]")):
        sig = inspect.signature(getattr(fs, name))
        assert not sig.parameters and sig.return_annotation == ret, (name, sig)
        assert getattr(fs, name).__doc__
    assert list(inspect.signature(fs.softmax).parameters) == [
        "x", "axis", "temperature", "where", "dtype", "out"]
    assert fs.isa() in fs.available_isas() and "scalar" in fs.available_isas()
    assert isinstance(fs.get_num_threads(), int) and fs.get_num_threads() >= 1
