"""ONNX ``LSTM`` / ``GRU`` / ``RNN`` nodes: their hidden units are pruned like prune-torch's nn.LSTM / nn.GRU.

A MatMul embedding, a recurrent node, a MatMul or Gemm head, built with onnx.helper. Hidden units
are removed from every gate block of W, R and B, from R's columns, from every direction at once
and from the initial states; the embedding's width is pruned through W's columns. The pruned
model must equal the silenced original (R's columns of removed units zeroed) in onnxruntime.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import prune_onnx as po
from prune_graph import DimRef, OpKind, ValueId
from prune_ops import Group, costs

from .nets import OPSET

SEQ, BATCH, IN, WIDTH, HIDDEN, OUT = 5, 2, 6, 12, 10, 3
GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


def recurrent_model(
    op: str = "LSTM",
    *,
    bidirectional: bool = False,
    layout: int = 0,
    states: bool = False,
    head: str = "y",
    peepholes: bool = False,
    lengths: bool = False,
    **attrs: object,
) -> onnx.ModelProto:
    """x → MatMul/Add/Tanh (``embed``) → ``op`` (``rnn``) → a head (``head``) on Y, or on the final states."""
    rng = np.random.default_rng(0)
    gates, d = GATES[op], 2 if bidirectional else 1
    inits: list[onnx.TensorProto] = []

    def weight(name: str, *shape: int) -> str:
        inits.append(numpy_helper.from_array((0.5 * rng.standard_normal(shape)).astype(np.float32), name))
        return name

    def ints(name: str, values: list[int]) -> str:
        inits.append(numpy_helper.from_array(np.array(values, dtype=np.int64), name))
        return name

    x_shape = [BATCH, SEQ, IN] if layout else [SEQ, BATCH, IN]
    state_shape = (BATCH, d, HIDDEN) if layout else (d, BATCH, HIDDEN)
    nodes = [
        helper.make_node("MatMul", ["x", weight("We", IN, WIDTH)], ["e"], name="embed"),
        helper.make_node("Add", ["e", weight("be", WIDTH)], ["eb"], name="embed_bias"),
        helper.make_node("Tanh", ["eb"], ["t"], name="act"),
    ]
    inputs = ["t", weight("W", d, gates * HIDDEN, WIDTH), weight("R", d, gates * HIDDEN, HIDDEN)]
    inputs.append(weight("B", d, 2 * gates * HIDDEN))
    if lengths:  # shorter sequences take no part in the couplings
        inits.append(numpy_helper.from_array(np.array([SEQ, SEQ - 2], dtype=np.int32), "lengths"))
    inputs.append("lengths" if lengths else "")
    if states:
        inputs.append(weight("h0", *state_shape))
        if op == "LSTM":
            inputs.append(weight("c0", *state_shape))
    if peepholes:
        inputs += [""] * (7 - len(inputs)) + [weight("P", d, 3 * HIDDEN)]
    final = ["y_h", "y_c"] if op == "LSTM" else ["y_h"]
    outputs = ["y" if head == "y" else "", *final] if head != "y" else ["y"]
    direction = "bidirectional" if bidirectional else "forward"
    nodes.append(
        helper.make_node(
            op, inputs, outputs, name="rnn", hidden_size=HIDDEN, direction=direction, layout=layout, **attrs
        )
    )
    if head == "y":
        y = "y"
        if not layout:  # (seq, directions, batch, hidden) → (seq, batch, directions, hidden)
            nodes.append(helper.make_node("Transpose", ["y"], ["yt"], name="swap", perm=[0, 2, 1, 3]))
            y = "yt"
        lead = [BATCH, SEQ] if layout else [SEQ, BATCH]
        nodes.append(helper.make_node("Reshape", [y, ints("flat", [*lead, d * HIDDEN])], ["yf"], name="flatten"))
        nodes.append(helper.make_node("MatMul", ["yf", weight("Wo", d * HIDDEN, OUT)], ["out"], name="head"))
        out_shape = [*lead, OUT]
    else:  # the final states, summed over the directions, into a Gemm
        state = "y_h"
        if op == "LSTM":
            nodes.append(helper.make_node("Add", ["y_h", "y_c"], ["s"], name="both"))
            state = "s"
        axis = 1 if layout else 0
        nodes.append(helper.make_node("ReduceSum", [state, ints("axes", [axis])], ["sd"], name="sum", keepdims=0))
        nodes.append(helper.make_node("Gemm", ["sd", weight("Wo", OUT, HIDDEN), weight("bo", OUT)], ["out"], transB=1))
        nodes[-1].name = "head"
        out_shape = [BATCH, OUT]
    graph = helper.make_graph(
        nodes,
        "recurrent",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, out_shape)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def group_with(graph: po.OnnxGraph, label: str) -> Group:
    found = [g for g in graph.groups().groups if label in {m.label for m in g.parameters}]
    assert len(found) == 1, f"{len(found)} groups contain {label}"
    return found[0]


def units(group: Group, label: str) -> np.ndarray:
    (found,) = [m for m in group.parameters if m.label == label]
    return found.units


def initializer(model: onnx.ModelProto, name: str) -> np.ndarray:
    (found,) = [t for t in model.graph.initializer if t.name == name]
    return numpy_helper.to_array(found)


def attribute(model: onnx.ModelProto, node: str, name: str) -> object:
    (found,) = [n for n in model.graph.node if n.name == node]
    return next(helper.get_attribute_value(a) for a in found.attribute if a.name == name)


CASES = [
    pytest.param("LSTM", {}, id="lstm"),
    pytest.param("LSTM", {"bidirectional": True}, id="lstm-bidirectional"),
    pytest.param("LSTM", {"layout": 1}, id="lstm-batch-first"),
    pytest.param("LSTM", {"states": True, "head": "states"}, id="lstm-states"),
    pytest.param("LSTM", {"lengths": True, "bidirectional": True}, id="lstm-sequence-lengths"),
    pytest.param("LSTM", {"bidirectional": True, "layout": 1, "states": True}, id="lstm-bidirectional-batch-first"),
    pytest.param("GRU", {}, id="gru"),
    pytest.param("GRU", {"linear_before_reset": 1, "bidirectional": True}, id="gru-linear-before-reset"),
    pytest.param("GRU", {"states": True, "head": "states", "bidirectional": True}, id="gru-states"),
    pytest.param("RNN", {"states": True}, id="rnn"),
]


@pytest.mark.parametrize(("op", "options"), CASES)
def test_hidden_units_are_one_group_across_gates_and_directions(op: str, options: dict[str, object]) -> None:
    graph = po.trace(recurrent_model(op, **options))
    assert [o.kind for o in graph.ops if o.owner == "rnn"] == [OpKind.RECURRENT]
    hidden = group_with(graph, "rnn.R[2]")
    assert hidden.prunable
    assert hidden.size == HIDDEN
    assert not hidden.approximate
    # every gate block of the rows carries the same units; the bias holds W's and R's blocks
    np.testing.assert_array_equal(units(hidden, "rnn.W[1]"), np.tile(np.arange(HIDDEN), GATES[op]))
    np.testing.assert_array_equal(units(hidden, "rnn.R[1]"), np.tile(np.arange(HIDDEN), GATES[op]))
    np.testing.assert_array_equal(units(hidden, "rnn.B[1]"), np.tile(np.arange(HIDDEN), 2 * GATES[op]))
    if options.get("states"):
        assert "rnn.h0[2]" in {m.label for m in hidden.parameters}
    directions = 2 if options.get("bidirectional") else 1
    if options.get("head", "y") == "y":  # the directions side by side after the reshape
        np.testing.assert_array_equal(units(hidden, "head.Wo[0]"), np.tile(np.arange(HIDDEN), directions))
    else:
        np.testing.assert_array_equal(units(hidden, "head.Wo[1]"), np.arange(HIDDEN))
    width = group_with(graph, "rnn.W[2]")
    assert width.prunable
    assert width.size == WIDTH
    assert {"embed.We[1]", "embed_bias.be[0]"} <= {m.label for m in width.parameters}
    # the directions are never a group of their own
    assert not any(g.prunable for g, _ in graph.groups().containing(DimRef(ValueId("R"), 0)))


def run_reference(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> np.ndarray:
    return np.asarray(ReferenceEvaluator(model).run(None, feeds)[0])


@pytest.mark.parametrize(("op", "options"), CASES)
def test_pruned_recurrent_model_equals_the_silenced_original(op: str, options: dict[str, object]) -> None:
    model = recurrent_model(op, **options)
    pruned, report = po.prune(model, ratio=0.5)
    onnx.checker.check_model(pruned, full_check=True)
    assert not report.approximate
    directions, gates = (2 if options.get("bidirectional") else 1), GATES[op]
    assert attribute(pruned, "rnn", "hidden_size") == HIDDEN // 2
    assert initializer(pruned, "W").shape == (directions, gates * HIDDEN // 2, WIDTH // 2)
    assert initializer(pruned, "R").shape == (directions, gates * HIDDEN // 2, HIDDEN // 2)
    assert initializer(pruned, "B").shape == (directions, 2 * gates * HIDDEN // 2)
    if options.get("states"):
        assert initializer(pruned, "h0").shape[2] == HIDDEN // 2
    assert report.after.macs < report.before.macs
    feeds = po.random_inputs(po.trace(model))
    if options.get("layout"):
        # onnxruntime runs no batch-first (layout 1) recurrent node: onnx's reference evaluator does
        reference = run_reference(po.silenced_copy(model, report.plan), feeds)
        np.testing.assert_allclose(run_reference(pruned, feeds), reference, rtol=1e-5, atol=1e-5)
        assert not np.allclose(run_reference(model, feeds), reference, atol=1e-3)  # silencing changed something
        return
    assert po.run(pruned, feeds)[0].shape == po.run(model, feeds)[0].shape
    assert po.check_equivalence(model, pruned, report.plan).ok


def test_without_silencing_r_the_pruned_lstm_differs() -> None:
    """Guards the equivalence above: the removed units do reach the kept ones through R's columns."""
    model = recurrent_model("LSTM")
    graph = po.trace(model)
    plan = po.plan(graph, "R", [0, 3, 7], dim=2)
    pruned = po.apply(graph, plan)
    assert po.check_equivalence(graph, pruned, plan).ok
    unsilenced = po.silenced_copy(graph, plan)
    (r,) = [t for t in unsilenced.graph.initializer if t.name == "R"]
    r.CopyFrom(numpy_helper.from_array(initializer(model, "R"), "R"))  # R's columns back as they were
    feeds = po.random_inputs(graph)
    assert not np.allclose(po.run(unsilenced, feeds)[0], po.run(pruned, feeds)[0], atol=1e-4)


