"""nn.LSTM / nn.GRU exported to ONNX: prune-onnx on the export and prune-torch on the module remove the same hidden units.

The exporter reorders the gate blocks (torch i, f, g, o; ONNX i, o, f, c) and joins the two
biases, but unit j stays row j of every block: removing the same units in both adapters must
give the same function.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from tests.cross.support import export
from torch import nn

import prune_onnx as po
import prune_torch as pt
from prune_graph import OpKind

IN, HIDDEN, OUT = 6, 10, 3
REMOVED = [0, 3, 4, 8]


class Recurrent(nn.Module):
    def __init__(self, kind: type[nn.RNNBase], bidirectional: bool) -> None:
        super().__init__()
        self.rnn = kind(IN, HIDDEN, bidirectional=bidirectional, batch_first=True)
        self.head = nn.Linear(HIDDEN * (2 if bidirectional else 1), OUT)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.rnn(x)
        return self.head(y)


@pytest.mark.parametrize("kind", [nn.LSTM, nn.GRU], ids=["lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["forward", "bidirectional"])
def test_both_adapters_remove_the_same_hidden_units(kind: type[nn.RNNBase], bidirectional: bool) -> None:
    torch.manual_seed(0)
    model = Recurrent(kind, bidirectional).eval()
    x = torch.randn(2, 5, IN)
    exported = export(model, x)
    graph = po.trace(exported)
    (rnn,) = [op for op in graph.ops if op.kind is OpKind.RECURRENT]
    onnx_plan = po.plan(graph, rnn.owner, REMOVED)
    pruned = po.apply(graph, onnx_plan)
    assert po.check_equivalence(graph, pruned, onnx_plan).ok

    torch_model = copy.deepcopy(model)
    traced = pt.trace(torch_model, x)
    pt.apply(torch_model, pt.plan(traced, "rnn", REMOVED, param="weight_hh_l0", dim=1), x)
    assert torch_model.rnn.hidden_size == HIDDEN - len(REMOVED)
    feeds = {"x": x.numpy()}
    (from_onnx,) = po.run(pruned, feeds)
    with torch.no_grad():
        from_torch = torch_model(x).numpy()
    np.testing.assert_allclose(from_onnx, from_torch, rtol=1e-4, atol=1e-5)
    (unpruned,) = po.run(exported, feeds)
    assert not np.allclose(unpruned, from_torch, atol=1e-3)
