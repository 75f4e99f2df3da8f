"""Recurrent nets (nn.LSTM, nn.GRU, nn.RNN) and nn.MultiheadAttention inside small models of our own.

Recurrent hidden units are pruned across every layer and direction at once (the module has one
``hidden_size``); MultiheadAttention loses heads and the widths it reads and writes, and the
units of the MLP after it are pruned too.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import prune_torch as pt
from prune_ops import GroupKind

from .support import assert_matches_silenced, group_with, labels, member, prune_kept

IN, WIDTH, HIDDEN, OUT = 6, 12, 10, 3


class RecurrentNet(nn.Module):
    """A linear embedding, a recurrent layer, a linear head on every step's output."""

    def __init__(self, kind: type[nn.RNNBase], num_layers: int, bidirectional: bool) -> None:
        super().__init__()
        self.embed = nn.Linear(IN, WIDTH)
        self.rnn = kind(WIDTH, HIDDEN, num_layers=num_layers, bidirectional=bidirectional, batch_first=True)
        self.head = nn.Linear(HIDDEN * (2 if bidirectional else 1), OUT)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.rnn(torch.tanh(self.embed(x)))
        return self.head(y)


RECURRENT = [
    pytest.param(nn.LSTM, 2, True, id="lstm-2-layers-bidirectional"),
    pytest.param(nn.GRU, 1, False, id="gru"),
    pytest.param(nn.RNN, 1, False, id="rnn"),
    pytest.param(nn.GRU, 2, True, id="gru-2-layers-bidirectional"),
]
GATES = {nn.LSTM: 4, nn.GRU: 3, nn.RNN: 1}


def _recurrent(kind: type[nn.RNNBase], num_layers: int, bidirectional: bool) -> nn.Module:
    torch.manual_seed(0)
    return RecurrentNet(kind, num_layers, bidirectional).double().eval()


