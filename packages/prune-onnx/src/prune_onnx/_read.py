"""Reading an ONNX model: load, lift constants, fix input shapes, infer shapes, fold shape arithmetic.

Two models come out of a read. The *prepared* model is the user's model with every ``Constant``
node lifted to an initializer and every node named: pruning writes into it, and its shape
arithmetic (``Shape`` → ``Gather`` → ``Concat`` → ``Reshape``) stays as it is, so dynamic sizes
keep following the tensors. The *analysis* is the prepared model at concrete input shapes with
onnx's shape inference run and every node whose inputs are all known evaluated by onnx's
reference evaluator (shape arithmetic, not weights): what is left are the ops the graph shows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Union

import attrs
import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference
from onnx.reference import ReferenceEvaluator

from prune_onnx._errors import OnnxReadError

__all__ = ["Analysis", "ModelLike", "analyse", "as_model", "input_shapes", "opset_of", "prepare"]

ModelLike = Union[onnx.ModelProto, str, Path]

_NEVER_FOLD = frozenset({"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial"})


def as_model(model: ModelLike) -> onnx.ModelProto:
    """A copy of ``model`` (a ``ModelProto`` or a path to an ``.onnx`` file); the input is never changed."""
    if isinstance(model, onnx.ModelProto):
        out = onnx.ModelProto()
        out.CopyFrom(model)
        return out
    if isinstance(model, (str, Path)):
        path = Path(model)
        if not path.is_file():
            raise OnnxReadError(f"no ONNX file at {str(path)!r}")
        return onnx.load(str(path))
    raise OnnxReadError(f"expected an onnx.ModelProto or a path to an .onnx file (got {type(model).__name__})")


def opset_of(model: onnx.ModelProto) -> int:
    """The default-domain opset version the model imports."""
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return 1


def _constant_value(node: onnx.NodeProto) -> np.ndarray | None:
    for attr in node.attribute:
        if attr.name == "value":
            return numpy_helper.to_array(attr.t)
        if attr.name == "value_float":
            return np.array(attr.f, dtype=np.float32)
        if attr.name == "value_floats":
            return np.array(list(attr.floats), dtype=np.float32)
        if attr.name == "value_int":
            return np.array(attr.i, dtype=np.int64)
        if attr.name == "value_ints":
            return np.array(list(attr.ints), dtype=np.int64)
    return None


def prepare(model: onnx.ModelProto) -> onnx.ModelProto:
    """Lift ``Constant`` nodes to initializers and give every node a unique name (in a copy)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    kept = []
    lifted = []
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            value = _constant_value(node)
            if value is not None:
                lifted.append(numpy_helper.from_array(value, node.output[0]))
                continue
        kept.append(node)
    names: set[str] = set()
    for i, node in enumerate(kept):
        name = node.name or f"{node.op_type}_{i}"
        while name in names:
            name = f"{name}_{i}"
        names.add(name)
        node.name = name
    del graph.node[:]
    graph.node.extend(kept)
    graph.initializer.extend(lifted)
    return out


def _dims(type_proto: onnx.TypeProto) -> list[int | str | None] | None:
    if not type_proto.HasField("tensor_type") or not type_proto.tensor_type.HasField("shape"):
        return None
    out: list[int | str | None] = []
    for d in type_proto.tensor_type.shape.dim:
        if d.HasField("dim_value"):
            out.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            out.append(d.dim_param)
        else:
            out.append(None)
    return out


def _dtype(elem_type: int) -> str:
    try:
        return str(np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)))
    except (KeyError, TypeError, ValueError):
        return "unknown"


