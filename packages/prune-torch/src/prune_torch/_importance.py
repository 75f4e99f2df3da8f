"""Scoring groups of a torch model: member tensors to numpy, importance by name or callable."""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping
from typing import Union

import numpy as np
import torch

from prune_graph import Graph, OpKind
from prune_ops import (
    FPGM,
    BNScale,
    Group,
    GroupL2,
    Importance,
    Magnitude,
    MemberData,
    PruningError,
    Random,
    Reduction,
    Taylor,
)

__all__ = ["IMPORTANCES", "ImportanceLike", "member_data", "resolve_importance"]

ImportanceLike = Union[str, Importance]

IMPORTANCES: Mapping[str, Callable[[Reduction, int], Importance]] = types.MappingProxyType(
    {
        "l1": lambda r, seed: Magnitude(1, r),
        "l2": lambda r, seed: Magnitude(2, r),
        "random": lambda r, seed: Random(np.random.default_rng(seed)),
        "bn_scale": lambda r, seed: BNScale(r),
        "taylor": lambda r, seed: Taylor(r),
        "fpgm": lambda r, seed: FPGM(r),
        "group_l2": lambda r, seed: GroupL2(),
    }
)

_REDUCTIONS = types.MappingProxyType({r.value: r for r in Reduction})


def resolve_importance(importance: ImportanceLike, reduction: str | Reduction = "mean", seed: int = 0) -> Importance:
    """An importance callable from a name (``"l1"``, ``"l2"``, ``"random"``, ``"bn_scale"``, ``"taylor"``, ``"fpgm"``) or a callable."""
    if isinstance(reduction, str):
        if reduction not in _REDUCTIONS:
            raise PruningError(f"unknown reduction {reduction!r}; valid: {', '.join(sorted(_REDUCTIONS))}")
        reduction = _REDUCTIONS[reduction]
    if callable(importance):
        return importance
    if isinstance(importance, str) and importance in IMPORTANCES:
        return IMPORTANCES[importance](reduction, seed)
    raise PruningError(f"unknown importance {importance!r}; valid: {', '.join(sorted(IMPORTANCES))}, or a callable")


def member_data(model: torch.nn.Module, graph: Graph, group: Group) -> list[MemberData]:
    """The group's parameter members as 2-D numpy arrays (member axis first), with gradients when present."""
    found = []
    for member in group.parameters:
        if member.value.kind.value != "parameter":
            continue
        module = model.get_submodule(member.value.module) if member.value.module else model
        tensor = getattr(module, member.value.name)
        if tensor.is_meta:
            raise PruningError(f"{member.label} is on the meta device; only 'random' importance works without weights")
        weight = tensor.detach().movedim(member.dim.dim, 0).reshape(tensor.shape[member.dim.dim], -1)
        grad = None
        if isinstance(tensor, torch.nn.Parameter) and tensor.grad is not None:
            grad = (
                tensor.grad.detach().movedim(member.dim.dim, 0).reshape(weight.shape).to("cpu", torch.float64).numpy()
            )
        consumers = graph.consumers(member.value.id)
        role = consumers[0].kind if consumers else None
        found.append(
            MemberData(
                member, weight.to("cpu", torch.float64).numpy(), grad, role if isinstance(role, OpKind) else None
            )
        )
    return found
