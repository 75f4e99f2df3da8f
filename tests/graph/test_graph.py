"""Graph queries, validation, JSON and DOT forms, fingerprints."""

from __future__ import annotations

import json
import re

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from prune_graph import (
    SCHEMA,
    DimRef,
    FactorLink,
    Graph,
    GraphBuilder,
    GraphError,
    Op,
    OpId,
    OpKind,
    Pin,
    SchemaError,
    Value,
    ValueId,
    ValueKind,
    from_json,
    problems,
    to_dot,
    to_json,
    validate,
)

from .strategies import graphs

F32 = "float32"


def residual_block() -> Graph:
    """x -> conv -> relu -> (+ x) -> concat(relu, sum); every op in execution order."""
    b = GraphBuilder()
    x = b.value("x", (1, 4, 8, 8), F32, ValueKind.INPUT)
    w = b.value("conv.weight", (4, 4, 3, 3), F32, ValueKind.PARAMETER, "conv", "weight")
    a = b.value("a", (1, 4, 8, 8), F32, ValueKind.ACTIVATION)
    r = b.value("r", (1, 4, 8, 8), F32, ValueKind.ACTIVATION)
    s = b.value("s", (1, 4, 8, 8), F32, ValueKind.ACTIVATION)
    y = b.value("y", (1, 8, 8, 8), F32, ValueKind.ACTIVATION)
    b.op(OpKind.CONV, "aten.conv2d", [x, w], [a], "conv", {"groups": 1, "padding": (1, 1)})
    b.op(OpKind.ELEMENTWISE, "aten.relu", [a], [r], "act")
    b.op(OpKind.ELEMENTWISE, "aten.add", [x, r], [s])
    b.op(OpKind.CONCAT, "aten.cat", [r, s], [y], attrs={"dim": 1})
    return b.build([x], [y])


def ids(ops) -> list[str]:
    return [op.id for op in ops]


def with_ops(graph: Graph, ops) -> Graph:
    return attrs.evolve(graph, ops=tuple(ops))


def with_values(graph: Graph, values) -> Graph:
    return attrs.evolve(graph, values=tuple(values))


# -- queries ---------------------------------------------------------------------------------


def test_producers_and_consumers_of_a_hand_built_graph():
    graph = residual_block()
    assert graph.producer("a").id == "op0"
    assert graph.producer("y").id == "op3"
    assert graph.producer("x") is None
    assert graph.producer("conv.weight") is None
    assert ids(graph.consumers("x")) == ["op0", "op2"]
    assert ids(graph.consumers("r")) == ["op2", "op3"]
    assert ids(graph.consumers("conv.weight")) == ["op0"]
    assert graph.consumers("y") == ()
    assert ids(graph.topological_order()) == ["op0", "op1", "op2", "op3"]


def test_lookups_name_what_is_missing():
    graph = residual_block()
    assert graph.value("a").shape == (1, 4, 8, 8)
    assert graph.op("op2").target == "aten.add"
    assert graph.has_value("a")
    assert not graph.has_value("ghost")
    with pytest.raises(GraphError, match=r"no value 'ghost' in the graph"):
        graph.value("ghost")
    with pytest.raises(GraphError, match=r"no op 'op9' in the graph"):
        graph.op("op9")
    assert graph.dim_size(DimRef(ValueId("y"), 1)) == 8
    with pytest.raises(GraphError, match=r"value 'y' has rank 4; dim 4 does not exist"):
        graph.dim_size(DimRef(ValueId("y"), 4))


def test_virtual_axes_are_consumed_by_their_op():
    b = GraphBuilder()
    x = b.value("x", (1, 4, 5, 5), F32, ValueKind.INPUT)
    w = b.value("dw.weight", (4, 1, 3, 3), F32, ValueKind.PARAMETER, "dw", "weight")
    y = b.value("y", (1, 4, 5, 5), F32, ValueKind.ACTIVATION)
    op = b.op(OpKind.CONV, "aten.conv2d", [x, w], [y], "dw", {"groups": 4})
    graph = b.build([x], [y])
    for axis in op.axes:
        assert graph.consumers(axis) == (op,)
        assert graph.producer(axis) is None


