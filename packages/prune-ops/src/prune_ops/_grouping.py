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

import itertools
from collections.abc import Collection

import attrs
import numpy as np

from prune_graph import (
    Broadcast,
    Coupling,
    DimRef,
    FactorLink,
    Graph,
    Identity,
    Link,
    Mix,
    Offset,
    Pin,
    Value,
    ValueKind,
    Window,
)
from prune_ops._classes import UnionFind, boundary_and_ignored, components, unify_factors
from prune_ops._groups import Group, GroupKind, GroupSet, Member
from prune_ops._indices import IntArray
from prune_ops._kinds import group_kinds
from prune_ops._mixing import MixNote, mixing_of

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
    for dim, root in classes.roots():
        dims_of.setdefault(root, []).append(dim)
    size_of = {k: graph.dim_size(dims[0]) for k, dims in dims_of.items()}

    # atoms: index-level union over the classes that offsets and windows join
    ends = [(classes.find(link.src), classes.find(link.dst)) for link in windows]  # the classes each joins
    base: dict[DimRef, int] = {}
    total = 0
    for pair in ends:
        for k in pair:
            if k not in base:
                base[k] = total
                total += size_of[k]
    edges_a: list[IntArray] = []
    edges_b: list[IntArray] = []
    for link, (src_class, dst_class) in zip(windows, ends):
        src, dst = base[src_class], base[dst_class]
        index_map = link.map
        # the two common maps in arrays; any other map through its own domain and forward
        if type(index_map) is Offset:
            steps = np.arange(index_map.src_size, dtype=np.int64)
            edges_a.append(src + steps)
            edges_b.append(dst + index_map.offset + steps)
        elif type(index_map) is Window:
            steps = np.arange(index_map.length, dtype=np.int64)
            edges_a.append(src + index_map.start + index_map.step * steps)
            edges_b.append(dst + steps)
        else:
            domain = index_map.domain()
            edges_a.append(src + np.asarray(domain, dtype=np.int64))
            edges_b.append(dst + np.asarray(index_map.forward(domain), dtype=np.int64))
    atom = components(total, edges_a, edges_b)
    joined_classes = list(base)  # a joined class is known by its place here in the arrays below
    owner = np.repeat(np.arange(len(joined_classes), dtype=np.int64), [size_of[k] for k in joined_classes])
    roots, supports = _supports(atom, owner, len(joined_classes))

    fine_classes = {classes.find(f.fine) for f in factors}
    fine_atom = np.zeros(total, dtype=bool)
    fine_joined = [j for j, k in enumerate(joined_classes) if k in fine_classes]
    fine_atom[atom[np.isin(owner, fine_joined)]] = True
    # a channel that offsets or windows carry from one factorised dim into another (a grouped
    # conv's output concatenated into another grouped conv) follows two layouts at once: keep them
    clashing = {joined_classes[j] for j in _sharing_atoms(atom, owner, fine_joined, len(joined_classes))}
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
    # each seed with its count of units (the labels its arrays use) and the classes to start from
    seeds: list[tuple[dict[DimRef, IntArray], int, int]] = []
    for k in dims_of:
        if k not in base and k not in fine_classes and size_of[k] > 0:
            seeds.append(({k: np.arange(size_of[k], dtype=np.int64)}, size_of[k], 1))
    by_support: dict[tuple[int, ...], list[int]] = {}
    for root, support in zip(roots.tolist(), supports):
        if not fine_atom[root]:
            by_support.setdefault(support, []).append(root)
    context = _Context(classes, base, atom, size_of, factors_by_part)
    unit_of_atom = np.full(total, -1, dtype=np.int64)
    for support, atom_roots in by_support.items():
        unit_of_atom[atom_roots] = np.arange(len(atom_roots), dtype=np.int64)
        seed = {joined_classes[j]: unit_of_atom[context.atoms_of[joined_classes[j]]] for j in support}
        # every class of the support holds these atoms, with the same units: writing them through the
        # first class writes them for all, and reaches the others (they share an atom with it)
        seeds.append((seed, len(atom_roots), 1))
        unit_of_atom[atom_roots] = -1

    joined = UnionFind()
    for src_class, dst_class in ends:
        joined.union(src_class, dst_class)
    spaces: dict[DimRef, list[DimRef]] = {}
    for k in base:
        spaces.setdefault(joined.find(k), []).append(k)
    context.meet(
        {k: members for members in spaces.values() for k in members},
        [[joined_classes[j] for j in support] for support in set(supports)],
    )
    kind_of = group_kinds(graph, classes, factors, windows)
    mixing = mixing_of(graph, couplings)
    members_of = _MemberOrder(graph, dims_of, pins, mixing, classes)
    made: list[tuple[tuple[int, str], _Made]] = []
    for seed, count, start in seeds:
        units, size = context.expand(dict(itertools.islice(seed.items(), start)), count)
        kind = next((kind_of[k] for k in seed if k in kind_of), GroupKind.CHANNELS)
        found = members_of.group(units, size, kind)
        made.append((found.order_key, found))
    # sorted by root (state first, then path); the search order breaks ties, as a stable sort would
    made.sort(key=lambda item: item[0])
    return GroupSet(graph, [found.group(i) for i, (_key, found) in enumerate(made)])


