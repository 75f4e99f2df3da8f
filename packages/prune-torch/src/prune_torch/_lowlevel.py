"""Pruning one layer by hand; the neighbours are the caller's job.

``prune_out_channels(layer, idxs)`` removes channels the layer writes, ``prune_in_channels``
channels it reads. Indices are checked before anything changes (ints only: no bools, floats or
strings), and if anything fails on the way every tensor and attribute of the layer is put back.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import TypeVar

import torch
from torch import nn

from prune_ops import InvalidIndicesError, PruningError, UnprunableError, as_index_array, check_indices, complement
from prune_torch._apply import set_data
from prune_torch._layers import rule_for
from prune_torch._rollback import ModelState

__all__ = [
    "prune_batchnorm",
    "prune_conv",
    "prune_in_channels",
    "prune_linear_in_channels",
    "prune_linear_out_channels",
    "prune_out_channels",
    "prune_related_conv",
]


_F = TypeVar("_F", bound=Callable[..., nn.Module])


def _as_list(idxs: Iterable[int] | torch.Tensor, module: nn.Module) -> list[int]:
    where = type(module).__name__
    if isinstance(idxs, torch.Tensor):
        if idxs.dtype.is_floating_point or idxs.dtype.is_complex or idxs.dtype == torch.bool or idxs.dim() != 1:
            raise InvalidIndicesError(
                f"{where}: indices must be a 1-D integer tensor (got {idxs.dtype}, shape {tuple(idxs.shape)})"
            )
        return [int(i) for i in idxs.tolist()]
    return as_index_array(idxs, where).tolist()


def _all_or_nothing(function: _F) -> _F:
    """Put every tensor and attribute of the layer back when pruning it fails half way."""

    @functools.wraps(function)
    def guarded(module: nn.Module, idxs: Iterable[int] | torch.Tensor) -> nn.Module:
        if not isinstance(module, nn.Module):
            raise PruningError(f"{function.__name__} needs an nn.Module (got {type(module).__name__})")
        state = ModelState.capture(module)
        try:
            return function(module, idxs)
        except BaseException:
            state.restore()
            raise

    return guarded  # type: ignore[return-value]


def _slice_axes(module: nn.Module, axes: tuple[tuple[str, int], ...], idxs: list[int], side: str) -> None:
    present = [(n, a) for n, a in axes if isinstance(getattr(module, n, None), torch.Tensor)]
    if not present:
        raise UnprunableError(f"{type(module).__name__} has no per-channel tensors on its {side} side")
    name0, axis0 = present[0]
    size = int(getattr(module, name0).shape[axis0])
    removed = check_indices(idxs, size, f"{type(module).__name__}.{name0}[{axis0}]")
    keep_list = complement(removed, size).tolist()
    for name, axis in present:
        tensor = getattr(module, name)
        if int(tensor.shape[axis]) != size:
            raise PruningError(
                f"{type(module).__name__}.{name} has {tensor.shape[axis]} channels on axis {axis}, expected {size}"
            )
    # slice everything first, then swap the results in (the caller restores the layer if a swap fails)
    sliced = []
    for name, axis in present:
        tensor = getattr(module, name)
        keep = torch.as_tensor(keep_list, dtype=torch.long, device=tensor.device)
        grad = tensor.grad.index_select(axis, keep) if tensor.grad is not None else None
        sliced.append((name, tensor.data.index_select(axis, keep), grad))
    for name, data, grad in sliced:
        if name in module._parameters:
            param = module._parameters[name]
            if param is None:
                continue
            param.grad = None
            set_data(param, data)
            param.grad = grad
        else:
            module._buffers[name] = data


def _rule(module: nn.Module):  # type: ignore[no-untyped-def]
    rule = rule_for(module)
    if rule is None:
        raise UnprunableError(
            f"no layer rule for {type(module).__name__}; use pt.plan() on a traced graph, which handles any module"
        )
    return rule


def _grouped(module: nn.Module) -> tuple[bool, bool]:
    """(is grouped, is depthwise) for convs; (False, False) otherwise."""
    groups = int(getattr(module, "groups", 1))
    if not isinstance(module, nn.modules.conv._ConvNd) or groups == 1:
        return False, False
    return True, groups == module.in_channels == module.out_channels


@_all_or_nothing
def prune_out_channels(module: nn.Module, idxs: Iterable[int] | torch.Tensor) -> nn.Module:
    """Remove output channels (and, for BatchNorm-like layers, the same channels they read).

    A depthwise conv loses the matching input channels and groups too; other grouped convs must
    go through :func:`prune_torch.plan`, which keeps the group structure.
    """
    rule = _rule(module)
    idxs = _as_list(idxs, module)
    grouped, depthwise = _grouped(module)
    if grouped and not depthwise:
        raise UnprunableError(f"{type(module).__name__} has groups={module.groups}; prune it through pt.plan()")
    axes = (("weight", 0), ("bias", 0)) if depthwise else rule.out_axes
    num_groups = _group_norm_groups(module, idxs) if isinstance(module, nn.GroupNorm) else None
    _slice_axes(module, axes, idxs, "output")
    if depthwise:
        module.groups = int(module.weight.shape[0])
    if num_groups is not None:
        module.num_groups = num_groups
    rule.sync(module)
    return module


def _group_norm_groups(module: nn.GroupNorm, idxs: list[int]) -> int:
    """``num_groups`` after removing ``idxs``: fewer when whole groups go, the same when every group loses the same positions."""
    channels, groups = int(module.num_channels), int(module.num_groups)
    width = channels // groups
    removed = check_indices(idxs, channels, f"GroupNorm({groups}, {channels}).weight[0]").tolist()
    rows = [frozenset(i % width for i in removed if i // width == g) for g in range(groups)]
    if all(len(row) in (0, width) for row in rows):
        return groups - sum(len(row) == width for row in rows)
    if len(set(rows)) == 1:
        return groups
    raise UnprunableError(
        f"GroupNorm({groups}, {channels}): removing channels {removed} leaves groups of unequal width; "
        f"remove whole groups ({width} consecutive channels) or the same positions in every group"
    )


@_all_or_nothing
def prune_in_channels(module: nn.Module, idxs: Iterable[int] | torch.Tensor) -> nn.Module:
    """Remove input channels (the columns a layer reads)."""
    rule = _rule(module)
    idxs = _as_list(idxs, module)
    grouped, depthwise = _grouped(module)
    if rule.in_is_out or depthwise:
        return prune_out_channels(module, idxs)
    if grouped:
        raise UnprunableError(f"{type(module).__name__} has groups={module.groups}; prune it through pt.plan()")
    if not rule.in_axes:
        raise UnprunableError(f"{type(module).__name__} has no input channels to prune")
    _slice_axes(module, rule.in_axes, idxs, "input")
    rule.sync(module)
    return module


def prune_conv(conv: nn.Module, idxs: Iterable[int] | torch.Tensor) -> nn.Module:
    """Remove output channels of a convolution."""
    if not isinstance(conv, nn.modules.conv._ConvNd):
        raise UnprunableError(f"prune_conv needs a convolution (got {type(conv).__name__})")
    return prune_out_channels(conv, idxs)


def prune_related_conv(conv: nn.Module, idxs: Iterable[int] | torch.Tensor) -> nn.Module:
    """Remove input channels of a convolution (the one after a pruned layer)."""
    if not isinstance(conv, nn.modules.conv._ConvNd):
        raise UnprunableError(f"prune_related_conv needs a convolution (got {type(conv).__name__})")
    return prune_in_channels(conv, idxs)


def prune_batchnorm(bn: nn.Module, idxs: Iterable[int] | torch.Tensor) -> nn.Module:
    """Remove channels of a BatchNorm / InstanceNorm (weight, bias and running statistics)."""
    if not isinstance(bn, nn.modules.batchnorm._NormBase):
        raise UnprunableError(f"prune_batchnorm needs a BatchNorm or InstanceNorm (got {type(bn).__name__})")
    return prune_out_channels(bn, idxs)


def prune_linear_out_channels(linear: nn.Module, idxs: Iterable[int] | torch.Tensor) -> nn.Module:
    """Remove output features of a Linear."""
    if not isinstance(linear, nn.Linear):
        raise UnprunableError(f"needs an nn.Linear (got {type(linear).__name__})")
    return prune_out_channels(linear, idxs)


def prune_linear_in_channels(linear: nn.Module, idxs: Iterable[int] | torch.Tensor) -> nn.Module:
    """Remove input features of a Linear."""
    if not isinstance(linear, nn.Linear):
        raise UnprunableError(f"needs an nn.Linear (got {type(linear).__name__})")
    return prune_in_channels(linear, idxs)
