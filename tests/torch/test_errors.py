"""Bad input raises a clear, typed error and leaves the model bit-identical; a failed apply restores it exactly."""

from __future__ import annotations

from collections.abc import Callable

import attrs
import pytest
import torch
import torch.nn.functional as F
from models import conv_bn_conv
from support import assert_unchanged, prepared, snapshot
from torch import nn

import prune_torch as pt
from prune_ops import make_plan, removal_of

X = torch.randn(2, 3, 6, 6)


@pytest.fixture
def model() -> nn.Sequential:
    """conv → BN → ReLU → conv, with gradients (apply must restore them too)."""
    torch.manual_seed(0)
    net = conv_bn_conv()
    net(X).sum().backward()
    return net


def _edited(plan: pt.Plan, entry_module: str, entry_param: str, **changes: object) -> pt.Plan:
    """``plan`` with one entry changed by hand (as a user editing a saved plan might)."""
    key = (entry_module, entry_param)
    entries = [attrs.evolve(e, **changes) if (e.owner, e.tensor) == key else e for e in plan.entries]
    return attrs.evolve(plan, entries=tuple(entries))


def _raises_unchanged(model: nn.Module, error: type[Exception], match: str, call: Callable[[], object]) -> None:
    before = snapshot(model)
    with pytest.raises(error, match=match):
        call()
    assert_unchanged(model, before)


# ------------------------------------------------------------------------------------------ indices


@pytest.mark.parametrize(
    ("idxs", "match"),
    [
        ([3, 8], r"0\.weight\[0\]: index 8 is out of range for size 8"),
        ([-1], r"index -1 is negative"),
        ([2, 2], r"index 2 appears 2 times"),
        ([], r"no indices given"),
        (list(range(8)), r"removing all 8 channels would leave none"),
    ],
    ids=["out-of-range", "negative", "duplicate", "empty", "all"],
)
def test_bad_indices_for_plan(model: nn.Sequential, idxs: list[int], match: str) -> None:
    graph = pt.trace(model, X)
    _raises_unchanged(model, pt.InvalidIndicesError, match, lambda: pt.plan(graph, model[0], idxs))


@pytest.mark.parametrize(
    ("removed", "match"),
    [((1, 9), "index 9 is out of range"), ((1, 1), "appears 2 times"), (tuple(range(8)), "would leave none")],
    ids=["out-of-range", "duplicate", "all"],
)
def test_bad_indices_in_an_edited_plan(model: nn.Sequential, removed: tuple[int, ...], match: str) -> None:
    plan = pt.plan(pt.trace(model, X), model[0], [1, 2])
    bad = _edited(plan, "1", "running_var", removed=removed)
    _raises_unchanged(
        model, pt.InvalidIndicesError, rf"plan entry 1\.running_var\[0\]: .*{match}", lambda: pt.apply(model, bad)
    )


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda m: pt.prune_out_channels(m[0], [8]),
            pt.InvalidIndicesError,
            r"Conv2d\.weight\[0\]: index 8 is out of range",
        ),
        (lambda m: pt.prune_out_channels(m[1], range(8)), pt.InvalidIndicesError, "would leave none"),
        (lambda m: pt.prune_in_channels(m[3], [0, 0]), pt.InvalidIndicesError, "appears 2 times"),
        (lambda m: pt.prune_batchnorm(m[0], [0]), pt.UnprunableError, "needs a BatchNorm"),
        (lambda m: pt.prune_related_conv(m[1], [0]), pt.UnprunableError, "needs a convolution"),
        (lambda m: pt.prune_out_channels(m[2], [0]), pt.UnprunableError, "no layer rule for ReLU"),
    ],
    ids=["out-of-range", "all", "duplicate", "not-bn", "not-conv", "no-rule"],
)
def test_low_level_errors_change_nothing(
    model: nn.Sequential, call: Callable[[nn.Module], object], error: type[Exception], match: str
) -> None:
    _raises_unchanged(model, error, match, lambda: call(model))


def test_bad_ratios(model: nn.Sequential) -> None:
    for kwargs, match in (
        ({"ratio": 1.0}, r"'ratio' must be a fraction in \[0, 1\) \(got 1.0\)"),
        ({"ratio": -0.1}, r"'ratio' must be a fraction"),
        ({"ratio": 0.5, "round_to": 0}, r"'round_to' must be an int >= 1 \(got 0\)"),
        ({"ratio": 0.5, "steps": 0}, r"'steps' must be an int >= 1"),
        ({"ratio": 0.5, "importance": "l7"}, r"unknown importance 'l7'; valid: .*l1"),
        ({"ratio": 0.5, "ratios": {"0": 1.5}}, r"'ratios\['0'\]' must be a fraction"),
    ):
        _raises_unchanged(model, pt.PruningError, match, lambda kwargs=kwargs: pt.prune(model, X, **kwargs))


# ------------------------------------------------------------------------------ another model's plan


