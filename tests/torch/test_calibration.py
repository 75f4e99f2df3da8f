"""Calibration-aware importance (Wanda, FLAP fluctuation) and FLAP-style bias compensation in ``pt.prune``."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

import prune_torch as pt
from prune_ops import ChannelStats, PruningError
from prune_torch._activations import gather_statistics


def _mlp(constant: list[int]) -> nn.Sequential:
    """4 → 8 → 3; the hidden units in ``constant`` read no input (zero weights, bias 2): a ReLU keeps them at 2."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3, bias=False))
    with torch.no_grad():
        model[0].weight[constant] = 0.0
        model[0].bias[constant] = 2.0
        model[2].weight.mul_(3.0)  # the constant units matter: silencing them moves the output
    return model.double().eval()


def _batches(n: int = 4) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return [torch.randn(16, 4, generator=gen, dtype=torch.float64) for _ in range(n)]


def test_statistics_match_hooked_inputs_and_name_each_reader() -> None:
    model = _mlp([1])
    batches = _batches()
    found = gather_statistics(model, batches, show_progress=False)
    hidden = torch.cat([torch.relu(model[0](b)) for b in batches]).detach().numpy()
    expected = ChannelStats.of(hidden)
    got = found.get("2.weight", 1)
    assert got is not None
    assert got.count == 64
    np.testing.assert_allclose(got.total, expected.total)
    np.testing.assert_allclose(got.squares, expected.squares)
    assert found.readers[("2.weight", 1)].kind == "matmul"
    assert found.get("0.weight", 1) is not None
    assert found.get("2.weight", 0) is None
    assert found.batches == 4


def test_conv_statistics_read_channels_per_pixel() -> None:
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.Conv2d(3, 2, 1)).eval()
    x = torch.randn(2, 2, 5, 5)
    found = gather_statistics(model, [x], show_progress=False)
    got = found.get("1.weight", 1)
    hidden = model[0](x).detach().movedim(1, -1).reshape(-1, 3).double().numpy()
    assert got is not None
    assert found.readers[("1.weight", 1)].kind == "conv"
    np.testing.assert_allclose(got.total, hidden.sum(axis=0), rtol=1e-6)


@pytest.mark.parametrize("importance", ["wanda", "flap"])
def test_activation_importance_removes_the_channels_calibration_shows_unused(importance: str) -> None:
    model = _mlp([1, 5])
    with torch.no_grad():  # hidden units 3 and 6: large weights, but the data never switches them on
        model[0].weight[[3, 6]] = 5.0 * torch.tensor([[1.0, 1.0, 1.0, 1.0]], dtype=torch.float64)
        model[0].bias[[3, 6]] = -100.0
    report = pt.prune(
        model, _batches()[0], ratio=0.25, importance=importance, calibration=_batches(), show_progress=False
    )
    removed = report.plan.entry("0", "weight", 0)
    assert removed is not None
    if importance == "flap":  # constant units (1, 5) and dead ones (3, 6) do not fluctuate: two of them go
        assert set(removed.removed) <= {1, 3, 5, 6}
    else:  # dead units have zero norm; constant ones do not
        assert set(removed.removed) == {3, 6}
    assert model[0].out_features == 6


def test_compensation_is_exact_for_constant_channels() -> None:
    model = _mlp([2, 7])
    original = copy.deepcopy(model)
    x = _batches(1)[0]
    report = pt.prune(
        model, x, ratio=0.25, importance="flap", calibration=_batches(), compensate=True, show_progress=False
    )
    assert report.plan.entry("0", "weight", 0).removed == (2, 7)
    assert isinstance(model[2].bias, nn.Parameter)  # the bias-free consumer got one
    torch.testing.assert_close(model(x), original(x), rtol=1e-12, atol=1e-12)
    uncompensated = copy.deepcopy(original)
    pt.prune(uncompensated, x, ratio=0.25, importance="flap", calibration=_batches(), show_progress=False)
    assert not torch.allclose(uncompensated(x), original(x), atol=1e-3)


def _llama() -> nn.Module:
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(
        vocab_size=40,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        initializer_range=0.3,
    )
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(config).eval()


@pytest.mark.parametrize("importance", ["wanda", "flap"])
def test_compensation_brings_a_pruned_llama_closer_on_calibration_data(importance: str) -> None:
    model = _llama()
    gen = torch.Generator().manual_seed(2)
    batches = [torch.randint(0, 40, (2, 16), generator=gen) for _ in range(4)]
    with torch.no_grad():
        reference = [model(b).logits for b in batches]

    def error(pruned: nn.Module) -> float:
        with torch.no_grad():
            return sum(float(((pruned(b).logits - r) ** 2).mean()) for b, r in zip(batches, reference))

    errors = {}
    for compensate in (False, True):
        pruned = copy.deepcopy(model)
        report = pt.prune(
            pruned,
            batches[0],
            ratio=0.5,
            importance=importance,
            calibration=batches,
            compensate=compensate,
            show_progress=False,
        )
        assert pruned.model.layers[0].mlp.down_proj.in_features == 32
        assert (pruned.model.layers[0].mlp.down_proj.bias is not None) is compensate
        assert report.skipped == ()
        errors[compensate] = error(pruned)
    assert errors[True] < errors[False], errors


def test_calibration_importance_needs_batches() -> None:
    with pytest.raises(PruningError, match="needs 'calibration'"):
        pt.prune(_mlp([1]), _batches()[0], importance="wanda", show_progress=False)
    with pytest.raises(PruningError, match="bias compensation needs 'calibration'"):
        pt.prune(_mlp([1]), _batches()[0], compensate=True, show_progress=False)
    with pytest.raises(PruningError, match="unknown option"):
        pt.interactive(_mlp([1]), _batches()[0], compensate=True)


def test_conv_consumers_are_named_not_compensated() -> None:
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 1)).eval()
    x = torch.randn(2, 2, 6, 6)
    report = pt.prune(model, x, ratio=0.5, importance="wanda", calibration=[x], compensate=True, show_progress=False)
    assert any("2 is a conv, not compensated" in note for note in report.skipped)
