"""Extended-precision references and the docs/contract.md §5 checks.

Every reference here is computed by NumPy in ``np.longdouble`` (80-bit on x86-64,
so 11 more mantissa bits than float64) with the row maximum subtracted first; it never
calls fastsoftmax.  The special-value table of docs/contract.md §3 is applied explicitly, so a
reference row is either exact-to-longdouble or one of nan / 0 / -inf / +inf.

The checkers implement docs/contract.md §5 literally:

* softmax, float32/float64: ``|y - r| <= eps * (K + |x_i - max| / 2) * |r|`` with
  eps = 2**-23 / 2**-52 and K = 4 / 16; where ``|r|`` is below 1e-30 / 1e-290 an
  absolute error of that size is allowed instead.  Entries that are exactly 0 because
  the input was -inf (or masked out by ``where``) must be exactly 0.
* softmax, float16: at most 1 ULP from the correctly rounded float16 of ``r``.
* log_softmax / logsumexp: ``|y - r| <= 4 ulp(max(1, |r|))`` in the output dtype;
  where ``r`` rounds to +-inf in the output dtype, ``y`` must be that infinity.
"""

from __future__ import annotations

import numpy as np

LD = np.longdouble

EPS = {np.dtype(np.float32): 2.0**-23, np.dtype(np.float64): 2.0**-52}
K = {np.dtype(np.float32): 4.0, np.dtype(np.float64): 16.0}
TINY = {np.dtype(np.float32): 1e-30, np.dtype(np.float64): 1e-290}
MANT = {np.dtype(np.float16): 10, np.dtype(np.float32): 23, np.dtype(np.float64): 52}
FLOATS = (np.float16, np.float32, np.float64)


# ----------------------------------------------------------------------------- axes
def norm_axes(axis, ndim):
    """The reduced axes as a sorted tuple (NumPy's rules; the tests only pass valid ones)."""
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, (tuple, list)):
        axes = tuple(a % ndim if ndim else a for a in axis)
    else:
        axes = (axis % ndim,)
    assert len(set(axes)) == len(axes)
    return tuple(sorted(axes))


def _to_rows(a, axes):
    """Move ``axes`` to the end and flatten them: (rows..., n)."""
    nd = len(axes)
    moved = np.moveaxis(a, axes, tuple(range(a.ndim - nd, a.ndim)))
    keep = moved.shape[: a.ndim - nd]
    n = int(np.prod(moved.shape[a.ndim - nd:], dtype=np.int64))
    return np.ascontiguousarray(moved).reshape(keep + (n,)), moved.shape


def _from_rows(r, moved_shape, axes, ndim):
    nd = len(axes)
    return np.moveaxis(r.reshape(moved_shape), tuple(range(ndim - nd, ndim)), axes)


