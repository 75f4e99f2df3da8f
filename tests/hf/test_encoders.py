"""BERT and ViT (transformers, small configs, random weights): heads, head dims, MLP units, hidden size.

Each mode prunes a float64 model with ``pt.prune``; the pruned model runs its own forward, its
outputs keep their shapes (unless ``prune_outputs`` changes the hidden output on purpose), the
size attributes and the config follow, and the outputs equal those of the original with the
removed units silenced.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import numpy as np
import pytest
import torch
from torch import nn

import prune_torch as pt
from prune_ops import GroupKind

from .support import assert_matches_silenced, call, group_with, groups_of, labels, member, prune_kept

transformers = pytest.importorskip("transformers", minversion="5.0")
transformers.utils.logging.set_verbosity_error()

HIDDEN, HEADS, HEAD_DIM, INTERMEDIATE, LAYERS = 32, 4, 8, 48, 2


@attrs.frozen
class Encoder:
    """Where an encoder keeps its pieces (paths with ``{i}`` for the layer)."""

    build: Callable[[], nn.Module]
    inputs: Callable[[], Any]
    attention: str  # the module that reshapes into heads × head dims and holds the size attributes
    q: str
    k: str
    v: str
    o: str
    mlp_in: str
    mlp_out: str
    head_dim_attr: str
    embedding: str  # a parameter dim of the residual stream (``module.param[dim]``)
    final_norm: str
    seq: int


def _bert() -> nn.Module:
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=40,
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        intermediate_size=INTERMEDIATE,
        max_position_embeddings=16,
        type_vocab_size=2,
        initializer_range=0.3,  # larger than the default so attention is far from uniform
    )
    return transformers.BertModel(config).double().eval()


def _bert_inputs() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return {
        "input_ids": torch.randint(0, 40, (2, 7), generator=gen),
        "attention_mask": torch.tensor([[1] * 7, [1] * 5 + [0] * 2]),
        "token_type_ids": torch.tensor([[0] * 4 + [1] * 3, [0] * 7]),
    }


def _vit() -> nn.Module:
    torch.manual_seed(0)
    config = transformers.ViTConfig(
        image_size=16,
        patch_size=4,
        num_channels=3,
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        intermediate_size=INTERMEDIATE,
        initializer_range=0.3,
    )
    return transformers.ViTModel(config).double().eval()


def _vit_inputs() -> torch.Tensor:
    return torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


BERT = Encoder(
    build=_bert,
    inputs=_bert_inputs,
    attention="encoder.layer.{i}.attention.self",
    q="encoder.layer.{i}.attention.self.query",
    k="encoder.layer.{i}.attention.self.key",
    v="encoder.layer.{i}.attention.self.value",
    o="encoder.layer.{i}.attention.output.dense",
    mlp_in="encoder.layer.{i}.intermediate.dense",
    mlp_out="encoder.layer.{i}.output.dense",
    head_dim_attr="attention_head_size",
    embedding="embeddings.word_embeddings.weight[1]",
    final_norm="encoder.layer.1.output.LayerNorm",
    seq=7,
)
VIT = Encoder(
    build=_vit,
    inputs=_vit_inputs,
    attention="layers.{i}.attention",
    q="layers.{i}.attention.q_proj",
    k="layers.{i}.attention.k_proj",
    v="layers.{i}.attention.v_proj",
    o="layers.{i}.attention.o_proj",
    mlp_in="layers.{i}.mlp.fc1",
    mlp_out="layers.{i}.mlp.fc2",
    head_dim_attr="head_dim",
    embedding="embeddings.cls_token[2]",
    final_norm="layernorm",
    seq=17,  # 16 patches and the class token
)
ENCODERS = pytest.mark.parametrize("enc", [BERT, VIT], ids=["bert", "vit"])


def _layers(enc: Encoder, model: nn.Module, path: str) -> list[Any]:
    return [model.get_submodule(path.format(i=i)) for i in range(LAYERS)]


@ENCODERS
def test_group_structure(enc: Encoder) -> None:
    model = enc.build()
    graph = pt.trace(model, enc.inputs())
    heads = groups_of(graph, GroupKind.HEADS)
    assert len(heads) == LAYERS
    for i in range(LAYERS):
        q, k, v, o = (p.format(i=i) for p in (enc.q, enc.k, enc.v, enc.o))
        group = group_with(graph, GroupKind.HEADS, f"{q}.weight[0]")
        assert group.size == HEADS
        assert group.prunable
        assert {f"{q}.weight[0]", f"{k}.weight[0]", f"{v}.weight[0]", f"{o}.weight[1]"} <= labels(group)
        assert {f"{q}.bias[0]", f"{k}.bias[0]", f"{v}.bias[0]"} <= labels(group)
        # head h owns the rows h*head_dim ... (h+1)*head_dim-1 of every projection
        for label in (f"{q}.weight[0]", f"{v}.weight[0]", f"{o}.weight[1]"):
            np.testing.assert_array_equal(member(group, label), np.repeat(np.arange(HEADS), HEAD_DIM))
        # head dims: queries and keys share theirs (they meet in q·k), values and the output projection theirs
        qk = group_with(graph, GroupKind.HEAD_DIMS, f"{q}.weight[0]")
        assert qk.size == HEAD_DIM
        assert f"{k}.weight[0]" in labels(qk)
        assert f"{v}.weight[0]" not in labels(qk)
        np.testing.assert_array_equal(member(qk, f"{k}.weight[0]"), np.tile(np.arange(HEAD_DIM), HEADS))
        vo = group_with(graph, GroupKind.HEAD_DIMS, f"{v}.weight[0]")
        assert vo.size == HEAD_DIM
        assert f"{o}.weight[1]" in labels(vo)
        mlp = group_with(graph, GroupKind.CHANNELS, f"{enc.mlp_in.format(i=i)}.weight[0]")
        assert mlp.size == INTERMEDIATE
        assert not mlp.normalised
        assert mlp.prunable
        assert f"{enc.mlp_out.format(i=i)}.weight[1]" in labels(mlp)
    # the residual stream: one normalised group through every layer, pinned by the model output
    hidden = group_with(graph, GroupKind.CHANNELS, enc.embedding)
    assert hidden.size == HIDDEN
    assert hidden.normalised
    assert {
        f"{enc.final_norm}.weight[0]",
        f"{enc.q.format(i=1)}.weight[1]",
        f"{enc.o.format(i=0)}.weight[0]",
    } <= labels(hidden)
    assert not hidden.prunable
    assert any("model output" in b for b in hidden.blockers)
    freed = [g for g in graph.groups(prune_outputs=True) if enc.embedding in labels(g)]
    assert len(freed) == 1
    assert freed[0].prunable


@ENCODERS
def test_heads(enc: Encoder) -> None:
    model, inputs = enc.build(), enc.inputs()
    original, report = prune_kept(model, inputs)  # default: whole heads and MLP units, not the hidden size
    for att, q, o, fc in zip(*(_layers(enc, model, p) for p in (enc.attention, enc.q, enc.o, enc.mlp_in))):
        assert att.num_attention_heads == HEADS // 2
        assert getattr(att, enc.head_dim_attr) == HEAD_DIM
        assert q.weight.shape == (HEADS // 2 * HEAD_DIM, HIDDEN)
        assert q.out_features == HEADS // 2 * HEAD_DIM
        assert o.weight.shape == (HIDDEN, HEADS // 2 * HEAD_DIM)
        assert o.in_features == HEADS // 2 * HEAD_DIM
        assert fc.out_features == INTERMEDIATE // 2
    assert model.config.num_attention_heads == HEADS // 2
    assert model.config.hidden_size == HIDDEN
    assert report.silence_outputs == ()  # whole heads: the output projection's input columns are enough
    assert_matches_silenced(original, model, report, inputs)


@ENCODERS
def test_head_dims(enc: Encoder) -> None:
    model, inputs = enc.build(), enc.inputs()
    original, report = prune_kept(model, inputs, head_dims=True, head_ratio=0.0)  # head dims only, every head kept
    for att, q, k, v, o in zip(*(_layers(enc, model, p) for p in (enc.attention, enc.q, enc.k, enc.v, enc.o))):
        assert att.num_attention_heads == HEADS
        assert getattr(att, enc.head_dim_attr) == HEAD_DIM // 2
        for proj in (q, k, v):
            assert proj.weight.shape == (HEADS * HEAD_DIM // 2, HIDDEN)
        assert o.in_features == HEADS * HEAD_DIM // 2
    if enc is BERT:
        assert model.encoder.layer[0].attention.self.all_head_size == HEADS * HEAD_DIM // 2
    # the config has no head dim to follow (it derives it from hidden_size / heads); heads and width stay
    assert (model.config.num_attention_heads, model.config.hidden_size) == (HEADS, HIDDEN)
    assert getattr(model.config, "head_dim", None) is None
    # queries and keys meet in a product of activations: their removed outputs must be silenced too
    assert {enc.q.format(i=0), enc.k.format(i=0), enc.q.format(i=1), enc.k.format(i=1)} <= set(report.silence_outputs)
    assert_matches_silenced(original, model, report, inputs)
    without = pt.check_equivalence(original, model, report.plan, inputs)
    assert not without.ok, "silencing only the readers should not be enough for pruned q/k head dims"


@ENCODERS
def test_hidden_size_with_prune_outputs(enc: Encoder) -> None:
    model, inputs = enc.build(), enc.inputs()
    before = call(model, inputs)
    pt.prune(model, inputs, hidden=True, prune_outputs=True, show_progress=False)
    after = call(model, inputs)
    # The hidden size reaches the output here, so prune_outputs changes it on purpose; the pooler's
    # own output units are free as well. Equality with the silenced original cannot hold: every
    # LayerNorm over the residual stream normalises with the statistics of the removed channels.
    assert before.last_hidden_state.shape == (2, enc.seq, HIDDEN)
    assert after.last_hidden_state.shape == (2, enc.seq, HIDDEN // 2)
    assert after.pooler_output.shape == (2, model.pooler.dense.out_features)
    assert model.pooler.dense.in_features == HIDDEN // 2
    assert bool(torch.isfinite(after.last_hidden_state).all())
    assert model.config.hidden_size == HIDDEN // 2
    assert model.config.num_attention_heads == HEADS // 2
    for name, module in model.named_modules():
        if isinstance(module, nn.LayerNorm):
            assert module.normalized_shape == (HIDDEN // 2,), name
    for q, o in zip(*(_layers(enc, model, p) for p in (enc.q, enc.o))):
        assert q.in_features == HIDDEN // 2
        assert o.out_features == HIDDEN // 2


@ENCODERS
def test_hidden_size_pinned_by_output(enc: Encoder) -> None:
    model, inputs = enc.build(), enc.inputs()
    original, report = prune_kept(model, inputs, hidden=True)  # without prune_outputs the hidden size stays
    assert model.config.hidden_size == HIDDEN
    assert all(q.in_features == HIDDEN for q in _layers(enc, model, enc.q))
    assert_matches_silenced(original, model, report, inputs)


def test_bert_mlp_units_only() -> None:
    model, inputs = _bert(), _bert_inputs()
    original, report = prune_kept(model, inputs, ratio=0.25, head_ratio=0.0)
    for layer in model.encoder.layer:
        assert layer.intermediate.dense.out_features == INTERMEDIATE * 3 // 4
        assert layer.output.dense.in_features == INTERMEDIATE * 3 // 4
        assert layer.attention.self.num_attention_heads == HEADS
    assert model.config.num_attention_heads == HEADS
    assert_matches_silenced(original, model, report, inputs)
