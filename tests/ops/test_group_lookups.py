"""A group's vectorised lookups (removal, whole parameter dims) agree with the per-member reference."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from prune_graph import DimRef, Value, ValueId, ValueKind
from prune_ops import Group, Member, removal_of
from prune_ops._plan import _ints


@st.composite
def groups(draw: st.DrawFn) -> Group:
    """A group of random size whose members map their indices to units or to -1 (another group's)."""
    size = draw(st.integers(min_value=1, max_value=6))
    members = []
    for i in range(draw(st.integers(min_value=0, max_value=6))):
        length = draw(st.integers(min_value=0, max_value=9))
        units = draw(st.lists(st.integers(min_value=-1, max_value=size - 1), min_size=length, max_size=length))
        kind = draw(st.sampled_from([ValueKind.PARAMETER, ValueKind.BUFFER, ValueKind.ACTIVATION]))
        value = Value(ValueId(f"v{i}"), (max(length, 1),), "float32", kind, f"m{i}", "weight")
        members.append(Member(DimRef(value.id, 0), value, np.asarray(units, dtype=np.int64)))
    root = members[0].dim if members else DimRef(ValueId("v0"), 0)
    return Group(0, root, size, tuple(members))


@given(group=groups(), data=st.data())
def test_removal_is_each_members_indices_of_the_units(group: Group, data: st.DataObject) -> None:
    units = np.asarray(
        data.draw(st.lists(st.integers(min_value=0, max_value=group.size - 1), unique=True)), dtype=np.int64
    )
    expected = {m.dim: m.indices(units) for m in group.members if m.indices(units).size}
    got = group.removal(units)
    assert list(got) == list(expected)
    for dim, indices in got.items():
        assert indices.dtype == np.int64
        assert indices.tolist() == expected[dim].tolist()
    # asked twice, the memoised lookup answers the same
    assert {d: i.tolist() for d, i in group.removal(units).items()} == {d: i.tolist() for d, i in got.items()}


@given(group=groups())
def test_whole_parameters_are_the_parameter_dims_without_another_groups_index(group: Group) -> None:
    expected = [m.dim for m in group.parameters if m.units.size and bool((m.units >= 0).all())]
    assert list(group.whole_parameters) == expected


@given(st.lists(st.lists(st.integers(min_value=0, max_value=30), max_size=8), max_size=4))
def test_removal_of_merges_the_groups_indices_of_a_shared_dim(picks: list[list[int]]) -> None:
    """Groups reaching one dim (a concat's output) lose the union of their indices there."""
    value = Value(ValueId("cat"), (31,), "float32", ValueKind.ACTIVATION)
    dim = DimRef(value.id, 0)
    chosen = []
    for i, pick in enumerate(picks):
        units = np.arange(31, dtype=np.int64)  # each group: one unit per index of the shared dim
        chosen.append((Group(i, dim, 31, (Member(dim, value, units),)), np.unique(np.asarray(pick, dtype=np.int64))))

    class OneValue:
        def dim_size(self, _dim: DimRef) -> int:
            return 31

        def value(self, _id: str) -> Value:
            return value

    union = sorted({i for pick in picks for i in pick})
    if len(union) >= 31:
        return
    removal = removal_of(OneValue(), chosen)  # type: ignore[arg-type]
    assert removal.of(dim).tolist() == union


def test_plan_entry_ints_from_arrays_lists_and_floats() -> None:
    assert _ints(np.array([3, 1], dtype=np.int64)) == (3, 1)
    assert all(type(i) is int for i in _ints(np.array([3, 1], dtype=np.int32)))
    assert _ints([2.0, np.int64(5)]) == (2, 5)
    assert _ints(np.array([1.0, 4.0])) == (1, 4)
