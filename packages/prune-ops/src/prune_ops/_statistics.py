"""Per-channel statistics of the activations a layer reads, gathered over calibration data.

An adapter runs calibration batches through the model and, for every layer that reads a
group's channels (the input side of a linear or conv), accumulates per channel the number of
rows, the sum and the sum of squares. Those three numbers are all the calibration-aware
importances need (the Wanda-style norm, the FLAP-style variance) and all that bias compensation
needs (the mean); they add across batches and across workers, so a distributed run sums them.
"""

from __future__ import annotations

import attrs
import numpy as np
import numpy.typing as npt

from prune_ops._errors import PruningError

__all__ = ["ChannelStats", "compensation"]

FloatArray = npt.NDArray[np.float64]


def _floats(values: npt.ArrayLike) -> FloatArray:
    return np.asarray(values, dtype=np.float64)


@attrs.frozen(eq=False)
class ChannelStats:
    """Per-channel ``count`` of rows seen, ``total`` (sum) and ``squares`` (sum of squares).

    Rows are every position a channel was read at: tokens of every batch for a linear layer,
    pixels of every image for a conv.

    >>> import numpy as np
    >>> stats = ChannelStats.of(np.array([[1.0, 0.0], [3.0, 2.0]]))
    >>> stats.mean.tolist(), stats.variance.tolist(), stats.norm.tolist()
    ([2.0, 1.0], [2.0, 2.0], [3.1622776601683795, 2.0])
    >>> stats.merge(stats).count
    4
    """

    count: int
    total: FloatArray = attrs.field(converter=_floats)
    squares: FloatArray = attrs.field(converter=_floats)

    def __attrs_post_init__(self) -> None:
        if self.total.ndim != 1 or self.total.shape != self.squares.shape:
            raise PruningError(
                f"ChannelStats: 'total' and 'squares' must be 1-D of one length "
                f"(got {self.total.shape} and {self.squares.shape})"
            )
        if self.count < 0:
            raise PruningError(f"ChannelStats: 'count' must be >= 0 (got {self.count})")

    @classmethod
    def of(cls, rows: npt.ArrayLike) -> ChannelStats:
        """Statistics of a 2-D array of rows × channels."""
        array = _floats(rows)
        if array.ndim != 2:
            raise PruningError(f"ChannelStats.of needs rows × channels (got shape {array.shape})")
        return cls(array.shape[0], array.sum(axis=0), (array * array).sum(axis=0))

    @property
    def channels(self) -> int:
        """Number of channels."""
        return int(self.total.shape[0])

    def merge(self, other: ChannelStats) -> ChannelStats:
        """Statistics of both sets of rows together."""
        if other.channels != self.channels:
            raise PruningError(f"ChannelStats.merge: {self.channels} channels and {other.channels} channels")
        return ChannelStats(self.count + other.count, self.total + other.total, self.squares + other.squares)

    @property
    def mean(self) -> FloatArray:
        """Mean of each channel over the rows."""
        return self.total / max(self.count, 1)

    @property
    def norm(self) -> FloatArray:
        """The L2 norm of each channel over all rows: ``||X_j||_2``."""
        return np.sqrt(np.maximum(self.squares, 0.0))

    @property
    def variance(self) -> FloatArray:
        """Sample variance of each channel over the rows (``count - 1`` in the denominator)."""
        if self.count < 2:
            return np.zeros(self.channels)
        centred = self.squares - self.total * self.total / self.count
        return np.maximum(centred, 0.0) / (self.count - 1)

    def take(self, indices: npt.ArrayLike) -> ChannelStats:
        """The statistics of some channels only."""
        index = np.asarray(indices, dtype=np.int64)
        return ChannelStats(self.count, self.total[index], self.squares[index])


def compensation(columns: npt.ArrayLike, means: npt.ArrayLike) -> FloatArray:
    """What removed inputs contributed on average: ``Σ_j mean_j · W[:, j]``, one value per output.

    ``columns`` holds the removed input channels first (``channels × outputs``, as a member's
    weight in :class:`~prune_ops.MemberData`), ``means`` their means over the calibration data.
    Adding the result to the consumer's bias replaces each removed channel by its mean instead
    of by zero (FLAP's bias compensation): exact for a channel that is constant, and closest in
    the mean for one that fluctuates little.

    >>> compensation(np.array([[1.0, 2.0], [0.0, 1.0]]), np.array([3.0, -1.0])).tolist()
    [3.0, 5.0]
    """
    weights, mu = _floats(columns), _floats(means)
    if weights.ndim != 2 or mu.shape != (weights.shape[0],):
        raise PruningError(
            f"compensation: columns must be channels × outputs and means one per channel "
            f"(got {weights.shape} and {mu.shape})"
        )
    return np.asarray(mu @ weights, dtype=np.float64)
