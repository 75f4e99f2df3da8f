"""Typed errors of the torch adapter."""

from __future__ import annotations

from typing import Any

from prune_ops import PlanMismatchError, PruningError

__all__ = ["ApplyError", "SizeConstantError", "TraceError", "forget_frames"]


class TraceError(PruningError):
    """The model could not be traced; the message says what the forward pass raised, and where.

    ``module`` is the path of the innermost module that was running when it failed (``None``
    when unknown, ``""`` for the model itself).
    """

    def __init__(self, message: str, module: str | None = None) -> None:
        super().__init__(message)
        self.module = module


class ApplyError(PlanMismatchError):
    """A plan could not be applied; the model was restored exactly as it was.

    ``module`` names the module whose code could not follow the new sizes, when known.
    """

    def __init__(self, message: str, module: str | None = None) -> None:
        super().__init__(message)
        self.module = module


class SizeConstantError(ApplyError):
    """The pruned model computes a plain number from a pruned size (``x.shape[1] ** 0.5``).

    It runs, but no longer computes what the silenced original computes. ``change`` holds the
    call before and after (a :class:`prune_torch._constants.ConstantChange`).
    """

    def __init__(self, message: str, change: Any) -> None:
        super().__init__(message, change.module)
        self.change = change


def forget_frames(error: BaseException) -> None:
    """Drop the tracebacks of ``error`` and the errors it chains (their message and fields stay).

    A caught error's traceback keeps every frame it passed through alive, with their locals: on a
    real forward, the model's activations. The frames refer back to the error, a cycle only the
    garbage collector frees, and a prune pauses it; an error that is only read for its message and
    module (a failed try) forgets its frames at once.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        current.__traceback__ = None
        current = current.__cause__ or current.__context__