# ----------------------------------------------------------------------- references
class Ref:
    """Exact (long double) softmax family of one input along ``axis``.

    ``sm``, ``lsm``: same shape as the input; ``lse``: the reduced shape (keepdims=False);
    ``dist``: |x_i - max| (the second term of docs/contract.md §5's bound); ``hard0``: where
    softmax must
    be exactly 0 (a -inf entry of an ordinary row, or a masked entry); ``poisoned``:
    entries of rows that are all-nan by the special-value table (nan / +inf present).
    """

    def __init__(self, x, axis=-1, where=None, b=None):
        xl = np.asarray(x).astype(LD)
        ndim = xl.ndim
        axes = norm_axes(axis, ndim)
        if where is None:
            w = np.ones(xl.shape, bool)
        else:
            w = np.broadcast_to(np.asarray(where, bool), xl.shape)
        if b is None:
            bl = np.ones(xl.shape, LD)
        else:
            bl = np.broadcast_to(np.asarray(b).astype(LD), xl.shape)
        if b is not None:
            # entries with b == 0 take no part (their exp may not even be representable)
            w = w & (bl != 0)
        X, moved_shape = _to_rows(xl, axes)
        W, _ = _to_rows(w, axes)
        B, _ = _to_rows(bl, axes)
        with np.errstate(all="ignore"):
            act = np.where(W, X, LD(-np.inf))
            has_nan = np.any(np.isnan(act), axis=-1, keepdims=True)
            has_pinf = np.any(act == np.inf, axis=-1, keepdims=True)
            m = np.max(np.where(np.isnan(act), LD(-np.inf), act), axis=-1, keepdims=True,
                       initial=LD(-np.inf))
            empty_row = ~np.isfinite(m) & ~has_pinf  # no finite active entry
            poisoned = has_nan | has_pinf
            msafe = np.where(np.isfinite(m), m, LD(0))
            d = act - msafe
            e = np.exp(d)  # 0 at -inf / masked
            s = np.sum(e, axis=-1, keepdims=True)  # pairwise (contiguous rows)
            sb = np.sum(B * e, axis=-1, keepdims=True)
            sm = np.where(empty_row, LD(0), e / np.where(empty_row, LD(1), s))
            # log(s) as log1p(rest), the max's own term (exactly 1) set apart, so that a
            # dominant entry keeps its low-order bits in the reference too
            at_max = d == 0
            rest = np.sum(np.where(at_max, LD(0), e), axis=-1, keepdims=True) + (
                np.sum(at_max, axis=-1, keepdims=True).astype(LD) - 1)
            log_s = np.log1p(np.where(empty_row, LD(0), rest))
            lsm = np.where(empty_row, LD(-np.inf), d - log_s)
            lse_b = msafe + (log_s if b is None else np.log(np.abs(sb)))
            lse = np.where(empty_row, LD(-np.inf), lse_b)
            sign = np.sign(sb)
            lse = np.where(empty_row, LD(-np.inf), lse)
            sign = np.where(empty_row, LD(0), sign)
            # special-value table: nan wins over +inf
            sm = np.where(poisoned, LD(np.nan), sm)
            lsm = np.where(poisoned, LD(np.nan), lsm)
            lse = np.where(has_pinf, LD(np.inf), lse)
            lse = np.where(has_nan, LD(np.nan), lse)
            sign = np.where(poisoned, LD(1), sign)
            dist = np.where(np.isfinite(d), np.abs(d), LD(0))
        hard0 = (~W | (X == -np.inf)) & ~poisoned
        n = X.shape[-1]
        self.n = n
        self.masked = _from_rows(~W, moved_shape, axes, ndim)
        self.sm = _from_rows(sm, moved_shape, axes, ndim)
        self.lsm = _from_rows(lsm, moved_shape, axes, ndim)
        self.dist = _from_rows(dist, moved_shape, axes, ndim)
        self.hard0 = _from_rows(hard0, moved_shape, axes, ndim)
        self.poisoned = _from_rows(np.broadcast_to(poisoned, X.shape), moved_shape, axes, ndim)
        red_shape = moved_shape[: ndim - len(axes)]
        self.lse = lse.reshape(red_shape)
        self.sign = sign.reshape(red_shape)
        self.row_has_finite = (~empty_row & ~poisoned).reshape(red_shape)
        self.axes = axes


def ref_softmax(x, axis=-1, where=None):
    return Ref(x, axis, where).sm


def ref_log_softmax(x, axis=-1, where=None):
    return Ref(x, axis, where).lsm


def ref_logsumexp(x, axis=-1, where=None, b=None):
    return Ref(x, axis, where, b).lse


def compute_dtype(in_dtype, dtype=None):
    """The output dtype docs/contract.md §2.3 prescribes."""
    if dtype is not None:
        return np.dtype(dtype)
    in_dtype = np.dtype(in_dtype)
    if in_dtype.kind == "f":
        return np.dtype(in_dtype.type)  # native byte order
    return np.dtype(np.float64)  # bool / integers


def cast_input(x, dtype):
    """The input values the library computes with: x cast to the compute dtype."""
    x = np.asarray(x)
    with np.errstate(over="ignore"):
        return x.astype(np.dtype(dtype).newbyteorder("="))


def scaled(x, temperature, dtype):
    """x / T formed in the compute dtype (float16 computes in float32 internally)."""
    x = cast_input(x, dtype)
    work = np.float32 if x.dtype == np.float16 else x.dtype.type
    return (x.astype(work) / work(temperature)).astype(work)


# --------------------------------------------------------------------------- checks
def _fail(msg, y, r, bad):
    idx = np.argwhere(bad)[:5]
    rows = [f"  at {tuple(int(i) for i in ix)}: got {y[tuple(ix)]!r}, exact {r[tuple(ix)]!r}"
            for ix in idx]
    raise AssertionError(f"{msg}: {int(np.count_nonzero(bad))} bad of {bad.size}\n"
                         + "\n".join(rows))


