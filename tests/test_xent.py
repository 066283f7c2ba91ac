"""softmax_cross_entropy_with_logits and sparse_softmax_cross_entropy_with_logits.

References, all independent of fastsoftmax:

* TensorFlow's published semantics in NumPy: per-row loss
  ``-sum(labels * log_softmax(logits))`` with ``0 * -inf = 0`` (as scipy.special.xlogy),
  via ``scipy.special.log_softmax`` in float64, and an extended-precision (long double)
  version of the same formula for the bound of docs/contract.md §5.
* PyTorch's ``cross_entropy`` rules (ignore_index, label_smoothing, reductions) written
  in NumPy, and ``torch.nn.functional.cross_entropy`` itself when torch is importable.
* Gradients: the analytic formula ``(softmax * sum(target) - target) * scale`` in long
  double, and central finite differences of the float64 reference loss.

Accuracy bound (docs/contract.md §5): absolute error <= 64 eps times the row's scale, the
scale being max(1, |loss|, the largest |target_j * log_softmax_j| it sums); for the gradient
max(1, |sum target|, max |target_j|) times the reduction's factor (1 or 1/count).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special

import fastsoftmax as fs

pytestmark = pytest.mark.usefixtures("isa")

LD = np.longdouble
EPS = {np.dtype(np.float32): 2.0**-23, np.dtype(np.float64): 2.0**-52}
dense = fs.softmax_cross_entropy_with_logits
sparse = fs.sparse_softmax_cross_entropy_with_logits

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # pragma: no cover - torch is optional
    torch = None


# ------------------------------------------------------------------------- references
def ld_log_softmax(x, axis=-1):
    """log_softmax in long double, special rows (-inf / nan) as docs/contract.md §3."""
    x = np.asarray(x, dtype=LD)
    with np.errstate(all="ignore"):
        m = np.max(x, axis=axis, keepdims=True)
        fin = np.isfinite(m)
        ms = np.where(fin, m, 0)
        lse = np.log(np.sum(np.exp(x - ms), axis=axis, keepdims=True))
        out = x - ms - lse
        out = np.where(m == -np.inf, -np.inf, out)
        out = np.where(np.isnan(m) | (m == np.inf), np.nan, out)
    return out


def ld_softmax(x, axis=-1):
    with np.errstate(all="ignore"):
        return np.exp(ld_log_softmax(x, axis))


def xlogy_terms(t, lsm):
    """t * lsm with 0 * anything = 0 (the xlogy rule of docs/contract.md §4.1)."""
    with np.errstate(all="ignore"):
        return np.where(t == 0, 0, t * lsm)


def tf_dense_ref(labels, logits, axis=-1, eps=0.0, ld=True):
    """TF's per-row loss (with PyTorch's smoothing) and the per-row accuracy scale."""
    logits = np.asarray(logits)
    lab = np.broadcast_to(np.asarray(labels, dtype=LD if ld else np.float64), logits.shape)
    n = logits.shape[axis]
    t = (1 - eps) * lab + eps / n
    if ld:
        lsm = ld_log_softmax(logits, axis)
    else:
        with np.errstate(all="ignore"):
            lsm = scipy.special.log_softmax(np.asarray(logits, np.float64), axis=axis)
    terms = xlogy_terms(t, lsm)
    loss = -np.sum(terms, axis=axis)
    with np.errstate(invalid="ignore"):
        scale = np.maximum(1, np.maximum(np.abs(loss), np.max(np.abs(terms), axis=axis)))
    return loss, scale, t


def dense_grad_ref(labels, logits, axis=-1, eps=0.0, factor=1.0):
    logits = np.asarray(logits)
    _, _, t = tf_dense_ref(labels, logits, axis, eps)
    p = ld_softmax(logits, axis)
    st = np.sum(t, axis=axis, keepdims=True)
    g = (p * st - t) * factor
    gscale = np.maximum(1, np.maximum(np.abs(st), np.max(np.abs(t), axis=axis, keepdims=True)))
    return g, gscale * factor


def torch_rules_ref(labels, logits, ignore_index=None, eps=0.0, reduction="none"):
    """PyTorch's cross_entropy (class-index targets) in long double NumPy.

    Returns (reduced loss, per-row scale, gradient of the reduced loss (of the sum
    for "none"), gradient factor).
    """
    x = np.asarray(logits)
    lab = np.asarray(labels)
    n = x.shape[-1]
    lsm = ld_log_softmax(x, -1)
    valid = np.ones(lab.shape, bool) if ignore_index is None else lab != ignore_index
    safe = np.where(valid, lab, 0)
    onehot = np.zeros(x.shape, LD)
    np.put_along_axis(onehot, safe[..., None], 1, axis=-1)
    t = (1 - eps) * onehot + eps / n
    terms = xlogy_terms(t, lsm)
    per_row = np.where(valid, -np.sum(terms, axis=-1), 0)
    with np.errstate(invalid="ignore"):
        scale = np.maximum(1, np.maximum(np.abs(per_row), np.max(np.abs(terms), axis=-1)))
    count = int(valid.sum())
    if reduction == "none":
        loss, factor = per_row, 1.0
    elif reduction == "sum":
        loss, factor = np.sum(per_row), 1.0
    else:
        with np.errstate(invalid="ignore", divide="ignore"):
            loss = np.sum(per_row) / LD(count)
        factor = 1.0 / count if count else 0.0
    p = ld_softmax(x, -1)
    g = np.where(valid[..., None], p - t, 0) * factor
    return loss, scale, g, factor


def assert_bound(got, ref, scale, dtype, k=64):
    """|got - ref| <= k eps scale elementwise; nan/inf exactly where the reference has them."""
    got = np.asarray(got)
    ref = np.asarray(ref, dtype=LD)
    assert got.shape == ref.shape, (got.shape, ref.shape)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    fin = np.isfinite(ref)
    np.testing.assert_array_equal(got[~fin & ~np.isnan(ref)], ref[~fin & ~np.isnan(ref)])
    scale = np.broadcast_to(np.asarray(scale, dtype=LD), ref.shape)
    err = np.abs(got[fin].astype(LD) - ref[fin])
    tol = k * EPS[np.dtype(dtype)] * scale[fin]
    bad = err > tol
    assert not bad.any(), (
        f"{bad.sum()} of {bad.size} beyond {k} eps * scale; worst "
        f"{float(np.max(err / tol))} x the bound"
    )


def logits_like(rng, shape, dtype=np.float64, spread=3.0):
    return (rng.standard_normal(shape) * spread).astype(dtype)


def soft_labels(rng, shape, axis=-1):
    a = rng.random(shape)
    return a / a.sum(axis=axis, keepdims=True)


# ------------------------------------------------------------------ the seed example
@pytest.mark.aarch64
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_seed_example(dtype):
    logits = np.array([[1.0, 2.0, 3.0]] * 3, dtype)
    labels = np.array([[0.0, 0.0, 1.0]] * 3, dtype)
    loss = dense(labels, logits)
    assert loss.dtype == dtype and loss.shape == (3,)
    np.testing.assert_allclose(loss, 0.40760596, rtol=1e-7)
    total = dense(labels, logits, reduction="sum")
    assert isinstance(total, np.generic) and total.dtype == dtype
    np.testing.assert_allclose(total, 1.22282, rtol=1e-5)
    np.testing.assert_allclose(sparse(np.array([2, 2, 2]), logits), 0.40760596, rtol=1e-7)
    np.testing.assert_allclose(sparse([2, 2, 2], logits, reduction="sum"), 1.22282, rtol=1e-5)
    np.testing.assert_allclose(dense(labels, logits, reduction="mean"), 0.40760596, rtol=1e-7)


# ------------------------------------------------------------- dense: TF's semantics
@pytest.mark.aarch64
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,axis", [((5, 7), -1), ((5, 7), 0), ((3, 4, 6), 1),
                                        ((2, 3, 129), -1), ((1, 1), -1), ((17,), 0)])
def test_dense_matches_tf_semantics(rng, dtype, shape, axis):
    x = logits_like(rng, shape, dtype)
    lab = soft_labels(rng, shape, axis).astype(dtype)
    got = dense(lab, x, axis=axis)
    # independent float64 reference through scipy.special.log_softmax
    ref64, _, _ = tf_dense_ref(lab, x, axis, ld=False)
    np.testing.assert_allclose(got, ref64, rtol=1e-5 if dtype == np.float32 else 1e-12)
    ref, scale, _ = tf_dense_ref(lab, x, axis)
    assert_bound(got, ref, scale, dtype)


@pytest.mark.aarch64
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("eps", [0.0, 0.1, 1.0])
def test_dense_reductions_smoothing_grad(rng, dtype, reduction, eps):
    x = logits_like(rng, (6, 11), dtype)
    lab = soft_labels(rng, (6, 11)).astype(dtype)
    loss, grad = dense(lab, x, reduction=reduction, label_smoothing=eps, return_grad=True)
    per_row, scale, _ = tf_dense_ref(lab, x, -1, eps)
    factor = 1 / 6 if reduction == "mean" else 1.0
    if reduction == "none":
        assert_bound(loss, per_row, scale, dtype)
    else:
        assert isinstance(loss, np.generic) and loss.dtype == dtype
        ref = np.sum(per_row) * factor
        assert_bound(loss, ref, np.sum(scale) * factor, dtype)
    assert grad.shape == x.shape and grad.dtype == dtype
    gref, gscale = dense_grad_ref(lab, x, -1, eps, factor)
    assert_bound(grad, gref, gscale, dtype)
    # the loss is the same with or without the gradient
    np.testing.assert_array_equal(loss, dense(lab, x, reduction=reduction, label_smoothing=eps))


def test_dense_labels_need_not_be_one_hot_or_normalized(rng):
    x = logits_like(rng, (4, 9))
    lab = rng.random((4, 9)) * 3 - 1  # any real weights, also negative
    ref, scale, _ = tf_dense_ref(lab, x)
    assert_bound(dense(lab, x), ref, scale, np.float64)
    g = dense(lab, x, return_grad=True)[1]
    gref, gscale = dense_grad_ref(lab, x)
    assert_bound(g, gref, gscale, np.float64)


@pytest.mark.parametrize("lab_shape", [(9,), (1, 9), (4, 1), ()])
def test_dense_labels_broadcast(rng, lab_shape):
    x = logits_like(rng, (4, 9))
    lab = rng.random(lab_shape)
    ref, scale, _ = tf_dense_ref(lab, x)
    assert_bound(dense(lab, x), ref, scale, np.float64)
    g = dense(lab, x, return_grad=True)[1]
    gref, gscale = dense_grad_ref(lab, x)
    assert_bound(g, gref, gscale, np.float64)


@pytest.mark.parametrize("lab_dtype", [np.float16, np.float32, np.float64, np.int64, np.int32,
                                       np.int8, np.uint16, np.bool_, ">f8", ">i8"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dense_label_dtypes(rng, lab_dtype, dtype):
    x = logits_like(rng, (5, 8), dtype)
    lab = np.zeros((5, 8))
    lab[np.arange(5), rng.integers(0, 8, 5)] = 1
    lab = lab.astype(lab_dtype)
    got = dense(lab, x)
    assert got.dtype == dtype
    ref, scale, _ = tf_dense_ref(lab.astype(np.float64), x)
    assert_bound(got, ref, scale, dtype)
    # strided labels of that dtype, with a gradient
    big = np.zeros((5, 16), lab.dtype)
    big[:, ::2] = lab
    g = dense(big[:, ::2], x, return_grad=True)[1]
    gref, gscale = dense_grad_ref(lab.astype(np.float64), x)
    assert_bound(g, gref, gscale, dtype)


def test_dense_integer_label_weights(rng):
    x = logits_like(rng, (4, 6))
    lab = rng.integers(-3, 4, (4, 6))  # integer weights, also negative
    for dt in (np.int64, np.int32, np.int16):
        ref, scale, _ = tf_dense_ref(lab, x)
        assert_bound(dense(lab.astype(dt), x), ref, scale, np.float64)


@pytest.mark.aarch64
@pytest.mark.parametrize("axis", [(0, 2), (1, 2), None, (0, 1, 2)])
def test_dense_tuple_axes(rng, axis):
    x = logits_like(rng, (3, 4, 5))
    lab = rng.random((3, 4, 5))
    got, g = dense(lab, x, axis=axis, return_grad=True)
    axes = tuple(range(3)) if axis is None else axis
    moved_x = np.moveaxis(x, axes, tuple(range(3 - len(axes), 3)))
    moved_l = np.moveaxis(lab, axes, tuple(range(3 - len(axes), 3)))
    rx = moved_x.reshape(moved_x.shape[: 3 - len(axes)] + (-1,))
    rl = moved_l.reshape(rx.shape)
    ref, scale, _ = tf_dense_ref(rl, rx)
    assert_bound(got, ref, scale, np.float64)
    gref, gscale = dense_grad_ref(rl, rx)
    gmoved = np.moveaxis(g, axes, tuple(range(3 - len(axes), 3))).reshape(rx.shape)
    assert_bound(gmoved, gref, gscale, np.float64)


def test_dense_zero_target_at_minus_inf_logit():
    x = np.array([[0.0, -np.inf, 1.0], [-np.inf, -np.inf, 2.0], [0.0, -np.inf, 1.0]])
    lab = np.array([[0.5, 0.0, 0.5], [0.0, 0.0, 1.0], [0.5, 0.5, 0.0]])
    loss, g = dense(lab, x, return_grad=True)
    assert np.isfinite(loss[:2]).all() and loss[2] == np.inf
    ref, scale, _ = tf_dense_ref(lab, x)
    assert_bound(loss, ref, scale, np.float64)
    assert loss[1] == 0.0
    assert np.isfinite(g).all()
    gref, gscale = dense_grad_ref(lab, x)
    assert_bound(g, gref, gscale, np.float64)
    # smoothing puts mass on the -inf class: the loss becomes inf
    assert dense(lab, x, label_smoothing=0.1)[0] == np.inf


@pytest.mark.aarch64
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dense_special_rows(dtype):
    x = np.array([[np.nan, 0.0, 1.0], [np.inf, 0.0, 1.0], [-np.inf] * 3, [1e30, -1e30, 5.0]],
                 dtype)
    lab = np.array([[0.0, 0.0, 1.0]] * 4, dtype)
    loss, g = dense(lab, x, return_grad=True)
    assert np.isnan(loss[0]) and np.isnan(loss[1]) and loss[2] == np.inf
    assert np.isnan(g[:2]).all()
    np.testing.assert_array_equal(g[2], -lab[2])  # softmax of a row of -inf is 0
    assert np.isfinite(loss[3]) and np.isfinite(g[3]).all()
    ref, scale, _ = tf_dense_ref(lab[3:], x[3:])
    assert_bound(loss[3:], ref, scale, dtype)


def test_dense_empty():
    assert dense(np.zeros((0, 5)), np.zeros((0, 5))).shape == (0,)
    assert dense(np.zeros((0, 5)), np.zeros((0, 5)), reduction="sum") == 0.0
    assert np.isnan(dense(np.zeros((0, 5)), np.zeros((0, 5)), reduction="mean"))
    loss, g = dense(np.zeros((3, 0)), np.zeros((3, 0)), return_grad=True)
    np.testing.assert_array_equal(loss, np.zeros(3))
    assert g.shape == (3, 0)


def test_dense_scalar_results():
    out = dense([0.0, 1.0], [1.0, 2.0])
    assert isinstance(out, np.float64)
    assert out == pytest.approx(np.log1p(np.exp(-1.0)))
    out32 = dense(np.float32([0, 1]), np.float32([1, 2]), reduction="mean")
    assert isinstance(out32, np.float32)


@pytest.mark.aarch64
def test_dense_int_logits_and_float16(rng):
    assert dense([0, 1], [1, 2]).dtype == np.float64
    x = logits_like(rng, (6, 40), np.float16, spread=2)
    lab = soft_labels(rng, (6, 40)).astype(np.float16)
    loss, g = dense(lab, x, return_grad=True, label_smoothing=0.05)
    assert loss.dtype == np.float16 and g.dtype == np.float16
    ref, scale, _ = tf_dense_ref(lab, x, eps=0.05)
    # float16: computed in float32, rounded once
    tol = 2.0**-11 * np.abs(ref) + 64 * 2.0**-23 * scale
    assert np.all(np.abs(loss.astype(LD) - ref) <= tol)
    gref, gscale = dense_grad_ref(lab, x, eps=0.05)
    gtol = 2.0**-11 * np.abs(gref) + 2.0**-24 + 64 * 2.0**-23 * gscale
    assert np.all(np.abs(g.astype(LD) - gref) <= gtol)


# ------------------------------------------------------------ sparse: PyTorch's rules
@pytest.mark.aarch64
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("ignore_index,eps", [(None, 0.0), (-100, 0.0), (3, 0.2), (None, 1.0)])
def test_sparse_matches_torch_rules(rng, dtype, reduction, ignore_index, eps):
    n = 7
    x = logits_like(rng, (4, 5, n), dtype)
    lab = rng.integers(0, n, (4, 5))
    if ignore_index is not None:
        lab[rng.random((4, 5)) < 0.3] = ignore_index
    loss, g = sparse(lab, x, reduction=reduction, ignore_index=ignore_index,
                     label_smoothing=eps, return_grad=True)
    ref, scale, gref, factor = torch_rules_ref(lab, x, ignore_index, eps, reduction)
    if reduction == "none":
        assert loss.shape == (4, 5)
        assert_bound(loss, ref, scale, dtype)
    else:
        assert isinstance(loss, np.generic) and loss.dtype == dtype
        assert_bound(loss, ref, np.sum(scale) * (factor or 1), dtype)
    assert g.shape == x.shape and g.dtype == dtype
    assert_bound(g, gref, max(factor, 1e-300) * np.ones(x.shape), dtype)


@pytest.mark.skipif(torch is None, reason="torch not installed")
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("ignore_index,eps", [(None, 0.0), (2, 0.0), (-100, 0.3)])
def test_sparse_against_torch(rng, reduction, ignore_index, eps):
    x = logits_like(rng, (12, 9))
    lab = rng.integers(0, 9, 12)
    if ignore_index is not None:
        lab[::4] = ignore_index
    loss, g = sparse(lab, x, reduction=reduction, ignore_index=ignore_index,
                     label_smoothing=eps, return_grad=True)
    tx = torch.tensor(x, requires_grad=True)
    kw = {} if ignore_index is None else {"ignore_index": ignore_index}
    tl = F.cross_entropy(tx, torch.tensor(lab), reduction=reduction, label_smoothing=eps, **kw)
    tl.sum().backward()
    np.testing.assert_allclose(loss, tl.detach().numpy(), rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(g, tx.grad.numpy(), rtol=1e-12, atol=1e-15)


@pytest.mark.skipif(torch is None, reason="torch not installed")
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_dense_against_torch_probability_targets(rng, reduction):
    x = logits_like(rng, (10, 6))
    lab = soft_labels(rng, (10, 6))
    loss, g = dense(lab, x, reduction=reduction, label_smoothing=0.15, return_grad=True)
    tx = torch.tensor(x, requires_grad=True)
    tl = F.cross_entropy(tx, torch.tensor(lab), reduction=reduction, label_smoothing=0.15)
    tl.sum().backward()
    np.testing.assert_allclose(loss, tl.detach().numpy(), rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(g, tx.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_sparse_matches_dense_one_hot(rng):
    x = logits_like(rng, (8, 13))
    lab = rng.integers(0, 13, 8)
    onehot = np.eye(13)[lab]
    for eps in (0.0, 0.3):
        a, ga = sparse(lab, x, label_smoothing=eps, return_grad=True)
        b, gb = dense(onehot, x, label_smoothing=eps, return_grad=True)
        np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-15)
        np.testing.assert_allclose(ga, gb, rtol=1e-14, atol=1e-15)


def test_sparse_all_ignored_mean_is_nan_silently():
    x = np.ones((3, 4))
    loss, g = sparse([-1, -1, -1], x, ignore_index=-1, reduction="mean", return_grad=True)
    assert np.isnan(loss)
    np.testing.assert_array_equal(g, 0)
    assert sparse([-1, -1, -1], x, ignore_index=-1, reduction="sum") == 0.0
    np.testing.assert_array_equal(sparse([-1, -1, -1], x, ignore_index=-1), 0)
    assert np.isnan(sparse(np.zeros(0, int), np.zeros((0, 4)), reduction="mean"))


def test_sparse_ignore_index_inside_range(rng):
    x = logits_like(rng, (6, 5))
    lab = np.array([0, 1, 0, 2, 0, 4])
    loss = sparse(lab, x, ignore_index=0, reduction="mean")
    ref, _, _, _ = torch_rules_ref(lab, x, 0, 0.0, "mean")
    assert loss == pytest.approx(float(ref), rel=1e-14)


def test_sparse_zero_target_at_minus_inf_logit():
    x = np.array([[0.0, -np.inf, 1.0], [-np.inf, 5.0, -np.inf]])
    loss, g = sparse([2, 1], x, return_grad=True)
    assert np.isfinite(loss).all() and loss[1] == 0.0
    assert np.isfinite(g).all()
    assert sparse([1, 1], x)[0] == np.inf  # the label itself at -inf
    assert sparse([2, 1], x, label_smoothing=0.1)[0] == np.inf


@pytest.mark.aarch64
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sparse_special_rows(dtype):
    x = np.array([[np.nan, 0.0, 1.0], [np.inf, 0.0, 1.0], [-np.inf] * 3, [80.0, -80.0, 0.0]],
                 dtype)
    loss, g = sparse([2, 2, 2, 0], x, return_grad=True)
    assert np.isnan(loss[0]) and np.isnan(loss[1]) and loss[2] == np.inf
    assert np.isnan(g[:2]).all()
    np.testing.assert_array_equal(g[2], [0, 0, -1])
    assert 0 <= loss[3] < 1e-30 + 2 * EPS[np.dtype(dtype)]


# ---------------------------------------------------------------- gradients by differences
def test_gradients_by_finite_differences(rng):
    x = logits_like(rng, (3, 5), spread=1.0)
    lab = rng.integers(0, 5, 3)
    soft = soft_labels(rng, (3, 5))
    h = 1e-6
    g1 = sparse(lab, x, reduction="mean", label_smoothing=0.1, return_grad=True)[1]
    g2 = dense(soft, x, label_smoothing=0.2, return_grad=True)[1]
    g3 = dense(soft, x, axis=0, reduction="sum", return_grad=True)[1]
    for f, g in (
        (lambda z: sparse(lab, z, reduction="mean", label_smoothing=0.1), g1),
        (lambda z: float(np.sum(dense(soft, z, label_smoothing=0.2))), g2),
        (lambda z: dense(soft, z, axis=0, reduction="sum"), g3),
    ):
        num = np.zeros_like(x)
        for idx in np.ndindex(x.shape):
            d = np.zeros_like(x)
            d[idx] = h
            num[idx] = (float(f(x + d)) - float(f(x - d))) / (2 * h)
        np.testing.assert_allclose(g, num, atol=1e-8)


# ---------------------------------------------------------------------------- errors
def test_sparse_out_of_range_message():
    lab = np.zeros((5, 2), int)
    lab[3, 1] = 17
    lab[4, 0] = 12  # a later bad one: the first is named
    with pytest.raises(ValueError, match=r"^labels\[3, 1\] = 17 is out of range \[0, 10\)$"):
        sparse(lab, np.zeros((5, 2, 10)))
    with pytest.raises(ValueError, match=r"labels\[2\] = -1 is out of range \[0, 4\)"):
        sparse([0, 1, -1], np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"labels = 4 is out of range \[0, 4\)"):
        sparse(4, np.zeros(4))
    with pytest.raises(ValueError, match=r"labels\[1\] = 5 is out of range"):  # not ignored
        sparse([-100, 5], np.zeros((2, 4)), ignore_index=-100)
    with pytest.raises(ValueError, match=r"labels\[1\] = 18446744073709551615 is out of range"):
        sparse(np.array([1, 2**64 - 1], np.uint64), np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"out of range \[0, 0\)"):
        sparse([0], np.zeros((1, 0)))


@pytest.mark.parametrize("labels", [[0.0, 1.0], np.array([True, False]), ["a", "b"],
                                    np.array([1 + 0j, 0j])])
def test_sparse_non_integer_labels(labels):
    with pytest.raises(TypeError, match="labels"):
        sparse(labels, np.zeros((2, 3)))


@pytest.mark.parametrize("lab_dtype", [np.int8, np.uint8, np.int16, np.int32, np.uint32, np.int64,
                                       np.uint64, ">i8"])
def test_sparse_integer_label_dtypes(rng, lab_dtype):
    x = logits_like(rng, (4, 6))
    lab = np.array([0, 5, 2, 3]).astype(lab_dtype)
    ref, _, _, _ = torch_rules_ref(lab.astype(np.int64), x)
    np.testing.assert_allclose(sparse(lab, x), ref.astype(np.float64), rtol=0, atol=1e-14)


def test_shape_and_argument_errors():
    with pytest.raises(ValueError, match="labels has shape"):
        sparse([0, 1], np.zeros((3, 4)))
    with pytest.raises(ValueError, match="labels has shape"):
        sparse(np.zeros((3, 1), int), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="at least one dimension"):
        sparse(0, np.float64(1.0))
    with pytest.raises(ValueError, match="broadcast"):
        dense(np.zeros((3, 5)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="broadcast"):
        dense(np.zeros((2, 3, 4)), np.zeros((3, 4)))
    for bad in ("avg", "MEAN", None, 1):
        with pytest.raises(ValueError, match="reduction"):
            sparse([0], np.zeros((1, 2)), reduction=bad)
        with pytest.raises(ValueError, match="reduction"):
            dense([[0, 1]], np.zeros((1, 2)), reduction=bad)
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="label_smoothing"):
            sparse([0], np.zeros((1, 2)), label_smoothing=bad)
        with pytest.raises(ValueError, match="label_smoothing"):
            dense([[0, 1]], np.zeros((1, 2)), label_smoothing=bad)
    with pytest.raises(TypeError, match="label_smoothing"):
        sparse([0], np.zeros((1, 2)), label_smoothing="0.1")
    with pytest.raises(TypeError, match="ignore_index"):
        sparse([0], np.zeros((1, 2)), ignore_index=1.5)
    with pytest.raises(TypeError, match="logits"):
        sparse([0], np.zeros((1, 2), complex))
    with pytest.raises(TypeError, match="logits"):
        dense([[0, 1]], np.zeros((1, 2), complex))
    with pytest.raises(TypeError, match="labels"):
        dense(np.zeros((1, 2), complex), np.zeros((1, 2)))
    with pytest.raises(np.exceptions.AxisError):
        dense([[0, 1]], np.zeros((1, 2)), axis=2)


# ------------------------------------------------------------------ layouts, dtypes
def strided_variants(x):
    """The same logical values in other memory layouts."""
    yield "F", np.asfortranarray(x)
    big = np.zeros(x.shape[:-1] + (2 * x.shape[-1],), x.dtype)
    big[..., ::2] = x
    yield "step2", big[..., ::2]
    yield "negative", np.ascontiguousarray(x[::-1, ::-1])[::-1, ::-1]
    yield "byteswapped", x.astype(x.dtype.newbyteorder())
    ro = x.copy()
    ro.flags.writeable = False
    yield "readonly", ro


@pytest.mark.aarch64
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_strided_logits(rng, dtype):
    x = logits_like(rng, (9, 37), dtype)
    lab = rng.integers(0, 37, 9)
    soft = soft_labels(rng, (9, 37)).astype(dtype)
    base_s = sparse(lab, x, label_smoothing=0.1, return_grad=True)
    base_d = dense(soft, x, label_smoothing=0.1, return_grad=True)
    for name, v in strided_variants(x):
        s = sparse(lab, v, label_smoothing=0.1, return_grad=True)
        d = dense(soft, v, label_smoothing=0.1, return_grad=True)
        for got, base in ((s, base_s), (d, base_d)):
            # strided may differ from contiguous by a few ULP (docs/contract.md §6)
            np.testing.assert_allclose(got[0], base[0], rtol=0, atol=64 * EPS[np.dtype(dtype)] * 20,
                                       err_msg=name)
            np.testing.assert_allclose(got[1], base[1], rtol=0, atol=64 * EPS[np.dtype(dtype)],
                                       err_msg=name)
    # labels in another layout too
    d2 = dense(np.asfortranarray(soft), x.T.copy().T, label_smoothing=0.1, return_grad=True)
    np.testing.assert_allclose(d2[0], base_d[0], rtol=0, atol=1e-3 if dtype == np.float32 else 1e-12)


@pytest.mark.aarch64
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_transposed_logits_axis0(rng, dtype):
    x = logits_like(rng, (33, 8), dtype)  # classes on axis 0
    soft = soft_labels(rng, (33, 8), axis=0).astype(dtype)
    loss, g = dense(soft, x, axis=0, return_grad=True)
    ref, scale, _ = tf_dense_ref(soft, x, 0)
    assert_bound(loss, ref, scale, dtype)
    gref, gscale = dense_grad_ref(soft, x, 0)
    assert_bound(g, gref, gscale, dtype)
    # the same through a transposed view with sparse labels on the last axis
    lab = rng.integers(0, 33, 8)
    ls, gs = sparse(lab, x.T, return_grad=True)
    ref2, scale2, gref2, _ = torch_rules_ref(lab, x.T)
    assert_bound(ls, ref2, scale2, dtype)
    assert_bound(gs, gref2, np.ones(gs.shape), dtype)


@pytest.mark.aarch64
def test_sparse_float16(rng):
    x = logits_like(rng, (16, 100), np.float16, spread=2)
    lab = rng.integers(0, 100, 16)
    loss, g = sparse(lab, x, return_grad=True, label_smoothing=0.1)
    assert loss.dtype == np.float16 and g.dtype == np.float16
    ref, scale, gref, _ = torch_rules_ref(lab, x, None, 0.1)
    assert np.all(np.abs(loss.astype(LD) - ref) <= 2.0**-11 * np.abs(ref) + 64 * 2.0**-23 * scale)
    assert np.all(np.abs(g.astype(LD) - gref) <= 2.0**-11 * np.abs(gref) + 2.0**-24 + 64 * 2.0**-23)
    s = sparse(lab, x, reduction="sum")
    assert isinstance(s, np.float16)
    # strided float16 goes through the same float32 computation
    np.testing.assert_array_equal(sparse(lab, np.asfortranarray(x)), sparse(lab, x))


# ----------------------------------------------------------- long rows (blocked)
@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_long_rows(rng, dtype):
    n = 300_007  # three blocks of 2**17, the last one short
    x = logits_like(rng, (2, n), dtype)
    x[0, 5] = 40.0  # a dominant entry in the first block
    lab = np.array([5, n - 1])
    loss, g = sparse(lab, x, return_grad=True, label_smoothing=0.05)
    ref, scale, gref, _ = torch_rules_ref(lab, x, None, 0.05)
    assert_bound(loss, ref, scale, dtype)
    assert_bound(g, gref, np.ones(g.shape), dtype)
    soft = np.zeros((2, n), dtype)
    soft[:, ::1000] = 1.0 / len(range(0, n, 1000))
    dl, dg = dense(soft, x, return_grad=True)
    dref, dscale, _ = tf_dense_ref(soft, x)
    assert_bound(dl, dref, dscale, dtype)
    dgref, dgscale = dense_grad_ref(soft, x)
    assert_bound(dg, dgref, dgscale, dtype)
    # a strided long row is gathered block by block: same accuracy
    xs = np.asfortranarray(x)
    assert_bound(sparse(lab, xs, label_smoothing=0.05), ref, scale, dtype)


# ----------------------------------------------------------------------- determinism
@pytest.mark.aarch64
@pytest.mark.parametrize("shape", [(64, 3000), (3, 300_007)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_threads_do_not_change_bits(rng, shape, dtype):
    x = logits_like(rng, shape, dtype)
    lab = rng.integers(0, shape[1], shape[0])
    soft = soft_labels(rng, shape).astype(dtype)
    results = []
    for nt in (1, 2, 3):
        with fs.threads(nt):
            results.append((
                sparse(lab, x, return_grad=True, label_smoothing=0.1),
                sparse(lab, x, reduction="mean"),
                dense(soft, x, return_grad=True, reduction="sum"),
                dense(soft, np.asfortranarray(x), return_grad=True),
            ))
    flat = [[np.asarray(a) for r in res for a in (r if isinstance(r, tuple) else (r,))]
            for res in results]
    for other in flat[1:]:
        for a, b in zip(flat[0], other):
            np.testing.assert_array_equal(a, b)


def test_rows_do_not_depend_on_batch(rng):
    x = logits_like(rng, (40, 257), np.float32)
    lab = rng.integers(0, 257, 40)
    soft = soft_labels(rng, (40, 257)).astype(np.float32)
    full, gfull = sparse(lab, x, return_grad=True)
    dfull = dense(soft, x)
    for i in (0, 17, 39):
        one, gone = sparse(lab[i:i + 1], x[i:i + 1], return_grad=True)
        np.testing.assert_array_equal(one, full[i:i + 1])
        np.testing.assert_array_equal(gone, gfull[i:i + 1])
        np.testing.assert_array_equal(dense(soft[i], x[i]), dfull[i])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_outputs_streamed_same_bits(rng, dtype):
    # Large outputs (8 MiB and more) are written with non-temporal stores; rows of an odd
    # length start at every alignment. Each row must equal the same row computed
    # alone (a small, ordinarily stored output).
    n = 70_001
    rows = (16 << 20) // (n * np.dtype(dtype).itemsize) + 2
    x = logits_like(rng, (rows, n), dtype)
    lab = rng.integers(0, n, rows)
    soft = np.zeros((rows, n), dtype)
    soft[:, ::7] = 1.0 / len(range(0, n, 7))
    ls, gs = sparse(lab, x, return_grad=True, label_smoothing=0.1)
    ld, gd = dense(soft, x, return_grad=True, label_smoothing=0.1)
    for i in (0, 1, 2, rows - 1):
        l1, g1 = sparse(lab[i:i + 1], x[i:i + 1], return_grad=True, label_smoothing=0.1)
        np.testing.assert_array_equal(l1, ls[i:i + 1])
        np.testing.assert_array_equal(g1, gs[i:i + 1])
        l2, g2 = dense(soft[i], x[i], return_grad=True, label_smoothing=0.1)
        np.testing.assert_array_equal(l2, ld[i])
        np.testing.assert_array_equal(g2, gd[i])
    gref = torch_rules_ref(lab[:2], x[:2], None, 0.1)[2]
    assert_bound(gs[:2], gref, np.ones(gref.shape), dtype)


_MEM_SCRIPT = r"""
import json, os, resource
import numpy as np
import fastsoftmax as fs

