"""fastsoftmax: the fastest correct softmax a CPU can run, for NumPy arrays.

softmax, log_softmax, logsumexp, the cross-entropies and top_k are implemented in C++
(SIMD kernels for AVX-512, AVX2+FMA, NEON and a scalar fallback, chosen at run time;
OpenMP across rows).
See docs/contract.md for the contract; ``isa()`` tells which kernels are in use.
"""

from __future__ import annotations

from . import _api, _core
from ._api import available_isas, get_num_threads, isa, set_num_threads, threads
from ._core import log_softmax, logsumexp, softmax
from ._sample import Sample, sample
from ._select import TopK, top_k
from ._xent import (
    log_softmax_backward,
    softmax_backward,
    softmax_cross_entropy_with_logits,
    sparse_softmax_cross_entropy_with_logits,
)

__all__ = [
    "softmax",
    "log_softmax",
    "logsumexp",
    "softmax_cross_entropy_with_logits",
    "sparse_softmax_cross_entropy_with_logits",
    "softmax_backward",
    "log_softmax_backward",
    "top_k",
    "TopK",
    "sample",
    "Sample",
    "set_num_threads",
    "get_num_threads",
    "threads",
    "isa",
    "available_isas",
]
__version__ = "0.1.0"

_core._set_fallbacks(_api.softmax, _api.log_softmax, _api.logsumexp)
_api._register_loaded_bfloat16()  # ml_dtypes.bfloat16, if loaded already (§2.3)


def _set_isa(name: str) -> None:
    """Switch the kernels to instruction set `name` (tests and benchmarks)."""
    _core._set_isa(name)


# Choose the kernels now, so that a bad FASTSOFTMAX_ISA fails at import, clearly.
isa()
