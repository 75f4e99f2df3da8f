"""Applying a plan on an accelerator: tensors stay where they are, in their dtype, with their gradients sliced.

The same checks run on the CPU (unmarked) so that they are known to work where no GPU is present.
"""

from __future__ import annotations

import copy

import pytest
import torch
from models import FAMILIES
from support import assert_layer_attributes, prepared
from torch import nn

import prune_torch as pt

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _sliced(tensor: torch.Tensor, plan: pt.Plan, path: str) -> torch.Tensor:
    """What ``tensor`` (the state ``path``) should become under ``plan``."""
    for entry in plan.entries:
        if entry.path == path:
            keep = torch.tensor(entry.kept, device=tensor.device)
            tensor = tensor.index_select(entry.axis, keep)
    return tensor


def _check_apply_on(device: str, family: str = "mobilenetv2") -> None:
    torch.manual_seed(0)
    model = prepared(FAMILIES[family].build()).to(device)
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64, device=device)
    model(x).square().sum().backward()
    params = dict(model.named_parameters())
    grads = {name: p.grad.clone() for name, p in params.items()}
    original = copy.deepcopy(model)

    report = pt.prune(model, x, ratio=0.5)
    plan = report.plan
    assert not plan.is_empty

    before = original.state_dict()
    for name, tensor in model.state_dict().items():
        assert tensor.device == before[name].device, name
        assert tensor.dtype == before[name].dtype, name
    for name, p in model.named_parameters():
        assert p is params[name], name  # optimiser references stay valid
        assert p.dtype == torch.float64
        assert p.grad is not None, name
        assert p.grad.device == p.device, name
        assert torch.equal(p.grad, _sliced(grads[name], plan, name)), name
        assert torch.equal(p.detach(), _sliced(original.get_parameter(name).detach(), plan, name)), name
    assert_layer_attributes(model)

    result = pt.check_equivalence(original, model, plan, x, rtol=1e-9, atol=1e-11)
    assert result.ok, result
    assert model(x).device == x.device


def _check_dtype_kept(device: str, dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 1)).to(
        device, dtype
    )
    x = torch.randn(1, 3, 8, 8, device=device, dtype=dtype)
    plan = pt.plan(pt.trace(model, x), model[0], [1, 2, 5])
    pt.apply(model, plan)
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point():
            assert tensor.dtype == dtype, name
        assert tensor.device.type == torch.device(device).type, name
    assert model[0].out_channels == model[1].num_features == model[3].in_channels == 5
    assert model(x).shape == (1, 4, 8, 8)


def test_apply_on_cpu_keeps_device_dtype_and_slices_gradients() -> None:
    _check_apply_on("cpu")


def test_apply_on_cpu_keeps_low_precision() -> None:
    _check_dtype_kept("cpu", torch.bfloat16)


@pytest.mark.cuda
@CUDA
@pytest.mark.parametrize("family", ["mobilenetv2", "resnet", "unet"])
def test_apply_on_cuda_keeps_device_dtype_and_slices_gradients(family: str) -> None:
    _check_apply_on("cuda", family)


@pytest.mark.cuda
@CUDA
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_apply_on_cuda_keeps_dtype(dtype: torch.dtype) -> None:
    _check_dtype_kept("cuda", dtype)
