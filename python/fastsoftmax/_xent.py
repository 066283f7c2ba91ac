"""Cross-entropy with logits and the softmax backward passes (the training side).

Arguments are checked and normalized here; the work is done in one fused C++ pass
per row (``_core._xent_sparse``, ``_core._xent_dense``, ``_core._softmax_backward``),
which sees every array as ``(outer dims..., classes)``: the reduced axis is moved
last as a view, never copied (a tuple of axes that cannot be merged into one by a
view is the one case that copies).

Decisions where the references differ or are silent:

* ``labels`` of the dense form may be bool, integer or float. Bool, int32, int64 and
  float labels are read in their own dtype (no full-size copy) and converted to the
  logits' compute dtype on the fly; other integer dtypes are cast first (before
  broadcasting).
* Sparse labels must be integers of exactly ``logits.shape[:-1]`` (bool or float:
  ``TypeError``). ``ignore_index`` may be any int, also one inside ``[0, C)``.
* With ``reduction="sum"`` or ``"mean"`` the loss is a NumPy scalar of the logits'
  dtype; "mean" of the dense form divides by the number of rows (PyTorch's rule for
  probability targets); "mean" of zero counted rows is nan, silently.
* The gradient of ignored rows is 0. For "none" it is the gradient of the sum of the
  per-row losses (TensorFlow's ``softmax_cross_entropy_with_logits`` gradient).
* ``softmax_backward`` / ``log_softmax_backward``: ``grad`` and ``y`` broadcast
  together; the result has their common dtype (bool/int -> float64).
"""

from __future__ import annotations

import math
import numbers
import operator

import numpy as np

from . import _api, _core

_REDUCTIONS = {"none": 0, "sum": 1, "mean": 2}
_I64 = np.iinfo(np.int64)
# dtypes the core reads as they are (native byte order)
_NATIVE_FLOATS = frozenset(np.dtype(t) for t in (np.float16, np.float32, np.float64))
_DIRECT_INTS = frozenset(np.dtype(t) for t in (np.bool_, np.int32, np.int64))


def _direct(a) -> bool:
    """An ndarray the core can take as it is: native float16/32/64, aligned."""
    return type(a) is np.ndarray and a.dtype in _NATIVE_FLOATS and a.flags.aligned


def _reduction(reduction) -> int:
    if isinstance(reduction, str) and reduction in _REDUCTIONS:
        return _REDUCTIONS[reduction]
    raise ValueError(f"reduction must be 'none', 'sum' or 'mean'; got {reduction!r}")


def _smoothing(eps) -> float:
    if type(eps) is float and 0.0 <= eps <= 1.0:
        return eps
    if isinstance(eps, (bool, np.bool_)) or not isinstance(eps, numbers.Real):
        raise TypeError(f"label_smoothing must be a real number; got {type(eps).__name__}")
    e = float(eps)
    if not (0.0 <= e <= 1.0):  # also rejects nan
        raise ValueError(f"label_smoothing must be in [0, 1]; got {eps!r}")
    return e


def _logits(logits) -> np.ndarray:
    return _api._prepare(logits, None, "logits")


def _rows_view(a: np.ndarray, axes: tuple[int, ...]) -> np.ndarray | None:
    """``a`` with ``axes`` moved last and merged into one, as a view (None if impossible)."""
    k = len(axes)
    nd = a.ndim
    moved = np.moveaxis(a, axes, tuple(range(nd - k, nd)))
    if k == 1:
        return moved
    outer = moved.shape[: nd - k]
    n = math.prod(moved.shape[nd - k:])
    v = moved.view()
    try:
        v.shape = outer + (n,)  # raises instead of copying
    except AttributeError:
        return None
    return v