@attrs.frozen
class _Made:
    """A group found, before its place (its id) among the sorted groups is known."""

    root: Member
    size: int
    members: tuple[Member, ...]
    blockers: tuple[str, ...]
    kind: GroupKind
    mixing: tuple[MixNote, ...]

    @property
    def order_key(self) -> tuple[int, str]:
        value = self.root.value
        return (0 if value.kind in _STATE else 1, value.path)

    def group(self, index: int) -> Group:
        return Group(index, self.root.dim, self.size, self.members, self.blockers, self.kind, self.mixing)


@attrs.define
class _Context:
    classes: UnionFind
    base: dict[DimRef, int]
    atom: IntArray
    size_of: dict[DimRef, int]
    factors_by_part: dict[DimRef, list[FactorLink]]
    atoms_of: dict[DimRef, IntArray] = attrs.field(factory=dict)
    # for each joined class, the other classes of its space that share an atom with it, in space order:
    # only those can receive units from it (a chain of concats makes a space of hundreds of classes
    # where each class meets two or three)
    neighbours: dict[DimRef, list[DimRef]] = attrs.field(factory=dict)
    # unit by atom, -1 where unset: reused by every search, which clears what it wrote
    scratch: IntArray = attrs.field(factory=lambda: np.zeros(0, dtype=np.int64))
    # for each part class of a factor: the fine class and, for each fine index, the part's index
    spreads: dict[DimRef, list[tuple[DimRef, IntArray]]] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        for k, start in self.base.items():
            self.atoms_of[k] = self.atom[start : start + self.size_of[k]]
        self.scratch = np.full(len(self.atom), -1, dtype=np.int64)
        for k, factors in self.factors_by_part.items():
            for factor in factors:
                fine = self.classes.find(factor.fine)
                for axis, part in enumerate(factor.parts):
                    if part is not None and self.classes.find(part) == k:
                        coords = (np.arange(factor.size) // int(np.prod(factor.sizes[axis + 1 :]))) % factor.sizes[axis]
                        self.spreads.setdefault(k, []).append((fine, coords))

    def meet(self, spaces: dict[DimRef, list[DimRef]], supports: Collection[list[DimRef]]) -> None:
        """Fill ``neighbours`` from the distinct sets of classes that hold one atom."""
        met: dict[DimRef, set[DimRef]] = {k: set() for k in self.base}
        for classes in supports:
            for k in classes:
                met[k].update(classes)
        for k in self.base:
            # classes are known by their root objects: identity is equality here
            self.neighbours[k] = [other for other in spaces[k] if other is not k and other in met[k]]

    def expand(self, seed: dict[DimRef, IntArray], count: int) -> tuple[dict[DimRef, IntArray], int]:
        """Follow atoms and factors from the seed classes (``count`` units); merge units that meet.

        Returns the classes that hold units, each with the unit of every index (``-1``: none), and
        how many units there are after merging (numbered from 0 in the order of the seed's).
        A joined class holds no array of its own while the search runs: its units are those of
        its atoms (``scratch``), so writing one class reaches every class sharing those atoms at once.
        """
        units: dict[DimRef, IntArray] = {}  # plain classes
        at = self.scratch
        written: list[IntArray] = []  # atoms to clear afterwards
        reached: dict[DimRef, None] = {}  # joined classes that may hold units
        labels = np.arange(count, dtype=np.int64)
        merged = False  # whether any two units were merged (labels no longer the identity)
        queue: list[DimRef] = []  # classes whose units changed: their factors are followed

        def merge(a: IntArray, b: IntArray) -> None:
            nonlocal merged
            merged = True
            for x, y in set(zip(a.tolist(), b.tolist())):
                rx, ry = _label_root(labels, x), _label_root(labels, y)
                if rx != ry:
                    labels[max(rx, ry)] = min(rx, ry)

        def assign_joined(k: DimRef, new: IntArray) -> None:
            atoms = self.atoms_of[k]
            old = at[atoms]
            both = (old >= 0) & (new >= 0) & (old != new)
            if both.any():
                merge(old[both], new[both])
            fill = (old < 0) & (new >= 0)
            if not fill.any():
                return
            where, values = atoms[fill], new[fill]
            at[where] = values
            written.append(where)
            got = at[where]
            clash = got != values
            if clash.any():  # one atom twice in k, given two units: they merge
                merge(got[clash], values[clash])
            reached[k] = None
            queue.append(k)
            for other in self.neighbours[k]:
                reached[other] = None
                if other in self.spreads:
                    queue.append(other)

        def assign(k: DimRef, new: IntArray) -> None:
            if k in self.base:
                assign_joined(k, new)
                return
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

        try:
            for k, array in seed.items():
                assign(k, array)
            while queue:
                k = queue.pop()
                spreads = self.spreads.get(k)
                if spreads:
                    array = at[self.atoms_of[k]] if k in self.base else units[k]
                    for fine, coords in spreads:
                        assign(fine, array[coords])
            for k in reached:
                array = at[self.atoms_of[k]]
                if array.max(initial=-1) >= 0:
                    units[k] = array
        finally:
            for where in written:
                at[where] = -1
        held = {k: array for k, array in units.items() if array.max(initial=-1) >= 0}
        if merged:
            # labels point to smaller labels: jumping along them reaches each label's root
            final = labels
            while True:
                jumped = final[final]
                if np.array_equal(jumped, final):
                    break
                final = jumped
        else:
            final = labels
        seen = np.zeros(len(labels), dtype=bool)
        for array in held.values():
            seen[final[array[array >= 0]]] = True
        used = np.flatnonzero(seen)
        if not merged and len(used) == len(labels):
            return held, len(used)  # every unit kept its own label: the arrays stand as they are
        compact = np.full(len(labels), -1, dtype=np.int64)
        compact[used] = np.arange(len(used))
        out = {}
        for k, array in held.items():
            out[k] = np.where(array >= 0, compact[final[np.maximum(array, 0)]], -1)
        return out, len(used)


def _supports(atom: IntArray, owner: IntArray, count: int) -> tuple[IntArray, list[tuple[int, ...]]]:
    """Every atom (ascending) and the joined classes that hold it (ascending places)."""
    pairs = np.unique(atom * count + owner)
    if not len(pairs):
        return pairs, []
    atoms, places = pairs // count, pairs % count
    starts = np.flatnonzero(np.concatenate([[True], atoms[1:] != atoms[:-1]]))
    listed, bounds = places.tolist(), [*starts.tolist(), len(pairs)]
    return atoms[starts], [tuple(listed[a:b]) for a, b in itertools.pairwise(bounds)]


def _sharing_atoms(atom: IntArray, owner: IntArray, chosen: list[int], count: int) -> list[int]:
    """The places among ``chosen`` whose class shares an atom with another chosen class."""
    inside = np.isin(owner, chosen)
    pairs = np.unique(atom[inside] * count + owner[inside])
    atoms = pairs // count
    shared = np.zeros(len(pairs), dtype=bool)
    same = atoms[1:] == atoms[:-1]
    shared[1:] |= same
    shared[:-1] |= same
    return sorted(set((pairs[shared] % count).tolist()))


def _label_root(labels: IntArray, i: int) -> int:
    while labels[i] != i:
        i = int(labels[i])
    return i


class _MemberOrder:
    """Makes a group's members from the classes its units reach, in member order.

    Members are sorted by (not state, virtual, place of the value in the graph, dim), ties in
    the order the search reached their classes; what decides a dim's place, blockers and mixing
    notes is worked out once per class here, not once per group it belongs to.
    """

    def __init__(
        self,
        graph: Graph,
        dims_of: dict[DimRef, list[DimRef]],
        pins: dict[DimRef, list[str]],
        mixing: dict[DimRef, tuple[MixNote, ...]],
        classes: UnionFind,
    ) -> None:
        order: dict[str, int] = {v.id: i for i, v in enumerate(graph.values)}
        self.entries: dict[DimRef, list[tuple[tuple[bool, bool, int, int], DimRef, Value]]] = {}
        for k, dims in dims_of.items():
            rows = []
            for dim in dims:
                value = graph.value(dim.value)
                key = (value.kind not in _STATE, value.kind is ValueKind.VIRTUAL, order.get(value.id, 0), dim.dim)
                rows.append((key, dim, value))
            self.entries[k] = rows
        self.pins = pins
        self.mixing = mixing
        # classes with a pinned or mixed dim: only groups that reach one need the per-member look-ups
        self.pinned = {classes.find(d) for d in pins if d in classes.ids}
        self.mixed = {classes.find(d) for d in mixing if d in classes.ids}

    def group(self, units: dict[DimRef, IntArray], size: int, kind: GroupKind) -> _Made:
        rows: list[tuple[tuple[bool, bool, int, int], Member]] = []
        for k, array in units.items():
            for key, dim, value in self.entries[k]:
                rows.append((key, Member(dim, value, array)))
        rows.sort(key=_first)
        members = tuple(member for _key, member in rows)
        blockers: tuple[str, ...] = ()
        if not self.pinned.isdisjoint(units):
            pins = self.pins
            blockers = tuple(dict.fromkeys(reason for m in members for reason in pins.get(m.dim, ())))
        notes: tuple[MixNote, ...] = ()
        if not self.mixed.isdisjoint(units):
            mixing = self.mixing
            notes = tuple(dict.fromkeys(n for m in members for n in mixing.get(m.dim, ())))
        return _Made(members[0], size, members, blockers, kind, notes)


def _first(row: tuple[tuple[bool, bool, int, int], Member]) -> tuple[bool, bool, int, int]:
    return row[0]
