"""``interactive``: the proposals of one prune step, to review before applying."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import attrs
import numpy as np
import torch

from prune_ops import (
    Group,
    Plan,
    PruningError,
    costs,
    make_plan,
    removal_of,
)
from prune_torch._apply import apply
from prune_torch._calibrate import LossFn
from prune_torch._importance import ImportanceLike, resolve_importance
from prune_torch._options import DEFAULTS, parse_options
from prune_torch._report import Report, layer_widths
from prune_torch._step import plan_for_step, prepare
from prune_torch._trace import ExampleInputs
from prune_torch._traced import TracedGraph, trace_model

__all__ = ["InteractivePruner", "Proposal", "interactive"]


@attrs.define
class Proposal:
    """One group the pruner wants to shrink: inspect it, change ``units``, then ``accept()`` or ``reject()``."""

    group: Group
    units: np.ndarray
    scores: np.ndarray
    accepted: bool = False

    def accept(self) -> None:
        """Keep this proposal (with its current ``units``)."""
        self.accepted = True

    def reject(self) -> None:
        """Drop this proposal."""
        self.accepted = False

    def __str__(self) -> str:
        units = ", ".join(str(int(u)) for u in self.units[:12]) + (" ..." if len(self.units) > 12 else "")
        return f"{self.group.describe()}\n  remove {len(self.units)} of {self.group.size} units: [{units}]"


class InteractivePruner:
    """Walk the groups the pruner chose, inspect or change each, and apply only those accepted.

    >>> import torch
    >>> from prune_torch.examples import resnet_like
    >>> model = resnet_like(10).eval()
    >>> session = interactive(model, torch.randn(1, 3, 32, 32), ratio=0.5, ignore=["fc"])
    >>> for proposal in session:
    ...     proposal.accept()
    >>> report = session.apply()
    """

    def __init__(
        self, model: torch.nn.Module, example_inputs: ExampleInputs, graph: TracedGraph, proposals: list[Proposal]
    ) -> None:
        self.model = model
        self.example_inputs = example_inputs
        self.graph = graph
        self.proposals = proposals

    def __iter__(self) -> Iterator[Proposal]:
        return iter(self.proposals)

    def __len__(self) -> int:
        return len(self.proposals)

    def plan(self) -> Plan:
        """The plan of the accepted proposals."""
        chosen = [(p.group, np.asarray(p.units, dtype=np.int64)) for p in self.proposals if p.accepted]
        return make_plan(self.graph, removal_of(self.graph, chosen))

    def apply(self) -> Report:
        """Apply the accepted proposals and report."""
        plan = self.plan()
        apply(self.model, plan, self.example_inputs)
        return Report(
            plan, costs(self.graph), costs(self.graph, plan), layers=layer_widths(self.model, self.graph, plan)
        )


def interactive(
    model: torch.nn.Module,
    example_inputs: ExampleInputs,
    *,
    importance: ImportanceLike = "l2",
    reduction: str = "mean",
    seed: int = 0,
    calibration: Iterable[ExampleInputs] | None = None,
    loss_fn: LossFn | None = None,
    **options: Any,
) -> InteractivePruner:
    """Like :func:`prune` (same options, one step), but returns the proposals for review instead of applying them."""
    unknown = set(options) - set(DEFAULTS)
    if unknown:
        raise PruningError(f"unknown option(s) {sorted(unknown)}; valid: {', '.join(sorted(DEFAULTS))}")
    opts = parse_options(model, **{**DEFAULTS, **options, "steps": 1})
    scorer = resolve_importance(importance, reduction, seed)
    graph = trace_model(model, example_inputs)
    scored = prepare(model, graph, opts, scorer, calibration, loss_fn, False)
    _, chosen = plan_for_step(graph, scored, opts)
    scores = {id(g): s for g, s in scored}
    proposals = [Proposal(g, units, scores[id(g)]) for g, units in chosen if len(units)]
    return InteractivePruner(model, example_inputs, graph, proposals)
