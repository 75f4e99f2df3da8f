"""Pictures of the graph: the HTML page (self-contained, groups coloured apart, members and blockers
to click), the DOT text without channel-less buffers, compact reprs, and headless-Chromium
screenshots of a ResNet-like and a ViT-like model (slow; ``UPDATE_SCREENSHOTS=1`` writes them
to docs/).
"""

from __future__ import annotations

import colorsys
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import prune_torch as pt
from prune_torch import _views
from prune_torch._views import graph_dot, graph_html, group_colour
from prune_torch.examples import resnet_like

ROOT = Path(__file__).resolve().parents[2]


class Block(nn.Module):
    """A pre-norm transformer block: attention heads through a fused qkv projection, then an MLP."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.fc2 = nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(self.norm1(x)).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2]).transpose(1, 2).reshape(b, n, c)
        x = x + self.proj(attended)
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class ViTLike(nn.Module):
    """Patch embedding, class token, position embedding, two blocks, a linear head."""

    def __init__(self, dim: int = 64, heads: int = 4, patches: int = 16, classes: int = 10) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, dim, 8, 8)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, patches + 1, dim) * 0.02)
        self.blocks = nn.Sequential(Block(dim, heads), Block(dim, heads))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), tokens], dim=1) + self.pos
        return self.head(self.norm(self.blocks(tokens))[:, 0])


MODELS = {
    "resnet": (lambda: resnet_like().eval(), (1, 3, 64, 64)),
    "vit": (lambda: ViTLike().eval(), (1, 3, 32, 32)),
}


def _graph(name: str) -> pt.TracedGraph:
    factory, shape = MODELS[name]
    return pt.trace(factory(), torch.randn(shape))


class _Page(HTMLParser):
    """Checks that tags nest, and collects the group rows, the scripts' JSON and every URL."""

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.rows: list[str] = []
        self.json: dict[str, str] = {}
        self.urls: list[str] = []
        self._script: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in ("meta", "br"):
            self.open.append(tag)
        found = dict(attrs)
        if tag == "tr" and "data-group" in found:
            self.rows.append(str(found["data-group"]))
        if tag == "script":
            self._script = found.get("id") or ""
        for key in ("src", "href", "xlink:href"):
            if found.get(key):
                self.urls.append(str(found[key]))

    def handle_endtag(self, tag: str) -> None:
        assert self.open, tag
        assert self.open[-1] == tag, (self.open[-3:], tag)
        self.open.pop()
        self._script = None

    def handle_data(self, data: str) -> None:
        if self._script:
            self.json[self._script] = self.json.get(self._script, "") + data


def _parse(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    parser.close()
    assert parser.open == []
    return parser


def _hue(colour: str) -> float:
    rgb = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    return colorsys.rgb_to_hls(*rgb)[0] * 360


def test_group_colours_never_repeat_and_neighbours_differ() -> None:
    colours = [group_colour(k) for k in range(1000)]
    assert len(set(colours)) == 1000
    for k in range(299):
        gap = abs(_hue(colours[k]) - _hue(colours[k + 1]))
        assert min(gap, 360 - gap) > 100, k  # consecutive groups sit far apart on the wheel


@pytest.mark.parametrize("with_dot", [True, False], ids=["graphviz", "fallback"])
def test_the_page_is_self_contained_and_lists_every_group_with_members_and_blockers(
    monkeypatch: pytest.MonkeyPatch, with_dot: bool
) -> None:
    graph = _graph("resnet")
    if with_dot:
        if shutil.which("dot") is None:
            pytest.skip("Graphviz is not installed")
    else:
        monkeypatch.setattr(_views.shutil, "which", lambda name: None)
    page = graph_html(graph, "resnet")
    parsed = _parse(page)
    assert parsed.urls == []  # nothing to fetch when the page is viewed
    assert "http://" not in page.replace("http://www.w3.org/", "")
    assert "https://" not in page
    groups = json.loads(parsed.json["groups"])
    by_id = {g["id"]: g for g in groups}
    assert parsed.rows == [str(g["id"]) for g in groups]
    prunable = [g for g in groups if g["prunable"]]
    assert len(prunable) == len(graph.groups().prunable)
    assert len({g["colour"] for g in prunable}) == len(prunable)
    for group in graph.groups().prunable:
        assert by_id[group.id]["members"], group.id
        assert set(by_id[group.id]["values"]) == {"v:" + m.value.id for m in group.parameters}
    blocked = [g for g in groups if not g["prunable"]]
    assert blocked
    assert all(g["why"] for g in blocked)
    if with_dot:
        assert "<svg" in page
        assert "No picture" not in page
        # every group's parameters can be found in the drawing
        ids = set(re.findall(r'<g id="([^"]+)" class="node"', page))
        assert {v for g in prunable for v in g["values"]} <= ids
    else:
        assert "<svg" not in page
        assert "Graphviz (<code>dot</code>) was not installed" in page
    assert "num_batches_tracked" not in page.split("<script>")[0].split('id="main"')[1]


def test_channel_less_buffers_stay_out_of_the_dot_picture() -> None:
    text = graph_dot(_graph("resnet"))
    assert "num_batches_tracked" not in text
    assert '"v:layers.0.0.bn1.running_mean"' in text


def test_reprs_are_one_short_line() -> None:
    graph = _graph("vit")
    model = ViTLike().eval()
    report = pt.prune(model, torch.randn(1, 3, 32, 32), ratio=0.25, show_progress=False)
    for text in (repr(graph), repr(report.plan)):
        assert "\n" not in text
        assert len(text) < 160, text
    assert repr(graph).startswith("TracedGraph(")
    assert "inputs [(1, 3, 32, 32)], outputs [(1, 10)]" in repr(graph)
    assert repr(report.plan).startswith(f"Plan({report.plan.fingerprint} → ")


def _png_pixels(path: Path) -> np.ndarray:
    import matplotlib.image

    return np.asarray(matplotlib.image.imread(path))


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None or shutil.which("dot") is None, reason="needs chromium and Graphviz")
@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_screenshot_of_the_page_is_not_blank(tmp_path: Path, name: str) -> None:
    graph = _graph(name)
    page = tmp_path / f"{name}.html"
    page.write_text(graph_html(graph, f"{name}-like model"), encoding="utf-8")
    shot = tmp_path / f"{name}.png"
    # open with the largest prunable group selected, to show its members in the side panel
    chosen = max(graph.groups().prunable, key=lambda g: len(g.parameters))
    subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",  # root in CI containers
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1400,900",
            f"--screenshot={shot}",
            f"{page.as_uri()}#group={chosen.id}",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    pixels = _png_pixels(shot)[..., :3]
    assert pixels.shape[:2] == (900, 1400)
    colours = {tuple(p) for p in (pixels[::7, ::7] * 255).astype(int).reshape(-1, 3)}
    assert len(colours) > 50  # text, the drawing and the group colours; a blank page has a handful
    # the drawing pane (right of the side panel) holds the graph, not an empty canvas
    pane = pixels[:, 420:]
    assert (np.abs(pane - pane[-1, -1]).max(axis=-1) > 0.1).mean() > 0.03
    # the selected group's colour shows (its table row, its nodes)
    colour = np.array([int(chosen_hex, 16) for chosen_hex in re.findall("..", group_colour(0)[1:])]) / 255
    assert np.isclose(pixels, colour, atol=2 / 255).all(axis=-1).sum() > 200
    if os.environ.get("UPDATE_SCREENSHOTS"):
        shutil.copy(shot, ROOT / "docs" / f"graph-{name}.png")
