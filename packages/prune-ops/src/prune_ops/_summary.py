"""Weight summaries: the small per-index or per-unit reductions of a member's weight that criteria score from.

An adapter that can reduce tensors where they live (the torch adapter, in float64 on the
device) hands over these vectors instead of float64 copies of the weights; :func:`summarise` is
the reference computation they must agree with.
"""

from __future__ import annotations

import enum

import numpy as np
import numpy.typing as npt

__all__ = ["FloatArray", "Summary", "summarise"]

FloatArray = npt.NDArray[np.float64]


class Summary(enum.Enum):
    """A reduction of a member's weight (its axis first, flattened to 2-D rows) that criteria score from.

    ``ABS_SUM`` and ``SQUARE_SUM`` have one entry per index of the member's axis (``Σ_j |w_ij|``,
    ``Σ_j w_ij²``); ``DISTANCE_SUM`` has one per unit of the group: with ``v_u`` the sum of the rows
    of unit ``u``, ``Σ_k ||v_u − v_k||`` over the units ``k`` the member covers (FPGM).
    """

    ABS_SUM = "abs_sum"
    SQUARE_SUM = "square_sum"
    DISTANCE_SUM = "distance_sum"


def summarise(summary: Summary, weight: FloatArray, units: npt.NDArray[np.int64], size: int) -> FloatArray:
    """The reference computation of ``summary`` from a member's 2-D ``weight`` and its ``units`` (group of ``size``).

    >>> summarise(Summary.ABS_SUM, np.array([[1.0, -2.0], [0.5, 0.5]]), np.array([0, 1]), 2).tolist()
    [3.0, 1.0]
    """
    if summary is Summary.ABS_SUM:
        return np.asarray(np.sum(np.abs(weight), axis=1), dtype=np.float64)
    if summary is Summary.SQUARE_SUM:
        return np.asarray(np.sum(np.abs(weight) ** 2, axis=1), dtype=np.float64)
    valid = units >= 0
    vectors = np.zeros((size, weight.shape[1]))
    np.add.at(vectors, units[valid], weight[valid])
    covered = np.bincount(units[valid], minlength=size) > 0
    diff = vectors[:, None, :] - vectors[None, covered, :]
    return np.asarray(np.sqrt((diff**2).sum(axis=2)).sum(axis=1), dtype=np.float64)
