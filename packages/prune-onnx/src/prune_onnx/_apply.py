"""``apply``: write a plan into a new ONNX model.

Initializers are sliced, ``group`` / ``num_groups`` attributes follow the virtual axes, and every
size that lives in the graph as a constant is rewritten from the new shapes: ``Reshape`` and
``Expand`` targets (piece by piece when a ``Concat`` assembles them, so dynamic pieces keep
following the tensors), ``Split`` sizes, ``Slice`` bounds, ``Resize`` sizes, ``ConstantOfShape``
shapes, a recurrent layer's ``hidden_size``, an attention node's head counts and
``qkv_hidden_sizes``. The result must pass ``onnx.checker`` and read back
into exactly the shapes the plan predicts; otherwise nothing is returned and the error names the
node.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from prune_graph import DimRef, OpKind, ValueKind
from prune_onnx._attention import heads_after
from prune_onnx._errors import OnnxApplyError
from prune_onnx._nodes import Context, slice_ranges
from prune_onnx._read import ModelLike
from prune_onnx._trace import OnnxGraph, trace
from prune_ops import Plan, PlanMismatchError, Removal, complement
from prune_ops import removal_from_plan as _removal_by_names

__all__ = ["apply", "removal_from_plan"]


def removal_from_plan(graph: OnnxGraph, plan: Plan) -> Removal:
    """The removal behind ``plan`` on ``graph``: the indices every dim loses, activations included.

    The plan must be made for this graph (ONNX graphs are values: the same model reads back to the
    same fingerprint); the units and the removal come from :func:`prune_ops.removal_from_plan`,
    shared with prune-torch.
    """
    if plan.fingerprint != graph.fingerprint():
        raise PlanMismatchError(
            f"the plan was made for graph {plan.fingerprint}, this model is {graph.fingerprint()} "
            "(another model, or other input shapes)"
        )
    cached = graph.cache.get(f"removal:{plan.to_json()}")
    if isinstance(cached, Removal):
        return cached
    removal = _removal_by_names(graph, graph.groups(prune_outputs=True), plan)
    graph.cache[f"removal:{plan.to_json()}"] = removal
    return removal


def _new_shape(graph: OnnxGraph, removal: Removal, name: str) -> tuple[int, ...] | None:
    if not graph.has_value(name):
        return None
    shape = graph.shape(graph.value(name).id)
    return tuple(s - len(removal.of(DimRef(graph.value(name).id, d))) for d, s in enumerate(shape))


class _Writer:
    """Edits of one model copy: new initializers with unique names, node inputs pointed at them."""

    def __init__(self, model: onnx.ModelProto, graph: OnnxGraph) -> None:
        self.model = model
        self.graph = graph
        self.inits = {t.name: t for t in model.graph.initializer}
        self.producer = {o: n for n in model.graph.node for o in n.output}
        self.taken = (
            set(self.inits) | {o for n in model.graph.node for o in n.output} | {i.name for i in model.graph.input}
        )

    def known(self, name: str) -> np.ndarray | None:
        analysis = self.graph.analysis
        return None if analysis is None else analysis.constants.get(name)

    def constant(self, base: str, value: np.ndarray) -> str:
        name = base
        k = 0
        while name in self.taken:
            k += 1
            name = f"{base}_{k}"
        self.taken.add(name)
        tensor = numpy_helper.from_array(np.asarray(value), name)
        self.model.graph.initializer.append(tensor)
        self.inits[name] = tensor
        return name

    def set_input(self, node: onnx.NodeProto, position: int, value: np.ndarray, label: str) -> None:
        while len(node.input) <= position:
            node.input.append("")
        node.input[position] = self.constant(f"{node.name}/{label}", value)

    def vector(self, node: onnx.NodeProto, position: int, new: Sequence[int | None], label: str) -> None:
        """Rewrite the int vector at input ``position``: entry i becomes ``new[i]`` (``None``: leave it).

        A vector a ``Concat`` assembles is rewritten piece by piece, leaving computed pieces alone.
        """
        source = node.input[position]
        old = self.known(source)
        if old is None:
            raise OnnxApplyError(f"node {node.name} ({node.op_type}): its {label} is not a constant", node.name)
        old = np.asarray(old).reshape(-1)
        wanted = np.array([o if n is None else n for o, n in zip(old.tolist(), new)], dtype=old.dtype)
        if np.array_equal(wanted, old):
            return
        maker = self.producer.get(source)
        if source not in self.inits and maker is not None and maker.op_type == "Concat":
            offset = 0
            for j, piece in enumerate(maker.input):
                part = self.known(piece)
                if part is None:
                    break
                length = int(np.asarray(part).size)
                target = wanted[offset : offset + length]
                if not np.array_equal(target, np.asarray(part).reshape(-1)):
                    if piece not in self.inits:
                        break  # a computed piece that should change: fall back to one constant
                    maker.input[j] = self.constant(f"{maker.name}/{label}{j}", target.reshape(np.asarray(part).shape))
                offset += length
            else:
                return
        node.input[position] = self.constant(f"{node.name}/{label}", wanted)


def _reshape_target(new_out: tuple[int, ...], vector: np.ndarray, allowzero: bool) -> list[int | None]:
    """Explicit entries take the new sizes; ``-1`` and copy-from-input ``0`` entries follow by themselves."""
    out: list[int | None] = []
    for i, entry in enumerate(vector.reshape(-1).tolist()):
        if entry == -1 or (entry == 0 and not allowzero):
            out.append(None)
        else:
            out.append(new_out[i])
    return out


def _slice_bounds(node: onnx.NodeProto, ctx: Context, graph: OnnxGraph, removal: Removal, writer: _Writer) -> None:
    x = node.input[0]
    ranges = slice_ranges(node, ctx)
    if ranges is None or not graph.has_value(x):
        return
    xv = graph.value(x).id
    # the chain of per-axis slices of this node: removal of each intermediate output
    new_ranges: list[tuple[int, int, int, int]] = []
    changed = False
    step_of = {op.attr("dim"): op for op in graph.ops if op.owner == node.name and op.kind is OpKind.SLICE}
    for axis, r in ranges:
        n = graph.shape(xv)[axis]
        removed_in = removal.of(DimRef(xv, axis))
        op = step_of.get(axis)
        if op is None:
            # a full-range axis: the output follows the input
            new_n = n - len(removed_in)
            new_ranges.append((axis, 0, new_n, 1))
            changed = changed or bool(len(removed_in))
            continue
        source = op.inputs[0]
        removed_in = removal.of(DimRef(source, axis))
        removed_out = removal.of(DimRef(op.outputs[0], axis))
        if not len(removed_in) and not len(removed_out):
            new_ranges.append((axis, r.start, r.stop, r.step))
            continue
        changed = True
        kept_in = complement(removed_in, n)
        kept_out = complement(removed_out, len(r))
        positions = r.start + r.step * kept_out
        if not np.isin(positions, kept_in).all():
            raise OnnxApplyError(
                f"node {node.name} (Slice): the plan removes input channels the slice keeps", node.name
            )
        new = np.searchsorted(kept_in, positions)
        steps = np.unique(np.diff(new))
        if len(steps) > 1:
            raise OnnxApplyError(f"node {node.name} (Slice): the kept channels are no longer evenly spaced", node.name)
        step = int(steps[0]) if len(steps) else 1
        new_ranges.append((axis, int(new[0]), int(new[-1]) + 1, step))
    if not changed:
        return
    writer.set_input(node, 1, np.array([s for _, s, _, _ in new_ranges], dtype=np.int64), "starts")
    writer.set_input(node, 2, np.array([e for _, _, e, _ in new_ranges], dtype=np.int64), "ends")
    writer.set_input(node, 3, np.array([a for a, _, _, _ in new_ranges], dtype=np.int64), "axes")
    writer.set_input(node, 4, np.array([st for _, _, _, st in new_ranges], dtype=np.int64), "steps")


def _sizes(node: onnx.NodeProto, graph: OnnxGraph, removal: Removal, writer: _Writer, ctx: Context) -> None:
    """Rewrite the constant sizes of one node from the plan's new shapes."""
    kind = node.op_type
    outs = [o for o in node.output if o]
    new_out = _new_shape(graph, removal, outs[0]) if outs else None
    old_out = graph.shape(graph.value(outs[0]).id) if outs and graph.has_value(outs[0]) else None
    if kind == "Slice":
        _slice_bounds(node, ctx, graph, removal, writer)
        return
    if kind == "Split":
        new_sizes = [_new_shape(graph, removal, o) for o in outs]
        if any(s is None for s in new_sizes):
            return
        old_sizes = [graph.shape(graph.value(o).id) for o in outs]
        if new_sizes == old_sizes:
            return
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0) % len(old_sizes[0])
        sizes = np.array([s[axis] for s in new_sizes if s is not None], dtype=np.int64)
        if len(node.input) > 1 and node.input[1]:
            writer.set_input(node, 1, sizes, "split")
        else:
            split = [a for a in node.attribute if a.name == "split"]
            if split:
                del split[0].ints[:]
                split[0].ints.extend(int(s) for s in sizes)
            elif len(set(sizes.tolist())) > 1:
                raise OnnxApplyError(f"node {node.name} (Split): equal pieces would become unequal", node.name)
        return
    if kind in ("Attention", "MultiHeadAttention"):
        _attention_heads(node, graph, removal)
        return
    if kind in ("LSTM", "GRU", "RNN") and any(a.name == "hidden_size" for a in node.attribute):
        units = _new_shape(graph, removal, node.input[2])
        if units is not None:
            next(a for a in node.attribute if a.name == "hidden_size").i = units[2]
        return
    if new_out is None or old_out is None or new_out == old_out:
        return
    if kind == "Reshape":
        allowzero = bool(next((a.i for a in node.attribute if a.name == "allowzero"), 0))
        vector = writer.known(node.input[1])
        if vector is None:
            raise OnnxApplyError(f"node {node.name} (Reshape): its target shape is not a constant", node.name)
        target = _reshape_target(new_out, np.asarray(vector), allowzero)
        writer.vector(node, 1, target, "shape")
    elif kind == "Expand":
        vector = writer.known(node.input[1])
        if vector is None:
            raise OnnxApplyError(f"node {node.name} (Expand): its shape is not a constant", node.name)
        flat = np.asarray(vector).reshape(-1).tolist()
        lead = len(new_out) - len(flat)
        writer.vector(node, 1, [None if v == 1 else new_out[lead + i] for i, v in enumerate(flat)], "shape")
    elif kind == "ConstantOfShape":
        writer.vector(node, 0, list(new_out), "shape")
    elif kind == "Resize" and len(node.input) > 3 and node.input[3]:
        axes = next((list(a.ints) for a in node.attribute if a.name == "axes"), None)
        dims = axes if axes else list(range(len(new_out)))
        writer.vector(node, 3, [new_out[d] for d in dims], "sizes")


