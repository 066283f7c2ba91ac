"""The training-side entries of the kernel table, once per available ISA.

``xent_grad_row`` (the sparse cross-entropy gradient of a one-block row, fused with
the row's reduction) and ``log_softmax_backward_row`` (exp, product and store of a
one-block log_softmax backward), reached through the public API with the ``isa``
fixture switching the active table: row lengths around every vector width and tail
(1..65, 127..129, 255..257, 1000) and around the block size (2^17 - 1, 2^17, and
2^17 + 1, which takes the multi-block path), labels at the first, last and a middle
position (the lane the kernel patches), float32/float64; against float64/long-double
NumPy references that do not use fastsoftmax (docs/contract.md §5: absolute error <= 64 eps
times the row's scale). Also: the loss with the gradient has the bits of the loss without it
(the fused kernel returns `reduce`'s partial), special rows, and streamed outputs
(large batches, misaligned out) have the bits of the same rows computed alone.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastsoftmax as fs

pytestmark = pytest.mark.usefixtures("isa")

LD = np.longdouble
BLOCK = 1 << 17
LENGTHS = list(range(1, 66)) + [127, 128, 129, 255, 256, 257, 1000]
BIG = [BLOCK - 1, BLOCK, BLOCK + 1]
FLOATS = [np.float32, np.float64]
EPS = {np.dtype(np.float32): 2.0**-23, np.dtype(np.float64): 2.0**-52}


def sparse_ref(x, lab, eps=0.0, scale=1.0):
    """(loss, grad, loss scale, grad scale) in long double: PyTorch's rules."""
    x = np.asarray(x, LD)
    n = x.shape[-1]
    m = x.max(-1, keepdims=True)
    lse = np.log(np.exp(x - m).sum(-1, keepdims=True)) + m
    lsm = x - lse
    rows = np.arange(x.shape[0])
    t = np.full(x.shape, LD(eps) / n)
    t[rows, lab] += 1 - LD(eps)
    with np.errstate(invalid="ignore"):
        loss = -np.where(t != 0, t * lsm, 0).sum(-1)  # 0 * log 0 = 0, as xlogy
        lscale = np.maximum(1, np.maximum(np.abs(loss), np.nanmax(np.where(np.isinf(x), 0, np.abs(x - m)), -1)))
    grad = (np.exp(lsm) - t) * LD(scale)
    gscale = np.broadcast_to(np.maximum(1, np.abs(loss))[:, None], grad.shape)
    return loss, grad, lscale, gscale


def assert_close(got, ref, scale, dtype, k=64):
    err = np.abs(np.asarray(got, LD) - ref)
    bound = k * EPS[np.dtype(dtype)] * np.asarray(scale, LD)
    assert np.all(err <= bound), float(np.max(err / bound))


