"""Graphs built again, ops and concats met before (prune_graph._rule_concat._DESCRIBED): the same
couplings, and the same parts, as when their rules run."""

from __future__ import annotations

import attrs
import pytest
from tests.graph.test_rule_memo import repeated_layers
from tests.graph.test_rule_memo_sizes import dense_block

from prune_graph import (
    ConcatCouplings,
    Graph,
    GraphBuilder,
    GraphError,
    OpKind,
    RepeatedCouplings,
    ValueKind,
    _rule_concat,
    _rule_memo,
    couplings_of,
)

A = ValueKind.ACTIVATION
P = ValueKind.PARAMETER


def _op_by_op(graph: Graph) -> tuple[object, ...]:
    return tuple(c for op in graph.ops for c in couplings_of(op, graph.shape))


def _part_types(graph: Graph) -> list[str]:
    return [type(p).__name__ for p in graph.couplings_by_op]


def test_a_graph_built_again_gets_the_same_parts_and_records() -> None:
    for make in (repeated_layers, dense_block):
        _rule_concat._DESCRIBED.clear()
        first = make()
        types = _part_types(first)
        for _ in range(3):
            again = make()
            assert _part_types(again) == types
            assert again.couplings == first.couplings == _op_by_op(again)


def _norm(name: str, channels: int, module: str) -> Graph:
    b = GraphBuilder()
    x = b.value(f"{name}.x", (2, channels, 5, 5), "float32", ValueKind.INPUT)
    w = b.value(f"{name}.w", (channels,), "float32", P, module, "weight")
    y = b.value(f"{name}.y", (2, channels, 5, 5), "float32", A)
    b.op(OpKind.NORM, "aten.batch_norm", [x, w], [y], module, {"channel_dims": (1,)})
    return b.build(inputs=[x], outputs=[y])


def test_an_op_met_before_gets_its_own_values_op_and_reasons() -> None:
    for i in range(3):  # another graph each time, with other names and the same kind of op
        graph = _norm(f"g{i}", 8, f"norm{i}")
        assert _part_types(graph) == ["list"]
        assert graph.couplings == _op_by_op(graph)
        assert all(c.op == graph.ops[0].id for c in graph.couplings)


def _concat(name: str, module: str, widths: tuple[int, ...] = (3, 5)) -> Graph:
    b = GraphBuilder()
    xs = [b.value(f"{name}.x{i}", (2, w, 4, 4), "float32", ValueKind.INPUT) for i, w in enumerate(widths)]
    y = b.value(f"{name}.y", (2, sum(widths), 4, 4), "float32", A)
    b.op(OpKind.CONCAT, "aten.cat", xs, [y], module, {"dim": 1})
    return b.build(inputs=xs, outputs=[y])


def test_a_concat_met_before_gets_its_own_values_op_and_reasons() -> None:
    _rule_concat._DESCRIBED.clear()
    for i in range(3):
        graph = _concat(f"g{i}", f"cat{i}")
        (part,) = graph.couplings_by_op
        assert isinstance(part, ConcatCouplings)
        assert part.values == (*graph.ops[0].inputs, *graph.ops[0].outputs)
        assert graph.couplings == _op_by_op(graph)
    assert len(_rule_concat._DESCRIBED) == 1


def test_a_bad_concat_still_fails_after_good_ones() -> None:
    _concat("good", "cat")
    b = GraphBuilder()
    xs = [b.value(f"x{i}", (2, 3, 4, 4), "float32", ValueKind.INPUT) for i in range(2)]
    y = b.value("y", (2, 7, 4, 4), "float32", A)
    b.op(OpKind.CONCAT, "aten.cat", xs, [y], "cat", {"dim": 1})
    with pytest.raises(GraphError, match="inputs have 6 channels"):
        b.build(inputs=xs, outputs=[y]).couplings_by_op


def test_the_concat_memo_starts_over_when_full(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_rule_concat, "_DESCRIBED_MAX", 2)
    _rule_concat._DESCRIBED.clear()
    for widths in ((1, 2), (2, 3), (3, 4), (4, 5)):
        graph = _concat("g", "cat", widths)
        assert graph.couplings == _op_by_op(graph)
        assert len(_rule_concat._DESCRIBED) <= 2


def test_repeats_made_in_bulk_equal_repeats_made_by_init() -> None:
    graph = repeated_layers()
    for part in graph.couplings_by_op:
        if isinstance(part, RepeatedCouplings):
            made = _rule_memo._repeated(part.op, part.values, part.plan, part._shapes)
            expected = RepeatedCouplings(part.op, part.values, part.plan, part._shapes)
            assert type(made) is RepeatedCouplings
            assert made.couplings() == expected.couplings()
            assert [getattr(made, f.name) for f in attrs.fields(RepeatedCouplings)] == [
                getattr(expected, f.name) for f in attrs.fields(RepeatedCouplings)
            ]
    # every field is set: a field added to RepeatedCouplings must be added to _repeated too
    assert [f.name for f in attrs.fields(RepeatedCouplings)] == ["op", "values", "plan", "_shapes"]
