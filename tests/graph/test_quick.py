"""Records made without attrs' __init__ are the records the classes make."""

from __future__ import annotations

import attrs
import pytest

from prune_graph import DimRef, GraphError, Identity, Link, Op, OpId, OpKind, Pin, Value, ValueId, ValueKind
from prune_graph._quick import quick_link, quick_op, quick_pin, quick_ref, quick_value


def same_record(quick: object, made: object) -> None:
    assert type(quick) is type(made)
    assert quick == made
    assert hash(quick) == hash(made)
    assert repr(quick) == repr(made)
    # every field is written: a field added to the class must be added to its quick maker too
    assert all(getattr(quick, f.name) == getattr(made, f.name) for f in attrs.fields(type(made)))


def test_quick_records_equal_the_classes() -> None:
    a, b = quick_ref(ValueId("a"), 1), quick_ref(ValueId("b"), 0)
    same_record(a, DimRef(ValueId("a"), 1))
    assert a < b  # ordered like the class
    same_record(quick_link(a, b, Identity(3), OpId("op0")), Link(a, b, Identity(3), OpId("op0")))
    same_record(quick_link(a, b, Identity(3), None), Link(a, b, Identity(3)))
    same_record(quick_pin(a, "why", OpId("op0")), Pin(a, "why", OpId("op0")))
    same_record(quick_pin(a, "why", None), Pin(a, "why"))
    value = Value(ValueId("x"), (2,), "float32", ValueKind.INPUT)
    same_record(quick_value(ValueId("x"), (2,), "float32", ValueKind.INPUT, "", ""), value)
    op = Op(OpId("op0"), OpKind.CONV, "t", (ValueId("x"),), (), "", {"groups": 2})
    same_record(quick_op(OpId("op0"), OpKind.CONV, "t", (ValueId("x"),), (), "", {"groups": 2}, ()), op)


def test_quick_records_stay_frozen() -> None:
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        quick_ref(ValueId("a"), 1).dim = 2  # type: ignore[misc]


@pytest.mark.parametrize("dim", [-1, True, 1.0, "1"])
def test_a_quick_ref_of_a_bad_dim_is_the_class_error(dim: object) -> None:
    with pytest.raises(GraphError, match="'dim' must be a non-negative int"):
        quick_ref(ValueId("a"), dim)  # type: ignore[arg-type]


def test_without_the_slots_the_classes_make_the_records(monkeypatch: pytest.MonkeyPatch) -> None:
    # an attrs release with another class layout: the makers fall back to the classes themselves
    from prune_graph import _quick

    monkeypatch.setattr(_quick, "_SLOTS", False)
    a, b = quick_ref(ValueId("a"), 1), quick_ref(ValueId("b"), 0)
    same_record(a, DimRef(ValueId("a"), 1))
    same_record(quick_link(a, b, Identity(3), None), Link(a, b, Identity(3)))
    same_record(quick_pin(a, "why", None), Pin(a, "why"))
    value = Value(ValueId("x"), (2,), "float32", ValueKind.INPUT)
    same_record(quick_value(ValueId("x"), (2,), "float32", ValueKind.INPUT, "", ""), value)
    op = Op(OpId("op0"), OpKind.CONV, "t", (ValueId("x"),), (), "", {"groups": 2})
    same_record(quick_op(OpId("op0"), OpKind.CONV, "t", (ValueId("x"),), (), "", {"groups": 2}, ()), op)


def test_quick_values_and_ops_equal_the_classes() -> None:
    args = (ValueId("x"), (2, 3), "float32", ValueKind.ACTIVATION, "layer", "")
    same_record(quick_value(*args), Value(*args))
    attributes = {"groups": 2, "dims": [1, 2], "mixes": False}
    inputs, outputs = (ValueId("x"), ValueId("w")), (ValueId("y"),)
    made = Op(OpId("op0"), OpKind.CONV, "aten.convolution", inputs, outputs, "layer", attributes, ())
    same_record(quick_op(OpId("op0"), OpKind.CONV, "aten.convolution", inputs, outputs, "layer", attributes, ()), made)
    assert made.attr("dims") == (1, 2)  # lists frozen as the class freezes them


@pytest.mark.parametrize(
    ("shape", "kind", "message"),
    [
        ((2, -1), "ACTIVATION", "non-negative ints"),
        ([2, 3.0], "ACTIVATION", "non-negative ints"),
        ((2,), "activation", "'kind' must be a ValueKind"),
    ],
)
def test_a_quick_value_of_bad_fields_is_the_class_error(shape: object, kind: str, message: str) -> None:
    with pytest.raises(GraphError, match=message):
        quick_value(ValueId("x"), shape, "float32", getattr(ValueKind, kind, kind), "", "")  # type: ignore[arg-type]


def test_a_quick_op_of_bad_fields_is_the_class_error() -> None:
    with pytest.raises(GraphError, match="'kind' must be an OpKind"):
        quick_op(OpId("op0"), "conv", "t", (), (), "", {}, ())  # type: ignore[arg-type]
    with pytest.raises(GraphError, match="value ids must be str"):
        quick_op(OpId("op0"), OpKind.CONV, "t", (ValueId("x"), 3), (), "", {}, ())  # type: ignore[arg-type]
    with pytest.raises(GraphError, match="plain data"):
        quick_op(OpId("op0"), OpKind.CONV, "t", (), (), "", {"f": object()}, ())


def test_quick_refs_equal_the_class_in_bulk(monkeypatch: pytest.MonkeyPatch) -> None:
    from prune_graph import _quick
    from prune_graph._quick import quick_refs

    values, dims = [ValueId("a"), ValueId("b"), ValueId("a")], [1, 0, 3]
    for made, ref in zip(quick_refs(values, dims), [DimRef(v, d) for v, d in zip(values, dims)], strict=True):
        same_record(made, ref)
    assert quick_refs([], []) == []
    with pytest.raises(GraphError, match="'dim' must be a non-negative int"):
        quick_refs([ValueId("a")], [-1])
    with pytest.raises(ValueError, match="2 values for 1 dims"):
        quick_refs([ValueId("a"), ValueId("b")], [0])
    monkeypatch.setattr(_quick, "_SLOTS", False)
    same_record(quick_refs([ValueId("a")], [2])[0], DimRef(ValueId("a"), 2))
