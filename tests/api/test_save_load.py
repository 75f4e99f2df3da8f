"""save_pruned / load_pruned: no pickle, bit-identical round trips, clear errors that leave the model alone."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import prune_torch as pt

from . import nets
from .helpers import assert_same_model, randomize_norms, snapshot

X16 = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(10))


def fresh(num_classes: int = 10) -> nets.TinyCNN:
    """A newly built model with other random weights than the one that was saved."""
    torch.manual_seed(123)
    return nets.TinyCNN(num_classes).eval()


def pruned(rounds: tuple[float, ...]) -> nets.TinyCNN:
    model = randomize_norms(nets.tiny()).eval()
    for ratio in rounds:
        pt.prune(model, X16, ratio=ratio, show_progress=False)
    return model


def assert_identical(a: torch.nn.Module, b: torch.nn.Module) -> None:
    assert a.state_dict().keys() == b.state_dict().keys()
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    with torch.no_grad():
        assert torch.equal(a(X16), b(X16))


@pytest.mark.parametrize("rounds", [(0.5,), (0.5, 0.3)], ids=["one-prune", "two-prunes"])
def test_load_into_a_fresh_model_gives_bit_identical_outputs(tmp_path: Path, rounds: tuple[float, ...]) -> None:
    model = pruned(rounds)
    assert len(pt.history(model)) == len(rounds)
    path = pt.save_pruned(model, tmp_path / "model.pt")
    assert path == tmp_path / "model.pt"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]
    loaded = pt.load_pruned(fresh(), path)
    assert_identical(model, loaded)
    assert (loaded.conv2.out_channels, loaded.bn2.num_features) == (model.conv2.out_channels, model.bn2.num_features)
    # the loaded model remembers its plans, so it can be saved again and loaded again
    again = pt.load_pruned(fresh(), pt.save_pruned(loaded, tmp_path / "again.pt"))
    assert_identical(model, again)


def test_the_file_loads_with_weights_only(tmp_path: Path) -> None:
    model = pruned((0.5, 0.3))
    path = pt.save_pruned(model, tmp_path / "model.pt")
    payload = torch.load(path, weights_only=True)
    assert isinstance(payload, dict)
    assert isinstance(payload["format"], str)
    assert len(payload["plans"]) == 2
    assert all(isinstance(text, str) for text in payload["plans"])
    assert [pt.Plan.from_json(text) for text in payload["plans"]] == pt.history(model)
    assert payload["state_dict"].keys() == model.state_dict().keys()


def test_an_unpruned_model_round_trips(tmp_path: Path) -> None:
    model = randomize_norms(nets.tiny()).eval()
    loaded = pt.load_pruned(fresh(), pt.save_pruned(model, tmp_path / "plain.pt"))
    assert_identical(model, loaded)


def test_loading_with_example_inputs(tmp_path: Path) -> None:
    model = pruned((0.5,))
    loaded = pt.load_pruned(fresh(), pt.save_pruned(model, tmp_path / "model.pt"), X16)
    assert_identical(model, loaded)


@pytest.mark.parametrize(
    ("saved", "other"),
    [
        ((0.5,), lambda: nets.MLP(8, 32, 1)),
        ((0.5, 0.3), lambda: fresh(num_classes=5)),
        ((0.5,), lambda: nets.resnet_small().eval()),
        ((), lambda: fresh(num_classes=5)),
        ((), lambda: nets.MLP(8, 32, 1)),
    ],
    ids=[
        "pruned-into-mlp",
        "pruned-into-other-head",
        "pruned-into-resnet",
        "unpruned-into-other-head",
        "unpruned-into-mlp",
    ],
)
def test_a_file_for_another_architecture_is_refused_and_changes_nothing(
    tmp_path: Path, saved: tuple[float, ...], other
) -> None:  # type: ignore[no-untyped-def]
    path = pt.save_pruned(pruned(saved), tmp_path / "model.pt")
    target = other()
    before = snapshot(target)
    with pytest.raises(pt.PlanMismatchError) as error:
        pt.load_pruned(target, path)
    assert "another" in str(error.value)
    assert_same_model(target, before)


def test_a_file_of_another_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    torch.save(randomize_norms(nets.tiny()).state_dict(), path)
    target = fresh()
    before = snapshot(target)
    with pytest.raises(pt.PlanMismatchError, match="not a"):
        pt.load_pruned(target, path)
    assert_same_model(target, before)


def test_a_pruned_model_cannot_be_loaded_twice(tmp_path: Path) -> None:
    path = pt.save_pruned(pruned((0.5,)), tmp_path / "model.pt")
    target = pt.load_pruned(fresh(), path)
    before = snapshot(target)
    with pytest.raises(pt.PlanMismatchError):
        pt.load_pruned(target, path)
    assert_same_model(target, before)


def test_saving_does_not_leave_a_temporary_file_and_overwrites(tmp_path: Path) -> None:
    model = pruned((0.5,))
    path = tmp_path / "model.pt"
    path.write_bytes(b"old")
    pt.save_pruned(model, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]
    assert_identical(model, pt.load_pruned(fresh(), path))
