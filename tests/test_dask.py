"""fastsoftmax.dask (docs/contract.md §13): lazy results on dask arrays, against the
float64 references of _ref.py (and the sorting reference of test_top_k.py), on reduced
axes inside one chunk and split across chunks, 1-D to 4-D; the same bits whatever the
scheduler (sync, threads, processes, a distributed LocalCluster of worker processes)."""

from __future__ import annotations

import numpy as np
import pytest

da = pytest.importorskip("dask.array")  # the test extra installs dask[array]
import dask  # noqa: E402

import fastsoftmax as fs  # noqa: E402
import fastsoftmax.dask as fd  # noqa: E402

from _ref import (  # noqa: E402
    assert_bits_equal,
    check_func,
    random_values,
    run_python,
)
from test_top_k import ref_top_k  # noqa: E402

FUNCS = ["softmax", "log_softmax", "logsumexp"]
DTYPES = [np.float16, np.float32, np.float64]

# (shape, chunks, axis): the reduced axes in one chunk, or split across chunks
LAYOUTS = [
    ((300,), (300,), -1),
    ((300,), (70,), -1),
    ((300,), (100,), None),
    ((20, 300), (7, 300), -1),
    ((20, 300), (7, 64), -1),
    ((20, 300), (6, 100), 0),
    ((4, 6, 50), (2, 3, 50), (1, 2)),
    ((4, 6, 50), (3, 6, 50), (1, 2)),
    ((4, 6, 50), (2, 6, 20), -1),
    ((2, 3, 4, 40), (1, 2, 4, 15), (1, 3)),
    ((2, 3, 4, 40), (2, 3, 2, 40), 2),
    ((2, 3, 4, 40), (1, 3, 2, 7), None),
]
LAYOUT_IDS = [f"{s}-{c}-ax{a}" for s, c, a in LAYOUTS]


def _split(shape, chunks, axis):
    axes = range(len(shape)) if axis is None else (axis if isinstance(axis, tuple) else (axis,))
    return any(chunks[a % len(shape)] < shape[a % len(shape)] for a in axes)


def _call(name, x, axis, **kw):
    return getattr(fs, name)(x, axis, **kw)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,chunks,axis", LAYOUTS, ids=LAYOUT_IDS)
