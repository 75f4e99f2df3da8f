"""Stock layers answered as their aten calls (``prune_torch._leaves``): the same graph as running their forward.

Every trace on meta uses the fast path; ``stock_leaves()`` turns it off. For each layer class,
drawn configurations and inputs must trace to the same graph either way (ops, attributes, owners,
shapes, dtypes; value ids up to renumbering, since autograd's extra calls below a layer take ids
on the stock path), with the same plain numbers recorded per module and op.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from support import canonical_graph
from torch import nn

import prune_torch as pt
from prune_torch._leaves import LEAVES, _Forward, stock_leaves
from prune_torch._trace import trace_with_calls
from prune_torch.examples import resnet_like


def _numbers(calls: Any) -> list[tuple[Any, ...]]:
    return [(c.module, c.func, c.values, c.after_data) for c in calls.constants]


def _stream(calls: Any) -> list[tuple[Any, Any]]:
    return [(func, outputs) for func, outputs in calls.items]


def _both(model: nn.Module, inputs: Any, monkeypatch: pytest.MonkeyPatch) -> int:
    """Trace ``model`` with and without the fast path, check they agree; the number of fast calls made."""
    fast_calls = 0
    dispatch, known = _Forward.dispatch, _Forward.known

    def counted(self: _Forward, func: Any, args: Any, kwargs: Any) -> Any:
        nonlocal fast_calls
        fast_calls += 1
        return dispatch(self, func, args, kwargs)

    def counted_known(self: _Forward, func: Any, args: Any, *reading: Any) -> Any:
        nonlocal fast_calls
        fast_calls += 1
        return known(self, func, args, *reading)

    monkeypatch.setattr(_Forward, "dispatch", counted)
    monkeypatch.setattr(_Forward, "known", counted_known)
    own = [vars(module).get("forward") for module in model.modules()]
    fast, fast_record = trace_with_calls(model, inputs)
    made = fast_calls
    with monkeypatch.context() as generic:
        # each known call handed to the mode as the dispatcher would: the very same record, call for call
        generic.setattr(_Forward, "known", lambda self, func, args, *_reading: self.dispatch(func, args, {}))
        dispatched, dispatched_record = trace_with_calls(model, inputs)
    assert fast == dispatched
    assert _stream(fast_record) == _stream(dispatched_record)
    assert _numbers(fast_record) == _numbers(dispatched_record)
    with stock_leaves():
        stock, stock_record = trace_with_calls(model, inputs)
    assert canonical_graph(fast) == canonical_graph(stock)
    assert fast.fingerprint() == stock.fingerprint()
    assert _numbers(fast_record) == _numbers(stock_record)
    assert fast_record.meta
    assert stock_record.meta
    assert [vars(module).get("forward") for module in model.modules()] == own
    return made


def _layers(draw: st.DrawFn) -> tuple[nn.Module, torch.Tensor]:
    kind = draw(st.sampled_from(["conv", "batch_norm", "layer_norm", "linear", "activation", "passthrough"]))
    c = draw(st.integers(1, 6))
    bias = draw(st.booleans())
    if kind == "conv":
        spatial = draw(st.integers(1, 3))
        groups = draw(st.sampled_from([g for g in (1, 2, 3) if c % g == 0]))
        cls = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[spatial - 1]
        layer: nn.Module = cls(
            c,
            groups * draw(st.integers(1, 3)),
            draw(st.integers(1, 3)),
            stride=draw(st.integers(1, 2)),
            padding=draw(st.integers(0, 2)),
            dilation=draw(st.integers(1, 2)),
            groups=groups,
            bias=bias,
            padding_mode=draw(st.sampled_from(["zeros", "zeros", "reflect"])),
        )
        x = torch.randn(draw(st.integers(1, 2)), c, *([7] * spatial))
        if spatial == 2 and draw(st.booleans()):
            x = x.contiguous(memory_format=torch.channels_last)  # the shape rule declines: the generic path
        return layer, x
    if kind == "batch_norm":
        spatial = draw(st.integers(0, 3))
        cls = (nn.BatchNorm1d, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)[spatial]
        layer = cls(
            c,
            momentum=draw(st.sampled_from([0.1, None, 0.3])),
            eps=draw(st.sampled_from([1e-5, 1e-3])),
            affine=bias,
            track_running_stats=draw(st.booleans()),
        )
        return layer, torch.randn(2, c, *([5] * spatial))
    if kind == "layer_norm":
        layer = nn.LayerNorm(c, elementwise_affine=bias, bias=draw(st.booleans()))
        return layer, torch.randn(*draw(st.lists(st.integers(1, 3), max_size=2)), c)
    if kind == "linear":
        layer = nn.Linear(c, draw(st.integers(1, 6)), bias=bias)
        rank = draw(st.integers(1, 4))
        x = torch.randn(*draw(st.lists(st.integers(1, 3), min_size=rank - 1, max_size=rank - 1)), c)
        if rank == 3 and draw(st.booleans()):
            x = x.transpose(0, 1).contiguous().transpose(0, 1)  # not contiguous: torch's other path
        return layer, x
    if kind == "activation":
        inplace = draw(st.booleans())
        layer = draw(
            st.sampled_from(
                [
                    nn.ReLU(inplace),
                    nn.ReLU6(inplace),
                    nn.Hardtanh(-2, 3, inplace),
                    nn.Hardtanh(-1.5, 0.5),
                    nn.SiLU(inplace),
                    nn.Hardswish(inplace),
                    nn.Hardsigmoid(inplace),
                    nn.Sigmoid(),
                    nn.Tanh(),
                    nn.GELU(),
                    nn.GELU(approximate="tanh"),
                ]
            )
        )
        return layer, torch.randn(2, c, 3)
    return draw(st.sampled_from([nn.Dropout(0.3), nn.Identity()])), torch.randn(2, c)


class _Chain(nn.Module):
    """A layer between two convs, so its output is used and its input is an activation."""

    def __init__(self, layer: nn.Module, x: torch.Tensor) -> None:
        super().__init__()
        self.layer = layer
        self.scale = nn.Parameter(torch.ones(x.shape[-1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.layer(x * self.scale)
        return y * 2.5


@given(st.data())
def test_each_layer_traces_the_same_either_way(data: st.DataObject) -> None:
    layer, x = data.draw(st.composite(_layers)())
    model = _Chain(layer, x).eval()
    with pytest.MonkeyPatch.context() as monkeypatch:
        _both(model, x, monkeypatch)


@pytest.mark.parametrize("name", ["resnet_like", "mobile", "transformer"])
def test_whole_models_trace_the_same_either_way(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    if name == "resnet_like":
        model, x = resnet_like(num_classes=10), torch.randn(1, 3, 32, 32)
    elif name == "mobile":
        model = nn.Sequential(
            nn.Conv2d(3, 8, 3, 2, 1, bias=False),
            nn.BatchNorm2d(8),
            nn.ReLU6(inplace=True),
            nn.Conv2d(8, 8, 3, 1, 1, groups=8, bias=False),
            nn.BatchNorm2d(8),
            nn.Hardswish(inplace=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(0.2),
            nn.Linear(8, 4),
        )
        x = torch.randn(2, 3, 16, 16)
    else:
        layer = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.1, batch_first=True, activation="gelu")
        model, x = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False), torch.randn(2, 5, 16)
    assert _both(model.eval(), x, monkeypatch) > 0


def test_only_stock_classes_and_forwards_take_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    class Doubled(nn.Conv2d):  # a subclass may change anything: it runs its own code
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(x) * 2

    seen: list[str] = []
    patched = nn.Conv2d(4, 4, 1)
    patched.forward = lambda x: torch.relu(nn.Conv2d.forward(patched, x))  # type: ignore[method-assign]
    plain = nn.Conv2d(4, 4, 1)
    plain.register_forward_pre_hook(lambda module, args: seen.append("hook") or (args[0] * 3,))
    model = nn.Sequential(Doubled(3, 4, 1), patched, plain).eval()
    assert _both(model, torch.randn(1, 3, 4, 4), monkeypatch) == 1  # only ``plain``
    assert seen == ["hook"] * 3  # the hook ran on each path (fast, fast through the generic dispatch, stock)
    assert "forward" in vars(patched)  # the model's own instance forward is left in place
    graph = pt.trace(model, torch.randn(1, 3, 4, 4))
    assert [op.target for op in graph.ops if op.owner == "1"] == ["aten.convolution", "aten.relu"]
    assert [op.target for op in graph.ops if op.owner == "2"] == ["aten.mul", "aten.convolution"]


def test_a_failing_run_takes_the_fast_forwards_away() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.Linear(5, 2)).eval()
    with pytest.raises(pt.TraceError, match="in module 2"):
        pt.trace(model, torch.randn(1, 3, 4, 4))
    assert all("forward" not in vars(module) for module in model.modules())


def test_real_runs_and_unfit_inputs_run_the_layer_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    # a model that reads values is traced on real tensors: layers run their own forward there
    class Reads(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)
            self.norm = nn.BatchNorm2d(4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.norm(self.conv(x))
            return y if bool(y.sum() > -1e9) else -y

    devices: list[bool] = []
    known = _Forward.known

    def watched(self: _Forward, func: Any, args: Any, *reading: Any) -> Any:
        devices.append(args[0].is_meta)
        return known(self, func, args, *reading)

    monkeypatch.setattr(_Forward, "known", watched)
    graph, record = trace_with_calls(Reads().eval(), torch.randn(1, 3, 4, 4))
    assert not record.meta  # the meta attempt stopped at ``bool``; the real run made the graph
    assert devices == [True, True]  # conv and norm in the meta attempt only
    assert [op.target for op in graph.ops][:2] == ["aten.convolution", "aten.native_batch_norm"]


def test_the_table_holds_only_torch_layers() -> None:
    assert all(cls.__module__.startswith("torch.nn.modules") for cls in LEAVES)


def test_what_a_hook_writes_on_a_stock_layer_is_put_back() -> None:
    # a stock layer is not snapshotted by the trace, unless something of the user's runs in its call
    conv, norm = nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)
    conv.register_forward_hook(lambda module, args, out: setattr(module, "cached", out))
    model = nn.Sequential(conv, norm).eval()
    handle = torch.nn.modules.module.register_module_forward_hook(
        lambda module, args, out: setattr(module, "seen", True) if module is norm else None
    )
    try:
        pt.trace(model, torch.randn(1, 3, 4, 4))
    finally:
        handle.remove()
    assert not hasattr(conv, "cached")
    assert not hasattr(norm, "seen")


def test_a_layers_tensors_are_read_as_attribute_lookup_reads_them() -> None:
    from prune_torch._leaves import _held

    norm = nn.BatchNorm2d(3)
    assert _held(norm, "weight") is norm.weight
    assert _held(norm, "running_var") is norm.running_var
    assert _held(nn.Conv2d(2, 2, 1, bias=False), "bias") is None
    plain = torch.ones(3)
    del norm.weight
    norm.weight = plain  # a plain attribute where the parameter was (as old-style weight norm does)
    assert _held(norm, "weight") is plain
    with pytest.raises(AttributeError):
        _held(norm, "missing")
