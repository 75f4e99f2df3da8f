"""What a prune's ``ratio`` measures: channels, parameters or MACs."""

from __future__ import annotations

import enum

from prune_ops._errors import PruningError

__all__ = ["Target", "as_target"]


class Target(enum.Enum):
    """What ``ratio`` measures: channels of each group (or of all), parameters, or MACs."""

    CHANNELS = "channels"
    PARAMS = "params"
    MACS = "macs"


def as_target(value: str | Target) -> Target:
    """A :class:`Target` from itself or its name, or an error listing the valid names.

    >>> as_target("macs")
    <Target.MACS: 'macs'>
    """
    if isinstance(value, Target):
        return value
    try:
        return Target(value)
    except ValueError:
        valid = ", ".join(t.value for t in Target)
        raise PruningError(f"unknown target {value!r}; valid: {valid}") from None
