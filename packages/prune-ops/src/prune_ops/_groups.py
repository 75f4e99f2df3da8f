"""Groups: the sets of coupled channels that must be removed together (the records; see ``_grouping``)."""

from __future__ import annotations

import enum
from collections.abc import Iterator, Sequence
from typing import Any

import attrs
import numpy as np

from prune_graph import DimRef, Graph, Mixing, Value, ValueKind
from prune_ops._indices import IntArray
from prune_ops._mixing import MixNote

__all__ = ["Group", "GroupKind", "GroupSet", "Member"]

_STATE = (ValueKind.PARAMETER, ValueKind.BUFFER)


class GroupKind(enum.Enum):
    """What a group's units are.

    ``HEADS``: whole attention heads (the first factor of a projection reshaped into heads × head
    dims whose head dims meet in an activation product; with grouped-query attention, whole
    key/value heads with their query heads); ``QUERY_HEADS``: the same query heads within every
    key/value group; ``HEAD_DIMS``: the same head dims in every head; ``CHANNELS``: everything
    else (conv channels, hidden units, the residual stream).
    """

    CHANNELS = "channels"
    HEADS = "heads"
    QUERY_HEADS = "query_heads"
    HEAD_DIMS = "head_dims"


@attrs.frozen(eq=False)
class Member:
    """One dim of a group: ``units[i]`` is the unit of index ``i`` (``-1``: another group's)."""

    dim: DimRef
    value: Value
    units: IntArray = attrs.field(repr=False)

    @property
    def is_parameter(self) -> bool:
        """Whether this dim belongs to a parameter or buffer."""
        return self.value.kind in _STATE

    @property
    def label(self) -> str:
        """``conv1.weight[0]`` or the value id for activations."""
        return f"{self.value.path}[{self.dim.dim}]"

    def indices(self, units: IntArray) -> IntArray:
        """The indices of this dim that belong to ``units``."""
        return np.flatnonzero(np.isin(self.units, units)).astype(np.int64)


