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

Every rule is checked against torch's kernel by a property test (``tests/torch/test_meta_rules.py``).
"""

from __future__ import annotations

import contextlib
import contextvars
import enum
import functools
import math
import types
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch

__all__ = ["RULES", "MetaKernels", "torch_meta_kernels"]

Rule = Callable[..., Any]  # called like the op; returns its outputs, or None to defer

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


# --- helpers shared by the rules -------------------------------------------------------------

_FLOATS = frozenset({torch.float16, torch.bfloat16, torch.float32, torch.float64})
_HALVES = frozenset({torch.float16, torch.bfloat16})
_NUMBER = (int, float)  # exact types: a bool is not taken for a number


@functools.lru_cache(maxsize=4096)
def _contiguous_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    strides = []
    step = 1
    for size in reversed(shape):
        strides.append(step)
        step *= max(size, 1)
    return tuple(reversed(strides))


def _plain(t: torch.Tensor) -> bool:
    """Contiguous with exactly the strides ``torch.empty`` gives (size-1 dims included)."""
    return t.stride() == _contiguous_strides(tuple(t.shape))


def _empty(shape: Any, dtype: torch.dtype) -> torch.Tensor:
    return torch.empty(shape, dtype=dtype, device="meta")


def _number(x: Any) -> bool:
    return type(x) in _NUMBER


def _float_tensor(x: Any) -> bool:
    return isinstance(x, torch.Tensor) and x.dtype in _FLOATS


def _broadcast(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...] | None:
    out = []
    for i in range(1, max(len(a), len(b)) + 1):
        x = a[-i] if i <= len(a) else 1
        y = b[-i] if i <= len(b) else 1
        if x == y or y == 1:
            out.append(x)
        elif x == 1:
            out.append(y)
        else:
            return None
    return tuple(reversed(out))


def _result_dtype(a: torch.Tensor, b: Any) -> torch.dtype | None:
    """The promoted dtype of a floating tensor with a number or another floating tensor; None otherwise."""
    if a.dtype not in _FLOATS:
        return None
    if _number(b):
        return a.dtype
    if not _float_tensor(b):
        return None
    if a.dtype is b.dtype:
        return a.dtype
    # a zero-dim tensor of the same category does not promote a dimensioned one
    if a.dim() == 0 and b.dim() != 0:
        return b.dtype
    if b.dim() == 0 and a.dim() != 0:
        return a.dtype
    return torch.promote_types(a.dtype, b.dtype)


def _dim(dim: Any, ndim: int) -> int | None:
    """``dim`` wrapped into ``range(ndim)``, or None when out of range (a 0-dim tensor takes 0 and -1)."""
    bound = max(ndim, 1)
    if type(dim) is not int or not -bound <= dim < bound:
        return None
    return dim % bound


def _pair(values: Any, default: tuple[int, int] | None = None) -> tuple[int, int] | None:
    """An ``int[2]`` argument as two ints (one int stands for both; empty gives ``default``)."""
    if isinstance(values, int) and type(values) is int:
        return (values, values)
    if not isinstance(values, (list, tuple)) or not all(type(v) is int for v in values):
        return None
    if len(values) == 0:
        return default
    if len(values) == 1:
        return (values[0], values[0])
    if len(values) == 2:
        return (values[0], values[1])
    return None


# --- unary ops: activations and other elementwise functions of one tensor --------------------


def _unary(check: Callable[..., bool] = lambda *_, **__: True) -> tuple[Rule, Rule]:
    """Rules for an elementwise op on a floating tensor and its in-place form; ``check`` vets the other arguments."""

    def rule(self: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor | None:
        if self.dtype in _FLOATS and check(*args, **kwargs) and _plain(self):
            return _empty(self.shape, self.dtype)
        return None

    def rule_(self: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor | None:
        if self.dtype in _FLOATS and check(*args, **kwargs):
            return self
        return None

    return rule, rule_


def _numbers(*names: str) -> Callable[..., bool]:
    """A check that the op's optional number arguments (given positionally or by name) are ints or floats."""

    def check(*args: Any, **kwargs: Any) -> bool:
        if len(args) > len(names) or any(k not in names for k in kwargs):
            return False
        return all(_number(a) for a in args) and all(_number(v) for v in kwargs.values())

    return check


