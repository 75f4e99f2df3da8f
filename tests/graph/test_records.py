"""Records: Value, Op, DimRef, couplings. Frozen, converted to tuples, strict about their input."""

from __future__ import annotations

import attrs
import pytest

from prune_graph import (
    DimRef,
    FactorLink,
    Graph,
    GraphError,
    Identity,
    Link,
    Op,
    OpId,
    OpKind,
    Pin,
    Value,
    ValueId,
    ValueKind,
)


def value(shape=(2, 3), kind=ValueKind.ACTIVATION, **kw):
    return Value(ValueId(kw.pop("id", "v")), shape, kw.pop("dtype", "float32"), kind, **kw)


def op(kind=OpKind.ELEMENTWISE, inputs=("a",), outputs=("b",), **kw):
    return Op(OpId(kw.pop("id", "op0")), kind, kw.pop("target", "aten.relu"), inputs, outputs, **kw)


def test_graph_error_is_a_value_error():
    assert issubclass(GraphError, ValueError)


# -- Value -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((2, -1), r"'shape' must hold non-negative ints \(got \(2, -1\)\)"),
        ((2, 3.0), r"'shape' must hold non-negative ints"),
        ((2, "3"), r"'shape' must hold non-negative ints"),
        ((True, 3), r"'shape' must hold non-negative ints"),
        ((2, None), r"'shape' must hold non-negative ints"),
        ("23", r"'shape' must be a sequence of sizes \(got '23'\)"),
        (6, r"'shape' must be a sequence of sizes \(got 6\)"),
        ({2, 3}, r"'shape' must be a sequence of sizes"),
    ],
)
def test_value_rejects_bad_shapes(shape, message):
    with pytest.raises(GraphError, match=message):
        value(shape)


def test_value_kind_must_be_a_value_kind():
    with pytest.raises(GraphError, match=r"'kind' must be a ValueKind \(INPUT, .*\) \(got 'input'"):
        value(kind="input")
    with pytest.raises(GraphError, match=r"'kind' must be a ValueKind"):
        value(kind=OpKind.CONV)


def test_value_converts_shapes_to_tuples_and_derives_its_views():
    v = Value(ValueId("conv.weight"), [8, 3, 3, 3], "float32", ValueKind.PARAMETER, "conv", "weight")
    assert v.shape == (8, 3, 3, 3)
    assert isinstance(v.shape, tuple)
    assert v.rank == 4
    assert v.path == "conv.weight"
    assert v.is_state
    assert value(()).rank == 0
    assert value(kind=ValueKind.INPUT, id="x").path == "x"
    assert Value(ValueId("p"), (2,), "f", ValueKind.PARAMETER, "", "cls_token").path == "cls_token"
    assert [k for k in ValueKind if value(kind=k).is_state] == [
        ValueKind.PARAMETER,
        ValueKind.BUFFER,
        ValueKind.VIRTUAL,
    ]


def test_value_is_frozen_and_changes_through_evolve():
    v = value((2, 3))
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        v.shape = (4,)  # type: ignore[misc]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        v.kind = ValueKind.INPUT  # type: ignore[misc]
    assert attrs.evolve(v, shape=[4]).shape == (4,)
    with pytest.raises(GraphError, match="'shape' must hold non-negative ints"):
        attrs.evolve(v, shape=(-4,))
    assert v.shape == (2, 3)
    assert hash(v) == hash(value((2, 3)))


# -- Op --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"inputs": "ab"}, r"value id lists must be sequences of str \(got 'ab'\)"),
        ({"inputs": ("a", 3)}, r"value ids must be str \(got 3\)"),
        ({"outputs": None}, r"value id lists must be sequences of str \(got None\)"),
        ({"axes": ("g", None)}, r"value ids must be str \(got None\)"),
        ({"attrs": {"dim": {1: 2}}}, r"op attributes must be plain data \(got dict"),
        ({"attrs": {"dim": object}}, r"op attributes must be plain data \(got type"),
        ({"attrs": {1: 2}}, r"attribute names must be str \(got 1\)"),
        ({"attrs": "dim=1"}, r"'attrs' must be a mapping or \(name, value\) pairs \(got 'dim=1'\)"),
        ({"attrs": [("dim", 1), ("dim", 2)]}, r"attribute 'dim' given twice"),
    ],
)
def test_op_rejects_bad_input(kw, message):
    with pytest.raises(GraphError, match=message):
        op(**kw)


def test_op_kind_must_be_an_op_kind():
    with pytest.raises(GraphError, match=r"'kind' must be an OpKind \(CONV, .*\) \(got 'conv'"):
        op(kind="conv")


def test_op_converts_sequences_to_tuples_and_sorts_attributes():
    o = op(inputs=["a", "w"], outputs=["y"], attrs={"stride": [1, [2, 3]], "groups": 2, "eps": 1e-5}, axes=["g", "w"])
    assert o.inputs == ("a", "w")
    assert o.outputs == ("y",)
    assert o.axes == ("g", "w")
    assert o.attrs == (("eps", 1e-5), ("groups", 2), ("stride", (1, (2, 3))))
    assert o == op(
        inputs=("a", "w"),
        outputs=("y",),
        attrs=[("groups", 2), ("stride", (1, (2, 3))), ("eps", 1e-5)],
        axes=("g", "w"),
    )
    assert o.attr("groups") == 2
    assert o.attr("missing", "fallback") == "fallback"
    assert o.int_attr("groups") == 2
    assert o.int_attr("dilation", 1) == 1
    assert o.ints_attr("missing") == ()


