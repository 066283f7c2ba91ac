"""softmax_backward and log_softmax_backward: the vector-Jacobian products.

References, independent of fastsoftmax: the analytic formulas in long double
(``y * (g - sum(g * y))`` and ``g - exp(y) * sum(g)``), and central finite differences
of ``scipy.special.softmax`` / ``log_softmax`` in float64 (the VJP is
``d/dx sum(g * f(x))``).

Accuracy bound (docs/contract.md §5): absolute error <= 64 eps times the row's scale, the
scale being max(1, max |g|, |sum|) (times max |y| for softmax, whose y is a probability).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special

import fastsoftmax as fs

pytestmark = pytest.mark.usefixtures("isa")

LD = np.longdouble
EPS = {np.dtype(np.float32): 2.0**-23, np.dtype(np.float64): 2.0**-52}


def norm_axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, tuple):
        return tuple(sorted(a % ndim for a in axis))
    return (axis % ndim,)


def ref_softmax_bwd(g, y, axis=-1):
    """(result, per-element scale) in long double."""
    g = np.asarray(g, LD)
    y = np.asarray(y, LD)
    axes = norm_axes(axis, np.broadcast(g, y).ndim)
    with np.errstate(invalid="ignore"):
        s = np.sum(g * y, axis=axes, keepdims=True)
        out = y * (g - s)
        gm = np.max(np.abs(np.broadcast_to(g, out.shape)), axis=axes, keepdims=True)
        ym = np.max(np.abs(np.broadcast_to(y, out.shape)), axis=axes, keepdims=True)
        scale = np.maximum(1, np.maximum(gm, np.abs(s))) * np.maximum(1, ym)
    return out, np.broadcast_to(scale, out.shape)


def ref_log_softmax_bwd(g, y, axis=-1):
    g = np.asarray(g, LD)
    y = np.asarray(y, LD)
    axes = norm_axes(axis, np.broadcast(g, y).ndim)
    with np.errstate(invalid="ignore", over="ignore"):
        s = np.sum(np.broadcast_to(g, np.broadcast(g, y).shape), axis=axes, keepdims=True)
        e = np.exp(y)
        out = g - e * s
        gm = np.max(np.abs(np.broadcast_to(g, out.shape)), axis=axes, keepdims=True)
        scale = np.maximum(1, np.maximum(gm, np.abs(s))) * np.maximum(1, np.broadcast_to(e, out.shape))
    return out, np.broadcast_to(scale, out.shape)


REFS = {"softmax": ref_softmax_bwd, "log_softmax": ref_log_softmax_bwd}
FWD = {"softmax": scipy.special.softmax, "log_softmax": scipy.special.log_softmax}


@pytest.fixture(params=["softmax", "log_softmax"])
def kind(request):
    return request.param


def bwd(kind):
    return fs.softmax_backward if kind == "softmax" else fs.log_softmax_backward


def assert_bound(got, ref, scale, dtype, k=64):
    got = np.asarray(got)
    assert got.shape == ref.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    fin = np.isfinite(ref)
    err = np.abs(got[fin].astype(LD) - ref[fin])
    tol = k * EPS[np.dtype(dtype)] * scale[fin]
    assert not (err > tol).any(), f"worst {float(np.max(err / tol))} x the bound"


def inputs(rng, kind, shape, axis=-1, dtype=np.float64, spread=3.0):
    x = rng.standard_normal(shape) * spread
    y = FWD[kind](x, axis=axis).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    return g, y


# --------------------------------------------------------------------- correctness
@pytest.mark.aarch64
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,axis", [((4, 7), -1), ((4, 7), 0), ((3, 5, 6), 1), ((2, 3, 1000), -1),
                                        ((1,), 0), ((5, 1), -1), ((6, 129), -1)])
def test_matches_formula(rng, kind, dtype, shape, axis):
    g, y = inputs(rng, kind, shape, axis, dtype)
    out = bwd(kind)(g, y, axis)
    assert out.dtype == dtype and out.shape == shape
    ref, scale = REFS[kind](g, y, axis)
    assert_bound(out, ref, scale, dtype)


def test_seed_values():
    y = scipy.special.softmax(np.array([1.0, 2.0, 3.0]))
    g = np.array([1.0, 0.0, 0.0])
    np.testing.assert_allclose(fs.softmax_backward(g, y), y * (g - y[0]), rtol=1e-15)
    ly = np.log(y)
    np.testing.assert_allclose(fs.log_softmax_backward(g, ly), g - y, rtol=1e-15)


@pytest.mark.parametrize("axis", [-1, 0])
def test_finite_differences(rng, kind, axis):
    x = rng.standard_normal((4, 5))
    g = rng.standard_normal((4, 5))
    f = FWD[kind]
    h = 1e-6
    num = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        d = np.zeros_like(x)
        d[idx] = h
        num[idx] = (np.sum(g * f(x + d, axis=axis)) - np.sum(g * f(x - d, axis=axis))) / (2 * h)
    got = bwd(kind)(g, f(x, axis=axis), axis)
    np.testing.assert_allclose(got, num, atol=1e-8)


@pytest.mark.parametrize("axis", [(0, 2), (1, 2), None, (0, 1, 2), ()])
def test_tuple_axes(rng, kind, axis):
    x = rng.standard_normal((3, 4, 5))
    ax = tuple(range(3)) if axis is None else axis
    y = FWD[kind](x, axis=ax) if ax else (np.ones_like(x) if kind == "softmax" else np.zeros_like(x))
    g = rng.standard_normal((3, 4, 5))
    out = bwd(kind)(g, y, axis)
    ref, scale = REFS[kind](g, y, ax if ax else ())
    assert_bound(out, ref, scale, np.float64)


def test_zero_d_with_axis_none(kind):
    out = bwd(kind)(np.float64(2.0), np.float64(1.0 if kind == "softmax" else 0.0), axis=None)
    assert out.shape == () and out == 0.0


def test_broadcast_grad(rng, kind):
    g, y = inputs(rng, kind, (6, 9))
    gb = g[:1]  # (1, 9) broadcast over the rows
    out = bwd(kind)(gb, y)
    ref, scale = REFS[kind](np.broadcast_to(gb, y.shape), y)
    assert_bound(out, ref, scale, np.float64)
    with pytest.raises(ValueError, match="broadcast"):
        bwd(kind)(np.zeros((6, 8)), y)


@pytest.mark.aarch64
def test_special_values(kind):
    y = np.array([[0.5, 0.5, 0.0], [np.nan, 0.5, 0.5]])
    if kind == "log_softmax":
        y = np.array([[np.log(0.5), np.log(0.5), -np.inf], [np.nan, np.log(0.5), np.log(0.5)]])
    g = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    out = bwd(kind)(g, y)
    assert np.isfinite(out[0]).all()
    assert np.isnan(out[1, 0])
    ref, scale = REFS[kind](g[:1], y[:1])
    assert_bound(out[:1], ref, scale, np.float64)


def test_log_softmax_backward_outside_log_domain(rng):
    # y > 0 is no log-probability, but the formula still holds (no table exp there)
    y = np.array([[0.5, 1.0, 90.0], [3.0, -1.0, 0.0]], np.float32)
    g = np.array([[1.0, 2.0, 3.0], [0.5, 0.25, 1.0]], np.float32)
    out = fs.log_softmax_backward(g, y)
    with np.errstate(over="ignore"):
        ref = g - np.exp(y.astype(np.float64)) * g.sum(-1, keepdims=True)
    np.testing.assert_allclose(out[1], ref[1], rtol=1e-6)
    np.testing.assert_allclose(out[0, :2], ref[0, :2], rtol=1e-6)
    assert out[0, 2] == -np.inf


@pytest.mark.aarch64
def test_float16(rng, kind):
    g, y = inputs(rng, kind, (5, 300), dtype=np.float16, spread=2.0)
    out = bwd(kind)(g, y)
    assert out.dtype == np.float16
    ref, scale = REFS[kind](g, y)
    tol = 2.0**-11 * np.abs(ref) + 2.0**-24 + 64 * 2.0**-23 * scale
    assert np.all(np.abs(out.astype(LD) - ref) <= tol)
    np.testing.assert_array_equal(bwd(kind)(np.asfortranarray(g), y), out)


@pytest.mark.aarch64
def test_dtypes(rng, kind):
    g, y = inputs(rng, kind, (3, 4), dtype=np.float32)
    assert bwd(kind)(g, y.astype(np.float64)).dtype == np.float64
    assert bwd(kind)(g.astype(np.int64), y).dtype == np.float64
    with pytest.raises(TypeError, match="grad"):
        bwd(kind)(g.astype(complex), y)
    with pytest.raises(TypeError, match="y"):
        bwd(kind)(g, y.astype(complex))


def test_empty(kind):
    assert bwd(kind)(np.zeros((3, 0)), np.zeros((3, 0))).shape == (3, 0)
    assert bwd(kind)(np.zeros((0, 4)), np.zeros((0, 4)), axis=0).shape == (0, 4)


# ------------------------------------------------------------------------- layouts
def layouts(a):
    yield "C", np.ascontiguousarray(a)
    yield "F", np.asfortranarray(a)
    big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
    big[..., 1::2] = a
    yield "step2", big[..., 1::2]
    yield "negative", np.ascontiguousarray(a[::-1, ::-1])[::-1, ::-1]
    yield "byteswapped", a.astype(a.dtype.newbyteorder())
    buf = np.zeros(a.nbytes + 1, np.uint8)
    m = np.ndarray(a.shape, a.dtype, buffer=buf, offset=1)
    m[...] = a
    yield "misaligned", m


@pytest.mark.aarch64
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("axis", [-1, 0])
def test_layouts(rng, kind, dtype, axis):
    g, y = inputs(rng, kind, (7, 45), axis, dtype)
    base = bwd(kind)(g, y, axis)
    ref, scale = REFS[kind](g, y, axis)
    for (gn, gl), (yn, yl) in zip(layouts(g), layouts(y)):
        out = bwd(kind)(gl, yl, axis)
        assert_bound(out, ref, scale, dtype)
        np.testing.assert_allclose(out, base, rtol=0, atol=64 * EPS[np.dtype(dtype)] * scale.max(),
                                   err_msg=f"{gn}/{yn}")


# ----------------------------------------------------------------------------- out
@pytest.mark.aarch64
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_out(rng, kind, dtype):
    g, y = inputs(rng, kind, (5, 33), dtype=dtype)
    expect = bwd(kind)(g, y)
    o = np.empty_like(g)
    assert bwd(kind)(g, y, out=o) is o
    np.testing.assert_array_equal(o, expect)
    # strided out, Fortran out, byteswapped out
    big = np.zeros((5, 66), dtype)
    r = bwd(kind)(g, y, out=big[:, ::2])
    assert r.base is big
    np.testing.assert_array_equal(big[:, ::2], expect)
    np.testing.assert_array_equal(big[:, 1::2], 0)
    fo = np.asfortranarray(np.empty_like(g))
    np.testing.assert_allclose(bwd(kind)(g, y, out=fo), expect, rtol=0,
                               atol=64 * EPS[np.dtype(dtype)] * 10)
    bo = np.empty(g.shape, np.dtype(dtype).newbyteorder())
    assert bwd(kind)(g, y, out=bo) is bo
    np.testing.assert_array_equal(bo, expect)


def test_out_in_place(rng, kind):
    g, y = inputs(rng, kind, (6, 50))
    expect = bwd(kind)(g, y)
    g2 = g.copy()
    assert bwd(kind)(g2, y, out=g2) is g2
    np.testing.assert_array_equal(g2, expect)
    y2 = y.copy()
    assert bwd(kind)(g, y2, out=y2) is y2
    np.testing.assert_array_equal(y2, expect)


def test_out_partial_overlap(rng, kind):
    g, y = inputs(rng, kind, (4, 20))
    expect = bwd(kind)(g, y)
    buf = np.zeros((4, 21))
    buf[:, 1:] = g
    gv = buf[:, 1:]
    out = buf[:, :-1]  # shifted by one element: overlaps g
    assert bwd(kind)(gv, y, out=out) is out
    np.testing.assert_array_equal(out, expect)


def test_out_errors(kind):
    g = np.zeros((2, 3))
    with pytest.raises(ValueError, match="out has shape"):
        bwd(kind)(g, g, out=np.empty((3, 2)))
    with pytest.raises(TypeError, match="out has dtype"):
        bwd(kind)(g, g, out=np.empty((2, 3), np.float32))
    with pytest.raises(TypeError, match="out has dtype"):
        bwd(kind)(g, g, out=np.empty((2, 3), np.int64))
    ro = np.empty((2, 3))
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        bwd(kind)(g, g, out=ro)
    with pytest.raises(TypeError, match="out must be a numpy.ndarray"):
        bwd(kind)(g, g, out=[[0.0] * 3] * 2)
    with pytest.raises(np.exceptions.AxisError):
        bwd(kind)(g, g, axis=2)


# ---------------------------------------------------------------- determinism, long rows
@pytest.mark.aarch64
@pytest.mark.parametrize("shape", [(64, 3000), (3, 300_007)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_threads_do_not_change_bits(rng, kind, shape, dtype):
    g, y = inputs(rng, kind, shape, dtype=dtype)
    res = []
    for nt in (1, 2, 3):
        with fs.threads(nt):
            res.append((bwd(kind)(g, y), bwd(kind)(np.asfortranarray(g), y)))
    for r in res[1:]:
        np.testing.assert_array_equal(r[0], res[0][0])
        np.testing.assert_array_equal(r[1], res[0][1])


def test_rows_do_not_depend_on_batch(rng, kind):
    g, y = inputs(rng, kind, (30, 333), dtype=np.float32)
    full = bwd(kind)(g, y)
    for i in (0, 11, 29):
        np.testing.assert_array_equal(bwd(kind)(g[i], y[i]), full[i])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_long_rows(rng, kind, dtype):
    g, y = inputs(rng, kind, (2, 300_007), dtype=dtype)
    ref, scale = REFS[kind](g, y)
    assert_bound(bwd(kind)(g, y), ref, scale, dtype)
    assert_bound(bwd(kind)(np.asfortranarray(g), y), ref, scale, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_outputs_streamed_same_bits(rng, kind, dtype):
    # large outputs (>= 8 MiB) use non-temporal stores; odd rows start at every alignment
    n = 70_001
    rows = (16 << 20) // (n * np.dtype(dtype).itemsize) + 2
    g, y = inputs(rng, kind, (rows, n), dtype=dtype)
    full = bwd(kind)(g, y)
    for i in (0, 1, 2, rows - 1):
        np.testing.assert_array_equal(bwd(kind)(g[i], y[i]), full[i])
    g2 = g.copy()
    assert bwd(kind)(g2, y, out=g2) is g2  # in place, streamed
    np.testing.assert_array_equal(g2, full)
    ref, scale = REFS[kind](g[:2], y[:2])
    assert_bound(full[:2], ref, scale, dtype)


_MEM_SCRIPT = r"""
import json, os, resource
import numpy as np
import fastsoftmax as fs

