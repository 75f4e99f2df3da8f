"""What a prune did, in the terms every adapter shares: the plan, costs before and after, and why groups stayed."""

from __future__ import annotations

import attrs

from prune_ops._costs import Costs
from prune_ops._plan import Plan

__all__ = ["Outcome"]


@attrs.frozen
class Outcome:
    """The result of a prune: the ``plan`` applied, ``before`` / ``after`` costs, and notes.

    ``skipped`` lists groups left alone and why (an op mixes their channels, or the model's code
    cannot follow them); ``approximate`` names every pruned group whose channels an op mixes (a
    LayerNorm, a softmax, a reduction over them), with the op: for those, the pruned model is not
    expected to equal the silenced original. Adapters extend it (prune-torch adds per-layer
    widths and latency) or use it as it is (prune-onnx).

    >>> from prune_ops import Costs, Plan
    >>> done = Outcome(Plan("a", "b", (), ()), Costs(100, 1000, ()), Costs(40, 300, ()), ("g1 left unpruned: softmax",))
    >>> print(done)
    parameters 100 → 40 (40.0%)
    MACs       1,000 → 300 (30.0%)
    0 tensor axes changed
    skipped    g1 left unpruned: softmax
    """

    plan: Plan
    before: Costs
    after: Costs
    skipped: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    approximate: tuple[str, ...] = attrs.field(default=(), converter=tuple)

    @property
    def params_ratio(self) -> float:
        """Parameters after / before."""
        return self.after.parameters / max(self.before.parameters, 1)

    @property
    def macs_ratio(self) -> float:
        """MACs after / before."""
        return self.after.macs / max(self.before.macs, 1)

    def cost_lines(self) -> list[str]:
        """Parameters and MACs before → after, one line each."""
        return [
            f"parameters {self.before.parameters:,} → {self.after.parameters:,} ({self.params_ratio:.1%})",
            f"MACs       {self.before.macs:,} → {self.after.macs:,} ({self.macs_ratio:.1%})",
        ]

    def note_lines(self) -> list[str]:
        """One line per skipped and per approximate group."""
        return [f"skipped    {note}" for note in self.skipped] + [f"approx.    {note}" for note in self.approximate]

    def __str__(self) -> str:
        return "\n".join([*self.cost_lines(), f"{len(self.plan.entries)} tensor axes changed", *self.note_lines()])
