"""The graph: values, ops and the queries every pass needs."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from prune_graph._couplings import Coupling, FactorLink, Link, Pin
from prune_graph._errors import GraphError
from prune_graph._ops import Op, OpId
from prune_graph._rule_memo import CouplingPart, coupling_parts, flat_couplings
from prune_graph._values import DimRef, Value, ValueId, ValueKind

__all__ = ["Graph"]


def _values(items: Iterable[Value]) -> tuple[Value, ...]:
    out = tuple(items)
    for item in out:
        if not isinstance(item, Value):
            raise GraphError(f"'values' must hold Value records (got {type(item).__name__}: {item!r})")
    return out


def _ops(items: Iterable[Op]) -> tuple[Op, ...]:
    out = tuple(items)
    for item in out:
        if not isinstance(item, Op):
            raise GraphError(f"'ops' must hold Op records (got {type(item).__name__}: {item!r})")
    return out


def _ids(items: Iterable[str]) -> tuple[ValueId, ...]:
    return tuple(ValueId(str(i)) for i in items)


@attrs.frozen
class Graph:
    """An immutable traced model: values, ops in execution order, inputs and outputs.

    Lookups and couplings are computed once and memoised; the graph itself never changes.

    >>> from prune_graph import OpKind, ValueKind
    >>> g = Graph(
    ...     values=(Value("x", (1, 4), "float32", ValueKind.INPUT), Value("y", (1, 4), "float32", ValueKind.ACTIVATION)),
    ...     ops=(Op("op0", OpKind.ELEMENTWISE, "aten.relu", ("x",), ("y",)),),
    ...     inputs=("x",), outputs=("y",))
    >>> [op.id for op in g.consumers("x")]
    ['op0']
    """

    values: tuple[Value, ...] = attrs.field(converter=_values)
    ops: tuple[Op, ...] = attrs.field(converter=_ops)
    inputs: tuple[ValueId, ...] = attrs.field(converter=_ids)
    outputs: tuple[ValueId, ...] = attrs.field(converter=_ids)
    _memo: dict[str, Any] = attrs.field(init=False, factory=dict, eq=False, repr=False, hash=False)

    def __attrs_post_init__(self) -> None:
        by_id: dict[ValueId, Value] = {}
        for value in self.values:
            if value.id in by_id:
                raise GraphError(f"duplicate value id {value.id!r}")
            by_id[value.id] = value
        ops: dict[OpId, Op] = {}
        for op in self.ops:
            if op.id in ops:
                raise GraphError(f"duplicate op id {op.id!r}")
            ops[op.id] = op
        self._memo["values"] = by_id
        self._memo["ops"] = ops

    # -- lookups -------------------------------------------------------------------------
    def value(self, value_id: str) -> Value:
        """The value with this id, or a ``GraphError`` naming it."""
        try:
            return self._memo["values"][value_id]  # type: ignore[no-any-return]
        except KeyError:
            raise GraphError(f"no value {value_id!r} in the graph") from None

    def has_value(self, value_id: str) -> bool:
        """Whether a value with this id exists."""
        return value_id in self._memo["values"]

    def op(self, op_id: str) -> Op:
        """The op with this id, or a ``GraphError`` naming it."""
        try:
            return self._memo["ops"][op_id]  # type: ignore[no-any-return]
        except KeyError:
            raise GraphError(f"no op {op_id!r} in the graph") from None

    def shape(self, value_id: ValueId) -> tuple[int, ...]:
        """The shape of a value."""
        return self.value(value_id).shape

    def dim_size(self, ref: DimRef) -> int:
        """Size of one dim, or a ``GraphError`` when the dim does not exist."""
        shape = self.shape(ref.value)
        if ref.dim >= len(shape):
            raise GraphError(f"value {ref.value!r} has rank {len(shape)}; dim {ref.dim} does not exist")
        return shape[ref.dim]

    def producer(self, value_id: str) -> Op | None:
        """The op that writes this value (``None`` for inputs, parameters, constants)."""
        return self._producers().get(ValueId(value_id))

    def consumers(self, value_id: str) -> tuple[Op, ...]:
        """The ops that read this value, in execution order."""
        return self._consumers().get(ValueId(value_id), ())

    def _producers(self) -> dict[ValueId, Op]:
        if "producers" not in self._memo:
            producers: dict[ValueId, Op] = {}
            for op in self.ops:
                for out in op.outputs:
                    producers.setdefault(out, op)
            self._memo["producers"] = producers
        return self._memo["producers"]  # type: ignore[no-any-return]

    def _consumers(self) -> dict[ValueId, tuple[Op, ...]]:
        if "consumers" not in self._memo:
            consumers: dict[ValueId, list[Op]] = {}
            for op in self.ops:
                for value in dict.fromkeys((*op.inputs, *op.axes)):
                    consumers.setdefault(value, []).append(op)
            self._memo["consumers"] = {k: tuple(v) for k, v in consumers.items()}
        return self._memo["consumers"]  # type: ignore[no-any-return]

    def topological_order(self) -> tuple[Op, ...]:
        """Ops ordered so every op comes after the producers of its inputs; ``GraphError`` on a cycle."""
        if "topo" not in self._memo:
            producers = self._producers()
            state: dict[OpId, int] = {}
            order: list[Op] = []
            for root in self.ops:
                stack: list[tuple[Op, bool]] = [(root, False)]
                while stack:
                    op, done = stack.pop()
                    if done:
                        state[op.id] = 2
                        order.append(op)
                        continue
                    if state.get(op.id) == 2:
                        continue
                    if state.get(op.id) == 1:
                        raise GraphError(f"the graph has a cycle through op {op.where}")
                    state[op.id] = 1
                    stack.append((op, True))
                    for value in op.inputs:
                        parent = producers.get(value)
                        if parent is not None:
                            if state.get(parent.id) == 1:
                                raise GraphError(f"the graph has a cycle through op {parent.where}")
                            if state.get(parent.id) is None:
                                stack.append((parent, False))
            self._memo["topo"] = tuple(order)
        return self._memo["topo"]  # type: ignore[no-any-return]

    # -- couplings ------------------------------------------------------------------------
    @property
    def couplings(self) -> tuple[Coupling, ...]:
        """Every coupling the ops imply (what :func:`prune_graph.couplings_of` says of each op)."""
        if "couplings" not in self._memo:
            self._memo["couplings"] = flat_couplings(self.couplings_by_op)
        return self._memo["couplings"]  # type: ignore[no-any-return]

    @property
    def couplings_by_op(self) -> tuple[CouplingPart, ...]:
        """The couplings op by op, in op order: each op's records, or for an op that repeats an
        earlier one with identity links and pins only, a :class:`RepeatedCouplings` that says what
        they join without making them, and for a concat a :class:`ConcatCouplings` (the group
        search reads these; :attr:`couplings` has the records).
        """
        if "by_op" not in self._memo:
            # the rules ask for thousands of shapes: a dict's own look-up, no Python call per shape
            shape = _Shapes({v.id: v.shape for v in self.values}).__getitem__
            self._memo["by_op"] = coupling_parts(self.ops, shape)
        return self._memo["by_op"]  # type: ignore[no-any-return]

    def boundary_pins(self) -> tuple[Pin, ...]:
        """Pins for the dims of model inputs and outputs (size > 1), which pruning keeps by default."""
        pins = []
        for value_id in self.inputs:
            for d, size in enumerate(self.shape(value_id)):
                if size > 1:
                    pins.append(Pin(DimRef(value_id, d), f"dim {d} of model input {value_id!r}"))
        for position, value_id in enumerate(self.outputs):
            # outputs are named by position and the module that writes them, not by internal value id
            producer = self.producer(value_id)
            source = f" (from {producer.owner})" if producer is not None and producer.owner else ""
            for d, size in enumerate(self.shape(value_id)):
                if size > 1:
                    pins.append(Pin(DimRef(value_id, d), f"dim {d} of model output {position}{source}"))
        return tuple(pins)

    def coupled(self, ref: DimRef) -> tuple[Coupling, ...]:
        """The couplings that touch one dim."""
        if "by_dim" not in self._memo:
            by_dim: dict[DimRef, list[Coupling]] = {}
            for c in self.couplings:
                for dim in _dims_of(c):
                    by_dim.setdefault(dim, []).append(c)
            self._memo["by_dim"] = {k: tuple(v) for k, v in by_dim.items()}
        return self._memo["by_dim"].get(ref, ())  # type: ignore[no-any-return]

    # -- display ---------------------------------------------------------------------------
    def __repr__(self) -> str:
        """One line: counts and the model's input and output shapes (the records are the fields).

        >>> Graph(values=(), ops=(), inputs=(), outputs=())
        Graph(0 ops, 0 values, 0 parameters, inputs [], outputs [])
        """
        parameters = sum(1 for v in self.values if v.kind is ValueKind.PARAMETER)
        inputs = ", ".join(str(self.shape(i)) for i in self.inputs)
        outputs = ", ".join(str(self.shape(o)) for o in self.outputs)
        return (
            f"{type(self).__name__}({len(self.ops)} ops, {len(self.values)} values, {parameters} parameters, "
            f"inputs [{inputs}], outputs [{outputs}])"
        )

    @classmethod
    def __attrs_init_subclass__(cls) -> None:
        # attrs writes a field-by-field repr for every attrs subclass (an adapter's graph with
        # extra fields): thousands of records on one line; subclasses keep the summary instead
        cls.__repr__ = Graph.__repr__  # type: ignore[method-assign]

    # -- identity --------------------------------------------------------------------------
    def fingerprint(self, shapes: Mapping[ValueId, tuple[int, ...]] | None = None) -> str:
        """A short hash of the model's structure: op kinds and targets, and the state's names and shapes.

        ``shapes`` overrides some shapes, which gives the fingerprint of the graph a plan leads to.
        """
        shapes = shapes or {}
        # an op pruned down to one group traces again with no virtual axes (there is no group axis
        # left), so its axes must not count, or a plan's result fingerprint never matches the retrace
        gone = {
            a for op in self.ops if op.axes and shapes.get(op.axes[0], self.shape(op.axes[0]))[0] <= 1 for a in op.axes
        }
        state = sorted(
            (v.path, list(shapes.get(v.id, v.shape))) for v in self.values if v.is_state and v.id not in gone
        )
        ops = [(op.kind.value, op.target) for op in self.ops]
        text = json.dumps({"state": state, "ops": ops}, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


class _Shapes(dict[ValueId, tuple[int, ...]]):
    """Shapes by value id; a missing id is a ``GraphError`` naming it, as :meth:`Graph.shape` says."""

    def __missing__(self, value_id: ValueId) -> tuple[int, ...]:
        raise GraphError(f"no value {value_id!r} in the graph")


def _dims_of(c: Coupling) -> tuple[DimRef, ...]:
    if isinstance(c, Link):
        return (c.src, c.dst)
    if isinstance(c, FactorLink):
        return (c.fine, *(p for p in c.parts if p is not None))
    return (c.dim,)  # Pin, Mix and Broadcast
