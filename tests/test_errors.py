"""docs/contract.md §9: every bad argument raises an exception that names it; nothing crashes."""

import re

import numpy as np
import pytest

import fastsoftmax as fs
from _ref import check_func

FUNCS = {"softmax": fs.softmax, "log_softmax": fs.log_softmax, "logsumexp": fs.logsumexp}


# ------------------------------------------------------------------------- dtypes
BAD_DTYPE_INPUTS = [
    (np.array([1 + 2j, 3j]), r"complex128"),
    (np.array([1 + 2j, 3j], np.complex64), r"complex64"),
    (np.array([1.0, 2.0], dtype=object), r"object"),
    (np.array(["a", "bc"]), r"<U2|str|unicode|U2"),
    (np.array([b"a", b"bc"]), r"\|S2|bytes|S2"),
    (np.array(["2020-01-01", "2021-01-01"], dtype="datetime64[D]"), r"datetime64"),
    (np.array([1, 2], dtype="timedelta64[s]"), r"timedelta64"),
    (np.array([1.0, 2.0], dtype=np.longdouble), r"float128|longdouble|float96|longfloat"),
    (np.zeros(2, dtype=[("a", "f4"), ("b", "f4")]), r"\[|void|V8|struct"),
]


@pytest.mark.aarch64
@pytest.mark.parametrize("x,name", BAD_DTYPE_INPUTS, ids=lambda v: getattr(v, "dtype", v).__str__())
def test_unsupported_dtype(func_name, x, name):
    with pytest.raises(TypeError, match=name):
        FUNCS[func_name](x)


def test_string_list_input(func_name):
    with pytest.raises(TypeError):
        FUNCS[func_name](["a", "b"])


@pytest.mark.parametrize("bad", [np.int32, np.int64, np.bool_, np.complex128, object, "U3",
                                 np.longdouble, "datetime64[s]"], ids=str)
def test_dtype_argument_not_float(func_name, bad):
    with pytest.raises(TypeError, match="dtype"):
        FUNCS[func_name](np.ones((2, 3)), dtype=bad)


def test_dtype_argument_garbage(func_name):
    with pytest.raises(TypeError):
        FUNCS[func_name](np.ones((2, 3)), dtype="not a dtype")


# --------------------------------------------------------------------------- axis
@pytest.mark.aarch64
@pytest.mark.parametrize("shape,axis,bad", [((2, 3), 2, 2), ((2, 3), -3, -3), ((4,), 1, 1),
                                            ((2, 3, 4), (0, 5), 5), ((2, 3), (-3,), -3)],
                         ids=str)
def test_axis_out_of_range(func_name, shape, axis, bad):
    msg = str(np.exceptions.AxisError(bad, len(shape)))
    with pytest.raises(np.exceptions.AxisError, match=re.escape(msg)) as ei:
        FUNCS[func_name](np.ones(shape), axis=axis)
    assert isinstance(ei.value, ValueError) and isinstance(ei.value, IndexError)
    # NumPy's own words, once: "axis 2 is out of bounds for array of dimension 2", not
    # "axis: axis 2 is ..." (issue #18)
    assert str(ei.value) == msg


@pytest.mark.parametrize("axis", [(0, 0), (1, -1), (0, 1, 0)], ids=str)
def test_repeated_axis(func_name, axis):
    with pytest.raises(ValueError, match="axis"):
        FUNCS[func_name](np.ones((2, 3)), axis=axis)


@pytest.mark.parametrize("axis", [1.0, "0", [0.5]], ids=str)
def test_axis_wrong_type(func_name, axis):
    with pytest.raises(TypeError):
        FUNCS[func_name](np.ones((2, 3)), axis=axis)


# -------------------------------------------------------------------- temperature
@pytest.mark.aarch64
@pytest.mark.parametrize("t", [0.0, -0.0, -1.0, -1e-300, np.nan, np.inf, -np.inf], ids=str)
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_bad_temperature(name, t):
    with pytest.raises(ValueError, match="temperature"):
        FUNCS[name](np.ones((2, 3)), temperature=t)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_temperature_not_a_number(name):
    with pytest.raises((TypeError, ValueError), match="temperature"):
        FUNCS[name](np.ones((2, 3)), temperature="hot")


# -------------------------------------------------------------------------- where
def test_where_not_boolean(func_name):
    x = np.ones((2, 3))
    for w in (np.ones((2, 3), np.int64), np.ones((2, 3)), [[1, 0, 1], [0, 1, 1]]):
        with pytest.raises(TypeError, match="where"):
            FUNCS[func_name](x, where=w)


@pytest.mark.aarch64
@pytest.mark.parametrize("wshape", [(2,), (2, 2), (3, 3), (4, 2, 3), (1, 4)], ids=str)
def test_where_not_broadcastable(func_name, wshape):
    with pytest.raises(ValueError, match="where"):
        FUNCS[func_name](np.ones((2, 3)), where=np.ones(wshape, bool))


# ---------------------------------------------------------------------------- out
def _out_shape(name, shape):
    return shape if name != "logsumexp" else shape[:-1]


@pytest.mark.aarch64
@pytest.mark.parametrize("bad", [(2, 4), (3, 2), (2, 3, 1), (6,), ()], ids=str)
def test_out_wrong_shape(func_name, bad):
    x = np.ones((2, 3))
    with pytest.raises(ValueError, match="out"):
        FUNCS[func_name](x, out=np.empty(bad))


