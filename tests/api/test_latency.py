"""CPU latency: measure_latency on its own, and prune(measure_latency=True) reporting before and after."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import prune_torch as pt

from . import nets


def wide_mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(256, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10))


X = torch.randn(64, 256, generator=torch.Generator().manual_seed(0))


def test_prune_reports_latency_before_and_after_when_asked() -> None:
    model = wide_mlp().eval()
    report = pt.prune(model, X, ratio=0.75, measure_latency=True, show_progress=False)
    assert report.latency is not None
    before, after = report.latency
    assert isinstance(before, pt.Latency)
    assert 0 < before.low <= before.median <= before.high
    assert before.repeats >= 20
    # the hidden layers lose 3/4 of their units: the middle matmul does 1/16 of the work, the
    # whole forward under a third; the fastest repeats are far apart even on a busy machine
    assert after.low < before.low
    assert "latency" in str(report)
    assert "faster" in str(report)


def test_latency_is_not_measured_by_default() -> None:
    model = nets.resnet_small().eval()
    report = pt.prune(model, torch.randn(1, 3, 32, 32), ratio=0.5, show_progress=False)
    assert report.latency is None
    assert "latency" not in str(report)


def test_measuring_keeps_each_module_mode_and_runs_without_gradients() -> None:
    model = wide_mlp().train()
    model[2].eval()
    seen: list[tuple[bool, bool]] = []
    model[0].register_forward_hook(lambda m, i, o: seen.append((m.training, torch.is_grad_enabled())))
    latency = pt.measure_latency(model, X, repeats=3, warmup=1)
    assert latency.repeats == 3
    assert seen == [(False, False)] * 4
    assert [m.training for m in model] == [True, True, False, True, True]


def test_min_seconds_adds_repeats() -> None:
    latency = pt.measure_latency(nn.Linear(4, 4), torch.randn(1, 4), repeats=2, warmup=0, min_seconds=0.05)
    assert latency.repeats > 2


@pytest.mark.parametrize(("option", "value"), [("repeats", 0), ("warmup", -1), ("repeats", 2.5), ("warmup", True)])
def test_bad_counts_are_refused(option: str, value: object) -> None:
    with pytest.raises(pt.PruningError, match=f"'{option}' must be an int"):
        pt.measure_latency(nn.Linear(4, 4), torch.randn(1, 4), **{option: value})
