"""Pruning an optimiser's state (Adam moments, momentum buffers) along with the parameters."""

from __future__ import annotations

import torch

from prune_ops import Plan, PlanEntry

__all__ = ["prune_optimizer"]


def prune_optimizer(optimizer: torch.optim.Optimizer, model: torch.nn.Module, plan: Plan) -> int:
    """Slice every per-parameter state tensor shaped like the parameter before ``plan``; returns how many.

    Call it right after :func:`prune_torch.apply` (the ``nn.Parameter`` objects are the same, so
    the optimiser's param groups need no change). Scalar state such as Adam's ``step`` is kept.
    """
    by_tensor: dict[int, tuple[torch.nn.Parameter, list[PlanEntry]]] = {}
    for entry in plan.entries:
        if entry.kind != "parameter":
            continue
        module = model.get_submodule(entry.module) if entry.module else model
        param = module._parameters.get(entry.param)
        if param is not None:
            by_tensor.setdefault(id(param), (param, []))[1].append(entry)
    sliced = 0
    for param, entries in by_tensor.values():
        state = optimizer.state.get(param)
        if not state:
            continue
        for key, value in list(state.items()):
            if isinstance(value, torch.Tensor) and tuple(value.shape) == tuple(entries[0].shape):
                for entry in entries:
                    keep = torch.as_tensor(entry.kept, dtype=torch.long, device=value.device)
                    value = value.index_select(entry.axis, keep)
                state[key] = value
                sliced += 1
    return sliced
