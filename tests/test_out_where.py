"""docs/contract.md §2.4, §2.6: any strides, identity, in place, overlap, masking."""

import numpy as np
import pytest

import fastsoftmax as fs
from _ref import FLOATS, Ref, assert_bits_equal, check_func, check_logsumexp, check_softmax
from _ref import random_values

pytestmark = pytest.mark.usefixtures("isa")

FUNCS = {"softmax": fs.softmax, "log_softmax": fs.log_softmax, "logsumexp": fs.logsumexp}


def _reduced(shape, axis):
    axes = [a % len(shape) for a in (axis if isinstance(axis, tuple) else (axis,))]
    return tuple(s for i, s in enumerate(shape) if i not in axes)


# ---------------------------------------------------------------------------- out
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("axis", [-1, 0])
def test_out_contiguous_returns_out(func_name, axis, dtype, rng):
    x = random_values(rng, (7, 45), dtype)
    oshape = x.shape if func_name != "logsumexp" else _reduced(x.shape, axis)
    out = np.full(oshape, 99, dtype)
    y = FUNCS[func_name](x, axis=axis, out=out)
    assert y is out
    check_func(func_name, out, x, axis)


@pytest.mark.aarch64
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("axis", [-1, 0])
@pytest.mark.parametrize("view", ["stepped", "transposed", "negative", "stepped_neg"])
def test_out_strided_views(func_name, view, axis, dtype, rng):
    x = random_values(rng, (6, 33), dtype)
    oshape = x.shape if func_name != "logsumexp" else _reduced(x.shape, axis)
    sentinel = dtype(123.0)
    if view == "stepped":
        big = np.full(tuple(3 * s + 2 for s in oshape), sentinel, dtype)
        sl = tuple(slice(1, 1 + 3 * s, 3) for s in oshape)
    elif view == "transposed":
        big = np.full(oshape[::-1], sentinel, dtype)
        sl = None
    elif view == "negative":
        big = np.full(oshape, sentinel, dtype)
        sl = tuple(slice(None, None, -1) for _ in oshape)
    else:
        big = np.full(tuple(2 * s + 1 for s in oshape), sentinel, dtype)
        sl = tuple(slice(2 * s - 1, None, -2) if s else slice(0, 0) for s in oshape)
    out = big.T if sl is None else big[sl]
    assert out.shape == oshape and np.shares_memory(out, big)
    touched = np.zeros(big.shape, bool)
    (touched.T if sl is None else touched[sl])[...] = True
    y = FUNCS[func_name](x, axis=axis, out=out)
    assert y is out
    check_func(func_name, out, x, axis)
    # nothing outside the view was written
    assert np.all(big[~touched] == sentinel)


@pytest.mark.aarch64
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("axis", [-1, 0, 1])
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_out_is_x_in_place(name, axis, dtype, rng):
    x = random_values(rng, (5, 17, 9), dtype)
    x0 = x.copy()
    y = FUNCS[name](x, axis=axis, out=x)
    assert y is x
    check_func(name, x, x0, axis)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_out_is_x_in_place_strided(name, rng):
    buf = random_values(rng, (8, 66), np.float32)
    x = buf[::2, ::-2]
    x0 = x.copy()
    outside = buf[1::2].copy()
    y = FUNCS[name](x, out=x)
    assert y is x
    check_func(name, x, x0, -1)
    np.testing.assert_array_equal(buf[1::2], outside)


@pytest.mark.aarch64
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("along", ["reduced_axis", "other_axis"])
@pytest.mark.parametrize("axis", [-1, 0])
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_out_partial_overlap(name, axis, along, dtype, rng):
    # x and out are the same buffer shifted by one element
    for n in (5, 33, 300):
        last = (along == "reduced_axis") == (axis == -1)  # shift along the last axis
        if last:
            buf = random_values(rng, (n + 1, n + 1), dtype)[: (7 if axis == -1 else n)]
            x, out = buf[:, :-1], buf[:, 1:]
        else:
            buf = random_values(rng, (n + 1, n + 1), dtype)[:, : (7 if axis == 0 else n)]
            x, out = buf[:-1], buf[1:]
        assert np.shares_memory(x, out)
        x0 = x.copy()
        y = FUNCS[name](x, axis=axis, out=out)
        assert y is out
        check_func(name, out, x0, axis)


@pytest.mark.parametrize("axis", [-1, 0])
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_out_partial_overlap_reversed(name, axis, rng):
    # out starts before x in memory
    buf = random_values(rng, (9, 41), np.float64)
    x, out = buf[:, 1:], buf[:, :-1]
    x0 = x.copy()
    assert FUNCS[name](x, axis=axis, out=out) is out
    check_func(name, out, x0, axis)
    buf = random_values(rng, (9, 41), np.float32)
    x, out = buf[1:], buf[:-1]
    x0 = x.copy()
    assert FUNCS[name](x, axis=axis, out=out) is out
    check_func(name, out, x0, axis)
    # a transposed alias: out = x.T of a square buffer
    buf = random_values(rng, (40, 40), np.float32)
    x0 = buf.copy()
    assert FUNCS[name](buf, axis=axis, out=buf.T) is not None
    check_func(name, buf.T, x0, axis)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("axis", [-1, 0])
