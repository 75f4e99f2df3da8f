"""Coupling rules: one small pure function per op kind, kept in a read-only table.

A rule sees one op and the shapes of its values and returns the couplings the op implies.
:func:`couplings_of` then pins every dim of size > 1 that the rule left unmentioned, so an op
the rules do not understand can never let a channel through silently.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping, Sequence

from prune_graph._couplings import Broadcast, Coupling, FactorLink, Link, Mix, Mixing, Pin
from prune_graph._errors import GraphError
from prune_graph._index_maps import Offset, Window
from prune_graph._ops import Op, OpKind
from prune_graph._quick import quick_pin
from prune_graph._reshape import reshape_groups
from prune_graph._rule_concat import _concat
from prune_graph._rule_parts import ShapeOf, _broadcast, _factor, _link, _link_same, _ref
from prune_graph._rules_recurrent import _recurrent

__all__ = ["RULES", "Rule", "ShapeOf", "couplings_of"]

Rule = Callable[[Op, ShapeOf], list[Coupling]]


def _conv(op: Op, shape: ShapeOf) -> list[Coupling]:
    x, w, *rest = op.inputs
    (y,) = op.outputs[:1]
    groups = op.int_attr("groups", 1)
    transposed = bool(op.attr("transposed", False))
    result = _link_same(op, shape, x, 0, y, 0)
    out_w_dim, in_w_dim = (1, 0) if transposed else (0, 1)
    if rest:
        result += _link_same(op, shape, rest[0], 0, y, 1)
    if groups == 1:
        result += _link_same(op, shape, x, 1, w, in_w_dim)
        result += _link_same(op, shape, w, out_w_dim, y, 1)
        return result
    if len(op.axes) != 2:
        raise GraphError(f"op {op.where}: a grouped conv needs two virtual axes (got {len(op.axes)})")
    group_axis, width_axis = op.axes
    x_channels, y_channels = shape(x)[1], shape(y)[1]
    if transposed:
        # weight (Cin, Cout/G, k...): the input side is shared with the weight's dim 0
        result += _link_same(op, shape, x, 1, w, 0)
        result += _factor(op, _ref(x, 1), (_ref(group_axis, 0), _ref(width_axis, 0)), (groups, x_channels // groups))
        result += _factor(op, _ref(y, 1), (_ref(group_axis, 0), _ref(w, 1)), (groups, y_channels // groups))
    else:
        result += _link_same(op, shape, w, 0, y, 1)
        result += _factor(op, _ref(x, 1), (_ref(group_axis, 0), _ref(w, 1)), (groups, x_channels // groups))
        result += _factor(op, _ref(y, 1), (_ref(group_axis, 0), _ref(width_axis, 0)), (groups, y_channels // groups))
    return result


def _linear(op: Op, shape: ShapeOf) -> list[Coupling]:
    x, w, *rest = op.inputs
    y = op.outputs[0]
    out_dim, in_dim = (1, 0) if op.attr("weight_in_out", False) else (0, 1)
    xr, yr = len(shape(x)), len(shape(y))
    result: list[Coupling] = []
    for k in range(2, min(xr, yr) + 1):
        result += _link_same(op, shape, x, xr - k, y, yr - k)
    result += _link_same(op, shape, x, xr - 1, w, in_dim)
    result += _link_same(op, shape, w, out_dim, y, yr - 1)
    if rest:
        result += _broadcast(op, shape, rest[:1], y)
    return result


def _matmul(op: Op, shape: ShapeOf) -> list[Coupling]:
    a, b, *rest = op.inputs
    y = op.outputs[0]
    ar, br, yr = len(shape(a)), len(shape(b)), len(shape(y))
    result: list[Coupling] = []
    b_k = 0 if br == 1 else br - 2
    result += _link_same(op, shape, a, ar - 1, b, b_k)
    if ar >= 2:
        result += _link_same(op, shape, a, ar - 2, y, yr - (2 if br >= 2 else 1))
    if br >= 2:
        result += _link_same(op, shape, b, br - 1, y, yr - 1)
    batch_y = yr - (ar >= 2) - (br >= 2)
    for value, rank in ((a, ar - 2), (b, br - 2)):
        for k in range(1, min(rank, batch_y) + 1):
            result += _link_same(op, shape, value, rank - k, y, batch_y - k)
    if rest:
        result += _broadcast(op, shape, rest[:1], y)
    return result


def _norm(op: Op, shape: ShapeOf) -> list[Coupling]:
    x, *params = op.inputs
    y = op.outputs[0]
    channel_dims = op.ints_attr("channel_dims")
    result: list[Coupling] = []
    for d in range(len(shape(x))):
        result += _link_same(op, shape, x, d, y, d)
    for p in params:
        if len(shape(p)) != len(channel_dims):
            raise GraphError(f"op {op.where}: parameter {p} has rank {len(shape(p))}, expected {len(channel_dims)}")
        for k, d in enumerate(channel_dims):
            result += _link_same(op, shape, p, k, x, d)
    mixes = bool(op.attr("mixes", False))
    groups = op.int_attr("num_groups", 1)
    if groups > 1:
        if len(op.axes) != 2 or len(channel_dims) != 1:
            raise GraphError(f"op {op.where}: a group norm needs one channel dim and two virtual axes")
        channels = shape(x)[channel_dims[0]]
        group_axis, width_axis = op.axes
        result += _factor(
            op, _ref(x, channel_dims[0]), (_ref(group_axis, 0), _ref(width_axis, 0)), (groups, channels // groups)
        )
        # statistics are per group: removing whole groups is exact, removing positions is not
        if mixes and channels // groups > 1:
            result.append(Mix(_ref(width_axis, 0), Mixing.NORMALISATION, op.id))
    elif mixes:
        result += [Mix(_ref(x, d), Mixing.NORMALISATION, op.id) for d in channel_dims if shape(x)[d] > 1]
    # statistics taken over other dims (batch norm with batch statistics): those dims are mixed
    result += [Mix(_ref(x, d), Mixing.NORMALISATION, op.id) for d in op.ints_attr("statistic_dims") if shape(x)[d] > 1]
    return result


def _elementwise(op: Op, shape: ShapeOf) -> list[Coupling]:
    result: list[Coupling] = []
    for out in op.outputs:
        result += _broadcast(op, shape, op.inputs, out)
    return result


def _reduce(op: Op, shape: ShapeOf) -> list[Coupling]:
    (x,) = op.inputs[:1]
    y = op.outputs[0]
    rank = len(shape(x))
    dims = {d % rank for d in op.ints_attr("dims")} if rank else set()
    keepdim = bool(op.attr("keepdim", False))
    how = Mixing.NORMALISATION if op.attr("normalises", False) else Mixing.REDUCTION
    result: list[Coupling] = []
    j = 0
    for d in range(rank):
        if d in dims:
            if shape(x)[d] > 1:
                result.append(Mix(_ref(x, d), how, op.id))
            j += 1 if keepdim else 0
            continue
        result += _link_same(op, shape, x, d, y, j)
        j += 1
    return result


def _mix(op: Op, shape: ShapeOf) -> list[Coupling]:
    x = op.inputs[0]
    how = op.attr("how", "")
    if how not in (Mixing.SOFTMAX.value, Mixing.CUMULATIVE.value):
        raise GraphError(f"op {op.where}: attribute 'how' must be 'softmax' or 'cumulative' (got {how!r})")
    rank = len(shape(x))
    result: list[Coupling] = []
    for y in op.outputs:  # cummax and cummin also return the positions of the running maxima
        for d in range(rank):
            result += _link_same(op, shape, x, d, y, d)
    for d in {d % rank for d in op.ints_attr("dims")} if rank else ():
        if shape(x)[d] > 1:
            result.append(Mix(_ref(x, d), Mixing(how), op.id))
    return result


def _pool(op: Op, shape: ShapeOf) -> list[Coupling]:
    x = op.inputs[0]
    rank = len(shape(x))
    resized = {d % rank for d in op.ints_attr("dims")}
    result: list[Coupling] = []
    for out in op.outputs:
        if len(shape(out)) != rank:
            continue
        for d in range(rank):
            if d not in resized:
                result += _link_same(op, shape, x, d, out, d)
    return result


def _stack(op: Op, shape: ShapeOf) -> list[Coupling]:
    y = op.outputs[0]
    rank = len(shape(y))
    dim = op.int_attr("dim") % rank
    result: list[Coupling] = []
    for x in op.inputs:
        for d in range(len(shape(x))):
            result += _link_same(op, shape, x, d, y, d + (d >= dim))
    return result


def _split(op: Op, shape: ShapeOf) -> list[Coupling]:
    x = op.inputs[0]
    rank = len(shape(x))
    dim = op.int_attr("dim") % rank
    result: list[Coupling] = []
    if op.attr("squeeze", False):
        for y in op.outputs:
            for d in range(rank):
                if d != dim:
                    result += _link_same(op, shape, x, d, y, d - (d > dim))
        return result
    sizes = [shape(y)[dim] for y in op.outputs]
    for y in op.outputs:
        for d in range(rank):
            if d != dim:
                result += _link_same(op, shape, x, d, y, d)
    if len(op.outputs) > 1 and len(set(sizes)) == 1:
        # equal pieces (chunk): code re-splits by count, so every piece must lose the same positions
        first = op.outputs[0]
        result += _factor(op, _ref(x, dim), (None, _ref(first, dim)), (len(sizes), sizes[0]))
        for y in op.outputs[1:]:
            result += _link_same(op, shape, first, dim, y, dim)
        return result
    start = 0
    for y, size in zip(op.outputs, sizes):
        if size:
            result.append(Link(_ref(y, dim), _ref(x, dim), Offset(start, size, shape(x)[dim]), op.id))
        start += size
    if start != shape(x)[dim]:
        total = shape(x)[dim]
        raise GraphError(f"op {op.where}: outputs have {start} channels along dim {dim}, input {x!r} has {total}")
    return result


def _slice(op: Op, shape: ShapeOf) -> list[Coupling]:
    x, y = op.inputs[0], op.outputs[0]
    rank = len(shape(x))
    dim = op.int_attr("dim") % rank
    result: list[Coupling] = []
    for d in range(rank):
        if d != dim:
            result += _link_same(op, shape, x, d, y, d)
    length = shape(y)[dim]
    start, step = op.int_attr("start", 0), op.int_attr("step", 1)
    if length and shape(x)[dim] > 1:
        result.append(Link(_ref(x, dim), _ref(y, dim), Window(start, step, length, shape(x)[dim]), op.id))
    return result


def _select(op: Op, shape: ShapeOf) -> list[Coupling]:
    x, y = op.inputs[0], op.outputs[0]
    rank = len(shape(x))
    dim = op.int_attr("dim") % rank
    result: list[Coupling] = []
    for d in range(rank):
        if d != dim:
            result += _link_same(op, shape, x, d, y, d - (d > dim))
    return result


def _reshape(op: Op, shape: ShapeOf) -> list[Coupling]:
    x, y = op.inputs[0], op.outputs[0]
    xs, ys = shape(x), shape(y)
    result: list[Coupling] = []
    for left, right in reshape_groups(xs, ys):
        if len(left) == 1 and len(right) == 1:
            result.append(_link(op, x, left[0], y, right[0], xs[left[0]]))
        elif len(left) == 1:
            result += _factor(op, _ref(x, left[0]), [_ref(y, d) for d in right], [ys[d] for d in right])
        elif len(right) == 1:
            result += _factor(op, _ref(y, right[0]), [_ref(x, d) for d in left], [xs[d] for d in left])
        else:
            reason = f"{op.where} regroups dims {left} of {xs} into dims {right} of {ys}"
            result += [Pin(_ref(x, d), reason, op.id) for d in left]
            result += [Pin(_ref(y, d), reason, op.id) for d in right]
    return result


def _permute(op: Op, shape: ShapeOf) -> list[Coupling]:
    x, y = op.inputs[0], op.outputs[0]
    result: list[Coupling] = []
    for i, d in enumerate(op.ints_attr("perm")):
        result += _link_same(op, shape, x, d % len(shape(x)), y, i)
    return result


def _expand(op: Op, shape: ShapeOf) -> list[Coupling]:
    x, y = op.inputs[0], op.outputs[0]
    result = _broadcast(op, shape, (x,), y)
    xs, ys = shape(x), shape(y)
    lead = len(ys) - len(xs)
    for d, size in enumerate(xs):
        if size == 1 and ys[lead + d] > 1:
            result.append(Broadcast(_ref(y, lead + d), op.id))
    return result


def _repeat(op: Op, shape: ShapeOf) -> list[Coupling]:
    x, y = op.inputs[0], op.outputs[0]
    repeats = op.ints_attr("repeats")
    xs, ys = shape(x), shape(y)
    lead = len(ys) - len(xs)
    result: list[Coupling] = []
    for d, size in enumerate(xs):
        reps = repeats[lead + d]
        result += _factor(op, _ref(y, lead + d), (None, _ref(x, d)), (reps, size))
    return result


def _embedding(op: Op, shape: ShapeOf) -> list[Coupling]:
    w, idx = op.inputs[:2]
    y = op.outputs[0]
    result = _link_same(op, shape, w, 1, y, len(shape(y)) - 1)
    for d in range(len(shape(idx))):
        result += _link_same(op, shape, idx, d, y, d)
    return result


def _attention(op: Op, shape: ShapeOf) -> list[Coupling]:
    q, k, v, *rest = op.inputs
    y = op.outputs[0]
    qr, kr, vr, yr = (len(shape(t)) for t in (q, k, v, y))
    result = _link_same(op, shape, q, qr - 1, k, kr - 1)
    if op.attr("size_scaled", False) and shape(q)[qr - 1] > 1:
        result.append(Mix(_ref(q, qr - 1), Mixing.SIZE, op.id))
    result += _link_same(op, shape, v, vr - 1, y, yr - 1)
    result += _link_same(op, shape, q, qr - 2, y, yr - 2)
    result += _link_same(op, shape, k, kr - 2, v, vr - 2)
    for value, rank in ((q, qr), (k, kr), (v, vr)):
        for j in range(3, min(rank, yr) + 1):
            result += _link_same(op, shape, value, rank - j, y, yr - j)
    if rest:
        mask = rest[0]
        mr = len(shape(mask))
        if mr >= 1:
            result += _link_same(op, shape, mask, mr - 1, k, kr - 2)
        if mr >= 2:
            result += _link_same(op, shape, mask, mr - 2, q, qr - 2)
        for j in range(3, min(mr, yr) + 1):
            result += _link_same(op, shape, mask, mr - j, y, yr - j)
    return result


def _pixel_shuffle(op: Op, shape: ShapeOf) -> list[Coupling]:
    x, y = op.inputs[0], op.outputs[0]
    r = op.int_attr("factor")
    inverse = bool(op.attr("inverse", False))
    rank = len(shape(x))
    result: list[Coupling] = []
    for d in range(rank - 3):
        result += _link_same(op, shape, x, d, y, d)
    wide, narrow = (y, x) if inverse else (x, y)
    c = rank - 3
    result += _factor(op, _ref(wide, c), (_ref(narrow, c), None, None), (shape(narrow)[c], r, r))
    return result


def _nothing(op: Op, shape: ShapeOf) -> list[Coupling]:
    return []


def _constant(op: Op, shape: ShapeOf) -> list[Coupling]:
    """A tensor made from nothing follows the channels it meets, unless its values depend on position.

    ``arange(n)`` without position i is not ``arange(n - 1)``: a sinusoidal embedding built from it
    would change every kept frequency, so the dims of such a tensor (``positional``) are pinned.
    """
    if not op.attr("positional", False):
        return []
    reason = f"{op.location} makes values that depend on their position"
    return [Pin(_ref(y, d), reason, op.id) for y in op.outputs for d, size in enumerate(shape(y)) if size > 1]


RULES: Mapping[OpKind, Rule] = types.MappingProxyType(
    {
        OpKind.CONV: _conv,
        OpKind.LINEAR: _linear,
        OpKind.MATMUL: _matmul,
        OpKind.NORM: _norm,
        OpKind.ELEMENTWISE: _elementwise,
        OpKind.REDUCE: _reduce,
        OpKind.MIX: _mix,
        OpKind.POOL: _pool,
        OpKind.CONCAT: _concat,
        OpKind.STACK: _stack,
        OpKind.SPLIT: _split,
        OpKind.SLICE: _slice,
        OpKind.SELECT: _select,
        OpKind.RESHAPE: _reshape,
        OpKind.PERMUTE: _permute,
        OpKind.EXPAND: _expand,
        OpKind.REPEAT: _repeat,
        OpKind.EMBEDDING: _embedding,
        OpKind.ATTENTION: _attention,
        OpKind.PIXEL_SHUFFLE: _pixel_shuffle,
        OpKind.RECURRENT: _recurrent,
        OpKind.CONSTANT: _constant,
        OpKind.OPAQUE: _nothing,
    }
)


def _mentioned(couplings: Sequence[Coupling]) -> set[tuple[str, int]]:
    """The (value, dim) pairs the couplings name (plain tuples: they hash without a Python call)."""
    seen: set[tuple[str, int]] = set()
    for c in couplings:
        if type(c) is Link:  # most couplings: no isinstance chain
            seen.add((c.src.value, c.src.dim))
            seen.add((c.dst.value, c.dst.dim))
        elif isinstance(c, FactorLink):
            seen.add((c.fine.value, c.fine.dim))
            seen.update((p.value, p.dim) for p in c.parts if p is not None)
        elif isinstance(c, Link):
            seen.update(((c.src.value, c.src.dim), (c.dst.value, c.dst.dim)))
        else:
            seen.add((c.dim.value, c.dim.dim))
    return seen


def couplings_of(op: Op, shape: ShapeOf, rules: Mapping[OpKind, Rule] = RULES) -> tuple[Coupling, ...]:
    """The couplings ``op`` implies, with every unmentioned dim of size > 1 pinned.

    >>> from prune_graph._ops import OpId
    >>> shapes = {"a": (2, 3), "b": (2, 3), "c": (2, 3)}
    >>> op = Op(OpId("op0"), OpKind.ELEMENTWISE, "aten.add", ("a", "b"), ("c",))
    >>> len(couplings_of(op, lambda v: shapes[v]))
    4
    """
    found = rule_couplings(op, shape, rules)
    return (*found, *unmentioned_pins(op, shape, found))


def rule_couplings(op: Op, shape: ShapeOf, rules: Mapping[OpKind, Rule] = RULES) -> list[Coupling]:
    """What the rule of ``op``'s kind says, its failures as ``GraphError`` naming the op."""
    rule = rules.get(op.kind)
    if rule is None:
        raise GraphError(f"op {op.where}: no coupling rule for kind {op.kind.value!r}")
    try:
        return list(rule(op, shape))
    except (IndexError, ValueError, ZeroDivisionError) as error:
        if isinstance(error, GraphError):
            raise
        raise misfit(op, error) from error


