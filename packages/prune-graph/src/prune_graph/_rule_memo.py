"""A graph's couplings with each repeated op worked out once.

Models repeat their layers. An op of the kind, target and attributes of one met before, whose
values have the same shapes (and repeat at the same places, as in ``x + x``), gets the same
couplings from the rules, on its own values: the rules read nothing else of an op but the
names that go into their pins' reasons and errors. So the couplings of the first such op are
kept, and every op like it gets copies with its own values and op id; the pins for dims the
rule leaves unmentioned are made with each op's own reason. A rule result with pins of its
own (their reasons name the op) is never copied.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from prune_graph._couplings import Broadcast, Coupling, FactorLink, Link, Mix, Pin
from prune_graph._ops import Op, OpId
from prune_graph._quick import quick_link, quick_pin
from prune_graph._rule_parts import ShapeOf, _ref
from prune_graph._rules import pin_reason, rule_couplings, unmentioned_pins
from prune_graph._values import DimRef, ValueId

__all__ = ["graph_couplings"]


@attrs.frozen
class _First:
    """The first op of its kind and shapes: its values, what its rule made and its unmentioned dims."""

    op: OpId
    values: tuple[ValueId, ...]
    made: list[Coupling]
    pins: list[Pin]


def graph_couplings(ops: Iterable[Op], shape: ShapeOf) -> tuple[Coupling, ...]:
    """Every op's couplings (as :func:`prune_graph.couplings_of` makes them), in op order."""
    first: dict[object, _First | None] = {}  # None: the couplings of ops like this one are not copied
    found: list[Coupling] = []
    for op in ops:
        values = (*op.inputs, *op.outputs, *op.axes)
        key = (
            op.kind,
            op.target,
            op.attrs,
            len(op.inputs),
            len(op.outputs),
            tuple(map(shape, values)),
            _repeats(values),
        )
        like = first.get(key)
        if like is not None:
            copied = _copy(like, values, op)
            if copied is not None:
                found += copied
                continue
            first[key] = None
        made = rule_couplings(op, shape)
        pins = unmentioned_pins(op, shape, made)
        if key not in first:
            first[key] = _First(op.id, values, made, pins)
        found += made
        found += pins
    return tuple(found)


def _repeats(values: tuple[ValueId, ...]) -> tuple[int, ...]:
    """Where values repeat: for each, the place it first takes (nothing when all differ)."""
    if len(set(values)) == len(values):
        return ()
    return tuple(map(values.index, values))


def _copy(like: _First, values: tuple[ValueId, ...], op: Op) -> list[Coupling] | None:
    """The couplings of ``like`` on ``op``'s values, or ``None`` when they cannot be copied (a pin
    of the rule's own, a dim of a value that is not the op's, a coupling of another op)."""
    # the same values repeat at the same places in both ops, so this maps each value one way
    value_of = dict(zip(like.values, values))

    def moved(dim: DimRef) -> DimRef:
        return _ref(value_of[dim.value], dim.dim)

    out: list[Coupling] = []
    op_id = op.id
    try:
        for c in like.made:
            if c.op != like.op:
                return None
            if type(c) is Link:  # most couplings: moved without a call
                src, dst = c.src, c.dst
                out.append(
                    quick_link(_ref(value_of[src.value], src.dim), _ref(value_of[dst.value], dst.dim), c.map, op_id)
                )
            elif type(c) is FactorLink:
                parts = tuple(None if p is None else moved(p) for p in c.parts)
                out.append(FactorLink(moved(c.fine), parts, c.sizes, op_id))
            elif type(c) is Mix:
                out.append(Mix(moved(c.dim), c.how, op_id))
            elif type(c) is Broadcast:
                out.append(Broadcast(moved(c.dim), op_id))
            else:
                return None  # a pin of the rule's own says why in the op's own words
        if like.pins:
            reason = pin_reason(op)
            out += [quick_pin(_ref(value_of[p.dim.value], p.dim.dim), reason, op_id) for p in like.pins]
    except KeyError:
        return None
    return out
