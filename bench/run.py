"""fastsoftmax vs NumPy and peers: `python bench/run.py [--full] [--cases ...]`.

By default a short representative run (about a minute): softmax on seven cases at one
thread and one at two. `--full` runs every case, softmax and log_softmax, at 1 and 2
threads (5-6 minutes on 2 cores). Prints a compact table; writes the full Markdown
report, every number as JSON and a plot to bench/results/<date>-<time>/ (named at the
end). Progress goes to stderr. See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime
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

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--full",
        action="store_true",
        help="every case, softmax and log_softmax, 1 and 2 threads, 2 s per group (5-6 min); "
        "default: the short run (about a minute)",
    )
    p.add_argument("--quick", action="store_true", help=argparse.SUPPRESS)  # the old name
    p.add_argument(
        "--cases",
        help="comma-separated substrings or globs of case names "
        "(e.g. '4096,1x1000'); --list shows them",
    )
    p.add_argument(
        "--funcs", help="comma-separated: softmax,log_softmax (default softmax; --full: both)"
    )
    p.add_argument(
        "--threads",
        help="comma-separated thread counts for every case (default: each case's in the short "
        "run, 1 for other --cases; --full: 1,2)",
    )
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
        help="seconds per case/function/thread count (default 0.5; --full: 2)",
    )
    p.add_argument("--min-rounds", type=int, default=None)
    p.add_argument("--max-rounds", type=int, default=60)
    p.add_argument(
        "--out",
        metavar="DIR",
        help="folder for report.md, results.json and plot.png "
        "(default bench/results/<date>-<time>)",
    )
    p.add_argument("--no-save", action="store_true", help="write no files, print only")
    p.add_argument("--json", metavar="PATH", help="also write every result (and raw times) here")
    p.add_argument("--plot", metavar="PATH.png", help="also draw the plot here")
    p.add_argument(
        "--verbose",
        action="store_true",
        help="print the whole report (every contender) instead of the compact table",
    )
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


def plan(a) -> list:
    """[(case, func, threads)] in run order."""
    full = a.full
    chosen = cases_mod.select(a.cases, short=not full)
    funcs = a.funcs.split(",") if a.funcs else (list(cont.FUNCS) if full else ["softmax"])
    for f in funcs:
        if f not in cont.FUNCS:
            raise SystemExit(f"--funcs: unknown {f!r}; choose from {cont.FUNCS}")
    fixed = [int(t) for t in a.threads.split(",")] if a.threads else ([1, 2] if full else None)
    return [(c, f, t) for c in chosen for f in funcs
            for t in (fixed or list(c.default_threads) or [1])]


def main(argv=None) -> int:
    a = parse_args(argv)
    if a.list:
        for c in cases_mod.CASES:
            short = f"  (short run: threads {list(c.default_threads)})" if c.default_threads else ""
            print(f"{c.name:20s} shape {c.out_shape} {c.dtype} axis={c.axis}{short}")
        return 0
    if a.quick:
        print("--quick is now the default run (--full for every case)", file=sys.stderr)

    groups = plan(a)
    thread_counts = sorted({t for _, _, t in groups})
    settings = timing.Settings(max_rounds=a.max_rounds)
    if not a.full:
        settings.budget_s, settings.min_rounds = 0.5, 3
    if a.budget is not None:
        settings.budget_s = a.budget
    if a.min_rounds is not None:
        settings.min_rounds = a.min_rounds
    l3 = cases_mod.l3_bytes()
    working_set = int(a.working_set_mib * 2**20) if a.working_set_mib else 4 * l3
    if a.hot:
        working_set = 0
    out_dir = None
    if not a.no_save:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        out_dir = a.out or os.path.join(RESULTS, stamp)
        os.makedirs(out_dir, exist_ok=True)

    peers = cont.Peers.load({s.strip() for s in a.skip.split(",") if s.strip()})
    info = report.machine_info(peers, thread_counts, l3, working_set, a.hot)
    cmd = "python bench/run.py " + " ".join(
        shlex.quote(s) for s in (argv if argv is not None else sys.argv[1:])
    )
    header = report.header_text(info, cmd.strip())
    print(header if a.verbose else report.short_header_text(info, cmd.strip()), flush=True)

    keep = [s.strip() for s in a.contenders.split(",")] if a.contenders else None
    results = []
    prog = Progress(len(groups))
    try:
        for case in dict.fromkeys(c for c, _, _ in groups):
            base = cases_mod.make_input(case, a.seed)
            bufs = cases_mod.make_buffers(case, base, working_set)
            x0 = bufs.xs[0]
            for func in dict.fromkeys(f for c, f, _ in groups if c is case):
                ref = accuracy.reference(func, x0, case.axis)
                for t in [t for c, f, t in groups if c is case and f == func]:
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

    full_report = report.report_text(header, results)
    if a.verbose:
        print("\n" + full_report[len(header):].lstrip("\n"))
    else:
        print("\n" + report.compact_text(results, peers.default_isa))
        s = report.load_text(results)
        if s:
            print("\n" + s)

    written = []
    json_paths = [p for p in (a.json, out_dir and os.path.join(out_dir, "results.json")) if p]
    for path in json_paths:
        report.write_json(path, info, results)
        written.append(path)
    if out_dir:
        path = os.path.join(out_dir, "report.md")
        with open(path, "w") as f:
            f.write(full_report + "\n")
        written.append(path)
    for path in [p for p in (a.plot, out_dir and os.path.join(out_dir, "plot.png")) if p]:
        try:
            report.plot(path, info, results)
            written.append(path)
        except ImportError as e:  # matplotlib is in the bench extra
            print(f"no plot: {e} (pip install matplotlib)", file=sys.stderr)
    if out_dir:
        names = ", ".join(os.path.basename(p) for p in written if p.startswith(out_dir))
        shown = os.path.relpath(out_dir)
        print(f"\nresults: {out_dir if shown.startswith('..') else shown}/ ({names})")
    for p in written:
        if not (out_dir and p.startswith(out_dir)):
            print(f"wrote {p}", file=sys.stderr)
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
