"""The equivalence check: a pruned model computes what the original computes with the removed channels silenced.

Silencing zeroes, in a copy of the original, the input-side weights of every layer that reads
a removed channel (the next conv's or linear's input columns, at concat offsets and flattened
positions), so nothing downstream sees those channels.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

from prune_graph import Graph
from prune_ops import Equivalence, Group, Plan, PruningError, compare_outputs, make_plan, removal_of
from prune_torch._apply import apply
from prune_torch._aten import tensors_in
from prune_torch._layers import rule_for
from prune_torch._trace import ExampleInputs, split_inputs

__all__ = ["Equivalence", "VerificationError", "check_equivalence", "silenced_copy", "verify_step"]


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
            module = silenced.get_submodule(entry.owner) if entry.owner else silenced
            rule = rule_for(module)
            if rule is None:
                continue
            sides = rule.in_axes + (rule.out_axes if entry.owner in producers else ())
            if (entry.tensor, entry.axis) not in sides:
                continue
            tensor = getattr(module, entry.tensor)
            index = torch.as_tensor(entry.removed, dtype=torch.long, device=tensor.device)
            tensor.index_fill_(entry.axis, index, 0.0)
    return silenced


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
    rtol: float | None = None,
    atol: float | None = None,
    silence_outputs: Iterable[str] = (),
) -> Equivalence:
    """Compare ``pruned`` with the silenced ``original`` on ``inputs`` (both in eval mode is up to the caller).

    By default the outputs are equal when the largest difference, relative to the largest
    output magnitude, is within what rounding explains for their dtype (1e-9 in float64, 1e-4
    in float32, 2e-2 in float16; ``prune_ops.TOLERANCES``). Give ``rtol`` and ``atol`` to compare
    element by element instead.
    """
    reference = _run(silenced_copy(original, plan, silence_outputs), inputs)
    result = _run(pruned, inputs)
    dtypes = [str(t.dtype).removeprefix("torch.") for t in reference]
    return compare_outputs(
        [_numpy(t) for t in reference], [_numpy(t) for t in result], dtypes=dtypes, rtol=rtol, atol=atol
    )


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    """A host copy numpy can read (bfloat16 widened to float32)."""
    tensor = tensor.detach().cpu()
    return (tensor.float() if tensor.dtype == torch.bfloat16 else tensor).numpy()


class VerificationError(PruningError):
    """``prune(verify=True)`` found a group that is not approximate but changed the outputs; the prune was rolled back."""


def _in_eval(model: torch.nn.Module) -> dict[torch.nn.Module, bool]:
    modes = {m: m.training for m in model.modules()}
    model.eval()
    return modes


def verify_step(
    before: torch.nn.Module,
    pruned: torch.nn.Module,
    graph: Graph,
    applied: Sequence[tuple[Group, np.ndarray]],
    inputs: ExampleInputs,
    silence_outputs: Iterable[str] = (),
    approximate: Sequence[Group] = (),
) -> None:
    """Check that the exact groups of one prune step keep the outputs of the silenced ``before``.

    Approximate groups (mixed by an op, or ``approximate``: the model derives a number from their
    size) cannot be checked this way; when some were pruned, the exact ones are applied alone to a
    copy of ``before`` and that copy is checked. On a difference, each exact group is tried alone
    to name the one that breaks equality.
    """
    exact = [(g, u) for g, u in applied if not g.approximate and not any(g is a for a in approximate)]
    if not exact:
        return
    silence = tuple(silence_outputs)
    before.eval()  # the caller's private copy

    def trial(chosen: Sequence[tuple[Group, np.ndarray]]) -> tuple[Plan, torch.nn.Module]:
        plan = make_plan(graph, removal_of(graph, list(chosen)))
        model = copy.deepcopy(before)
        apply(model, plan, inputs)
        return plan, model

    if len(exact) == len(applied):
        plan = make_plan(graph, removal_of(graph, exact))
        modes = _in_eval(pruned)
        try:
            result = check_equivalence(before, pruned, plan, inputs, silence_outputs=silence)
        finally:
            for module, training in modes.items():
                module.training = training
    else:
        plan, model = trial(exact)
        result = check_equivalence(before, model, plan, inputs, silence_outputs=silence)
    if result.ok:
        return
    untried = []
    for group, units in exact:
        try:
            plan, model = trial([(group, units)])
        except PruningError:  # a group the model's code follows only together with others
            untried.append(group.name)
            continue
        alone = check_equivalence(before, model, plan, inputs, silence_outputs=silence)
        if not alone.ok:
            raise VerificationError(
                f"verification failed: pruning {group.name} changed the outputs ({alone}) although no op "
                "mixes its channels; the whole prune was rolled back. Please report this model; "
                "ignore=[...] one of its modules to prune the rest."
            )
    alone_note = f"; {len(untried)} group(s) cannot be applied alone: {', '.join(untried[:3])}" if untried else ""
    raise VerificationError(
        f"verification failed: the pruned model's outputs differ from the silenced original ({result}), though no "
        f"single group does on its own{alone_note}; the whole prune was rolled back"
    )
