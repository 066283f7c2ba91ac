"""fastsoftmax on ``dask.array``: lazy softmax, log_softmax, logsumexp, the
cross-entropies and top_k of arrays chunked across tasks (``pip install
fastsoftmax[dask]``). docs/contract.md §13 holds the semantics.

Two plans, chosen from the chunks of the reduced axes:
- every reduced axis in one chunk: one blockwise task per chunk calling the NumPy
  function (the same bits as ``fastsoftmax.softmax`` on that chunk);
- a reduced axis split across chunks: each chunk's rows reduce to partials (max, sum
  of exp(x - max), rest = that sum with the max's own term set apart, for log1p;
  ``_core._row_partials``), the partials of a row merge as a long row's blocks do
  (csrc/include/fastsoftmax/merge.h) in a fixed tree (dask's reduction, chunk order),
  then each chunk is finished from its rows' merged partials (``_core._row_finish``).
The graph is fixed by the chunking, so the bits do not depend on the scheduler, the
worker count or the order in which tasks complete.

Arguments follow the NumPy functions' rules (``_api``, ``_xent``, ``_select``); what a
lazy array cannot offer is refused: ``out=``, logsumexp's ``b=`` and ``return_sign``,
the cross-entropies' ``return_grad``.
"""

from __future__ import annotations

import functools
import math
import threading

import dask.array as da
import numpy as np

from . import _api, _core, _select, _xent

__all__ = [
    "softmax",
    "log_softmax",
    "logsumexp",
    "sparse_softmax_cross_entropy_with_logits",
    "softmax_cross_entropy_with_logits",
    "top_k",
]

# A row's partial: max, sum of exp(x - max), and rest (sum - 1, the max's term apart).
_P = np.dtype([("max", "f8"), ("sum", "f8"), ("rest", "f8")])
_SOFTMAX, _LOG_SOFTMAX = 0, 1
_F32 = np.dtype(np.float32)


def _unsupported(name: str, value, default=None) -> None:
    if value is not default:
        raise TypeError(f"{name}= is not supported for dask arrays")


def _as_dask(a):
    return a if isinstance(a, da.Array) else da.asarray(a)


def _broadcast_like(a, x):
    """a (broadcastable to x) as a dask array of x's shape and chunks (a view per chunk)."""
    a = _as_dask(a)
    a = a.reshape((1,) * (x.ndim - a.ndim) + a.shape) if a.ndim < x.ndim else a
    a = a.rechunk(tuple(c if s != 1 else (1,) for s, c in zip(a.shape, x.chunks)))
    return da.broadcast_to(a, x.shape, chunks=x.chunks)


def _meta(ndim: int, dtype) -> np.ndarray:
    return np.empty((0,) * ndim, dtype)


def _cd(rd: np.dtype) -> np.dtype:
    """The compute dtype of a result dtype (float16 is computed in float32)."""
    return _F32 if rd.itemsize == 2 else rd


# ---------------------------------------------------------------- threads per task
# A dask worker thread that calls the core would start an OpenMP team of its own: with
# several tasks in flight (the threaded scheduler, a multi-threaded worker) that makes
# tasks x threads OS threads on the same cores, each team spinning while it waits.
# So a task that runs outside the main thread computes on one thread (a thread-local
# setting, _core._set_thread_local_threads): dask's parallelism over the chunks fills
# the cores (measured: bench/dask_cases.py, bench/RESULTS.md). A task on the main thread
# (the synchronous scheduler) keeps fastsoftmax's thread setting.
_TASK_THREADS = 1  # 0: no override (bench/dask_cases.py measures both)


class _one_thread_per_task:
    def __enter__(self):
        self.prev = None
        if _TASK_THREADS and threading.current_thread() is not threading.main_thread():
            self.prev = _core._set_thread_local_threads(_TASK_THREADS)
        return self

    def __exit__(self, *exc):
        if self.prev is not None:
            _core._set_thread_local_threads(self.prev)


# ------------------------------------------------------------------- validation
def _axes(x, axis) -> tuple[int, ...]:
    if x.ndim == 0 and axis is None:
        return ()
    return _api._axes(axis, x.ndim)


