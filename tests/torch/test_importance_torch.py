"""The built-in weight importances computed in torch (summaries) score exactly as the numpy reference."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from models import FAMILIES
from support import randomize_statistics
from torch import nn

import prune_torch as pt
import prune_torch._importance as torch_importance
from prune_ops import Group, MemberData, PruningError, Summary, resolve_importance, summarise
from prune_torch._activations import gather_statistics
from prune_torch._importance import SummaryCache, member_data, summarise_tensor
from prune_torch._traced import TracedGraph, trace_model

WEIGHT_ONLY = ("l1", "l2", "bn_scale", "fpgm", "group_l2")
CALIBRATED = ("wanda", "flap")


class Heads(nn.Module):
    """Layer norm, attention (heads of several indices each), then a conv → flatten → linear (blocks of positions per unit)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(8, 16)
        self.norm = nn.LayerNorm(16)
        self.attention = nn.MultiheadAttention(16, 4, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(16, 24), nn.GELU(), nn.Linear(24, 16))
        self.proj = nn.Linear(16, 16)
        self.conv = nn.Conv2d(1, 6, 3, padding=1)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(6 * 5 * 16, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.embed(x))
        x = x + self.attention(x, x, x, need_weights=False)[0]
        x = x + self.mlp(x)
        return self.head(torch.relu(self.conv(self.proj(x)[:, None])))


MODELS = {
    "resnet": (FAMILIES["resnet"].build, FAMILIES["resnet"].inputs),
    "densenet": (FAMILIES["densenet"].build, FAMILIES["densenet"].inputs),
    "mobilenetv2": (FAMILIES["mobilenetv2"].build, FAMILIES["mobilenetv2"].inputs),
    "heads": (Heads, lambda: torch.randn(2, 5, 8)),
}

_TRACED: dict[str, tuple[nn.Module, TracedGraph, tuple[Group, ...], object]] = {}
# one cache per model and importance, as in a prune: a weight's second axis is served from its first's pass
_CACHES: dict[tuple[str, str], SummaryCache] = {}


def traced(name: str) -> tuple[nn.Module, TracedGraph, tuple[Group, ...], object]:
    """The model with random weights and norm statistics, its graph, prunable groups and activation statistics."""
    if name not in _TRACED:
        torch.manual_seed(0)
        build, inputs = MODELS[name]
        model = randomize_statistics(build()).eval()
        example = inputs()
        graph = trace_model(model, example)
        statistics = gather_statistics(model, [example, inputs()], show_progress=False)
        _TRACED[name] = (model, graph, graph.groups().prunable, statistics)
    return _TRACED[name]


def scores_both_ways(name: str, group: Group, importance: str) -> tuple[np.ndarray, np.ndarray, list[MemberData]]:
    """Scores from the numpy weights (the reference) and from the torch summaries, and the summarised data."""
    model, graph, _, statistics = traced(name)
    scorer = resolve_importance(importance)
    stats = statistics if importance in CALIBRATED else None
    reference = member_data(model, graph, group, stats)
    cache = _CACHES.setdefault((name, importance), SummaryCache.of_groups(traced(name)[2]))
    summarised = member_data(model, graph, group, stats, importance=scorer, cache=cache)
    return scorer(group, reference), scorer(group, summarised), summarised


def _close(expected: np.ndarray, got: np.ndarray) -> None:
    scale = max(float(np.abs(expected).max()), 1e-300)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12 * scale)


@settings(max_examples=40, deadline=None)
@given(
    name=st.sampled_from(sorted(MODELS)),
    importance=st.sampled_from(WEIGHT_ONLY + CALIBRATED),
    pick=st.integers(min_value=0, max_value=10**6),
)
def test_torch_summaries_score_as_the_numpy_weights(name: str, importance: str, pick: int) -> None:
    groups = traced(name)[2]
    group = groups[pick % len(groups)]
    try:
        expected, got, summarised = scores_both_ways(name, group, importance)
    except PruningError:
        # a group without a norm scale or without statistics: the summaries must fail the same way
        with pytest.raises(PruningError):
            summarised_scores(name, group, importance)
        return
    assert all(d.weight is None and d.grad is None for d in summarised)
    assert got.shape == expected.shape == (group.size,)
    _close(expected, got)


