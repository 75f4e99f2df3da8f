"""What a group's units are: heads, query heads, head dims or channels."""

from __future__ import annotations

from prune_graph import DimRef, Graph, OpKind, ValueKind
from prune_ops._classes import DimSlots, SlotFactor, UnionFind
from prune_ops._groups import GroupKind

__all__ = ["contracted_in_products", "group_kinds"]


# looked up once: an enum member is a slow class attribute (these run once per value or op of a graph)
_PARAMETER, _BUFFER, _CONSTANT = ValueKind.PARAMETER, ValueKind.BUFFER, ValueKind.CONSTANT
_ATTENTION, _MATMUL = OpKind.ATTENTION, OpKind.MATMUL


def _parameter_derived(graph: Graph) -> set[str]:
    """Parameters and values computed from parameters and constants only (``w.t()``, ``w.to(dtype)``)."""
    derived: set[str] = {v.id for v in graph.values if v.kind is _PARAMETER or v.kind is _BUFFER or v.kind is _CONSTANT}
    for op in graph.ops:
        if op.inputs and all(i in derived for i in op.inputs):
            derived.update(op.outputs)
    return derived


def group_kinds(
    graph: Graph, slots: DimSlots, classes: UnionFind, factors: list[SlotFactor], window_ends: list[tuple[int, int]]
) -> dict[int, GroupKind]:
    """Head and head-dim classes: the parts of a two-way factor whose second part meets an activation product.

    Slices and concats count as meeting it too (partial rotary embeddings split the head dims,
    rotate one part and concatenate them again before the product). Classes are known by their
    root slots; ``window_ends`` holds the classes each offset or window joins.
    """
    if not factors:
        return {}  # kinds belong to the parts of factors only
    derived = _parameter_derived(graph)
    attention: set[int] = set()
    for op in graph.ops:
        if op.kind is _ATTENTION:
            # the per-head dims: q and k contract theirs, v and the output carry theirs (the head
            # and batch dims are not head dims, though a mask may factor them too)
            for value in (*op.inputs[:3], *op.outputs):
                attention.add(classes.find(slots.at(value, graph.value(value).rank - 1)))
        elif op.kind is _MATMUL and op.inputs[0] not in derived and op.inputs[1] not in derived:
            for value in (*op.inputs[:2], *op.outputs):
                attention.update(classes.find(slots.at(value, d)) for d in range(graph.value(value).rank))
    grown = True
    while grown:
        grown = False
        for a, b in window_ends:
            if (a in attention) != (b in attention):
                attention.update((a, b))
                grown = True
    kinds: dict[int, GroupKind] = {}
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


def contracted_in_products(graph: Graph) -> set[DimRef]:
    """Dims summed over in a product of two activations (``q @ k.T``, attention's query-key dim).

    Such a product has no weight to zero: channels pruned there are silenced by zeroing them
    where they are made (the rows of the layers that write them), which is what the pruned
    model computes when zero stays zero on the way.
    """
    derived = _parameter_derived(graph)
    found: set[DimRef] = set()
    for op in graph.ops:
        if op.kind is _MATMUL and op.inputs[0] not in derived and op.inputs[1] not in derived:
            a, b = op.inputs[0], op.inputs[1]
            b_rank = graph.value(b).rank
            found.add(DimRef(a, graph.value(a).rank - 1))
            found.add(DimRef(b, 0 if b_rank == 1 else b_rank - 2))
        elif op.kind is _ATTENTION:
            q, k = op.inputs[0], op.inputs[1]
            found.add(DimRef(q, graph.value(q).rank - 1))
            found.add(DimRef(k, graph.value(k).rank - 1))
    return found
