"""Decoding post-processing cases: `python bench/select_cases.py [--threads 1,2]`.

Every time is reported as a ratio to `fastsoftmax.softmax(x, out=o)` of the same
float32 logits in the same round (bench/timing.py: interleaved rounds, median of
per-round ratios), on (64, 128256) and (1, 128256) logits drawn from N(0, 3)
("peaked") and N(0, 0.3) ("flat"); inputs rotate through copies that together exceed
4x the L3 size, so every call reads from memory.

Contenders: top_k(x, 50); top_k(x, 5, transform="softmax"); sample() as the issue's
table sets it (greedy; temperature only; top_k=50; top_k=50 + top_p=0.9; top_p=0.9
alone; raw logprobs where asked); the peers' recipes: torch.topk(50) and torch's
topk + softmax + multinomial (when importable), NumPy's argpartition + argsort of the
50, and the sort-based serving recipe (sort, softmax, cumsum, mask, exponential race)
in NumPy.
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
    import torch
except ImportError:  # pragma: no cover - optional peer
    torch = None


def numpy_top_k(x, k):
    part = np.argpartition(-x, k - 1, axis=-1)[:, :k]
    vals = np.take_along_axis(x, part, -1)
    order = np.argsort(-vals, axis=-1, kind="stable")
    return np.take_along_axis(vals, order, -1), np.take_along_axis(part, order, -1)


def sort_recipe(x, p=0.9, k=50, rng=np.random.default_rng(0)):
    """The sort-based recipe of a popular serving engine, in NumPy."""
    order = np.argsort(-x, axis=-1)
    xs = np.take_along_axis(x, order, -1)
    xs[:, k:] = -np.inf
    probs = np.exp(xs - xs[:, :1])
    probs /= probs.sum(-1, keepdims=True)
    cum = np.cumsum(probs, -1)
    probs[cum - probs > p] = 0.0
    q = rng.exponential(size=probs.shape)
    return np.take_along_axis(order, np.argmax(probs / q, -1)[:, None], -1)


def contenders(threads):
    c = [
        Contender("softmax(out=)", lambda x, o: fs.softmax(x, out=o)),
        Contender("top_k(50)", lambda x, o: fs.top_k(x, 50)),
        Contender("top_k(5, softmax)", lambda x, o: fs.top_k(x, 5, transform="softmax")),
        Contender("numpy argpartition(50)", lambda x, o: numpy_top_k(x, 50)),
        Contender("sample greedy", lambda x, o: fs.sample(x, temperature=0.0, logprobs=None, seed=1)),
        Contender("sample T=0.7", lambda x, o: fs.sample(x, temperature=0.7, seed=1)),
        Contender("sample k=50", lambda x, o: fs.sample(x, top_k=50, seed=1)),
        Contender("sample k=50 p=0.9", lambda x, o: fs.sample(x, top_k=50, top_p=0.9, seed=1)),
        Contender("sample p=0.9", lambda x, o: fs.sample(x, top_p=0.9, seed=1)),
        Contender("sort recipe k=50 p=0.9", lambda x, o: sort_recipe(x)),
    ]
    if torch is not None:
        torch.set_num_threads(threads)
        c.append(Contender("torch.topk(50)", lambda x, o: torch.topk(torch.from_numpy(x), 50)))

        def torch_sample(x, o):
            v, i = torch.topk(torch.from_numpy(x), 50)
            return i.gather(-1, torch.multinomial(torch.softmax(v, -1), 1))

        c.append(Contender("torch topk+softmax+multinomial", torch_sample))
    return c


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", default="1,2")
    p.add_argument("--budget", type=float, default=3.0, help="seconds per case and thread count")
    p.add_argument("--warm", action="store_true",
                   help="one buffer, in cache (the logits just written by the model's last "
                        "layer); default: buffers rotated through 4x the L3 (cold)")
    args = p.parse_args(argv)
    settings = timing.Settings(budget_s=args.budget)
    print(f"isa {fs.isa()}, numpy {np.__version__}, torch {torch.__version__ if torch else '-'}, "
          f"{'warm (one buffer)' if args.warm else 'cold (buffers rotated through 4x L3)'}\n")
    names = [c.name for c in contenders(1)]
    print("| case | threads | " + " | ".join(names[1:]) + " |")
    print("|---|--:|" + "--:|" * (len(names) - 1))
    for shape in ((64, 128256), (1, 128256)):
        for label, sd in (("peaked", 3.0), ("flat", 0.3)):
            case = cases_mod.Case(f"{shape[0]}x{shape[1]}/{label}", shape)
            rng = np.random.default_rng(0)
            base = (rng.standard_normal(shape, dtype=np.float32) * sd).astype(np.float32)
            bufs = cases_mod.make_buffers(case, base, 0 if args.warm else 4 * cases_mod.l3_bytes())
            for th in (int(t) for t in args.threads.split(",")):
                fs.set_num_threads(th)
                cons = contenders(th)
                res = timing.measure(cons, bufs, settings)
                t = {k: np.asarray(v, float) for k, v in res["times_ns"].items()}
                ref = t["softmax(out=)"]
                cells = [f"{np.median(t[n] / ref):.2f}" for n in names[1:]]
                print(f"| {case.name} | {th} | " + " | ".join(cells) + " |", flush=True)
    print("\n(ratio to fastsoftmax.softmax(x, out=o), same rounds; lower is faster)")


if __name__ == "__main__":
    main()