def _rows(a: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """Like _rows_view, copying when the axes cannot be merged by a view."""
    v = _rows_view(a, axes)
    if v is None:
        k = len(axes)
        moved = np.moveaxis(a, axes, tuple(range(a.ndim - k, a.ndim)))
        v = moved.reshape(moved.shape[: a.ndim - k] + (-1,))
    return v


def _finish_loss(loss: np.ndarray):
    return loss[()] if loss.ndim == 0 else loss


# --------------------------------------------------------------------------- sparse
def _int_labels(labels) -> np.ndarray:
    """Integer labels as an aligned native int32/int64 array (uint64 kept as is)."""
    lab = np.asarray(labels)
    if lab.dtype.kind not in "iu":
        hint = ""
        if lab.dtype.kind == "f":
            hint = " (use softmax_cross_entropy_with_logits for probabilities)"
        raise TypeError(f"labels must be integer class indices; got dtype {lab.dtype}{hint}")
    if lab.dtype.kind == "u" and lab.dtype.itemsize == 8:
        return lab
    native = lab.dtype.isnative and lab.flags.aligned
    if lab.dtype.kind == "i" and lab.dtype.itemsize in (4, 8) and native:
        return lab
    return lab.astype(np.int64)


def _uint64_labels(lab: np.ndarray, n: int, ign) -> np.ndarray:
    """uint64 labels as int64, raising for values that do not fit (all out of range)."""
    flat = lab.reshape(-1)
    huge = flat > _I64.max
    if huge.any():
        bad = flat >= n
        if ign is not None and ign >= 0:
            bad &= flat != np.uint64(ign)
        first = int(np.flatnonzero(bad)[0])
        pos = ", ".join(map(str, np.unravel_index(first, lab.shape)))
        where = f"labels[{pos}]" if lab.ndim else "labels"
        raise ValueError(f"{where} = {int(flat[first])} is out of range [0, {n})")
    return lab.astype(np.int64)


def _ignore(ignore_index):
    if ignore_index is None:
        return None
    if isinstance(ignore_index, (bool, np.bool_)):
        raise TypeError("ignore_index must be an int or None; got bool")
    try:
        v = operator.index(ignore_index)
    except TypeError:
        raise TypeError(
            f"ignore_index must be an int or None; got {type(ignore_index).__name__}"
        ) from None
    if not (_I64.min <= v <= _I64.max):
        return None  # no int64 label can equal it
    return v


def sparse_softmax_cross_entropy_with_logits(
    labels,
    logits,
    *,
    reduction="none",
    ignore_index=None,
    label_smoothing=0.0,
    return_grad=False,
):
    """Cross-entropy of integer class ``labels`` against ``logits`` (classes on the last axis).

    As ``tf.nn.sparse_softmax_cross_entropy_with_logits``: ``labels`` has shape
    ``logits.shape[:-1]`` and values in ``[0, C)``; the per-row loss is
    ``logsumexp(logits) - logits[label]``. PyTorch's ``cross_entropy`` options:
    ``reduction`` ("none", "sum", "mean"), ``ignore_index`` (those rows give 0 and
    are left out of the mean) and ``label_smoothing`` (target
    ``(1 - eps) * onehot + eps / C``). With ``return_grad=True`` returns
    ``(loss, dlogits)``: the gradient of the reduced loss (of the sum for "none").
    """
    if _api._is_dask(labels, logits):  # a lazy result (docs/contract.md §13)
        return _api._dask().sparse_softmax_cross_entropy_with_logits(
            labels, logits, reduction=reduction, ignore_index=ignore_index,
            label_smoothing=label_smoothing, return_grad=return_grad)
    red = _reduction(reduction)
    eps = _smoothing(label_smoothing)
    ign = _ignore(ignore_index)
    x = _logits(logits)
    if x.ndim == 0:
        raise ValueError("logits must have at least one dimension (the classes, last)")
    lab = _int_labels(labels)
    if lab.shape != x.shape[:-1]:
        raise ValueError(
            f"labels has shape {lab.shape}; expected logits.shape[:-1] = {x.shape[:-1]}"
        )
    if lab.dtype.kind == "u":
        lab = _uint64_labels(lab, x.shape[-1], ign)
    loss = np.empty(x.shape[:-1] if red == 0 else (), x.dtype)
    grad = np.empty_like(x) if return_grad else None
    _core._xent_sparse(x, lab, ign, eps, red, loss, grad)
    out = _finish_loss(loss)
    return (out, grad) if return_grad else out


# ---------------------------------------------------------------------------- dense
def _float_labels(labels, x: np.ndarray) -> np.ndarray:
    lab = np.asarray(labels)
    kind = lab.dtype.kind
    if kind in "biu":  # the core reads bool, int32 and int64 as they are
        if lab.dtype in _DIRECT_INTS and lab.flags.aligned:
            return lab
        return _api._cast(lab, x.dtype)  # an int beyond float16's range: inf, no warning
    fd = _api._float_dtype(lab.dtype) if kind == "f" else None
    if fd is None:
        raise TypeError(
            f"labels has unsupported dtype {lab.dtype}: expected a float, integer or bool dtype"
        )
    if lab.dtype != fd or not lab.flags.aligned:
        lab = lab.astype(fd)
    return lab


def softmax_cross_entropy_with_logits(
    labels, logits, axis=-1, *, reduction="none", label_smoothing=0.0, return_grad=False
):
    """Cross-entropy of the distributions ``labels`` against ``logits`` along ``axis``.

    As ``tf.nn.softmax_cross_entropy_with_logits``: per-row loss
    ``-sum(labels * log_softmax(logits, axis), axis)`` with ``0 * -inf = 0``;
    ``labels`` broadcast to ``logits`` and need not be one-hot. ``reduction`` and
    ``label_smoothing`` (target ``(1 - eps) * labels + eps / C``) as PyTorch's
    ``cross_entropy`` with probability targets. With ``return_grad=True`` returns
    ``(loss, dlogits)``: ``(softmax * sum(target) - target) * scale``.
    """
    if _api._is_dask(labels, logits):  # a lazy result (docs/contract.md §13)
        return _api._dask().softmax_cross_entropy_with_logits(
            labels, logits, axis, reduction=reduction, label_smoothing=label_smoothing,
            return_grad=return_grad)
    red = _reduction(reduction)
    eps = _smoothing(label_smoothing)
    x = _logits(logits)
    lab = _float_labels(labels, x)
    if lab.shape != x.shape:
        try:
            bshape = np.broadcast_shapes(lab.shape, x.shape)
        except ValueError:
            bshape = None
        if bshape != x.shape:
            raise ValueError(
                f"labels of shape {lab.shape} do not broadcast to logits' shape {x.shape}"
            )
        lab = np.broadcast_to(lab, x.shape)
    nd = x.ndim
    if type(axis) is int and nd and (axis == -1 or axis == nd - 1):
        axes = (nd - 1,)
    elif nd == 0 and axis is None:
        x, lab = x.reshape(1), lab.reshape(1)
        axes = (0,)
    else:
        axes = _api._axes(axis, nd)
        if not axes:  # no axis: every element is a row of one class
            x, lab = x[..., None], lab[..., None]
            axes = (x.ndim - 1,)
    last = axes == (x.ndim - 1,)
    xr = x if last else _rows(x, axes)
    lr = lab if last else _rows(lab, axes)
    loss = np.empty(xr.shape[:-1] if red == 0 else (), x.dtype)
    grad = gr = None
    if return_grad:
        grad = np.empty_like(x)
        gr = grad if last else _rows_view(grad, axes)
        if gr is None:
            gr = np.empty(xr.shape, x.dtype)
    _core._xent_dense(lr, xr, eps, red, loss, gr)
    out = _finish_loss(loss)
    if not return_grad:
        return out
    if gr.base is not grad and gr is not grad:  # computed in merged-axes order: put it back
        k = len(axes)
        moved = np.moveaxis(grad, axes, tuple(range(grad.ndim - k, grad.ndim)))
        moved[...] = gr.reshape(moved.shape)
    return out, grad


# ------------------------------------------------------------------------- backward
def _backward(log: bool, grad, y, axis, out):
    # Fast path: two native float arrays of one shape and dtype, an int axis.
    if _direct(grad) and _direct(y) and grad.dtype == y.dtype and grad.shape == y.shape:
        nd = grad.ndim
        if type(axis) is int and -nd <= axis < nd:
            a = axis % nd
            if out is None:
                target, copy_to = np.empty_like(grad), None
            else:
                target, copy_to = _api._out(out, grad.shape, grad.dtype, (grad, y))
            if a == nd - 1:
                _core._softmax_backward(log, grad, y, target)
            else:  # rows along `a`: swap it last (element-wise output, any row order)
                _core._softmax_backward(
                    log, grad.swapaxes(a, -1), y.swapaxes(a, -1), target.swapaxes(a, -1)
                )
            if copy_to is not None:
                np.copyto(copy_to, target, casting="unsafe")
                return copy_to
            return target
    g = np.asarray(grad)
    yy = np.asarray(y)
    dt = np.result_type(_api._compute_dtype(g, None, "grad"), _api._compute_dtype(yy, None, "y"))
    g = _api._prepare(g, dt, "grad")
    yy = _api._prepare(yy, dt, "y")
    try:
        shape = np.broadcast_shapes(g.shape, yy.shape)
    except ValueError:
        raise ValueError(
            f"grad of shape {g.shape} and y of shape {yy.shape} do not broadcast together"
        ) from None
    g = np.broadcast_to(g, shape)
    yy = np.broadcast_to(yy, shape)
    if out is None:
        target, copy_to = np.empty(shape, dt), None
    else:
        target, copy_to = _api._out(out, shape, dt, (g, yy))
    if len(shape) == 0 and axis is None:
        axes = (0,)
        g, yy, tv = g.reshape(1), yy.reshape(1), target.reshape(1)
    else:
        axes = _api._axes(axis, len(shape))
        tv = target
    if not axes:
        g, yy, tv = g[..., None], yy[..., None], tv[..., None]
        axes = (g.ndim - 1,)
    gr = _rows(g, axes)
    yr = _rows(yy, axes)
    tr = _rows_view(tv, axes)
    scratch = tr is None
    if scratch:
        tr = np.empty(gr.shape, dt)
    _core._softmax_backward(log, gr, yr, tr)
    if scratch:
        k = len(axes)
        moved = np.moveaxis(tv, axes, tuple(range(tv.ndim - k, tv.ndim)))
        moved[...] = tr.reshape(moved.shape)
    if copy_to is not None:
        np.copyto(copy_to, target, casting="unsafe")
        return copy_to
    return target


def softmax_backward(grad, y, axis=-1, *, out=None):
    """Vector-Jacobian product of softmax: ``y * (grad - sum(grad * y, axis))``.

    ``y`` is the softmax output along ``axis``. Fused: one pass for the sum, one to
    write. ``out`` as for ``softmax`` (any strides; may be ``grad`` or ``y``).
    """
    return _backward(False, grad, y, axis, out)


def log_softmax_backward(grad, y, axis=-1, *, out=None):
    """Vector-Jacobian product of log_softmax: ``grad - exp(y) * sum(grad, axis)``.

    ``y`` is the log_softmax output along ``axis``.
    """
    return _backward(True, grad, y, axis, out)
