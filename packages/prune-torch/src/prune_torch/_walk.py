"""One walk over a model's modules per trace or re-run, however many parts ask for them.

A trace asks for the model's modules a dozen times: to check for TorchScript, watch int
attributes, set eval flags, save and restore attributes, name the running module, find stock
layers and attention modules, list parameters. On a model of many small layers each walk costs
as much as tracing a few ops. Inside :func:`walked`, :func:`named_modules` and :func:`modules`
answer from a single walk made when the block began; elsewhere they walk as torch does.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch

__all__ = ["modules", "named_modules", "remembered", "walked"]

_Walk = tuple[torch.nn.Module, list[tuple[str, torch.nn.Module]], list[tuple[str, torch.nn.Module]], dict[str, Any]]
_WALK: contextvars.ContextVar[_Walk | None] = contextvars.ContextVar("prune_torch_walk", default=None)


_NAMED_MODULES = torch.nn.Module.named_modules
_DEEPEST = 900  # deeper than this, torch's own recursive walk (and its RecursionError on a cycle)


def _every_path(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """``list(model.named_modules(remove_duplicate=False))``, walked without a generator per module."""
    found = []
    todo = [("", model, 0)]
    while todo:
        path, module, depth = todo.pop()
        if type(module).named_modules is not _NAMED_MODULES or depth > _DEEPEST:
            return list(model.named_modules(remove_duplicate=False))  # a class that walks its own way
        found.append((path, module))
        children = module._modules
        if children:
            prefix = f"{path}." if path else ""
            todo += reversed(
                [(prefix + name, child, depth + 1) for name, child in children.items() if child is not None]
            )
    return found


def _walk(model: torch.nn.Module) -> _Walk:
    every = _every_path(model)
    seen: set[int] = set()
    first = []
    for path, module in every:
        if id(module) not in seen:
            seen.add(id(module))
            first.append((path, module))
    return model, every, first, {}


@contextlib.contextmanager
def walked(model: torch.nn.Module) -> Iterator[None]:
    """Inside the block, ``model``'s modules come from one walk (the module tree must not change in it).

    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 2))
    >>> with walked(model):
    ...     [path for path, _ in named_modules(model)]
    ['', '0']
    """
    current = _WALK.get()
    if (current is not None and current[0] is model) or not isinstance(model, torch.nn.Module):
        yield  # a walk under way, or not a model (the caller's own check says so)
        return
    token = _WALK.set(_walk(model))
    try:
        yield
    finally:
        _WALK.reset(token)


def named_modules(model: torch.nn.Module, *, every_path: bool = False) -> list[tuple[str, torch.nn.Module]]:
    """``model.named_modules()`` as a list; with ``every_path``, a module held in two places under each path."""
    current = _WALK.get()
    walk = current if current is not None and current[0] is model else _walk(model)
    return walk[1] if every_path else walk[2]


def modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    """``model.modules()`` as a list: each module once."""
    return [module for _, module in named_modules(model)]


T = TypeVar("T")


def remembered(model: torch.nn.Module, key: str, find: Callable[[torch.nn.Module], T]) -> T:
    """``find(model)``, found once per walk of ``model`` (each time outside one)."""
    current = _WALK.get()
    if current is None or current[0] is not model:
        return find(model)
    memo = current[3]
    if key not in memo:
        memo[key] = find(model)
    return memo[key]  # type: ignore[no-any-return]
