"""Any strides, byte order, alignment, read-only, zero strides; vector-edge lengths."""

import functools

import numpy as np
import pytest

import fastsoftmax as fs
from _ref import (
    FLOATS,
    Ref,
    check_func,
    check_log_softmax,
    check_logsumexp,
    check_softmax,
    random_values,
)

pytestmark = pytest.mark.usefixtures("isa")


def make_layout(v, layout):
    """An array with the logical values ``v`` (C-contiguous) in the given memory layout."""
    if layout == "C":
        return np.ascontiguousarray(v)
    if layout == "F":
        a = np.asfortranarray(v)
        assert v.ndim < 2 or a.flags.f_contiguous
        return a
    if layout == "transposed":
        return np.ascontiguousarray(v.T).T
    if layout == "stepped_last":  # [..., ::2]
        big = np.zeros(v.shape[:-1] + (2 * v.shape[-1] + 1,), v.dtype)
        big[..., 1::2] = v
        return big[..., 1::2]
    if layout == "stepped_first":  # [::3]
        big = np.zeros((3 * v.shape[0],) + v.shape[1:], v.dtype)
        big[::3] = v
        return big[::3]
    if layout == "stepped_both":
        big = np.zeros(tuple(3 * s for s in v.shape), v.dtype)
        sl = tuple(slice(None, None, 3) for _ in v.shape)
        big[sl] = v
        return big[sl]
    if layout == "negative":
        sl = tuple(slice(None, None, -1) for _ in v.shape)
        return np.ascontiguousarray(v[sl])[sl]
    if layout == "negative_last":
        return np.ascontiguousarray(v[..., ::-1])[..., ::-1]
    if layout == "byteswapped":
        a = v.astype(v.dtype.newbyteorder())
        assert not a.dtype.isnative
        return a
    if layout == "misaligned":
        buf = np.zeros(v.nbytes + v.itemsize, np.uint8)
        a = np.ndarray(v.shape, v.dtype, buffer=buf, offset=1)
        a[...] = v
        assert v.itemsize == 1 or v.size == 0 or not a.flags.aligned
        return a
    if layout == "misaligned_stepped":
        buf = np.zeros(2 * v.nbytes + v.itemsize, np.uint8)
        shape = v.shape[:-1] + (2 * v.shape[-1],)
        a = np.ndarray(shape, v.dtype, buffer=buf, offset=1)[..., ::2]
        a[...] = v
        return a
    if layout == "frombuffer":
        raw = np.zeros(v.nbytes + 1, np.uint8)
        raw[1:] = np.frombuffer(np.ascontiguousarray(v).tobytes(), np.uint8)
        return np.frombuffer(raw.tobytes(), v.dtype, offset=1).reshape(v.shape)  # read-only
    if layout == "readonly":
        a = v.copy()
        a.flags.writeable = False
        return a
    raise ValueError(layout)


LAYOUTS = ["C", "F", "transposed", "stepped_last", "stepped_first", "stepped_both", "negative",
           "negative_last", "byteswapped", "misaligned", "misaligned_stepped", "frombuffer",
           "readonly"]


def _call_check(name, x, axis, values):
    snapshot = np.array(x, copy=True)
    y = getattr(fs, name)(x, axis=axis)
    check_func(name, y, values, axis)
    np.testing.assert_array_equal(x, snapshot)  # input untouched
    return y


@pytest.mark.aarch64
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("axis", [-1, 0, None], ids=str)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_layouts_2d(func_name, layout, axis, dtype, rng):
    v = random_values(rng, (6, 37), dtype)
    x = make_layout(v, layout)
    _call_check(func_name, x, axis, v)


@pytest.mark.aarch64
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("axis", [1, -2, (0, 2), (1, 2)], ids=str)
@pytest.mark.parametrize("layout", ["C", "F", "transposed", "stepped_last", "stepped_both",
                                    "negative", "byteswapped", "misaligned"])
def test_layouts_3d(func_name, layout, axis, dtype, rng):
    v = random_values(rng, (4, 19, 5), dtype)
    x = make_layout(v, layout)
    _call_check(func_name, x, axis, v)


@pytest.mark.parametrize("dtype", FLOATS)
def test_3d_middle_axis_transposed_views(func_name, dtype, rng):
    v = random_values(rng, (5, 33, 7), dtype)
    for perm in [(0, 1, 2), (2, 1, 0), (1, 0, 2), (0, 2, 1)]:
        # store in permuted order, view back to the logical shape
        inv = np.argsort(perm)
        x = np.ascontiguousarray(v.transpose(perm)).transpose(inv)
        np.testing.assert_array_equal(x, v)
        _call_check(func_name, x, 1, v)


