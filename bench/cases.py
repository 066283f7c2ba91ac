"""The benchmark cases: shapes, dtypes, layouts, and the rotated buffers for each.

Out-of-cache numbers: every call reads a different copy of the input and (for the
contenders that take an ``out``) writes a different output buffer. The copies are
taken in one cursor shared by all contenders of a case, so the copy a call touches
was last touched at least ``working_set`` bytes ago. ``n_copies`` is the smallest
count whose input+output bytes reach ``working_set`` (default 4x the L3 size, so
128 MiB here): 16,384 copies of a (1, 1000) row, 16 of (8192, 128), 1 of
(4096, 4096). ``--hot`` uses one copy instead (in-cache numbers).
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Case:
    name: str
    shape: tuple  # shape of the base array that is allocated
    dtype: str = "float32"
    axis: int = -1
    layout: str = "c"  # "c": as allocated, "T": transposed view, "step2": [:, ::2] view
    # the thread counts at which the default (short) run takes this case; () = --full only
    default_threads: tuple = ()

    def view(self, base: np.ndarray) -> np.ndarray:
        if self.layout == "T":
            return base.T
        if self.layout == "step2":
            return base[:, ::2]
        return base

    @property
    def out_shape(self) -> tuple:
        return self.view(np.empty(self.shape, dtype=np.uint8)).shape

    @property
    def size(self) -> int:
        return math.prod(self.out_shape)

    @property
    def itemsize(self) -> int:
        return np.dtype(self.dtype).itemsize

    @property
    def bytes_moved(self) -> int:
        """Bytes of x read plus y written (each once): the GB/s numerator."""
        return 2 * self.size * self.itemsize


CASES = [
    Case("1x1000", (1, 1000), default_threads=(1,)),
    Case("64x1000", (64, 1000), default_threads=(1,)),
    Case("16x128x128", (16, 128, 128)),
    Case("8192x128", (8192, 128), default_threads=(1,)),
    Case("256x32000", (256, 32000), default_threads=(1, 2)),
    Case("64x128256", (64, 128256)),
    Case("4096x4096", (4096, 4096)),
    Case("4096x4096/ax0", (4096, 4096), axis=0, default_threads=(1,)),
    Case("4096x4096.T", (4096, 4096), layout="T"),
    Case("4096x4096[:,::2]", (4096, 4096), layout="step2"),
    Case("1x4000000", (1, 4_000_000), default_threads=(1,)),
    Case("1024x4096/f64", (1024, 4096), dtype="float64"),
    Case("1024x4096/f16", (1024, 4096), dtype="float16", default_threads=(1,)),
    # beyond the table: a 10-class head (rows far shorter than a vector's
    # work) and rows of 400 bytes (neither a whole vector count nor whole cache lines)
    Case("262144x10", (262144, 10)),
    Case("32768x100", (32768, 100)),
]


def select(patterns: str | None, short: bool = False) -> list[Case]:
    """Cases whose name contains (or glob-matches) any comma-separated pattern; without
    patterns every case, or with `short` the default run's (those with default_threads)."""
    cases = [c for c in CASES if c.default_threads] if short and not patterns else list(CASES)
    if not patterns:
        return cases
    pats = [p.strip() for p in patterns.split(",") if p.strip()]
    chosen = [c for c in cases if any(p in c.name or fnmatch.fnmatchcase(c.name, p) for p in pats)]
    if not chosen:
        names = ", ".join(c.name for c in CASES)
        raise SystemExit(f"--cases {patterns!r} matches no case; cases are: {names}")
    return chosen


def make_input(case: Case, seed: int = 0) -> np.ndarray:
    """Logit-like values: normal with standard deviation 3, in the case's dtype."""
    rng = np.random.default_rng(seed)
    base = (rng.standard_normal(case.shape, dtype=np.float32) * 3).astype(case.dtype)
    return base


@dataclass
class Buffers:
    """Rotated input views and output buffers for one case."""

    xs: list  # input views (the case's layout), all with the same values
    outs: list  # outputs shaped like the view, in its memory order (np.empty_like)
    cursor: int = 0

    @property
    def n(self) -> int:
        return len(self.xs)

    def take(self, k: int) -> list:
        """The next k (x, out) pairs of the rotation."""
        n, c = self.n, self.cursor
        pairs = [(self.xs[(c + j) % n], self.outs[(c + j) % n]) for j in range(k)]
        self.cursor = (c + k) % n
        return pairs


def n_copies(case: Case, working_set: int) -> int:
    per_copy = math.prod(case.shape) * case.itemsize + case.size * case.itemsize  # base + out
    return max(1, math.ceil(working_set / per_copy))


def make_buffers(case: Case, base: np.ndarray, working_set: int) -> Buffers:
    n = n_copies(case, working_set)
    xs, outs = [], []
    for i in range(n):
        b = base if i == 0 else base.copy()
        x = case.view(b)
        xs.append(x)
        o = np.empty_like(x)  # keeps x's memory order: a .T view gets a .T output
        o.fill(0)  # fault the pages in now, not in the first timed call
        outs.append(o)
    return Buffers(xs, outs)


def l3_bytes(default: int = 32 << 20) -> int:
    """Size of the last-level cache, from sysfs (Linux); ``default`` elsewhere."""
    import glob

    best = 0
    for path in glob.glob("/sys/devices/system/cpu/cpu0/cache/index*/size"):
        try:
            with open(path) as f:
                text = f.read().strip()
        except OSError:
            continue
        mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
        try:
            best = max(best, int(text.rstrip("KMG")) * mult)
        except ValueError:
            pass
    return best or default
