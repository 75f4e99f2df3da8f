"""Stock torch layers handed to a trace's dispatch mode as the aten calls they make, without running their code.

On the meta device a plain ``nn.Conv2d`` goes through ``F.conv2d``, torch-function handling, the
C++ dispatcher and autograd to reach the dispatch mode as one ``aten.convolution`` call; a batch
norm, an activation or a linear layer likewise. That path is most of a trace's cost on models of
many small layers (mobilenet_v2, densenet121), and the call it ends in is fixed by the layer's
attributes. So, while a trace or a light re-run runs on meta, each exact instance of a class in
:data:`LEAVES` whose forward is torch's own gets an instance ``forward`` that gives the mode those
calls directly: the same ops, the same arguments in the same order, and the results of the mode's
own kernels. A layer whose input does not fit (another rank, a subclass of Tensor, a string
padding, a batch norm using batch statistics) runs its own forward as before.

Most of those calls skip the mode's generic path too (``Calls.known``): the layer knows which
op it makes and what the op reads, so the call is answered by its shape rule and handed to the
mode with that reading (``layer_call``), without the checks a call of unknown origin needs and
without looking its reader up. Where the rule declines, the call goes the generic way.

The graph is the same op for op (``tests/torch/test_leaves.py`` compares each layer's calls with
what its forward makes, and whole traces with the fast path on and off). What differs is only
what autograd adds below a layer (a batch norm's empty reserve tensor, the ``detach`` of saved
results), which a trace leaves out of the graph anyway, and that the outputs do not require grad.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import math
import sys
import types
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

import torch
import torch.nn.modules.module as _module_globals
from torch import nn

from prune_graph import OpKind
from prune_torch._stack import Entered, called_as_module

__all__ = ["LEAVES", "fast_leaves", "stock_leaf", "stock_leaves"]

aten = torch.ops.aten
# the kinds a layer states, looked up once: an enum member is a slow class attribute (~0.15 us a lookup)
_CONV, _NORM, _ELEMENTWISE = OpKind.CONV, OpKind.NORM, OpKind.ELEMENTWISE


class Calls(Protocol):
    """How a layer hands its aten calls to the trace's dispatch mode (a :class:`_Forward`)."""

    def dispatch(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """The mode's answer to one call, as the dispatcher would ask it."""

    def known(
        self,
        func: Any,
        args: tuple[Any, ...],
        kind: OpKind,
        inputs: tuple[torch.Tensor, ...],
        attrs: dict[str, Any],
        first_only: bool = False,
    ) -> Any:
        """One call with no keyword arguments whose reading the layer states: the op ``kind`` reads
        ``inputs`` with ``attrs`` and keeps its first result, as ``prune_torch._aten``'s reader would say.
        ``inputs`` are all the tensors among ``args``. ``first_only``: the layer uses only the first
        result (its other results may be tensors shared by the run's calls)."""


Leaf = Callable[[Any, torch.Tensor, Calls], Any]
"""Runs a layer on one input through :class:`Calls`; ``NotImplemented`` where the input does not fit."""

_ENABLED = contextvars.ContextVar("prune_torch_fast_leaves", default=True)


@contextlib.contextmanager
def stock_leaves() -> Iterator[None]:
    """Inside the block, traces run every layer's own forward (for comparing with the fast path).

    >>> layer = torch.nn.Linear(2, 2)
    >>> with stock_leaves(), fast_leaves([layer], mode=None):
    ...     "forward" in vars(layer)
    False
    """
    token = _ENABLED.set(False)
    try:
        yield
    finally:
        _ENABLED.reset(token)


_MISSING = object()


def _held(module: nn.Module, name: str) -> Any:
    """``module.<name>`` for a tensor torch keeps in the module's tables, found as attribute lookup finds it.

    The instance's dict, then its parameters and buffers: where ``nn.Module.__getattr__`` looks,
    without the failed ordinary lookup (and its exception) that comes first, about a microsecond
    per read. A name a class of the module defines goes the ordinary way.
    """
    if name in _class_names(type(module)):
        return getattr(module, name)
    d = module.__dict__
    value = d.get(name, _MISSING)
    if value is _MISSING:
        value = d["_parameters"].get(name, _MISSING)
        if value is _MISSING:
            value = d["_buffers"].get(name, _MISSING)
    return getattr(module, name) if value is _MISSING else value


@functools.cache
def _class_names(cls: type) -> frozenset[str]:
    return frozenset(name for klass in cls.__mro__ for name in vars(klass))


def _conv(module: Any, x: torch.Tensor, calls: Calls) -> Any:
    spatial = len(module.kernel_size)
    if x.dim() != spatial + 2 or module.padding_mode != "zeros" or isinstance(module.padding, str):
        return NotImplemented
    weight, bias, groups = _held(module, "weight"), _held(module, "bias"), module.groups
    args = (
        x,
        weight,
        bias,
        list(module.stride),
        list(module.padding),
        list(module.dilation),
        False,
        [0] * spatial,
        groups,
    )
    inputs = (x, weight) if bias is None else (x, weight, bias)
    return calls.known(aten.convolution.default, args, _CONV, inputs, {"groups": groups, "transposed": False})


_NORM_RANKS = {nn.BatchNorm1d: (2, 3), nn.BatchNorm2d: (4,), nn.BatchNorm3d: (5,)}


def _tensors(values: tuple[Any, ...]) -> tuple[torch.Tensor, ...]:
    return tuple([v for v in values if isinstance(v, torch.Tensor)])  # a list first: no generator


def _batch_norm(module: Any, x: torch.Tensor, calls: Calls) -> Any:
    # running statistics in eval mode only: batch statistics take another path through torch
    running_mean = _held(module, "running_mean")
    if module.training or running_mean is None or x.dim() not in _NORM_RANKS[type(module)]:
        return NotImplemented
    momentum = 0.0 if module.momentum is None else module.momentum
    params = (_held(module, "weight"), _held(module, "bias"), running_mean, _held(module, "running_var"))
    args = (x, *params, False, momentum, module.eps)
    reading = {"channel_dims": (1,), "mixes": False}
    # the statistics are dropped: the run's shared ones serve (see MetaKernels.spare)
    return calls.known(aten.native_batch_norm.default, args, _NORM, (x, *_tensors(params)), reading, True)[0]


def _layer_norm(module: Any, x: torch.Tensor, calls: Calls) -> Any:
    shape = list(module.normalized_shape)
    params = (_held(module, "weight"), _held(module, "bias"))
    rank = x.dim()
    reading = {"channel_dims": tuple(range(rank - len(shape), rank)), "mixes": True}
    args = (x, shape, *params, module.eps)
    return calls.known(aten.native_layer_norm.default, args, _NORM, (x, *_tensors(params)), reading)[0]


def _linear(module: Any, x: torch.Tensor, calls: Calls) -> Any:
    # torch's own decompositions of F.linear for these two forms; others (matmul) run as before
    bias = _held(module, "bias")
    dispatch = calls.dispatch
    if x.dim() == 2:
        weight_t = dispatch(aten.t.default, (_held(module, "weight"),), {})
        if bias is None:
            return dispatch(aten.mm.default, (x, weight_t), {})
        return dispatch(aten.addmm.default, (bias, x, weight_t), {})
    if x.dim() == 3 and bias is not None and x.is_contiguous():
        rows = dispatch(aten.view.default, (x, [math.prod(x.shape[:-1]), x.shape[-1]]), {})
        weight_t = dispatch(aten.t.default, (_held(module, "weight"),), {})
        out = dispatch(aten.addmm.default, (bias, rows, weight_t), {})
        return dispatch(aten.view.default, (out, [*x.shape[:-1], out.shape[-1]]), {})
    return NotImplemented


def _unary(plain: Any, in_place: Any) -> Leaf:
    """An activation that is one aten call, in place when the layer says so."""

    def leaf(module: Any, x: torch.Tensor, calls: Calls) -> Any:
        func = in_place if getattr(module, "inplace", False) else plain
        return calls.known(func, (x,), _ELEMENTWISE, (x,), {})

    return leaf


def _hardtanh(module: Any, x: torch.Tensor, calls: Calls) -> Any:
    func = aten.hardtanh_.default if module.inplace else aten.hardtanh.default
    return calls.known(func, (x, module.min_val, module.max_val), _ELEMENTWISE, (x,), {})


def _gelu(module: Any, x: torch.Tensor, calls: Calls) -> Any:
    if module.approximate != "none":  # a keyword argument: the mode answers it as the dispatcher would ask
        return calls.dispatch(aten.gelu.default, (x,), {"approximate": module.approximate})
    return calls.known(aten.gelu.default, (x,), _ELEMENTWISE, (x,), {})


def _passthrough(module: Any, x: torch.Tensor, calls: Calls) -> Any:
    # eval-mode dropout returns its input itself, and so does an identity: no aten call at all
    return NotImplemented if module.training else x


LEAVES: types.MappingProxyType[type, Leaf] = types.MappingProxyType(
    {
        nn.Conv1d: _conv,
        nn.Conv2d: _conv,
        nn.Conv3d: _conv,
        nn.BatchNorm1d: _batch_norm,
        nn.BatchNorm2d: _batch_norm,
        nn.BatchNorm3d: _batch_norm,
        nn.LayerNorm: _layer_norm,
        nn.Linear: _linear,
        nn.ReLU: _unary(aten.relu.default, aten.relu_.default),
        nn.SiLU: _unary(aten.silu.default, aten.silu_.default),
        nn.Hardswish: _unary(aten.hardswish.default, aten.hardswish_.default),
        nn.Hardsigmoid: _unary(aten.hardsigmoid.default, aten.hardsigmoid_.default),
        nn.Sigmoid: _unary(aten.sigmoid.default, aten.sigmoid_.default),
        nn.Tanh: _unary(aten.tanh.default, aten.tanh_.default),
        nn.ReLU6: _hardtanh,
        nn.Hardtanh: _hardtanh,
        nn.GELU: _gelu,
        nn.Dropout: _passthrough,
        nn.Identity: _passthrough,
    }
)
"""The classes answered directly, each with how it runs; only exact instances, never subclasses."""

# each class's forward as torch defines it: a class whose forward was replaced (patched by a
# library) runs its own code
_STOCK_FORWARD = {cls: cls.forward for cls in LEAVES}


def stock_leaf(module: nn.Module) -> Leaf | None:
    """How ``module`` runs, when it is an exact instance of a class in :data:`LEAVES` running torch's forward."""
    cls = type(module)
    leaf = LEAVES.get(cls)
    if leaf is None or cls.forward is not _STOCK_FORWARD[cls] or "forward" in module.__dict__:
        return None
    return leaf


def keeps_its_attributes(module: nn.Module) -> bool:
    """Whether running ``module`` cannot change its attributes: a stock layer as torch wrote it, with no hooks.

    Nothing outside torch runs in its call (no hook of its own, no global module hook), so a trace
    need not save and restore its attributes.
    """
    return (
        stock_leaf(module) is not None
        and not (module._forward_pre_hooks or module._forward_hooks)
        and not (_module_globals._global_forward_pre_hooks or _module_globals._global_forward_hooks)
    )


class _Forward:
    """A layer's instance ``forward`` during one run: its aten calls straight to ``mode``, else its own code.

    Inside a module stack (``prune_torch._stack``) it also pushes its module's path, as the stack's
    own wrapper would (:meth:`take_stack`): one call per layer, not two.
    """

    __slots__ = ("answer", "entered", "kernels", "leaf", "mode", "module", "stock")

    def __init__(self, module: nn.Module, leaf: Leaf, mode: Any) -> None:
        self.module = module
        self.leaf = leaf
        self.mode = mode
        self.stock = _STOCK_FORWARD[type(module)]
        self.answer = _own_dispatch(type(mode)) if mode is not None else None
        # the mode's shape rules, when it takes calls it did not answer itself (``layer_call``)
        self.kernels = getattr(mode, "kernels", None) if hasattr(mode, "layer_call") else None
        self.entered: Entered | None = None

    def take_stack(self, entered: Entered | None) -> None:
        """Push and pop the module's path as ``entered`` would, around this forward (``None``: no more)."""
        self.entered = entered

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        entered = self.entered
        if entered is not None:  # what Entered.__call__ does before the forward
            if called_as_module(sys._getframe(1).f_code):
                if entered.pushes:
                    entered.enter(args)
            else:
                entered = None  # called directly: part of its caller
        out = NotImplemented
        if len(args) == 1 and not kwargs:
            with torch._C.DisableTorchFunction():
                x = args[0]
                if self.leaf is _passthrough:  # no call to make: the mode stays where it is
                    out = NotImplemented if self.module.training else x
                elif type(x) is torch.Tensor and x.is_meta and _mode_on_top(self.mode):
                    # the mode off the stack while the layer runs, as the dispatcher takes it off while
                    # the mode answers: the rules' empty tensors are not calls of the model. A leaf
                    # declines (NotImplemented) before it makes any call.
                    mode = torch._C._pop_torch_dispatch_stack(None)
                    try:
                        out = self.leaf(self.module, x, self)
                    finally:
                        torch._C._push_on_torch_dispatch_stack(mode)
        if out is NotImplemented:
            out = self.stock(self.module, *args, **kwargs)
        if entered is not None and len(entered.stack) > 1:  # and after it, as Entered.__call__ does
            entered.stack.pop()
        return out

    def dispatch(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        # called while the layer runs, the mode already off the stack (see __call__)
        return self.answer(self.mode, func, (), args, kwargs)

    def known(
        self,
        func: Any,
        args: tuple[Any, ...],
        kind: OpKind,
        inputs: tuple[torch.Tensor, ...],
        attrs: dict[str, Any],
        first_only: bool = False,
    ) -> Any:
        # the shape rule answers, and the mode takes the call with its reading: no generic dispatch, no reader
        kernels = self.kernels
        out = None if kernels is None else kernels.answer_by_rule(func, args, inputs, first_only=first_only)
        if out is None:
            return self.answer(self.mode, func, (), args, {})
        self.mode.layer_call(func, args, out, kind, inputs, attrs)
        return out


@functools.cache
def _own_dispatch(mode_class: type) -> Any:
    """A mode class's own ``__torch_dispatch__``, without the wrapper torch puts on it to keep dynamo out (nothing compiles here)."""
    return inspect.unwrap(mode_class.__torch_dispatch__)  # type: ignore[attr-defined]


def _mode_on_top(mode: Any) -> bool:
    depth = torch._C._len_torch_dispatch_stack()
    return depth > 0 and torch._C._get_dispatch_stack_at(depth - 1) is mode


@contextlib.contextmanager
def fast_leaves(modules: Iterable[nn.Module], mode: Any) -> Iterator[None]:
    """Inside the block, each stock layer among ``modules`` hands its aten calls to ``mode`` directly.

    Layers with hooks still run them: only ``forward`` changes, as an instance attribute, and it
    is taken away again when the block ends.
    """
    changed = []
    if _ENABLED.get():
        for module in modules:
            leaf = stock_leaf(module)
            if leaf is None:
                continue
            module.__dict__["forward"] = _Forward(module, leaf, mode)
            changed.append(module)
    try:
        yield
    finally:
        for module in changed:
            module.__dict__.pop("forward", None)
