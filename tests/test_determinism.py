"""docs/contract.md §6: a row's bits do not depend on the batch around it or on threads."""

import numpy as np
import pytest

import fastsoftmax as fs
from _ref import FLOATS, LD, Ref, assert_bits_equal, check_log_softmax, check_logsumexp
from _ref import check_func, check_softmax, random_values

pytestmark = pytest.mark.usefixtures("isa")

FUNCS = {"softmax": fs.softmax, "log_softmax": fs.log_softmax, "logsumexp": fs.logsumexp}


def _row_of(name, y, k, axis):
    if name == "logsumexp":
        return np.asarray(y)[k]
    return y[k] if axis == -1 else y[:, k]


@pytest.mark.aarch64
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("n", [1, 7, 16, 20, 33, 64, 65, 129, 1000, 5000])
def test_row_alone_vs_in_batches(func_name, n, dtype, rng):
    f = FUNCS[func_name]
    row = random_values(rng, (n,), dtype)
    alone = np.asarray(f(row))
    alone2 = np.asarray(f(row[None, :]))[0]
    assert_bits_equal(alone, alone2, "(n,) vs (1, n)")
    for m in (2, 3, 17, 64, 300):
        if m * n > 2_000_000:
            continue
        batch = random_values(rng, (m, n), dtype)
        for pos in sorted({0, m // 2, m - 1}):
            b = batch.copy()
            b[pos] = row
            y = f(b)
            assert_bits_equal(_row_of(func_name, y, pos, -1), alone, f"row {pos} of {m}")


@pytest.mark.aarch64
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("n", [1, 7, 16, 33, 129, 1000])
def test_column_in_panels_of_any_width(func_name, n, dtype, rng):
    # axis=0 panels: the column's bits do not depend on the panel width or its position
    f = FUNCS[func_name]
    col = random_values(rng, (n,), dtype)
    first = None
    for width in (2, 3, 5, 8, 16, 17, 37, 100, 257):
        a = random_values(rng, (n, width), dtype)
        for pos in sorted({0, 1, width // 2, width - 1}):
            b = a.copy()
            b[:, pos] = col
            y = _row_of(func_name, f(b, axis=0), pos, 0)
            if first is None:
                first = np.array(y)
                # and it is right
                ref = Ref(col, 0)
                {"softmax": lambda: check_softmax(first, ref, dtype),
                 "log_softmax": lambda: check_log_softmax(first, ref, dtype),
                 "logsumexp": lambda: check_logsumexp(first[()], ref, dtype)}[func_name]()
            else:
                assert_bits_equal(y, first, f"column {pos} of width {width}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_panel_in_3d_arrays(func_name, dtype, rng):
    f = FUNCS[func_name]
    n = 50
    col = random_values(rng, (n,), dtype)
    results = []
    for shape in ((n, 9), (3, n, 9), (2, n, 40)):
        a = random_values(rng, shape, dtype)
        idx = (0,) * (len(shape) - 2)
        a[idx + (slice(None), 4)] = col
        y = f(a, axis=-2)
        yy = np.asarray(y)[idx + (4,)] if func_name == "logsumexp" else y[idx + (slice(None), 4)]
        results.append(np.array(yy))
    for r in results[1:]:
        assert_bits_equal(r, results[0], "panel column in 2-D vs 3-D")


@pytest.mark.aarch64
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("axis", [-1, 0])
def test_thread_count_does_not_change_bits(func_name, axis, dtype, rng):
    f = FUNCS[func_name]
    x = random_values(rng, (700, 900), dtype)
    with fs.threads(1):
        y1 = np.asarray(f(x, axis=axis))
    for n in (2, 3, 8):
        with fs.threads(n):
            yn = np.asarray(f(x, axis=axis))
        assert_bits_equal(yn, y1, f"threads({n}) vs threads(1)")


@pytest.mark.aarch64
def test_thread_count_strided_and_where(func_name, rng):
    f = FUNCS[func_name]
    x = rng.standard_normal((400, 1200)).astype(np.float32)[:, ::3]
    w = rng.random((400, 400)) < 0.8
    with fs.threads(1):
        y1 = np.asarray(f(x, where=w))
    with fs.threads(2):
        y2 = np.asarray(f(x, where=w))
    assert_bits_equal(y2, y1, "strided with where")


# ------------------------------------------------------------- a row of 3,000,000
N_LONG = 3_000_000


@pytest.fixture(scope="module", params=[np.float32, np.float64], ids=["float32", "float64"])
def long_row(request):
    dtype = request.param
    rng = np.random.default_rng(1234)
    x = (rng.standard_normal(N_LONG) * 3).astype(dtype)
    x[rng.integers(0, N_LONG, 100)] += 12  # a few dominant entries
    return x, Ref(x, -1)


def test_long_row_threads_bit_identical(long_row, func_name):
    x, _ = long_row
    f = FUNCS[func_name]
    with fs.threads(1):
        y1 = np.asarray(f(x))
    for n in (2, 3):
        with fs.threads(n):
            assert_bits_equal(np.asarray(f(x)), y1, f"{N_LONG}-row threads({n}) vs threads(1)")


def test_long_row_in_batch_bit_identical(long_row):
    x, _ = long_row
    alone = fs.softmax(x)
    batch = np.stack([x[::-1], x])
    assert_bits_equal(fs.softmax(batch)[1], alone, "long row in a batch of 2")
    assert_bits_equal(np.asarray(fs.logsumexp(batch)[1]), np.asarray(fs.logsumexp(x)),
                      "long row logsumexp in a batch of 2")


def test_long_row_accuracy(long_row):
    x, ref = long_row
    dtype = x.dtype
    y = fs.softmax(x)
    check_softmax(y, ref, dtype)
    s = np.sum(y, dtype=np.float64)
    if dtype == np.float32:
        assert abs(s - 1) <= 1e-6, s
    else:
        # the sum of the per-element bounds plus the float64 summation itself
        # the exact (long double, pairwise) sum of the outputs is within the sum of the
        # per-element bounds
        bound = np.sum(ref.sm * LD(2.0**-52) * (16 + ref.dist / 2))
        sl = np.sum(y.astype(LD))
        assert abs(sl - 1) <= bound, (sl, bound)
    check_log_softmax(fs.log_softmax(x), ref, dtype)
    check_logsumexp(fs.logsumexp(x), ref, dtype)


@pytest.mark.parametrize("func_name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_streamed_long_row_matches_gathered_row(isa, func_name, dtype):
    # A contiguous row longer than one block is finished with streaming stores where
    # the ISA has them; an all-True `where` sends the same values through the gather
    # path (plain stores on a buffer, same blocks). The bits must agree.
    rng = np.random.default_rng(7)
    x = (rng.standard_normal(2**17 * 2 + 1001) * 4).astype(dtype)
    f = FUNCS[func_name]
    streamed = f(x[1:])  # an odd offset: the aligned middle is streamed, head/tail not
    gathered = f(x[1:], where=np.ones(x.size - 1, bool))
    assert_bits_equal(streamed, gathered, f"{func_name} streamed vs gathered long row")


@pytest.mark.parametrize("func_name", ["softmax", "log_softmax"])
@pytest.mark.parametrize(
    "dtype", [np.float16, np.float32, np.float64], ids=lambda d: np.dtype(d).name
)
@pytest.mark.parametrize("n", [64, 128, 1000, 4099])
def test_rows_in_a_streamed_batch(func_name, n, dtype, rng):
    # a batch whose output is >= 8 MiB is written with streaming stores if its rows are
    # 512 bytes or more (exps through a per-thread buffer; float16 converted on the way
    # out), shorter rows with plain ones (n = 64 float32/float16): each row's bits are those
    # of the row alone (plain kernels; float16 rows longer than 4096 recompute their
    # exps there), also with a special row beside it, at a misaligned output and in place
    f = getattr(fs, func_name)
    rows = (9 << 20) // (n * np.dtype(dtype).itemsize) + 3
    x = random_values(rng, (rows, n), dtype)
    x[5, n // 3] = np.nan
    x[6] = -np.inf
    picks = (0, 1, 4, 5, 6, 7, rows // 2, rows - 1)
    alone = [f(x[r:r + 1], axis=-1) for r in picks]
    buf = np.empty(rows * n + 3, dtype)
    out = buf[3:].reshape(rows, n)  # rows start off a 64-byte boundary
    for y in (f(x, axis=-1), f(x, axis=-1, out=out)):
        for r, a in zip(picks, alone):
            assert_bits_equal(y[r:r + 1], a, f"row {r} of a streamed batch")
    inplace = x.copy()
    f(inplace, axis=-1, out=inplace)
    for r, a in zip(picks, alone):
        assert_bits_equal(inplace[r:r + 1], a, f"row {r} in place")


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("n", [7, 64, 128, 255])
def test_log_softmax_groups_with_special_rows(n, dtype, rng):
    # short log_softmax rows go in groups of 8 whose sum pass stores x - m to y (out of
    # place); a group holding a special row is redone row by row from x: every row,
    # allocated, into out= and in place, has the bits of the row alone
    x = (rng.standard_normal((67, n)) * 5).astype(dtype)
    x[3, 2] = np.nan
    x[9, :] = -np.inf
    x[10, 1] = np.inf
    x[17, n // 2] = np.nan
    x[18, ::2] = -np.inf
    alone = np.stack([fs.log_softmax(x[r]) for r in range(x.shape[0])])
    inplace = x.copy()
    fs.log_softmax(inplace, out=inplace)
    out = np.empty_like(x)
    fs.log_softmax(x, out=out)
    for got in (fs.log_softmax(x), inplace, out):
        assert_bits_equal(got, alone, "a batch of short log_softmax rows")


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("n", [5, 8, 100, 128, 250, 3000, 20000])
@pytest.mark.parametrize("name", ["softmax", "log_softmax", "logsumexp"])
def test_rows_of_narrow_and_wide_range_side_by_side(name, n, dtype, rng):
    # The AVX2 row kernels (and logsumexp's reduce) take an exp without clamp and flush
    # for a row (or a pair of rows) whose every x - max is above its underflow bound,
    # learnt from the max pass: the same bits as the flushing exp there. So a row's
    # bits must not depend on whether its neighbour spans more than ~87 (an entry far
    # below its max, or -inf), in pairs, groups of eight, alone, or with a tail
    # shorter than a vector.
    f = FUNCS[name]
    far = {np.dtype(np.float16): -30000.0, np.dtype(np.float32): -120.0, np.dtype(np.float64): -800.0}
    x = (rng.standard_normal((24, n)) * 3).astype(dtype)
    x[1::3, n // 2] = far[np.dtype(dtype)]  # wide rows
    x[2::6, n - 1] = -np.inf                # wide rows, the special at the tail
    y = np.asarray(f(x))
    for k in range(x.shape[0]):
        assert_bits_equal(y[k], np.asarray(f(x[k])), f"row {k}")
    check_func(name, y, x, -1)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("wide_block", [None, 0, 2])
def test_long_row_with_a_wide_block(func_name, dtype, wide_block, rng):
    # A long row's finish takes the no-flush exp (AVX2) only when every block's reduce
    # saw its min above the bound: a far entry in one block sends the whole row to the
    # flushing finish. Either way the row is right and the thread count keeps its bits.
    f = FUNCS[func_name]
    n = 2 * 131072 + 999
    x = (rng.standard_normal(n) * 3).astype(dtype)
    if wide_block is not None:
        x[wide_block * 131072 + 17] = {np.dtype(np.float16): -30000.0, np.dtype(np.float32): -150.0}[np.dtype(dtype)]
    with fs.threads(1):
        y1 = f(x)
    with fs.threads(2):
        assert_bits_equal(np.asarray(f(x)), np.asarray(y1), "threads(2) vs threads(1)")
    check_func(func_name, y1, x, -1)
