"""Sparse training with GroupLasso, then pruning with group_l2; pruning the optimiser's state and training on."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import prune_torch as pt

from . import nets


def regression_data() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(8)
    x = torch.randn(256, 8, generator=gen)
    y = torch.sin(x[:, :1]) + 0.5 * x[:, 1:2]
    return x, y


def unit_norms(model: nets.MLP) -> torch.Tensor:
    """Group norm of every fc1 unit: its row of fc1.weight, its bias and its column of fc2.weight."""
    with torch.no_grad():
        squares = (model.fc1.weight**2).sum(1) + model.fc1.bias**2 + (model.fc2.weight**2).sum(0)
    return squares.sqrt()


def test_group_lasso_is_a_positive_differentiable_scalar() -> None:
    torch.manual_seed(0)
    model = nets.MLP(8, 16, 1)
    x, _ = regression_data()
    penalty = pt.GroupLasso(model, x[:1], strength=1e-2)
    value = penalty()
    assert value.shape == ()
    assert value.item() > 0
    grads = torch.autograd.grad(value, list(model.parameters()), allow_unused=True)
    named = dict(zip([name for name, _ in model.named_parameters()], grads))
    for name in ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "fc3.weight"):
        assert named[name] is not None, name
        assert named[name].abs().sum() > 0, name
    # the output layer's own units are no group: nothing penalises them
    assert named["fc3.bias"] is None
    # twice the strength, twice the penalty
    double = pt.GroupLasso(model, x[:1], strength=2e-2)
    assert torch.allclose(double(), 2 * value)


def test_a_few_sgd_steps_reduce_the_penalty() -> None:
    torch.manual_seed(0)
    model = nets.MLP(8, 16, 1)
    x, _ = regression_data()
    penalty = pt.GroupLasso(model, x[:1], strength=1e-2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    values = []
    for _ in range(5):
        optimizer.zero_grad()
        loss = penalty()
        loss.backward()
        optimizer.step()
        values.append(loss.item())
    assert penalty().item() < values[0]
    assert values == sorted(values, reverse=True)


def test_sparse_training_then_group_l2_removes_the_units_driven_to_zero() -> None:
    torch.manual_seed(0)
    model = nets.MLP(8, 16, 1)
    x, y = regression_data()
    start = unit_norms(model)
    penalty = pt.GroupLasso(model, x[:1], strength=0.1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(300):
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x), y) + penalty()
        loss.backward()
        optimizer.step()
    norms = unit_norms(model)
    zeroish = {int(i) for i in torch.nonzero(norms < 0.05 * start.min()).flatten()}
    assert len(zeroish) >= 8, norms
    assert norms.max() > 0.5
    with torch.no_grad():
        error_before = nn.functional.mse_loss(model(x), y).item()
    report = pt.prune(model, x[:1], ratio=0.5, importance="group_l2", show_progress=False)
    gone = set(report.plan.entry("fc1", "weight", 0).removed)
    assert len(gone) == 8
    assert gone <= zeroish
    assert int(norms.argmax()) not in gone
    # what was driven to zero did not matter
    with torch.no_grad():
        assert nn.functional.mse_loss(model(x), y).item() == pytest.approx(error_before, rel=0.05, abs=1e-3)


def test_group_lasso_leaves_ignored_modules_alone() -> None:
    torch.manual_seed(0)
    model = nets.MLP(8, 16, 1)
    x, _ = regression_data()
    penalty = pt.GroupLasso(model, x[:1], ignore=["fc2"])
    grads = torch.autograd.grad(penalty(), [model.fc2.weight], allow_unused=True)
    # fc2's own outputs form no group; only its input columns (fc1's group) are penalised
    assert grads[0] is not None
    assert torch.count_nonzero(grads[0].abs().sum(1)) == 16
    penalty_all = pt.GroupLasso(model, x[:1])
    assert penalty().item() < penalty_all().item()


# --- optimiser state ------------------------------------------------------------------------------


def adam_trained() -> tuple[nets.MLP, torch.optim.Adam, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = nets.MLP(8, 32, 1)
    x, y = regression_data()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(5):
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
    return model, optimizer, x, y


def test_prune_optimizer_slices_adam_moments_to_the_new_shapes() -> None:
    model, optimizer, x, _ = adam_trained()
    moments = {
        name: {key: value.clone() for key, value in optimizer.state[p].items()} for name, p in model.named_parameters()
    }
    parameters = dict(model.named_parameters())
    report = pt.prune(model, x[:1], ratio=0.5, show_progress=False)
    # the same Parameter objects: the optimiser's param groups still point at the model
    assert all(p is parameters[name] for name, p in model.named_parameters())
    sliced = pt.prune_optimizer(optimizer, model, report.plan)
    changed = {entry.path for entry in report.plan.entries}
    assert sliced == 2 * len(changed)
    for name, p in model.named_parameters():
        state = optimizer.state[p]
        assert state["exp_avg"].shape == p.shape, name
        assert state["exp_avg_sq"].shape == p.shape, name
        assert torch.equal(state["step"], moments[name]["step"]), name
    keep1 = list(report.plan.entry("fc1", "weight", 0).kept)
    keep2 = list(report.plan.entry("fc2", "weight", 0).kept)
    assert torch.equal(optimizer.state[model.fc1.weight]["exp_avg"], moments["fc1.weight"]["exp_avg"][keep1])
    assert torch.equal(optimizer.state[model.fc1.bias]["exp_avg_sq"], moments["fc1.bias"]["exp_avg_sq"][keep1])
    assert torch.equal(optimizer.state[model.fc2.weight]["exp_avg"], moments["fc2.weight"]["exp_avg"][keep2][:, keep1])
    assert torch.equal(optimizer.state[model.fc3.weight]["exp_avg"], moments["fc3.weight"]["exp_avg"][:, keep2])
    assert torch.equal(optimizer.state[model.fc3.bias]["exp_avg"], moments["fc3.bias"]["exp_avg"])


def test_training_continues_after_pruning_and_the_loss_goes_down() -> None:
    model, optimizer, x, y = adam_trained()
    # the last training step's graph is still alive here, as it is after any training loop
    last = nn.functional.mse_loss(model(x), y)
    report = pt.prune(model, x[:1], ratio=0.5, show_progress=False)
    pt.prune_optimizer(optimizer, model, report.plan)
    losses = []
    for _ in range(20):
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert model.fc1.out_features == 16
    assert losses[-1] < losses[0]
    assert last.grad_fn is not None


def test_a_live_graph_from_before_the_prune_does_not_break_the_next_backward() -> None:
    torch.manual_seed(0)
    model = nets.MLP(8, 32, 1)
    x, y = regression_data()
    loss = nn.functional.mse_loss(model(x), y)
    loss.backward()
    pt.prune(model, x[:1], ratio=0.5, show_progress=False)
    model.zero_grad()
    nn.functional.mse_loss(model(x), y).backward()
    assert model.fc1.weight.grad.shape == (16, 8)
    assert loss.grad_fn is not None


def test_prune_optimizer_with_sgd_momentum() -> None:
    torch.manual_seed(0)
    model = nets.MLP(8, 32, 1)
    x, y = regression_data()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9)
    for _ in range(3):
        optimizer.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()
    reference = copy.deepcopy(optimizer.state[model.fc2.weight]["momentum_buffer"])
    report = pt.prune(model, x[:1], ratio=0.25, show_progress=False)
    pt.prune_optimizer(optimizer, model, report.plan)
    keep1 = list(report.plan.entry("fc1", "weight", 0).kept)
    keep2 = list(report.plan.entry("fc2", "weight", 0).kept)
    assert torch.equal(optimizer.state[model.fc2.weight]["momentum_buffer"], reference[keep2][:, keep1])
    optimizer.zero_grad()
    nn.functional.mse_loss(model(x), y).backward()
    optimizer.step()
