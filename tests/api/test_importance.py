"""Importance criteria by name or callable, reductions across members, and their errors."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

import prune_torch as pt

from . import nets
from .helpers import assert_same_model, prunable_groups, randomize_norms, root, scale_units, snapshot

X16 = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(4))
NAMES = ("l1", "l2", "random", "bn_scale", "taylor", "fpgm", "group_l2")


def removed(report: pt.Report, module: str) -> tuple[int, ...]:
    """Output channels of ``module`` that the report's plan removed."""
    entry = report.plan.entry(module, "weight", 0)
    assert entry is not None, module
    return entry.removed


def two_layer(rows: list[list[float]], bias: list[float], head: list[float]) -> nn.Module:
    """Linear(len(row) → len(rows)) → ReLU → Linear(→ 1) with the given weights: one group of len(rows) units."""
    model = nn.Sequential(nn.Linear(len(rows[0]), len(rows)), nn.ReLU(), nn.Linear(len(rows), 1))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor(rows))
        model[0].bias.copy_(torch.tensor(bias))
        model[2].weight.copy_(torch.tensor([head]))
    return model


@pytest.mark.parametrize("name", ["l1", "l2", "fpgm", "group_l2"])
def test_weight_criteria_remove_the_units_scaled_towards_zero(name: str) -> None:
    model = randomize_norms(nets.tiny()).eval()
    groups = {root(g): g for g in prunable_groups(model, X16)}
    weak = [1, 5, 6, 12, 30, 31, 20, 9]
    scale_units(model, groups["conv3"], weak, 1e-3)
    report = pt.prune(model, X16, ratio=0.25, importance=name, show_progress=False)
    assert removed(report, "conv3") == tuple(sorted(weak))


def test_l1_and_l2_differ_where_the_norms_disagree() -> None:
    # unit 0: many small weights (L1 4, L2 2); unit 1: one large one (L1 3, L2 3); shared bias and head
    model = two_layer([[1.0, 1.0, 1.0, 1.0], [3.0, 0.0, 0.0, 0.0], [5.0, 5.0, 5.0, 5.0]], [0.0] * 3, [1.0] * 3)
    x = torch.randn(1, 4)
    by_l1 = pt.prune(copy.deepcopy(model), x, ratio=0.34, importance="l1", show_progress=False)
    by_l2 = pt.prune(copy.deepcopy(model), x, ratio=0.34, importance="l2", show_progress=False)
    assert removed(by_l1, "0") == (1,)
    assert removed(by_l2, "0") == (0,)


def test_fpgm_removes_the_unit_closest_to_the_others_not_the_smallest() -> None:
    # unit 0 sits at the centre of the others: the most redundant; units 2 and 4 have the smallest norms
    centre = [3.0, 3.0]
    rows = [centre, [7.0, 3.0], [-1.0, 3.0], [3.0, 7.0], [3.0, -1.0]]
    model = two_layer(rows, [1.0] * 5, [1.0] * 5)
    x = torch.randn(1, 2)
    by_fpgm = pt.prune(copy.deepcopy(model), x, ratio=0.2, importance="fpgm", show_progress=False)
    by_l2 = pt.prune(copy.deepcopy(model), x, ratio=0.2, importance="l2", show_progress=False)
    assert removed(by_fpgm, "0") == (0,)
    assert removed(by_l2, "0") in {(2,), (4,)}


def test_random_is_reproducible_with_a_seed_and_changes_with_it() -> None:
    model = nets.tiny().eval()

    def run(seed: int) -> pt.Plan:
        return pt.prune(copy.deepcopy(model), X16, ratio=0.5, importance="random", seed=seed, show_progress=False).plan

    first, again, other = run(0), run(0), run(1)
    assert first.to_json() == again.to_json()
    assert first.entry("conv3", "weight", 0).removed != other.entry("conv3", "weight", 0).removed
    # and it does not follow the weights
    by_l2 = pt.prune(copy.deepcopy(model), X16, ratio=0.5, importance="l2", show_progress=False).plan
    assert first.entry("conv3", "weight", 0).removed != by_l2.entry("conv3", "weight", 0).removed


def test_bn_scale_removes_the_smallest_absolute_gammas() -> None:
    model = randomize_norms(nets.tiny()).eval()
    gamma = torch.linspace(-1.0, 1.0, 32)[torch.randperm(32, generator=torch.Generator().manual_seed(5))]
    with torch.no_grad():
        model.bn2.weight.copy_(gamma)
    report = pt.prune(model, X16, ratio=0.25, importance="bn_scale", show_progress=False)
    expected = np.sort(np.argsort(np.abs(gamma.numpy()), kind="stable")[:8])
    assert removed(report, "conv2") == tuple(int(i) for i in expected)


def test_bn_scale_needs_a_norm_layer_in_every_group() -> None:
    model = nets.MLP()
    before = snapshot(model)
    with pytest.raises(pt.PruningError, match="norm scale"):
        pt.prune(model, torch.randn(1, 8), ratio=0.5, importance="bn_scale", show_progress=False)
    assert_same_model(model, before)


def taylor_model() -> nn.Module:
    """8 hidden units; units 1 and 5 have large input weights but the head ignores them (zero gradient)."""
    torch.manual_seed(6)
    model = nets.MLP(inputs=4, hidden=8, outputs=1)
    with torch.no_grad():
        model.fc2.weight[:, 1] *= 0
        model.fc2.weight[:, 5] *= 0
        model.fc2.weight[1] *= 0
        model.fc2.weight[5] *= 0
        model.fc1.weight[1] *= 50
        model.fc1.weight[5] *= 50
    return model