def test_against_reference(shape, chunks, axis, dtype):
    rng = np.random.default_rng(abs(hash((shape, chunks, str(axis)))) % 2**32)
    a = random_values(rng, shape, dtype)
    x = da.from_array(a, chunks=chunks)
    for name in FUNCS:
        r = _call(name, x, axis)
        assert isinstance(r, da.Array), name
        assert r.dtype == np.dtype(dtype) and type(r._meta) is np.ndarray
        if name != "logsumexp":
            assert r.chunks == x.chunks
        y = r.compute(scheduler="sync")
        if name == "logsumexp" and y.ndim == 0:
            y = np.asarray(y)[()]
        check_func(name, y, a, axis)
        if not _split(shape, chunks, axis) and axis == -1:
            # one blockwise task per chunk calling the NumPy function: its bits
            assert_bits_equal(y, _call(name, a, axis), name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_keepdims_where_temperature(dtype):
    rng = np.random.default_rng(1)
    a = random_values(rng, (12, 5, 90), dtype)
    w = rng.random((12, 5, 90)) < 0.7
    w[3] = False  # fully masked rows
    w[4, 2, :] = False
    a[5, 1, 7] = np.nan  # masked NaN takes no part
    w[5, 1, 7] = False
    for chunks in [(5, 5, 90), (5, 2, 40)]:
        x = da.from_array(a, chunks=chunks)
        wd = da.from_array(w, chunks=(4, 5, 30))  # other chunks than x: aligned
        for axis in [-1, (1, 2)]:
            for name in ["softmax", "log_softmax"]:
                y = _call(name, x, axis, where=wd, temperature=1.7).compute()
                check_func(name, y, a, axis, where=w, temperature=1.7)
            y = fs.logsumexp(x, axis, where=w[0], keepdims=True).compute()  # a NumPy where
            check = np.broadcast_to(w[0], a.shape)
            from _ref import assert_logsumexp_close

            assert_logsumexp_close(y, a, axis, where=check, keepdims=True)


def _specials(dtype):
    a = np.zeros((8, 40), dtype)
    a[:] = np.linspace(-5, 5, 40)
    a[0, 3] = np.nan
    a[1, 10] = np.inf
    a[2, :] = -np.inf
    a[3, ::2] = -np.inf
    a[4, 5] = np.nan
    a[4, 6] = np.inf
    a[5, 0] = 1000.0 if dtype != np.float16 else 60000.0
    a[6, 39] = -np.inf
    return a


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("chunks", [(3, 40), (3, 9)])
def test_special_values(dtype, chunks):
    a = _specials(dtype)
    w = np.ones(a.shape, bool)
    w[7] = False  # fully masked
    x = da.from_array(a, chunks=chunks)
    for name in FUNCS:
        y = _call(name, x, -1, where=w).compute()
        check_func(name, y, a, -1, where=w)


def test_integer_and_dtype_argument():
    a = np.arange(60).reshape(3, 20) % 7
    x = da.from_array(a, chunks=(2, 6))
    y = fs.softmax(x).compute()
    assert y.dtype == np.float64
    check_func("softmax", y, a, -1)
    h = da.from_array(a.astype(np.float16), chunks=(2, 6))
    y = fs.log_softmax(h, dtype=np.float32).compute()
    assert y.dtype == np.float32
    check_func("log_softmax", y, a.astype(np.float16), -1, dtype=np.float32)


# ------------------------------------------------------------------- cross-entropy
def _sparse_ref(lab, x, ign=None, eps=0.0):
    x64 = x.astype(np.float64)
    m = x64.max(-1, keepdims=True)
    lse = (m + np.log(np.exp(x64 - m).sum(-1, keepdims=True)))[..., 0]
    picked = np.take_along_axis(x64, np.clip(lab, 0, x.shape[-1] - 1)[..., None], -1)[..., 0]
    loss = lse - (1 - eps) * picked - eps / x.shape[-1] * x64.sum(-1)
    if ign is not None:
        loss = np.where(lab == ign, 0.0, loss)
    return loss


def _dense_ref(t, x, axis, eps=0.0):
    x64 = np.moveaxis(x.astype(np.float64), axis, -1)
    t64 = np.moveaxis(np.broadcast_to(t, x.shape).astype(np.float64), axis, -1)
    n = x64.shape[-1]
    t64 = (1 - eps) * t64 + eps / n
    m = x64.max(-1, keepdims=True)
    ls = x64 - (m + np.log(np.exp(x64 - m).sum(-1, keepdims=True)))
    return -np.where(t64 != 0, t64 * ls, 0.0).sum(-1)


def _close(y, r, dtype, scale):
    """docs/contract.md §5: 64 eps of the compute type times the scale (float16: the
    float32 bound plus the final rounding to float16)."""
    eps = 2.0**-52 if dtype == np.float64 else 2.0**-23
    tol = 64 * eps * scale + (2.0**-11 * np.abs(r) if dtype == np.float16 else 0)
    assert np.all(np.abs(np.asarray(y, np.float64) - r) <= tol), (y, r)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("chunks", [(5, 3, 64), (5, 3, 17)])
def test_sparse_cross_entropy(dtype, chunks):
    rng = np.random.default_rng(2)
    a = random_values(rng, (10, 3, 64), dtype, spread=False)
    lab = rng.integers(0, 64, (10, 3))
    lab[2, 1] = -100
    x = da.from_array(a, chunks=chunks)
    labd = da.from_array(lab, chunks=(4, 3))
    for eps in [0.0, 0.1]:
        r = _sparse_ref(lab, a, ign=-100, eps=eps)
        scale = np.maximum(1, np.abs(r)) * 2
        y = fs.sparse_softmax_cross_entropy_with_logits(
            labd, x, ignore_index=-100, label_smoothing=eps).compute()
        assert y.dtype == dtype and y.shape == (10, 3)
        _close(y, r, dtype, scale)
        assert y[2, 1] == 0
        s = fs.sparse_softmax_cross_entropy_with_logits(labd, x, ignore_index=-100,
                                                        label_smoothing=eps, reduction="sum")
        assert s.shape == () and s.dtype == dtype
        _close(s.compute(), r.sum(), dtype, scale.sum())
        m = fs.sparse_softmax_cross_entropy_with_logits(labd, x, ignore_index=-100,
                                                        label_smoothing=eps, reduction="mean")
        _close(m.compute(), r.sum() / 29, dtype, scale.sum() / 29)


@pytest.mark.parametrize("chunks", [(2, 40), (2, 9)])
def test_sparse_special_rows_and_labels(chunks):
    a = _specials(np.float32)
    lab = np.array([1, 2, 3, 2, 4, 5, 39, 0])
    x = da.from_array(a, chunks=chunks)
    y = fs.sparse_softmax_cross_entropy_with_logits(lab, x).compute()
    assert np.isnan(y[0]) and np.isnan(y[1]) and np.isnan(y[4])  # NaN / +inf rows
    assert y[2] == np.inf and y[3] == np.inf and y[6] == np.inf  # -inf at the label
    assert np.isfinite(y[5])
    assert np.isnan(fs.sparse_softmax_cross_entropy_with_logits(  # 0 / 0 rows, as PyTorch
        np.zeros(0, int), da.zeros((0, 5), chunks=(1, 2)), reduction="mean").compute())
    bad = lab.copy()
    bad[6] = 40
    r = fs.sparse_softmax_cross_entropy_with_logits(bad, x)  # lazy: raises when computed
    with pytest.raises(ValueError, match=r"labels\[6\] = 40 is out of range \[0, 40\)"):
        r.compute()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,chunks,axis", [
    ((8, 50), (3, 50), -1), ((8, 50), (3, 12), -1), ((4, 6, 30), (2, 2, 30), (1, 2)),
    ((4, 6, 30), (4, 6, 7), 0)])
