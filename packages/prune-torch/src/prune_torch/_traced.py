"""A traced graph that remembers which torch modules it came from."""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import Any

import attrs
import torch

from prune_graph import Graph, ValueId
from prune_ops import GroupSet, find_groups
from prune_torch._gc import gc_paused
from prune_torch._reads import reading
from prune_torch._trace import ExampleInputs, check_traceable, trace_with_calls
from prune_torch._walk import named_modules, walked

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
            with gc_paused():
                self.cache[key] = find_groups(self, ignore=ignore, prune_outputs=prune_outputs)
        return self.cache[key]  # type: ignore[no-any-return]

    def fingerprint(self, shapes: Mapping[ValueId, tuple[int, ...]] | None = None) -> str:
        """See :meth:`prune_graph.Graph.fingerprint`; the graph's own is computed once."""
        if shapes:
            return super().fingerprint(shapes)
        if "fingerprint" not in self.cache:
            self.cache["fingerprint"] = super().fingerprint()
        return self.cache["fingerprint"]  # type: ignore[no-any-return]

    def some_groups(self) -> GroupSet:
        """Groups already found for this graph under any options, else the default ones.

        For callers that read only the groups' members and kinds, which ``ignore`` and
        ``prune_outputs`` do not change (they only pin dims), so no second group search runs.
        """
        for key, value in self.cache.items():
            if key.startswith("groups:"):
                return value  # type: ignore[no-any-return]
        return self.groups()


def trace_model(model: torch.nn.Module, example_inputs: ExampleInputs, *, meta: bool | None = None) -> TracedGraph:
    """Trace ``model`` (see :func:`prune_torch.trace`) and keep its module map.

    The graph's cache also keeps what ``apply`` needs to carry out a plan made on this very
    graph without tracing again: the int attributes the forward read (``"reads"``) and every aten
    call of the run (``"calls"``), against which the pruned model's re-run is checked.
    """
    paths: weakref.WeakKeyDictionary[torch.nn.Module, str] = weakref.WeakKeyDictionary()
    types: dict[str, type] = {}
    with walked(model), gc_paused():
        check_traceable(model)  # before watching its attributes
        with reading(model) as reads:
            graph, calls = trace_with_calls(model, example_inputs, meta=meta)
        for name, module in named_modules(model):
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
        cache={"reads": reads, "calls": calls},
    )