def test_a_node_target_prunes_the_hidden_units() -> None:
    graph = po.trace(recurrent_model("GRU"))
    plan = po.plan(graph, "rnn", [1, 2])
    pruned = po.apply(graph, plan)
    assert attribute(pruned, "rnn", "hidden_size") == HIDDEN - 2
    kept = np.setdiff1d(np.arange(HIDDEN), [1, 2])
    rows = np.concatenate([kept + g * HIDDEN for g in range(3)])
    np.testing.assert_array_equal(initializer(pruned, "R"), initializer(graph.model, "R")[:, rows][:, :, kept])


def test_recurrent_macs() -> None:
    graph = po.trace(recurrent_model("LSTM", bidirectional=True))
    (rnn,) = [o for o in graph.ops if o.owner == "rnn"]
    per_op = {op: macs for op, _, macs in costs(graph).per_op}
    w, r = 2 * 4 * HIDDEN * WIDTH, 2 * 4 * HIDDEN * HIDDEN
    assert per_op[rnn.id] == SEQ * BATCH * (w + r)


def test_peepholes_leave_the_node_opaque_and_say_why() -> None:
    graph = po.trace(recurrent_model("LSTM", peepholes=True))
    (rnn,) = [o for o in graph.ops if o.owner == "rnn"]
    assert rnn.kind is OpKind.OPAQUE
    hidden = group_with(graph, "rnn.R[2]")
    assert not hidden.prunable
    assert any("peepholes" in b for b in hidden.blockers)
    pruned, report = po.prune(recurrent_model("LSTM", peepholes=True), ratio=0.5)
    assert attribute(pruned, "rnn", "hidden_size") == HIDDEN
    assert po.check_equivalence(recurrent_model("LSTM", peepholes=True), pruned, report.plan).ok
