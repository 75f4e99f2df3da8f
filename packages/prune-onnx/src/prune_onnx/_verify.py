"""The equivalence check: the pruned model computes what the original computes with the removed channels silenced.

What to zero comes from :func:`prune_ops.silence` (framework-free); here it is written into a
copy of the original's initializers, and both models run in onnxruntime on the same inputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx
from onnx import numpy_helper

from prune_graph import ValueId
from prune_onnx._apply import removal_from_plan
from prune_onnx._read import ModelLike
from prune_onnx._trace import OnnxGraph, trace
from prune_ops import Equivalence, Plan, PruningError, compare_outputs, contracted_in_products
from prune_ops._silence import silence

__all__ = ["Equivalence", "check_equivalence", "random_inputs", "run", "silenced_copy"]


def _made_sides(graph: OnnxGraph, plan: Plan) -> dict[ValueId, frozenset[int]]:
    """Parameter axes that make channels a product of activations sums over (``q·k`` over pruned query-key dims).

    Such a product has no weight to zero downstream: the silenced original zeroes those channels
    where they are made (the projections' output rows and biases), as prune-torch does. Sound
    where zero stays zero from there to the product (a projection, a reshape, a transpose).
    """
    contracted = contracted_in_products(graph)
    if not contracted or plan.is_empty:
        return {}
    removal = removal_from_plan(graph, plan)
    found: dict[ValueId, set[int]] = {}
    for group in graph.groups(prune_outputs=True).groups:
        if not any(m.dim in contracted for m in group.members):
            continue
        if not any(len(removal.of(m.dim)) for m in group.members):
            continue
        for member in group.parameters:
            found.setdefault(member.value.id, set()).add(member.dim.dim)
    return {value: frozenset(axes) for value, axes in found.items()}


def silenced_copy(original: ModelLike | OnnxGraph, plan: Plan) -> onnx.ModelProto:
    """A copy of ``original`` in which every op that reads a removed channel reads zero there.

    Channels summed in a product of two activations (attention's query-key dims) are zeroed
    where they are made instead: that product has no weight to zero.
    """
    graph = original if isinstance(original, OnnxGraph) else trace(original)
    if graph.model is None:
        raise PruningError("the graph does not carry its model (use prune_onnx.trace)")
    out = onnx.ModelProto()
    out.CopyFrom(graph.model)
    inits = {t.name: t for t in out.graph.initializer}
    for item in silence(graph, plan, _made_sides(graph, plan)):
        tensor = inits[item.name]
        array = numpy_helper.to_array(tensor).copy()
        index = [slice(None)] * array.ndim
        index[item.axis] = item.indices  # type: ignore[call-overload]
        array[tuple(index)] = 0
        tensor.CopyFrom(numpy_helper.from_array(array, item.name))
    return out


def random_inputs(graph: OnnxGraph, seed: int = 0) -> dict[str, np.ndarray]:
    """Standard-normal floats (zeros for ints) at the shapes the graph was read at."""
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for name in graph.inputs:
        value = graph.value(name)
        dtype = np.dtype(value.dtype) if value.dtype != "unknown" else np.dtype("float32")
        if np.issubdtype(dtype, np.floating):
            feeds[name] = rng.standard_normal(value.shape).astype(dtype)
        else:
            feeds[name] = np.zeros(value.shape, dtype=dtype)
    return feeds


def run(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """Run a model in onnxruntime on the CPU; one array per output."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return [np.asarray(o) for o in session.run(None, dict(feeds))]


def check_equivalence(
    original: ModelLike | OnnxGraph,
    pruned: onnx.ModelProto,
    plan: Plan,
    inputs: Mapping[str, np.ndarray] | None = None,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
) -> Equivalence:
    """Compare ``pruned`` with the silenced ``original`` in onnxruntime.

    Without ``inputs``, random ones at the traced shapes. Outputs are judged as in
    :func:`prune_ops.compare_outputs`: by their dtype's rounding, or element by element with
    ``rtol`` / ``atol``.
    """
    graph = original if isinstance(original, OnnxGraph) else trace(original, input_shapes)
    feeds = dict(inputs) if inputs is not None else random_inputs(graph)
    reference = run(silenced_copy(graph, plan), feeds)
    result = run(pruned, feeds)
    return compare_outputs(reference, result, rtol=rtol, atol=atol)
