"""The shape rules of the fast meta path: for the slow op families, the outputs of a call on meta tensors.

A rule is called like its aten op and returns exactly what the op would return on the meta device,
or ``None`` to defer to the cache and torch's kernel (:class:`prune_torch._meta.MetaKernels`). Rules
answer only where the answer is simple and certain: contiguous inputs, matching dtypes, valid
arguments. Every rule is checked against torch's kernel by a property test
(``tests/torch/test_meta_rules.py``).
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping
from typing import Any

import torch

from prune_torch._meta_norms import (
    _batch_norm_functional,
    _batch_norm_no_stats,
    _batch_norm_no_training,
    _native_batch_norm,
    _native_group_norm,
    _native_layer_norm,
)
from prune_torch._meta_shapes import (
    _FLOATS,
    _NUMBER,
    _broadcast,
    _contiguous_strides,
    _dim,
    _empty,
    _number,
    _pair,
    _plain,
    _result_dtype,
)

__all__ = ["RULES", "Rule"]

Rule = Callable[..., Any]  # called like the op; returns its outputs, or None to defer


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

    most = len(names)

    def check(*args: Any, **kwargs: Any) -> bool:
        # loops, not all(): a check runs on every activation layer's call
        if len(args) > most:
            return False
        for a in args:
            if type(a) not in _NUMBER:
                return False
        for k, v in kwargs.items():  # noqa: SIM110
            if k not in names or type(v) not in _NUMBER:
                return False
        return True

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
    if not isinstance(values, (list, tuple)) or len(values) != n:
        return False
    for v in values:  # noqa: SIM110 (a loop, not all(): no generator per call, on a hot path)
        if type(v) is not int or v < low:
            return False
    return True


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
    shape, kernel_shape = tuple(input.shape), tuple(weight.shape)  # each read once: a Size is made per access
    n = len(shape) - 2
    dtype = input.dtype
    if (
        n not in (1, 2, 3)
        or len(kernel_shape) != len(shape)
        or dtype not in _FLOATS
        or weight.dtype is not dtype
        or type(transposed) is not bool
        or type(groups) is not int
        or groups < 1
        or not (_ints(stride, n, 1) and _ints(padding, n, 0) and _ints(dilation, n, 1) and _ints(output_padding, n, 0))
        or 0 in shape
        or 0 in kernel_shape
        or input.stride() != _contiguous_strides(shape)
        or weight.stride() != _contiguous_strides(kernel_shape)
    ):
        return None
    kernel = kernel_shape[2:]
    sizes = shape[2:]
    if transposed:
        if shape[1] != kernel_shape[0] or kernel_shape[0] % groups:
            return None
        if any(p >= s and p >= d for p, s, d in zip(output_padding, stride, dilation)):
            return None
        channels = kernel_shape[1] * groups
        out = [
            (i - 1) * s - 2 * p + d * (k - 1) + q + 1
            for i, k, s, p, d, q in zip(sizes, kernel, stride, padding, dilation, output_padding)
        ]
    else:
        if shape[1] != kernel_shape[1] * groups or kernel_shape[0] % groups or any(output_padding):
            return None
        channels = kernel_shape[0]
        out = [
            (i + 2 * p - d * (k - 1) - 1) // s + 1 for i, k, s, p, d in zip(sizes, kernel, stride, padding, dilation)
        ]
    if min(out) < 1:
        return None
    if bias is not None and (bias.dtype is not dtype or tuple(bias.shape) != (channels,)):
        return None
    return _empty((shape[0], channels, *out), dtype)


# --- concatenation ---------------------------------------------------------------------------


def _cat(tensors: Any, dim: Any = 0) -> torch.Tensor | None:
    if not isinstance(tensors, (list, tuple)) or not tensors:
        return None
    first = tensors[0]
    ndim = first.dim()
    axis = _dim(dim, ndim)
    if ndim == 0 or axis is None:
        return None
    dtype = first.dtype
    shape = tuple(first.shape)
    before, after = shape[:axis], shape[axis + 1 :]
    total = 0
    for t in tensors:  # each size read once: a concatenation in a dense block takes dozens of tensors
        size = tuple(t.shape)
        if (
            t.dtype is not dtype
            or len(size) != ndim
            or 0 in size
            or t.stride() != _contiguous_strides(size)
            or size[:axis] != before
            or size[axis + 1 :] != after
        ):
            return None
        total += size[axis]
    return _empty((*before, total, *after), dtype)


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


# --- reductions ------------------------------------------------------------------------------


def _mean_dim(self: torch.Tensor, dim: Any, keepdim: Any = False, *, dtype: Any = None) -> torch.Tensor | None:
    # a global average pool ends in this call (adaptive pooling to one pixel); torch's meta kernel
    # for it is a Python decomposition
    ndim = self.dim()
    if dtype is not None or type(keepdim) is not bool or ndim == 0 or self.dtype not in _FLOATS:
        return None
    if not isinstance(dim, (list, tuple)) or not dim:
        return None
    axes = set()
    for d in dim:
        axis = _dim(d, ndim)
        if axis is None or axis in axes:
            return None
        axes.add(axis)
    shape = tuple(self.shape)
    if 0 in shape or not _plain(self):
        return None
    if keepdim:
        return _empty(tuple([1 if i in axes else size for i, size in enumerate(shape)]), self.dtype)
    return _empty(tuple([size for i, size in enumerate(shape) if i not in axes]), self.dtype)


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
        "mean.dim": _mean_dim,
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
