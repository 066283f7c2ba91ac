"""Bit fingerprint of every fastsoftmax result: proves a refactor changed no bit.

Runs a fixed corpus (every public function, dtype, layout, option, special value,
long rows, multi-threaded and streaming-store sizes) for each ISA and thread count
and prints one line per case, ``<isa> t<threads> <case> <sha256[:16]>`` (the hash
covers each result's kind, dtype, shape, memory order and raw bytes, NaN payloads
included; for ``out=`` cases also that ``out`` is returned and its whole buffer),
then per ISA a summary hash and whether every thread count gave the same hashes.
Inputs come only from ``np.random.default_rng`` seeded by the case name.

Before the refactor:  python bench/fingerprint.py --out fp-before.txt
After it (rebuilt):   python bench/fingerprint.py --check fp-before.txt
(exit status 1 and the differing cases listed if any bit moved). Compare on the
same machine and NumPy build (inputs use NumPy's generators). ``--quick`` skips
the large cases (``--check`` then compares the cases run); ``-k SUBSTR`` filters
cases by name; ``--list`` prints the case names; ``--times`` the slowest cases;
``--reverse`` runs everything in reverse order (the lines must not change).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
import time
import zlib

import numpy as np

import fastsoftmax as fs

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fingerprint_corpus import CASES, ISA_ORDER, copy_inputs  # noqa: E402

# ---------------------------------------------------------------------- hashing
def _feed(h, r):
    if isinstance(r, tuple):
        h.update(b"tuple%d|" % len(r))
        for e in r:
            _feed(h, e)
        return
    if isinstance(r, np.ndarray):
        kind = "ndarray"
    elif isinstance(r, np.generic):
        kind, r = "scalar", np.asarray(r)
    else:
        raise TypeError(f"unexpected result type {type(r).__name__}")
    order = "C" if r.flags.c_contiguous else "F" if r.flags.f_contiguous else "S"
    h.update(f"{kind}|{r.dtype.str}|{r.shape}|{order}|".encode())
    h.update(np.ascontiguousarray(r).tobytes())


def digest(r) -> str:
    h = hashlib.sha256()
    _feed(h, r)
    return h.hexdigest()[:16]


_inputs: dict[str, dict] = {}


def run_case(name):
    make, run, _ = CASES[name]
    if name not in _inputs:
        _inputs[name] = make(np.random.default_rng(zlib.crc32(name.encode())))
    return digest(run(copy_inputs(_inputs[name])))


# ---------------------------------------------------------------------- main
def parse_lines(path):
    cases, summary = {}, {}
    with open(path) as fh:
        for line in fh:
            p = line.split()
            if not p or p[0].startswith("#"):
                continue
            if len(p) == 4 and re.fullmatch(r"t\d+", p[1]):
                cases[(p[0], p[1], p[2])] = p[3]
            elif len(p) >= 3 and p[1] == "summary":
                summary[p[0]] = p[2]
    return cases, summary


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--isas", help="comma-separated (default: every available ISA)")
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    ap.add_argument("--out", help="also write the lines to this file")
    ap.add_argument("--check", help="compare with a previous output; exit 1 on any difference")
    ap.add_argument("--quick", action="store_true", help="skip the large cases")
    ap.add_argument("-k", dest="filter", help="only cases whose name contains this")
    ap.add_argument("--list", action="store_true", help="print the case names and exit")
    ap.add_argument("--times", action="store_true", help="report the slowest cases on stderr")
    ap.add_argument("--reverse", action="store_true",
                    help="run the cases (and ISAs, thread counts) in reverse order: the lines must not change")
    a = ap.parse_args(argv)

    names = sorted(n for n, (_, _, big) in CASES.items()
                   if not (a.quick and big) and (not a.filter or a.filter in n))
    if a.list:
        print("\n".join(names))
        return 0
    avail = fs.available_isas()
    isas = a.isas.split(",") if a.isas else list(avail)
    for i in isas:
        if i not in avail:
            ap.error(f"ISA {i!r} not available here (available: {', '.join(avail)})")
    isas.sort(key=lambda i: (ISA_ORDER.index(i) if i in ISA_ORDER else len(ISA_ORDER), i))
    ths = sorted({int(t) for t in a.threads.split(",")})

    lines = [f"# fastsoftmax fingerprint: {len(names)} cases, isas {','.join(isas)}, "
             f"threads {','.join(map(str, ths))}{', quick' if a.quick else ''}"
             f"{', filter ' + a.filter if a.filter else ''}; numpy {np.__version__}"]
    results, timing = {}, {}
    start, prev_isa, prev_threads = time.perf_counter(), fs.isa(), fs.get_num_threads()
    order = (lambda seq: seq[::-1]) if a.reverse else (lambda seq: seq)
    try:
        for isa in order(isas):
            fs._set_isa(isa)
            for th in order(ths):
                with fs.threads(th):
                    for n in order(names):
                        t0 = time.perf_counter()
                        results[(isa, th, n)] = run_case(n)
                        timing[n] = timing.get(n, 0.0) + time.perf_counter() - t0
    finally:
        fs._set_isa(prev_isa)
        fs.set_num_threads(prev_threads)
    elapsed = time.perf_counter() - start

    tail = []
    for isa in isas:
        h = hashlib.sha256()
        for th in ths:
            for n in names:
                v = results[(isa, th, n)]
                lines.append(f"{isa} t{th} {n} {v}")
                h.update(f"t{th} {n} {v}\n".encode())
        tail.append(f"{isa} summary {h.hexdigest()[:16]} ({len(names)} cases x {len(ths)} thread counts)")
        if len(ths) > 1:
            diff = [n for n in names if len({results[(isa, th, n)] for th in ths}) > 1]
            agree = "identical" if not diff else f"DIFFER in {len(diff)} cases: {' '.join(diff)}"
            tail.append(f"{isa} threads {'=='.join('t%d' % t for t in ths)}: {agree}")
    lines += tail
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if a.out:
        with open(a.out, "w") as fh:
            fh.write(text)
    print(f"# {len(names)} cases x {len(isas)} ISAs x {len(ths)} thread counts in {elapsed:.1f} s",
          file=sys.stderr)
    if a.times:
        for n, s in sorted(timing.items(), key=lambda kv: -kv[1])[:25]:
            print(f"#   {s:7.3f} s  {n}", file=sys.stderr)

    rc = 0
    if any("DIFFER" in line for line in tail):
        rc = 1
    if a.check:
        ref, _ = parse_lines(a.check)
        cur = {(isa, f"t{th}", n): v for (isa, th, n), v in results.items()}
        common = sorted(set(ref) & set(cur))
        bad = [k for k in common if ref[k] != cur[k]]
        new = sorted(set(cur) - set(ref))
        notrun = len(set(ref) - set(cur))
        for k in bad:
            print(f"DIFF {' '.join(k)}: {ref[k]} -> {cur[k]}", file=sys.stderr)
        for k in new:
            print(f"NEW (not in {a.check}) {' '.join(k)}", file=sys.stderr)
        print(f"# check against {a.check}: {len(common)} compared, {len(bad)} differ, {len(new)} new, "
              f"{notrun} of the reference not run", file=sys.stderr)
        if bad or new or not common:
            rc = 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
