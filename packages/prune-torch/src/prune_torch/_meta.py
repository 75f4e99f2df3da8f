"""Fast answers to aten calls on the meta device: shape rules, then a cache of torch's own meta outputs.

Many of torch's meta kernels are Python decompositions: a batch norm, a layer norm or a
``hardtanh_`` takes milliseconds to make what is an empty tensor of a known shape, while an empty
meta tensor takes microseconds. A trace runs every call of the model through
:class:`MetaKernels`, which answers a call whose tensors are all on meta with exactly what the
call would return:

1. a shape rule, for the slow op families where the answer is simple and certain (contiguous
   inputs, matching dtypes); a rule returns ``None`` to defer anything else;
2. a cache of torch's meta outputs keyed by the call's signature (the op overload, each tensor's
   shape, stride, offset and dtype, the other arguments), for ops whose outputs are new tensors
   and for in-place ops, which return their first argument unchanged;
3. otherwise torch's kernel: views and other aliasing ops (their outputs must share storage, and
   their kernels are fast C++), ops returning non-tensors, ``out=`` overloads, calls with a tensor
   off meta.

The rules live in :mod:`prune_torch._meta_rules`; every one is checked against torch's kernel by a
property test (``tests/torch/test_meta_rules.py``).
"""

from __future__ import annotations

import contextlib
import contextvars
import enum
import functools
from collections.abc import Iterator, Mapping
from typing import Any

import torch

from prune_torch._meta_rules import RULES, Rule
from prune_torch._meta_shapes import _empty

__all__ = ["RULES", "MetaKernels", "torch_meta_kernels"]

_ENABLED = contextvars.ContextVar("prune_torch_fast_meta", default=True)


@contextlib.contextmanager
def torch_meta_kernels() -> Iterator[None]:
    """Inside the block, :class:`MetaKernels` made there run torch's own kernel for every call.

    For comparing the fast path with torch's kernels (the graphs must be identical).

    >>> with torch_meta_kernels():
    ...     MetaKernels().enabled
    False
    """
    token = _ENABLED.set(False)
    try:
        yield
    finally:
        _ENABLED.reset(token)


# --- the cache -------------------------------------------------------------------------------


class _Kind(enum.Enum):
    FRESH = "fresh"  # every output a new tensor
    INPLACE = "inplace"  # returns its first argument, written in place
    NEVER = "never"  # views, aliases, non-tensor returns, out= forms, data-dependent shapes


# ops whose rule takes ``spare`` for the results a caller may drop (see MetaKernels.answer_by_rule)
_SPARING = frozenset({torch.ops.aten.native_batch_norm.default})

# looked up once: an enum member is a slow class attribute (~0.15 us a lookup), and run() is per call
_NEVER, _INPLACE = _Kind.NEVER, _Kind.INPLACE

_NEVER_TAGS = frozenset(
    getattr(torch.Tag, name)
    for name in ("inplace_view", "out", "dynamic_output_shape", "data_dependent_output", "maybe_aliasing_or_mutating")
    if hasattr(torch.Tag, name)
)


@functools.cache
def _kind(func: Any) -> _Kind:
    schema = func._schema
    returns = schema.returns
    if not returns or not all(type(r.type) is torch.TensorType for r in returns) or _NEVER_TAGS.intersection(func.tags):
        return _Kind.NEVER
    argument_aliases = [a.alias_info for a in schema.arguments]
    return_aliases = [r.alias_info for r in returns]
    if all(a is None for a in argument_aliases) and all(r is None for r in return_aliases):
        return _Kind.FRESH
    first = argument_aliases[0] if argument_aliases else None
    if (
        len(returns) == 1
        and return_aliases[0] is not None
        and return_aliases[0].is_write
        and first is not None
        and first.is_write
        and all(a is None for a in argument_aliases[1:])
    ):
        return _Kind.INPLACE
    return _Kind.NEVER


class _Uncacheable(Exception):
    """An argument the cache cannot key on."""


_KEYED_TYPES = frozenset(
    {int, float, bool, str, type(None), torch.dtype, torch.device, torch.layout, torch.memory_format}
)
_PLAIN_TENSORS = frozenset({torch.Tensor, torch.nn.Parameter})
_STRIDED = torch.strided


def _tensor_key(t: torch.Tensor) -> tuple[Any, ...]:
    return (t.shape, t.stride(), t.storage_offset(), t.dtype)


def _key(values: Any) -> tuple[Any, ...]:
    parts: list[Any] = []
    for v in values:
        kind = type(v)
        if kind in _PLAIN_TENSORS:
            parts.append(_tensor_key(v))
        elif kind in _KEYED_TYPES:
            # the type keeps 1, 1.0 and True apart: they promote differently
            parts.append((kind, v))
        elif kind is list or kind is tuple:
            parts.append((kind, _key(v)))
        else:
            raise _Uncacheable
    return tuple(parts)


def _on_meta(values: Any) -> bool:
    """Every tensor in ``values`` (and in lists among them) a plain strided tensor on meta."""
    for v in values:
        kind = type(v)
        if kind in _PLAIN_TENSORS:
            if not v.is_meta or v.layout is not _STRIDED:
                return False
        elif kind is list or kind is tuple:
            for item in v:  # mostly sizes: looked at here, without a call per list
                inner = type(item)
                if inner is int or item is None:
                    continue
                if inner in _PLAIN_TENSORS:
                    if not item.is_meta or item.layout is not _STRIDED:
                        return False
                elif isinstance(item, torch.Tensor) or ((inner is list or inner is tuple) and not _on_meta(item)):
                    return False
        elif isinstance(v, torch.Tensor):  # a subclass
            return False
    return True


