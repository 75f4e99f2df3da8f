"""Accumulating gradients over calibration batches (for Taylor importance), with a progress bar."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from prune_ops import PruningError
from prune_torch._trace import ExampleInputs, split_inputs

__all__ = ["LossFn", "accumulate_gradients", "progress"]

LossFn = Callable[[Any], torch.Tensor]


def progress(items: Iterable[Any], description: str, enabled: bool, total: int | None = None) -> Iterable[Any]:
    """``items`` wrapped in a tqdm progress bar when enabled (and tqdm is installed)."""
    if not enabled:
        return items
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency, but stay usable without it
        return items
    return tqdm(items, desc=description, total=total, leave=False)


def accumulate_gradients(
    model: torch.nn.Module, batches: Iterable[ExampleInputs], loss_fn: LossFn, *, show_progress: bool = True
) -> int:
    """Zero the gradients, then run ``loss_fn(model(batch)).backward()`` over every batch; returns the count."""
    if loss_fn is None or not callable(loss_fn):
        raise PruningError("Taylor importance needs 'loss_fn': a callable from the model's output to a scalar loss")
    model.zero_grad(set_to_none=True)
    count = 0
    total = len(batches) if hasattr(batches, "__len__") else None  # type: ignore[arg-type]
    for batch in progress(batches, "calibrating (Taylor)", show_progress, total):
        args, kwargs = split_inputs(batch)
        loss = loss_fn(model(*args, **kwargs))
        if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
            raise PruningError(f"loss_fn must return a scalar tensor (got {type(loss).__name__})")
        loss.backward()
        count += 1
    if count == 0:
        raise PruningError("Taylor importance needs at least one calibration batch")
    return count