def test_logsumexp_out_overlapping_input(axis, dtype, rng):
    x = random_values(rng, (12, 12), dtype)
    x0 = x.copy()
    out = x[:, 3] if axis == -1 else x[3]
    y = fs.logsumexp(x, axis=axis, out=out)
    assert y is out
    check_logsumexp(out, Ref(x0, axis), np.dtype(dtype))


@pytest.mark.parametrize("axis", [-1, 0])
def test_logsumexp_out_overlapping_b(axis, rng):
    # out= inside b=: the weights are read while the results are written, so the core
    # must compute into a temporary (as for an out= inside x)
    x = rng.standard_normal((6, 7))
    b = rng.random((6, 7)) + 0.5
    for out in ((b[::-1, 0], b[:, 3]) if axis == -1 else (b[-1, :], b[0, ::-1])):
        b0 = b.copy()
        expected = fs.logsumexp(x, axis=axis, b=b0)
        assert fs.logsumexp(x, axis=axis, b=b, out=out) is out
        assert_bits_equal(out, expected)


def test_logsumexp_out_keepdims_and_scalar(rng):
    x = rng.standard_normal((4, 6))
    out = np.empty((4, 1))
    assert fs.logsumexp(x, axis=1, keepdims=True, out=out) is out
    check_logsumexp(out, Ref(x, 1), np.dtype(np.float64), keepdims=True)
    out0 = np.empty(())
    assert fs.logsumexp(x, axis=None, out=out0) is out0
    np.testing.assert_allclose(out0, Ref(x, None).lse.astype(np.float64), rtol=1e-15)


def test_out_with_dtype_argument(func_name, rng):
    x = rng.standard_normal((3, 20))
    oshape = (3, 20) if func_name != "logsumexp" else (3,)
    out = np.empty(oshape, np.float32)
    assert FUNCS[func_name](x, dtype=np.float32, out=out) is out
    check_func(func_name, out, x, -1, dtype=np.float32)


def test_out_misaligned(func_name, rng):
    x = rng.standard_normal((4, 19))
    oshape = (4, 19) if func_name != "logsumexp" else (4,)
    raw = np.zeros(int(np.prod(oshape)) * 8 + 8, np.uint8)
    out = np.ndarray(oshape, np.float64, buffer=raw, offset=1)
    assert not out.flags.aligned
    assert FUNCS[func_name](x, out=out) is out
    check_func(func_name, out, x, -1)
    assert np.all(raw[:1] == 0)


# -------------------------------------------------------------------------- where
@pytest.mark.aarch64
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("axis", [-1, 0])
def test_where_masks(func_name, axis, dtype, rng):
    for n in (1, 8, 17, 33, 129):
        x = random_values(rng, (6, n), dtype)
        w = rng.random((6, n)) < 0.6
        y = FUNCS[func_name](x, axis=axis, where=w)
        check_func(func_name, y, x, axis, where=w)
        if func_name == "softmax":
            assert np.all(y[~w] == 0)
        elif func_name == "log_softmax":
            assert np.all(y[~w] == -np.inf)


@pytest.mark.parametrize("dtype", FLOATS)
def test_where_masked_nan_and_inf_do_not_poison(func_name, dtype, rng):
    x = random_values(rng, (4, 20), dtype)
    w = np.ones((4, 20), bool)
    x[:, 3] = np.nan
    x[:, 11] = np.inf
    x[:, 19] = np.nan
    w[:, [3, 11, 19]] = False
    for axis, xx, ww in ((-1, x, w), (0, np.ascontiguousarray(x.T), np.ascontiguousarray(w.T))):
        y = FUNCS[func_name](xx, axis=axis, where=ww)
        assert not np.any(np.isnan(y))
        check_func(func_name, y, xx, axis, where=ww)


@pytest.mark.aarch64
@pytest.mark.parametrize("dtype", FLOATS)
def test_where_fully_masked_row(func_name, dtype, rng):
    x = random_values(rng, (5, 9), dtype)
    x[2, 4] = np.nan  # masked: no effect
    w = np.ones((5, 9), bool)
    w[2] = False
    w[4] = False
    y = FUNCS[func_name](x, where=w)
    check_func(func_name, y, x, -1, where=w)
    if func_name == "softmax":
        assert np.all(y[[2, 4]] == 0)
    elif func_name == "log_softmax":
        assert np.all(y[[2, 4]] == -np.inf)
    else:
        assert y[2] == -np.inf and y[4] == -np.inf
    yall = FUNCS[func_name](x, axis=None, where=np.zeros_like(w))
    if func_name == "logsumexp":
        assert yall == -np.inf
    else:
        assert np.all(yall == (0 if func_name == "softmax" else -np.inf))


