"""What has been applied to a model, and saving / loading pruned models without pickle."""

from __future__ import annotations

from pathlib import Path

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


def load_pruned(
    model: torch.nn.Module, path: str | Path, example_inputs: ExampleInputs | None = None
) -> torch.nn.Module:
    """Re-apply the saved plans to a freshly built, unpruned ``model`` and load the saved weights.

    The plans are composed into one and applied at once, so a file made for another
    architecture leaves ``model`` untouched (``PlanMismatchError``).
    """
    from prune_torch._apply import apply

    payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise PlanMismatchError(f"{path}: not a {FORMAT} file")
    plans = [Plan.from_json(text) for text in payload["plans"]]
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
