"""Index maps: how the channel indices of one dim correspond to those of a coupled dim.

Every map sends a set of *source* indices to the set of *destination* indices they touch
(``forward``) and back (``backward``: the source indices whose whole image lies inside the
given destination set). Index sets are sorted tuples of unique ints. ``domain`` is the set of
source indices that have an image; ``codomain`` the destination indices that are reached.

>>> Offset(offset=4, src_size=2, dst_size=8).forward((0, 1))
(4, 5)
>>> block_expand(3, 2).forward((1,))
(2, 3)
>>> compose(Offset(2, 3, 5), Window(start=2, step=1, length=3, src_size=5)).forward((0, 2))
(0, 2)
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable
from typing import Protocol, Union

import attrs

from prune_graph._errors import IndexMapError

__all__ = [
    "Compose",
    "Factor",
    "Identity",
    "IndexMap",
    "IndexMapLike",
    "Offset",
    "Window",
    "block_expand",
    "compose",
    "normalise_indices",
]


def normalise_indices(indices: Iterable[int], size: int, what: str = "index set") -> tuple[int, ...]:
    """Sorted, unique, in-range indices, or an ``IndexMapError`` naming the first bad one."""
    items = indices if isinstance(indices, (tuple, list)) else list(indices)
    # plain ints (what the maps pass each other) in one look at their types; anything else item by item
    plain = set(map(type, items)) <= {int}
    out = sorted(set(items) if plain else {_as_index(i, what) for i in items})
    if out and (out[0] < 0 or out[-1] >= size):
        bad = out[0] if out[0] < 0 else out[-1]
        raise IndexMapError(f"{what}: index {bad} out of range for size {size}")
    return tuple(out)


def _as_index(index: object, what: str) -> int:
    # int() would truncate 1.5 to 1 and turn a boolean mask into {0, 1}: refuse both
    if not isinstance(index, bool):
        try:
            return operator.index(index)  # type: ignore[arg-type]
        except TypeError:
            pass
    raise IndexMapError(f"{what}: index {index!r} is not an int")


def _int_tuple(values: Iterable[int]) -> tuple[int, ...]:
    return tuple(values)


def _positive(_instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise IndexMapError(f"'{attribute.name}' must be a positive int (got {value!r})")


def _non_negative(_instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise IndexMapError(f"'{attribute.name}' must be a non-negative int (got {value!r})")


class IndexMap(Protocol):
    """What every index map offers."""

    @property
    def src_size(self) -> int: ...

    @property
    def dst_size(self) -> int: ...

    def forward(self, indices: Iterable[int]) -> tuple[int, ...]: ...

    def backward(self, indices: Iterable[int]) -> tuple[int, ...]: ...

    def domain(self) -> tuple[int, ...]: ...

    def codomain(self) -> tuple[int, ...]: ...


@attrs.frozen
class Identity:
    """Index ``i`` on one side is index ``i`` on the other."""

    size: int = attrs.field(validator=_non_negative)

    @property
    def src_size(self) -> int:
        return self.size

    @property
    def dst_size(self) -> int:
        return self.size

    def forward(self, indices: Iterable[int]) -> tuple[int, ...]:
        return normalise_indices(indices, self.size, "Identity.forward")

    def backward(self, indices: Iterable[int]) -> tuple[int, ...]:
        return normalise_indices(indices, self.size, "Identity.backward")

    def domain(self) -> tuple[int, ...]:
        return tuple(range(self.size))

    def codomain(self) -> tuple[int, ...]:
        return tuple(range(self.size))


@attrs.frozen
class Offset:
    """A part placed at ``offset`` inside a whole (a concat input inside its output): ``i ↦ i + offset``."""

    offset: int = attrs.field(validator=_non_negative)
    src_size: int = attrs.field(validator=_non_negative)
    dst_size: int = attrs.field(validator=_non_negative)

    def __attrs_post_init__(self) -> None:
        if self.offset + self.src_size > self.dst_size:
            raise IndexMapError(
                f"Offset: part [{self.offset}, {self.offset + self.src_size}) does not fit in size {self.dst_size}"
            )

    def forward(self, indices: Iterable[int]) -> tuple[int, ...]:
        return tuple(i + self.offset for i in normalise_indices(indices, self.src_size, "Offset.forward"))

    def backward(self, indices: Iterable[int]) -> tuple[int, ...]:
        got = normalise_indices(indices, self.dst_size, "Offset.backward")
        return tuple(i - self.offset for i in got if self.offset <= i < self.offset + self.src_size)

    def domain(self) -> tuple[int, ...]:
        return tuple(range(self.src_size))

    def codomain(self) -> tuple[int, ...]:
        return tuple(range(self.offset, self.offset + self.src_size))


@attrs.frozen
class Window:
    """A strided window of a whole (a slice or split output): ``start + k·step ↦ k`` for ``k < length``."""

    start: int = attrs.field(validator=_non_negative)
    step: int = attrs.field(validator=_positive)
    length: int = attrs.field(validator=_non_negative)
    src_size: int = attrs.field(validator=_non_negative)

    def __attrs_post_init__(self) -> None:
        if self.length and self.start + (self.length - 1) * self.step >= self.src_size:
            raise IndexMapError(
                f"Window: start {self.start}, step {self.step}, length {self.length} overruns size {self.src_size}"
            )

    @property
    def dst_size(self) -> int:
        return self.length

    def forward(self, indices: Iterable[int]) -> tuple[int, ...]:
        out = []
        for i in normalise_indices(indices, self.src_size, "Window.forward"):
            k, rest = divmod(i - self.start, self.step)
            if rest == 0 and 0 <= k < self.length:
                out.append(k)
        return tuple(out)

    def backward(self, indices: Iterable[int]) -> tuple[int, ...]:
        return tuple(self.start + k * self.step for k in normalise_indices(indices, self.length, "Window.backward"))

    def domain(self) -> tuple[int, ...]:
        return tuple(self.start + k * self.step for k in range(self.length))

    def codomain(self) -> tuple[int, ...]:
        return tuple(range(self.length))


@attrs.frozen
class Factor:
    """One axis of a factorisation ``fine = ravel(coarse_0, ..., coarse_n)`` (row-major).

    The source is coarse axis ``axis`` (size ``sizes[axis]``), the destination the fine dim
    (size ``prod(sizes)``). Coarse index ``i`` maps to every fine index whose ``axis``-th
    coordinate is ``i``: with sizes ``(heads, head_dim)``, axis 0 maps a head to its block of
    channels, axis 1 maps a head dim to that position in every head. ``backward`` returns the
    coarse indices whose whole fibre is inside the given fine set.
    """

    sizes: tuple[int, ...] = attrs.field(converter=_int_tuple)
    axis: int = attrs.field()

    @sizes.validator
    def _check_sizes(self, _attribute: object, sizes: tuple[int, ...]) -> None:
        if not sizes or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in sizes):
            raise IndexMapError(f"'sizes' must be positive ints (got {sizes!r})")

    @axis.validator
    def _check_axis(self, _attribute: object, axis: int) -> None:
        if not 0 <= axis < len(self.sizes):
            raise IndexMapError(f"'axis' must be in [0, {len(self.sizes)}) (got {axis!r})")

    @property
    def src_size(self) -> int:
        return self.sizes[self.axis]

    @property
    def dst_size(self) -> int:
        return math.prod(self.sizes)

    @property
    def _stride(self) -> int:
        return math.prod(self.sizes[self.axis + 1 :])

    def forward(self, indices: Iterable[int]) -> tuple[int, ...]:
        chosen = normalise_indices(indices, self.src_size, "Factor.forward")
        stride, outer = self._stride, math.prod(self.sizes[: self.axis])
        block = stride * self.src_size
        return tuple(sorted(o * block + i * stride + r for o in range(outer) for i in chosen for r in range(stride)))

    def backward(self, indices: Iterable[int]) -> tuple[int, ...]:
        have = set(normalise_indices(indices, self.dst_size, "Factor.backward"))
        return tuple(i for i in range(self.src_size) if all(f in have for f in self.forward((i,))))

    def domain(self) -> tuple[int, ...]:
        return tuple(range(self.src_size))

    def codomain(self) -> tuple[int, ...]:
        return tuple(range(self.dst_size))

    def coordinate(self, fine: int) -> int:
        """The coarse index along ``axis`` of fine index ``fine``."""
        return (fine // self._stride) % self.src_size


def block_expand(count: int, block: int) -> Factor:
    """Channel ``c`` of ``count`` becomes fine indices ``c·block … c·block+block−1`` (a flatten)."""
    return Factor((count, block), 0)


def _map_tuple(maps: Iterable[IndexMapLike]) -> tuple[IndexMapLike, ...]:
    return tuple(maps)


@attrs.frozen
class Compose:
    """``maps[0]`` then ``maps[1]`` then ...; build it with :func:`compose`."""

    maps: tuple[IndexMapLike, ...] = attrs.field(converter=_map_tuple)

    def __attrs_post_init__(self) -> None:
        if len(self.maps) < 2:
            raise IndexMapError(f"Compose needs at least two maps (got {len(self.maps)}); use compose()")
        for first, second in zip(self.maps, self.maps[1:]):
            if first.dst_size != second.src_size:
                raise IndexMapError(
                    f"cannot compose {type(first).__name__} (dst size {first.dst_size}) with "
                    f"{type(second).__name__} (src size {second.src_size})"
                )

    @property
    def src_size(self) -> int:
        return self.maps[0].src_size

    @property
    def dst_size(self) -> int:
        return self.maps[-1].dst_size

    def forward(self, indices: Iterable[int]) -> tuple[int, ...]:
        out = normalise_indices(indices, self.src_size, "Compose.forward")
        for index_map in self.maps:
            out = index_map.forward(out)
        return out

    def backward(self, indices: Iterable[int]) -> tuple[int, ...]:
        out = normalise_indices(indices, self.dst_size, "Compose.backward")
        for index_map in reversed(self.maps):
            out = index_map.backward(out)
        return out

    def domain(self) -> tuple[int, ...]:
        return tuple(i for i in range(self.src_size) if self.forward((i,)))

    def codomain(self) -> tuple[int, ...]:
        return self.forward(range(self.src_size))


IndexMapLike = Union[Identity, Offset, Window, Factor, Compose]


def compose(*maps: IndexMapLike) -> IndexMapLike:
    """Compose maps left to right, dropping identities and flattening nested compositions.

    Flattening makes composition associative by construction; an identity of the right size
    is a neutral element.
    """
    flat: list[IndexMapLike] = []
    for index_map in maps:
        parts = index_map.maps if isinstance(index_map, Compose) else (index_map,)
        for part in parts:
            if flat and flat[-1].dst_size != part.src_size:
                raise IndexMapError(
                    f"cannot compose {type(flat[-1]).__name__} (dst size {flat[-1].dst_size}) with "
                    f"{type(part).__name__} (src size {part.src_size})"
                )
            flat.append(part)
    if not flat:
        raise IndexMapError("compose() needs at least one map")
    kept = [m for m in flat if not isinstance(m, Identity)]
    if not kept:
        return flat[0]
    if len(kept) == 1:
        return kept[0]
    return Compose(tuple(kept))
