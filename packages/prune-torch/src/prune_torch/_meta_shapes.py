"""Small helpers the fast meta path's shape rules share: dtypes, strides, broadcasting, argument checks."""

from __future__ import annotations

import functools
from typing import Any

import torch

_FLOATS = frozenset({torch.float16, torch.bfloat16, torch.float32, torch.float64})
_HALVES = frozenset({torch.float16, torch.bfloat16})
_NUMBER = (int, float)  # exact types: a bool is not taken for a number


@functools.lru_cache(maxsize=4096)
def _contiguous_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    strides = []
    step = 1
    for size in reversed(shape):
        strides.append(step)
        step *= max(size, 1)
    return tuple(reversed(strides))


def _plain(t: torch.Tensor) -> bool:
    """Contiguous with exactly the strides ``torch.empty`` gives (size-1 dims included)."""
    return t.stride() == _contiguous_strides(tuple(t.shape))


_META = torch.device("meta")


def _empty(shape: Any, dtype: torch.dtype) -> torch.Tensor:
    # the strides torch.empty gives, passed in: a third cheaper than torch.empty working them out
    sizes = tuple(shape)
    return torch.empty_strided(sizes, _contiguous_strides(sizes), dtype=dtype, device=_META)


def _number(x: Any) -> bool:
    return type(x) in _NUMBER


def _float_tensor(x: Any) -> bool:
    return isinstance(x, torch.Tensor) and x.dtype in _FLOATS


def _broadcast(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...] | None:
    out = []
    for i in range(1, max(len(a), len(b)) + 1):
        x = a[-i] if i <= len(a) else 1
        y = b[-i] if i <= len(b) else 1
        if x == y or y == 1:
            out.append(x)
        elif x == 1:
            out.append(y)
        else:
            return None
    return tuple(reversed(out))


def _result_dtype(a: torch.Tensor, b: Any) -> torch.dtype | None:
    """The promoted dtype of a floating tensor with a number or another floating tensor; None otherwise."""
    if a.dtype not in _FLOATS:
        return None
    if _number(b):
        return a.dtype
    if not _float_tensor(b):
        return None
    if a.dtype is b.dtype:
        return a.dtype
    # a zero-dim tensor of the same category does not promote a dimensioned one
    if a.dim() == 0 and b.dim() != 0:
        return b.dtype
    if b.dim() == 0 and a.dim() != 0:
        return a.dtype
    return torch.promote_types(a.dtype, b.dtype)


def _dim(dim: Any, ndim: int) -> int | None:
    """``dim`` wrapped into ``range(ndim)``, or None when out of range (a 0-dim tensor takes 0 and -1)."""
    bound = max(ndim, 1)
    if type(dim) is not int or not -bound <= dim < bound:
        return None
    return dim % bound


def _pair(values: Any, default: tuple[int, int] | None = None) -> tuple[int, int] | None:
    """An ``int[2]`` argument as two ints (one int stands for both; empty gives ``default``)."""
    if isinstance(values, int) and type(values) is int:
        return (values, values)
    if not isinstance(values, (list, tuple)) or not all(type(v) is int for v in values):
        return None
    if len(values) == 0:
        return default
    if len(values) == 1:
        return (values[0], values[0])
    if len(values) == 2:
        return (values[0], values[1])
    return None
