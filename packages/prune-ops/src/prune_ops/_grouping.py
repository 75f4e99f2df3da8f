"""``find_groups``: every group of a graph, its units, members, kind and blockers.

The dims of a graph fall into *classes* (dims joined by identity couplings carry the same
channels index for index). Offsets and windows (concat, split, slice) join classes index by
index into *atoms*. Factor couplings (a reshape of C into heads × head dims, a flatten) make
the channels of the fine dim follow the channels of its parts, so only atoms that are not the
fine side of a factor can be removed on their own: those are the units of groups. Atoms that
appear in the same set of classes form one group; a group's members are every dim its units
reach, each with the unit of every index (``-1`` where an index belongs to another group).

The search knows a dim by its slot, an int (see :class:`~prune_ops._classes.DimSlots`), and a
class by the slot of its root; records are looked up only to make the members.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from typing import cast

import attrs
import numpy as np

from prune_graph import Graph, IndexMapLike
from prune_ops._classes import DimSlots, SlotFactor, UnionFind, boundary_and_ignored, components, unify_factors
from prune_ops._groups import GroupKind, GroupSet, Member
from prune_ops._indices import IntArray
from prune_ops._kinds import group_kinds
from prune_ops._members import MemberOrder, new_groups
from prune_ops._mixing import MixNote, mixing_of
from prune_ops._reading import Run, read_couplings

__all__ = ["find_groups"]


def find_groups(graph: Graph, *, ignore: Collection[str] = (), prune_outputs: bool = False) -> GroupSet:
    """Every group of ``graph``.

    ``ignore`` holds module paths whose outputs must keep their channels (a classifier, a
    detection head); their input channels can still change. Model inputs are never pruned,
    outputs only with ``prune_outputs``.
    """
    parts = (*graph.couplings_by_op, boundary_and_ignored(graph, ignore, prune_outputs))
    slots = DimSlots(graph)
    read = read_couplings(parts, slots)
    classes, pins, factors = read.classes, read.pins, read.factors
    for at, reason in unify_factors(classes, factors):
        pins.setdefault(at, []).append(reason)
    # no class changes from here on: each slot's class is read from a list
    root_of = classes.flat()
    find = root_of.__getitem__
    dims_of: dict[int, list[int]] = {}
    for at in classes.seen:
        dims_of.setdefault(root_of[at], []).append(at)
    size_of = {k: slots.size[dims[0]] for k, dims in dims_of.items()}

    # atoms: index-level union over the classes that offsets and windows join
    ends = [(find(src), find(dst)) for src, dst, _run in read.windows]  # the classes each joins
    base: dict[int, int] = {}
    total = 0
    for pair in ends:
        for k in pair:
            if k not in base:
                base[k] = total
                total += size_of[k]
    atom = components(total, *_atom_edges(read.windows, ends, base))
    joined_classes = list(base)  # a joined class is known by its place here in the arrays below
    owner = np.repeat(np.arange(len(joined_classes), dtype=np.int64), [size_of[k] for k in joined_classes])
    supports = _atoms_by_support(atom, owner, len(joined_classes))

    fine_classes = {find(f.fine) for f in factors}
    fine_atom = np.zeros(total, dtype=bool)
    fine_joined = [j for j, k in enumerate(joined_classes) if k in fine_classes]
    if fine_joined:
        fine_atom[atom[np.isin(owner, fine_joined)]] = True
    # a channel that offsets or windows carry from one factorised dim into another (a grouped
    # conv's output concatenated into another grouped conv) follows two layouts at once: keep them
    clashing = {joined_classes[j] for j in _sharing_atoms(atom, owner, fine_joined, len(joined_classes))}
    for f in factors:
        if find(f.fine) in clashing:
            clashing.discard(find(f.fine))
            reason = f"its channels are factored two ways (by op {f.link.op} and through a concat, split or slice)"
            pins.setdefault(f.fine, []).append(reason)
    factors_by_part: dict[int, list[SlotFactor]] = {}
    for f in factors:
        for part in f.parts:
            if part is not None:
                factors_by_part.setdefault(find(part), []).append(f)

    # roots: plain classes that are not fine, and atoms of joined classes grouped by support;
    # each seed: its classes, the units of the first one's indices, its count of units, and the
    # units of every class it reaches when they are known without a search
    seeds: list[tuple[Sequence[int], IntArray, int, dict[int, IntArray] | None]] = []
    context = _Context(classes, base, atom, size_of, factors_by_part)
    spreads = context.spreads
    for k in dims_of:
        if k not in base and k not in fine_classes and size_of[k] > 0:
            plain = np.arange(size_of[k], dtype=np.int64)
            # a plain class that is no factor's part reaches nothing else (see _Context.expand)
            seeds.append(((k,), plain, size_of[k], {k: plain} if k not in spreads else None))
    # a support holds a fine class for all its atoms or for none
    by_support = [(support, atom_roots) for support, atom_roots in supports if not fine_atom[atom_roots[0]]]
    unit_of_atom = np.full(total, -1, dtype=np.int64)
    for support, atom_roots in by_support:
        unit_of_atom[atom_roots] = np.arange(len(atom_roots), dtype=np.int64)
        held_by = [joined_classes[j] for j in support]
        first_units = unit_of_atom[context.atoms_of[held_by[0]]]
        # every class of the support holds these atoms, with the same units: writing them through the
        # first class writes them for all, and reaches the others (they share an atom with it);
        # with no factor to follow, the units reach exactly the classes of the support
        ready = None if context.spreads else {k: unit_of_atom[context.atoms_of[k]] for k in held_by}
        seeds.append((held_by, first_units, len(atom_roots), ready))
        unit_of_atom[atom_roots] = -1
    if context.spreads:
        context.meet(_spaces(ends, base, len(slots)), [[joined_classes[j] for j in s] for s, _atoms in supports])
    kind_of = group_kinds(graph, slots, classes, factors, ends)
    mixing = {slots.slot(dim): notes for dim, notes in mixing_of(graph, read.mixes).items()}
    members_of = MemberOrder(graph, slots, dims_of, pins, mixing, root_of)
    found: list[tuple[tuple[int, str], int, tuple[str, ...], GroupKind, tuple[MixNote, ...]]] = []
    channels = GroupKind.CHANNELS
    for seed_classes, seed_units, count, ready in seeds:
        units, size = (ready, count) if ready is not None else context.expand(seed_classes[0], seed_units, count)
        kind = next((kind_of[k] for k in seed_classes if k in kind_of), channels) if kind_of else channels
        order, blockers, notes = members_of.group(units)
        found.append((order, size, blockers, kind, notes))
    made = [
        (order, size, members, blockers, kind, notes)
        for (order, size, blockers, kind, notes), members in zip(found, members_of.members())
    ]
    # sorted by root (state first, then path); the search order breaks ties, as a stable sort would
    made.sort(key=_first)
    return GroupSet(graph, new_groups(made))


# a group found, before its place (its id) among the sorted groups is known: its sort key first
_Made = tuple[tuple[int, str], int, tuple[Member, ...], tuple[str, ...], GroupKind, tuple[MixNote, ...]]


def _first(made: _Made) -> tuple[int, str]:
    return made[0]


def _spaces(ends: list[tuple[int, int]], base: dict[int, int], count: int) -> dict[int, list[int]]:
    """For each joined class, the classes offsets and windows join it with (its space), in ``base`` order."""
    joined = UnionFind(count)
    for src_class, dst_class in ends:
        joined.union(src_class, dst_class)
    spaces: dict[int, list[int]] = {}
    for k in base:
        spaces.setdefault(joined.find(k), []).append(k)
    return {k: members for members in spaces.values() for k in members}


def _atom_edges(
    windows: list[tuple[int, int, Run | IndexMapLike]], ends: list[tuple[int, int]], base: dict[int, int]
) -> tuple[list[IntArray], list[IntArray]]:
    """The index pairs offsets and windows join, as places in the joined classes laid end to end."""
    edges_a: list[IntArray] = []
    edges_b: list[IntArray] = []
    # offsets and windows as runs, all laid out in one go (a concat-heavy net has hundreds)
    runs: list[Run] = []
    for (_src, _dst, run), (src_class, dst_class) in zip(windows, ends):
        src, dst = base[src_class], base[dst_class]
        if type(run) is tuple:
            first_a, step, first_b, length = run
            runs.append((src + first_a, step, dst + first_b, length))
        else:  # any other map through its own domain and forward
            index_map = cast(IndexMapLike, run)
            domain = index_map.domain()
            edges_a.append(src + np.asarray(domain, dtype=np.int64))
            edges_b.append(dst + np.asarray(index_map.forward(domain), dtype=np.int64))
    if runs:
        first_a, step, first_b, length = np.array(runs, dtype=np.int64).T
        ends_at = np.cumsum(length)
        steps = np.arange(int(ends_at[-1]), dtype=np.int64) - np.repeat(ends_at - length, length)
        edges_a.append(np.repeat(first_a, length) + np.repeat(step, length) * steps)
        edges_b.append(np.repeat(first_b, length) + steps)
    return edges_a, edges_b


@attrs.define
class _Context:
    classes: UnionFind
    base: dict[int, int]
    atom: IntArray
    size_of: dict[int, int]
    factors_by_part: dict[int, list[SlotFactor]]
    atoms_of: dict[int, IntArray] = attrs.field(factory=dict)
    # for each joined class, the other classes of its space that share an atom with it, in space order:
    # only those can receive units from it (a chain of concats makes a space of hundreds of classes
    # where each class meets two or three)
    neighbours: dict[int, list[int]] = attrs.field(factory=dict)
    # unit by atom, -1 where unset: reused by every search, which clears what it wrote
    scratch: IntArray = attrs.field(factory=lambda: np.zeros(0, dtype=np.int64))
    # for each part class of a factor: the fine class and, for each fine index, the part's index
    spreads: dict[int, list[tuple[int, IntArray]]] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        for k, start in self.base.items():
            self.atoms_of[k] = self.atom[start : start + self.size_of[k]]
        self.scratch = np.full(len(self.atom), -1, dtype=np.int64)
        coords_of: dict[tuple[tuple[int, ...], int], IntArray] = {}  # factors of one shape share them
        for k, factors in self.factors_by_part.items():
            for factor in factors:
                fine = self.classes.find(factor.fine)
                for axis, part in enumerate(factor.parts):
                    if part is not None and self.classes.find(part) == k:
                        key = (factor.link.sizes, axis)
                        if key not in coords_of:
                            coords_of[key] = _part_coords(*key)
                        self.spreads.setdefault(k, []).append((fine, coords_of[key]))

    def meet(self, spaces: dict[int, list[int]], supports: Collection[list[int]]) -> None:
        """Fill ``neighbours`` from the distinct sets of classes that hold one atom."""
        met: dict[int, set[int]] = {k: set() for k in self.base}
        for classes in supports:
            for k in classes:
                met[k].update(classes)
        for k in self.base:
            self.neighbours[k] = [other for other in spaces[k] if other != k and other in met[k]]

    def _holding(self, joined: list[int]) -> dict[int, IntArray]:
        """The joined classes among ``joined`` whose atoms hold a unit now, with the unit of every index."""
        if not joined:
            return {}
        arrays = [self.atoms_of[k] for k in joined]
        sizes = np.array([len(a) for a in arrays], dtype=np.int64)
        ends = np.cumsum(sizes)
        starts = ends - sizes
        values = self.scratch[np.concatenate(arrays)]
        if not len(values):
            return {}
        # one maximum per class (an empty class reads its neighbour's: it is dropped below anyway)
        highest = np.maximum.reduceat(values, np.minimum(starts, len(values) - 1)).tolist()
        return {
            k: values[start:end]
            for k, start, end, high in zip(joined, starts.tolist(), ends.tolist(), highest)
            if end > start and high >= 0
        }

    def expand(self, first: int, seed: IntArray, count: int) -> tuple[dict[int, IntArray], int]:
        """Follow atoms and factors from class ``first`` (``count`` units, ``seed`` the unit of each
        of its indices, every unit there; the caller hands the array over); merge units that meet.

        Returns the classes that hold units, each with the unit of every index (``-1``: none), and
        how many units there are after merging (numbered from 0 in the order of the seed's).
        A joined class holds no array of its own while the search runs: its units are those of
        its atoms (``scratch``), so writing one class reaches every class sharing those atoms at once.
        """
        if first not in self.base and first not in self.spreads:
            return {first: seed}, count  # a plain class that is no factor's part reaches nothing else
        units: dict[int, IntArray] = {}  # plain classes
        at = self.scratch
        written: list[IntArray] = []  # atoms to clear afterwards
        reached: dict[int, None] = {}  # joined classes that may hold units
        labels = np.arange(count, dtype=np.int64)
        merged = False  # whether any two units were merged (labels no longer the identity)
        queue: list[int] = []  # classes whose units changed: their factors are followed

        def merge(a: IntArray, b: IntArray) -> None:
            nonlocal merged
            merged = True
            for x, y in set(zip(a.tolist(), b.tolist())):
                rx, ry = _label_root(labels, x), _label_root(labels, y)
                if rx != ry:
                    labels[max(rx, ry)] = min(rx, ry)

        def assign_joined(k: int, new: IntArray) -> None:
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

        def assign(k: int, new: IntArray) -> None:
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
            assign(first, seed)
            while queue:
                k = queue.pop()
                spreads = self.spreads.get(k)
                if spreads:
                    array = at[self.atoms_of[k]] if k in self.base else units[k]
                    for fine, coords in spreads:
                        assign(fine, array[coords])
            held = {k: array for k, array in units.items() if array.max(initial=-1) >= 0}
            held.update(self._holding(list(reached)))
        finally:
            for where in written:
                at[where] = -1
        if not merged:
            # the first class got every unit and kept it (atoms are written once): all are used
            return held, count
        # labels point to smaller labels: jumping along them reaches each label's root
        final = labels
        while True:
            jumped = final[final]
            if np.array_equal(jumped, final):
                break
            final = jumped
        seen = np.zeros(len(labels), dtype=bool)
        for array in held.values():
            seen[final[array[array >= 0]]] = True
        used = np.flatnonzero(seen)
        compact = np.full(len(labels), -1, dtype=np.int64)
        compact[used] = np.arange(len(used))
        out = {}
        for k, array in held.items():
            out[k] = np.where(array >= 0, compact[final[np.maximum(array, 0)]], -1)
        return out, len(used)


def _atoms_by_support(
    atom: IntArray, owner: IntArray, count: int, cells: int = 1 << 24
) -> list[tuple[tuple[int, ...], IntArray]]:
    """Atoms grouped by their support (the joined classes that hold them, ascending places).

    Each distinct support with its atoms (ascending), in the order of their smallest atoms. Each
    atom's support is a row of bits, one per joined class, and equal rows are found by one sort
    of the rows; with more than ``cells`` bits in all, by a key per atom instead (less memory).
    """
    if not len(atom):
        return []
    labels = np.zeros(int(atom.max()) + 1, dtype=bool)
    labels[atom] = True
    roots = np.flatnonzero(labels)  # the atoms, ascending
    width = (count + 63) // 64 * 64  # whole 64-bit words per row
    if len(roots) * width > cells:
        return _atoms_by_support_keyed(atom, owner, count)
    present = np.zeros((len(roots), width), dtype=bool)
    present[(np.cumsum(labels) - 1)[atom], owner] = True  # each place's atom (counted from 0) holds its class
    rows = np.packbits(present, axis=1, bitorder="little").view(np.uint64)
    order = np.lexsort(rows.T[::-1])  # stable: atoms ascending among equal rows
    ordered = rows[order]
    heads = np.flatnonzero(np.concatenate([[True], (ordered[1:] != ordered[:-1]).any(axis=1)]))
    bounds = np.append(heads, len(order)).tolist()
    firsts = order[heads]  # each support's smallest atom
    grouped = roots[order]
    return [
        (tuple(np.flatnonzero(present[firsts[i]]).tolist()), grouped[bounds[i] : bounds[i + 1]])
        for i in np.argsort(firsts).tolist()
    ]


def _atoms_by_support_keyed(atom: IntArray, owner: IntArray, count: int) -> list[tuple[tuple[int, ...], IntArray]]:
    """:func:`_atoms_by_support`, each atom's support read as the bytes of its run of places."""
    pairs = _sorted_unique(atom * count + owner)
    atoms, places = pairs // count, pairs % count
    starts = np.flatnonzero(np.concatenate([[True], atoms[1:] != atoms[:-1]]))
    width = places.itemsize
    raw = places.tobytes()
    bounds = (np.append(starts, len(pairs)) * width).tolist()
    by_support: dict[bytes, list[int]] = {}
    for root, start, end in zip(atoms[starts].tolist(), bounds, bounds[1:]):
        by_support.setdefault(raw[start:end], []).append(root)
    return [
        (tuple(np.frombuffer(key, dtype=places.dtype).tolist()), np.array(roots, dtype=np.int64))
        for key, roots in by_support.items()
    ]


def _sharing_atoms(atom: IntArray, owner: IntArray, chosen: list[int], count: int) -> list[int]:
    """The places among ``chosen`` whose class shares an atom with another chosen class."""
    if not chosen:
        return []
    inside = np.isin(owner, chosen)
    pairs = _sorted_unique(atom[inside] * count + owner[inside])
    atoms = pairs // count
    shared = np.zeros(len(pairs), dtype=bool)
    same = atoms[1:] == atoms[:-1]
    shared[1:] |= same
    shared[:-1] |= same
    return sorted(set((pairs[shared] % count).tolist()))


def _part_coords(sizes: tuple[int, ...], axis: int) -> IntArray:
    """For each index of a row-major product of ``sizes``, its index along ``axis``."""
    return (np.arange(math.prod(sizes), dtype=np.int64) // math.prod(sizes[axis + 1 :])) % sizes[axis]


def _sorted_unique(keys: IntArray) -> IntArray:
    """``np.unique`` of ints by a sort (numpy 2's hash-based unique is several times slower here)."""
    keys = np.sort(keys)
    first = np.ones(len(keys), dtype=bool)
    first[1:] = keys[1:] != keys[:-1]
    return keys[first]


def _label_root(labels: IntArray, i: int) -> int:
    while labels[i] != i:
        i = int(labels[i])
    return i
