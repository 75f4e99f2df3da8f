"""ONNX node types onto prune-graph op kinds: one small function per family, in a read-only table.

A function sees one node and a :class:`Context` (concrete shapes and the values of constants) and
returns the ops the node stands for. Most nodes are one op; a few are a short chain of ops through
intermediate values that exist only in the graph (``DepthToSpace`` in DCR mode is a reshape, a
transpose and a reshape; a ``Slice`` over several axes is one slice per axis). Inputs that only
carry sizes (a ``Reshape``'s shape, a ``Slice``'s bounds) are left out of the op: apply rewrites
them from the plan. A node type not in the table is opaque, and so is a node whose sizes are not
constants.
"""

from __future__ import annotations

import types
from collections.abc import Mapping, Sequence

import numpy as np
import onnx

from prune_graph import AttrValue, Mixing, OpKind
from prune_onnx._attention import contrib_attention, contrib_multi_head_attention, onnx_attention
from prune_onnx._einsum import einsum
from prune_onnx._spec import Context, NodeRule, Spec, opaque
from prune_onnx._spec import attr as _attr
from prune_onnx._spec import data as _data
from prune_onnx._spec import int_attr as _int_attr
from prune_onnx._spec import outs as _out

__all__ = ["NODE_RULES", "Context", "NodeRule", "Spec", "rule_key", "specs_of"]


def _conv(node: onnx.NodeProto, ctx: Context, transposed: bool = False) -> list[Spec]:
    group = _int_attr(node, "group", 1)
    return [Spec(OpKind.CONV, _data(node), _out(node)[:1], {"groups": group, "transposed": transposed})]


def _conv_transpose(node: onnx.NodeProto, ctx: Context) -> list[Spec]:
    return _conv(node, ctx, transposed=True)


def _gemm(node: onnx.NodeProto, ctx: Context) -> list[Spec]:
    if _int_attr(node, "transA", 0):
        return opaque(node, ctx)
    in_out = not _int_attr(node, "transB", 0)
    return [Spec(OpKind.LINEAR, _data(node), _out(node)[:1], {"weight_in_out": in_out})]


def _matmul(node: onnx.NodeProto, ctx: Context) -> list[Spec]:
    return [Spec(OpKind.MATMUL, _data(node)[:2], _out(node)[:1])]


def _batch_norm(node: onnx.NodeProto, ctx: Context) -> list[Spec]:
    if len(ctx.shape(node.input[0])) < 2:
        return opaque(node, ctx)
    return [Spec(OpKind.NORM, _data(node)[:5], _out(node)[:1], {"channel_dims": (1,), "mixes": False})]


def _instance_norm(node: onnx.NodeProto, ctx: Context) -> list[Spec]:
    # statistics over the spatial dims of each channel: channels stay independent
    return [Spec(OpKind.NORM, _data(node)[:3], _out(node)[:1], {"channel_dims": (1,), "mixes": False})]


def _layer_norm(node: onnx.NodeProto, ctx: Context) -> list[Spec]:
    rank = len(ctx.shape(node.input[0]))
    axis = _int_attr(node, "axis", -1) % rank
    dims = tuple(range(axis, rank))
    params = _data(node)[1:3]
    if any(ctx.shape(p) != ctx.shape(node.input[0])[axis:] for p in params):
        return opaque(node, ctx)  # broadcast scales (rank-reduced) are rare; do not guess their layout
    return [Spec(OpKind.NORM, (node.input[0], *params), _out(node)[:1], {"channel_dims": dims, "mixes": True})]


def _group_norm(node: onnx.NodeProto, ctx: Context) -> list[Spec]:
    channels = ctx.shape(node.input[0])[1]
    groups = _int_attr(node, "num_groups", 1)
    params = _data(node)[1:3]
    # opset 18 has one scale per group, opset 21 one per channel: only the per-channel layout is read
    if any(ctx.shape(p) != (channels,) for p in params):
        return opaque(node, ctx)
    return [
        Spec(
            OpKind.NORM,
            (node.input[0], *params),
            _out(node)[:1],
            {"channel_dims": (1,), "num_groups": groups, "mixes": True},
        )
    ]


