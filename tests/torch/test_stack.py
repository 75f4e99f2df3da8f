"""Which module owns each op of a trace (``prune_torch._stack``): the module called, as torch's module hooks would say."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import prune_torch as pt


def _owners(graph: pt.Graph) -> list[tuple[str, str]]:
    return [(op.target, op.owner) for op in graph.ops]


class _Scaled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) * 2.0


class _Caller(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = _Scaled()
        self.direct = _Scaled()
        self.shared = nn.ReLU()
        self.again = self.shared  # one module under two paths: named by the first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.inner(x)
        x = self.direct.forward(x)  # a direct call: part of this module, as no hook would run
        x = nn.Tanh()(x)  # a module made in the forward, outside the model: part of this module too
        return self.again(self.shared(x))


@pytest.mark.parametrize("meta", [True, False])
def test_each_op_belongs_to_the_module_called(meta: bool) -> None:
    graph = pt.trace(_Caller().eval(), torch.randn(2, 4), meta=meta)
    assert _owners(graph) == [
        ("aten.t", "inner.linear"),
        ("aten.addmm", "inner.linear"),
        ("aten.mul", "inner"),
        ("aten.t", "direct.linear"),
        ("aten.addmm", "direct.linear"),
        ("aten.mul", ""),
        ("aten.tanh", ""),
        ("aten.relu", "shared"),
        ("aten.relu", "shared"),
    ]


def test_a_modules_pre_hooks_belong_to_it_and_its_forward_hooks_to_its_caller() -> None:
    model = _Caller().eval()
    model.inner.register_forward_pre_hook(lambda module, args: (args[0] + 1.0,))
    model.inner.register_forward_hook(lambda module, args, out: out - 1.0)
    graph = pt.trace(model, torch.randn(2, 4))
    assert _owners(graph)[:5] == [
        ("aten.add", "inner"),
        ("aten.t", "inner.linear"),
        ("aten.addmm", "inner.linear"),
        ("aten.mul", "inner"),
        ("aten.sub", ""),
    ]


def test_forwards_are_put_back_also_when_the_forward_fails() -> None:
    model = _Caller().eval()

    def own(x: torch.Tensor) -> torch.Tensor:
        return nn.Linear.forward(model.inner.linear, x)

    model.inner.linear.forward = own  # type: ignore[method-assign]
    graph = pt.trace(model, torch.randn(2, 4))
    assert ("aten.addmm", "inner.linear") in _owners(graph)  # the module's own forward ran, under its name
    with pytest.raises(pt.TraceError, match=r"in module inner\.linear"):
        pt.trace(model, torch.randn(2, 3, 5))  # fails in the first linear: the stack names it
    assert vars(model.inner.linear)["forward"] is own
    assert all("forward" not in vars(m) for m in model.modules() if m is not model.inner.linear)


def test_torchs_module_machinery_is_recognised_by_name_too() -> None:
    from prune_torch._stack import _CALL_IMPL, called_as_module

    assert called_as_module(_CALL_IMPL)
    # a torch release whose _call_impl is another code object, in the same file, still counts
    assert called_as_module(_CALL_IMPL.replace(co_consts=(*_CALL_IMPL.co_consts, None)))
    assert not called_as_module(test_torchs_module_machinery_is_recognised_by_name_too.__code__)
