"""A concat's couplings worked out by places (prune_graph._rule_concat): the records the rule
makes, the same read by the group search without them, and the rule's errors."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from prune_graph import (
    ConcatCouplings,
    DimRef,
    Graph,
    GraphBuilder,
    GraphError,
    Link,
    OpKind,
    Pin,
    ValueKind,
    couplings_of,
)

A = ValueKind.ACTIVATION


def op_by_op(graph: Graph) -> tuple[object, ...]:
    return tuple(c for op in graph.ops for c in couplings_of(op, graph.shape))


def concat(shapes: list[tuple[int, ...]], out: tuple[int, ...], dim: int = 1, repeat_first: bool = False) -> Graph:
    b = GraphBuilder()
    inputs = [b.value(f"x{i}", shape, "float32", ValueKind.INPUT) for i, shape in enumerate(shapes)]
    if repeat_first:
        inputs.append(inputs[0])
    y = b.value("y", out, "float32", A)
    b.op(OpKind.CONCAT, "aten.cat", inputs, [y], "block", {"dim": dim})
    return b.build(inputs=[f"x{i}" for i in range(len(shapes))], outputs=[y])


def test_a_concat_is_described_and_makes_the_rules_records():
    graph = concat([(2, 3, 4, 3), (2, 5, 4, 4), (1, 2, 4, 4)], (2, 10, 4, 4))
    (part,) = graph.couplings_by_op
    assert isinstance(part, ConcatCouplings)
    assert tuple(part.couplings()) == graph.couplings == op_by_op(graph)
    # x0's last dim (3 against 4) is linked to nothing: pinned; x2's batch dim (1 against 2) has size 1
    assert part.pinned == ((0, 3),)
    pins = [(c.dim, c.reason) for c in graph.couplings if isinstance(c, Pin)]
    assert pins == [(DimRef("x0", 3), "aten.cat in block sets this dim's size itself")]
    offsets = [c.map for c in graph.couplings if isinstance(c, Link) and c.dst == DimRef("y", 1)]
    assert [(m.offset, m.src_size, m.dst_size) for m in offsets] == [(0, 3, 10), (3, 5, 10), (8, 2, 10)]


def test_a_value_concatenated_twice_keeps_its_records():
    graph = concat([(2, 3, 4)], (2, 6, 4), repeat_first=True)
    (part,) = graph.couplings_by_op
    assert not isinstance(part, ConcatCouplings)
    assert graph.couplings == op_by_op(graph)


@pytest.mark.parametrize(
    ("shapes", "out", "message"),
    [
        ([(2, 3), (2, 5)], (2, 6), r"Offset: part \[3, 8\) does not fit in size 6"),
        ([(2, 3), (2, 2)], (2, 6), "inputs have 5 channels along dim 1, output 'y' has 6"),
    ],
)
def test_a_concat_that_does_not_add_up_is_the_rules_error(
    shapes: list[tuple[int, ...]], out: tuple[int, ...], message: str
) -> None:
    graph = concat(shapes, out)
    with pytest.raises(GraphError, match=message):
        graph.couplings_by_op
    with pytest.raises(GraphError, match=message):
        couplings_of(graph.ops[0], graph.shape)


def test_a_concat_of_scalars_is_the_rules_error():
    graph = concat([()], ())
    with pytest.raises(GraphError, match="its values do not fit a concat op"):
        graph.couplings_by_op


@given(
    shapes=st.lists(st.lists(st.integers(0, 3), min_size=3, max_size=3).map(tuple), min_size=1, max_size=4),
    out=st.lists(st.integers(0, 3), min_size=2, max_size=2),
    dim=st.integers(-3, 2),
)
def test_described_concats_make_what_the_rule_makes(shapes: list[tuple[int, ...]], out: list[int], dim: int) -> None:
    axis = dim % 3
    total = sum(shape[axis] for shape in shapes)
    graph = concat(shapes, (*out[:axis], total, *out[axis:]), dim)
    try:
        expected = op_by_op(graph)
    except GraphError:
        assume(False)
    assert graph.couplings == expected
