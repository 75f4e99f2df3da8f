"""``trace``: an ONNX model read into a prune-graph :class:`~prune_graph.Graph`.

Names: an op's owner (``Op.module``) is its node's name; a parameter's owner is the name of the
first node that reads it and its tensor name (``Value.name``) is the initializer's name, which is
what plans and apply go by. Value ids are the ONNX tensor names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import numpy as np
import onnx

from prune_graph import Graph, GraphBuilder, GraphError, ValueKind
from prune_onnx._errors import OnnxReadError
from prune_onnx._nodes import NODE_RULES, Context, NodeRule, specs_of
from prune_onnx._read import Analysis, ModelLike, analyse, as_model, input_shapes, prepare
from prune_ops import GroupSet, find_groups

__all__ = ["OnnxGraph", "trace"]


@attrs.frozen
class OnnxGraph(Graph):
    """A :class:`prune_graph.Graph` plus the prepared model it was read from and the analysis behind it.

    It compares and serialises like the plain graph.
    """

    model: onnx.ModelProto | None = attrs.field(default=None, eq=False, repr=False, hash=False)
    analysis: Analysis | None = attrs.field(default=None, eq=False, repr=False, hash=False)
    shapes_in: Mapping[str, tuple[int, ...]] = attrs.field(factory=dict, eq=False, repr=False, hash=False)
    cache: dict[str, Any] = attrs.field(factory=dict, eq=False, repr=False, hash=False)

    def groups(self, ignore: Sequence[str] = (), prune_outputs: bool = False) -> GroupSet:
        """The graph's groups (memoised per ``ignore`` / ``prune_outputs``)."""
        key = f"groups:{sorted(ignore)}:{prune_outputs}"
        if key not in self.cache:
            self.cache[key] = find_groups(self, ignore=tuple(ignore), prune_outputs=prune_outputs)
        return self.cache[key]  # type: ignore[no-any-return]

    def initializer(self, name: str) -> np.ndarray:
        """The value of an initializer of the prepared model."""
        if self.analysis is None or name not in self.analysis.initializers:
            raise OnnxReadError(f"no initializer {name!r} in the model")
        return self.analysis.constants[name]


def trace(
    model: ModelLike,
    input_shapes_: Mapping[str, Sequence[int]] | None = None,
    *,
    rules: Mapping[str, NodeRule] = NODE_RULES,
) -> OnnxGraph:
    """Read ``model`` (a ``ModelProto`` or a path) into a graph at concrete input shapes.

    ``input_shapes_`` maps input names to shapes; inputs not named keep their declared sizes with
    symbolic dims (a dynamic batch) read as 1.

    >>> import onnx
    >>> from onnx import helper, TensorProto
    >>> node = helper.make_node("Relu", ["x"], ["y"])
    >>> g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
    ...                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    >>> [op.kind.value for op in trace(helper.make_model(g)).ops]
    ['elementwise']
    """
    prepared = prepare(as_model(model))
    shapes = input_shapes(prepared, input_shapes_)
    analysis = analyse(prepared, shapes)
    return build(prepared, analysis, shapes, rules)


def _weights(analysis: Analysis) -> frozenset[str]:
    return frozenset(
        n for n in analysis.initializers if np.issubdtype(np.asarray(analysis.constants[n]).dtype, np.floating)
    )


def build(
    prepared: onnx.ModelProto,
    analysis: Analysis,
    shapes_in: Mapping[str, tuple[int, ...]],
    rules: Mapping[str, NodeRule] = NODE_RULES,
) -> OnnxGraph:
    """The graph of an analysed model."""
    weights = _weights(analysis)
    ctx = Context(analysis.shapes, analysis.constants, weights, analysis.opset)
    builder = GraphBuilder()

    def add(name: str, kind: ValueKind, owner: str = "", made: tuple[int, ...] | None = None) -> str:
        if builder.has(name):
            return name
        shape = made if made is not None else analysis.shapes.get(name)
        if shape is None:
            raise OnnxReadError(
                f"value {name!r} (read by node {owner or '?'}) has no static shape after shape inference; "
                "pass input_shapes or check that onnx.shape_inference can read the model"
            )
        dtype = analysis.dtypes.get(name, "float32")
        if kind in (ValueKind.PARAMETER, ValueKind.BUFFER):
            return builder.value(name, shape, dtype, kind, owner, name)
        return builder.value(name, shape, dtype, kind)

    inputs = [add(name, ValueKind.INPUT) for name in shapes_in]
    for node in analysis.nodes:
        try:
            specs = specs_of(node, ctx, rules)
        except (KeyError, IndexError, ValueError, TypeError) as error:
            raise OnnxReadError(f"node {node.name} ({node.op_type}): cannot read it ({error})") from error
        for spec in specs:
            for value in spec.inputs:
                if builder.has(value):
                    continue
                if value in analysis.initializers:
                    kind = ValueKind.PARAMETER if value in weights else ValueKind.BUFFER
                    add(value, kind, node.name)
                elif value in analysis.constants:
                    add(value, ValueKind.CONSTANT)
                else:
                    add(value, ValueKind.ACTIVATION, node.name)
            made = dict(spec.made)
            for value in spec.outputs:
                add(value, ValueKind.ACTIVATION, node.name, made.get(value))
            try:
                builder.op(spec.kind, node.op_type, spec.inputs, spec.outputs, node.name, spec.attrs)
            except GraphError as error:
                raise OnnxReadError(f"node {node.name} ({node.op_type}): {error}") from error
    outputs = []
    for value in prepared.graph.output:
        outputs.append(
            add(value.name, ValueKind.CONSTANT if value.name in analysis.constants else ValueKind.ACTIVATION)
        )
    graph = builder.build(inputs, outputs)
    return OnnxGraph(
        graph.values,
        graph.ops,
        graph.inputs,
        graph.outputs,
        model=prepared,
        analysis=analysis,
        shapes_in=dict(shapes_in),
    )
