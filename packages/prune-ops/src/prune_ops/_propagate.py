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
    for group, picked in chosen:
        picked = check_indices(picked, group.size, f"group {group.id} ({group.root_member.label})", allow_empty=True)
        if not picked.size:
            continue
        if group.blockers:
            raise UnprunableError(
                f"group {group.id} ({group.root_member.label}) cannot be pruned: {'; '.join(group.blockers)}"
            )
        units.append((group, picked))
    space = _DimSpace(graph, [group for group, _ in units])
    merged = space.merged(units)
    for dim, removed in merged.items():
        size = space.size(dim)
        if removed.size >= size:
            value = graph.value(dim.value)
            raise InvalidIndicesError(
                f"{value.path}[{dim.dim}]: removing all {size} channels would leave none (keep at least one)"
            )
    return Removal(tuple(units), merged)


class _DimSpace:
    """Every dim the groups' members touch, end to end in one index space.

    A dim several groups reach (through a concat or a residual) is merged once, not once per
    group: the indices each group removes are marked in one mask over the space and read back
    sorted and unique per dim, all in array operations.
    """

    def __init__(self, graph: Graph, groups: list[Group]) -> None:
        # keyed by the dim's plain fields: hashing a tuple of them is cheaper than hashing the record
        self.ids: dict[tuple[str, int], int] = {}
        self.dims: list[DimRef] = []
        self.sizes: list[int] = []
        # per group: the space's id of each member's dim
        self.member_ids: list[IntArray] = []
        for group in groups:
            found = []
            for member in group.members:
                dim = member.dim
                at = self.ids.get((dim.value, dim.dim))
                if at is None:
                    at = self.ids[(dim.value, dim.dim)] = len(self.dims)
                    self.dims.append(dim)
                    self.sizes.append(graph.dim_size(dim))
                found.append(at)
            self.member_ids.append(np.asarray(found, dtype=np.int64))
        self.offsets = np.zeros(len(self.sizes) + 1, dtype=np.int64)
        np.cumsum(self.sizes, out=self.offsets[1:])

    def size(self, dim: DimRef) -> int:
        """The size of a dim in the space."""
        return self.sizes[self.ids[(dim.value, dim.dim)]]

    def merged(self, units: list[tuple[Group, IntArray]]) -> dict[DimRef, IntArray]:
        """Indices each dim loses, in the order the dims are first reached (group by group, member by member)."""
        if not units:
            return {}
        places, reached = [], []
        for (group, picked), ids in zip(units, self.member_ids):
            member_at, index = _hits(group, picked)
            dim_ids = ids[member_at]
            places.append(self.offsets[dim_ids] + index)
            reached.append(dim_ids)
        mask = np.zeros(int(self.offsets[-1]), dtype=bool)
        mask[np.concatenate(places)] = True
        marked = np.flatnonzero(mask).astype(np.int64, copy=False)
        bounds = np.searchsorted(marked, self.offsets).tolist()
        every = np.concatenate(reached)
        ids, first = np.unique(every, return_index=True)
        order = ids[np.argsort(first, kind="stable")].tolist()
        starts = self.offsets.tolist()
        return {self.dims[i]: marked[bounds[i] : bounds[i + 1]] - starts[i] for i in order}


def _hits(group: Group, picked: IntArray) -> tuple[IntArray, IntArray]:
    """For every index ``picked`` units hold in the group's members: the member's position, and the index."""
    lengths = [len(m.units) for m in group.members]
    if not lengths:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    starts = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=starts[1:])
    flat = np.concatenate([m.units for m in group.members])
    # the table's extra last entry, never set, is where a -1 (another group's index) lands
    table = np.zeros(group.size + 1, dtype=bool)
    table[picked] = True
    where = np.flatnonzero(table[flat])
    member_at = np.searchsorted(starts, where, side="right") - 1
    return member_at, where - starts[member_at]


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
