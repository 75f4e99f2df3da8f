"""Reusable hypothesis strategies for prune-graph: index maps, index sets and valid graphs.

Sizes stay small on purpose: a ``Factor`` multiplies sizes, and the properties enumerate whole
index ranges, so a chain of maps is kept under ``MAX_DST`` destination indices.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from hypothesis import strategies as st

from prune_graph import (
    Factor,
    Graph,
    GraphBuilder,
    Identity,
    IndexMapLike,
    Offset,
    OpKind,
    ValueKind,
    Window,
    block_expand,
    compose,
)

__all__ = [
    "MAX_DST",
    "block_expands",
    "composable_triples",
    "factors",
    "graphs",
    "identities",
    "index_maps",
    "index_sets",
    "injective_maps",
    "map_chains",
    "maps_and_index_sets",
    "messy_index_lists",
    "offsets",
    "primitive_maps",
    "sizes",
    "windows",
]

MAX_DST = 48


# -- index maps ----------------------------------------------------------------------------


def sizes(min_value: int = 0, max_value: int = 8) -> st.SearchStrategy[int]:
    """A dim size."""
    return st.integers(min_value, max_value)


def identities(src_size: int) -> st.SearchStrategy[Identity]:
    """The identity of ``src_size``."""
    return st.just(Identity(src_size))


@st.composite
def offsets(draw: st.DrawFn, src_size: int) -> Offset:
    """A part of ``src_size`` placed somewhere inside a larger (or equal) whole."""
    before = draw(st.integers(0, 4))
    after = draw(st.integers(0, 4))
    return Offset(before, src_size, src_size + before + after)


@st.composite
def windows(draw: st.DrawFn, src_size: int) -> Window:
    """A strided window (possibly empty) that fits in ``src_size``."""
    if src_size == 0:
        return Window(0, draw(st.integers(1, 3)), 0, 0)
    start = draw(st.integers(0, src_size - 1))
    step = draw(st.integers(1, 3))
    length = draw(st.integers(0, (src_size - 1 - start) // step + 1))
    return Window(start, step, length, src_size)


def _extra_sizes(draw: st.DrawFn, budget: int, count: int) -> list[int]:
    out = []
    for _ in range(count):
        size = draw(st.integers(1, max(1, min(3, budget))))
        budget //= size
        out.append(size)
    return out


@st.composite
def factors(draw: st.DrawFn, src_size: int, max_dst: int = MAX_DST) -> Factor:
    """A ``Factor`` whose coarse axis has size ``src_size`` (>= 1), fine size at most ``max_dst``."""
    budget = max(1, max_dst // src_size)
    before = _extra_sizes(draw, budget, draw(st.integers(0, 2)))
    after = _extra_sizes(draw, max(1, budget // math.prod(before)), draw(st.integers(0, 2)))
    return Factor((*before, src_size, *after), len(before))


@st.composite
def block_expands(draw: st.DrawFn, src_size: int, max_dst: int = MAX_DST) -> Factor:
    """``block_expand(src_size, k)``: a flatten of ``src_size`` channels with ``k`` positions each."""
    block = draw(st.integers(1, max(1, min(4, max_dst // max(src_size, 1)))))
    return block_expand(src_size, block)


def primitive_maps(src_size: int | None = None, max_dst: int = MAX_DST) -> st.SearchStrategy[IndexMapLike]:
    """One of Identity, Offset, Window, Factor, block_expand with the given source size."""
    if src_size is None:
        return sizes().flatmap(lambda n: primitive_maps(n, max_dst))
    options: list[st.SearchStrategy[IndexMapLike]] = [identities(src_size), offsets(src_size), windows(src_size)]
    if src_size >= 1:
        options += [factors(src_size, max_dst), block_expands(src_size, max_dst)]
    return st.one_of(*options)


def injective_maps(src_size: int | None = None) -> st.SearchStrategy[IndexMapLike]:
    """Identity, Offset or Window: maps that send one source index to at most one destination."""
    if src_size is None:
        return sizes().flatmap(injective_maps)
    return st.one_of(identities(src_size), offsets(src_size), windows(src_size))


@st.composite
def map_chains(draw: st.DrawFn, min_maps: int = 1, max_maps: int = 4) -> list[IndexMapLike]:
    """Primitive maps whose sizes chain: ``maps[i].dst_size == maps[i + 1].src_size``."""
    size = draw(sizes())
    chain: list[IndexMapLike] = []
    for _ in range(draw(st.integers(min_maps, max_maps))):
        index_map = draw(primitive_maps(size))
        chain.append(index_map)
        size = index_map.dst_size
    return chain


def index_maps() -> st.SearchStrategy[IndexMapLike]:
    """Any index map: a primitive or a composition built with ``compose``."""
    return st.one_of(primitive_maps(), map_chains(2, 4).map(lambda chain: compose(*chain)))


@st.composite
def composable_triples(draw: st.DrawFn) -> tuple[IndexMapLike, IndexMapLike, IndexMapLike]:
    """``(a, b, c)`` with ``a.dst_size == b.src_size`` and ``b.dst_size == c.src_size``; each may be composite."""
    chain = draw(map_chains(3, 6))
    first = draw(st.integers(1, len(chain) - 2))
    second = draw(st.integers(first + 1, len(chain) - 1))
    return compose(*chain[:first]), compose(*chain[first:second]), compose(*chain[second:])


def index_sets(size: int) -> st.SearchStrategy[tuple[int, ...]]:
    """A sorted tuple of unique indices in ``range(size)``."""
    if size == 0:
        return st.just(())
    return st.sets(st.integers(0, size - 1)).map(lambda s: tuple(sorted(s)))


def messy_index_lists(size: int) -> st.SearchStrategy[list[int]]:
    """Valid indices of ``range(size)`` in any order, with repeats (what a caller may pass)."""
    if size == 0:
        return st.just([])
    return st.lists(st.integers(0, size - 1), max_size=2 * size)


def maps_and_index_sets(
    maps: st.SearchStrategy[IndexMapLike] | None = None,
) -> st.SearchStrategy[tuple[IndexMapLike, tuple[int, ...]]]:
    """A map and an index set valid for its source."""
    return (maps or index_maps()).flatmap(lambda m: st.tuples(st.just(m), index_sets(m.src_size)))


# -- graphs --------------------------------------------------------------------------------


class _Chain:
    """State of a graph under construction: the builder, a counter for fresh ids, the current value."""

    def __init__(self, builder: GraphBuilder, current: str) -> None:
        self.b = builder
        self.current = current
        self.layer = 0
        self.count = 0

    def module(self) -> str:
        self.layer += 1
        return f"layer{self.layer}"

    def activation(self, shape: Sequence[int]) -> str:
        self.count += 1
        return self.b.value(f"t{self.count}", tuple(shape), "float32", ValueKind.ACTIVATION)

    def state(self, module: str, name: str, shape: Sequence[int], kind: ValueKind = ValueKind.PARAMETER) -> str:
        return self.b.value(f"{module}.{name}", tuple(shape), "float32", kind, module, name)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.b.shape(self.current)


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _relu(draw: st.DrawFn, g: _Chain) -> None:
    y = g.activation(g.shape)
    g.b.op(OpKind.ELEMENTWISE, draw(st.sampled_from(["aten.relu", "aten.gelu", "aten.sigmoid"])), [g.current], [y])
    g.current = y


def _bias_add(draw: st.DrawFn, g: _Chain) -> None:
    # a (N, C, H, W) + b (C, 1, 1): broadcasting from the right couples C only
    module = g.module()
    bias = g.state(module, "bias", (g.shape[1], 1, 1))
    y = g.activation(g.shape)
    g.b.op(OpKind.ELEMENTWISE, "aten.add", [g.current, bias], [y], module)
    g.current = y


def _residual(draw: st.DrawFn, g: _Chain) -> None:
    start = g.current
    _relu(draw, g)
    y = g.activation(g.shape)
    g.b.op(OpKind.ELEMENTWISE, "aten.add", [start, g.current], [y])
    g.current = y


def _conv_to(draw: st.DrawFn, g: _Chain, source: str, out_channels: int | None = None) -> str:
    n, c, h, w = g.b.shape(source)
    groups = draw(st.sampled_from(_divisors(c))) if out_channels is None else 1
    if out_channels is None:
        out_channels = groups * draw(st.integers(1, 3 if groups > 1 else 6))
    transposed = draw(st.booleans())
    k = draw(st.sampled_from([1, 3]))
    module = g.module()
    if transposed:
        weight = g.state(module, "weight", (c, out_channels // groups, k, k))
    else:
        weight = g.state(module, "weight", (out_channels, c // groups, k, k))
    inputs = [source, weight]
    if draw(st.booleans()):
        inputs.append(g.state(module, "bias", (out_channels,)))
    y = g.activation((n, out_channels, h, w))
    target = "aten.conv_transpose2d" if transposed else "aten.conv2d"
    attrs = {"groups": groups, "transposed": transposed, "stride": (1, 1), "padding": (k // 2, k // 2)}
    g.b.op(OpKind.CONV, target, inputs, [y], module, attrs)
    return y


def _conv(draw: st.DrawFn, g: _Chain) -> None:
    g.current = _conv_to(draw, g, g.current)


def _norm(draw: st.DrawFn, g: _Chain) -> None:
    c = g.shape[1]
    module = g.module()
    group_choices = [d for d in _divisors(c) if d > 1]
    if group_choices and draw(st.booleans()):
        groups = draw(st.sampled_from(group_choices))
        params = [g.state(module, "weight", (c,)), g.state(module, "bias", (c,))]
        attrs = {"channel_dims": (1,), "num_groups": groups, "mixes": True, "eps": 1e-5}
        target = "aten.group_norm"
    else:
        params = [
            g.state(module, "weight", (c,)),
            g.state(module, "bias", (c,)),
            g.state(module, "running_mean", (c,), ValueKind.BUFFER),
            g.state(module, "running_var", (c,), ValueKind.BUFFER),
        ]
        attrs = {"channel_dims": (1,), "mixes": False, "eps": 1e-5, "momentum": None}
        target = "aten.batch_norm"
    y = g.activation(g.shape)
    g.b.op(OpKind.NORM, target, [g.current, *params], [y], module, attrs)
    g.current = y


def _concat(draw: st.DrawFn, g: _Chain) -> None:
    start = g.current
    branch = _conv_to(draw, g, start, draw(st.integers(1, 4)))
    parts = [start, branch] if draw(st.booleans()) else [branch, start]
    n, _, h, w = g.shape
    total = sum(g.b.shape(p)[1] for p in parts)
    y = g.activation((n, total, h, w))
    g.b.op(OpKind.CONCAT, "aten.cat", parts, [y], attrs={"dim": draw(st.sampled_from([1, -3]))})
    g.current = y


def _split(draw: st.DrawFn, g: _Chain) -> None:
    n, c, h, w = g.shape
    if c < 2:
        _relu(draw, g)
        return
    if draw(st.booleans()):
        count = draw(st.sampled_from([d for d in _divisors(c) if d > 1]))
        pieces = [c // count] * count
        target = "aten.chunk"
    else:
        cuts = sorted(draw(st.sets(st.integers(1, c - 1), min_size=1)))
        pieces = [b - a for a, b in zip([0, *cuts], [*cuts, c])]
        target = "aten.split_with_sizes"
    outputs = [g.activation((n, size, h, w)) for size in pieces]
    g.b.op(OpKind.SPLIT, target, [g.current], outputs, attrs={"dim": 1, "sizes": tuple(pieces)})
    if draw(st.booleans()):
        y = g.activation((n, c, h, w))
        g.b.op(OpKind.CONCAT, "aten.cat", outputs[::-1], [y], attrs={"dim": 1})
        g.current = y
    else:
        g.current = draw(st.sampled_from(outputs))


def _to_sequence(draw: st.DrawFn, g: _Chain) -> None:
    # (N, C, H, W) -> (N, C, H·W) -> (N, H·W, C): a transformer's token layout
    n, c, h, w = g.shape
    flat = g.activation((n, c, h * w))
    g.b.op(OpKind.RESHAPE, "aten.flatten", [g.current], [flat], attrs={"start_dim": 2})
    y = g.activation((n, h * w, c))
    g.b.op(OpKind.PERMUTE, "aten.permute", [flat], [y], attrs={"perm": (0, 2, 1)})
    g.current = y


def _flatten(draw: st.DrawFn, g: _Chain) -> None:
    n, *rest = g.shape
    y = g.activation((n, math.prod(rest)))
    g.b.op(OpKind.RESHAPE, "aten.flatten", [g.current], [y], attrs={"start_dim": 1})
    g.current = y


def _matmul(draw: st.DrawFn, g: _Chain) -> None:
    # x (..., E) @ w (E, K) + b (K,)
    *lead, e = g.shape
    k = draw(st.integers(1, 6))
    module = g.module()
    inputs = [g.current, g.state(module, "weight", (e, k))]
    if draw(st.booleans()):
        inputs.append(g.state(module, "bias", (k,)))
    y = g.activation((*lead, k))
    g.b.op(OpKind.MATMUL, "aten.matmul", inputs, [y], module)
    g.current = y


def _layer_norm(draw: st.DrawFn, g: _Chain) -> None:
    last = len(g.shape) - 1
    module = g.module()
    params = [g.state(module, "weight", (g.shape[last],)), g.state(module, "bias", (g.shape[last],))]
    y = g.activation(g.shape)
    g.b.op(OpKind.NORM, "aten.layer_norm", [g.current, *params], [y], module, {"channel_dims": (last,), "mixes": True})
    g.current = y


def _heads(draw: st.DrawFn, g: _Chain) -> None:
    # (B, T, E) -> (B, T, H, D) -> (B, H, T, D) [-> attention] -> (B, T, H, D) -> (B, T, E)
    b, t, e = g.shape
    heads = draw(st.sampled_from(_divisors(e)))
    d = e // heads
    split = g.activation((b, t, heads, d))
    g.b.op(OpKind.RESHAPE, "aten.view", [g.current], [split], attrs={"shape": (b, t, heads, d)})
    per_head = g.activation((b, heads, t, d))
    g.b.op(OpKind.PERMUTE, "aten.transpose", [split], [per_head], attrs={"perm": (0, 2, 1, 3)})
    if draw(st.booleans()):
        attended = g.activation((b, heads, t, d))
        g.b.op(OpKind.ATTENTION, "aten.sdpa", [per_head, per_head, per_head], [attended], attrs={"is_causal": True})
        per_head = attended
    back = g.activation((b, t, heads, d))
    g.b.op(OpKind.PERMUTE, "aten.transpose", [per_head], [back], attrs={"perm": (0, 2, 1, 3)})
    y = g.activation((b, t, e))
    g.b.op(OpKind.RESHAPE, "aten.view", [back], [y], attrs={"shape": (b, t, e)})
    g.current = y


_Step = Callable[[st.DrawFn, _Chain], None]
_STEPS: dict[int, list[_Step]] = {
    4: [_relu, _bias_add, _residual, _conv, _conv, _norm, _concat, _split, _to_sequence, _flatten],
    3: [_relu, _matmul, _layer_norm, _heads],
    2: [_relu, _matmul, _layer_norm],
}


@st.composite
def graphs(draw: st.DrawFn, max_steps: int = 6) -> Graph:
    """A valid graph: an image input through a random chain of conv, norm, elementwise, concat and
    split blocks, optionally turned into tokens (reshape, permute, matmul, layer norm, heads) or
    flattened into features. Every shape is consistent with its op's kind by construction."""
    builder = GraphBuilder()
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 6)), draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    x = builder.value("x", shape, "float32", ValueKind.INPUT)
    chain = _Chain(builder, x)
    for _ in range(draw(st.integers(1, max_steps))):
        step = draw(st.sampled_from(_STEPS[len(chain.shape)]))
        step(draw, chain)
    return builder.build(inputs=[x], outputs=[chain.current])
