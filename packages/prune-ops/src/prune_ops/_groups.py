"""Groups: the sets of coupled channels that must be removed together.

The dims of a graph fall into *classes* (dims joined by identity couplings carry the same
channels index for index). Offsets and windows (concat, split, slice) join classes index by
index into *atoms*. Factor couplings (a reshape of C into heads × head dims, a flatten) make
the channels of the fine dim follow the channels of its parts, so only atoms that are not the
fine side of a factor can be removed on their own: those are the units of groups. Atoms that
appear in the same set of classes form one group; a group's members are every dim its units
reach, each with the unit of every index (``-1`` where an index belongs to another group).
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterator, Sequence
from typing import Any

import attrs
import numpy as np

from prune_graph import (
    Absorb,
    Broadcast,
    Coupling,
    DimRef,
    FactorLink,
    Graph,
    Identity,
    Link,
    OpKind,
    Pin,
    Value,
    ValueKind,
)
from prune_ops._indices import IntArray

__all__ = ["Group", "GroupKind", "GroupSet", "Member", "find_groups"]

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
    normalised: bool = False

    @property
    def prunable(self) -> bool:
        """No member is pinned and there are at least two units."""
        return not self.blockers and self.size > 1

    @property
    def parameters(self) -> tuple[Member, ...]:
        """Members that are parameter or buffer dims."""
        return tuple(m for m in self.members if m.is_parameter)

    @property
    def modules(self) -> tuple[str, ...]:
        """Modules owning the group's parameters, in order of appearance."""
        return tuple(dict.fromkeys(m.value.module for m in self.parameters))

    @property
    def root_member(self) -> Member:
        """The member the group is named after."""
        return next(m for m in self.members if m.dim == self.root)

    def removal(self, units: IntArray) -> dict[DimRef, IntArray]:
        """Indices removed from every member when ``units`` go."""
        out = {}
        for member in self.members:
            removed = member.indices(units)
            if removed.size:
                out[member.dim] = removed
        return out

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
        return f"group {self.id} ({self.size} {kind}) root {self.root_member.label}: {params} [{state}]"


class GroupSet:
    """All groups of a graph, with lookups by dim."""

    def __init__(self, graph: Graph, groups: Sequence[Group]) -> None:
        self.graph = graph
        self.groups = tuple(groups)
        self._by_dim: dict[DimRef, list[tuple[Group, Member]]] = {}
        for group in self.groups:
            for member in group.members:
                self._by_dim.setdefault(member.dim, []).append((group, member))

    def __iter__(self) -> Iterator[Group]:
        return iter(self.groups)

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, index: int) -> Group:
        return self.groups[index]

    def containing(self, dim: DimRef) -> tuple[tuple[Group, Member], ...]:
        """The groups that have ``dim`` as a member, with that member."""
        return tuple(self._by_dim.get(dim, ()))

    @property
    def prunable(self) -> tuple[Group, ...]:
        """Groups that can lose units and hold at least one parameter (buffers alone do not count)."""
        return tuple(
            g for g in self.groups if g.prunable and any(m.value.kind is ValueKind.PARAMETER for m in g.members)
        )


class _UnionFind:
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
        return self.dims[self._root(self._id(x))]

    def union(self, a: DimRef, b: DimRef) -> None:
        ra, rb = self._root(self._id(a)), self._root(self._id(b))
        if ra != rb:
            self.up[rb] = ra


def _components(total: int, edges_a: list[IntArray], edges_b: list[IntArray]) -> IntArray:
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


def _find_root(parent: IntArray, i: int) -> int:
    root = i
    while parent[root] != root:
        root = int(parent[root])
    while parent[i] != root:
        parent[i], i = root, int(parent[i])
    return root


def _inside(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == m or module.startswith(m + ".") or m == "" for m in prefixes)


def _boundary_and_ignored(graph: Graph, ignore: Collection[str], prune_outputs: bool) -> list[Pin]:
    """Pins for model inputs and outputs, and for the outputs of ignored modules.

    An ignored module keeps the channels it hands to the rest of the model (the values its ops
    write that are read outside it or returned); its input channels can still change.
    """
    pins = [p for p in graph.boundary_pins() if not (prune_outputs and p.dim.value in graph.outputs)]
    ignored = tuple(ignore)
    if not ignored:
        return pins
    for op in graph.ops:
        if not _inside(op.module, ignored):
            continue
        for out in op.outputs:
            leaves = out in graph.outputs or any(not _inside(c.module, ignored) for c in graph.consumers(out))
            if not leaves:
                continue
            for d, size in enumerate(graph.shape(out)):
                if size > 1:
                    pins.append(Pin(DimRef(out, d), f"output of ignored module {op.module}", op.id))
    return pins


def _unify_factors(classes: _UnionFind, factors: list[FactorLink]) -> list[Pin]:
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
                elif (a or b) is not None and (a or b) not in pinned:
                    part = a if a is not None else b
                    the_part = part
                    if the_part is not None:
                        pinned.add(the_part)
                        pins.append(Pin(the_part, f"it is a fixed factor of {factor.fine} elsewhere", factor.op))
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