def labels_for(n):
    return np.array([0, n - 1, n // 2])


def run_sparse(x, lab, **kw):
    loss, g = fs.sparse_softmax_cross_entropy_with_logits(lab, x, return_grad=True, **kw)
    loss_only = fs.sparse_softmax_cross_entropy_with_logits(lab, x, **kw)
    return loss, g, loss_only


@pytest.mark.aarch64
@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
def test_sparse_grad_lengths(rng, dtype):
    for n in LENGTHS:
        x = (rng.standard_normal((3, n)) * 4).astype(dtype)
        lab = labels_for(n)
        loss, g, loss_only = run_sparse(x, lab)
        assert np.array_equal(loss, loss_only), n  # the partial is reduce's
        rl, rg, ls, gs = sparse_ref(x, lab)
        assert_close(loss, rl, ls, dtype)
        assert_close(g, rg, gs, dtype)


@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_sparse_grad_smoothing_and_reduction(rng, dtype, reduction):
    for n in [1, 2, 15, 16, 17, 31, 33, 64, 65, 129, 1000]:
        x = (rng.standard_normal((3, n)) * 4).astype(dtype)
        lab = labels_for(n)
        loss, g, loss_only = run_sparse(x, lab, label_smoothing=0.1, reduction=reduction)
        assert np.array_equal(loss, loss_only), n
        scale = 1.0 / 3 if reduction == "mean" else 1.0
        rl, rg, ls, gs = sparse_ref(x, lab, eps=0.1, scale=scale)
        tot = rl.mean() if reduction == "mean" else rl.sum()
        assert_close(loss, tot, 3 * ls.max(), dtype)
        assert_close(g, rg, gs, dtype)


@pytest.mark.parametrize("n", BIG)
def test_sparse_grad_block_edges(rng, n):
    x = (rng.standard_normal((2, n)) * 4).astype(np.float32)
    lab = np.array([n - 1, 1])
    loss, g, loss_only = run_sparse(x, lab)
    assert np.array_equal(loss, loss_only)
    rl, rg, ls, gs = sparse_ref(x, lab)
    assert_close(loss, rl, ls, np.float32)
    assert_close(g, rg, gs, np.float32)


SUB = 1 << 14  # reduce_train's sub-block (kernels/generic/training_rows.h kTrainSub)


@pytest.mark.aarch64
@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("n", [SUB - 1, SUB, SUB + 1, 2 * SUB + 5, 3 * SUB - 7])
def test_sparse_sub_blocks(rng, dtype, n):
    """Rows cut into sub-blocks, merged: the max in a later sub-block (or in the
    first), a masked (all -inf) sub-block, labels in every sub-block; the loss with
    the gradient has the bits of the loss alone, and the dense loss agrees."""
    x = (rng.standard_normal((4, n)) * 4).astype(dtype)
    x[0, n - 2] = 30.0  # dominant entry in the last sub-block
    x[1, 3] = 30.0  # ... in the first
    x[2, : min(n - 1, SUB)] = -np.inf  # the first sub-block masked
    x[3, SUB // 2 :: 3] = -np.inf  # masked classes across sub-blocks
    j = min(SUB + 1, n - 1)  # row 3's label, on a finite logit
    j -= (j - SUB // 2) % 3 == 0
    lab = np.array([n - 1, 0, n - 1, j])
    loss, g, loss_only = run_sparse(x, lab)
    assert np.array_equal(loss, loss_only)
    rl, rg, ls, gs = sparse_ref(x, lab)
    assert_close(loss, rl, ls, dtype)
    assert_close(g, rg, gs, dtype)
    onehot = np.zeros(x.shape, dtype)
    onehot[np.arange(4), lab] = 1
    assert_close(fs.softmax_cross_entropy_with_logits(onehot, x), rl, ls, dtype)


@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
def test_sparse_sub_block_specials(dtype):
    """NaN or +inf in a later sub-block makes the row special (nan loss and
    gradient); an all -inf row is +inf loss, gradient -1 at the label."""
    n = 2 * SUB + 3
    x = np.zeros((4, n), dtype)
    x[0, SUB + 7] = np.nan
    x[1, n - 1] = np.inf
    x[2, :] = -np.inf
    x[3, SUB:] = -np.inf  # finite first sub-block only; label among the masked
    lab = np.array([0, 1, 5, n - 1])
    loss, g, loss_only = run_sparse(x, lab)
    assert np.isnan(loss[:2]).all() and np.isnan(g[:2]).all()
    assert np.isnan(loss_only[:2]).all()
    assert loss[2] == np.inf and loss_only[2] == np.inf
    want = np.zeros(n)
    want[5] = -1.0
    assert np.array_equal(g[2], want)
    assert loss[3] == np.inf and loss_only[3] == np.inf  # target logit -inf
    assert np.all(g[3, SUB:-1] == 0) and g[3, -1] == -1.0
    np.testing.assert_allclose(g[3, :SUB], 1.0 / SUB, rtol=1e-6)


@pytest.mark.aarch64
@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
def test_sparse_grad_special_rows(dtype):
    n = 37
    x = np.zeros((5, n), dtype)
    x[0, 3] = np.nan
    x[1, 30] = np.inf
    x[2, :] = -np.inf
    x[3, ::2] = -np.inf  # masked classes, finite elsewhere
    x[4, 36] = np.nan  # in the tail vector
    lab = np.array([1, 2, 4, 1, 0])
    loss, g = fs.sparse_softmax_cross_entropy_with_logits(lab, x, return_grad=True)
    assert np.isnan(loss[[0, 1, 4]]).all() and np.isnan(g[[0, 1, 4]]).all()
    assert loss[2] == np.inf
    want = np.zeros(n)
    want[4] = -1.0
    assert np.array_equal(g[2], want)
    assert np.isfinite(loss[3]) and np.isfinite(g[3]).all()
    assert np.all(g[3, ::2][1:] == 0) and g[3, 1] < 0
    rl, rg, ls, gs = sparse_ref(x[3:4], lab[3:4])
    assert_close(loss[3:4], rl, ls, dtype)
    assert_close(g[3:4], rg, gs, dtype)


def test_sparse_grad_rows_independent_of_batch(rng):
    # a large batch (streamed outputs elsewhere) gives each row the bits it gets alone
    x = (rng.standard_normal((40, 60001)) * 3).astype(np.float32)
    lab = rng.integers(0, 60001, 40)
    loss, g = fs.sparse_softmax_cross_entropy_with_logits(lab, x, return_grad=True)
    for r in (0, 17, 39):
        l1, g1 = fs.sparse_softmax_cross_entropy_with_logits(lab[r:r + 1], x[r:r + 1],
                                                             return_grad=True)
        assert np.array_equal(l1, loss[r:r + 1]) and np.array_equal(g1, g[r:r + 1])
    # a strided row (gathered) against the same row contiguous: within the bound
    xs = np.repeat(x[:2], 2, axis=1)[:, ::2]
    ls_, gs_ = fs.sparse_softmax_cross_entropy_with_logits(lab[:2], xs, return_grad=True)
    rl, rg, lsc, gsc = sparse_ref(x[:2], lab[:2])
    assert_close(ls_, rl, lsc, np.float32)
    assert_close(gs_, rg, gsc, np.float32)


@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
def test_sparse_grad_streamed_rows(rng, dtype):
    """A gradient large enough to be streamed (>= 8 MiB, rows >= 64 KiB: exps in the
    row buffer, non-temporal stores): every row has the bits it gets alone (not
    streamed), with labels at the first, last and a middle class, special rows (NaN,
    +inf, all -inf) and a masked sub-block beside ordinary ones; against the reference."""
    rows, n = (40, 60001) if dtype == np.float32 else (20, 60001)
    x = (rng.standard_normal((rows, n)) * 3).astype(dtype)
    x[1, 5] = np.nan
    x[2, n - 3] = np.inf
    x[3, :] = -np.inf
    x[4, : SUB + 3] = -np.inf
    lab = rng.integers(0, n, rows)
    lab[[0, 4, 5, 6]] = [0, n - 1, n // 2, 1]
    loss, g = fs.sparse_softmax_cross_entropy_with_logits(lab, x, return_grad=True)
    for r in (0, 1, 2, 3, 4, 5, 6, rows - 1):
        l1, g1 = fs.sparse_softmax_cross_entropy_with_logits(lab[r:r + 1], x[r:r + 1],
                                                             return_grad=True)
        np.testing.assert_array_equal(l1, loss[r:r + 1])
        np.testing.assert_array_equal(g1, g[r:r + 1])
    ok = [0, 4, 5, 6, rows - 1]
    rl, rg, ls, gs = sparse_ref(x[ok], lab[ok])
    assert_close(loss[ok], rl, ls, dtype)
    assert_close(g[ok], rg, gs, dtype)


# ------------------------------------------------------------------ log_softmax backward
def lsm_bwd_ref(g, y):
    g = np.asarray(g, LD)
    y = np.asarray(y, LD)
    with np.errstate(invalid="ignore", over="ignore"):
        s = g.sum(-1, keepdims=True)
        e = np.exp(y)
        out = g - e * s
        scale = np.maximum(1, np.maximum(np.abs(g).max(-1, keepdims=True), np.abs(s))) * np.maximum(1, e)
    return out, scale


def log_probs(rng, shape, dtype):
    x = rng.standard_normal(shape) * 3
    return (x - np.log(np.exp(x - x.max(-1, keepdims=True)).sum(-1, keepdims=True))
            - x.max(-1, keepdims=True)).astype(dtype)


@pytest.mark.aarch64
@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
def test_log_softmax_backward_lengths(rng, dtype):
    for n in LENGTHS:
        y = log_probs(rng, (3, n), dtype)
        g = rng.standard_normal((3, n)).astype(dtype)
        got = fs.log_softmax_backward(g, y)
        ref, scale = lsm_bwd_ref(g, y)
        assert_close(got, ref, scale, dtype)


@pytest.mark.parametrize("n", BIG)
def test_log_softmax_backward_block_edges(rng, n):
    y = log_probs(rng, (2, n), np.float32)
    g = rng.standard_normal((2, n)).astype(np.float32)
    ref, scale = lsm_bwd_ref(g, y)
    assert_close(fs.log_softmax_backward(g, y), ref, scale, np.float32)


@pytest.mark.aarch64
@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
def test_log_softmax_backward_special_and_positive(rng, dtype):
    n = 45
    y = log_probs(rng, (4, n), dtype)
    g = rng.standard_normal((4, n)).astype(dtype)
    y[0, 5] = -np.inf  # a masked class: exp = 0
    y[1, 44] = np.nan  # NaN in the tail
    y[2, 7] = 0.5  # not a log-probability: the careful exp
    y[3, :] = 0.0
    got = fs.log_softmax_backward(g, y)
    ref, scale = lsm_bwd_ref(g, y)
    assert np.isnan(got[1, 44]) and np.isfinite(np.delete(got[1], 44)).all()
    ok = np.isfinite(ref)
    assert np.array_equal(ok, np.isfinite(got))
    assert_close(got[ok], ref[ok], scale[ok], dtype)


@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
def test_log_softmax_backward_streamed_and_in_place(rng, dtype):
    # outputs of >= 8 MiB are streamed (from the first 64-byte boundary of each row):
    # every row has the bits it gets alone, also into a misaligned out, and in place
    rows, n = (40, 60001) if dtype == np.float32 else (20, 60001)
    y = log_probs(rng, (rows, n), dtype)
    g = rng.standard_normal((rows, n)).astype(dtype)
    full = fs.log_softmax_backward(g, y)
    buf = np.empty(rows * n + 1, dtype)
    out = buf[1:].reshape(rows, n)
    fs.log_softmax_backward(g, y, out=out)
    assert np.array_equal(out, full)
    for r in (0, rows // 2, rows - 1):
        assert np.array_equal(fs.log_softmax_backward(g[r:r + 1], y[r:r + 1]), full[r:r + 1])
    g2 = g.copy()
    fs.log_softmax_backward(g2, y, out=g2)
    assert np.array_equal(g2, full)
    ref, scale = lsm_bwd_ref(g[:2], y[:2])
    assert_close(full[:2], ref, scale, dtype)