def _tensors(values: Any) -> Iterator[torch.Tensor]:
    for v in values:
        if isinstance(v, torch.Tensor):
            yield v
        elif type(v) is list or type(v) is tuple:
            yield from _tensors(v)


_SAME = "same"  # cache entry of an in-place op: return the first argument


def _fresh_entry(out: Any, args: Any, kwargs: Mapping[str, Any]) -> tuple[bool, tuple[Any, ...]] | None:
    """(several outputs?, (shape, stride, dtype) of each), when the outputs are new, unshared meta tensors."""
    several = type(out) is tuple
    outs = out if several else (out,)
    storages = {t.untyped_storage()._cdata for t in _tensors((*args, *kwargs.values()))}
    records = []
    for t in outs:
        if (
            type(t) is not torch.Tensor
            or not t.is_meta
            or t.layout is not torch.strided
            or t._is_view()
            or t.storage_offset() != 0
            or t.is_conj()
            or t.is_neg()
        ):
            return None
        storage = t.untyped_storage()._cdata
        if storage in storages:
            return None  # shares memory with an input or another output (e.g. _unsafe_view)
        storages.add(storage)
        records.append((tuple(t.shape), t.stride(), t.dtype))
    return several, tuple(records)


class MetaKernels:
    """Answers aten calls on meta tensors: shape rules, then a cache of torch's outputs, then torch's kernel.

    One per trace. ``run(func, args, kwargs)`` returns what ``func(*args, **kwargs)`` returns: the
    same shapes, strides and dtypes, and for an in-place op the very tensor it was given. Calls with
    a tensor off the meta device, or with tensor subclasses, go straight to torch.

    >>> kernels = MetaKernels()
    >>> x = torch.empty(2, 3, device="meta")
    >>> kernels.run(torch.ops.aten.relu_.default, (x,), {}) is x
    True
    >>> kernels.run(torch.ops.aten.mm.default, (x, x.t()), {}).shape
    torch.Size([2, 2])
    """

    def __init__(self, rules: Mapping[Any, Rule] = RULES, *, enabled: bool | None = None) -> None:
        self.enabled = _ENABLED.get() if enabled is None else enabled
        self.rules = rules
        self.cache: dict[tuple[Any, ...], Any] = {}
        self._spares: dict[tuple[Any, ...], torch.Tensor] = {}
        # how each call was answered, for profiling
        self.by_rule = self.hits = self.misses = self.by_torch = 0

    def run(self, func: Any, args: Any, kwargs: Mapping[str, Any]) -> Any:
        """What ``func(*args, **kwargs)`` returns."""
        if not self.enabled:
            return func(*args, **kwargs)
        rule = self.rules.get(func)
        kind = _kind(func)
        # views and the like go straight to torch, before the cost of looking at their arguments
        if (rule is None and kind is _NEVER) or not (_on_meta(args) and _on_meta(kwargs.values())):
            self.by_torch += 1
            return func(*args, **kwargs)
        if rule is not None:
            try:
                out = rule(*args, **kwargs)
            except TypeError:  # arguments of a form the rule does not take (a newer schema)
                out = None
            if out is not None:
                self.by_rule += 1
                return out
        if kind is _NEVER:
            self.by_torch += 1
            return func(*args, **kwargs)
        return self._cached(func, kind, args, kwargs)

    def answer_by_rule(
        self, func: Any, args: tuple[Any, ...], tensors: tuple[torch.Tensor, ...], *, first_only: bool = False
    ) -> Any:
        """The rule's answer to ``func(*args)`` (no keyword arguments), or ``None`` where :meth:`run` must answer.

        For callers that make their calls themselves (``prune_torch._leaves``), so know the op has a
        rule and which of ``args`` are tensors: ``tensors`` must be all of them. What :meth:`run`
        would return whenever it is not ``None``. ``first_only``: the caller looks at the first
        result alone (a batch norm layer keeps its output, not its statistics), so an op whose rule
        takes ``spare`` gets the run's shared tensors for the others (see :meth:`spare`).
        """
        rule = self.rules.get(func)
        if rule is None or not self.enabled or not _on_meta(tensors):
            return None
        try:
            out = rule(*args, spare=self.spare) if first_only and func in _SPARING else rule(*args)
        except TypeError:
            return None
        if out is not None:
            self.by_rule += 1
        return out

    def spare(self, shape: tuple[int, ...], dtype: torch.dtype, slot: int) -> torch.Tensor:
        """An empty meta tensor for the ``slot``-th result of a call nobody looks at, one per shape,
        dtype and slot for the whole run: nothing reads it, so there is no need to make a new one per call
        (a batch norm layer's two statistics, two tensors in three of its call)."""
        key = (shape, dtype, slot)
        found = self._spares.get(key)
        if found is None:
            found = self._spares[key] = _empty(shape, dtype)
        return found

    def _cached(self, func: Any, kind: _Kind, args: Any, kwargs: Mapping[str, Any]) -> Any:
        try:
            key = (func, torch.get_default_dtype(), _key(args), _key(kwargs.items()) if kwargs else ())
        except _Uncacheable:
            self.by_torch += 1
            return func(*args, **kwargs)
        entry = self.cache.get(key, self)
        if entry is self:  # not seen yet
            self.misses += 1
            out = func(*args, **kwargs)
            if kind is _INPLACE:
                same = bool(args) and out is args[0] and _tensor_key(out) == key[2][0]
                self.cache[key] = _SAME if same else None
            else:
                self.cache[key] = _fresh_entry(out, args, kwargs)
            return out
        if entry is None:
            self.by_torch += 1
            return func(*args, **kwargs)
        self.hits += 1
        if entry is _SAME:
            return args[0]
        several, records = entry
        outs = tuple(torch.empty_strided(shape, stride, dtype=dtype, device="meta") for shape, stride, dtype in records)
        return outs if several else outs[0]
