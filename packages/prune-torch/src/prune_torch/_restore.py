"""A forward that leaves the model's modules as it found them: attributes, containers filled in place, modes.

A forward may cache tensors on its modules (anchor grids, masks); on meta those caches would
poison the real model, so a trace puts every module's attributes back afterwards, and the items
of containers a model's code filled in place (timm's attention-bias dict keyed by device).
"""

from __future__ import annotations

import contextlib
import functools
import operator
from collections.abc import Iterator
from typing import Any

import torch

from prune_torch._leaves import keeps_its_attributes
from prune_torch._walk import modules

__all__ = ["eval_flags", "restoring"]


@contextlib.contextmanager
def restoring(model: torch.nn.Module) -> Iterator[None]:
    """Every module's attributes and its own containers' items as they were before the block, also on failure."""
    # stock layers with no hooks run torch's own forward, which writes no attribute
    every = [module for module in modules(model) if not keeps_its_attributes(module)]
    saved = [(module, dict(module.__dict__)) for module in every]
    contents = [_Contents(container) for module in every for container in _containers(module)]
    try:
        yield
    finally:
        for module, attributes in saved:
            current = module.__dict__
            if not _same_attributes(current, attributes):
                current.clear()
                current.update(attributes)
        for held in contents:
            held.restore()


def _same_attributes(current: dict[str, Any], saved: dict[str, Any]) -> bool:
    """The same names in the same order, each holding the very object it held (compared at C speed)."""
    return list(current) == list(saved) and all(map(operator.is_, current.values(), saved.values()))


# nn.Module's own bookkeeping (parameters, buffers, submodules, hooks): the stand-in swap and the
# hooks manage those; only containers a model's code added are the model's state
_TORCH_CONTAINERS = frozenset(torch.nn.Module().__dict__)


def _containers(module: torch.nn.Module) -> list[dict[Any, Any] | list[Any] | set[Any]]:
    own = module.__dict__
    keys = own.keys() - _TORCH_CONTAINERS  # nn.Module's own keys passed over at C speed
    if not keys:
        return []
    return [value for key, value in own.items() if key in keys and isinstance(value, (dict, list, set))]  # in order


class _Contents:
    """A container attribute's items, to put back in place if a forward changed them."""

    def __init__(self, container: dict[Any, Any] | list[Any] | set[Any]) -> None:
        self.container = container
        self.items = list(container.items()) if isinstance(container, dict) else list(container)

    def restore(self) -> None:
        container = self.container
        now = list(container.items()) if isinstance(container, dict) else list(container)
        if len(now) == len(self.items) and all(_same(a, b) for a, b in zip(now, self.items)):
            return
        if isinstance(container, dict):
            container.clear()
            container.update(self.items)
        elif isinstance(container, list):
            container[:] = self.items
        else:
            container.clear()
            container.update(self.items)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(x is y for x, y in zip(a, b))
    return a is b


@contextlib.contextmanager
def eval_flags(model: torch.nn.Module) -> Iterator[None]:
    """Every module in eval mode inside the block; each module's own ``training`` flag put back after.

    The flags are set directly rather than through ``model.eval()``, so an overridden ``train()``
    (one that freezes some layers, or moves things) is not run, and a mix of modes comes back exactly.
    """
    flags = [(module, module.training, _plain_flag(type(module))) for module in modules(model)]
    try:
        for module, _, plain in flags:
            if plain:
                module.__dict__["training"] = False
            else:
                module.training = False
        yield
    finally:
        for module, training, plain in flags:
            if plain:
                module.__dict__["training"] = training
            else:
                module.training = training


@functools.cache
def _plain_flag(cls: type) -> bool:
    """Whether ``training`` is a plain instance attribute of ``cls``'s modules, set as nn.Module sets it.

    Then it is written in the instance's dict directly (nn.Module's ``__setattr__`` checks every
    attribute against its parameters, buffers and submodules first); a class with its own
    ``__setattr__`` or a ``training`` property gets its setter.
    """
    return cls.__setattr__ is torch.nn.Module.__setattr__ and not any("training" in vars(k) for k in cls.__mro__)