def test_where_broadcast(func_name, rng):
    x = rng.standard_normal((6, 13)).astype(np.float32)
    w_row = (np.arange(13) % 3 != 0)[None, :]  # (1, n)
    y = FUNCS[func_name](x, where=w_row)
    check_func(func_name, y, x, -1, where=np.broadcast_to(w_row, x.shape))
    w_col = (np.arange(6) % 2 == 0)[:, None]  # (m, 1): odd rows fully masked
    y = FUNCS[func_name](x, where=w_col)
    check_func(func_name, y, x, -1, where=np.broadcast_to(w_col, x.shape))
    w_1d = np.arange(13) < 7  # (n,)
    y = FUNCS[func_name](x, axis=0, where=w_1d)
    check_func(func_name, y, x, 0, where=np.broadcast_to(w_1d, x.shape))
    for scalar in (True, np.True_):
        y = FUNCS[func_name](x, where=scalar)
        check_func(func_name, y, x, -1)
    y = FUNCS[func_name](x, where=np.False_)
    check_func(func_name, y, x, -1, where=np.zeros(x.shape, bool))


def test_where_strided_and_tuple_axis(func_name, rng):
    x = rng.standard_normal((4, 10, 6))
    w = (rng.random((8, 10, 12)) < 0.7)[::2, :, ::2]
    for axis in (1, (0, 2), None):
        y = FUNCS[func_name](x, axis=axis, where=w)
        check_func(func_name, y, x, axis, where=w)


@pytest.mark.aarch64
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_where_with_temperature(name, rng):
    x = rng.standard_normal((3, 30)).astype(np.float32)
    w = rng.random((3, 30)) < 0.5
    y = FUNCS[name](x, where=w, temperature=0.75)
    check_func(name, y, x, -1, where=w, temperature=0.75)


def test_where_with_out(func_name, rng):
    x = rng.standard_normal((4, 16))
    w = rng.random((4, 16)) < 0.5
    oshape = x.shape if func_name != "logsumexp" else (4,)
    out = np.full(oshape, 5.0)
    assert FUNCS[func_name](x, where=w, out=out) is out
    check_func(func_name, out, x, -1, where=w)


def test_where_active_nan_row(rng):
    # an unmasked nan poisons its row; masked entries of that row read 0 or nan
    x = rng.standard_normal((2, 8))
    x[0, 1] = np.nan
    w = np.ones((2, 8), bool)
    w[0, 5] = False
    y = fs.softmax(x, where=w)
    check_softmax(y, Ref(x, -1, w), np.dtype(np.float64), allow_poisoned_masked=True)
    assert np.all(np.isnan(np.delete(y[0], 5)))


# ----------------------------------------------------------------- gathered rows
# A temperature or where= sends rows through the driver's gather: a contiguous row of
# x (and of the mask) is gathered by the ISA's vector kernel (x / T, -inf where
# masked), a float16 result narrowed into a contiguous output by another; a strided
# row or output takes the element-by-element walk. Same bits either way.
BLOCK = 1 << 17


def _strided_copy(a):
    """a's values in a view with every other element of a wider array (not contiguous)."""
    wide = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
    view = wide[..., ::2]
    view[...] = a
    return view


@pytest.mark.aarch64
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("name", ["softmax", "log_softmax", "logsumexp"])
def test_gathered_rows_vector_and_walked_agree(name, dtype, rng):
    f = FUNCS[name]
    for n in (1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 33, 100, 1000):
        x = random_values(rng, (3, n), dtype)
        w = rng.random((3, n)) < 0.7
        w[:, 0] = True  # (a fully masked row is its own case)
        for kw in ({"temperature": 0.75}, {"where": w}, {"temperature": 2.0, "where": w}):
            if name == "logsumexp" and "temperature" in kw:
                continue
            y = f(x, **kw)
            check_func(name, y, x, -1, where=kw.get("where"), temperature=kw.get("temperature"))
            walked_kw = dict(kw)
            if "where" in kw:
                walked_kw["where"] = _strided_copy(w)
            assert_bits_equal(np.asarray(f(_strided_copy(x), **walked_kw)), np.asarray(y),
                              f"n={n} {sorted(kw)}: strided x and mask")
            if name != "logsumexp":
                out = _strided_copy(np.zeros_like(x))
                f(x, out=out, **kw)
                assert_bits_equal(out, y, f"n={n} {sorted(kw)}: strided out")


@pytest.mark.aarch64
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_gathered_long_row_blocks(dtype, rng):
    # a row longer than a block is gathered block by block (offsets into x and mask)
    n = BLOCK + 37
    x = random_values(rng, (n,), dtype)
    w = rng.random(n) < 0.9
    for name in ("softmax", "log_softmax"):
        y = FUNCS[name](x, temperature=0.5, where=w)
        check_func(name, y, x, -1, where=w, temperature=0.5)
        ys = FUNCS[name](_strided_copy(x[None])[0], temperature=0.5, where=_strided_copy(w[None])[0])
        assert_bits_equal(ys, y, f"{name}: strided long row")
