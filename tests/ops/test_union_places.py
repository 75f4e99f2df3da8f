"""UnionFind.union_places joins what union joins, link by link, and sees dims in the same order."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from prune_ops._classes import UnionFind

_STARTS = [0, 3, 5, 9]  # four values of ranks 3, 2, 4 and 3: twelve slots
_RANKS = [3, 2, 4, 3]


def _partition(classes: UnionFind) -> set[frozenset[int]]:
    found: dict[int, set[int]] = {}
    for i in classes.seen:
        found.setdefault(classes.find(i), set()).add(i)
    return {frozenset(members) for members in found.values()}


@st.composite
def _links(draw: st.DrawFn) -> list[tuple[int, int, int, int]]:
    count = draw(st.integers(0, 12))
    out = []
    for _ in range(count):
        i, j = draw(st.integers(0, 3)), draw(st.integers(0, 3))
        out.append((i, draw(st.integers(0, _RANKS[i] - 1)), j, draw(st.integers(0, _RANKS[j] - 1))))
    return out


@given(before=_links(), links=_links())
def test_union_places_is_union_link_by_link(
    before: list[tuple[int, int, int, int]], links: list[tuple[int, int, int, int]]
) -> None:
    one, bulk = UnionFind(12), UnionFind(12)
    for classes in (one, bulk):  # some classes built before, as other ops' couplings make them
        for i, d, j, e in before:
            classes.union(_STARTS[i] + d, _STARTS[j] + e)
    for i, d, j, e in links:
        one.union(_STARTS[i] + d, _STARTS[j] + e)
    bulk.union_places(links, _STARTS)
    assert bulk.seen == one.seen
    assert _partition(bulk) == _partition(one)
    assert bulk.flat() == one.flat()  # the same roots, too
