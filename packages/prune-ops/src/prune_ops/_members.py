"""A group's members: the dims of the classes its units reach, in member order."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from itertools import chain, pairwise, repeat
from typing import TypeVar

import numpy as np

from prune_graph import DimRef, Graph, Value, ValueKind
from prune_ops._classes import DimSlots
from prune_ops._groups import Group, GroupKind, Member
from prune_ops._indices import IntArray
from prune_ops._mixing import MixNote

__all__ = ["MemberOrder", "new_groups", "order_key"]

_STATE = (ValueKind.PARAMETER, ValueKind.BUFFER)
# where members of each kind of value come first: parameters and buffers, then the rest, virtual axes last
_RANK = {kind: 0 if kind in _STATE else 2 if kind is ValueKind.VIRTUAL else 1 for kind in ValueKind}
_RANK_BY_ID = {id(kind): rank for kind, rank in _RANK.items()}  # an enum member hashes through a Python call

_T = TypeVar("_T")


def order_key(root: Value) -> tuple[int, str]:
    """Groups are sorted by the value of their root (the first member): state first, then by path."""
    return (0 if root.kind in _STATE else 1, root.path)


class MemberOrder:
    """Makes groups' members from the classes their units reach, in member order.

    Members are sorted by (parameter or buffer first, virtual last, place of the value in the
    graph, dim): one int per dim (slots run in value order, then dim), and no two dims share
    it. Every class's dims are put in that order at once here, so a group of one class takes
    them as they are. What decides blockers and mixing notes is worked out once per class
    here, not once per group it belongs to.
    """

    def __init__(
        self,
        graph: Graph,
        slots: DimSlots,
        dims_of: dict[int, list[int]],
        pins: dict[int, list[str]],
        mixing: dict[int, tuple[MixNote, ...]],
        root_of: list[int],
    ) -> None:
        values = graph.values
        value_rank = np.array([_RANK_BY_ID[id(v.kind)] for v in values], dtype=np.int64)
        slot_rank = np.repeat(value_rank, [len(v.shape) for v in values])
        self.key = (slot_rank * len(slots) + np.arange(len(slots), dtype=np.int64)).tolist()
        self.slots_of = _sorted_classes(dims_of, self.key)
        self.slots = slots
        self.value_at = slots.value_at
        self.pins = pins
        self.mixing = mixing
        # each class with a pinned dim, with its pinned slots in member order (mostly one): a group of
        # one class reads its blockers from those alone (root_of: each slot's class)
        pinned_at: dict[int, list[int]] = {}
        for at in pins:
            pinned_at.setdefault(root_of[at], []).append(at)
        for ats in pinned_at.values():
            if len(ats) > 1:
                ats.sort(key=self.key.__getitem__)
        self.pinned_at = pinned_at
        # classes with a mixed dim: only groups that reach one need the per-member look-ups
        self.mixed = set(map(root_of.__getitem__, mixing))
        # every group's member slots and unit arrays end to end, and where each group's end:
        # one bulk make for all members (a make per group cost more than its members, mostly few)
        self._at: list[int] = []
        self._arrays: list[IntArray] = []
        self._ends = [0]

    def group(self, units: dict[int, IntArray]) -> tuple[tuple[int, str], tuple[str, ...], tuple[MixNote, ...]]:
        """Lay out the members of the group whose units are ``units`` (by class, the unit of every
        index); returns the group's sort key (:func:`order_key`), blockers and mixing notes.

        The members themselves are made for every group at once by :meth:`members`.
        """
        blockers: tuple[str, ...] = ()
        if len(units) == 1:
            ((k, array),) = units.items()
            at_of = self.slots_of[k]
            self._arrays.extend(repeat(array, len(at_of)))
            pinned = self.pinned_at.get(k)
            if pinned is not None:
                blockers = _listed(self.pins, pinned)
        else:
            # classes share no slot: each slot with its class's array, then the slots in member
            # order (by key alone: keys differ), all through C-level calls (a concat-heavy net
            # has groups of hundreds of members)
            array_of: dict[int, IntArray] = {}
            for k, array in units.items():
                array_of.update(dict.fromkeys(self.slots_of[k], array))
            at_of = sorted(array_of, key=self.key.__getitem__)
            self._arrays.extend(map(array_of.__getitem__, at_of))
            if not self.pinned_at.keys().isdisjoint(units):
                blockers = _listed(self.pins, at_of)
        self._at.extend(at_of)
        self._ends.append(len(self._at))
        notes: tuple[MixNote, ...] = ()
        if not self.mixed.isdisjoint(units):
            notes = _listed(self.mixing, at_of)
        return order_key(self.value_at[at_of[0]]), blockers, notes

    def members(self) -> list[tuple[Member, ...]]:
        """The members of every group laid out so far, in the order of the :meth:`group` calls."""
        at = self._at
        refs = self.slots.named(at)
        made = _new_members(len(at), map(refs.__getitem__, at), map(self.value_at.__getitem__, at), self._arrays)
        return [made[start:end] for start, end in pairwise(self._ends)]


# Member's fields written straight into its slots: a graph makes thousands of members, and
# attrs' frozen __init__ (a bound setattr per field, in a Python call) was most of their cost
_new = object.__new__
_set_dim = Member.dim.__set__  # type: ignore[attr-defined]
_set_value = Member.value.__set__  # type: ignore[attr-defined]
_set_units = Member.units.__set__  # type: ignore[attr-defined]


def _new_members(
    count: int, dims: Iterable[DimRef], values: Iterable[Value], arrays: Iterable[IntArray]
) -> tuple[Member, ...]:
    """``tuple(map(Member, dims, values, arrays))`` without a Python call per member (Member has
    no validator or converter to skip; a test checks the two agree)."""
    members = tuple(map(_new, repeat(Member, count)))
    deque(map(_set_dim, members, dims), 0)
    deque(map(_set_value, members, values), 0)
    deque(map(_set_units, members, arrays), 0)
    return members


# Group's fields, likewise: a graph makes hundreds of groups
_GROUP_SETTERS = tuple(
    getattr(Group, name).__set__ for name in ("id", "root", "size", "members", "blockers", "kind", "mixing", "_memo")
)


def new_groups(
    rows: Sequence[tuple[object, int, tuple[Member, ...], tuple[str, ...], GroupKind, tuple[MixNote, ...]]],
) -> list[Group]:
    """``Group(i, members[0].dim, size, members, blockers, kind, notes)`` for the ``i``-th row
    (``(anything, size, members, blockers, kind, notes)``), without a Python call per group
    (Group has no validator or converter to skip; a test checks the two agree)."""
    count = len(rows)
    groups = list(map(_new, repeat(Group, count)))
    if not count:
        return groups
    _keys, sizes, members, blockers, kinds, notes = zip(*rows)
    roots = [m[0].dim for m in members]
    memos: list[dict[str, object]] = [{} for _ in range(count)]
    for setter, column in zip(_GROUP_SETTERS, (range(count), roots, sizes, members, blockers, kinds, notes, memos)):
        deque(map(setter, groups, column), 0)
    return groups


def _sorted_classes(dims_of: dict[int, list[int]], key: list[int]) -> dict[int, list[int]]:
    """Each class's slots in member order (by ``key``, one int per slot): a sort per class, with
    the key read by a C-level look-up (half the time of one numpy sort of every slot by class and
    key, what with the arrays to build and the lists to cut); a class of one dim as it is."""
    by_key = key.__getitem__
    return {k: sorted(dims, key=by_key) if len(dims) > 1 else dims for k, dims in dims_of.items()}


def _listed(table: Mapping[int, Sequence[_T]], at_of: list[int]) -> tuple[_T, ...]:
    """What ``table`` holds for the slots ``at_of``, in their order, each thing once."""
    if len(at_of) == 1:  # most pinned classes: one pinned dim
        return tuple(dict.fromkeys(table.get(at_of[0], ())))
    return tuple(dict.fromkeys(chain.from_iterable(map(table.get, at_of, repeat((), len(at_of))))))