def _gelu_check(*args: Any, approximate: str = "none") -> bool:
    return not args and approximate in ("none", "tanh")


def _clamp_check(min: Any = None, max: Any = None) -> bool:
    if min is None and max is None:
        return False
    return (min is None or _number(min)) and (max is None or _number(max))


def _pow_check(exponent: Any) -> bool:
    return _number(exponent)


_UNARY: dict[str, Callable[..., bool]] = {
    "relu": _numbers(),
    "sigmoid": _numbers(),
    "tanh": _numbers(),
    "silu": _numbers(),
    "mish": _numbers(),
    "hardswish": _numbers(),
    "hardsigmoid": _numbers(),
    "neg": _numbers(),
    "exp": _numbers(),
    "rsqrt": _numbers(),
    "sqrt": _numbers(),
    "gelu": _gelu_check,
    "leaky_relu": _numbers("negative_slope"),
    "hardtanh": _numbers("min_val", "max_val"),
    "elu": _numbers("alpha", "scale", "input_scale"),
    "clamp": _clamp_check,
}
# op name -> overload carrying the extra arguments (the rest are ".default")
_UNARY_OVERLOADS = {"pow": "Tensor_Scalar"}


# --- binary arithmetic -----------------------------------------------------------------------


def _arith(self: torch.Tensor, other: Any, alpha: Any = 1) -> torch.Tensor | None:
    dtype = _result_dtype(self, other)
    if dtype is None or not _number(alpha) or not _plain(self):
        return None
    if _number(other):
        return _empty(self.shape, dtype)
    shape = _broadcast(tuple(self.shape), tuple(other.shape))
    if shape is None or not _plain(other):
        return None
    return _empty(shape, dtype)


def _arith_(self: torch.Tensor, other: Any, alpha: Any = 1) -> torch.Tensor | None:
    if _result_dtype(self, other) is None or not _number(alpha):
        return None
    if _number(other) or _broadcast(tuple(self.shape), tuple(other.shape)) == tuple(self.shape):
        return self
    return None


def _add(self: torch.Tensor, other: Any, *, alpha: Any = 1) -> torch.Tensor | None:
    return _arith(self, other, alpha)


def _add_(self: torch.Tensor, other: Any, *, alpha: Any = 1) -> torch.Tensor | None:
    return _arith_(self, other, alpha)


def _add_scalar(self: torch.Tensor, other: Any, alpha: Any = 1) -> torch.Tensor | None:
    return _arith(self, other, alpha) if _number(other) else None


def _add_scalar_(self: torch.Tensor, other: Any, alpha: Any = 1) -> torch.Tensor | None:
    return _arith_(self, other, alpha) if _number(other) else None


def _mul(self: torch.Tensor, other: Any) -> torch.Tensor | None:
    return _arith(self, other)


def _mul_(self: torch.Tensor, other: Any) -> torch.Tensor | None:
    return _arith_(self, other)


def _mul_scalar(self: torch.Tensor, other: Any) -> torch.Tensor | None:
    return _arith(self, other) if _number(other) else None


def _mul_scalar_(self: torch.Tensor, other: Any) -> torch.Tensor | None:
    return _arith_(self, other) if _number(other) else None


# --- softmax ---------------------------------------------------------------------------------


def _softmax(self: torch.Tensor, dim: Any, half_to_float: Any) -> torch.Tensor | None:
    if self.dtype in _FLOATS and half_to_float is False and _dim(dim, self.dim()) is not None and _plain(self):
        return _empty(self.shape, self.dtype)
    return None


def _safe_softmax(self: torch.Tensor, dim: Any, dtype: torch.dtype | None = None) -> torch.Tensor | None:
    if dtype is not None and dtype not in _FLOATS:
        return None
    if self.dtype in _FLOATS and _dim(dim, self.dim()) is not None and _plain(self):
        return _empty(self.shape, dtype or self.dtype)
    return None


