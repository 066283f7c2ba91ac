"""Serving under load (issue 16): `python bench/serving.py [--busy 1] [--calls 200]`.

Latency per call, p50 / p90 / p99 in µs, of `softmax(x, out=o)` float32 at 1 thread
and at all threads, beside torch.softmax and an onnxruntime Softmax graph at the same
thread counts, on the shapes (64, 1000) small, (8192, 128) short-row batch,
(64, 128256) LLM rows, (1, 4194304) a long row, and (4096, 512) over axis 0 (a
panel); plus one training-family call (softmax_backward on (64, 128256), fastsoftmax
only). Every call is timed alone (perf_counter_ns), the contenders in alternating
blocks of calls so that drift hits them alike.

Scenarios:
  quiet      nothing else running (what this process can see of the machine: the
             other processes' CPU share is printed);
  busy       N competing busy processes (`python -c "while True: pass"`, --busy N);
  pythreads  4 and 8 Python threads calling concurrently for --seconds each (in 4
             rounds, the contenders' order alternating):
             aggregate calls/s and the per-call percentiles, at all threads and at
             1 thread per call (the throughput to match), peers alike;
  nested     calls from inside the user's own thread pool (a
             concurrent.futures.ThreadPoolExecutor of 2 workers), and calls made
             while another Python thread keeps torch's OpenMP team busy (torch.mm
             at all threads: the user's own OpenMP work in the same process).

Targets (issue 16), checked at the end: busy, every shape: fastsoftmax all threads
p90 <= 1.2x and p50 <= 1x its 1-thread numbers; pythreads 8: aggregate throughput at
all threads >= at 1 thread per call; p99 ahead of both peers at all threads.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import platform
import subprocess
import sys
import threading
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from contenders import ORT_SPIN_COOLDOWN_S, Peers  # noqa: E402
from timing import LoadMeter  # noqa: E402

import fastsoftmax as fs  # noqa: E402

SHAPES = {
    "small (64, 1000)": ((64, 1000), -1),
    "short rows (8192, 128)": ((8192, 128), -1),
    "LLM rows (64, 128256)": ((64, 128256), -1),
    "long row (1, 4194304)": ((1, 1 << 22), -1),
    "panel (4096, 512) axis 0": ((4096, 512), 0),
}
TRAIN = "softmax_backward (64, 128256)"


def pct(ts):
    a = np.sort(np.asarray(ts, dtype=np.float64)) / 1e3
    return tuple(float(np.percentile(a, q)) for q in (50, 90, 99))


class Call:
    """One contender on one shape: fn() runs one call; threads its pool size."""

    def __init__(self, name, threads, make, cooldown_s=0.0):
        self.name, self.threads, self.make, self.cooldown_s = name, threads, make, cooldown_s

    def label(self):
        return f"{self.name} {self.threads}t"


def contenders(peers: Peers, shape, axis, all_threads, train=False):
    """[Call]: fastsoftmax (and the peers unless train) at 1 and all threads; each
    Call.make() returns a fresh fn() with its own input and output (one per Python
    thread in the concurrent scenarios)."""
    rng = np.random.default_rng(0)
    x0 = (rng.standard_normal(shape) * 3).astype(np.float32)
    counts = sorted({1, all_threads})
    out = []
    for t in counts:

        def mk_fs(t=t):
            if train:
                g, y = rng.standard_normal(shape).astype(np.float32), fs.softmax(x0)
                o = np.empty_like(x0)
                return t, lambda: fs.softmax_backward(g, y, out=o)
            x, o = x0.copy(), np.empty_like(x0)
            return t, lambda: fs.softmax(x, axis=axis, out=o)

        out.append(Call("fastsoftmax", t, mk_fs))
    if train:
        return out
    if peers.torch is not None:
        torch = peers.torch
        for t in counts:

            def mk_torch(t=t):
                x = torch.from_numpy(x0.copy())
                return t, lambda: torch.softmax(x, axis)

            out.append(Call("torch", t, mk_torch))
    if peers.ort is not None:
        for t in counts:
            sess = peers.ort_session("softmax", shape, "float32", axis, t)

            def mk_ort(sess=sess, t=t):
                x = x0.copy()
                return t, lambda: sess.run(["y"], {"x": x})

            cool = ORT_SPIN_COOLDOWN_S if t > 1 and peers.ort_spinning else 0.0
            out.append(Call("onnxruntime", t, mk_ort, cool))
    return out


def set_threads(peers, t):
    fs.set_num_threads(t)
    if peers.torch is not None:
        peers.torch.set_num_threads(t)


def timed_calls(fn, n):
    ts = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        fn()
        ts.append(time.perf_counter_ns() - t0)
    return ts


def latency(peers, calls, n_calls, blocks=4):
    """{label: [ns]}: each Call timed for n_calls calls in `blocks` alternating blocks."""
    fns = []
    for c in calls:
        t, fn = c.make()
        set_threads(peers, t)
        fn()  # warm: allocations, pools started
        fns.append((c, t, fn))
    res = {c.label(): [] for c in calls}
    per = max(1, n_calls // blocks)
    for _ in range(blocks):
        for c, t, fn in fns:
            set_threads(peers, t)
            time.sleep(0.002)
            fn()  # one untimed call: this contender's own pool awake, as in a loop
            res[c.label()] += timed_calls(fn, per)
            if c.cooldown_s:
                time.sleep(c.cooldown_s)
    return res


CONC_ROUNDS = 4


def concurrent_calls(peers, call, n_threads, seconds):
    """(calls/s of all threads together, [ns] per call) with n_threads Python threads
    calling `call` for `seconds`."""
    t, _ = call.make()
    set_threads(peers, t)
    fns = [call.make()[1] for _ in range(n_threads)]
    for fn in fns:
        fn()
    stop = threading.Event()
    start = threading.Barrier(n_threads + 1)
    lat = [[] for _ in range(n_threads)]

    def worker(i):
        fn, mine = fns[i], lat[i]
        start.wait()
        while not stop.is_set():
            t0 = time.perf_counter_ns()
            fn()
            mine.append(time.perf_counter_ns() - t0)

    th = [threading.Thread(target=worker, args=(i,)) for i in range(n_threads)]
    for x in th:
        x.start()
    start.wait()
    t0 = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for x in th:
        x.join()
    wall = time.perf_counter() - t0
    allts = [v for m in lat for v in m]
    if call.cooldown_s:
        time.sleep(call.cooldown_s)
    return len(allts) / wall, allts


class Busy:
    """N competing busy processes for the duration of a `with`."""

    def __init__(self, n):
        self.n, self.procs = n, []

    def __enter__(self):
        for _ in range(self.n):
            self.procs.append(subprocess.Popen([sys.executable, "-c", "while True: pass"]))
        time.sleep(0.5)
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.wait()


def fmt(p):
    return " / ".join(f"{v:,.0f}" if v >= 100 else f"{v:.1f}" for v in p)


def latency_table(title, results, all_threads):
    print(f"\n### {title}\n")
    cols = []
    for name in ("fastsoftmax", "torch", "onnxruntime"):
        for t in sorted({1, all_threads}):
            cols.append(f"{name} {t}t")
    present = [c for c in cols if any(c in r for r in results.values())]
    print("p50 / p90 / p99 per call, µs\n")
    print("| shape | " + " | ".join(present) + " |")
    print("|---|" + "---|" * len(present))
    for shape, r in results.items():
        cells = [fmt(pct(r[c])) if c in r else "" for c in present]
        print(f"| {shape} | " + " | ".join(cells) + " |")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--busy", type=int, default=1, help="competing busy processes (busy)")
    ap.add_argument("--calls", type=int, default=200, help="timed calls per contender")
    ap.add_argument("--seconds", type=float, default=1.0, help="per concurrent run")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="all threads")
    ap.add_argument("--scenarios", default="quiet,busy,pythreads,nested")
    ap.add_argument("--shapes", default="", help="substrings of shape names, comma-separated")
    ap.add_argument("--skip", default="", help="peers to leave out: torch,onnxruntime")
    a = ap.parse_args(argv)
    peers = Peers.load(skip=set(filter(None, a.skip.split(","))))
    T = a.threads
    shapes = {
        k: v for k, v in SHAPES.items() if not a.shapes or any(s in k for s in a.shapes.split(","))
    }
    scen = a.scenarios.split(",")
    print(f"# serving: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"isa {fs.isa()}, all threads = {T}, numpy {np.__version__}"
          + (f", torch {peers.torch.__version__}" if peers.torch else "")
          + (f", onnxruntime {peers.ort.__version__}" if peers.ort else ""))
    for n in peers.notes:
        print(f"# {n}")
    summary = {}
    for name in ("quiet", "busy"):
        if name not in scen:
            continue
        meter = LoadMeter()
        res = {}
        with Busy(a.busy if name == "busy" else 0):
            for k, (shape, axis) in shapes.items():
                res[k] = latency(peers, contenders(peers, shape, axis, T), a.calls)
            if not a.shapes or "backward" in a.shapes:
                calls = contenders(peers, (64, 128256), -1, T, train=True)
                res[TRAIN] = latency(peers, calls, a.calls)
        load = meter.stop()
        other = (f"{load['other_cpu']:.0%} of the CPUs used by other processes"
                 if load else "load unknown")
        title = "quiet" if name == "quiet" else f"{a.busy} competing busy process(es)"
        latency_table(f"{title} ({other}, busy loops included)", res, T)
        summary[name] = res
    if "pythreads" in scen:
        for P in (4, 8):
            meter = LoadMeter()
            print(f"\n### {P} Python threads calling concurrently\n")
            print("aggregate calls/s; p50 / p90 / p99 per call, µs\n")
            print("| shape | contender | calls/s | per call |")
            print("|---|---|---|---|")
            for k, (shape, axis) in shapes.items():
                # the contenders in CONC_ROUNDS rounds of --seconds / CONC_ROUNDS each,
                # alternating their order, so that the machine's drift between
                # seconds hits them alike
                cs = contenders(peers, shape, axis, T)
                acc = {c.label(): [0, 0.0, []] for c in cs}
                for r in range(CONC_ROUNDS):
                    for c in cs if r % 2 == 0 else cs[::-1]:
                        rate, ts = concurrent_calls(peers, c, P, a.seconds / CONC_ROUNDS)
                        n_calls, wall, lat = acc[c.label()]
                        took = len(ts) / rate if rate else a.seconds / CONC_ROUNDS
                        acc[c.label()] = [n_calls + len(ts), wall + took, lat + ts]
                for c in cs:
                    n_calls, wall, ts = acc[c.label()]
                    rate = n_calls / wall
                    summary.setdefault(f"py{P}", {}).setdefault(k, {})[c.label()] = rate
                    print(f"| {k} | {c.label()} | {rate:,.0f} | {fmt(pct(ts))} |")
            load = meter.stop()
            if load:
                print(f"\n({load['other_cpu']:.0%} of the CPUs used by other processes)")
    if "nested" in scen:
        print("\n### nested: inside a ThreadPoolExecutor(2); beside torch's OpenMP team\n")
        print("p50 / p90 / p99 per call, µs\n")
        print("| shape | fastsoftmax | in executor(2): 1t | all t | beside torch.mm: 1t | all t |")
        print("|---|---|---|---|---|---|")
        for k, (shape, axis) in shapes.items():
            cs = contenders(peers, shape, axis, T)[:2]
            row = []
            for c in cs:
                t, _ = c.make()
                set_threads(peers, t)
                fns = [c.make()[1] for _ in range(2)]
                with concurrent.futures.ThreadPoolExecutor(2) as ex:

                    def job(i):
                        return timed_calls(fns[i], max(1, a.calls // 2))

                    ts = [v for f in [ex.submit(job, i) for i in range(2)] for v in f.result()]
                row.append(fmt(pct(ts)))
            for c in cs:
                t, fn = c.make()
                if peers.torch is None:
                    row.append("")
                    continue
                torch = peers.torch
                torch.set_num_threads(T)
                m = torch.randn(512, 512)
                stop = threading.Event()

                def omp_work():
                    while not stop.is_set():
                        torch.mm(m, m)

                bg = threading.Thread(target=omp_work)
                bg.start()
                time.sleep(0.05)
                fs.set_num_threads(t)
                ts = timed_calls(fn, a.calls)
                stop.set()
                bg.join()
                row.append(fmt(pct(ts)))
            print(f"| {k} | | " + " | ".join(row) + " |")
    fs.set_num_threads(T)
    check(summary, T)


def check(summary, T):
    """The issue's targets on what was measured."""
    lines = []
    fa, f1 = f"fastsoftmax {T}t", "fastsoftmax 1t"
    if "busy" in summary and T > 1:
        for k, r in summary["busy"].items():
            (a50, a90, a99), (o50, o90, o99) = pct(r[fa]), pct(r[f1])
            ok = a90 <= 1.2 * o90 and a50 <= o50
            peers99 = [pct(r[p])[2] for p in r
                       if not p.startswith("fastsoftmax") and p.endswith(f" {T}t")]
            if peers99:
                ahead = all(a99 < p for p in peers99)
                vs = (f"p99 {'ahead of' if ahead else 'NOT ahead of'} peers "
                      f"({a99:,.0f} vs {', '.join(f'{p:,.0f}' for p in peers99)})")
            else:
                vs = "no peer"
            lines.append(
                f"busy {k}: p50 {a50 / o50:.2f}x, p90 {a90 / o90:.2f}x of 1 thread "
                f"{'OK' if ok else 'MISS'}; {vs}"
            )
    if "py8" in summary and T > 1:
        for k, r in summary["py8"].items():
            ratio = r[fa] / r[f1]
            lines.append(f"8 Python threads {k}: all-threads throughput {ratio:.2f}x of 1 thread "
                         f"per call {'OK' if ratio >= 1.0 else 'MISS'}")
    if lines:
        print("\n### targets\n")
        for s in lines:
            print(f"- {s}")


if __name__ == "__main__":
    main()
