"""The equivalence check: a pruned model computes what the original computes with the removed channels silenced.

Silencing zeroes, in a copy of the original, the input-side weights of every layer that reads
a removed channel (the next conv's or linear's input columns, at concat offsets and flattened
positions), so nothing downstream sees those channels.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import attrs
import torch

from prune_ops import Plan, PruningError
from prune_torch._aten import tensors_in
from prune_torch._layers import rule_for
from prune_torch._trace import ExampleInputs, split_inputs

__all__ = ["Equivalence", "check_equivalence", "silenced_copy"]


def silenced_copy(original: torch.nn.Module, plan: Plan, silence_outputs: Iterable[str] = ()) -> torch.nn.Module:
    """A deep copy of ``original`` in which every layer reading a removed channel reads zero there.

    ``silence_outputs`` names modules whose removed *output* channels are zeroed as well: needed
    where the consumer is a product of activations (queries times keys over pruned head dims),
    which has no weight to zero. It is only sound where zero stays zero on the way (a linear
    projection, a reshape, rotary embeddings), not through a BatchNorm or an activation with f(0) ≠ 0.
    """
    silenced = copy.deepcopy(original)
    producers = set(silence_outputs)
    with torch.no_grad():
        for entry in plan.entries:
            if entry.kind != "parameter":
                continue
            module = silenced.get_submodule(entry.module) if entry.module else silenced
            rule = rule_for(module)
            if rule is None:
                continue
            sides = rule.in_axes + (rule.out_axes if entry.module in producers else ())
            if (entry.param, entry.axis) not in sides:
                continue
            tensor = getattr(module, entry.param)
            index = torch.as_tensor(entry.removed, dtype=torch.long, device=tensor.device)
            tensor.index_fill_(entry.axis, index, 0.0)
    return silenced


@attrs.frozen
class Equivalence:
    """Largest absolute and relative difference between the outputs, and whether they are within tolerance."""

    max_abs: float
    max_rel: float
    ok: bool

    def __str__(self) -> str:
        verdict = "equal" if self.ok else "DIFFERENT"
        return f"outputs {verdict} (max abs diff {self.max_abs:.3g}, max rel diff {self.max_rel:.3g})"


def _run(model: torch.nn.Module, inputs: ExampleInputs) -> list[torch.Tensor]:
    args, kwargs = split_inputs(inputs)
    with torch.no_grad():
        out: Any = model(*args, **kwargs)
    if isinstance(out, dict):
        out = list(out.values())
    return tensors_in(out)


def check_equivalence(
    original: torch.nn.Module,
    pruned: torch.nn.Module,
    plan: Plan,
    inputs: ExampleInputs,
    *,
    rtol: float = 1e-6,
    atol: float = 1e-8,
    silence_outputs: Iterable[str] = (),
) -> Equivalence:
    """Compare ``pruned`` with the silenced ``original`` on ``inputs`` (both in eval mode is up to the caller)."""
    reference = _run(silenced_copy(original, plan, silence_outputs), inputs)
    result = _run(pruned, inputs)
    if len(reference) != len(result):
        raise PruningError(f"the pruned model returns {len(result)} tensors, the original {len(reference)}")
    max_abs = max_rel = 0.0
    ok = True
    for a, b in zip(reference, result):
        if a.shape != b.shape:
            raise PruningError(f"output shape changed from {tuple(a.shape)} to {tuple(b.shape)}")
        if not a.is_floating_point():
            ok = ok and bool(torch.equal(a, b))
            continue
        if a.numel() == 0:
            continue
        diff = (a.double() - b.double()).abs()
        max_abs = max(max_abs, float(diff.max()) if diff.numel() else 0.0)
        scale = a.double().abs().max().clamp_min(1e-30)
        max_rel = max(max_rel, float(diff.max() / scale) if diff.numel() else 0.0)
        ok = ok and bool(torch.allclose(a.double(), b.double(), rtol=rtol, atol=atol))
    return Equivalence(max_abs, max_rel, ok)