# --- matrix products -------------------------------------------------------------------------


def _mm(self: torch.Tensor, mat2: torch.Tensor) -> torch.Tensor | None:
    if (
        self.dtype in _FLOATS
        and mat2.dtype is self.dtype
        and self.dim() == 2
        and mat2.dim() == 2
        and self.shape[1] == mat2.shape[0]
    ):
        return _empty((self.shape[0], mat2.shape[1]), self.dtype)
    return None


def _addmm(
    self: torch.Tensor, mat1: torch.Tensor, mat2: torch.Tensor, *, beta: Any = 1, alpha: Any = 1
) -> torch.Tensor | None:
    out = _mm(mat1, mat2)
    if (
        out is None
        or self.dtype is not mat1.dtype
        or not (_number(beta) and _number(alpha))
        or self.dim() > 2
        or _broadcast(tuple(self.shape), tuple(out.shape)) != tuple(out.shape)
    ):
        return None
    return out


def _bmm(self: torch.Tensor, mat2: torch.Tensor) -> torch.Tensor | None:
    if (
        self.dtype in _FLOATS
        and mat2.dtype is self.dtype
        and self.dim() == 3
        and mat2.dim() == 3
        and self.shape[0] == mat2.shape[0]
        and self.shape[2] == mat2.shape[1]
    ):
        return _empty((self.shape[0], self.shape[1], mat2.shape[2]), self.dtype)
    return None


# --- convolution -----------------------------------------------------------------------------


def _ints(values: Any, n: int, low: int) -> bool:
    return isinstance(values, (list, tuple)) and len(values) == n and all(type(v) is int and v >= low for v in values)


def _convolution(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: Any,
    padding: Any,
    dilation: Any,
    transposed: Any,
    output_padding: Any,
    groups: Any,
) -> torch.Tensor | None:
    n = input.dim() - 2
    dtype = input.dtype
    if (
        n not in (1, 2, 3)
        or weight.dim() != input.dim()
        or dtype not in _FLOATS
        or weight.dtype is not dtype
        or type(transposed) is not bool
        or type(groups) is not int
        or groups < 1
        or not (_ints(stride, n, 1) and _ints(padding, n, 0) and _ints(dilation, n, 1) and _ints(output_padding, n, 0))
        or 0 in input.shape
        or 0 in weight.shape
        or not (_plain(input) and _plain(weight))
    ):
        return None
    kernel = weight.shape[2:]
    sizes = input.shape[2:]
    if transposed:
        if input.shape[1] != weight.shape[0] or weight.shape[0] % groups:
            return None
        if any(p >= s and p >= d for p, s, d in zip(output_padding, stride, dilation)):
            return None
        channels = weight.shape[1] * groups
        out = [
            (i - 1) * s - 2 * p + d * (k - 1) + q + 1
            for i, k, s, p, d, q in zip(sizes, kernel, stride, padding, dilation, output_padding)
        ]
    else:
        if input.shape[1] != weight.shape[1] * groups or weight.shape[0] % groups or any(output_padding):
            return None
        channels = weight.shape[0]
        out = [
            (i + 2 * p - d * (k - 1) - 1) // s + 1 for i, k, s, p, d in zip(sizes, kernel, stride, padding, dilation)
        ]
    if min(out) < 1:
        return None
    if bias is not None and (bias.dtype is not dtype or tuple(bias.shape) != (channels,)):
        return None
    return _empty((input.shape[0], channels, *out), dtype)


# --- concatenation ---------------------------------------------------------------------------


def _cat(tensors: Any, dim: Any = 0) -> torch.Tensor | None:
    if not isinstance(tensors, (list, tuple)) or not tensors:
        return None
    first = tensors[0]
    ndim = first.dim()
    axis = _dim(dim, ndim)
    if ndim == 0 or axis is None:
        return None
    shape = list(first.shape)
    total = 0
    for t in tensors:
        if t.dtype is not first.dtype or t.dim() != ndim or t.numel() == 0 or not _plain(t):
            return None
        size = list(t.shape)
        total += size[axis]
        size[axis] = shape[axis]
        if size != shape:
            return None
    shape[axis] = total
    return _empty(shape, first.dtype)


