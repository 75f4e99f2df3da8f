"""Never a silent wrong prune: mixing ops, plan integrity, ``ignore`` and ratios, all or nothing everywhere."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import prune_torch as pt

from .helpers import assert_same_model, randomize_norms, snapshot

Mixer = Callable[[torch.Tensor], torch.Tensor]

# every op that reads the whole of dim 1 to compute each output
MIXERS: dict[str, Mixer] = {
    "softmax": lambda x: torch.softmax(x, 1),
    "log_softmax": lambda x: F.log_softmax(x, 1),
    "mean": lambda x: x * x.mean(1, keepdim=True),
    "sum": lambda x: x + x.sum(1, keepdim=True),
    "amax": lambda x: x - x.amax(1, keepdim=True),
    "max": lambda x: x - x.max(1, keepdim=True)[0],
    "min": lambda x: x - x.min(1, keepdim=True)[0],
    "var": lambda x: x * x.var(1, keepdim=True),
    "std": lambda x: x / x.std(1, keepdim=True),
    "norm": lambda x: x * x.norm(dim=1, keepdim=True),
    "normalize": lambda x: F.normalize(x, dim=1),
    "logsumexp": lambda x: x - torch.logsumexp(x, 1, keepdim=True),
    "cumsum": lambda x: torch.cumsum(x, 1),
    "cumprod": lambda x: torch.cumprod(torch.sigmoid(x), 1),
    "cummax": lambda x: torch.cummax(x, 1)[0],
    "prod": lambda x: x * torch.sigmoid(x).prod(1, keepdim=True),
    "median": lambda x: x - x.median(1, keepdim=True)[0],
}


class ConvMix(nn.Module):
    def __init__(self, mix: Mixer) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3)
        self.c2 = nn.Conv2d(8, 4, 1)
        self.mix = mix

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c2(self.mix(self.c1(x)))


class LinearMix(nn.Module):
    def __init__(self, mix: Mixer) -> None:
        super().__init__()
        self.l1 = nn.Linear(5, 8)
        self.l2 = nn.Linear(8, 3)
        self.mix = mix

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.l2(self.mix(self.l1(x)))


def _case(family: str, name: str) -> tuple[nn.Module, torch.Tensor, nn.Module]:
    gen = torch.Generator().manual_seed(3)
    if family == "conv":
        model = ConvMix(MIXERS[name])
        x = torch.randn(2, 3, 7, 7, generator=gen, dtype=torch.float64)
        first = "c1"
    else:
        model = LinearMix(MIXERS[name])
        x = torch.randn(4, 5, generator=gen, dtype=torch.float64)
        first = "l1"
    model = model.double().eval()
    return model, x, getattr(model, first)


@pytest.mark.parametrize("family", ["conv", "linear"])
@pytest.mark.parametrize("name", sorted(MIXERS))
def test_default_prune_leaves_a_mixed_group_alone_and_says_why(family: str, name: str) -> None:
    model, x, first = _case(family, name)
    original = copy.deepcopy(model)
    report = pt.prune(model, x, ratio=0.5, show_progress=False)
    assert first.weight.shape[0] == 8, "the mixed channels must not be pruned by default"
    assert pt.check_equivalence(original, model, report.plan, x).ok
    assert any("left unpruned" in note and "approximate=True" in note for note in report.skipped), report.skipped
    assert not report.approximate


@pytest.mark.parametrize("family", ["conv", "linear"])
@pytest.mark.parametrize("name", sorted(MIXERS))
def test_opt_in_prunes_the_mixed_group_and_marks_it_approximate(family: str, name: str) -> None:
    model, x, first = _case(family, name)
    report = pt.prune(model, x, ratio=0.5, approximate=True, show_progress=False)
    assert first.weight.shape[0] == 4
    assert len(report.approximate) == 1
    # the note names the module of the mixing op (the model's own forward) and the op
    assert "mixed by" in report.approximate[0]
    assert "<root>" in report.approximate[0]
    assert model(x).shape[-1] in (3, 4, 5)


def test_a_mixed_group_really_changes_the_outputs_when_forced() -> None:
    """The reason for the default: across a softmax over channels, silencing is not pruning."""
    model, x, _ = _case("conv", "softmax")
    original = copy.deepcopy(model)
    report = pt.prune(model, x, ratio=0.5, approximate=True, show_progress=False)
    assert not pt.check_equivalence(original, model, report.plan, x).ok


def test_spatial_reductions_and_softmax_over_other_dims_do_not_block_channels() -> None:
    class Pooled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c1 = nn.Conv2d(3, 8, 3)
            self.fc = nn.Linear(8, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.c1(x)
            y = y * torch.softmax(y.flatten(2), -1).view_as(y)  # softmax over positions, per channel
            return self.fc(y.mean((2, 3)))

    model = Pooled().double().eval()
    x = torch.randn(2, 3, 9, 9, dtype=torch.float64)
    original = copy.deepcopy(model)
    report = pt.prune(model, x, ratio=0.5, show_progress=False)
    assert model.c1.out_channels == 4
    assert not report.approximate
    assert not report.skipped
    assert pt.check_equivalence(original, model, report.plan, x).ok


def test_normalisation_layers_are_pruned_and_flagged() -> None:
    class Rms(nn.Module):  # an RMSNorm written with plain tensor ops, as transformers and timm do
        def __init__(self, n: int) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.rand(n) + 0.5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(6, 8)
            self.norm = nn.LayerNorm(8)
            self.b = nn.Linear(8, 8)
            self.rms = Rms(8)
            self.c = nn.Linear(8, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.c(self.rms(self.b(self.norm(self.a(x)))))

    model = Net().double().eval()
    x = torch.randn(3, 6, dtype=torch.float64)
    report = pt.prune(model, x, ratio=0.5, show_progress=False)
    assert (model.a.out_features, model.b.out_features) == (4, 4)
    assert report.normalised
    assert len(report.approximate) == 2
    assert any("native_layer_norm" in note for note in report.approximate)
    assert any("aten.mean" in note and "rms" in note for note in report.approximate)
    narrow = Net().double().eval()
    report = pt.prune(narrow, x, ratio=0.5, approximate=False, show_progress=False)
    assert (narrow.a.out_features, narrow.b.out_features) == (8, 8)
    assert len(report.skipped) == 2


class _StdConv(nn.Conv2d):
    """Weight standardisation as timm's NFNets write it: batch norm with batch statistics over the weight."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = F.batch_norm(self.weight.reshape(1, self.out_channels, -1), None, None, training=True, eps=1e-5)
        return F.conv2d(x, w.reshape_as(self.weight), self.bias, self.stride, self.padding)


