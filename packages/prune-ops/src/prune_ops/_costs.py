"""Costs from the graph alone: parameters and multiply-accumulates, per op and in total."""

from __future__ import annotations

import math
import types
from collections.abc import Callable, Mapping

import attrs

from prune_graph import Graph, Op, OpKind, ValueId, ValueKind
from prune_ops._plan import Plan

__all__ = ["Costs", "costs"]

ShapeOf = Callable[[ValueId], tuple[int, ...]]


def _conv_macs(op: Op, shape: ShapeOf) -> int:
    x, w = op.inputs[:2]
    side = x if op.attr("transposed", False) else op.outputs[0]
    return math.prod(shape(side)) * math.prod(shape(w)[1:])


def _linear_macs(op: Op, shape: ShapeOf) -> int:
    return math.prod(shape(op.outputs[0])) * shape(op.inputs[0])[-1]


def _matmul_macs(op: Op, shape: ShapeOf) -> int:
    return math.prod(shape(op.outputs[0])) * shape(op.inputs[0])[-1]


def _attention_macs(op: Op, shape: ShapeOf) -> int:
    q, k, v = (shape(i) for i in op.inputs[:3])
    length, e = q[-2], q[-1]
    batch = math.prod(q[:-2])
    return batch * length * k[-2] * (e + v[-1])


def _recurrent_macs(op: Op, shape: ShapeOf) -> int:
    # every step of every sequence multiplies the input by w and the last state by r
    x, w, r = (shape(i) for i in op.inputs[:3])
    return x[0] * x[1] * (math.prod(w) + math.prod(r))


_MACS: Mapping[OpKind, Callable[[Op, ShapeOf], int]] = types.MappingProxyType(
    {
        OpKind.CONV: _conv_macs,
        OpKind.LINEAR: _linear_macs,
        OpKind.MATMUL: _matmul_macs,
        OpKind.ATTENTION: _attention_macs,
        OpKind.RECURRENT: _recurrent_macs,
    }
)


@attrs.frozen
class Costs:
    """Totals and per-op multiply-accumulates (only ops that multiply: conv, linear, matmul, attention, recurrent)."""

    parameters: int
    macs: int
    per_op: tuple[tuple[str, str, int], ...] = attrs.field(repr=False)

    def ratio(self, other: Costs) -> tuple[float, float]:
        """(parameters, MACs) of ``other`` as fractions of these."""
        return (other.parameters / max(self.parameters, 1), other.macs / max(self.macs, 1))


def costs(graph: Graph, plan: Plan | None = None) -> Costs:
    """Parameters (unique parameter tensors) and MACs of ``graph``, or of what ``plan`` makes of it.

    >>> from prune_graph import GraphBuilder, ValueKind, OpKind
    >>> b = GraphBuilder()
    >>> x = b.value("x", (1, 4), "float32", ValueKind.INPUT)
    >>> w = b.value("w", (3, 4), "float32", ValueKind.PARAMETER, "fc", "weight")
    >>> y = b.value("y", (1, 3), "float32", ValueKind.ACTIVATION)
    >>> _ = b.op(OpKind.LINEAR, "linear", [x, w], [y], "fc")
    >>> costs(b.build([x], [y])).macs
    12
    """
    overrides = plan.new_shapes() if plan is not None else {}

    def shape(value_id: ValueId) -> tuple[int, ...]:
        return overrides.get(value_id, graph.shape(value_id))

    parameters = sum(math.prod(shape(v.id)) for v in graph.values if v.kind is ValueKind.PARAMETER)
    per_op = []
    for op in graph.ops:
        rule = _MACS.get(op.kind)
        if rule is not None:
            per_op.append((op.id, op.owner, rule(op, shape)))
    return Costs(parameters, sum(m for _, _, m in per_op), tuple(per_op))
