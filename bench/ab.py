"""Same-process A/B of two builds: `python bench/ab.py A_DIR B_DIR [--cases ...]`.

A_DIR and B_DIR are folders holding a built `fastsoftmax` package (e.g.
`python/fastsoftmax` of two checkouts, each with its `_core*.so` copied in). Both are
imported into this one process under other names and timed in the same interleaved
rounds (bench/timing.py) on the same rotated buffers (bench/cases.py), so a change's
effect is read as the median of per-round B/A ratios, not across two runs on a
machine whose memory bandwidth drifts. Also times the small-call path ((1, 1000)
float32 with out=, where=, a temperature, a tuple axis). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import timeit

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cases as cases_mod  # noqa: E402
import timing  # noqa: E402
from timing import Contender  # noqa: E402


def load_build(pkg_dir: str, alias: str):
    """The fastsoftmax package in pkg_dir, imported as module `alias`."""
    init = os.path.join(pkg_dir, "__init__.py")
    spec = importlib.util.spec_from_file_location(alias, init, submodule_search_locations=[pkg_dir])
    mod = importlib.util.module_from_spec(spec)
    sys.modules[alias] = mod
    spec.loader.exec_module(mod)
    return mod


def bench_case(case, func, threads, builds, settings):
    base = cases_mod.make_input(case)
    bufs = cases_mod.make_buffers(case, base, 4 * cases_mod.l3_bytes())
    cons = []
    for label, mod in builds:
        f = getattr(mod, func)
        cons.append(Contender(label, lambda x, o, f=f: f(x, axis=case.axis, out=o)))
    cons.append(Contender("copy", lambda x, o: np.copyto(o, x)))
    for _, mod in builds:
        mod.set_num_threads(threads)
    res = timing.measure(cons, bufs, settings)
    t = {k: np.asarray(v, float) for k, v in res["times_ns"].items()}
    a, b = builds[0][0], builds[1][0]
    return {
        "ratio": float(np.median(t[b] / t[a])),
        "q1": float(np.percentile(t[b] / t[a], 25)),
        "q3": float(np.percentile(t[b] / t[a], 75)),
        "a_copy": float(np.median(t[a] / t["copy"])),
        "b_copy": float(np.median(t[b] / t["copy"])),
        "rounds": res["rounds"],
    }


def training_cases(builds, settings):
    """The training family (bench/xent_cases.py's shapes), float32, 1 thread."""
    rng = np.random.default_rng(0)
    rows = []
    for name, shape in (("64x128256", (64, 128256)), ("4096x1000", (4096, 1000)),
                        ("256x32000", (256, 32000))):
        x = (rng.standard_normal(shape, dtype=np.float32) * 3)
        lab = rng.integers(0, shape[1], shape[0])
        y = rng.random(shape, dtype=np.float32)
        g = rng.standard_normal(shape, dtype=np.float32)
        out = np.empty_like(x)
        calls = {
            "sparse loss": lambda m: m.sparse_softmax_cross_entropy_with_logits(lab, x),
            "sparse loss+grad": lambda m: m.sparse_softmax_cross_entropy_with_logits(
                lab, x, return_grad=True),
            "dense loss+grad": lambda m: m.softmax_cross_entropy_with_logits(
                y, x, reduction="mean", return_grad=True),
            "softmax_backward": lambda m: m.softmax_backward(g, y, out=out),
            "log_softmax_backward": lambda m: m.log_softmax_backward(g, -y, out=out),
        }
        for label, call in calls.items():
            cons = [Contender(b, lambda x_, o_, m=mod, c=call: c(m)) for b, mod in builds]
            for _, mod in builds:
                mod.set_num_threads(1)
            bufs = cases_mod.Buffers([x], [out])
            t = {k: np.asarray(v, float) for k, v in timing.measure(cons, bufs, settings)["times_ns"].items()}
            r = t["B"] / t["A"]
            rows.append((f"{label} {name}", float(np.median(t["A"])) / 1e3,
                         float(np.median(t["B"])) / 1e3, float(np.median(r))))
    return rows


def small_calls(builds, repeat=15, number=20000):
    x = np.random.default_rng(0).standard_normal((1, 1000)).astype(np.float32)
    o = np.empty_like(x)
    w = x > -1
    calls = {
        "softmax(x)": "m.softmax(x)",
        "softmax(x, out=o)": "m.softmax(x, out=o)",
        "softmax(x, where=w)": "m.softmax(x, where=w)",
        "softmax(x, temperature=0.7)": "m.softmax(x, temperature=0.7)",
        "softmax(x, axis=(1,))": "m.softmax(x, axis=(1,))",
        "logsumexp(x)": "m.logsumexp(x)",
    }
    rows = []
    for label, stmt in calls.items():
        best = {}
        for _ in range(repeat):  # alternate the builds, keep each one's best
            for name, mod in builds:
                t = timeit.timeit(stmt, number=number, globals={"m": mod, "x": x, "o": o, "w": w})
                best[name] = min(best.get(name, 1e9), t / number * 1e6)
        rows.append((label, best[builds[0][0]], best[builds[1][0]]))
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a_dir")
    p.add_argument("b_dir")
    p.add_argument("--cases", help="as bench/run.py --cases (default: every case)")
    p.add_argument("--funcs", default="softmax,log_softmax")
    p.add_argument("--threads", default="1")
    p.add_argument("--budget", type=float, default=2.0, help="seconds per case")
    p.add_argument("--no-training", action="store_true", help="skip the training family")
    args = p.parse_args(argv)
    builds = [("A", load_build(args.a_dir, "fsm_a")), ("B", load_build(args.b_dir, "fsm_b"))]
    settings = timing.Settings(budget_s=args.budget, min_rounds=15)
    print(f"A = {args.a_dir}\nB = {args.b_dir}\nisa A {builds[0][1].isa()}, B {builds[1][1].isa()}\n")
    print("| case | func | threads | A x copy | B x copy | B / A (median of rounds) | IQR |")
    print("|---|---|--:|--:|--:|--:|--:|")
    ratios = []
    for case in cases_mod.select(args.cases, False):
        for func in args.funcs.split(","):
            for th in (int(t) for t in args.threads.split(",")):
                r = bench_case(case, func, th, builds, settings)
                ratios.append(r["ratio"])
                print(f"| {case.name} | {func} | {th} | {r['a_copy']:.2f} | {r['b_copy']:.2f} "
                      f"| {r['ratio']:.3f} | {r['q1']:.2f}-{r['q3']:.2f} |", flush=True)
    gm = float(np.exp(np.mean(np.log(ratios))))
    print(f"\ngeometric mean of B / A: {gm:.3f} over {len(ratios)} cases\n")
    if not args.no_training:
        print("| training, float32, 1 thread (in cache) | A µs | B µs | B / A (median of rounds) |")
        print("|---|--:|--:|--:|")
        for label, a, b, r in training_cases(builds, settings):
            print(f"| {label} | {a:.1f} | {b:.1f} | {r:.3f} |", flush=True)
        print()
    print("| small call, 1 thread | A µs | B µs | B / A |")
    print("|---|--:|--:|--:|")
    for label, a, b in small_calls(builds):
        print(f"| {label} | {a:.3f} | {b:.3f} | {b / a:.3f} |")


if __name__ == "__main__":
    main()
