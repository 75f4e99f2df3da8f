"""``plan`` (the classic workflow) and ``prune`` (the one call), with their report."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import numpy.typing as npt
import onnx

from prune_graph import DimRef, OpKind, ValueId, ValueKind
from prune_onnx._apply import apply
from prune_onnx._read import ModelLike
from prune_onnx._trace import OnnxGraph, trace
from prune_ops import (
    Group,
    GroupKind,
    Importance,
    MemberData,
    Outcome,
    Plan,
    PruningError,
    Random,
    Removal,
    Target,
    TargetMissedWarning,
    as_target,
    check_amount,
    costs,
    make_plan,
    meet_target,
    mixing_blocker,
    propagate,
)
from prune_ops._choose import choose_global, choose_isomorphic, choose_local, removal_that_fits
from prune_ops._importance import resolve_importance

__all__ = ["Report", "Target", "member_data", "plan", "prune"]


Report = Outcome
"""What ``prune`` did: :class:`prune_ops.Outcome` (the plan, costs before and after, groups left alone or approximate)."""


def _output_axis(graph: OnnxGraph, node: str) -> tuple[ValueId, int]:
    """The weight of a node and the axis of its output channels."""
    for op in graph.ops:
        if op.owner != node or len(op.inputs) < 2:
            continue
        weight = graph.value(op.inputs[1])
        if weight.kind is not ValueKind.PARAMETER:
            continue
        if op.kind is OpKind.CONV:
            return weight.id, 1 if op.attr("transposed", False) else 0
        if op.kind is OpKind.LINEAR:
            return weight.id, 1 if op.attr("weight_in_out", False) else 0
        if op.kind is OpKind.MATMUL:
            return weight.id, weight.rank - 1
        if op.kind is OpKind.RECURRENT:
            return op.inputs[2], 2  # the hidden units: R's columns
    raise PruningError(f"node {node!r} has no weight whose output channels could be pruned (name an initializer)")


def plan(graph: OnnxGraph, target: str, indices: npt.ArrayLike | Iterable[int], dim: int | None = None) -> Plan:
    """The plan that removing ``indices`` of one tensor implies: the group, every coupled tensor.

    ``target`` is an initializer name (``dim`` defaults to 0) or a node name (its weight's output
    channels; ``dim`` picks another axis of that weight).
    """
    if graph.has_value(target) and graph.value(target).is_state:
        value, axis = graph.value(target).id, 0 if dim is None else dim
    else:
        if not any(op.owner == target for op in graph.ops):
            raise PruningError(f"the model has no initializer or node named {target!r}")
        value, axis = _output_axis(graph, target)
        axis = axis if dim is None else dim
    removal = propagate(graph, DimRef(value, axis), indices, graph.groups())
    return _remember(graph, make_plan(graph, removal), removal)


def _remember(graph: OnnxGraph, plan: Plan, removal: Removal) -> Plan:
    """Keep the removal behind a plan with the graph: apply then needs no reconstruction."""
    graph.cache[f"removal:{plan.to_json()}"] = removal
    return plan


def member_data(graph: OnnxGraph, group: Group) -> list[MemberData]:
    """The group's parameter members as 2-D float64 arrays (member axis first)."""
    found = []
    for member in group.parameters:
        if member.value.kind is not ValueKind.PARAMETER:
            continue
        array = np.asarray(graph.initializer(member.value.name), dtype=np.float64)
        weight = np.moveaxis(array, member.dim.dim, 0).reshape(array.shape[member.dim.dim], -1)
        consumers = graph.consumers(member.value.id)
        role = consumers[0].kind if consumers else None
        slot = consumers[0].inputs.index(member.value.id) if consumers else None
        found.append(MemberData(member, weight, None, role, slot))
    return found


def _nodes(graph: OnnxGraph, names: Iterable[str], what: str) -> tuple[str, ...]:
    known = {op.owner for op in graph.ops}
    out = []
    for name in names:
        if not isinstance(name, str) or name not in known:
            raise PruningError(f"{what}: the model has no node {name!r}")
        out.append(name)
    return tuple(out)


