"""The header (machine, versions), the tables, the JSON file and the plot."""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys

import numpy as np
from contenders import COPY

BUSY = 0.05  # flag a row when other processes + steal took more than this share of CPU
PEERS = ("numpy", "numpy-inplace", "scipy", "torch", "onnxruntime")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(peers, thread_counts, l3, working_set, hot) -> dict:
    def ver(mod):
        return getattr(mod, "__version__", "?") if mod is not None else "not installed"

    info = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "l3_bytes": l3,
        "working_set_bytes": None if hot else working_set,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": ver(sys.modules.get("scipy")) if peers.scipy_special else "not installed",
        "torch": ver(peers.torch),
        "onnxruntime": ver(peers.ort),
        "onnx": ver(peers.onnx),
        "fastsoftmax": ver(peers.fsm),
        "isa_active": peers.default_isa or None,
        "isa_available": peers.fsm_isas(),
        "threads": list(thread_counts),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "notes": list(peers.notes),
    }
    try:  # which threading runtimes are loaded (do fastsoftmax and torch share libgomp?)
        from threadpoolctl import threadpool_info

        info["thread_pools"] = [
            f"{p['internal_api']} {os.path.basename(p['filepath'])}" for p in threadpool_info()
        ]
    except ImportError:
        info["thread_pools"] = None
    if peers.torch is not None:
        try:
            info["torch_cpu_capability"] = peers.torch.backends.cpu.get_cpu_capability()
        except AttributeError:  # older torch
            pass
    return info


def header_text(info: dict, cmd: str) -> str:
    ws = info["working_set_bytes"]
    lines = [
        f"# fastsoftmax benchmark — {info['date']}",
        "",
        f"- command: `{cmd}`",
        (
            f"- CPU: {info['cpu']} ({info['machine']}), {info['cores']} cores "
            f"({info['cores_usable']} usable), L3 {info['l3_bytes'] >> 20} MiB"
        ),
        (
            f"- fastsoftmax {info['fastsoftmax']}: ISA active `{info['isa_active']}`, "
            f"available {info['isa_available']}"
        ),
        f"- python {info['python']}, numpy {info['numpy']}, scipy {info['scipy']}, "
        f"torch {info['torch']}"
        + (f" ({info['torch_cpu_capability']})" if "torch_cpu_capability" in info else "")
        + f", onnxruntime {info['onnxruntime']}, onnx {info['onnx']}",
        (
            f"- threads: {info['threads']} (fastsoftmax.set_num_threads, "
            "torch.set_num_threads, ORT intra_op_num_threads; NumPy/SciPy are single-threaded)"
            f"; OMP_NUM_THREADS={info['omp_num_threads']}"
        ),
        f"- thread pools loaded (threadpoolctl): {info['thread_pools']}",
        "- buffers: "
        + (
            f"rotated so input+output copies span {ws >> 20} MiB (out of cache)"
            if ws
            else "one copy (--hot: in-cache numbers)"
        ),
        (
            "- columns: median µs per call; `vs numpy` and `x copy` are medians of same-round "
            "ratios (numpy recipe time / this, this / np.copyto time); GB/s counts x read + "
            "y written once; max ULP: error vs a float64 (f64 case: long double) reference; "
            "K: the accuracy constant K of docs/contract.md §5, i.e. max ULP less the "
            "|x-max|/2 every float softmax "
            "pays (K <= 4 float32, <= 16 float64 softmax, <= 4 log_softmax; see "
            "bench/accuracy.py)"
        ),
    ]
    for n in info["notes"]:
        lines.append(f"- note: {n}")
    return "\n".join(lines)


def short_header_text(info: dict, cmd: str) -> str:
    """Three lines for the terminal (report.md has the whole header)."""
    return "\n".join([
        f"fastsoftmax benchmark — {info['date']} — `{cmd}`",
        f"{info['cpu']} ({info['machine']}), {info['cores']} cores; fastsoftmax "
        f"{info['fastsoftmax']} ISA {info['isa_active']}; numpy {info['numpy']}, scipy "
        f"{info['scipy']}, torch {info['torch']}, onnxruntime {info['onnxruntime']}",
    ] + [f"note: {n}" for n in info["notes"]])


