"""Argument normalization for every call the C++ fast path does not take.

The C++ entry points (``_core.softmax`` ...) handle a native float ndarray with an
int axis directly; anything else lands here, is turned into arrays the driver can
take as they are (native, aligned, right dtype; where/b broadcast as zero-stride
views, never copied to full size), and goes back through ``_core._compute``.

Ownership: this module (with ``_xent``) is the one place that validates arguments and
raises. The C++ fast entries only recognize calls that are already valid and decline
the rest to the functions here; ``_core._compute`` trusts what it is given (its checks
only guard against crashes). tests/test_entry_points.py holds the two paths to one answer.
"""

from __future__ import annotations

import math
import numbers
import operator
import sys
from contextlib import contextmanager
from typing import Iterator

import numpy as np

from . import _core

try:  # NumPy >= 1.25
    from numpy.exceptions import AxisError
except ImportError:  # pragma: no cover - older NumPy
    from numpy import AxisError  # type: ignore[attr-defined,no-redef]

_SOFTMAX, _LOG_SOFTMAX, _LOGSUMEXP = 0, 1, 2
_FLOAT_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))

# ml_dtypes' bfloat16 (docs/contract.md §2.3), once recognized. ml_dtypes is not a
# dependency and is never imported here: a bfloat16 array can only exist once its
# user imported it, and the dtype is recognized by its scalar type.
_bf16: np.dtype | None = None


def _is_bfloat16(d: np.dtype) -> bool:
    """Whether `d` is ml_dtypes' bfloat16. The first time it is seen, its dtype is handed
    to the C++ core (whose fast entries and bindings take such arrays from then on)."""
    global _bf16
    if _bf16 is not None:
        return d == _bf16
    if d.kind != "V" or d.itemsize != 2:
        return False
    t = d.type
    if t.__name__ != "bfloat16" or not t.__module__.startswith("ml_dtypes"):
        return False
    _core._register_bfloat16(d)
    _bf16 = d
    return True


def _register_loaded_bfloat16() -> None:
    """At import: recognize bfloat16 now if ml_dtypes is loaded already (so the first
    call takes the fast path too)."""
    m = sys.modules.get("ml_dtypes")
    bf16 = getattr(m, "bfloat16", None) if m is not None else None
    if bf16 is not None:
        _is_bfloat16(np.dtype(bf16))


def _float_dtype(d: np.dtype, bf16: bool = False) -> np.dtype | None:
    """The native float16/32/64 dtype equal to `d` up to byte order (with `bf16`: or
    ml_dtypes' bfloat16), else None."""
    if d.kind == "f" and d.itemsize in (2, 4, 8) and d.type is not np.longdouble:
        return d.newbyteorder("=")
    if bf16 and _is_bfloat16(d):
        return d
    return None


def _compute_dtype(x: np.ndarray, dtype, name: str = "x", bf16: bool = False) -> np.dtype:
    """The dtype `x` is computed and returned in (docs/contract.md §2.3). `bf16`: the
    function takes bfloat16 (the softmax and selection families; the training family
    does not)."""
    what = "float16, float32, float64 or bfloat16" if bf16 else "float16, float32 or float64"
    if dtype is not None:
        try:
            d = np.dtype(dtype)
        except TypeError:
            raise TypeError(f"dtype must be {what}; got {dtype!r}") from None
        fd = _float_dtype(d, bf16)
        if fd is None:
            raise TypeError(f"dtype must be {what}; got {d}")
        castable = x.dtype.kind in "biuf" or (bf16 and _is_bfloat16(x.dtype))
        if not castable or not np.can_cast(x.dtype, fd, casting="unsafe"):
            raise TypeError(f"{name} has unsupported dtype {x.dtype}")
        return fd
    fd = _float_dtype(x.dtype, bf16)
    if fd is not None:
        return fd
    if x.dtype.kind in "biu":
        return np.dtype(np.float64)  # as np.exp and SciPy do
    raise TypeError(
        f"{name} has unsupported dtype {x.dtype}: expected {what.replace(' or', ',')}, "
        "an integer or bool dtype"
    )


def _prepare(x, dtype, name: str = "x", bf16: bool = False) -> np.ndarray:
    """x as an aligned native array of its compute dtype (copies only if it must)."""
    x = np.asarray(x)
    rd = _compute_dtype(x, dtype, name, bf16)
    if x.dtype != rd or not x.flags.aligned:
        if x.dtype == np.float16 and rd == np.float32 and x.flags.c_contiguous:
            out = np.empty(x.shape, rd)
            _core._widen_f16(x, out)  # the ISA's conversions: NumPy's cost 8x more here
            return out
        x = _cast(x, rd)
    return x