# --- pooling ---------------------------------------------------------------------------------


def _pooled(size: int, kernel: int, stride: int, pad: int, dilation: int, ceil: bool) -> int | None:
    """The output length of a pooling window, or None where torch refuses the arguments."""
    if kernel < 1 or stride < 1 or dilation < 1 or pad < 0 or pad > kernel // 2:
        return None
    out = (size + 2 * pad - dilation * (kernel - 1) - 1 + (stride - 1 if ceil else 0)) // stride + 1
    if ceil and (out - 1) * stride >= size + pad:
        out -= 1
    return out if out >= 1 else None


def _pool_shape(
    self: torch.Tensor, kernel_size: Any, stride: Any, padding: Any, dilation: Any, ceil_mode: Any
) -> tuple[int, ...] | None:
    kernel = _pair(kernel_size)
    steps = _pair(stride, kernel)
    pads = _pair(padding)
    dilations = _pair(dilation)
    if (
        kernel is None
        or steps is None
        or pads is None
        or dilations is None
        or type(ceil_mode) is not bool
        or self.dim() != 4
        or 0 in self.shape
        or self.dtype not in _FLOATS
        or not _plain(self)
    ):
        return None
    height = _pooled(self.shape[2], kernel[0], steps[0], pads[0], dilations[0], ceil_mode)
    width = _pooled(self.shape[3], kernel[1], steps[1], pads[1], dilations[1], ceil_mode)
    if height is None or width is None:
        return None
    return (self.shape[0], self.shape[1], height, width)


def _max_pool2d_with_indices(
    self: torch.Tensor,
    kernel_size: Any,
    stride: Any = (),
    padding: Any = 0,
    dilation: Any = 1,
    ceil_mode: Any = False,
) -> tuple[torch.Tensor, torch.Tensor] | None:
    shape = _pool_shape(self, kernel_size, stride, padding, dilation, ceil_mode)
    if shape is None:
        return None
    return _empty(shape, self.dtype), _empty(shape, torch.int64)


def _avg_pool2d(
    self: torch.Tensor,
    kernel_size: Any,
    stride: Any = (),
    padding: Any = 0,
    ceil_mode: Any = False,
    count_include_pad: Any = True,
    divisor_override: Any = None,
) -> torch.Tensor | None:
    if type(count_include_pad) is not bool or not (divisor_override is None or type(divisor_override) is int):
        return None
    if divisor_override == 0:
        return None
    shape = _pool_shape(self, kernel_size, stride, padding, 1, ceil_mode)
    return None if shape is None else _empty(shape, self.dtype)


def _adaptive_avg_pool2d(self: torch.Tensor, output_size: Any) -> torch.Tensor | None:
    size = _pair(output_size)
    if size is None or min(size) < 1 or self.dim() != 4 or 0 in self.shape or self.dtype not in _FLOATS:
        return None
    return _empty((self.shape[0], self.shape[1], *size), self.dtype) if _plain(self) else None


# --- normalisation ---------------------------------------------------------------------------


def _stat_dtype(dtype: torch.dtype) -> torch.dtype:
    """Batch and layer norm keep their statistics in float32 for half-precision inputs."""
    return torch.float32 if dtype in _HALVES else dtype


def _params_fit(input: torch.Tensor, shape: tuple[int, ...], *params: torch.Tensor | None) -> bool:
    """Each parameter absent, or of ``shape`` and of the input's dtype (or float32 beside a half input)."""
    for p in params:
        if p is None:
            continue
        if tuple(p.shape) != shape:
            return False
        if p.dtype is not input.dtype and not (input.dtype in _HALVES and p.dtype is torch.float32):
            return False
    return True


def _batch_norm_input(input: Any, *params: torch.Tensor | None) -> int | None:
    """The channel count, when the input and parameters are ones the rules answer for."""
    if (
        not _float_tensor(input)
        or input.dim() < 2
        or input.numel() == 0
        or not _plain(input)
        or not _params_fit(input, (input.shape[1],), *params)
    ):
        return None
    return int(input.shape[1])


