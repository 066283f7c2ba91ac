"""One argument matrix through every entry point: the C++ fast entries and the Python path.

``fastsoftmax.softmax`` / ``log_softmax`` / ``logsumexp`` are C++ fast calls that take
the simple cases themselves and hand every other call to ``fastsoftmax._api``, the one
place that validates and raises. The fast path may only *decline*; so each call here
must give the same answer through both: the same result (bits, dtype, shape, strides,
type), the same effect on ``out`` and ``x``, or the same exception type and message.

The matrix is a sampled product: every value of every argument with the simple values
of the others, every value paired with every ``x``, and a seeded random sample of the
full product.
"""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

import fastsoftmax as fs
from fastsoftmax import _api

OPS = ("softmax", "log_softmax", "logsumexp")
OMIT = object()  # the argument is not passed at all


def _rng():
    return np.random.default_rng(1234)


def _f32(shape):
    return (_rng().standard_normal(shape) * 3).astype(np.float32)


def _unaligned(shape):
    n = int(np.prod(shape))
    buf = np.zeros(4 * n + 1, np.uint8)
    a = buf[1:].view(np.float32).reshape(shape)
    a[...] = _f32(shape)
    assert not a.flags.aligned
    return a


def _readonly(shape):
    a = _f32(shape)
    a.flags.writeable = False
    return a


# name -> () -> x (built afresh for every call: out=x writes into it)
X = {
    "2d": lambda: _f32((3, 5)),
    "list": lambda: [[0.5, -1.0, 2.0], [3.0, 0.0, -0.25]],
    "0d": lambda: np.array(1.5, np.float32),
    "1d": lambda: _f32((7,)),
    "3d": lambda: _f32((2, 3, 4)),
    "f16": lambda: _f32((3, 5)).astype(np.float16),
    "f64": lambda: _f32((3, 5)).astype(np.float64),
    "int": lambda: _rng().integers(-5, 5, (3, 5)).astype(np.int32),
    "bool": lambda: _rng().integers(0, 2, (3, 5)).astype(bool),
    "big-endian": lambda: _f32((3, 5)).astype(">f4"),
    "unaligned": lambda: _unaligned((3, 5)),
    "read-only": lambda: _readonly((3, 5)),
    "strided": lambda: _f32((3, 10))[:, ::2],
    "fortran": lambda: np.asfortranarray(_f32((3, 5))),
    "fortran-strided": lambda: np.asfortranarray(_f32((4, 6, 5)))[:, ::2],
    "transposed-3d": lambda: _f32((4, 3, 5)).transpose(2, 0, 1)[::2],
    "empty": lambda: np.zeros((0, 5), np.float32),
    "matrix-subclass": lambda: _f32((3, 5)).view(_Sub),
}


class _Sub(np.ndarray):
    pass


AXIS = {
    "omit": OMIT,
    "-1": -1,
    "0": 0,
    "1": 1,
    "(1,)": (1,),
    "(0,1)": (0, 1),
    "()": (),
    "None": None,
    "5": 5,
    "-5": -5,
    "(0,5)": (0, 5),
    "(0,0)": (0, 0),
    "True": True,
    "np.int64(0)": np.int64(0),
    "np.bool_": np.bool_(False),
    "1.0": 1.0,
    "huge": 10**30,
    "(huge,)": (10**30,),
    "[0]": [0],
}

TEMPERATURE = {
    "omit": OMIT,
    "1": 1,
    "1.0": 1.0,
    "0.7": 0.7,
    "np.float32(0.7)": np.float32(0.7),
    "np.float64(0.7)": np.float64(0.7),
    "0": 0,
    "-1": -1,
    "nan": float("nan"),
    "inf": float("inf"),
    "True": True,
    "'x'": "x",
    "huge-int": 10**400,
    "big-int": 10**30,
    "None": None,
}


def _last_dim_mask(shape):
    if not shape:
        return np.False_
    w = np.ones(shape[-1:], bool)
    w[::2] = False
    return w


# name -> x's shape -> where
WHERE = {
    "omit": lambda s: OMIT,
    "None": lambda s: None,
    "full": lambda s: _rng().integers(0, 2, s).astype(bool),
    "broadcast-row": _last_dim_mask,
    "broadcast-col": lambda s: np.ones(s[:-1] + (1,), bool) if s else np.True_,
    "strided": lambda s: np.ones(s + (2,), bool)[..., 0],
    "0d": lambda s: np.array(False),
    "scalar": lambda s: True,
    "too-many-dims": lambda s: np.ones((1,) + s, bool),
    "not-broadcasting": lambda s: np.ones((2,) * max(1, len(s)), bool),
    "int": lambda s: np.ones(s, np.int64),
    "list": lambda s: _last_dim_mask(s).tolist(),
}

DTYPE = {
    "omit": OMIT,
    "None": None,
    "float32": np.float32,
    "'float64'": "float64",
    "float16": np.float16,
    "int32": np.int32,
    "garbage": "not a dtype",
}