layout, func = LAYOUT, FUNC

def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

rng = np.random.default_rng(0)

def filled(shape):
    a = np.empty(shape, np.float32)
    rng.standard_normal(dtype=np.float32, out=a)
    return a

M, N = 2048, 4096  # 32 MiB of float32 each
if layout == "C":
    g, y, axis = filled((M, N)), filled((M, N)), -1
elif layout == "axis0":
    g, y, axis = filled((M, N)), filled((M, N)), 0
elif layout == "transposed":
    g, y, axis = filled((N, M)).T, filled((N, M)).T, -1
elif layout == "stepped":
    g, y, axis = filled((M, 2 * N))[:, ::2], filled((M, 2 * N))[:, ::2], -1
y *= -1.0 / 8  # log-probability-like values
out = np.zeros(g.shape, np.float32)
f = getattr(fs, func)
f(g[:8], y[:8], axis=axis, out=out[:8])
base = peak()
f(g, y, axis=axis, out=out)
print(json.dumps({"extra": peak() - base}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["C", "axis0", "transposed", "stepped"])
@pytest.mark.parametrize("func", ["softmax_backward", "log_softmax_backward"])
def test_no_input_sized_temporary(layout, func):
    import json

    from _ref import run_python

    p = run_python(_MEM_SCRIPT.replace("LAYOUT, FUNC", f"{layout!r}, {func!r}"))
    assert p.returncode == 0, p.stderr
    extra = json.loads(p.stdout.strip().splitlines()[-1])["extra"]
    assert extra < 16 << 20, f"{extra / 2**20:.1f} MiB extra"


@pytest.mark.aarch64
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 15, 16, 17, 33, 127, 129, 2049, 4097])
def test_accuracy_bound_lengths(rng, kind, dtype, n):
    g, y = inputs(rng, kind, (5, n), dtype=dtype, spread=10.0)
    g = g * dtype(100)
    ref, scale = REFS[kind](g, y)
    assert_bound(bwd(kind)(g, y), ref, scale, dtype)
