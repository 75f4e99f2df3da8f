"""torch.einsum exported to ONNX (``Einsum`` nodes with torch's equations): prune-onnx maps them and keeps what prune-torch keeps."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from onnx import numpy_helper
from tests.cross.support import export
from torch import nn

import prune_onnx as po
import prune_torch as pt
from prune_graph import OpKind
from prune_ops import GroupKind

WIDTH, HIDDEN, HEADS, HEAD_DIM, LENGTH = 8, 12, 4, 3, 5


class EinsumAttention(nn.Module):
    """A linear layer, a projection into heads and the attention products, all by torch.einsum."""

    def __init__(self) -> None:
        super().__init__()
        self.w_in = nn.Parameter(torch.randn(HIDDEN, WIDTH) / 3)
        self.wq, self.wk, self.wv = (nn.Parameter(torch.randn(HEADS, HEAD_DIM, HIDDEN) / 3) for _ in range(3))
        self.out = nn.Linear(HEADS * HEAD_DIM, WIDTH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(torch.einsum("bsd,od->bso", x, self.w_in))
        q, k, v = (torch.einsum("bsd,hed->bhse", h, w) for w in (self.wq, self.wk, self.wv))
        scores = torch.einsum("bhqe,bhke->bhqk", q, k) * HEAD_DIM**-0.5
        context = torch.einsum("bhqk,bhke->bqhe", scores.softmax(-1), v)
        return self.out(context.flatten(2))


@pytest.fixture
def model_and_export() -> tuple[EinsumAttention, torch.Tensor]:
    torch.manual_seed(0)
    return EinsumAttention().eval(), torch.randn(2, LENGTH, WIDTH)


def test_torch_einsum_equations_map_onto_the_core(model_and_export: tuple[EinsumAttention, torch.Tensor]) -> None:
    model, x = model_and_export
    exported = export(model, x)
    equations = {n.name: n.attribute[0].s.decode() for n in exported.graph.node if n.op_type == "Einsum"}
    assert sorted(equations.values()) == sorted(
        ["bsd,od->bso", "bsd,hed->bhse", "bsd,hed->bhse", "bsd,hed->bhse", "bhqe,bhke->bhqk", "bhqk,bhke->bqhe"]
    )
    graph = po.trace(exported)
    assert not [op for op in graph.ops if op.owner in equations and op.kind is OpKind.OPAQUE]
    kinds = {g.kind for g in graph.groups().prunable}
    assert {GroupKind.CHANNELS, GroupKind.HEADS} <= kinds
    pruned, report = po.prune(exported, ratio=0.5)
    assert po.check_equivalence(exported, pruned, report.plan).ok
    feeds = {"x": x.numpy()}
    assert not np.allclose(po.run(exported, feeds)[0], po.run(pruned, feeds)[0], atol=1e-3)


def test_both_adapters_keep_the_same_units(model_and_export: tuple[EinsumAttention, torch.Tensor]) -> None:
    """The same hidden channels, the same heads; prune-onnx also prunes the query-key dims.

    The difference, explained: in the ONNX graph the projections keep heads and head dims apart
    (``hed``), and ``bhqe,bhke->bhqk`` sums over ``e`` like any contraction, so those dims are a
    channel group, exact once the silenced original zeroes them where they are made. prune-torch
    traces torch.einsum's aten decomposition, where the reshapes into ``bmm`` factor them as head
    dims, which its default prune leaves alone (as prune-onnx does for head dims it sees as such).
    """
    model, x = model_and_export
    exported = export(model, x)
    pruned, onnx_report = po.prune(exported, ratio=0.5)
    torch_model = copy.deepcopy(model)
    pt.prune(torch_model, x, ratio=0.5, show_progress=False)
    onnx_weights = {t.name: numpy_helper.to_array(t) for t in pruned.graph.initializer}
    torch_weights = {name: p.detach().numpy() for name, p in torch_model.named_parameters()}
    for name in ("w_in", "wv", "out.bias"):
        np.testing.assert_array_equal(onnx_weights[name], torch_weights[name])
    (out_weight,) = [w for n, w in onnx_weights.items() if n.startswith("onnx::MatMul")]
    np.testing.assert_array_equal(out_weight, torch_weights["out.weight"].T)
    for name, node in (("wq", "/Einsum_1"), ("wk", "/Einsum_2")):
        entry = onnx_report.plan.entry(node, name, 1)
        assert entry is not None
        kept = np.setdiff1d(np.arange(HEAD_DIM), entry.removed)
        np.testing.assert_array_equal(onnx_weights[name], torch_weights[name][:, kept])