# name -> (x, result shape, result dtype) -> out
def _overlapping(x, shape, dt):
    if not isinstance(x, np.ndarray) or x.ndim == 0:
        return np.empty(shape, dt)
    if x.shape == shape:
        return x[..., ::-1]  # the same elements, another order
    flat = x.reshape(-1)
    size = int(np.prod(shape))
    return flat[1 : 1 + size].reshape(shape) if size < flat.size else flat[:size].reshape(shape)


def _readonly_out(x, shape, dt):
    o = np.full(shape, 7, dt)
    o.flags.writeable = False
    return o


def _other_dtype(dt):
    return np.float32 if np.dtype(dt) != np.float32 else np.float64


OUT = {
    "omit": lambda x, s, d: OMIT,
    "None": lambda x, s, d: None,
    "right": lambda x, s, d: np.full(s, 7, d),
    "right-fortran": lambda x, s, d: np.asfortranarray(np.full(s, 7, d)),
    "right-strided": lambda x, s, d: np.full(s + (2,), 7, d)[..., 1],
    "right-big-endian": lambda x, s, d: np.full(s, 7, np.dtype(d).newbyteorder(">")),
    "wrong-shape": lambda x, s, d: np.full(s + (1,), 7, d),
    "wrong-dtype": lambda x, s, d: np.full(s, 7, _other_dtype(d)),
    "int-dtype": lambda x, s, d: np.full(s, 7, np.int32),
    "read-only": _readonly_out,
    "x": lambda x, s, d: x,
    "overlapping": _overlapping,
    "list": lambda x, s, d: np.full(s, 7, d).tolist(),
}

# logsumexp only
KEEPDIMS = {"omit": OMIT, "False": False, "True": True, "1": 1}
B = {"omit": OMIT, "None": None, "ones": lambda s: np.full(s, 2.0), "row": lambda s: [0.5]}
RETURN_SIGN = {"omit": OMIT, "False": False, "True": True}

COMMON = {"x": X, "axis": AXIS, "where": WHERE, "dtype": DTYPE, "out": OUT}
PARAMS = {
    "softmax": {**COMMON, "temperature": TEMPERATURE},
    "log_softmax": {**COMMON, "temperature": TEMPERATURE},
    "logsumexp": {**COMMON, "keepdims": KEEPDIMS, "b": B, "return_sign": RETURN_SIGN},
}


def _build(op, case):
    """(args, kwargs, x) for `case` (argument -> value name), every array made afresh."""
    x = X[case["x"]]()
    xa = np.asarray(x)
    args, kwargs = [x], {}
    for name, vname in case.items():
        if name in ("x", "out", "positional_axis"):
            continue
        v = PARAMS[op][name][vname]
        if name == "where":
            v = v(xa.shape)
        elif name == "b" and callable(v):
            v = v(xa.shape)
        if v is not OMIT:
            kwargs[name] = v
    if "axis" in kwargs and case.get("positional_axis"):
        args.append(kwargs.pop("axis"))
    out_maker = OUT[case.get("out", "omit")]
    if case.get("out", "omit") not in ("omit", "None"):
        # the shape and dtype of the result, from a call without out=
        try:
            a2, k2, _ = _build(op, {**case, "out": "omit"})
            ref = getattr(_api, op)(*a2, **k2)
            ref = ref[0] if isinstance(ref, tuple) else ref
            shape, dt = np.shape(ref), np.asarray(ref).dtype
        except Exception:
            shape, dt = xa.shape, (xa.dtype if xa.dtype.kind == "f" else np.float64)
        kwargs["out"] = out_maker(x, shape, dt)
    elif case.get("out") == "None":
        kwargs["out"] = None
    return args, kwargs, x


