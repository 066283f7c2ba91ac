"""Interleaved timing: every round runs each contender once, in a shuffled order.

The memory bandwidth of a shared machine drifts (up to 2x within seconds here), so a
time is only compared with times of the same round: speedups and "x copy" are
medians over rounds of per-round ratios, never ratios of medians.

One sample = a batch of ``k`` calls (k chosen per contender so a batch lasts about
``sample_ns``; 1 for anything slower), each call on the next buffer pair of the
rotation, timed with ``time.perf_counter_ns`` as a whole and divided by ``k``.

Thread pools on a 2-core machine: after a call, OpenMP (torch, fastsoftmax) and
onnxruntime workers spin for a while; run right then, the next contender's threads
wait for a core (torch after onnxruntime: 4x slower). And a pool that has gone to
sleep pays ~0.2 ms to wake its threads (an idle vCPU here is slow to wake). So each
sample starts with ``settle_s`` of sleep (the previous contender's spinners stop:
enough for OpenMP pools; onnxruntime's workers spin for ~40-50 ms, so its
multi-thread samples are followed by the contender's ``cooldown_s`` more) and,
for calls under ``rewake_ns``, one untimed call (wakes this contender's own pool, as a
loop of calls would), then the timed batch. Each contender keeps its library's default
wait policy.
"""

from __future__ import annotations

import gc
import math
import os
import time
from dataclasses import dataclass

import numpy as np


@dataclass
class Settings:
    budget_s: float = 2.0  # time per (case, function, threads) when rounds allow
    min_rounds: int = 5
    max_rounds: int = 60
    sample_ns: int = 1_000_000  # a batch of fast calls lasts about this long
    settle_s: float = 0.001  # idle gap before each sample: the last one's spinners sleep
    rewake_ns: int = 2_000_000  # calls faster than this get one untimed call first


@dataclass
class Contender:
    """The least a contender needs for `measure`: a name and fn(x, out) (bench/ab.py,
    bench/select_cases.py; bench/contenders.py has the peers' richer ones)."""

    name: str
    fn: object
    cooldown_s: float = 0.0

    def prepare(self):
        pass


class LoadMeter:
    """CPU time that other processes (and the hypervisor: steal) took while we measured,
    as a fraction of all cores; read from /proc/stat, so Linux only (None elsewhere).
    A 2-thread number taken beside a busy neighbour is worth little: report.py flags it.
    """

    def __init__(self):
        self.hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.ncpu = os.cpu_count() or 1
        self.start = self._read()

    @staticmethod
    def _proc_stat():
        try:
            with open("/proc/stat") as f:
                v = [int(t) for t in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        busy = v[0] + v[1] + v[2] + v[5] + v[6]  # user nice system irq softirq
        steal = v[7] if len(v) > 7 else 0
        return busy, steal

    def _read(self):
        t = os.times()
        return self._proc_stat(), t.user + t.system, time.monotonic()

    def stop(self) -> dict | None:
        (s0, own0, w0), (s1, own1, w1) = self.start, self._read()
        if s0 is None or s1 is None or w1 <= w0:
            return None
        cap = (w1 - w0) * self.ncpu
        other = (s1[0] - s0[0]) / self.hz - (own1 - own0)
        return {"other_cpu": max(0.0, other / cap), "steal": (s1[1] - s0[1]) / self.hz / cap}


def wait_quiet(max_s: float, limit: float = 0.10, probe_s: float = 0.5) -> float:
    """Sleep until other processes use less than ``limit`` of the CPUs over ``probe_s``
    (or ``max_s`` has passed); return the seconds waited."""
    t0 = time.monotonic()
    while True:
        m = LoadMeter()
        time.sleep(probe_s)
        load = m.stop()
        if load is None or load["other_cpu"] < limit or time.monotonic() - t0 >= max_s:
            return time.monotonic() - t0


def _run(fn, pairs) -> int:
    t0 = time.perf_counter_ns()
    for x, o in pairs:
        fn(x, o)
    return time.perf_counter_ns() - t0


def calibrate(c, bufs, s: Settings, first_ns: int | None = None) -> tuple:
    """Warm a contender up; return (calls per sample, estimated ns per call).

    ``first_ns``: the time of a first call already made (the accuracy check's)."""
    c.prepare()
    t = first_ns if first_ns is not None else _run(c.fn, bufs.take(1))
    if t < 2 * s.sample_ns:  # the first call pays page faults, lazy init, thread start
        t = min(_run(c.fn, bufs.take(1)) for _ in range(3))
    t = max(t, 50)
    return max(1, min(100_000, round(s.sample_ns / t))), t


def measure(contenders, bufs, s: Settings, seed: int = 0, tick=None, first_ns=None) -> dict:
    """Times per call (ns) of each contender, one entry per round, same round order."""
    k, est = {}, {}
    first_ns = first_ns or {}
    for c in contenders:
        k[c.name], est[c.name] = calibrate(c, bufs, s, first_ns.get(c.name))
        if c.cooldown_s:
            time.sleep(c.cooldown_s)
    round_ns = sum(
        (k[c.name] + (est[c.name] < s.rewake_ns)) * est[c.name]
        + (s.settle_s + c.cooldown_s) * 1e9
        for c in contenders
    )
    rounds = int(min(s.max_rounds, max(s.min_rounds, math.ceil(s.budget_s * 1e9 / round_ns))))

    times = {c.name: [] for c in contenders}
    meter = LoadMeter()
    rng = np.random.default_rng(seed)
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for r in range(rounds):
            if tick:
                tick(r, rounds)
            for i in rng.permutation(len(contenders)):
                c = contenders[i]
                n = k[c.name]
                c.prepare()
                if s.settle_s:
                    time.sleep(s.settle_s)
                if est[c.name] < s.rewake_ns:
                    _run(c.fn, bufs.take(1))
                times[c.name].append(_run(c.fn, bufs.take(n)) / n)
                if c.cooldown_s:
                    time.sleep(c.cooldown_s)
    finally:
        if gc_was:
            gc.enable()
    return {"rounds": rounds, "calls_per_sample": k, "times_ns": times, "load": meter.stop()}


def summarize(times: dict, recipe: str, copy: str) -> dict:
    """Median time and the medians of per-round ratios against the recipe and copy."""
    out = {}
    for name, ts in times.items():
        t = np.asarray(ts, dtype=float)
        row = {"median_ns": float(np.median(t)), "min_ns": float(t.min())}
        row["q1_ns"], row["q3_ns"] = (float(v) for v in np.percentile(t, [25, 75]))
        if recipe in times:
            row["speedup"] = float(np.median(np.asarray(times[recipe]) / t))
        if copy in times:
            row["x_copy"] = float(np.median(t / np.asarray(times[copy])))
        out[name] = row
    return out
