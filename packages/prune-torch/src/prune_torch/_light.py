"""Light verification after applying a plan: one plain re-run checked call by call, no graph built.

The trace a plan was made on keeps every aten call in order with the shapes it returned
(:class:`prune_torch._trace.Calls`). After applying, the pruned model runs once more the same
way (meta stand-ins, or real tensors if the trace needed them) under a dispatch mode that only
compares: the same op at each position, each result the plan knows the shape of equal to the
plan's prediction, and the same plain numbers at each call (:mod:`prune_torch._constants`).
Parameters and buffers are checked by name, and the model's outputs by position. Any
difference, or an error, and the caller falls back to the full re-trace and comparison
(:func:`prune_torch._rebase.compare`), which finds the module to name; so this is a fast path to
the same verdict, never a weaker check: a run that matches call by call has every shape and
number the full comparison would look at.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from prune_graph import Graph, ValueId, ValueKind
from prune_ops import Plan
from prune_torch._aten import tensors_in
from prune_torch._constants import constants_of, same_numbers
from prune_torch._errors import forget_frames
from prune_torch._meta import MetaKernels
from prune_torch._rebase import data_sized
from prune_torch._restore import eval_flags
from prune_torch._stand_ins import state, state_stand_ins
from prune_torch._trace import (
    Calls,
    ExampleInputs,
    forward_under,
    inputs_on,
    result_tensors,
)
from prune_torch._walk import walked

__all__ = ["light_check"]

Expected = list[tuple[Any, tuple[tuple[int, ...] | None, ...]]]


class _Difference(Exception):
    """The re-run left the recorded sequence of calls, or a shape differs from the plan's prediction."""


class _Checker(TorchDispatchMode):
    """Compares each aten call of a run with the expected op and result shapes, in order."""

    paused = False  # the attributes a trace's helpers look for (see prune_torch._trace)

    def __init__(self, expected: Expected, numbers: dict[int, tuple[Any, ...]]) -> None:
        super().__init__()
        self.expected = expected
        self.numbers = numbers  # position → the plain numbers the trace's call used there (no data read before)
        self.position = 0
        self.kernels = MetaKernels()  # the trace's fast meta kernels: the same results, sooner

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = self.kernels.run(func, args, kwargs or {})
        self._check(func, args, kwargs or {}, out)
        return out

    def layer_call(self, func: Any, args: tuple[Any, ...], out: Any, *_reading: Any) -> None:
        """A stock layer's call whose result the layer made (``prune_torch._leaves``): checked like any other."""
        self._check(func, args, {}, out)

    def _check(self, func: Any, args: Any, kwargs: Any, out: Any) -> None:
        if self.position >= len(self.expected):
            raise _Difference(f"an extra call {func} after the {len(self.expected)} recorded ones")
        want_func, want_shapes = self.expected[self.position]
        if func is not want_func:
            raise _Difference(f"call {self.position}: {func} where the trace had {want_func}")
        tensors = tensors_in(out)
        if len(tensors) != len(want_shapes):
            raise _Difference(f"call {self.position} ({func}) returned {len(tensors)} tensors, not {len(want_shapes)}")
        for tensor, want in zip(tensors, want_shapes):
            if want is not None and tuple(tensor.shape) != want:
                raise _Difference(f"call {self.position} ({func}): shape {tuple(tensor.shape)}, predicted {want}")
        numbers = self.numbers.get(self.position)
        if numbers is not None and not same_numbers(constants_of(func, args, kwargs), numbers):
            raise _Difference(f"call {self.position} ({func}) computes with other numbers than the trace")
        self.position += 1

    def _record(self, *_args: Any) -> None:
        pass


def _expected(before: Graph, calls: Calls, plan: Plan) -> tuple[Expected, dict[ValueId, tuple[int, ...]]]:
    """Each call's op and the predicted shape of each result the check covers (``None``: not compared)."""
    shapes = plan.new_shapes()
    skip = data_sized(before)

    def want(value: ValueId | None) -> tuple[int, ...] | None:
        if value is None or value in skip:
            return None
        return tuple(shapes.get(value, before.shape(value)))

    expected = [(func, tuple(want(value) for value, _shape in outputs)) for func, outputs in calls.items]
    return expected, {v: tuple(shapes.get(v, before.shape(v))) for v in before.outputs if v not in skip}


def _state_matches(model: torch.nn.Module, before: Graph, plan: Plan) -> bool:
    shapes = plan.new_shapes()
    tensors = {path: tensor for path, _module, _name, tensor, _kind in state(model)}
    for value in before.values:
        if value.kind is not ValueKind.PARAMETER and value.kind is not ValueKind.BUFFER:
            continue
        tensor = tensors.get(value.path)
        if tensor is not None and tensor.shape != tuple(shapes.get(value.id, value.shape)):
            return False
    return True


def light_check(
    model: torch.nn.Module, example_inputs: ExampleInputs, before: Graph, calls: Calls, plan: Plan
) -> str | None:
    """``None`` if the pruned ``model`` re-runs exactly as ``plan`` predicts on ``before``; else the first difference.

    ``calls`` are the aten calls of the trace ``before`` came from and ``plan`` is made on
    ``before``. The run leaves the model as it found it (modes, attributes, caches).
    """
    with walked(model):
        return _check(model, example_inputs, before, calls, plan)


def _check(
    model: torch.nn.Module, example_inputs: ExampleInputs, before: Graph, calls: Calls, plan: Plan
) -> str | None:
    if not _state_matches(model, before, plan):
        return "a parameter or buffer does not have its predicted shape"
    expected, outputs = _expected(before, calls, plan)
    checker = _Checker(expected, {c.position: c.values for c in calls.constants if not c.after_data})
    args, kwargs = inputs_on(example_inputs, calls.meta)
    stand_ins = state_stand_ins(model) if calls.meta else None
    try:
        with torch.enable_grad(), eval_flags(model):
            result = forward_under(model, args, kwargs, stand_ins, checker, None)
    except Exception as error:  # a difference, or the pruned model failing: the full re-trace tells which
        cause = error.__cause__ if isinstance(error.__cause__, _Difference) else error
        message = f"{type(cause).__name__}: {cause}"
        # the traceback holds the run's frames (real activations on a real run) in a cycle with this
        # frame, and a prune pauses the garbage collector: break it, or every failed try keeps a forward
        forget_frames(error)
        del cause
        return message
    if checker.position != len(expected):
        return f"the run made {checker.position} calls where the trace made {len(expected)}"
    got = list({id(t): t for t in result_tensors(result)}.values())  # a trace lists a tensor returned twice once
    if len(got) != len(before.outputs):
        return f"the model returned {len(got)} tensors where it returned {len(before.outputs)}"
    for value, tensor in zip(before.outputs, got):
        if value in outputs and tuple(tensor.shape) != outputs[value]:
            return f"output {value}: shape {tuple(tensor.shape)}, predicted {outputs[value]}"
    return None