@pytest.mark.aarch64
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("axis", [-1, 0], ids=str)
def test_zero_stride_broadcast(func_name, axis, dtype, rng):
    row = random_values(rng, (1, 29), dtype)
    x = np.broadcast_to(row, (7, 29))  # stride 0 on axis 0
    assert x.strides[0] == 0
    _call_check(func_name, x, axis, np.array(x))
    col = random_values(rng, (7, 1), dtype)
    x = np.broadcast_to(col, (7, 29))  # stride 0 on the last axis
    assert x.strides[1] == 0
    y = _call_check(func_name, x, axis, np.array(x))
    if func_name == "softmax" and axis == -1:
        # a constant row: every entry 1/n
        np.testing.assert_allclose(y.astype(np.float64), 1 / 29, rtol=2e-3 if dtype == np.float16
                                   else 1e-6)


def test_broadcast_scalar_row(func_name):
    x = np.broadcast_to(np.float32(1.25), (3, 100))
    _call_check(func_name, x, -1, np.array(x))
    _call_check(func_name, x, None, np.array(x))


def test_byteswapped_result_native(func_name, rng):
    v = rng.standard_normal((3, 17))
    x = v.astype(">f8" if np.little_endian else "<f8")
    y = getattr(fs, func_name)(x)
    assert y.dtype.isnative and y.dtype == np.float64
    check_func(func_name, y, v)


# --------------------------------------------------------------- vector-edge lengths
LENGTHS = [0, 1, 7, 8, 9, 15, 16, 17, 31, 33, 127, 129, 1000]


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("n", LENGTHS)
def test_lengths_rows(func_name, n, dtype, rng):
    v = random_values(rng, (3, n), dtype)
    _call_check(func_name, v, -1, v)
    _call_check(func_name, v[0], -1, v[0])  # 1-D


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("width", [37, 5, 1, 16, 2])
@pytest.mark.parametrize("n", LENGTHS)
def test_lengths_panels_axis0(func_name, n, width, dtype, rng):
    v = random_values(rng, (n, width), dtype)
    _call_check(func_name, v, 0, v)


@pytest.mark.aarch64
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("n", [0, 1, 7, 9, 17, 33, 129])
@pytest.mark.parametrize("layout", ["stepped_last", "F", "negative", "misaligned",
                                    "byteswapped"])
def test_lengths_strided(func_name, n, layout, dtype, rng):
    v = random_values(rng, (4, n), dtype)
    x = make_layout(v, layout)
    _call_check(func_name, x, -1, v)
    _call_check(func_name, x, 0, v)


@pytest.mark.parametrize("dtype", FLOATS)
def test_many_rows_each_length(func_name, dtype, rng):
    # a batch large enough to run in parallel, in both orientations
    v = random_values(rng, (2000, 67), dtype)
    _call_check(func_name, v, -1, v)
    _call_check(func_name, v.T, 0, v.T)
    _call_check(func_name, np.ascontiguousarray(v.T), 0, v.T)


@functools.lru_cache(maxsize=None)
def _long_case(kind, dtype):
    """Inputs and exact references, shared by every ISA and function (long double is slow)."""
    rng = np.random.default_rng(99)
    n = 300_001  # > 2**17: one row is split into blocks
    if kind == "row":
        v = random_values(rng, (n,), dtype, scale=3.0)
        axis = -1
    elif kind == "rows2":
        v = random_values(rng, (2, n), dtype, scale=3.0)
        axis = -1
    elif kind == "panel":
        v = random_values(rng, (n, 3), dtype, scale=3.0)
        axis = 0
    else:
        v = random_values(rng, (n, 3), dtype, scale=3.0)[::-1, ::2]
        axis = 0
    return v, axis, Ref(v, axis)


def _check_cached(name, kind, dtype):
    v, axis, ref = _long_case(kind, dtype)
    y = getattr(fs, name)(v, axis=axis)
    {"softmax": lambda: check_softmax(y, ref, dtype),
     "log_softmax": lambda: check_log_softmax(y, ref, dtype),
     "logsumexp": lambda: check_logsumexp(y, ref, dtype)}[name]()


@pytest.mark.parametrize("dtype", FLOATS)
def test_long_row_blocking(func_name, dtype):
    _check_cached(func_name, "row", np.dtype(dtype))
    _check_cached(func_name, "rows2", np.dtype(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_long_column_panels(func_name, dtype):
    _check_cached(func_name, "panel", np.dtype(dtype))
    _check_cached(func_name, "panel_strided", np.dtype(dtype))


@pytest.mark.aarch64
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("step", [2, 3, 4, 5])
def test_small_element_steps_on_the_reduced_axis(func_name, step, dtype, rng):
    # x[:, ::step]: rows gathered with a compile-time stride (2-4, vectorized, with a
    # prefetch of the span ahead) or the generic loop (5), at lengths around its
    # 64-element steps; the last row's prefetch runs past the array
    for n in (1, 3, 63, 64, 65, 130, 1000):
        v = random_values(rng, (3, n), dtype)
        big = random_values(rng, (3, n * step), dtype)
        big[:, ::step] = v
        _call_check(func_name, big[:, ::step], -1, v)
        _call_check(func_name, big[:, 1::step], -1, np.array(big[:, 1::step]))