def test_dense_cross_entropy(dtype, shape, chunks, axis):
    rng = np.random.default_rng(3)
    a = random_values(rng, shape, dtype, spread=False)
    t = rng.random(shape)
    t[t < 0.3] = 0
    x = da.from_array(a, chunks=chunks)
    for eps in [0.0, 0.2]:
        if isinstance(axis, tuple):  # (1, 2) of (4, 6, 30): rows of 180
            r = _dense_ref(t.reshape(4, 180), a.reshape(4, 180), -1, eps)
        else:
            r = _dense_ref(t, a, axis, eps)
        scale = np.maximum(1, np.abs(r)) * 4
        for red, ref, sc in [("none", r, scale), ("sum", r.sum(), scale.sum()),
                             ("mean", r.mean(), scale.sum() / r.size)]:
            y = fs.softmax_cross_entropy_with_logits(t, x, axis, reduction=red,
                                                     label_smoothing=eps)
            assert isinstance(y, da.Array) and y.dtype == dtype
            _close(y.compute(), ref, dtype, sc)


def test_dense_special_rows():
    a = _specials(np.float64)
    t = np.zeros(a.shape)
    t[:, 2] = 1.0
    for chunks in [(8, 40), (8, 9)]:
        y = fs.softmax_cross_entropy_with_logits(t, da.from_array(a, chunks=chunks)).compute()
        assert np.isnan(y[0]) and np.isnan(y[1]) and np.isnan(y[4])
        assert y[2] == np.inf and y[3] == np.inf  # target mass at -inf
        assert np.all(np.isfinite(y[5:]))


# --------------------------------------------------------------------------- top_k
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("chunks,axis", [((4, 60), -1), ((4, 13), -1), ((3, 60), 0)])
def test_top_k(dtype, chunks, axis):
    rng = np.random.default_rng(4)
    a = np.round(rng.standard_normal((11, 60)) * 3).astype(dtype)  # many ties
    a[1, 5] = np.nan
    a[2, 7] = np.inf
    a[3, :] = 0.0
    a[3, ::3] = -0.0
    x = da.from_array(a, chunks=chunks)
    for k in [1, 5, 11]:
        for largest in [True, False]:
            r = fs.top_k(x, k, axis, largest=largest)
            assert isinstance(r, fs.TopK) and isinstance(r.values, da.Array)
            v, i = dask.compute(r.values, r.indices)
            rv, ri = ref_top_k(a, k, axis, largest)
            np.testing.assert_array_equal(i, ri)
            assert v.dtype == dtype and v.tobytes() == np.ascontiguousarray(rv).tobytes()
    for transform in ["softmax", "log_softmax"]:
        v, i = dask.compute(*fs.top_k(x, 4, axis, transform=transform))
        full = getattr(fs, transform)(a, axis)
        ref = np.take_along_axis(full, ref_top_k(a, 4, axis, True)[1], axis)
        ulp = {np.float16: 2.0**-10, np.float32: 2.0**-23, np.float64: 2.0**-52}[dtype]
        ok = np.isnan(ref) & np.isnan(v) | (np.abs(v.astype(np.float64) - ref) <=
                                            4 * ulp * np.maximum(1, np.abs(ref.astype(np.float64))))
        assert ok.all(), (v, ref)


# ------------------------------------------------------------ laziness, schedulers
def _boom(b):
    raise AssertionError("a block was computed while building the graph")