def report_text(header: str, results: list) -> str:
    """The whole Markdown report: header, a table per function and thread count (every
    contender), the summary and the neighbours' load."""
    parts = [header]
    funcs = list(dict.fromkeys(r["func"] for r in results))
    for func in funcs:
        for t in sorted({r["threads"] for r in results if r["func"] == func}):
            parts.append(table_text(results, func, t))
    parts += [summary_text(results), load_text(results)]
    return "\n\n".join(p for p in parts if p)


def compact_text(results: list, default_isa: str | None) -> str:
    """One line per case, function and thread count: fastsoftmax as a user calls it (the
    default ISA) against NumPy's recipe and the fastest peer, in the same rounds."""
    multi = len({r["func"] for r in results}) > 1
    head = ["case", "func", "thr", "fastsoftmax", "x copy", "vs numpy", "best peer",
            "peer", "fsm vs peer"]
    if not multi:
        head.remove("func")
    rows = []
    for r in results:
        cs = r["contenders"]
        me = f"fsm-{default_isa}"
        if me not in cs:
            continue
        peers = [n for n in cs if n in PEERS]
        bp = min(peers, key=lambda n: cs[n]["median_ns"]) if peers else None
        busy = " ⚠" if _busy(r) > BUSY else ""
        row = [r["case"] + busy, r["func"], str(r["threads"]), _fmt_us(cs[me]["median_ns"]) + " µs",
               f"{cs[me].get('x_copy', np.nan):.2f}", f"{cs[me].get('speedup', np.nan):.1f}x",
               bp or "-", (_fmt_us(cs[bp]["median_ns"]) + " µs") if bp else "-",
               f"{_per_round_ratio(cs[bp]['times_ns'], cs[me]['times_ns']):.2f}x" if bp else "-"]
        if not multi:
            del row[1]
        rows.append(row)
    widths = [max(len(h), *(len(x[i]) for x in rows)) if rows else len(h)
              for i, h in enumerate(head)]
    right = {i for i, h in enumerate(head) if h not in ("case", "func", "best peer")}

    def line(cells):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths)))

    out = [line(head), line(["-" * w for w in widths])] + [line(x) for x in rows]
    out.append("x copy: time / np.copyto of the same array; vs numpy, fsm vs peer: speedups "
               "(medians of same-round ratios); ⚠: a busy neighbour took > 5% of the CPUs")
    return "\n".join(out)


def _fmt_us(ns: float) -> str:
    us = ns / 1e3
    return f"{us:.3g}" if us < 100 else f"{us:,.0f}"


def _fmt_ulp(u) -> str:
    if u is None or np.isnan(u):
        return "-"
    if np.isinf(u):
        return "inf"
    return f"{u:.2f}" if abs(u) < 10 else f"{u:,.0f}"


def _busy(r: dict) -> float:
    load = r.get("load") or {}
    return load.get("other_cpu", 0.0) + load.get("steal", 0.0)


def table_text(results: list, func: str, threads: int) -> str:
    rows = [r for r in results if r["func"] == func and r["threads"] == threads]
    if not rows:
        return ""
    out = [
        f"## {func}, {threads} thread{'s' if threads > 1 else ''}",
        "",
        "| case | contender | µs | vs numpy | x copy | GB/s | max ULP | K |",
        "|---|---|--:|--:|--:|--:|--:|--:|",
    ]
    for r in rows:
        first = True
        busy = _busy(r)
        flag = f" ⚠ busy {100 * busy:.0f}%" if busy > BUSY else ""
        for name, c in r["contenders"].items():
            case = f"{r['case']}{flag}" if first else ""
            first = False
            out.append(
                f"| {case} | {name} | {_fmt_us(c['median_ns'])} | "
                f"{c.get('speedup', float('nan')):.2f} | {c.get('x_copy', float('nan')):.2f} | "
                f"{c['gbps']:.1f} | {_fmt_ulp(c.get('max_ulp'))} | "
                f"{_fmt_ulp(c.get('spec_k'))} |"
            )
    for r in rows:
        for n in r.get("notes", []):
            out.append(f"\nnote ({r['case']}): {n}")
    return "\n".join(out)


def _per_round_ratio(a, b) -> float:
    return float(np.median(np.asarray(a) / np.asarray(b)))


