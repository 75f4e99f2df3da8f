"""``plan(graph, module, indices)``: the group that removing some channels of one layer implies."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from prune_graph import DimRef, Graph, ValueId
from prune_ops import Plan, UnprunableError, find_groups, make_plan, propagate
from prune_torch._layers import LAYER_RULES
from prune_torch._traced import TracedGraph

__all__ = ["plan"]


def _module_path(graph: Graph, target: torch.nn.Module | str) -> str:
    if isinstance(target, str):
        return target
    if isinstance(target, torch.nn.Module):
        if isinstance(graph, TracedGraph) and target in graph.module_paths:
            return graph.module_paths[target]
        raise UnprunableError(
            f"module {type(target).__name__} is not part of the traced model "
            "(pass a module of the model given to trace(), or its path as a string)"
        )
    raise UnprunableError(f"plan() needs a module or a module path (got {type(target).__name__})")


def _default_axis(graph: Graph, path: str, param: str) -> int:
    module_type = graph.module_types.get(path) if isinstance(graph, TracedGraph) else None
    if module_type is not None:
        for cls in module_type.__mro__:
            rule = LAYER_RULES.get(cls)
            if rule is not None:
                for name, axis in rule.out_axes:
                    if name == param:
                        return axis
    return 0


def plan(
    graph: Graph,
    target: torch.nn.Module | str,
    indices: Iterable[int] | torch.Tensor,
    *,
    dim: int | None = None,
    param: str = "weight",
    prune_outputs: bool = False,
) -> Plan:
    """The plan that removing ``indices`` along ``dim`` of ``target.param`` implies.

    ``target`` is a module of the traced model or its path (``"layer1.0.conv1"``). ``dim``
    defaults to the layer's output-channel axis (0 for conv and linear weights, 1 for transposed
    convs, 1 for embeddings); give ``dim=1`` to prune a conv's input channels. Dims that reach a
    model output stay unless ``prune_outputs``.
    """
    path = _module_path(graph, target)
    value_id = ValueId(f"{path}.{param}" if path else param)
    if not graph.has_value(value_id):
        known = sorted({v.owner for v in graph.values if v.is_state})
        hint = f"; modules with parameters: {', '.join(known[:8])}{' ...' if len(known) > 8 else ''}"
        raise UnprunableError(f"the traced model has no tensor {value_id!r}{hint}")
    axis = _default_axis(graph, path, param) if dim is None else dim
    rank = graph.value(value_id).rank
    if not 0 <= axis < rank:
        raise UnprunableError(f"{value_id}: dim {axis} does not exist (the tensor has {rank} dims)")
    if isinstance(indices, torch.Tensor):
        indices = indices.tolist()
    groups = (
        graph.groups(prune_outputs=prune_outputs)
        if isinstance(graph, TracedGraph)
        else find_groups(graph, prune_outputs=prune_outputs)
    )
    removal = propagate(graph, DimRef(value_id, axis), list(indices), groups)
    return make_plan(graph, removal)
