"""Shape rules of the fast meta path for batch, layer and group norm, their statistics outputs included."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from prune_torch._meta_shapes import _HALVES, _contiguous_strides, _empty, _float_tensor, _number, _plain


def _stat_dtype(dtype: torch.dtype) -> torch.dtype:
    """Batch and layer norm keep their statistics in float32 for half-precision inputs."""
    return torch.float32 if dtype in _HALVES else dtype


def _params_fit(input: torch.Tensor, shape: tuple[int, ...], *params: torch.Tensor | None) -> bool:
    """Each parameter absent, or of ``shape`` and of the input's dtype (or float32 beside a half input)."""
    dtype = input.dtype
    for p in params:
        if p is None:
            continue
        if p.shape != shape:  # a Size equals the tuple of its sizes
            return False
        if p.dtype is not dtype and not (dtype in _HALVES and p.dtype is torch.float32):
            return False
    return True


def _batch_norm_input(input: Any, *params: torch.Tensor | None) -> int | None:
    """The channel count, when the input and parameters are ones the rules answer for."""
    if not _float_tensor(input):
        return None
    shape = tuple(input.shape)
    if (
        len(shape) < 2
        or 0 in shape
        or input.stride() != _contiguous_strides(shape)
        or not _params_fit(input, (shape[1],), *params)
    ):
        return None
    return shape[1]


Spare = Callable[[tuple[int, ...], torch.dtype, int], torch.Tensor]
"""Makes the ``slot``-th output of a call whose caller never looks at it (see ``MetaKernels.spare``)."""


def _fresh(shape: tuple[int, ...], dtype: torch.dtype, _slot: int) -> torch.Tensor:
    return _empty(shape, dtype)


def _batch_norm_outputs(
    input: torch.Tensor, channels: int, spare: Spare = _fresh
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    stat = _stat_dtype(input.dtype)
    return _empty(input.shape, input.dtype), spare((channels,), stat, 1), spare((channels,), stat, 2)


def _native_batch_norm(
    input: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    running_mean: torch.Tensor | None,
    running_var: torch.Tensor | None,
    training: Any,
    momentum: Any,
    eps: Any,
    *,
    spare: Spare = _fresh,
) -> tuple[torch.Tensor, ...] | None:
    # ``spare`` makes the two statistics: shared ones where the caller drops them (a batch norm layer)
    channels = _batch_norm_input(input, weight, bias, running_mean, running_var)
    if channels is None or type(training) is not bool or not (_number(momentum) and _number(eps)):
        return None
    if not training and (running_mean is None or running_var is None):
        return None
    if training and input.numel() == channels:  # one value per channel: torch's variance divides by zero
        return None
    return _batch_norm_outputs(input, channels, spare)


def _batch_norm_no_training(
    input: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    running_mean: torch.Tensor,
    running_var: torch.Tensor,
    momentum: Any,
    eps: Any,
) -> tuple[torch.Tensor, ...] | None:
    return _native_batch_norm(input, weight, bias, running_mean, running_var, False, momentum, eps)


def _batch_norm_no_stats(
    input: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    training: Any,
    momentum: Any,
    eps: Any,
) -> tuple[torch.Tensor, ...] | None:
    if training is not True:
        return None
    return _native_batch_norm(input, weight, bias, None, None, True, momentum, eps)


def _batch_norm_functional(
    input: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    running_mean: torch.Tensor,
    running_var: torch.Tensor,
    training: Any,
    momentum: Any,
    eps: Any,
) -> tuple[torch.Tensor, ...] | None:
    found = _native_batch_norm(input, weight, bias, running_mean, running_var, training, momentum, eps)
    if found is None or running_mean.dtype is not found[1].dtype or running_var.dtype is not found[1].dtype:
        return None
    channels = (int(input.shape[1]),)
    return (*found, _empty(channels, running_mean.dtype), _empty(channels, running_var.dtype))


def _native_layer_norm(
    input: torch.Tensor,
    normalized_shape: Any,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    eps: Any,
) -> tuple[torch.Tensor, ...] | None:
    if not isinstance(normalized_shape, (list, tuple)) or not all(type(s) is int for s in normalized_shape):
        return None
    k = len(normalized_shape)
    if (
        not _float_tensor(input)
        or k == 0
        or input.dim() < k
        or input.numel() == 0
        or tuple(input.shape[input.dim() - k :]) != tuple(normalized_shape)
        or not _number(eps)
        # torch's kernel copies a non-contiguous input to a contiguous one first, but keeps a
        # contiguous one as it is, with whatever strides its size-1 dims have
        or not (_plain(input) or not input.is_contiguous())
        or not _params_fit(input, tuple(normalized_shape), weight, bias)
    ):
        return None
    stats = (*input.shape[: input.dim() - k], *([1] * k))
    stat = _stat_dtype(input.dtype)
    return _empty(input.shape, input.dtype), _empty(stats, stat), _empty(stats, stat)


def _native_group_norm(
    input: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    N: Any,
    C: Any,
    HxW: Any,
    group: Any,
    eps: Any,
) -> tuple[torch.Tensor, ...] | None:
    if (
        not _float_tensor(input)
        or input.dim() < 2
        or input.numel() == 0
        or not all(type(x) is int for x in (N, C, HxW, group))
        or not _number(eps)
        or group < 1
        or (input.shape[0], input.shape[1], math.prod(input.shape[2:])) != (N, C, HxW)
        or C % group
        or not _plain(input)
        or not _params_fit(input, (C,), weight, bias)
    ):
        return None
    return _empty(input.shape, input.dtype), _empty((N, group), input.dtype), _empty((N, group), input.dtype)