def _cast(a: np.ndarray, dtype) -> np.ndarray:
    """a.astype(dtype) where values beyond dtype's range become +-inf silently (float64
    1e5 to float16, 1e39 to float32): docs/contract.md §3 allows no warning, and an inf
    made by the cast is then an input value like any other."""
    with np.errstate(over="ignore"):
        return a.astype(dtype, order="K")


def _axes(axis, ndim: int) -> tuple[int, ...]:
    """The axes as sorted distinct non-negative ints (the rule; C++'s int_axis declines)."""
    if axis is None:
        return tuple(range(ndim))
    items = axis if isinstance(axis, tuple) else (axis,)
    axes = []
    for a in items:
        try:
            if isinstance(a, (bool, np.bool_)):  # as NumPy's reductions: not an axis
                raise TypeError
            i = operator.index(a)
        except TypeError:
            what = type(a).__name__ if a is axis else f"a tuple holding {type(a).__name__}"
            raise TypeError(f"axis must be an int, a tuple of ints or None; got {what}") from None
        if not -ndim <= i < ndim:
            raise AxisError(i, ndim)  # "axis 5 is out of bounds for array of dimension 2"
        axes.append(i % ndim)
    if len(set(axes)) != len(axes):
        raise ValueError("repeated axis in `axis` argument")
    return tuple(sorted(axes))


def _temperature(t) -> float:
    """The temperature as a float (the rule; C++'s fast_temperature declines)."""
    if isinstance(t, bool) or not isinstance(t, numbers.Real):
        raise TypeError(f"temperature must be a real number; got {type(t).__name__}")
    try:
        tf = float(t)
    except OverflowError:  # an int beyond float's range
        tf = math.inf
    if not (math.isfinite(tf) and tf > 0):
        raise ValueError(f"temperature must be finite and > 0; got {t!r}")
    return tf


def _where(where, shape: tuple[int, ...]) -> np.ndarray | None:
    """where= as a bool view of x's shape (the rule; C++'s fast_where declines)."""
    if where is None:
        return None
    w = np.asarray(where)
    if w.dtype != np.bool_:
        raise TypeError(f"where must be a boolean array; got dtype {w.dtype}")
    try:
        bshape = np.broadcast_shapes(w.shape, shape)
    except ValueError:
        bshape = None
    if bshape != tuple(shape):
        raise ValueError(f"where of shape {w.shape} does not broadcast to x's shape {shape}")
    return np.broadcast_to(w, shape)


def _out(out, shape: tuple[int, ...], rd: np.dtype, inputs: tuple, name: str = "out"):
    """(array the core writes, array to copy it into afterwards or None).

    The rule for out= of every function (C++'s fast_out declines); ``inputs`` are the
    arrays the core reads, each as it is passed to the core. The overlap test is the
    core's own (``_core._overlap``): out may be an input itself, not a part of one.
    """
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray; got {type(out).__name__}")
    if out.shape != tuple(shape):
        raise ValueError(f"{name} has shape {out.shape}; expected {tuple(shape)}")
    if rd.kind == "f":
        bad = out.dtype.kind != "f" or out.dtype.itemsize != rd.itemsize
    else:  # bfloat16: that dtype exactly (it has one byte order)
        bad = out.dtype != rd
    if bad:
        raise TypeError(f"{name} has dtype {out.dtype}; expected {rd}")
    if not out.flags.writeable:
        raise ValueError(f"{name} is read-only")
    needs_temp = out.dtype != rd or not out.flags.aligned
    for a in inputs:
        needs_temp = needs_temp or _core._overlap(a, out) == 2
    if needs_temp:
        return np.empty(shape, rd), out
    return out, None


def _is_dask(*arrays) -> bool:
    """Any of ``arrays`` is a dask array. Checked only once dask.array is imported (no
    dask array can exist before), so NumPy users never import dask; the C++ fast entries
    decline anything but an ndarray, and nothing here converts (computes) it first."""
    m = sys.modules.get("dask.array")
    return m is not None and any(isinstance(a, m.Array) for a in arrays)


def _dask():
    from . import dask as fd  # fastsoftmax.dask (needs dask[array])

    return fd


