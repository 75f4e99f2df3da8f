"""GPT-2 and LLaMA with grouped-query attention (transformers, small configs, random weights).

Modes: whole heads (default), head dims (``head_dims=True``), query heads within each key/value
group (``query_heads=True``, LLaMA), MLP units (default), the hidden size (``hidden=True``; the
logits are vocabulary-sized, so the hidden size does not reach the output and no
``prune_outputs`` is needed). Equality with the silenced original is checked in float64 for all
but the hidden size, which LayerNorm / RMSNorm normalise together (see the tests).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import prune_torch as pt
from prune_ops import GroupKind

from .support import assert_matches_silenced, call, group_with, groups_of, labels, member, prune_kept

transformers = pytest.importorskip("transformers", minversion="5.0")
transformers.utils.logging.set_verbosity_error()

VOCAB, HIDDEN, INTERMEDIATE, LAYERS = 40, 32, 48, 2
GPT2_HEADS, GPT2_HEAD_DIM = 4, 8
Q_HEADS, KV_HEADS, HEAD_DIM = 8, 2, 8  # LLaMA: 4 query heads per key/value head
REPEATS = Q_HEADS // KV_HEADS


def _ids() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return {
        "input_ids": torch.randint(0, VOCAB, (2, 7), generator=gen),
        "attention_mask": torch.tensor([[1] * 7, [1] * 5 + [0] * 2]),
    }


def _gpt2() -> nn.Module:
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=VOCAB,
        n_positions=16,
        n_embd=HIDDEN,
        n_layer=LAYERS,
        n_head=GPT2_HEADS,
        n_inner=INTERMEDIATE,
        initializer_range=0.3,  # larger than the default so attention is far from uniform
    )
    return transformers.GPT2LMHeadModel(config).double().eval()


def _llama(**overrides: int) -> nn.Module:
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        **{
            "vocab_size": VOCAB,
            "hidden_size": HIDDEN,
            "intermediate_size": INTERMEDIATE,
            "num_hidden_layers": LAYERS,
            "num_attention_heads": Q_HEADS,
            "num_key_value_heads": KV_HEADS,
            "head_dim": HEAD_DIM,
            "max_position_embeddings": 32,
            "initializer_range": 0.3,
            **overrides,
        }
    )
    return transformers.LlamaForCausalLM(config).double().eval()


def _logits_shape(model: nn.Module) -> None:
    assert call(model, _ids()).logits.shape == (2, 7, VOCAB)


# --- GPT-2 ------------------------------------------------------------------------------------


def test_gpt2_group_structure() -> None:
    model = _gpt2()
    graph = pt.trace(model, _ids())
    assert len(groups_of(graph, GroupKind.HEADS)) == LAYERS
    for i in range(LAYERS):
        c_attn, c_proj = f"transformer.h.{i}.attn.c_attn", f"transformer.h.{i}.attn.c_proj"
        # one Conv1D makes q, k and v (its weight is stored (in, out)); the split makes them lose the same heads
        heads = group_with(graph, GroupKind.HEADS, f"{c_attn}.weight[1]")
        assert heads.size == GPT2_HEADS
        assert heads.prunable
        assert {f"{c_attn}.bias[0]", f"{c_proj}.weight[0]"} <= labels(heads)
        per_head = np.repeat(np.arange(GPT2_HEADS), GPT2_HEAD_DIM)
        np.testing.assert_array_equal(member(heads, f"{c_attn}.weight[1]"), np.tile(per_head, 3))
        np.testing.assert_array_equal(member(heads, f"{c_proj}.weight[0]"), per_head)
        dims = group_with(graph, GroupKind.HEAD_DIMS, f"{c_attn}.weight[1]")
        assert dims.size == GPT2_HEAD_DIM
        assert f"{c_proj}.weight[0]" in labels(dims)
        mlp = group_with(graph, GroupKind.CHANNELS, f"transformer.h.{i}.mlp.c_fc.weight[1]")
        assert mlp.size == INTERMEDIATE
        assert not mlp.normalised
    hidden = group_with(graph, GroupKind.CHANNELS, "transformer.wte.weight[1]")
    assert hidden.size == HIDDEN
    assert hidden.normalised
    assert hidden.prunable
    assert {"transformer.wpe.weight[1]", "transformer.ln_f.weight[0]", "transformer.h.1.attn.c_proj.weight[1]"} <= (
        labels(hidden)
    )


def test_gpt2_heads() -> None:
    model, inputs = _gpt2(), _ids()
    original, report = prune_kept(model, inputs)
    for block in model.transformer.h:
        assert block.attn.num_heads == GPT2_HEADS // 2
        assert block.attn.head_dim == GPT2_HEAD_DIM
        assert block.attn.split_size == GPT2_HEADS // 2 * GPT2_HEAD_DIM
        assert block.attn.c_attn.weight.shape == (HIDDEN, 3 * GPT2_HEADS // 2 * GPT2_HEAD_DIM)
        assert block.attn.c_proj.weight.shape == (GPT2_HEADS // 2 * GPT2_HEAD_DIM, HIDDEN)
        assert block.mlp.c_fc.weight.shape == (HIDDEN, INTERMEDIATE // 2)
    assert (model.config.n_head, model.config.n_embd) == (GPT2_HEADS // 2, HIDDEN)
    assert model.lm_head.weight is model.transformer.wte.weight
    _logits_shape(model)
    assert_matches_silenced(original, model, report, inputs)


def test_gpt2_head_dims() -> None:
    model, inputs = _gpt2(), _ids()
    original, report = prune_kept(model, inputs, head_dims=True, head_ratio=0.0)
    for block in model.transformer.h:
        assert block.attn.num_heads == GPT2_HEADS
        assert block.attn.head_dim == GPT2_HEAD_DIM // 2
        assert block.attn.split_size == GPT2_HEADS * GPT2_HEAD_DIM // 2
        assert block.attn.c_attn.weight.shape == (HIDDEN, 3 * GPT2_HEADS * GPT2_HEAD_DIM // 2)
    assert (model.config.n_head, model.config.n_embd) == (GPT2_HEADS, HIDDEN)
    assert "transformer.h.0.attn.c_attn" in report.silence_outputs
    _logits_shape(model)
    assert_matches_silenced(original, model, report, inputs)


@pytest.mark.parametrize("head_ratio", [None, 0.0], ids=["with-heads", "hidden-only"])
def test_gpt2_hidden_size_keeps_tied_embeddings(head_ratio: float | None) -> None:
    model, inputs = _gpt2(), _ids()
    wte = model.transformer.wte.weight
    assert model.lm_head.weight is wte
    pt.prune(model, inputs, hidden=True, head_ratio=head_ratio, show_progress=False)
    # Forward and shapes only: every LayerNorm over the residual stream normalises with the
    # statistics of all its channels, so silencing the removed ones cannot reproduce the original.
    heads = GPT2_HEADS if head_ratio == 0.0 else GPT2_HEADS // 2
    assert model.transformer.wte.weight is wte  # the same Parameter object, sliced in place
    assert model.lm_head.weight is model.transformer.wte.weight
    assert wte.shape == (VOCAB, HIDDEN // 2)
    assert model.transformer.wpe.weight.shape == (16, HIDDEN // 2)
    assert model.transformer.ln_f.normalized_shape == (HIDDEN // 2,)
    for block in model.transformer.h:
        assert block.attn.c_attn.weight.shape == (HIDDEN // 2, 3 * heads * GPT2_HEAD_DIM)
        assert block.attn.num_heads == heads
        assert block.attn.split_size == heads * GPT2_HEAD_DIM
        assert block.mlp.c_proj.weight.shape == (INTERMEDIATE // 2, HIDDEN // 2)
    assert (model.config.n_embd, model.config.hidden_size, model.config.n_head) == (HIDDEN // 2, HIDDEN // 2, heads)
    _logits_shape(model)


# --- LLaMA with grouped-query attention -------------------------------------------------------


def _attn(model: nn.Module) -> list[nn.Module]:
    return [layer.self_attn for layer in model.model.layers]


def _config(model: nn.Module) -> tuple[int, int, int, int]:
    c = model.config
    return c.num_attention_heads, c.num_key_value_heads, c.head_dim, c.hidden_size


def test_llama_group_structure() -> None:
    model = _llama()
    graph = pt.trace(model, _ids())
    assert len(groups_of(graph, GroupKind.HEADS)) == LAYERS
    assert len(groups_of(graph, GroupKind.QUERY_HEADS)) == LAYERS
    for i in range(LAYERS):
        q, k, v, o = (f"model.layers.{i}.self_attn.{n}_proj" for n in "qkvo")
        # whole key/value heads, each with its query heads
        heads = group_with(graph, GroupKind.HEADS, f"{k}.weight[0]")
        assert heads.size == KV_HEADS
        assert heads.prunable
        assert {f"{q}.weight[0]", f"{v}.weight[0]", f"{o}.weight[1]"} <= labels(heads)
        np.testing.assert_array_equal(member(heads, f"{k}.weight[0]"), np.repeat(np.arange(KV_HEADS), HEAD_DIM))
        np.testing.assert_array_equal(
            member(heads, f"{q}.weight[0]"), np.repeat(np.arange(KV_HEADS), REPEATS * HEAD_DIM)
        )
        # the same query heads within every key/value group: queries and the output projection only
        query = group_with(graph, GroupKind.QUERY_HEADS, f"{q}.weight[0]")
        assert query.size == REPEATS
        assert query.prunable
        assert labels(query) == {f"{q}.weight[0]", f"{o}.weight[1]"}
        per_group = np.repeat(np.arange(REPEATS), HEAD_DIM)
        np.testing.assert_array_equal(member(query, f"{q}.weight[0]"), np.tile(per_group, KV_HEADS))
        # value head dims, per layer
        vdims = group_with(graph, GroupKind.HEAD_DIMS, f"{v}.weight[0]")
        assert vdims.size == HEAD_DIM
        assert labels(vdims) == {f"{v}.weight[0]", f"{o}.weight[1]"}
        mlp = group_with(graph, GroupKind.CHANNELS, f"model.layers.{i}.mlp.gate_proj.weight[0]")
        assert mlp.size == INTERMEDIATE
        assert not mlp.normalised
        assert {f"model.layers.{i}.mlp.up_proj.weight[0]", f"model.layers.{i}.mlp.down_proj.weight[1]"} <= labels(mlp)
    # rotary head dims: the shared inv_freq couples q and k of every layer, and rotate_half pairs d with d + head_dim/2
    rotary = group_with(graph, GroupKind.HEAD_DIMS, "model.rotary_emb.inv_freq[0]")
    assert rotary.size == HEAD_DIM // 2
    assert rotary.prunable
    assert labels(rotary) == {
        "model.rotary_emb.inv_freq[0]",
        *(f"model.layers.{i}.self_attn.{n}_proj.weight[0]" for i in range(LAYERS) for n in "qk"),
    }
    pairs = np.tile(np.arange(HEAD_DIM // 2), 2)  # d and d + head_dim/2 are one unit
    for i in range(LAYERS):
        np.testing.assert_array_equal(
            member(rotary, f"model.layers.{i}.self_attn.k_proj.weight[0]"), np.tile(pairs, KV_HEADS)
        )
        np.testing.assert_array_equal(
            member(rotary, f"model.layers.{i}.self_attn.q_proj.weight[0]"), np.tile(pairs, Q_HEADS)
        )
    hidden = group_with(graph, GroupKind.CHANNELS, "model.embed_tokens.weight[1]")
    assert hidden.size == HIDDEN
    assert hidden.normalised
    assert hidden.prunable
    assert {"model.norm.weight[0]", "lm_head.weight[1]", "model.layers.1.input_layernorm.weight[0]"} <= labels(hidden)


def test_llama_kv_heads() -> None:
    model, inputs = _llama(), _ids()
    original, report = prune_kept(model, inputs)  # default: whole key/value heads (with their queries) and MLP units
    for att in _attn(model):
        assert att.k_proj.out_features == att.v_proj.out_features == KV_HEADS // 2 * HEAD_DIM
        assert att.q_proj.out_features == att.o_proj.in_features == Q_HEADS // 2 * HEAD_DIM
        assert att.num_key_value_groups == REPEATS
        assert att.head_dim == HEAD_DIM
    for layer in model.model.layers:
        assert layer.mlp.gate_proj.out_features == layer.mlp.down_proj.in_features == INTERMEDIATE // 2
    assert _config(model) == (Q_HEADS // 2, KV_HEADS // 2, HEAD_DIM, HIDDEN)
    _logits_shape(model)
    assert_matches_silenced(original, model, report, inputs)


def test_llama_head_dims() -> None:
    model, inputs = _llama(), _ids()
    original, report = prune_kept(model, inputs, head_dims=True, head_ratio=0.0)
    for att in _attn(model):
        assert att.head_dim == HEAD_DIM // 2
        assert att.num_key_value_groups == REPEATS
        assert att.q_proj.out_features == att.o_proj.in_features == Q_HEADS * HEAD_DIM // 2
        assert att.k_proj.out_features == att.v_proj.out_features == KV_HEADS * HEAD_DIM // 2
        # the scale keeps the original head dim: that is what the original computes
        assert att.scaling == pytest.approx(HEAD_DIM**-0.5)
    assert model.model.rotary_emb.inv_freq.shape == (HEAD_DIM // 4,)
    assert _config(model) == (Q_HEADS, KV_HEADS, HEAD_DIM // 2, HIDDEN)
    assert {"model.rotary_emb", "model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.k_proj"} <= set(
        report.silence_outputs
    )
    _logits_shape(model)
    assert_matches_silenced(original, model, report, inputs)
    assert not pt.check_equivalence(original, model, report.plan, inputs).ok  # q·k needs the silenced outputs


def test_llama_query_heads() -> None:
    model, inputs = _llama(), _ids()
    original, report = prune_kept(model, inputs, query_heads=True)
    # half the query channels go, split between key/value heads (2) and query heads per key/value
    # head (4): the nearest even split keeps both key/value heads and 2 query heads in each
    for att in _attn(model):
        assert att.num_key_value_groups == REPEATS // 2
        assert att.k_proj.out_features == KV_HEADS * HEAD_DIM
        assert att.q_proj.out_features == KV_HEADS * REPEATS // 2 * HEAD_DIM == Q_HEADS * HEAD_DIM // 2
    assert _config(model) == (KV_HEADS * REPEATS // 2, KV_HEADS, HEAD_DIM, HIDDEN)
    _logits_shape(model)
    assert_matches_silenced(original, model, report, inputs)


def test_llama_query_heads_alone() -> None:
    """Only the query-head proposals, accepted one by one: every key/value head stays with fewer queries."""
    model, inputs = _llama(), _ids()
    original = _llama()
    session = pt.interactive(model, inputs, query_heads=True)
    kinds = {p.group.kind for p in session}
    assert {GroupKind.QUERY_HEADS, GroupKind.CHANNELS} <= kinds
    for proposal in session:
        if proposal.group.kind is GroupKind.QUERY_HEADS:
            assert len(proposal.units) == REPEATS // 2
            proposal.accept()
    report = session.apply()
    for att in _attn(model):
        assert att.num_key_value_groups == REPEATS // 2
        assert att.k_proj.out_features == KV_HEADS * HEAD_DIM
        assert att.q_proj.out_features == Q_HEADS // 2 * HEAD_DIM
    assert all(layer.mlp.gate_proj.out_features == INTERMEDIATE for layer in model.model.layers)
    assert _config(model) == (Q_HEADS // 2, KV_HEADS, HEAD_DIM, HIDDEN)
    assert_matches_silenced(original, model, report, inputs)


@pytest.mark.parametrize("masked", [True, False], ids=["traced-with-mask", "traced-without-mask"])
def test_llama_multi_query(masked: bool) -> None:
    """One key/value head (multi-query attention): it cannot go, its query heads can, and the repeat
    count follows. The model runs both ways afterwards: repeating the key/value head explicitly (with
    a padding mask) and through SDPA's grouped-query mode (without one)."""
    model, inputs = _llama(num_key_value_heads=1), _ids()
    graph = pt.trace(model, inputs)
    assert not groups_of(graph, GroupKind.QUERY_HEADS)  # with one key/value head, query heads are the heads
    heads = group_with(graph, GroupKind.HEADS, "model.layers.0.self_attn.q_proj.weight[0]")
    assert heads.size == Q_HEADS
    assert labels(heads) == {
        "model.layers.0.self_attn.q_proj.weight[0]",
        "model.layers.0.self_attn.o_proj.weight[1]",
    }
    original = _llama(num_key_value_heads=1)
    report = pt.prune(model, inputs if masked else inputs["input_ids"], show_progress=False)
    assert report.plan.entries
    assert _config(model) == (Q_HEADS // 2, 1, HEAD_DIM, HIDDEN)
    for att in _attn(model):
        assert att.num_key_value_groups == Q_HEADS // 2
        assert att.q_proj.out_features == Q_HEADS // 2 * HEAD_DIM
        assert att.k_proj.out_features == HEAD_DIM
    assert_matches_silenced(original, model, report, inputs)
    assert_matches_silenced(original, model, report, inputs["input_ids"])


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_llama_hidden_size(tied: bool) -> None:
    model, inputs = _llama(tie_word_embeddings=tied), _ids()
    embed = model.model.embed_tokens.weight
    assert (model.lm_head.weight is embed) is tied
    pt.prune(model, inputs, hidden=True, show_progress=False)
    # Forward and shapes only: RMSNorm divides by the root mean square over all hidden channels,
    # so the pruned model cannot equal the original with the removed channels silenced.
    assert (model.lm_head.weight is model.model.embed_tokens.weight) is tied
    assert embed.shape == (VOCAB, HIDDEN // 2)
    assert model.lm_head.weight.shape == (VOCAB, HIDDEN // 2)
    assert model.model.norm.weight.shape == (HIDDEN // 2,)
    for layer in model.model.layers:
        assert layer.input_layernorm.weight.shape == layer.post_attention_layernorm.weight.shape == (HIDDEN // 2,)
        assert layer.self_attn.q_proj.in_features == layer.mlp.up_proj.in_features == HIDDEN // 2
        assert layer.self_attn.o_proj.out_features == layer.mlp.down_proj.out_features == HIDDEN // 2
    assert _config(model) == (Q_HEADS // 2, KV_HEADS // 2, HEAD_DIM, HIDDEN // 2)
    logits = call(model, inputs).logits
    assert logits.shape == (2, 7, VOCAB)
    assert bool(torch.isfinite(logits).all())


def test_llama_everything_runs_as_a_model() -> None:
    """All modes at once; the pruned model still generates with its key/value cache and trains."""
    model, inputs = _llama(), _ids()
    pt.prune(model, inputs, head_dims=True, query_heads=True, hidden=True, show_progress=False)
    # half the query channels, as whole query heads (the nearest even split of 2 × 4 × 4 rotary pairs)
    assert _config(model) == (Q_HEADS // 2, KV_HEADS, HEAD_DIM, HIDDEN // 2)
    tokens = model.generate(
        inputs["input_ids"][:1],
        attention_mask=inputs["attention_mask"][:1],
        max_new_tokens=3,
        do_sample=False,
        pad_token_id=0,
    )
    assert tokens.shape == (1, 10)
    model.train()
    out = model(**inputs, labels=inputs["input_ids"])
    out.loss.backward()
    assert all(p.grad is not None and p.grad.shape == p.shape for p in model.parameters())


UNEVEN_HEAD_DIMS = [
    # q/k rotary units are pairs of dims, v units single dims: a 0.4 ratio asks for 1 pair and 3 singles,
    # and the pruner lowers both to the same 2 dims per head, which every reshape in the layer can follow
    pytest.param({"ratio": 0.4}, id="ratio-0.4"),
    # step 2 would leave q/k at 6 dims and cut v to 5: the attention modules cannot follow, and prune
    # leaves those groups alone (and says so) while the rest of the step goes ahead
    pytest.param({"ratio": 0.5, "steps": 2}, id="two-steps"),
]


@pytest.mark.parametrize("options", UNEVEN_HEAD_DIMS)
def test_llama_head_dims_uneven(options: dict[str, float]) -> None:
    model, inputs = _llama(), _ids()
    original, report = prune_kept(model, inputs, head_dims=True, head_ratio=0.0, **options)
    head_dim = model.config.head_dim
    assert head_dim < HEAD_DIM
    for att in _attn(model):
        assert att.head_dim == head_dim
        assert att.q_proj.out_features == att.o_proj.in_features == Q_HEADS * head_dim
        assert att.k_proj.out_features == att.v_proj.out_features == KV_HEADS * head_dim
    # only what touches the attention modules may be left alone: the MLP units went in every step
    assert all(".self_attn " in note for note in report.skipped), report.skipped
    mlp_left = INTERMEDIATE * (1 - options["ratio"]) + 1
    assert all(layer.mlp.up_proj.out_features <= mlp_left for layer in model.model.layers)
    _logits_shape(model)
    assert_matches_silenced(original, model, report, inputs)