def _check_meta(y, shape, dtype):
    assert isinstance(y, np.ndarray), type(y)
    assert y.dtype == dtype, (y.dtype, dtype)
    assert y.dtype.isnative, y.dtype
    assert y.shape == tuple(shape), (y.shape, shape)


def ordered_int(a):
    """Map floats to integers whose difference is the ULP distance (finite values)."""
    a = np.asarray(a)
    it = {2: np.int16, 4: np.int32, 8: np.int64}[a.dtype.itemsize]
    i = a.view(it).astype(np.int64)
    sign_bit = np.int64(1) << (8 * a.dtype.itemsize - 1)
    return np.where(i < 0, -(i & (sign_bit - 1)), i)


def check_softmax(y, ref: Ref, dtype, allow_poisoned_masked=False):
    """docs/contract.md §5 for softmax against a precomputed reference."""
    dtype = np.dtype(dtype)
    _check_meta(y, ref.sm.shape, dtype)
    r = ref.sm
    nanref = np.isnan(r)
    ynan = np.isnan(y)
    poison_ok = np.zeros(r.shape, bool)
    if allow_poisoned_masked:
        # a masked entry of an all-nan row: 0 (where rule) or nan (row rule) both read as right
        poison_ok = ref.poisoned & ref.masked & ((y == 0) | ynan)
    bad = (nanref != ynan) & ~poison_ok
    if bad.any():
        _fail("softmax nan pattern differs from the special-value table", y, r, bad)
    fin = ~nanref & ~poison_ok
    bad = fin & ref.hard0 & (y != 0)
    if bad.any():
        _fail("softmax must be exactly 0 at -inf / masked entries", y, r, bad)
    if dtype == np.float16:
        want = r.astype(np.float16)
        with np.errstate(invalid="ignore"):
            dist = np.abs(ordered_int(y) - ordered_int(want))
        bad = fin & ~(dist <= 1)
        if bad.any():
            _fail("float16 softmax more than 1 ULP from the correctly rounded value", y, r, bad)
        return
    eps, k, tiny = LD(EPS[dtype]), LD(K[dtype]), LD(TINY[dtype])
    with np.errstate(invalid="ignore"):
        err = np.abs(y.astype(LD) - r)
        tol = np.where(np.abs(r) >= tiny, eps * (k + ref.dist / 2) * np.abs(r), tiny)
        bad = fin & ~(err <= tol)
    if bad.any():
        worst = np.max(np.where(bad, err / np.where(tol > 0, tol, 1), 0))
        _fail(f"softmax outside eps*(K+|x-max|/2) (worst {float(worst):.3g}x the bound)",
              y, r, bad)


def _ulp_ge1(v, dtype):
    """ulp of v (>= 1, finite in float64) in ``dtype``."""
    _, e = np.frexp(v.astype(np.float64))
    return np.ldexp(np.float64(1), e - 1 - MANT[np.dtype(dtype)]).astype(LD)


def check_log_values(y, r, dtype, what, ulps=4):
    """|y - r| <= ulps * ulp(max(1, |r|)) in ``dtype``; nan/inf must match exactly."""
    dtype = np.dtype(dtype)
    y = np.asarray(y)
    assert y.dtype == dtype, (what, y.dtype, dtype)
    assert y.dtype.isnative
    assert y.shape == r.shape, (what, y.shape, r.shape)
    with np.errstate(over="ignore", invalid="ignore"):
        rd = r.astype(dtype)  # correctly rounded (up to a double rounding) incl. overflow
    nanref = np.isnan(r)
    bad = nanref != np.isnan(y)
    if bad.any():
        _fail(f"{what}: nan pattern differs from the special-value table", y, r, bad)
    infref = np.isinf(rd) & ~nanref
    bad = infref & (y != rd)
    if bad.any():
        _fail(f"{what}: expected an infinity", y, r, bad)
    fin = ~nanref & ~infref
    with np.errstate(invalid="ignore", over="ignore"):
        v = np.where(fin, np.maximum(LD(1), np.abs(r)), LD(1))
        tol = LD(ulps) * _ulp_ge1(v, dtype)
        err = np.abs(y.astype(LD) - r)
        bad = fin & ~(err <= tol)
    if bad.any():
        _fail(f"{what}: error above {ulps} ULP of max(1, |exact|)", y, r, bad)