def test_graph_stays_lazy():
    x = da.zeros((6, 40), chunks=(3, 10), dtype=np.float32).map_blocks(_boom, dtype=np.float32)
    lab = da.zeros(6, dtype=np.int64, chunks=3)
    results = [fs.softmax(x), fs.log_softmax(x, where=np.ones(40, bool)), fs.logsumexp(x),
               fs.sparse_softmax_cross_entropy_with_logits(lab, x, reduction="mean"),
               fs.softmax_cross_entropy_with_logits(x, x), fs.top_k(x, 3).values,
               fs.softmax(x.rechunk((3, 40)))]
    for r in results:
        assert isinstance(r, da.Array)
        with pytest.raises(AssertionError, match="while building"):
            r.compute(scheduler="sync")


def test_numpy_users_never_import_dask():
    p = run_python("import sys, numpy as np, fastsoftmax as fs\n"
                   "fs.softmax(np.ones((2, 3))); fs.logsumexp([1.0, 2.0])\n"
                   "fs.top_k(np.ones(4), 2)\n"
                   "fs.sparse_softmax_cross_entropy_with_logits([0], np.ones((1, 3)))\n"
                   "assert 'dask' not in sys.modules, [m for m in sys.modules if 'dask' in m]\n"
                   "print('ok')")
    assert p.returncode == 0 and "ok" in p.stdout, p.stderr


def test_unsupported_arguments_and_errors():
    x = da.ones((3, 4), chunks=2)
    with pytest.raises(TypeError, match="out= is not supported"):
        fs.softmax(x, out=np.empty((3, 4)))
    with pytest.raises(TypeError, match="b= is not supported"):
        fs.logsumexp(x, b=np.ones(4))
    with pytest.raises(TypeError, match="return_sign= is not supported"):
        fd.logsumexp(x, return_sign=True)
    with pytest.raises(TypeError, match="return_grad= is not supported"):
        fs.sparse_softmax_cross_entropy_with_logits(np.zeros(3, int), x, return_grad=True)
    with pytest.raises(np.exceptions.AxisError):
        fs.softmax(x, axis=2)
    with pytest.raises(TypeError, match="where must be a boolean"):
        fs.softmax(x, where=np.ones(4))
    with pytest.raises(ValueError, match="temperature"):
        fs.softmax(x, temperature=0)
    with pytest.raises(ValueError, match="labels has shape"):
        fs.sparse_softmax_cross_entropy_with_logits(np.zeros(4, int), x)
    with pytest.raises(ValueError, match="k = 5 is larger"):
        fs.top_k(x, 5)


def _graphs():
    """Results on split reduced axes (tree merges) and one-chunk axes."""
    rng = np.random.default_rng(5)
    a = random_values(rng, (16, 700), np.float32)
    x = da.from_array(a, chunks=(5, 90))
    lab = da.from_array(rng.integers(0, 700, 16), chunks=5)
    return a, [fs.softmax(x), fs.log_softmax(x, temperature=0.7), fs.logsumexp(x, axis=None),
               fs.logsumexp(x, 0), fs.softmax(x.rechunk((5, 700))),
               fs.sparse_softmax_cross_entropy_with_logits(lab, x, reduction="mean"),
               fs.softmax_cross_entropy_with_logits(fs.softmax(x), x, reduction="sum"),
               *fs.top_k(x, 6, transform="log_softmax")]


def test_same_bits_across_schedulers():
    a, graphs = _graphs()
    ref = dask.compute(*graphs, scheduler="sync")
    for kw in [dict(scheduler="threads", num_workers=1), dict(scheduler="threads", num_workers=2),
               dict(scheduler="threads", num_workers=3),
               dict(scheduler="processes", num_workers=2)]:
        got = dask.compute(*graphs, **kw)
        for g, r in zip(got, ref):
            assert_bits_equal(g, r, str(kw))
    check_func("softmax", ref[0], a, -1)


def test_distributed_local_cluster():
    distributed = pytest.importorskip("distributed")
    a, graphs = _graphs()
    ref = dask.compute(*graphs, scheduler="sync")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, silence_logs=40) as cluster, \
            distributed.Client(cluster) as client:
        assert len(client.scheduler_info()["workers"]) == 2
        got = client.compute(graphs, sync=True)
        pids = client.run(lambda: __import__("os").getpid())
    assert len(set(pids.values())) == 2 and __import__("os").getpid() not in pids.values()
    for g, r in zip(got, ref):
        assert_bits_equal(g, r, "distributed")