def _where(where, x):
    """where= as a dask bool array of x's shape and chunks (the rule of _api._where)."""
    if where is None:
        return None
    w = where if isinstance(where, da.Array) else np.asarray(where)
    if w.dtype != np.bool_:
        raise TypeError(f"where must be a boolean array; got dtype {w.dtype}")
    try:
        bshape = np.broadcast_shapes(w.shape, x.shape)
    except ValueError:
        bshape = None
    if bshape != tuple(x.shape):
        raise ValueError(f"where of shape {w.shape} does not broadcast to x's shape {x.shape}")
    return _broadcast_like(w, x)


# ------------------------------------------------------------- per-block pieces
def _rows(xb: np.ndarray, axes, cd: np.dtype, t: float, wb):
    """A block's rows: kept axes first, reduced axes last and flattened, as a (rows, n)
    array of contiguous rows (a view of the chunk where it can be) of the compute
    dtype; masked entries -inf (they take no part, docs/contract.md §2.6), then x / t
    (one division in the compute dtype)."""
    kept = [d for d in range(xb.ndim) if d not in axes]
    perm = kept + list(axes)
    kshape = tuple(xb.shape[d] for d in kept)
    n = math.prod(xb.shape[d] for d in axes)
    xt = xb.transpose(perm)
    if xt.dtype == np.float16 and cd == _F32 and xt.flags.c_contiguous:
        r = _api._prepare(xt, cd)  # the ISA's conversion
    elif xt.dtype != cd or not xt.dtype.isnative:
        r = _api._cast(xt, cd)
    else:
        r = xt  # no copy: the chunk itself when its reduced axes are last
    r = r.reshape(math.prod(kshape), n)  # a view where it can be (a chunk of rows)
    rows_ok = r.shape[0] <= 1 or (r.strides[0] >= 0 and r.strides[0] % r.itemsize == 0)
    if r.size and not (rows_ok and (n <= 1 or r.strides[1] == r.itemsize)):
        r = np.ascontiguousarray(r)
    if wb is not None:
        r = np.where(wb.transpose(perm).reshape(r.shape), r, cd.type(-np.inf))
    if t != 1.0:
        r = np.divide(r, cd.type(t))
    if not r.flags.aligned:
        r = r.copy()
    return r, kshape, perm


def _partials_block(xb, wb=None, *, axes, cd, t):
    """The (max, sum, rest) partial of each row of a block, reduced axes kept as 1."""
    r, kshape, _ = _rows(xb, axes, cd, t, wb)
    p = np.empty(r.shape[0], _P)
    mx, sm, rs = (np.empty(r.shape[0]) for _ in range(3))
    with _one_thread_per_task():
        _core._row_partials(r, mx, sm, rs)
    p["max"], p["sum"], p["rest"] = mx, sm, rs
    return p.reshape(tuple(1 if d in axes else s for d, s in enumerate(xb.shape)))


def _csum(a: np.ndarray) -> np.ndarray:
    """Compensated sum over the last axis, in index order (merge.h's CompensatedSum)."""
    s = np.zeros(a.shape[:-1])
    c = np.zeros(a.shape[:-1])
    for j in range(a.shape[-1]):
        v = a[..., j]
        tot = s + v
        c += np.where(np.abs(s) >= np.abs(v), (s - tot) + v, (v - tot) + s)
        s = tot
    return s + c


def _merge(p: np.ndarray, axis=None, keepdims=False, **_):
    """Partials concatenated along ``axis`` (in chunk order) merged into one per row:
    merge.h's merge_partials, vectorized over the rows."""
    axes = tuple(range(p.ndim)) if axis is None else (axis if isinstance(axis, tuple) else (axis,))
    kept = [d for d in range(p.ndim) if d not in axes]
    kshape = tuple(p.shape[d] for d in kept)
    q = p.transpose(kept + list(axes)).reshape(kshape + (math.prod(p.shape[d] for d in axes),))
    mx, sm, rs = q["max"], q["sum"], q["rest"]
    with np.errstate(all="ignore"):
        m = mx.max(axis=-1) if mx.shape[-1] else np.full(kshape, -np.inf)
        fin = np.isfinite(m)
        mm = np.where(fin, m, 0.0)[..., None]
        scaled = np.where(mx == -np.inf, 0.0, sm * np.exp(mx - mm))
        s = _csum(scaled)
        first = np.argmax(mx == mm, axis=-1)[..., None]  # the first partial holding the max
        terms = scaled.copy()
        np.put_along_axis(terms, first, np.take_along_axis(rs, first, -1), -1)
        r = _csum(terms)
    out = np.empty(kshape, _P)
    out["max"] = m
    out["sum"] = np.where(fin, s, 0.0)
    out["rest"] = np.where(fin, r, 0.0)
    if keepdims:
        out = out.reshape(tuple(1 if d in axes else s for d, s in enumerate(p.shape)))
    return out


