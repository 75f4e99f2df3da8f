"""Plans are re-applied by names, never by trace position: a model that ran before pruning, a freshly
built one, a forward at another size between two prunes, nested inputs, and outputs whose sizes
come from the data all reload bit-identically; the check after applying still names the module
whose code cannot follow."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import prune_torch as pt
from prune_torch._rebase import data_sized

from .helpers import assert_same_model, randomize_norms, snapshot

X = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(7))


class GridHead(nn.Module):
    """Like ultralytics' ``Detect``: builds its anchor grid on the first forward of an input size and keeps it."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 6, 1)
        self.shape: torch.Size | None = None
        self.grid = torch.empty(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.shape != x.shape:
            h, w = x.shape[2:]
            ys, xs = torch.meshgrid(
                torch.arange(h, dtype=x.dtype, device=x.device),
                torch.arange(w, dtype=x.dtype, device=x.device),
                indexing="ij",
            )
            self.grid = torch.stack((xs, ys)).reshape(1, 2, h * w) + 0.5
            self.shape = x.shape
        y = self.conv(x).flatten(2)
        return torch.cat((y[:, :2] + self.grid, y[:, 2:].sigmoid()), 1)


class GridDetector(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.body = nn.Conv2d(16, 24, 3, stride=2, padding=1)
        self.bn2 = nn.BatchNorm2d(24)
        self.head = GridHead(24)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.stem(x)))
        return self.head(torch.relu(self.bn2(self.body(x))))


