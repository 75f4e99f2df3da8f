"""Propagation: from indices on one dim to everything that must go with them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import attrs
import numpy as np
import numpy.typing as npt

from prune_graph import DimRef, Graph
from prune_ops._errors import InvalidIndicesError, UnprunableError
from prune_ops._grouping import find_groups
from prune_ops._groups import Group, GroupSet, Member
from prune_ops._indices import IntArray, check_indices

__all__ = ["Removal", "propagate", "removal_of"]


@attrs.frozen(eq=False)
class Removal:
    """Units removed per group, and the indices every touched dim loses."""

    units: tuple[tuple[Group, IntArray], ...]
    indices: Mapping[DimRef, IntArray]

    def __len__(self) -> int:
        return len(self.indices)

    def of(self, dim: DimRef) -> IntArray:
        """Indices ``dim`` loses (empty when it is untouched)."""
        return self.indices.get(dim, np.zeros(0, dtype=np.int64))


def removal_of(graph: Graph, chosen: Iterable[tuple[Group, npt.ArrayLike]]) -> Removal:
    """Combine unit choices of several groups; check nothing blocked or emptied."""
    units: list[tuple[Group, IntArray]] = []
    merged: dict[DimRef, IntArray] = {}
    # a dim several groups reach (through a concat or a residual) is merged once, not once per group:
    # its parts are marked in a mask of the dim's size, read back sorted and unique
    several: dict[DimRef, list[IntArray]] = {}
    for group, picked in chosen:
        picked = check_indices(picked, group.size, f"group {group.id} ({group.root_member.label})", allow_empty=True)
        if not picked.size:
            continue
        if group.blockers:
            raise UnprunableError(
                f"group {group.id} ({group.root_member.label}) cannot be pruned: {'; '.join(group.blockers)}"
            )
        units.append((group, picked))
        for dim, removed in group.removal(picked).items():
            first = merged.setdefault(dim, removed)
            if first is not removed:
                several.setdefault(dim, [first]).append(removed)
    for dim, found in several.items():
        mask = np.zeros(graph.dim_size(dim), dtype=bool)
        for removed in found:
            mask[removed] = True
        merged[dim] = np.flatnonzero(mask).astype(np.int64, copy=False)
    for dim, removed in merged.items():
        size = graph.dim_size(dim)
        if removed.size >= size:
            value = graph.value(dim.value)
            raise InvalidIndicesError(
                f"{value.path}[{dim.dim}]: removing all {size} channels would leave none (keep at least one)"
            )
    return Removal(tuple(units), merged)


def propagate(
    graph: Graph, dim: DimRef, indices: npt.ArrayLike | Iterable[int], groups: GroupSet | None = None
) -> Removal:
    """Everything that goes when ``indices`` of ``dim`` go.

    The indices must be whole units of the groups the dim belongs to (a whole head of a
    reshaped projection, a whole channel block of a flatten); otherwise an
    ``InvalidIndicesError`` says which index cannot go alone.
    """
    groups = groups if groups is not None else find_groups(graph)
    size = graph.dim_size(dim)
    label = f"{graph.value(dim.value).path}[{dim.dim}]"
    requested = check_indices(indices, size, label)
    containing = groups.containing(dim)
    if not containing:
        raise UnprunableError(f"{label} is not coupled to any prunable channels (no op reads or writes it)")
    wanted = np.zeros(size, dtype=bool)
    wanted[requested] = True
    counts = np.zeros(size, dtype=np.int64)
    found: list[tuple[Group, Member, IntArray]] = []
    for group, member in containing:
        valid = member.units >= 0
        total = np.bincount(member.units[valid], minlength=group.size)
        hit = np.bincount(member.units[valid & wanted], minlength=group.size)
        full = np.flatnonzero((hit == total) & (total > 0))
        if full.size:
            found.append((group, member, full))
            counts += np.isin(member.units, full)
    # a unit that reaches this dim only in part can look whole here while other chosen units
    # already cover its indices; it was not asked for, and taking it would remove more elsewhere
    chosen: list[tuple[Group, IntArray]] = []
    for group, member, full in reversed(found):
        inside = np.isin(member.units, full)
        needed = np.bincount(member.units[inside & (counts < 2)], minlength=group.size) > 0
        for unit in full[~needed[full]][::-1]:
            spots = member.units == unit
            if (counts[spots] >= 2).all():
                counts[spots] -= 1
                full = full[full != unit]
        if full.size:
            chosen.insert(0, (group, full))
    covered = counts > 0
    missing = np.flatnonzero(wanted & ~covered)
    if missing.size:
        i = int(missing[0])
        hints = []
        for group, member in containing:
            unit = int(member.units[i])
            if unit >= 0:
                partners = np.flatnonzero(member.units == unit)
                hints.append(f"group {group.id} removes {label} indices {_short(partners)} together")
        raise InvalidIndicesError(
            f"{label}: index {i} cannot be removed on its own; " + ("; ".join(hints) or "it belongs to no group")
        )
    return removal_of(graph, chosen)


def _short(indices: IntArray) -> str:
    shown = ", ".join(str(int(i)) for i in indices[:6])
    return f"[{shown}{', ...' if indices.size > 6 else ''}]"
