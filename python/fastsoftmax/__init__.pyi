from contextlib import AbstractContextManager
from typing import Any, Literal, NamedTuple, overload

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

_Axis = int | tuple[int, ...] | None

def softmax(
    x: ArrayLike,
    axis: _Axis = -1,
    *,
    temperature: float = 1.0,
    where: ArrayLike | None = None,
    dtype: DTypeLike | None = None,
    out: NDArray[np.floating[Any]] | None = None,
) -> NDArray[np.floating[Any]]: ...
def log_softmax(
    x: ArrayLike,
    axis: _Axis = -1,
    *,
    temperature: float = 1.0,
    where: ArrayLike | None = None,
    dtype: DTypeLike | None = None,
    out: NDArray[np.floating[Any]] | None = None,
) -> NDArray[np.floating[Any]]: ...
@overload
def logsumexp(
    x: ArrayLike,
    axis: _Axis = -1,
    *,
    keepdims: bool = False,
    b: ArrayLike | None = None,
    return_sign: Literal[False] = False,
    where: ArrayLike | None = None,
    dtype: DTypeLike | None = None,
    out: NDArray[np.floating[Any]] | None = None,
) -> NDArray[np.floating[Any]] | np.floating[Any]: ...
@overload
def logsumexp(
    x: ArrayLike,
    axis: _Axis = -1,
    *,
    keepdims: bool = False,
    b: ArrayLike | None = None,
    return_sign: Literal[True],
    where: ArrayLike | None = None,
    dtype: DTypeLike | None = None,
    out: NDArray[np.floating[Any]] | None = None,
) -> tuple[NDArray[np.floating[Any]] | np.floating[Any], NDArray[np.floating[Any]] | np.floating[Any]]: ...
_Reduction = Literal["none", "sum", "mean"]
_Loss = NDArray[np.floating[Any]] | np.floating[Any]

@overload
def softmax_cross_entropy_with_logits(
    labels: ArrayLike,
    logits: ArrayLike,
    axis: _Axis = -1,
    *,
    reduction: _Reduction = "none",
    label_smoothing: float = 0.0,
    return_grad: Literal[False] = False,
) -> _Loss: ...
@overload
def softmax_cross_entropy_with_logits(
    labels: ArrayLike,
    logits: ArrayLike,
    axis: _Axis = -1,
    *,
    reduction: _Reduction = "none",
    label_smoothing: float = 0.0,
    return_grad: Literal[True],
) -> tuple[_Loss, NDArray[np.floating[Any]]]: ...
@overload
def sparse_softmax_cross_entropy_with_logits(
    labels: ArrayLike,
    logits: ArrayLike,
    *,
    reduction: _Reduction = "none",
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    return_grad: Literal[False] = False,
) -> _Loss: ...
@overload
def sparse_softmax_cross_entropy_with_logits(
    labels: ArrayLike,
    logits: ArrayLike,
    *,
    reduction: _Reduction = "none",
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    return_grad: Literal[True],
) -> tuple[_Loss, NDArray[np.floating[Any]]]: ...
def softmax_backward(
    grad: ArrayLike,
    y: ArrayLike,
    axis: _Axis = -1,
    *,
    out: NDArray[np.floating[Any]] | None = None,
) -> NDArray[np.floating[Any]]: ...
def log_softmax_backward(
    grad: ArrayLike,
    y: ArrayLike,
    axis: _Axis = -1,
    *,
    out: NDArray[np.floating[Any]] | None = None,
) -> NDArray[np.floating[Any]]: ...
class TopK(NamedTuple):
    values: NDArray[Any]
    indices: NDArray[np.int64]

def top_k(
    x: ArrayLike,
    k: int,
    axis: int = -1,
    *,
    largest: bool = True,
    transform: Literal["softmax", "log_softmax"] | None = None,
) -> TopK: ...
def set_num_threads(n: int) -> None: ...
def get_num_threads() -> int: ...
def threads(n: int) -> AbstractContextManager[None]: ...
def isa() -> str: ...
def available_isas() -> list[str]: ...

__version__: str
