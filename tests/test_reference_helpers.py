"""The references and checkers of _ref.py themselves: they agree with SciPy and they do
reject results just outside docs/contract.md §5 (so the rest of the suite can fail)."""

import numpy as np
import pytest
import scipy.special

from _ref import (
    LD,
    Ref,
    check_log_softmax,
    check_logsumexp,
    check_softmax,
    ordered_int,
)

# the references themselves on every platform .ci/aarch64.sh runs (long double is
# IEEE quad on aarch64 Linux, 80-bit x87 on x86-64)
pytestmark = pytest.mark.aarch64


def _nudge(y, ulps):
    """y moved by ``ulps`` ULP away from zero (elementwise)."""
    y = np.array(y)
    for _ in range(ulps):
        y = np.nextafter(y, np.asarray(np.inf, y.dtype))
    return y


def test_reference_agrees_with_scipy():
    x = np.random.default_rng(0).standard_normal((5, 40)) * 10
    for axis in (-1, 0, None, (0, 1)):
        ref = Ref(x, axis)
        np.testing.assert_allclose(ref.sm.astype(float), scipy.special.softmax(x, axis=axis),
                                   rtol=1e-14, atol=1e-300)
        np.testing.assert_allclose(ref.lsm.astype(float),
                                   scipy.special.log_softmax(x, axis=axis), rtol=1e-14,
                                   atol=1e-15)
        np.testing.assert_allclose(ref.lse.astype(float),
                                   scipy.special.logsumexp(x, axis=axis), rtol=1e-14)


def test_longdouble_is_wider_than_float64():
    # the references need more precision than the float64 results they judge
    assert np.finfo(LD).nmant > np.finfo(np.float64).nmant


@pytest.mark.parametrize("dtype,ok,bad", [(np.float32, 0, 8), (np.float64, 0, 30)])
def test_check_softmax_rejects_outside_bound(dtype, ok, bad):
    x = np.array([0.0, 0.5, 0.75, -0.25], dtype)  # |x - max| < 1: bound about K ulp
    ref = Ref(x)
    y = ref.sm.astype(dtype)
    check_softmax(_nudge(y, ok), ref, dtype)
    with pytest.raises(AssertionError):
        check_softmax(_nudge(y, bad), ref, dtype)


def test_check_softmax_float16_one_ulp():
    x = np.array([0.0, 1.5, -2.0, 0.25], np.float16)
    ref = Ref(x)
    y = ref.sm.astype(np.float16)
    check_softmax(_nudge(y, 1), ref, np.float16)
    with pytest.raises(AssertionError):
        check_softmax(_nudge(y, 2), ref, np.float16)


def test_check_softmax_exact_zero_at_neginf():
    x = np.array([-np.inf, 0.0, 1.0])
    ref = Ref(x)
    y = ref.sm.astype(np.float64)
    y[0] = 1e-300  # within the absolute allowance, but must be exactly 0
    with pytest.raises(AssertionError):
        check_softmax(y, ref, np.float64)


def test_check_softmax_nan_pattern_and_dtype():
    x = np.array([1.0, np.nan])
    ref = Ref(x)
    with pytest.raises(AssertionError):
        check_softmax(np.array([1.0, 0.0]), ref, np.float64)
    with pytest.raises(AssertionError):
        check_softmax(np.array([np.nan, np.nan], np.float32), ref, np.float64)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_check_log_rejects_five_ulp(dtype):
    x = np.array([3.0, 1.0, -2.0], dtype)
    ref = Ref(x)
    lsm = ref.lsm.astype(dtype)
    check_log_softmax(lsm, ref, dtype)
    lse = ref.lse.astype(dtype)[()]
    check_logsumexp(lse, ref, dtype)  # a NumPy scalar, as required
    with pytest.raises(AssertionError):
        check_logsumexp(np.array(lse), ref, dtype)  # a 0-d array is not a scalar result
    # 5 ULP of max(1, |r|): |lse| ~ 3.2 lies in [2, 4), whose ulp is twice that of 1
    off = lse + dtype(10) * np.spacing(dtype(1))
    with pytest.raises(AssertionError):
        check_logsumexp(off, ref, dtype)


def test_ordered_int_is_ulp_distance():
    a = np.array([0.0, 1e-45, -1e-45, 1.0], np.float32)
    b = np.nextafter(a, np.float32(np.inf))
    assert np.all(ordered_int(b) - ordered_int(a) == 1)
