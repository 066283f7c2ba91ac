"""The contenders: fastsoftmax per ISA, NumPy recipes, SciPy, PyTorch, onnxruntime, a copy.

Every contender is a callable ``fn(x, out)``: those that allocate their result ignore
``out``; those that write into a preallocated buffer use it (``out`` has x's shape and
memory order). Peers that are not installed are skipped, with a note for the header.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

FUNCS = ("softmax", "log_softmax")
RECIPE = "numpy"  # the column every speedup is taken against
ORT_SPIN_COOLDOWN_S = 0.08  # see build(): onnxruntime's spinning workers
COPY = "copy"  # the floor: np.copyto(out, x)


@dataclass
class Contender:
    name: str
    fn: Callable  # fn(x, out) -> result
    prepare: Callable = lambda: None  # run before each timed sample, outside the timing
    kind: str = "peer"  # "fsm", "peer", "floor"
    # idle time after each of its samples (timing.py): for a library whose worker
    # threads keep spinning after a call, long past the common settle gap
    cooldown_s: float = 0.0


@dataclass
class Peers:
    """The optional modules, imported once; ``notes`` says what is missing and why."""

    fsm: object = None
    default_isa: str = ""  # fastsoftmax.isa() at import: what users get
    scipy_special: object = None
    torch: object = None
    ort: object = None
    onnx: object = None
    notes: list = field(default_factory=list)
    ort_spinning: bool = bool(int(os.environ.get("BENCH_ORT_SPINNING", "1")))
    _ort_sessions: dict = field(default_factory=dict)

    @classmethod
    def load(cls, skip: set = frozenset()) -> Peers:
        p = cls()

        def get(mod, label, hint):
            if label in skip:
                p.notes.append(f"{label}: skipped by --skip")
                return None
            try:
                return importlib.import_module(mod)
            except Exception as e:  # noqa: BLE001  (ImportError, or a broken install)
                p.notes.append(f"{label}: not importable ({type(e).__name__}: {e}); {hint}")
                return None

        p.fsm = get("fastsoftmax", "fastsoftmax", "pip install .")
        if p.fsm is not None:
            p.default_isa = p.fsm.isa()
        p.scipy_special = get("scipy.special", "scipy", 'pip install ".[bench]"')
        p.torch = get("torch", "torch", "pip install torch (CPU build; see bench/README.md)")
        p.ort = get("onnxruntime", "onnxruntime", 'pip install ".[bench]"')
        if p.ort is not None:
            p.onnx = get("onnx", "onnx", 'pip install ".[bench]" (needed for the ORT model)')
            if p.onnx is None:
                p.ort = None
        return p

    # -- fastsoftmax -------------------------------------------------------------------
    def fsm_isas(self) -> list:
        """ISAs to run: all of available_isas() if the build can switch, else the one."""
        fsm = self.fsm
        if fsm is None:
            return []
        if hasattr(fsm, "available_isas") and hasattr(fsm, "_set_isa"):
            return list(fsm.available_isas())
        return [fsm.isa()]

    def set_threads(self, n: int) -> None:
        if self.fsm is not None:
            self.fsm.set_num_threads(n)
        if self.torch is not None:
            self.torch.set_num_threads(n)
        # onnxruntime: one session per thread count (intra_op_num_threads); NumPy and
        # SciPy run these ufuncs on one thread whatever the setting.

    # -- onnxruntime ---------------------------------------------------------------------
    def ort_session(self, func: str, shape: tuple, dtype: str, axis: int, threads: int):
        key = (func, shape, dtype, axis, threads)
        if key not in self._ort_sessions:
            self._ort_sessions[key] = self._make_ort_session(*key)
        return self._ort_sessions[key]

    def _make_ort_session(self, func, shape, dtype, axis, threads):
        onnx, ort = self.onnx, self.ort
        helper, tp = onnx.helper, onnx.TensorProto
        elem = {"float32": tp.FLOAT, "float64": tp.DOUBLE, "float16": tp.FLOAT16}[dtype]
        op = {"softmax": "Softmax", "log_softmax": "LogSoftmax"}[func]
        node = helper.make_node(op, ["x"], ["y"], axis=axis)
        graph = helper.make_graph(
            [node],
            "bench",
            [helper.make_tensor_value_info("x", elem, list(shape))],
            [helper.make_tensor_value_info("y", elem, list(shape))],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = min(model.ir_version, 10)  # older runtimes reject newer IRs
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        if not self.ort_spinning:  # BENCH_ORT_SPINNING=0; timing.py says why not default
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return ort.InferenceSession(
            model.SerializeToString(), so, providers=["CPUExecutionProvider"]
        )


def numpy_recipe(func: str, axis: int) -> Callable:
    if func == "softmax":

        def f(x, out):
            e = np.exp(x - x.max(axis, keepdims=True))
            return e / e.sum(axis, keepdims=True)

    else:

        def f(x, out):
            s = x - x.max(axis, keepdims=True)
            return s - np.log(np.exp(s).sum(axis, keepdims=True))

    return f


def numpy_inplace(func: str, axis: int, scratch: np.ndarray) -> Callable:
    """The same recipe into the preallocated ``out`` (log_softmax also uses ``scratch``)."""
    if func == "softmax":

        def f(x, o):
            np.subtract(x, x.max(axis, keepdims=True), out=o)
            np.exp(o, out=o)
            o /= o.sum(axis, keepdims=True)
            return o

    else:

        def f(x, o):
            np.subtract(x, x.max(axis, keepdims=True), out=o)
            np.exp(o, out=scratch)
            s = scratch.sum(axis, keepdims=True)
            o -= np.log(s, out=s)
            return o

    return f


def build(peers: Peers, func: str, case, x0: np.ndarray, threads: int) -> tuple:
    """Contenders for one (function, case, thread count); returns (contenders, notes)."""
    axis = case.axis
    out: list[Contender] = []
    notes: list[str] = []

    fsm = peers.fsm
    if fsm is not None:
        f = getattr(fsm, func)
        switch = hasattr(fsm, "_set_isa")
        for isa in peers.fsm_isas():
            prep = (lambda i=isa: fsm._set_isa(i)) if switch else (lambda: None)
            out.append(Contender(f"fsm-{isa}", lambda x, o: f(x, axis), prep, "fsm"))
        # The default ISA once more, writing into a preallocated (rotated) output.
        isa = peers.default_isa
        prep = (lambda i=isa: fsm._set_isa(i)) if switch else (lambda: None)
        out.append(Contender(f"fsm-{isa}-out", lambda x, o: f(x, axis, out=o), prep, "fsm"))

    out.append(Contender(RECIPE, numpy_recipe(func, axis)))
    scratch = np.empty_like(x0) if func == "log_softmax" else None
    out.append(Contender("numpy-inplace", numpy_inplace(func, axis, scratch)))

    sp = peers.scipy_special
    if sp is not None:
        g = getattr(sp, func)
        out.append(Contender("scipy", lambda x, o: g(x, axis=axis)))

    torch = peers.torch
    if torch is not None:
        tf = getattr(torch, func)
        dim = axis

        def torch_fn(x, o):
            return tf(torch.from_numpy(x), dim).numpy()

        out.append(Contender("torch", torch_fn))

    if peers.ort is not None:
        try:
            sess = peers.ort_session(func, x0.shape, case.dtype, axis, threads)
            sess.run(["y"], {"x": x0})  # fails here if the CPU provider lacks this dtype
            run = sess.run

            def ort_fn(x, o):
                return run(["y"], {"x": x})[0]

            # With spinning (its default) onnxruntime's intra-op workers keep a core
            # busy for ~40-50 ms after a run (measured here from /proc's per-thread
            # CPU time): whichever contender came next lost its second thread's core
            # (fastsoftmax 2 threads, (64, 1000): 73 µs after it, 27 µs alone).
            cool = ORT_SPIN_COOLDOWN_S if threads > 1 and peers.ort_spinning else 0.0
            out.append(Contender("onnxruntime", ort_fn, cooldown_s=cool))
        except Exception as e:  # noqa: BLE001  (ORT lacks this op/dtype: skip the column)
            notes.append(
                f"onnxruntime {func} {case.dtype}: {type(e).__name__}: "
                f"{str(e).splitlines()[0][:120]}"
            )

    out.append(Contender(COPY, lambda x, o: np.copyto(o, x), kind="floor"))
    return out, notes