def _standardised() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), _StdConv(8, 4, 3, padding=1))


def test_weight_standardisation_mixes_the_input_channels_it_normalises() -> None:
    # the statistics of each output filter run over its input channels: removing one changes the rest
    x = torch.randn(2, 3, 8, 8)
    model = _standardised().eval()
    report = pt.prune(model, x, ratio=0.5, show_progress=False)
    assert report.approximate
    assert "2" in report.approximate[0]  # named, with the op's module
    assert model[0].out_channels == 4
    kept = _standardised().eval()
    left = pt.prune(kept, x, ratio=0.5, approximate=False, show_progress=False)
    assert kept[0].out_channels == 8
    assert any("normalisation" in note for note in left.skipped)
    # and it was right to say so: pruned, the outputs move off the silenced original
    forced = _standardised().eval()
    original = copy.deepcopy(forced)
    done = pt.prune(forced, x, ratio=0.5, show_progress=False)
    assert not pt.check_equivalence(original, forced, done.plan, x).ok


def test_approximate_must_be_a_bool_or_none_and_agree_with_hidden() -> None:
    model, x, _ = _case("conv", "softmax")
    before = snapshot(model)
    with pytest.raises(pt.PruningError, match="'approximate' must be None, True or False"):
        pt.prune(model, x, approximate="yes", show_progress=False)
    with pytest.raises(pt.PruningError, match=r"hidden=True .* approximate=False"):
        pt.prune(model, x, hidden=True, approximate=False, show_progress=False)
    assert_same_model(model, before)


def test_inspect_lists_the_mixing_op() -> None:
    model, x, _ = _case("conv", "cumsum")
    groups = pt.trace(model, x).groups().prunable
    described = [g.describe() for g in groups if g.approximate]
    assert described
    assert "cumulative (aten.cumsum) in <root>" in described[0]


# -- verify ----------------------------------------------------------------------------------------


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.body = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn(self.stem(x)))
        return self.head(y + torch.relu(self.body(y)))


def test_verify_passes_a_correct_prune_in_float32() -> None:
    model = randomize_norms(Residual()).eval()
    x = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    original = copy.deepcopy(model)
    report = pt.prune(model, x, ratio=0.5, verify=True, show_progress=False)
    assert model.stem.out_channels == 4
    # float32 rounding is not a difference
    assert pt.check_equivalence(original, model, report.plan, x).ok


