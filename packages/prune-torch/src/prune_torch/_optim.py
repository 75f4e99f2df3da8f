"""Pruning an optimiser's state (Adam moments, momentum buffers) along with the parameters."""

from __future__ import annotations

import torch

from prune_ops import Plan, PlanEntry, PlanMismatchError, PruningError

__all__ = ["prune_optimizer"]


def prune_optimizer(optimizer: torch.optim.Optimizer, model: torch.nn.Module, plan: Plan) -> int:
    """Slice every per-parameter state tensor shaped like the parameter before ``plan``; returns how many.

    Call it right after :func:`prune_torch.apply` (the ``nn.Parameter`` objects are the same, so
    the optimiser's param groups need no change). Scalar state such as Adam's ``step`` is kept.
    The plan is checked first: every module it names must exist, every parameter must already
    have the shape the plan leaves it with (the plan was applied), and every state tensor shaped
    like a parameter must have its shape from before the plan. Otherwise nothing changes and a
    ``PlanMismatchError`` says which parameter does not fit.
    """
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise PruningError(f"prune_optimizer needs a torch.optim.Optimizer (got {type(optimizer).__name__})")
    after = plan.state_shapes()
    by_tensor: dict[int, tuple[torch.nn.Parameter, list[PlanEntry]]] = {}
    for entry in plan.entries:
        if entry.kind != "parameter":
            continue
        try:
            module = model.get_submodule(entry.owner) if entry.owner else model
        except AttributeError:
            raise PlanMismatchError(
                f"prune_optimizer: the model has no module {entry.owner!r} (was the plan made for another model?)"
            ) from None
        param = module._parameters.get(entry.tensor)
        if param is None:
            raise PlanMismatchError(
                f"prune_optimizer: module {entry.owner or '<root>'} has no parameter {entry.tensor!r}"
            )
        by_tensor.setdefault(id(param), (param, []))[1].append(entry)
    updates: list[tuple[dict[str, object], str, torch.Tensor]] = []
    for param, entries in by_tensor.values():
        before, want = after[entries[0].path]
        if tuple(param.shape) != tuple(want):
            hint = "call it after pt.apply" if tuple(param.shape) == tuple(before) else "another model's plan?"
            raise PlanMismatchError(
                f"prune_optimizer: {entries[0].path} has shape {tuple(param.shape)}, the plan leaves it at "
                f"{tuple(want)} ({hint}); the optimiser was not changed"
            )
        state = optimizer.state.get(param)
        if not state:
            continue
        for key, value in state.items():
            if not isinstance(value, torch.Tensor) or value.dim() != param.dim():
                continue
            if tuple(value.shape) == tuple(want) and tuple(want) != tuple(before):
                raise PlanMismatchError(
                    f"prune_optimizer: the state {key!r} of {entries[0].path} already has the pruned shape "
                    f"{tuple(want)} (pruned twice?); the optimiser was not changed"
                )
            if tuple(value.shape) != tuple(before):
                continue
            for entry in entries:
                keep = torch.as_tensor(entry.kept, dtype=torch.long, device=value.device)
                value = value.index_select(entry.axis, keep)
            updates.append((state, key, value))
    for state, key, value in updates:
        state[key] = value
    return len(updates)
