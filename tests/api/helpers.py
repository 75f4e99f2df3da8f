"""Helpers for the API tests: bit-exact snapshots, group bookkeeping, scaling a group's units."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import nn

import prune_torch as pt

__all__ = [
    "assert_same_model",
    "kept",
    "prunable_groups",
    "randomize_norms",
    "root",
    "scale_units",
    "snapshot",
    "widths",
]


def randomize_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random BatchNorm statistics and affine parameters (fresh ones are identities and hide slicing errors)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._NormBase):
                module.running_mean.copy_(torch.randn(module.num_features, generator=gen) * 0.3)
                module.running_var.copy_(torch.rand(module.num_features, generator=gen) + 0.5)
                module.weight.copy_(torch.rand(module.num_features, generator=gen) + 0.5)
                module.bias.copy_(torch.randn(module.num_features, generator=gen) * 0.3)
    return model


def snapshot(model: nn.Module) -> dict[str, Any]:
    """Every tensor (values, dtype), gradient, parameter object and plain module attribute."""
    return {
        "state": {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()},
        "grads": {k: None if p.grad is None else p.grad.clone() for k, p in model.named_parameters()},
        "objects": {k: id(p) for k, p in model.named_parameters()},
        "attributes": {
            name: {
                k: copy.deepcopy(v)
                for k, v in vars(module).items()
                if not k.startswith("_") and not isinstance(v, torch.Tensor | nn.Module)
            }
            for name, module in model.named_modules()
        },
        "history": len(pt.history(model)),
    }


def assert_same_model(model: nn.Module, before: dict[str, Any]) -> None:
    """``model`` is bit for bit what :func:`snapshot` saw."""
    after = snapshot(model)
    assert after["state"].keys() == before["state"].keys()
    for key, old in before["state"].items():
        new = after["state"][key]
        assert new.shape == old.shape, key
        assert new.dtype == old.dtype, key
        assert torch.equal(new, old), key
    for key, old in before["grads"].items():
        new = after["grads"][key]
        assert (old is None) == (new is None), key
        if old is not None:
            assert torch.equal(old, new), key
    assert after["objects"] == before["objects"]
    assert after["attributes"] == before["attributes"]
    assert after["history"] == before["history"]


def prunable_groups(model: nn.Module, inputs: Any, ignore: tuple[str, ...] = ()) -> list[Any]:
    """The prunable groups of ``model`` traced with ``inputs``."""
    return list(pt.trace(model, inputs).groups(ignore).prunable)


def root(group: Any) -> str:
    """The module whose output channels name the group."""
    return str(group.root_member.value.owner)


def widths(report: pt.Report) -> dict[str, tuple[int, int]]:
    """Output channels of every reported layer: module → (before, after)."""
    return {layer.module: (layer.before, layer.after) for layer in report.layers}


def kept(model: nn.Module, module: str) -> int:
    """Output channels of a conv / linear / norm layer of ``model`` now."""
    layer = model.get_submodule(module)
    for name in ("out_channels", "out_features", "num_features"):
        if hasattr(layer, name):
            return int(getattr(layer, name))
    raise AssertionError(f"{module} has no width attribute")


def scale_units(model: nn.Module, group: Any, units: Iterable[int], factor: float) -> None:
    """Multiply every parameter slice of ``group``'s ``units`` by ``factor`` (all members at once)."""
    wanted = np.asarray(sorted(units), dtype=np.int64)
    with torch.no_grad():
        for member in group.parameters:
            if member.value.kind.value != "parameter":
                continue
            module = model.get_submodule(member.value.owner) if member.value.owner else model
            tensor = getattr(module, member.value.name)
            index = torch.as_tensor(np.flatnonzero(np.isin(member.units, wanted)), dtype=torch.long)
            tensor.index_copy_(member.dim.dim, index, tensor.index_select(member.dim.dim, index) * factor)