def _identity(p, axis=None, keepdims=False, **_):
    return p


def _finish_block(xb, wb, st, *, op, axes, cd, rd, t):
    """softmax / log_softmax of a block from its rows' merged partials ``st``."""
    r, kshape, perm = _rows(xb, axes, cd, t, wb)
    y = np.empty(r.shape, r.dtype)
    st = st.reshape(-1)
    # fresh aligned copies: a structured block received from another worker may sit
    # unaligned in its message buffer
    args = [np.array(st[f], np.float64, order="C") for f in ("max", "sum", "rest")]
    with _one_thread_per_task():
        _core._row_finish(op, r, y, *args)
    y = y.reshape(kshape + tuple(xb.shape[d] for d in axes)).transpose(np.argsort(perm))
    return y.astype(rd, copy=False)


def _lse_of(st: np.ndarray, rd) -> np.ndarray:
    """logsumexp = max + log1p(rest) from merged partials (docs/contract.md §5)."""
    m = st["max"]
    with np.errstate(all="ignore"):
        v = np.where(np.isfinite(m), m + np.log1p(st["rest"]), m)
    return _api._cast(v, rd)


def _merged_partials(x, w, axes, cd, t):
    """Each row's merged partial, a structured array of x's kept shape (lazy)."""
    chunks = tuple((1,) * x.numblocks[d] if d in axes else x.chunks[d] for d in range(x.ndim))
    fn_args = (x,) if w is None else (x, w)
    parts = da.map_blocks(
        _partials_block, *fn_args, chunks=chunks, dtype=_P, meta=_meta(x.ndim, _P),
        axes=axes, cd=cd, t=t,
    )
    return da.reduction(
        parts, _identity, _merge, axis=axes, keepdims=False, dtype=_P, combine=_merge,
        concatenate=True, meta=_meta(x.ndim - len(axes), _P), split_every=None,
    )


def _split(x, axes) -> bool:
    return any(x.numblocks[d] > 1 for d in axes)


def _ind(ndim: int) -> tuple[int, ...]:
    return tuple(range(ndim))


# --------------------------------------------------------------- softmax family
def _softmax_call(xb, wb=None, *, op, axes, rd, t):
    fn = _api.softmax if op == _SOFTMAX else _api.log_softmax
    fast = _core.softmax if op == _SOFTMAX else _core.log_softmax
    with _one_thread_per_task():
        if xb.dtype == rd and len(axes) == 1:
            return fast(xb, axes[0], temperature=t, where=wb)
        return fn(xb, axes, temperature=t, where=wb, dtype=rd)


def _softmax_like(op, x, axis, temperature, where, dtype, out):
    _unsupported("out", out)
    x = _as_dask(x)
    rd = _api._compute_dtype(x, dtype)
    axes = _axes(x, axis)
    t = _api._temperature(temperature)
    w = _where(where, x)
    if x.ndim == 0:  # a row of one element (with axis=None)
        x, w = x[None], (None if w is None else w[None])
        return _softmax_like(op, x, 0, t, w, rd, None)[0]
    meta = _meta(x.ndim, rd)
    if not _split(x, axes):
        fn_args = (x,) if w is None else (x, w)
        return da.map_blocks(_softmax_call, *fn_args, dtype=rd, meta=meta, op=op, axes=axes,
                             rd=rd, t=t)
    cd = _cd(rd)
    st = _merged_partials(x, w, axes, cd, t)
    ind = _ind(x.ndim)
    kept_ind = tuple(d for d in ind if d not in axes)
    return da.blockwise(
        _finish_block, ind, x, ind, w, None if w is None else ind, st, kept_ind,
        dtype=rd, meta=meta, op=op, axes=axes, cd=cd, rd=rd, t=t, concatenate=False,
    )


def softmax(x, axis=-1, *, temperature=1.0, where=None, dtype=None, out=None):
    """Lazy softmax of a dask array along ``axis`` (``fastsoftmax.softmax``'s rules)."""
    return _softmax_like(_SOFTMAX, x, axis, temperature, where, dtype, out)


