"""Graphviz DOT output."""

from __future__ import annotations

from collections.abc import Mapping

from prune_graph._graph import Graph
from prune_graph._values import ValueKind

__all__ = ["to_dot"]


def _quote(text: str) -> str:
    """A DOT string literal; line breaks in ``text`` become DOT's ``\\n``."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def to_dot(graph: Graph, colours: Mapping[str, str] | None = None, name: str = "model") -> str:
    """The graph as DOT: one box per op, one ellipse per input, parameter and output.

    Each node's ``id`` is its DOT name (``v:<value id>`` or ``o:<op id>``), which Graphviz passes
    on to SVG elements, so a page can find a value's node. Scalar parameters and buffers no op
    reads (``num_batches_tracked``) are left out.

    ``colours`` maps op ids or value ids to fill colours (e.g. the group a parameter belongs to).
    """
    colours = colours or {}
    lines = [f"digraph {_quote(name)} {{", "  rankdir=TB;", '  node [fontname="Helvetica", fontsize=10];']
    shown_values = set(graph.inputs) | set(graph.outputs)
    # a scalar no op reads (a BatchNorm's num_batches_tracked counter) carries no channels: it
    # would only be an unconnected node
    shown_values |= {
        v.id
        for v in graph.values
        if v.kind in (ValueKind.PARAMETER, ValueKind.BUFFER) and (graph.consumers(v.id) or any(s > 1 for s in v.shape))
    }
    for value in graph.values:
        if value.id in shown_values:
            label = f"{value.path}\n{tuple(value.shape)}"
            fill = colours.get(value.id, "white")
            node = _quote("v:" + value.id)
            lines.append(
                f"  {node} [shape=ellipse, style=filled, fillcolor={_quote(fill)}, label={_quote(label)}, id={node}];"
            )
    for op in graph.ops:
        label = f"{op.kind.value}\n{op.owner or '<root>'}"
        fill = colours.get(op.id, "lightgrey" if op.kind.value == "opaque" else "white")
        node = _quote("o:" + op.id)
        lines.append(f"  {node} [shape=box, style=filled, fillcolor={_quote(fill)}, label={_quote(label)}, id={node}];")
    for op in graph.ops:
        for value_id in op.inputs:
            producer = graph.producer(value_id)
            src = (
                "o:" + producer.id if producer is not None else ("v:" + value_id if value_id in shown_values else None)
            )
            if src is not None:
                shape = tuple(graph.shape(value_id))
                lines.append(f"  {_quote(src)} -> {_quote('o:' + op.id)} [label={_quote(str(shape))}, fontsize=8];")
    for value_id in graph.outputs:
        producer = graph.producer(value_id)
        if producer is not None:
            lines.append(f"  {_quote('o:' + producer.id)} -> {_quote('v:' + value_id)};")
    lines.append("}")
    return "\n".join(lines) + "\n"
