"""``find_groups``: every group of a graph, its units, members, kind and blockers.

The dims of a graph fall into *classes* (dims joined by identity couplings carry the same
channels index for index). Offsets and windows (concat, split, slice) join classes index by
index into *atoms*. Factor couplings (a reshape of C into heads × head dims, a flatten) make
the channels of the fine dim follow the channels of its parts, so only atoms that are not the
fine side of a factor can be removed on their own: those are the units of groups. Atoms that
appear in the same set of classes form one group; a group's members are every dim its units
reach, each with the unit of every index (``-1`` where an index belongs to another group).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import attrs
import numpy as np

from prune_graph import Broadcast, Coupling, DimRef, FactorLink, Graph, Identity, Link, Mix, Pin, ValueKind
from prune_ops._classes import UnionFind, boundary_and_ignored, components, unify_factors
from prune_ops._groups import Group, GroupKind, GroupSet, Member
from prune_ops._indices import IntArray
from prune_ops._kinds import group_kinds
from prune_ops._mixing import mixing_of

__all__ = ["find_groups"]

_STATE = (ValueKind.PARAMETER, ValueKind.BUFFER)


def find_groups(graph: Graph, *, ignore: Collection[str] = (), prune_outputs: bool = False) -> GroupSet:
    """Every group of ``graph``.

    ``ignore`` holds module paths whose outputs must keep their channels (a classifier, a
    detection head); their input channels can still change. Model inputs are never pruned,
    outputs only with ``prune_outputs``.
    """
    couplings: list[Coupling] = [*graph.couplings, *boundary_and_ignored(graph, ignore, prune_outputs)]
    classes = UnionFind()
    pins: dict[DimRef, list[str]] = {}
    windows: list[Link] = []
    factors: list[FactorLink] = []
    for c in couplings:
        if isinstance(c, Link):
            if isinstance(c.map, Identity):
                classes.union(c.src, c.dst)
            else:
                classes.find(c.src)
                classes.find(c.dst)
                windows.append(c)
        elif isinstance(c, FactorLink):
            classes.find(c.fine)
            for part in c.parts:
                if part is not None:
                    classes.find(part)
            factors.append(c)
        elif isinstance(c, Pin):
            classes.find(c.dim)
            pins.setdefault(c.dim, []).append(c.reason)
        elif isinstance(c, (Mix, Broadcast)):
            classes.find(c.dim)
    for pin in unify_factors(classes, factors):
        pins.setdefault(pin.dim, []).append(pin.reason)
    dims_of: dict[DimRef, list[DimRef]] = {}
    for dim in list(classes.parent):
        dims_of.setdefault(classes.find(dim), []).append(dim)
    size_of = {k: graph.dim_size(dims[0]) for k, dims in dims_of.items()}

    # atoms: index-level union over the classes that offsets and windows join
    base: dict[DimRef, int] = {}
    for link in windows:
        for k in (classes.find(link.src), classes.find(link.dst)):
            if k not in base:
                base[k] = sum(size_of[j] for j in base)
    total = sum(size_of[k] for k in base)
    edges_a: list[IntArray] = []
    edges_b: list[IntArray] = []
    for link in windows:
        src, dst = base[classes.find(link.src)], base[classes.find(link.dst)]
        domain = link.map.domain()
        edges_a.append(src + np.asarray(domain, dtype=np.int64))
        edges_b.append(dst + np.asarray(link.map.forward(domain), dtype=np.int64))
    atom = components(total, edges_a, edges_b)
    positions: dict[int, list[tuple[DimRef, int]]] = {}
    support: dict[int, set[DimRef]] = {}
    for k, start in base.items():
        for i in range(size_of[k]):
            root = int(atom[start + i])
            positions.setdefault(root, []).append((k, i))
            support.setdefault(root, set()).add(k)

    fine_classes = {classes.find(f.fine) for f in factors}
    fine_atoms = {int(atom[base[k] + i]) for k in fine_classes if k in base for i in range(size_of[k])}
    # a channel that offsets or windows carry from one factorised dim into another (a grouped
    # conv's output concatenated into another grouped conv) follows two layouts at once: keep them
    fines_of_atom: dict[int, set[DimRef]] = {}
    for k in fine_classes & base.keys():
        for i in range(size_of[k]):
            fines_of_atom.setdefault(int(atom[base[k] + i]), set()).add(k)
    clashing = {k for ks in fines_of_atom.values() if len(ks) > 1 for k in ks}
    for f in factors:
        if classes.find(f.fine) in clashing:
            clashing.discard(classes.find(f.fine))
            reason = f"its channels are factored two ways (by op {f.op} and through a concat, split or slice)"
            pins.setdefault(f.fine, []).append(reason)
    factors_by_part: dict[DimRef, list[FactorLink]] = {}
    for f in factors:
        for part in f.parts:
            if part is not None:
                factors_by_part.setdefault(classes.find(part), []).append(f)

    # roots: plain classes that are not fine, and atoms of joined classes grouped by support
    seeds: list[dict[DimRef, IntArray]] = []
    for k in dims_of:
        if k not in base and k not in fine_classes and size_of[k] > 0:
            seeds.append({k: np.arange(size_of[k], dtype=np.int64)})
    by_support: dict[frozenset[DimRef], list[int]] = {}
    for root in sorted(support):
        if root not in fine_atoms:
            by_support.setdefault(frozenset(support[root]), []).append(root)
    for roots in by_support.values():
        unit_of = {root: u for u, root in enumerate(roots)}
        seed: dict[DimRef, IntArray] = {}
        for root in roots:
            for k, i in positions[root]:
                seed.setdefault(k, np.full(size_of[k], -1, dtype=np.int64))[i] = unit_of[root]
        seeds.append(seed)

    joined = UnionFind()
    for link in windows:
        joined.union(classes.find(link.src), classes.find(link.dst))
    spaces: dict[DimRef, list[DimRef]] = {}
    for k in base:
        spaces.setdefault(joined.find(k), []).append(k)
    order: dict[str, int] = {v.id: i for i, v in enumerate(graph.values)}
    context = _Context(classes, base, atom, positions, size_of, factors_by_part)
    context.spaces = {k: members for members in spaces.values() for k in members}
    kind_of = group_kinds(graph, classes, factors, windows)
    mixing = mixing_of(graph, couplings)
    groups: list[Group] = []
    for seed in seeds:
        units = context.expand(seed)
        group = _make_group(len(groups), graph, units, dims_of, pins, order)
        kind = next((kind_of[k] for k in seed if k in kind_of), GroupKind.CHANNELS)
        notes = tuple(dict.fromkeys(n for m in group.members for n in mixing.get(m.dim, ())))
        groups.append(attrs.evolve(group, kind=kind, mixing=notes))
    groups.sort(key=lambda g: _order_key(graph, g))
    return GroupSet(graph, [attrs.evolve(g, id=i) for i, g in enumerate(groups)])


def _order_key(graph: Graph, group: Group) -> tuple[int, str]:
    value = group.root_member.value
    return (0 if value.kind in _STATE else 1, value.path)


@attrs.define
class _Context:
    classes: UnionFind
    base: dict[DimRef, int]
    atom: IntArray
    positions: dict[int, list[tuple[DimRef, int]]]
    size_of: dict[DimRef, int]
    factors_by_part: dict[DimRef, list[FactorLink]]
    atoms_of: dict[DimRef, IntArray] = attrs.field(factory=dict)
    spaces: dict[DimRef, list[DimRef]] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        for k, start in self.base.items():
            self.atoms_of[k] = self.atom[start : start + self.size_of[k]]

    def _spread(self, k: DimRef, array: IntArray, assign: Any, merge: Any) -> None:
        total = len(self.atom)
        _, updates, pairs = _spread_atoms(self.atoms_of, self.spaces[k], k, array, total)
        if pairs is not None:
            merge(*pairs)
        for other, new in updates:
            if (new >= 0).any():
                assign(other, new)

    def expand(self, seed: dict[DimRef, IntArray]) -> dict[DimRef, IntArray]:
        """Follow atoms and factors from the seed classes; merge units that meet."""
        units: dict[DimRef, IntArray] = {}
        labels = np.arange(max(int(a.max(initial=-1)) for a in seed.values()) + 1, dtype=np.int64)
        queue: list[DimRef] = []

        def merge(a: IntArray, b: IntArray) -> None:
            for x, y in set(zip(a.tolist(), b.tolist())):
                rx, ry = _label_root(labels, x), _label_root(labels, y)
                if rx != ry:
                    labels[max(rx, ry)] = min(rx, ry)

        def assign(k: DimRef, new: IntArray) -> None:
            old = units.get(k)
            if old is None:
                units[k] = new.copy()
                queue.append(k)
                return
            both = (old >= 0) & (new >= 0) & (old != new)
            if both.any():
                merge(old[both], new[both])
            fill = (old < 0) & (new >= 0)
            if fill.any():
                old[fill] = new[fill]
                queue.append(k)

        for k, array in seed.items():
            assign(k, array)
        while queue:
            k = queue.pop()
            array = units[k]
            if k in self.base:
                self._spread(k, array, assign, merge)
            for factor in self.factors_by_part.get(k, ()):
                fine = self.classes.find(factor.fine)
                for axis, part in enumerate(factor.parts):
                    if part is not None and self.classes.find(part) == k:
                        coords = (np.arange(factor.size) // int(np.prod(factor.sizes[axis + 1 :]))) % factor.sizes[axis]
                        assign(fine, array[coords])
        final = np.array([_label_root(labels, i) for i in range(len(labels))], dtype=np.int64)
        used = np.unique(np.concatenate([final[a[a >= 0]] for a in units.values()]))
        compact = np.full(len(labels), -1, dtype=np.int64)
        compact[used] = np.arange(len(used))
        out = {}
        for k, array in units.items():
            relabelled = np.where(array >= 0, compact[final[np.maximum(array, 0)]], -1)
            out[k] = relabelled
        return out


def _spread_atoms(
    atoms_of: dict[DimRef, IntArray], space: list[DimRef], k: DimRef, array: IntArray, total: int
) -> tuple[IntArray, list[tuple[DimRef, IntArray]], tuple[IntArray, IntArray] | None]:
    """Units of class ``k`` carried by atoms to the other classes of its space.

    Returns the unit of every atom, the arrays for the other classes, and pairs of units that
    share an atom within ``k`` (they must merge), if any.
    """
    valid = array >= 0
    atoms = atoms_of[k][valid]
    values = array[valid]
    by_atom = np.full(total, -1, dtype=np.int64)
    by_atom[atoms] = values
    clash = by_atom[atoms] != values
    pairs = (by_atom[atoms][clash], values[clash]) if clash.any() else None
    updates = [(other, by_atom[atoms_of[other]]) for other in space if other != k]
    return by_atom, updates, pairs


def _label_root(labels: IntArray, i: int) -> int:
    while labels[i] != i:
        i = int(labels[i])
    return i


def _make_group(
    index: int,
    graph: Graph,
    units: dict[DimRef, IntArray],
    dims_of: dict[DimRef, list[DimRef]],
    pins: dict[DimRef, list[str]],
    order: dict[str, int],
) -> Group:
    members: list[Member] = []
    blockers: list[str] = []
    for k, array in units.items():
        if not (array >= 0).any():
            continue
        for dim in dims_of[k]:
            value = graph.value(dim.value)
            members.append(Member(dim, value, array))
            for reason in pins.get(dim, ()):
                if reason not in blockers:
                    blockers.append(reason)
    members.sort(
        key=lambda m: (
            m.value.kind not in _STATE,
            m.value.kind is ValueKind.VIRTUAL,
            order.get(m.value.id, 0),
            m.dim.dim,
        )
    )
    size = int(max(int(a.max()) for a in units.values()) + 1)
    root = members[0].dim
    return Group(index, root, size, tuple(members), tuple(blockers))
