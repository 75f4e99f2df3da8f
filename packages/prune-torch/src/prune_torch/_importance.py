"""Scoring groups of a torch model: member tensors to numpy, importance by name or callable."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Union

import torch

from prune_graph import Graph, OpKind
from prune_ops import IMPORTANCES, Group, Importance, Member, MemberData, PruningError, resolve_importance

if TYPE_CHECKING:
    from prune_torch._activations import ActivationStats

__all__ = ["IMPORTANCES", "ImportanceLike", "member_data", "resolve_importance"]

ImportanceLike = Union[str, Importance]
"""An importance name (see ``prune_ops.IMPORTANCES``) or a callable ``(group, member_data) -> scores``."""


def member_data(
    model: torch.nn.Module,
    graph: Graph,
    group: Group,
    statistics: ActivationStats | None = None,
    tensors: Callable[[Member], torch.Tensor] | None = None,
) -> list[MemberData]:
    """The group's parameter members as 2-D numpy arrays (member axis first), with gradients when present,
    and with the calibration ``statistics`` of the channels each member reads, when given.

    ``tensors`` reads a member's tensor from elsewhere than the model (a checkpoint on disk), so a
    model on the meta device is scored exactly as the same model with its weights loaded.
    """
    found = []
    for member in group.parameters:
        if member.value.kind.value != "parameter":
            continue
        if tensors is not None:
            tensor = tensors(member)
        else:
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
        slot = consumers[0].inputs.index(member.value.id) if consumers else None
        activations = statistics.get(member.value.path, member.dim.dim) if statistics is not None else None
        found.append(
            MemberData(
                member,
                weight.to("cpu", torch.float64).numpy(),
                grad,
                role if isinstance(role, OpKind) else None,
                slot,
                activations,
            )
        )
    return found