def test_topological_order_repairs_ops_listed_out_of_order():
    graph = residual_block()
    shuffled = with_ops(graph, [graph.ops[i] for i in (3, 1, 2, 0)])
    order = ids(shuffled.topological_order())
    assert order.index("op0") < order.index("op1") < order.index("op2") < order.index("op3")


@given(graphs().flatmap(lambda g: st.tuples(st.just(g), st.permutations(g.ops))))
def test_topological_order_puts_every_op_after_its_producers(case):
    graph, permuted = case
    shuffled = with_ops(graph, permuted)
    order = shuffled.topological_order()
    assert sorted(ids(order)) == sorted(ids(graph.ops))
    position = {op.id: i for i, op in enumerate(order)}
    for op in order:
        for value_id in op.inputs:
            producer = shuffled.producer(value_id)
            if producer is not None:
                assert position[producer.id] < position[op.id]


@given(graphs())
def test_producers_and_consumers_agree_with_the_ops(graph):
    for value in graph.values:
        writers = [op for op in graph.ops if value.id in op.outputs]
        readers = [op for op in graph.ops if value.id in op.inputs or value.id in op.axes]
        assert graph.producer(value.id) == (writers[0] if writers else None)
        assert graph.consumers(value.id) == tuple(readers)
        if value.kind is ValueKind.ACTIVATION:
            assert len(writers) == 1


def _cycle() -> Graph:
    values = [Value(ValueId(v), (2, 3), F32, ValueKind.ACTIVATION) for v in ("a", "b", "c")]
    ops = [
        Op(OpId("op0"), OpKind.ELEMENTWISE, "aten.relu", ("c",), ("a",), "block.act"),
        Op(OpId("op1"), OpKind.ELEMENTWISE, "aten.neg", ("a",), ("b",), "block.neg"),
        Op(OpId("op2"), OpKind.ELEMENTWISE, "aten.exp", ("b",), ("c",), "block.exp"),
    ]
    return Graph(values, ops, (), ("c",))


def test_a_cycle_raises_naming_an_op():
    with pytest.raises(GraphError, match=r"the graph has a cycle through op op\d aten\.\w+ in block\.\w+"):
        _cycle().topological_order()
    (message,) = problems(_cycle())
    assert message.startswith("the graph has a cycle through op op")


def test_an_op_reading_its_own_output_is_a_cycle():
    values = [Value(ValueId("x"), (2,), F32, ValueKind.INPUT), Value(ValueId("y"), (2,), F32, ValueKind.ACTIVATION)]
    op = Op(OpId("op0"), OpKind.ELEMENTWISE, "aten.add", ("x", "y"), ("y",), "acc")
    graph = Graph(values, [op], ("x",), ("y",))
    with pytest.raises(GraphError, match=r"cycle through op op0 aten.add in acc"):
        graph.topological_order()
    assert problems(graph) == ("the graph has a cycle through op op0 aten.add in acc",)


def test_coupled_and_boundary_pins():
    graph = residual_block()
    channels = DimRef(ValueId("r"), 1)
    touching = graph.coupled(channels)
    assert touching
    assert all(
        channels in (getattr(c, "src", None), getattr(c, "dst", None), getattr(c, "dim", None)) for c in touching
    )
    assert {c.op for c in touching} == {"op1", "op2", "op3"}
    assert graph.coupled(DimRef(ValueId("ghost"), 0)) == ()
    pinned = {str(p.dim): p.reason for p in graph.boundary_pins()}
    assert pinned["x[1]"] == "dim 1 of model input 'x'"
    assert pinned["y[1]"].startswith("dim 1 of model output 0")
    assert "x[0]" not in pinned  # size 1


# -- JSON ------------------------------------------------------------------------------------


@given(graphs(), st.sampled_from([None, 2]))
def test_json_round_trip_gives_an_equal_graph(graph, indent):
    text = to_json(graph, indent=indent)
    back = from_json(text)
    assert back == graph
    assert to_json(back, indent=indent) == text
    assert back.couplings == graph.couplings
    assert back.fingerprint() == graph.fingerprint()


