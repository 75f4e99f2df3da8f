"""Couplings read into the search's terms: dims joined into classes, the rest sorted by kind.

Identity links join dims into classes (a union-find over slots); pins, windows and offsets,
factors and mixing ops are kept with their dims as slots. A :class:`~prune_graph.RepeatedCouplings`
or :class:`~prune_graph.ConcatCouplings` is read from its places and dims, with no records made.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from prune_graph import (
    Broadcast,
    ConcatCouplings,
    Coupling,
    CouplingPart,
    FactorLink,
    Identity,
    IndexMapLike,
    Link,
    Mix,
    Offset,
    Pin,
    RepeatedCouplings,
    Window,
)
from prune_ops._classes import DimSlots, SlotFactor, UnionFind

__all__ = ["Read", "Run", "read_couplings"]

# an offset or window as a run: index i of it joins index first_a + step·i of the source with
# index first_b + i of the destination (first_a, step, first_b, length)
Run = tuple[int, int, int, int]

_NOWHERE = (0, 0)  # the place of a value the graph lacks (see DimSlots)


@attrs.define
class Read:
    """The couplings as the search needs them: classes joined, pins, windows, factors and mixing ops."""

    classes: UnionFind
    pins: dict[int, list[str]] = attrs.field(factory=dict)
    # offsets and windows (as runs) and other index maps, with the slots of src and dst
    windows: list[tuple[int, int, Run | IndexMapLike]] = attrs.field(factory=list)
    factors: list[SlotFactor] = attrs.field(factory=list)
    mixes: list[Mix] = attrs.field(factory=list)


def read_couplings(parts: Iterable[CouplingPart], slots: DimSlots) -> Read:
    """Join identity links into classes and sort the other couplings, every dim seen in coupling order."""
    read = Read(UnionFind(len(slots)))
    find, union, slot = read.classes.find, read.classes.union, slots.slot
    place, refs = slots.place, slots.refs
    for part in parts:
        if isinstance(part, RepeatedCouplings):
            _read_repeat(part, read, slots)
            continue
        if isinstance(part, ConcatCouplings):
            _read_concat(part, read, slots)
            continue
        for c in part:
            if type(c) is Link and type(c.map) is Identity:
                # most couplings: DimSlots.slot written out, no call on the way
                from_dim, to_dim = c.src, c.dst
                src_start, src_rank = place.get(from_dim.value, _NOWHERE)
                dst_start, dst_rank = place.get(to_dim.value, _NOWHERE)
                if from_dim.dim >= src_rank or to_dim.dim >= dst_rank:
                    slot(from_dim)  # the error that names the dim
                    slot(to_dim)
                a, b = src_start + from_dim.dim, dst_start + to_dim.dim
                if refs[a] is None:
                    refs[a] = from_dim
                if refs[b] is None:
                    refs[b] = to_dim
                union(a, b)
                continue
            if type(c) is Pin:  # the next most common: pins of dims an op sets itself
                at = slot(c.dim)
                find(at)
                pins = read.pins.get(at)
                if pins is None:
                    read.pins[at] = [c.reason]
                else:
                    pins.append(c.reason)
                continue
            _read_other(c, read, slots)
    return read


def _read_repeat(part: RepeatedCouplings, read: Read, slots: DimSlots) -> None:
    """What ``read_couplings`` does with the records of ``part``, without them (the records of
    its dims are made only for the dims that become members: see :meth:`DimSlots.named`)."""
    # the op's values were looked up for its shapes, so they are in the graph; its dims fit them
    starts = list(map(slots.start.__getitem__, part.values))
    links, pinned = part.plan
    read.classes.union_places(links, starts)
    if pinned:
        up, seen = read.classes.up, read.classes.seen
        reason = part.reason
        pins = read.pins
        for value, dim in pinned:
            at = starts[value] + dim
            if up[at] < 0:  # what UnionFind.find does for a dim met first here, with no call
                up[at] = at
                seen.append(at)
            pins.setdefault(at, []).append(reason)


def _read_concat(part: ConcatCouplings, read: Read, slots: DimSlots) -> None:
    """What ``read_couplings`` does with the records of ``part``, without them."""
    find, union, windows = read.classes.find, read.classes.union, read.windows
    starts = list(map(slots.start.__getitem__, part.values))  # in the graph, as for a repeat
    for link in part.links:
        a, b = starts[link[0]] + link[1], starts[link[2]] + link[3]
        if len(link) == 4:
            union(a, b)
        else:  # an input's concat dim at its offset in the output's
            find(a)
            find(b)
            windows.append((a, b, (0, 1, link[4], link[5])))
    if part.pinned:
        reason = part.reason
        pins = read.pins
        for value, dim in part.pinned:
            at = starts[value] + dim
            find(at)
            pins.setdefault(at, []).append(reason)


def _read_other(c: Coupling, read: Read, slots: DimSlots) -> None:
    """What ``read_couplings`` does with a coupling other than a plain identity link."""
    find, slot = read.classes.find, slots.slot
    if isinstance(c, Pin):
        at = slot(c.dim)
        find(at)
        read.pins.setdefault(at, []).append(c.reason)
    elif isinstance(c, Link):
        src, dst = slot(c.src), slot(c.dst)
        if isinstance(c.map, Identity):
            read.classes.union(src, dst)
        else:
            find(src)
            find(dst)
            index_map = c.map
            run: Run | IndexMapLike = index_map
            if type(index_map) is Offset:
                run = (0, 1, index_map.offset, index_map.src_size)
            elif type(index_map) is Window:
                run = (index_map.start, index_map.step, 0, index_map.length)
            read.windows.append((src, dst, run))
    elif isinstance(c, FactorLink):
        factor = SlotFactor(c, slots)
        find(factor.fine)
        for part in factor.parts:
            if part is not None:
                find(part)
        read.factors.append(factor)
    elif isinstance(c, (Mix, Broadcast)):
        find(slot(c.dim))
        if isinstance(c, Mix):
            read.mixes.append(c)
