"""docs/contract.md §3: every row of the table, every function and dtype, several layouts.

Warnings are errors (pytest config and explicitly here): no RuntimeWarning may escape.
"""

import warnings

import numpy as np
import pytest

import fastsoftmax as fs
from _ref import FLOATS, Ref, check_log_softmax, check_logsumexp, check_softmax

pytestmark = pytest.mark.usefixtures("isa")

inf, nan = np.inf, np.nan


def _big(dtype):
    return 6.0e4 if dtype == np.float16 else 1e30


def patterns(dtype):
    """name -> (values, table row)."""
    fi = np.finfo(dtype)
    big, mx, sub = _big(dtype), float(fi.max), float(fi.smallest_subnormal)
    return {
        "gap_1000_5": ([1000.0, 5.0], "finite"),
        "neg_huge_0": ([-big, 0.0], "finite"),
        "huge_pair": ([big, big], "finite"),
        "max_pair": ([mx, mx], "finite"),
        "max_minus_max": ([mx, -mx], "finite"),
        "lowest_only": ([-mx, -mx, -mx], "finite"),
        "subnormals": ([sub, -sub, 0.0], "finite"),
        "some_neginf": ([-inf, 1.0, 2.0, -inf], "some_neginf"),
        "neginf_one_finite": ([-inf, 3.0, -inf], "some_neginf"),
        "neginf_with_max": ([-inf, mx], "some_neginf"),
        "only_neginf": ([-inf, -inf, -inf], "only_neginf"),
        "single_neginf": ([-inf], "only_neginf"),
        "posinf": ([1.0, inf, 2.0], "posinf"),
        "posinf_neginf": ([inf, -inf], "posinf"),
        "two_posinf": ([inf, inf], "posinf"),
        "single_posinf": ([inf], "posinf"),
        "nan": ([1.0, nan, 2.0], "nan"),
        "only_nan": ([nan, nan], "nan"),
        "nan_posinf": ([nan, inf], "nan"),
        "posinf_nan": ([inf, 1.0, nan], "nan"),
        "nan_neginf": ([-inf, nan], "nan"),
        "nan_big": ([big, nan, -big], "nan"),
    }


PATTERN_NAMES = list(patterns(np.float32))


def table_check(name, y, row_kind, x_row):
    """The table itself, written out (independently of the reference)."""
    y = np.asarray(y)
    if name == "softmax":
        if row_kind == "finite":
            assert np.all(np.isfinite(y)) and np.all(y >= 0)
        elif row_kind == "some_neginf":
            assert np.all(y[np.isneginf(x_row)] == 0) and np.all(np.isfinite(y))
        elif row_kind == "only_neginf":
            assert np.all(y == 0)
        else:
            assert np.all(np.isnan(y))
    elif name == "log_softmax":
        if row_kind == "finite":
            assert not np.any(np.isnan(y) | (y == inf))
        elif row_kind == "some_neginf":
            assert np.all(y[np.isneginf(x_row)] == -inf)
            assert np.all(np.isfinite(y[np.isfinite(x_row)]))
        elif row_kind == "only_neginf":
            assert np.all(y == -inf)
        else:
            assert np.all(np.isnan(y))
    else:
        expect = {"finite": "finite", "some_neginf": "finite", "only_neginf": -inf,
                  "posinf": inf, "nan": "nan"}[row_kind]
        if expect == "finite":
            assert np.all(np.isfinite(y))
        elif expect == "nan":
            assert np.all(np.isnan(y))
        else:
            assert np.all(y == expect)


def run_case(name, x, axis, dtype, row_kinds_and_rows):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = getattr(fs, name)(x, axis=axis)
    ref = Ref(np.array(x), axis)
    if name == "softmax":
        check_softmax(y, ref, dtype)
    elif name == "log_softmax":
        check_log_softmax(y, ref, dtype)
    else:
        check_logsumexp(y, ref, dtype)
    return y


def _layouts(row, dtype):
    """(label, x, axis, extractor(y, k) giving result for pattern copy k)."""
    L = len(row)
    r = np.array(row, dtype=dtype)
    tiled = np.resize(r, 37)  # same table row, longer than a vector
    other = np.linspace(-3, 3, L).astype(dtype)
    batch = np.stack([other, r, other[::-1], r])  # pattern at rows 1 and 3
    out = [
        ("row", r, -1),
        ("tiled37", tiled, -1),
        ("batch", batch, -1),
        ("axis0", np.ascontiguousarray(batch.T), 0),
        ("axis0_tiled", np.ascontiguousarray(np.stack([tiled, np.resize(other, 37), tiled]).T), 0),
        ("strided", np.repeat(batch, 2, axis=1)[:, ::2], -1),
        ("strided_axis0", np.repeat(batch.T, 3, axis=1)[:, ::3], 0),
        ("negative", batch[::-1, ::-1], -1),
    ]
    return out