def test_json_keeps_attribute_types():
    b = GraphBuilder()
    x = b.value("x", (2, 3), F32, ValueKind.INPUT)
    y = b.value("y", (2, 3), F32, ValueKind.ACTIVATION)
    weird = {"none": None, "flag": False, "eps": 1e-5, "mode": "nearest", "nested": ((1, 2), (), ("a", None)), "n": -3}
    b.op(OpKind.OPAQUE, "aten.custom", [x], [y], 'odd "module" {name}\\', weird)
    graph = b.build([x], [y])
    back = from_json(to_json(graph))
    assert back == graph
    assert back.ops[0].attr("nested") == ((1, 2), (), ("a", None))
    assert back.ops[0].attr("flag") is False
    doc = json.loads(to_json(graph))
    assert doc["schema"] == SCHEMA == "prune-graph/2"


def _doc() -> dict:
    return json.loads(to_json(residual_block()))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (json.dumps({**_doc(), "schema": "prune-graph/9"}), r"expected schema 'prune-graph/2' \(got 'prune-graph/9'\)"),
        (
            json.dumps({k: v for k, v in _doc().items() if k != "schema"}),
            r"expected schema 'prune-graph/2' \(got None\)",
        ),
        ("[1, 2]", r"expected schema 'prune-graph/2' \(got 'list'\)"),
        ("{not json", r"not JSON"),
        (json.dumps({k: v for k, v in _doc().items() if k != "ops"}), r"missing or bad field 'ops'"),
        (json.dumps({**_doc(), "values": [{"id": "x"}]}), r"missing or bad field 'shape'"),
        (json.dumps({**_doc(), "ops": [{**_doc()["ops"][0], "attrs": [["dim", 1]]}]}), r"malformed prune-graph/2"),
        (json.dumps({**_doc(), "ops": [{**_doc()["ops"][0], "kind": "convolution"}]}), r"'convolution' is not a valid"),
        (json.dumps({**_doc(), "values": [{**_doc()["values"][0], "kind": "tensor"}]}), r"'tensor' is not a valid"),
    ],
)
def test_a_wrong_or_malformed_document_raises_schema_error(text, message):
    with pytest.raises(SchemaError, match=message):
        from_json(text)


def test_a_document_with_invalid_records_names_the_record_problem():
    # a record the constructors refuse surfaces as their GraphError, not as a SchemaError
    doc = _doc()
    doc["values"][0]["shape"] = [1, -4]
    with pytest.raises(GraphError, match=r"'shape' must hold non-negative ints"):
        from_json(json.dumps(doc))
    doc = _doc()
    doc["values"].append(doc["values"][0])
    with pytest.raises(GraphError, match=r"duplicate value id 'x'"):
        from_json(json.dumps(doc))


# -- validate --------------------------------------------------------------------------------


@given(graphs())
def test_validate_accepts_random_valid_graphs(graph):
    assert problems(graph) == ()
    assert validate(graph) is graph


def test_validate_accepts_the_hand_built_graph():
    graph = residual_block()
    assert validate(graph) is graph


@pytest.mark.parametrize(
    ("role", "message"),
    [
        ("inputs", r"op op1 aten.relu in act: input 'ghost' is not a value of the graph"),
        ("outputs", r"op op1 aten.relu in act: output 'ghost' is not a value of the graph"),
        ("axes", r"op op1 aten.relu in act: axis 'ghost' is not a value of the graph"),
    ],
)
def test_dangling_ids_name_the_op_and_the_id(role, message):
    graph = residual_block()
    relu = graph.op("op1")
    broken = attrs.evolve(relu, **{role: (*getattr(relu, role), "ghost")})
    found = problems(with_ops(graph, [broken if op.id == "op1" else op for op in graph.ops]))
    assert any(re.fullmatch(message, p) for p in found), found
    with pytest.raises(GraphError, match=r"invalid graph \(\d+ problems?\):\n  - "):
        validate(with_ops(graph, [broken if op.id == "op1" else op for op in graph.ops]))


def test_graph_inputs_and_outputs_must_exist():
    graph = attrs.evolve(residual_block(), inputs=("x", "nope"), outputs=("y", "gone"))
    assert problems(graph) == (
        "graph input 'nope' is not a value of the graph",
        "graph output 'gone' is not a value of the graph",
    )


def test_an_activation_with_no_producer_is_reported():
    graph = residual_block()
    orphan = Value(ValueId("orphan"), (1, 4), F32, ValueKind.ACTIVATION)
    assert problems(with_values(graph, [*graph.values, orphan])) == (
        "activation 'orphan' has no producer (expected an op that outputs it)",
    )


