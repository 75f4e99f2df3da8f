"""The pieces of the group search, each against a plain reference."""

from __future__ import annotations

import attrs
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.graph.test_rule_memo import repeated_layers

from prune_graph import DimRef, Graph, GraphError, RepeatedCouplings, Value, ValueId, ValueKind, from_json, to_json
from prune_ops import GroupSet, find_groups
from prune_ops._classes import DimSlots, UnionFind
from prune_ops._grouping import _atoms_by_support, _sorted_unique
from prune_ops._groups import Member
from prune_ops._members import _new_members


def reference_supports(atom: list[int], owner: list[int]) -> list[tuple[tuple[int, ...], list[int]]]:
    """Atoms grouped by the sorted set of places that hold them, in the order of their smallest atoms."""
    holders: dict[int, set[int]] = {}
    for a, o in zip(atom, owner):
        holders.setdefault(a, set()).add(o)
    grouped: dict[tuple[int, ...], list[int]] = {}
    for a in sorted(holders):
        grouped.setdefault(tuple(sorted(holders[a])), []).append(a)
    return list(grouped.items())


@st.composite
def atoms_and_owners(draw: st.DrawFn) -> tuple[list[int], list[int], int]:
    sizes = draw(st.lists(st.integers(1, 6), min_size=1, max_size=8))
    owner = [place for place, size in enumerate(sizes) for _ in range(size)]
    atom = draw(st.lists(st.integers(0, len(owner) - 1), min_size=len(owner), max_size=len(owner)))
    return atom, owner, len(sizes)


@given(atoms_and_owners())
def test_atoms_by_support_matches_a_plain_grouping(case: tuple[list[int], list[int], int]) -> None:
    atom, owner, count = case
    found = _atoms_by_support(np.array(atom, dtype=np.int64), np.array(owner, dtype=np.int64), count)
    assert [(support, roots.tolist()) for support, roots in found] == reference_supports(atom, owner)


def test_atoms_by_support_of_nothing() -> None:
    assert _atoms_by_support(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), 0) == []


@given(st.lists(st.integers(-5, 40), max_size=30))
def test_sorted_unique_is_numpy_unique(keys: list[int]) -> None:
    array = np.array(keys, dtype=np.int64)
    assert _sorted_unique(array).tolist() == np.unique(array).tolist()


def small_graph() -> Graph:
    values = (
        Value(ValueId("x"), (2, 3), "float32", ValueKind.INPUT),
        Value(ValueId("w"), (4,), "float32", ValueKind.PARAMETER, "m", "weight"),
    )
    return Graph(values=values, ops=(), inputs=("x",), outputs=())


def test_slots_run_in_value_order_then_dim() -> None:
    slots = DimSlots(small_graph())
    assert [slots.slot(DimRef(ValueId(v), d)) for v, d in (("x", 0), ("x", 1), ("w", 0))] == [0, 1, 2]
    assert slots.size == [2, 3, 4]
    assert slots.ref(1) == DimRef(ValueId("x"), 1)


@pytest.mark.parametrize("dim", [DimRef(ValueId("x"), 2), DimRef(ValueId("ghost"), 0)])
def test_a_dim_the_graph_lacks_is_an_error(dim: DimRef) -> None:
    with pytest.raises(GraphError, match="no dim"):
        DimSlots(small_graph()).slot(dim)


def test_union_find_lists_dims_in_the_order_first_seen() -> None:
    classes = UnionFind(6)
    classes.union(4, 2)
    classes.union(1, 2)
    classes.find(5)
    classes.union(5, 1)
    # the larger class's root stays the root (the first argument's of two alike): no long chains
    assert classes.roots() == [(4, 4), (2, 4), (1, 4), (5, 4)]
    assert 3 not in classes
    assert 4 in classes
    assert classes.find(2) == classes.find(5)


def test_members_made_in_bulk_equal_members_made_by_init() -> None:
    graph = small_graph()
    dims = [DimRef(ValueId("x"), 1), DimRef(ValueId("w"), 0)]
    values = [graph.value("x"), graph.value("w")]
    arrays = [np.array([0, -1, 1]), np.arange(4)]
    made = _new_members(2, iter(dims), iter(values), iter(arrays))
    expected = tuple(map(Member, dims, values, arrays))
    assert [type(m) for m in made] == [Member, Member]
    assert [(m.dim, m.value, m.units) for m in made] == [(m.dim, m.value, m.units) for m in expected]
    # every field is set: a field added to Member must be added to _new_members too
    assert [f.name for f in attrs.fields(Member)] == ["dim", "value", "units"]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        made[0].dim = dims[1]  # type: ignore[misc]


def test_groups_read_from_repeats_equal_groups_read_from_records() -> None:
    graph = repeated_layers()
    assert any(isinstance(p, RepeatedCouplings) for p in graph.couplings_by_op)
    records = from_json(to_json(graph))
    # the same graph with every op's couplings as records: the search reads no repeat there
    records._memo["by_op"] = tuple(
        p.couplings() if isinstance(p, RepeatedCouplings) else p for p in graph.couplings_by_op
    )
    for options in ({}, {"prune_outputs": True}, {"ignore": ("layer1",)}):
        assert described(find_groups(graph, **options)) == described(find_groups(records, **options))


def described(groups: GroupSet) -> list[object]:
    return [
        (g.id, g.root, g.size, g.kind, g.blockers, g.mixing, [(m.dim, m.value, m.units.tolist()) for m in g.members])
        for g in groups
    ]
