"""A graph's couplings with each repeated op worked out once.

Models repeat their layers. An op of the kind, target and attributes of one met before, whose
values have the same shapes (and repeat at the same places, as in ``x + x``), gets the same
couplings from the rules, on its own values: the rules read nothing else of an op but the
names that go into their pins' reasons and errors. So a rule result without pins is kept as a
template of (place among the op's values, dim) and filled in for every op like it; the pins
for unmentioned dims are made again with each op's own reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple, Union

from prune_graph._couplings import Broadcast, Coupling, FactorLink, Link, Mix, Mixing, Pin
from prune_graph._index_maps import IndexMapLike
from prune_graph._ops import Op
from prune_graph._rule_parts import ShapeOf, _ref
from prune_graph._rules import pin_reason, rule_couplings, unmentioned_pins
from prune_graph._values import DimRef, ValueId

__all__ = ["graph_couplings"]

_Place = tuple[int, int]  # (index among the op's values, dim)


# one coupling of a template: its fields, with places for dims
class _LinkAt(NamedTuple):
    src: _Place
    dst: _Place
    map: IndexMapLike


class _FactorAt(NamedTuple):
    fine: _Place
    parts: tuple[_Place | None, ...]
    sizes: tuple[int, ...]


class _MixAt(NamedTuple):
    dim: _Place
    how: Mixing


class _BroadcastAt(NamedTuple):
    dim: _Place


class _PinAt(NamedTuple):  # a dim the rule does not mention: the reason is the op's own
    dim: _Place


_Entry = Union[_LinkAt, _FactorAt, _MixAt, _BroadcastAt, _PinAt]


def graph_couplings(ops: Iterable[Op], shape: ShapeOf) -> tuple[Coupling, ...]:
    """Every op's couplings (as :func:`prune_graph.couplings_of` makes them), in op order."""
    met: set[object] = set()  # ops met once: a template is made when one like them comes again
    templates: dict[object, list[_Entry] | None] = {}  # None: the couplings cannot be reused
    found: list[Coupling] = []
    for op in ops:
        values = (*op.inputs, *op.outputs, *op.axes)
        key = (
            op.kind,
            op.target,
            op.attrs,
            len(op.inputs),
            tuple(map(shape, values)),
            tuple(map(values.index, values)),
        )
        template = templates.get(key)
        if template is not None:
            found += _fill(template, values, op)
            continue
        made = rule_couplings(op, shape)
        pins = unmentioned_pins(op, shape, made)
        if key not in met:
            met.add(key)
        elif key not in templates:
            templates[key] = _template(made, pins, values, op)
        found += made
        found += pins
    return tuple(found)


def _template(
    made: Sequence[Coupling], pins: Sequence[Pin], values: tuple[ValueId, ...], op: Op
) -> list[_Entry] | None:
    """The couplings with places for dims, or ``None`` when they cannot be reused (a pin of the
    rule's own, a dim of a value that is not the op's, a coupling of another op)."""
    place_of = {value: i for i, value in reversed(list(enumerate(values)))}  # first place of each

    def place(dim: DimRef) -> _Place:
        return (place_of[dim.value], dim.dim)

    entries: list[_Entry] = []
    try:
        for c in made:
            if c.op != op.id:
                return None
            if isinstance(c, Link):
                entries.append(_LinkAt(place(c.src), place(c.dst), c.map))
            elif isinstance(c, FactorLink):
                parts = tuple(None if p is None else place(p) for p in c.parts)
                entries.append(_FactorAt(place(c.fine), parts, c.sizes))
            elif isinstance(c, Mix):
                entries.append(_MixAt(place(c.dim), c.how))
            elif isinstance(c, Broadcast):
                entries.append(_BroadcastAt(place(c.dim)))
            else:
                return None  # a pin says why in the op's own words
        entries += [_PinAt(place(p.dim)) for p in pins]
    except KeyError:
        return None
    return entries


def _fill(template: list[_Entry], values: tuple[ValueId, ...], op: Op) -> list[Coupling]:
    """The template's couplings on ``op``'s own values."""
    out: list[Coupling] = []
    op_id = op.id
    reason = ""
    for entry in template:
        if isinstance(entry, _LinkAt):
            (i, d), (j, e), index_map = entry
            out.append(Link(_ref(values[i], d), _ref(values[j], e), index_map, op_id))
        elif isinstance(entry, _PinAt):
            (i, d) = entry.dim
            reason = reason or pin_reason(op)
            out.append(Pin(_ref(values[i], d), reason, op_id))
        elif isinstance(entry, _FactorAt):
            (i, d), parts, sizes = entry
            refs = tuple(None if p is None else _ref(values[p[0]], p[1]) for p in parts)
            out.append(FactorLink(_ref(values[i], d), refs, sizes, op_id))
        elif isinstance(entry, _MixAt):
            (i, d), how = entry
            out.append(Mix(_ref(values[i], d), how, op_id))
        else:
            (i, d) = entry.dim
            out.append(Broadcast(_ref(values[i], d), op_id))
    return out
