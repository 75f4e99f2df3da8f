"""One trace per prune, and the light re-run that checks the pruned model against the plan."""

from __future__ import annotations

import copy
import gc

import pytest
import torch
from torch import nn

import prune_torch as pt
from prune_torch import _trace
from prune_torch._light import light_check
from prune_torch._traced import trace_model
from prune_torch.examples import resnet_like


def _count_traces(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    runs: list[bool] = []
    real = _trace._run

    def counted(model: nn.Module, inputs: object, meta: bool, lines: bool = False) -> object:
        runs.append(meta)
        return real(model, inputs, meta, lines)

    monkeypatch.setattr(_trace, "_run", counted)
    return runs


def test_a_prune_traces_once(monkeypatch: pytest.MonkeyPatch) -> None:
    model, x = resnet_like(10).eval(), torch.randn(2, 3, 32, 32)
    expected = model(x).shape
    runs = _count_traces(monkeypatch)
    report = pt.prune(model, x, ratio=0.5, ignore=["fc"], show_progress=False)
    assert runs == [True]  # the planning trace; apply reuses it and verifies with a light re-run
    assert report.after.parameters < report.before.parameters
    assert model(x).shape == expected


def test_a_standalone_apply_traces_its_own_model(monkeypatch: pytest.MonkeyPatch) -> None:
    model, x = resnet_like(10).eval(), torch.randn(2, 3, 32, 32)
    graph = pt.trace(model, x)
    plan = pt.plan(graph, "layers.0.0.conv1", [0, 1, 2])
    runs = _count_traces(monkeypatch)
    pt.apply(copy.deepcopy(model), plan, x)  # no graph given: the plan is checked on a fresh trace
    assert runs == [True]
    runs.clear()
    pt.apply(model, plan, x, traced=graph)  # the graph the plan was made on: no trace at all
    assert runs == []
    assert model.layers[0][0].conv1.out_channels == 61


def test_light_check_finds_a_shape_the_plan_does_not_predict() -> None:
    model, x = resnet_like(10).eval(), torch.randn(2, 3, 32, 32)
    graph = trace_model(model, x)
    plan = pt.plan(graph, "layers.0.0.conv1", [0, 1, 2])
    calls = graph.cache["calls"]
    # not applied yet: the parameters still have their old shapes
    assert "parameter" in (light_check(model, x, graph, calls, plan) or "")
    pruned = copy.deepcopy(model)
    pt.apply(pruned, plan, x)
    assert light_check(pruned, x, graph, calls, plan) is None
    # pruned by another plan: the parameter check passes only where shapes agree, the run differs
    other = pt.plan(graph, "layers.0.0.conv1", [0, 1])
    assert light_check(pruned, x, graph, calls, other) is not None


class _KeepsWidth(nn.Module):
    """A block whose code keeps its width as a literal: pruning its input cannot be followed."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Linear(8 * 4 * 4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.conv(x))
        return self.head(y.reshape(y.shape[0], 8, -1).flatten(1))


def test_a_difference_falls_back_to_the_full_comparison_that_names_the_module() -> None:
    model, x = _KeepsWidth().eval(), torch.randn(2, 3, 4, 4)
    before = copy.deepcopy(model.state_dict())
    graph = pt.trace(model, x)
    plan = pt.plan(graph, "conv", [0, 1])
    with pytest.raises(pt.ApplyError, match=r"no longer runs|predicted"):
        pt.apply(model, plan, x, traced=graph)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # restored exactly


def test_the_collector_is_paused_during_a_step_and_back_after_a_failure() -> None:
    model, x = resnet_like(10).eval(), torch.randn(2, 3, 32, 32)
    seen: list[bool] = []

    def fail(step: int, _model: nn.Module) -> None:
        seen.append(gc.isenabled())  # the user's code between steps runs with the collector on
        raise RuntimeError("stop")

    assert gc.isenabled()
    with pytest.raises(RuntimeError, match="stop"):
        pt.prune(model, x, ratio=0.5, steps=2, between_steps=fail, show_progress=False)
    assert seen == [True]
    assert gc.isenabled()


def test_a_stock_layers_call_is_checked_like_any_other() -> None:
    # stock layers hand their calls to the check directly (prune_torch._leaves): a result of another
    # shape than the plan predicts is found there, at that call
    model, x = resnet_like(10).eval(), torch.randn(2, 3, 32, 32)
    graph = trace_model(model, x)
    plan = pt.plan(graph, "layers.0.0.conv1", [0, 1, 2])
    pruned = copy.deepcopy(model)
    pt.apply(pruned, plan, x)
    pruned.layers[1][0].conv1.stride = (1, 1)  # same parameters, another output size
    found = light_check(pruned, x, graph, graph.cache["calls"], plan)
    assert found is not None
    assert "aten.convolution.default" in found
    assert "predicted" in found
