"""Train/eval mode does not matter: a plan made in one mode applies in any other, and every
module's own mode (a mix included) is exactly what it was before tracing, pruning or loading."""

from __future__ import annotations

import random
from pathlib import Path

import attrs
import pytest
import torch
from torch import nn

import prune_torch as pt
from prune_torch.examples import ResNetLike

from .helpers import randomize_norms

X = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))


class DropNet(nn.Module):
    """conv → bn → relu → dropout, twice, and a linear head: in train mode dropout adds ops to a trace."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.drop1 = nn.Dropout2d(0.3)
        self.conv2 = nn.Conv2d(16, 24, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(24)
        self.drop2 = nn.Dropout(0.2)
        self.fc = nn.Linear(24, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop1(torch.relu(self.bn1(self.conv1(x))))
        x = self.drop2(torch.relu(self.bn2(self.conv2(x))))
        return self.fc(x.mean((2, 3)))


class ReadsValues(DropNet):
    """Reads a tensor value in Python, so tracing falls back to real tensors."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if float(x.abs().sum()) < 0:  # never true; the read alone forces the real run
            x = -x
        return super().forward(x)


def build(seed: int = 0, cls: type[DropNet] = DropNet) -> DropNet:
    torch.manual_seed(seed)
    return randomize_norms(cls(), seed)  # type: ignore[return-value]


def modes(model: nn.Module) -> dict[str, bool]:
    return {name: module.training for name, module in model.named_modules()}


def mixed(model: nn.Module, seed: int) -> dict[str, bool]:
    """Put each module in a random mode, the way a user freezing some layers would."""
    rng = random.Random(seed)
    for module in model.modules():
        module.training = rng.random() < 0.5
    return modes(model)


def eval_outputs(model: nn.Module) -> torch.Tensor:
    flags = modes(model)
    model.eval()
    with torch.no_grad():
        out = model(X)
    for name, module in model.named_modules():
        module.training = flags[name]
    return out


def test_the_graph_is_the_same_in_every_mode() -> None:
    model = build()
    graphs = [pt.trace(model.eval(), X), pt.trace(model.train(), X)]
    mixed(model, 1)
    graphs.append(pt.trace(model, X))
    assert len({g.fingerprint() for g in graphs}) == 1
    assert len({tuple((v.id, v.shape) for v in g.values) for g in graphs}) == 1


@pytest.mark.parametrize(("made_in", "loaded_in"), [("eval", "train"), ("train", "eval"), ("eval", "mixed")])
def test_load_pruned_into_a_fresh_model_in_another_mode(tmp_path: Path, made_in: str, loaded_in: str) -> None:
    model = build()
    model.train(made_in == "train")
    pt.prune(model, X, ratio=0.5, show_progress=False)
    assert all(m.training is (made_in == "train") for m in model.modules())
    path = pt.save_pruned(model, tmp_path / "pruned.pt")
    fresh = build(seed=7)
    flags = mixed(fresh, 2) if loaded_in == "mixed" else modes(fresh.train(loaded_in == "train"))
    loaded = pt.load_pruned(fresh, path)
    assert modes(loaded) == flags
    assert torch.equal(eval_outputs(loaded), eval_outputs(model))
    assert loaded.conv1.out_channels == model.conv1.out_channels < 16


def test_the_readme_example_loads_into_a_model_in_train_mode(tmp_path: Path) -> None:
    """``pt.load_pruned(resnet_like(), "pruned.pt")``: a fresh model is in train mode, the plan was made in eval mode."""
    torch.manual_seed(0)
    model = ResNetLike(widths=(16, 32), blocks=1, num_classes=10).eval()
    x = torch.randn(1, 3, 32, 32)
    pt.prune(model, x, ratio=0.5, show_progress=False)
    path = pt.save_pruned(model, tmp_path / "pruned.pt")
    fresh = ResNetLike(widths=(16, 32), blocks=1, num_classes=10)
    assert fresh.training
    loaded = pt.load_pruned(fresh, path)
    assert all(m.training for m in loaded.modules())
    with torch.no_grad():
        assert torch.equal(loaded.eval()(x), model(x))


