"""A graph's couplings with each repeated op worked out once.

Models repeat their layers. An op of the kind, target and attributes of one met before, whose
values have the same shapes (and repeat at the same places, as in ``x + x``), gets the same
couplings from the rules, on its own values: the rules read nothing else of an op but the
names that go into their pins' reasons and errors. So the couplings of the first such op are
kept, and every op like it gets copies with its own values and op id; the pins for dims the
rule leaves unmentioned are made with each op's own reason. A rule result with pins of its
own (their reasons name the op) is never copied. Most repeats link dims one to one and pin the
rest: those are described by a :class:`RepeatedCouplings` (which of the op's dims each joins)
and their records made only when :attr:`Graph.couplings` asks for them; the group search never does.

Some rules read sizes only to compare them with each other and with 0 and 1 (see
``_SIZE_BLIND``). An op of such a rule whose sizes differ from an earlier op's, but are equal
where that op's are equal and 0 or 1 where its are, gets the same links and pins (each identity
map of its own size): a dense block's layers, whose inputs grow by a few channels each, repeat
the first layer's norm and conv that way.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Union, cast

import attrs

from prune_graph._couplings import Broadcast, Coupling, FactorLink, Link, Mix, Pin
from prune_graph._errors import GraphError
from prune_graph._index_maps import Identity
from prune_graph._ops import Op, OpId, OpKind
from prune_graph._quick import quick_link, quick_pin
from prune_graph._rule_concat import ConcatCouplings, describe_concat
from prune_graph._rule_parts import ShapeOf, _identity, _ref
from prune_graph._rules import misfit, pin_reason, rule_couplings, unmentioned_pins
from prune_graph._values import DimRef, ValueId

__all__ = ["CouplingPart", "RepeatedCouplings", "coupling_parts", "flat_couplings"]


# identity links as (place, dim, place, dim) and unmentioned dims as (place, dim)
_Plan = tuple[tuple[tuple[int, int, int, int], ...], tuple[tuple[int, int], ...]]


@attrs.define
class _First:
    """The first op of its kind and shapes: its values, what its rule made and its unmentioned dims."""

    op: OpId
    values: tuple[ValueId, ...]
    shapes: tuple[tuple[int, ...], ...]
    made: list[Coupling]
    pins: list[Pin]
    # its identity links and unmentioned dims by place among its values, when it has no other
    # coupling (worked out at the first repeat; None: its repeats get records at once)
    plan: _Plan | None = None
    planned: bool = False


@attrs.frozen(eq=False)
class RepeatedCouplings:
    """The couplings of an op like one met before: that op's, on this op's own values.

    Most ops repeat an earlier one, and most such ops only link dims one to one: their couplings
    are described here without making the records. ``links`` holds the identity links as
    (place in ``values``, dim, place in ``values``, dim) and ``pinned`` the dims the rule leaves
    unmentioned as (place in ``values``, dim), pinned for :attr:`reason`.
    :meth:`couplings` makes the records, equal to what the rules make for ``op``.
    """

    # few fields: an op of a repeated layer makes one, and attrs sets each field through a call
    op: Op
    values: tuple[ValueId, ...]
    plan: _Plan  # ``links`` and ``pinned``
    _shapes: tuple[tuple[int, ...], ...] = attrs.field(repr=False)  # of ``values``

    @property
    def links(self) -> tuple[tuple[int, int, int, int], ...]:
        """The identity links as (place in ``values``, dim, place in ``values``, dim)."""
        return self.plan[0]

    @property
    def pinned(self) -> tuple[tuple[int, int], ...]:
        """The dims the rule leaves unmentioned as (place in ``values``, dim)."""
        return self.plan[1]

    @property
    def reason(self) -> str:
        """Why the ``pinned`` dims are pinned."""
        return pin_reason(self.op)

    def couplings(self) -> list[Coupling]:
        """The records: identity links, then pins, in the order the rules make them."""
        made, pins = _records(self.op, self.values, self._shapes, self.plan)
        return made + pins


# RepeatedCouplings' fields written straight into their slots, as _quick does for records: most
# ops of a model make one (it has no validator or converter to skip; a test checks the two agree)
_new = object.__new__
_SET_REPEATED = tuple(getattr(RepeatedCouplings, name).__set__ for name in ("op", "values", "plan", "_shapes"))


def _repeated(
    op: Op, values: tuple[ValueId, ...], plan: _Plan, shapes: tuple[tuple[int, ...], ...]
) -> RepeatedCouplings:
    """``RepeatedCouplings(op, values, plan, shapes)``."""
    made: RepeatedCouplings = _new(RepeatedCouplings)
    set_op, set_values, set_plan, set_shapes = _SET_REPEATED
    set_op(made, op)
    set_values(made, values)
    set_plan(made, plan)
    set_shapes(made, shapes)
    return made


_CONCAT = OpKind.CONCAT  # looked up once: an enum member is a slow class attribute
_OTHER = object()  # a family of ops that are not size-blind

# one op's couplings: its records, or a description that makes them on request
CouplingPart = Union[Sequence[Coupling], RepeatedCouplings, ConcatCouplings]


def coupling_parts(ops: Iterable[Op], shape: ShapeOf) -> tuple[CouplingPart, ...]:
    """Every op's couplings, op by op: the records, a :class:`RepeatedCouplings` for an op like
    one before it whose couplings are identity links and pins only, or a :class:`ConcatCouplings`."""
    first: dict[object, _First | None] = {}  # None: the couplings of ops like this one are not copied
    # Ops of a size-blind kind alike but for sizes make a family. A family's state: its first op
    # while it is the only one (most families: no sizes' pattern worked out for them), then its
    # ops by pattern (see _pattern; None: the rule makes more than links and pins); _OTHER when
    # its ops are not size-blind (tested once per family).
    families: dict[object, _First | dict[object, _First | None] | object] = {}
    found: list[CouplingPart] = []
    for op in ops:
        kind = op.kind
        if kind is _CONCAT:
            try:
                described = describe_concat(op, shape, pin_reason)
            except (IndexError, ValueError, ZeroDivisionError) as error:  # as rule_couplings does
                if isinstance(error, GraphError):
                    raise
                raise misfit(op, error) from error
            if described is not None:
                found.append(described)
                continue
        values = (*op.inputs, *op.outputs, *op.axes)
        shapes = tuple(map(shape, values))
        # id(kind): an enum member hashes through a Python call; it is one object for good
        # where values repeat (see _repeats), written out: most ops repeat none
        repeats = () if len(set(values)) == len(values) else _repeats(values)
        key = (id(kind), op.target, op.attrs, len(op.inputs), len(op.outputs), shapes, repeats)
        like = first.get(key)
        alike: dict[object, _First | None] | None = None  # the op's family by pattern
        pattern: object = None
        new_family = None
        if like is None and key[0] in _SIZE_BLIND_BY_ID:
            family = (*key[:5], key[6])
            state = families.get(family)
            if state is None:
                if _SIZE_BLIND_BY_ID[key[0]](op):
                    new_family = family  # the op waits in families once its rule has run
                else:
                    families[family] = _OTHER
            elif state is not _OTHER:
                if type(state) is _First:  # a second op: the first's pattern is needed now
                    state = families[family] = {_pattern(state.shapes): state}
                alike = cast(dict[object, _First | None], state)
                pattern = _pattern(shapes)
                like = alike.get(pattern)
        if like is not None:
            if not like.planned:  # worked out at the first repeat
                like.plan = _plan(like)
                like.planned = True
            if like.plan is not None:
                found.append(_repeated(op, values, like.plan, shapes))
                continue
            if alike is not None:
                alike[pattern] = None  # its rule makes more than links and pins: run it
            else:
                copied = _copy(like, values, op)
                if copied is not None:
                    found.append(copied)
                    continue
                first[key] = None
        made = rule_couplings(op, shape)
        pins = unmentioned_pins(op, shape, made)
        if key not in first:
            first[key] = entry = _First(op.id, values, shapes, made, pins)
            if alike is not None:
                alike.setdefault(pattern, entry)
            elif new_family is not None:
                families[new_family] = entry
        found.append([*made, *pins])
    return tuple(found)


def _conv_blind(op: Op) -> bool:
    # a grouped conv factors its channels by the groups (sizes divided): only plain convs
    return op.attr("groups", 1) == 1


def _norm_blind(op: Op) -> bool:
    # a group norm factors its channels by the groups: only norms of one group
    return op.attr("num_groups", 1) == 1


def _always(op: Op) -> bool:
    return True


# Kinds whose rule reads the sizes of an op's values only to compare them with each other and
# with 0 and 1 (ranks aside), with a test of the op for when that holds: ops of these kinds
# alike but for sizes, in the same pattern, get the same links and pins. A rule that starts to
# do arithmetic on sizes must leave this table (tests/graph/test_rule_memo_sizes.py checks each kind).
_SIZE_BLIND: Mapping[OpKind, Callable[[Op], bool]] = types.MappingProxyType(
    {
        OpKind.CONV: _conv_blind,
        OpKind.NORM: _norm_blind,
        OpKind.LINEAR: _always,
        OpKind.ELEMENTWISE: _always,
        OpKind.POOL: _always,
    }
)
# by id(kind), as the memo's keys (an enum member hashes through a Python call)
_SIZE_BLIND_BY_ID = types.MappingProxyType({id(kind): test for kind, test in _SIZE_BLIND.items()})


# ops of other kinds in one graph (a conv, its norm, its activation) and a model traced again
# meet the same shapes
@functools.lru_cache(maxsize=4096)
def _pattern(shapes: tuple[tuple[int, ...], ...]) -> tuple[tuple[int, ...], ...]:
    """The shapes with every size but 0 and 1 replaced by the order in which it first appears:
    equal for shapes whose sizes are equal at the same places and 0 or 1 at the same places."""
    codes = {0: 0, 1: 1}
    found = []
    for sizes in shapes:  # loops, not comprehensions: a few sizes each, and one call less per shape
        row = []
        for size in sizes:
            code = codes.get(size)
            if code is None:
                code = codes[size] = len(codes)
            row.append(code)
        found.append(tuple(row))
    return tuple(found)


def flat_couplings(parts: Iterable[CouplingPart]) -> tuple[Coupling, ...]:
    """The records of :func:`coupling_parts`, one after another."""
    found: list[Coupling] = []
    for part in parts:
        found += part.couplings() if isinstance(part, (RepeatedCouplings, ConcatCouplings)) else part
    return tuple(found)


def _plan(like: _First) -> _Plan | None:
    """``like``'s identity links and pins by place among its values, or ``None`` when it makes anything else."""
    place: dict[ValueId, int] = {}
    for i, value in enumerate(like.values):
        place.setdefault(value, i)  # a repeated value: the same place in every repeat (see _repeats)
    links = []
    try:
        for c in like.made:
            if type(c) is not Link or type(c.map) is not Identity or c.op != like.op:
                return None
            link = (place[c.src.value], c.src.dim, place[c.dst.value], c.dst.dim)
            if c.map.size != like.shapes[link[0]][link[1]]:
                return None  # a repeat makes each map from its own sizes: they must be the source's
            links.append(link)
        pinned = tuple((place[p.dim.value], p.dim.dim) for p in like.pins)
    except KeyError:
        return None  # a dim of a value that is not the op's
    return tuple(links), pinned


def _records(
    op: Op, values: tuple[ValueId, ...], shapes: tuple[tuple[int, ...], ...], plan: _Plan
) -> tuple[list[Coupling], list[Pin]]:
    """What the rule of ``op`` makes and the pins of what it leaves unmentioned, from its plan.

    Every link is an identity map of its source's size (checked on the op the plan came from: see _plan).
    """
    op_id = op.id
    links, pinned = plan
    made: list[Coupling] = [
        quick_link(_ref(values[a], da), _ref(values[b], db), _identity(shapes[a][da]), op_id) for a, da, b, db in links
    ]
    if not pinned:
        return made, []
    reason = pin_reason(op)
    return made, [quick_pin(_ref(values[i], d), reason, op_id) for i, d in pinned]


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