def test_a_value_written_twice_is_reported():
    graph = residual_block()
    again = Op(OpId("op9"), OpKind.ELEMENTWISE, "aten.relu", ("a",), ("r",), "again")
    assert problems(with_ops(graph, [*graph.ops, again])) == ("value 'r' is written by both op1 and op9",)


@pytest.mark.parametrize(("written", "kind"), [("x", "input"), ("conv.weight", "parameter")])
def test_an_op_writing_a_source_is_reported(written, kind):
    graph = residual_block()
    bad = Op(OpId("op9"), OpKind.ELEMENTWISE, "aten.copy_", ("a",), (written,), "inplace")
    assert problems(with_ops(graph, [*graph.ops, bad])) == (
        f"op op9 aten.copy_ in inplace: writes '{written}', which is a {kind} and has no producer",
    )


def test_validate_lists_every_problem_at_once():
    graph = residual_block()
    orphan = Value(ValueId("orphan"), (1, 4), F32, ValueKind.ACTIVATION)
    broken = attrs.evolve(graph, values=(*graph.values, orphan), outputs=("y", "gone"))
    with pytest.raises(
        GraphError, match=r"invalid graph \(2 problems\):\n  - activation 'orphan'.*\n  - graph output 'gone'"
    ):
        validate(broken)


def _single_op_graph(kind, shapes, inputs, outputs, attrs_=None) -> Graph:
    b = GraphBuilder()
    for name, shape in shapes.items():
        if name in inputs:
            kind_of = ValueKind.PARAMETER if "." in name else ValueKind.INPUT
            module, _, attr = name.rpartition(".")
            b.value(name, shape, F32, kind_of, module, attr)
        else:
            b.value(name, shape, F32, ValueKind.ACTIVATION)
    b.op(kind, f"aten.{kind.value}", inputs, outputs, "block", attrs_ or {})
    return b.build([i for i in inputs if "." not in i], outputs)


@pytest.mark.parametrize(
    ("kind", "shapes", "inputs", "outputs", "attrs_", "message"),
    [
        # concat whose output is larger or smaller than the sum of its inputs
        (
            OpKind.CONCAT,
            {"a": (2, 3), "b": (2, 4), "y": (2, 9)},
            ["a", "b"],
            ["y"],
            {"dim": 1},
            r"op op0 aten.concat in block: inputs have 7 channels along dim 1, output 'y' has 9",
        ),
        (
            OpKind.CONCAT,
            {"a": (2, 3), "b": (2, 4), "y": (2, 5)},
            ["a", "b"],
            ["y"],
            {"dim": 1},
            r"op op0 aten.concat in block: its values do not fit a concat op \(Offset: part \[3, 7\) does not fit",
        ),
        # grouped conv whose channels the groups do not divide
        (
            OpKind.CONV,
            {"x": (1, 5, 4, 4), "conv.weight": (4, 2, 3, 3), "y": (1, 4, 4, 4)},
            ["x", "conv.weight"],
            ["y"],
            {"groups": 2},
            r"coupling from op op0: x\[1\] has size 5, expected 2 × 2 = 4",
        ),
        # grouped conv whose weight does not match the per-group input width
        (
            OpKind.CONV,
            {"x": (1, 4, 4, 4), "conv.weight": (4, 3, 3, 3), "y": (1, 4, 4, 4)},
            ["x", "conv.weight"],
            ["y"],
            {"groups": 2},
            r"coupling from op op0: factor part conv.weight\[1\] has size 3, expected 2",
        ),
        # chunk whose equal pieces do not add up to the input
        (
            OpKind.SPLIT,
            {"x": (2, 7), "a": (2, 3), "b": (2, 3)},
            ["x"],
            ["a", "b"],
            {"dim": 1},
            r"coupling from op op0: x\[1\] has size 7, expected 2 × 3 = 6",
        ),
        # split whose pieces leave input channels over
        (
            OpKind.SPLIT,
            {"x": (2, 7), "a": (2, 2), "b": (2, 3)},
            ["x"],
            ["a", "b"],
            {"dim": 1},
            r"op op0 aten.split in block: outputs have 5 channels along dim 1, input 'x' has 7",
        ),
        # slice running past its input
        (
            OpKind.SLICE,
            {"x": (2, 6), "y": (2, 4)},
            ["x"],
            ["y"],
            {"dim": 1, "start": 3},
            r"op op0 aten.slice in block: its values do not fit a slice op \(Window: start 3, step 1, length 4",
        ),
        # rank problems
        (
            OpKind.NORM,
            {"x": (2, 3), "bn.weight": (3, 1), "y": (2, 3)},
            ["x", "bn.weight"],
            ["y"],
            {"channel_dims": (1,)},
            r"op op0 aten.norm in block: parameter bn.weight has rank 2, expected 1",
        ),
        (
            OpKind.CONV,
            {"x": (4,), "conv.weight": (4, 4, 3, 3), "y": (1, 4, 4, 4)},
            ["x", "conv.weight"],
            ["y"],
            {},
            r"op op0 aten.conv in block: its values do not fit a conv op",
        ),
        (
            OpKind.PERMUTE,
            {"x": (2, 3), "y": (3, 2)},
            ["x"],
            ["y"],
            {"perm": (1, 0, 2)},
            r"op op0 aten.permute in block: its values do not fit a permute op",
        ),
    ],
)
def test_shape_contradictions_are_reported_naming_the_op_or_value(kind, shapes, inputs, outputs, attrs_, message):
    graph = _single_op_graph(kind, shapes, inputs, outputs, attrs_)
    found = problems(graph)
    assert len(found) == 1
    assert re.match(message, found[0]), found
    with pytest.raises(GraphError, match=message):
        validate(graph)