def input_shapes(
    model: onnx.ModelProto, given: Mapping[str, Sequence[int]] | None = None
) -> dict[str, tuple[int, ...]]:
    """Concrete shapes of the model's inputs: ``given`` ones, else the declared sizes with symbolic dims as 1."""
    given = dict(given or {})
    initializers = {t.name for t in model.graph.initializer}
    shapes: dict[str, tuple[int, ...]] = {}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        if value.name in given:
            shapes[value.name] = tuple(int(s) for s in given.pop(value.name))
            continue
        dims = _dims(value.type)
        if dims is None:
            raise OnnxReadError(
                f"input {value.name!r} has no declared shape; pass input_shapes={{{value.name!r}: (...)}}"
            )
        shapes[value.name] = tuple(d if isinstance(d, int) and d > 0 else 1 for d in dims)
    if given:
        names = ", ".join(v.name for v in model.graph.input if v.name not in initializers)
        raise OnnxReadError(f"input_shapes names {sorted(given)}, which are not model inputs (inputs: {names})")
    return shapes


@attrs.frozen(eq=False)
class Analysis:
    """The prepared model read at concrete shapes: what every value is and which nodes remain ops."""

    model: onnx.ModelProto
    nodes: tuple[onnx.NodeProto, ...]
    shapes: Mapping[str, tuple[int, ...]]
    dtypes: Mapping[str, str]
    constants: Mapping[str, np.ndarray]
    initializers: frozenset[str]
    opset: int


def _fixed(model: onnx.ModelProto, shapes: Mapping[str, tuple[int, ...]]) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for value in out.graph.input:
        if value.name in shapes:
            dims = value.type.tensor_type.shape.dim
            del dims[:]
            for size in shapes[value.name]:
                dims.add().dim_value = size
    del out.graph.value_info[:]
    return out


def _infer(model: onnx.ModelProto) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    try:
        inferred = shape_inference.infer_shapes(model, data_prop=True)
    except Exception as error:  # onnx raises several types (InferenceError, ValidationError, RuntimeError)
        raise OnnxReadError(f"onnx shape inference failed: {str(error).splitlines()[0]}") from error
    shapes: dict[str, tuple[int, ...]] = {}
    dtypes: dict[str, str] = {}
    for value in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output):
        dims = _dims(value.type)
        dtypes[value.name] = _dtype(value.type.tensor_type.elem_type)
        if dims is not None and all(isinstance(d, int) and d >= 0 for d in dims):
            shapes[value.name] = tuple(int(d) for d in dims)  # type: ignore[arg-type]
    for tensor in inferred.graph.initializer:
        shapes[tensor.name] = tuple(int(d) for d in tensor.dims)
        dtypes[tensor.name] = _dtype(tensor.data_type)
    return shapes, dtypes


def _evaluate(node: onnx.NodeProto, inputs: list[np.ndarray | None], opset: int) -> list[np.ndarray] | None:
    try:
        evaluator = ReferenceEvaluator(node, opsets={"": opset})
        feeds = {name: value for name, value in zip(node.input, inputs) if name}
        return [np.asarray(v) for v in evaluator.run(None, feeds)]
    except Exception:  # an op the reference evaluator lacks stays an op: reading goes on without the value
        return None


def _is_weight(array: np.ndarray) -> bool:
    """Float tensors with a dim are weights (a bias of one channel too, so folding never depends on a
    size pruning changes): never folded into constants, they stay parameters. Float scalars fold."""
    return bool(np.issubdtype(array.dtype, np.floating) and array.ndim >= 1)


def _foldable(node: onnx.NodeProto, known: Mapping[str, np.ndarray], weights: frozenset[str]) -> bool:
    if node.op_type in _NEVER_FOLD or node.domain not in ("", "ai.onnx") or not node.input:
        return False
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
        return False
    for name in node.input:
        if not name:
            continue
        if name not in known or name in weights:
            return False
    return True


