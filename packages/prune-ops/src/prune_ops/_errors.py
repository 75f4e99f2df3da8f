"""Typed errors of prune-ops; every message names the value, dim and index involved."""

from __future__ import annotations

__all__ = ["InvalidIndicesError", "PlanMismatchError", "PruningError", "TargetMissedWarning", "UnprunableError"]


class PruningError(ValueError):
    """Base class: a pruning request cannot be honoured."""


class InvalidIndicesError(PruningError):
    """Indices out of range, negative, duplicated, empty, not whole units, or all of a dim."""


class UnprunableError(PruningError):
    """The request touches a dim that may not change (opaque op, ignored layer, model output)."""


class PlanMismatchError(PruningError):
    """A plan applied to, or composed with, something it was not made for."""


class TargetMissedWarning(UserWarning):
    """A parameter or MAC target was not met within its tolerance; the closest plan found was used.

    Raised as a warning, not an error: the plan is valid and usually close. Turn it into an error
    with ``warnings.simplefilter("error", TargetMissedWarning)`` where a miss must stop the run.
    """