def test_taylor_uses_the_gradients_of_the_calibration_batches() -> None:
    model = taylor_model()
    batches = [torch.randn(16, 4, generator=torch.Generator().manual_seed(s)) for s in range(3)]
    calls: list[torch.Size] = []

    def loss_fn(output: torch.Tensor) -> torch.Tensor:
        calls.append(output.shape)
        return output.pow(2).mean()

    by_l2 = pt.prune(copy.deepcopy(model), batches[0], ratio=0.25, importance="l2", show_progress=False)
    assert removed(by_l2, "fc1") != (1, 5)
    report = pt.prune(
        model, batches[0], ratio=0.25, importance="taylor", calibration=batches, loss_fn=loss_fn, show_progress=False
    )
    assert calls == [torch.Size([16, 1])] * 3
    # units 1 and 5 change nothing downstream: |w · dL/dw| is zero for them
    assert removed(report, "fc1") == (1, 5)
    assert model.fc1.weight.grad is not None
    assert model.fc1.weight.grad.shape == model.fc1.weight.shape


def test_taylor_without_loss_fn_is_a_clear_error_and_changes_nothing() -> None:
    model = taylor_model()
    before = snapshot(model)
    with pytest.raises(pt.PruningError, match="loss_fn"):
        pt.prune(model, torch.randn(1, 4), importance="taylor", calibration=[torch.randn(4, 4)], show_progress=False)
    assert_same_model(model, before)


def test_taylor_without_gradients_is_a_clear_error_and_changes_nothing() -> None:
    model = taylor_model()
    before = snapshot(model)
    with pytest.raises(pt.PruningError, match="gradients"):
        pt.prune(model, torch.randn(1, 4), importance="taylor", show_progress=False)
    assert_same_model(model, before)


def test_taylor_rejects_a_loss_fn_that_is_not_a_scalar() -> None:
    model = taylor_model()
    with pytest.raises(pt.PruningError, match="scalar"):
        pt.prune(
            model,
            torch.randn(1, 4),
            importance="taylor",
            calibration=[torch.randn(4, 4)],
            loss_fn=lambda out: out,
            show_progress=False,
        )


def test_any_callable_scores_the_units() -> None:
    model = nets.tiny().eval()
    seen: list[tuple[str, int, list[str]]] = []

    def last_units_first(group, data):  # type: ignore[no-untyped-def]
        seen.append((root(group), group.size, [d.member.label for d in data]))
        assert all(d.weight.shape[0] == len(d.member.units) for d in data)
        return -np.arange(group.size, dtype=float)

    report = pt.prune(model, X16, ratio=0.25, importance=last_units_first, show_progress=False)
    assert removed(report, "conv1") == tuple(range(12, 16))
    assert removed(report, "conv3") == tuple(range(24, 32))
    assert sorted(name for name, _, _ in seen) == ["conv1", "conv2", "conv3"]
    labels = dict((name, members) for name, _, members in seen)
    assert "conv3.weight[0]" in labels["conv3"]
    assert "fc.weight[1]" in labels["conv3"]


def test_a_callable_returning_the_wrong_shape_is_an_error() -> None:
    model = nets.tiny().eval()
    before = snapshot(model)
    with pytest.raises(pt.PruningError, match="expected"):
        pt.prune(model, X16, importance=lambda group, data: np.ones(3), show_progress=False)
    assert_same_model(model, before)


@pytest.mark.parametrize("bad", ["l3", "L2", "", 42])
def test_an_unknown_importance_lists_the_valid_names(bad: object) -> None:
    model = nets.tiny().eval()
    before = snapshot(model)
    with pytest.raises(pt.PruningError, match="unknown importance") as error:
        pt.prune(model, X16, importance=bad, show_progress=False)
    for name in NAMES:
        assert name in str(error.value)
    assert_same_model(model, before)


def reduction_model() -> nn.Module:
    """One group of 4 units, members fc1.weight rows, fc1.bias, head column, with per-member L2 norms:

    weight [1, 2, 3, 4], bias [10, 0.5, 0.5, 0.5], head [0.1, 2.5, 0.1, 0.1] — so the lowest unit is
    0 by the first member, 1 by the max over members, 2 by their mean or sum.
    """
    rows = [[1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [4.0, 0.0]]
    return two_layer(rows, [10.0, 0.5, -0.5, 0.5], [0.1, -2.5, 0.1, 0.1])


@pytest.mark.parametrize(("reduction", "unit"), [("first", 0), ("max", 1), ("mean", 2), ("sum", 2)])
def test_reductions_combine_the_members_as_named(reduction: str, unit: int) -> None:
    report = pt.prune(reduction_model(), torch.randn(1, 2), ratio=0.25, reduction=reduction, show_progress=False)
    assert removed(report, "0") == (unit,)


def test_an_unknown_reduction_lists_the_valid_ones() -> None:
    model = reduction_model()
    before = snapshot(model)
    with pytest.raises(pt.PruningError, match="unknown reduction") as error:
        pt.prune(model, torch.randn(1, 2), reduction="median", show_progress=False)
    for name in ("first", "max", "mean", "sum"):
        assert name in str(error.value)
    assert_same_model(model, before)
