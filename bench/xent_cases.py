"""Cross-entropy and backward-pass cases: `python bench/xent_cases.py [--threads 1,2]`.

Cases (float32):
  sparse/64x128256, sparse/4096x1000            sparse loss, reduction="none"
  sparse+grad/64x128256, sparse+grad/4096x1000  loss + dlogits (gradient of the sum)
  softmax_bwd/256x32000, log_softmax_bwd/256x32000   into a preallocated out

Contenders: fastsoftmax (the ISA it picks), the NumPy recipe, torch (when importable:
``F.cross_entropy(reduction="none")``; for +grad a forward with reduction="sum" and
``backward()``; for the backward passes ``torch.ops.aten._softmax_backward_data``),
``np.copyto`` of the logits (the floor every "x copy" is taken against), and for the
sparse cases what the kernel table alone costs on the same logits (``fs.logsumexp``:
the loss is one table ``reduce`` per row; ``fs.softmax(out=)``: the gradient's work).

Timing reuses bench/timing.py: interleaved rounds in shuffled order, every ratio the
median of per-round ratios; inputs rotate through copies that together exceed 4x the
L3 size, so every call reads from memory. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fastsoftmax as fs
import numpy as np
from cases import l3_bytes
from contenders import Contender
from timing import Settings, measure

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # pragma: no cover
    torch = None


class Rotation:
    """Copies of the inputs and outputs, handed out round-robin: (inputs, out) pairs."""

    def __init__(self, inputs: tuple, out_shape, dtype, working_set: int):
        per = sum(a.nbytes for a in inputs) + math.prod(out_shape) * np.dtype(dtype).itemsize
        n = max(2, math.ceil(working_set / per))
        self.items = [
            (inputs if i == 0 else tuple(a.copy() for a in inputs), np.zeros(out_shape, dtype))
            for i in range(n)
        ]
        self.cursor = 0

    def take(self, k: int) -> list:
        n = len(self.items)
        out = [self.items[(self.cursor + j) % n] for j in range(k)]
        self.cursor = (self.cursor + k) % n
        return out


def np_sparse_loss(x, lab):
    m = x.max(-1, keepdims=True)
    lse = np.log(np.exp(x - m).sum(-1)) + m[:, 0]
    return lse - x[np.arange(x.shape[0]), lab]


def np_sparse_loss_grad(x, lab):
    m = x.max(-1, keepdims=True)
    e = np.exp(x - m)
    s = e.sum(-1, keepdims=True)
    rows = np.arange(x.shape[0])
    loss = np.log(s[:, 0]) + m[:, 0] - x[rows, lab]
    g = e / s
    g[rows, lab] -= 1
    return loss, g


def sparse_contenders(lab, grad: bool):
    tl = torch.from_numpy(lab) if torch is not None else None
    cs = []
    if grad:
        cs.append(
            Contender(
                "fastsoftmax",
                lambda xi, o: fs.sparse_softmax_cross_entropy_with_logits(
                    lab, xi[0], return_grad=True
                ),
                kind="fsm",
            )
        )
        cs.append(Contender("numpy", lambda xi, o: np_sparse_loss_grad(xi[0], lab)))
        if torch is not None:

            def tfb(xi, o):
                t = torch.from_numpy(xi[0]).requires_grad_()
                F.cross_entropy(t, tl, reduction="sum").backward()
                return t.grad

            cs.append(Contender("torch", tfb))
    else:
        cs.append(
            Contender(
                "fastsoftmax",
                lambda xi, o: fs.sparse_softmax_cross_entropy_with_logits(lab, xi[0]),
                kind="fsm",
            )
        )
        cs.append(Contender("numpy", lambda xi, o: np_sparse_loss(xi[0], lab)))
        if torch is not None:
            cs.append(
                Contender(
                    "torch",
                    lambda xi, o: F.cross_entropy(torch.from_numpy(xi[0]), tl, reduction="none"),
                )
            )
    # what the kernel table alone costs on these logits: the loss is one `reduce`
    # per row (logsumexp), loss + gradient about a softmax
    if grad:
        cs.append(Contender("fsm softmax", lambda xi, o: fs.softmax(xi[0], out=o), kind="ref"))
    else:
        cs.append(Contender("fsm logsumexp", lambda xi, o: fs.logsumexp(xi[0]), kind="ref"))
    cs.append(Contender("copy", lambda xi, o: np.copyto(o, xi[0]), kind="floor"))
    return cs


def backward_contenders(log: bool):
    if log:
        fsm = lambda gy, o: fs.log_softmax_backward(gy[0], gy[1], out=o)

        def npr(gy, o):
            g, y = gy
            return g - np.exp(y) * g.sum(-1, keepdims=True)

        top = "_log_softmax_backward_data"
    else:
        fsm = lambda gy, o: fs.softmax_backward(gy[0], gy[1], out=o)

        def npr(gy, o):
            g, y = gy
            return y * (g - (g * y).sum(-1, keepdims=True))

        top = "_softmax_backward_data"
    cs = [Contender("fastsoftmax", fsm, kind="fsm"), Contender("numpy", npr)]
    if torch is not None:
        op = getattr(torch.ops.aten, top)
        cs.append(
            Contender(
                "torch",
                lambda gy, o: op(
                    torch.from_numpy(gy[0]), torch.from_numpy(gy[1]), -1, torch.float32
                ),
            )
        )
    cs.append(Contender("copy", lambda gy, o: np.copyto(o, gy[0]), kind="floor"))
    return cs


def median_ratio(a, b) -> float:
    return float(np.median(np.asarray(a) / np.asarray(b)))


CASES = [
    ("sparse/64x128256", "sparse", (64, 128256)),
    ("sparse+grad/64x128256", "sparse+grad", (64, 128256)),
    ("sparse/4096x1000", "sparse", (4096, 1000)),
    ("sparse+grad/4096x1000", "sparse+grad", (4096, 1000)),
    ("softmax_bwd/256x32000", "softmax_bwd", (256, 32000)),
    ("log_softmax_bwd/256x32000", "log_softmax_bwd", (256, 32000)),
]
# Targets of the issue: (x copy, x torch) at 1 thread; None = no target.
TARGETS = {
    "sparse/64x128256": (0.7, 0.5),
    "sparse+grad/64x128256": (1.3, 0.5),
    "softmax_bwd/256x32000": (1.6, None),
    "log_softmax_bwd/256x32000": (1.6, None),
}


def run_case(name, kind, shape, threads, settings, working_set, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape, dtype=np.float32) * 3).astype(np.float32)
    if kind.startswith("sparse"):
        lab = rng.integers(0, shape[1], shape[0])
        rot = Rotation((x,), shape, np.float32, working_set)
        cs = sparse_contenders(lab, kind.endswith("grad"))
    else:
        log = kind.startswith("log")
        y = fs.log_softmax(x) if log else fs.softmax(x)
        g = rng.standard_normal(shape, dtype=np.float32)
        rot = Rotation((g, y), shape, np.float32, working_set)
        cs = backward_contenders(log)
    fs.set_num_threads(threads)
    if torch is not None:
        torch.set_num_threads(threads)
    res = measure(cs, rot, settings, seed=seed)
    t = res["times_ns"]
    rows = []
    for c in cs:
        row = {
            "case": name,
            "threads": threads,
            "contender": c.name,
            "ms": float(np.median(t[c.name])) / 1e6,
            "x_copy": median_ratio(t[c.name], t["copy"]),
            "vs_numpy": median_ratio(t["numpy"], t[c.name]),
        }
        if "torch" in t:
            row["x_torch"] = median_ratio(t[c.name], t["torch"])
        rows.append(row)
    return rows, res["rounds"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", default="1", help="comma-separated thread counts (default 1)")
    p.add_argument("--cases", default="", help="comma-separated substrings of case names")
    p.add_argument("--budget", type=float, default=3.0, help="seconds per case and thread count")
    p.add_argument("--working-set-mib", type=float, default=None)
    a = p.parse_args(argv)
    threads = [int(v) for v in a.threads.split(",")]
    pats = [s for s in a.cases.split(",") if s]
    ws = int(a.working_set_mib * 2**20) if a.working_set_mib else 4 * l3_bytes()
    settings = Settings(budget_s=a.budget)
    print(
        f"fastsoftmax {fs.__version__} isa={fs.isa()}, numpy {np.__version__}, "
        f"torch {torch.__version__ if torch is not None else 'not installed'}, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"working set {ws >> 20} MiB\n"
    )
    print("| case | threads | contender | ms | x copy | vs numpy | x torch | target |")
    print("|---|---|---|---|---|---|---|---|")
    prev = fs.get_num_threads()
    try:
        for name, kind, shape in CASES:
            if pats and not any(s in name for s in pats):
                continue
            for nt in threads:
                rows, _ = run_case(name, kind, shape, nt, settings, ws)
                for r in rows:
                    tgt = ""
                    if r["contender"] == "fastsoftmax" and nt == 1 and name in TARGETS:
                        tc, tt = TARGETS[name]
                        ok = r["x_copy"] <= tc and (tt is None or r.get("x_torch", 0) <= tt)
                        tgt = f"<= {tc}x copy" + (f", <= {tt}x torch" if tt else "")
                        tgt += " ok" if ok else " MISSED"
                    xt = f"{r['x_torch']:.2f}" if "x_torch" in r else "-"
                    print(
                        f"| {name} | {nt} | {r['contender']} | {r['ms']:.3f} | "
                        f"{r['x_copy']:.2f} | {r['vs_numpy']:.2f} | {xt} | {tgt} |",
                        flush=True,
                    )
    finally:
        fs.set_num_threads(prev)
    return 0


if __name__ == "__main__":
    sys.exit(main())
