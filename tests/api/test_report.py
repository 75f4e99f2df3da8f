"""The Report: costs before and after, ratios, the per-layer table, the applied plan, the width plot."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

import prune_torch as pt

from . import nets
from .helpers import randomize_norms

X16 = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(9))
PNG = b"\x89PNG\r\n\x1a\n"


def macs(model: nets.TinyCNN, size: int = 16) -> int:
    """Multiply-accumulates of TinyCNN's convolutions (3×3, same padding) and its linear head, batch 1."""
    pixels = size * size
    total = 0
    for conv in (model.conv1, model.conv2, model.conv3):
        total += pixels * conv.out_channels * conv.in_channels * 9
    return total + model.fc.in_features * model.fc.out_features


def parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def pruned_pair(**options: object) -> tuple[nets.TinyCNN, nets.TinyCNN, pt.Report]:
    original = randomize_norms(nets.tiny()).eval()
    model = copy.deepcopy(original)
    report = pt.prune(model, X16, show_progress=False, **options)
    return original, model, report


def test_costs_before_and_after_and_the_ratios() -> None:
    original, model, report = pruned_pair(ratio=0.5)
    assert report.before.parameters == parameters(original)
    assert report.after.parameters == parameters(model)
    assert report.before.macs == macs(original) == 3_649_856
    assert report.after.macs == macs(model)
    assert report.params_ratio == report.after.parameters / report.before.parameters
    assert report.macs_ratio == report.after.macs / report.before.macs
    assert 0.2 < report.params_ratio < 0.3
    assert report.plan.parameters_removed == parameters(original) - parameters(model)
    assert report.steps == 1
    layers = {layer.module: layer for layer in report.layers}
    assert layers["conv2"] == pt.LayerWidth("conv2", "Conv2d", 32, 16)
    assert layers["bn1"] == pt.LayerWidth("bn1", "BatchNorm2d", 16, 8)
    assert layers["fc"] == pt.LayerWidth("fc", "Linear", 10, 10)
    kept = sum(layer.after for layer in report.layers) / sum(layer.before for layer in report.layers)
    assert report.channels_ratio == kept


def test_str_has_the_costs_and_a_row_per_layer() -> None:
    _, model, report = pruned_pair(ratio=0.5)
    text = str(report)
    lines = text.splitlines()
    assert lines[0].startswith("parameters")
    assert f"{report.before.parameters:,}" in lines[0]
    assert f"{report.after.parameters:,}" in lines[0]
    assert f"{report.params_ratio:.1%}" in lines[0]
    assert lines[1].startswith("MACs")
    assert f"{report.before.macs:,}" in lines[1]
    assert f"{report.after.macs:,}" in lines[1]
    rows = {line.split()[0]: line.split() for line in lines if line and line.split()[0] in dict(model.named_modules())}
    assert set(rows) == {layer.module for layer in report.layers}
    assert rows["conv3"][1:] == ["Conv2d", "32", "→", "16"]
    assert rows["fc"][1:] == ["Linear", "10", "→", "10"]


def test_the_plan_re_applied_to_a_fresh_copy_gives_identical_outputs() -> None:
    original, model, report = pruned_pair(ratio=0.5, importance="l1")
    fresh = copy.deepcopy(original)
    pt.apply(fresh, report.plan, X16)
    with torch.no_grad():
        assert torch.equal(fresh(X16), model(X16))
    assert fresh.state_dict().keys() == model.state_dict().keys()
    for key, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key
    # and through JSON
    again = copy.deepcopy(original)
    pt.apply(again, pt.Plan.from_json(report.plan.to_json()), X16)
    with torch.no_grad():
        assert torch.equal(again(X16), model(X16))


def test_the_plan_of_several_steps_is_the_combined_one() -> None:
    original, model, report = pruned_pair(ratio=0.75, steps=2)
    assert report.steps == 2
    assert report.plan.fingerprint == pt.trace(original, X16).fingerprint()
    fresh = copy.deepcopy(original)
    pt.apply(fresh, report.plan, X16)
    with torch.no_grad():
        assert torch.equal(fresh(X16), model(X16))
    assert report.plan.entry("conv3", "weight", 0).size_after == 8
    result = pt.check_equivalence(original.double(), copy.deepcopy(model).double(), report.plan, X16.double())
    assert result.ok, result


def test_the_plan_is_the_one_recorded_in_the_models_history() -> None:
    _, model, report = pruned_pair(ratio=0.5)
    history = pt.history(model)
    assert len(history) == 1
    assert history[0].to_json() == report.plan.to_json()


def test_plot_widths_writes_a_png(tmp_path: Path) -> None:
    _, _, report = pruned_pair(ratio=0.5)
    target = tmp_path / "widths.png"
    written = report.plot_widths(target, title="tiny")
    assert Path(written) == target
    data = target.read_bytes()
    assert data.startswith(PNG)
    assert len(data) > 1000
    assert b"IEND" in data[-16:]
