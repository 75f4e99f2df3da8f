"""Pictures of a traced graph: DOT with groups coloured, SVG through Graphviz, self-contained HTML."""

from __future__ import annotations

import html
import json
import shutil
import subprocess

from prune_graph import to_dot
from prune_ops import GroupSet
from prune_torch._traced import TracedGraph

__all__ = ["graph_dot", "graph_html", "graph_svg"]

_PALETTE = (
    "#8dd3c7",
    "#ffffb3",
    "#bebada",
    "#fb8072",
    "#80b1d3",
    "#fdb462",
    "#b3de69",
    "#fccde5",
    "#bc80bd",
    "#ccebc5",
)


def _colours(groups: GroupSet) -> dict[str, str]:
    colours: dict[str, str] = {}
    for group in groups.prunable:
        colour = _PALETTE[group.id % len(_PALETTE)]
        for member in group.parameters:
            colours.setdefault(member.value.id, colour)
    return colours


def graph_dot(graph: TracedGraph) -> str:
    """DOT text; each prunable group's parameters share a fill colour."""
    return to_dot(graph, _colours(graph.groups()))


def graph_svg(graph: TracedGraph) -> str:
    """SVG text rendered by Graphviz's ``dot``; ``RuntimeError`` when Graphviz is not installed."""
    dot = shutil.which("dot")
    if dot is None:
        raise RuntimeError("SVG output needs Graphviz ('dot' on PATH); use --format dot or html instead")
    done = subprocess.run([dot, "-Tsvg"], input=graph_dot(graph), capture_output=True, text=True, check=True)
    return done.stdout


def graph_html(graph: TracedGraph, title: str = "model") -> str:
    """A self-contained HTML page: the groups as a table and the ops as a list, coloured by group."""
    groups = graph.groups()
    colours = _colours(groups)
    rows = []
    for group in groups:
        if not group.parameters:
            continue
        colour = colours.get(group.parameters[0].value.id, "#eeeeee") if group.prunable else "#eeeeee"
        members = ", ".join(html.escape(m.label) for m in group.parameters)
        status = "prunable" if group.prunable else html.escape("; ".join(group.blockers) or "single unit")
        rows.append(
            f'<tr style="background:{colour}"><td>{group.id}</td><td>{group.kind.value}</td><td>{group.size}</td>'
            f"<td>{members}</td><td>{status}</td></tr>"
        )
    ops = []
    for op in graph.ops:
        shapes = ", ".join(str(tuple(graph.shape(v))) for v in op.outputs)
        params = [i for i in op.inputs if i in colours]
        style = f' style="background:{colours[params[0]]}"' if params else ""
        ops.append(
            f"<li{style}><b>{html.escape(op.kind.value)}</b> {html.escape(op.target)} in "
            f"<code>{html.escape(op.module or '<root>')}</code> → {html.escape(shapes)}</li>"
        )
    data = json.dumps({"ops": len(graph.ops), "groups": len(groups), "prunable": len(groups.prunable)})
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)} dependency graph</title>"
        "<style>body{font-family:sans-serif}table{border-collapse:collapse}td,th{border:1px solid #999;padding:2px 6px}"
        "li{margin:1px 0}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><script type='application/json' id='summary'>{data}</script>"
        "<h2>Groups</h2><table><tr><th>id</th><th>kind</th><th>units</th><th>parameters</th><th>status</th></tr>"
        + "".join(rows)
        + "</table><h2>Ops</h2><ol>"
        + "".join(ops)
        + "</ol></body></html>\n"
    )
