"""Sizes kept in plain module attributes follow a prune (the patterns of diffusers' UNets, small and local).

A module that checks ``assert x.shape[1] == self.channels`` or reshapes with ``self.heads`` keeps
a size outside its tensors. The attribute the forward read with the old size follows, when
exactly one does; two candidates are never guessed between. Tensors whose values depend on their
position (``arange`` in a sinusoidal embedding) are not pruned at all.
"""

from __future__ import annotations

import copy
import inspect
import math

import pytest
import torch
from support import assert_layer_attributes, assert_unchanged, prepared, snapshot
from torch import nn

import prune_torch as pt
from prune_torch._reads import reading


class Downsample(nn.Module):
    """Like diffusers' ``Downsample2D``: both counts stored, only ``channels`` read, in an assert."""

    def __init__(self, channels: int, out_channels: int | None = None) -> None:
        super().__init__()
        self.channels = channels
        self.out_channels = out_channels or channels
        self.conv = nn.Conv2d(channels, self.out_channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.channels:  # an assert would be stripped by python -O; the check is the same
            raise AssertionError(f"expected {self.channels} channels, got {x.shape[1]}")
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest upsampling, then a conv; its channel count read in the forward."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.channels:
            raise AssertionError("channel count")
        return self.conv(nn.functional.interpolate(x, scale_factor=2.0, mode="nearest"))


class UNetLike(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 12, 3, padding=1)
        self.down = Downsample(12)
        self.mid = nn.Sequential(nn.BatchNorm2d(12), nn.ReLU(), nn.Conv2d(12, 20, 3, padding=1), nn.ReLU())
        self.up = Upsample(20)
        self.head = nn.Conv2d(20, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.up(self.mid(self.down(self.stem(x)))))


class HeadsAttention(nn.Module):
    """Like diffusers' ``Attention``: the head count in ``self.heads`` (no name the role table knows)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.to_q, self.to_k, self.to_v = (nn.Linear(dim, dim) for _ in range(3))
        self.to_out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = (t(x).view(b, n, self.heads, -1).transpose(1, 2) for t in (self.to_q, self.to_k, self.to_v))
        a = nn.functional.scaled_dot_product_attention(q, k, v)
        return x + self.to_out(a.transpose(1, 2).reshape(b, n, -1))


class TimeEmbedding(nn.Module):
    """A sinusoidal embedding of a timestep (built from ``arange``), then an MLP."""

    def __init__(self, channels: int, width: int) -> None:
        super().__init__()
        self.num_channels = channels
        self.linear_1 = nn.Linear(channels, width)
        self.linear_2 = nn.Linear(width, width)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.num_channels // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=t.dtype, device=t.device) / half)
        angles = t[:, None] * freqs[None]
        emb = torch.cat([angles.sin(), angles.cos()], dim=-1)
        return self.linear_2(nn.functional.silu(self.linear_1(emb)))


def _equal_to_silenced(original: nn.Module, model: nn.Module, report: pt.PruneReport, inputs: tuple) -> None:
    result = pt.check_equivalence(
        original, model, report.plan, inputs, rtol=1e-9, atol=1e-11, silence_outputs=report.silence_outputs
    )
    assert result.ok, str(result)


def test_channel_count_read_in_an_assert_follows() -> None:
    model = prepared(UNetLike())
    original = copy.deepcopy(model)
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    report = pt.prune(model, x, ratio=0.5, show_progress=False)
    assert not report.skipped, report.skipped
    assert model.down.channels == model.down.conv.in_channels == 6
    # stored but never read: left as it was (the conv's own count is what the model uses)
    assert model.down.out_channels == 12
    assert model.up.channels == model.up.conv.in_channels == 10
    assert_layer_attributes(model)
    _equal_to_silenced(original, model, report, (x,))
    assert model(x).shape == (2, 3, 16, 16)


def test_two_attributes_read_with_the_size_are_not_guessed_between() -> None:
    class Ambiguous(Downsample):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.shape[1] != self.channels or self.out_channels != self.channels:
                raise AssertionError("channel count")
            return self.conv(x)

    model = nn.Sequential(nn.Conv2d(3, 12, 3, padding=1), Ambiguous(12), nn.Conv2d(12, 3, 1)).double().eval()
    x = torch.randn(1, 3, 8, 8, dtype=torch.float64)
    report = pt.prune(model, x, ratio=0.5, show_progress=False)
    # the stem's channels would need one of two equal attributes: that group is left whole and named
    assert model[0].out_channels == 12
    assert (model[1].channels, model[1].out_channels) == (12, 12)
    assert any("1" in note and "no longer runs" in note for note in report.skipped), report.skipped
    assert model(x).shape == (1, 3, 4, 4)


def test_head_count_in_an_unnamed_attribute_follows() -> None:
    model = nn.Sequential(nn.Linear(8, 32), HeadsAttention(32, 4), nn.Linear(32, 2)).double().eval()
    original = copy.deepcopy(model)
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    report = pt.prune(model, x, ratio=0.5, show_progress=False)
    assert not report.skipped, report.skipped
    attn = model[1]
    assert attn.heads * (attn.to_q.out_features // attn.heads) == attn.to_q.out_features
    assert attn.to_q.out_features < 32
    _equal_to_silenced(original, model, report, (x,))


def test_positional_constants_are_not_pruned() -> None:
    """Removing frequency i of ``arange`` would not leave the others as they were: those dims are pinned."""
    model = TimeEmbedding(16, 32).double().eval()
    original = copy.deepcopy(model)
    t = torch.tensor([3.0, 70.0], dtype=torch.float64)
    graph = pt.trace(model, (t,))
    columns = [g for g in graph.groups() if any(m.label == "linear_1.weight[1]" for m in g.members)]
    assert columns
    assert not any(g.prunable for g in columns)
    report = pt.prune(model, (t,), ratio=0.5, show_progress=False)
    assert model.linear_1.in_features == 16
    assert model.num_channels == 16
    assert model.linear_1.out_features < 32
    _equal_to_silenced(original, model, report, (t,))


def test_reading_puts_the_classes_back() -> None:
    model = UNetLike().eval()
    with reading(model) as reads:
        model(torch.randn(1, 3, 8, 8))
    assert reads["down"] == {"channels": 12}
    assert reads["up"] == {"channels": 20}
    assert "channels" not in vars(Downsample)
    assert "channels" not in vars(Upsample)
    assert model.down.channels == 12
    before = snapshot(model)
    with pytest.raises(AssertionError), reading(model):
        model.down(torch.randn(1, 4, 8, 8))
    assert "channels" not in vars(Downsample)
    assert_unchanged(model, before)


class DeepBackbone(nn.Module):
    """Runs every stage but returns an early one (segmentation encoders past the decoder's depth)."""

    def __init__(self) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(nn.Conv2d(3, 12, 3, padding=1), nn.BatchNorm2d(12), nn.ReLU())
        self.stage2 = nn.Sequential(nn.Conv2d(12, 16, 3, padding=1), nn.ReLU())
        self.head = nn.Conv2d(12, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [self.stage1(x)]
        features.append(self.stage2(features[-1]))  # computed, then thrown away
        return self.head(features[0])


def test_a_stage_whose_result_is_thrown_away_follows_the_channels_it_reads() -> None:
    model = prepared(DeepBackbone())
    original = copy.deepcopy(model)
    x = torch.randn(1, 3, 8, 8, dtype=torch.float64)
    report = pt.prune(model, x, ratio=0.5, show_progress=False)
    assert model.stage1[0].out_channels == model.stage2[0].in_channels == 6
    assert_layer_attributes(model)
    _equal_to_silenced(original, model, report, (x,))


class Indexed(nn.Module):
    """A layer that carries its position in the model (ultralytics' ``m.i``), read only by its parent."""

    def __init__(self, index: int, channels: int) -> None:
        super().__init__()
        self.i = index
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x))


class Routed(nn.Module):
    """Keeps layer outputs by index, as ultralytics' ``DetectionModel`` does; an index equals a channel count."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 1)
        self.layers = nn.ModuleList([Indexed(8, 8), Indexed(9, 8)])
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        saved = {}
        x = self.stem(x)
        for layer in self.layers:
            x = layer(x)
            saved[layer.i] = x
        return self.head(saved[8] + saved[9])


def test_an_attribute_only_the_parent_reads_is_not_a_size() -> None:
    model = Routed().double().eval()
    x = torch.randn(1, 3, 5, 5, dtype=torch.float64)  # 8 is a channel count only
    with reading(model) as reads:
        model(x)
    assert "layers.0" not in reads
    original = copy.deepcopy(model)
    report = pt.prune(model, x, ratio=0.5, show_progress=False)
    assert not report.skipped, report.skipped
    assert model.layers[0].i == 8
    assert model.layers[0].conv.in_channels == model.layers[0].conv.out_channels == 4
    _equal_to_silenced(original, model, report, (x,))


class WidthFromInput(nn.Module):
    """Like the mit encoders' attention (Segformer): the head dim is the input's width over the head count."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.num_heads = heads
        self.q, self.k, self.v, self.proj = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = (
            t(x).reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2) for t in (self.q, self.k, self.v)
        )
        return self.proj(nn.functional.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c))


def test_a_size_computed_from_an_input_shape_is_named_by_its_line() -> None:
    model = nn.Sequential(WidthFromInput(32, 4), nn.Linear(32, 2)).double().eval()
    x = torch.randn(2, 5, 32, dtype=torch.float64)
    line = next(i for i, text in enumerate(inspect.getsourcelines(WidthFromInput.forward)[0]) if "c // self" in text)
    where = f"test_attributes.py:{inspect.getsourcelines(WidthFromInput.forward)[1] + line}"
    report = pt.prune(model, x, ratio=0.5, show_progress=False)
    # the residual width c stays, so neither heads nor head dims can shrink: each is left whole, the line named
    assert model[0].q.out_features == 32
    assert report.skipped
    assert all(f"in module 0 ({where})" in note for note in report.skipped), report.skipped
