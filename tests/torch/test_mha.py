"""torch's nn.MultiheadAttention pruned for real: heads, head dims, the widths it reads and writes.

torch's own forward needs query width == ``embed_dim`` == rows of q, k and v. A pruned attention
becomes a ``PrunedMultiheadAttention`` (same object and parameters, sizes read from its
tensors); the tracer runs plain attention through that forward too. Every prune here is checked
in float64 against the silenced original, and the removed units must have mattered.
"""

from __future__ import annotations

import copy
import io
import pickle
from typing import Any

import pytest
import torch
from support import assert_unchanged, snapshot
from torch import nn

import prune_torch as pt
from prune_ops import GroupKind
from prune_torch._mha import PrunedMultiheadAttention

WIDTH, HEADS = 16, 4


def _randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random values everywhere (key/value biases and zero-initialised heads too), float64, eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.3)
    return model.double().eval()


def _outputs(model: nn.Module, inputs: Any) -> list[torch.Tensor]:
    with torch.no_grad():
        out = model(*inputs) if isinstance(inputs, tuple) else model(inputs)
    return [out] if isinstance(out, torch.Tensor) else [t for t in out if isinstance(t, torch.Tensor)]


def _prune_checked(model: nn.Module, inputs: Any, **options: Any) -> pt.Report:
    """Prune in place; the result equals the silenced original (float64) and differs from the original."""
    original = copy.deepcopy(model)
    report = pt.prune(model, inputs, show_progress=False, **options)
    result = pt.check_equivalence(
        original, model, report.plan, inputs, rtol=1e-9, atol=1e-11, silence_outputs=report.silence_outputs
    )
    assert result.ok, str(result)
    assert result.max_rel < 1e-10, str(result)
    before, after = _outputs(original, inputs), _outputs(model, inputs)
    assert [t.shape for t in after] == [t.shape for t in before]
    assert any(not torch.allclose(a, b, rtol=1e-6, atol=1e-8) for a, b in zip(before, after)), (
        "the pruned units made no difference: the check would prove nothing"
    )
    return report


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --- the forward: the same math as torch's, for every option --------------------------------------

MODULE_OPTIONS = [
    pytest.param({}, id="packed"),
    pytest.param({"bias": False}, id="no-bias"),
    pytest.param({"add_bias_kv": True}, id="bias-kv"),
    pytest.param({"add_zero_attn": True}, id="zero-attn"),
    pytest.param({"kdim": 12, "vdim": 10}, id="kdim-vdim"),
    pytest.param({"kdim": 12, "vdim": 12, "add_bias_kv": True, "add_zero_attn": True}, id="separate-all"),
]
MASKS = [
    pytest.param({}, id="no-mask"),
    pytest.param({"padding": torch.bool}, id="padding-bool"),
    pytest.param({"padding": torch.float64}, id="padding-float"),
    pytest.param({"attn": "causal"}, id="causal-bool"),
    pytest.param({"attn": "causal", "is_causal": True}, id="is-causal"),
    pytest.param({"attn": "float", "padding": torch.bool}, id="float-and-padding"),
    pytest.param({"attn": "per-head"}, id="per-head"),
]


def _call_arguments(options: dict[str, Any], masks: dict[str, Any], batch_first: bool, batched: bool) -> tuple:
    gen = torch.Generator().manual_seed(1)
    batch, target = 2, 5
    cross = "kdim" in options
    source = 6 if cross else target

    def tensor(length: int, width: int) -> torch.Tensor:
        shape = (batch, length, width) if batch_first else (length, batch, width)
        t = torch.randn(shape, generator=gen, dtype=torch.float64)
        return t if batched else t.select(0 if batch_first else 1, 0)

    query = tensor(target, WIDTH)
    key = tensor(source, options.get("kdim", WIDTH)) if cross else query
    value = tensor(source, options.get("vdim", WIDTH)) if cross else query
    kwargs: dict[str, Any] = {}
    if "padding" in masks:
        padding = torch.zeros(batch, source, dtype=torch.bool)
        padding[0, -2:] = True
        padding = padding if masks["padding"] is torch.bool else padding.double() * -1e3
        kwargs["key_padding_mask"] = padding if batched else padding[0]
    if masks.get("attn") == "causal":
        kwargs["attn_mask"] = torch.ones(target, source, dtype=torch.bool).triu(1)
        kwargs["is_causal"] = masks.get("is_causal", False)
    elif masks.get("attn") == "float":
        kwargs["attn_mask"] = torch.randn(target, source, generator=gen, dtype=torch.float64)
    elif masks.get("attn") == "per-head":
        kwargs["attn_mask"] = torch.randn((batch if batched else 1) * HEADS, target, source, generator=gen).double()
    return (query, key, value), kwargs