def test_plan_for_another_model(model: nn.Sequential) -> None:
    other = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 5, 3, 1, 1))
    plan = pt.plan(pt.trace(other, X), other[0], [0, 1])
    _raises_unchanged(
        model,
        pt.PlanMismatchError,
        r"plan entry 3\.weight\[1\]: expected shape \(5, 8, 3, 3\), the model has \(4, 8, 3, 3\) "
        r"\(was the plan made for another model\?\)",
        lambda: pt.apply(model, plan),
    )


def test_plan_applied_twice(model: nn.Sequential) -> None:
    plan = pt.plan(pt.trace(model, X), model[0], [0, 1])
    pt.apply(model, plan)
    _raises_unchanged(model, pt.PlanMismatchError, "already applied", lambda: pt.apply(model, plan))


def test_plan_naming_a_missing_module(model: nn.Sequential) -> None:
    plan = pt.plan(pt.trace(model, X), model[0], [0, 1])
    renamed = _edited(plan, "3", "weight", owner="head")
    _raises_unchanged(
        model,
        pt.PlanMismatchError,
        r"plan entry head\.weight\[1\]: the model has no module 'head'",
        lambda: pt.apply(model, renamed),
    )


def test_plan_with_a_wrong_shape(model: nn.Sequential) -> None:
    plan = pt.plan(pt.trace(model, X), model[0], [0, 1])
    reshaped = _edited(plan, "3", "weight", shape=(4, 9, 3, 3), size=9)
    _raises_unchanged(
        model,
        pt.PlanMismatchError,
        r"expected shape \(4, 9, 3, 3\), the model has \(4, 8, 3, 3\)",
        lambda: pt.apply(model, reshaped),
    )


def test_plan_json_from_another_schema() -> None:
    with pytest.raises(pt.PlanMismatchError, match="expected plan schema 'prune-plan/2'"):
        pt.Plan.from_json('{"schema": "prune-plan/0"}')
    with pytest.raises(pt.PlanMismatchError, match="not JSON"):
        pt.Plan.from_json("{")


# ------------------------------------------------------------------------------- modules and ops


def test_module_that_is_not_in_the_model(model: nn.Sequential) -> None:
    graph = pt.trace(model, X)
    stranger = nn.Conv2d(3, 8, 3)
    _raises_unchanged(
        model,
        pt.UnprunableError,
        r"module Conv2d is not part of the traced model \(pass a module of the model given to trace\(\), or its path",
        lambda: pt.plan(graph, stranger, [0]),
    )
    _raises_unchanged(
        model,
        pt.UnprunableError,
        r"no tensor 'backbone\.weight'; modules with parameters: 0, 1, 3",
        lambda: pt.plan(graph, "backbone", [0]),
    )
    _raises_unchanged(
        model,
        pt.PruningError,
        "ignore: a Conv2d that is not part of the model",
        lambda: pt.prune(model, X, ignore=[stranger]),
    )
    _raises_unchanged(
        model,
        pt.PruningError,
        "ratios: the model has no module 'head'",
        lambda: pt.prune(model, X, ratios={"head": 0.5}),
    )
    _raises_unchanged(
        model,
        pt.UnprunableError,
        r"0\.weight: dim 4 does not exist \(the tensor has 4 dims\)",
        lambda: pt.plan(graph, model[0], [0], dim=4),
    )


class Sorted(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sort(x, dim=1).values


def test_opaque_op_in_the_group() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 6, 1), Sorted(), nn.Conv2d(6, 4, 1), nn.ReLU(), nn.Conv2d(4, 2, 1))
    graph = pt.trace(model, X)
    _raises_unchanged(
        model,
        pt.UnprunableError,
        r"cannot be pruned: unsupported op aten\.sort in 1",
        lambda: pt.plan(graph, model[0], [0]),
    )
    (blocked,) = [g for g in graph.groups() if any(m.label == "0.weight[0]" for m in g.members)]
    _raises_unchanged(model, pt.UnprunableError, "aten.sort in 1", lambda: removal_of(graph, [(blocked, [0])]))
    # the ignored output of the last conv, as an explicit ignore, is refused the same way
    graph = pt.trace(model, X)
    ignored = graph.groups(ignore=("2",))
    (group,) = [g for g in ignored if any(m.label == "2.weight[0]" for m in g.members)]
    assert "output of ignored module 2" in "; ".join(group.blockers)
    _raises_unchanged(
        model, pt.UnprunableError, "output of ignored module 2", lambda: removal_of(graph, [(group, [0])])
    )


def test_indices_that_are_not_whole_units() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 1), nn.Flatten(), nn.Linear(8 * 36, 2))
    graph = pt.trace(model, X)
    # a flatten gives each channel 36 inputs of the linear: one of them cannot go alone
    _raises_unchanged(
        model,
        pt.InvalidIndicesError,
        r"2\.weight\[1\]: index 0 cannot be removed on its own; group \d+ removes 2\.weight\[1\] indices \[0, 1, 2, 3, 4, 5, \.\.\.\] together",
        lambda: pt.plan(graph, model[2], [0], dim=1),
    )


