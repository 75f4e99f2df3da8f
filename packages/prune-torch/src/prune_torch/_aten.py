"""How aten ops map onto prune-graph op kinds: one small reader per family.

A reader gets the op's arguments and result and returns an :class:`OpSpec` (kind, the tensors
that are inputs and outputs, attributes) or ``None`` to leave the op opaque. The read-only table
keyed by aten overload packets (objects, not names) is in ``_aten_table``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import torch

from prune_graph import AttrValue, OpKind

__all__ = ["OpSpec", "Reader", "tensors_in"]


@attrs.frozen
class OpSpec:
    """What the tracer records for one aten call."""

    kind: OpKind
    inputs: tuple[torch.Tensor, ...]
    outputs: tuple[torch.Tensor, ...]
    attrs: Mapping[str, AttrValue] = attrs.field(factory=dict)


Reader = Callable[[Sequence[Any], Mapping[str, Any], Any], "OpSpec | None"]


def tensors_in(tree: Any) -> list[torch.Tensor]:
    """Every tensor in nested lists, tuples and dicts, in order."""
    found: list[torch.Tensor] = []
    stack = [tree]
    while stack:
        item = stack.pop()
        if isinstance(item, torch.Tensor):
            found.append(item)
        elif isinstance(item, (list, tuple)):
            stack.extend(reversed(item))
        elif isinstance(item, dict):
            stack.extend(reversed(list(item.values())))
    return found


def _outs(out: Any) -> tuple[torch.Tensor, ...]:
    return tuple(tensors_in(out))


def _arg(args: Sequence[Any], kwargs: Mapping[str, Any], i: int, name: str, default: Any = None) -> Any:
    if len(args) > i:
        return args[i]
    return kwargs.get(name, default)


def _norm_dims(dims: Any, rank: int) -> tuple[int, ...]:
    if dims is None:
        return tuple(range(rank))
    if isinstance(dims, int):
        dims = [dims]
    return tuple(sorted({int(d) % rank for d in dims})) if rank else ()


def _elementwise(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> OpSpec:
    return OpSpec(OpKind.ELEMENTWISE, tuple(tensors_in(list(args)) + tensors_in(dict(kwargs))), _outs(out))


def _first_only(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> OpSpec:
    """Unary ops whose other outputs are masks or statistics of the same shape (dropout)."""
    outs = _outs(out)
    return OpSpec(OpKind.ELEMENTWISE, (args[0],), outs)


def _like(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> OpSpec:
    """``zeros_like`` and friends: shaped like the input, values unrelated."""
    return OpSpec(OpKind.ELEMENTWISE, (args[0],), _outs(out))


def _constant(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> OpSpec:
    return OpSpec(OpKind.CONSTANT, (), _outs(out))


def _positional(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> OpSpec:
    # a value per position (arange, linspace, eye, a literal): no channel of it can go on its own
    return OpSpec(OpKind.CONSTANT, (), _outs(out), {"positional": True})


def _reduce(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> OpSpec:
    x = args[0]
    dims = _arg(args, kwargs, 1, "dim")
    keepdim = bool(_arg(args, kwargs, 2, "keepdim", False))
    return OpSpec(OpKind.REDUCE, (x,), _outs(out), {"dims": _norm_dims(dims, x.dim()), "keepdim": keepdim})


def _reduce_all(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> OpSpec:
    x = args[0]
    return OpSpec(OpKind.REDUCE, (x,), _outs(out), {"dims": tuple(range(x.dim())), "keepdim": False})


def _vector_norm(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> OpSpec:
    x = args[0]
    dims = _arg(args, kwargs, 2, "dim")
    keepdim = bool(_arg(args, kwargs, 3, "keepdim", False))
    return OpSpec(OpKind.REDUCE, (x,), _outs(out), {"dims": _norm_dims(dims, x.dim()), "keepdim": keepdim})


def _var_like(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> OpSpec:
    x = args[0]
    dims = _arg(args, kwargs, 1, "dim")
    keepdim = bool(kwargs.get("keepdim", args[3] if len(args) > 3 and isinstance(args[3], bool) else False))
    return OpSpec(OpKind.REDUCE, (x,), _outs(out), {"dims": _norm_dims(dims, x.dim()), "keepdim": keepdim})


def _spatial(count: int) -> Reader:
    def read(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> OpSpec:
        x = args[0]
        rank = x.dim()
        return OpSpec(OpKind.POOL, (x,), _outs(out), {"dims": tuple(range(rank - count, rank))})

    return read


def _pad(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> OpSpec:
    x, pad = args[0], args[1]
    rank = x.dim()
    count = len(pad) // 2
    dims = tuple(rank - 1 - i for i in range(count) if pad[2 * i] or pad[2 * i + 1])
    return OpSpec(OpKind.POOL, (x,), _outs(out), {"dims": tuple(sorted(dims))})


def _along(position: int, name: str) -> Reader:
    """Ops that move data along given dims (flip, roll): those dims are set by the op."""

    def read(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> OpSpec:
        x = args[0]
        return OpSpec(OpKind.POOL, (x,), _outs(out), {"dims": _norm_dims(_arg(args, kwargs, position, name), x.dim())})

    return read


def _conv(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> OpSpec:
    x, w, b = args[0], args[1], _arg(args, kwargs, 2, "bias")
    transposed = bool(_arg(args, kwargs, 6, "transposed", False))
    groups = int(_arg(args, kwargs, 8, "groups", 1))
    inputs = (x, w) if b is None else (x, w, b)
    return OpSpec(OpKind.CONV, inputs, _outs(out)[:1], {"groups": groups, "transposed": transposed})


def _matmul(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> OpSpec:
    return OpSpec(OpKind.MATMUL, (args[0], args[1]), _outs(out))


def _addmm(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> OpSpec:
    bias, a, b = args[0], args[1], args[2]
    return OpSpec(OpKind.MATMUL, (a, b, bias), _outs(out))


def _batch_norm(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> OpSpec:
    """Batch norm; with batch statistics (its one bool argument, ``training``, true), every value of a
    channel is normalised by the mean and spread over all the other dims. That is how weight
    standardisation is written (timm's ``ScaledStdConv2d`` runs ``F.batch_norm(training=True)`` on
    its reshaped weight): there those dims hold a conv's input channels, which the statistics mix."""
    x = args[0]
    params = tuple(p for p in args[1:5] if isinstance(p, torch.Tensor))
    training = any(a is True for a in list(args[3:]) + list(kwargs.values()))
    attrs: dict[str, Any] = {"channel_dims": (1,), "mixes": False}
    if training:
        attrs["statistic_dims"] = tuple(d for d in range(x.dim()) if d != 1)
    return OpSpec(OpKind.NORM, (x, *params), _outs(out)[:1], attrs)