@pytest.mark.parametrize("options", MODULE_OPTIONS)
@pytest.mark.parametrize("masks", MASKS)
@pytest.mark.parametrize("batch_first", [True, False], ids=["batch-first", "sequence-first"])
@pytest.mark.parametrize("need_weights", [True, False], ids=["weights", "no-weights"])
def test_own_forward_is_torchs(
    options: dict[str, Any], masks: dict[str, Any], batch_first: bool, need_weights: bool
) -> None:
    for batched in (True, False):
        attn = _randomize(nn.MultiheadAttention(WIDTH, HEADS, batch_first=batch_first, **options))
        args, kwargs = _call_arguments(options, masks, batch_first, batched)
        want = attn(*args, need_weights=need_weights, **kwargs)
        own = copy.deepcopy(attn)
        own.__class__ = PrunedMultiheadAttention
        got = own(*args, need_weights=need_weights, **kwargs)
        assert got[0].shape == want[0].shape
        torch.testing.assert_close(got[0], want[0], rtol=1e-12, atol=1e-12)
        assert (got[1] is None) == (want[1] is None)
        if want[1] is not None:
            torch.testing.assert_close(got[1], want[1], rtol=1e-12, atol=1e-12)
    per_head = own(*args, need_weights=True, average_attn_weights=False, **kwargs)[1]
    assert per_head is not None
    assert per_head.shape[-3] == HEADS


def test_own_forward_refuses_what_torch_refuses() -> None:
    attn = nn.MultiheadAttention(WIDTH, HEADS)
    attn.__class__ = PrunedMultiheadAttention
    x = torch.randn(5, 2, WIDTH)
    with pytest.raises(RuntimeError, match="Need attn_mask"):
        attn(x, x, x, is_causal=True)
    with pytest.raises(TypeError, match="made by prune_torch"):
        PrunedMultiheadAttention(WIDTH, HEADS)


# --- pruning attention inside small models ----------------------------------------------------


class AttentionNet(nn.Module):
    """Embedding, attention (self or cross, residual or not, any layout), MLP."""

    def __init__(
        self, *, residual: bool = True, batch_first: bool = True, need_weights: bool = False, **options: Any
    ) -> None:
        super().__init__()
        self.residual, self.batch_first, self.need_weights = residual, batch_first, need_weights
        self.embed = nn.Linear(6, WIDTH)
        self.kdim, self.vdim = options.get("kdim"), options.get("vdim")
        self.key = nn.Linear(6, self.kdim) if self.kdim else None
        self.value = nn.Linear(6, self.vdim) if self.vdim else None
        self.attn = nn.MultiheadAttention(WIDTH, HEADS, batch_first=batch_first, **options)
        self.fc1 = nn.Linear(WIDTH, 24)
        self.fc2 = nn.Linear(24, 3)

    def forward(self, x: torch.Tensor, padding: torch.Tensor | None = None) -> torch.Tensor:
        h = self.embed(x)
        k = self.key(x.flip(1)) if self.key is not None else h
        v = self.value(x.flip(1)) if self.value is not None else h
        if not self.batch_first:
            h, k, v = h.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)
        mask = torch.ones(x.shape[1], x.shape[1], dtype=torch.bool, device=x.device).triu(1)
        a, _ = self.attn(h, k, v, need_weights=self.need_weights, attn_mask=mask, key_padding_mask=padding)
        if self.residual:
            a = a + h
        if not self.batch_first:
            a = a.transpose(0, 1)
        return self.fc2(nn.functional.gelu(self.fc1(a)))


