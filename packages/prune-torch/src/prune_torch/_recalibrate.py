"""Re-estimating BatchNorm running statistics after pruning, from a few batches and no gradients."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from prune_ops import PruningError
from prune_torch._calibrate import progress
from prune_torch._trace import ExampleInputs, split_inputs

__all__ = ["recalibrate_norms"]


def recalibrate_norms(model: nn.Module, batches: Iterable[ExampleInputs], *, show_progress: bool = True) -> list[str]:
    """Reset every BatchNorm's running statistics and re-estimate them from ``batches``.

    Pruning keeps each surviving channel's running mean and variance, but they were measured on
    the wider layers before them: right after pruning a CNN can sit near chance until the
    statistics are measured again. This runs ``model`` over ``batches`` without gradients, the
    BatchNorm layers in train mode with ``momentum=None`` (a cumulative average, so every batch
    counts the same and the order does not matter), everything else in eval mode (dropout off,
    as at inference). Afterwards every module's mode and momentum are what they were; only the
    running statistics (and ``num_batches_tracked``) changed. Parameters are not touched.

    A batch is what ``model`` takes, as for ``pt.prune``'s ``example_inputs``: a tensor, a tuple of
    arguments or a dict of keyword arguments. Some 20 batches usually suffice. If the pass raises
    or ``batches`` is empty, the statistics are restored as they were before the error is raised.

    Returns the names of the recalibrated layers (empty for a model without BatchNorm, e.g. a
    transformer with LayerNorm, which keeps no running statistics).

    Example::

        pt.prune(model, example_inputs, ratio=0.5)
        pt.recalibrate_norms(model, (x for x, _ in train_loader), show_progress=False)
    """
    if not isinstance(model, nn.Module):
        raise PruningError(f"recalibrate_norms: 'model' must be a torch.nn.Module (got {type(model).__name__})")
    norms = {name: m for name, m in model.named_modules() if isinstance(m, _BatchNorm) and m.track_running_stats}
    if not norms:
        return []
    modes = {m: m.training for m in model.modules()}
    momenta = {m: m.momentum for m in norms.values()}
    saved = {m: {k: v.clone() for k, v in m.named_buffers(recurse=False) if v is not None} for m in norms.values()}
    model.eval()
    for m in norms.values():
        m.reset_running_stats()
        m.momentum = None
        m.train()
    count = 0
    try:
        with torch.no_grad():
            for batch in progress(batches, "recalibrating norms", show_progress):
                args, kwargs = split_inputs(batch)
                model(*args, **kwargs)
                count += 1
        if count == 0:
            raise PruningError("recalibrate_norms: 'batches' must yield at least one batch (got none)")
    except BaseException:
        for m, buffers in saved.items():
            for key, value in buffers.items():
                getattr(m, key).copy_(value)
        raise
    finally:
        for m, momentum in momenta.items():
            m.momentum = momentum
        for m, training in modes.items():
            m.training = training
    return list(norms)
