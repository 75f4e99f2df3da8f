"""Helpers shared by the torch tests: float64 copies, random statistics, snapshots, attribute checks."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

__all__ = [
    "as_double",
    "assert_layer_attributes",
    "assert_unchanged",
    "prepared",
    "randomize_statistics",
    "snapshot",
]


def as_double(inputs: Any) -> Any:
    """Floating tensors of ``inputs`` (a tensor, tuple or dict) in float64; integer tensors as they are."""
    if isinstance(inputs, torch.Tensor):
        return inputs.double() if inputs.is_floating_point() else inputs
    if isinstance(inputs, dict):
        return {k: as_double(v) for k, v in inputs.items()}
    return tuple(as_double(v) for v in inputs)


def randomize_statistics(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every norm layer random running statistics and affine parameters.

    Fresh norm layers are identities in eval mode (mean 0, variance 1, scale 1, shift 0), which
    would hide a channel that is sliced from the wrong place; random values expose it.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            for name in ("running_mean", "bias"):
                t = getattr(module, name, None)
                if isinstance(t, torch.Tensor) and isinstance(module, nn.modules.batchnorm._NormBase | nn.GroupNorm):
                    t.copy_(torch.randn(t.shape, generator=gen) * 0.3)
            for name in ("running_var", "weight"):
                t = getattr(module, name, None)
                if isinstance(t, torch.Tensor) and isinstance(module, nn.modules.batchnorm._NormBase | nn.GroupNorm):
                    t.copy_(torch.rand(t.shape, generator=gen) + 0.5)
    return model


def prepared(model: nn.Module, seed: int = 0) -> nn.Module:
    """``model`` with random norm statistics, in float64 and eval mode (for exact comparisons)."""
    return randomize_statistics(model, seed).double().eval()


def snapshot(model: nn.Module) -> dict[str, Any]:
    """Everything a failed prune must leave alone: tensors (values, dtype, device), gradients,
    parameter objects, and every plain attribute of every module."""
    state = {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()}
    grads = {k: None if p.grad is None else p.grad.clone() for k, p in model.named_parameters()}
    objects = {k: id(p) for k, p in model.named_parameters()}
    attributes = {
        name: {
            k: copy.deepcopy(v)
            for k, v in vars(module).items()
            if not k.startswith("_") and not isinstance(v, torch.Tensor | nn.Module)
        }
        for name, module in model.named_modules()
    }
    return {"state": state, "grads": grads, "objects": objects, "attributes": attributes}


def assert_unchanged(model: nn.Module, before: dict[str, Any]) -> None:
    """``model`` is bit-identical to the ``snapshot`` taken earlier."""
    after = snapshot(model)
    assert after["state"].keys() == before["state"].keys()
    for key, old in before["state"].items():
        new = after["state"][key]
        assert new.shape == old.shape, key
        assert new.dtype == old.dtype, key
        assert new.device == old.device, key
        assert torch.equal(new, old), key
    for key, old in before["grads"].items():
        new = after["grads"][key]
        assert (new is None) == (old is None), key
        if old is not None:
            assert torch.equal(new, old), key
    assert after["objects"] == before["objects"]
    assert after["attributes"] == before["attributes"]


def assert_layer_attributes(model: nn.Module) -> None:
    """Every layer's size attributes agree with its tensors (what ``print(model)`` and re-creation read)."""
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            w = m.weight
            if m.transposed:
                assert (m.in_channels, m.out_channels) == (w.shape[0], w.shape[1] * m.groups), name
            else:
                assert (m.out_channels, m.in_channels) == (w.shape[0], w.shape[1] * m.groups), name
            assert m.out_channels % m.groups == 0, name
            assert m.in_channels % m.groups == 0, name
            if m.bias is not None:
                assert m.bias.shape == (m.out_channels,), name
        elif isinstance(m, nn.Linear):
            assert (m.out_features, m.in_features) == tuple(m.weight.shape), name
        elif isinstance(m, nn.modules.batchnorm._NormBase):
            for t in (m.weight, m.bias, m.running_mean, m.running_var):
                if t is not None:
                    assert t.shape == (m.num_features,), name
        elif isinstance(m, nn.GroupNorm):
            assert m.num_channels % m.num_groups == 0, name
            if m.weight is not None:
                assert m.weight.shape == (m.num_channels,), name
        elif isinstance(m, nn.LayerNorm) and m.weight is not None:
            assert tuple(m.weight.shape) == tuple(m.normalized_shape), name
        elif isinstance(m, nn.PReLU):
            assert m.weight.shape == (m.num_parameters,), name
        elif isinstance(m, nn.Embedding):
            assert tuple(m.weight.shape) == (m.num_embeddings, m.embedding_dim), name


def canonical_graph(graph: Any) -> tuple[Any, ...]:
    """A graph with its activation, constant and virtual ids numbered by first use.

    Two traces of one model that differ only in calls left out of the graph (autograd's below a
    layer run on real tensors) number their values differently; everything else must be equal.
    """
    names: dict[str, str] = {}
    for value in graph.values:
        if value.kind.value in ("parameter", "buffer", "input"):
            names[value.id] = value.id
    for op in graph.ops:
        for v in (*op.inputs, *op.outputs, *op.axes):
            names.setdefault(v, f"v{len(names)}")
    by_id = {v.id: v for v in graph.values}
    values = sorted((names[v.id], v.shape, v.dtype, v.kind.value, v.owner, v.name) for v in graph.values)
    ops = [
        (
            op.kind.value,
            op.target,
            op.owner,
            op.attrs,
            tuple(names[i] for i in op.inputs),
            tuple(names[o] for o in op.outputs),
            tuple(by_id[a].shape for a in op.axes),
        )
        for op in graph.ops
    ]
    return values, ops, tuple(names[v] for v in graph.inputs), tuple(names[v] for v in graph.outputs)
