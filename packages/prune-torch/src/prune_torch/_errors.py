"""Typed errors of the torch adapter."""

from __future__ import annotations

from prune_ops import PlanMismatchError, PruningError

__all__ = ["ApplyError", "TraceError"]


class TraceError(PruningError):
    """The model could not be traced; the message says what the forward pass raised."""


class ApplyError(PlanMismatchError):
    """A plan could not be applied; the model was restored exactly as it was."""