layout, func = LAYOUT, FUNC

def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

rng = np.random.default_rng(0)

def filled(shape):
    a = np.empty(shape, np.float32)
    rng.standard_normal(dtype=np.float32, out=a)
    return a

M, N = 2048, 4096  # 32 MiB of float32 logits
if layout == "C":
    x = filled((M, N))
elif layout == "transposed":
    x = filled((N, M)).T
elif layout == "stepped":
    x = filled((M, 2 * N))[:, ::2]
lab = rng.integers(0, N, M)
soft = np.full(N, 1.0 / N, np.float32)  # broadcast labels: no full-size array
if func == "sparse":
    call = lambda z, l, s: fs.sparse_softmax_cross_entropy_with_logits(l, z, label_smoothing=0.1)
elif func == "sparse_grad":
    call = lambda z, l, s: fs.sparse_softmax_cross_entropy_with_logits(l, z, return_grad=True)
elif func == "dense":
    call = lambda z, l, s: fs.softmax_cross_entropy_with_logits(s, z, reduction="mean")
else:
    call = lambda z, l, s: fs.softmax_cross_entropy_with_logits(s, z, return_grad=True)
call(x[:8], lab[:8], soft)  # warm up: thread team, per-thread buffers
base = peak()
call(x, lab, soft)
extra = peak() - base
r0 = rss()
for _ in range(20):
    call(x[:64], lab[:64], soft)
    try:
        fs.sparse_softmax_cross_entropy_with_logits(lab[:64] + N, x[:64])
    except ValueError:
        pass
