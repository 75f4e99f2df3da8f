"""Hypothesis strategies for prune-ops: random CNN-like graphs (no torch) and unit choices.

A graph is an image input run through a random sequence of blocks: conv (plain, grouped,
depthwise), batch norm, activations, residual adds, two-branch adds, concats, equal chunks and
unequal splits, a channel-last linear between two permutes; then a head (a conv, a global mean
and a linear, or a flatten into a linear or a matmul). Sizes stay small: a flatten multiplies
channels by the spatial size, and the properties enumerate whole groups.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from hypothesis import strategies as st

from prune_graph import Graph
from prune_ops import Group

from .nets import Net

__all__ = ["BLOCKS", "HEADS", "SIMPLE_BLOCKS", "cnn_graphs", "unit_sets"]

Block = Callable[[st.DrawFn, Net, str], str]


def _channels(draw: st.DrawFn) -> int:
    return draw(st.integers(2, 6))


def _conv_bn_act(draw: st.DrawFn, net: Net, x: str, cout: int) -> str:
    y = net.conv(x, cout, k=draw(st.sampled_from((1, 3))), bias=draw(st.booleans()))
    if draw(st.booleans()):
        y = net.bn(y, buffers=draw(st.booleans()))
    if draw(st.booleans()):
        y = net.unary(y, draw(st.sampled_from(("aten.relu", "aten.sigmoid", "aten.gelu"))))
    return y


def conv_block(draw: st.DrawFn, net: Net, x: str) -> str:
    return _conv_bn_act(draw, net, x, _channels(draw))


def grouped_conv_block(draw: st.DrawFn, net: Net, x: str) -> str:
    """A grouped conv (1 < groups < channels) or a depthwise one (groups = channels)."""
    cin = net.shape(x)[1]
    divisors = [g for g in range(2, cin + 1) if cin % g == 0]
    if not divisors:
        return conv_block(draw, net, x)
    groups = draw(st.sampled_from(divisors))
    cout = groups * draw(st.integers(1, 2))
    y = net.conv(x, cout, k=3, groups=groups, bias=draw(st.booleans()))
    return net.bn(y) if draw(st.booleans()) else y


def norm_block(draw: st.DrawFn, net: Net, x: str) -> str:
    return net.bn(x, buffers=draw(st.booleans()))


def residual_block(draw: st.DrawFn, net: Net, x: str) -> str:
    """``x + f(x)`` with f one or two conv layers back to x's channels."""
    c = net.shape(x)[1]
    branch = x
    if draw(st.booleans()):
        branch = _conv_bn_act(draw, net, branch, _channels(draw))
    branch = net.conv(branch, c, k=draw(st.sampled_from((1, 3))))
    if draw(st.booleans()):
        branch = net.bn(branch)
    y = net.binary(x, branch) if draw(st.booleans()) else net.binary(branch, x)
    return net.unary(y) if draw(st.booleans()) else y


def two_branch_add_block(draw: st.DrawFn, net: Net, x: str) -> str:
    c = _channels(draw)
    a = _conv_bn_act(draw, net, x, c)
    b = _conv_bn_act(draw, net, x, c)
    return net.binary(a, b, draw(st.sampled_from(("aten.add", "aten.mul"))))


def concat_block(draw: st.DrawFn, net: Net, x: str) -> str:
    """Two or three branches (convs, or x itself) joined along the channels."""
    branches = [_conv_bn_act(draw, net, x, _channels(draw)) for _ in range(draw(st.integers(1, 2)))]
    if draw(st.booleans()):
        branches.insert(draw(st.integers(0, len(branches))), x)
    if len(branches) == 1:
        branches.append(_conv_bn_act(draw, net, x, _channels(draw)))
    return net.concat(branches)