@pytest.mark.parametrize(("traced_in", "applied_in"), [("train", "eval"), ("eval", "train"), ("mixed", "mixed")])
def test_apply_a_plan_made_in_another_mode(traced_in: str, applied_in: str) -> None:
    model = build()
    if traced_in == "mixed":
        mixed(model, 3)
    else:
        model.train(traced_in == "train")
    plan = pt.plan(pt.trace(model, X), model.conv2, [0, 3, 5, 7])
    flags = mixed(model, 4) if applied_in == "mixed" else modes(model.train(applied_in == "train"))
    pt.apply(model, plan)
    assert modes(model) == flags
    assert model.conv2.out_channels == model.bn2.num_features == model.fc.in_features == 20


@pytest.mark.parametrize("seed", [5, 6])
def test_prune_and_trace_leave_every_module_in_its_own_mode(seed: int) -> None:
    model = build()
    flags = mixed(model, seed)
    pt.trace(model, X)
    assert modes(model) == flags
    pt.prune(model, X, ratio=0.3, show_progress=False)
    assert modes(model) == flags


def test_an_overridden_train_method_is_not_called() -> None:
    """The trace sets the flags itself: a model whose ``train()`` does more than set them is left alone."""

    class Frozen(DropNet):
        calls = 0

        def train(self, mode: bool = True) -> Frozen:
            Frozen.calls += 1
            return super().train(mode)

    torch.manual_seed(0)
    model = Frozen()
    before = Frozen.calls
    pt.prune(model, X, ratio=0.3, show_progress=False)
    assert Frozen.calls == before
    assert model.training


def test_a_real_trace_in_train_mode_leaves_batchnorm_statistics_alone() -> None:
    """Pruning a model in train mode that must be traced on real tensors: running statistics of the
    kept channels are what they were (a train-mode forward would have updated them)."""
    model = build(cls=ReadsValues).train()
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}
    report = pt.prune(model, X, ratio=0.5, show_progress=False)
    assert model.training
    kept = torch.tensor(report.plan.entry("bn1", "running_mean", 0).kept)
    assert torch.equal(model.bn1.running_mean, before["bn1.running_mean"][kept])
    assert torch.equal(model.bn1.running_var, before["bn1.running_var"][kept])
    assert int(model.bn1.num_batches_tracked) == int(before["bn1.num_batches_tracked"]) == 0


def test_a_plan_applies_by_names_whatever_its_value_positions() -> None:
    """A plan's predicted activation shapes are keyed by the positions of the trace it was made
    from; apply never trusts them (it makes the plan again on this model's own trace), so a plan
    whose positions name other values applies exactly like the original."""
    model, reference = build(), build()
    plan = pt.plan(pt.trace(model, X), model.conv1, [0, 1, 2])

    def shift(key: str) -> str:
        return f"%{int(key[1:]) + 1}" if key.startswith("%") else key

    shifted = attrs.evolve(plan, shapes=tuple((shift(k), v) for k, v in plan.shapes))
    pt.apply(model, shifted)
    pt.apply(reference, plan)
    assert model.conv1.out_channels == 13
    with torch.no_grad():
        assert torch.equal(model.eval()(X), reference.eval()(X))


class _TrainingProperty(nn.Module):
    """A module whose ``training`` is a property: its setter must run, not a write to its dict."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)

    @property
    def training(self) -> bool:  # type: ignore[override]
        return self.__dict__.get("_mode", True)

    @training.setter
    def training(self, value: bool) -> None:
        self.__dict__.setdefault("set_to", []).append(value)
        self.__dict__["_mode"] = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert not self.training, "traced in training mode"
        return self.conv(x)


def test_a_training_property_is_set_through_its_setter() -> None:
    model = _TrainingProperty()
    pt.trace(model, torch.randn(1, 3, 4, 4))
    assert model.training
    assert model.__dict__["set_to"][-2:] == [False, True]
