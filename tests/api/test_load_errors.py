"""Every way ``load_pruned`` can fail names the file and says what is wrong, in plain text."""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

import prune_torch as pt


def _net() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)).eval()


class _Evil:
    def __reduce__(self) -> tuple[Callable[..., object], tuple[str]]:
        return (os.system, ("echo this must never run >&2",))


def _good(path: Path) -> None:
    model = _net()
    pt.prune(model, torch.randn(1, 4), ratio=0.5, show_progress=False)
    pt.save_pruned(model, path)


def _truncated(path: Path) -> None:
    _good(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


WRITERS: dict[str, tuple[Callable[[Path], object], type[Exception], str]] = {
    "truncated": (_truncated, pt.PlanMismatchError, "truncated or damaged"),
    "empty": (lambda p: p.write_bytes(b""), pt.PlanMismatchError, "empty (0 bytes)"),
    "text": (lambda p: p.write_text("hello"), pt.PlanMismatchError, "not a pruned-model file"),
    "pickle": (lambda p: p.write_bytes(pickle.dumps(_Evil())), pt.PlanMismatchError, "unsafe content refused"),
    "torch-pickle": (lambda p: torch.save({"x": _Evil()}, p), pt.PlanMismatchError, "unsafe content refused"),
    "state-dict": (lambda p: torch.save(_net().state_dict(), p), pt.PlanMismatchError, "not a pruned-model file"),
    "no-plans": (
        lambda p: torch.save({"format": "prune-torch-checkpoint/1", "state_dict": {}}, p),
        pt.PlanMismatchError,
        "damaged pruned-model file: 'plans'",
    ),
    "bad-plan": (
        lambda p: torch.save({"format": "prune-torch-checkpoint/1", "plans": ["{"], "state_dict": {}}, p),
        pt.PlanMismatchError,
        "its plans do not parse",
    ),
    "folder": (lambda p: p.mkdir(), IsADirectoryError, "is a folder"),
    "missing": (lambda p: None, FileNotFoundError, "no such file"),
}


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_a_bad_file_is_named_and_explained(tmp_path: Path, name: str, capfd: pytest.CaptureFixture[str]) -> None:
    write, kind, words = WRITERS[name]
    path = tmp_path / f"{name}.pt"
    write(path)
    model = _net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(kind) as error:
        pt.load_pruned(model, path)
    message = str(error.value)
    assert message.startswith(f"{path}: "), message
    assert words in message
    assert "\x1b" not in message
    assert "\n" not in message
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in before.items()}
    assert "must never run" not in capfd.readouterr().err


def test_the_unsafe_call_is_named(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"x": _Evil()}, path)
    with pytest.raises(pt.PlanMismatchError, match=r"it would call (posix|os|nt)\.system"):
        pt.load_pruned(_net(), path)


def test_a_good_file_still_loads(tmp_path: Path) -> None:
    _good(tmp_path / "good.pt")
    loaded = pt.load_pruned(_net(), tmp_path / "good.pt")
    assert loaded[0].out_features == 4
