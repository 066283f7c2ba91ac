"""top_k (docs/contract.md §11) against a sorting NumPy reference.

The reference orders a row by (NaN first for largest / last for smallest, then the
value, then the index) with np.lexsort, so ties, plateaus, -0.0 == 0.0 and NaN are
decided independently of the kernel. Values must be x's own elements bit for bit;
transform= values are checked against SciPy's float64 softmax / log_softmax at the
selected indices, within docs/contract.md §5's bounds.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special

import fastsoftmax as fs

pytestmark = pytest.mark.usefixtures("isa")

EPS = {np.float16: 2.0**-10, np.float32: 2.0**-23, np.float64: 2.0**-52}


def ref_order(row: np.ndarray, largest: bool) -> np.ndarray:
    """Indices of the row in top_k order (stable, NaN above +inf, -0.0 == 0.0)."""
    idx = np.arange(row.size)
    nan = np.isnan(row)
    v = np.where(nan, 0, row).astype(np.float64)
    if largest:
        return np.lexsort((idx, -v, ~nan))  # NaN first, then descending value, then index
    return np.lexsort((idx, v, nan))  # NaN last


def ref_top_k(x: np.ndarray, k: int, axis: int, largest: bool):
    xm = np.moveaxis(x, axis, -1)
    flat = xm.reshape(-1, xm.shape[-1])
    idx = np.stack([ref_order(r, largest)[:k] for r in flat]) if flat.shape[0] else \
        np.empty((0, k), np.int64)
    idx = idx.reshape(xm.shape[:-1] + (k,))
    vals = np.take_along_axis(xm, idx, -1)
    return np.moveaxis(vals, -1, axis), np.moveaxis(idx, -1, axis)


def assert_top_k(x, k, axis=-1, largest=True):
    r = fs.top_k(x, k, axis, largest=largest)
    assert isinstance(r, fs.TopK)
    rv, ri = ref_top_k(np.asarray(x), k, axis, largest)
    assert r.indices.dtype == np.int64 and r.values.dtype == np.asarray(x).dtype
    np.testing.assert_array_equal(r.indices, ri)
    # x's own elements, bit for bit (NaN payloads and -0.0 included)
    assert r.values.tobytes() == np.ascontiguousarray(rv).tobytes()


def rows(kind: str, n: int, dtype, rng) -> np.ndarray:
    if kind == "normal":
        return rng.standard_normal((3, n)).astype(dtype)
    if kind == "ties":
        return rng.integers(0, 4, (3, n)).astype(dtype)
    if kind == "plateau":
        return np.full((3, n), 1.5, dtype)
    if kind == "ascending":  # every entry beats the running k-th best
        return np.tile(np.arange(n, dtype=np.float64), (3, 1)).astype(dtype)
    if kind == "descending":
        return np.tile(np.arange(n, 0, -1, dtype=np.float64), (3, 1)).astype(dtype)
    if kind == "specials":
        x = rng.standard_normal((3, n)).astype(dtype)
        pick = rng.integers(0, n, (3, max(1, n // 7)))
        vals = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0], dtype)
        for r in range(3):
            x[r, pick[r]] = rng.choice(vals, pick.shape[1])
        return x
    raise AssertionError(kind)


KINDS = ["normal", "ties", "plateau", "ascending", "descending", "specials"]
LENGTHS = [1, 2, 15, 16, 17, 63, 64, 65, 255, 256, 257, 320, 1000, 4099]


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("largest", [True, False])
def test_rows_against_sort(dtype, kind, largest):
    rng = np.random.default_rng(7)
    for n in LENGTHS:
        x = rows(kind, n, dtype, rng)
        for k in sorted({1, 2, 5, 50, 129, n // 2, n - 1, n}):
            if 1 <= k <= n:
                assert_top_k(x, k, -1, largest)


def test_all_nan_and_inf_rows():
    x = np.array([[np.nan] * 70, [np.inf] * 70, [-np.inf] * 70], np.float32)
    x[0, 5] = 1.0
    for largest in (True, False):
        for k in (1, 3, 69, 70):
            assert_top_k(x, k, -1, largest)


@pytest.mark.aarch64
@pytest.mark.parametrize("largest", [True, False])
def test_layouts(largest):
    rng = np.random.default_rng(3)
    base = rng.standard_normal((40, 300)).astype(np.float32)
    cube = rng.standard_normal((4, 333, 5))
    for x, axis in [(base, 0), (base.T, -1), (base[:, ::2], -1), (base[::-1, ::-3], 1),
                    (np.asfortranarray(base), 1), (cube, 1), (cube, 0), (cube, 2),
                    (np.broadcast_to(base[:1], (6, 300)), 1), (base.astype(np.float16)[:, ::2], 1)]:
        for k in (1, 7, 40):
            if k <= x.shape[axis]:
                assert_top_k(x, k, axis, largest)


@pytest.mark.aarch64
def test_long_rows_and_threads():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, (1 << 17) + 5)).astype(np.float32)
    x[1, -1] = 100.0  # the best entry in the last block
    with fs.threads(1):
        a = fs.top_k(x, 50, transform="log_softmax")
        b = fs.top_k(x, 50)
    with fs.threads(2):
        c = fs.top_k(x, 50, transform="log_softmax")
    assert a.values.tobytes() == c.values.tobytes()
    np.testing.assert_array_equal(a.indices, c.indices)
    assert_top_k(x, 50)
    np.testing.assert_array_equal(a.indices, b.indices)
    want = scipy.special.log_softmax(x.astype(np.float64), axis=-1)
    err = np.abs(a.values - np.take_along_axis(want, a.indices, -1))
    assert np.all(err <= 4 * EPS[np.float32] * np.maximum(1, np.abs(a.values)))


def test_batch_invariance():
    # a row's result does not depend on the rows around it or the thread count
    rng = np.random.default_rng(11)
    x = rng.standard_normal((300, 500)).astype(np.float32)
    with fs.threads(2):
        full = fs.top_k(x, 20, transform="softmax")
    for r in (0, 17, 299):
        with fs.threads(1):
            one = fs.top_k(x[r:r + 1], 20, transform="softmax")
        assert one.values.tobytes() == full.values[r:r + 1].tobytes()
        np.testing.assert_array_equal(one.indices, full.indices[r:r + 1])


@pytest.mark.aarch64
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("transform", ["softmax", "log_softmax"])
def test_transform_values(dtype, transform):
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((20, 1000)) * 4).astype(dtype)
    x[3, :] = -np.inf
    x[3, 10] = 0.0  # a row with one finite entry
    x[4, :500] = -np.inf
    r = fs.top_k(x, 30, transform=transform)
    np.testing.assert_array_equal(r.indices, fs.top_k(x, 30).indices)
    ref = getattr(scipy.special, transform)(x.astype(np.float64), axis=-1)
    want = np.take_along_axis(ref, r.indices, -1)
    eps = EPS[dtype]
    got = r.values.astype(np.float64)
    if transform == "softmax":
        xv = np.take_along_axis(x.astype(np.float64), r.indices, -1)
        zero = np.isneginf(xv)  # exp(-inf - max): exactly 0
        np.testing.assert_array_equal(got[zero], 0.0)
        dist = np.abs(xv[~zero] - x.astype(np.float64).max(-1, keepdims=True).repeat(30, -1)[~zero])
        w = np.abs(want[~zero])
        bound = eps * (4 + dist / 2) * w + (1e-30 if dtype != np.float64 else 1e-290)
        if dtype == np.float16:
            bound = eps * w + 2.0**-24  # 1 ULP of float16
        assert np.all(np.abs(got[~zero] - want[~zero]) <= bound)
    else:
        finite = np.isfinite(want)
        tol = 4 * eps * np.maximum(1, np.abs(want[finite]))
        if dtype == np.float16:
            tol = eps * np.maximum(1, np.abs(want[finite]))
        assert np.all(np.abs(got[finite] - want[finite]) <= tol)
        np.testing.assert_array_equal(got[~finite], want[~finite])


def test_transform_special_rows():
    x = np.array([[1.0, np.nan, 2.0], [1.0, np.inf, 2.0], [-np.inf] * 3, [0.0, 1.0, 2.0]],
                 np.float32)
    sm = fs.top_k(x, 2, transform="softmax").values
    lsm = fs.top_k(x, 2, transform="log_softmax").values
    assert np.isnan(sm[:2]).all() and np.isnan(lsm[:2]).all()
    np.testing.assert_array_equal(sm[2], [0.0, 0.0])
    np.testing.assert_array_equal(lsm[2], [-np.inf, -np.inf])
    np.testing.assert_allclose(sm[3], scipy.special.softmax([0.0, 1.0, 2.0])[[2, 1]], rtol=1e-6)


def test_int_bool_inputs_and_k0():
    x = np.array([[3, 1, 4, 1, 5, 9, 2, 6]], np.int32)
    r = fs.top_k(x, 3)
    assert r.values.dtype == np.float64
    np.testing.assert_array_equal(r.values, [[9.0, 6.0, 5.0]])
    np.testing.assert_array_equal(r.indices, [[5, 7, 4]])
    np.testing.assert_array_equal(fs.top_k(x, 2, largest=False).indices, [[1, 3]])
    np.testing.assert_array_equal(fs.top_k(np.array([True, False, True]), 2).indices, [0, 2])
    e = fs.top_k(np.ones((4, 5), np.float32), 0, axis=0)
    assert e.values.shape == (0, 5) and e.indices.shape == (0, 5)
    assert e.values.dtype == np.float32 and e.indices.dtype == np.int64
    assert fs.top_k([[1.0, 2.0]], 1).indices.tolist() == [[1]]


@pytest.mark.aarch64
def test_errors():
    x = np.ones((3, 4), np.float32)
    with pytest.raises(ValueError, match="k = 5 is larger"):
        fs.top_k(x, 5)
    with pytest.raises(ValueError, match="k must be >= 0"):
        fs.top_k(x, -1)
    for bad in (True, 1.0, "2", None):
        with pytest.raises(TypeError, match="k must be an int"):
            fs.top_k(x, bad)
    for bad in ((0,), None):
        with pytest.raises(TypeError, match="axis must be an int"):
            fs.top_k(x, 1, axis=bad)
    with pytest.raises(np.exceptions.AxisError):
        fs.top_k(x, 1, axis=2)
    with pytest.raises(np.exceptions.AxisError):
        fs.top_k(np.float32(1.0), 1)
    with pytest.raises(TypeError, match="largest must be a bool"):
        fs.top_k(x, 1, largest=1)
    with pytest.raises(ValueError, match="transform must be"):
        fs.top_k(x, 1, transform="exp")
    with pytest.raises(TypeError, match="x has unsupported dtype complex"):
        fs.top_k(x.astype(np.complex64), 1)
    assert fs.top_k(x, np.int64(2)).indices.shape == (3, 2)
