"""The panel kernels' tiles and sweep (csrc/kernels/generic/panel_tiles.h, panel_sweep.h),
once per available ISA.

A panel (reduced axis strided, lanes contiguous: axis=0 of a C-contiguous (n, w)) goes
two ways:

* softmax and log_softmax, where n rows of at least 256 bytes of lanes fit in the 2 MiB
  scratch (n <= 8192 float32 / float64, 4096 float16): column tiles of up to 1024 lanes
  (fewer as n grows: 2 MiB / (n * 4 or 8 bytes), in whole 64-byte lines, the first
  tile ending on a line of the output), each in three passes: the lanes' max, their
  exps (kept) and sums four rows at a time, the write;
* logsumexp, and softmax / log_softmax of longer panels: swept row by row in blocks of
  rows (16 float32, 8 float64, 32 float16 rows), the running max and sum of each lane
  merged block by block (the sum rescaled where the max grows), in chunks of 4096
  lanes.

Both stream outputs of 4 MiB and more. These tests aim at what those plans can get
wrong, against the extended-precision reference of tests/_ref.py:

* lengths around the block sizes and their multiples, widths around the chunk width;
* a max that grows in every block (every sum rescaled), shrinks, or first appears in
  the last block; lanes of only -inf for several blocks before the first finite value;
* a dominant entry in a late block (log_softmax / logsumexp keep it at full precision:
  the largest term set apart, docs/contract.md §5);
* NaN / +inf appearing in a late block only;
* bits: a column is the same in a narrow panel, a wide (chunked) one, a streamed one,
  and in place;
* tiles: row counts around the groups of four; several tiles, their first one shortened
  by an output that starts mid-line; the sweep taking over above the tiles' n.
"""

import fastsoftmax as fs
import numpy as np
import pytest
from _ref import FLOATS, assert_bits_equal, check_func

pytestmark = pytest.mark.usefixtures("isa")

FUNCS = ("softmax", "log_softmax", "logsumexp")
ROWS = {np.dtype(np.float16): 32, np.dtype(np.float32): 16, np.dtype(np.float64): 8}
# the longest panel that goes in tiles (softmax, log_softmax); longer ones are swept
TILE_MAX_N = {np.dtype(np.float16): 4096, np.dtype(np.float32): 8192, np.dtype(np.float64): 8192}
DTYPE_IDS = {"ids": lambda d: np.dtype(d).name}


def run(name, x, axis=0, **kw):
    return getattr(fs, name)(x, axis=axis, **kw)


def check(name, y, x, axis=0):
    check_func(name, y, x, axis)


def lengths(dtype):
    b = ROWS[np.dtype(dtype)]
    return sorted({1, b - 1, b, b + 1, 2 * b - 1, 2 * b, 2 * b + 1, 5 * b + 3})


@pytest.mark.aarch64
@pytest.mark.parametrize("dtype", FLOATS, **DTYPE_IDS)
@pytest.mark.parametrize("name", FUNCS)
def test_lengths_around_the_block(name, dtype, rng):
    for n in lengths(dtype):
        for w in (1, 17, 70):
            x = (rng.standard_normal((n, w)) * 5).astype(dtype)
            check(name, run(name, x), x)


@pytest.mark.parametrize("dtype", FLOATS, **DTYPE_IDS)
@pytest.mark.parametrize("name", FUNCS)
def test_max_moves_between_blocks(name, dtype, rng):
    n, w = 7 * ROWS[np.dtype(dtype)] + 5, 37
    base = rng.standard_normal((n, w))
    ramp = np.linspace(0.0, 30.0, n)[:, None]
    cases = {
        "grows every row": base + ramp,
        "shrinks every row": base - ramp,
        "max in the last row": np.vstack([base[:-1], base[-1:] + 40.0]),
        "max in the last block only": np.vstack([base[:-3] - 20.0, base[-3:]]),
    }
    for what, v in cases.items():
        x = v.astype(dtype)
        y = run(name, x)
        check(name, y, x)


@pytest.mark.parametrize("dtype", FLOATS, **DTYPE_IDS)
@pytest.mark.parametrize("name", FUNCS)
def test_lanes_of_minus_inf_before_the_first_value(name, dtype, rng):
    b = ROWS[np.dtype(dtype)]
    n, w = 4 * b + 3, 33
    x = rng.standard_normal((n, w)).astype(dtype)
    x[: 3 * b + 1, ::2] = -np.inf  # even lanes: finite only in the last block and a bit
    x[:, 5] = -np.inf  # one lane all -inf
    # lanes whose first finite values are far below 0 (the rescale from "only -inf so
    # far" must give 0, not exp(0 - max) = +inf in float64, times a zero sum)
    x[:, ::4] -= {np.dtype(np.float16): 20, np.dtype(np.float32): 100, np.dtype(np.float64): 800}[
        np.dtype(dtype)
    ]
    y = run(name, x)
    check(name, y, x)


@pytest.mark.parametrize("dtype", FLOATS, **DTYPE_IDS)
@pytest.mark.parametrize("name", ["log_softmax", "logsumexp"])
def test_dominant_entry_in_a_late_block(name, dtype, rng):
    # one entry far above the others: logsumexp = max + log1p(tiny); the tiny rest must
    # not be lost to rounding around 1 (docs/contract.md §5: the largest term set apart)
    b = ROWS[np.dtype(dtype)]
    n, w = 3 * b + 2, 19
    gap = {np.dtype(np.float16): 6.0, np.dtype(np.float32): 12.0, np.dtype(np.float64): 30.0}
    x = np.full((n, w), -gap[np.dtype(dtype)])
    x += rng.uniform(-0.5, 0.0, (n, w))
    x[2 * b + 1, :] = 0.0
    x = x.astype(dtype)
    y = run(name, x)
    check(name, y, x)


