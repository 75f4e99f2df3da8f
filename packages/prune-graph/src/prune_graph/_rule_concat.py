"""The concat rule, worked out by places among the op's values before any record is made.

A dense block concatenates every earlier feature map again: hundreds of inputs in all, each
with a link per dim. :func:`concat_links` says which dims the rule joins, by place; the rule
makes its records from that, and the group search reads a :class:`ConcatCouplings` (the same
links, with the dims it leaves unmentioned) without them.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from prune_graph._couplings import Coupling
from prune_graph._errors import GraphError
from prune_graph._index_maps import Offset
from prune_graph._ops import Op
from prune_graph._quick import quick_link, quick_pin
from prune_graph._rule_parts import ShapeOf, _identity, _ref
from prune_graph._values import ValueId

__all__ = ["ConcatCouplings"]

# (place, dim, place, dim): an identity link; (place, dim, place, dim, offset, size): an input's
# concat dim placed at ``offset`` in the output's (places among the op's inputs, then its output)
_Link = tuple[int, ...]


def concat_links(op: Op, shape: ShapeOf) -> list[_Link]:
    """The links of a concat op, in the order the rule makes them; the rule's errors for bad shapes."""
    out = len(op.inputs)  # the output's place
    out_shape = shape(op.outputs[0])
    rank = len(out_shape)
    dim = op.int_attr("dim") % rank
    total = out_shape[dim]
    others = [(d, size) for d, size in enumerate(out_shape) if d != dim and size > 1]  # what a link can reach
    links: list[_Link] = []
    offset = 0
    for i, x in enumerate(op.inputs):
        xs = shape(x)
        if len(xs) != rank:
            continue  # legacy empty (0,) tensors take no part in a concat
        links += [(i, d, out, d) for d, size in others if xs[d] == size]  # what _link_same joins
        size = xs[dim]
        if size:
            if offset + size > total:
                Offset(offset, size, total)  # the map's own error
            links.append((i, dim, out, dim, offset, size))
        offset += size
    if offset != total:
        # output channels no input fills would be coupled to nothing and pruned alone
        raise GraphError(
            f"op {op.where}: inputs have {offset} channels along dim {dim}, output {op.outputs[0]!r} has {total}"
        )
    return links


def _records(
    op: Op, values: tuple[ValueId, ...], shapes: tuple[tuple[int, ...], ...], links: list[_Link]
) -> list[Coupling]:
    """The records of ``links`` (places in ``values``, the output last, of these ``shapes``)."""
    op_id = op.id
    out_shape = shapes[-1]
    made: list[Coupling] = []
    for link in links:
        i, d, j, dj = link[:4]
        if len(link) == 4:
            made.append(quick_link(_ref(values[i], d), _ref(values[j], dj), _identity(out_shape[dj]), op_id))
        else:
            made.append(
                quick_link(_ref(values[i], d), _ref(values[j], dj), Offset(link[4], link[5], out_shape[dj]), op_id)
            )
    return made


def _concat(op: Op, shape: ShapeOf) -> list[Coupling]:
    """Every input's dims linked to the output's, its concat dim placed at its offset."""
    values = (*op.inputs, op.outputs[0])
    links = concat_links(op, shape)
    return _records(op, values, tuple(map(shape, values)), links)


@attrs.frozen(eq=False)
class ConcatCouplings:
    """The couplings of a concat op by places among its ``values`` (its inputs, then its output).

    ``links`` holds (place, dim, place, dim) for an identity link and (place, dim, place, dim,
    offset, size) for an input's concat dim placed at ``offset`` in the output's; ``pinned``
    the dims the rule leaves unmentioned as (place, dim), pinned for :attr:`reason`. No value
    takes two places. :meth:`couplings` makes the records, equal to what the rules make for ``op``.
    """

    op: Op
    values: tuple[ValueId, ...]
    links: tuple[_Link, ...]
    pinned: tuple[tuple[int, int], ...]
    reason: str
    _shapes: tuple[tuple[int, ...], ...] = attrs.field(repr=False)

    def couplings(self) -> list[Coupling]:
        """The records: the links, then pins, in the order the rules make them."""
        made = _records(self.op, self.values, self._shapes, list(self.links))
        op_id, values, reason = self.op.id, self.values, self.reason
        return made + [quick_pin(_ref(values[i], d), reason, op_id) for i, d in self.pinned]


# the links and unmentioned dims of concats met before, by attributes and shapes: a model traced
# again (a dense block's concats of dozens of inputs each) has the same concats
_DESCRIBED: dict[object, tuple[tuple[_Link, ...], tuple[tuple[int, int], ...]]] = {}
_DESCRIBED_MAX = 1 << 12  # concats kept at most: past it the memo starts over


def describe_concat(op: Op, shape: ShapeOf, pin_reason: Callable[[Op], str]) -> ConcatCouplings | None:
    """``op``'s couplings as a :class:`ConcatCouplings` (``pin_reason``: why unmentioned dims are
    pinned), or ``None`` when a value takes two places or the op has more than one output."""
    values = (*op.inputs, *op.outputs, *op.axes)
    if len(op.outputs) != 1 or op.axes or len(set(values)) != len(values):
        return None
    shapes = tuple(map(shape, values))
    key = (op.attrs, shapes)  # all the rule reads of a concat but its names
    known = _DESCRIBED.get(key)
    if known is None:
        links = tuple(concat_links(op, shape))
        mentioned = {(link[0], link[1]) for link in links}
        mentioned.update((link[2], link[3]) for link in links)
        pinned = tuple(
            (i, d)
            for i, sizes in enumerate(shapes)
            for d, size in enumerate(sizes)
            if size > 1 and (i, d) not in mentioned
        )
        if len(_DESCRIBED) >= _DESCRIBED_MAX:
            _DESCRIBED.clear()
        _DESCRIBED[key] = known = (links, pinned)
    links, pinned = known
    return ConcatCouplings(op, values, links, pinned, pin_reason(op) if pinned else "", shapes)
