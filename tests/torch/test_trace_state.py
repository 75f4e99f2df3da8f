"""Tracing leaves a model as it found it (caches filled in place included), and refuses TorchScript up front."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import prune_torch as pt


class BiasCache(nn.Module):
    """Attention whose positional biases are cached per device in a dict (as timm's LeViT / EfficientFormer)."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(8, 24)
        self.proj = nn.Linear(8, 8)
        self.biases = nn.Parameter(torch.randn(2, 5))
        self.register_buffer("idx", torch.randint(0, 5, (5, 5), generator=torch.Generator().manual_seed(0)))
        self.cache: dict[str, torch.Tensor] = {}
        self.seen: list[torch.Tensor] = []

    def bias(self, device: torch.device) -> torch.Tensor:
        if self.training:
            return self.biases[:, self.idx]
        key = str(device)
        if key not in self.cache:
            self.cache[key] = self.biases[:, self.idx]
        return self.cache[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, 2, 4).permute(2, 0, 3, 1, 4)
        self.seen.append(q)
        a = (q @ k.transpose(-2, -1) + self.bias(x.device)).softmax(-1)
        return self.proj((a @ v).transpose(1, 2).reshape(b, n, 8))


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), BiasCache(), nn.GELU(), nn.Linear(8, 3)).double().eval()


@pytest.mark.parametrize("meta", [True, False], ids=["meta", "real"])
def test_caches_filled_in_place_are_put_back(meta: bool) -> None:
    model = _model()
    x = torch.randn(2, 5, 4, dtype=torch.float64)
    pt.trace(model, x, meta=meta)
    assert model[1].cache == {}
    assert model[1].seen == []
    copy.deepcopy(model)  # a traced (non-leaf, or meta) tensor left in the dict would make this fail


def test_existing_cache_entries_stay() -> None:
    model = _model()
    x = torch.randn(2, 5, 4, dtype=torch.float64)
    with torch.no_grad():
        model(x)
    cached = model[1].cache["cpu"]
    pt.trace(model, x, meta=False)
    assert list(model[1].cache) == ["cpu"]
    assert model[1].cache["cpu"] is cached
    assert len(model[1].seen) == 1


def test_prune_and_check_a_model_with_a_cache() -> None:
    model = _model()
    x = torch.randn(2, 5, 4, dtype=torch.float64)
    original = copy.deepcopy(model)
    report = pt.prune(model, x, ratio=0.5, show_progress=False, verify=True)
    assert model[0].out_features < 8
    assert pt.check_equivalence(original, model, report.plan, x).ok
    copy.deepcopy(model)


class Scripted(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = torch.jit.script(nn.Sequential(nn.Linear(4, 8), nn.ReLU()))
        self.fc = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x))


@pytest.mark.parametrize("where", ["model", "child"])
def test_torchscript_is_refused_up_front(where: str) -> None:
    model = (
        torch.jit.script(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))) if where == "model" else Scripted()
    )
    x = torch.randn(2, 4)
    expected = "the model is a TorchScript module" if where == "model" else "module 'body' is a TorchScript module"
    for call in (lambda: pt.trace(model, x), lambda: pt.prune(model, x, ratio=0.5, show_progress=False)):
        with pytest.raises(pt.TraceError, match=expected) as caught:
            call()
        assert "Prune the eager model" in str(caught.value)
        assert caught.value.module == ("" if where == "model" else "body")
