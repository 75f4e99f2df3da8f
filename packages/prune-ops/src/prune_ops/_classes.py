"""Dims into classes (identity couplings) and atoms (offsets and windows), and the pins that follow."""

from __future__ import annotations

from collections.abc import Collection

import numpy as np

from prune_graph import DimRef, FactorLink, Graph, Pin
from prune_ops._indices import IntArray

__all__ = ["UnionFind", "boundary_and_ignored", "components", "unify_factors"]


class UnionFind:
    """Union-find over dims; roots are returned as the first DimRef object seen for them."""

    def __init__(self) -> None:
        self.ids: dict[DimRef, int] = {}
        self.dims: list[DimRef] = []
        self.up: list[int] = []

    @property
    def parent(self) -> dict[DimRef, int]:
        """Every dim seen so far (keys), for iteration."""
        return self.ids

    def _id(self, x: DimRef) -> int:
        i = self.ids.get(x)
        if i is None:
            i = self.ids[x] = len(self.dims)
            self.dims.append(x)
            self.up.append(i)
        return i

    def _root(self, i: int) -> int:
        up = self.up
        root = i
        while up[root] != root:
            root = up[root]
        while up[i] != root:
            up[i], i = root, up[i]
        return root

    def find(self, x: DimRef) -> DimRef:
        i = self.ids.get(x)
        if i is None:  # a new dim is its own class
            self._id(x)
            return x
        if self.up[i] == i:
            return self.dims[i]
        return self.dims[self._root(i)]

    def union(self, a: DimRef, b: DimRef) -> None:
        ids, up = self.ids, self.up
        i, j = ids.get(a), ids.get(b)
        i = self._id(a) if i is None else i
        j = self._id(b) if j is None else j
        ra = i if up[i] == i else self._root(i)
        rb = j if up[j] == j else self._root(j)
        if ra != rb:
            up[rb] = ra

    def roots(self) -> list[tuple[DimRef, DimRef]]:
        """Every dim seen so far with the root of its class, in the order they were first seen."""
        dims, root = self.dims, self._root
        return [(dim, dims[root(i)]) for i, dim in enumerate(dims)]


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


def unify_factors(classes: UnionFind, factors: list[FactorLink]) -> list[Pin]:
    """Two factorisations of the same channels with the same sizes have the same parts.

    (``q.view(B*H, T, D)`` and ``k.view(B*H, T, D)`` meet in a batched matmul: the heads of q and
    the heads of k are then the same heads.) A part that one factorisation cannot change pins
    the matching part of the other. Repeats until nothing new is joined.
    """
    pins: list[Pin] = []
    pinned: set[DimRef] = set()
    changed = True
    while changed:
        changed = False
        by_fine: dict[tuple[DimRef, tuple[int, ...]], FactorLink] = {}
        for factor in factors:
            key = (classes.find(factor.fine), factor.sizes)
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
                        pins.append(Pin(part, f"it is a fixed factor of {factor.fine} elsewhere", factor.op))
    # factorisations of different sizes (a depthwise conv feeding a grouped conv of other groups):
    # a unit of one is scattered in the other, so no removal is whole in both; keep the channels
    sizes_of: dict[DimRef, set[tuple[int, ...]]] = {}
    for factor in factors:
        sizes_of.setdefault(classes.find(factor.fine), set()).add(factor.sizes)
    for factor in factors:
        shapes = sizes_of[classes.find(factor.fine)]
        if len(shapes) > 1 and factor.fine not in pinned:
            pinned.add(factor.fine)
            ways = " and ".join(" × ".join(map(str, s)) for s in sorted(shapes))
            pins.append(Pin(factor.fine, f"its channels are factored two ways ({ways})", factor.op))
    return pins
