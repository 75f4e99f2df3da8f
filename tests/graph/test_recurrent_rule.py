"""The coupling rule of a fused recurrent layer (OpKind.RECURRENT: ONNX LSTM / GRU / RNN)."""

from __future__ import annotations

import pytest

from prune_graph import GraphError, OpKind

from .test_rules import couple, factor_links, identity_links, pair, pins

# seq 5, batch 2, input 6, hidden 3, LSTM gates
SEQ_FIRST = {
    "x": (5, 2, 6),
    "w": (1, 12, 6),
    "r": (1, 12, 3),
    "b": (1, 24),
    "h0": (1, 2, 3),
    "y": (5, 1, 2, 3),
    "yh": (1, 2, 3),
}


def test_every_gate_block_carries_the_hidden_units_and_w_reads_the_input():
    found = couple(OpKind.RECURRENT, SEQ_FIRST, ["x", "w", "r", "b", "h0"], ["y", "yh"], {"gates": 4})
    assert factor_links(found) == {
        ("w[1]", (None, "r[2]"), (4, 3)),
        ("r[1]", (None, "r[2]"), (4, 3)),
        ("b[1]", (None, "r[2]"), (8, 3)),
    }
    assert identity_links(found) == {
        pair("x[2]", "w[2]", 6),
        pair("x[0]", "y[0]", 5),
        pair("x[1]", "y[2]", 2),
        pair("x[1]", "h0[1]", 2),
        pair("x[1]", "yh[1]", 2),
        pair("r[2]", "y[3]", 3),
        pair("r[2]", "h0[2]", 3),
        pair("r[2]", "yh[2]", 3),
    }
    assert not pins(found)


def test_batch_first_and_two_directions_pin_the_directions():
    shapes = {
        "x": (2, 5, 6),
        "w": (2, 9, 6),
        "r": (2, 9, 3),
        "h0": (2, 2, 3),
        "y": (2, 5, 2, 3),
        "yh": (2, 2, 3),
    }
    found = couple(OpKind.RECURRENT, shapes, ["x", "w", "r", "h0"], ["y", "yh"], {"gates": 3, "batch_first": True})
    assert {pair("x[0]", "y[0]", 2), pair("x[1]", "y[1]", 5), pair("x[0]", "yh[0]", 2)} <= identity_links(found)
    assert {pair("r[2]", "y[3]", 3), pair("r[2]", "h0[2]", 3)} <= identity_links(found)
    assert set(pins(found)) == {"w[0]", "r[0]", "h0[1]", "y[2]", "yh[1]"}
    assert all("one set of weights per direction" in reason for reason in pins(found).values())


def test_weights_that_do_not_hold_the_gate_blocks_are_reported_against_the_op():
    with pytest.raises(GraphError, match=r"op0 aten.x in m: w .* do not hold 3 gate blocks of 3 hidden units"):
        couple(OpKind.RECURRENT, SEQ_FIRST, ["x", "w", "r"], ["y"], {"gates": 3})


def test_an_opaque_op_says_why_it_was_left_opaque():
    shapes = {"x": (2, 4), "y": (2, 4)}
    found = couple(OpKind.OPAQUE, shapes, ["x"], ["y"], {"why": "peepholes are not read"})
    assert pins(found)["x[1]"] == "unsupported op aten.x in m (peepholes are not read)"
