"""Helpers for the transformer and recurrent-net tests: prune a copy-kept model, compare with the silenced original."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import nn

import prune_torch as pt
from prune_ops import Group, GroupKind

__all__ = [
    "assert_matches_silenced",
    "call",
    "group_with",
    "groups_of",
    "labels",
    "member",
    "output_tensors",
    "prune_kept",
]


def call(model: nn.Module, inputs: Any) -> Any:
    """``model(**inputs)`` for a dict of keyword arguments, else ``model(inputs)``, without gradients."""
    with torch.no_grad():
        return model(**inputs) if isinstance(inputs, dict) else model(inputs)


def output_tensors(model: nn.Module, inputs: Any) -> list[torch.Tensor]:
    """The tensors a forward returns (a ``ModelOutput``'s tensor fields in order; caches left out)."""
    out = call(model, inputs)
    if isinstance(out, torch.Tensor):
        return [out]
    values = out.values() if isinstance(out, dict) else out
    return [v for v in values if isinstance(v, torch.Tensor)]


def prune_kept(model: nn.Module, inputs: Any, **options: Any) -> tuple[nn.Module, pt.Report]:
    """Prune ``model`` in place with :func:`prune_torch.prune`; return an untouched copy of the original and the report."""
    original = copy.deepcopy(model)
    report = pt.prune(model, inputs, show_progress=False, **options)
    return original, report


def assert_matches_silenced(original: nn.Module, pruned: nn.Module, report: pt.Report, inputs: Any) -> None:
    """The pruned model computes what the silenced original computes, tightly (both in float64),
    and the removed units mattered: without silencing, the original computes something else."""
    before = output_tensors(original, inputs)
    after = output_tensors(pruned, inputs)
    assert [t.shape for t in after] == [t.shape for t in before]
    result = pt.check_equivalence(
        original, pruned, report.plan, inputs, rtol=1e-9, atol=1e-11, silence_outputs=report.silence_outputs
    )
    assert result.ok, str(result)
    assert result.max_rel < 1e-10, str(result)
    assert any(not torch.allclose(a, b, rtol=1e-6, atol=1e-8) for a, b in zip(before, after)), (
        "the pruned units made no difference: the check would prove nothing"
    )


def groups_of(graph: pt.TracedGraph, kind: GroupKind, *, normalised: bool | None = None) -> list[Group]:
    """Groups of one kind that hold a parameter (optionally only normalised or only plain ones)."""
    return [
        g
        for g in graph.groups()
        if g.kind is kind
        and any(m.value.kind.value == "parameter" for m in g.members)
        and (normalised is None or g.normalised is normalised)
    ]


def labels(group: Group) -> set[str]:
    """``module.param[dim]`` of every parameter or buffer member."""
    return {m.label for m in group.parameters}


def member(group: Group, label: str) -> np.ndarray:
    """The units array of the member ``label`` (``q_proj.weight[0]``)."""
    found = [m for m in group.parameters if m.label == label]
    assert len(found) == 1, f"{label} not in group: {sorted(labels(group))}"
    return found[0].units


def group_with(graph: pt.TracedGraph, kind: GroupKind, label: str) -> Group:
    """The one group of ``kind`` that has the member ``label``."""
    found = [g for g in groups_of(graph, kind) if label in labels(g)]
    assert len(found) == 1, f"{len(found)} {kind.value} groups contain {label}"
    return found[0]