@pytest.mark.parametrize("bad", [np.float32, np.float16, np.int64, np.complex128], ids=str)
def test_out_wrong_dtype(func_name, bad):
    x = np.ones((2, 3))
    with pytest.raises(TypeError, match="out"):
        FUNCS[func_name](x, out=np.empty(_out_shape(func_name, (2, 3)), dtype=bad))


def test_out_wrong_dtype_float32_input(func_name):
    x = np.ones((2, 3), np.float32)
    with pytest.raises(TypeError, match="out"):
        FUNCS[func_name](x, out=np.empty(_out_shape(func_name, (2, 3)), np.float64))


def test_out_read_only(func_name):
    x = np.ones((2, 3))
    out = np.empty(_out_shape(func_name, (2, 3)))
    out.flags.writeable = False
    with pytest.raises(ValueError, match="out"):
        FUNCS[func_name](x, out=out)
    # a read-only broadcast view as out
    out2 = np.broadcast_to(np.empty(_out_shape(func_name, (2, 3))[-1:]),
                           _out_shape(func_name, (2, 3)))
    with pytest.raises(ValueError, match="out"):
        FUNCS[func_name](x, out=out2)


def test_out_not_an_array(func_name):
    with pytest.raises(TypeError, match="out"):
        FUNCS[func_name](np.ones((2, 3)), out=[[0.0] * 3] * 2)


def test_out_untouched_on_error(func_name):
    out = np.full(_out_shape(func_name, (2, 3)), 7.0)
    with pytest.raises(np.exceptions.AxisError):
        FUNCS[func_name](np.ones((2, 3)), axis=5, out=out)
    assert np.all(out == 7.0)


# -------------------------------------------------------------------- logsumexp b
def test_logsumexp_b_not_broadcastable():
    with pytest.raises(ValueError, match=r"\bb\b"):
        fs.logsumexp(np.ones((2, 3)), b=np.ones(4))


# -------------------------------------------------------------------------- threads
@pytest.mark.aarch64
@pytest.mark.parametrize("n", [0, -2, -100])
def test_set_num_threads_bad(n):
    before = fs.get_num_threads()
    with pytest.raises(ValueError, match=r"thread|\bn\b"):
        fs.set_num_threads(n)
    assert fs.get_num_threads() == before
    with pytest.raises(ValueError):
        with fs.threads(n):
            pass  # pragma: no cover
    assert fs.get_num_threads() == before


@pytest.mark.parametrize("n", [2.5, "2"])
def test_set_num_threads_wrong_type(n):
    with pytest.raises((TypeError, ValueError)):
        fs.set_num_threads(n)


# ------------------------------------------------------------------- no crash, ever
ODD_SHAPES = [
    ((0, 5), -1), ((0, 5), 0), ((0, 5), None), ((5, 0), -1), ((5, 0), 0), ((5, 0), None),
    ((1,) * 8, -1), ((1,) * 8, None), ((1,) * 8, (0, 3, 7)), ((1, 1, 3, 1, 1, 4, 1, 1), 5),
    ((1, 1, 3, 1, 1, 4, 1, 1), (2, 5)), ((2,) * 12, (1, 4, 11)), ((1,) * 32, 17),
    ((1, 0, 1), 1), ((3, 1), 1), ((1, 3), 0),
]


@pytest.mark.aarch64
@pytest.mark.usefixtures("isa")
@pytest.mark.parametrize("shape,axis", ODD_SHAPES, ids=str)
def test_odd_shapes(func_name, shape, axis, rng):
    x = rng.standard_normal(shape).astype(np.float32)
    y = FUNCS[func_name](x, axis=axis)
    check_func(func_name, y, x, axis)


def test_huge_broadcast_fails_cleanly(func_name):
    # the result cannot be allocated: a Python exception, not a crash
    x = np.broadcast_to(np.float32(1.0), (2**24, 2**24, 4))
    with pytest.raises((MemoryError, ValueError)):
        FUNCS["softmax" if func_name == "logsumexp" else func_name](x, axis=-1)


def test_logsumexp_over_huge_broadcast_outer_fails_cleanly():
    x = np.broadcast_to(np.float32(1.0), (2**25, 2**24, 2))
    with pytest.raises((MemoryError, ValueError)):
        fs.logsumexp(x, axis=-1)


def test_clean_interpreter_exit(tmp_path):
    # the process must not crash at exit either: run a tiny pytest session (which tears
    # modules down the way this suite's own session does) and a plain script
    from _ref import run_python

    t = tmp_path / "test_tiny.py"
    t.write_text("import numpy as np\nimport fastsoftmax as fs\n\n"
                 "def test_tiny():\n"
                 "    fs.softmax(np.ones(3))\n"
                 "    fs.softmax(np.ones(3), where=np.ones(3, bool))\n"
                 "    fs.logsumexp(np.ones((2, 3)), axis=None)\n")
    p = run_python(f"import sys, pytest; sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', "
                   f"{str(t)!r}]))")
    assert p.returncode == 0, (p.returncode, p.stdout[-2000:], p.stderr[-2000:])
    p = run_python("import numpy as np, fastsoftmax as fs\n"
                   "fs.softmax(np.ones(3), where=np.ones(3, bool))\nfs.softmax(np.ones(3))\n")
    assert p.returncode == 0, (p.returncode, p.stderr[-2000:])
