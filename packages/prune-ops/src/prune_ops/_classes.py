"""Dims into classes (identity couplings) and atoms (offsets and windows), and the pins that follow.

The search works on *slots*, not on ``DimRef`` records: every dim of every value has one int
(its value's first slot plus the dim), so the union-find and every table keyed by dim are
plain lists and int-keyed dicts (a ``DimRef`` hashes through a Python call).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import cast

import numpy as np

from prune_graph import DimRef, FactorLink, Graph, GraphError, Pin, Value, dim_refs
from prune_ops._indices import IntArray

__all__ = ["DimSlots", "SlotFactor", "UnionFind", "boundary_and_ignored", "components", "unify_factors"]


_NOWHERE = (0, 0)  # the place of a value the graph lacks: no dim fits in it


class DimSlots:
    """One int per (value, dim) of a graph, and the ``DimRef`` record of each slot a coupling
    record named so far (the others are made when asked for, by :meth:`named`).

    >>> from prune_graph import Graph, Value, ValueKind
    >>> g = Graph(values=(Value("x", (1, 4), "float32", ValueKind.INPUT),), ops=(), inputs=("x",), outputs=())
    >>> slots = DimSlots(g)
    >>> slots.slot(DimRef("x", 1)), slots.size[1]
    (1, 4)
    """

    def __init__(self, graph: Graph) -> None:
        self.place: dict[str, tuple[int, int]] = {}  # each value's first slot and rank
        self.start: dict[str, int] = {}  # each value's first slot
        size: list[int] = []
        value_at: list[Value] = []
        for value in graph.values:
            self.place[value.id] = (len(size), len(value.shape))
            self.start[value.id] = len(size)
            size += value.shape
            value_at += [value] * len(value.shape)
        self.size = size
        self.value_at = value_at  # the value of each slot
        self.refs: list[DimRef | None] = [None] * len(size)

    def __len__(self) -> int:
        return len(self.size)

    def slot(self, dim: DimRef) -> int:
        """The slot of ``dim`` (remembering the record); a ``GraphError`` for a dim the graph lacks."""
        start, rank = self.place.get(dim.value, _NOWHERE)
        if dim.dim >= rank:
            raise GraphError(f"no dim {dim} in the graph (a coupling names a value or dim that does not exist)")
        at = start + dim.dim
        if self.refs[at] is None:
            self.refs[at] = dim
        return at

    def at(self, value: str, dim: int) -> int:
        """The slot of dim ``dim`` of ``value`` (which need not have been met)."""
        start, rank = self.place.get(value, _NOWHERE)
        if not 0 <= dim < rank:
            raise GraphError(f"no dim {dim} of value {value!r} in the graph")
        return start + dim

    def ref(self, at: int) -> DimRef:
        """The record of a slot met through :meth:`slot`."""
        dim = self.refs[at]
        if dim is None:
            raise GraphError(f"slot {at} was never named by a coupling")
        return dim

    def named(self, slots: Iterable[int]) -> list[DimRef]:
        """The records of all slots, made for those of ``slots`` no record named (a repeated
        op's couplings are read without records: see ``prune_ops._reading``)."""
        refs, value_at, start = self.refs, self.value_at, self.start
        missing = [at for at in set(slots) if refs[at] is None]
        values = [value_at[at].id for at in missing]
        for at, ref in zip(missing, dim_refs(values, [at - start[v] for at, v in zip(missing, values)])):
            refs[at] = ref
        return cast(list[DimRef], refs)


class SlotFactor:
    """A ``FactorLink`` with its dims as slots (``None`` for a part that is no tensor's dim)."""

    __slots__ = ("fine", "link", "parts")

    def __init__(self, link: FactorLink, slots: DimSlots) -> None:
        self.link = link
        self.fine = slots.slot(link.fine)
        self.parts = tuple(None if p is None else slots.slot(p) for p in link.parts)


class UnionFind:
    """Union-find over slots; a class is known by its root slot, dims listed in the order first seen.

    Which slot is a class's root says nothing: the search orders classes by the dims first seen.
    """

    def __init__(self, count: int) -> None:
        self.up = [-1] * count  # -1: not seen yet
        self.seen: list[int] = []
        self.size = [1] * count  # of each root's class

    def __contains__(self, i: int) -> bool:
        return self.up[i] >= 0

    def _root(self, i: int) -> int:
        up = self.up
        root = i
        while up[root] != root:
            root = up[root]
        while up[i] != root:
            up[i], i = root, up[i]
        return root

    def find(self, i: int) -> int:
        up = self.up
        top = up[i]
        if top == i:
            return i
        if top < 0:  # a new dim is its own class
            up[i] = i
            self.seen.append(i)
            return i
        return self._root(i)

    def union(self, a: int, b: int) -> None:
        up = self.up
        # a dim is new (its own class, as find makes it), its own root or right under it, mostly:
        # only deeper ones need the walk
        ra = up[a]
        if ra < 0:
            up[a] = ra = a
            self.seen.append(a)
        elif up[ra] != ra:
            ra = self._root(a)
        rb = up[b]
        if rb < 0:
            up[b] = rb = b
            self.seen.append(b)
        elif up[rb] != rb:
            rb = self._root(b)
        if ra != rb:
            # the smaller class goes under the larger's root: a parameter linked to a long-built
            # class would otherwise put every dim of it one step further from its root
            size = self.size
            if size[ra] < size[rb]:
                ra, rb = rb, ra
            up[rb] = ra
            size[ra] += size[rb]

    def union_places(self, links: Iterable[tuple[int, int, int, int]], starts: Sequence[int]) -> None:
        """:meth:`union` of slots ``starts[i] + d`` and ``starts[j] + e`` for each ``(i, d, j, e)``
        of ``links``, in order: a repeated op's identity links by place, with no call per link."""
        up, size, seen, root = self.up, self.size, self.seen, self._root
        for i, d, j, e in links:
            a = starts[i] + d
            b = starts[j] + e
            ra = up[a]
            if ra < 0:
                up[a] = ra = a
                seen.append(a)
            elif up[ra] != ra:
                ra = root(a)
            rb = up[b]
            if rb < 0:
                up[b] = rb = b
                seen.append(b)
            elif up[rb] != rb:
                rb = root(b)
            if ra != rb:
                if size[ra] < size[rb]:
                    ra, rb = rb, ra
                up[rb] = ra
                size[ra] += size[rb]

    def flat(self) -> list[int]:
        """The root of every slot's class (a slot never seen is its own), to be read by index
        (a C-level look-up) once no class changes any more."""
        up = np.array(self.up, dtype=np.int64)
        unseen = up < 0
        up[unseen] = np.flatnonzero(unseen)
        while True:  # jump along the links until every slot points at its root
            jumped = up[up]
            if np.array_equal(jumped, up):
                return cast(list[int], up.tolist())
            up = jumped

    def roots(self) -> list[tuple[int, int]]:
        """Every slot seen so far with the root of its class, in the order they were first seen."""
        up, root = self.up, self._root
        # most dims hang right under their root: only deeper ones need the walk
        return [(i, up[i] if up[up[i]] == up[i] else root(i)) for i in self.seen]


def components(total: int, edges_a: list[IntArray], edges_b: list[IntArray]) -> IntArray:
    """Connected components of ``total`` elements joined by edges, labelled by their smallest element."""
    labels = np.arange(total, dtype=np.int64)
    if not edges_a:
        return labels
    a, b = np.concatenate(edges_a), np.concatenate(edges_b)
    while True:
        low = np.minimum(labels[a], labels[b])
        before = labels.copy()
        np.minimum.at(labels, a, low)
        np.minimum.at(labels, b, low)
        labels = labels[labels]  # pointer jumping: follow labels to their own labels
        if np.array_equal(labels, before):
            return labels


def _inside(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == m or module.startswith(m + ".") or m == "" for m in prefixes)


def boundary_and_ignored(graph: Graph, ignore: Collection[str], prune_outputs: bool) -> list[Pin]:
    """Pins for model inputs and outputs, and for the outputs of ignored modules.

    An ignored module keeps the channels it hands to the rest of the model (the values its ops
    write that are read outside it or returned); its input channels can still change.
    """
    pins = [p for p in graph.boundary_pins() if not (prune_outputs and p.dim.value in graph.outputs)]
    ignored = tuple(ignore)
    if not ignored:
        return pins
    for op in graph.ops:
        owners = [path for path in ignored if _inside(op.owner, (path,))]
        if not owners:
            continue
        for out in op.outputs:
            # leaving one ignored module counts even when the reader is another ignored module
            leaves = out in graph.outputs or any(
                not _inside(c.owner, (path,)) for path in owners for c in graph.consumers(out)
            )
            if not leaves:
                continue
            for d, size in enumerate(graph.shape(out)):
                if size > 1:
                    pins.append(Pin(DimRef(out, d), f"output of ignored module {op.owner}", op.id))
    return pins


def unify_factors(classes: UnionFind, factors: list[SlotFactor]) -> list[tuple[int, str]]:
    """Two factorisations of the same channels with the same sizes have the same parts.

    (``q.view(B*H, T, D)`` and ``k.view(B*H, T, D)`` meet in a batched matmul: the heads of q and
    the heads of k are then the same heads.) A part that one factorisation cannot change pins
    the matching part of the other. Repeats until nothing new is joined. Returns the pins made,
    as (slot, reason).
    """
    pins: list[tuple[int, str]] = []
    pinned: set[int] = set()
    changed = True
    while changed:
        changed = False
        by_fine: dict[tuple[int, tuple[int, ...]], SlotFactor] = {}
        for factor in factors:
            key = (classes.find(factor.fine), factor.link.sizes)
            first = by_fine.setdefault(key, factor)
            if first is factor:
                continue
            for a, b in zip(first.parts, factor.parts):
                if a is not None and b is not None:
                    if classes.find(a) != classes.find(b):
                        classes.union(a, b)
                        changed = True
                else:
                    part = a if a is not None else b
                    if part is not None and part not in pinned:
                        pinned.add(part)
                        pins.append((part, f"it is a fixed factor of {factor.link.fine} elsewhere"))
    # factorisations of different sizes (a depthwise conv feeding a grouped conv of other groups):
    # a unit of one is scattered in the other, so no removal is whole in both; keep the channels
    sizes_of: dict[int, set[tuple[int, ...]]] = {}
    for factor in factors:
        sizes_of.setdefault(classes.find(factor.fine), set()).add(factor.link.sizes)
    for factor in factors:
        shapes = sizes_of[classes.find(factor.fine)]
        if len(shapes) > 1 and factor.fine not in pinned:
            pinned.add(factor.fine)
            ways = " and ".join(" × ".join(map(str, s)) for s in sorted(shapes))
            pins.append((factor.fine, f"its channels are factored two ways ({ways})"))
    return pins
