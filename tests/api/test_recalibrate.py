"""recalibrate_norms: BatchNorm statistics re-estimated from data, modes and momenta restored."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from tests.api.helpers import randomize_norms
from tests.api.nets import TinyCNN
from torch import nn

import prune_torch as pt


def _inputs_of(model: nn.Module, x: torch.Tensor, train: bool = False) -> dict[str, torch.Tensor]:
    """What each BatchNorm receives on ``x``; in train mode on a copy, so the model's statistics stay."""
    if train:
        model = copy.deepcopy(model).train()
    seen: dict[str, torch.Tensor] = {}
    hooks = [
        m.register_forward_hook(lambda _m, args, _out, name=name: seen.__setitem__(name, args[0].detach()))
        for name, m in model.named_modules()
        if isinstance(m, nn.BatchNorm2d)
    ]
    if not train:
        model.eval()
    with torch.no_grad():
        model(x)
    for hook in hooks:
        hook.remove()
    return seen


def test_statistics_are_those_of_the_data() -> None:
    torch.manual_seed(0)
    model = randomize_norms(TinyCNN())
    batches = [torch.randn(8, 3, 8, 8) * 3 + 1 for _ in range(3)]
    expected = [_inputs_of(model, x) for x in batches]
    names = pt.recalibrate_norms(model, batches, show_progress=False)
    assert names == ["bn1", "bn2", "bn3"]
    # the first norm's input does not depend on any statistics: its mean and variance are exact
    first = torch.cat([e["bn1"] for e in expected])
    assert torch.allclose(model.bn1.running_mean, first.mean((0, 2, 3)), atol=1e-5)
    per_batch_var = torch.stack([e["bn1"].var((0, 2, 3), unbiased=True) for e in expected])
    assert torch.allclose(model.bn1.running_var, per_batch_var.mean(0), atol=1e-4)
    assert int(model.bn1.num_batches_tracked) == 3


def test_every_layer_matches_a_single_batch_in_train_mode() -> None:
    torch.manual_seed(0)
    model = randomize_norms(TinyCNN())
    x = torch.randn(16, 3, 8, 8)
    # during the pass each norm normalises with its batch's statistics, so deeper norms see what they
    # would see in train mode
    inputs = _inputs_of(model, x, train=True)
    pt.recalibrate_norms(model, [x], show_progress=False)
    for name in ("bn1", "bn2", "bn3"):
        norm = getattr(model, name)
        assert torch.allclose(norm.running_mean, inputs[name].mean((0, 2, 3)), atol=1e-5)
        assert torch.allclose(norm.running_var, inputs[name].var((0, 2, 3), unbiased=True), atol=1e-4)


def test_modes_and_momentum_are_restored() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4, momentum=0.3), nn.Dropout(0.5), nn.BatchNorm2d(4))
    model.train()
    model[2].eval()
    model[3].eval()
    pt.recalibrate_norms(model, [torch.randn(4, 3, 5, 5)], show_progress=False)
    assert [m.training for m in model.modules()] == [True, True, True, False, False]
    assert model[1].momentum == 0.3
    assert model[3].momentum == 0.1
    assert all(p.grad is None for p in model.parameters())


def test_a_failed_pass_leaves_the_statistics_alone() -> None:
    model = randomize_norms(TinyCNN())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(pt.PruningError, match="at least one batch"):
        pt.recalibrate_norms(model, [], show_progress=False)
    with pytest.raises(RuntimeError):
        pt.recalibrate_norms(model, [torch.randn(2, 3, 8, 8), torch.randn(2, 5, 8, 8)], show_progress=False)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.bn1.momentum == 0.1
    assert model.training


def test_no_batchnorm_means_nothing_to_do() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
    assert pt.recalibrate_norms(model, [torch.randn(2, 4)], show_progress=False) == []
    with pytest.raises(pt.PruningError, match=r"must be a torch\.nn\.Module"):
        pt.recalibrate_norms("model", [], show_progress=False)  # type: ignore[arg-type]


def test_recalibration_repairs_a_pruned_network() -> None:
    torch.manual_seed(0)
    x = torch.randn(64, 3, 8, 8)
    y = (x[:, 0].mean((1, 2)) > x[:, 1].mean((1, 2))).long()  # which of two channels is brighter
    model = TinyCNN(num_classes=2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(15):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    model.eval()
    pt.prune(model, x[:1], ratio=0.5, importance="random", ignore=["fc"], seed=0, show_progress=False)

    def loss() -> float:
        with torch.no_grad():
            return float(F.cross_entropy(model(x), y))

    raw = loss()
    pt.recalibrate_norms(model, x.split(16), show_progress=False)
    assert not model.training
    assert loss() < raw
    inputs = _inputs_of(model, x, train=True)
    assert torch.allclose(model.bn1.running_mean, inputs["bn1"].mean((0, 2, 3)), atol=1e-5)