def _softmax_like(op, x, axis, temperature, where, dtype, out):
    if _is_dask(x, where):  # a lazy result (docs/contract.md §13)
        fn = _dask().softmax if op == _SOFTMAX else _dask().log_softmax
        return fn(x, axis, temperature=temperature, where=where, dtype=dtype, out=out)
    x = _prepare(x, dtype, bf16=True)
    axes = _axes(axis, x.ndim)
    t = _temperature(temperature)
    mask = _where(where, x.shape)
    if out is None:  # the core allocates, in the layout the fast path gives
        target, copy_to = None, None
    else:
        target, copy_to = _out(out, x.shape, x.dtype, (x,))
    target = _core._compute(op, x, list(axes), t, mask, target, None, None)
    if copy_to is not None:
        np.copyto(copy_to, target, casting="unsafe")
        return copy_to
    return target


def softmax(x, axis=-1, *, temperature=1.0, where=None, dtype=None, out=None):
    return _softmax_like(_SOFTMAX, x, axis, temperature, where, dtype, out)


def log_softmax(x, axis=-1, *, temperature=1.0, where=None, dtype=None, out=None):
    return _softmax_like(_LOG_SOFTMAX, x, axis, temperature, where, dtype, out)


def logsumexp(
    x, axis=-1, *, keepdims=False, b=None, return_sign=False, where=None, dtype=None, out=None
):
    if _is_dask(x, where, b):  # a lazy result (docs/contract.md §13)
        return _dask().logsumexp(x, axis, keepdims=keepdims, b=b, return_sign=return_sign,
                                 where=where, dtype=dtype, out=out)
    x = np.asarray(x)
    bw = None
    if b is not None:
        bw = np.asarray(b)
        if bw.dtype.kind not in "biu" and _float_dtype(bw.dtype, bf16=True) is None:
            raise TypeError(f"b has unsupported dtype {bw.dtype}: expected a real dtype")
        if dtype is None:
            dtype = np.result_type(
                _compute_dtype(x, None, bf16=True), _compute_dtype(bw, None, "b", bf16=True)
            )
    x = _prepare(x, dtype, bf16=True)
    if bw is not None:
        try:
            shape = np.broadcast_shapes(x.shape, bw.shape)
        except ValueError:
            raise ValueError(
                f"b of shape {bw.shape} does not broadcast with x's shape {x.shape}"
            ) from None
        x = np.broadcast_to(x, shape)
        bw = np.broadcast_to(np.asarray(bw, dtype=np.float64), shape)  # exact: no overflow
        if not bw.flags.aligned:  # pragma: no cover - np.asarray gives aligned data
            bw = bw.copy()
    axes = _axes(axis, x.ndim)
    mask = _where(where, x.shape)
    keep = bool(keepdims)
    oshape = tuple(
        (1 if d in axes else s) for d, s in enumerate(x.shape) if keep or d not in axes
    )
    if out is None:
        target, copy_to = np.empty(oshape, x.dtype), None
    else:
        target, copy_to = _out(out, oshape, x.dtype, (x,) if bw is None else (x, bw))
    sign = np.empty(oshape, x.dtype) if return_sign else None
    _core._compute(_LOGSUMEXP, x, list(axes), 1.0, mask, target, bw, sign)
    if copy_to is not None:
        np.copyto(copy_to, target, casting="unsafe")
        result = copy_to
    elif out is not None:
        result = out
    elif target.ndim == 0:
        result = target[()]
    else:
        result = target
    if return_sign:
        return result, (sign[()] if sign.ndim == 0 else sign)
    return result


def _thread_count(n) -> int:
    """The rule for a thread count (``_core._set_num_threads`` trusts it)."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise ValueError(f"n must be an int >= 1, or -1 for all cores; got {n!r}")
    n = int(n)
    if n != -1 and not 1 <= n <= 1 << 16:
        raise ValueError(f"n must be >= 1, or -1 for all cores; got {n}")
    return n


# isa, available_isas and get_num_threads: Python functions around the core's, so that
# inspect.signature and help() see their signatures (pybind11's builtins have none).
def get_num_threads() -> int:
    """The number of threads the next call may use (set_num_threads, else OpenMP's)."""
    return _core.get_num_threads()


def isa() -> str:
    """The instruction set of the kernels in use: avx512, avx2, neon or scalar."""
    return _core.isa()


def available_isas() -> list[str]:
    """The instruction sets this build and CPU can run, widest first (always "scalar")."""
    return _core.available_isas()


def set_num_threads(n: int) -> None:
    """Use `n` threads from now on (n >= 1, or -1 for all cores).

    Overrides OMP_NUM_THREADS and threadpoolctl until changed again.
    """
    _core._set_num_threads(_thread_count(n))


@contextmanager
def threads(n: int) -> Iterator[None]:
    """Context manager: use `n` threads inside the block, then restore the setting."""
    prev = _core._set_num_threads(_thread_count(n))
    try:
        yield
    finally:
        _core._restore_num_threads(prev)
