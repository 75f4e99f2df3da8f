"""A model's parameters and buffers, and the meta stand-ins a trace runs it with.

A trace on meta runs the model with every parameter and buffer replaced by an empty meta tensor
of the same shape, dtype and ``requires_grad``: no FLOPs, no memory, and models larger than memory
still trace. ``standing_in`` swaps them into the modules' own tables for the run and puts the real
ones back after, also on failure.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from prune_graph import ValueKind
from prune_torch._walk import named_modules, remembered

__all__ = ["meta_stand_ins", "on_meta", "standing_in", "state", "state_stand_ins"]

State = list[tuple[str, str, str, torch.Tensor, ValueKind]]

_KINDS = (ValueKind.PARAMETER, ValueKind.BUFFER)  # looked up once: an enum member is a slow class attribute


def state(model: torch.nn.Module) -> State:
    """(path, module, name, tensor, kind) for each unique parameter and buffer, in torch's order.

    As ``named_parameters()`` then ``named_buffers()``. Inside a walk (see ``_walk``) it is found
    once, when first asked, before any stand-in is swapped in.
    """
    return remembered(model, "state", _state)


def _state(model: torch.nn.Module) -> State:
    seen: set[int] = set()
    found = []
    walk = named_modules(model)
    for kind in _KINDS:
        parameters = kind is _KINDS[0]
        for module_path, module in walk:
            held = module._parameters if parameters else module._buffers
            if not held:
                continue
            prefix = f"{module_path}." if module_path else ""
            for name, tensor in held.items():
                if tensor is None or id(tensor) in seen:
                    continue
                seen.add(id(tensor))
                found.append((prefix + name, module_path, name, tensor, kind))
    return found


def meta_stand_ins(found: State) -> dict[str, torch.Tensor]:
    """An empty meta tensor like each of ``found`` (see :func:`state`), by path."""
    return {entry[0]: _stand_in(entry[3]) for entry in found}


_META = torch.device("meta")


def _stand_in(tensor: torch.Tensor) -> torch.Tensor:
    # empty_like keeps a dense tensor's very strides (and lays out any other one as dense)
    stand_in = torch.empty_like(tensor, device=_META)
    return stand_in.requires_grad_() if tensor.requires_grad else stand_in


def state_stand_ins(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Meta stand-ins for every parameter and buffer of ``model``, by path (for ``prune_torch._trace.forward_under``)."""
    return meta_stand_ins(state(model))


@contextlib.contextmanager
def standing_in(model: torch.nn.Module, stand_ins: dict[str, torch.Tensor]) -> Iterator[None]:
    """Each parameter and buffer replaced by its stand-in in the block, wherever it is held (tied ones too).

    What ``torch.func.functional_call(..., tie_weights=True)`` does, without its cost per tensor.
    """
    by_tensor = {id(entry[3]): stand_ins[entry[0]] for entry in state(model) if entry[0] in stand_ins}
    swapped: list[tuple[dict[str, Any], str, torch.Tensor]] = []
    try:
        for _path, module in named_modules(model):
            for held in (module._parameters, module._buffers):
                if not held:
                    continue
                for name, tensor in held.items():
                    stand_in = by_tensor.get(id(tensor)) if tensor is not None else None
                    if stand_in is not None:
                        swapped.append((held, name, tensor))
                        held[name] = stand_in
        yield
    finally:
        for held, name, tensor in reversed(swapped):
            held[name] = tensor


def on_meta(model: torch.nn.Module) -> bool:
    """Whether any of ``model``'s parameters or buffers lives on the meta device."""
    for entry in state(model):  # noqa: SIM110 (a loop, not any(): no generator step or unpacking per tensor)
        if entry[3].is_meta:
            return True
    return False
