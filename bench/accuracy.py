"""Errors against a wider reference, computed once per contender and case, outside timing.

The reference is the same input values computed in float64 (in long double for a
float64 input, where long double is wider than double). Two numbers per result:

- ``max_ulp``: |y - ref| / ulp(ref) in the output dtype; for softmax the ulp of the
  smallest normal stands in below it, for log_softmax the ulp of max(1, |ref|). A
  correctly rounded result scores <= 0.5.
- ``spec_k``: the accuracy constant K of docs/contract.md §5, the part of the error an
  implementation is
  answerable for. softmax: max over elements of rel_err / eps - |x - max| / 2 (every
  float softmax pays up to |x - max| / 2 ULP for rounding x - max, so max_ulp alone is
  ~20 on logits spread over +-12 whatever the kernels do), with rel_err measured against
  1e-30 (float32) / 1e-290 (float64) below those; log_softmax: abs_err / (eps * max(1,
  |ref|)). docs/contract.md §5 asks K <= 4 (float32), <= 16 (float64 softmax), <= 4 (log_softmax).
  Not defined for float16 (docs/contract.md §5: within 1 ULP of the correctly rounded value).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_FLOOR = {np.dtype(np.float32): 1e-30, np.dtype(np.float64): 1e-290}


@dataclass
class Reference:
    func: str
    dtype: np.dtype
    ref: np.ndarray | None  # None: no wider type on this platform
    half_gap: np.ndarray | None = None  # |x - max| / 2, for softmax's spec_k


def reference(func: str, x: np.ndarray, axis: int) -> Reference:
    dtype = np.dtype(x.dtype)
    wide = np.longdouble if dtype == np.float64 else np.float64
    if np.finfo(wide).nmant <= np.finfo(dtype).nmant:
        return Reference(func, dtype, None)
    w = x.astype(wide)
    s = w - w.max(axis, keepdims=True)
    e = np.exp(s)
    if func == "softmax":
        half_gap = np.abs(s).astype(np.float64) / 2 if dtype in _FLOOR else None
        return Reference(func, dtype, e / e.sum(axis, keepdims=True), half_gap)
    return Reference(func, dtype, s - np.log(e.sum(axis, keepdims=True)))


def errors(r: Reference, y) -> dict:
    nan = float("nan")
    if r.ref is None:
        return {"max_ulp": nan, "spec_k": nan}
    y = np.asarray(y)
    if y.shape != r.ref.shape:
        return {"max_ulp": float("inf"), "spec_k": float("inf")}
    ref = r.ref
    err = np.abs(y.astype(ref.dtype) - ref)
    a = np.abs(ref)
    if r.func == "softmax":
        unit = np.maximum(a, np.finfo(r.dtype).tiny)
    else:
        unit = np.maximum(a, 1.0)
    ulp = np.spacing(unit.astype(r.dtype)).astype(ref.dtype)
    out = {"max_ulp": _max(err / ulp), "spec_k": nan}
    if r.dtype in _FLOOR:
        eps = np.finfo(r.dtype).eps
        if r.func == "softmax":
            k = err / (np.maximum(a, _FLOOR[r.dtype]) * eps) - r.half_gap
        else:
            k = err / (unit * eps)
        out["spec_k"] = _max(k)
    return out


def _max(v: np.ndarray) -> float:
    if np.isnan(v).any():
        return float("inf")
    return float(v.max()) if v.size else 0.0