def _batch_norm_no_training(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> OpSpec:
    x = args[0]
    params = tuple(p for p in args[1:5] if isinstance(p, torch.Tensor))
    return OpSpec(OpKind.NORM, (x, *params), _outs(out)[:1], {"channel_dims": (1,), "mixes": False})


def _layer_norm(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> OpSpec:
    x, shape = args[0], args[1]
    params = tuple(p for p in args[2:4] if isinstance(p, torch.Tensor))
    rank = x.dim()
    dims = tuple(range(rank - len(shape), rank))
    return OpSpec(OpKind.NORM, (x, *params), _outs(out)[:1], {"channel_dims": dims, "mixes": True})


def _group_norm(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> OpSpec:
    x = args[0]
    params = tuple(p for p in args[1:3] if isinstance(p, torch.Tensor))
    groups = int(args[6])
    return OpSpec(
        OpKind.NORM, (x, *params), _outs(out)[:1], {"channel_dims": (1,), "num_groups": groups, "mixes": True}
    )


def _mixing(how: str) -> Reader:
    """Ops whose every output reads the whole of one dim: softmax over it, a running sum or max along it."""

    def read(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> OpSpec:
        x = args[0]
        dims = _norm_dims(_arg(args, kwargs, 1, "dim"), x.dim())
        return OpSpec(OpKind.MIX, (x,), _outs(out), {"dims": dims, "how": how})

    return read


def _cat(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> OpSpec:
    tensors = tuple(args[0])
    return OpSpec(OpKind.CONCAT, tensors, _outs(out), {"dim": int(_arg(args, kwargs, 1, "dim", 0))})


def _stack(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> OpSpec:
    tensors = tuple(args[0])
    return OpSpec(OpKind.STACK, tensors, _outs(out), {"dim": int(_arg(args, kwargs, 1, "dim", 0))})


def _split(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> OpSpec:
    return OpSpec(OpKind.SPLIT, (args[0],), _outs(out), {"dim": int(_arg(args, kwargs, 2, "dim", 0))})


def _unbind(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> OpSpec:
    return OpSpec(OpKind.SPLIT, (args[0],), _outs(out), {"dim": int(_arg(args, kwargs, 1, "dim", 0)), "squeeze": True})


def _slice(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> OpSpec:
    x = args[0]
    dim = int(_arg(args, kwargs, 1, "dim", 0)) % max(x.dim(), 1)
    size = x.shape[dim]
    start = _arg(args, kwargs, 2, "start", 0)
    start = 0 if start is None else int(start)
    start = max(0, min(size, start + size if start < 0 else start))
    step = int(_arg(args, kwargs, 4, "step", 1))
    return OpSpec(OpKind.SLICE, (x,), _outs(out), {"dim": dim, "start": start, "step": step})


def _select(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> OpSpec:
    return OpSpec(OpKind.SELECT, (args[0],), _outs(out), {"dim": int(args[1]), "index": int(args[2])})


def _reshape(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> OpSpec:
    return OpSpec(OpKind.RESHAPE, (args[0],), _outs(out))


def _permute(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> OpSpec:
    x = args[0]
    perm = tuple(int(d) % x.dim() for d in args[1])
    return OpSpec(OpKind.PERMUTE, (x,), _outs(out), {"perm": perm})


def _transpose(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> OpSpec:
    x = args[0]
    rank = max(x.dim(), 1)
    a, b = int(args[1]) % rank, int(args[2]) % rank
    perm = list(range(x.dim()))
    perm[a], perm[b] = perm[b], perm[a]
    return OpSpec(OpKind.PERMUTE, (x,), _outs(out), {"perm": tuple(perm)})


def _t(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> OpSpec:
    x = args[0]
    perm = (1, 0) if x.dim() == 2 else tuple(range(x.dim()))
    return OpSpec(OpKind.PERMUTE, (x,), _outs(out), {"perm": perm})


def _expand(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> OpSpec:
    return OpSpec(OpKind.EXPAND, (args[0],), _outs(out))


def _repeat(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> OpSpec:
    return OpSpec(OpKind.REPEAT, (args[0],), _outs(out), {"repeats": tuple(int(r) for r in args[1])})


def _embedding(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> OpSpec:
    return OpSpec(OpKind.EMBEDDING, (args[0], args[1]), _outs(out))


def _pixel_shuffle(inverse: bool) -> Reader:
    def read(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> OpSpec:
        return OpSpec(OpKind.PIXEL_SHUFFLE, (args[0],), _outs(out), {"factor": int(args[1]), "inverse": inverse})

    return read


def _attention(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> OpSpec | None:
    q, k, v = args[0], args[1], args[2]
    mask = _arg(args, kwargs, 3, "attn_mask")
    if kwargs.get("enable_gqa") or q.shape[:-2] != k.shape[:-2]:
        return None
    inputs = (q, k, v) if not isinstance(mask, torch.Tensor) else (q, k, v, mask)
    # without an explicit scale, SDPA divides by √(q.size(-1)): pruning that dim changes the result
    scale = kwargs.get("scale")
    if scale is None and len(args) > 6 and isinstance(args[6], (int, float)):
        scale = args[6]
    return OpSpec(OpKind.ATTENTION, inputs, _outs(out)[:1], {"size_scaled": scale is None})


def _reduce_all_or_dim(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> OpSpec:
    """``max(x)`` reduces everything; ``max(x, dim)`` one dim (values and indices); ``max(x, y)`` is elementwise."""
    if len(args) > 1 and isinstance(args[1], torch.Tensor):
        return _elementwise(args, kwargs, out)
    if len(args) == 1 and "dim" not in kwargs:
        return _reduce_all(args, kwargs, out)
    return _reduce(args, kwargs, out)
