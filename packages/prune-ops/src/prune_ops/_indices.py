"""Pure index arithmetic: checking, normalising and complementing index arrays."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

from prune_ops._errors import InvalidIndicesError

__all__ = ["IntArray", "as_index_array", "check_indices", "complement"]

IntArray = npt.NDArray[np.int64]


def as_index_array(indices: Iterable[int] | npt.ArrayLike, where: str = "indices") -> IntArray:
    """Indices as a 1-D int64 array: ints only (no bools, floats or strings), no range checks.

    >>> as_index_array([3, 1]).tolist()
    [3, 1]
    """
    if isinstance(indices, np.ndarray):
        array = indices
    else:
        if isinstance(indices, (str, bytes)) or not isinstance(indices, Iterable):
            raise InvalidIndicesError(f"{where}: indices must be a sequence of ints (got {indices!r})")
        items = list(indices)
        # plain ints (a plan's entries) pass in one look at their types; anything else item by item
        if not set(map(type, items)) <= {int}:
            bad = next(
                (i for i in items if isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer))), None
            )
            if bad is not None:
                raise InvalidIndicesError(f"{where}: indices must be ints (got {bad!r} of type {type(bad).__name__})")
        array = np.asarray(items, dtype=np.int64)
    if array.size == 0:
        return np.zeros(0, dtype=np.int64)
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
        raise InvalidIndicesError(
            f"{where}: indices must be a 1-D sequence of ints (got dtype {array.dtype}, shape {array.shape})"
        )
    return array.astype(np.int64, copy=False)


def check_indices(
    indices: Iterable[int] | npt.ArrayLike, size: int, where: str, *, allow_empty: bool = False, allow_all: bool = False
) -> IntArray:
    """Sorted unique indices to remove from a dim of ``size``, or an error naming ``where`` and the index.

    >>> check_indices([3, 1], 4, "conv.weight[0]").tolist()
    [1, 3]
    """
    array = as_index_array(indices, where)
    if array.size == 0 and not allow_empty:
        raise InvalidIndicesError(f"{where}: no indices given (expected at least one channel to remove)")
    if array.size and array[0] >= 0 and array[-1] < size and bool((array[1:] > array[:-1]).all()):
        # already strictly increasing and in range (what plans hold): nothing to sort or count
        if array.size == size and not allow_all:
            raise InvalidIndicesError(f"{where}: removing all {size} channels would leave none (keep at least one)")
        return array.copy() if array is indices else array
    negative = array[array < 0]
    if negative.size:
        raise InvalidIndicesError(f"{where}: index {int(negative[0])} is negative (size {size})")
    too_big = array[array >= size]
    if too_big.size:
        raise InvalidIndicesError(f"{where}: index {int(too_big[0])} is out of range for size {size}")
    unique, counts = np.unique(array, return_counts=True)
    if (counts > 1).any():
        raise InvalidIndicesError(f"{where}: index {int(unique[counts > 1][0])} appears {int(counts.max())} times")
    if unique.size == size and size > 0 and not allow_all:
        raise InvalidIndicesError(f"{where}: removing all {size} channels would leave none (keep at least one)")
    return unique


def complement(indices: IntArray, size: int) -> IntArray:
    """The indices of ``range(size)`` not in ``indices`` (the ones kept).

    >>> complement(np.array([0, 2]), 4).tolist()
    [1, 3]
    """
    keep = np.ones(size, dtype=bool)
    keep[indices] = False
    return np.flatnonzero(keep).astype(np.int64)
