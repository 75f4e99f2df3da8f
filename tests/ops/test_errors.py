"""Bad input gets a typed error whose message names the value, the dim and the index."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from prune_graph import DimRef, Graph, ValueId
from prune_ops import (
    InvalidIndicesError,
    PlanMismatchError,
    PruningError,
    UnprunableError,
    as_index_array,
    check_indices,
    complement,
    find_groups,
    make_plan,
    propagate,
    removal_of,
)

from .nets import Net, axis_id, group_with, rebuild


def chain() -> Graph:
    net = Net()
    x = net.input((1, 3, 4, 4))
    h = net.conv(x, 8, module="conv1")
    return net.build([net.conv(h, 2, module="conv2")])


def at(value: str, dim: int) -> DimRef:
    return DimRef(ValueId(value), dim)


def test_error_types_form_one_family() -> None:
    for error in (InvalidIndicesError, UnprunableError, PlanMismatchError):
        assert issubclass(error, PruningError)
    assert issubclass(PruningError, ValueError)


@pytest.mark.parametrize(
    ("indices", "message"),
    [
        ([8], r"conv1\.weight\[0\]: index 8 is out of range for size 8"),
        ([0, 100, 9], r"conv1\.weight\[0\]: index 100 is out of range for size 8"),
        ([-1], r"conv1\.weight\[0\]: index -1 is negative \(size 8\)"),
        ([2, 3, 2], r"conv1\.weight\[0\]: index 2 appears 2 times"),
        ([], r"conv1\.weight\[0\]: no indices given"),
        (range(8), r"conv1\.weight\[0\]: removing all 8 channels would leave none"),
        ([1.0], r"indices must be ints \(got 1.0 of type float\)"),
        ([1, True], r"indices must be ints \(got True of type bool\)"),
        (["1"], r"indices must be ints \(got '1' of type str\)"),
        (np.array([True, False]), r"indices must be a 1-D sequence of ints \(got dtype bool"),
        (np.array([[1, 2]]), r"got dtype int64, shape \(1, 2\)"),
    ],
)
def test_propagate_refuses_bad_indices(indices, message: str) -> None:
    with pytest.raises(InvalidIndicesError, match=message):
        propagate(chain(), at("conv1.weight", 0), indices)


def test_propagate_accepts_any_integer_sequence() -> None:
    graph = chain()
    expected = propagate(graph, at("conv1.weight", 0), [1, 3]).of(at("conv2.weight", 1)).tolist()
    for indices in ([3, 1], (1, 3), np.array([3, 1], dtype=np.int32), range(1, 4, 2), np.array([1, 3], dtype=np.uint8)):
        assert propagate(graph, at("conv1.weight", 0), indices).of(at("conv2.weight", 1)).tolist() == expected == [1, 3]


def test_removal_of_refuses_bad_units_naming_the_group() -> None:
    graph = chain()
    group = group_with(find_groups(graph), "conv1.weight", 0)
    with pytest.raises(InvalidIndicesError, match=rf"group {group.id} \(conv1\.weight\[0\]\): index 8 is out of range"):
        removal_of(graph, [(group, [8])])
    with pytest.raises(InvalidIndicesError, match=r"removing all 8 channels"):
        removal_of(graph, [(group, np.arange(8))])
    # an empty choice removes nothing
    assert len(removal_of(graph, [(group, [])])) == 0


def test_a_removal_that_empties_a_member_names_that_member() -> None:
    net = Net()
    x = net.input((1, 3, 4, 4))
    a = net.conv(x, 2, module="a")
    b = net.conv(x, 2, module="b")
    h = net.conv(net.concat([a, b]), 4, groups=2, module="g")  # each half of the concat is one conv group
    graph = net.build([net.conv(h, 2, module="head")])
    group = group_with(find_groups(graph), axis_id(graph, "g.groups"), 0)
    # one whole group of the grouped conv is all of a's channels
    with pytest.raises(InvalidIndicesError, match=r"a\.weight\[0\]: removing all 2 channels would leave none"):
        removal_of(graph, [(group, [0])])


def test_pruning_an_unprunable_dim_names_the_reason() -> None:
    graph = chain()
    with pytest.raises(UnprunableError, match=r"cannot be pruned: dim 1 of model output 0"):
        propagate(graph, at("conv2.weight", 0), [0])
    with pytest.raises(UnprunableError, match=r"sets this dim's size itself"):
        propagate(graph, at("conv2.weight", 2), [0])


def test_a_dim_nothing_couples_is_unprunable() -> None:
    net = Net()
    x = net.input((1, 3, 4, 4))
    net.param("spare", "weight", (5, 2))  # a parameter no op reads
    graph = net.build([net.conv(x, 2, module="conv")])
    with pytest.raises(UnprunableError, match=r"spare\.weight\[0\] is not coupled to any prunable channels"):
        propagate(graph, at("spare.weight", 0), [1])


def test_composing_a_plan_with_a_plan_for_another_graph() -> None:
    graph = chain()
    first = make_plan(graph, propagate(graph, at("conv1.weight", 0), [0]))
    unrelated = make_plan(graph, propagate(graph, at("conv1.weight", 0), [1]))
    with pytest.raises(PlanMismatchError, match=rf"made for graph {graph.fingerprint()}, but the first plan leads to"):
        first.then(unrelated)
    pruned = rebuild(graph, first.new_shapes())
    assert first.then(make_plan(pruned, propagate(pruned, at("conv1.weight", 0), [0]))).entries[0].removed == (0, 1)


# -- the index helpers -------------------------------------------------------------------------


def test_check_indices_sorts_and_allows_what_it_is_told() -> None:
    assert check_indices([3, 1], 4, "w[0]").tolist() == [1, 3]
    assert check_indices([], 4, "w[0]", allow_empty=True).tolist() == []
    assert check_indices(range(4), 4, "w[0]", allow_all=True).tolist() == [0, 1, 2, 3]
    assert as_index_array([]).dtype == np.int64


@given(size=st.integers(1, 60), data=st.data())
def test_check_indices_and_complement_partition_the_dim(size: int, data: st.DataObject) -> None:
    chosen = data.draw(st.lists(st.integers(0, size - 1), unique=True, max_size=size - 1))
    removed = check_indices(chosen, size, "v[1]", allow_empty=True)
    kept = complement(removed, size)
    assert removed.tolist() == sorted(chosen)
    assert kept.dtype == removed.dtype == np.int64
    assert sorted([*removed.tolist(), *kept.tolist()]) == list(range(size))
    assert not set(removed.tolist()) & set(kept.tolist())
    assert (np.diff(kept) > 0).all()


@given(size=st.integers(1, 30), data=st.data())
def test_check_indices_names_the_first_bad_index(size: int, data: st.DataObject) -> None:
    good = data.draw(st.lists(st.integers(0, size - 1), unique=True, max_size=size - 1))
    bad = data.draw(st.one_of(st.integers(size, size + 50), st.integers(-50, -1)))
    with pytest.raises(InvalidIndicesError, match=rf"value\[2\]: index {bad} "):
        check_indices([*good, bad], size, "value[2]")
