"""Attention nodes onto prune-graph ops: ONNX ``Attention`` (opset 23+), ``com.microsoft.Attention`` and ``MultiHeadAttention``.

All become the core's ``ATTENTION`` op on per-head tensors ``(batch, heads, length, head dim)``,
reached through intermediate values that exist only in the graph: a packed ``(batch, length,
heads·head dim)`` input is a reshape into heads and a transpose, the output the way back. The
reshapes make the heads and the head dims factors of the packed channels, so the core prunes
whole heads (``q_num_heads`` / ``num_heads`` then follow, see :func:`heads_after`) and sees the
head dims as what they are: ``q·k`` sums over the query-key dim and, without a ``scale``
attribute, divides by √(its size), a mixing the core declares (``Mixing.SIZE``).

``com.microsoft.Attention`` also holds the input projection: one weight ``(in, q + k + v)`` and
one bias, read as a linear op and three slices of its output (``qkv_hidden_sizes`` is written
when the sizes change).

``com.microsoft.MultiHeadAttention`` takes projected Q, K, V: read as the packed ``Attention``.

Left opaque, each with its reason: grouped-query attention (fewer key/value heads than query
heads), the ``qk_matmul_output`` output, and for the contrib ops ``past`` / ``present``,
``do_rotary``, a shared past-present buffer, ``MultiHeadAttention``'s packed bias and its packed
or per-head K/V layouts. Masks, lengths and biases over positions take
part as they are: their dims are pinned, never guessed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import onnx

from prune_graph import OpKind
from prune_onnx._spec import Context, Spec, attr, data, int_attr, outs

__all__ = ["HEADS", "contrib_attention", "contrib_multi_head_attention", "heads_after", "onnx_attention"]

HEADS = "::heads"
"""Suffix of the graph's per-head values: ``<output>::q_heads`` is the queries as (B, H, L, E)."""


def _name(node: onnx.NodeProto, what: str) -> str:
    return f"{node.output[0]}::{what}"


def _why(node: onnx.NodeProto, why: str) -> list[Spec]:
    return [Spec(OpKind.OPAQUE, data(node), outs(node), {"why": why})]


