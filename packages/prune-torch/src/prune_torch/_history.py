"""What has been applied to a model, and saving / loading pruned models without pickle."""

from __future__ import annotations

import json
import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import attrs
import torch

from prune_ops import Plan, PlanMismatchError
from prune_torch._errors import TraceError
from prune_torch._trace import ExampleInputs

__all__ = [
    "FORMAT",
    "build_inputs",
    "describe_inputs",
    "history",
    "load_pruned",
    "record",
    "recorded_inputs",
    "save_pruned",
]

FORMAT = "prune-torch-checkpoint/1"
_ATTRIBUTE = "_prune_torch_history"
_INPUTS = "_prune_torch_inputs"


def _describe(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return {"tensor": [list(x.shape), str(x.dtype).removeprefix("torch.")]}
    if isinstance(x, (list, tuple)):
        return {type(x).__name__ if type(x) in (list, tuple) else "tuple": [_describe(v) for v in x]}
    if isinstance(x, dict) and all(isinstance(k, str) for k in x):
        return {"dict": [[k, _describe(v)] for k, v in x.items()]}
    if x is None or isinstance(x, (bool, int, float, str)):
        return {"value": x}
    raise TypeError(f"cannot describe an example input of type {type(x).__name__}")


def describe_inputs(example_inputs: ExampleInputs) -> str | None:
    """The nesting, shapes and dtypes of ``example_inputs`` as JSON (``None`` when they hold other objects).

    Kept with a pruned model and its saved file, so loading can rebuild inputs of the same
    structure (torchvision's detectors take a list of images, not a batch).
    """
    try:
        return json.dumps(_describe(example_inputs))
    except TypeError:
        return None


def _build(doc: Any, device: torch.device | str) -> Any:
    ((kind, body),) = doc.items()
    if kind == "tensor":
        shape, dtype = body
        return torch.zeros([int(s) for s in shape], dtype=getattr(torch, dtype, torch.float32), device=device)
    if kind in ("list", "tuple"):
        items = [_build(v, device) for v in body]
        return items if kind == "list" else tuple(items)
    if kind == "dict":
        return {str(k): _build(v, device) for k, v in body}
    if kind == "value":
        return body
    raise ValueError(f"unknown input kind {kind!r}")


def build_inputs(text: str, device: torch.device | str = "cpu") -> ExampleInputs:
    """Stand-in inputs (zeros) of the structure :func:`describe_inputs` wrote."""
    return _build(json.loads(text), device)


def recorded_inputs(model: torch.nn.Module) -> str | None:
    """The structure of the example inputs of the last plan applied to ``model`` (JSON), if known."""
    return model.__dict__.get(_INPUTS)


def record(model: torch.nn.Module, plan: Plan, example_inputs: ExampleInputs | None = None) -> None:
    """Remember that ``plan`` was applied to ``model`` (kept on the module), and the inputs' structure.

    The plan object itself is kept (plans are immutable); it becomes JSON only when the model is saved.
    """
    model.__dict__.setdefault(_ATTRIBUTE, []).append(plan)
    described = describe_inputs(example_inputs) if example_inputs is not None else None
    if described is not None:
        model.__dict__[_INPUTS] = described


def history(model: torch.nn.Module) -> list[Plan]:
    """The plans applied to ``model``, oldest first."""
    return [item if isinstance(item, Plan) else Plan.from_json(item) for item in model.__dict__.get(_ATTRIBUTE, [])]


def save_pruned(model: torch.nn.Module, path: str | Path) -> Path:
    """Write the model's plans (JSON) and its state_dict to ``path``; loadable with ``weights_only=True``."""
    path = Path(path)
    payload = {
        "format": FORMAT,
        "plans": [item.to_json() if isinstance(item, Plan) else item for item in model.__dict__.get(_ATTRIBUTE, [])],
        "inputs": model.__dict__.get(_INPUTS, ""),
        "state_dict": model.state_dict(),
    }
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


def compose(plans: list[Plan], where: str = "the plans") -> Plan | None:
    """One plan equal to ``plans`` applied in order, matched by tensor names.

    Each plan must have been made for the state the ones before it leave (every tensor it names
    has the shape they lead to); the fingerprints of the traces are not compared, since a model
    can trace differently between two prunes (a forward that cached an anchor grid).
    """
    if not plans:
        return None
    combined = plans[0]
    for number, plan in enumerate(plans[1:], start=2):
        shapes = {path: after for path, (_, after) in combined.state_shapes().items()}
        for entry in plan.entries:
            if entry.path in shapes and tuple(entry.shape) != shapes[entry.path]:
                raise PlanMismatchError(
                    f"{where}: plan {number} expects {entry.path} with shape {tuple(entry.shape)}, but the plans "
                    f"before it leave {shapes[entry.path]}"
                )
        combined = combined.then(attrs.evolve(plan, fingerprint=combined.result_fingerprint))
    return combined


def load_pruned(
    model: torch.nn.Module, path: str | Path, example_inputs: ExampleInputs | None = None
) -> torch.nn.Module:
    """Re-apply the saved plans to a freshly built, unpruned ``model`` and load the saved weights.

    The plans are composed into one and applied at once, by tensor names (see ``apply``), so a
    file made for another architecture leaves ``model`` untouched (``PlanMismatchError``).
    Without ``example_inputs`` the plans are checked on stand-ins (zeros) of the structure,
    shapes and dtypes of the inputs they were made with. The model's train/eval mode does not matter.
    """
    from prune_torch._apply import apply

    payload = _read(Path(path))
    try:
        plans = [Plan.from_json(text) for text in payload["plans"]]
    except (TypeError, ValueError, KeyError) as error:
        raise PlanMismatchError(f"{path}: a damaged pruned-model file: its plans do not parse ({error})") from None
    combined = compose(plans, str(path))
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
    described = payload.get("inputs")
    if example_inputs is None and isinstance(described, str) and described:
        try:
            example_inputs = build_inputs(described, _device_of(model))
        except (ValueError, TypeError, KeyError) as error:
            raise PlanMismatchError(f"{path}: a damaged pruned-model file: its inputs do not parse ({error})") from None
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


def _device_of(model: torch.nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")
