"""Selection: from scores and a target to the units to remove."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from prune_ops._errors import InvalidIndicesError, PruningError
from prune_ops._indices import IntArray

__all__ = ["check_amount", "keep_count", "select"]


def check_amount(amount: float, name: str = "amount") -> float:
    """``amount`` as a float in [0, 1), or a ``PruningError`` showing what was received."""
    if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not 0 <= amount < 1:
        raise PruningError(f"'{name}' must be a fraction in [0, 1) (got {amount!r})")
    return float(amount)


def keep_count(
    size: int, *, amount: float | None = None, count: int | None = None, round_to: int = 1, min_keep: int = 1
) -> int:
    """How many of ``size`` units stay when removing ``amount`` (a fraction) or ``count`` of them.

    The kept number is rounded to the nearest multiple of ``round_to`` (at least one multiple)
    and never drops below ``min_keep`` or to zero. A dim smaller than ``round_to`` is kept whole.

    >>> keep_count(64, amount=0.4, round_to=16)
    32
    >>> keep_count(64, amount=0.3, round_to=16)
    48
    """
    if isinstance(round_to, bool) or not isinstance(round_to, int) or round_to < 1:
        raise PruningError(f"'round_to' must be an int >= 1 (got {round_to!r})")
    if isinstance(min_keep, bool) or not isinstance(min_keep, int) or min_keep < 1:
        raise PruningError(f"'min_keep' must be an int >= 1 (got {min_keep!r})")
    if (amount is None) == (count is None):
        raise PruningError("give exactly one of 'amount' and 'count'")
    if amount is not None:
        removed = math.floor(check_amount(amount) * size + 1e-9)
    else:
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise PruningError(f"'count' must be a non-negative int (got {count!r})")
        if count >= size:
            raise InvalidIndicesError(f"cannot remove {count} of {size} units (keep at least one)")
        removed = count
    if removed == 0 or size < round_to:
        return size
    keep = size - removed
    if round_to > 1:
        keep = max(round_to, math.floor(keep / round_to + 0.5) * round_to)
    keep = max(keep, min_keep if round_to == 1 else math.ceil(min_keep / round_to) * round_to, 1)
    return min(keep, size)


def select(
    scores: npt.ArrayLike,
    *,
    amount: float | None = None,
    count: int | None = None,
    round_to: int = 1,
    min_keep: int = 1,
) -> IntArray:
    """Indices of the lowest-scored units to remove (sorted), honouring ``round_to`` and ``min_keep``.

    Ties go to the lower index first, so the choice is deterministic.

    >>> select([0.5, 0.1, 0.9, 0.3], amount=0.5).tolist()
    [1, 3]
    """
    values = np.asarray(scores, dtype=np.float64)
    if values.ndim != 1:
        raise PruningError(f"scores must be 1-D (got shape {values.shape})")
    if np.isnan(values).any():
        raise PruningError(f"scores contain NaN at index {int(np.flatnonzero(np.isnan(values))[0])}")
    keep = keep_count(values.size, amount=amount, count=count, round_to=round_to, min_keep=min_keep)
    order = np.argsort(values, kind="stable")
    return np.sort(order[: values.size - keep]).astype(np.int64)