@pytest.mark.parametrize(
    ("kind", "shapes", "inputs", "attrs_", "pinned"),
    [
        # a plain conv whose weight does not match the input channels
        (
            OpKind.CONV,
            {"x": (1, 4, 4, 4), "conv.weight": (6, 5, 3, 3), "y": (1, 6, 4, 4)},
            ["x", "conv.weight"],
            {},
            ["x[1]", "conv.weight[1]"],
        ),
        # an elementwise op whose operands do not broadcast
        (OpKind.ELEMENTWISE, {"a": (2, 3), "b": (2, 5), "y": (2, 3)}, ["a", "b"], {}, ["b[1]"]),
        # a reshape that changes the number of elements
        (OpKind.RESHAPE, {"x": (2, 6), "y": (2, 5)}, ["x"], {}, ["x[0]", "x[1]", "y[0]", "y[1]"]),
    ],
)
def test_contradictions_validate_misses_are_at_least_pinned(kind, shapes, inputs, attrs_, pinned):
    # validate does not report these (see the report of this suite); what keeps them safe is that
    # couplings_of pins every dim the rule could not join
    graph = _single_op_graph(kind, shapes, inputs, ["y"], attrs_)
    pins = {str(c.dim) for c in graph.couplings if isinstance(c, Pin) and c.op == "op0"}
    assert set(pinned) <= pins


def test_a_group_norm_with_list_channel_dims_gets_the_right_group_width():
    b = GraphBuilder()
    x = b.value("x", (2, 3, 8), F32, ValueKind.INPUT)
    y = b.value("y", (2, 3, 8), F32, ValueKind.ACTIVATION)
    op = b.op(OpKind.NORM, "aten.group_norm", [x], [y], "gn", {"channel_dims": [2], "num_groups": 2})
    graph = validate(b.build([x], [y]))
    assert [graph.value(a).shape for a in op.axes] == [(2,), (4,)]
    assert [c for c in graph.couplings if isinstance(c, FactorLink)] == [
        FactorLink(DimRef(ValueId("x"), 2), (DimRef(op.axes[0], 0), DimRef(op.axes[1], 0)), (2, 4), OpId("op0"))
    ]


# -- DOT -------------------------------------------------------------------------------------

_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')


def _assert_well_formed_dot(text: str) -> set[str]:
    """Header, balanced braces outside quoted strings, one statement per line; returns node names."""
    assert text.startswith("digraph ")
    assert text.endswith("}\n")
    bare = _QUOTED.sub('""', text)
    assert '"' not in _QUOTED.sub("", text)  # every quote is closed
    depth = 0
    for ch in bare:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        assert depth >= 0
    assert depth == 0
    lines = text.splitlines()
    assert lines[0].endswith("{")
    assert lines[-1] == "}"
    nodes, edges = set(), []
    for line in lines[1:-1]:
        assert line.endswith(";"), line
        names = [m[1:-1] for m in _QUOTED.findall(line.split("[")[0])]
        if " -> " in _QUOTED.sub('""', line):
            edges.append(names)
        elif names:
            nodes.add(names[0])
    for edge in edges:
        assert len(edge) == 2, edge
        assert set(edge) <= nodes, edge
    return nodes


