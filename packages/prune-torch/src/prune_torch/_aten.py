"""How aten ops map onto prune-graph op kinds: one small reader per family, in a read-only table.

A reader gets the op's arguments and result and returns an :class:`OpSpec` (kind, the tensors
that are inputs and outputs, attributes) or ``None`` to leave the op opaque. The table is keyed
by aten overload packets (objects, not names).
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import torch

from prune_graph import AttrValue, OpKind

__all__ = ["READERS", "OpSpec", "tensors_in"]

aten = torch.ops.aten


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
    x = args[0]
    params = tuple(p for p in args[1:5] if isinstance(p, torch.Tensor))
    return OpSpec(OpKind.NORM, (x, *params), _outs(out)[:1], {"channel_dims": (1,), "mixes": False})


def _batch_norm_no_training(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> OpSpec:
    return _batch_norm(args, kwargs, out)


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


def _packets(*names: str) -> list[Any]:
    found = []
    for name in names:
        packet = getattr(aten, name, None)
        if packet is not None:
            found.append(packet)
    return found


def _table() -> Mapping[Any, Reader]:
    table: dict[Any, Reader] = {}
    unary = [
        "relu",
        "gelu",
        "silu",
        "sigmoid",
        "tanh",
        "hardtanh",
        "hardswish",
        "hardsigmoid",
        "leaky_relu",
        "elu",
        "selu",
        "celu",
        "mish",
        "softplus",
        "neg",
        "exp",
        "log",
        "log1p",
        "sqrt",
        "rsqrt",
        "abs",
        "sign",
        "erf",
        "sin",
        "cos",
        "reciprocal",
        "square",
        "clamp",
        "clamp_min",
        "clamp_max",
        "threshold",
        "logit",
        "sgn",
        "trunc",
        "floor",
        "ceil",
        "round",
        "frac",
        "exp2",
        "expm1",
        "log2",
        "nan_to_num",
        "clone",
        "_to_copy",
        "detach",
        "alias",
        "lift_fresh",
        "contiguous",
        "fill",
        "bernoulli",
        "_prelu_kernel",
    ]
    binary = [
        "add",
        "sub",
        "rsub",
        "mul",
        "div",
        "pow",
        "maximum",
        "minimum",
        "fmod",
        "remainder",
        "where",
        "masked_fill",
        "lt",
        "gt",
        "le",
        "ge",
        "eq",
        "ne",
        "logical_and",
        "logical_or",
        "logical_not",
        "logical_xor",
        "bitwise_and",
        "bitwise_or",
        "bitwise_not",
        "bitwise_xor",
        "isnan",
        "isinf",
        "atan2",
        "copy",
        "lerp",
        "addcmul",
        "addcdiv",
        "hardtanh_backward",
    ]
    for name in unary + binary:
        for packet in _packets(name, name + "_"):
            table[packet] = _elementwise
    for packet in _packets("native_dropout", "dropout", "feature_dropout", "alpha_dropout"):
        table[packet] = _first_only
    for packet in _packets(
        "zeros_like", "ones_like", "empty_like", "full_like", "rand_like", "randn_like", "randint_like"
    ):
        table[packet] = _like
    for packet in _packets("arange", "linspace", "logspace", "eye", "tensor", "lift_fresh_copy"):
        table[packet] = _positional
    for packet in _packets(
        "zeros",
        "ones",
        "full",
        "empty",
        "empty_strided",
        "scalar_tensor",
        "rand",
        "randn",
        "randint",
        "new_zeros",
        "new_ones",
        "new_empty",
        "new_full",
    ):
        table[packet] = _constant
    for packet in _packets("sum", "mean", "amax", "amin", "prod", "logsumexp", "any", "all", "nansum", "nanmean"):
        table[packet] = _reduce
    for packet in _packets("max", "min", "median", "nanmedian"):
        table[packet] = _reduce_all_or_dim
    for packet in _packets("var", "std", "var_mean", "std_mean"):
        table[packet] = _var_like
    table[aten.linalg_vector_norm] = _vector_norm
    for count, names in (
        (
            1,
            "max_pool1d max_pool1d_with_indices avg_pool1d adaptive_avg_pool1d adaptive_max_pool1d upsample_nearest1d upsample_linear1d _upsample_nearest_exact1d",
        ),
        (
            2,
            "max_pool2d max_pool2d_with_indices avg_pool2d _adaptive_avg_pool2d adaptive_max_pool2d upsample_nearest2d upsample_bilinear2d upsample_bicubic2d _upsample_bilinear2d_aa _upsample_bicubic2d_aa _upsample_nearest_exact2d max_unpool2d",
        ),
        (
            3,
            "max_pool3d max_pool3d_with_indices avg_pool3d _adaptive_avg_pool3d adaptive_max_pool3d upsample_nearest3d upsample_trilinear3d _upsample_nearest_exact3d",
        ),
    ):
        for packet in _packets(*names.split()):
            table[packet] = _spatial(count)
    for packet in _packets("constant_pad_nd"):
        table[packet] = _pad
    for count, names in (
        (1, "reflection_pad1d replication_pad1d"),
        (2, "reflection_pad2d replication_pad2d"),
        (3, "reflection_pad3d replication_pad3d"),
    ):
        for packet in _packets(*names.split()):
            table[packet] = _spatial(count)
    table[aten.flip] = _along(1, "dims")
    table[aten.roll] = _along(2, "dims")
    table[aten.convolution] = _conv
    for packet in _packets("mm", "bmm", "matmul", "mv", "dot"):
        table[packet] = _matmul
    for packet in _packets("addmm", "baddbmm", "addmv"):
        table[packet] = _addmm
    for packet in _packets("native_batch_norm", "_native_batch_norm_legit", "cudnn_batch_norm", "miopen_batch_norm"):
        table[packet] = _batch_norm
    for packet in _packets("_native_batch_norm_legit_no_training"):
        table[packet] = _batch_norm_no_training
    table[aten.native_layer_norm] = _layer_norm
    table[aten.native_group_norm] = _group_norm
    for packet in _packets("_softmax", "softmax", "_log_softmax", "log_softmax", "_safe_softmax"):
        table[packet] = _mixing("softmax")
    for packet in _packets("cumsum", "cumsum_", "cumprod", "cumprod_", "cummax", "cummin", "logcumsumexp"):
        table[packet] = _mixing("cumulative")
    table[aten.cat] = _cat
    table[aten.stack] = _stack
    for packet in _packets("split", "split_with_sizes", "unsafe_split", "unsafe_split_with_sizes"):
        table[packet] = _split
    table[aten.unbind] = _unbind
    table[aten.slice] = _slice
    table[aten.select] = _select
    for packet in _packets(
        "view", "_unsafe_view", "reshape", "squeeze", "unsqueeze", "flatten", "unflatten", "_reshape_alias", "view_as"
    ):
        table[packet] = _reshape
    table[aten.permute] = _permute
    for packet in _packets("transpose", "transpose_", "swapaxes", "swapdims"):
        table[packet] = _transpose
    for packet in _packets("t", "t_", "numpy_T"):
        table[packet] = _t
    table[aten.expand] = _expand
    table[aten.repeat] = _repeat
    table[aten.embedding] = _embedding
    table[aten.pixel_shuffle] = _pixel_shuffle(False)
    table[aten.pixel_unshuffle] = _pixel_shuffle(True)
    for packet in _packets(
        "_scaled_dot_product_flash_attention_for_cpu",
        "_scaled_dot_product_flash_attention",
        "_scaled_dot_product_efficient_attention",
        "_scaled_dot_product_cudnn_attention",
        "_scaled_dot_product_attention_math",
        "scaled_dot_product_attention",
    ):
        table[packet] = _attention
    return types.MappingProxyType(table)


def _reduce_all_or_dim(args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> OpSpec:
    """``max(x)`` reduces everything; ``max(x, dim)`` one dim (values and indices); ``max(x, y)`` is elementwise."""
    if len(args) > 1 and isinstance(args[1], torch.Tensor):
        return _elementwise(args, kwargs, out)
    if len(args) == 1 and "dim" not in kwargs:
        return _reduce_all(args, kwargs, out)
    return _reduce(args, kwargs, out)


READERS: Mapping[Any, Reader] = _table()
