"""The sampler: ``sample``, the decoding step after a softmax (docs/contract.md §12).

Arguments are checked and normalized here (the one place that raises); per-row
parameters go to ``_core._sample`` as Python numbers or as flat C arrays broadcast to
the batch shape, the random source as uniforms or as Philox keys and offsets (the
draw itself is computed in C++, bit for bit NumPy's Philox4x64-10).
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import numpy as np

from . import _api, _core
from ._select import top_k as _top_k

_LOGPROBS = {None: 0, "raw": 1, "processed": 2}
_U64 = 1 << 64


class Sample(NamedTuple):
    """The result of :func:`sample` (fields not asked for are None)."""

    tokens: np.ndarray
    logprobs: np.ndarray | None
    top_tokens: np.ndarray | None
    top_logprobs: np.ndarray | None


_FRESH: list = []


def _fresh_generator() -> np.random.Generator:
    """The process's own generator for calls without a random source, seeded once from
    the OS's entropy (a Generator per call would cost ~20 µs of seeding)."""
    if not _FRESH:
        _FRESH.append(np.random.default_rng())
    return _FRESH[0]


def _where_in(flat: int, shape: tuple) -> str:
    return "[" + ", ".join(map(str, np.unravel_index(flat, shape))) + "]" if shape else ""


def _param(value, name: str, batch: tuple, kind: str):
    """A per-row parameter: a Python number as it is, else an array broadcast to the
    batch shape as a flat C array (int64 for kind "i", float64 for "f")."""
    if type(value) is int or (kind == "f" and type(value) is float):
        return value
    a = np.asarray(value)
    if a.dtype.kind not in ("iu" if kind == "i" else "iuf") or a.dtype == np.bool_:
        what = "an int" if kind == "i" else "a real number"
        raise TypeError(f"{name} must be {what} or an array of them; got dtype {a.dtype}")
    if a.ndim == 0:
        return int(a) if kind == "i" else float(a)
    try:
        a = np.broadcast_to(a, batch)
    except ValueError:
        raise ValueError(f"{name} of shape {a.shape} does not broadcast to the batch shape "
                         f"{batch}") from None
    if kind == "i":
        if a.dtype.kind == "u" and a.size and a.max() > np.iinfo(np.int64).max:
            raise ValueError(f"{name} is too large")
        return np.ascontiguousarray(a, dtype=np.int64).reshape(-1)
    return np.ascontiguousarray(a, dtype=np.float64).reshape(-1)


def _check(ok, values, name: str, rule: str, batch: tuple):
    """Raise naming the argument (and the first bad row of an array) unless ok."""
    if isinstance(values, np.ndarray):
        if not ok.all():
            r = int(np.flatnonzero(~ok)[0])
            raise ValueError(f"{name}{_where_in(r, batch)} must be {rule}; got {values[r]!r}")
    elif not ok:
        raise ValueError(f"{name} must be {rule}; got {values!r}")


