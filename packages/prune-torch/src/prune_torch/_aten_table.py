"""The table from aten overload packets to the readers that map each call onto an op kind.

Any aten op missing here is recorded as opaque: its dims are unprunable. Readers live in ``_aten``.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from typing import Any

import torch

from prune_torch._aten import (
    Reader,
    _addmm,
    _along,
    _attention,
    _batch_norm,
    _batch_norm_no_training,
    _cat,
    _constant,
    _conv,
    _elementwise,
    _embedding,
    _expand,
    _first_only,
    _group_norm,
    _layer_norm,
    _like,
    _matmul,
    _mixing,
    _pad,
    _permute,
    _pixel_shuffle,
    _positional,
    _reduce,
    _reduce_all_or_dim,
    _repeat,
    _reshape,
    _select,
    _slice,
    _spatial,
    _split,
    _stack,
    _t,
    _transpose,
    _unbind,
    _var_like,
    _vector_norm,
)

__all__ = ["READERS"]

aten = torch.ops.aten


def _packets(*names: str) -> list[Any]:
    found = []
    for name in names:
        packet = getattr(aten, name, None)
        if packet is not None:
            found.append(packet)
    return found


def _table() -> Mapping[Any, Reader]:
    table: dict[Any, Reader] = {}
    unary = [
        "relu",
        "gelu",
        "silu",
        "sigmoid",
        "tanh",
        "hardtanh",
        "hardswish",
        "hardsigmoid",
        "leaky_relu",
        "elu",
        "selu",
        "celu",
        "mish",
        "softplus",
        "neg",
        "exp",
        "log",
        "log1p",
        "sqrt",
        "rsqrt",
        "abs",
        "sign",
        "erf",
        "sin",
        "cos",
        "reciprocal",
        "square",
        "clamp",
        "clamp_min",
        "clamp_max",
        "threshold",
        "logit",
        "sgn",
        "trunc",
        "floor",
        "ceil",
        "round",
        "frac",
        "exp2",
        "expm1",
        "log2",
        "nan_to_num",
        "clone",
        "_to_copy",
        "detach",
        "alias",
        "lift_fresh",
        "contiguous",
        "fill",
        "bernoulli",
        "_prelu_kernel",
    ]
    binary = [
        "add",
        "sub",
        "rsub",
        "mul",
        "div",
        "pow",
        "maximum",
        "minimum",
        "fmod",
        "remainder",
        "where",
        "masked_fill",
        "lt",
        "gt",
        "le",
        "ge",
        "eq",
        "ne",
        "logical_and",
        "logical_or",
        "logical_not",
        "logical_xor",
        "bitwise_and",
        "bitwise_or",
        "bitwise_not",
        "bitwise_xor",
        "isnan",
        "isinf",
        "atan2",
        "copy",
        "lerp",
        "addcmul",
        "addcdiv",
        "hardtanh_backward",
    ]
    for name in unary + binary:
        for packet in _packets(name, name + "_"):
            table[packet] = _elementwise
    for packet in _packets("native_dropout", "dropout", "feature_dropout", "alpha_dropout"):
        table[packet] = _first_only
    for packet in _packets(
        "zeros_like", "ones_like", "empty_like", "full_like", "rand_like", "randn_like", "randint_like"
    ):
        table[packet] = _like
    for packet in _packets("arange", "linspace", "logspace", "eye", "tensor", "lift_fresh_copy"):
        table[packet] = _positional
    for packet in _packets(
        "zeros",
        "ones",
        "full",
        "empty",
        "empty_strided",
        "scalar_tensor",
        "rand",
        "randn",
        "randint",
        "new_zeros",
        "new_ones",
        "new_empty",
        "new_full",
    ):
        table[packet] = _constant
    for packet in _packets("sum", "mean", "amax", "amin", "prod", "logsumexp", "any", "all", "nansum", "nanmean"):
        table[packet] = _reduce
    for packet in _packets("max", "min", "median", "nanmedian"):
        table[packet] = _reduce_all_or_dim
    for packet in _packets("var", "std", "var_mean", "std_mean"):
        table[packet] = _var_like
    table[aten.linalg_vector_norm] = _vector_norm
    for count, names in (
        (
            1,
            "max_pool1d max_pool1d_with_indices avg_pool1d adaptive_avg_pool1d adaptive_max_pool1d upsample_nearest1d upsample_linear1d _upsample_nearest_exact1d",
        ),
        (
            2,
            "max_pool2d max_pool2d_with_indices avg_pool2d _adaptive_avg_pool2d adaptive_max_pool2d upsample_nearest2d upsample_bilinear2d upsample_bicubic2d _upsample_bilinear2d_aa _upsample_bicubic2d_aa _upsample_nearest_exact2d max_unpool2d",
        ),
        (
            3,
            "max_pool3d max_pool3d_with_indices avg_pool3d _adaptive_avg_pool3d adaptive_max_pool3d upsample_nearest3d upsample_trilinear3d _upsample_nearest_exact3d",
        ),
    ):
        for packet in _packets(*names.split()):
            table[packet] = _spatial(count)
    for packet in _packets("constant_pad_nd"):
        table[packet] = _pad
    for count, names in (
        (1, "reflection_pad1d replication_pad1d"),
        (2, "reflection_pad2d replication_pad2d"),
        (3, "reflection_pad3d replication_pad3d"),
    ):
        for packet in _packets(*names.split()):
            table[packet] = _spatial(count)
    table[aten.flip] = _along(1, "dims")
    table[aten.roll] = _along(2, "dims")
    table[aten.convolution] = _conv
    for packet in _packets("mm", "bmm", "matmul", "mv", "dot"):
        table[packet] = _matmul
    for packet in _packets("addmm", "baddbmm", "addmv"):
        table[packet] = _addmm
    for packet in _packets("native_batch_norm", "_native_batch_norm_legit", "cudnn_batch_norm", "miopen_batch_norm"):
        table[packet] = _batch_norm
    for packet in _packets("_native_batch_norm_legit_no_training"):
        table[packet] = _batch_norm_no_training
    table[aten.native_layer_norm] = _layer_norm
    table[aten.native_group_norm] = _group_norm
    for packet in _packets("_softmax", "softmax", "_log_softmax", "log_softmax", "_safe_softmax"):
        table[packet] = _mixing("softmax")
    for packet in _packets("cumsum", "cumsum_", "cumprod", "cumprod_", "cummax", "cummin", "logcumsumexp"):
        table[packet] = _mixing("cumulative")
    table[aten.cat] = _cat
    table[aten.stack] = _stack
    for packet in _packets("split", "split_with_sizes", "unsafe_split", "unsafe_split_with_sizes"):
        table[packet] = _split
    table[aten.unbind] = _unbind
    table[aten.slice] = _slice
    table[aten.select] = _select
    for packet in _packets(
        "view", "_unsafe_view", "reshape", "squeeze", "unsqueeze", "flatten", "unflatten", "_reshape_alias", "view_as"
    ):
        table[packet] = _reshape
    table[aten.permute] = _permute
    for packet in _packets("transpose", "transpose_", "swapaxes", "swapdims"):
        table[packet] = _transpose
    for packet in _packets("t", "t_", "numpy_T"):
        table[packet] = _t
    table[aten.expand] = _expand
    table[aten.repeat] = _repeat
    table[aten.embedding] = _embedding
    table[aten.pixel_shuffle] = _pixel_shuffle(False)
    table[aten.pixel_unshuffle] = _pixel_shuffle(True)
    for packet in _packets(
        "_scaled_dot_product_flash_attention_for_cpu",
        "_scaled_dot_product_flash_attention",
        "_scaled_dot_product_efficient_attention",
        "_scaled_dot_product_cudnn_attention",
        "_scaled_dot_product_attention_math",
        "scaled_dot_product_attention",
    ):
        table[packet] = _attention
    return types.MappingProxyType(table)


READERS: Mapping[Any, Reader] = _table()