def _into_heads(node: onnx.NodeProto, x: str, tag: str, shape: tuple[int, ...], heads: int) -> tuple[list[Spec], str]:
    """``x`` (B, L, H·E) as (B, H, L, E): a reshape and a transpose."""
    b, length, width = shape
    split = _name(node, f"{tag}_split")
    target = _name(node, f"{tag}{HEADS}")
    specs = [
        Spec(OpKind.RESHAPE, (x,), (split,), made=((split, (b, length, heads, width // heads)),)),
        Spec(
            OpKind.PERMUTE,
            (split,),
            (target,),
            {"perm": (0, 2, 1, 3)},
            made=((target, (b, heads, length, width // heads)),),
        ),
    ]
    return specs, target


def _out_of_heads(node: onnx.NodeProto, y4: str, y: str, shape: tuple[int, ...]) -> list[Spec]:
    """(B, H, L, E) back to ``y`` (B, L, H·E)."""
    b, heads, length, width = shape
    moved = _name(node, "y_moved")
    return [
        Spec(OpKind.PERMUTE, (y4,), (moved,), {"perm": (0, 2, 1, 3)}, made=((moved, (b, length, heads, width)),)),
        Spec(OpKind.RESHAPE, (moved,), (y,)),
    ]


def _scaled(node: onnx.NodeProto) -> dict[str, bool]:
    # without a scale attribute the node divides q·k by √(head dim), which changes when it is pruned
    return {"size_scaled": attr(node, "scale") is None}


def onnx_attention(node: onnx.NodeProto, ctx: Context) -> list[Spec]:
    """``Attention`` (default domain, opset 23+): Q, K, V as (B, H, L, E) or packed (B, L, H·E)."""
    inputs = list(node.input) + [""] * (7 - len(node.input))
    q, k, v, mask, past_k, past_v, lengths = inputs[:7]
    outputs = list(node.output) + [""] * (4 - len(node.output))
    y, present_k, present_v, qk = outputs[:4]
    ranks = {len(ctx.shape(t)) for t in (q, k, v)}
    if qk:
        return _why(node, "its qk_matmul_output is not read")
    if ranks not in ({3}, {4}):
        return _why(node, f"Q, K and V of ranks {sorted(ranks)}")
    if bool(past_k) != bool(past_v):
        return _why(node, "past_key without past_value, or the other way round")
    packed = ranks == {3}
    if packed:
        q_heads, kv_heads = int_attr(node, "q_num_heads", 0), int_attr(node, "kv_num_heads", 0)
        sizes = (ctx.shape(q)[2], ctx.shape(k)[2], ctx.shape(v)[2])
        if q_heads < 1 or kv_heads < 1 or sizes[0] % q_heads or sizes[1] % kv_heads or sizes[2] % kv_heads:
            return _why(node, f"q_num_heads {q_heads} / kv_num_heads {kv_heads} do not divide Q, K, V of {sizes}")
    else:
        q_heads, kv_heads = ctx.shape(q)[1], ctx.shape(k)[1]
    if q_heads != kv_heads:
        return _why(node, f"grouped-query attention ({q_heads} query heads share {kv_heads} key/value heads)")
    specs: list[Spec] = []
    per_head = []
    for tag, t in (("q", q), ("k", k), ("v", v)):
        if packed:
            steps, t = _into_heads(node, t, tag, ctx.shape(t), q_heads)
            specs += steps
        per_head.append(t)
    for position, (past, present, tag) in enumerate(((past_k, present_k, "k"), (past_v, present_v, "v")), start=1):
        if not past:
            continue
        total = present or _name(node, f"{tag}_total")
        pshape, nshape = ctx.shape(past), _shape_of(specs, per_head[position], ctx)
        made = () if present else ((total, (*nshape[:2], pshape[2] + nshape[2], nshape[3])),)
        specs.append(Spec(OpKind.CONCAT, (past, per_head[position]), (total,), {"dim": 2}, made))
        per_head[position] = total
    q4, k4, v4 = per_head
    qshape, vshape = _shape_of(specs, q4, ctx), _shape_of(specs, v4, ctx)
    y4 = _name(node, f"y{HEADS}") if packed else y
    y4_shape = (*qshape[:3], vshape[3])
    attention_in = (q4, k4, v4, *((mask,) if mask else ()))
    made_y = ((y4, y4_shape),) if packed else ()
    specs.append(Spec(OpKind.ATTENTION, attention_in, (y4,), _scaled(node), made_y))
    if packed:
        specs += _out_of_heads(node, y4, y, y4_shape)
    if lengths:
        # the valid key/value length of each sequence: a batch-sized vector the heads never meet
        specs.append(Spec(OpKind.OPAQUE, (lengths,), (), {"why": "key/value lengths"}))
    return specs


def _shape_of(specs: Sequence[Spec], name: str, ctx: Context) -> tuple[int, ...]:
    for spec in specs:
        for made, shape in spec.made:
            if made == name:
                return shape
    return ctx.shape(name)


def contrib_attention(node: onnx.NodeProto, ctx: Context) -> list[Spec]:
    """``com.microsoft.Attention``: x (B, L, in), weight (in, q + k + v), bias (q + k + v) → (B, L, v)."""
    inputs = list(node.input) + [""] * (7 - len(node.input))
    x, w, bias, mask, past, position_bias, past_length = inputs[:7]
    heads = int_attr(node, "num_heads", 0)
    why = None
    if past or past_length or len([o for o in node.output if o]) > 1:
        why = "past / present states are not read"
    elif int_attr(node, "do_rotary", 0) or int_attr(node, "past_present_share_buffer", 0):
        why = "do_rotary / past_present_share_buffer are not read"
    elif w not in ctx.weights or (bias and bias not in ctx.weights):
        why = "its weights and bias must be initializers to be sliced"
    elif len(ctx.shape(x)) != 3 or len(ctx.shape(w)) != 2:
        why = f"input of shape {ctx.shape(x)}, weights of shape {ctx.shape(w)}"
    if why is not None:
        return _why(node, why)
    given = attr(node, "qkv_hidden_sizes")
    total = ctx.shape(w)[1]
    sizes = [int(s) for s in given] if given else [total // 3] * 3  # type: ignore[attr-defined]
    if heads < 1 or sum(sizes) != total or any(s % heads for s in sizes) or sizes[0] != sizes[1]:
        return _why(node, f"num_heads {heads} and qkv_hidden_sizes {sizes} do not fit weights {ctx.shape(w)}")
    b, length, _ = ctx.shape(x)
    qkv = _name(node, "qkv")
    specs = [
        Spec(
            OpKind.LINEAR,
            (x, w, *((bias,) if bias else ())),
            (qkv,),
            {"weight_in_out": True},
            made=((qkv, (b, length, total)),),
        )
    ]
    per_head = []
    start = 0
    for tag, size in zip("qkv", sizes):
        piece = _name(node, tag)
        attrs_ = {"dim": 2, "start": start, "step": 1}
        specs.append(Spec(OpKind.SLICE, (qkv,), (piece,), attrs_, made=((piece, (b, length, size)),)))
        steps, t = _into_heads(node, piece, tag, (b, length, size), heads)
        specs += steps
        per_head.append(t)
        start += size
    y4 = _name(node, f"y{HEADS}")
    y4_shape = (b, heads, length, sizes[2] // heads)
    specs.append(Spec(OpKind.ATTENTION, tuple(per_head), (y4,), _scaled_contrib(node), made=((y4, y4_shape),)))
    specs += _out_of_heads(node, y4, node.output[0], y4_shape)
    others = tuple(t for t in (mask, position_bias) if t)
    if others:
        # a mask over positions in one of several layouts, a bias per head and position: pinned
        specs.append(Spec(OpKind.OPAQUE, others, (), {"why": "attention masks and position biases"}))
    return specs


def _scaled_contrib(node: onnx.NodeProto) -> dict[str, bool]:
    # the contrib op reads scale 0 (its default) as 1/√(head dim)
    scale = attr(node, "scale")
    return {"size_scaled": scale is None or float(scale) == 0.0}  # type: ignore[arg-type]


def contrib_multi_head_attention(node: onnx.NodeProto, ctx: Context) -> list[Spec]:
    """``com.microsoft.MultiHeadAttention`` on projected Q, K, V, each (B, L, heads·head dim), no bias."""
    inputs = list(node.input) + [""] * (10 - len(node.input))
    q, k, v, bias, padding_mask, position_bias = inputs[:6]
    heads = int_attr(node, "num_heads", 0)
    why = None
    if any(inputs[6:]) or len(outs(node)) > 1:
        why = "past / present states are not read"
    elif bias:
        why = "its packed Q/K/V bias is not read"
    elif not (k and v) or any(len(ctx.shape(t)) != 3 for t in (q, k, v)):
        why = "packed or per-head K/V layouts are not read"
    elif heads < 1 or any(ctx.shape(t)[2] % heads for t in (q, k, v)) or ctx.shape(q)[2] != ctx.shape(k)[2]:
        why = f"num_heads {heads} does not divide Q, K, V of {[ctx.shape(t) for t in (q, k, v)]}"
    if why is not None:
        return _why(node, why)
    specs: list[Spec] = []
    per_head = []
    for tag, t in (("q", q), ("k", k), ("v", v)):
        steps, t = _into_heads(node, t, tag, ctx.shape(t), heads)
        specs += steps
        per_head.append(t)
    qshape, vshape = _shape_of(specs, per_head[0], ctx), _shape_of(specs, per_head[2], ctx)
    y4 = _name(node, f"y{HEADS}")
    y4_shape = (*qshape[:3], vshape[3])
    mask = (position_bias,) if position_bias else ()  # (B or 1, heads or 1, L, S): aligned as the core reads masks
    specs.append(Spec(OpKind.ATTENTION, (*per_head, *mask), (y4,), _scaled_contrib(node), ((y4, y4_shape),)))
    specs += _out_of_heads(node, y4, node.output[0], y4_shape)
    if padding_mask:
        specs.append(Spec(OpKind.OPAQUE, (padding_mask,), (), {"why": "key padding masks"}))
    return specs


def heads_after(node: onnx.NodeProto, new_shape: Callable[[str], tuple[int, ...] | None]) -> dict[str, int | list[int]]:
    """The attributes an attention node needs after pruning, from the new shapes of its per-head values.

    ``new_shape`` maps a graph value's name to its shape after the plan (``None`` when the graph
    has no such value: the node was opaque). Per-head (B, H, L, E) inputs carry their sizes
    themselves; head counts given with them anyway are rewritten to match.
    """
    found: dict[str, int | list[int]] = {}
    q4, k4 = new_shape(_name(node, f"q{HEADS}")), new_shape(_name(node, f"k{HEADS}"))
    if node.domain == "com.microsoft" and node.op_type == "MultiHeadAttention":
        if q4 is not None:
            found["num_heads"] = q4[1]
        return found
    if node.domain == "com.microsoft":
        pieces = [new_shape(_name(node, tag)) for tag in "qkv"]
        if q4 is not None and all(p is not None for p in pieces):
            found["num_heads"] = q4[1]
            found["qkv_hidden_sizes"] = [p[2] for p in pieces if p is not None]
        return found
    if q4 is None and any(a.name in ("q_num_heads", "kv_num_heads") for a in node.attribute):
        # per-head inputs with the (optional) head counts given anyway: they follow the inputs
        q4, k4 = new_shape(node.input[0]), new_shape(node.input[1])
        if q4 is None or k4 is None or len(q4) != 4:
            return found
    if q4 is not None and k4 is not None:
        found["q_num_heads"], found["kv_num_heads"] = q4[1], k4[1]
    return found