def analyse(prepared: onnx.ModelProto, shapes: Mapping[str, tuple[int, ...]]) -> Analysis:
    """Infer shapes at ``shapes`` and fold every computation on constants (a few rounds, until nothing new folds)."""
    opset = opset_of(prepared)
    model = _fixed(prepared, shapes)
    initializers = frozenset(t.name for t in prepared.graph.initializer)
    known: dict[str, np.ndarray] = {}
    weights: set[str] = set()
    for tensor in model.graph.initializer:
        array = numpy_helper.to_array(tensor)
        known[tensor.name] = array
        if _is_weight(array):
            weights.add(tensor.name)
    folded: set[str] = set()
    nodes = list(model.graph.node)
    value_shapes, dtypes = _infer(model)
    for _ in range(4):
        grew = False
        for node in nodes:
            if node.name in folded:
                continue
            result: list[np.ndarray] | None = None
            if node.op_type in ("Shape", "Size") and node.input[0] in value_shapes:
                shape = value_shapes[node.input[0]]
                if node.op_type == "Size":
                    result = [np.array(int(np.prod(shape)), dtype=np.int64)]
                else:
                    start = next((a.i for a in node.attribute if a.name == "start"), 0)
                    end = next((a.i for a in node.attribute if a.name == "end"), len(shape))
                    result = [np.array(shape[slice(start, end)], dtype=np.int64)]
            elif _foldable(node, known, frozenset(weights)):
                result = _evaluate(node, [known.get(n) if n else None for n in node.input], opset)
            if result is None:
                continue
            folded.add(node.name)
            grew = True
            for name, value in zip(node.output, result):
                if name:
                    known[name] = value
                    if _is_weight(value):
                        weights.add(name)
        if not grew:
            break
        # inference again with the folded values as initializers: reshapes whose target a chain computed get shapes
        again = onnx.ModelProto()
        again.CopyFrom(model)
        del again.graph.node[:]
        again.graph.node.extend(n for n in nodes if n.name not in folded)
        have = {t.name for t in again.graph.initializer}
        again.graph.initializer.extend(
            numpy_helper.from_array(np.asarray(v), k)
            for k, v in known.items()
            if k not in have and k in _outputs(nodes, folded)
        )
        value_shapes, dtypes_again = _infer(again)
        dtypes.update(dtypes_again)
    for name, value in known.items():
        value_shapes[name] = tuple(int(s) for s in value.shape)
        dtypes[name] = str(value.dtype)
    missing = [o for n in nodes if n.name not in folded for o in n.output if o and o not in value_shapes]
    if missing:
        value_shapes.update(_shapes_by_running(model, missing, shapes, dtypes))
    remaining = tuple(n for n in nodes if n.name not in folded)
    constants = {k: v for k, v in known.items() if k not in initializers}
    return Analysis(
        model,
        remaining,
        value_shapes,
        dtypes,
        {**constants, **{k: known[k] for k in initializers}},
        initializers,
        opset,
    )


def _outputs(nodes: Sequence[onnx.NodeProto], folded: set[str]) -> set[str]:
    return {o for n in nodes if n.name in folded for o in n.output}


def _shapes_by_running(
    model: onnx.ModelProto, names: Sequence[str], shapes: Mapping[str, tuple[int, ...]], dtypes: dict[str, str]
) -> dict[str, tuple[int, ...]]:
    """Shapes onnx's inference left open, from one onnxruntime run on zeros (custom ops, data-dependent sizes)."""
    try:
        import onnxruntime as ort
    except ImportError:  # pragma: no cover - onnxruntime is a dependency; without it the read names the value
        return {}
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    probe.graph.output.extend(helper.make_empty_tensor_value_info(n) for n in names)
    feeds = {}
    for value in model.graph.input:
        if value.name in shapes:
            dtype = helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)
            feeds[value.name] = np.zeros(shapes[value.name], dtype=dtype)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
        results = session.run(None, feeds)
    except Exception:  # the read then names the first value without a shape
        return {}
    out = {}
    for name, array in zip(names, results):
        out[name] = tuple(int(s) for s in np.shape(array))
        dtypes.setdefault(name, str(np.asarray(array).dtype))
    return out
