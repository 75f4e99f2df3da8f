"""Coupling rules: which dims carry the same channels, and how their indices correspond."""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable
from typing import Union

import attrs

from prune_graph._errors import GraphError
from prune_graph._index_maps import Factor, IndexMapLike
from prune_graph._ops import OpId
from prune_graph._values import DimRef

__all__ = ["Broadcast", "Coupling", "FactorLink", "Link", "Mix", "Mixing", "Pin"]


@attrs.frozen
class Link:
    """``src`` and ``dst`` carry the same channels; ``map`` sends ``src`` indices to ``dst`` indices.

    The map is injective (identity, offset, window or their compositions): removing a channel
    on one side removes exactly its counterpart on the other.
    """

    src: DimRef
    dst: DimRef
    map: IndexMapLike
    op: OpId | None = None


def _to_parts(parts: object) -> tuple[DimRef | None, ...]:
    if not isinstance(parts, (list, tuple)):
        raise GraphError(f"'parts' must be a sequence of DimRef or None (got {parts!r})")
    for part in parts:
        if part is not None and not isinstance(part, DimRef):
            raise GraphError(f"'parts' must hold DimRef or None (got {part!r})")
    return tuple(parts)


def _sizes(sizes: Iterable[int]) -> tuple[int, ...]:
    return tuple(sizes)


@attrs.frozen
class FactorLink:
    """``fine`` is the row-major product of ``parts`` (a reshape of C into heads × head dims).

    A part that is ``None`` exists in no tensor and cannot be pruned (the chunk count of
    ``chunk``, the upscale factor of ``pixel_shuffle``). The kept fine channels are always the
    product of the kept channels of every part: remove whole heads, or the same head dims in
    every head, never a scattered set.
    """

    fine: DimRef
    parts: tuple[DimRef | None, ...] = attrs.field(converter=_to_parts)
    sizes: tuple[int, ...] = attrs.field(converter=_sizes)
    op: OpId | None = None

    def __attrs_post_init__(self) -> None:
        if len(self.parts) != len(self.sizes) or len(self.parts) < 2:
            raise GraphError(
                f"FactorLink of {self.fine}: needs two or more parts with one size each "
                f"(got {len(self.parts)} parts, {len(self.sizes)} sizes)"
            )
        if any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in self.sizes):
            raise GraphError(f"FactorLink of {self.fine}: sizes must be positive ints (got {self.sizes!r})")

    @property
    def size(self) -> int:
        """Size of the fine dim."""
        return math.prod(self.sizes)

    def part_map(self, axis: int) -> Factor:
        """The index map from part ``axis`` to the fine dim."""
        return Factor(self.sizes, axis)


@attrs.frozen
class Pin:
    """``dim`` cannot be pruned, for ``reason`` (an opaque op, a model input or output ...)."""

    dim: DimRef
    reason: str
    op: OpId | None = None


class Mixing(enum.Enum):
    """How an op mixes the channels of a dim: removing some of them changes the values of the rest.

    - ``REDUCTION``: the dim is folded into one value (sum, mean, max, var, norm, logsumexp ...);
    - ``SOFTMAX``: softmax or log-softmax over the dim;
    - ``CUMULATIVE``: a running sum, product, max or min along the dim;
    - ``NORMALISATION``: statistics over the dim rescale it, inside a recognised normalisation
      layer (LayerNorm, RMSNorm, the positions within each group of a GroupNorm);
    - ``SIZE``: the op scales its result by the dim's size (scaled dot-product attention without
      an explicit ``scale`` divides by √(head dim)).

    A group that crosses such a dim is *approximate*: the pruned model no longer computes what
    the silenced original computes.
    """

    REDUCTION = "reduction"
    SOFTMAX = "softmax"
    CUMULATIVE = "cumulative"
    NORMALISATION = "normalisation"
    SIZE = "size"


def _to_mixing(value: object) -> Mixing:
    if isinstance(value, Mixing):
        return value
    try:
        return Mixing(value)
    except ValueError:
        valid = ", ".join(m.value for m in Mixing)
        raise GraphError(f"'how' must be a Mixing ({valid}) (got {value!r})") from None


@attrs.frozen
class Mix:
    """The op reads every channel of ``dim`` to compute each of its outputs (``how`` says in what way).

    A reduction consumes the dim (it couples nothing further); softmax, cumulative ops and
    normalisations also link the dim to their output with their other couplings. Pruning is
    allowed, but the kept channels change value: the group is approximate.
    """

    dim: DimRef
    how: Mixing = attrs.field(converter=_to_mixing)
    op: OpId | None = None


@attrs.frozen
class Broadcast:
    """The op makes ``dim`` by repeating one slice (``expand`` of a size-1 dim): its channels are copies.

    Removing some copies couples nothing; the op's size argument must follow (the adapter updates
    the attributes it knows, such as a grouped-query attention's repeat count).
    """

    dim: DimRef
    op: OpId | None = None


Coupling = Union[Link, FactorLink, Pin, Mix, Broadcast]
