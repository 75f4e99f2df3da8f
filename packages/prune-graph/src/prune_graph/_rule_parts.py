"""The couplings rules build from: a plain link between two dims, broadcasting, a factored dim."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

from prune_graph._couplings import Coupling, FactorLink, Link
from prune_graph._index_maps import Identity
from prune_graph._ops import Op
from prune_graph._quick import quick_link, quick_ref, quick_refs
from prune_graph._values import DimRef, ValueId

__all__ = ["ShapeOf", "dim_ref", "dim_refs"]

ShapeOf = Callable[[ValueId], tuple[int, ...]]


@functools.lru_cache(maxsize=4096)
def _identity(size: int) -> Identity:
    """One shared map per size (frozen, compared by value): a graph links thousands of dims."""
    return Identity(size)


# one shared record per dim (frozen, compared by value): a graph names most dims in several
# couplings, and a model traced again names them the same way
_ref = functools.lru_cache(maxsize=1 << 14)(quick_ref)


def dim_ref(value: ValueId, dim: int) -> DimRef:
    """``DimRef(value, dim)``, shared: the record the coupling rules use for that dim.

    >>> dim_ref(ValueId("x"), 1) == DimRef(ValueId("x"), 1)
    True
    """
    return _ref(value, dim)


def dim_refs(values: Sequence[ValueId], dims: Sequence[int]) -> list[DimRef]:
    """``DimRef(value, dim)`` for each pair, made in bulk (equal records, not shared ones).

    >>> dim_refs([ValueId("x"), ValueId("y")], [1, 0]) == [DimRef(ValueId("x"), 1), DimRef(ValueId("y"), 0)]
    True
    """
    return quick_refs(values, dims)


def _link(op: Op, a: ValueId, da: int, b: ValueId, db: int, size: int) -> Link:
    return quick_link(_ref(a, da), _ref(b, db), _identity(size), op.id)


def _link_same(op: Op, shape: ShapeOf, a: ValueId, da: int, b: ValueId, db: int) -> list[Coupling]:
    """Identity link when both dims have the same size > 1 (broadcast dims stay apart)."""
    sa, sb = shape(a)[da], shape(b)[db]
    if sa == sb and sa > 1:
        return [_link(op, a, da, b, db, sa)]
    return []


def _broadcast(op: Op, shape: ShapeOf, values: Sequence[ValueId], out: ValueId) -> list[Coupling]:
    """Couple every value's dims, aligned from the right, to the output's."""
    result: list[Coupling] = []
    rank = len(shape(out))
    for value in values:
        vrank = len(shape(value))
        for k in range(1, min(vrank, rank) + 1):
            result += _link_same(op, shape, value, vrank - k, out, rank - k)
    return result


def _factor(op: Op, fine: DimRef, parts: Sequence[DimRef | None], sizes: Sequence[int]) -> list[Coupling]:
    """A factor link with size-1 parts dropped; one part left is an identity link."""
    kept = [(p, s) for p, s in zip(parts, sizes) if s != 1]
    if not kept:
        return []
    if len(kept) == 1:
        part, size = kept[0]
        return [] if part is None else [quick_link(part, fine, _identity(size), op.id)]
    return [FactorLink(fine, tuple(p for p, _ in kept), tuple(s for _, s in kept), op.id)]