@pytest.mark.aarch64
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("pattern", PATTERN_NAMES)
def test_special_value_table(func_name, pattern, dtype):
    row, kind = patterns(dtype)[pattern]
    for label, x, axis in _layouts(row, dtype):
        try:
            y = run_case(func_name, x, axis, np.dtype(dtype), None)
        except AssertionError as e:
            raise AssertionError(f"layout {label!r}, axis={axis}, x={x!r}:\n{e}") from None
        # pick out the results of the pattern rows and check the table literally
        if label in ("row",):
            table_check(func_name, y, kind, x)
        elif label == "tiled37":
            table_check(func_name, y, kind, x)
        elif label in ("batch", "strided"):
            for k in (1, 3):
                table_check(func_name, y[k], kind, x[k])
        elif label == "negative":
            for k in (0, 2):
                table_check(func_name, y[k], kind, x[k])
        elif label in ("axis0", "strided_axis0"):
            for k in (1, 3):
                table_check(func_name, y[..., k] if y.ndim else y, kind, x[:, k])
        elif label == "axis0_tiled":
            for k in (0, 2):
                table_check(func_name, y[..., k], kind, x[:, k])


@pytest.mark.aarch64
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("special", [nan, inf, -inf], ids=["nan", "posinf", "neginf"])
@pytest.mark.parametrize("axis", [-1, 0])
def test_single_special_at_every_position(func_name, special, dtype, axis):
    # one special value at each position of a 33-long row: head, body and tail of the
    # vector loops all see it
    n = 33
    base = np.linspace(-4, 4, n).astype(dtype)
    rows = np.tile(base, (n, 1))
    rows[np.arange(n), np.arange(n)] = special
    x = rows if axis == -1 else np.ascontiguousarray(rows.T)
    y = run_case(func_name, x, axis, np.dtype(dtype), None)
    kind = {"nan": "nan", "inf": "posinf", "-inf": "some_neginf"}[repr(float(special))]
    for k in range(n):
        yk = y[k] if axis == -1 else y[..., k]
        table_check(func_name, yk, kind, rows[k])


@pytest.mark.parametrize("dtype", FLOATS)
def test_neginf_everywhere_but_one(func_name, dtype):
    n = 40
    rows = np.full((n, n), -inf, dtype=dtype)
    rows[np.arange(n), np.arange(n)] = 1.5
    y = run_case(func_name, rows, -1, np.dtype(dtype), None)
    if func_name == "softmax":
        np.testing.assert_array_equal(y, np.eye(n, dtype=dtype))
    elif func_name == "log_softmax":
        expect = np.where(np.eye(n, dtype=bool), 0.0, -inf).astype(dtype)
        np.testing.assert_array_equal(y, expect)
    else:
        np.testing.assert_array_equal(y, np.full(n, 1.5, dtype))
    y0 = run_case(func_name, np.ascontiguousarray(rows.T), 0, np.dtype(dtype), None)
    if func_name != "logsumexp":
        np.testing.assert_array_equal(y0, y.T)
    else:
        np.testing.assert_array_equal(y0, y)


@pytest.mark.aarch64
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape,axis", [((3, 0), -1), ((0, 3), 0), ((3, 0, 4), (1, 2)),
                                        ((0,), -1), ((0,), None), ((2, 0), None),
                                        ((4, 0, 2), 1)], ids=str)
