"""The classic per-weight strategies: ``strategy(weight, amount=0.4, round_to=16)`` → indices to remove."""

from __future__ import annotations

import attrs
import numpy as np
import numpy.typing as npt

from prune_ops._errors import PruningError
from prune_ops._indices import IntArray
from prune_ops._selection import select

__all__ = ["L1Strategy", "L2Strategy", "RandomStrategy"]


def _rows(weight: npt.ArrayLike) -> npt.NDArray[np.float64]:
    array = np.asarray(weight, dtype=np.float64)
    if array.ndim == 0:
        raise PruningError("a strategy needs a weight with at least one dim (got a scalar)")
    return array.reshape(array.shape[0], -1)


@attrs.frozen
class L1Strategy:
    """Remove the output channels (dim 0) with the smallest L1 norm.

    >>> L1Strategy()(np.array([[1.0], [-5.0], [0.1], [2.0]]), amount=0.5).tolist()
    [0, 2]
    """

    def __call__(self, weight: npt.ArrayLike, amount: float = 0.5, round_to: int = 1) -> IntArray:
        return select(np.abs(_rows(weight)).sum(axis=1), amount=amount, round_to=round_to)


@attrs.frozen
class L2Strategy:
    """Remove the output channels (dim 0) with the smallest L2 norm."""

    def __call__(self, weight: npt.ArrayLike, amount: float = 0.5, round_to: int = 1) -> IntArray:
        return select(np.sqrt((_rows(weight) ** 2).sum(axis=1)), amount=amount, round_to=round_to)


@attrs.frozen
class RandomStrategy:
    """Remove random output channels; reproducible for a given ``seed``."""

    seed: int | None = None

    def __call__(self, weight: npt.ArrayLike, amount: float = 0.5, round_to: int = 1) -> IntArray:
        rng = np.random.default_rng(self.seed)
        return select(rng.random(_rows(weight).shape[0]), amount=amount, round_to=round_to)