def _batch_norm_outputs(input: torch.Tensor, channels: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    stat = _stat_dtype(input.dtype)
    return _empty(input.shape, input.dtype), _empty((channels,), stat), _empty((channels,), stat)


def _native_batch_norm(
    input: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    running_mean: torch.Tensor | None,
    running_var: torch.Tensor | None,
    training: Any,
    momentum: Any,
    eps: Any,
) -> tuple[torch.Tensor, ...] | None:
    channels = _batch_norm_input(input, weight, bias, running_mean, running_var)
    if channels is None or type(training) is not bool or not (_number(momentum) and _number(eps)):
        return None
    if not training and (running_mean is None or running_var is None):
        return None
    if training and input.numel() == channels:  # one value per channel: torch's variance divides by zero
        return None
    return _batch_norm_outputs(input, channels)


def _batch_norm_no_training(
    input: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    running_mean: torch.Tensor,
    running_var: torch.Tensor,
    momentum: Any,
    eps: Any,
) -> tuple[torch.Tensor, ...] | None:
    return _native_batch_norm(input, weight, bias, running_mean, running_var, False, momentum, eps)


def _batch_norm_no_stats(
    input: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    training: Any,
    momentum: Any,
    eps: Any,
) -> tuple[torch.Tensor, ...] | None:
    if training is not True:
        return None
    return _native_batch_norm(input, weight, bias, None, None, True, momentum, eps)


def _batch_norm_functional(
    input: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    running_mean: torch.Tensor,
    running_var: torch.Tensor,
    training: Any,
    momentum: Any,
    eps: Any,
) -> tuple[torch.Tensor, ...] | None:
    found = _native_batch_norm(input, weight, bias, running_mean, running_var, training, momentum, eps)
    if found is None or running_mean.dtype is not found[1].dtype or running_var.dtype is not found[1].dtype:
        return None
    channels = (int(input.shape[1]),)
    return (*found, _empty(channels, running_mean.dtype), _empty(channels, running_var.dtype))


def _native_layer_norm(
    input: torch.Tensor,
    normalized_shape: Any,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    eps: Any,
) -> tuple[torch.Tensor, ...] | None:
    if not isinstance(normalized_shape, (list, tuple)) or not all(type(s) is int for s in normalized_shape):
        return None
    k = len(normalized_shape)
    if (
        not _float_tensor(input)
        or k == 0
        or input.dim() < k
        or input.numel() == 0
        or tuple(input.shape[input.dim() - k :]) != tuple(normalized_shape)
        or not _number(eps)
        # torch's kernel copies a non-contiguous input to a contiguous one first, but keeps a
        # contiguous one as it is, with whatever strides its size-1 dims have
        or not (_plain(input) or not input.is_contiguous())
        or not _params_fit(input, tuple(normalized_shape), weight, bias)
    ):
        return None
    stats = (*input.shape[: input.dim() - k], *([1] * k))
    stat = _stat_dtype(input.dtype)
    return _empty(input.shape, input.dtype), _empty(stats, stat), _empty(stats, stat)


def _native_group_norm(
    input: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    N: Any,
    C: Any,
    HxW: Any,
    group: Any,
    eps: Any,
) -> tuple[torch.Tensor, ...] | None:
    if (
        not _float_tensor(input)
        or input.dim() < 2
        or input.numel() == 0
        or not all(type(x) is int for x in (N, C, HxW, group))
        or not _number(eps)
        or group < 1
        or (input.shape[0], input.shape[1], math.prod(input.shape[2:])) != (N, C, HxW)
        or C % group
        or not _plain(input)
        or not _params_fit(input, (C,), weight, bias)
    ):
        return None
    return _empty(input.shape, input.dtype), _empty((N, group), input.dtype), _empty((N, group), input.dtype)


# --- the table -------------------------------------------------------------------------------


def _overload(name: str) -> Any:
    """``torch.ops.aten.<packet>.<overload>``, or None where this torch lacks it."""
    packet, _, overload = name.partition(".")
    found = getattr(torch.ops.aten, packet, None)
    return None if found is None else getattr(found, overload or "default", None)


def _table() -> Mapping[Any, Rule]:
    named: dict[str, Rule] = {}
    for name, check in _UNARY.items():
        named[f"{name}.default"], named[f"{name}_.default"] = _unary(check)
    for name, overload in _UNARY_OVERLOADS.items():
        named[f"{name}.{overload}"], named[f"{name}_.Scalar"] = _unary(_pow_check)
    for name in ("add", "sub"):
        named[f"{name}.Tensor"], named[f"{name}_.Tensor"] = _add, _add_
        named[f"{name}.Scalar"], named[f"{name}_.Scalar"] = _add_scalar, _add_scalar_
    named["rsub.Scalar"] = _add_scalar
    for name in ("mul", "div"):
        named[f"{name}.Tensor"], named[f"{name}_.Tensor"] = _mul, _mul_
        named[f"{name}.Scalar"], named[f"{name}_.Scalar"] = _mul_scalar, _mul_scalar_
    named |= {
        "_softmax.default": _softmax,
        "_log_softmax.default": _softmax,
        "_safe_softmax.default": _safe_softmax,
        "mm.default": _mm,
        "addmm.default": _addmm,
        "bmm.default": _bmm,
        "convolution.default": _convolution,
        "cat.default": _cat,
        "max_pool2d_with_indices.default": _max_pool2d_with_indices,
        "avg_pool2d.default": _avg_pool2d,
        "_adaptive_avg_pool2d.default": _adaptive_avg_pool2d,
        "native_batch_norm.default": _native_batch_norm,
        "_native_batch_norm_legit.default": _native_batch_norm,
        "_native_batch_norm_legit.no_stats": _batch_norm_no_stats,
        "_native_batch_norm_legit_no_training.default": _batch_norm_no_training,
        "_native_batch_norm_legit_functional.default": _batch_norm_functional,
        "native_layer_norm.default": _native_layer_norm,
        "native_group_norm.default": _native_group_norm,
    }
    table = {}
    for name, rule in named.items():
        op = _overload(name)
        if op is not None:
            table[op] = rule
    return types.MappingProxyType(table)


RULES: Mapping[Any, Rule] = _table()
"""The shape rules, keyed by aten op overload. A rule is called like its op and returns its outputs or None."""


# --- the cache -------------------------------------------------------------------------------


class _Kind(enum.Enum):
    FRESH = "fresh"  # every output a new tensor
    INPLACE = "inplace"  # returns its first argument, written in place
    NEVER = "never"  # views, aliases, non-tensor returns, out= forms, data-dependent shapes


_NEVER_TAGS = frozenset(
    getattr(torch.Tag, name)
    for name in ("inplace_view", "out", "dynamic_output_shape", "data_dependent_output", "maybe_aliasing_or_mutating")
    if hasattr(torch.Tag, name)
)


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
        if isinstance(v, torch.Tensor):
            if type(v) not in _PLAIN_TENSORS or not v.is_meta or v.layout is not torch.strided:
                return False
        elif (type(v) is list or type(v) is tuple) and not _on_meta(v):
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
        self.kinds: dict[Any, _Kind] = {}
        # how each call was answered, for profiling
        self.by_rule = self.hits = self.misses = self.by_torch = 0

    def run(self, func: Any, args: Any, kwargs: Mapping[str, Any]) -> Any:
        """What ``func(*args, **kwargs)`` returns."""
        if not self.enabled:
            return func(*args, **kwargs)
        rule = self.rules.get(func)
        kind = self.kinds.get(func)
        if kind is None:
            kind = self.kinds[func] = _kind(func)
        # views and the like go straight to torch, before the cost of looking at their arguments
        if (rule is None and kind is _Kind.NEVER) or not (_on_meta(args) and _on_meta(kwargs.values())):
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
        if kind is _Kind.NEVER:
            self.by_torch += 1
            return func(*args, **kwargs)
        return self._cached(func, kind, args, kwargs)

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
            if kind is _Kind.INPLACE:
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
