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

    ``colours`` maps op ids or value ids to fill colours (e.g. the group a parameter belongs to).
    """
    colours = colours or {}
    lines = [f"digraph {_quote(name)} {{", "  rankdir=TB;", '  node [fontname="Helvetica", fontsize=10];']
    shown_values = set(graph.inputs) | set(graph.outputs)
    shown_values |= {v.id for v in graph.values if v.kind in (ValueKind.PARAMETER, ValueKind.BUFFER)}
    for value in graph.values:
        if value.id in shown_values:
            label = f"{value.path}\n{tuple(value.shape)}"
            fill = colours.get(value.id, "white")
            lines.append(
                f"  {_quote('v:' + value.id)} [shape=ellipse, style=filled, fillcolor={_quote(fill)}, label={_quote(label)}];"
            )
    for op in graph.ops:
        label = f"{op.kind.value}\n{op.module or '<root>'}"
        fill = colours.get(op.id, "lightgrey" if op.kind.value == "opaque" else "white")
        lines.append(
            f"  {_quote('o:' + op.id)} [shape=box, style=filled, fillcolor={_quote(fill)}, label={_quote(label)}];"
        )
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