def prune(
    model: ModelLike,
    *,
    ratio: float = 0.5,
    importance: str | Importance = "l2",
    round_to: int = 1,
    ignore: Sequence[str] = (),
    target: str | Target = "channels",
    global_ranking: bool = False,
    isomorphic: bool = False,
    max_ratio: float = 0.9,
    tolerance: float = 0.02,
    reduction: str = "mean",
    seed: int = 0,
    approximate: bool | None = None,
    prune_outputs: bool = False,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
) -> tuple[onnx.ModelProto, Report]:
    """Prune ``model`` (a ``ModelProto`` or a path) and return ``(pruned model, report)``; the input is unchanged.

    ``ratio`` is what to remove: a fraction of each group's channels (``target="channels"``,
    local ranking; ``global_ranking`` / ``isomorphic`` rank across groups, capped by
    ``max_ratio``) or of the parameters / MACs (``target="params"`` / ``"macs"``, within
    ``tolerance``). ``ignore`` holds node names whose output channels stay. ``approximate``:
    ``None`` prunes channels normalised together (LayerNorm, GroupNorm) but not those a softmax,
    a reduction or a cumulative op mixes; ``True`` prunes those too, ``False`` neither; every
    pruned mixing group is listed in ``report.approximate``.
    """
    ratio = check_amount(ratio, "ratio")
    max_ratio = check_amount(max_ratio, "max_ratio")
    if isinstance(round_to, bool) or not isinstance(round_to, int) or round_to < 1:
        raise PruningError(f"'round_to' must be an int >= 1 (got {round_to!r})")
    target = as_target(target)
    scorer = resolve_importance(importance, reduction, seed)
    graph = trace(model, input_shapes)
    ignored = _nodes(graph, ignore, "ignore")
    scored: list[tuple[Group, np.ndarray]] = []
    skipped: list[str] = []
    approximate_groups: list[str] = []
    for group in graph.groups(ignored, prune_outputs).prunable:
        if group.kind in (GroupKind.HEAD_DIMS, GroupKind.QUERY_HEADS):
            continue
        # the same policy as every adapter: prune_ops decides which mixing ops a group may cross
        reason = mixing_blocker(group.mixing, approximate)
        if reason is not None:
            skipped.append(f"{group.describe()} left unpruned: {reason}")
            continue
        if group.approximate:
            approximate_groups.append(f"{group.describe()}: mixed by " + "; ".join(str(n) for n in group.mixing))
        data = [] if isinstance(scorer, Random) else member_data(graph, group)
        scores = np.asarray(scorer(group, data), dtype=np.float64)
        if scores.shape != (group.size,):
            raise PruningError(
                f"importance returned shape {scores.shape} for group {group.id}; expected ({group.size},)"
            )
        scored.append((group, scores))

    def choose(scale: float) -> list[tuple[Group, np.ndarray]]:
        amount = min(ratio * scale, max_ratio)
        if global_ranking or isomorphic:
            return (choose_isomorphic if isomorphic else choose_global)(scored, amount, round_to, max_ratio)
        return choose_local(scored, [amount] * len(scored), round_to)

    def plan_of(chosen: list[tuple[Group, np.ndarray]]) -> tuple[Plan, list[str]]:
        removal, left = removal_that_fits(graph, chosen)
        return _remember(graph, make_plan(graph, removal), removal), left

    before = costs(graph)
    if target is Target.CHANNELS:
        the_plan, notes = plan_of(choose(1.0))
    else:

        def removed(chosen: list[tuple[Group, np.ndarray]]) -> float:
            after = costs(graph, plan_of(chosen)[0])
            if target is Target.MACS:
                return 1 - after.macs / max(before.macs, 1)
            return 1 - after.parameters / max(before.parameters, 1)

        chosen, got = meet_target(choose, removed, ratio, max_ratio / max(ratio, 1e-9), tolerance)
        if abs(got - ratio) > tolerance:
            warnings.warn(
                TargetMissedWarning(
                    f"target={target.value!r} ratio={ratio}: the closest plan removes {got:.1%} of the "
                    f"{target.value}, not {ratio:.1%} within tolerance {tolerance}"
                ),
                stacklevel=2,
            )
        the_plan, notes = plan_of(chosen)
    pruned = apply(graph, the_plan)
    return pruned, Report(the_plan, before, costs(graph, the_plan), (*skipped, *notes), tuple(approximate_groups))
