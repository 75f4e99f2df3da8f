"""Pictures of a traced graph: DOT with groups coloured, SVG through Graphviz, a self-contained HTML page.

Group colours come from the golden angle: group *k* (in order among the prunable groups) gets hue
``k · 137.5°``, which never repeats, and neighbours in the list land far apart on the colour wheel;
lightness and saturation walk their own irrational steps (the plastic-number sequence), so that
groups close in hue still differ. Blocked groups are grey.
"""

from __future__ import annotations

import colorsys
import html
import json
import re
import shutil
import subprocess

from prune_graph import to_dot
from prune_ops import Group, GroupSet
from prune_torch._traced import TracedGraph

__all__ = ["graph_dot", "graph_html", "graph_svg", "group_colour"]

GOLDEN_ANGLE = 137.50776405003785
BLOCKED = "#e4e4e4"
# 1/ρ and 1/ρ² for the plastic number ρ: the R2 low-discrepancy sequence's two steps
_STEP_L = 0.7548776662466927
_STEP_S = 0.5698402909980532


def group_colour(index: int) -> str:
    """The fill colour of the ``index``-th prunable group, as ``#rrggbb``.

    >>> group_colour(0), group_colour(1)
    ('#cf6e6e', '#aef2c2')
    """
    hue = (index * GOLDEN_ANGLE) % 360 / 360
    lightness = 0.62 + 0.26 * ((index * _STEP_L) % 1)
    saturation = 0.50 + 0.40 * ((index * _STEP_S) % 1)
    red, green, blue = colorsys.hls_to_rgb(hue, lightness, saturation)
    return f"#{round(red * 255):02x}{round(green * 255):02x}{round(blue * 255):02x}"


def _colours(groups: GroupSet) -> tuple[dict[int, str], dict[str, str]]:
    """Colour by group id, and by value id (a parameter takes the colour of its first prunable group)."""
    by_group = {group.id: group_colour(k) for k, group in enumerate(groups.prunable)}
    by_value: dict[str, str] = {}
    for group in groups.prunable:
        for member in group.parameters:
            by_value.setdefault(member.value.id, by_group[group.id])
    return by_group, by_value


def graph_dot(graph: TracedGraph) -> str:
    """DOT text; each prunable group's parameters share a fill colour."""
    return to_dot(graph, _colours(graph.groups())[1])


