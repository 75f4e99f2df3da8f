"""Which int attributes a model's forward reads (``self.channels`` in an assert, ``attn.heads`` in a view).

Models keep sizes in plain attributes and compare or reshape with them in Python, where a
dispatch-level trace cannot see. For the length of a run, every public int attribute of every
module is watched by a data descriptor put on the module's class (a data descriptor on the type
is found before the instance's ``__dict__``): a read notes the module and the name and returns
the value unchanged. The classes are put back afterwards, also when the run fails. Only names no
class in the MRO defines are watched, so properties, methods and class defaults are untouched.

Only reads made while the module itself runs count (a method of that module is on the call stack:
its forward, or a helper it calls, such as diffusers' attention processors reading ``attn.heads``).
A parent reading a child's bookkeeping (ultralytics' ``DetectionModel`` reads each layer's index
``m.i`` to route outputs) is not a size the child's tensors depend on: a layer index of 16 must not
follow a channel count of 16.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

import torch

from prune_torch._layers import rule_for
from prune_torch._leaves import stock_leaf
from prune_torch._walk import named_modules

__all__ = ["Reads", "reading"]

# module path → {attribute name: value} of the int attributes its forward read
Reads = dict[str, dict[str, int]]


class _Watched:
    """Reads ``name`` from an instance's ``__dict__`` and notes which instance read it."""

    def __init__(self, name: str, seen: dict[int, set[str]]) -> None:
        self.name = name
        self.seen = seen

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            raise AttributeError(self.name)
        try:
            value = obj.__dict__[self.name]
        except KeyError:
            # no value of its own: nn.Module.__getattr__ looks further, as it did before
            raise AttributeError(self.name) from None
        if _running(obj):
            self.seen.setdefault(id(obj), set()).add(self.name)
        return value

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__[self.name] = value

    def __delete__(self, obj: Any) -> None:
        del obj.__dict__[self.name]


def _running(module: Any) -> bool:
    """Whether a method of ``module`` is on the call stack (outside this file)."""
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_locals.get("self") is module:
            return True
        frame = frame.f_back
    return False


# what every module's dict holds (nn.Module's bookkeeping, none of it a public int): not looked at
_MODULE_KEYS = frozenset(vars(torch.nn.Module()))


def _int_names(module: torch.nn.Module) -> set[str]:
    own = vars(module)
    return {name for name in own.keys() - _MODULE_KEYS if type(own[name]) is int and not name.startswith("_")}


@contextlib.contextmanager
def reading(model: torch.nn.Module) -> Iterator[Reads]:
    """Watch the int attributes of ``model``'s modules; the yielded dict fills in when the block ends.

    >>> from torch import nn
    >>> class Scale(nn.Module):
    ...     def __init__(self) -> None:
    ...         super().__init__()
    ...         self.channels, self.unused = 4, 4
    ...     def forward(self, x):
    ...         return x * self.channels
    >>> model = Scale()
    >>> with reading(model) as reads:
    ...     _ = model(torch.ones(2))
    >>> reads
    {'': {'channels': 4}}
    """
    paths: dict[int, str] = {}
    wanted: dict[type, set[str]] = {}
    ruled: dict[type, bool] = {}
    for path, module in named_modules(model):
        paths.setdefault(id(module), path)
        cls = type(module)
        if cls not in ruled:
            ruled[cls] = rule_for(module) is not None
        if ruled[cls] or stock_leaf(module) is not None:
            # a layer with a rule takes its sizes from its tensors: what its forward reads is never asked;
            # a stock layer running torch's own forward (an activation, dropout) reads no size
            continue
        names = _int_names(module)
        if names:
            wanted.setdefault(type(module), set()).update(names)
    seen: dict[int, set[str]] = {}
    installed: list[tuple[type, str]] = []
    reads: Reads = {}
    try:
        for cls, names in wanted.items():
            for name in sorted(names):
                if any(name in klass.__dict__ for klass in cls.__mro__):
                    continue
                setattr(cls, name, _Watched(name, seen))
                installed.append((cls, name))
        yield reads
    finally:
        for cls, name in reversed(installed):
            delattr(cls, name)
        modules = {id(m): m for _, m in named_modules(model)}
        for key, names in seen.items():
            module = modules.get(key)
            if module is None:
                continue
            values = {n: module.__dict__[n] for n in sorted(names) if type(module.__dict__.get(n)) is int}
            if values:
                reads[paths[key]] = values
