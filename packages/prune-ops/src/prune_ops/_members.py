"""A group's members: the dims of the classes its units reach, in member order."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import chain, repeat
from operator import itemgetter
from typing import TypeVar

import attrs

from prune_graph import DimRef, Graph, Value, ValueKind
from prune_ops._classes import DimSlots, UnionFind
from prune_ops._groups import Group, GroupKind, Member
from prune_ops._indices import IntArray
from prune_ops._mixing import MixNote

__all__ = ["Found", "MemberOrder"]

_STATE = (ValueKind.PARAMETER, ValueKind.BUFFER)
# where members of each kind of value come first: parameters and buffers, then the rest, virtual axes last
_RANK = {kind: 0 if kind in _STATE else 2 if kind is ValueKind.VIRTUAL else 1 for kind in ValueKind}

_Row = tuple[int, int, DimRef, Value]  # sort key, slot, dim, value
_by_key = itemgetter(0)
_T = TypeVar("_T")


@attrs.frozen
class Found:
    """A group found, before its place (its id) among the sorted groups is known."""

    size: int
    members: tuple[Member, ...]
    blockers: tuple[str, ...]
    kind: GroupKind
    mixing: tuple[MixNote, ...]

    @property
    def order_key(self) -> tuple[int, str]:
        """Groups are sorted by their root (the first member): state first, then by path."""
        value = self.members[0].value
        return (0 if value.kind in _STATE else 1, value.path)

    def group(self, index: int) -> Group:
        """The group, with its id."""
        return Group(index, self.members[0].dim, self.size, self.members, self.blockers, self.kind, self.mixing)


class MemberOrder:
    """Makes a group's members from the classes its units reach, in member order.

    Members are sorted by (parameter or buffer first, virtual last, place of the value in the
    graph, dim): one int per dim (slots run in value order, then dim), and no two dims share
    it, so each class's rows are sorted once here and a group of one class takes them as they
    are. What decides a dim's place, blockers and mixing notes is worked out once per class
    here, not once per group it belongs to.
    """

    def __init__(
        self,
        graph: Graph,
        slots: DimSlots,
        dims_of: dict[int, list[int]],
        pins: dict[int, list[str]],
        mixing: dict[int, tuple[MixNote, ...]],
        classes: UnionFind,
    ) -> None:
        value_at = slots.value_at
        step = len(slots)
        self.rows: dict[int, list[_Row]] = {}
        # each class's rows in member order, and their columns for a group of that class alone
        self.columns: dict[int, tuple[list[int], list[DimRef], list[Value]]] = {}
        for k, dims in dims_of.items():
            rows = []
            for at in dims:
                value = value_at[at]
                rows.append((_RANK[value.kind] * step + at, at, slots.ref(at), value))
            rows.sort(key=_by_key)
            self.rows[k] = rows
            self.columns[k] = ([row[1] for row in rows], [row[2] for row in rows], [row[3] for row in rows])
        self.pins = pins
        self.mixing = mixing
        # classes with a pinned or mixed dim: only groups that reach one need the per-member look-ups
        self.pinned = {classes.find(at) for at in pins}
        self.mixed = {classes.find(at) for at in mixing}

    def group(self, units: dict[int, IntArray], size: int, kind: GroupKind) -> Found:
        """The group whose units are ``units`` (by class, the unit of every index)."""
        if len(units) == 1:
            ((k, array),) = units.items()
            at_of, dims, values = self.columns[k]
            members = tuple(map(Member, dims, values, repeat(array, len(dims))))
        else:
            merged = [(*row, array) for k, array in units.items() for row in self.rows[k]]
            merged.sort(key=_by_key)
            members = tuple([Member(dim, value, array) for _key, _at, dim, value, array in merged])
            at_of = [row[1] for row in merged]
        blockers: tuple[str, ...] = ()
        if not self.pinned.isdisjoint(units):
            blockers = _listed(self.pins, at_of)
        notes: tuple[MixNote, ...] = ()
        if not self.mixed.isdisjoint(units):
            notes = _listed(self.mixing, at_of)
        return Found(size, members, blockers, kind, notes)


def _listed(table: Mapping[int, Sequence[_T]], at_of: list[int]) -> tuple[_T, ...]:
    """What ``table`` holds for the slots ``at_of``, in their order, each thing once."""
    return tuple(dict.fromkeys(chain.from_iterable(map(table.get, at_of, repeat((), len(at_of))))))