def misfit(op: Op, error: Exception) -> GraphError:
    """The error for a rule that failed (``error``) on values that do not fit ``op``."""
    return GraphError(f"op {op.where}: its values do not fit a {op.kind.value} op ({error})")


def unmentioned_pins(op: Op, shape: ShapeOf, found: Sequence[Coupling]) -> list[Pin]:
    """Pins for the dims of size > 1 of ``op``'s values that ``found`` does not mention."""
    if op.kind is OpKind.CONSTANT:
        # a tensor made in the forward pass (an RNN's zero state) takes its size from the model's
        # attributes; it follows the channels it meets, and a size the adapter cannot update is
        # caught when the pruned model is traced again
        return []
    seen = _mentioned(found)
    unmentioned = [
        (value, d)
        for value in (*op.inputs, *op.outputs, *op.axes)
        for d, size in enumerate(shape(value))
        if size > 1 and (value, d) not in seen
    ]
    if not unmentioned:
        return []
    reason = pin_reason(op)
    op_id = op.id
    return [quick_pin(_ref(value, d), reason, op_id) for value, d in unmentioned]


def pin_reason(op: Op) -> str:
    """Why :func:`couplings_of` pins the dims of ``op`` its rule does not mention."""
    if op.kind is OpKind.OPAQUE:
        why = op.attr("why")
        return f"unsupported op {op.location}" + (f" ({why})" if isinstance(why, str) else "")
    return f"{op.location} sets this dim's size itself"