def log_softmax(x, axis=-1, *, temperature=1.0, where=None, dtype=None, out=None):
    """Lazy log_softmax of a dask array along ``axis`` (``fastsoftmax.log_softmax``'s rules)."""
    return _softmax_like(_LOG_SOFTMAX, x, axis, temperature, where, dtype, out)


def _lse_call(xb, wb=None, *, axes, rd):
    with _one_thread_per_task():
        return np.asarray(_api.logsumexp(xb, axes, keepdims=True, where=wb, dtype=rd))


def logsumexp(x, axis=-1, *, keepdims=False, b=None, return_sign=False, where=None,
              dtype=None, out=None):
    """Lazy logsumexp of a dask array (``fastsoftmax.logsumexp``'s rules; ``b=``,
    ``return_sign`` and ``out=`` are not supported)."""
    _unsupported("b", b)
    _unsupported("return_sign", return_sign, False)
    _unsupported("out", out)
    x = _as_dask(x)
    rd = _api._compute_dtype(x, dtype)
    axes = _axes(x, axis)
    w = _where(where, x)
    if x.ndim == 0:
        x, w = x[None], (None if w is None else w[None])
        return logsumexp(x, 0, keepdims=False, where=w, dtype=rd)
    if not _split(x, axes):
        chunks = tuple((1,) if d in axes else c for d, c in enumerate(x.chunks))
        fn_args = (x,) if w is None else (x, w)
        r = da.map_blocks(_lse_call, *fn_args, chunks=chunks, dtype=rd,
                          meta=_meta(x.ndim, rd), axes=axes, rd=rd)
        return r if keepdims else r.squeeze(axis=axes)
    st = _merged_partials(x, w, axes, _cd(rd), 1.0)
    r = st.map_blocks(_lse_of, rd, dtype=rd, meta=_meta(st.ndim, rd))
    if keepdims:
        r = r.reshape(tuple(1 if d in axes else s for d, s in enumerate(x.shape)))
    return r


# ---------------------------------------------------------------- cross-entropy
def _reduce_losses(loss, counted, red: int, rd):
    """loss: per-row losses (compute dtype, lazy). "sum"/"mean" add them in float64 in
    a fixed tree (dask's sum), "mean" divides by the rows counted (NaN for none)."""
    if red == 0:
        return loss.astype(rd)
    total = loss.astype(np.float64).sum()
    if red == 2:
        count = counted.sum() if counted is not None else math.prod(loss.shape)
        total = da.map_blocks(_mean, total, count, dtype=np.float64)
    return total.map_blocks(_api._cast, rd, dtype=rd)


def _mean(total, n):
    with np.errstate(all="ignore"):
        return np.asarray(total / np.float64(n))


def _check_labels(lab, n: int, ign, block_info=None):
    """Raise for a label outside [0, n) that is not ignore_index, naming its position
    in the whole labels array (raised when that chunk is computed)."""
    bad = (lab < 0) | (lab >= n)
    if ign is not None:
        bad &= lab != ign
    if bad.any():
        first = np.unravel_index(int(np.flatnonzero(bad)[0]), lab.shape)
        loc = block_info[0]["array-location"] if block_info else [(0, 0)] * lab.ndim
        pos = ", ".join(str(int(i) + lo) for i, (lo, _) in zip(first, loc))
        where = f"labels[{pos}]" if lab.ndim else "labels"
        raise ValueError(f"{where} = {int(lab[first])} is out of range [0, {n})")