@given(graphs())
def test_dot_output_is_well_formed_and_shows_every_op(graph):
    nodes = _assert_well_formed_dot(to_dot(graph))
    assert {f"o:{op.id}" for op in graph.ops} <= nodes
    assert {f"v:{v}" for v in (*graph.inputs, *graph.outputs)} <= nodes
    params = {f"v:{v.id}" for v in graph.values if v.kind in (ValueKind.PARAMETER, ValueKind.BUFFER)}
    assert params <= nodes


def test_dot_quotes_awkward_names_and_applies_colours():
    b = GraphBuilder()
    x = b.value("x", (2, 3), F32, ValueKind.INPUT)
    w = b.value('we"ird{', (3, 3), F32, ValueKind.PARAMETER, 'm"od}', "weight")
    y = b.value("y", (2, 3), F32, ValueKind.ACTIVATION)
    b.op(OpKind.MATMUL, "aten.mm", [x, w], [y], 'm"od}')
    b.op(OpKind.OPAQUE, "aten.custom", [y], [b.value("z", (2, 3), F32, ValueKind.ACTIVATION)])
    text = to_dot(b.build([x], ["z"]), colours={"op0": "red", 'we"ird{': "blue"}, name="my net")
    nodes = _assert_well_formed_dot(text)
    assert nodes == {"v:x", 'v:we\\"ird{', "v:z", "o:op0", "o:op1"}
    assert text.startswith('digraph "my net" {')
    assert '"o:op0" [shape=box, style=filled, fillcolor="red"' in text
    assert 'fillcolor="blue"' in text
    assert '"o:op1" [shape=box, style=filled, fillcolor="lightgrey"' in text  # opaque ops stand out
    assert '"o:op0" -> "o:op1" [label="(2, 3)"' in text


# -- fingerprint -----------------------------------------------------------------------------


@given(graphs())
def test_fingerprint_is_stable(graph):
    fingerprint = graph.fingerprint()
    assert re.fullmatch(r"[0-9a-f]{16}", fingerprint)
    assert from_json(to_json(graph)).fingerprint() == fingerprint
    assert with_values(graph, reversed(graph.values)).fingerprint() == fingerprint
    assert graph.fingerprint({}) == fingerprint


@given(
    graphs().flatmap(lambda g: st.tuples(st.just(g), st.sampled_from([v for v in g.values if v.is_state] or [None])))
)
def test_fingerprint_changes_when_a_parameter_shape_changes(case):
    graph, state = case
    if state is None:
        return
    grown = tuple(size + 1 for size in state.shape)
    changed = with_values(graph, [attrs.evolve(v, shape=grown) if v.id == state.id else v for v in graph.values])
    assert changed.fingerprint() != graph.fingerprint()
    assert graph.fingerprint({state.id: grown}) == changed.fingerprint()


def test_fingerprint_ignores_activation_shapes_and_ids_but_not_ops():
    graph = residual_block()
    batch = [attrs.evolve(v, shape=(3, *v.shape[1:])) if not v.is_state else v for v in graph.values]
    assert with_values(graph, batch).fingerprint() == graph.fingerprint()
    relabelled = with_ops(graph, [attrs.evolve(op, target="aten.gelu") if op.id == "op1" else op for op in graph.ops])
    assert relabelled.fingerprint() != graph.fingerprint()
    rekinded = with_ops(graph, [attrs.evolve(op, kind=OpKind.OPAQUE) if op.id == "op1" else op for op in graph.ops])
    assert rekinded.fingerprint() != graph.fingerprint()


def test_a_graph_written_with_the_first_schema_still_reads():
    """Graphs written before owners were named so (``module``) read unchanged."""
    graph = residual_block()
    doc = _doc()
    doc["schema"] = "prune-graph/1"
    for item in doc["values"] + doc["ops"]:
        item["module"] = item.pop("owner")
    assert from_json(json.dumps(doc)) == graph
