"""Tracing a torch model into a prune-graph Graph at the dispatch level.

The model runs once under a ``TorchDispatchMode`` that records every aten call
(``prune_torch._recorder``), while a stack of the modules being executed (``prune_torch._stack``)
tells each op its owner. Parameters and buffers are recognised by identity. By default the run
happens on the meta device, with meta stand-ins swapped in for the model's parameters and buffers
(``prune_torch._stand_ins``): no FLOPs, no activation memory. When a model reads tensor values in Python (``.item()``, data-dependent ``if``), the
trace falls back to the real tensors.

Every trace runs in eval mode, whatever the modes of the model's modules, and puts back each
module's own ``training`` flag afterwards. So the graph, its fingerprint and its value ids, and
with them every plan, are the same whether the model was in train or eval mode, partly or
wholly: a plan made in one mode applies in any other. Eval mode is the choice because it is the
graph the pruned model is deployed with, and because a train-mode forward on real tensors (the
fallback) would update BatchNorm running statistics as a side effect of tracing.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch

from prune_graph import Graph, GraphBuilder, ValueId, ValueKind
from prune_torch._aten import tensors_in
from prune_torch._constants import Constant
from prune_torch._errors import TraceError
from prune_torch._leaves import fast_leaves
from prune_torch._lines import error_model_line
from prune_torch._mha import PrunedMultiheadAttention, runs_stock_forward
from prune_torch._recorder import Recorder, WholeOps, dtype_name
from prune_torch._restore import eval_flags, restoring
from prune_torch._stack import module_stack
from prune_torch._stand_ins import meta_stand_ins, on_meta, standing_in, state
from prune_torch._walk import modules, named_modules, remembered, walked

__all__ = [
    "Calls",
    "ExampleInputs",
    "check_traceable",
    "forward_under",
    "inputs_on",
    "refuse_script_modules",
    "result_tensors",
    "split_inputs",
    "trace",
    "trace_with_calls",
]

ExampleInputs = Any  # a tensor, a tuple of positional arguments, or a dict of keyword arguments


def split_inputs(example_inputs: ExampleInputs) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``(args, kwargs)`` from a tensor, a tuple/list of arguments, or a dict of keyword arguments."""
    if isinstance(example_inputs, Mapping):
        return (), dict(example_inputs)
    if isinstance(example_inputs, (tuple, list)):
        return tuple(example_inputs), {}
    return (example_inputs,), {}


# Modules whose implementation fixes the width of what they read, beyond what their ops show:
# torch's multi-head attention requires query width == embed_dim == rows of each in-projection.
# A plain nn.MultiheadAttention is traced through prune_torch's own forward instead (see
# ``_own_attention``), so only subclasses, whose code may differ, stay sealed.
SEALED_MODULES: tuple[type, ...] = (torch.nn.MultiheadAttention,)
OPEN_MODULES: tuple[type, ...] = (torch.nn.MultiheadAttention, PrunedMultiheadAttention)


def _sealed(module: torch.nn.Module) -> bool:
    return isinstance(module, SEALED_MODULES) and type(module) not in OPEN_MODULES


@contextlib.contextmanager
def _own_attention(model: torch.nn.Module) -> Iterator[None]:
    """Every plain ``nn.MultiheadAttention`` runs :class:`PrunedMultiheadAttention`'s forward inside the block.

    Same math, but its ops show the heads and widths that torch's forward ties to ``embed_dim``,
    and they are the ops the module runs once pruned, so plans line up with the re-trace.
    """
    plain = [module for module in modules(model) if runs_stock_forward(module)]
    try:
        for module in plain:
            module.__class__ = PrunedMultiheadAttention
        yield
    finally:
        for module in plain:
            module.__class__ = torch.nn.MultiheadAttention


def _sealer(recorder: Recorder) -> Callable[[torch.nn.Module, tuple[Any, ...]], None]:
    def seal(module: torch.nn.Module, inputs: tuple[Any, ...]) -> None:
        if _sealed(module):
            recorder.seal(type(module).__name__, tensors_in(list(inputs)) + list(module.parameters()))

    return seal


def result_tensors(result: Any) -> list[torch.Tensor]:
    """The tensors of a model's result, in the order a trace numbers its outputs."""
    return tensors_in(_plain(result))


