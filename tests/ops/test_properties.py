"""Properties of groups, propagation, selection and plans over random CNN-like graphs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import assume, given, note
from hypothesis import strategies as st

from prune_graph import DimRef, Graph, ValueKind
from prune_ops import (
    PLAN_SCHEMA,
    Group,
    GroupSet,
    InvalidIndicesError,
    Plan,
    UnprunableError,
    find_groups,
    make_plan,
    propagate,
    removal_of,
)

from .nets import coupled_sizes_problems, rebuild, removal_dict, summary, surviving
from .strategies import SIMPLE_BLOCKS, cnn_graphs, unit_sets


def _is_sorted_unique_in_range(indices: np.ndarray, size: int) -> bool:
    return bool(
        indices.dtype == np.int64
        and indices.ndim == 1
        and (np.diff(indices) > 0).all()
        and (indices.size == 0 or (indices[0] >= 0 and indices[-1] < size))
    )


def _empties(graph: Graph, removal: dict[DimRef, np.ndarray]) -> list[DimRef]:
    return [dim for dim, idx in removal.items() if idx.size >= graph.dim_size(dim)]


@st.composite
def graph_group_units(draw: st.DrawFn):
    """A graph, its groups, one prunable group and a valid (non-emptying) unit set of it."""
    graph = draw(cnn_graphs())
    note(summary(graph))
    groups = find_groups(graph)
    prunable = groups.prunable
    assume(prunable)
    group = draw(st.sampled_from(prunable))
    units = draw(unit_sets(group))
    assume(not _empties(graph, group.removal(units)))
    return graph, groups, group, units


# -- groups ------------------------------------------------------------------------------


@given(cnn_graphs())
def test_groups_are_well_formed(graph: Graph) -> None:
    note(summary(graph))
    groups = find_groups(graph)
    seen: set[DimRef] = set()
    for group in groups:
        assert group.size >= 1
        assert group.root_member.dim == group.root
        labels = set()
        for m in group.members:
            assert m.units.shape == (graph.dim_size(m.dim),), m.label
            assert m.units.min() >= -1, m.label
            assert m.units.max() < group.size, m.label
            assert m.value == graph.value(m.dim.value)
            labels.update(m.units[m.units >= 0].tolist())
            seen.add(m.dim)
        # every unit of a group lives in some member, and units are numbered without gaps
        assert labels == set(range(group.size)), group.describe()
        assert len({m.dim for m in group.members}) == len(group.members)
        assert group.prunable == (not group.blockers and group.size > 1)
    # every parameter dim with more than one channel belongs to a group
    for value in graph.values:
        if value.kind in (ValueKind.PARAMETER, ValueKind.BUFFER):
            for d, size in enumerate(value.shape):
                if size > 1:
                    assert DimRef(value.id, d) in seen, f"{value.path}[{d}] is in no group"


@given(cnn_graphs())
def test_every_index_of_a_member_dim_belongs_to_some_group(graph: Graph) -> None:
    note(summary(graph))
    groups = find_groups(graph)
    by_dim: dict[DimRef, np.ndarray] = {}
    for group in groups:
        for m in group.members:
            owned = by_dim.setdefault(m.dim, np.zeros(m.units.size, dtype=np.int64))
            owned += m.units >= 0
    for dim, owners in by_dim.items():
        # a dim that a factor splits (heads x head dims, a grouped conv) has each index in several groups
        assert (owners >= 1).all(), f"{dim}: indices {np.flatnonzero(owners == 0).tolist()} belong to no group"


# -- propagation ---------------------------------------------------------------------------


@given(graph_group_units())
def test_member_indices_are_sorted_unique_in_range(case) -> None:
    graph, _, group, units = case
    for m in group.members:
        idx = m.indices(units)
        assert _is_sorted_unique_in_range(idx, graph.dim_size(m.dim)), m.label
        assert set(m.units[idx].tolist()) <= set(units.tolist())
        # every index of the chosen units is included, none of the others
        assert set(idx.tolist()) == {i for i, u in enumerate(m.units.tolist()) if u in set(units.tolist())}


def _touched(group: Group, dim: DimRef, units: np.ndarray) -> np.ndarray:
    """The chosen units that have indices in ``dim`` (a member may see only some of a group's units)."""
    m = next(m for m in group.members if m.dim == dim)
    return np.intersect1d(units, m.units[m.units >= 0])


@given(graph_group_units())
def test_propagation_is_closed_and_idempotent(case) -> None:
    graph, groups, group, units = case
    removal = group.removal(units)
    assert removal_dict(removal_of(graph, [(group, units)]).indices) == removal_dict(removal)
    for dim, idx in removal.items():
        assert idx.size > 0
        assert _is_sorted_unique_in_range(idx, graph.dim_size(dim)), dim
        if not graph.value(dim.value).is_state:
            continue
        touched = _touched(group, dim, units)
        expected = removal_dict(group.removal(touched))
        again = propagate(graph, dim, idx, groups)
        assert removal_dict(again.indices) == expected, f"propagating {dim} {idx.tolist()}"
        twice = propagate(graph, dim, again.of(dim), groups)
        assert removal_dict(twice.indices) == expected
        # the Removal remembers which units of which group went
        assert [(g.id, u.tolist()) for g, u in again.units] == [(group.id, touched.tolist())]
        if touched.size == units.size:
            assert removal_dict(again.indices) == removal_dict(removal)


@given(graph_group_units())
def test_propagation_from_any_member_removes_exactly_what_was_asked_there(case) -> None:
    # On activations two units of different groups can look the same: a 1-channel piece of a
    # split is not linked through a following activation (a size-1 dim may be a broadcast), so a
    # unit may reach a dim only in part. Propagation then picks one reading; whatever it picks
    # removes exactly the requested indices of that dim, or says why it cannot.
    graph, groups, group, units = case
    for dim, idx in group.removal(units).items():
        try:
            again = propagate(graph, dim, idx, groups)
        except (InvalidIndicesError, UnprunableError):
            assert not graph.value(dim.value).is_state, dim
            continue
        assert again.of(dim).tolist() == idx.tolist(), dim
        for other, removed in again.indices.items():
            assert _is_sorted_unique_in_range(removed, graph.dim_size(other))
            assert removed.size < graph.dim_size(other)


@given(graph_group_units())
def test_propagating_from_a_whole_member_recovers_the_removal(case) -> None:
    graph, _, group, units = case
    removal = group.removal(units)
    # a parameter dim that carries every chosen unit sees the whole choice: propagation gives it back
    whole = [m for m in group.parameters if np.isin(units, m.units).all()]
    assume(whole)
    dim = whole[0].dim
    assert removal_dict(propagate(graph, dim, removal[dim]).indices) == removal_dict(removal)


@given(cnn_graphs(), st.data())
def test_removal_never_empties_a_dim(graph: Graph, data: st.DataObject) -> None:
    groups = find_groups(graph)
    assume(groups.prunable)
    group = data.draw(st.sampled_from(groups.prunable))
    units = data.draw(unit_sets(group, allow_all=True))
    wanted = group.removal(units)
    emptied = _empties(graph, wanted)
    if emptied or units.size == group.size:
        with pytest.raises(InvalidIndicesError, match="would leave none"):
            removal_of(graph, [(group, units)])
    else:
        removal = removal_of(graph, [(group, units)])
        for dim, idx in removal.indices.items():
            assert idx.size < graph.dim_size(dim)


@given(cnn_graphs(), st.data())
def test_two_groups_combine_by_union(graph: Graph, data: st.DataObject) -> None:
    note(summary(graph))
    groups = find_groups(graph)
    assume(len(groups.prunable) >= 2)
    first, second = data.draw(st.lists(st.sampled_from(groups.prunable), min_size=2, max_size=2, unique_by=id))
    a, b = data.draw(unit_sets(first)), data.draw(unit_sets(second))
    merged: dict[DimRef, set[int]] = {}
    for group, units in ((first, a), (second, b)):
        for dim, idx in group.removal(units).items():
            if merged.get(dim, set()) & set(idx.tolist()):
                # only a dim that two factors split (heads x head dims) has indices in two groups;
                # what stays is the product of what each factor keeps, so removals unite
                assert len(groups.containing(dim)) > 1, f"{dim} is in one group but its removals overlap"
            merged.setdefault(dim, set()).update(idx.tolist())
    if any(len(idx) >= graph.dim_size(dim) for dim, idx in merged.items()):
        with pytest.raises(InvalidIndicesError):
            removal_of(graph, [(first, a), (second, b)])
        return
    removal = removal_of(graph, [(first, a), (second, b)])
    assert removal_dict(removal.indices) == {str(d): sorted(i) for d, i in sorted(merged.items())}


# -- plans -------------------------------------------------------------------------------


def _plan_of(graph: Graph, groups: GroupSet, group: Group, units: np.ndarray) -> Plan:
    return make_plan(graph, removal_of(graph, [(group, units)]))


@given(graph_group_units())
def test_plan_matches_the_removal_and_round_trips_through_json(case) -> None:
    graph, groups, group, units = case
    removal = group.removal(units)
    plan = _plan_of(graph, groups, group, units)
    assert Plan.from_json(plan.to_json()) == plan
    assert Plan.from_json(plan.to_json(indent=2)) == plan
    doc = json.loads(plan.to_json())
    assert doc["schema"] == PLAN_SCHEMA
    assert doc["fingerprint"] == graph.fingerprint()
    state = {
        (graph.value(d.value).owner, graph.value(d.value).name, d.dim): idx.tolist()
        for d, idx in removal.items()
        if graph.value(d.value).is_state
    }
    assert {(e["owner"], e["tensor"], e["axis"]): e["indices"] for e in doc["entries"]} == state
    for e in doc["entries"]:
        assert {"owner", "tensor", "axis", "indices"} <= set(e)
    keys = [e.key for e in plan.entries]
    assert keys == sorted(keys)
    # every changed value, activations included, gets its new shape
    expected = {}
    for d, idx in removal.items():
        shape = expected.setdefault(str(d.value), list(graph.shape(d.value)))
        shape[d.dim] -= idx.size
    assert plan.new_shapes() == {k: tuple(v) for k, v in expected.items()}
    problems = coupled_sizes_problems(graph, plan.new_shapes())
    assert not problems, problems


@given(graph_group_units())
def test_result_fingerprint_is_the_fingerprint_of_the_pruned_graph(case) -> None:
    graph, groups, group, units = case
    plan = _plan_of(graph, groups, group, units)
    pruned = rebuild(graph, plan.new_shapes())
    assert pruned.fingerprint() == plan.result_fingerprint
    assert plan.fingerprint == graph.fingerprint() != plan.result_fingerprint


def _check_composition(graph: Graph, data: st.DataObject) -> None:
    note(summary(graph))
    groups = find_groups(graph)
    assume(groups.prunable)
    group = data.draw(st.sampled_from(groups.prunable))
    units = data.draw(unit_sets(group))
    assume(not _empties(graph, group.removal(units)))
    first = _plan_of(graph, groups, group, units)
    middle = rebuild(graph, first.new_shapes())
    assert middle.fingerprint() == first.result_fingerprint
    later_groups = find_groups(middle)
    assume(later_groups.prunable)
    later = data.draw(st.sampled_from(later_groups.prunable))
    later_units = data.draw(unit_sets(later))
    assume(not _empties(middle, later.removal(later_units)))
    second = _plan_of(middle, later_groups, later, later_units)
    final = rebuild(middle, second.new_shapes())

    both = first.then(second)
    assert both.fingerprint == graph.fingerprint()
    assert both.result_fingerprint == final.fingerprint() == second.result_fingerprint
    for value in graph.values:
        if not value.is_state or not graph.has_value(value.id):
            continue
        for axis, size in enumerate(value.shape):
            a = first.entry(value.owner, value.name, axis)
            b = second.entry(value.owner, value.name, axis)
            left = surviving(size, a.removed if a else (), b.removed if b else ())
            gone = sorted(set(range(size)) - set(left))
            entry = both.entry(value.owner, value.name, axis)
            assert (list(entry.removed) if entry else []) == gone, f"{value.path}[{axis}]"
            if entry is not None:
                assert entry.size == size, f"{value.path}[{axis}]"
                assert entry.shape == value.shape, f"{value.path}[{axis}]"
    for value in graph.values:
        if value.kind is not ValueKind.VIRTUAL:
            assert both.new_shapes().get(value.id, value.shape) == final.shape(value.id), value.id
    assert Plan.from_json(both.to_json()) == both


@given(cnn_graphs(blocks=SIMPLE_BLOCKS), st.data())
def test_composition_law_on_simple_graphs(graph: Graph, data: st.DataObject) -> None:
    _check_composition(graph, data)


@given(cnn_graphs(), st.data())
def test_composition_law_on_all_graphs(graph: Graph, data: st.DataObject) -> None:
    _check_composition(graph, data)