def check_log_softmax(y, ref: Ref, dtype):
    dtype = np.dtype(dtype)
    _check_meta(y, ref.lsm.shape, dtype)
    check_log_values(y, ref.lsm, dtype, "log_softmax")


def check_logsumexp(y, ref: Ref, dtype, keepdims=False):
    dtype = np.dtype(dtype)
    r = ref.lse
    if keepdims:
        shape = list(ref.sm.shape)
        for a in ref.axes:
            shape[a] = 1
        r = r.reshape(shape)
    if r.ndim == 0:
        assert isinstance(y, np.floating) and not isinstance(y, np.ndarray), type(y)
        assert y.dtype == dtype, (y.dtype, dtype)
        check_log_values(np.asarray(y), r, dtype, "logsumexp")
        return
    _check_meta(y, r.shape, dtype)
    check_log_values(y, r, dtype, "logsumexp")


# -------------------------------------------------------------- convenience asserts
def assert_softmax_close(y, x, axis=-1, dtype=None, where=None, temperature=None):
    """``y`` is softmax(x, axis) in output dtype ``dtype``, to docs/contract.md §5."""
    dt = compute_dtype(np.asarray(x).dtype, dtype)
    xv = scaled(x, temperature, dt) if temperature is not None else cast_input(x, dt)
    check_softmax(y, Ref(xv, axis, where), dt)


def assert_log_softmax_close(y, x, axis=-1, dtype=None, where=None, temperature=None):
    dt = compute_dtype(np.asarray(x).dtype, dtype)
    xv = scaled(x, temperature, dt) if temperature is not None else cast_input(x, dt)
    check_log_softmax(y, Ref(xv, axis, where), dt)


def assert_logsumexp_close(y, x, axis=-1, dtype=None, where=None, b=None, keepdims=False):
    dt = compute_dtype(np.asarray(x).dtype, dtype)
    check_logsumexp(y, Ref(cast_input(x, dt), axis, where, b), dt, keepdims=keepdims)


def bits(a):
    """A bit-pattern view for bit-for-bit comparisons (nan payloads included)."""
    a = np.ascontiguousarray(a)
    return a.view({2: np.uint16, 4: np.uint32, 8: np.uint64}[a.dtype.itemsize])


def assert_bits_equal(a, b, what=""):
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape, (what, a.dtype, b.dtype, a.shape, b.shape)
    ba, bb = bits(a), bits(b)
    if not np.array_equal(ba, bb):
        bad = ba != bb
        _fail(f"not bit-identical {what}", a, b, bad)


def random_values(rng, shape, dtype, scale=4.0, spread=True):
    """Finite test values exactly representable in ``dtype`` (returned in ``dtype``)."""
    v = rng.standard_normal(shape) * scale
    if spread and v.size:
        # a few entries far from the rest: exercises |x - max| up to ~60
        k = max(1, v.size // 16)
        idx = rng.integers(0, v.size, k)
        v.reshape(-1)[idx] += rng.uniform(-60, 20, k)
    return v.astype(dtype)


# ------------------------------------------------------------------ per-function glue
def check_func(name, y, x, axis=-1, dtype=None, where=None, temperature=None):
    """Check the result ``y`` of fastsoftmax.<name>(x, axis, ...) against the reference."""
    if name == "softmax":
        assert_softmax_close(y, x, axis, dtype, where, temperature)
    elif name == "log_softmax":
        assert_log_softmax_close(y, x, axis, dtype, where, temperature)
    elif name == "logsumexp":
        assert temperature is None
        assert_logsumexp_close(y, x, axis, dtype, where)
    else:  # pragma: no cover
        raise ValueError(name)


def run_python(code, env_update=None, env_remove=(), timeout=300):
    """Run ``code`` in a fresh interpreter; returns the CompletedProcess."""
    import os
    import subprocess
    import sys

    env = dict(os.environ)
    for k in env_remove:
        env.pop(k, None)
    env.update(env_update or {})
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=timeout, cwd=os.path.dirname(__file__))
