"""Plans: contents, table, JSON, composition, and the fingerprints that tie them to graphs."""

from __future__ import annotations

import json

import attrs
import numpy as np
import pytest

from prune_graph import DimRef, Graph, ValueId
from prune_ops import PLAN_SCHEMA, Plan, PlanEntry, PlanMismatchError, Removal, find_groups, make_plan, propagate

from .nets import Net, rebuild, surviving


def chain() -> Graph:
    """conv0 (8) -> bn0 -> conv1 (6) -> conv2 (4, output)."""
    net = Net()
    x = net.input((1, 3, 5, 5))
    h = net.bn(net.conv(x, 8, bias=True, module="conv0"), module="bn0")
    h = net.conv(h, 6, module="conv1")
    return net.build([net.conv(h, 4, k=1, module="conv2")])


def plan_for(graph: Graph, value: str, dim: int, indices) -> Plan:
    return make_plan(graph, propagate(graph, DimRef(ValueId(value), dim), indices))


def test_plan_lists_every_state_axis_with_removed_and_kept_indices() -> None:
    graph = chain()
    plan = plan_for(graph, "conv0.weight", 0, [1, 6])
    assert [e.key for e in plan.entries] == [
        ("bn0", "bias", 0),
        ("bn0", "running_mean", 0),
        ("bn0", "running_var", 0),
        ("bn0", "weight", 0),
        ("conv0", "bias", 0),
        ("conv0", "weight", 0),
        ("conv1", "weight", 1),
    ]
    entry = plan.entry("conv1", "weight", 1)
    assert entry is not None
    assert entry.removed == (1, 6)
    assert entry.kept == (0, 2, 3, 4, 5, 7)
    assert (entry.size, entry.size_after, entry.shape, entry.path) == (8, 6, (6, 8, 3, 3), "conv1.weight")
    assert plan.entry("bn0", "running_var", 0).kind == "buffer"
    assert plan.entry("conv1", "weight", 0) is None
    assert plan.state_shapes()["conv1.weight"] == ((6, 8, 3, 3), (6, 6, 3, 3))
    # activations are predicted too
    assert plan.new_shapes()["t0"] == (1, 6, 5, 5)
    # parameters only: conv0 weight 2*27 + bias 2, bn0 weight and bias 2 + 2, conv1 6*2*9
    assert plan.parameters_removed == 54 + 2 + 4 + 108
    assert not plan.is_empty
    assert plan.fingerprint == graph.fingerprint() != plan.result_fingerprint
    assert plan.inputs == (("x", (1, 3, 5, 5), "float32"),)


def test_plan_prints_a_readable_table() -> None:
    text = str(plan_for(chain(), "conv0.weight", 0, [1, 6]))
    lines = text.splitlines()
    assert lines[0].startswith("Plan ")
    assert "7 tensors change, 168 parameters removed" in lines[0]
    assert lines[1].split() == ["owner", "tensor", "axis", "before", "→", "after", "params", "removed"]
    assert any(line.split() == ["conv1", "weight", "1", "8", "→", "6", "108"] for line in lines)
    assert any(line.split() == ["bn0", "running_mean", "0", "8", "→", "6"] for line in lines)


def test_plan_json_round_trips_and_names_owner_tensor_axis_indices() -> None:
    plan = plan_for(chain(), "conv1.weight", 0, [0, 5])
    text = plan.to_json()
    assert Plan.from_json(text) == plan
    assert Plan.from_json(plan.to_json(indent=2)) == plan
    doc = json.loads(text)
    assert doc["schema"] == PLAN_SCHEMA == "prune-plan/2"
    assert doc["entries"] == [
        {
            "owner": "conv1",
            "tensor": "weight",
            "kind": "parameter",
            "axis": 0,
            "size": 6,
            "shape": [6, 8, 3, 3],
            "indices": [0, 5],
        },
        {
            "owner": "conv2",
            "tensor": "weight",
            "kind": "parameter",
            "axis": 1,
            "size": 6,
            "shape": [4, 6, 1, 1],
            "indices": [0, 5],
        },
    ]
    assert doc["shapes"] == {"conv1.weight": [4, 8, 3, 3], "conv2.weight": [4, 4, 1, 1], "t2": [1, 4, 5, 5]}


def test_plans_are_immutable_values() -> None:
    plan = plan_for(chain(), "conv1.weight", 0, [0])
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        plan.fingerprint = "x"  # type: ignore[misc]
    assert plan == plan_for(chain(), "conv1.weight", 0, [0])
    assert plan != plan_for(chain(), "conv1.weight", 0, [1])
    assert isinstance(plan.entries, tuple)
    assert isinstance(plan.entries[0].removed, tuple)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "plan is not JSON"),
        ('["a list"]', r"expected plan schema 'prune-plan/2' \(got 'list'\)"),
        ('{"schema": "prune-plan/0"}', r"expected plan schema 'prune-plan/2' \(got 'prune-plan/0'\)"),
        ('{"entries": []}', r"\(got None\)"),
        (
            '{"schema": "prune-plan/1", "fingerprint": "a", "result_fingerprint": "b", "shapes": {}}',
            "missing or bad field 'entries'",
        ),
        (
            '{"schema": "prune-plan/1", "fingerprint": "a", "result_fingerprint": "b", "shapes": {}, '
            '"entries": [{"module": "m", "param": "w", "axis": 0}]}',
            "malformed prune-plan/2 document",
        ),
    ],
)
def test_from_json_refuses_other_schemas_and_malformed_documents(text: str, message: str) -> None:
    with pytest.raises(PlanMismatchError, match=message):
        Plan.from_json(text)


