"""Coupling rules: which dims carry the same channels, and how their indices correspond."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Union

import attrs

from prune_graph._errors import GraphError
from prune_graph._index_maps import Factor, IndexMapLike
from prune_graph._ops import OpId
from prune_graph._values import DimRef

__all__ = ["Absorb", "Broadcast", "Coupling", "FactorLink", "Link", "Pin"]


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


@attrs.frozen
class Absorb:
    """The op reads every channel of ``dim`` and folds them into one (a sum or mean over the dim).

    Removing channels there is allowed and couples nothing further; a mean's denominator
    changes, so equivalence with the silenced model holds for sums, not for means.
    """

    dim: DimRef
    op: OpId | None = None


@attrs.frozen
class Broadcast:
    """The op makes ``dim`` by repeating one slice (``expand`` of a size-1 dim): its channels are copies.

    Removing some copies couples nothing; the op's size argument must follow (the adapter updates
    the attributes it knows, such as a grouped-query attention's repeat count).
    """

    dim: DimRef
    op: OpId | None = None


Coupling = Union[Link, FactorLink, Pin, Absorb, Broadcast]
