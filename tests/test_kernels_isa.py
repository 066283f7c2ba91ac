"""The edges of the vector code, through the public API, once per available ISA.

For every ISA in ``fastsoftmax.available_isas()`` (the ``isa`` fixture switches to it
and restores the previous one): row lengths around every vector width and tail
(0..70, 127, 129, 255, 257, 1000) and around the block size (2^17 +- 1); panels
(axis=0 of a C-contiguous (n, w): lanes contiguous, reduced axis strided) for
w in 1..40, n in 1..20 and a few bigger; float16/32/64 — all against the
extended-precision reference of tests/_ref.py (docs/contract.md §5) and against the scalar
ISA. Special values at every position of a vector and its tail; determinism: a row or
a panel column gives the same bits wherever it sits (offset, batch, panel width).
"""

import contextlib

import fastsoftmax as fs
import numpy as np
import pytest
from _ref import (
    FLOATS,
    Ref,
    assert_bits_equal,
    check_log_softmax,
    check_logsumexp,
    check_softmax,
    random_values,
)

pytestmark = pytest.mark.usefixtures("isa")

FUNCS = ("softmax", "log_softmax", "logsumexp")
LENGTHS = list(range(71)) + [127, 129, 255, 257, 1000]
BLOCK = 1 << 17


@contextlib.contextmanager
def using_isa(name):
    prev = fs.isa()
    fs._set_isa(name)
    try:
        yield
    finally:
        fs._set_isa(prev)


def run(name, x, axis):
    return getattr(fs, name)(x, axis=axis)


def check(name, y, x, axis):
    ref = Ref(x, axis)
    dt = np.dtype(x.dtype)
    if name == "softmax":
        check_softmax(y, ref, dt)
    elif name == "log_softmax":
        check_log_softmax(y, ref, dt)
    else:
        check_logsumexp(y, ref, dt)


def check_vs_scalar(name, y, x, axis):
    """The scalar ISA's result on the same input: same nan/inf pattern, and both within
    the bounds of docs/contract.md §5 (checked separately), so they differ by a few ULP at most."""
    with using_isa("scalar"):
        ys = run(name, x, axis)
    y, ys = np.asarray(y), np.asarray(ys)
    assert np.array_equal(np.isnan(y), np.isnan(ys))
    assert np.array_equal(np.isinf(y), np.isinf(ys))
    fin = np.isfinite(y)
    if x.dtype == np.float16:
        tol = 2 * 2.0**-10 * np.maximum(np.abs(ys[fin].astype(np.float64)), 2.0**-14)
    else:
        eps = np.finfo(x.dtype).eps
        tol = 64 * eps * np.maximum(np.abs(ys[fin]), 1 if name != "softmax" else 0)
        tol = np.maximum(tol, np.finfo(x.dtype).tiny)
    diff = np.abs(y[fin].astype(np.float64) - ys[fin].astype(np.float64))
    assert np.all(diff <= tol), float(np.max(diff - tol))


# ------------------------------------------------------------------------- rows
@pytest.mark.aarch64
@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", FUNCS)
def test_row_lengths(name, dtype, rng):
    for n in LENGTHS:
        x = random_values(rng, (3, n), dtype)
        y = run(name, x, -1)
        if n == 0:
            if name == "logsumexp":
                assert np.all(y == -np.inf) and y.shape == (3,)
            else:
                assert y.shape == (3, 0)
            continue
        check(name, y, x, -1)
        check_vs_scalar(name, y, x, -1)