def load_text(results: list) -> str:
    loads = [r["load"] for r in results if r.get("load")]
    if not loads:
        return ""
    other = [ld["other_cpu"] for ld in loads]
    steal = [ld["steal"] for ld in loads]
    n_busy = sum(o + s > BUSY for o, s in zip(other, steal))
    return (
        f"other processes used {100 * np.mean(other):.1f}% of the CPUs on average while "
        f"measuring (max {100 * max(other):.0f}%), hypervisor steal {100 * np.mean(steal):.1f}%"
        f"; {n_busy} of {len(loads)} groups flagged ⚠ busy (> {100 * BUSY:.0f}%)"
    )


def summary_text(results: list) -> str:
    """Per case: the fastest fastsoftmax column against the fastest peer, in copy times;
    `vs peer` and `vs scalar` are same-round speedups over the best peer and fsm-scalar."""
    out = [
        "## summary: fastest fastsoftmax column vs fastest peer",
        "",
        (
            "x copy: multiple of np.copyto's time; vs peer / vs scalar: speedup of the fastsoftmax "
            "column over the best peer / over fsm-scalar (medians of same-round ratios)"
        ),
        "",
        "| func | thr | case | fastsoftmax | x copy | best peer | x copy | vs peer | vs scalar |",
        "|---|--:|---|---|--:|---|--:|--:|--:|",
    ]
    order = {f: i for i, f in enumerate(("softmax", "log_softmax"))}
    for r in sorted(results, key=lambda r: (order.get(r["func"], 9), r["threads"])):
        cs = r["contenders"]
        fsm = [n for n in cs if n.startswith("fsm-")]
        peers = [n for n in cs if n in PEERS]
        if not fsm or not peers:
            continue
        bf = min(fsm, key=lambda n: cs[n]["median_ns"])
        bp = min(peers, key=lambda n: cs[n]["median_ns"])
        sp = _per_round_ratio(cs[bp]["times_ns"], cs[bf]["times_ns"])
        sc = "fsm-scalar"
        vs = _per_round_ratio(cs[sc]["times_ns"], cs[bf]["times_ns"]) if sc in cs else np.nan
        out.append(
            f"| {r['func']} | {r['threads']} | {r['case']} | {bf} | "
            f"{cs[bf].get('x_copy', np.nan):.2f} | {bp} | "
            f"{cs[bp].get('x_copy', np.nan):.2f} | {sp:.2f} | {vs:.2f} |"
        )
    return "\n".join(out) if len(out) > 6 else ""


def write_json(path: str, info: dict, results: list) -> None:
    with open(path, "w") as f:
        json.dump({"machine": info, "results": results}, f, indent=1)


# -- plot -------------------------------------------------------------------------------

_STYLE = {  # stable colours: fastsoftmax columns warm, peers cool, copy grey
    "numpy": ("tab:blue", "o"),
    "numpy-inplace": ("tab:cyan", "o"),
    "scipy": ("tab:purple", "s"),
    "torch": ("tab:green", "^"),
    "onnxruntime": ("tab:olive", "v"),
    COPY: ("0.45", "x"),
}
_FSM_COLOURS = ["tab:red", "tab:orange", "tab:brown", "tab:pink", "gold"]


def _style(name: str, fsm_names: list):
    if name in _STYLE:
        return _STYLE[name]
    return _FSM_COLOURS[fsm_names.index(name) % len(_FSM_COLOURS)], "D"


def _is_plain(r: dict) -> bool:
    """float32, last axis, as allocated: the cases drawn as lines against their size."""
    return r["dtype"] == "float32" and r["layout"] == "c" and r["axis"] in (-1, len(r["shape"]) - 1)


