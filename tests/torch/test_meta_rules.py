"""The fast meta path (``prune_torch._meta``): every shape rule against torch's own meta kernel, the cache, and whole traces.

Each property test draws calls of one op family (shapes with size-1 dims, strides from several
layouts, dtypes, broadcasting, in-place forms, invalid arguments) and checks that a rule either
defers (returns None) or returns exactly what torch returns: the shapes, strides and dtypes, and
for an in-place op the very tensor it was given. Where torch refuses a call, the rule must defer.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from hypothesis import event, given
from hypothesis import strategies as st
from torch import nn

import prune_torch as pt
from prune_torch._leaves import stock_leaves
from prune_torch._meta import RULES, MetaKernels, torch_meta_kernels
from prune_torch.examples import resnet_like

aten = torch.ops.aten
FLOATS = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
LAYOUTS = ["contiguous", "permuted", "sliced", "expanded", "channels_last", "odd_unit_strides", "offset"]


def meta(shape: tuple[int, ...], dtype: torch.dtype = torch.float32, layout: str = "contiguous") -> torch.Tensor:
    """A meta tensor of ``shape`` laid out in memory as ``layout`` says (contiguous where the layout does not apply)."""
    shape = tuple(shape)
    n = len(shape)
    if layout == "permuted" and n >= 2:
        return torch.empty(shape[::-1], dtype=dtype, device="meta").permute(*range(n - 1, -1, -1))
    if layout == "sliced" and n >= 1:
        return torch.empty((*shape[:-1], 2 * shape[-1]), dtype=dtype, device="meta")[..., ::2]
    if layout == "expanded" and n >= 1:
        return torch.empty((1, *shape[1:]), dtype=dtype, device="meta").expand(shape)
    if layout == "channels_last" and n == 4:
        return torch.empty(shape, dtype=dtype, device="meta", memory_format=torch.channels_last)
    if layout == "odd_unit_strides" and 1 in shape:
        strides = list(torch.empty(shape, device="meta").stride())
        strides = [7 if size == 1 else s for size, s in zip(shape, strides)]
        return torch.empty_strided(shape, strides, dtype=dtype, device="meta")
    if layout == "offset":
        return torch.empty(max(1, torch.Size(shape).numel()) + 3, dtype=dtype, device="meta")[3:].as_strided(
            shape, torch.empty(shape, device="meta").stride()
        )
    return torch.empty(shape, dtype=dtype, device="meta")


def describe(out: Any) -> Any:
    if isinstance(out, torch.Tensor):
        return (tuple(out.shape), out.stride(), out.dtype, out.device.type)
    if isinstance(out, (tuple, list)):
        return tuple(describe(o) for o in out)
    return out


def check(op: Any, *args: Any, **kwargs: Any) -> None:
    """The rule for ``op`` defers, or answers what torch answers (and the same object for an in-place op)."""
    got = RULES[op](*args, **kwargs)
    try:
        expected = op(*args, **kwargs)
    except Exception as error:  # torch refuses: the rule must not answer
        refusal = f"{type(error).__name__}: {error}"
    else:
        refusal = None
    if refusal is not None:
        assert got is None, f"{op} answered {describe(got)} where torch raises {refusal}"
        event("torch refuses")
        return
    if got is None:
        event("rule defers")
        return
    event("rule answers")
    assert describe(got) == describe(expected), (op, describe(args), kwargs)
    if op._schema.returns[0].alias_info is not None:  # in place
        assert got is args[0]
        assert expected is args[0]


shapes = st.lists(st.integers(1, 4), min_size=0, max_size=4).map(tuple)
dtypes = st.sampled_from(FLOATS)
# contiguous half the time: most rules answer only for contiguous inputs
layouts = st.sampled_from(["contiguous"] * len(LAYOUTS) + LAYOUTS)
numbers = st.one_of(st.integers(-3, 3), st.floats(-3, 3, allow_nan=False))


# --- unary ops -------------------------------------------------------------------------------

UNARY = [
    ("relu", {}),
    ("sigmoid", {}),
    ("tanh", {}),
    ("silu", {}),
    ("mish", {}),
    ("hardswish", {}),
    ("hardsigmoid", {}),
    ("neg", {}),
    ("exp", {}),
    ("rsqrt", {}),
    ("sqrt", {}),
    ("gelu", {"approximate": st.sampled_from(["none", "tanh"])}),
    ("leaky_relu", {"negative_slope": numbers}),
    ("hardtanh", {"min_val": numbers, "max_val": numbers}),
    ("elu", {"alpha": numbers, "scale": numbers, "input_scale": numbers}),
    ("clamp", {"min": st.one_of(st.none(), numbers), "max": st.one_of(st.none(), numbers)}),
]


@given(data=st.data(), shape=shapes, dtype=dtypes, layout=layouts, inplace=st.booleans())
def test_unary_rules(
    data: st.DataObject, shape: tuple[int, ...], dtype: torch.dtype, layout: str, inplace: bool
) -> None:
    name, extra = data.draw(st.sampled_from(UNARY))
    kwargs = {k: data.draw(v) for k, v in extra.items()}
    op = getattr(getattr(aten, name + ("_" if inplace else "")), "default", None)
    if op is None or op not in RULES:
        return
    check(op, meta(shape, dtype, layout), **kwargs)


@given(shape=shapes, dtype=dtypes, layout=layouts, inplace=st.booleans(), exponent=numbers)
def test_pow_rules(shape: tuple[int, ...], dtype: torch.dtype, layout: str, inplace: bool, exponent: Any) -> None:
    op = aten.pow_.Scalar if inplace else aten.pow.Tensor_Scalar
    check(op, meta(shape, dtype, layout), exponent)


# --- arithmetic ------------------------------------------------------------------------------


@st.composite
def operands(draw: st.DrawFn) -> tuple[torch.Tensor, Any]:
    """A tensor and a number or a tensor broadcastable with it (either way), or not."""
    shape = draw(shapes)
    self = meta(shape, draw(dtypes), draw(layouts))
    if draw(st.booleans()):
        return self, draw(numbers)
    other_shape = list(shape[draw(st.integers(0, len(shape))) :])
    other_shape = [1 if draw(st.booleans()) else s for s in other_shape]
    if draw(st.booleans()):  # the other way round: the other tensor is the larger one
        other_shape = [draw(st.integers(1, 3)), *other_shape]
    if other_shape and draw(st.integers(0, 9)) == 0:  # not broadcastable
        other_shape[-1] += 1
    return self, meta(tuple(other_shape), draw(dtypes), draw(layouts))


ARITHMETIC = ["add", "sub", "mul", "div"]


@given(data=st.data(), pair=operands(), inplace=st.booleans(), scalar=st.booleans())
def test_arithmetic_rules(data: st.DataObject, pair: tuple[torch.Tensor, Any], inplace: bool, scalar: bool) -> None:
    self, other = pair
    name = data.draw(st.sampled_from(ARITHMETIC))
    overload = "Scalar" if scalar else "Tensor"
    if scalar and isinstance(other, torch.Tensor):
        other = data.draw(numbers)
    op = getattr(getattr(aten, name + ("_" if inplace else "")), overload)
    if name in ("add", "sub") and data.draw(st.booleans()):
        alpha = data.draw(numbers)
        check(op, self, other, alpha) if scalar else check(op, self, other, alpha=alpha)
    else:
        check(op, self, other)


@given(shape=shapes, dtype=dtypes, layout=layouts, other=numbers, alpha=numbers)
def test_rsub_rule(shape: tuple[int, ...], dtype: torch.dtype, layout: str, other: Any, alpha: Any) -> None:
    check(aten.rsub.Scalar, meta(shape, dtype, layout), other, alpha)


# --- softmax ---------------------------------------------------------------------------------


@given(
    shape=shapes,
    dtype=dtypes,
    layout=layouts,
    dim=st.integers(-5, 4),
    half_to_float=st.booleans(),
    log=st.booleans(),
    safe_dtype=st.one_of(st.none(), dtypes),
)
def test_softmax_rules(
    shape: tuple[int, ...],
    dtype: torch.dtype,
    layout: str,
    dim: int,
    half_to_float: bool,
    log: bool,
    safe_dtype: torch.dtype | None,
) -> None:
    x = meta(shape, dtype, layout)
    check(aten._log_softmax.default if log else aten._softmax.default, x, dim, half_to_float)
    if hasattr(aten, "_safe_softmax"):
        check(aten._safe_softmax.default, x, dim, safe_dtype) if safe_dtype else check(
            aten._safe_softmax.default, x, dim
        )


# --- matrix products -------------------------------------------------------------------------

sizes = st.integers(0, 4)
matrix_layouts = st.sampled_from(["contiguous", "permuted", "sliced", "expanded", "odd_unit_strides"])


@given(
    n=sizes,
    k=sizes,
    m=sizes,
    batch=st.integers(1, 3),
    a_dtype=dtypes,
    b_dtype=dtypes,
    a_layout=matrix_layouts,
    b_layout=matrix_layouts,
    bias_shape=st.sampled_from(["nm", "m", "1m", "n1", "", "bad"]),
    mismatch=st.integers(0, 5),
)
def test_matmul_rules(
    n: int,
    k: int,
    m: int,
    batch: int,
    a_dtype: torch.dtype,
    b_dtype: torch.dtype,
    a_layout: str,
    b_layout: str,
    bias_shape: str,
    mismatch: int,
) -> None:
    k2 = k + 1 if mismatch == 0 else k
    a, b = meta((n, k), a_dtype, a_layout), meta((k2, m), b_dtype, b_layout)
    check(aten.mm.default, a, b)
    bias = {"nm": (n, m), "m": (m,), "1m": (1, m), "n1": (n, 1), "": (), "bad": (n + 1, m)}[bias_shape]
    check(aten.addmm.default, meta(bias, a_dtype), a, b)
    check(aten.addmm.default, meta(bias, a_dtype), a, b, beta=0.5, alpha=2)
    check(aten.bmm.default, meta((batch, n, k), a_dtype, a_layout), meta((batch, k2, m), b_dtype, b_layout))
    check(aten.bmm.default, meta((batch, n, k), a_dtype), meta((batch + (mismatch == 1), k, m), a_dtype))


# --- convolution -----------------------------------------------------------------------------


@given(data=st.data(), dims=st.integers(1, 3), transposed=st.booleans(), dtype=dtypes, bias=st.booleans())
def test_convolution_rule(data: st.DataObject, dims: int, transposed: bool, dtype: torch.dtype, bias: bool) -> None:
    groups = data.draw(st.integers(1, 3))
    per_group_in, per_group_out = data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2))
    c_in, c_out = groups * per_group_in, groups * per_group_out
    if data.draw(st.integers(0, 7)) == 0:
        c_in += 1  # channels that do not divide
    batch = data.draw(st.integers(1, 2))
    spatial = [data.draw(st.integers(1, 7)) for _ in range(dims)]
    kernel = [data.draw(st.integers(1, 3)) for _ in range(dims)]
    stride = [data.draw(st.integers(1, 3)) for _ in range(dims)]
    padding = [data.draw(st.integers(0, 2)) for _ in range(dims)]
    dilation = [data.draw(st.integers(1, 2)) for _ in range(dims)]
    output_padding = [data.draw(st.integers(0, 2)) if transposed else 0 for _ in range(dims)]
    weight_shape = (c_in, per_group_out, *kernel) if transposed else (c_out, per_group_in, *kernel)
    out_channels = per_group_out * groups if transposed else c_out
    x = meta((batch, c_in, *spatial), dtype, data.draw(layouts))
    w = meta(weight_shape, data.draw(st.sampled_from([dtype, dtype, dtype, torch.float32])), data.draw(layouts))
    b = meta((out_channels,), dtype) if bias else None
    check(aten.convolution.default, x, w, b, stride, padding, dilation, transposed, output_padding, groups)


# --- concatenation ---------------------------------------------------------------------------


@given(data=st.data(), shape=st.lists(st.integers(0, 3), min_size=1, max_size=4).map(tuple), count=st.integers(1, 4))
def test_cat_rule(data: st.DataObject, shape: tuple[int, ...], count: int) -> None:
    dim = data.draw(st.integers(-len(shape) - 1, len(shape)))
    axis = dim % len(shape) if -len(shape) <= dim < len(shape) else 0
    dtype = data.draw(dtypes)
    tensors = []
    for _ in range(count):
        size = list(shape)
        size[axis] = data.draw(st.integers(0, 3))
        if data.draw(st.integers(0, 9)) == 0:
            size[(axis + 1) % len(size)] += 1  # a mismatch off the cat dim
        tensors.append(meta(tuple(size), data.draw(st.sampled_from([dtype, dtype, torch.float32])), data.draw(layouts)))
    check(aten.cat.default, tensors, dim)


# --- pooling ---------------------------------------------------------------------------------

pairs = st.one_of(st.integers(1, 3).map(lambda v: [v]), st.lists(st.integers(1, 3), min_size=2, max_size=2))


@given(
    shape=st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 8), st.integers(1, 8)),
    dtype=dtypes,
    layout=layouts,
    kernel=pairs,
    stride=st.one_of(st.just([]), pairs),
    padding=st.lists(st.integers(0, 2), min_size=2, max_size=2),
    dilation=pairs,
    ceil_mode=st.booleans(),
    count_include_pad=st.booleans(),
    divisor=st.sampled_from([None, 2]),
    output_size=st.lists(st.integers(1, 4), min_size=2, max_size=2),
)
def test_pooling_rules(
    shape: tuple[int, int, int, int],
    dtype: torch.dtype,
    layout: str,
    kernel: list[int],
    stride: list[int],
    padding: list[int],
    dilation: list[int],
    ceil_mode: bool,
    count_include_pad: bool,
    divisor: int | None,
    output_size: list[int],
) -> None:
    x = meta(shape, dtype, layout)
    check(aten.max_pool2d_with_indices.default, x, kernel, stride, padding, dilation, ceil_mode)
    check(aten.avg_pool2d.default, x, kernel, stride, padding, ceil_mode, count_include_pad, divisor)
    check(aten._adaptive_avg_pool2d.default, x, output_size)


# --- reductions ------------------------------------------------------------------------------


@given(
    shape=shapes,
    dtype=st.sampled_from([*FLOATS, torch.int64]),
    layout=layouts,
    dims=st.lists(st.integers(-5, 4), min_size=0, max_size=3),
    keepdim=st.booleans(),
    cast=st.sampled_from([None, None, torch.float64]),
)
def test_mean_rule(
    shape: tuple[int, ...], dtype: torch.dtype, layout: str, dims: list[int], keepdim: bool, cast: torch.dtype | None
) -> None:
    x = meta(shape, dtype, layout)
    check(aten.mean.dim, x, dims, keepdim, dtype=cast)
    check(aten.mean.dim, x, tuple(dims))


# --- normalisation ---------------------------------------------------------------------------


def optional(data: st.DataObject, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor | None:
    if data.draw(st.integers(0, 3)) == 0:
        return None
    return meta(shape, data.draw(st.sampled_from([dtype, torch.float32])))


@given(data=st.data(), shape=st.lists(st.integers(1, 4), min_size=2, max_size=5).map(tuple), dtype=dtypes)
def test_batch_norm_rules(data: st.DataObject, shape: tuple[int, ...], dtype: torch.dtype) -> None:
    x = meta(shape, dtype, data.draw(layouts))
    channels = (shape[1] + (data.draw(st.integers(0, 9)) == 0),)
    w, b, mean, var = (optional(data, channels, dtype) for _ in range(4))
    training = data.draw(st.booleans())
    check(aten.native_batch_norm.default, x, w, b, mean, var, training, 0.1, 1e-5)
    stats = [meta(channels, data.draw(st.sampled_from([dtype, torch.float32]))) for _ in range(2)]
    check(aten._native_batch_norm_legit_no_training.default, x, w, b, *stats, 0.1, 1e-5)
    check(aten._native_batch_norm_legit.default, x, w, b, *stats, training, 0.1, 1e-5)
    check(aten._native_batch_norm_legit.no_stats, x, w, b, training, 0.1, 1e-5)
    check(aten._native_batch_norm_legit_functional.default, x, w, b, *stats, training, 0.1, 1e-5)


@given(shape=st.lists(st.integers(1, 4), min_size=2, max_size=5).map(tuple), dtype=dtypes)
def test_batch_norm_spares(shape: tuple[int, ...], dtype: torch.dtype) -> None:
    """A batch norm layer's call (statistics dropped) answers what torch answers, with the run's shared statistics."""
    op = aten.native_batch_norm.default
    x = meta(shape, dtype)
    params = [meta((shape[1],), dtype) for _ in range(4)]
    kernels = MetaKernels()
    first = kernels.answer_by_rule(op, (x, *params, False, 0.1, 1e-5), (x, *params), first_only=True)
    again = kernels.answer_by_rule(op, (x, *params, False, 0.1, 1e-5), (x, *params), first_only=True)
    assert describe(first) == describe(op(x, *params, False, 0.1, 1e-5))
    assert first[0] is not again[0]  # the output a layer returns is its own
    assert first[1] is again[1]
    assert first[2] is again[2]
    assert first[1] is not first[2]
    alone = kernels.answer_by_rule(op, (x, *params, False, 0.1, 1e-5), (x, *params))
    assert alone[1] is not first[1]  # a caller that may look at the statistics gets its own


@given(data=st.data(), shape=st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple), dtype=dtypes)
def test_layer_norm_rule(data: st.DataObject, shape: tuple[int, ...], dtype: torch.dtype) -> None:
    k = data.draw(st.integers(1, len(shape)))
    normalized = list(shape[len(shape) - k :])
    if data.draw(st.integers(0, 9)) == 0:
        normalized[0] += 1
    x = meta(shape, dtype, data.draw(layouts))
    check(
        aten.native_layer_norm.default,
        x,
        normalized,
        *(optional(data, tuple(normalized), dtype) for _ in range(2)),
        1e-5,
    )


@given(data=st.data(), shape=st.lists(st.integers(1, 4), min_size=2, max_size=5).map(tuple), dtype=dtypes)
def test_group_norm_rule(data: st.DataObject, shape: tuple[int, ...], dtype: torch.dtype) -> None:
    groups = data.draw(st.sampled_from([g for g in range(1, shape[1] + 2)]))
    n, c = shape[0], shape[1]
    hxw = torch.Size(shape[2:]).numel()
    x = meta(shape, dtype, data.draw(layouts))
    w, b = (optional(data, (c,), dtype) for _ in range(2))
    check(aten.native_group_norm.default, x, w, b, n, c, hxw, groups, 1e-5)


# --- each rule answers its op's common call (so the properties above are not all deferrals) ---


def _typical() -> list[tuple[Any, tuple[Any, ...], dict[str, Any]]]:
    x = meta((2, 4, 5, 5))
    w = meta((3, 4, 3, 3))
    c = meta((4,))
    m = meta((3, 4))
    calls: list[tuple[Any, tuple[Any, ...], dict[str, Any]]] = [
        (aten.native_batch_norm.default, (x, c, c, c, c, False, 0.1, 1e-5), {}),
        (aten._native_batch_norm_legit_no_training.default, (x, c, c, c, c, 0.1, 1e-5), {}),
        (aten.native_layer_norm.default, (x, [5], meta((5,)), meta((5,)), 1e-5), {}),
        (aten.native_group_norm.default, (x, c, c, 2, 4, 25, 2, 1e-5), {}),
        (aten.hardtanh_.default, (x, 0.0, 6.0), {}),
        (aten.hardtanh.default, (x, 0.0, 6.0), {}),
        (aten.gelu.default, (x,), {"approximate": "tanh"}),
        (aten.clamp.default, (x, 0), {}),
        (aten.add.Tensor, (x, c.reshape(4, 1, 1)), {}),
        (aten.add_.Tensor, (x, x), {"alpha": 2}),
        (aten.mul.Scalar, (x, 0.5), {}),
        (aten.div.Tensor, (x, 3), {}),
        (aten._softmax.default, (x, -1, False), {}),
        (aten.mm.default, (m, m.t()), {}),
        (aten.addmm.default, (meta((3,)), m, m.t()), {}),
        (aten.bmm.default, (meta((2, 3, 4)), meta((2, 4, 5))), {}),
        (aten.convolution.default, (x, w, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1), {}),
        (aten.cat.default, ([x, x], 1), {}),
        (aten.max_pool2d_with_indices.default, (x, [3, 3], [2, 2], [1, 1]), {}),
        (aten.avg_pool2d.default, (x, [2, 2]), {}),
        (aten._adaptive_avg_pool2d.default, (x, [1, 1]), {}),
        (aten.mean.dim, (x, [-1, -2], True), {}),
    ]
    return calls


@pytest.mark.parametrize(("op", "args", "kwargs"), _typical(), ids=lambda v: str(v) if hasattr(v, "_schema") else "")
def test_rule_answers_typical_call(op: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    got = RULES[op](*args, **kwargs)
    assert got is not None, f"{op} deferred its most common call"
    assert describe(got) == describe(op(*args, **kwargs))


# --- the cache -------------------------------------------------------------------------------


def test_cache_hit_returns_equal_metadata() -> None:
    kernels = MetaKernels(rules={})
    x = meta((2, 3, 4), layout="permuted")
    first = kernels.run(aten.var_mean.correction, (x, [1]), {"keepdim": True})
    again = kernels.run(aten.var_mean.correction, (meta((2, 3, 4), layout="permuted"), [1]), {"keepdim": True})
    assert (kernels.misses, kernels.hits) == (1, 1)
    assert describe(again) == describe(first) == describe(aten.var_mean.correction(x, [1], keepdim=True))
    assert all(a is not b for a, b in zip(first, again))
    # another argument, another entry
    kernels.run(aten.var_mean.correction, (x, [1]), {"keepdim": False})
    assert kernels.misses == 2
    # strides are part of the key and of the answer
    strided = kernels.run(aten.gelu.default, (x,), {})
    assert describe(strided) == describe(aten.gelu.default(x))
    assert describe(kernels.run(aten.gelu.default, (meta((2, 3, 4)),), {})) == describe(
        aten.gelu.default(meta((2, 3, 4)))
    )
    assert kernels.hits == 1


def test_cache_keeps_inplace_identity() -> None:
    kernels = MetaKernels(rules={})
    a, b = meta((3, 4)), meta((3, 4))
    assert kernels.run(aten.hardtanh_.default, (a, 0.0, 6.0), {}) is a
    assert kernels.run(aten.hardtanh_.default, (b, 0.0, 6.0), {}) is b
    assert kernels.hits == 1
    assert kernels.run(aten.copy_.default, (a, b), {}) is a
    assert kernels.run(aten.copy_.default, (b, a), {}) is b


def test_cache_tells_number_types_and_default_dtype_apart() -> None:
    kernels = MetaKernels(rules={})
    ints = meta((3,), torch.int64)
    assert kernels.run(aten.add.Tensor, (ints, 1), {}).dtype == torch.int64
    assert kernels.run(aten.add.Tensor, (ints, 1.0), {}).dtype == torch.float32
    assert kernels.run(aten.add.Tensor, (ints, True), {}).dtype == torch.int64
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        assert kernels.run(aten.add.Tensor, (ints, 1.0), {}).dtype == torch.float64
    finally:
        torch.set_default_dtype(before)
    assert kernels.hits == 0


def test_cache_leaves_views_and_shared_storage_to_torch() -> None:
    kernels = MetaKernels(rules={})
    x = meta((2, 6))
    for _ in range(2):
        view = kernels.run(aten.view.default, (x, [3, 4]), {})
        assert view._is_view()
        assert view.untyped_storage()._cdata == x.untyped_storage()._cdata
        unsafe = kernels.run(aten._unsafe_view.default, (x, [12]), {})
        assert unsafe.untyped_storage()._cdata == x.untyped_storage()._cdata
        # an in-place view op changes its argument's metadata: never answered from the cache
        y = meta((2, 1, 3))
        assert kernels.run(aten.squeeze_.dim, (y, 1), {}) is y
        assert y.shape == (2, 3)
    assert kernels.hits == 0


def test_off_meta_calls_go_to_torch() -> None:
    kernels = MetaKernels()
    x = torch.randn(3, 4)
    out = kernels.run(aten.relu.default, (x,), {})
    assert out.device.type == "cpu"
    torch.testing.assert_close(out, torch.relu(x))
    assert (kernels.by_rule, kernels.misses) == (0, 0)


def test_off_switch() -> None:
    with torch_meta_kernels():
        kernels = MetaKernels()
    assert not kernels.enabled
    kernels.run(aten.relu.default, (meta((2,)),), {})
    assert (kernels.by_rule, kernels.misses, kernels.hits) == (0, 0, 0)
    assert MetaKernels().enabled


# --- whole traces: the same graph with the fast path as without --------------------------------


class _MobileBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.expand = nn.Sequential(nn.Conv2d(8, 16, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU6(inplace=True))
        self.depthwise = nn.Sequential(
            nn.Conv2d(16, 16, 3, 1, 1, groups=16, bias=False), nn.BatchNorm2d(16), nn.ReLU6(inplace=True)
        )
        self.project = nn.Sequential(nn.Conv2d(16, 8, 1, bias=False), nn.BatchNorm2d(8))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(8, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.project(self.depthwise(self.expand(x)))
        x = nn.functional.hardswish(x)
        return self.head(x)


class _Norms(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.group = nn.GroupNorm(2, 8)
        self.pool = nn.MaxPool2d(2, ceil_mode=True)
        self.layer = nn.LayerNorm(8)
        self.fc = nn.Linear(8, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.silu(self.group(self.conv(x)))
        x = torch.cat([self.pool(x), nn.functional.avg_pool2d(x, 2, ceil_mode=True)], dim=1)[:, :8]
        x = self.layer(x.flatten(2).transpose(1, 2))
        return torch.softmax(self.fc(nn.functional.gelu(x)), dim=-1)


def _hf(name: str) -> tuple[nn.Module, Any]:
    transformers = pytest.importorskip("transformers", minversion="5.0")
    transformers.utils.logging.set_verbosity_error()
    torch.manual_seed(0)
    small = {"vocab_size": 40, "max_position_embeddings": 16}
    if name == "bert":
        config = transformers.BertConfig(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48, **small
        )
        model = transformers.BertModel(config)
    elif name == "gpt2":
        config = transformers.GPT2Config(vocab_size=40, n_positions=16, n_embd=32, n_layer=2, n_head=4, n_inner=48)
        model = transformers.GPT2Model(config)
    else:
        config = transformers.LlamaConfig(
            hidden_size=32,
            intermediate_size=48,
            num_hidden_layers=2,
            num_attention_heads=8,
            num_key_value_heads=2,
            head_dim=8,
            **small,
        )
        model = transformers.LlamaModel(config)
    ids = torch.randint(0, 40, (2, 7), generator=torch.Generator().manual_seed(1))
    if name == "llama":  # its attention mask is built by reading values (.item()): that trace runs on real tensors
        return model.eval(), {"input_ids": ids}
    return model.eval(), {"input_ids": ids, "attention_mask": torch.tensor([[1] * 7, [1] * 5 + [0] * 2])}


def _model(name: str) -> tuple[nn.Module, Any]:
    torch.manual_seed(0)
    if name == "resnet_like":
        return resnet_like(num_classes=10), torch.randn(1, 3, 32, 32)
    if name == "mobile_block":
        return _MobileBlock(), torch.randn(2, 8, 9, 9)
    if name == "norms":
        return _Norms(), torch.randn(2, 3, 9, 9)
    if name == "mixed_precision":
        return _Norms().to(torch.bfloat16), torch.randn(2, 3, 9, 9, dtype=torch.bfloat16)
    return _hf(name)


def _summary(graph: Any) -> Any:
    shapes = {v.id: (v.shape, v.dtype) for v in graph.values}
    return [(op.target, op.kind, [shapes[i] for i in op.inputs], [shapes[o] for o in op.outputs]) for op in graph.ops]


@pytest.mark.parametrize("name", ["resnet_like", "mobile_block", "norms", "mixed_precision", "bert", "gpt2", "llama"])
def test_trace_is_the_same_with_the_fast_path(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    model, inputs = _model(name)
    used: list[MetaKernels] = []
    run = MetaKernels.run

    def watched(self: MetaKernels, func: Any, args: Any, kwargs: Any) -> Any:
        used.append(self)
        return run(self, func, args, kwargs)

    monkeypatch.setattr(MetaKernels, "run", watched)
    # stock layers take their own path either way (their fast path has its own test, test_leaves.py)
    with stock_leaves():
        fast = pt.trace(model, inputs)
        assert any(k.by_rule for k in used), "the trace did not go through the shape rules"
        used.clear()
        with torch_meta_kernels():
            slow = pt.trace(model, inputs)
    assert used
    assert not any(k.by_rule or k.hits or k.misses for k in used)
    assert fast.fingerprint() == slow.fingerprint()
    assert _summary(fast) == _summary(slow)
    assert fast.values == slow.values
    assert fast.ops == slow.ops
