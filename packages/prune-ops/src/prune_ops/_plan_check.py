"""Checking a plan against the groups of the model it is applied to: every group loses whole units, the same in every member."""

from __future__ import annotations

import numpy as np

from prune_graph import DimRef, Graph
from prune_ops._errors import PlanMismatchError
from prune_ops._groups import Group, GroupSet, Member
from prune_ops._indices import IntArray
from prune_ops._plan import Plan, PlanEntry

__all__ = ["check_plan_groups"]


def _whole_units(member: Member, removed: IntArray) -> IntArray:
    """The units of ``member`` whose every index is in ``removed``."""
    valid = member.units >= 0
    gone = np.zeros(member.units.shape, dtype=bool)
    gone[removed[(removed >= 0) & (removed < gone.size)]] = True
    units = np.unique(member.units[valid])
    partly = np.unique(member.units[valid & ~gone])
    return np.setdiff1d(units, partly)


def _show(units: IntArray) -> str:
    shown = ", ".join(str(int(u)) for u in units[:8])
    return "{" + shown + (", ..." if units.size > 8 else "") + "}"


def check_plan_groups(graph: Graph, groups: GroupSet, plan: Plan) -> None:
    """Refuse a plan whose entries of one group remove different units, or parts of units.

    A plan made by this library always passes; a plan edited by hand (conv1 keeps channels
    0–7, its BatchNorm keeps 8–15) or made for another model does not, and the error names the
    entries that disagree. Raises ``PlanMismatchError`` before anything changes.
    """
    by_path = {v.path: v for v in graph.values if v.is_state}
    dims: list[tuple[PlanEntry, DimRef]] = []
    for entry in plan.entries:
        value = by_path.get(entry.path)
        if value is not None and entry.axis < value.rank:
            dims.append((entry, DimRef(value.id, entry.axis)))
    agreed: dict[int, tuple[IntArray, PlanEntry, Group]] = {}
    for entry, dim in dims:
        removed = np.asarray(entry.removed, dtype=np.int64)
        explained = np.zeros(0, dtype=np.int64)
        for group, member in groups.containing(dim):
            units = _whole_units(member, removed)
            explained = np.union1d(explained, member.indices(units))
            first = agreed.setdefault(group.id, (units, entry, group))
            if not np.array_equal(first[0], units):
                raise PlanMismatchError(
                    f"the plan's entries {first[1].path}[{first[1].axis}] and {entry.path}[{entry.axis}] belong to one "
                    f"group ({group.name}) but remove different units: {_show(first[0])} and {_show(units)}; "
                    "coupled tensors must lose the same channels (was the plan edited, or made for another model?)"
                )
        stray = np.setdiff1d(removed, explained)
        if stray.size and groups.containing(dim):
            raise PlanMismatchError(
                f"the plan's entry {entry.path}[{entry.axis}] removes index {int(stray[0])} without the rest of its unit "
                "(a head, a GroupNorm group, a flattened channel); remove whole units"
            )
    covered = {dim for _, dim in dims}
    for units, entry, group in agreed.values():
        if not units.size:
            continue
        for member in group.members:
            if member.is_parameter and member.dim not in covered and member.indices(units).size:
                raise PlanMismatchError(
                    f"the plan removes units {_show(units)} of {group.name} from {entry.path}[{entry.axis}] but has no "
                    f"entry for {member.label}, which carries the same channels"
                )
