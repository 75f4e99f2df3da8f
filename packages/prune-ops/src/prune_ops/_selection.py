"""Selection: from scores and a target to the units to remove."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from prune_ops._errors import InvalidIndicesError, PruningError
from prune_ops._groups import Group
from prune_ops._indices import IntArray

__all__ = ["check_amount", "factor_sets", "keep_count", "select", "split_between_factors"]


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


def factor_sets(groups: Sequence[Group]) -> list[list[int]]:
    """Sets of groups that are factors of the same channels (GroupNorm groups × positions, heads × head dims).

    Groups are factors of one another when they share a dim in which every index has a unit in
    each of them: each channel there is (a unit of one, a unit of the other). Groups that merely
    share a concatenated dim hold different indices of it and are not factors. One set per
    such dim, without repeats; a group can be in several (heads, with the query-key head dims
    and with the value head dims).
    """
    covering: dict[object, list[int]] = {}
    for i, group in enumerate(groups):
        for dim in group.whole_parameters:
            covering.setdefault(dim, []).append(i)
    sets = {tuple(sorted(set(found))) for found in covering.values() if len(set(found)) > 1}
    return [list(s) for s in sorted(sets, key=lambda s: (-len(s), s))]


def _balanced_keeps(sizes: Sequence[int], fraction: float, approximate: Sequence[bool]) -> list[int]:
    """Kept units per factor whose product is nearest ``fraction`` of all channels.

    Among equally near choices: the fewest approximate factors cut (whole GroupNorm groups
    rather than positions within them), then the most even spread, then the least cut from the
    factor with the fewest units.
    """
    target = fraction * math.prod(sizes)
    even = fraction ** (1 / len(sizes))
    best: tuple[float, int, float, float] | None = None
    chosen: list[int] = list(sizes)
    for prefix in itertools.product(*(range(1, n + 1) for n in sizes[:-1])):
        last = min(max(round(target / math.prod(prefix)), 1), sizes[-1])
        keeps = [*prefix, last]
        cut = sum(1 for k, n, a in zip(keeps, sizes, approximate) if a and k < n)
        spread = sum(abs(k / n - even) for k, n in zip(keeps, sizes))
        # last, prefer cutting the factors with more units (query heads rather than key/value heads)
        coarse = sum((n - k) / n for k, n in zip(keeps, sizes) if n == min(sizes))
        key = (round(abs(math.prod(keeps) - target), 9), cut, round(spread, 9), round(coarse, 9))
        if best is None or key < best:
            best, chosen = key, keeps
    return chosen


def split_between_factors(groups: Sequence[Group], amounts: Sequence[float], fixed: Sequence[bool] = ()) -> list[float]:
    """Amounts such that channels factored ``k`` ways lose ``amount`` of channels, not more.

    The factors of a set keep whole numbers of units whose product is the nearest to ``1 -
    amount`` of the channels they form together, spread as evenly as the sizes allow (a
    GroupNorm(8, 64) at 50% keeps 4 groups of 8 or 8 groups of 4 ... not 6 × 6; without the
    split, its groups and the positions within them at 50% each would remove 75% of its
    channels). Amounts marked ``fixed`` (an explicit ``head_ratio``) are kept as given and do not
    count among the factors.
    """
    out = [float(a) for a in amounts]
    fixed = list(fixed) or [False] * len(groups)
    split: set[int] = set()
    for members in factor_sets(groups):
        free = [i for i in members if not fixed[i] and i not in split]
        done = [i for i in members if i in split]
        if not free or (len(free) == 1 and not done):
            continue
        fraction = math.prod(1 - out[i] for i in free) ** (1 / len(free))
        # a factor already split for another set leaves the rest to share what is still to go
        left = min(1.0, fraction / math.prod(1 - out[i] for i in done)) if done else fraction
        if len(free) == 1:
            out[free[0]] = 1 - left
        elif math.prod(groups[i].size for i in free[:-1]) > 100_000:  # too many combinations: the even split
            for i in free:
                out[i] = 1 - left ** (1 / len(free))
        else:
            sizes = [groups[i].size for i in free]
            for i, keep in zip(free, _balanced_keeps(sizes, left, [groups[i].approximate for i in free])):
                out[i] = (groups[i].size - keep) / groups[i].size
        split.update(free)
    return out