def _u64(value, name: str, batch: tuple):
    """An int in [0, 2^64) as it is, or an integer array of them as a flat uint64 array."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an int or an array of ints; got bool")
    if isinstance(value, numbers.Integral):
        v = int(value)
        if not 0 <= v < _U64:
            raise ValueError(f"{name} must be in [0, 2**64); got {v}")
        return v
    a = np.asarray(value)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an int or an array of ints; got dtype {a.dtype}")
    if a.dtype.kind == "i" and a.size and a.min() < 0:
        raise ValueError(f"{name} must be in [0, 2**64); got {a.min()}")
    if a.ndim == 0:
        return int(a)
    try:
        a = np.broadcast_to(a, batch)
    except ValueError:
        raise ValueError(f"{name} of shape {a.shape} does not broadcast to the batch shape "
                         f"{batch}") from None
    return np.ascontiguousarray(a, dtype=np.uint64).reshape(-1)


def sample(logits, *, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, where=None, seed=None,
           offset=0, rng=None, u=None, logprobs="raw", top_logprobs=0) -> Sample:
    """Draw the next token of each row of ``logits`` (..., V); see docs/contract.md §12.

    Per row: z = logits / temperature (tokens where ``where`` is False: -inf;
    temperature 0: the argmax, lowest index on ties); keep z >= max(z) + log(min_p),
    then z >= the top_k-th largest z (ties kept), then the top_p nucleus of those
    renormalized (a token is kept iff the mass strictly more probable than it is
    < top_p; ties kept); draw the smallest token id whose cumulative kept probability
    exceeds u times the kept total. temperature, top_k, top_p, min_p: scalars or arrays
    broadcastable to the batch shape ``logits.shape[:-1]``.

    The uniform u of a row comes from exactly one source: ``u`` (per-row uniforms in
    [0, 1)); ``seed`` (+ ``offset``): NumPy's ``Generator(Philox(key=seed,
    counter=offset)).random()`` for per-row seed arrays, and counter [offset, r, 0, 0]
    for the row of flat index r when ``seed`` is one int; ``rng``: ``rng.random(batch)``;
    none: fresh entropy. A row with a NaN or +inf allowed logit, or none allowed: token
    -1, logprob NaN. Returns ``Sample(tokens, logprobs, top_tokens, top_logprobs)``.
    bfloat16 logits (ml_dtypes) are computed in float32; their logprobs and
    top_logprobs are float32.
    """
    x = _api._prepare(logits, None, "logits", bf16=True)
    bf16 = _api._is_bfloat16(x.dtype)  # computed in float32; logprobs float32 (§12.3)
    if x.ndim == 0:
        raise ValueError("logits must have a vocabulary axis (the last); got a 0-d array")
    V = x.shape[-1]
    if V == 0:
        raise ValueError("logits has an empty vocabulary axis")
    batch = x.shape[:-1]
    rows = math.prod(batch)

    t = _param(temperature, "temperature", batch, "f")
    k = _param(top_k, "top_k", batch, "i")
    p = _param(top_p, "top_p", batch, "f")
    mp = _param(min_p, "min_p", batch, "f")
    _check(t >= 0, t, "temperature", ">= 0 (0: greedy) and not NaN", batch)
    _check(k >= 0, k, "top_k", ">= 0 (0: off)", batch)
    _check((p > 0) & (p <= 1), p, "top_p", "in (0, 1] (1: off)", batch)
    _check((mp >= 0) & (mp <= 1), mp, "min_p", "in [0, 1] (0: off)", batch)
    mask = _api._where(where, x.shape)

    if not (logprobs is None or isinstance(logprobs, str)) or logprobs not in _LOGPROBS:
        raise ValueError(f"logprobs must be 'raw', 'processed' or None; got {logprobs!r}")
    if isinstance(top_logprobs, (bool, np.bool_)) or not isinstance(top_logprobs, numbers.Integral):
        raise TypeError(f"top_logprobs must be an int; got {type(top_logprobs).__name__}")
    if not 0 <= int(top_logprobs) <= V:
        raise ValueError(f"top_logprobs must be in [0, {V}]; got {top_logprobs}")

    if (u is not None) + (seed is not None) + (rng is not None) > 1:
        given = [n for n, v in (("u", u), ("seed", seed), ("rng", rng)) if v is not None]
        raise ValueError(f"give at most one random source; got {' and '.join(given)}")
    if seed is None and not (type(offset) is int and offset == 0):
        raise ValueError("offset is the Philox counter of seed=: give seed as well")
    uu = seeds = offs = None
    if u is not None:
        ua = np.asarray(u)
        if ua.dtype.kind != "f":
            raise TypeError(f"u must be a float array; got dtype {ua.dtype}")
        uu = _param(ua, "u", batch, "f")
        _check((uu >= 0) & (uu < 1), uu, "u", "in [0, 1)", batch)
    elif seed is not None:
        seeds = _u64(seed, "seed", batch)
        offs = _u64(offset, "offset", batch)
    else:
        if rng is not None and not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator; got {type(rng).__name__}")
        g = rng if rng is not None else _fresh_generator()
        uu = np.ascontiguousarray(g.random(batch), dtype=np.float64).reshape(-1)

    tokens = np.empty(rows, np.int64)
    lp = np.empty(rows, np.float64) if logprobs is not None else None
    _core._sample(x, mask, t, k, p, mp, uu, seeds, offs, _LOGPROBS[logprobs], tokens, lp)

    def shaped(a):
        a = a.reshape(batch)
        return a[()] if a.ndim == 0 else a

    top_t = top_lp = None
    if top_logprobs and bf16:  # top_k's log_softmax values, stored in float32
        shape = batch + (int(top_logprobs),)
        top_t, top_lp = np.empty(shape, np.int64), np.empty(shape, np.float32)
        _core._top_k(x, x.ndim - 1, int(top_logprobs), True, 2, top_lp, top_t)
    elif top_logprobs:
        tk = _top_k(x, int(top_logprobs), -1, transform="log_softmax")
        top_t, top_lp = tk.indices, tk.values
    lp_out = None if lp is None else shaped(lp.astype(np.float32 if bf16 else x.dtype))
    return Sample(shaped(tokens), lp_out, top_t, top_lp)