@pytest.mark.aarch64
@pytest.mark.parametrize("dtype", FLOATS, **DTYPE_IDS)
@pytest.mark.parametrize("special", [np.nan, np.inf, -np.inf])
def test_special_in_a_late_block(special, dtype, rng):
    b = ROWS[np.dtype(dtype)]
    n, w = 3 * b + 4, 21
    x = rng.standard_normal((n, w)).astype(dtype)
    x[n - 2, 3] = special
    x[2 * b, 10] = special
    x[n - 1, 20] = special
    for name in FUNCS:
        check(name, run(name, x), x)


@pytest.mark.parametrize("dtype", FLOATS, **DTYPE_IDS)
@pytest.mark.parametrize("name", ["softmax", "log_softmax", "logsumexp"])
def test_column_bits_across_chunks_and_streaming(name, dtype, rng):
    # w > 4096 lanes: two chunks; n * w * itemsize >= 4 MiB: streaming stores (float32,
    # float64); a column's bits must match the same column in a narrow panel
    n = 2 * ROWS[np.dtype(dtype)] + 3
    w = max(4096 + 40, (4 << 20) // (n * np.dtype(dtype).itemsize) + 64)
    x = (rng.standard_normal((n, w)) * 3).astype(dtype)
    wide = run(name, x)
    check(name, wide, x)
    for j0 in (0, 7, 4090, w - 9):
        narrow = run(name, np.ascontiguousarray(x[:, j0:j0 + 9]))
        assert_bits_equal(wide[..., j0:j0 + 9], narrow, f"lanes {j0}..{j0 + 9} of {w}")
    if name != "logsumexp":
        inplace = x.copy()
        run(name, inplace, out=inplace)
        assert_bits_equal(inplace, wide, "in place")


@pytest.mark.parametrize("dtype", FLOATS, **DTYPE_IDS)
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_tile_rows_around_the_groups_of_four(name, dtype, rng):
    for n in range(1, 11):
        for w in (1, 17, 70):
            x = (rng.standard_normal((n, w)) * 5).astype(dtype)
            check(name, run(name, x), x)


@pytest.mark.parametrize("dtype", FLOATS, **DTYPE_IDS)
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_several_tiles_and_an_output_starting_mid_line(name, dtype, rng):
    # n = 2048: tiles of 256 lanes (float32, float16) or 128 (float64), so w = 600 is
    # several; an output at 1 or 3 elements past a line shortens the first tile. Every
    # column must be right and have the bits of the same column in a narrow panel
    # (one tile), with specials in a late tile among them.
    n, w = 2048, 600
    x = (rng.standard_normal((n, w)) * 4).astype(dtype)
    x[n - 3, 555] = np.nan
    x[:, 571] = -np.inf
    x[1000, 590] = np.inf
    x[: n - 1, 301] = -np.inf
    narrow = {j0: run(name, np.ascontiguousarray(x[:, j0:j0 + 7])) for j0 in (0, 250, 296, 550, w - 7)}
    for k in (0, 1, 3):
        buf = np.full((n, w + 16), 7.0, dtype)
        out = buf[:, k:k + w]
        y = run(name, x, out=out)
        assert y is out
        check(name, y, x)
        assert np.all(buf[:, :k] == 7.0) and np.all(buf[:, k + w:] == 7.0), "wrote outside out"
        for j0, ref in narrow.items():
            assert_bits_equal(y[:, j0:j0 + 7], ref, f"lanes {j0}..{j0 + 7}, out at +{k}")


@pytest.mark.parametrize("dtype", FLOATS, **DTYPE_IDS)
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_sweep_above_the_tiles(name, dtype, rng):
    # one row more than the tiles take: the sweep, blocks and all
    n = TILE_MAX_N[np.dtype(dtype)] + 1
    x = (rng.standard_normal((n, 19)) * 4).astype(dtype)
    x[n - 2, 3] = 40.0  # the max in the last block
    x[: n - 1, 7] = -np.inf
    y = run(name, x)
    check(name, y, x)
    assert_bits_equal(y[:, 2:5], run(name, np.ascontiguousarray(x[:, 2:5])), "narrow")


@pytest.mark.parametrize("dtype", FLOATS, **DTYPE_IDS)
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_tile_columns_of_narrow_and_wide_range(name, dtype, rng):
    # AVX2 tiles take an exp without clamp and flush when every lane's x - max is above
    # the exp's underflow bound (the same bits there): a column's bits must not depend
    # on a wide-range neighbour (an entry far below its max, or -inf) in its tile.
    far = {np.dtype(np.float16): -30000.0, np.dtype(np.float32): -120.0, np.dtype(np.float64): -800.0}
    n, w = 37, 70
    x = (rng.standard_normal((n, w)) * 3).astype(dtype)
    x[5, 3] = far[np.dtype(dtype)]
    x[n - 1, 40] = -np.inf
    y = run(name, x)
    check(name, y, x)
    # (narrow panels of two lanes or more: one column alone would be a contiguous row)
    for j0, j1 in ((0, 2), (1, 3), (4, 6), (41, 43), (68, 70), (8, 24)):
        narrow = run(name, np.ascontiguousarray(x[:, j0:j1]))
        assert_bits_equal(y[:, j0:j1], narrow, f"lanes {j0}..{j1}")
