"""apply_what_fits: groups a module's code cannot follow are found with few applies, the rest pruned."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import prune_torch._fits as fits
from prune_ops import make_plan, removal_of
from prune_torch._errors import ApplyError
from prune_torch._traced import trace_model


class Fixed(nn.Module):
    """Keeps its width as a literal: pruning ``inner``'s output channels breaks it; ``outer`` only passes."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Conv2d(8, 16, 3, padding=1)
        self.outer = nn.Conv2d(16, 12, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.inner(x))
        if y.shape[1] != 16:
            raise ValueError(f"expected 16 channels, got {y.shape[1]}")
        return self.outer(y)


class Net(nn.Module):
    """Six prunable groups; ``fixed.inner``'s breaks ``fixed``, and with ``check_root`` ``c3``'s breaks the root."""

    def __init__(self, check_root: bool, fixed: bool = True) -> None:
        super().__init__()
        self.check_root = check_root
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.fixed = Fixed() if fixed else nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.Conv2d(16, 12, 1))
        self.c1 = nn.Conv2d(12, 10, 3, padding=1)
        self.c2 = nn.Conv2d(10, 14, 3, padding=1)
        self.c3 = nn.Conv2d(14, 20, 1)
        self.fc = nn.Linear(20, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        x = self.fixed(x)
        x = torch.relu(self.c1(x))
        x = torch.relu(self.c2(x))
        x = self.c3(x)
        if self.check_root and x.shape[1] != 20:
            raise ValueError("the model keeps 20 channels here")
        return self.fc(x.mean((2, 3)))


def _owner(group: Any) -> str:
    """The module whose output channels the group is (its first parameter's module)."""
    return group.modules[0]


def _setup(model: nn.Module) -> tuple[Any, Any, list[tuple[Any, np.ndarray]], torch.Tensor]:
    x = torch.randn(1, 3, 8, 8)
    graph = trace_model(model, x)
    chosen = [(g, np.arange(g.size // 2, dtype=np.int64)) for g in graph.groups().prunable]
    return graph, make_plan(graph, removal_of(graph, chosen)), chosen, x


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every call of apply made by apply_what_fits, counted independently of its own count."""
    calls: list[int] = []
    real = fits.apply_accepting

    def counting(*args: Any, **kwargs: Any) -> None:
        calls.append(1)
        real(*args, **kwargs)

    monkeypatch.setattr(fits, "apply_accepting", counting)
    return calls


def test_a_model_that_follows_every_group_costs_one_apply(counted: list[int]) -> None:
    model = Net(check_root=False, fixed=False).eval()
    graph, plan, chosen, x = _setup(model)
    fit = fits.apply_what_fits(model, graph, plan, chosen, x)
    assert fit.applies == len(counted) == 1
    assert fit.tries == 0
    assert fit.skipped == ()
    assert fit.cost_note is None
    assert len(fit.applied) == len(chosen) == 6
    assert model.c1.out_channels == 5
    assert model.fixed[0].out_channels == 8


def test_the_group_a_module_cannot_follow_is_found_among_those_touching_it(counted: list[int]) -> None:
    model = Net(check_root=False).eval()
    graph, plan, chosen, x = _setup(model)
    assert len(chosen) == 6
    # three groups touch ``fixed``: stem (its input), fixed.inner, fixed.outer (its output)
    assert sum(1 for g, _ in chosen if any(m.value.owner.startswith("fixed") for m in g.members)) == 3
    fit = fits.apply_what_fits(model, graph, plan, chosen, x)
    assert [_owner(g) for g, _ in chosen if all(g is not a for a, _ in fit.applied)] == ["fixed.inner"]
    assert len(fit.skipped) == 1
    assert "fixed.inner" in fit.skipped[0]
    assert "left unpruned: the pruned model no longer runs" in fit.skipped[0]
    assert "expected 16 channels" in fit.skipped[0]
    assert "found in module fixed with 2 apply(s)" in fit.skipped[0]
    # one failed apply, a bisection over 3 suspects (one try: the first suspect is the culprit), the apply that fits
    assert fit.applies == len(counted) == 3
    assert fit.cost_note is not None
    assert "2 extra apply(s)" in fit.cost_note
    assert model.fixed.inner.out_channels == 16
    assert model.fixed.outer.out_channels == 6
    assert model.stem.out_channels == 4
    assert model.c1.out_channels == 5
    assert model.c3.out_channels == 10
    assert model(x).shape == (1, 5)


def test_failures_in_the_root_and_in_a_module_are_both_found_within_the_bound(counted: list[int]) -> None:
    model = Net(check_root=True).eval()
    graph, plan, chosen, x = _setup(model)
    fit = fits.apply_what_fits(model, graph, plan, chosen, x)
    left = sorted(_owner(g) for g, _ in chosen if all(g is not a for a, _ in fit.applied))
    assert left == ["c3", "fixed.inner"]
    assert any("<root>" in note and "c3" in note for note in fit.skipped)
    # per culprit: one failed apply and a bisection over its suspects (3 at ``fixed``, then all 5 left
    # at the root), plus the apply that fits
    assert fit.applies == len(counted)
    assert 1 + 1 + 1 <= fit.applies <= (1 + math.ceil(math.log2(3))) + (1 + math.ceil(math.log2(5))) + 1
    assert fit.tries <= 2 * (2 * math.log2(len(chosen)) + 2)
    assert model.c3.out_channels == 20
    assert model.fixed.inner.out_channels == 16
    assert model.c2.out_channels == 7
    assert model.fixed.outer.out_channels == 6
    assert model(x).shape == (1, 5)


def test_a_single_culprit_at_the_root_costs_a_logarithmic_number_of_tries(counted: list[int]) -> None:
    model = Net(check_root=True, fixed=False).eval()
    graph, plan, chosen, x = _setup(model)
    fit = fits.apply_what_fits(model, graph, plan, chosen, x)
    assert [_owner(g) for g, _ in chosen if all(g is not a for a, _ in fit.applied)] == ["c3"]
    assert fit.tries <= 2 * math.log2(len(chosen)) + 2
    assert fit.applies == len(counted) == 1 + math.ceil(math.log2(len(chosen))) + 1


class Watcher(nn.Module):
    """Fails when another module's width changes: no group touching it can be blamed."""

    def __init__(self, watched: nn.Conv2d) -> None:
        super().__init__()
        self.watched = [watched]  # a list, not a submodule

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.watched[0].out_channels != 8:
            raise RuntimeError("the watched layer changed")
        return x


class Watched(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 1)
        self.b = nn.Conv2d(8, 4, 1)
        self.watcher = Watcher(self.a)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.watcher(self.b(self.a(x)))


def test_a_failure_in_a_module_no_chosen_group_touches_is_raised_and_the_model_left_as_it_was() -> None:
    model = Watched().eval()
    graph, plan, chosen, x = _setup(model)
    assert [_owner(g) for g, _ in chosen] == ["a"]
    weight = model.a.weight
    with pytest.raises(ApplyError, match="watched layer changed"):
        fits.apply_what_fits(model, graph, plan, chosen, x)
    assert model.a.weight is weight
    assert model.a.weight.shape == (8, 3, 1, 1)
    assert model.a.out_channels == 8


class WatchingBlock(nn.Module):
    """Two convs of its own, and a failure when another module's width changes."""

    def __init__(self, watched: nn.Conv2d) -> None:
        super().__init__()
        self.watched = [watched]  # a list, not a submodule
        self.c1 = nn.Conv2d(4, 6, 1)
        self.c2 = nn.Conv2d(6, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.watched[0].out_channels != 8:
            raise RuntimeError("the watched layer changed")
        return self.c2(torch.relu(self.c1(x)))


class WatchedBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 1)
        self.b = nn.Conv2d(8, 4, 1)
        self.block = WatchingBlock(self.a)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(torch.relu(self.b(torch.relu(self.a(x)))))


def test_a_failure_the_suspects_do_not_cause_is_raised_when_the_module_fails_again(counted: list[int]) -> None:
    """The groups touching ``block`` (b's, c1's) are suspects, but ``a``'s alone breaks it.

    The bisection blames the first suspect; the apply without it fails in ``block`` again, and
    then applying the other groups alone shows that no suspect is the cause: the error is raised.
    """
    model = WatchedBlock().eval()
    graph, plan, chosen, x = _setup(model)
    assert sorted(_owner(g) for g, _ in chosen) == ["a", "b", "block.c1"]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ApplyError, match="watched layer changed"):
        fits.apply_what_fits(model, graph, plan, chosen, x)
    # the failed apply, one bisection try, the apply without the first suspect, ``a`` alone
    assert len(counted) == 4
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert (model.a.out_channels, model.b.out_channels, model.block.c1.out_channels) == (8, 4, 6)
