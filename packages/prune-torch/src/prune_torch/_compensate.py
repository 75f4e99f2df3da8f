"""FLAP-style bias compensation: the mean of each removed input channel, folded into its consumer's bias.

A linear layer ``y = W x + b`` that loses input channels ``R`` computes, without compensation,
as if ``x_R = 0``. With the calibration mean ``μ_R`` of those channels added as
``b += W[:, R] μ_R``, it computes as if ``x_R = μ_R``: exact for channels that are constant over
the data, and never worse in the mean. Only linear consumers (a 2-D weight read by a matrix
product: ``nn.Linear``, ``F.linear`` with the module's own weight, GPT-2's ``Conv1D``) are
compensated; a conv's padding makes a per-channel mean inexact at the borders, so convs are left
as they are, and named. An ``nn.Linear`` without a bias gets one (zeros plus the compensation);
other modules need a bias of their own. A Hugging Face config may not describe the new bias
(LLaMA's ``mlp_bias`` adds biases to every MLP projection): ``pt.check_pretrained`` says so.

The compensation is worked out before the plan is applied (the removed columns are still there)
and added after, for the groups that were applied, following any pruning of the output axis.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import numpy as np
import torch

from prune_ops import Group, Plan, compensation
from prune_torch._activations import ActivationStats

__all__ = ["Pending", "add_compensation", "plan_compensation"]


@attrs.frozen(eq=False)
class Pending:
    """A bias change waiting for its group to be applied: ``delta`` over the full output axis."""

    group: Group
    module: str
    name: str
    out_axis: int
    delta: np.ndarray


def plan_compensation(
    model: torch.nn.Module, chosen: Sequence[tuple[Group, np.ndarray]], statistics: ActivationStats
) -> tuple[list[Pending], list[str]]:
    """The bias changes for the units about to be removed, and notes on consumers that cannot take one."""
    pending: list[Pending] = []
    notes: dict[str, None] = {}
    for group, units in chosen:
        if not len(units):
            continue
        for member in group.parameters:
            key = (member.value.path, member.dim.dim)
            reader = statistics.readers.get(key)
            stats = statistics.stats.get(key)
            if reader is None or stats is None:
                continue
            module_path = member.value.owner
            if reader.kind != "matmul":
                notes[f"bias compensation: {module_path} is a {reader.kind}, not compensated"] = None
                continue
            module = model.get_submodule(module_path) if module_path else model
            weight = getattr(module, member.value.name)
            if weight.dim() != 2 or _bias_target(module, weight.shape[1 - member.dim.dim]) is None:
                notes[f"bias compensation: {module_path} has no bias of its output size to fold into"] = None
                continue
            removed = member.indices(units)
            columns = weight.detach().movedim(member.dim.dim, 0)[torch.as_tensor(removed, device=weight.device)]
            delta = compensation(columns.to("cpu", torch.float64).numpy(), stats.mean[removed])
            pending.append(Pending(group, module_path, member.value.name, 1 - member.dim.dim, delta))
    return pending, list(notes)


def _bias_target(module: torch.nn.Module, size: int) -> str | None:
    """``"bias"`` when the module has a bias of ``size`` or is an ``nn.Linear`` that may get one."""
    bias = getattr(module, "bias", None)
    if isinstance(bias, torch.Tensor):
        return "bias" if bias.dim() == 1 and bias.shape[0] == size else None
    return "bias" if isinstance(module, torch.nn.Linear) and bias is None else None


def add_compensation(
    model: torch.nn.Module, pending: Sequence[Pending], applied: Sequence[tuple[Group, np.ndarray]], plan: Plan
) -> list[str]:
    """Add the pending bias changes of the applied groups; returns the modules whose bias changed."""
    done = {id(g) for g, units in applied if len(units)}
    totals: dict[str, tuple[Pending, np.ndarray]] = {}
    for item in pending:
        if id(item.group) not in done:
            continue
        entry = plan.entry(item.module, item.name, item.out_axis)
        delta = item.delta if entry is None else item.delta[np.asarray(entry.kept, dtype=np.int64)]
        previous = totals.get(item.module)
        totals[item.module] = (item, delta if previous is None else previous[1] + delta)
    for path, (item, delta) in totals.items():
        module = model.get_submodule(path) if path else model
        weight = getattr(module, item.name)
        bias = getattr(module, "bias", None)
        change = torch.as_tensor(delta, dtype=weight.dtype, device=weight.device)
        with torch.no_grad():
            if isinstance(bias, torch.Tensor):
                bias.add_(change.to(bias.dtype))
            else:
                module.bias = torch.nn.Parameter(change, requires_grad=weight.requires_grad)
    return list(totals)