def _elementwise(node: onnx.NodeProto, ctx: Context) -> list[Spec]:
    return [Spec(OpKind.ELEMENTWISE, _data(node), _out(node))]


def _first_output(node: onnx.NodeProto, ctx: Context) -> list[Spec]:
    # Dropout's mask, when asked for, has x's shape: elementwise covers it too
    return [Spec(OpKind.ELEMENTWISE, _data(node)[:1], _out(node))]


def _concat(node: onnx.NodeProto, ctx: Context) -> list[Spec]:
    rank = len(ctx.shape(node.output[0]))
    return [Spec(OpKind.CONCAT, _data(node), _out(node), {"dim": _int_attr(node, "axis", 0) % rank})]


def _split(node: onnx.NodeProto, ctx: Context) -> list[Spec]:
    rank = len(ctx.shape(node.input[0]))
    return [Spec(OpKind.SPLIT, (node.input[0],), _out(node), {"dim": _int_attr(node, "axis", 0) % rank})]


def _ints_input(node: onnx.NodeProto, ctx: Context, position: int, attr: str) -> list[int] | None:
    """An int vector given as input ``position`` (newer opsets) or attribute ``attr`` (older ones)."""
    if len(node.input) > position and node.input[position]:
        value = ctx.const(node.input[position])
        return None if value is None else [int(v) for v in np.asarray(value).reshape(-1)]
    found = _attr(node, attr)
    return None if found is None else [int(v) for v in found]  # type: ignore[attr-defined]


def slice_ranges(node: onnx.NodeProto, ctx: Context) -> list[tuple[int, range]] | None:
    """(axis, the input indices kept) per sliced axis, or ``None`` when a bound is not a constant."""
    shape = ctx.shape(node.input[0])
    starts = _ints_input(node, ctx, 1, "starts")
    ends = _ints_input(node, ctx, 2, "ends")
    if starts is None or ends is None:
        return None
    axes = _ints_input(node, ctx, 3, "axes")
    steps = _ints_input(node, ctx, 4, "steps")
    axes = list(range(len(starts))) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    out = []
    for axis, start, end, step in zip(axes, starts, ends, steps):
        axis %= len(shape)
        out.append((axis, range(*slice(start, end, step).indices(shape[axis]))))
    return out


def _slice(node: onnx.NodeProto, ctx: Context) -> list[Spec]:
    ranges = slice_ranges(node, ctx)
    if ranges is None or any(r.step < 0 for _, r in ranges):
        return opaque(node, ctx)
    shape = list(ctx.shape(node.input[0]))
    real = [(axis, r) for axis, r in ranges if len(r) != shape[axis]]
    x, y = node.input[0], node.output[0]
    if not real:
        return [Spec(OpKind.ELEMENTWISE, (x,), (y,))]
    specs = []
    for k, (axis, r) in enumerate(real):
        shape[axis] = len(r)
        last = k == len(real) - 1
        target = y if last else f"{y}::slice{k}"
        made = () if last else ((target, tuple(shape)),)
        specs.append(Spec(OpKind.SLICE, (x,), (target,), {"dim": axis, "start": r.start, "step": r.step}, made))
        x = target
    return specs


def _reshape(node: onnx.NodeProto, ctx: Context) -> list[Spec]:
    return [Spec(OpKind.RESHAPE, (node.input[0],), _out(node)[:1])]


def _transpose(node: onnx.NodeProto, ctx: Context) -> list[Spec]:
    rank = len(ctx.shape(node.input[0]))
    perm = _attr(node, "perm")
    order = tuple(int(p) for p in perm) if perm is not None else tuple(reversed(range(rank)))  # type: ignore[attr-defined]
    return [Spec(OpKind.PERMUTE, (node.input[0],), _out(node), {"perm": order})]