@attrs.frozen(eq=False)
class Group:
    """Channels that go together. Remove a set of ``units`` (0 … size−1) and every member loses its indices."""

    id: int
    root: DimRef
    size: int
    members: tuple[Member, ...] = attrs.field(repr=False)
    blockers: tuple[str, ...] = ()
    kind: GroupKind = GroupKind.CHANNELS
    mixing: tuple[MixNote, ...] = ()
    # views derived from the members, made on first use (the group itself never changes)
    _memo: dict[str, Any] = attrs.field(init=False, factory=dict, eq=False, repr=False)

    @property
    def approximate(self) -> bool:
        """Some op mixes the group's channels (a reduction, softmax, cumulative op or norm over them):
        pruning changes the values of the kept channels, so the prune is not exact."""
        return bool(self.mixing)

    @property
    def normalised(self) -> bool:
        """A normalisation layer (LayerNorm, RMSNorm, positions within GroupNorm groups) mixes the channels."""
        return any(n.how is Mixing.NORMALISATION for n in self.mixing)

    @property
    def prunable(self) -> bool:
        """No member is pinned and there are at least two units."""
        return not self.blockers and self.size > 1

    @property
    def parameters(self) -> tuple[Member, ...]:
        """Members that are parameter or buffer dims."""
        if "parameters" not in self._memo:
            self._memo["parameters"] = tuple(m for m in self.members if m.is_parameter)
        return self._memo["parameters"]  # type: ignore[no-any-return]

    @property
    def whole_parameters(self) -> tuple[DimRef, ...]:
        """The parameter dims in which every index has a unit of this group (not a slice of a concat)."""
        if "whole" not in self._memo:
            flat, starts = self._flat_units()
            # how many negatives (other groups' indices) come before each member's start
            before = np.searchsorted(np.flatnonzero(flat < 0), starts).tolist()
            self._memo["whole"] = tuple(
                m.dim
                for m, start, end, low, high in zip(self.members, starts, starts[1:], before, before[1:])
                if m.is_parameter and end > start and high == low
            )
        return self._memo["whole"]  # type: ignore[no-any-return]

    def _flat_units(self) -> tuple[IntArray, list[int]]:
        """Every member's units end to end, and where each member starts (with the end last)."""
        if "flat" not in self._memo:
            starts = [0]
            for member in self.members:
                starts.append(starts[-1] + len(member.units))
            flat = np.concatenate([m.units for m in self.members]) if self.members else np.zeros(0, dtype=np.int64)
            self._memo["flat"] = (flat, starts)
        return self._memo["flat"]  # type: ignore[no-any-return]

    @property
    def modules(self) -> tuple[str, ...]:
        """Modules owning the group's parameters, in order of appearance."""
        return tuple(dict.fromkeys(m.value.owner for m in self.parameters))

    @property
    def name(self) -> str:
        """The group as a user knows it: its kind and the modules whose parameters it holds."""
        modules = [m or "<root>" for m in self.modules]
        listed = ", ".join(modules[:4]) + (f" and {len(modules) - 4} more" if len(modules) > 4 else "")
        return f"{self.kind.value} of {listed or self.root_member.label} ({self.size} units)"

    @property
    def root_member(self) -> Member:
        """The member the group is named after."""
        return next(m for m in self.members if m.dim == self.root)

    def removal(self, units: IntArray) -> dict[DimRef, IntArray]:
        """Indices removed from every member when ``units`` go."""
        units = np.asarray(units)
        if not units.size:
            return {}
        if units.min() < 0 or units.max() >= self.size:
            picked_by_member = ((m.dim, m.indices(units)) for m in self.members)
            return {dim: removed for dim, removed in picked_by_member if removed.size}
        # one lookup over all members' units end to end; the table's extra last entry, never
        # set, is where the -1 (another group's index) of a member's units lands
        picked = np.zeros(self.size + 1, dtype=bool)
        picked[units] = True
        flat, starts = self._flat_units()
        hits = np.flatnonzero(picked[flat]).astype(np.int64, copy=False)
        bounds = np.searchsorted(hits, starts).tolist()
        # every hit as an index of its own member's dim, in one subtraction: each member then takes a slice
        local = hits - self._member_starts()[hits]
        out = {}
        for member, low, high in zip(self.members, bounds, bounds[1:]):
            if high > low:
                out[member.dim] = local[low:high]
        return out

    def _member_starts(self) -> IntArray:
        """For every position of :meth:`_flat_units`, where its member starts."""
        if "member starts" not in self._memo:
            _flat, starts = self._flat_units()
            self._memo["member starts"] = np.repeat(np.asarray(starts[:-1], dtype=np.int64), np.diff(starts))
        return self._memo["member starts"]  # type: ignore[no-any-return]

    def signature(self) -> tuple[object, ...]:
        """A structural signature: groups with equal signatures are isomorphic (same layer types and sizes)."""
        return (
            self.size,
            tuple(sorted((m.value.kind.value, m.value.name, m.dim.dim, len(m.units)) for m in self.parameters)),
        )

    def describe(self) -> str:
        """One line: root, size, parameter members, and why it is blocked if it is."""
        params = ", ".join(m.label for m in self.parameters) or "no parameters"
        state = "prunable" if self.prunable else "unprunable: " + ("; ".join(self.blockers) or "a single unit")
        kind = self.kind.value + (", normalised" if self.normalised else "")
        line = f"group {self.id} ({self.size} {kind}) root {self.root_member.label}: {params} [{state}]"
        if self.mixing:
            line += "; approximate: mixed by " + "; ".join(str(n) for n in self.mixing)
        return line


class GroupSet:
    """All groups of a graph, with lookups by dim."""

    def __init__(self, graph: Graph, groups: Sequence[Group]) -> None:
        self.graph = graph
        self.groups = tuple(groups)
        self._by_dim: dict[DimRef, list[tuple[Group, Member]]] | None = None  # made on the first look-up

    def __iter__(self) -> Iterator[Group]:
        return iter(self.groups)

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, index: int) -> Group:
        return self.groups[index]

    def containing(self, dim: DimRef) -> tuple[tuple[Group, Member], ...]:
        """The groups that have ``dim`` as a member, with that member."""
        if self._by_dim is None:
            by_dim: dict[DimRef, list[tuple[Group, Member]]] = {}
            for group in self.groups:
                for member in group.members:
                    by_dim.setdefault(member.dim, []).append((group, member))
            self._by_dim = by_dim
        return tuple(self._by_dim.get(dim, ()))

    @property
    def prunable(self) -> tuple[Group, ...]:
        """Groups that can lose units and hold at least one parameter (buffers alone do not count)."""
        return tuple(
            g for g in self.groups if g.prunable and any(m.value.kind is ValueKind.PARAMETER for m in g.members)
        )
