"""The coupling rule of a fused recurrent layer (an ONNX LSTM, GRU or RNN node): hidden units across gate blocks."""

from __future__ import annotations

from prune_graph._couplings import Coupling, Pin
from prune_graph._errors import GraphError
from prune_graph._ops import Op
from prune_graph._rule_parts import ShapeOf, _factor, _link_same, _ref

__all__: list[str] = []


def _recurrent(op: Op, shape: ShapeOf) -> list[Coupling]:
    """A fused recurrent layer: every gate block of w's, r's and b's rows carries the hidden units.

    The hidden units are r's columns (what each step reads of the last state); unit j is row j of
    every gate block, so a removal takes the same rows from each block (a factor with an
    unprunable block count). The layer's input width is w's columns. Directions share the units.
    """
    x, w, r, *rest = op.inputs
    gates = op.int_attr("gates")
    batch_first = bool(op.attr("batch_first", False))
    directions, hidden = shape(r)[0], shape(r)[2]
    if shape(r)[1] != gates * hidden or shape(w)[1] != gates * hidden or shape(w)[0] != directions:
        raise GraphError(
            f"op {op.where}: w {shape(w)} and r {shape(r)} do not hold {gates} gate blocks of {hidden} hidden units"
        )
    units = _ref(r, 2)
    seq_x, batch_x = (1, 0) if batch_first else (0, 1)
    # (seq, directions, batch, hidden) of y and (directions, batch, hidden) of a state
    y_dims = (1, 2, 0, 3) if batch_first else (0, 1, 2, 3)
    state_dims = (1, 0, 2) if batch_first else (0, 1, 2)
    result: list[Coupling] = [*_link_same(op, shape, x, 2, w, 2)]
    result += _factor(op, _ref(w, 1), (None, units), (gates, hidden))
    result += _factor(op, _ref(r, 1), (None, units), (gates, hidden))
    pinned = [_ref(w, 0), _ref(r, 0)]
    for value in (*rest, *op.outputs):
        rank = len(shape(value))
        if value in rest and rank == 2:  # the bias: input and recurrent bias, gate blocks each
            result += _factor(op, _ref(value, 1), (None, units), (2 * gates, hidden))
            pinned.append(_ref(value, 0))
            continue
        if rank == 4:
            seq, direction, batch, unit = y_dims
            result += _link_same(op, shape, x, seq_x, value, seq)
        elif rank == 3:
            direction, batch, unit = state_dims
        else:
            raise GraphError(f"op {op.where}: {value!r} of shape {shape(value)} is no bias, state or output")
        result += _link_same(op, shape, x, batch_x, value, batch)
        result += _link_same(op, shape, r, 2, value, unit)
        pinned.append(_ref(value, direction))
    if directions > 1:
        reason = f"{op.location} runs one set of weights per direction"
        result += [Pin(d, reason, op.id) for d in pinned]
    return result