def plot(path: str, info: dict, results: list) -> None:
    """Per function: a panel of ns/element against elements per call for each thread
    count with at least two plain cases (case names on the top axis, off the data), and
    a bar panel for the rest (other layouts and dtypes at the first thread count, and
    any case a line panel does not show). Each panel has its own legend, below it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    funcs = sorted({r["func"] for r in results}, key=lambda f: f != "softmax")
    threads = sorted({r["threads"] for r in results})
    names = []
    for r in results:
        names += [n for n in r["contenders"] if n not in names]
    fsm_names = [n for n in names if n.startswith("fsm-")]

    def plain(func, t):
        return sorted((r for r in results if r["func"] == func and r["threads"] == t
                       and _is_plain(r)), key=lambda r: r["size"])

    lines = {f: [t for t in threads if len(plain(f, t)) >= 2] for f in funcs}
    bars = {f: [r for r in results if r["func"] == f and not (
        (_is_plain(r) and r["threads"] in lines[f]) or (not _is_plain(r) and lines[f]
                                                       and r["threads"] != threads[0]))]
            for f in funcs}
    ncols = max(len(lines[f]) + (1 if bars[f] else 0) for f in funcs)
    fig, axes = plt.subplots(len(funcs), ncols, figsize=(6.4 * ncols, 6.6 * len(funcs)),
                             squeeze=False)
    for i, func in enumerate(funcs):
        for j, t in enumerate(lines[func]):
            _lines(axes[i][j], plain(func, t), names, fsm_names, NullLocator)
            axes[i][j].set_title(f"{func}, {t} thread{'s' if t > 1 else ''}: time per "
                                 "element (lower is better)", fontsize=10, pad=40)
        if bars[func]:
            ax = axes[i][len(lines[func])]
            _bars(ax, bars[func], names, fsm_names, len(threads) > 1)
            ax.set_title(f"{func}: " + ("layouts and dtypes" if lines[func] else "every case")
                         + " (lower is better)", fontsize=10)
        for j in range(len(lines[func]) + (1 if bars[func] else 0), ncols):
            axes[i][j].set_visible(False)
    ws = info.get("working_set_bytes")
    fig.suptitle(
        f"fastsoftmax {info.get('fastsoftmax')} ({info.get('isa_active')}) vs peers — "
        f"{info.get('cpu')}, {info.get('cores')} cores, "
        + ("out of cache" if ws else "in cache")
        + f" — {info.get('date', '')[:10]}"
        + (
            "\nhollow markers / hatched bars: a busy neighbour took > 5% of the CPUs (see report)"
            if any(_busy(r) > BUSY for r in results)
            else ""
        ),
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _legend_below(ax, handles=None, labels=None):
    kw = {} if handles is None else {"handles": handles, "labels": labels}
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=3, fontsize=8,
              frameon=False, **kw)


def _lines(ax, rs, names, fsm_names, NullLocator):
    for n in names:
        pts = [(r["size"], r["contenders"][n]["median_ns"] / r["size"])
               for r in rs if n in r["contenders"]]
        if not pts:
            continue
        c, m = _style(n, fsm_names)
        xs, ys = zip(*pts)
        ax.plot(xs, ys, marker=m, color=c, label=n, ms=4,
                lw=2.2 if n.startswith("fsm-") else 1.2, ls="--" if n == COPY else "-")
        busy = [(r["size"], r["contenders"][n]["median_ns"] / r["size"])
                for r in rs if n in r["contenders"] and _busy(r) > BUSY]
        if busy:  # hollow markers: a neighbour took > BUSY of the CPUs
            bx, by = zip(*busy)
            ax.plot(bx, by, ls="", marker=m, ms=7, mfc="white", mec=c, zorder=3)
    ax.set_xscale("log")
    ax.set_yscale("log")
    top = ax.secondary_xaxis("top")  # the case names, above the panel
    top.set_xticks([r["size"] for r in rs])
    top.set_xticklabels([r["case"] for r in rs], rotation=55, ha="left", fontsize=8)
    top.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("elements per call (float32, last axis, contiguous)")
    ax.set_ylabel("ns / element")
    ax.grid(True, which="both", alpha=0.3)
    _legend_below(ax)


def _bars(ax, rs, names, fsm_names, show_threads):
    """Horizontal bars of ns/element, one group per case (and thread count)."""
    groups = [(r, r["case"] + (f", {r['threads']} thr" if show_threads else "")) for r in rs]
    present = [n for n in names if any(n in r["contenders"] for r in rs)]
    h = 0.85 / max(1, len(present))
    handles = {}
    for gi, (r, _) in enumerate(groups):
        for ni, n in enumerate(present):
            if n not in r["contenders"]:
                continue
            v = r["contenders"][n]["median_ns"] / r["size"]
            c, _ = _style(n, fsm_names)
            b = ax.barh(gi + ni * h - 0.425, v, height=h, color=c, align="edge",
                        hatch="//" if _busy(r) > BUSY else None, edgecolor="white", lw=0.3)
            handles.setdefault(n, b)
    ax.set_yticks(range(len(groups)))
    ax.set_yticklabels([g for _, g in groups], fontsize=8)
    ax.set_ylim(len(groups) - 0.5, -0.5)
    ax.set_xscale("log")
    ax.set_xlabel("ns / element (log scale)")
    ax.grid(True, axis="x", which="both", alpha=0.3)
    _legend_below(ax, list(handles.values()), list(handles))
