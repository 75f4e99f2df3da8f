"""Records made by the thousand, made without attrs' ``__init__``.

A frozen attrs ``__init__`` sets each field through a bound ``object.__setattr__`` (and runs the
converters and validators); the rules make a ``DimRef``, ``Link`` or ``Pin`` for every dim an op
couples, which was about half the cost of a graph's couplings, and a trace makes a ``Value`` and
an ``Op`` for every call it records. These write the slots directly. They make the
same records (equal, same hash, same repr: a test checks each against the class) and run only
the checks their callers do not already guarantee.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from itertools import repeat

from prune_graph._couplings import Link, Pin
from prune_graph._index_maps import IndexMapLike
from prune_graph._ops import AttrValue, Op, OpId, OpKind, _to_attrs
from prune_graph._values import DimRef, Value, ValueId, ValueKind

__all__ = ["quick_link", "quick_op", "quick_pin", "quick_ref", "quick_refs", "quick_value"]

_new = object.__new__


def _setter(cls: type, name: str) -> Callable[[object, object], None]:
    setter: Callable[[object, object], None] = cls.__dict__[name].__set__
    return setter  # the slot's own descriptor: no frozen __setattr__ on the way


try:
    _ref_value, _ref_dim, _ref_hash = (_setter(DimRef, n) for n in ("value", "dim", "_attrs_cached_hash"))
    _link_src, _link_dst, _link_map, _link_op = (_setter(Link, n) for n in ("src", "dst", "map", "op"))
    _pin_dim, _pin_reason, _pin_op = (_setter(Pin, n) for n in ("dim", "reason", "op"))
    _value_id, _value_shape, _value_dtype, _value_kind, _value_owner, _value_name = (
        _setter(Value, n) for n in ("id", "shape", "dtype", "kind", "owner", "name")
    )
    _op_id, _op_kind, _op_target, _op_inputs, _op_outputs, _op_owner, _op_attrs, _op_axes = (
        _setter(Op, n) for n in ("id", "kind", "target", "inputs", "outputs", "owner", "attrs", "axes")
    )
    _SLOTS = True
except KeyError:  # an attrs release that lays out its classes otherwise: the classes' own __init__
    _SLOTS = False


def quick_ref(value: ValueId, dim: int) -> DimRef:
    """``DimRef(value, dim)``; anything but a non-negative int goes through the class (and its error)."""
    if not _SLOTS or type(dim) is not int or dim < 0:
        return DimRef(value, dim)
    ref = _new(DimRef)
    _ref_value(ref, value)
    _ref_dim(ref, dim)
    _ref_hash(ref, None)
    return ref


def quick_link(src: DimRef, dst: DimRef, index_map: IndexMapLike, op: OpId | None) -> Link:
    """``Link(src, dst, index_map, op)`` (Link has no validator to run)."""
    if not _SLOTS:
        return Link(src, dst, index_map, op)
    link = _new(Link)
    _link_src(link, src)
    _link_dst(link, dst)
    _link_map(link, index_map)
    _link_op(link, op)
    return link


def quick_pin(dim: DimRef, reason: str, op: OpId | None) -> Pin:
    """``Pin(dim, reason, op)`` (Pin has no validator to run)."""
    if not _SLOTS:
        return Pin(dim, reason, op)
    pin = _new(Pin)
    _pin_dim(pin, dim)
    _pin_reason(pin, reason)
    _pin_op(pin, op)
    return pin


def _names(ids: tuple[str, ...]) -> bool:
    if type(ids) is not tuple:
        return False
    for i in ids:  # noqa: SIM110 (a loop, not all(): no generator per call, on a hot path)
        if type(i) is not str:
            return False
    return True


def _sizes(shape: tuple[int, ...]) -> bool:
    if type(shape) is not tuple:
        return False
    for size in shape:  # noqa: SIM110 (a loop, not all(): no generator per call, on a hot path)
        if type(size) is not int or size < 0:
            return False
    return True


def quick_value(value_id: ValueId, shape: tuple[int, ...], dtype: str, kind: ValueKind, owner: str, name: str) -> Value:
    """``Value(...)``; a shape other than a tuple of sizes, or a kind that is not a ValueKind, goes through the class."""
    if (
        not _SLOTS
        or type(kind) is not ValueKind
        or not _sizes(shape)
        or not (type(value_id) is str and type(dtype) is str and type(owner) is str and type(name) is str)
    ):
        return Value(value_id, shape, dtype, kind, owner, name)
    value = _new(Value)
    _value_id(value, value_id)
    _value_shape(value, shape)
    _value_dtype(value, dtype)
    _value_kind(value, kind)
    _value_owner(value, owner)
    _value_name(value, name)
    return value


def quick_op(
    op_id: OpId,
    kind: OpKind,
    target: str,
    inputs: tuple[str, ...],
    outputs: tuple[str, ...],
    owner: str,
    attrs: dict[str, AttrValue],
    axes: tuple[str, ...],
) -> Op:
    """``Op(...)``; ids in anything but tuples of str, or a kind that is not an OpKind, go through the class."""
    if not _SLOTS or type(kind) is not OpKind or not (_names(inputs) and _names(outputs) and _names(axes)):
        return Op(op_id, kind, target, inputs, outputs, owner, attrs, axes)
    op = _new(Op)
    _op_id(op, op_id)
    _op_kind(op, kind)
    _op_target(op, target)
    _op_inputs(op, inputs)
    _op_outputs(op, outputs)
    _op_owner(op, owner)
    _op_attrs(op, _to_attrs(attrs))  # the class's own converter: its checks and its errors
    _op_axes(op, axes)
    return op


def quick_refs(values: Sequence[ValueId], dims: Sequence[int]) -> list[DimRef]:
    """``[DimRef(v, d) for v, d in zip(values, dims)]``, with no Python call per record (the group
    search names a few thousand dims at once); dims other than non-negative ints go through the class."""
    if len(values) != len(dims):
        raise ValueError(f"quick_refs: {len(values)} values for {len(dims)} dims")
    if not _SLOTS or not dims or not set(map(type, dims)) <= {int} or min(dims) < 0:
        return [DimRef(value, dim) for value, dim in zip(values, dims)]
    refs = list(map(_new, repeat(DimRef, len(dims))))
    deque(map(_ref_value, refs, values), 0)
    deque(map(_ref_dim, refs, dims), 0)
    deque(map(_ref_hash, refs, repeat(None, len(dims))), 0)
    return refs