NETS = [
    pytest.param({}, id="self-attention"),
    pytest.param({"residual": False}, id="no-residual"),
    pytest.param({"batch_first": False}, id="sequence-first"),
    pytest.param({"need_weights": True}, id="weights-unused"),
    pytest.param({"add_bias_kv": True, "add_zero_attn": True}, id="bias-kv-zero-attn"),
    pytest.param({"kdim": 12, "vdim": 10}, id="cross-kdim-vdim"),
    pytest.param({"bias": False, "batch_first": False}, id="no-bias"),
]


def _inputs(padded: bool = False) -> Any:
    x = torch.randn(2, 5, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    if not padded:
        return x
    padding = torch.zeros(2, 5, dtype=torch.bool)
    padding[1, -2:] = True
    return (x, padding)


@pytest.mark.parametrize("net", NETS)
def test_heads_pruned_and_equal_to_the_silenced_original(net: dict[str, Any]) -> None:
    model = _randomize(AttentionNet(**net))
    x = _inputs()
    graph = pt.trace(model, x)
    heads = [g for g in graph.groups() if g.kind is GroupKind.HEADS and g.prunable and g.parameters]
    assert len(heads) == 1
    assert heads[0].size == HEADS
    assert any(m.label.startswith("attn.out_proj.weight[1]") for m in heads[0].parameters)
    before = _params(model)
    report = _prune_checked(model, x)
    attn = model.attn
    assert type(attn) is PrunedMultiheadAttention
    assert attn.num_heads == HEADS // 2
    assert attn.head_dim == WIDTH // HEADS  # whole heads by default
    assert attn.out_proj.in_features == attn.num_heads * attn.v_head_dim
    assert _params(model) < before
    assert not report.skipped, report.skipped
    assert report.approximate == ()
    # the other code path of the attention runs on the pruned module too
    h = model.embed(x)
    k = model.key(x) if model.key is not None else h
    v = model.value(x) if model.value is not None else h
    if not net.get("batch_first", True):
        h, k, v = h.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)
    out, weights = attn(h, k, v, need_weights=not net.get("need_weights", False), average_attn_weights=False)
    assert out.shape[-1] == attn.out_proj.out_features
    if weights is not None:
        assert weights.shape[1] == attn.num_heads