def test_verify_rolls_back_and_names_the_group_when_a_kernel_lies(monkeypatch: pytest.MonkeyPatch) -> None:
    model = randomize_norms(Residual()).eval()
    x = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    before = snapshot(model)
    real_slice = pt._apply._slice  # type: ignore[attr-defined]

    # keeps the wrong channels of body.weight
    def wrong_slice(tensor: torch.Tensor, entries: list, *rest: object) -> torch.Tensor:
        out = real_slice(tensor, entries, *rest)
        if any(e.path == "body.weight" and e.axis == 0 for e in entries):
            out = out.flip(0)
        return out

    monkeypatch.setattr(pt._apply, "_slice", wrong_slice)  # type: ignore[attr-defined]
    with pytest.raises(pt.VerificationError, match=r"pruning channels of .*body.*changed the outputs.*rolled back"):
        pt.prune(model, x, ratio=0.5, verify=True, show_progress=False)
    assert_same_model(model, before)


def test_equivalence_tolerance_follows_the_dtype() -> None:
    model = randomize_norms(Residual()).eval()
    x = torch.randn(2, 3, 12, 12)
    original = copy.deepcopy(model)
    report = pt.prune(model, x, ratio=0.5, show_progress=False)
    result = pt.check_equivalence(original, model, report.plan, x)
    assert result.ok
    assert result.max_rel < 1e-4
    with torch.no_grad():
        model.head.bias.add_(1e-2)
    assert not pt.check_equivalence(original, model, report.plan, x).ok


# -- plans are checked as groups -------------------------------------------------------------------


def _tampered(plan: pt.Plan, path: str, removed: list[int]) -> pt.Plan:
    data = json.loads(plan.to_json())
    for entry in data["entries"]:
        if f"{entry['owner']}.{entry['tensor']}" == path and entry["axis"] == 0:
            entry["indices"] = removed
    return pt.Plan.from_json(json.dumps(data))


def test_a_plan_whose_entries_of_one_group_disagree_is_refused() -> None:
    model = randomize_norms(Residual()).eval()
    x = torch.randn(1, 3, 12, 12)
    graph = pt.trace(model, x)
    plan = pt.plan(graph, model.body, [0, 1])
    bad = _tampered(plan, "body.weight", [2, 3])
    before = snapshot(model)
    with pytest.raises(
        pt.PlanMismatchError,
        match=r"entry \S+\[0\] removes index \d \(unit \d of channels of stem, bn, body, head.* keeps that unit",
    ):
        pt.apply(model, bad)
    assert_same_model(model, before)
    pt.apply(model, plan)
    assert model.body.out_channels == 6


def test_a_plan_missing_a_coupled_tensor_is_refused() -> None:
    model = randomize_norms(Residual()).eval()
    x = torch.randn(1, 3, 12, 12)
    plan = pt.plan(pt.trace(model, x), model.stem, [0, 1])
    data = json.loads(plan.to_json())
    data["entries"] = [e for e in data["entries"] if e["owner"] != "bn"]
    bad = pt.Plan.from_json(json.dumps(data))
    before = snapshot(model)
    with pytest.raises(
        pt.PlanMismatchError, match=r"but bn\.(weight|bias|running_mean|running_var)\[0\] keeps that unit"
    ):
        pt.apply(model, bad)
    assert_same_model(model, before)


# -- ignore and ratios mean what they say ----------------------------------------------------------