def test_op_typed_attribute_getters_name_the_op():
    o = op(
        id="op7", target="aten.conv2d", owner="layer1.conv", attrs={"groups": "2", "stride": (1, True), "flag": True}
    )
    with pytest.raises(GraphError, match=r"op op7 \(aten.conv2d in layer1.conv\): attribute 'groups' must be an int"):
        o.int_attr("groups")
    with pytest.raises(GraphError, match=r"attribute 'flag' must be an int \(got True\)"):
        o.int_attr("flag")
    with pytest.raises(GraphError, match=r"op op7 .*attribute 'dim' must be an int \(got None\)"):
        o.int_attr("dim")
    with pytest.raises(GraphError, match=r"attribute 'stride' must be ints"):
        o.ints_attr("stride")
    assert o.where == "op7 aten.conv2d in layer1.conv"
    assert op().where == "op0 aten.relu in <root>"


def test_op_is_frozen():
    o = op()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        o.inputs = ("c",)  # type: ignore[misc]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        o.attrs = ()  # type: ignore[misc]
    assert hash(o) == hash(op())


# -- DimRef ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dim", [-1, 1.0, True, "0", None])
def test_dimref_rejects_bad_dims_and_names_the_value(dim):
    with pytest.raises(GraphError, match=rf"'dim' must be a non-negative int \(got {dim!r} for value 'x'\)"):
        DimRef(ValueId("x"), dim)


def test_dimref_orders_prints_and_freezes():
    refs = [DimRef(ValueId("b"), 0), DimRef(ValueId("a"), 2), DimRef(ValueId("a"), 1)]
    assert sorted(refs) == [DimRef(ValueId("a"), 1), DimRef(ValueId("a"), 2), DimRef(ValueId("b"), 0)]
    assert str(DimRef(ValueId("x"), 3)) == "x[3]"
    ref = DimRef(ValueId("x"), 1)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        ref.dim = 2  # type: ignore[misc]
    assert {ref: 1}[DimRef(ValueId("x"), 1)] == 1


# -- couplings -------------------------------------------------------------------------------

FINE = DimRef(ValueId("y"), 2)
HEADS = DimRef(ValueId("heads"), 0)
DIMS = DimRef(ValueId("y4"), 3)


@pytest.mark.parametrize(
    ("parts", "sizes", "message"),
    [
        ((HEADS,), (4,), r"FactorLink of y\[2\]: needs two or more parts with one size each \(got 1 parts, 1 sizes\)"),
        ((HEADS, DIMS), (4,), r"\(got 2 parts, 1 sizes\)"),
        ((HEADS, DIMS), (4, 2, 2), r"\(got 2 parts, 3 sizes\)"),
        ((), (), r"\(got 0 parts, 0 sizes\)"),
        ((HEADS, DIMS), (4, 0), r"FactorLink of y\[2\]: sizes must be positive ints \(got \(4, 0\)\)"),
        ((HEADS, DIMS), (4, 2.0), r"sizes must be positive ints"),
        ((HEADS, "y4"), (4, 2), r"'parts' must hold DimRef or None \(got 'y4'\)"),
        (HEADS, (4, 2), r"'parts' must be a sequence of DimRef or None"),
    ],
)
def test_factor_link_rejects_mismatched_parts_and_sizes(parts, sizes, message):
    with pytest.raises(GraphError, match=message):
        FactorLink(FINE, parts, sizes)


def test_factor_link_converts_and_derives():
    link = FactorLink(FINE, [HEADS, None], [4, 2])
    assert link.parts == (HEADS, None)
    assert link.sizes == (4, 2)
    assert link.size == 8
    assert link.part_map(0).forward((1,)) == (2, 3)
    assert link.part_map(1).forward((1,)) == (1, 3, 5, 7)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        link.sizes = (8,)  # type: ignore[misc]


def test_links_and_pins_are_frozen_values():
    link = Link(DimRef(ValueId("a"), 1), DimRef(ValueId("b"), 1), Identity(3), OpId("op0"))
    pin = Pin(DimRef(ValueId("a"), 2), "unsupported op op0", OpId("op0"))
    assert link == Link(DimRef(ValueId("a"), 1), DimRef(ValueId("b"), 1), Identity(3), OpId("op0"))
    assert len({link, pin, pin}) == 2
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        link.map = Identity(4)  # type: ignore[misc]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        pin.reason = ""  # type: ignore[misc]


# -- Graph as a record -----------------------------------------------------------------------


def test_graph_rejects_duplicate_ids_and_foreign_items():
    a = value(id="a", kind=ValueKind.INPUT)
    with pytest.raises(GraphError, match=r"duplicate value id 'a'"):
        Graph([a, a], [], ["a"], ["a"])
    relu = op(inputs=("a",), outputs=("b",))
    with pytest.raises(GraphError, match=r"duplicate op id 'op0'"):
        Graph([a, value(id="b")], [relu, relu], ["a"], ["b"])
    with pytest.raises(GraphError, match=r"Value.*\(got str: 'a'\)"):
        Graph(["a"], [], [], [])
    with pytest.raises(GraphError, match=r"Op.*\(got Value"):
        Graph([a], [a], [], [])


def test_graph_is_frozen_with_tuple_fields():
    a = value(id="a", kind=ValueKind.INPUT)
    graph = Graph([a], [], ["a"], ["a"])
    assert graph.values == (a,)
    assert graph.ops == ()
    assert graph.inputs == graph.outputs == ("a",)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        graph.ops = ()  # type: ignore[misc]