def inputs_on(example_inputs: ExampleInputs, meta: bool) -> tuple[tuple[Any, ...], dict[str, Any]]:
    args, kwargs = split_inputs(example_inputs)
    if not meta:
        return args, kwargs

    def convert(x: Any) -> Any:
        return torch.empty_like(x, device="meta") if isinstance(x, torch.Tensor) else x

    args = tuple(torch.utils._pytree.tree_map(convert, a) for a in args)
    kwargs = {k: torch.utils._pytree.tree_map(convert, v) for k, v in kwargs.items()}
    return args, kwargs


def forward_under(
    model: torch.nn.Module,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    stand_ins: dict[str, torch.Tensor] | None,
    mode: Any,
    stack: list[str] | None,
) -> Any:
    """One forward of ``model`` under the dispatch mode ``mode``, as a trace runs it; the model's state is put back.

    ``stand_ins`` (meta tensors by parameter path) run it in place of the model's state; ``None`` runs
    the real tensors. ``mode`` also serves :class:`WholeOps` and sealed modules (``paused``,
    ``_record``, ``seal``). ``stack`` follows the modules being run (not followed when
    ``None``). Raises :class:`TraceError` naming the module that failed.
    """
    try:
        leaves = fast_leaves(modules(model), mode) if stand_ins is not None else contextlib.nullcontext()
        running = module_stack(model, stack, _sealer(mode)) if stack is not None else contextlib.nullcontext()
        # the stack wraps each module's forward as it is then: the fast layers' too, so they come first
        with restoring(model), _own_attention(model), leaves, running, _quiet(), mode, WholeOps(mode):
            if stand_ins is not None:
                with standing_in(model, stand_ins):
                    return model(*args, **kwargs)
            return model(*args, **kwargs)
    except Exception as error:
        where = stack[-1] if stack else ""
        line = error_model_line(error)
        raise TraceError(
            f"in module {where or '<root>'}{f' ({line})' if line else ''}: {type(error).__name__}: {error}", where
        ) from error


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """No warning about reading a value that requires grad: the run's grad mode is the trace's, not the model's."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad=True to a scalar")
        yield


Call = tuple[Any, tuple[tuple[ValueId | None, tuple[int, ...]], ...]]
"""One aten call of a trace: the op overload and, for each tensor it returned, its value id (``None``
when it is not a value of the graph) and shape."""


class Calls:
    """Every aten call of a trace in order, and whether it ran on meta: what a light re-run is checked against.

    ``items`` may be given as a function that makes them, called when they are first asked for: a
    trace on meta keeps its calls' results (empty meta tensors) until then, so a graph that is never
    re-run against (``pt.trace(...).groups()``) does not pay for them.
    """

    __slots__ = ("_items", "constants", "meta")

    def __init__(
        self,
        meta: bool,
        items: tuple[Call, ...] | Callable[[], tuple[Call, ...]],
        constants: tuple[Constant, ...] = (),
    ) -> None:
        self.meta = meta
        self._items = items
        self.constants = constants

    @property
    def items(self) -> tuple[Call, ...]:
        if callable(self._items):
            self._items = self._items()
        return self._items


def _run(model: torch.nn.Module, example_inputs: ExampleInputs, meta: bool, lines: bool = False) -> tuple[Graph, Calls]:
    builder = GraphBuilder()
    names: dict[int, ValueId] = {}
    held = state(model)
    stand_ins = meta_stand_ins(held) if meta else None
    for path, module, name, tensor, kind in held:
        use = stand_ins[path] if stand_ins is not None else tensor
        names[id(use)] = builder.value(path, tuple(tensor.shape), dtype_name(tensor), kind, module, name)
    args, kwargs = inputs_on(example_inputs, meta)
    input_ids = []
    for position, arg in enumerate(args):
        for j, t in enumerate(tensors_in(arg)):
            input_ids.append(
                builder.value(
                    f"input{position}" + (f".{j}" if j else ""), tuple(t.shape), dtype_name(t), ValueKind.INPUT
                )
            )
            names[id(t)] = input_ids[-1]
    for key, arg in kwargs.items():
        for j, t in enumerate(tensors_in(arg)):
            if id(t) in names:
                continue
            input_ids.append(
                builder.value(key + (f".{j}" if j else ""), tuple(t.shape), dtype_name(t), ValueKind.INPUT)
            )
            names[id(t)] = input_ids[-1]
    stack = [""]
    recorder = Recorder(builder, names, stack)
    recorder.lines = lines
    result = forward_under(model, args, kwargs, stand_ins, recorder, stack)
    outputs = [recorder._id_of(t) for t in result_tensors(result)]
    graph = builder.build(input_ids, list(dict.fromkeys(outputs)), drop_unused=True)
    known = {v.id for v in graph.values}

    stream = recorder.stream

    def ids(out: Any) -> tuple[tuple[ValueId | None, tuple[int, ...]], ...]:
        found = []
        for t in tensors_in(out):
            name = names.get(id(t))
            found.append((name if name in known else None, tuple(t.shape)))
        return tuple(found)

    def items() -> tuple[Call, ...]:
        return tuple((func, ids(out)) for func, out in stream)  # the stream keeps each result, so its id

    # a real run's results are activations: worked out now, so they are freed with the stream
    return graph, Calls(meta, items if meta else items(), tuple(recorder.constants))


def _plain(result: Any) -> Any:
    """Model outputs as nested plain containers (Hugging Face ModelOutput is a dict)."""
    if isinstance(result, Mapping):
        return {k: _plain(v) for k, v in result.items()}
    if isinstance(result, (list, tuple)):
        return [_plain(v) for v in result]
    return result


def check_traceable(model: Any) -> None:
    """Raise a :class:`TraceError` unless ``model`` is an eager ``torch.nn.Module`` (before any work)."""
    if not isinstance(model, torch.nn.Module):
        raise TraceError(f"trace() needs a torch.nn.Module (got {type(model).__name__})")
    remembered(model, "no TorchScript", refuse_script_modules)  # checked once per walk of the model


def refuse_script_modules(model: torch.nn.Module) -> None:
    """Raise a :class:`TraceError` naming the first TorchScript module in ``model``.

    A scripted module runs its compiled graph: no module stack, no meta stand-ins,
    no ``get_submodule``, and its code keeps sizes the pruner cannot update. Checked before any
    work, so a scripted model fails here rather than half-way through a prune.
    """
    for path, module in named_modules(model):
        if isinstance(module, torch.jit.ScriptModule):
            where = f"module {path!r}" if path else "the model"
            raise TraceError(
                f"{where} is a TorchScript module ({type(module).__name__}); prune_torch works on eager "
                "torch.nn.Modules. Prune the eager model (built from the Python class that was scripted; a "
                "model from torch.jit.load has none), then script the pruned model with torch.jit.script",
                path,
            )


def trace(model: torch.nn.Module, example_inputs: ExampleInputs, *, meta: bool | None = None) -> Graph:
    """The prune-graph Graph of ``model`` run on ``example_inputs``.

    ``example_inputs`` is a tensor, a tuple of positional arguments, or a dict of keyword
    arguments. ``meta=None`` (default) traces on the meta device and falls back to real
    tensors when the model reads tensor values; ``True`` or ``False`` forces one way. Models
    whose parameters live on the meta device are always traced on meta. The trace runs in eval
    mode and leaves every module's train/eval mode as it found it, so the graph does not depend
    on the mode (code that runs only in training, such as an auxiliary head, is not traced).

    >>> import torch
    >>> graph = trace(torch.nn.Sequential(torch.nn.Linear(4, 3)), torch.randn(2, 4))
    >>> sorted(v.path for v in graph.values if v.kind.value == "parameter")
    ['0.bias', '0.weight']
    """
    return trace_with_calls(model, example_inputs, meta=meta)[0]


def trace_with_calls(
    model: torch.nn.Module, example_inputs: ExampleInputs, *, meta: bool | None = None, lines: bool = False
) -> tuple[Graph, Calls]:
    """:func:`trace`, and the record of every aten call the run made (see :class:`Calls`).

    ``lines`` also names the model's source line of every call that uses a plain number (slower).
    """
    with walked(model):
        return _trace_attempts(model, example_inputs, meta, lines)


def _trace_attempts(
    model: torch.nn.Module, example_inputs: ExampleInputs, meta: bool | None, lines: bool
) -> tuple[Graph, Calls]:
    check_traceable(model)
    attempts = [True] if (meta is True or on_meta(model)) else ([False] if meta is False else [True, False])
    errors: list[str] = []
    module: str | None = None
    for use_meta in attempts:
        try:
            with torch.enable_grad(), eval_flags(model):
                return _run(model, example_inputs, use_meta, lines)
        except TraceError as error:
            errors.append(f"{'meta' if use_meta else 'real'} run {error}")
            # the last attempt names the module: a meta run can stop early where a model reads values
            module = error.module
        except Exception as error:
            errors.append(f"{'meta' if use_meta else 'real'} run: {type(error).__name__}: {error}")
    raise TraceError(f"could not trace {type(model).__name__}: " + " | ".join(errors), module)
