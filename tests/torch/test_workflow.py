"""The classic four-step workflow from the README, plans by path and by input side, JSON, and the low-level way."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from models import conv_bn_conv
from support import assert_layer_attributes, prepared, randomize_statistics
from torch import nn

import prune_torch as pt
from prune_torch import examples

# the README's 224×224 input works too; 64×64 keeps the test fast
SIZE = 64


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    torch.manual_seed(0)
    return randomize_statistics(examples.resnet_like(num_classes=10)).eval()


def test_readme_workflow(resnet: nn.Module, capsys: pytest.CaptureFixture[str]) -> None:
    model = copy.deepcopy(resnet)
    original = copy.deepcopy(resnet)

    # the four steps, exactly as the README shows them
    strategy = pt.strategy.L1()
    idxs = strategy(model.conv1.weight, amount=0.4, round_to=16)
    graph = pt.trace(model, example_inputs=torch.randn(1, 3, SIZE, SIZE))
    plan = pt.plan(graph, model.conv1, idxs)
    print(plan)
    pt.apply(model, plan)

    # 64 channels less 40 % is 38.4, rounded to a multiple of 16: 32 stay
    assert len(idxs) == 32
    norms = original.conv1.weight.detach().abs().sum((1, 2, 3))
    kept = sorted(set(range(64)) - set(idxs))
    assert norms[idxs].max() <= norms[kept].min()  # L1 removed the smallest filters

    printed = capsys.readouterr().out
    for name in ("conv1", "bn1", "layers.0.0.conv1", "layers.1.0.shortcut.0"):
        assert name in printed
    assert "64 → 32" in printed

    assert model.conv1.out_channels == 32
    assert model.bn1.num_features == 32
    assert model.layers[0][0].conv1.in_channels == 32
    assert model.layers[0][1].conv2.out_channels == 32  # the residual add couples the whole stage
    assert model.layers[1][0].shortcut[0].in_channels == 32
    assert model.layers[1][0].conv1.out_channels == 128  # the next stage keeps its own width
    assert_layer_attributes(model)
    assert torch.equal(model.conv1.weight, original.conv1.weight[kept])

    x = torch.randn(2, 3, SIZE, SIZE)
    assert model(x).shape == (2, 10)
    result = pt.check_equivalence(original, model, plan, x, rtol=1e-4, atol=1e-5)
    assert result.ok, result


def test_readme_workflow_in_float64_is_exact(resnet: nn.Module) -> None:
    model = copy.deepcopy(resnet).double()
    original = copy.deepcopy(model)
    x = torch.randn(2, 3, SIZE, SIZE, dtype=torch.float64)
    idxs = pt.strategy.L2()(model.layers[2][0].conv1.weight, amount=0.5, round_to=8)
    graph = pt.trace(model, x)
    plan = pt.plan(graph, model.layers[2][0].conv1, idxs)
    pt.apply(model, plan)
    assert model.layers[2][0].conv1.out_channels == 128
    assert model.layers[2][0].conv2.in_channels == 128
    result = pt.check_equivalence(original, model, plan, x, rtol=1e-10, atol=1e-12)
    assert result.ok, result
    # silencing matters: the unsilenced original computes something else
    assert not torch.allclose(original(x), model(x))


def test_plan_by_path_string_equals_plan_by_module(resnet: nn.Module) -> None:
    graph = pt.trace(resnet, torch.randn(1, 3, SIZE, SIZE))
    by_path = pt.plan(graph, "layers.0.0.conv1", [1, 5, 9])
    by_module = pt.plan(graph, resnet.layers[0][0].conv1, [1, 5, 9])
    assert by_path == by_module
    assert {(e.owner, e.tensor, e.axis) for e in by_path.entries} == {
        ("layers.0.0.conv1", "weight", 0),
        ("layers.0.0.bn1", "weight", 0),
        ("layers.0.0.bn1", "bias", 0),
        ("layers.0.0.bn1", "running_mean", 0),
        ("layers.0.0.bn1", "running_var", 0),
        ("layers.0.0.conv2", "weight", 1),
    }
    assert all(e.removed == (1, 5, 9) for e in by_path.entries)


def test_plan_on_the_input_side_with_dim_1(resnet: nn.Module) -> None:
    model = copy.deepcopy(resnet).double()
    original = copy.deepcopy(model)
    x = torch.randn(1, 3, SIZE, SIZE, dtype=torch.float64)
    graph = pt.trace(model, x)
    # removing input channels of conv2 removes the output channels of conv1 that feed them
    plan = pt.plan(graph, "layers.0.0.conv2", [0, 3], dim=1)
    assert plan == pt.plan(graph, "layers.0.0.conv1", [0, 3])
    assert plan.entry("layers.0.0.conv1", "weight", 0) is not None
    assert plan.entry("layers.0.0.conv2", "weight", 1).removed == (0, 3)
    pt.apply(model, plan)
    assert (model.layers[0][0].conv1.out_channels, model.layers[0][0].conv2.in_channels) == (62, 62)
    assert pt.check_equivalence(original, model, plan, x, rtol=1e-10, atol=1e-12).ok


def test_plan_json_entries(resnet: nn.Module) -> None:
    graph = pt.trace(resnet, torch.randn(1, 3, SIZE, SIZE))
    plan = pt.plan(graph, resnet.conv1, [2, 0, 7])
    doc = json.loads(plan.to_json())
    assert doc["fingerprint"] == plan.fingerprint == graph.fingerprint()
    for entry in doc["entries"]:
        assert {"owner", "tensor", "axis", "indices"} <= entry.keys()
        assert entry["indices"] == [0, 2, 7]  # sorted
    conv = next(e for e in doc["entries"] if e["owner"] == "conv1")
    assert (conv["tensor"], conv["axis"], conv["shape"]) == ("weight", 0, [64, 3, 7, 7])
    modules = {e["owner"] for e in doc["entries"]}
    assert {"conv1", "bn1", "layers.0.0.conv1", "layers.0.0.conv2", "layers.1.0.shortcut.0"} <= modules
    assert pt.Plan.from_json(plan.to_json()) == plan


def test_plan_from_json_applies_like_the_original(resnet: nn.Module) -> None:
    x = torch.randn(1, 3, SIZE, SIZE)
    a, b = copy.deepcopy(resnet), copy.deepcopy(resnet)
    plan = pt.plan(pt.trace(a, x), a.layers[1][0].conv1, range(0, 128, 2))
    pt.apply(a, plan)
    pt.apply(b, pt.Plan.from_json(plan.to_json()))
    assert a.state_dict().keys() == b.state_dict().keys()
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


# ------------------------------------------------------------------------------------------- low level


def test_low_level_conv_bn_conv_by_hand() -> None:
    torch.manual_seed(1)
    model = prepared(conv_bn_conv())
    original = copy.deepcopy(model)
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    idxs = pt.strategy.L1()(model[0].weight, amount=0.5)
    assert len(idxs) == 4

    pt.prune_conv(model[0], idxs)
    pt.prune_batchnorm(model[1], idxs)
    pt.prune_related_conv(model[3], idxs)

    assert (model[0].out_channels, model[1].num_features, model[3].in_channels) == (4, 4, 4)
    assert_layer_attributes(model)
    assert model(x).shape == (2, 4, 6, 6)

    # the silenced original: the next conv reads zero where channels were removed
    silenced = copy.deepcopy(original)
    with torch.no_grad():
        silenced[3].weight[:, idxs] = 0
    torch.testing.assert_close(model(x), silenced(x), rtol=1e-12, atol=1e-12)
    assert not torch.allclose(model(x), original(x))

    # by hand gives exactly what the traced plan gives
    planned = copy.deepcopy(original)
    plan = pt.plan(pt.trace(planned, x), planned[0], idxs)
    pt.apply(planned, plan)
    assert all(torch.equal(v, planned.state_dict()[k]) for k, v in model.state_dict().items())
    torch.testing.assert_close(pt.silenced_copy(original, plan)(x), silenced(x), rtol=0, atol=0)


def test_low_level_keeps_parameter_objects_and_slices_gradients() -> None:
    conv = nn.Conv2d(3, 6, 3)
    conv(torch.randn(1, 3, 5, 5)).sum().backward()
    weight, grad = conv.weight, conv.weight.grad.clone()
    optimizer_ref = [conv.weight, conv.bias]
    pt.prune_out_channels(conv, torch.tensor([1, 4]))
    assert conv.weight is weight
    assert optimizer_ref[0] is conv.weight
    assert torch.equal(conv.weight.grad, grad[[0, 2, 3, 5]])
    assert conv.bias.grad.shape == (4,)


def _linear() -> nn.Module:
    return nn.Linear(6, 5)


CASES = [
    # (factory, direction, indices, {attribute: value after}, {tensor: shape after}, input shape)
    (lambda: nn.Linear(6, 5), "out", [0, 4], {"out_features": 3, "in_features": 6}, {"weight": (3, 6)}, (2, 6)),
    (lambda: nn.Linear(6, 5), "in", [1, 2, 3], {"out_features": 5, "in_features": 3}, {"weight": (5, 3)}, (2, 3)),
    (lambda: nn.Conv1d(4, 6, 3), "out", [5], {"out_channels": 5}, {"weight": (5, 4, 3), "bias": (5,)}, (2, 4, 7)),
    (lambda: nn.Conv1d(4, 6, 3), "in", [0, 1], {"in_channels": 2}, {"weight": (6, 2, 3)}, (2, 2, 7)),
    (
        lambda: nn.Conv3d(2, 4, 3, padding=1),
        "out",
        [1, 2],
        {"out_channels": 2},
        {"weight": (2, 2, 3, 3, 3)},
        (1, 2, 3, 4, 5),
    ),
    (
        lambda: nn.Conv3d(2, 4, 3, padding=1),
        "in",
        [1],
        {"in_channels": 1},
        {"weight": (4, 1, 3, 3, 3)},
        (1, 1, 3, 4, 5),
    ),
    (
        lambda: nn.ConvTranspose2d(4, 6, 2, 2),
        "out",
        [0, 5],
        {"out_channels": 4, "in_channels": 4},
        {"weight": (4, 4, 2, 2), "bias": (4,)},
        (1, 4, 3, 3),
    ),
    (lambda: nn.ConvTranspose2d(4, 6, 2, 2), "in", [3], {"in_channels": 3}, {"weight": (3, 6, 2, 2)}, (1, 3, 3, 3)),
    (
        lambda: nn.BatchNorm1d(5),
        "out",
        [0, 1],
        {"num_features": 3},
        {"weight": (3,), "bias": (3,), "running_mean": (3,), "running_var": (3,)},
        (4, 3),
    ),
    (lambda: nn.BatchNorm1d(5), "in", [4], {"num_features": 4}, {"running_var": (4,)}, (4, 4, 2)),
    (lambda: nn.LayerNorm(6), "out", [2, 3], {"normalized_shape": (4,)}, {"weight": (4,), "bias": (4,)}, (2, 3, 4)),
    (lambda: nn.GroupNorm(3, 6), "out", [2, 3], {"num_channels": 4, "num_groups": 2}, {"weight": (4,)}, (2, 4, 3)),
    (lambda: nn.GroupNorm(3, 6), "in", [0, 2, 4], {"num_channels": 3, "num_groups": 3}, {"bias": (3,)}, (2, 3, 3)),
    (lambda: nn.PReLU(5), "out", [0, 3], {"num_parameters": 3}, {"weight": (3,)}, (2, 3, 4)),
    (lambda: nn.Embedding(10, 6), "out", [1, 5], {"embedding_dim": 4, "num_embeddings": 10}, {"weight": (10, 4)}, None),
]


@pytest.mark.parametrize(
    ("factory", "direction", "idxs", "attributes", "shapes", "input_shape"),
    CASES,
    ids=[f"{type(c[0]()).__name__}-{c[1]}" for c in CASES],
)
def test_prune_one_layer(factory, direction, idxs, attributes, shapes, input_shape) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    layer = factory()
    original = copy.deepcopy(layer)
    prune = pt.prune_out_channels if direction == "out" else pt.prune_in_channels
    assert prune(layer, idxs) is layer
    for name, value in attributes.items():
        assert getattr(layer, name) == value, name
    for name, shape in shapes.items():
        assert tuple(getattr(layer, name).shape) == shape, name
    assert_layer_attributes(layer)
    # every kept slice is the original's, in order
    for name, tensor in original.named_parameters():
        new = getattr(layer, name)
        for axis in range(tensor.dim()):
            if new.shape[axis] != tensor.shape[axis]:
                kept = [i for i in range(tensor.shape[axis]) if i not in idxs]
                assert torch.equal(new, tensor.index_select(axis, torch.tensor(kept))), name
    if input_shape is None:
        out = layer(torch.randint(0, 10, (2, 3)))
        assert out.shape == (2, 3, attributes["embedding_dim"])
    else:
        layer(torch.randn(input_shape))


def test_prune_shared_prelu_and_embedding_inputs_are_refused() -> None:
    shared = nn.PReLU()
    with pytest.raises(pt.InvalidIndicesError, match="leave none"):
        pt.prune_out_channels(shared, [0])
    with pytest.raises(pt.UnprunableError, match="no input channels"):
        pt.prune_in_channels(nn.Embedding(10, 6), [0])
    with pytest.raises(pt.UnprunableError, match="no per-channel tensors"):
        pt.prune_out_channels(nn.LayerNorm(4, elementwise_affine=False), [0])
    with pytest.raises(pt.UnprunableError, match="groups=2"):
        pt.prune_out_channels(nn.Conv2d(4, 4, 1, groups=2), [0])
    with pytest.raises(pt.UnprunableError, match="prune_conv needs a convolution"):
        pt.prune_conv(nn.Linear(3, 3), [0])


def test_prune_depthwise_conv_by_hand() -> None:
    dw = nn.Conv2d(6, 6, 3, groups=6)
    pt.prune_out_channels(dw, [0, 5])
    assert (dw.in_channels, dw.out_channels, dw.groups) == (4, 4, 4)
    assert dw(torch.randn(1, 4, 5, 5)).shape == (1, 4, 3, 3)


def test_group_norm_by_hand_keeps_its_groups_whole() -> None:
    # removing the same position from every group keeps the groups
    gn = nn.GroupNorm(4, 8)
    pt.prune_out_channels(gn, [1, 3, 5, 7])
    assert (gn.num_groups, gn.num_channels) == (4, 4)
    gn(torch.randn(2, 4, 3))
    # a removal that leaves groups of unequal width is refused before anything changes
    gn = nn.GroupNorm(4, 8)
    with pytest.raises(pt.UnprunableError, match="unequal width"):
        pt.prune_out_channels(gn, [0])
    assert (gn.num_groups, gn.num_channels, gn.weight.shape) == (4, 8, (8,))