# ----------------------------------------------------------------------- failures during apply


class FixedWidth(nn.Module):
    """Writes its channel count as a literal in its forward pass: nothing pruning can update."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        y = F.relu(self.bn(self.conv(x))).view(b, 8, -1)  # (an attribute read here would follow the prune)
        return self.fc(y.mean(-1))


class FixedSplit(nn.Module):
    """Splits at literal sizes, which cannot follow a prune of the split tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 1)
        self.left = nn.Conv2d(3, 2, 1)
        self.right = nn.Conv2d(5, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.conv(x).split([3, 5], 1)
        return torch.cat([self.left(a), self.right(b)], 1)


class FixedShuffle(nn.Module):
    """A channel shuffle with a literal group count."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 12, 1)
        self.head = nn.Conv2d(12, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        b, c, h, w = y.shape
        y = y.view(b, 3, c // 3, h, w).transpose(1, 2).reshape(b, c, h, w)
        return self.head(y)


@pytest.mark.parametrize(
    ("factory", "target", "idxs", "match"),
    [
        (FixedWidth, "conv", [0, 1], "the pruned model no longer runs"),
        (FixedSplit, "conv", [0], "the pruned model no longer runs"),
        (FixedShuffle, "conv", [0, 1, 2, 3], "the pruned model no longer runs"),  # one whole shuffle group
    ],
    ids=["attribute", "literal-split", "literal-shuffle-groups"],
)
def test_failure_during_apply_restores_the_model(
    factory: type[nn.Module], target: str, idxs: list[int], match: str
) -> None:
    torch.manual_seed(0)
    model = prepared(factory())
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    model(x).sum().backward()  # gradients must come back too
    params = dict(model.named_parameters())
    expected = model(x).detach()
    graph = pt.trace(model, x)
    plan = pt.plan(graph, target, idxs)
    before = snapshot(model)
    with pytest.raises(pt.ApplyError, match=match):
        pt.apply(model, plan, x)
    assert_unchanged(model, before)
    assert all(p is params[name] for name, p in model.named_parameters())  # the same Parameter objects
    assert torch.equal(model(x), expected)


def test_failure_names_the_module_whose_shape_went_wrong() -> None:
    """When the pruned model still runs but computes other shapes than planned, the error names where."""

    class ChannelMean(nn.Module):
        def forward(self, y: torch.Tensor) -> torch.Tensor:
            # a literal width: with fewer channels this still runs (6·16 = 8·12), but regroups the values
            return y.view(y.shape[0], 8, -1).mean(1)

    model = nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU(), ChannelMean())
    x = torch.randn(2, 3, 4, 4)
    plan = pt.plan(pt.trace(model, x), model[0], [0, 1])
    _raises_unchanged(
        model,
        pt.ApplyError,
        r"after pruning, aten\.view in module 2 produced shape \(2, 8, 12\) where the plan predicted \(2, 6, 16\); "
        r"a size is probably kept in an attribute of 2 .* The model was restored",
        lambda: pt.apply(model, plan, x),
    )


def test_edited_plan_that_breaks_a_grouped_conv_is_refused() -> None:
    """A plan edited to remove one output channel of a grouped conv (not a whole group, not the same
    position in every group) cannot be carried out: the check of the plan against the model's groups
    refuses it before anything changes."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 6, 1), nn.Conv2d(6, 6, 1, groups=2), nn.Conv2d(6, 2, 1))
    graph = pt.trace(model, X)
    (group,) = [g for g in graph.groups().prunable if any(m.label == "1.weight[0]" for m in g.members) and g.size == 3]
    plan = make_plan(graph, removal_of(graph, [(group, [0])]))  # position 0 of both groups: channels 0 and 3
    assert plan.entry("1", "weight", 0).removed == (0, 3)
    broken = _edited(plan, "1", "weight", removed=(0,))
    broken = _edited(broken, "1", "bias", removed=(0,))
    broken = _edited(broken, "2", "weight", removed=(0,))
    before = snapshot(model)
    with pytest.raises(pt.PlanMismatchError, match=r"entry 1\.bias\[0\] removes index 0 .* keeps that unit"):
        pt.apply(model, broken)
    assert_unchanged(model, before)
    model(X)


def test_prune_leaves_alone_what_the_model_code_cannot_follow() -> None:
    """The one-call prune does not give up on a model like ``FixedWidth``: the group whose apply
    fails is left unpruned (the model restored) and the report says why."""
    torch.manual_seed(0)
    model = prepared(FixedWidth())
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    before = snapshot(model)
    report = pt.prune(model, x, ratio=0.5)
    assert report.plan.is_empty
    assert_unchanged(model, before)
    (note,) = report.skipped
    assert "left unpruned: the pruned model no longer runs" in note
    assert note in str(report)