def _outcome(f, op, case):
    args, kwargs, x = _build(op, case)
    try:
        r = f(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - any exception is an outcome to compare
        return ("raises", type(e), str(e))
    return ("returns", r, kwargs.get("out", OMIT), x)


def _same_value(a, b, what):
    assert type(a) is type(b), (what, type(a), type(b))
    if isinstance(a, tuple):
        assert len(a) == len(b)
        for i, (u, v) in enumerate(zip(a, b)):
            _same_value(u, v, f"{what}[{i}]")
        return
    if isinstance(a, list):
        assert a == b or np.array_equal(a, b, equal_nan=True), what
        return
    ua, ub = np.asarray(a), np.asarray(b)
    assert ua.dtype == ub.dtype and ua.shape == ub.shape, (what, ua.dtype, ub.dtype, ua.shape, ub.shape)
    assert np.array_equal(ua, ub, equal_nan=True), (what, ua, ub)
    if isinstance(a, np.ndarray):
        assert a.strides == b.strides, (what, "strides", a.strides, b.strides)


def _check(op, case):
    fast = _outcome(getattr(fs, op), op, case)
    slow = _outcome(getattr(_api, op), op, case)
    if slow[0] == "raises" or fast[0] == "raises":
        assert fast[:3] == slow[:3], (fast[:3], slow[:3])
        return
    _, rf, of, xf = fast
    _, rs, os_, xs = slow
    _same_value(rf, rs, "result")
    if of is not OMIT and of is not None:
        assert (rf is of) == (rs is os_), "result is out"
        _same_value(of, os_, "out after the call")
    _same_value(xf, xs, "x after the call")


def _cases():
    """(op, case) pairs: see the module docstring."""
    out = []
    for op, params in PARAMS.items():
        simple = {name: next(iter(vals)) for name, vals in params.items()}
        seen = set()

        def add(case, op=op, seen=seen):
            key = tuple(sorted(case.items()))
            if key not in seen:
                seen.add(key)
                out.append((op, dict(case)))

        for name, vals in params.items():  # every value, the others simple
            for v in vals:
                add({**simple, name: v})
        for name, vals in params.items():  # every value with every x
            for xv, v in itertools.product(X, vals):
                add({**simple, "x": xv, name: v})
        r = random.Random(20240611 + len(op))  # a sample of the full product
        for _ in range(150):
            add({name: r.choice(list(vals)) for name, vals in params.items()})
        # positional axis, with and without keywords
        for av in ("0", "-1", "(1,)", "None", "True"):
            add({**simple, "axis": av, "positional_axis": True})
            add({**simple, "axis": av, "out": "right", "positional_axis": True})
    return out


CASES = _cases()


def _id(op_case):
    op, case = op_case
    return op + "-" + ",".join(f"{k}={v}" for k, v in case.items() if v not in ("omit",))


@pytest.mark.aarch64
@pytest.mark.parametrize("op,case", CASES, ids=[_id(c) for c in CASES])
def test_same_answer(op, case):
    _check(op, case)


# ------------------------------------------------------------------ the call itself
SIGNATURE_ERRORS = [
    ((), {}),  # x missing
    ((np.ones(3), -1, 1.0), {}),  # too many positional arguments
    ((np.ones(3),), {"bogus": 1}),
    ((np.ones(3), 0), {"axis": 0}),  # axis twice
    ((), {"axis": 0}),
]


@pytest.mark.aarch64
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("args,kwargs", SIGNATURE_ERRORS, ids=str)
def test_signature_errors(op, args, kwargs):
    def outcome(f):
        try:
            f(*args, **kwargs)
        except Exception as e:  # noqa: BLE001
            return type(e), str(e)
        return None

    assert outcome(getattr(fs, op)) == outcome(getattr(_api, op))
    assert outcome(getattr(fs, op)) is not None


def test_logsumexp_has_no_temperature():
    with pytest.raises(TypeError) as a:
        fs.logsumexp(np.ones(3), temperature=0.5)
    with pytest.raises(TypeError) as b:
        _api.logsumexp(np.ones(3), temperature=0.5)
    assert str(a.value) == str(b.value)


# ------------------------------------------------------------- the internal entry
_X = np.ones((3, 4), np.float32)
_O = np.empty((3, 4), np.float32)
BAD_INTERNAL_CALLS = {
    "op": (5, _X, [1], 1.0, None, None, None, None),
    "x-list": (0, [[1.0]], [0], 1.0, None, None, None, None),
    "x-big-endian": (0, _X.astype(">f4"), [1], 1.0, None, None, None, None),
    "axis": (0, _X, [2], 1.0, None, None, None, None),
    "axis-repeated": (0, _X, [1, 1], 1.0, None, None, None, None),
    "out-shape": (0, _X, [1], 1.0, None, np.empty((3, 3), np.float32), None, None),
    "out-dtype": (0, _X, [1], 1.0, None, np.empty((3, 4)), None, None),
    "out-list": (0, _X, [1], 1.0, None, [1, 2], None, None),
    "where-list": (0, _X, [1], 1.0, [True], _O, None, None),
    "where-not-full": (0, _X, [1], 1.0, np.ones(4, bool), _O, None, None),
    "lse-no-out": (2, _X, [1], 1.0, None, None, None, None),
    "lse-out-shape": (2, _X, [1], 1.0, None, np.empty((3, 2), np.float32), None, None),
    "lse-sign-shape": (2, _X, [1], 1.0, None, np.empty(3, np.float32), None,
                       np.empty(4, np.float32)),
    "lse-b-dtype": (2, _X, [1], 1.0, None, np.empty(3, np.float32), np.ones((3, 4), np.float32),
                    None),
}


@pytest.mark.aarch64
@pytest.mark.parametrize("call", BAD_INTERNAL_CALLS.values(), ids=BAD_INTERNAL_CALLS.keys())
def test_internal_compute_rejects_without_crashing(call):
    # _core._compute trusts _api for the user's rules; its own checks only keep a wrong
    # internal call from crashing or writing out of bounds
    with pytest.raises(ValueError, match="^internal: "):
        fs._core._compute(*call)