def test_empty_reduced_axis(func_name, shape, axis, dtype):
    x = np.zeros(shape, dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = getattr(fs, func_name)(x, axis=axis)
    if func_name in ("softmax", "log_softmax"):
        assert isinstance(y, np.ndarray)
        assert y.shape == shape and y.dtype == dtype
    else:
        ref = Ref(x, axis)
        assert np.asarray(y).shape == ref.lse.shape
        assert np.asarray(y).dtype == dtype
        assert np.all(np.asarray(y) == -inf)
        if ref.lse.ndim == 0:
            assert isinstance(y, np.floating)


@pytest.mark.parametrize("dtype", FLOATS)
def test_empty_non_reduced_axis(func_name, dtype):
    x = np.zeros((0, 5), dtype)
    y = getattr(fs, func_name)(x, axis=-1)
    assert y.shape == ((0, 5) if func_name != "logsumexp" else (0,))
    assert y.dtype == dtype


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_overflow_free_large_rows(func_name, dtype, rng):
    # exp(x) overflows, exp(x - max) does not
    x = (rng.standard_normal((20, 50)) * 5 + 1e4).astype(dtype)
    run_case(func_name, x, -1, np.dtype(dtype), None)
    x = (rng.standard_normal((20, 50)) * 5 - 1e4).astype(dtype)  # exp(x) underflows
    run_case(func_name, x, -1, np.dtype(dtype), None)
    run_case(func_name, x, 0, np.dtype(dtype), None)


# --------------------------------------------------------------------- casts, subnormals
@pytest.mark.parametrize("values,dtype,row", [
    ([1e5, 0.0], np.float16, "+inf"),     # 1e5 > float16's max: +inf after the cast
    ([1e39, 0.0], np.float32, "+inf"),
    ([-1e39, 0.0], np.float32, "-inf"),
    ([1e39, -1e39, 0.0], np.float32, "+inf"),
], ids=["f64_to_f16", "f64_to_f32", "f64_to_f32_neg", "both"])
def test_dtype_cast_overflow_is_silent(func_name, values, dtype, row):
    # docs/contract.md §3: no RuntimeWarning, also not from the dtype= cast (issue #18:
    # "overflow encountered in cast" came from _api's astype); the overflowed value is
    # then an input +-inf like any other
    f = getattr(fs, func_name)
    x = np.array(values)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = f(x, dtype=dtype)
    assert y.dtype == dtype
    if row == "+inf":  # a +inf entry: softmax/log_softmax all NaN, logsumexp +inf
        if func_name == "logsumexp":
            assert y == np.inf
        else:
            assert np.isnan(y).all()
    else:  # [-inf, 0]: the -inf entry gives 0 / -inf, the other 1 / 0; logsumexp 0
        expect = {"softmax": [0.0, 1.0], "log_softmax": [-np.inf, 0.0], "logsumexp": 0.0}
        np.testing.assert_array_equal(y, np.array(expect[func_name], dtype))


def test_label_cast_overflow_is_silent():
    # dense labels are converted to the logits' dtype (docs/contract.md §4.1): a uint16
    # 65535 becomes +inf in float16 without a warning, exactly as the pre-cast labels
    logits = np.array([[0.5, -1.0, 2.0]], np.float16)
    labels = np.array([[65535, 0, 1]], np.uint16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = fs.softmax_cross_entropy_with_logits(labels, logits, return_grad=True)
    with np.errstate(over="ignore"):
        cast = labels.astype(np.float16)
    assert np.isinf(cast[0, 0])
    want = fs.softmax_cross_entropy_with_logits(cast, logits, return_grad=True)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("dtype,values,floor", [
    (np.float32, [0.0, -88.0, -90.0, -100.0], 1e-30),      # exp(-88) = 6.1e-39: subnormal
    (np.float64, [0.0, -709.0, -720.0, -740.0], 1e-290),   # exp(-709) = 1.2e-308: subnormal
])
def test_subnormal_results_within_the_absolute_floor(isa, dtype, values, floor):
    # docs/contract.md §5 (and README's accuracy line): where the exact softmax is below
    # the floor, the error allowed is that absolute amount. The scalar kernels return the
    # subnormal; the SIMD kernels flush it to 0 (issue #18: [0, -88, -90] -> [1, 0, 0]).
    x = np.array(values, dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = fs.softmax(x)
    exact = np.exp(np.array(values, np.longdouble) - max(values))
    exact /= exact.sum()
    assert y[0] == 1.0
    tiny = y[1:].astype(np.longdouble)
    assert np.all(np.abs(tiny - exact[1:]) <= floor)
    assert np.all(tiny >= 0)
    if isa == "scalar":  # the subnormal itself, to its (reduced) precision
        sub = np.finfo(dtype).smallest_subnormal
        assert np.all(tiny > 0)
        assert np.all(np.abs(tiny - exact[1:]) <= 2 * sub + 1e-6 * exact[1:])
    else:  # flushed, or the subnormal: nothing in between
        ok = (tiny == 0) | (np.abs(tiny - exact[1:]) <= 1e-6 * exact[1:] + 2 * np.finfo(dtype).smallest_subnormal)
        assert ok.all(), y
