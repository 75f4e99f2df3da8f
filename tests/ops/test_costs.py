"""Costs from the graph alone, against counts worked out by hand."""

from __future__ import annotations

import pytest

from prune_graph import DimRef, GraphBuilder, OpKind, ValueId, ValueKind
from prune_ops import Costs, costs, make_plan, propagate

from .nets import F32, Net


def test_conv_parameters_and_macs() -> None:
    net = Net()
    x = net.input((1, 3, 8, 8))
    graph = net.build([net.conv(x, 8, bias=True, module="conv")])
    result = costs(graph)
    # weight 8*3*3*3 + bias 8; every output element (8*8*8) takes 3*3*3 MACs
    assert result.parameters == 216 + 8
    assert result.macs == 8 * 8 * 8 * 27 == 13824
    assert result.per_op == (("op0", "conv", 13824),)


def test_grouped_and_depthwise_conv_macs() -> None:
    net = Net()
    x = net.input((2, 8, 6, 6))
    grouped = net.conv(x, 12, groups=4, module="grouped")  # weight (12, 2, 3, 3)
    depthwise = net.conv(grouped, 12, groups=12, module="dw")  # weight (12, 1, 3, 3)
    graph = net.build([depthwise])
    result = costs(graph)
    per_output = 2 * 12 * 6 * 6
    assert dict((m, c) for _, m, c in result.per_op) == {"grouped": per_output * 2 * 9, "dw": per_output * 9}
    assert result.parameters == 12 * 2 * 9 + 12 * 9
    assert result.macs == per_output * 27


def test_transposed_conv_counts_per_input_element() -> None:
    b = GraphBuilder()
    x = b.value("x", (1, 4, 5, 5), F32, ValueKind.INPUT)
    w = b.value("up.weight", (4, 6, 2, 2), F32, ValueKind.PARAMETER, "up", "weight")
    y = b.value("y", (1, 6, 10, 10), F32, ValueKind.ACTIVATION)
    b.op(OpKind.CONV, "aten.conv_transpose2d", [x, w], [y], "up", {"transposed": True, "groups": 1})
    # each input element is scattered into 6*2*2 outputs
    assert costs(b.build([x], [y])).macs == 4 * 25 * 6 * 4


def test_linear_counts_every_leading_dim() -> None:
    net = Net()
    x = net.input((2, 5, 16))
    graph = net.build([net.linear(x, 32, bias=True, module="fc")])
    result = costs(graph)
    assert result.macs == 2 * 5 * 32 * 16
    assert result.parameters == 32 * 16 + 32


def test_matmul_of_two_activations_and_of_a_parameter() -> None:
    b = GraphBuilder()
    a = b.value("a", (2, 3, 4, 5), F32, ValueKind.INPUT)
    c = b.value("c", (2, 3, 5, 6), F32, ValueKind.INPUT)
    y = b.value("y", (2, 3, 4, 6), F32, ValueKind.ACTIVATION)
    w = b.value("mm.weight", (6, 7), F32, ValueKind.PARAMETER, "mm", "weight")
    z = b.value("z", (2, 3, 4, 7), F32, ValueKind.ACTIVATION)
    b.op(OpKind.MATMUL, "aten.matmul", [a, c], [y])
    b.op(OpKind.MATMUL, "aten.matmul", [y, w], [z], "mm")
    result = costs(b.build([a, c], [z]))
    assert [m for _, _, m in result.per_op] == [2 * 3 * 4 * 6 * 5, 2 * 3 * 4 * 7 * 6]
    assert result.parameters == 42


def test_attention_counts_scores_and_weighted_sum() -> None:
    b = GraphBuilder()
    q = b.value("q", (2, 4, 10, 8), F32, ValueKind.INPUT)
    k = b.value("k", (2, 4, 12, 8), F32, ValueKind.INPUT)
    v = b.value("v", (2, 4, 12, 16), F32, ValueKind.INPUT)
    y = b.value("y", (2, 4, 10, 16), F32, ValueKind.ACTIVATION)
    b.op(OpKind.ATTENTION, "aten.scaled_dot_product_attention", [q, k, v], [y])
    # q @ k^T: 2*4 batches of 10x12 scores, 8 MACs each; scores @ v: 10x16 outputs, 12 MACs each
    assert costs(b.build([q, k, v], [y])).macs == 2 * 4 * (10 * 12 * 8 + 10 * 16 * 12) == 23040


def test_ops_that_do_not_multiply_cost_nothing_and_shared_parameters_count_once() -> None:
    b = GraphBuilder()
    x = b.value("x", (3, 4), F32, ValueKind.INPUT)
    w = b.value("fc.weight", (4, 4), F32, ValueKind.PARAMETER, "fc", "weight")
    buf = b.value("fc.scale", (4,), F32, ValueKind.BUFFER, "fc", "scale")
    h = b.value("h", (3, 4), F32, ValueKind.ACTIVATION)
    r = b.value("r", (3, 4), F32, ValueKind.ACTIVATION)
    y = b.value("y", (3, 4), F32, ValueKind.ACTIVATION)
    b.op(OpKind.LINEAR, "aten.linear", [x, w], [h], "fc")
    b.op(OpKind.ELEMENTWISE, "aten.mul", [h, buf], [r])
    b.op(OpKind.LINEAR, "aten.linear", [r, w], [y], "fc")  # the same weight again (tied)
    result = costs(b.build([x], [y]))
    assert result.parameters == 16  # buffers are not parameters; the tied weight is one tensor
    assert result.macs == 2 * 3 * 4 * 4
    assert len(result.per_op) == 2


def test_costs_after_a_plan() -> None:
    net = Net()
    x = net.input((1, 3, 8, 8))
    h = net.bn(net.conv(x, 8, bias=True, module="conv1"), buffers=True, module="bn")
    h = net.conv(h, 4, groups=1, module="conv2")
    graph = net.build([net.linear(net.flatten(net.mean(h, (2, 3), keepdim=True)), 10, module="fc")])
    before = costs(graph)
    assert before.parameters == (8 * 27 + 8) + (8 + 8) + 4 * 8 * 9 + 10 * 4
    assert before.macs == 64 * 8 * 27 + 64 * 4 * 72 + 40
    plan = make_plan(graph, propagate(graph, DimRef(ValueId("conv1.weight"), 0), [0, 2, 5]))
    after = costs(graph, plan)
    # conv1 keeps 5 filters (and biases), bn 5 scales and shifts, conv2 5 input channels
    assert after.parameters == (5 * 27 + 5) + (5 + 5) + 4 * 5 * 9 + 10 * 4
    assert after.macs == 64 * 5 * 27 + 64 * 4 * 45 + 40
    assert before.parameters - after.parameters == plan.parameters_removed
    assert before.ratio(after) == pytest.approx((after.parameters / before.parameters, after.macs / before.macs))
    assert costs(graph) == before  # the graph itself is untouched


def test_costs_are_plain_values() -> None:
    assert Costs(0, 0, ()).ratio(Costs(0, 0, ())) == (0.0, 0.0)
    assert Costs(10, 20, ()).ratio(Costs(5, 5, ())) == (0.5, 0.25)
