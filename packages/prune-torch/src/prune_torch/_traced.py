"""A traced graph that remembers which torch modules it came from."""

from __future__ import annotations

import weakref
from typing import Any

import attrs
import torch

from prune_graph import Graph
from prune_ops import GroupSet, find_groups
from prune_torch._trace import ExampleInputs, trace

__all__ = ["TracedGraph", "trace_model"]


@attrs.frozen
class TracedGraph(Graph):
    """A :class:`prune_graph.Graph` plus the module objects and example inputs it was traced from.

    It compares and serialises like the plain graph; the extra fields only let the torch API take
    module objects where a path is expected.
    """

    module_paths: weakref.WeakKeyDictionary[torch.nn.Module, str] = attrs.field(
        factory=weakref.WeakKeyDictionary, eq=False, repr=False, hash=False
    )
    module_types: dict[str, type] = attrs.field(factory=dict, eq=False, repr=False, hash=False)
    example_inputs: Any = attrs.field(default=None, eq=False, repr=False, hash=False)
    cache: dict[str, Any] = attrs.field(factory=dict, eq=False, repr=False, hash=False)

    def groups(self, ignore: tuple[str, ...] = (), prune_outputs: bool = False) -> GroupSet:
        """The graph's groups (memoised per ``ignore`` / ``prune_outputs``)."""
        key = f"groups:{sorted(ignore)}:{prune_outputs}"
        if key not in self.cache:
            self.cache[key] = find_groups(self, ignore=ignore, prune_outputs=prune_outputs)
        return self.cache[key]  # type: ignore[no-any-return]


def trace_model(model: torch.nn.Module, example_inputs: ExampleInputs, *, meta: bool | None = None) -> TracedGraph:
    """Trace ``model`` (see :func:`prune_torch.trace`) and keep its module map."""
    graph = trace(model, example_inputs, meta=meta)
    paths: weakref.WeakKeyDictionary[torch.nn.Module, str] = weakref.WeakKeyDictionary()
    types: dict[str, type] = {}
    for name, module in model.named_modules():
        paths.setdefault(module, name)
        types[name] = type(module)
    return TracedGraph(
        graph.values,
        graph.ops,
        graph.inputs,
        graph.outputs,
        module_paths=paths,
        module_types=types,
        example_inputs=example_inputs,
    )