grow = rss() - r0
print(json.dumps({"extra": extra, "grow": grow}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["C", "transposed", "stepped"])
@pytest.mark.parametrize("func", ["sparse", "sparse_grad", "dense", "dense_grad"])
def test_no_input_sized_temporary(layout, func):
    import json

    from _ref import run_python

    code = _MEM_SCRIPT.replace("LAYOUT, FUNC", f"{layout!r}, {func!r}")
    p = run_python(code)
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout.strip().splitlines()[-1])
    mib = 1 << 20
    allowed = 16 * mib + (32 * mib if func.endswith("grad") else 0)  # + the gradient
    assert r["extra"] < allowed, f"{r['extra'] / mib:.1f} MiB extra"
    assert r["grow"] < 4 * mib, f"RSS grew {r['grow'] / mib:.1f} MiB over 20 calls"


# ------------------------------------------------------------------ accuracy sweep
@pytest.mark.aarch64
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 2, 15, 16, 17, 127, 129, 1000])
@pytest.mark.parametrize("spread", [1.0, 30.0, 1e4])
def test_accuracy_bound(rng, dtype, n, spread):
    x = logits_like(rng, (6, n), dtype, spread) + dtype(spread)  # an offset too
    lab = rng.integers(0, n, 6)
    loss, g = sparse(lab, x, return_grad=True, label_smoothing=0.1)
    ref, scale, gref, _ = torch_rules_ref(lab, x, None, 0.1)
    assert_bound(loss, ref, scale, dtype)
    assert_bound(g, gref, np.ones(g.shape), dtype)
    soft = soft_labels(rng, (6, n)).astype(dtype)
    dl, dg = dense(soft, x, return_grad=True, label_smoothing=0.1)
    dref, dscale, _ = tf_dense_ref(soft, x, eps=0.1)
    assert_bound(dl, dref, dscale, dtype)
    dgref, dgscale = dense_grad_ref(soft, x, eps=0.1)
    assert_bound(dg, dgref, dgscale, dtype)
