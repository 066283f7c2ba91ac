"""fastsoftmax vs NumPy and peers: `python bench/run.py [--quick] [--cases ...] [--json F]`.

Prints a Markdown report (header with machine and versions, one table per function and
thread count, a summary) on stdout; progress goes to stderr. See bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import accuracy
import cases as cases_mod
import contenders as cont
import numpy as np
import report
import timing


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--quick",
        action="store_true",
        help="a few cases, softmax only, shorter budget (about a minute)",
    )
    p.add_argument(
        "--cases",
        help="comma-separated substrings or globs of case names "
        "(e.g. '4096,1x1000'); --list shows them",
    )
    p.add_argument(
        "--funcs", help="comma-separated: softmax,log_softmax (default both; --quick: softmax)"
    )
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    p.add_argument(
        "--contenders",
        help="comma-separated substrings: run only matching "
        "contenders (numpy and copy always run: they are the ratios' baselines)",
    )
    p.add_argument(
        "--skip",
        default="",
        help="comma-separated peers not to import: torch,onnxruntime,scipy,fastsoftmax",
    )
    p.add_argument(
        "--hot",
        action="store_true",
        help="one buffer copy: in-cache numbers instead of out-of-cache",
    )
    p.add_argument(
        "--working-set-mib",
        type=float,
        default=None,
        help="bytes of input+output copies to rotate through (default 4x L3)",
    )
    p.add_argument(
        "--budget",
        type=float,
        default=None,
        help="seconds per case/function/thread count (default 2, quick 0.6)",
    )
    p.add_argument("--min-rounds", type=int, default=None)
    p.add_argument("--max-rounds", type=int, default=60)
    p.add_argument("--json", metavar="PATH", help="write every result (and raw times)")
    p.add_argument("--plot", metavar="PATH.png", help="draw ns/element vs size")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    p.add_argument(
        "--wait-quiet",
        type=float,
        default=0,
        metavar="S",
        help="before each group, wait up to S seconds for other processes to use < 10%% "
        "of the CPUs (a shared machine: 2-thread numbers beside a busy neighbour are noise)",
    )
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


class Progress:
    """One line on stderr, rewritten in place on a terminal, a line per step otherwise."""

    def __init__(self, total: int):
        self.total, self.done, self.t0 = total, 0, time.monotonic()
        self.tty = sys.stderr.isatty()
        self.label = ""

    def step(self, label: str) -> None:
        self.done += 1
        self.label = label
        if not self.tty:
            print(f"[{self.done}/{self.total}] {label}", file=sys.stderr, flush=True)
        else:
            self.tick(0, 0)

    def tick(self, r: int, rounds: int) -> None:
        if not self.tty:
            return
        el = time.monotonic() - self.t0
        rr = f" round {r + 1}/{rounds}" if rounds else ""
        sys.stderr.write(f"\r\x1b[K[{self.done}/{self.total}] {self.label}{rr}  {el:.0f}s")
        sys.stderr.flush()

    def close(self) -> None:
        if self.tty:
            sys.stderr.write("\r\x1b[K")
        print(f"done in {time.monotonic() - self.t0:.0f}s", file=sys.stderr)


def main(argv=None) -> int:
    a = parse_args(argv)
    if a.list:
        for c in cases_mod.CASES:
            print(
                f"{c.name:20s} shape {c.out_shape} {c.dtype} axis={c.axis}"
                + ("  (quick)" if c.quick else "")
            )
        return 0

    chosen = cases_mod.select(a.cases, a.quick)
    funcs = a.funcs.split(",") if a.funcs else (["softmax"] if a.quick else list(cont.FUNCS))
    for f in funcs:
        if f not in cont.FUNCS:
            raise SystemExit(f"--funcs: unknown {f!r}; choose from {cont.FUNCS}")
    thread_counts = [int(t) for t in a.threads.split(",")]
    settings = timing.Settings(max_rounds=a.max_rounds)
    if a.quick:
        settings.budget_s, settings.min_rounds = 0.6, 3
    if a.budget is not None:
        settings.budget_s = a.budget
    if a.min_rounds is not None:
        settings.min_rounds = a.min_rounds
    l3 = cases_mod.l3_bytes()
    working_set = int(a.working_set_mib * 2**20) if a.working_set_mib else 4 * l3
    if a.hot:
        working_set = 0

    peers = cont.Peers.load({s.strip() for s in a.skip.split(",") if s.strip()})
    info = report.machine_info(peers, thread_counts, l3, working_set, a.hot)
    cmd = "python bench/run.py " + " ".join(
        shlex.quote(s) for s in (argv if argv is not None else sys.argv[1:])
    )
    print(report.header_text(info, cmd.strip()), flush=True)

    keep = [s.strip() for s in a.contenders.split(",")] if a.contenders else None
    results = []
    prog = Progress(len(chosen) * len(funcs) * len(thread_counts))
    try:
        for case in chosen:
            base = cases_mod.make_input(case, a.seed)
            bufs = cases_mod.make_buffers(case, base, working_set)
            x0 = bufs.xs[0]
            for func in funcs:
                ref = accuracy.reference(func, x0, case.axis)
                for t in thread_counts:
                    prog.step(f"{case.name} {func} threads={t} ({bufs.n} buffer copies)")
                    if a.wait_quiet:
                        timing.wait_quiet(a.wait_quiet)
                    results.append(
                        run_one(peers, case, func, t, bufs, ref, settings, keep, a.seed, prog)
                    )
                del ref
            del bufs, base, x0
            peers._ort_sessions.clear()
    except KeyboardInterrupt:
        print("\ninterrupted: reporting what was measured", file=sys.stderr)
    finally:
        prog.close()
        if peers.fsm is not None and hasattr(peers.fsm, "_set_isa"):
            peers.fsm._set_isa(peers.default_isa)

    for func in funcs:
        for t in thread_counts:
            text = report.table_text(results, func, t)
            if text:
                print("\n" + text)
    s = report.summary_text(results)
    if s:
        print("\n" + s)
    s = report.load_text(results)
    if s:
        print("\n" + s)
    if a.json:
        report.write_json(a.json, info, results)
        print(f"wrote {a.json}", file=sys.stderr)
    if a.plot:
        report.plot(a.plot, info, results)
        print(f"wrote {a.plot}", file=sys.stderr)
    return 0


def run_one(peers, case, func, t, bufs, ref, settings, keep, seed, prog) -> dict:
    peers.set_threads(t)
    x0 = bufs.xs[0]
    cs, notes = cont.build(peers, func, case, x0, t)
    if keep:
        cs = [c for c in cs if c.name in (cont.RECIPE, cont.COPY) or any(k in c.name for k in keep)]

    # Accuracy, once per contender, outside the timing; a contender that fails is dropped.
    # The call's time serves as the first (warm-up) call of the calibration.
    t_start = time.monotonic()
    ulps, first_ns, ok = {}, {}, []
    for c in cs:
        try:
            c.prepare()
            t0 = time.perf_counter_ns()
            y = c.fn(x0, bufs.outs[0])
            first_ns[c.name] = time.perf_counter_ns() - t0
            if c.kind != "floor":
                ulps[c.name] = accuracy.errors(ref, y)
            ok.append(c)
        except Exception as e:  # noqa: BLE001  (a failing contender is reported, not fatal)
            notes.append(f"{c.name} failed: {type(e).__name__}: {str(e)[:160]}")
        finally:
            y = None

    m = timing.measure(ok, bufs, settings, seed=seed, tick=prog.tick, first_ns=first_ns)
    summary = timing.summarize(m["times_ns"], cont.RECIPE, cont.COPY)
    rows = {}
    for c in ok:
        row = summary[c.name]
        row["gbps"] = case.bytes_moved / row["median_ns"]
        row.update(ulps.get(c.name, {}))
        row["calls_per_sample"] = m["calls_per_sample"][c.name]
        row["times_ns"] = m["times_ns"][c.name]
        rows[c.name] = row
    return {
        "case": case.name,
        "func": func,
        "threads": t,
        "shape": list(case.out_shape),
        "dtype": case.dtype,
        "axis": case.axis,
        "layout": case.layout,
        "size": case.size,
        "bytes_moved": case.bytes_moved,
        "buffer_copies": bufs.n,
        "rounds": m["rounds"],
        "load": m["load"],
        "seconds": round(time.monotonic() - t_start, 2),
        "notes": notes,
        "contenders": rows,
    }


if __name__ == "__main__":
    np.seterr(all="ignore")  # the NumPy recipes underflow on purpose
    sys.exit(main())