@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", FUNCS)
def test_row_lengths_around_the_block(name, dtype, rng):
    for n in (BLOCK - 1, BLOCK, BLOCK + 1, 2 * BLOCK + 3):
        x = random_values(rng, (n,), dtype)
        x[rng.integers(0, n)] = 12  # a max somewhere in some block
        y = run(name, x, -1)
        check(name, y, x, -1)
        check_vs_scalar(name, y, x, -1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
def test_rows_near_underflow_and_wide_range(dtype):
    # exp(x - max) in (-87.4, -87) (normal results that some kernels lose), far below
    # (flushed), and huge ranges
    n = 67
    x = np.zeros((4, n), dtype)
    x[0, 1:] = np.linspace(-87.4, -87.0, n - 1)
    x[1] = np.linspace(-200, 0, n)
    x[2] = np.linspace(-1e30, 0, n) if dtype == np.float64 else np.linspace(-3e38, 0, n)
    x[3, :] = 1000
    x[3, 5] = 5
    for name in FUNCS:
        y = run(name, x, -1)
        check(name, y, x, -1)
        check_vs_scalar(name, y, x, -1)


# ------------------------------------------------------------------------ panels
@pytest.mark.aarch64
@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", FUNCS)
def test_panels(name, dtype, rng):
    shapes = [(n, w) for w in range(1, 41) for n in range(1, 21)]
    shapes += [(100, 100), (257, 67), (1000, 9), (3, 200), (33, 129)]
    for n, w in shapes:
        x = random_values(rng, (n, w), dtype)
        y = run(name, x, 0)
        check(name, y, x, 0)
        if (n * w) % 7 == 0 or n * w > 2000:
            check_vs_scalar(name, y, x, 0)


# ------------------------------------------------------------------ special values
SPECIALS = {"nan": np.nan, "+inf": np.inf, "-inf": -np.inf}


@pytest.mark.aarch64
@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("special", list(SPECIALS))
@pytest.mark.parametrize("layout", ["row", "panel"])
def test_special_value_at_every_position(layout, special, dtype, rng):
    # n covers a float32 vector (16 lanes) twice plus a tail; row k of the batch has the
    # special at position k, so every position of every vector and tail is hit
    for n in list(range(1, 36)) + [63, 65]:
        x = random_values(rng, (n, n), dtype)
        idx = np.arange(n)
        x[idx, idx] = SPECIALS[special]
        if n > 3:  # and one row of only -inf, one with -inf and a nan
            x[0, :] = -np.inf
            x[1, :] = -np.inf
            x[1, n // 2] = np.nan
        if layout == "panel":
            x = np.ascontiguousarray(x.T)
            axis = 0
        else:
            axis = -1
        for name in FUNCS:
            y = run(name, x, axis)
            check(name, y, x, axis)


# -------------------------------------------------------------------- determinism
@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_row_bits_independent_of_offset_and_batch(name, dtype, rng):
    for n in (1, 7, 16, 17, 33, 100, 1000):
        row = random_values(rng, (n,), dtype)
        alone = run(name, row, -1)
        for off in (1, 3, 5):
            buf = np.empty(n + off, dtype)
            shifted = buf[off:]
            shifted[:] = row
            assert_bits_equal(run(name, shifted, -1), alone, f"offset {off}")
        batch = random_values(rng, (5, n), dtype)
        batch[3] = row
        assert_bits_equal(run(name, batch, -1)[3], alone, "in a batch")


@pytest.mark.aarch64
@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", FUNCS)
def test_row_bits_in_groups_of_a_batch(name, dtype, rng):
    # log_softmax batches short rows in groups of 8 (their logs side by side), with a
    # fallback for a group holding a special row: a row's bits are its own whatever the
    # group, its place in it, or a special row beside it
    for n in (1, 16, 100, 256):
        row = random_values(rng, (n,), dtype)
        alone = run(name, row, -1)
        for rows, at in ((8, 0), (8, 7), (9, 8), (17, 11), (24, 19)):
            batch = random_values(rng, (rows, n), dtype)
            batch[at] = row
            assert_bits_equal(run(name, batch, -1)[at], alone, f"row {at} of {rows}")
            batch[at - 1 if at else 1, n // 2] = np.nan
            batch[(at + 2) % rows] = -np.inf
            got = run(name, batch, -1)
            assert_bits_equal(got[at], alone, f"row {at} of {rows}, specials beside it")
            check(name, got, batch, -1)


@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", FUNCS)
def test_panel_column_bits_independent_of_width_and_position(name, dtype, rng):
    for n in (1, 5, 20, 100):
        x = random_values(rng, (n, 13), dtype)
        x[n // 2, 4] = np.nan if n > 1 else x[0, 4]
        ref = run(name, x, 0)
        for extra, pos in ((0, 0), (3, 0), (7, 5), (40, 17), (51, 33)):
            wide = random_values(rng, (n, 13 + extra), dtype)
            wide[:, pos:pos + 13] = x
            got = run(name, wide, 0)
            got = got[..., pos:pos + 13]
            assert_bits_equal(got, ref, f"width {13 + extra} at lane {pos}")


@pytest.mark.aarch64
@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", FUNCS)
def test_short_rows_across_rows(name, dtype, rng):
    # Rows of up to 15 elements go through a transposed buffer a vector of rows at a
    # time (generic/short_rows.h; logsumexp: their partials): each row is a lane,
    # whatever its place among the vector's rows, a batch of any size, the thread split,
    # rows of specials beside it, strided rows or outputs, in place; 16 is the first
    # length the row kernels take. A row of only +inf and finite values: logsumexp +inf.
    for n in list(range(1, 17)):
        row = random_values(rng, (n,), dtype)
        alone = run(name, row, -1)
        check(name, alone, row, -1)
        for rows, at in ((1, 0), (5, 4), (8, 5), (17, 16), (33, 9), (40, 31)):
            batch = random_values(rng, (rows, n), dtype)
            batch[at] = row
            got = run(name, batch, -1)
            check(name, got, batch, -1)
            assert_bits_equal(got[at], alone, f"n={n}: row {at} of {rows}")
            if rows > 4:  # (rows at - 1 .. at + 3, mod rows, are other rows)
                batch[at - 1, n // 2] = np.nan
                batch[(at + 1) % rows] = -np.inf
                batch[(at + 2) % rows, -1] = np.inf
                batch[(at + 3) % rows, 0] = -np.inf
                got = run(name, batch, -1)
                check(name, got, batch, -1)
                assert_bits_equal(got[at], alone, f"n={n}: row {at} of {rows}, specials beside")
                with fs.threads(2):
                    assert_bits_equal(run(name, batch, -1), got, f"n={n}: 2 threads")
        inf_row = row.copy()
        inf_row[n // 2] = np.inf
        got = run(name, np.stack([row, inf_row, row]), -1)
        assert_bits_equal(got[2], alone, f"n={n}: beside a +inf row")
        if name == "logsumexp":
            assert got[1] == np.inf
            wide = random_values(rng, (50, n + 5), dtype)
            got = run(name, wide[:, :n], -1)
            check(name, got, wide[:, :n], -1)
            assert_bits_equal(got[7:8], run(name, wide[7:8, :n], -1), f"n={n}: strided")
            continue
        # rows and outputs at a stride (a slice of wider arrays), and in place
        wide = random_values(rng, (37, n + 5), dtype)
        wide[11, :n] = row
        out = np.full((37, n + 9), 7.0, dtype)
        got = getattr(fs, name)(wide[:, :n], axis=-1, out=out[:, 2:n + 2])
        check(name, got, wide[:, :n], -1)
        assert_bits_equal(got[11], alone, f"n={n}: strided")
        assert np.all(out[:, :2] == 7.0) and np.all(out[:, n + 2:] == 7.0), "wrote outside out"
        inplace = np.ascontiguousarray(wide[:, :n])
        getattr(fs, name)(inplace, axis=-1, out=inplace)
        assert_bits_equal(inplace, got, f"n={n}: in place")