# -- composition ------------------------------------------------------------------------------


def test_then_composes_two_plans_into_one_on_the_original_indices() -> None:
    graph = chain()
    first = plan_for(graph, "conv0.weight", 0, [1, 6])
    middle = rebuild(graph, first.new_shapes())
    assert middle.fingerprint() == first.result_fingerprint
    second = plan_for(middle, "conv0.weight", 0, [0, 5])  # positions 0 and 5 of the kept [0, 2, 3, 4, 5, 7]
    both = first.then(second)
    entry = both.entry("conv1", "weight", 1)
    assert entry is not None
    assert entry.removed == (0, 1, 6, 7)
    assert entry.shape == (6, 8, 3, 3)
    assert both.fingerprint == graph.fingerprint()
    assert both.result_fingerprint == second.result_fingerprint == rebuild(middle, second.new_shapes()).fingerprint()
    assert both.new_shapes()["conv1.weight"] == (6, 4, 3, 3)
    # one plan straight from the original graph agrees
    direct = plan_for(graph, "conv0.weight", 0, [0, 1, 6, 7])
    assert both.entries == direct.entries
    assert both.result_fingerprint == direct.result_fingerprint


def test_then_keeps_original_shapes_for_axes_only_the_second_plan_touches() -> None:
    graph = chain()
    first = plan_for(graph, "conv0.weight", 0, [0])  # conv1.weight loses input channels
    middle = rebuild(graph, first.new_shapes())
    second = plan_for(middle, "conv1.weight", 0, [2])  # and then an output channel
    both = first.then(second)
    entry = both.entry("conv1", "weight", 0)
    assert entry is not None
    assert (entry.removed, entry.size, entry.shape) == ((2,), 6, (6, 8, 3, 3))
    assert both.state_shapes()["conv1.weight"] == ((6, 8, 3, 3), (5, 7, 3, 3))
    assert surviving(6, (), entry.removed) == [0, 1, 3, 4, 5]


def test_an_empty_plan_is_neutral() -> None:
    graph = chain()
    empty = make_plan(graph, Removal((), {}))
    assert empty.is_empty
    assert empty.fingerprint == empty.result_fingerprint == graph.fingerprint()
    assert str(empty).startswith(f"Plan {graph.fingerprint()} → {graph.fingerprint()}: 0 tensors change")
    plan = plan_for(graph, "conv1.weight", 0, [3])
    assert empty.then(plan).entries == plan.entries
    assert plan.then(make_plan(rebuild(graph, plan.new_shapes()), Removal((), {}))) == plan


def test_composing_with_a_plan_for_another_graph_is_refused() -> None:
    graph = chain()
    first = plan_for(graph, "conv0.weight", 0, [1])
    with pytest.raises(
        PlanMismatchError, match=f"made for graph {first.fingerprint}.*leads to {first.result_fingerprint}"
    ):
        first.then(first)
    other = plan_for(rebuild(graph, {}), "conv1.weight", 0, [1])  # same graph, not the pruned one
    with pytest.raises(PlanMismatchError, match="cannot compose"):
        first.then(other)


def test_a_grouped_conv_pruned_to_one_group_fingerprints_like_its_retrace() -> None:
    # depthwise over 2 channels: removing one leaves groups=1, and a retrace has no group axes
    net = Net()
    x = net.input((1, 3, 4, 4))
    h = net.conv(x, 2, module="conv0")
    h = net.conv(h, 2, groups=2, module="dw")
    graph = net.build([net.conv(h, 3, module="head")])
    plan = plan_for(graph, "conv0.weight", 0, [1])
    assert plan.entry("dw", "groups", 0) is not None
    pruned = rebuild(graph, plan.new_shapes())
    assert not any(v.name == "groups" for v in pruned.values)
    assert pruned.fingerprint() == plan.result_fingerprint
    # so a plan made on the retraced model composes
    later = find_groups(pruned, prune_outputs=True)
    head = next(g for g in later.prunable if g.root == DimRef(ValueId("head.weight"), 0))
    second = make_plan(pruned, propagate(pruned, head.root, [0], later))
    assert plan.then(second).entry("head", "weight", 0).removed == (0,)


def test_plan_entry_converts_to_plain_ints() -> None:
    entry = PlanEntry("m", "w", "parameter", 0, 4, np.array([4, 2]), np.array([1, 3]))
    assert entry.shape == (4, 2)
    assert entry.removed == (1, 3)
    assert all(type(i) is int for i in (*entry.shape, *entry.removed))
    assert entry.kept == (0, 2)
    assert entry.path == "m.w"
    assert PlanEntry("", "w", "parameter", 0, 4, (4,), ()).path == "w"


def test_a_plan_written_with_the_first_schema_still_reads() -> None:
    """Plans saved before owners and tensors were named so (``module`` / ``param``) load unchanged."""
    plan = plan_for(chain(), "conv1.weight", 0, [0, 5])
    doc = json.loads(plan.to_json())
    old = {
        **doc,
        "schema": "prune-plan/1",
        "entries": [
            {"module": e.pop("owner"), "param": e.pop("tensor"), **e} for e in [dict(x) for x in doc["entries"]]
        ],
    }
    assert Plan.from_json(json.dumps(old)) == plan
