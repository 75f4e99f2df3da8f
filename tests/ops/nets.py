"""Hand-built graphs for the prune-ops tests, made with ``prune_graph.GraphBuilder`` (no torch).

:class:`Net` adds layers and infers their output shapes, so a test states the architecture
and nothing else. :func:`rebuild` replays a graph's ops with new shapes: the graph an adapter
would trace after carrying out a plan.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from prune_graph import (
    DimRef,
    FactorLink,
    Graph,
    GraphBuilder,
    Identity,
    Link,
    OpKind,
    ValueId,
    ValueKind,
    validate,
)
from prune_ops import Group, GroupSet, Member

__all__ = [
    "F32",
    "Net",
    "axis_id",
    "coupled_sizes_problems",
    "group_with",
    "member",
    "rebuild",
    "removal_dict",
    "summary",
    "surviving",
]

F32 = "float32"


class Net:
    """A tiny layer-level front end over ``GraphBuilder``.

    Parameters get the id ``module.name`` with that module and name; activations get ``t0``,
    ``t1`` ...; modules are numbered per layer type (``conv0``, ``bn1``, ``fc2``) unless named.
    """

    def __init__(self) -> None:
        self.builder = GraphBuilder()
        self.inputs: list[str] = []
        self._count = 0

    # -- values --------------------------------------------------------------------------
    def input(self, shape: Sequence[int], name: str = "x") -> str:
        self.inputs.append(self.builder.value(name, tuple(shape), F32, ValueKind.INPUT))
        return name

    def param(self, module: str, name: str, shape: Sequence[int], kind: ValueKind = ValueKind.PARAMETER) -> str:
        return self.builder.value(f"{module}.{name}", tuple(shape), F32, kind, module, name)

    def act(self, shape: Sequence[int]) -> str:
        value = f"t{self._count}"
        self._count += 1
        return self.builder.value(value, tuple(shape), F32, ValueKind.ACTIVATION)

    def shape(self, value: str) -> tuple[int, ...]:
        return self.builder.shape(value)

    def _module(self, prefix: str, module: str | None) -> str:
        if module is not None:
            return module
        name = f"{prefix}{self._count}"
        self._count += 1
        return name

    # -- layers --------------------------------------------------------------------------
    def conv(
        self,
        x: str,
        cout: int,
        *,
        k: int = 3,
        groups: int = 1,
        bias: bool = False,
        module: str | None = None,
    ) -> str:
        """A 2-D convolution with 'same' padding."""
        n, cin, h, w = self.shape(x)
        module = self._module("conv", module)
        weight = self.param(module, "weight", (cout, cin // groups, k, k))
        inputs = [x, weight] + ([self.param(module, "bias", (cout,))] if bias else [])
        y = self.act((n, cout, h, w))
        self.builder.op(OpKind.CONV, "aten.convolution", inputs, [y], module, {"groups": groups, "padding": k // 2})
        return y

    def bn(self, x: str, *, buffers: bool = True, module: str | None = None) -> str:
        """A batch norm over dim 1 with weight, bias and (optionally) running-statistics buffers."""
        c = self.shape(x)[1]
        module = self._module("bn", module)
        params = [self.param(module, "weight", (c,)), self.param(module, "bias", (c,))]
        if buffers:
            params += [self.param(module, n, (c,), ValueKind.BUFFER) for n in ("running_mean", "running_var")]
        y = self.act(self.shape(x))
        self.builder.op(OpKind.NORM, "aten.batch_norm", [x, *params], [y], module, {"channel_dims": (1,)})
        return y

    def unary(self, x: str, target: str = "aten.relu") -> str:
        y = self.act(self.shape(x))
        self.builder.op(OpKind.ELEMENTWISE, target, [x], [y])
        return y

    def binary(self, a: str, b: str, target: str = "aten.add") -> str:
        y = self.act(self.shape(a))
        self.builder.op(OpKind.ELEMENTWISE, target, [a, b], [y])
        return y

    def concat(self, xs: Sequence[str], dim: int = 1) -> str:
        shape = list(self.shape(xs[0]))
        shape[dim] = sum(self.shape(x)[dim] for x in xs)
        y = self.act(shape)
        self.builder.op(OpKind.CONCAT, "aten.cat", list(xs), [y], attrs={"dim": dim})
        return y

    def split(self, x: str, sizes: Sequence[int], dim: int = 1) -> list[str]:
        outs = []
        for size in sizes:
            shape = list(self.shape(x))
            shape[dim] = size
            outs.append(self.act(shape))
        self.builder.op(OpKind.SPLIT, "aten.split_with_sizes", [x], outs, attrs={"dim": dim})
        return outs

    def reshape(self, x: str, shape: Sequence[int]) -> str:
        if math.prod(shape) != math.prod(self.shape(x)):
            raise ValueError(f"cannot reshape {self.shape(x)} to {tuple(shape)}")
        y = self.act(shape)
        self.builder.op(OpKind.RESHAPE, "aten.view", [x], [y])
        return y

    def flatten(self, x: str) -> str:
        """(N, C, H, W) → (N, C·H·W)."""
        shape = self.shape(x)
        return self.reshape(x, (shape[0], math.prod(shape[1:])))

    def permute(self, x: str, perm: Sequence[int]) -> str:
        shape = self.shape(x)
        y = self.act(tuple(shape[d] for d in perm))
        self.builder.op(OpKind.PERMUTE, "aten.permute", [x], [y], attrs={"perm": tuple(perm)})
        return y

    def mean(self, x: str, dims: Sequence[int], keepdim: bool = False) -> str:
        shape = self.shape(x)
        if keepdim:
            out = [1 if d in dims else s for d, s in enumerate(shape)]
        else:
            out = [s for d, s in enumerate(shape) if d not in dims]
        y = self.act(out)
        self.builder.op(OpKind.REDUCE, "aten.mean", [x], [y], attrs={"dims": tuple(dims), "keepdim": keepdim})
        return y

    def linear(self, x: str, out: int, *, bias: bool = False, module: str | None = None) -> str:
        """``x @ weight.T (+ bias)`` over the last dim, weight (out, in)."""
        shape = self.shape(x)
        module = self._module("fc", module)
        inputs = [x, self.param(module, "weight", (out, shape[-1]))]
        if bias:
            inputs.append(self.param(module, "bias", (out,)))
        y = self.act((*shape[:-1], out))
        self.builder.op(OpKind.LINEAR, "aten.linear", inputs, [y], module)
        return y

    def matmul(self, x: str, out: int, *, module: str | None = None) -> str:
        """``x @ weight`` with a parameter weight (in, out)."""
        shape = self.shape(x)
        module = self._module("mm", module)
        weight = self.param(module, "weight", (shape[-1], out))
        y = self.act((*shape[:-1], out))
        self.builder.op(OpKind.MATMUL, "aten.matmul", [x, weight], [y], module)
        return y

    def attention(self, q: str, k: str, v: str) -> str:
        """Scaled dot-product attention over (..., L, E) queries and (..., S, E) / (..., S, Ev) keys and values."""
        y = self.act((*self.shape(q)[:-1], self.shape(v)[-1]))
        self.builder.op(OpKind.ATTENTION, "aten.scaled_dot_product_attention", [q, k, v], [y])
        return y

    def build(self, outputs: Sequence[str]) -> Graph:
        return validate(self.builder.build(self.inputs, list(outputs)))


def summary(graph: Graph) -> str:
    """One line per op, ``module kind inputs -> outputs`` with shapes, for failure reports."""
    lines = []
    for op in graph.ops:
        ins = ", ".join(f"{v}{list(graph.shape(v))}" for v in op.inputs)
        outs = ", ".join(f"{v}{list(graph.shape(v))}" for v in op.outputs)
        attrs = "".join(f" {k}={v}" for k, v in op.attrs if k != "padding")
        lines.append(f"{op.id} {op.owner or '-'} {op.kind.value}{attrs}: {ins} -> {outs}")
    return "\n".join(lines) + f"\noutputs: {', '.join(graph.outputs)}"


def rebuild(graph: Graph, shapes: Mapping[str, Sequence[int]]) -> Graph:
    """The same ops with some values resized (``Plan.new_shapes()``), as a tracer would see them.

    Virtual axes are recreated by the builder; the group counts of grouped convs follow the new
    size of their group axis.
    """
    builder = GraphBuilder()
    for value in graph.values:
        if value.kind is not ValueKind.VIRTUAL:
            shape = tuple(shapes.get(value.id, value.shape))
            builder.value(value.id, shape, value.dtype, value.kind, value.owner, value.name)
    for op in graph.ops:
        attrs = dict(op.attrs)
        if op.kind is OpKind.CONV and op.axes:
            attrs["groups"] = next(iter(shapes.get(op.axes[0], graph.shape(op.axes[0]))))
        builder.op(op.kind, op.target, op.inputs, op.outputs, op.owner, attrs)
    return validate(builder.build(graph.inputs, graph.outputs))


def coupled_sizes_problems(graph: Graph, shapes: Mapping[str, Sequence[int]]) -> list[str]:
    """Couplings of ``graph`` that new ``shapes`` would break (identity links and factors only)."""

    def size(ref: DimRef) -> int:
        return tuple(shapes.get(ref.value, graph.shape(ref.value)))[ref.dim]

    found = []
    for c in graph.couplings:
        if isinstance(c, Link) and isinstance(c.map, Identity) and size(c.src) != size(c.dst):
            found.append(f"{c.src} has size {size(c.src)} but {c.dst} has {size(c.dst)}")
        elif isinstance(c, FactorLink):
            parts = [size(p) if p is not None else s for p, s in zip(c.parts, c.sizes)]
            if math.prod(parts) != size(c.fine):
                found.append(f"{c.fine} has size {size(c.fine)} but its parts {c.parts} have sizes {parts}")
    return found


def group_with(groups: GroupSet, value: str, dim: int) -> Group:
    """The one group that has ``value[dim]`` as a member."""
    found = groups.containing(DimRef(ValueId(value), dim))
    if len(found) != 1:
        raise AssertionError(f"{value}[{dim}] is in {len(found)} groups, expected one")
    return found[0][0]


def axis_id(graph: Graph, path: str) -> str:
    """The id of the value at ``module.name`` (virtual axes have generated ids)."""
    for value in graph.values:
        if value.path == path:
            return value.id
    raise AssertionError(f"no value at {path!r}")


def member(group: Group, value: str, dim: int) -> Member:
    """The member of ``group`` for ``value[dim]``."""
    for m in group.members:
        if m.dim == DimRef(ValueId(value), dim):
            return m
    raise AssertionError(f"{value}[{dim}] is not a member of group {group.id}: {[m.label for m in group.members]}")


def removal_dict(indices: Mapping[DimRef, np.ndarray]) -> dict[str, list[int]]:
    """A removal as plain data, keyed ``value[dim]``, for readable comparisons."""
    return {str(dim): np.asarray(idx).tolist() for dim, idx in sorted(indices.items())}


def surviving(size: int, *removals: Sequence[int]) -> list[int]:
    """Original indices of a dim of ``size`` left after removing each index set in turn (positions)."""
    left = list(range(size))
    for removed in removals:
        gone = set(removed)
        left = [orig for pos, orig in enumerate(left) if pos not in gone]
    return left