def find_groups(graph: Graph, *, ignore: Collection[str] = (), prune_outputs: bool = False) -> GroupSet:
    """Every group of ``graph``.

    ``ignore`` holds module paths whose outputs must keep their channels (a classifier, a
    detection head); their input channels can still change. Model inputs are never pruned,
    outputs only with ``prune_outputs``.
    """
    couplings: list[Coupling] = [*graph.couplings, *_boundary_and_ignored(graph, ignore, prune_outputs)]
    classes = _UnionFind()
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
        elif isinstance(c, (Absorb, Broadcast)):
            classes.find(c.dim)
    for pin in _unify_factors(classes, factors):
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
    atom = _components(total, edges_a, edges_b)
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

    joined = _UnionFind()
    for link in windows:
        joined.union(classes.find(link.src), classes.find(link.dst))
    spaces: dict[DimRef, list[DimRef]] = {}
    for k in base:
        spaces.setdefault(joined.find(k), []).append(k)
    order: dict[str, int] = {v.id: i for i, v in enumerate(graph.values)}
    context = _Context(classes, base, atom, positions, size_of, factors_by_part)
    context.spaces = {k: members for members in spaces.values() for k in members}
    kind_of = _kinds(graph, classes, factors, windows)
    mixing = _mixing_dims(graph, couplings)
    groups: list[Group] = []
    for seed in seeds:
        units = context.expand(seed)
        group = _make_group(len(groups), graph, units, dims_of, pins, order)
        kind = next((kind_of[k] for k in seed if k in kind_of), GroupKind.CHANNELS)
        normalised = any(m.dim in mixing for m in group.members)
        groups.append(attrs.evolve(group, kind=kind, normalised=normalised))
    groups.sort(key=lambda g: _order_key(graph, g))
    return GroupSet(graph, [attrs.evolve(g, id=i) for i, g in enumerate(groups)])


def _parameter_derived(graph: Graph) -> set[str]:
    """Parameters and values computed from parameters and constants only (``w.t()``, ``w.to(dtype)``)."""
    derived: set[str] = {
        v.id for v in graph.values if v.kind in (ValueKind.PARAMETER, ValueKind.BUFFER, ValueKind.CONSTANT)
    }
    for op in graph.ops:
        if op.inputs and all(i in derived for i in op.inputs):
            derived.update(op.outputs)
    return derived


def _kinds(
    graph: Graph, classes: _UnionFind, factors: list[FactorLink], windows: list[Link]
) -> dict[DimRef, GroupKind]:
    """Head and head-dim classes: the parts of a two-way factor whose second part meets an activation product.

    Slices and concats count as meeting it too (partial rotary embeddings split the head dims,
    rotate one part and concatenate them again before the product).
    """
    derived = _parameter_derived(graph)
    attention: set[DimRef] = set()
    for op in graph.ops:
        products = op.kind is OpKind.ATTENTION or (
            op.kind is OpKind.MATMUL and op.inputs[0] not in derived and op.inputs[1] not in derived
        )
        if products:
            for value in (*op.inputs[:2], *op.outputs):
                attention.update(classes.find(DimRef(value, d)) for d in range(graph.value(value).rank))
    grown = True
    while grown:
        grown = False
        for link in windows:
            a, b = classes.find(link.src), classes.find(link.dst)
            if (a in attention) != (b in attention):
                attention.update((a, b))
                grown = True
    kinds: dict[DimRef, GroupKind] = {}
    for factor in factors:
        if len(factor.parts) != 2 or None in factor.parts:
            continue
        heads, dims = (classes.find(p) for p in factor.parts if p is not None)
        if dims in attention:
            kinds.setdefault(heads, GroupKind.HEADS)
            kinds.setdefault(dims, GroupKind.HEAD_DIMS)
    # heads made of two factors (grouped-query attention: key/value heads × queries per key/value head)
    changed = True
    while changed:
        changed = False
        for factor in factors:
            if kinds.get(classes.find(factor.fine)) is GroupKind.HEADS:
                for axis, part in enumerate(factor.parts):
                    if part is not None and classes.find(part) not in kinds:
                        kinds[classes.find(part)] = GroupKind.HEADS if axis == 0 else GroupKind.QUERY_HEADS
                        changed = True
    return kinds


def _mixing_dims(graph: Graph, couplings: Sequence[Coupling]) -> set[DimRef]:
    """Dims whose channels are normalised together (LayerNorm, GroupNorm, a mean over them)."""
    found = {c.dim for c in couplings if isinstance(c, Absorb)}
    for op in graph.ops:
        if op.kind is OpKind.NORM and op.attr("mixes", False):
            found.update(DimRef(op.inputs[0], d) for d in op.ints_attr("channel_dims"))
    return found


def _order_key(graph: Graph, group: Group) -> tuple[int, str]:
    value = group.root_member.value
    return (0 if value.kind in _STATE else 1, value.path)


@attrs.define
class _Context:
    classes: _UnionFind
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