def summarised_scores(name: str, group: Group, importance: str) -> np.ndarray:
    model, graph, _, statistics = traced(name)
    scorer = resolve_importance(importance)
    stats = statistics if importance in CALIBRATED else None
    return scorer(group, member_data(model, graph, group, stats, importance=scorer))


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("importance", WEIGHT_ONLY)
def test_every_group_scores_the_same(name: str, importance: str) -> None:
    groups = traced(name)[2]
    compared = 0
    for group in groups:
        try:
            expected, got, _ = scores_both_ways(name, group, importance)
        except PruningError:
            assert importance == "bn_scale"
            continue
        _close(expected, got)
        compared += 1
    assert compared > 0


@pytest.mark.parametrize("summary", list(Summary))
def test_summaries_of_big_tensors_taken_in_slices_agree(summary: Summary, monkeypatch: pytest.MonkeyPatch) -> None:
    model, _graph, groups, _ = traced("heads")
    monkeypatch.setattr(torch_importance, "_CHUNK", 7)
    cache = SummaryCache.of_groups(groups)
    checked = 0
    for group in groups:
        for member in group.parameters:
            tensor = graph_tensor(model, member)
            if tensor.dim() < 2:
                continue
            rows = tensor.detach().movedim(member.dim.dim, 0).reshape(tensor.shape[member.dim.dim], -1).double()
            expected = summarise(summary, rows.numpy(), member.units, group.size)
            _close(expected, summarise_tensor(tensor, member, summary, group.size))
            if summary is not Summary.DISTANCE_SUM:
                _close(expected, cache.make(member.value.id, tensor, member.dim.dim, summary))
            checked += 1
    assert checked > 3


def graph_tensor(model: nn.Module, member: object) -> torch.Tensor:
    value = member.value  # type: ignore[attr-defined]
    return getattr(model.get_submodule(value.owner), value.name)  # type: ignore[no-any-return]


def test_a_custom_callable_still_gets_the_weights_and_gradients() -> None:
    model, graph, groups, _ = traced("resnet")
    seen: list[MemberData] = []

    def custom(group: Group, data: list[MemberData]) -> np.ndarray:
        seen.extend(data)
        return np.arange(group.size, dtype=np.float64)

    group = groups[0]
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    try:
        data = member_data(model, graph, group, importance=custom)
    finally:
        for p in model.parameters():
            p.grad = None
    assert data
    assert all(d.weight is not None and d.grad is not None and not d.summaries for d in data)
    assert all(d.weight.shape == (d.rows, d.columns) for d in data)  # type: ignore[union-attr]


def test_prune_selects_the_same_channels_from_summaries_as_from_weights() -> None:
    """End to end: a callable wrapping L2 (so it gets the weights) picks what built-in L2 picks from summaries."""
    l2 = resolve_importance("l2")

    def by_weights(group: Group, data: list[MemberData]) -> np.ndarray:
        assert all(d.weight is not None for d in data)
        return l2(group, data)

    plans = []
    for importance in ("l2", by_weights):
        torch.manual_seed(1)
        model = FAMILIES["resnet"].build().eval()
        report = pt.prune(model, FAMILIES["resnet"].inputs(), ratio=0.4, importance=importance, show_progress=False)
        plans.append(sorted((e.path, e.axis, e.removed) for e in report.plan.entries))
    assert plans[0]
    assert plans[0] == plans[1]


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_summaries_on_the_tensors_device_and_dtype_score_as_the_numpy_weights(device: str, dtype: torch.dtype) -> None:
    model, graph, groups, _ = traced("mobilenetv2")
    moved = copy.deepcopy(model).to(device=device, dtype=dtype)
    for importance in WEIGHT_ONLY:
        scorer = resolve_importance(importance)
        cache = SummaryCache.of_groups(groups)
        for group in groups:
            reference = member_data(moved, graph, group)
            try:
                expected = scorer(group, reference)
            except PruningError:
                continue
            _close(expected, scorer(group, member_data(moved, graph, group, importance=scorer, cache=cache)))
