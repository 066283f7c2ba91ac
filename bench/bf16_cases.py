"""bfloat16 against float32: `python bench/bf16_cases.py [--threads 1,2] [--budget S]`.

Issue 14's bench line: "bfloat16 softmax (64, 128256) vs float32 softmax <= 1.0", the
time ratio in the same run. Each row times fastsoftmax on the same logits (N(0, 3))
stored as float32 and as ml_dtypes.bfloat16, into preallocated outputs (out=; top_k
(x, 50) and sample(x, top_k=50) with --funcs, which allocate their small results), in
interleaved rounds (bench/timing.py: the median of per-round ratios); inputs rotate
through copies that together exceed 4x the L3 size, so every call reads from memory
(the small cases: from cache, latency). Needs ml_dtypes.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cases as cases_mod  # noqa: E402
import timing  # noqa: E402
from timing import Contender  # noqa: E402

import fastsoftmax as fs  # noqa: E402

try:
    import ml_dtypes
except ImportError:  # pragma: no cover
    raise SystemExit("bench/bf16_cases.py needs ml_dtypes (pip install ml_dtypes)") from None

BF16 = np.dtype(ml_dtypes.bfloat16)
FUNCS = {
    "softmax": lambda x, o: fs.softmax(x, out=o),
    "log_softmax": lambda x, o: fs.log_softmax(x, out=o),
    # the selection family reads bfloat16 rows into float32 (no out=)
    "top_k": lambda x, o: fs.top_k(x, 50),
    "sample": lambda x, o: fs.sample(x, top_k=50, seed=1),
}
SHAPES = ((64, 128256), (1, 128256), (256, 32000), (64, 1000), (1, 1000))


def buffers(shape, working_set: int) -> cases_mod.Buffers:
    """Rotation of ((x float32, x bfloat16), (out float32, out bfloat16)) pairs."""
    rng = np.random.default_rng(0)
    base = (rng.standard_normal(shape, dtype=np.float32) * 3).astype(np.float32)
    per_copy = base.size * (4 + 4 + 2 + 2)
    n = max(1, -(-working_set // per_copy))
    xs, outs = [], []
    for _ in range(n):
        xs.append((base.copy(), base.astype(BF16)))
        o = (np.zeros(shape, np.float32), np.zeros(shape, BF16))
        outs.append(o)
    return cases_mod.Buffers(xs, outs)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", default="1,2")
    p.add_argument("--budget", type=float, default=3.0, help="seconds per row")
    p.add_argument("--funcs", default="softmax,log_softmax",
                   help=f"comma-separated, of {','.join(FUNCS)}")
    p.add_argument("--shapes", default=",".join(f"{r}x{c}" for r, c in SHAPES),
                   help="comma-separated RxC")
    args = p.parse_args(argv)
    settings = timing.Settings(budget_s=args.budget)
    print(f"isa {fs.isa()}, numpy {np.__version__}, ml_dtypes {ml_dtypes.__version__}\n")
    print("| case | function | threads | float32 µs | bfloat16 µs | bfloat16 / float32 |")
    print("|---|---|--:|--:|--:|--:|")
    for shape in (tuple(int(v) for v in sh.split("x")) for sh in args.shapes.split(",")):
        small = shape[0] * shape[1] <= 64 * 1000
        bufs = buffers(shape, 0 if small else 4 * cases_mod.l3_bytes())
        for fname in args.funcs.split(","):
            f = FUNCS[fname]
            cons = [
                Contender("f32", lambda x, o, f=f: f(x[0], o[0])),
                Contender("bf16", lambda x, o, f=f: f(x[1], o[1])),
            ]
            for th in (int(t) for t in args.threads.split(",")):
                fs.set_num_threads(th)
                res = timing.measure(cons, bufs, settings)
                t = {k: np.asarray(v, float) for k, v in res["times_ns"].items()}
                ratio = np.median(t["bf16"] / t["f32"])
                us32, us16 = np.median(t["f32"]) / 1e3, np.median(t["bf16"]) / 1e3
                print(f"| {shape[0]}x{shape[1]} | {fname} | {th} | {us32:.1f} | {us16:.1f} | "
                      f"{ratio:.2f} |", flush=True)
    print("\n(same rounds, median of per-round ratios; lower is faster)")


if __name__ == "__main__":
    main()