def _sequence() -> torch.Tensor:
    return torch.randn(2, 5, IN, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


@pytest.mark.parametrize(("kind", "num_layers", "bidirectional"), RECURRENT)
def test_recurrent_group_structure(kind: type[nn.RNNBase], num_layers: int, bidirectional: bool) -> None:
    model = _recurrent(kind, num_layers, bidirectional)
    graph = pt.trace(model, _sequence())
    hidden = group_with(graph, GroupKind.CHANNELS, "rnn.weight_hh_l0[1]")
    assert hidden.size == HIDDEN
    assert hidden.prunable
    suffixes = [f"_l{k}{d}" for k in range(num_layers) for d in ("", "_reverse")[: 2 if bidirectional else 1]]
    for s in suffixes:
        assert {f"rnn.weight_ih{s}[0]", f"rnn.weight_hh{s}[0]", f"rnn.weight_hh{s}[1]", f"rnn.bias_hh{s}[0]"} <= labels(
            hidden
        )
        # every gate's block of rows carries the same units
        np.testing.assert_array_equal(member(hidden, f"rnn.weight_hh{s}[0]"), np.tile(np.arange(HIDDEN), GATES[kind]))
    directions = 2 if bidirectional else 1
    np.testing.assert_array_equal(member(hidden, "head.weight[1]"), np.tile(np.arange(HIDDEN), directions))
    if num_layers > 1:  # the next layer reads both directions
        np.testing.assert_array_equal(member(hidden, "rnn.weight_ih_l1[1]"), np.tile(np.arange(HIDDEN), directions))
    width = group_with(graph, GroupKind.CHANNELS, "embed.weight[0]")
    assert width.size == WIDTH
    assert width.prunable
    assert "rnn.weight_ih_l0[1]" in labels(width)


@pytest.mark.parametrize(("kind", "num_layers", "bidirectional"), RECURRENT)
def test_recurrent_hidden_units(kind: type[nn.RNNBase], num_layers: int, bidirectional: bool) -> None:
    model, x = _recurrent(kind, num_layers, bidirectional), _sequence()
    original, report = prune_kept(model, x)
    rnn = model.rnn
    assert (rnn.hidden_size, rnn.input_size) == (HIDDEN // 2, WIDTH // 2)
    directions = 2 if bidirectional else 1
    for k in range(num_layers):
        for d in ("", "_reverse")[:directions]:
            inputs = WIDTH // 2 if k == 0 else HIDDEN // 2 * directions
            assert getattr(rnn, f"weight_ih_l{k}{d}").shape == (GATES[kind] * HIDDEN // 2, inputs)
            assert getattr(rnn, f"weight_hh_l{k}{d}").shape == (GATES[kind] * HIDDEN // 2, HIDDEN // 2)
            assert getattr(rnn, f"bias_ih_l{k}{d}").shape == (GATES[kind] * HIDDEN // 2,)
    assert model.head.in_features == HIDDEN // 2 * directions
    assert model(x).shape == (2, 5, OUT)
    assert_matches_silenced(original, model, report, x)
    # the pruned module is an ordinary recurrent layer: it trains, and it takes an initial state
    model.train()
    model(x).sum().backward()
    assert rnn.weight_hh_l0.grad is not None
    assert rnn.weight_hh_l0.grad.shape == rnn.weight_hh_l0.shape
    h0 = torch.zeros(num_layers * directions, 2, HIDDEN // 2, dtype=torch.float64)
    state = (h0, h0.clone()) if kind is nn.LSTM else h0
    assert rnn(torch.zeros(2, 5, WIDTH // 2, dtype=torch.float64), state)[0].shape == (2, 5, HIDDEN // 2 * directions)


class AttentionNet(nn.Module):
    """A linear embedding, torch's multi-head attention (optionally with a residual), an MLP."""

    def __init__(self, residual: bool) -> None:
        super().__init__()
        self.residual = residual
        self.embed = nn.Linear(IN, 16)
        self.attn = nn.MultiheadAttention(16, 4, batch_first=True)
        self.fc1 = nn.Linear(16, 24)
        self.fc2 = nn.Linear(24, OUT)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        a, _ = self.attn(h, h, h, need_weights=False)
        if self.residual:
            a = a + h
        return self.fc2(nn.functional.gelu(self.fc1(a)))


@pytest.mark.parametrize("residual", [False, True], ids=["plain", "residual"])
def test_multihead_attention_pruned(residual: bool) -> None:
    """Its heads, its input width and its output width are groups of their own (more in tests/torch/test_mha.py)."""
    torch.manual_seed(0)
    model, x = AttentionNet(residual).double().eval(), _sequence()
    graph = pt.trace(model, x)
    inputs = group_with(graph, GroupKind.CHANNELS, "attn.in_proj_weight[1]")
    assert "embed.weight[0]" in labels(inputs)
    assert inputs.prunable
    out_proj = group_with(graph, GroupKind.CHANNELS, "attn.out_proj.weight[0]")
    assert out_proj.prunable
    assert (out_proj is inputs) is residual  # a residual joins the attention output to its input
    heads = group_with(graph, GroupKind.HEADS, "attn.out_proj.weight[1]")
    assert heads.prunable
    assert heads.size == 4
    mlp = group_with(graph, GroupKind.CHANNELS, "fc1.weight[0]")
    assert mlp.prunable
    assert labels(mlp) == {"fc1.weight[0]", "fc1.bias[0]", "fc2.weight[1]"}

    original, report = prune_kept(model, x)
    attn = model.attn
    assert (attn.embed_dim, attn.num_heads, attn.head_dim) == (8, 2, 4)
    assert attn.in_proj_weight.shape == (24, 8)
    assert model.embed.out_features == 8
    assert attn.out_proj.weight.shape == (8, 8)
    assert model.fc1.in_features == 8
    assert model.fc1.out_features == 12
    assert model.fc2.in_features == 12
    assert_matches_silenced(original, model, report, x)
    with torch.no_grad():  # and the other code path of the attention (with the weights returned)
        h = model.embed(x)
        assert attn(h, h, h)[0].shape == (2, 5, 8)
