"""A graph's couplings reuse the rule results of repeated ops: the same couplings as op by op."""

from __future__ import annotations

from prune_graph import DimRef, Graph, GraphBuilder, Link, OpKind, Pin, RepeatedCouplings, ValueKind, couplings_of

A = ValueKind.ACTIVATION
P = ValueKind.PARAMETER


def op_by_op(graph: Graph) -> tuple[object, ...]:
    return tuple(c for op in graph.ops for c in couplings_of(op, graph.shape))


def repeated_layers(layers: int = 4) -> Graph:
    """Layers alike in kind, attributes and shapes, with what makes repeats differ in subtle ways."""
    b = GraphBuilder()
    x = b.value("x", (2, 8, 4, 4), "float32", ValueKind.INPUT)
    for i in range(layers):
        m = f"layer{i}"
        w = b.value(f"{m}.w", (8, 4, 3, 3), "float32", P, m, "weight")
        y = b.value(f"{m}.conv", (2, 8, 4, 4), "float32", A)
        b.op(OpKind.CONV, "aten.convolution", [x, w], [y], m, {"groups": 2})
        gamma = b.value(f"{m}.norm.w", (8,), "float32", P, f"{m}.norm", "weight")
        z = b.value(f"{m}.norm", (2, 8, 4, 4), "float32", A)
        b.op(
            OpKind.NORM,
            "aten.group_norm",
            [y, gamma],
            [z],
            f"{m}.norm",
            {"channel_dims": (1,), "num_groups": 4, "mixes": True},
        )
        # x + y (two values) and z + z (one value twice) have the same shapes, but the couplings
        # of one cannot be filled in with the values of the other
        squared = b.value(f"{m}.squared", (2, 8, 4, 4), "float32", A)
        b.op(OpKind.ELEMENTWISE, "aten.add", [z, z], [squared], m)
        pair = b.value(f"{m}.pair", (2, 8, 4, 4), "float32", A)
        b.op(OpKind.ELEMENTWISE, "aten.add", [y, squared], [pair], m)
        same = b.value(f"{m}.twice", (2, 8, 4, 4), "float32", A)
        b.op(OpKind.ELEMENTWISE, "aten.add", [pair, pair], [same], m)
        added = b.value(f"{m}.add", (2, 8, 4, 4), "float32", A)
        b.op(OpKind.ELEMENTWISE, "aten.add", [x, same], [added], m)
        # a reshape that regroups dims pins them with the op's own words: never reused
        flat = b.value(f"{m}.regroup", (2, 4, 8, 4), "float32", A)
        b.op(OpKind.RESHAPE, "aten.view", [added], [flat], m)
        back = b.value(f"{m}.back", (2, 8, 4, 4), "float32", A)
        b.op(OpKind.RESHAPE, "aten.view", [flat], [back], m)
        # an opaque op pins every dim with a reason naming its module
        opaque = b.value(f"{m}.opaque", (2, 8, 4, 4), "float32", A)
        b.op(OpKind.OPAQUE, "custom.op", [back], [opaque], m, {"why": "no rule"})
        small = b.value(f"{m}.mean", (2, 8, 1, 1), "float32", A)
        b.op(OpKind.REDUCE, "aten.mean", [added], [small], m, {"dims": (2, 3), "keepdim": True})
        wide = b.value(f"{m}.expand", (2, 8, 4, 4), "float32", A)
        b.op(OpKind.EXPAND, "aten.expand", [small], [wide], m)
        x = b.value(f"{m}.out", (2, 8, 4, 4), "float32", A)
        b.op(OpKind.ELEMENTWISE, "aten.mul", [wide, opaque], [x], m)
    return b.build(inputs=["x"], outputs=[x])


def test_repeated_ops_get_the_couplings_their_rules_give():
    graph = repeated_layers()
    assert graph.couplings == op_by_op(graph)


def test_pins_name_each_op_of_a_repeat():
    graph = repeated_layers()
    reasons = {c.reason for c in graph.couplings if isinstance(c, Pin) and "custom.op" in c.reason}
    assert reasons == {f"unsupported op custom.op in layer{i} (no rule)" for i in range(4)}


def test_repeats_are_described_without_records_and_make_the_same_records():
    graph = repeated_layers()
    parts = graph.couplings_by_op
    assert len(parts) == len(graph.ops)
    repeats = [p for p in parts if isinstance(p, RepeatedCouplings)]
    assert len(repeats) >= 3  # the plain ops of the later layers
    made = tuple(c for p in parts for c in (p.couplings() if isinstance(p, RepeatedCouplings) else p))
    assert made == graph.couplings == op_by_op(graph)
    for repeat in repeats:
        links = [c for c in repeat.couplings() if isinstance(c, Link)]
        assert [(c.src, c.dst) for c in links] == [
            (DimRef(repeat.values[a], da), DimRef(repeat.values[b], db)) for a, da, b, db in repeat.links
        ]
        pins = [c for c in repeat.couplings() if isinstance(c, Pin)]
        assert [(c.dim, c.reason, c.op) for c in pins] == [
            (DimRef(repeat.values[i], d), repeat.reason, repeat.op.id) for i, d in repeat.pinned
        ]
