"""What a node rule is: a node and its :class:`Context` in, the :class:`Spec` of each op it stands for out."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import attrs
import numpy as np
import onnx
from onnx import helper

from prune_graph import AttrValue, OpKind

__all__ = ["Context", "NodeRule", "Spec", "attr", "data", "int_attr", "opaque", "outs"]


@attrs.frozen
class Spec:
    """One op of the graph: kind, value ids in and out, attributes, and intermediate values it makes."""

    kind: OpKind
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: Mapping[str, AttrValue] = attrs.field(factory=dict)
    made: tuple[tuple[str, tuple[int, ...]], ...] = ()


@attrs.frozen(eq=False)
class Context:
    """What a node rule may ask: shapes of values, the values of constants, the opset, which values are weights."""

    shapes: Mapping[str, tuple[int, ...]]
    constants: Mapping[str, np.ndarray]
    weights: frozenset[str]
    opset: int

    def shape(self, name: str) -> tuple[int, ...]:
        return self.shapes[name]

    def const(self, name: str) -> np.ndarray | None:
        return self.constants.get(name) if name else None


NodeRule = Callable[[onnx.NodeProto, Context], list[Spec]]


def attr(node: onnx.NodeProto, name: str, default: object = None) -> object:
    """The value of attribute ``name`` of ``node``, or ``default``."""
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def int_attr(node: onnx.NodeProto, name: str, default: int) -> int:
    """An int attribute, or ``default`` when it is missing or not an int."""
    value = attr(node, name, default)
    return int(value) if isinstance(value, (int, np.integer)) else default


def data(node: onnx.NodeProto) -> tuple[str, ...]:
    """The inputs a node is given (optional inputs left empty are skipped)."""
    return tuple(i for i in node.input if i)


def outs(node: onnx.NodeProto) -> tuple[str, ...]:
    """The outputs a node is asked for."""
    return tuple(o for o in node.output if o)


def opaque(node: onnx.NodeProto, ctx: Context) -> list[Spec]:
    """Every dim of every input and output is pinned."""
    return [Spec(OpKind.OPAQUE, data(node), outs(node))]