def _sparse_call(lab, xb, *, ign, eps, cd, n, block_info=None):
    lab = lab[..., 0]  # passed as labels[..., None], aligned with the logits' chunks
    loc = block_info[0]["array-location"][:-1] if block_info else None
    _check_labels(lab, n, ign, {0: {"array-location": loc}} if loc else None)
    fn = _xent.sparse_softmax_cross_entropy_with_logits
    with _one_thread_per_task():
        if xb.dtype == cd:
            return np.asarray(fn(lab, xb, ignore_index=ign, label_smoothing=eps))
        # float16 logits: the per-row losses in float32 (a reduced loss then adds them
        # unrounded), widened a few MiB of rows at a time (peak memory: the chunk)
        xr, lr = xb.reshape(-1, n), lab.reshape(-1)
        out = np.empty(lr.shape, cd)
        step = max(1, (8 << 20) // max(1, 4 * n))
        for r0 in range(0, xr.shape[0], step):
            out[r0:r0 + step] = fn(lr[r0:r0 + step], _api._prepare(xr[r0:r0 + step], cd),
                                   ignore_index=ign, label_smoothing=eps)
        return out.reshape(lab.shape)


def _pick_block(lab, xb, *, ign, eps, cd, n, block_info=None):
    """Per row of a vocabulary chunk: the label's logit if it falls in this chunk (else
    0), and with smoothing the chunk's sum of logits; float64, shape (rows, 2)."""
    lab = lab[..., 0]  # passed as labels[..., None], aligned with the vocabulary chunks
    lab_loc = block_info[0]["array-location"][:-1] if block_info else None
    x_loc = block_info[1]["array-location"][-1] if block_info else (0, xb.shape[-1])
    if x_loc[0] == 0:  # the first vocabulary chunk checks the labels
        _check_labels(lab, n, ign, {0: {"array-location": lab_loc}} if lab_loc else None)
    r = _api._cast(xb, cd).reshape(-1, xb.shape[-1])
    li = lab.reshape(-1).astype(np.int64) - x_loc[0]
    inside = (li >= 0) & (li < xb.shape[-1])
    out = np.zeros(r.shape[:1] + (2,))
    rows = np.flatnonzero(inside)
    out[rows, 0] = r[rows, li[rows]]
    if eps:
        out[:, 1] = r.sum(axis=-1, dtype=np.float64)
    return out.reshape(lab.shape + (1, 2))


def _sparse_loss(st, picked, lab, *, ign, eps, n):
    lse = _lse_of(st, np.float64)
    m = st["max"]
    with np.errstate(all="ignore"):
        loss = lse - (1.0 - eps) * picked[..., 0] - (eps / n) * picked[..., 1]
        loss = np.where(np.isnan(m) | (m == np.inf), np.nan, loss)
        loss = np.where(m == -np.inf, np.inf, loss)  # only -inf logits (or none): +inf
    if ign is not None:
        loss = np.where(lab == ign, 0.0, loss)
    return loss


def sparse_softmax_cross_entropy_with_logits(labels, logits, *, reduction="none",
                                             ignore_index=None, label_smoothing=0.0,
                                             return_grad=False):
    """Lazy sparse cross-entropy of dask ``logits`` (classes last) and integer ``labels``
    (``fastsoftmax.sparse_softmax_cross_entropy_with_logits``'s rules; an out-of-range
    label raises when its chunk is computed; ``return_grad`` is not supported)."""
    _unsupported("return_grad", return_grad, False)
    red = _xent._reduction(reduction)
    eps = _xent._smoothing(label_smoothing)
    ign = _xent._ignore(ignore_index)
    x = _as_dask(logits)
    rd = _api._compute_dtype(x, None, "logits")
    if x.ndim == 0:
        raise ValueError("logits must have at least one dimension (the classes, last)")
    lab = labels if isinstance(labels, da.Array) else np.asarray(labels)
    if lab.dtype.kind not in "iu":
        raise TypeError(f"labels must be integer class indices; got dtype {lab.dtype}")
    if lab.shape != x.shape[:-1]:
        raise ValueError(
            f"labels has shape {lab.shape}; expected logits.shape[:-1] = {x.shape[:-1]}"
        )
    lab = _as_dask(lab).rechunk(x.chunks[:-1])
    cd = _cd(rd)
    n = x.shape[-1]
    nd = x.ndim
    kept = _ind(nd - 1)
    if x.numblocks[-1] == 1:
        loss = da.map_blocks(_sparse_call, lab[..., None], x, drop_axis=nd - 1, dtype=cd,
                             meta=_meta(nd - 1, cd), ign=ign, eps=eps, cd=cd, n=n)
    else:
        st = _merged_partials(x, None, (nd - 1,), cd, 1.0)
        pk = da.map_blocks(_pick_block, lab[..., None], x, dtype=np.float64, new_axis=nd,
                           chunks=x.chunks[:-1] + ((1,) * x.numblocks[-1], (2,)),
                           meta=_meta(nd + 1, np.float64), ign=ign, eps=eps, cd=cd, n=n)
        picked = pk.sum(axis=nd - 1)  # one chunk holds the label: exact
        loss = da.blockwise(_sparse_loss, kept, st, kept, picked, kept + (nd - 1,), lab, kept,
                            dtype=np.float64, meta=_meta(nd - 1, np.float64), concatenate=True,
                            ign=ign, eps=eps, n=n)
        loss = loss.astype(cd)
    counted = (lab != ign) if red == 2 and ign is not None else None
    return _reduce_losses(loss, counted, red, rd)


def _dense_call(lab, xb, *, axes, eps, cd):
    xb = xb if xb.dtype == cd else _api._prepare(xb, cd)  # float16: per-row losses in float32
    with _one_thread_per_task():
        return np.asarray(_xent.softmax_cross_entropy_with_logits(
            lab, xb, axes, label_smoothing=eps))


def _dense_block(lab, xb, st, *, axes, eps, cd, n):
    """A chunk's part of -sum t * log_softmax over its rows (float64, reduced axes as 1),
    from the rows' merged partials; t = 0 terms count 0 (docs/contract.md §4.6)."""
    ls = _finish_block(xb, None, st, op=_LOG_SOFTMAX, axes=axes, cd=cd, rd=cd, t=1.0)
    t = _api._cast(lab, cd).astype(np.float64)
    if eps:
        t = (1.0 - eps) * t + eps / n
    with np.errstate(all="ignore"):
        term = np.where(t != 0, t * ls, 0.0)
    return -term.sum(axis=axes, keepdims=True)


def _dense_finish(st, s):
    m = st["max"]
    return np.where(np.isnan(m) | (m == np.inf), np.nan, s)


def softmax_cross_entropy_with_logits(labels, logits, axis=-1, *, reduction="none",
                                      label_smoothing=0.0, return_grad=False):
    """Lazy dense cross-entropy of dask ``logits`` and ``labels`` broadcast to them
    (``fastsoftmax.softmax_cross_entropy_with_logits``'s rules; ``return_grad`` is not
    supported)."""
    _unsupported("return_grad", return_grad, False)
    red = _xent._reduction(reduction)
    eps = _xent._smoothing(label_smoothing)
    x = _as_dask(logits)
    rd = _api._compute_dtype(x, None, "logits")
    lab = labels if isinstance(labels, da.Array) else np.asarray(labels)
    kind = lab.dtype.kind
    if kind not in "biuf" or (kind == "f" and _api._float_dtype(lab.dtype) is None):
        raise TypeError(
            f"labels has unsupported dtype {lab.dtype}: expected a float, integer or bool dtype"
        )
    try:
        bshape = np.broadcast_shapes(lab.shape, x.shape)
    except ValueError:
        bshape = None
    if bshape != x.shape:
        raise ValueError(f"labels of shape {lab.shape} do not broadcast to logits' shape {x.shape}")
    if x.ndim == 0:
        if axis is not None:
            _api._axes(axis, 0)
        x, lab = x[None], _as_dask(lab)[None]
        axis = 0
    axes = _api._axes(axis, x.ndim)
    if not axes:  # every element a row of one class
        x, lab = x[..., None], _as_dask(lab)[..., None]
        axes = (x.ndim - 1,)
    lab = _broadcast_like(lab, x)
    cd = _cd(rd)
    ind = _ind(x.ndim)
    kept = tuple(d for d in ind if d not in axes)
    if not _split(x, axes):
        loss = da.blockwise(_dense_call, kept, lab, ind, x, ind, dtype=cd,
                            meta=_meta(len(kept), cd), concatenate=True, axes=axes, eps=eps, cd=cd)
    else:
        n = math.prod(x.shape[d] for d in axes)
        st = _merged_partials(x, None, axes, cd, 1.0)
        parts = da.blockwise(_dense_block, ind, lab, ind, x, ind, st, kept, dtype=np.float64,
                             adjust_chunks={d: 1 for d in axes}, meta=_meta(x.ndim, np.float64),
                             concatenate=False, axes=axes, eps=eps, cd=cd, n=n)
        s = parts.sum(axis=axes)
        loss = da.map_blocks(_dense_finish, st, s, dtype=np.float64,
                             meta=_meta(len(kept), np.float64)).astype(cd)
    return _reduce_losses(loss, None, red, rd)


# ------------------------------------------------------------------------ top_k
def _topk_rec(rd):
    return np.dtype([("v", rd), ("i", np.int64)])


def _topk_chunk(xb, *, ax, k, largest, rd, block_info=None):
    """A chunk's own top-k (at most its length) with indices made global, as records."""
    off = block_info[0]["array-location"][ax][0] if block_info else 0
    kk = min(k, xb.shape[ax])
    with _one_thread_per_task():
        v, i = _select.top_k(xb, kk, ax, largest=largest)
    rec = np.empty(v.shape, _topk_rec(rd))
    rec["v"], rec["i"] = v, i + off
    return rec


def _topk_merge(rec, axis=None, keepdims=True, *, k, largest, **_):
    """Candidates of neighbouring chunks, concatenated in chunk order: reordered by
    global index (so top_k's lower-position tie rule is the lower global index), then
    the best k of them."""
    ax = axis[0] if isinstance(axis, tuple) else axis
    order = np.argsort(rec["i"], axis=ax, kind="stable")
    rec = np.take_along_axis(rec, order, ax)
    kk = min(k, rec.shape[ax])
    v, pos = _select.top_k(np.ascontiguousarray(rec["v"]), kk, ax, largest=largest)
    return np.take_along_axis(rec, pos, ax)


def _topk_transform(rec, st, *, ax, transform, cd, rd):
    """softmax / log_softmax of the selected values from their rows' merged partials."""
    st = np.expand_dims(st, ax)
    m = st["max"]
    with np.errstate(all="ignore"):
        d = (_api._cast(rec["v"], cd) - m.astype(cd)).astype(np.float64)  # x - max in cd
        if transform == "softmax":
            y = np.exp(d) / st["sum"]
            y = np.where(m == -np.inf, 0.0, y)
        else:
            y = d - np.log1p(st["rest"])
            y = np.where(m == -np.inf, -np.inf, y)
        y = np.where(np.isnan(m) | (m == np.inf), np.nan, y)
    return _api._cast(y, rd)


def top_k(x, k, axis=-1, *, largest=True, transform=None):
    """Lazy ``fastsoftmax.top_k`` of a dask array: ``TopK(values, indices)`` as dask
    arrays. A split axis: each chunk's top-k, merged by a tree reduction in chunk order
    (ties to the lower index, as the in-memory function)."""
    x = _as_dask(x)
    rd = _api._compute_dtype(x, None)
    ax, kk = _select._arguments(x.shape, axis, k, largest, transform)
    rec_dt = _topk_rec(rd)
    largest = bool(largest)
    if x.numblocks[ax] == 1 or kk == 0:
        chunks = tuple((kk,) * x.numblocks[d] if d == ax else c for d, c in enumerate(x.chunks))
        if x.numblocks[ax] > 1:
            x = x.rechunk({ax: -1})
            chunks = tuple((kk,) if d == ax else c for d, c in enumerate(x.chunks))
        rec = da.map_blocks(_topk_block, x, chunks=chunks, dtype=rec_dt, meta=_meta(x.ndim, rec_dt),
                            k=kk, ax=ax, largest=largest, transform=transform, rd=rd)
        return _select.TopK(rec["v"], rec["i"])
    cand = da.map_blocks(
        _topk_chunk, x, dtype=rec_dt, meta=_meta(x.ndim, rec_dt),
        chunks=tuple(tuple(min(kk, c) for c in cs) if d == ax else cs
                     for d, cs in enumerate(x.chunks)),
        ax=ax, k=kk, largest=largest, rd=rd,
    )
    merge = functools.partial(_topk_merge, k=kk, largest=largest)
    rec = da.reduction(
        cand, _identity, merge, combine=merge, axis=ax, keepdims=True, dtype=rec_dt,
        meta=_meta(x.ndim, rec_dt), concatenate=True, output_size=kk, split_every=None,
    )
    values = rec["v"]
    if transform is not None:
        cd = _cd(rd)
        st = _merged_partials(x, None, (ax,), cd, 1.0)
        ind = _ind(x.ndim)
        values = da.blockwise(
            _topk_transform, ind, rec, ind, st, tuple(d for d in ind if d != ax), dtype=rd,
            meta=_meta(x.ndim, rd), concatenate=True, ax=ax, transform=transform, cd=cd, rd=rd,
        )
    return _select.TopK(values, rec["i"])


def _topk_block(xb, *, k, ax, largest, transform, rd):
    with _one_thread_per_task():
        v, i = _select.top_k(xb, k, ax, largest=largest, transform=transform)
    rec = np.empty(v.shape, _topk_rec(rd))
    rec["v"], rec["i"] = v, i
    return rec