def build(cls: type[nn.Module] = GridDetector, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return randomize_norms(cls(), seed).eval()


def outputs(model: nn.Module, *inputs: object) -> list[torch.Tensor]:
    from prune_torch._aten import tensors_in

    training = model.training
    model.eval()
    with torch.no_grad():
        result = tensors_in(model(*inputs))
    model.train(training)
    return result


def assert_equal_outputs(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.shape == y.shape
        assert torch.equal(x, y)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_a_model_that_ran_before_pruning_reloads_into_a_fresh_one(tmp_path: Path, mode: str) -> None:
    model = build()
    outputs(model, X)  # caches the grid, as any use of the model before pruning would
    report = pt.prune(model, X, ratio=0.5, show_progress=False)
    fresh = build(seed=1)
    # the two trace differently: a plan keyed by trace positions could not be re-applied
    assert pt.trace(fresh, X).fingerprint() != report.plan.fingerprint
    fresh.train(mode == "train")
    pt.load_pruned(fresh, pt.save_pruned(model, tmp_path / "model.pt"))
    assert fresh.training == (mode == "train")
    assert fresh.body.out_channels == model.body.out_channels < 24
    assert_equal_outputs(outputs(fresh, X), outputs(model, X))


def test_a_plan_from_json_applies_to_a_fresh_model_by_names() -> None:
    model = build()
    outputs(model, X)
    report = pt.prune(model, X, ratio=0.5, show_progress=False)
    fresh = build(seed=1)
    pt.apply(fresh, pt.Plan.from_json(report.plan.to_json()))
    fresh.load_state_dict(model.state_dict())
    assert_equal_outputs(outputs(fresh, X), outputs(model, X))


def test_two_prunes_with_a_forward_at_another_size_between_reload(tmp_path: Path) -> None:
    model = build()
    outputs(model, X)
    first = pt.prune(model, X, ratio=0.3, show_progress=False).plan
    outputs(model, torch.randn(1, 3, 24, 24))  # the head now keeps a grid for another size
    second = pt.prune(model, X, ratio=0.3, show_progress=False).plan
    assert second.fingerprint != first.result_fingerprint  # the second trace rebuilt the grid
    loaded = pt.load_pruned(build(seed=2), pt.save_pruned(model, tmp_path / "model.pt"))
    assert_equal_outputs(outputs(loaded, X), outputs(model, X))


def test_a_later_plan_that_does_not_follow_the_earlier_one_is_refused(tmp_path: Path) -> None:
    model = build()
    pt.prune(model, X, ratio=0.5, show_progress=False)
    path = pt.save_pruned(model, tmp_path / "model.pt")
    payload = torch.load(path, weights_only=True)
    payload["plans"] = payload["plans"] * 2  # the same plan twice: the second expects the unpruned shapes
    torch.save(payload, path)
    target = build()
    before = snapshot(target)
    with pytest.raises(pt.PlanMismatchError, match=r"plan 2 expects \S+ with shape .* but the plans before it leave"):
        pt.load_pruned(target, path)
    assert_same_model(target, before)


class Proposals(nn.Module):
    """Scores per position, then the positions that pass a threshold: the kept counts come from the data."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.score = nn.Conv2d(16, 5, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feats = self.score(torch.relu(self.bn(self.stem(x)))).flatten(2).transpose(1, 2)  # (b, hw, 5)
        picked = feats[feats[..., 0] > 0]  # boolean mask
        classes = torch.unique(picked[:, 1:].argmax(1))
        where = torch.nonzero(feats[0, :, 1] > 0.1)
        best = picked[:, 2].sort(descending=True).values[: max(1, picked.shape[0] // 2)]
        return feats, picked * 2, classes, where, best


def test_values_after_data_dependent_ops_are_data_sized() -> None:
    graph = pt.trace(build(Proposals), X)
    sized = data_sized(graph)
    feats, *others = graph.outputs
    assert feats not in sized
    assert all(value in sized for value in others)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_data_sized_outputs_reload_identically(tmp_path: Path, mode: str) -> None:
    model = build(Proposals)
    before = [tuple(t.shape) for t in outputs(model, X)]
    pt.prune(model, X, ratio=0.5, show_progress=False)
    after = [tuple(t.shape) for t in outputs(model, X)]
    assert model.stem.out_channels == 8
    assert after[0] == before[0]
    assert after[1:] != before[1:]  # the pruned weights keep other positions: compared by position, apply would refuse
    fresh = build(Proposals, seed=3).train(mode == "train")
    pt.load_pruned(fresh, pt.save_pruned(model, tmp_path / "model.pt"))
    assert_equal_outputs(outputs(fresh, X), outputs(model, X))


class ListInput(nn.Module):
    """Takes a list of images, as torchvision's detectors do."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 12, 3, padding=1)
        self.bn = nn.BatchNorm2d(12)
        self.out = nn.Conv2d(12, 4, 1)

    def forward(self, images: list[torch.Tensor]) -> torch.Tensor:
        x = torch.stack(images)
        return self.out(torch.relu(self.bn(self.conv(x))))


def test_nested_inputs_are_rebuilt_with_their_structure(tmp_path: Path) -> None:
    images = ([torch.randn(3, 8, 8), torch.randn(3, 8, 8)],)
    model = build(ListInput)
    report = pt.prune(model, images, ratio=0.5, show_progress=False)
    path = pt.save_pruned(model, tmp_path / "model.pt")
    loaded = pt.load_pruned(build(ListInput, seed=4), path)  # no example inputs: the file keeps their structure
    assert_equal_outputs(outputs(loaded, *images), outputs(model, *images))
    target = build(ListInput)
    before = snapshot(target)
    with pytest.raises(pt.PruningError, match=r"apply needs example_inputs here: .*input0, input0\.1"):
        pt.apply(target, report.plan)
    assert_same_model(target, before)
    pt.apply(target, report.plan, images)
    assert target.conv.out_channels == 6


class HiddenWidth(nn.Module):
    """A width fixed in the code: ``reshape`` keeps working, with the wrong shape."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.mix = Regroup()
        self.out = nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.mix(self.conv(x)))


class Regroup(nn.Module):
    """Its width is written in its code: nothing pruning could update."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.reshape(x.shape[0], 8, -1) * 2).reshape(x.shape)


def test_the_check_after_applying_names_the_module_that_cannot_follow() -> None:
    model = build(HiddenWidth)
    plan = pt.plan(pt.trace(model, X), model.conv, [0, 1, 2, 3])
    before = snapshot(model)
    with pytest.raises(
        pt.ApplyError,
        match=r"in module mix produced shape \(2, 8, 128\) where the plan predicted \(2, 4, 256\); .*of mix \(or written in its code\)",
    ) as error:
        pt.apply(model, plan)
    assert error.value.module == "mix"
    assert_same_model(model, before)


class _SharedHead(nn.Module):
    """One head (conv, GroupNorm) run on two feature maps, as detectors share theirs across FPN levels."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.head = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.GroupNorm(4, 16), nn.ReLU())
        self.out = nn.Conv2d(16, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.stem(x)
        small = nn.functional.avg_pool2d(y, 2)
        return self.out(self.head(y)).mean((2, 3)) + self.out(self.head(small)).mean((2, 3))


def test_a_module_run_twice_reloads_into_a_fresh_one(tmp_path: Path) -> None:
    # each call of the GroupNorm has its own virtual axis of groups, under one path: a saved plan
    # names it once per call, and reading it back must find every one
    torch.manual_seed(0)
    x = torch.randn(1, 3, 8, 8)
    model = _SharedHead().eval()
    randomize_norms(model)
    report = pt.prune(model, x, ratio=0.5, show_progress=False)
    assert model.head[1].num_groups < 4
    assert [e.path for e in report.plan.entries].count("head.1.num_groups") == 2
    pt.save_pruned(model, tmp_path / "m.pt")
    fresh = _SharedHead().eval()
    pt.load_pruned(fresh, tmp_path / "m.pt")
    mine, theirs = model.state_dict(), fresh.state_dict()
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)
    assert torch.equal(fresh(x), model(x))


class CountedByPython(nn.Module):
    """A count leaves the data through Python: ``torch.zeros(len(rows), ...)`` (torchvision's RoI pooling)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.score = nn.Conv2d(16, 1, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        scores = self.score(torch.relu(self.stem(x))).flatten()
        rows = torch.nonzero(scores > 0)
        pooled = torch.zeros(rows.shape[0], 4, dtype=x.dtype)  # sized by a Python int read from the data
        labels = torch.arange(4, dtype=x.dtype).view(1, -1).expand(rows.shape[0], 4)  # expanded to that count
        return scores, rows, pooled + 1, labels * 2


def test_a_tensor_made_from_a_count_of_the_data_is_data_sized(tmp_path: Path) -> None:
    model = build(CountedByPython)
    graph = pt.trace(model, X)
    scores, rows, pooled, labels = graph.outputs
    assert scores not in data_sized(graph)
    assert rows in data_sized(graph)
    assert pooled in data_sized(graph)
    assert labels in data_sized(graph)
    before = outputs(model, X)[2].shape[0]
    pt.prune(model, X, ratio=0.5, show_progress=False)  # the count changes with the weights: not a failed prune
    assert model.stem.out_channels == 8
    assert outputs(model, X)[2].shape[0] != before
    fresh = build(CountedByPython, seed=3)
    pt.load_pruned(fresh, pt.save_pruned(model, tmp_path / "model.pt"))
    assert_equal_outputs(outputs(fresh, X), outputs(model, X))