def _pool(node: onnx.NodeProto, ctx: Context) -> list[Spec]:
    rank = len(ctx.shape(node.input[0]))
    return [Spec(OpKind.POOL, (node.input[0],), _out(node), {"dims": tuple(range(2, rank))})]


def _resize(node: onnx.NodeProto, ctx: Context) -> list[Spec]:
    x, y = ctx.shape(node.input[0]), ctx.shape(node.output[0])
    changed = {d for d in range(len(x)) if x[d] != y[d]} | set(range(2, len(x)))
    return [Spec(OpKind.POOL, (node.input[0],), _out(node), {"dims": tuple(sorted(changed))})]


def _pad(node: onnx.NodeProto, ctx: Context) -> list[Spec]:
    x, y = ctx.shape(node.input[0]), ctx.shape(node.output[0])
    if len(node.input) > 3 and node.input[3]:
        return opaque(node, ctx)  # padding named axes: rare, and the pads would need remapping
    changed = tuple(d for d in range(len(x)) if x[d] != y[d])
    return [Spec(OpKind.POOL, (node.input[0],), _out(node), {"dims": changed})]


def _reduce(node: onnx.NodeProto, ctx: Context) -> list[Spec]:
    rank = len(ctx.shape(node.input[0]))
    axes = _ints_input(node, ctx, 1, "axes")
    if axes is None and len(node.input) > 1 and node.input[1]:
        return opaque(node, ctx)
    if not axes:
        if _int_attr(node, "noop_with_empty_axes", 0):
            return [Spec(OpKind.ELEMENTWISE, (node.input[0],), _out(node))]
        axes = list(range(rank))
    keep = bool(_int_attr(node, "keepdims", 1))
    return [
        Spec(
            OpKind.REDUCE,
            (node.input[0],),
            _out(node),
            {"dims": tuple(a % max(rank, 1) for a in axes), "keepdim": keep},
        )
    ]


def _arg_reduce(node: onnx.NodeProto, ctx: Context) -> list[Spec]:
    rank = len(ctx.shape(node.input[0]))
    axis = _int_attr(node, "axis", 0) % rank
    keep = bool(_int_attr(node, "keepdims", 1))
    return [Spec(OpKind.REDUCE, (node.input[0],), _out(node), {"dims": (axis,), "keepdim": keep})]


def _softmax(node: onnx.NodeProto, ctx: Context) -> list[Spec]:
    rank = len(ctx.shape(node.input[0]))
    if ctx.opset < 13:
        # before opset 13 the input is coerced to 2-D at ``axis`` (default 1): the softmax runs over every dim after it
        dims = tuple(range(_int_attr(node, "axis", 1) % rank, rank))
    else:
        dims = (_int_attr(node, "axis", -1) % rank,)
    how = Mixing.SOFTMAX.value
    return [Spec(OpKind.MIX, (node.input[0],), _out(node), {"dims": dims, "how": how})]


def _cumsum(node: onnx.NodeProto, ctx: Context) -> list[Spec]:
    axis = ctx.const(node.input[1])
    if axis is None:
        return opaque(node, ctx)
    rank = len(ctx.shape(node.input[0]))
    dims = (int(np.asarray(axis).reshape(-1)[0]) % rank,)
    return [Spec(OpKind.MIX, (node.input[0],), _out(node), {"dims": dims, "how": Mixing.CUMULATIVE.value})]


def _chain(
    node: onnx.NodeProto, steps: Sequence[tuple[OpKind, tuple[int, ...], Mapping[str, AttrValue]]]
) -> list[Spec]:
    """A node written as a chain of ops: each step's kind, output shape and attributes."""
    x = node.input[0]
    specs = []
    for k, (kind, shape, attrs_) in enumerate(steps):
        last = k == len(steps) - 1
        target = node.output[0] if last else f"{node.output[0]}::{node.op_type}{k}"
        specs.append(Spec(kind, (x,), (target,), dict(attrs_), () if last else ((target, shape),)))
        x = target
    return specs


