"""Max error in ULP against a wider reference, computed once per case outside timing.

The reference is the same input values computed in float64 (in long double for a
float64 input, where the platform has an extended long double). Units, as in SPEC:
- softmax: |y - ref| / ulp(ref) in the output dtype (ulp of the smallest normal below
  it, so tiny outputs are judged by an absolute bound, as SPEC allows).
- log_softmax: |y - ref| / ulp(max(1, |ref|)).
A correctly rounded result scores <= 0.5. Every float softmax also pays up to
|x - max| / 2 ULP for rounding x - max (SPEC's second term), so a handful of ULP on
logits spread over +-10 is expected, not a bug.
"""

from __future__ import annotations

import numpy as np


def reference(func: str, x: np.ndarray, axis: int) -> np.ndarray:
    wide = np.longdouble if x.dtype == np.float64 else np.float64
    if np.finfo(wide).nmant <= np.finfo(x.dtype).nmant:
        return None  # no wider type here (e.g. long double == double on this platform)
    w = x.astype(wide)
    s = w - w.max(axis, keepdims=True)
    e = np.exp(s)
    if func == "softmax":
        return e / e.sum(axis, keepdims=True)
    return s - np.log(e.sum(axis, keepdims=True))


def max_ulp(func: str, y, ref: np.ndarray, dtype: np.dtype) -> float:
    if ref is None:
        return float("nan")
    y = np.asarray(y)
    if y.shape != ref.shape:
        return float("inf")
    dtype = np.dtype(dtype)
    a = np.abs(ref)
    if func == "softmax":
        a = np.maximum(a, np.finfo(dtype).tiny)
    else:
        a = np.maximum(a, 1.0)
    ulp = np.spacing(a.astype(dtype)).astype(ref.dtype)
    err = np.abs(y.astype(ref.dtype) - ref) / ulp
    if np.isnan(err).any():
        return float("inf")
    return float(err.max())
