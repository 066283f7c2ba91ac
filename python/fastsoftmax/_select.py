"""The selection family: ``top_k``. Arguments are checked and normalized here (the one
place that raises; docs/contract.md §11), the rows are selected by
``_core._top_k`` (one O(n) scan per row, any layout, no copy of x).
"""

from __future__ import annotations

import operator
from typing import NamedTuple

import numpy as np

from . import _api, _core

_TRANSFORMS = {None: 0, "softmax": 1, "log_softmax": 2}


class TopK(NamedTuple):
    """The result of :func:`top_k`: ``values`` and their int64 ``indices``."""

    values: np.ndarray
    indices: np.ndarray


def _single_axis(axis, ndim: int) -> int:
    if axis is None or isinstance(axis, tuple):
        raise TypeError(f"axis must be an int; got {type(axis).__name__}")
    return _api._axes(axis, ndim)[0]


def _count(k) -> int:
    if isinstance(k, (bool, np.bool_)):
        raise TypeError("k must be an int; got bool")
    try:
        return operator.index(k)
    except TypeError:
        raise TypeError(f"k must be an int; got {type(k).__name__}") from None


def _arguments(shape: tuple, axis, k, largest, transform) -> tuple[int, int]:
    """The rules for top_k's arguments (fastsoftmax.dask's too): (axis, k) normalized."""
    ax = _single_axis(axis, len(shape))
    kk = _count(k)
    n = shape[ax]
    if kk < 0:
        raise ValueError(f"k must be >= 0; got {kk}")
    if kk > n:
        raise ValueError(f"k = {kk} is larger than the length {n} of axis {ax}")
    if not isinstance(largest, (bool, np.bool_)):
        raise TypeError(f"largest must be a bool; got {type(largest).__name__}")
    if not (transform is None or isinstance(transform, str)) or transform not in _TRANSFORMS:
        raise ValueError(f"transform must be None, 'softmax' or 'log_softmax'; got {transform!r}")
    return ax, kk


def top_k(x, k, axis=-1, *, largest=True, transform=None) -> TopK:
    """The k largest (smallest if ``largest=False``) entries of x along ``axis``.

    Returns ``TopK(values, indices)``, both of x's shape with ``axis`` of length k,
    ordered best first; ties go to the lower index, NaN ranks above +inf (as NumPy's
    sort puts it last), -0.0 ties with 0.0. ``indices`` are int64. ``values`` have the
    dtype softmax would return for x (float16/32/64 and bfloat16 as given; bool/int
    as float64).
    ``transform="softmax"`` / ``"log_softmax"``: the values are those entries of
    softmax(x) / log_softmax(x) along ``axis`` (not renormalized), computed without
    writing the full result. k > the axis length: ValueError; k = 0: empty results.
    """
    if _api._is_dask(x):  # a lazy result (docs/contract.md §13)
        return _api._dask().top_k(x, k, axis, largest=largest, transform=transform)
    x = _api._prepare(x, None, bf16=True)
    ax, kk = _arguments(x.shape, axis, k, largest, transform)
    shape = x.shape[:ax] + (kk,) + x.shape[ax + 1:]
    values = np.empty(shape, x.dtype)
    indices = np.empty(shape, np.int64)
    _core._top_k(x, ax, kk, bool(largest), _TRANSFORMS[transform], values, indices)
    return TopK(values, indices)
