"""Which module is running: the stack of module paths a trace names each op's owner by.

Each module of the model gets an instance ``forward`` for the length of a trace that pushes its
path, runs the module's own forward and pops it again. Only a call made by torch's module
machinery (``module(x)``) counts, as a global module hook would: a ``forward`` called directly
runs as part of its caller, and a module outside the model (made during the forward) leaves the
stack as it is. A module with forward pre-hooks of its own is pushed by a pre-hook put first, so
what its hooks compute belongs to it; what its forward hooks compute belongs to its caller. A
forward that raises leaves its module on the stack, so the error names it.

Torch's global module hooks would say the same, but every module call anywhere in the process
would then take torch's slow path for hooks: about a tenth of a trace of many small layers.
"""

from __future__ import annotations

import contextlib
import inspect
import sys
from collections.abc import Callable, Iterator
from typing import Any

import torch

from prune_torch._walk import modules, named_modules

__all__ = ["Entered", "called_as_module", "module_stack"]

# the frames a module's forward is called from when the module is called (torch's _call_impl, the
# closure it runs hooks in, and its path while torch.jit traces); a call from anywhere else is a
# direct call of ``forward``. Compared by identity first: a code object hashes its whole bytecode.
_CALL_IMPL = torch.nn.Module._call_impl.__code__
_HOOKED_CALLS = tuple(code for code in _CALL_IMPL.co_consts if inspect.iscode(code))
_MODULE_FILE = _CALL_IMPL.co_filename
_CALLER_NAMES = frozenset({"_call_impl", "inner", "_slow_forward"})


def called_as_module(caller: Any) -> bool:
    """Whether a frame running ``caller`` is torch's module machinery calling a forward."""
    if caller is _CALL_IMPL or any(caller is code for code in _HOOKED_CALLS):
        return True
    # by name, in case a torch release lays the machinery out otherwise
    return bool(caller.co_filename == _MODULE_FILE and caller.co_name in _CALLER_NAMES)


Seal = Callable[[torch.nn.Module, tuple[Any, ...]], None]
"""Told each module that is entered, with its positional inputs."""


class Entered:
    """A module's instance ``forward`` during a trace: its path on the stack while its own forward runs."""

    __slots__ = ("forward", "module", "path", "pushes", "seal", "stack")

    def __init__(
        self, module: torch.nn.Module, forward: Any, path: str, stack: list[str], seal: Seal | None, pushes: bool
    ) -> None:
        self.module = module
        self.forward = forward
        self.path = path
        self.stack = stack
        self.seal = seal
        self.pushes = pushes  # False where a pre-hook put first pushes (the module has pre-hooks of its own)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        caller = sys._getframe(1).f_code
        if caller is not _CALL_IMPL and not called_as_module(caller):
            return self.forward(*args, **kwargs)  # called directly: part of its caller
        if self.pushes:
            self.enter(args)
        out = self.forward(*args, **kwargs)
        if len(self.stack) > 1:
            self.stack.pop()
        return out

    def enter(self, args: tuple[Any, ...]) -> None:
        self.stack.append(self.path)
        if self.seal is not None:
            self.seal(self.module, args)


@contextlib.contextmanager
def module_stack(model: torch.nn.Module, stack: list[str], seal: Seal | None = None) -> Iterator[None]:
    """Inside the block, ``stack`` ends with the path of the module of ``model`` running (``stack[0]`` is the root's).

    ``seal(module, inputs)`` is called as each module is entered. Every module's ``forward`` is put
    back as it was when the block ends, also on failure.
    """
    paths: dict[int, str] = {}
    for name, module in named_modules(model, every_path=True):
        paths.setdefault(id(module), name)
    installed: list[tuple[torch.nn.Module, Any]] = []
    handles = []
    try:
        for module in modules(model):
            own = module.__dict__.get("forward")
            pushes = not module._forward_pre_hooks
            entered = Entered(module, module.forward, paths[id(module)], stack, seal, pushes)
            installed.append((module, own))
            if getattr(type(own), "take_stack", None) is not None:
                own.take_stack(entered)  # a stock layer's forward (prune_torch._leaves) pushes its path itself
            else:
                module.__dict__["forward"] = entered
            if not pushes:
                handles.append(module.register_forward_pre_hook(_pusher(entered), prepend=True))
        yield
    finally:
        for handle in handles:
            handle.remove()
        for module, own in installed:
            if own is None:
                module.__dict__.pop("forward", None)
            else:
                module.__dict__["forward"] = own
                if getattr(type(own), "take_stack", None) is not None:
                    own.take_stack(None)


def _pusher(entered: Entered) -> Callable[[torch.nn.Module, tuple[Any, ...]], None]:
    def push(_module: torch.nn.Module, args: tuple[Any, ...]) -> None:
        entered.enter(args)

    return push