class Chain(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c0 = nn.Conv2d(3, 16, 3, padding=1)
        self.c1 = nn.Conv2d(16, 16, 3, padding=1)
        self.c2 = nn.Conv2d(16, 16, 3, padding=1)
        self.c3 = nn.Conv2d(16, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c3(torch.relu(self.c2(self.c1(torch.relu(self.c0(x))))))


@pytest.mark.parametrize("ignored", [["c1"], ["c1", "c2"], ["c2", "c1"]])
def test_ignored_modules_keep_their_output_channels_whatever_they_feed(ignored: list[str]) -> None:
    model = Chain().eval()
    pt.prune(model, torch.randn(1, 3, 8, 8), ratio=0.5, ignore=ignored, show_progress=False)
    for name in ignored:
        assert getattr(model, name).out_channels == 16, name
    assert model.c0.out_channels == 8


def test_group_norm_loses_the_ratio_of_its_channels_not_more() -> None:
    class GN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 64, 3)
            self.norm = nn.GroupNorm(8, 64)
            self.out = nn.Conv2d(64, 2, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out(self.norm(self.conv(x)))

    x = torch.randn(1, 3, 8, 8)
    model = GN().eval()
    original = copy.deepcopy(model)
    report = pt.prune(model, x, ratio=0.5, show_progress=False)
    # half the channels, and by whole groups where that hits the ratio: exact
    assert (model.conv.out_channels, model.norm.num_channels, model.norm.num_groups) == (32, 32, 4)
    assert not report.approximate
    assert pt.check_equivalence(original, model, report.plan, x).ok
    # 30% of GroupNorm(4, 64): 3 groups of 15 channels (45 of 64 kept) is nearest; the positions are approximate
    model = GN().eval()
    model.norm = nn.GroupNorm(4, 64)
    report = pt.prune(model, x, ratio=0.3, show_progress=False)
    assert (model.norm.num_groups, model.norm.num_channels) == (3, 45)
    assert report.normalised
    assert len(report.approximate) == 1
    model = GN().eval()
    model.norm = nn.GroupNorm(4, 64)
    report = pt.prune(model, x, ratio=0.3, approximate=False, show_progress=False)
    assert (model.norm.num_groups, model.norm.num_channels) == (3, 48)  # whole groups only: nearest is 25%


# -- all or nothing --------------------------------------------------------------------------------


def test_a_failing_between_steps_hook_rolls_back_every_step_and_the_optimizer() -> None:
    model = randomize_norms(Residual()).train()
    x = torch.randn(2, 3, 12, 12)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model(x).sum().backward()
    optimizer.step()
    before = snapshot(model)
    state_before = copy.deepcopy(optimizer.state_dict())

    def hook(step: int, pruned: nn.Module) -> None:
        optimizer.zero_grad()
        pruned(x).sum().backward()
        optimizer.step()  # fine-tuning writes into the weights in place
        if step == 1:
            raise RuntimeError("fine-tuning diverged")

    with pytest.raises(RuntimeError, match="fine-tuning diverged"):
        pt.prune(model, x, ratio=0.5, steps=3, between_steps=hook, optimizer=optimizer, show_progress=False)
    assert_same_model(model, before)
    after = optimizer.state_dict()
    for key, value in state_before["state"].items():
        for name, tensor in value.items():
            assert torch.equal(torch.as_tensor(after["state"][key][name]), torch.as_tensor(tensor)), (key, name)
    # and the optimiser still trains the restored model
    optimizer.zero_grad()
    model(x).sum().backward()
    optimizer.step()


def test_an_optimizer_given_to_prune_is_pruned_with_every_step() -> None:
    model = randomize_norms(Residual()).train()
    x = torch.randn(2, 3, 12, 12)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(x).sum().backward()
    optimizer.step()
    pt.prune(model, x, ratio=0.5, steps=2, optimizer=optimizer, show_progress=False)
    for param in model.parameters():
        assert optimizer.state[param]["exp_avg"].shape == param.shape
    optimizer.zero_grad()
    model(x).sum().backward()
    optimizer.step()


def test_prune_optimizer_refuses_a_plan_that_does_not_fit() -> None:
    model = randomize_norms(Residual()).train()
    x = torch.randn(2, 3, 12, 12)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(x).sum().backward()
    optimizer.step()
    plan = pt.plan(pt.trace(model, x), model.body, [0, 1])
    state = copy.deepcopy(optimizer.state_dict())
    with pytest.raises(pt.PlanMismatchError, match=r"has shape \(8.*the plan leaves it at \(6.*call it after pt.apply"):
        pt.prune_optimizer(optimizer, model, plan)
    with pytest.raises(pt.PlanMismatchError, match="has no module"):
        pt.prune_optimizer(optimizer, nn.Sequential(nn.Linear(2, 2)), plan)
    assert str(optimizer.state_dict()) == str(state)
    pt.apply(model, plan)
    assert pt.prune_optimizer(optimizer, model, plan) > 0
    with pytest.raises(pt.PlanMismatchError, match="pruned twice"):
        pt.prune_optimizer(optimizer, model, plan)


@pytest.mark.parametrize("strength", [-1.0, float("nan"), float("inf"), True, "1e-4"])
def test_group_lasso_validates_its_strength(strength: object) -> None:
    with pytest.raises(pt.PruningError, match="'strength'"):
        pt.GroupLasso(Residual(), torch.randn(1, 3, 8, 8), strength=strength)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "idxs", [[1.5], [True], ["1"], torch.tensor([1.0]), torch.tensor([True, False]), 1, "01"], ids=repr
)
def test_low_level_functions_take_integer_indices_only(idxs: object) -> None:
    conv = nn.Conv2d(3, 8, 3)
    before = snapshot(conv)
    with pytest.raises(pt.InvalidIndicesError, match="Conv2d"):
        pt.prune_out_channels(conv, idxs)  # type: ignore[arg-type]
    assert_same_model(conv, before)


def test_a_low_level_prune_that_fails_half_way_restores_the_layer(monkeypatch: pytest.MonkeyPatch) -> None:
    conv = nn.Conv2d(3, 8, 3)
    conv.weight.grad = torch.ones_like(conv.weight)
    before = snapshot(conv)
    real = pt._lowlevel.set_data  # type: ignore[attr-defined]
    calls = []

    def second_fails(param: nn.Parameter, data: torch.Tensor) -> None:
        calls.append(param)
        if len(calls) == 2:
            raise RuntimeError("device lost")
        real(param, data)

    monkeypatch.setattr(pt._lowlevel, "set_data", second_fails)  # type: ignore[attr-defined]
    with pytest.raises(RuntimeError, match="device lost"):
        pt.prune_out_channels(conv, [0, 1])
    monkeypatch.undo()
    assert_same_model(conv, before)
    pt.prune_out_channels(conv, torch.tensor([0, 1]))
    assert conv.weight.shape[0] == conv.bias.shape[0] == conv.out_channels == 6


def test_apply_refuses_a_scripted_model_before_anything() -> None:
    model = randomize_norms(Residual()).eval()
    x = torch.randn(1, 3, 12, 12)
    plan = pt.plan(pt.trace(model, x), model.body, [0, 1])
    scripted = torch.jit.script(model)
    with pytest.raises(pt.TraceError, match=r"TorchScript module.*Prune the eager model"):
        pt.apply(scripted, plan)


class Attention(nn.Module):
    def __init__(self, scale: float | None) -> None:
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(8, 16) for _ in range(4))
        self.o = nn.Linear(16, 8)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.o(F.scaled_dot_product_attention(self.q(x), self.k(x), self.v(x), scale=self.scale))


