"""fastsoftmax.dask cases (issue 15): `python bench/dask_cases.py [--rounds 7]
[--ooc-gib 0.25] [--skip-distributed]`.

(8192, 32000) float32 logits in memory, `.compute()` on dask's threaded scheduler
(2 workers here), in interleaved rounds (every contender once per round, shuffled);
each time is reported as the median over rounds of its ratio to a contender of the same
round, never as a ratio of medians (the machine's bandwidth drifts):
- vocabulary in one chunk (row chunks of 1024): `fastsoftmax.dask.softmax(x)` against
  `x.map_blocks(fastsoftmax.softmax)` (target <= 1.1x) and the hand-written recipe
  `e = da.exp(x - x.max(-1, keepdims=True)); e / e.sum(-1, keepdims=True)` (>= 2x faster);
  also each task with fastsoftmax's own OpenMP team (2 threads inside each of dask's 2
  worker threads) instead of one thread per task, to show the choice;
- vocabulary split in 4 chunks: against the one-chunk time (<= 1.8x) and the recipe on
  the same chunks (>= 1.8x faster);
- a distributed LocalCluster (2 worker processes, 1 thread each): x made on the workers
  (da.random) and persisted, results persisted (not sent back); the task stream's
  compute time against the wall time (its overhead);
- out of core: logsumexp per row and the sparse cross-entropy ("mean") of a float16
  array in an uncompressed zarr store on disk (--ooc-gib, small by default), each in a
  fresh process whose peak RSS is reported; the store is deleted afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROWS, VOCAB = 8192, 32000


def _recipe(x):
    e = _da().exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _da():
    import dask.array as da

    return da


def rounds(contenders: dict, n: int, seed: int = 0) -> dict:
    """{name: [seconds per round]}: each round runs every contender once, shuffled."""
    import gc

    times = {k: [] for k in contenders}
    rng = random.Random(seed)
    for fn in contenders.values():  # warm-up (imports, pools, page faults)
        fn()
    for _ in range(n):
        order = list(contenders)
        rng.shuffle(order)
        for k in order:
            gc.collect()
            time.sleep(0.05)  # the previous contender's spinning threads go to sleep
            t0 = time.perf_counter()
            contenders[k]()
            times[k].append(time.perf_counter() - t0)
    return times


def ratio(times, a, b) -> float:
    """Median over rounds of time(a) / time(b) in the same round."""
    return statistics.median(x / y for x, y in zip(times[a], times[b]))


def in_memory(n_rounds: int) -> dict:
    import dask
    import dask.array as da

    import fastsoftmax as fs
    import fastsoftmax.dask as fd

    a = np.random.default_rng(0).standard_normal((ROWS, VOCAB), dtype=np.float32) * 3
    x1 = da.from_array(a, chunks=(1024, VOCAB))
    x4 = da.from_array(a, chunks=(1024, VOCAB // 4))

    def own_teams():  # every task with fastsoftmax's thread setting (2 here)
        prev = fd._TASK_THREADS
        fd._TASK_THREADS = 0
        try:
            fd.softmax(x1).compute()
        finally:
            fd._TASK_THREADS = prev

    c = {
        "in-memory fastsoftmax.softmax": lambda: fs.softmax(a),
        "1 chunk: fastsoftmax.dask.softmax": lambda: fd.softmax(x1).compute(),
        "1 chunk: map_blocks(fastsoftmax.softmax)": lambda: x1.map_blocks(fs.softmax).compute(),
        "1 chunk: fastsoftmax.dask.softmax, OpenMP team per task": own_teams,
        "1 chunk: dask recipe": lambda: _recipe(x1).compute(),
        "4 chunks: fastsoftmax.dask.softmax": lambda: fd.softmax(x4).compute(),
        "4 chunks: dask recipe": lambda: _recipe(x4).compute(),
    }
    with dask.config.set(scheduler="threads", num_workers=2):
        t = rounds(c, n_rounds)
    fd1, mb = "1 chunk: fastsoftmax.dask.softmax", "1 chunk: map_blocks(fastsoftmax.softmax)"
    rec1 = "1 chunk: dask recipe"
    fd4, rec4 = "4 chunks: fastsoftmax.dask.softmax", "4 chunks: dask recipe"
    return {
        "median ms": {k: 1e3 * statistics.median(v) for k, v in t.items()},
        "ratios": {
            "1 chunk: fastsoftmax.dask / map_blocks (target <= 1.1)": ratio(t, fd1, mb),
            "1 chunk: recipe / fastsoftmax.dask (target >= 2)": ratio(t, rec1, fd1),
            "1 chunk: OpenMP team per task / one thread per task": ratio(
                t, "1 chunk: fastsoftmax.dask.softmax, OpenMP team per task", fd1),
            "1 chunk: fastsoftmax.dask / in-memory": ratio(t, fd1, "in-memory fastsoftmax.softmax"),
            "4 chunks / 1 chunk (target <= 1.8)": ratio(t, fd4, fd1),
            "4 chunks: recipe / fastsoftmax.dask (target >= 1.8)": ratio(t, rec4, fd4),
        },
        "rounds": n_rounds,
    }


def distributed_case(n_rounds: int) -> dict:
    import dask.array as da
    from distributed import Client, LocalCluster, get_task_stream, wait

    import fastsoftmax as fs
    import fastsoftmax.dask as fd

    out = {}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None, silence_logs=40) as cluster, \
            Client(cluster) as client:
        rng = da.random.default_rng(0)
        x1 = rng.standard_normal((ROWS, VOCAB), chunks=(1024, VOCAB), dtype=np.float32) * 3
        x1 = x1.persist()
        x4 = x1.rechunk((1024, VOCAB // 4)).persist()
        wait([x1, x4])

        def run(make):
            def f():
                with get_task_stream(client) as ts:
                    t0 = time.perf_counter()
                    r = make().persist()
                    wait(r)
                    wall = time.perf_counter() - t0
                del r
                busy = sum(ss["stop"] - ss["start"] for task in ts.data
                           for ss in task["startstops"] if ss["action"] == "compute")
                f.log.append((wall, busy, len(ts.data)))
            f.log = []
            return f

        c = {
            "1 chunk: fastsoftmax.dask.softmax": run(lambda: fd.softmax(x1)),
            "1 chunk: map_blocks(fastsoftmax.softmax)": run(lambda: x1.map_blocks(fs.softmax)),
            "1 chunk: dask recipe": run(lambda: _recipe(x1)),
            "4 chunks: fastsoftmax.dask.softmax": run(lambda: fd.softmax(x4)),
            "4 chunks: dask recipe": run(lambda: _recipe(x4)),
        }
        t = rounds(c, n_rounds)
        for k, f in c.items():
            log = f.log[1:]  # without the warm-up
            wall = statistics.median(w for w, _, _ in log)
            busy = statistics.median(b for _, b, _ in log)
            out[k] = {"wall ms": 1e3 * wall, "task compute ms (sum)": 1e3 * busy,
                      "tasks": log[0][2],
                      "overhead: 1 - busy / (2 workers x wall)": 1 - busy / (2 * wall)}
        out["ratios"] = {
            "1 chunk: fastsoftmax.dask / map_blocks": ratio(
                t, "1 chunk: fastsoftmax.dask.softmax", "1 chunk: map_blocks(fastsoftmax.softmax)"),
            "1 chunk: recipe / fastsoftmax.dask": ratio(t, "1 chunk: dask recipe",
                                                        "1 chunk: fastsoftmax.dask.softmax"),
            "4 chunks / 1 chunk": ratio(t, "4 chunks: fastsoftmax.dask.softmax",
                                        "1 chunk: fastsoftmax.dask.softmax"),
            "4 chunks: recipe / fastsoftmax.dask": ratio(t, "4 chunks: dask recipe",
                                                         "4 chunks: fastsoftmax.dask.softmax"),
        }
    return out


# ----------------------------------------------------------------- out of core
def write_store(path: str, gib: float, chunk_rows: int) -> tuple:
    """A float16 (rows, VOCAB) zarr array of about `gib` GiB, uncompressed, written one
    chunk of rows at a time (N(0, 3) logits)."""
    import zarr

    rows = max(chunk_rows, int(gib * 2**30 / (2 * VOCAB)) // chunk_rows * chunk_rows)
    z = zarr.create_array(store=path, shape=(rows, VOCAB), chunks=(chunk_rows, VOCAB),
                          dtype="float16", compressors=None, fill_value=0, overwrite=True)
    rng = np.random.default_rng(1)
    for r0 in range(0, rows, chunk_rows):
        block = rng.standard_normal((chunk_rows, VOCAB), np.float32) * 3
        z[r0:r0 + chunk_rows] = block.astype(np.float16)
    return rows, VOCAB


def ooc_child(path: str, what: str) -> None:
    """In a fresh process: one out-of-core reduction, its wall time and peak RSS."""
    import dask
    import dask.array as da

    import fastsoftmax as fs

    x = da.from_zarr(path)
    t0 = time.perf_counter()
    with dask.config.set(scheduler="threads", num_workers=2):
        if what == "logsumexp":
            r = fs.logsumexp(x).compute()
            check = float(r[:4].astype(np.float64).sum())
        else:
            lab = da.random.default_rng(2).integers(0, x.shape[1], x.shape[0], chunks=x.chunks[0])
            r = fs.sparse_softmax_cross_entropy_with_logits(lab, x, reduction="mean").compute()
            check = float(r)
    wall = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"wall s": wall, "peak RSS MiB": rss / 2**20, "check": check,
                      "chunk MiB": x.chunks[0][0] * x.shape[1] * 2 / 2**20}))


def out_of_core(gib: float, chunk_rows: int, folder: str | None) -> dict:
    d = tempfile.mkdtemp(prefix="fastsoftmax-ooc-", dir=folder)
    path = os.path.join(d, "logits.zarr")
    try:
        t0 = time.perf_counter()
        rows, vocab = write_store(path, gib, chunk_rows)
        res = {"shape": [rows, vocab], "GiB on disk": rows * vocab * 2 / 2**30,
               "write s": time.perf_counter() - t0}
        for what in ["logsumexp", "sparse_xent_mean"]:
            p = subprocess.run([sys.executable, __file__, "--ooc-child", path, what],
                               capture_output=True, text=True, check=True)
            res[what] = json.loads(p.stdout.strip().splitlines()[-1])
        return res
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--ooc-gib", type=float, default=0.25, help="size of the zarr store (GiB)")
    p.add_argument("--ooc-chunk-rows", type=int, default=2048)
    p.add_argument("--ooc-dir", default=None, help="where the store goes (default: a temp dir)")
    p.add_argument("--skip-in-memory", action="store_true")
    p.add_argument("--skip-distributed", action="store_true")
    p.add_argument("--skip-ooc", action="store_true")
    p.add_argument("--ooc-child", nargs=2, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.ooc_child:
        return ooc_child(*a.ooc_child)
    import dask

    import fastsoftmax as fs

    res = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
                      f"load {os.getloadavg()[0]:.1f}",
           "versions": f"fastsoftmax isa {fs.isa()}, numpy {np.__version__}, "
                       f"dask {dask.__version__}"}
    if not a.skip_in_memory:
        res["in memory, threaded scheduler"] = in_memory(a.rounds)
    if not a.skip_distributed:
        res["distributed LocalCluster, 2 processes"] = distributed_case(a.rounds)
    if not a.skip_ooc:
        res["out of core"] = out_of_core(a.ooc_gib, a.ooc_chunk_rows, a.ooc_dir)
    res["load after"] = os.getloadavg()[0]
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
