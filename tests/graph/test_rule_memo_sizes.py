"""Ops alike but for sizes, in the same pattern of sizes, reuse the links and pins of the first:
the same couplings as op by op (prune_graph._rule_memo, size-blind rules)."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from prune_graph import (
    AttrValue,
    Graph,
    GraphBuilder,
    GraphError,
    Link,
    OpKind,
    Pin,
    RepeatedCouplings,
    ValueKind,
)
from prune_graph._rule_memo import flat_couplings

from .test_rule_memo import op_by_op

A = ValueKind.ACTIVATION
P = ValueKind.PARAMETER


def dense_block(layers: int = 4) -> Graph:
    """A dense block: every layer reads all earlier features, so no two layers have the same shapes."""
    b = GraphBuilder()
    features = [b.value("x", (2, 8, 5, 5), "float32", ValueKind.INPUT)]
    channels = 8
    for i in range(layers):
        m = f"layer{i}"
        x = b.value(f"{m}.cat", (2, channels, 5, 5), "float32", A)
        b.op(OpKind.CONCAT, "aten.cat", features, [x], m, {"dim": 1})
        params = [b.value(f"{m}.norm.{n}", (channels,), "float32", P, f"{m}.norm", n) for n in ("weight", "bias")]
        z = b.value(f"{m}.norm", (2, channels, 5, 5), "float32", A)
        b.op(OpKind.NORM, "aten.batch_norm", [x, *params], [z], f"{m}.norm", {"channel_dims": (1,)})
        r = b.value(f"{m}.relu", (2, channels, 5, 5), "float32", A)
        b.op(OpKind.ELEMENTWISE, "aten.relu", [z], [r], m)
        w = b.value(f"{m}.conv.weight", (4, channels, 3, 3), "float32", P, f"{m}.conv", "weight")
        y = b.value(f"{m}.conv", (2, 4, 5, 5), "float32", A)
        b.op(OpKind.CONV, "aten.convolution", [r, w], [y], f"{m}.conv", {"groups": 1})
        features.append(y)
        channels += 4
    pooled = b.value("pool", (2, channels, 1, 1), "float32", A)
    out = b.value("out", (2, channels, 5, 5), "float32", A)
    b.op(OpKind.CONCAT, "aten.cat", features, [out], "", {"dim": 1})
    b.op(OpKind.POOL, "aten.adaptive_avg_pool2d", [out], [pooled], "", {"dims": (2, 3)})
    return b.build(inputs=["x"], outputs=[pooled])


def test_layers_of_growing_width_repeat_the_first():
    graph = dense_block()
    assert graph.couplings == op_by_op(graph)
    repeats = [p for p in graph.couplings_by_op if isinstance(p, RepeatedCouplings)]
    # the norm, relu and conv of every layer after the first
    assert sorted(p.op.kind.name for p in repeats) == ["CONV"] * 3 + ["ELEMENTWISE"] * 3 + ["NORM"] * 3
    assert flat_couplings(graph.couplings_by_op) == graph.couplings


def test_a_size_that_meets_another_breaks_the_pattern():
    # 5 channels, as wide as the image: other equalities, so another pattern (its own rule run)
    b = GraphBuilder()
    for i, channels in enumerate((8, 5)):
        x = b.value(f"x{i}", (2, channels, 5, 5), "float32", ValueKind.INPUT)
        w = b.value(f"w{i}", (channels,), "float32", P, f"n{i}", "weight")
        y = b.value(f"y{i}", (2, channels, 5, 5), "float32", A)
        b.op(OpKind.NORM, "aten.batch_norm", [x, w], [y], f"n{i}", {"channel_dims": (1,)})
    graph = b.build(inputs=["x0", "x1"], outputs=["y0", "y1"])
    assert not any(isinstance(p, RepeatedCouplings) for p in graph.couplings_by_op)
    assert graph.couplings == op_by_op(graph)


# the size-blind kinds, each with the attributes that keep it so and the ranks of its inputs and output
_OPS: list[tuple[OpKind, dict[str, AttrValue], tuple[int, ...]]] = [
    (OpKind.CONV, {"groups": 1}, (4, 4, 4)),
    (OpKind.CONV, {"groups": 1}, (3, 3, 1, 3)),
    (OpKind.CONV, {"groups": 1, "transposed": True}, (4, 4, 4)),
    (OpKind.NORM, {"channel_dims": (1,)}, (4, 1, 1, 4)),
    (OpKind.NORM, {"channel_dims": (1,), "num_groups": 1, "statistic_dims": (0,)}, (3, 1, 3)),
    (OpKind.NORM, {"channel_dims": (2,), "mixes": True}, (3, 1, 3)),
    (OpKind.NORM, {"channel_dims": (1, 2)}, (3, 2, 3)),
    (OpKind.LINEAR, {}, (3, 2, 3)),
    (OpKind.LINEAR, {"weight_in_out": True}, (2, 2, 1, 2)),
    (OpKind.ELEMENTWISE, {}, (2, 2)),
    (OpKind.ELEMENTWISE, {}, (3, 1, 3)),
    (OpKind.ELEMENTWISE, {}, (4, 2, 3, 4)),
    (OpKind.POOL, {"dims": (2,)}, (3, 3)),
    (OpKind.POOL, {"dims": (2, 3)}, (4, 4)),
]


def _name(spec: tuple[OpKind, dict[str, AttrValue], tuple[int, ...]]) -> str:
    kind, attributes, ranks = spec
    return "-".join([kind.name, *attributes, "".join(map(str, ranks))])


@pytest.mark.parametrize("spec", _OPS, ids=_name)
@given(data=st.data(), moved=st.permutations(range(2, 9)))
def test_ops_in_the_same_pattern_get_what_their_rule_gives(
    spec: tuple[OpKind, dict[str, AttrValue], tuple[int, ...]], data: st.DataObject, moved: list[int]
) -> None:
    kind, attributes, ranks = spec
    shapes = [data.draw(st.lists(st.integers(0, 3), min_size=rank, max_size=rank).map(tuple)) for rank in ranks]
    # the second op's sizes: every size but 0 and 1 sent to another, one to one (the same pattern)
    move = {size: moved[size - 2] if size > 1 else size for size in range(4)}
    b = GraphBuilder()
    for i in range(2):
        sizes = [shape if i == 0 else tuple(move[s] for s in shape) for shape in shapes]
        values = [b.value(f"v{i}.{j}", shape, "float32", A) for j, shape in enumerate(sizes)]
        b.op(kind, "t", values[:-1], values[-1:], f"m{i}", attributes)
    graph = b.build(inputs=[], outputs=[])
    try:
        expected = op_by_op(graph)
    except GraphError:
        assume(False)  # shapes the rule refuses
    assert graph.couplings == expected
    first, second = graph.couplings_by_op
    if all(type(c) in (Link, Pin) for c in first):  # only links and pins: the second is described
        assert isinstance(second, RepeatedCouplings)