def test_attention_with_its_default_scale_keeps_its_query_key_dim() -> None:
    """Without an explicit scale, attention divides by √(query-key dim): pruning that dim changes
    every kept value (on meta, torch hides the scale in a decomposition; the tracer records the call whole)."""
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    model = Attention(None).double().eval()
    original = copy.deepcopy(model)
    report = pt.prune(model, x, ratio=0.5, show_progress=False)
    assert (model.q.out_features, model.v.out_features) == (16, 8)
    assert any("mixed by size (aten.scaled_dot_product_attention)" in note for note in report.skipped)
    assert pt.check_equivalence(original, model, report.plan, x).ok
    explicit = Attention(0.25).double().eval()
    original = copy.deepcopy(explicit)
    report = pt.prune(explicit, x, ratio=0.5, verify=True, show_progress=False)
    assert explicit.q.out_features == 8
    assert pt.check_equivalence(original, explicit, report.plan, x, silence_outputs=report.silence_outputs).ok


class PositionAttention(nn.Module):
    """Channels summed in a product of two activations (segmentation-models-pytorch MAnet's PAB block)."""

    def __init__(self) -> None:
        super().__init__()
        self.top = nn.Conv2d(4, 8, 1)
        self.center = nn.Conv2d(4, 8, 1)
        self.out = nn.Conv2d(4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        product = torch.matmul(self.center(x).flatten(2).transpose(1, 2), self.top(x).flatten(2))
        weights = torch.softmax(product.view(b, -1), 1).view(b, h * w, h * w)
        return self.out(torch.matmul(weights, x.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(b, c, h, w))


def test_channels_summed_in_a_product_of_activations_are_silenced_where_they_are_made() -> None:
    model = PositionAttention().double().eval()
    x = torch.randn(1, 4, 3, 3, dtype=torch.float64)
    original = copy.deepcopy(model)
    report = pt.prune(model, x, ratio=0.5, verify=True, show_progress=False)
    assert model.top.out_channels == model.center.out_channels == 4
    assert {"top", "center"} <= set(report.silence_outputs)
    assert pt.check_equivalence(original, model, report.plan, x, silence_outputs=report.silence_outputs).ok
    # without silencing the product's inputs, the check cannot tell: that is why the report names them
    assert not pt.check_equivalence(original, model, report.plan, x).ok