def graph_svg(graph: TracedGraph) -> str:
    """SVG text rendered by Graphviz's ``dot``; ``RuntimeError`` when Graphviz is not installed."""
    dot = shutil.which("dot")
    if dot is None:
        raise RuntimeError("SVG output needs Graphviz ('dot' on PATH); use --format dot or html instead")
    done = subprocess.run([dot, "-Tsvg"], input=graph_dot(graph), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(
            f"Graphviz failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}"
        )
    return done.stdout


def _inline_svg(svg: str) -> str:
    """Graphviz's SVG without the XML prolog and doctype, ready to sit inside an HTML page."""
    return svg[svg.index("<svg") :]


def _group_data(group: Group, colour: str) -> dict[str, object]:
    return {
        "id": group.id,
        "kind": group.kind.value,
        "units": group.size,
        "prunable": group.prunable,
        "colour": colour,
        "members": [m.label for m in group.members if m.value.kind.value in ("parameter", "buffer")],
        "values": sorted({"v:" + m.value.id for m in group.parameters}),
        "why": list(group.blockers) if not group.prunable else [],
    }


_STYLE = """
*{box-sizing:border-box}
body{margin:0;font:13px/1.4 system-ui,sans-serif;color:#222;display:flex;height:100vh}
#side{width:380px;min-width:380px;overflow:auto;border-right:1px solid #ccc;padding:8px 10px}
#main{flex:1;position:relative;overflow:hidden;background:#fafafa}
#view{position:absolute;inset:0;cursor:grab}
#view.dragging{cursor:grabbing}
#canvas{transform-origin:0 0;position:absolute;left:0;top:0}
#tools{position:absolute;right:10px;top:10px;z-index:2;display:flex;gap:4px}
#tools button{font-size:14px;min-width:30px}
h1{font-size:16px;margin:4px 0}
table{border-collapse:collapse;width:100%}
td,th{border:1px solid #bbb;padding:2px 5px;text-align:left;vertical-align:top}
tr.group{cursor:pointer}
tr.group.selected td{outline:2px solid #000}
td.members{font-family:ui-monospace,monospace;font-size:11px;word-break:break-all}
#details{margin:8px 0;padding:6px;border:1px solid #999;background:#fff;min-height:3em}
#details ul{margin:2px 0;padding-left:18px;font-family:ui-monospace,monospace;font-size:11px}
.note{background:#fff6d5;border:1px solid #e0c060;padding:6px;margin:6px 0}
#fallback{padding:10px 16px;overflow:auto;position:absolute;inset:0}
#fallback li{margin:1px 0;padding:0 4px}
svg g.node.dim{opacity:.25}
svg g.node.hit polygon,svg g.node.hit ellipse{stroke:#000;stroke-width:3}
"""

# pan with the mouse, zoom with the wheel (around the pointer) or the buttons; click a group's row
# (or a node) to see its members and why it is blocked; no network, no libraries
_SCRIPT = r"""
(function(){
const data = JSON.parse(document.getElementById('groups').textContent);
const view = document.getElementById('view'), canvas = document.getElementById('canvas');
let scale = 1, x = 0, y = 0;
function place(){ canvas.style.transform = `translate(${x}px,${y}px) scale(${scale})`; }
function fit(){
  const svg = canvas.querySelector('svg'); if(!svg){ return; }
  const w = svg.width.baseVal.value, h = svg.height.baseVal.value;
  scale = Math.min(view.clientWidth / w, view.clientHeight / h, 1) * 0.98;
  x = (view.clientWidth - w * scale) / 2; y = 4; place();
}
function zoom(factor, cx, cy){
  x = cx - (cx - x) * factor; y = cy - (cy - y) * factor; scale *= factor; place();
}
if(view){
  view.addEventListener('wheel', e => { e.preventDefault();
    const r = view.getBoundingClientRect(); zoom(e.deltaY < 0 ? 1.15 : 1/1.15, e.clientX - r.left, e.clientY - r.top); },
    {passive:false});
  let drag = null;
  view.addEventListener('mousedown', e => { drag = [e.clientX - x, e.clientY - y]; view.classList.add('dragging'); });
  window.addEventListener('mousemove', e => { if(drag){ x = e.clientX - drag[0]; y = e.clientY - drag[1]; place(); } });
  window.addEventListener('mouseup', () => { drag = null; view.classList.remove('dragging'); });
  document.getElementById('zoom-in').onclick = () => zoom(1.25, view.clientWidth/2, view.clientHeight/2);
  document.getElementById('zoom-out').onclick = () => zoom(1/1.25, view.clientWidth/2, view.clientHeight/2);
  document.getElementById('zoom-fit').onclick = fit;
  // start readable: as wide as the pane allows (never enlarged), from the top; "fit" shows all
  const svg = canvas.querySelector('svg');
  if(svg){ scale = Math.min(1, view.clientWidth / svg.width.baseVal.value);
    x = Math.max(0, (view.clientWidth - svg.width.baseVal.value * scale) / 2); y = 4; place(); }
}
const details = document.getElementById('details');
function esc(s){ const d = document.createElement('div'); d.textContent = s; return d.innerHTML; }
function select(id){
  const g = data.find(g => g.id === id); if(!g){ return; }
  document.querySelectorAll('tr.group').forEach(r => r.classList.toggle('selected', Number(r.dataset.group) === id));
  const hit = new Set(g.values);
  document.querySelectorAll('svg g.node').forEach(n => {
    const on = hit.has(n.id); n.classList.toggle('hit', on); n.classList.toggle('dim', !on && hit.size > 0); });
  let text = `<b>group ${g.id}</b>: ${esc(g.kind)}, ${g.units} units, ` + (g.prunable ? 'prunable' : 'blocked') + '<br>';
  if(g.why.length){ text += 'why blocked:<ul>' + g.why.map(w => `<li>${esc(w)}</li>`).join('') + '</ul>'; }
  text += 'members:<ul>' + g.members.map(m => `<li>${esc(m)}</li>`).join('') + '</ul>';
  details.innerHTML = text;
}
document.querySelectorAll('tr.group').forEach(r => r.addEventListener('click', () => select(Number(r.dataset.group))));
document.querySelectorAll('svg g.node').forEach(n => n.addEventListener('click', e => {
  const g = data.find(g => g.values.includes(n.id)); if(g){ select(g.id); }
}));
// page.html#group=5 opens with group 5 selected (links, screenshots)
const wanted = /^#group=(\d+)$/.exec(location.hash); if(wanted){ select(Number(wanted[1])); }
})();
"""


def graph_html(graph: TracedGraph, title: str = "model", svg: str | None = None) -> str:
    """A self-contained HTML page: the graph drawn by Graphviz (pan, zoom), and the groups to click.

    ``svg`` is the Graphviz drawing; by default it is rendered here when ``dot`` is on PATH, and
    without Graphviz the page lists the ops instead and says how to get the picture. The page
    loads nothing from the network.
    """
    groups = graph.groups()
    by_group, by_value = _colours(groups)
    if svg is None and shutil.which("dot") is not None:
        svg = graph_svg(graph)
    # a blocked group made of one tensor's own dim (a conv's kernel dims) is noise here, as in `inspect`
    listed = [g for g in groups if g.parameters and (g.prunable or len({m.value.id for m in g.members}) > 1)]
    data = [_group_data(g, by_group.get(g.id, BLOCKED)) for g in listed]
    rows = []
    for group, item in zip(listed, data):
        members = ", ".join(html.escape(m.label) for m in group.parameters[:4])
        if len(group.parameters) > 4:
            members += f", … ({len(group.parameters) - 4} more)"
        status = "prunable" if group.prunable else "blocked"
        rows.append(
            f'<tr class="group" data-group="{group.id}" style="background:{item["colour"]}"><td>{group.id}</td>'
            f'<td>{group.kind.value}</td><td>{group.size}</td><td class="members">{members}</td><td>{status}</td></tr>'
        )
    if svg is not None:
        picture = (
            '<div id="tools"><button id="zoom-in" title="zoom in">+</button>'
            '<button id="zoom-out" title="zoom out">−</button><button id="zoom-fit" title="fit">fit</button></div>'
            f'<div id="view"><div id="canvas">{_inline_svg(svg)}</div></div>'
        )
    else:
        ops = []
        for op in graph.ops:
            shapes = ", ".join(str(tuple(graph.shape(v))) for v in op.outputs)
            params = [i for i in op.inputs if i in by_value]
            style = f' style="background:{by_value[params[0]]}"' if params else ""
            ops.append(
                f"<li{style}><b>{html.escape(op.kind.value)}</b> {html.escape(op.target)} in "
                f"<code>{html.escape(op.owner or '<root>')}</code> → {html.escape(shapes)}</li>"
            )
        picture = (
            '<div id="fallback"><p class="note">No picture: Graphviz (<code>dot</code>) was not installed when '
            "this page was made. Install it (<code>apt-get install graphviz</code>, <code>brew install graphviz</code>) "
            "and run <code>prune-torch graph --format html</code> again. The ops, in execution order:</p>"
            f"<ol>{''.join(ops)}</ol></div>"
        )
    summary = json.dumps({"ops": len(graph.ops), "groups": len(groups), "prunable": len(groups.prunable)})
    # "</" inside a script element would end it early
    group_json = re.sub(r"</", r"<\\/", json.dumps(data))
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)} dependency graph</title><style>{_STYLE}</style></head><body>"
        f'<div id="side"><h1>{html.escape(title)}</h1>'
        f"<p>{len(graph.ops)} ops, {len(groups)} groups, {len(groups.prunable)} prunable. "
        "Click a group (or a parameter in the picture) to see its members and why it is blocked; "
        "drag to pan, scroll to zoom.</p>"
        f"<script type='application/json' id='summary'>{summary}</script>"
        f"<script type='application/json' id='groups'>{group_json}</script>"
        '<div id="details">No group selected.</div>'
        "<table><tr><th>id</th><th>kind</th><th>units</th><th>parameters</th><th>status</th></tr>"
        + "".join(rows)
        + f'</table></div><div id="main">{picture}</div><script>{_SCRIPT}</script></body></html>\n'
    )