def _attention_heads(node: onnx.NodeProto, graph: OnnxGraph, removal: Removal) -> None:
    """``q_num_heads`` / ``kv_num_heads`` / ``num_heads`` / ``qkv_hidden_sizes`` from the per-head values' new shapes."""

    def old_shape(name: str) -> tuple[int, ...] | None:
        return graph.shape(graph.value(name).id) if graph.has_value(name) else None

    before = heads_after(node, old_shape)
    after = heads_after(node, lambda name: _new_shape(graph, removal, name))
    for name, value in after.items():
        if value == before.get(name):
            continue
        kept = [a for a in node.attribute if a.name != name]
        del node.attribute[:]
        node.attribute.extend([*kept, helper.make_attribute(name, value)])


def _set_dims(value: onnx.ValueInfoProto, old: tuple[int, ...], new: tuple[int, ...]) -> None:
    dims = value.type.tensor_type.shape.dim
    for d, (a, b) in enumerate(zip(old, new)):
        if a != b and d < len(dims):
            dims[d].Clear()
            dims[d].dim_value = b


def apply(
    model: ModelLike | OnnxGraph, plan: Plan, *, input_shapes: Mapping[str, Sequence[int]] | None = None
) -> onnx.ModelProto:
    """A new model with ``plan`` carried out; the input model is not changed.

    ``model`` is a model, a path, or the graph :func:`prune_onnx.trace` returned for it (which
    saves reading the model again).
    """
    graph = model if isinstance(model, OnnxGraph) else trace(model, input_shapes)
    if graph.model is None or graph.analysis is None:
        raise OnnxApplyError("the graph does not carry its model (use prune_onnx.trace)")
    removal = removal_from_plan(graph, plan)
    out = onnx.ModelProto()
    out.CopyFrom(graph.model)
    writer = _Writer(out, graph)
    nodes = {n.name: n for n in out.graph.node}
    sliced: dict[str, np.ndarray] = {}
    for dim, removed in removal.indices.items():
        value = graph.value(dim.value)
        if value.kind in (ValueKind.PARAMETER, ValueKind.BUFFER):
            array = sliced.get(value.name, graph.initializer(value.name))
            sliced[value.name] = np.delete(array, removed, axis=dim.dim)
        elif value.kind is ValueKind.VIRTUAL:
            node = nodes[value.owner]
            attr = "group" if value.name == "groups" else value.name
            size = value.shape[0] - len(removed)
            for a in node.attribute:
                if a.name == attr:
                    a.i = size
    for name, array in sliced.items():
        writer.inits[name].CopyFrom(numpy_helper.from_array(np.ascontiguousarray(array), name))
    analysis = graph.analysis
    ctx = Context(analysis.shapes, analysis.constants, frozenset(), analysis.opset)
    for node in list(out.graph.node):
        _sizes(node, graph, removal, writer, ctx)
    for value in (*out.graph.input, *out.graph.output):
        new = _new_shape(graph, removal, value.name)
        if new is not None:
            _set_dims(value, graph.shape(graph.value(value.name).id), new)
    del out.graph.value_info[:]
    used = {i for n in out.graph.node for i in n.input} | {o.name for o in out.graph.output}
    keep = [t for t in out.graph.initializer if t.name in used]
    del out.graph.initializer[:]
    out.graph.initializer.extend(keep)
    _check(out, graph, plan, removal)
    return out


def _check(model: onnx.ModelProto, graph: OnnxGraph, plan: Plan, removal: Removal) -> None:
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as error:
        raise OnnxApplyError(f"the pruned model fails onnx.checker: {str(error).splitlines()[0]}") from error
    try:
        again = trace(model, graph.shapes_in)
    except Exception as error:
        raise OnnxApplyError(f"the pruned model cannot be read back: {str(error).splitlines()[0]}") from error
    for op in graph.ops:
        for name in op.outputs:
            want = _new_shape(graph, removal, name)
            if want is None or not again.has_value(name):
                continue
            got = again.shape(again.value(name).id)
            if got != want:
                raise OnnxApplyError(
                    f"node {op.owner} ({op.target}): output {name!r} has shape {got} after pruning, expected {want}"
                    " (a size the graph computes did not follow)",
                    op.owner,
                )
    if again.fingerprint() != plan.result_fingerprint:
        raise OnnxApplyError(
            f"the pruned model's structure {again.fingerprint()} is not the one the plan leads to {plan.result_fingerprint}"
        )
