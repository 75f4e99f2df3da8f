"""Reading a plan against the groups of the model it is applied to.

``check_plan_groups`` refuses a plan whose coupled entries do not remove the same whole units;
``removal_from_plan`` reads the units back and makes the plan's removal again on this graph, by
tensor names (never by trace position), for any adapter.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from prune_graph import DimRef, Graph, Value
from prune_ops._errors import InvalidIndicesError, PlanMismatchError, UnprunableError
from prune_ops._groups import Group, GroupSet
from prune_ops._indices import IntArray
from prune_ops._plan import Plan, PlanEntry, make_plan
from prune_ops._propagate import Removal, removal_of

__all__ = ["check_plan_groups", "removal_from_plan", "units_removed"]


def _show(units: IntArray) -> str:
    shown = ", ".join(str(int(u)) for u in units[:8])
    return "{" + shown + (", ..." if units.size > 8 else "") + "}"


def units_removed(group: Group, removed: Mapping[DimRef, IntArray]) -> IntArray:
    """The units of ``group`` that no state member keeps any part of, given each dim's removed indices.

    A member without an entry in ``removed`` keeps everything. An index of a factored dim also
    goes with the other factor's units, but not in every member the unit reaches, so only units
    lost whole everywhere count. Both adapters read a saved plan back into units this way.
    """
    gone_units: list[IntArray] = []
    kept_units: list[IntArray] = []
    for member in group.members:
        if not member.value.is_state:
            continue
        valid = member.units >= 0
        gone = np.zeros(member.units.shape, dtype=bool)
        indices = removed.get(member.dim)
        if indices is not None:
            gone[indices[(indices >= 0) & (indices < gone.size)]] = True
        gone_units.append(member.units[valid & gone])
        kept_units.append(member.units[valid & ~gone])
    if not gone_units:
        return np.zeros(0, dtype=np.int64)
    return np.setdiff1d(np.concatenate(gone_units), np.concatenate(kept_units)).astype(np.int64)


def _keeper(group: Group, unit: int, removed: dict[DimRef, IntArray]) -> str:
    """A member of ``group`` that keeps part of ``unit``."""
    for member in group.members:
        if not member.value.is_state:
            continue
        indices = member.indices(np.asarray([unit], dtype=np.int64))
        if indices.size and not np.isin(indices, removed.get(member.dim, np.zeros(0, dtype=np.int64))).all():
            return member.label
    return "another tensor"


def check_plan_groups(graph: Graph, groups: GroupSet, plan: Plan) -> None:
    """Refuse a plan that does not remove whole units of the model's groups, the same in every member.

    A plan made by this library always passes; a plan edited by hand (conv1 loses channels 0
    and 1, its BatchNorm 2 and 3) or missing a coupled tensor does not, and the error names the
    entry and the tensor that disagrees. Raises ``PlanMismatchError`` before anything changes.
    """
    by_path = _state_by_path(graph)
    entries: dict[DimRef, PlanEntry] = {}
    removed: dict[DimRef, IntArray] = {}
    for entry in plan.entries:
        for value in by_path.get(entry.path, ()):
            if entry.axis < value.rank:
                dim = DimRef(value.id, entry.axis)
                entries[dim] = entry
                removed[dim] = np.asarray(entry.removed, dtype=np.int64)
    # what each group's removed units take from every member, worked out once per group
    taken: dict[int, dict[DimRef, IntArray]] = {}
    for dim, entry in entries.items():
        parts = [np.zeros(0, dtype=np.int64)]
        for group, _member in groups.containing(dim):
            if group.id not in taken:
                taken[group.id] = group.removal(units_removed(group, removed))
            found = taken[group.id].get(dim)
            if found is not None:
                parts.append(found)
        expected = np.unique(np.concatenate(parts))
        extra = np.setdiff1d(removed[dim], expected)
        if not extra.size or not groups.containing(dim):
            continue
        index = int(extra[0])
        for group, member in groups.containing(dim):
            if member.units[index] >= 0:
                unit = int(member.units[index])
                raise PlanMismatchError(
                    f"the plan's entry {entry.path}[{entry.axis}] removes index {index} (unit {unit} of {group.name}), "
                    f"but {_keeper(group, unit, removed)} keeps that unit: coupled tensors must lose the same whole "
                    "units (was the plan edited, or made for another model?)"
                )


def _state_by_path(graph: Graph) -> dict[str, list[Value]]:
    """State values by path; a module run several times (a detection head shared by every FPN level)
    has one virtual axis per call under the same path."""
    found: dict[str, list[Value]] = {}
    for value in graph.values:
        if value.is_state:
            found.setdefault(value.path, []).append(value)
    return found


def _removed_indices(graph: Graph, plan: Plan) -> dict[DimRef, IntArray]:
    by_path = _state_by_path(graph)
    removed: dict[DimRef, IntArray] = {}
    for entry in plan.entries:
        values = by_path.get(entry.path)
        if not values:
            raise PlanMismatchError(
                f"the plan's entry {entry.path}[{entry.axis}] names a tensor this model does not use on these "
                "inputs (no traced op reads it): was the plan made for another model or other inputs?"
            )
        for value in values:
            if entry.axis >= value.rank or value.shape[entry.axis] != entry.size:
                raise PlanMismatchError(
                    f"the plan's entry {entry.path}[{entry.axis}] expects size {entry.size}; this model has "
                    f"{entry.path} with shape {value.shape}"
                )
            removed[DimRef(value.id, entry.axis)] = np.asarray(entry.removed, dtype=np.int64)
    return removed


def _first_difference(mine: tuple[PlanEntry, ...], theirs: tuple[PlanEntry, ...]) -> str:
    ours = {e.key: e for e in mine}
    planned = {e.key: e for e in theirs}
    for key in sorted(set(ours) | set(planned)):
        a, b = ours.get(key), planned.get(key)
        if b is None and a is not None:
            return (
                f"this model couples {a.path}[{a.axis}] to the plan's tensors (it would lose "
                f"{len(a.removed)} of {a.size}), but the plan leaves it whole"
            )
        if a is None and b is not None:
            return (
                f"the plan's entry {b.path}[{b.axis}] removes {len(b.removed)} of {b.size}, but in this model "
                "no whole unit of its group goes with them"
            )
        if a is not None and b is not None and a != b:
            return (
                f"the plan's entry {b.path}[{b.axis}] removes indices {list(b.removed)[:8]}, but this model's "
                f"groups remove {list(a.removed)[:8]} there"
            )
    return "the entries differ"


def removal_from_plan(graph: Graph, groups: GroupSet, plan: Plan) -> Removal:
    """The removal behind ``plan`` on ``graph``, matched by tensor names: every dim's lost indices.

    A plan records state axes only; the units each group loses are read back from them
    (:func:`units_removed`) and the removal is made again, activations included. Made into a plan,
    it must give back exactly the plan's entries, or ``PlanMismatchError`` names the first tensor
    that disagrees; a blocked group or an emptied dim is refused the same way.
    """
    removed = _removed_indices(graph, plan)
    chosen = []
    for group in groups:
        if any(m.dim in removed for m in group.members):
            units = units_removed(group, removed)
            if units.size:
                chosen.append((group, units))
    try:
        removal = removal_of(graph, chosen)
    except (UnprunableError, InvalidIndicesError) as error:
        raise PlanMismatchError(f"the plan does not fit this model: {error}") from None
    again = make_plan(graph, removal)
    if again.entries != plan.entries:
        raise PlanMismatchError(
            f"the plan does not fit this model's groups: {_first_difference(again.entries, plan.entries)} "
            "(was the plan made for another model?)"
        )
    return removal
