"""What has been applied to a model, and saving / loading pruned models without pickle."""

from __future__ import annotations

import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from prune_ops import Plan, PlanMismatchError
from prune_torch._errors import TraceError
from prune_torch._trace import ExampleInputs

__all__ = ["FORMAT", "history", "load_pruned", "record", "save_pruned"]

FORMAT = "prune-torch-checkpoint/1"
_ATTRIBUTE = "_prune_torch_history"


def record(model: torch.nn.Module, plan: Plan) -> None:
    """Remember that ``plan`` was applied to ``model`` (kept as JSON on the module)."""
    model.__dict__.setdefault(_ATTRIBUTE, []).append(plan.to_json())


def history(model: torch.nn.Module) -> list[Plan]:
    """The plans applied to ``model``, oldest first."""
    return [Plan.from_json(text) for text in model.__dict__.get(_ATTRIBUTE, [])]


def save_pruned(model: torch.nn.Module, path: str | Path) -> Path:
    """Write the model's plans (JSON) and its state_dict to ``path``; loadable with ``weights_only=True``."""
    path = Path(path)
    payload = {"format": FORMAT, "plans": list(model.__dict__.get(_ATTRIBUTE, [])), "state_dict": model.state_dict()}
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(payload, tmp)
        tmp.replace(path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_ZIP = b"PK\x03\x04"


def _plain(error: BaseException) -> str:
    """The first line of an error's message, without terminal colour codes."""
    lines = _ANSI.sub("", str(error)).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _read(path: Path) -> dict[str, Any]:
    """The payload of a file written by :func:`save_pruned`; every failure names the file and says what is wrong."""
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a folder, not a pruned-model file")
    try:
        with path.open("rb") as file:
            head = file.read(4)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except OSError as error:
        raise OSError(f"{path}: cannot read it ({error.strerror})") from None
    size = path.stat().st_size
    if size == 0:
        raise PlanMismatchError(f"{path}: the file is empty (0 bytes), not a pruned-model file")
    if head == _ZIP and not zipfile.is_zipfile(path):
        raise PlanMismatchError(
            f"{path}: the file is truncated or damaged ({size:,} bytes and no archive directory at the end); "
            "save it again"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes about pickle protocols in files it then refuses
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"GLOBAL ([\w.]+)", _ANSI.sub("", str(error)))
        what = f" (it would call {found.group(1)})" if found else ""
        raise PlanMismatchError(
            f"{path}: unsafe content refused: the file holds Python objects that loading would run{what}; "
            "pruned-model files hold only tensors and text"
        ) from None
    except Exception as error:  # torch reports unreadable files with many types (RuntimeError, KeyError, EOFError)
        if head == _ZIP:
            raise PlanMismatchError(f"{path}: a damaged torch archive ({_plain(error)})") from None
        raise PlanMismatchError(f"{path}: not a pruned-model file (not a torch archive)") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise PlanMismatchError(
            f"{path}: not a pruned-model file (a torch file without the {FORMAT!r} marker that save_pruned writes; "
            "for a plain state_dict use model.load_state_dict)"
        )
    for key, kind in (("plans", list), ("state_dict", dict)):
        if not isinstance(payload.get(key), kind):
            raise PlanMismatchError(f"{path}: a damaged pruned-model file: {key!r} is missing or not a {kind.__name__}")
    return payload


def load_pruned(
    model: torch.nn.Module, path: str | Path, example_inputs: ExampleInputs | None = None
) -> torch.nn.Module:
    """Re-apply the saved plans to a freshly built, unpruned ``model`` and load the saved weights.

    The plans are composed into one and applied at once, so a file made for another
    architecture leaves ``model`` untouched (``PlanMismatchError``).
    """
    from prune_torch._apply import apply

    payload = _read(Path(path))
    try:
        plans = [Plan.from_json(text) for text in payload["plans"]]
    except (TypeError, ValueError, KeyError) as error:
        raise PlanMismatchError(f"{path}: a damaged pruned-model file: its plans do not parse ({error})") from None
    combined = plans[0] if plans else None
    for plan in plans[1:]:
        combined = combined.then(plan)  # type: ignore[union-attr]
    # check every saved tensor against its shape after the plans before touching the model
    # (load_state_dict copies what fits before it reports what does not)
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    for key, (_, after) in (combined.state_shapes() if combined is not None else {}).items():
        if key in expected:
            expected[key] = after
    saved = {key: tuple(value.shape) for key, value in payload["state_dict"].items()}
    wrong = sorted(set(saved) ^ set(expected)) or sorted(k for k in saved if saved[k] != expected[k])
    if wrong:
        raise PlanMismatchError(
            f"{path}: the weights do not fit this {type(model).__name__} after its plans "
            f"(first mismatch: {wrong[0]!r}, saved {saved.get(wrong[0])}, expected {expected.get(wrong[0])}); "
            "was the file made for another architecture?"
        )
    if combined is not None:
        try:
            apply(model, combined, example_inputs)
        except TraceError as error:
            raise PlanMismatchError(
                f"{path}: the saved plans do not fit this {type(model).__name__}: {error}"
            ) from error
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as error:
        raise PlanMismatchError(f"{path}: the weights do not fit the model after its plans: {error}") from error
    return model