@pytest.mark.parametrize("net", [NETS[0], NETS[5]])
def test_head_dims_and_widths(net: dict[str, Any]) -> None:
    """Head dims, the query width (a residual stream without norm: exact) and key/value widths."""
    model = _randomize(AttentionNet(**net))
    x = _inputs()
    report = _prune_checked(model, x, head_dims=True, ratio=0.5)
    attn = model.attn
    assert attn.num_heads * attn.head_dim <= WIDTH // 2
    assert attn.head_dim < WIDTH // HEADS or attn.num_heads < HEADS
    assert attn.embed_dim == model.embed.out_features
    if net.get("kdim"):
        assert (attn.kdim, attn.vdim) == (model.key.out_features, model.value.out_features)
        assert attn.kdim < 12
        assert attn.vdim < 10
    # pruned head dims keep the scale the attention was built with
    assert attn.scaling == pytest.approx((WIDTH // HEADS) ** -0.5)
    assert report.plan.entries


def test_values_keep_their_own_head_dims() -> None:
    """With separate projections, value head dims are a group of their own (queries and keys keep theirs)."""
    model = _randomize(AttentionNet(kdim=12, vdim=10, residual=False))
    x = _inputs()
    graph = pt.trace(model, x)
    dims = [g for g in graph.groups() if g.kind is GroupKind.HEAD_DIMS and g.prunable and g.parameters]
    value_dims = [g for g in dims if any(m.label == "attn.v_proj_weight[0]" for m in g.parameters)]
    assert len(value_dims) == 1
    assert not any(m.label == "attn.q_proj_weight[0]" for m in value_dims[0].parameters)
    group = value_dims[0]
    original = copy.deepcopy(model)
    plan = pt.plan(graph, model.attn, [0, 4, 8, 12], param="v_proj_weight")  # dim 0 of every head
    assert {e.path for e in plan.entries} >= {"attn.v_proj_weight", "attn.out_proj.weight", "attn.in_proj_bias"}
    pt.apply(model, plan)
    attn = model.attn
    assert (attn.head_dim, attn.v_head_dim, attn.num_heads) == (4, 3, 4)
    assert attn.in_proj_bias.shape == (16 + 16 + 12,)
    result = pt.check_equivalence(original, model, plan, x, rtol=1e-9, atol=1e-11)
    assert result.ok, str(result)
    assert group.size == WIDTH // HEADS


def test_padding_mask_as_model_input() -> None:
    model = _randomize(AttentionNet())
    _prune_checked(model, _inputs(padded=True))
    assert model.attn.num_heads == HEADS // 2


def test_per_head_mask_keeps_the_heads() -> None:
    """A mask given per head (batch × heads rows) is a model input: its heads cannot go."""

    class PerHead(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = nn.MultiheadAttention(WIDTH, HEADS, batch_first=True)
            self.fc = nn.Linear(WIDTH, 3)

        def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return self.fc(self.attn(x, x, x, attn_mask=mask, need_weights=False)[0])

    model = _randomize(PerHead())
    inputs = (torch.randn(2, 5, WIDTH, dtype=torch.float64), torch.randn(2 * HEADS, 5, 5, dtype=torch.float64))
    heads = [g for g in pt.trace(model, inputs).groups() if g.kind is GroupKind.HEADS and g.parameters]
    assert heads
    assert not any(g.prunable for g in heads)
    pt.prune(model, inputs, ratio=0.5, show_progress=False)
    assert model.attn.num_heads == HEADS


def test_returned_weights_mix_the_heads() -> None:
    """Averaged attention weights returned by the model are a mean over heads: an approximate group."""

    class Weights(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = nn.MultiheadAttention(WIDTH, HEADS, batch_first=True)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            out, weights = self.attn(x, x, x)
            return out, weights

    model = _randomize(Weights())
    x = torch.randn(2, 5, WIDTH, dtype=torch.float64)
    heads = [g for g in pt.trace(model, x).groups() if g.kind is GroupKind.HEADS and g.parameters]
    assert len(heads) == 1
    assert heads[0].approximate
    report = pt.prune(model, x, ratio=0.5, show_progress=False)
    assert model.attn.num_heads == HEADS
    assert any("heads" in s or "mix" in s for s in report.skipped), report.skipped


def test_subclass_stays_sealed() -> None:
    class Custom(nn.MultiheadAttention):
        def forward(self, *args: Any, **kwargs: Any) -> Any:
            return super().forward(*args, **kwargs)

    model = nn.Sequential()
    attn = _randomize(Custom(WIDTH, HEADS, batch_first=True))
    x = torch.randn(2, 5, WIDTH, dtype=torch.float64)
    graph = pt.trace(attn, (x, x, x))
    assert not any(g.prunable for g in graph.groups() if g.kind is GroupKind.HEADS and g.parameters)
    assert any(op.target == "nn.Custom" for op in graph.ops)
    assert type(attn) is Custom
    assert len(model) == 0


def test_trace_leaves_the_class_alone() -> None:
    model = _randomize(AttentionNet())
    pt.trace(model, _inputs())
    assert type(model.attn) is nn.MultiheadAttention


def test_failed_apply_restores_the_class() -> None:
    """A prune the model's code cannot follow leaves torch's module exactly as it was."""

    class HardCoded(AttentionNet):
        def forward(self, x: torch.Tensor, padding: torch.Tensor | None = None) -> torch.Tensor:
            h = self.embed(x)
            a, _ = self.attn(h, h, h, need_weights=False)
            return self.fc2(self.fc1((a + h).reshape(-1, 5, WIDTH)))

    model = _randomize(HardCoded())
    x = _inputs()
    graph = pt.trace(model, x)
    plan = pt.plan(graph, model.embed, [0, 1, 2, 3])
    assert any(e.path == "attn.in_proj_weight" for e in plan.entries)
    before = snapshot(model)
    with pytest.raises(pt.ApplyError):
        pt.apply(model, plan)
    assert type(model.attn) is nn.MultiheadAttention
    assert_unchanged(model, before)


def test_pruned_attention_copies_pickles_and_reloads(tmp_path: Any) -> None:
    model = _randomize(AttentionNet())
    x = _inputs()
    pt.prune(model, x, ratio=0.5, show_progress=False)
    want = _outputs(model, x)[0]
    for copied in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert type(copied.attn) is PrunedMultiheadAttention
        torch.testing.assert_close(_outputs(copied, x)[0], want)
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    torch.testing.assert_close(_outputs(torch.load(buffer, weights_only=False), x)[0], want)
    path = tmp_path / "pruned.pt"
    pt.save_pruned(model, path)
    loaded = pt.load_pruned(_randomize(AttentionNet()), path)
    assert type(loaded.attn) is PrunedMultiheadAttention
    torch.testing.assert_close(_outputs(loaded, x)[0], want)


def test_two_steps() -> None:
    model = _randomize(AttentionNet())
    _prune_checked(model, _inputs(), ratio=0.75, steps=2)
    assert model.attn.num_heads == 1


# --- torch's transformer modules ------------------------------------------------------------------


class ViTLike(nn.Module):
    """Patch embedding, class token, position embedding, torch's TransformerEncoder, a linear head."""

    def __init__(self, width: int = 32, heads: int = 4, layers: int = 2, norm_first: bool = True) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, width, 4, stride=4)
        self.cls = nn.Parameter(torch.zeros(1, 1, width))
        self.pos = nn.Parameter(torch.zeros(1, 17, width))
        layer = nn.TransformerEncoderLayer(
            width, heads, 2 * width, dropout=0.0, batch_first=True, norm_first=norm_first
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(x.shape[0], -1, -1), tokens], dim=1) + self.pos
        return self.head(self.norm(self.encoder(tokens))[:, 0])


@pytest.mark.parametrize("norm_first", [True, False], ids=["pre-norm", "post-norm"])
def test_vit_like_encoder(norm_first: bool) -> None:
    model = _randomize(ViTLike(norm_first=norm_first))
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    before = _params(model)
    report = _prune_checked(model, x, ratio=0.5)
    for layer in model.encoder.layers:
        assert type(layer.self_attn) is PrunedMultiheadAttention
        assert layer.self_attn.num_heads == 2
        assert layer.linear1.out_features == 32
    kept = _params(model) / before
    assert kept < 0.67, kept
    # the hidden size too (LayerNorm: approximate, named in the report)
    model = _randomize(ViTLike(norm_first=norm_first))
    report = pt.prune(model, x, ratio=0.5, hidden=True, head_dims=True, show_progress=False)
    assert report.approximate
    attn = model.encoder.layers[0].self_attn
    assert attn.embed_dim == model.norm.normalized_shape[0] < 32
    assert _outputs(model, x)[0].shape == (2, 10)


def test_transformer_encoder_decoder() -> None:
    class Seq2Seq(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.src = nn.Linear(6, 32)
            self.tgt = nn.Linear(6, 32)
            self.transformer = nn.Transformer(32, 4, 2, 2, 64, dropout=0.0, batch_first=True)
            self.out = nn.Linear(32, 5)

        def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
            mask = nn.Transformer.generate_square_subsequent_mask(tgt.shape[1], dtype=tgt.dtype)
            y = self.transformer(self.src(src), self.tgt(tgt), tgt_mask=mask, tgt_is_causal=True)
            return self.out(y)

    model = _randomize(Seq2Seq())
    inputs = (torch.randn(2, 7, 6, dtype=torch.float64), torch.randn(2, 5, 6, dtype=torch.float64))
    before = _params(model)
    _prune_checked(model, inputs, ratio=0.5)
    attentions = [m for m in model.modules() if isinstance(m, nn.MultiheadAttention)]
    assert len(attentions) == 6
    assert all(type(m) is PrunedMultiheadAttention and m.num_heads == 2 for m in attentions)
    assert _params(model) / before < 0.67


def test_encoder_fast_path_after_pruning() -> None:
    """Without gradients and with a padding mask, torch's encoder would pack nested tensors for its
    fused kernel; over a pruned attention it runs the padded tensors through the pruned layers."""
    model = _randomize(ViTLike(norm_first=False))
    model.encoder.use_nested_tensor = True
    original = copy.deepcopy(model)
    tokens = torch.randn(2, 17, 32, dtype=torch.float64)
    padding = torch.zeros(2, 17, dtype=torch.bool)
    padding[1, -3:] = True
    report = pt.prune(model.encoder, (tokens, None, padding), ratio=0.5, show_progress=False)
    assert model.encoder.use_nested_tensor is False
    silenced = pt.silenced_copy(original.encoder, report.plan)
    with torch.no_grad():
        got = model.encoder(tokens, src_key_padding_mask=padding)
        torch.backends.mha.set_fastpath_enabled(False)
        try:
            want = silenced(tokens, src_key_padding_mask=padding)
        finally:
            torch.backends.mha.set_fastpath_enabled(True)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-11)


# --- attention with its sizes kept on the module (ultralytics' PSA style) -------------------------


class _ConvBN(nn.Sequential):
    def __init__(self, a: int, b: int, k: int = 1, groups: int = 1) -> None:
        super().__init__(nn.Conv2d(a, b, k, padding=k // 2, groups=groups, bias=False), nn.BatchNorm2d(b))


class PackedHeadsAttention(nn.Module):
    """Per head, ``key_dim`` query dims, ``key_dim`` key dims and ``head_dim`` value dims in one 1×1 conv,
    split by sizes kept as attributes; the output is viewed back to the input's width."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.num_heads = heads
        self.head_dim = dim // heads
        self.key_dim = self.head_dim // 2
        self.scale = self.key_dim**-0.5
        self.qkv = _ConvBN(dim, dim + 2 * self.key_dim * heads)
        self.pe = _ConvBN(dim, dim, 3, groups=dim)
        self.proj = _ConvBN(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        per_head = 2 * self.key_dim + self.head_dim
        q, k, v = (
            self.qkv(x).view(b, self.num_heads, per_head, h * w).split([self.key_dim, self.key_dim, self.head_dim], 2)
        )
        a = ((q.transpose(-2, -1) @ k) * self.scale).softmax(dim=-1)
        return self.proj((v @ a.transpose(-2, -1)).view(b, c, h, w) + self.pe(v.reshape(b, c, h, w)))


def test_split_sizes_kept_as_attributes_follow() -> None:
    """Pruning query/key dims changes the split's pieces: ``key_dim``, the one attribute that held that size, follows."""
    from prune_ops import make_plan, removal_of

    model = _randomize(nn.Sequential(_ConvBN(3, 32, 3), PackedHeadsAttention(32, 2), nn.Conv2d(32, 4, 1)))
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    graph = pt.trace(model, x)
    key_dims = [g for g in graph.groups() if g.kind is GroupKind.HEAD_DIMS and g.prunable and g.size == 8]
    assert len(key_dims) == 1
    original = copy.deepcopy(model)
    plan = make_plan(graph, removal_of(graph, [(key_dims[0], torch.tensor([1, 5]).numpy())]))
    pt.apply(model, plan)
    attn = model[1]
    assert (attn.key_dim, attn.head_dim, attn.num_heads) == (6, 16, 2)
    assert attn.qkv[0].out_channels == 32 + 2 * 6 * 2
    assert attn.scale == pytest.approx(8**-0.5)
    result = pt.check_equivalence(
        original, model, plan, x, rtol=1e-9, atol=1e-11, silence_outputs=("1.qkv.0", "1.qkv.1")
    )
    assert result.ok, str(result)
    assert not torch.allclose(_outputs(original, x)[0], _outputs(model, x)[0])