def chunk_block(draw: st.DrawFn, net: Net, x: str) -> str:
    """Equal chunks (``torch.chunk``): a gated unit, or per-chunk layers concatenated back."""
    c = net.shape(x)[1]
    counts = [k for k in (2, 3) if c % k == 0]
    if not counts:
        x = net.conv(x, 2 * draw(st.integers(1, 3)))
        c = net.shape(x)[1]
        counts = [2]
    k = draw(st.sampled_from(counts))
    pieces = net.split(x, [c // k] * k)
    if k == 2 and draw(st.booleans()):
        return net.binary(pieces[0], net.unary(pieces[1], "aten.sigmoid"), "aten.mul")
    outs = [net.unary(p) if draw(st.booleans()) else net.conv(p, net.shape(p)[1], k=1) for p in pieces]
    return net.concat(outs)


def split_block(draw: st.DrawFn, net: Net, x: str) -> str:
    """Unequal pieces (``split_with_sizes``), each through its own layer, concatenated back."""
    c = net.shape(x)[1]
    if c < 3:
        x = net.conv(x, draw(st.integers(3, 6)))
        c = net.shape(x)[1]
    first = draw(st.integers(1, c - 1))
    sizes = [first, c - first]
    if sizes[0] == sizes[1]:
        sizes = [1, c - 1]
    outs = [net.conv(p, _channels(draw), k=1) if draw(st.booleans()) else net.unary(p) for p in net.split(x, sizes)]
    return net.concat(outs)


def channel_last_linear_block(draw: st.DrawFn, net: Net, x: str) -> str:
    """Permute to (N, H, W, C), a linear over C, permute back."""
    y = net.permute(x, (0, 2, 3, 1))
    y = net.linear(y, _channels(draw), bias=draw(st.booleans()))
    if draw(st.booleans()):
        y = net.unary(y, "aten.gelu")
    return net.permute(y, (0, 3, 1, 2))


def conv_head(draw: st.DrawFn, net: Net, x: str) -> str:
    return net.conv(x, draw(st.integers(1, 4)), k=1, bias=True)


def pool_linear_head(draw: st.DrawFn, net: Net, x: str) -> str:
    y = net.mean(x, (2, 3), keepdim=draw(st.booleans()))
    if len(net.shape(y)) == 4:
        y = net.flatten(y)
    return net.linear(y, draw(st.integers(1, 4)), bias=True)


def flatten_head(draw: st.DrawFn, net: Net, x: str) -> str:
    y = net.flatten(x)
    if draw(st.booleans()):
        return net.linear(y, draw(st.integers(1, 4)), bias=draw(st.booleans()))
    return net.matmul(y, draw(st.integers(1, 4)))


def no_head(draw: st.DrawFn, net: Net, x: str) -> str:
    return x


SIMPLE_BLOCKS: tuple[Block, ...] = (conv_block, norm_block, residual_block, two_branch_add_block, concat_block)
BLOCKS: tuple[Block, ...] = (
    *SIMPLE_BLOCKS,
    grouped_conv_block,
    chunk_block,
    split_block,
    channel_last_linear_block,
)
HEADS: tuple[Block, ...] = (conv_head, pool_linear_head, flatten_head, no_head)


@st.composite
def cnn_graphs(
    draw: st.DrawFn,
    blocks: tuple[Block, ...] = BLOCKS,
    heads: tuple[Block, ...] = HEADS,
    max_blocks: int = 4,
) -> Graph:
    """A valid CNN-like graph; the first layer is always a conv, so at least one group is prunable."""
    net = Net()
    size = draw(st.integers(1, 3))
    x = net.input((draw(st.integers(1, 2)), draw(st.integers(1, 4)), size, size))
    h = conv_block(draw, net, x)
    for _ in range(draw(st.integers(0, max_blocks))):
        h = draw(st.sampled_from(blocks))(draw, net, h)
    out = draw(st.sampled_from(heads))(draw, net, h)
    return net.build([out])


@st.composite
def unit_sets(draw: st.DrawFn, group: Group, *, allow_all: bool = False) -> np.ndarray:
    """A non-empty sorted set of the group's units; all of them only with ``allow_all``."""
    top = group.size if allow_all else group.size - 1
    count = draw(st.integers(1, max(top, 1)))
    chosen = draw(st.lists(st.integers(0, group.size - 1), min_size=count, max_size=count, unique=True))
    return np.array(sorted(chosen), dtype=np.int64)
