"""The "silenced original": what a pruned model must still compute.

Silencing zeroes, in a copy of the original, the input-side weights of every op that reads a
removed channel (a conv's or linear's input columns, a matmul's rows), so nothing downstream sees
those channels. Which axis of a parameter is its input side follows from the op that reads it,
so the rule is the same for every framework: adapters only write zeros where this says.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs
import numpy as np

from prune_graph import Graph, Op, OpKind, ValueId, ValueKind
from prune_ops._indices import IntArray
from prune_ops._plan import Plan

__all__ = ["Silence", "input_side_axes", "silence"]


def _read_axis(op: Op, graph: Graph) -> list[tuple[ValueId, int]]:
    """(value, axis) pairs of the weight-like inputs of ``op`` that contract over its input channels."""
    if op.kind is OpKind.CONV and len(op.inputs) >= 2:
        return [(op.inputs[1], 0 if op.attr("transposed", False) else 1)]
    if op.kind is OpKind.LINEAR and len(op.inputs) >= 2:
        return [(op.inputs[1], 0 if op.attr("weight_in_out", False) else 1)]
    if op.kind is OpKind.RECURRENT and len(op.inputs) >= 3:
        # w's columns read the layer's input, r's columns the last state: zeroing a removed
        # unit's columns of r keeps it out of every kept unit's gates
        return [(op.inputs[1], 2), (op.inputs[2], 2)]
    if op.kind is OpKind.MATMUL and len(op.inputs) >= 2:
        a, b = op.inputs[:2]
        found = []
        rank_a, rank_b = graph.value(a).rank, graph.value(b).rank
        if rank_b >= 1:
            found.append((b, max(rank_b - 2, 0)))
        if rank_a >= 1:
            found.append((a, rank_a - 1))
        return found
    return []


def _parameter_origin(graph: Graph, value: ValueId, axis: int) -> tuple[ValueId, int] | None:
    """Follow a weight back through transposes and one-input elementwise ops (casts) to its parameter."""
    seen = 0
    while seen < 16:
        record = graph.value(value)
        if record.kind is ValueKind.PARAMETER:
            return value, axis
        op = graph.producer(value)
        if op is None:
            return None
        if op.kind is OpKind.PERMUTE:
            axis = op.ints_attr("perm")[axis]
        elif not (op.kind is OpKind.ELEMENTWISE and len(op.inputs) == 1):
            return None
        value = op.inputs[0]
        seen += 1
    return None


def input_side_axes(graph: Graph) -> dict[ValueId, frozenset[int]]:
    """Every parameter's axes that read channels from the op's other input (its input side).

    >>> from prune_graph import GraphBuilder, OpKind, ValueKind
    >>> b = GraphBuilder()
    >>> x = b.value("x", (1, 4), "float32", ValueKind.INPUT)
    >>> w = b.value("w", (3, 4), "float32", ValueKind.PARAMETER, "fc", "weight")
    >>> y = b.value("y", (1, 3), "float32", ValueKind.ACTIVATION)
    >>> _ = b.op(OpKind.LINEAR, "linear", [x, w], [y], "fc")
    >>> input_side_axes(b.build([x], [y]))
    {'w': frozenset({1})}
    """
    found: dict[ValueId, set[int]] = {}
    for op in graph.ops:
        for value, axis in _read_axis(op, graph):
            origin = _parameter_origin(graph, value, axis)
            if origin is not None:
                found.setdefault(origin[0], set()).add(origin[1])
    return {k: frozenset(v) for k, v in found.items()}


@attrs.frozen(eq=False)
class Silence:
    """Zero ``indices`` along ``axis`` of the parameter ``value`` (owner ``module``, tensor name ``name``)."""

    value: ValueId
    module: str
    name: str
    axis: int
    indices: IntArray = attrs.field(repr=False)


def silence(graph: Graph, plan: Plan, extra: Mapping[ValueId, frozenset[int]] | None = None) -> tuple[Silence, ...]:
    """What to zero in a copy of the original so it computes what ``plan``'s pruned model computes.

    Every plan entry on an input-side axis of a parameter (see :func:`input_side_axes`) becomes
    one :class:`Silence`; ``extra`` adds axes to silence per parameter (an adapter that knows of
    a product of activations with no weight to zero may silence the producer's output side).
    """
    sides = input_side_axes(graph)
    for value, axes in (extra or {}).items():
        sides[value] = sides.get(value, frozenset()) | axes
    by_name: dict[tuple[str, str], ValueId] = {}
    for v in graph.values:
        if v.kind is ValueKind.PARAMETER:
            by_name.setdefault((v.owner, v.name), v.id)
    out = []
    for entry in plan.entries:
        if entry.kind != ValueKind.PARAMETER.value:
            continue
        found = by_name.get((entry.owner, entry.tensor))
        if found is None or entry.axis not in sides.get(found, ()):
            continue
        out.append(Silence(found, entry.owner, entry.tensor, entry.axis, np.asarray(entry.removed, dtype=np.int64)))
    return tuple(out)
