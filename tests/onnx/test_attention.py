"""Attention nodes: the ONNX ``Attention`` (opset 23) and ``com.microsoft.Attention``, heads pruned and head counts rewritten."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import prune_onnx as po
from prune_graph import Mixing, OpKind
from prune_ops import Group, GroupKind, Plan, make_plan, propagate

HEADS, HEAD_DIM, WIDTH, LENGTH = 4, 2, 8, 5


def attention_model(
    layout: str = "packed",
    *,
    scale: float | None = None,
    kv_heads: int = HEADS,
    v_dim: int = HEAD_DIM,
    mask: bool = False,
    past: bool = False,
    qk_output: bool = False,
    seed: int = 0,
) -> onnx.ModelProto:
    """x (1, L, 8) → projections → attention over 4 heads of 2 → output projection → y (1, L, 8).

    ``layout``: ``packed`` (opset-23 Attention on (B, L, H·E)), ``heads`` (opset-23 Attention on
    (B, H, L, E) after Reshape / Transpose nodes), ``contrib`` (com.microsoft.Attention with its
    packed QKV weight; ``v_dim`` other than the head dim writes ``qkv_hidden_sizes``), ``mha``
    (com.microsoft.MultiHeadAttention on the projections, the mask as its attention bias).
    """
    rng = np.random.default_rng(seed)
    inits: list[onnx.TensorProto] = []
    nodes: list[onnx.NodeProto] = []
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, LENGTH, WIDTH])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, LENGTH, WIDTH])]
    extra: dict[str, object] = {} if scale is None else {"scale": scale}
    q_size, kv_size, v_size = HEADS * HEAD_DIM, kv_heads * HEAD_DIM, kv_heads * v_dim

    def weight(name: str, *shape: int) -> str:
        inits.append(numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name))
        return name

    if layout == "contrib":
        sizes = [q_size, q_size, HEADS * v_dim]
        extra.update({"qkv_hidden_sizes": sizes} if v_dim != HEAD_DIM else {})
        att_inputs = ["x", weight("qkv_weight", WIDTH, sum(sizes)), weight("qkv_bias", sum(sizes))]
        if mask:
            inputs.append(helper.make_tensor_value_info("mask", TensorProto.INT32, [1, LENGTH]))
            att_inputs.append("mask")
        nodes.append(
            helper.make_node("Attention", att_inputs, ["a"], "att", domain="com.microsoft", num_heads=HEADS, **extra)
        )
    else:
        for t, size in (("q", q_size), ("k", kv_size), ("v", v_size)):
            nodes.append(helper.make_node("MatMul", ["x", weight(f"W{t}", WIDTH, size)], [f"{t}p"], f"proj_{t}"))
        names = ["qp", "kp", "vp"]
        if layout == "heads":
            for t, heads, dim in (("q", HEADS, HEAD_DIM), ("k", kv_heads, HEAD_DIM), ("v", kv_heads, v_dim)):
                inits.append(numpy_helper.from_array(np.array([1, LENGTH, heads, dim], dtype=np.int64), f"{t}_shape"))
                nodes.append(helper.make_node("Reshape", [f"{t}p", f"{t}_shape"], [f"{t}r"], f"split_{t}"))
                nodes.append(helper.make_node("Transpose", [f"{t}r"], [f"{t}4"], f"heads_{t}", perm=[0, 2, 1, 3]))
            names = ["q4", "k4", "v4"]
            # what torch.onnx.export(dynamo=True, opset_version=23) writes for scaled_dot_product_attention
            extra.update(is_causal=0, softcap=0.0, qk_matmul_output_mode=0)
        elif layout == "mha":
            extra.update(num_heads=HEADS, domain="com.microsoft")
        else:
            extra.update(q_num_heads=HEADS, kv_num_heads=kv_heads)
        att_inputs = list(names)
        att_outputs = ["a4" if layout == "heads" else "a"]
        if mask:
            inputs.append(helper.make_tensor_value_info("mask", TensorProto.FLOAT, [1, 1, LENGTH, LENGTH]))
            att_inputs += ["", "", "mask"] if layout == "mha" else ["mask"]
        if past:
            att_inputs += [] if mask else [""]
            for t, dim in (("k", HEAD_DIM), ("v", v_dim)):
                inputs.append(helper.make_tensor_value_info(f"past_{t}", TensorProto.FLOAT, [1, kv_heads, 3, dim]))
                att_inputs.append(f"past_{t}")
                att_outputs.append(f"present_{t}")
                outputs.append(
                    helper.make_tensor_value_info(f"present_{t}", TensorProto.FLOAT, [1, kv_heads, LENGTH + 3, dim])
                )
        if qk_output:
            att_outputs += [""] * (3 - len(att_outputs)) + ["scores"]
            outputs.append(helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, HEADS, LENGTH, LENGTH]))
        op_type = "MultiHeadAttention" if layout == "mha" else "Attention"
        nodes.append(helper.make_node(op_type, att_inputs, att_outputs, "att", **extra))
        if layout == "heads":
            inits.append(numpy_helper.from_array(np.array([1, LENGTH, HEADS * v_dim], dtype=np.int64), "y_shape"))
            nodes.append(helper.make_node("Transpose", ["a4"], ["a4t"], "unheads", perm=[0, 2, 1, 3]))
            nodes.append(helper.make_node("Reshape", ["a4t", "y_shape"], ["a"], "merge"))
    nodes.append(helper.make_node("MatMul", ["a", weight("Wo", HEADS * v_dim, WIDTH)], ["y"], "out"))
    graph = helper.make_graph(nodes, "attention", inputs, outputs, inits)
    opsets = [helper.make_opsetid("", 23)]
    if layout in ("contrib", "mha"):
        opsets.append(helper.make_opsetid("com.microsoft", 1))
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 10
    onnx.checker.check_model(model)
    return model


def attribute(model: onnx.ModelProto, name: str) -> object:
    (node,) = [n for n in model.graph.node if n.name == "att"]
    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), None)


def kind_group(graph: po.OnnxGraph, kind: GroupKind, label: str) -> Group:
    (found,) = [g for g in graph.groups().groups if g.kind is kind and label in {m.label for m in g.parameters}]
    return found


def plan_of(graph: po.OnnxGraph, group: Group, units: list[int]) -> Plan:
    member = group.root_member
    indices = np.flatnonzero(np.isin(member.units, units))
    return make_plan(graph, propagate(graph, member.dim, indices, graph.groups()))


VARIANTS = [
    pytest.param("packed", {}, id="opset23-packed"),
    pytest.param("packed", {"scale": 0.3}, id="opset23-packed-scale"),
    pytest.param("packed", {"mask": True}, id="opset23-packed-mask"),
    pytest.param("heads", {}, id="opset23-heads"),
    pytest.param("contrib", {}, id="contrib"),
    pytest.param("contrib", {"scale": 0.3, "mask": True}, id="contrib-scale-mask"),
    pytest.param("contrib", {"v_dim": 3}, id="contrib-qkv-hidden-sizes"),
    pytest.param("mha", {}, id="contrib-multi-head"),
    pytest.param("mha", {"scale": 0.3, "mask": True, "v_dim": 3}, id="contrib-multi-head-scale-bias"),
]


@pytest.mark.parametrize(("layout", "options"), VARIANTS)
def test_heads_are_pruned_and_the_node_follows(layout: str, options: dict[str, object]) -> None:
    model = attention_model(layout, **options)  # type: ignore[arg-type]
    graph = po.trace(model)
    assert OpKind.ATTENTION in {op.kind for op in graph.ops if op.owner == "att"}
    heads = [g for g in graph.groups().prunable if g.kind is GroupKind.HEADS]
    assert [g.size for g in heads] == [HEADS]
    pruned, report = po.prune(model, ratio=0.5)
    onnx.checker.check_model(pruned, full_check=True)
    v_dim = int(options.get("v_dim", HEAD_DIM))  # type: ignore[call-overload]
    if layout == "contrib":
        assert attribute(pruned, "num_heads") == HEADS // 2
        assert attribute(pruned, "qkv_hidden_sizes") == [HEADS // 2 * HEAD_DIM] * 2 + [HEADS // 2 * v_dim]
    elif layout == "packed":
        assert (attribute(pruned, "q_num_heads"), attribute(pruned, "kv_num_heads")) == (HEADS // 2, HEADS // 2)
    elif layout == "mha":
        assert attribute(pruned, "num_heads") == HEADS // 2
    assert attribute(pruned, "scale") == pytest.approx(options.get("scale"))  # never rewritten
    assert report.after.parameters < report.before.parameters
    assert report.after.macs < report.before.macs
    assert po.check_equivalence(model, pruned, report.plan).ok
    # the removed heads did contribute: the check above compares against something else than the original
    feeds = po.random_inputs(graph)
    assert not np.allclose(po.run(model, feeds)[0], po.run(pruned, feeds)[0], atol=1e-3)


@pytest.mark.parametrize("layout", ["packed", "contrib"])
def test_query_key_head_dims_mix_by_size_unless_a_scale_is_given(layout: str) -> None:
    label = "att.qkv_weight[1]" if layout == "contrib" else "proj_q.Wq[1]"
    default = po.trace(attention_model(layout))
    (qk,) = [g for g in default.groups().groups if g.kind is GroupKind.HEAD_DIMS and g.approximate]
    assert label in {m.label for m in qk.parameters}
    assert [n.how for n in qk.mixing] == [Mixing.SIZE]
    scaled = po.trace(attention_model(layout, scale=0.3))
    assert not any(g.approximate for g in scaled.groups().groups)
    # the default prune leaves head dims alone either way
    _, report = po.prune(attention_model(layout), ratio=0.5)
    assert not report.approximate


def test_value_head_dims_prune_exactly() -> None:
    model = attention_model("packed", v_dim=4)
    graph = po.trace(model)
    group = kind_group(graph, GroupKind.HEAD_DIMS, "proj_v.Wv[1]")
    assert not group.approximate
    plan = plan_of(graph, group, [1, 2])
    pruned = po.apply(graph, plan)
    onnx.checker.check_model(pruned, full_check=True)
    assert [t.dims for t in pruned.graph.initializer if t.name == "Wv"] == [[WIDTH, HEADS * 2]]
    assert (attribute(pruned, "q_num_heads"), attribute(pruned, "kv_num_heads")) == (HEADS, HEADS)
    assert po.check_equivalence(graph, pruned, plan).ok


@pytest.mark.parametrize("layout", ["packed", "heads"])
def test_grouped_query_attention_stays_opaque_and_says_why(layout: str) -> None:
    model = attention_model(layout, kv_heads=2)
    graph = po.trace(model)
    (att,) = [op for op in graph.ops if op.owner == "att"]
    assert att.kind is OpKind.OPAQUE
    assert "grouped-query" in str(att.attr("why"))
    pruned, report = po.prune(model, ratio=0.5)
    assert attribute(pruned, "q_num_heads") == (HEADS if layout == "packed" else None)
    assert po.check_equivalence(model, pruned, report.plan).ok


def test_qk_matmul_output_stays_opaque() -> None:
    graph = po.trace(attention_model("heads", qk_output=True))
    (att,) = [op for op in graph.ops if op.owner == "att"]
    assert att.kind is OpKind.OPAQUE
    assert "qk_matmul_output" in str(att.attr("why"))


@pytest.mark.parametrize("layout", ["heads", "packed"])
def test_past_states_pin_the_heads_they_meet(layout: str) -> None:
    model = attention_model(layout, past=True)
    graph = po.trace(model)
    kinds = [op.kind for op in graph.ops if op.owner == "att"]
    assert kinds.count(OpKind.CONCAT) == 2
    assert OpKind.ATTENTION in kinds
    assert not any(g.prunable for g in graph.groups().groups if g.kind is GroupKind.HEADS)
    pruned, report = po.prune(model, ratio=0.5)
    assert po.check_equivalence(model, pruned, report.plan).ok


def test_head_counts_given_with_per_head_inputs_follow_them() -> None:
    model = attention_model("heads")
    (att,) = [n for n in model.graph.node if n.name == "att"]
    att.attribute.extend([helper.make_attribute("q_num_heads", HEADS), helper.make_attribute("kv_num_heads", HEADS)])
    pruned, report = po.prune(model, ratio=0.5)
    assert (attribute(pruned, "q_num_heads"), attribute(pruned, "kv_num_heads")) == (HEADS // 2, HEADS // 2)
    assert po.check_equivalence(model, pruned, report.plan).ok


def test_contrib_attention_is_keyed_by_its_domain() -> None:
    assert "com.microsoft.Attention" in po.NODE_RULES
    assert "com.microsoft.MultiHeadAttention" in po.NODE_RULES
    assert "Attention" in po.NODE_RULES


@pytest.mark.parametrize("layout", ["packed", "contrib"])
def test_query_key_head_dims_are_exact_with_a_scale_and_silenced_where_made(layout: str) -> None:
    """q·k has no weight to zero: the silenced original zeroes the pruned dims in the projections."""
    label = "att.qkv_weight[1]" if layout == "contrib" else "proj_q.Wq[1]"
    for scale, exact in ((0.3, True), (None, False)):
        model = attention_model(layout, scale=scale)
        graph = po.trace(model)
        (qk,) = [
            g
            for g in graph.groups().groups
            if g.kind is GroupKind.HEAD_DIMS and label in {m.label for m in g.parameters} and g.size == HEAD_DIM
            if not any(m.label == "out.Wo[0]" for m in g.parameters)
        ]
        plan = plan_of(graph, qk, [1])
        pruned = po.apply(graph, plan)
        onnx.checker.check_model(pruned, full_check=True)
        # without a scale attribute the node divides by √(new head dim): declared approximate, and it is
        assert po.check_equivalence(graph, pruned, plan).ok is exact
