"""Unit scores of a group from its members' per-index scores: sums per unit, combined across members."""

from __future__ import annotations

import enum
import types
import warnings
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from prune_ops._errors import PruningError
from prune_ops._groups import Member
from prune_ops._summary import FloatArray

__all__ = ["Reduction", "mean_of_stacked", "reduce_members", "unit_sums", "unit_sums_of_members"]


class Reduction(enum.Enum):
    """How to combine the per-member scores of a group."""

    MEAN = "mean"
    SUM = "sum"
    MAX = "max"
    FIRST = "first"


def unit_sums(member: Member, per_index: FloatArray, size: int) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    """Sum per-index scores into units; also which units this member covers."""
    valid = member.units >= 0
    units = member.units[valid]
    sums = np.bincount(units, weights=per_index[valid], minlength=size)
    covered = np.zeros(size, dtype=bool)
    covered[units] = True
    return sums.astype(np.float64), covered


def unit_sums_of_members(
    members: Sequence[Member], per_index: Sequence[FloatArray], size: int
) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    """:func:`unit_sums` of every member at once: one row of unit sums (zero where uncovered) per member.

    One ``bincount`` over all members, each in its own ``size`` bins: every bin adds the same
    terms in the same order as the member's own ``bincount``, so the sums are the very same.
    """
    lengths = [len(m.units) for m in members]
    units = np.concatenate([m.units for m in members]) if members else np.zeros(0, dtype=np.int64)
    bins = np.repeat(np.arange(len(members), dtype=np.int64) * size, lengths) + units
    values = np.concatenate(per_index) if members else np.zeros(0)
    valid = units >= 0
    if not valid.all():  # indices of other groups (-1) are left out; usually there are none
        bins, values = bins[valid], values[valid]
    total = len(members) * size
    sums = np.asarray(np.bincount(bins, weights=values, minlength=total), dtype=np.float64)
    covered: npt.NDArray[np.bool_] = np.zeros(total, dtype=bool)
    covered[bins] = True
    return sums.reshape(len(members), size), covered.reshape(len(members), size)


_REDUCERS: Mapping[Reduction, Callable[[FloatArray], FloatArray]] = types.MappingProxyType(
    {
        Reduction.MEAN: lambda a: np.nanmean(a, axis=0),
        Reduction.SUM: lambda a: np.nansum(a, axis=0),
        Reduction.MAX: lambda a: np.nanmax(a, axis=0),
        Reduction.FIRST: lambda a: a[0],
    }
)


def reduce_members(rows: Sequence[tuple[FloatArray, npt.NDArray[np.bool_]]], size: int, how: Reduction) -> FloatArray:
    """Combine per-member unit scores; units a member does not cover are left out of its row."""
    if not rows:
        raise PruningError("no parameter member to score (the group holds no parameters)")
    if how is Reduction.MEAN:
        mean = _mean_of_covered(rows, size)
        if mean is not None:
            return mean
    stacked = np.full((len(rows), size), np.nan)
    for i, (scores, covered) in enumerate(rows):
        stacked[i, covered] = scores[covered]
    if how is Reduction.FIRST:
        first = np.full(size, np.nan)
        for row in stacked:
            first = np.where(np.isnan(first), row, first)
        return np.asarray(np.nan_to_num(first), dtype=np.float64)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.asarray(np.nan_to_num(_REDUCERS[how](stacked)), dtype=np.float64)


def _mean_of_covered(rows: Sequence[tuple[FloatArray, npt.NDArray[np.bool_]]], size: int) -> FloatArray | None:
    """``nan_to_num(nanmean)`` of the rows over the units each covers, by the very sums ``np.nanmean`` takes.

    Uncovered entries are zeros counted out, as ``nanmean`` makes them of NaNs, without its masks
    and copies; ``None`` when a covered score is NaN itself (then ``nanmean`` decides).
    """
    stacked = np.zeros((len(rows), size))
    count = np.zeros(size, dtype=np.intp)
    for i, (scores, covered) in enumerate(rows):
        stacked[i, covered] = scores[covered]
        count += covered
    return mean_of_stacked(stacked, count)


def mean_of_stacked(stacked: FloatArray, count: npt.NDArray[np.intp]) -> FloatArray | None:
    """:func:`_mean_of_covered` of rows already stacked (zeros where uncovered), with each unit's count of rows."""
    if np.isnan(stacked).any():
        return None
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.divide(np.sum(stacked, axis=0), count)
    if not np.isfinite(mean).all():  # nan_to_num's checks cost more than its work: only when it has some
        mean = np.nan_to_num(mean)
    return np.asarray(mean, dtype=np.float64)