def _depth_to_space(node: onnx.NodeProto, ctx: Context) -> list[Spec]:
    n, c, h, w = ctx.shape(node.input[0])
    b = _int_attr(node, "blocksize", 1)
    mode = _attr(node, "mode", b"DCR")
    mode = mode.decode() if isinstance(mode, bytes) else str(mode)
    if mode == "CRD":
        return [Spec(OpKind.PIXEL_SHUFFLE, (node.input[0],), _out(node), {"factor": b, "inverse": False})]
    # DCR: channel (i·b + j)·C' + c goes to pixel (h·b + i, w·b + j) of channel c
    steps: list[tuple[OpKind, tuple[int, ...], Mapping[str, AttrValue]]] = [
        (OpKind.RESHAPE, (n, b, b, c // (b * b), h, w), {}),
        (OpKind.PERMUTE, (n, c // (b * b), h, b, w, b), {"perm": (0, 3, 4, 1, 5, 2)}),
        (OpKind.RESHAPE, (n, c // (b * b), h * b, w * b), {}),
    ]
    return _chain(node, steps)


def _space_to_depth(node: onnx.NodeProto, ctx: Context) -> list[Spec]:
    n, c, h, w = ctx.shape(node.input[0])
    b = _int_attr(node, "blocksize", 1)
    steps: list[tuple[OpKind, tuple[int, ...], Mapping[str, AttrValue]]] = [
        (OpKind.RESHAPE, (n, c, h // b, b, w // b, b), {}),
        (OpKind.PERMUTE, (n, b, b, c, h // b, w // b), {"perm": (0, 3, 5, 1, 2, 4)}),
        (OpKind.RESHAPE, (n, c * b * b, h // b, w // b), {}),
    ]
    return _chain(node, steps)


def _gather(node: onnx.NodeProto, ctx: Context) -> list[Spec]:
    data, indices = node.input[0], node.input[1]
    rank = len(ctx.shape(data))
    axis = _int_attr(node, "axis", 0) % rank
    if data in ctx.weights and axis == 0 and rank == 2:
        return [Spec(OpKind.EMBEDDING, (data, indices), _out(node))]
    index = ctx.const(indices)
    if index is not None and np.asarray(index).ndim == 0:
        return [Spec(OpKind.SELECT, (data,), _out(node), {"dim": axis, "index": int(index)})]
    return opaque(node, ctx)


def _expand(node: onnx.NodeProto, ctx: Context) -> list[Spec]:
    return [Spec(OpKind.EXPAND, (node.input[0],), _out(node))]


def _tile(node: onnx.NodeProto, ctx: Context) -> list[Spec]:
    repeats = ctx.const(node.input[1])
    if repeats is None:
        return opaque(node, ctx)
    return [Spec(OpKind.REPEAT, (node.input[0],), _out(node), {"repeats": tuple(int(r) for r in repeats.reshape(-1))})]


_GATES = types.MappingProxyType({"LSTM": 4, "GRU": 3, "RNN": 1})


def _recurrent(node: onnx.NodeProto, ctx: Context) -> list[Spec]:
    """``LSTM`` / ``GRU`` / ``RNN`` with weights from initializers; ``sequence_lens`` takes no part."""
    inputs = list(node.input) + [""] * (8 - len(node.input))
    x, w, r, b, _lens, h0, c0, peephole = inputs[:8]
    layout = _int_attr(node, "layout", 0)
    why = None
    if peephole:
        why = "peepholes (input P) are not read"
    elif layout not in (0, 1):
        why = f"layout {layout} is neither 0 nor 1"
    elif any(t and t not in ctx.weights for t in (w, r, b)):
        why = "its W, R and B must be initializers to be sliced"
    if why is not None:
        return [Spec(OpKind.OPAQUE, _data(node), _out(node), {"why": why})]
    states = tuple(t for t in (h0, c0) if t)
    specs_in = (x, w, r, *((b,) if b else ()), *states)
    attrs_ = {"gates": _GATES[node.op_type], "batch_first": bool(layout)}
    return [Spec(OpKind.RECURRENT, specs_in, _out(node), attrs_)]


_ELEMENTWISE = [
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Pow",
    "Mod",
    "Min",
    "Max",
    "Sum",
    "Mean",
    "Where",
    "Equal",
    "Less",
    "LessOrEqual",
    "Greater",
    "GreaterOrEqual",
    "And",
    "Or",
    "Xor",
    "Not",
    "Relu",
    "LeakyRelu",
    "PRelu",
    "Elu",
    "Selu",
    "Celu",
    "Gelu",
    "Sigmoid",
    "HardSigmoid",
    "HardSwish",
    "Swish",
    "Mish",
    "Softplus",
    "Softsign",
    "Tanh",
    "Erf",
    "Exp",
    "Log",
    "Sqrt",
    "Reciprocal",
    "Neg",
    "Abs",
    "Sign",
    "Floor",
    "Ceil",
    "Round",
    "Clip",
    "Cast",
    "CastLike",
    "Identity",
    "ThresholdedRelu",
    "Sin",
    "Cos",
    "IsNaN",
    "IsInf",
    "BitShift",
]

_POOLS = ["MaxPool", "AveragePool", "LpPool", "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool", "MaxRoiPool"]
_REDUCES = [
    "ReduceMean",
    "ReduceSum",
    "ReduceMax",
    "ReduceMin",
    "ReduceProd",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceSumSquare",
]

NODE_RULES: Mapping[str, NodeRule] = types.MappingProxyType(
    {
        "Conv": _conv,
        "ConvTranspose": _conv_transpose,
        "Gemm": _gemm,
        "MatMul": _matmul,
        "BatchNormalization": _batch_norm,
        "InstanceNormalization": _instance_norm,
        "LayerNormalization": _layer_norm,
        "RMSNormalization": _layer_norm,  # opset 23: a layer norm without a mean or a bias
        "GroupNormalization": _group_norm,
        **dict.fromkeys(_ELEMENTWISE, _elementwise),
        "Dropout": _first_output,
        "Concat": _concat,
        "Split": _split,
        "Slice": _slice,
        "Reshape": _reshape,
        "Flatten": _reshape,
        "Squeeze": _reshape,
        "Unsqueeze": _reshape,
        "Transpose": _transpose,
        **dict.fromkeys(_POOLS, _pool),
        "Resize": _resize,
        "Upsample": _resize,
        "Pad": _pad,
        **dict.fromkeys(_REDUCES, _reduce),
        "ArgMax": _arg_reduce,
        "ArgMin": _arg_reduce,
        "Softmax": _softmax,
        "LogSoftmax": _softmax,
        "Hardmax": _softmax,
        "CumSum": _cumsum,
        "DepthToSpace": _depth_to_space,
        "SpaceToDepth": _space_to_depth,
        "Gather": _gather,
        "Expand": _expand,
        "Tile": _tile,
        **dict.fromkeys(_GATES, _recurrent),
        "Attention": onnx_attention,
        "Einsum": einsum,
        "com.microsoft.Attention": contrib_attention,
        "com.microsoft.MultiHeadAttention": contrib_multi_head_attention,
    }
)
"""Node type → rule: the type for the default ONNX domain, ``domain.type`` for others
(``com.microsoft.Attention``). Extend by building a new mapping and passing it to ``trace``."""


def rule_key(node: onnx.NodeProto) -> str:
    """A node's key in :data:`NODE_RULES`: its type, prefixed by its domain outside the default one."""
    return node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"


def specs_of(node: onnx.NodeProto, ctx: Context, rules: Mapping[str, NodeRule] = NODE_RULES) -> list[Spec]:
    """The ops ``node`` stands for (opaque for node types the table lacks)."""
    rule = rules.get(rule_key(node))
    if rule is None:
        return opaque(node, ctx)
    return rule(node, ctx)
