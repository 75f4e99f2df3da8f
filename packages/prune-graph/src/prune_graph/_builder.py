"""A small helper for adapters that build graphs op by op."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import chain

from prune_graph._errors import GraphError
from prune_graph._graph import Graph
from prune_graph._ops import AttrValue, Op, OpId, OpKind
from prune_graph._quick import quick_op, quick_value
from prune_graph._values import Value, ValueId, ValueKind

__all__ = ["GraphBuilder"]

# looked up once: an enum member is a slow class attribute, and hashes through a Python call
_KINDS = (ValueKind.PARAMETER, ValueKind.BUFFER, ValueKind.ACTIVATION, ValueKind.VIRTUAL)
_CONV, _NORM = OpKind.CONV, OpKind.NORM  # the kinds that may have a group axis


class GraphBuilder:
    """Collects values and ops in execution order, then freezes them into a :class:`Graph`.

    Virtual axes (the group axis of a grouped conv or group norm) are created here, so adapters
    only state the op.

    >>> b = GraphBuilder()
    >>> x = b.value("x", (1, 4), "float32", ValueKind.INPUT)
    >>> y = b.value("y", (1, 4), "float32", ValueKind.ACTIVATION)
    >>> _ = b.op(OpKind.ELEMENTWISE, "aten.relu", [x], [y])
    >>> b.build(inputs=[x], outputs=[y]).ops[0].target
    'aten.relu'
    """

    def __init__(self) -> None:
        self._values: dict[ValueId, Value] = {}
        self._ops: list[Op] = []

    def value(
        self, value_id: str, shape: Sequence[int], dtype: str, kind: ValueKind, owner: str = "", name: str = ""
    ) -> ValueId:
        """Add a value (or return the id of an identical one already added)."""
        new = quick_value(ValueId(value_id), tuple(shape), dtype, kind, owner, name)
        old = self._values.get(new.id)
        if old is not None and old != new:
            raise GraphError(f"value {value_id!r} added twice with different records: {old} and {new}")
        self._values[new.id] = new
        return new.id

    def has(self, value_id: str) -> bool:
        """Whether a value with this id was added."""
        return value_id in self._values

    def shape(self, value_id: str) -> tuple[int, ...]:
        """Shape of an added value."""
        return self._values[ValueId(value_id)].shape

    def op(
        self,
        kind: OpKind,
        target: str,
        inputs: Sequence[str],
        outputs: Sequence[str],
        owner: str = "",
        attrs: Mapping[str, AttrValue] | None = None,
    ) -> Op:
        """Add an op; returns it. Creates the virtual axes its kind needs."""
        op_id = OpId(f"op{len(self._ops)}")
        attrs = dict(attrs) if attrs else {}
        # only a grouped conv or norm has group axes: most ops say so without a call
        grouped = (kind is _CONV or kind is _NORM) and attrs.get("groups" if kind is _CONV else "num_groups", 1) != 1
        axes = self._virtual_axes(op_id, kind, inputs, outputs, owner, attrs) if grouped else ()
        op = quick_op(op_id, kind, target, tuple(inputs), tuple(outputs), owner, attrs, axes)
        self._ops.append(op)
        return op

    def _virtual_axes(
        self,
        op_id: OpId,
        kind: OpKind,
        inputs: Sequence[str],
        outputs: Sequence[str],
        owner: str,
        attrs: Mapping[str, AttrValue],
    ) -> tuple[ValueId, ...]:
        groups = attrs.get("groups" if kind is OpKind.CONV else "num_groups", 1)
        if kind not in (OpKind.CONV, OpKind.NORM) or not isinstance(groups, int) or groups <= 1:
            return ()
        if kind is OpKind.CONV:
            side = inputs[0] if attrs.get("transposed") else outputs[0]
            width = self.shape(side)[1] // groups
            names = ("groups", "group_width")
        else:
            dims = attrs.get("channel_dims") or (1,)
            first = dims[0] if isinstance(dims, (tuple, list)) and isinstance(dims[0], int) else 1
            width = self.shape(inputs[0])[first] // groups
            names = ("num_groups", "group_width")
        axes = []
        for name, size in zip(names, (groups, width)):
            axes.append(self.value(f"{op_id}:{name}", (size,), "none", ValueKind.VIRTUAL, owner, name))
        return tuple(axes)

    def build(self, inputs: Sequence[str], outputs: Sequence[str], *, drop_unused: bool = False) -> Graph:
        """Freeze into a graph.

        With ``drop_unused``, ops whose results nothing reads and the model does not return
        (autograd's saved copies, statistics kept for backward) are left out with their values.
        An op that reads a parameter or buffer is kept all the same, with what feeds it: a layer
        whose result is thrown away (a backbone stage past the depth a decoder uses) still runs,
        so it must follow the channels it reads.
        """
        ops = self._ops
        values = self._values
        if drop_unused:
            parameter, buffer, activation, virtual = _KINDS
            state = {k for k, v in values.items() if v.kind is parameter or v.kind is buffer}
            needed = set(outputs)
            kept: list[Op] = []
            for op in reversed(self._ops):
                # an op without results is there for what it says about its inputs (a sealed module): keep it
                if not op.outputs or not needed.isdisjoint(op.outputs) or not state.isdisjoint(op.inputs):
                    kept.append(op)
                    needed.update(op.inputs)
                    needed.update(op.axes)
            ops = kept[::-1]
            produced = set(chain.from_iterable(op.outputs for op in self._ops))
            alive: set[str] = set(
                chain.from_iterable(chain.from_iterable((op.inputs, op.outputs, op.axes) for op in ops))
            )
            alive.update(inputs)
            alive.update(outputs)
            values = {
                k: v
                for k, v in values.items()
                if k in alive or (k not in produced and v.kind is not activation and v.kind is not virtual)
            }
        return Graph(tuple(values.values()), tuple(ops), tuple(inputs), tuple(outputs))
