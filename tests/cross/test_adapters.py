"""One core, two adapters: prune-torch on a model and prune-onnx on its ONNX export keep the same channels.

Random conv nets (no BatchNorm: the exporter folds it into the convs, which changes the weights
and so the scores) are pruned by both adapters with the same importance and ratio. The model
prune-torch produces, exported, must compute what prune-onnx's pruned graph computes, and both
must have the same parameter shapes: the same groups, the same scores, the same kept units.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from hypothesis import event, given, settings
from hypothesis import strategies as st
from onnx import numpy_helper
from tests.cross.support import export
from torch import nn

import prune_onnx as po
import prune_torch as pt


class Conv(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, act: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, padding=k // 2)
        self.act = act
        self.out_channels = cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return F.relu(y) if self.act else y


class Residual(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.a = nn.Conv2d(c, c, 3, padding=1)
        self.b = nn.Conv2d(c, c, 1)
        self.out_channels = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.b(F.relu(self.a(x))))


class Concat(nn.Module):
    def __init__(self, cin: int, a: int, b: int) -> None:
        super().__init__()
        self.a = nn.Conv2d(cin, a, 1)
        self.b = nn.Conv2d(cin, b, 3, padding=1)
        self.out_channels = a + b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.a(x), F.relu(self.b(x))], 1)


class Depthwise(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.dw = nn.Conv2d(c, c, 3, padding=1, groups=c)
        self.out_channels = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.dw(x))


class Net(nn.Module):
    def __init__(self, stem: int, blocks: list[nn.Module], head: str, spatial: int) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, stem, 3, padding=1)
        self.blocks = nn.Sequential(*blocks)
        c = blocks[-1].out_channels if blocks else stem
        self.head = head
        self.fc = nn.Linear(c if head == "gap" else c * spatial * spatial, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.blocks(F.relu(self.stem(x)))
        y = y.mean((2, 3)) if self.head == "gap" else torch.flatten(y, 1)
        return self.fc(y)


WIDTH = st.integers(2, 6)


@st.composite
def nets(draw: st.DrawFn) -> Net:
    size = 8
    c = stem = draw(WIDTH)
    blocks: list[nn.Module] = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["conv", "residual", "concat", "depthwise", "pool"]))
        if kind == "conv":
            block: nn.Module = Conv(c, draw(WIDTH), draw(st.sampled_from([1, 3])), draw(st.booleans()))
        elif kind == "residual":
            block = Residual(c)
        elif kind == "concat":
            block = Concat(c, draw(WIDTH), draw(WIDTH))
        elif kind == "depthwise":
            block = Depthwise(c)
        else:
            if size < 4:
                continue
            size //= 2
            block = nn.MaxPool2d(2)
            block.out_channels = c  # type: ignore[assignment]
        blocks.append(block)
        c = block.out_channels  # type: ignore[assignment]
    torch.manual_seed(draw(st.integers(0, 2**16)))
    return Net(stem, blocks, draw(st.sampled_from(["gap", "flatten"])), size).eval()


def _shapes(arrays: list[np.ndarray]) -> list[tuple[int, ...]]:
    return sorted(tuple(a.shape) for a in arrays)


@settings(deadline=None, max_examples=15)
@given(model=nets(), ratio=st.sampled_from([0.4, 0.7]), importance=st.sampled_from(["l1", "l2", "fpgm"]))
def test_both_adapters_keep_the_same_channels(model: Net, ratio: float, importance: str) -> None:
    x = torch.randn(1, 3, 8, 8)
    exported = export(model, x)
    pruned_graph, onnx_report = po.prune(exported, ratio=ratio, importance=importance)
    torch_model = copy.deepcopy(model)
    torch_report = pt.prune(torch_model, x, ratio=ratio, importance=importance, show_progress=False)
    event("pruned" if torch_report.after.parameters < torch_report.before.parameters else "nothing to prune")
    assert torch_report.after.parameters == onnx_report.after.parameters
    assert torch_report.after.macs == onnx_report.after.macs
    initializers = [numpy_helper.to_array(t) for t in pruned_graph.graph.initializer]
    params = [p.detach().numpy() for p in torch_model.parameters()]
    weights = [a for a in initializers if a.ndim and np.issubdtype(a.dtype, np.floating)]  # not axes constants
    assert _shapes(weights) == _shapes(params)
    feeds = {"x": x.numpy()}
    (from_onnx,) = po.run(pruned_graph, feeds)
    (from_torch,) = po.run(export(torch_model, x), feeds)
    # the same kept units give the same function; others would differ far beyond float32 rounding
    scale = float(np.abs(from_torch).max()) or 1.0
    assert float(np.abs(from_onnx - from_torch).max()) / scale < 1e-4
