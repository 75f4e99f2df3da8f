"""Tracing: outputs stay, custom and bare parameters, example input forms, meta-device models, opaque ops."""

from __future__ import annotations

import copy
import resource

import pytest
import torch
import torch.nn.functional as F
from models import FAMILIES
from support import as_double, assert_layer_attributes, canonical_graph, prepared
from torch import nn

import prune_torch as pt

RTOL, ATOL = 1e-9, 1e-11


def _exact(original: nn.Module, pruned: nn.Module, plan: pt.Plan, inputs: object) -> None:
    result = pt.check_equivalence(original, pruned, plan, inputs, rtol=RTOL, atol=ATOL)
    assert result.ok, result


class Classifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.fc = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.relu(self.conv(x)).mean((2, 3)))


# ------------------------------------------------------------------------------------------- outputs


def test_model_outputs_are_not_pruned_unless_asked() -> None:
    model = Classifier().double()
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    graph = pt.trace(model, x)
    with pytest.raises(pt.UnprunableError, match=r"fc\.weight.*model output"):
        pt.plan(graph, model.fc, [0])
    blocked = [g for g in graph.groups() if "fc" in g.modules and not g.prunable]
    assert any("model output" in "; ".join(g.blockers) for g in blocked)

    # asked for: the output loses the class
    plan = pt.plan(graph, model.fc, [0, 2], prune_outputs=True)
    pt.apply(model, plan)
    assert model.fc.out_features == 2
    assert model(x).shape == (2, 2)


def test_prune_keeps_every_output_shape() -> None:
    for name in ("aspp", "unet", "misc_layers"):
        torch.manual_seed(0)
        family = FAMILIES[name]
        model = prepared(family.build())
        x = as_double(family.inputs())
        args = x if isinstance(x, tuple) else (x,)
        before = model(*args).shape
        pt.prune(model, x, ratio=0.6)
        assert model(*args).shape == before, name


# ---------------------------------------------------------------------- custom and bare parameters


class FunctionalConv(nn.Module):
    """A conv that owns its parameters and calls ``F.conv2d`` itself (no nn.Conv2d anywhere)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.kernel = nn.Parameter(torch.randn(cout, cin, 3, 3) * 0.3)
        self.offset = nn.Parameter(torch.randn(cout) * 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.kernel, self.offset, padding=1)


class CustomNet(nn.Module):
    """A functional conv, a bare per-channel scale on the root, a bare learned token concatenated
    to the flattened features, and a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.features = FunctionalConv(3, 6)
        self.scale = nn.Parameter(torch.rand(1, 6, 1, 1) + 0.5)
        self.token = nn.Parameter(torch.randn(1, 6, 1))
        self.head = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.features(x)) * self.scale
        y = torch.cat([self.token.expand(y.shape[0], -1, -1), y.flatten(2)], 2)
        return self.head(y.mean(2))


def test_custom_functional_conv_and_bare_parameters_are_traced_and_pruned() -> None:
    torch.manual_seed(0)
    model = CustomNet().double()
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    graph = pt.trace(model, x)
    params = {v.path: v for v in graph.values if v.kind.value == "parameter"}
    assert {"features.kernel", "features.offset", "scale", "token"} <= params.keys()
    assert params["features.kernel"].owner == "features"
    conv_ops = [op for op in graph.ops if op.target == "aten.convolution"]
    assert [op.owner for op in conv_ops] == ["features"]

    (group,) = [g for g in graph.groups().prunable if "features" in g.modules]
    labels = {m.label for m in group.parameters}
    assert {"features.kernel[0]", "features.offset[0]", "scale[1]", "token[1]", "head.weight[1]"} <= labels

    original = copy.deepcopy(model)
    plan = pt.plan(graph, "features", [1, 4], param="kernel")
    pt.apply(model, plan)
    assert model.features.kernel.shape == (4, 3, 3, 3)
    assert model.scale.shape == (1, 4, 1, 1)
    assert model.token.shape == (1, 4, 1)
    assert model.head.in_features == 4
    _exact(original, model, plan, x)


def test_bare_parameter_as_target() -> None:
    model = CustomNet().double()
    x = torch.randn(1, 3, 4, 4, dtype=torch.float64)
    graph = pt.trace(model, x)
    # a parameter of the root module: its path is its name
    plan = pt.plan(graph, "", [0], param="scale", dim=1)
    assert plan == pt.plan(graph, model.features, [0], param="kernel")


# --------------------------------------------------------------------------------- example inputs


class TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.image = nn.Conv2d(3, 6, 3, padding=1)
        self.extra = nn.Linear(5, 6)
        self.head = nn.Linear(6, 2)
        self.score = nn.Linear(6, 1)

    def forward(self, image: torch.Tensor, extra: torch.Tensor, scale: float = 1.0) -> dict[str, torch.Tensor]:
        h = F.relu(self.image(image)).mean((2, 3)) + self.extra(extra) * scale
        return {"logits": self.head(h), "score": self.score(h)}


@pytest.mark.parametrize("form", ["tuple", "dict"])
def test_tuple_and_dict_example_inputs(form: str) -> None:
    torch.manual_seed(0)
    model = TwoInputs().double()
    image, extra = torch.randn(2, 3, 4, 4, dtype=torch.float64), torch.randn(2, 5, dtype=torch.float64)
    inputs = (image, extra) if form == "tuple" else {"image": image, "extra": extra, "scale": 0.5}
    graph = pt.trace(model, inputs)
    assert len(graph.inputs) == 2
    assert len(graph.outputs) == 2  # both dict entries are outputs
    original = copy.deepcopy(model)
    plan = pt.plan(graph, model.image, [0, 5])
    # the add couples the conv's channels to the other branch's features
    assert plan.entry("extra", "weight", 0).removed == (0, 5)
    pt.apply(model, plan, inputs)
    assert (model.image.out_channels, model.extra.out_features, model.head.in_features) == (4, 4, 4)
    assert model.score.in_features == 4
    _exact(original, model, plan, inputs)


def test_apply_defaults_to_stand_ins_of_the_traced_inputs() -> None:
    model = TwoInputs()
    graph = pt.trace(model, (torch.randn(2, 3, 4, 4), torch.randn(2, 5)))
    plan = pt.plan(graph, model.extra, [1])
    pt.apply(model, plan)  # no example inputs: zeros of the traced shapes, on the model's device
    assert model.extra.out_features == 5


def test_model_reading_values_falls_back_to_a_real_trace() -> None:
    class DataDependent(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(3, 4, 1)
            self.b = nn.Conv2d(4, 2, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.a(x)
            if y.sum().item() > 1e9:  # reads a value: impossible on meta
                y = -y
            return self.b(y)

    model = DataDependent()
    graph = pt.trace(model, torch.randn(1, 3, 4, 4))
    assert [op.owner for op in graph.ops if op.target == "aten.convolution"] == ["a", "b"]
    with pytest.raises(pt.TraceError, match="meta run"):
        pt.trace(model, torch.randn(1, 3, 4, 4), meta=True)
    assert pt.trace(model, torch.randn(1, 3, 4, 4), meta=False).fingerprint() == graph.fingerprint()


def test_meta_and_real_traces_agree() -> None:
    family = FAMILIES["densenet"]
    model, x = family.build(), family.inputs()
    meta, real = pt.trace(model, x, meta=True), pt.trace(model, x, meta=False)
    # the real run's layers go through autograd, whose extra calls take ids before they are dropped
    assert canonical_graph(meta) == canonical_graph(real)
    assert meta.fingerprint() == real.fingerprint()


def test_trace_errors_name_the_problem() -> None:
    with pytest.raises(pt.TraceError, match=r"needs a torch\.nn\.Module"):
        pt.trace(lambda x: x, torch.randn(1))  # type: ignore[arg-type]
    with pytest.raises(pt.TraceError, match="could not trace Classifier"):
        pt.trace(Classifier(), torch.randn(1, 4, 5, 5))  # wrong channel count


# -------------------------------------------------------------------------------------------- meta


def test_trace_a_model_far_larger_than_memory_on_meta() -> None:
    # 2 × 4·10¹⁰ float32 weights: 320 GB, more than twice this machine's memory
    with torch.device("meta"):
        model = nn.Sequential(
            nn.Linear(200_000, 200_000), nn.ReLU(), nn.Linear(200_000, 200_000), nn.Linear(200_000, 8)
        )
    assert sum(p.numel() for p in model.parameters()) > 8 * 10**10
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    graph = pt.trace(model, torch.randn(2, 200_000))
    groups = graph.groups().prunable
    assert {g.root_member.label for g in groups} == {"0.weight[0]", "2.weight[0]"}
    assert all(g.size == 200_000 for g in groups)
    # a random prune works on meta too: nothing is allocated
    report = pt.prune(model, torch.randn(2, 200_000), ratio=0.5, importance="random")
    assert model[0].out_features == model[2].in_features == 100_000
    assert model[2].out_features == 100_000
    assert model[3].in_features == 100_000
    assert model[3].out_features == 8
    assert model[0].weight.is_meta
    assert report.params_ratio < 0.4  # 1/2 of the first layer, 1/4 of the second
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
    assert grown_kb < 2_000_000  # far below the size of one weight


def test_meta_model_needs_random_importance() -> None:
    with torch.device("meta"):
        model = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 2))
    with pytest.raises(pt.PruningError, match="meta"):
        pt.prune(model, torch.randn(1, 16), ratio=0.5, importance="l1")
    with pytest.raises(pt.PruningError, match="meta"):
        pt.strategy.L1()(model[0].weight)


# ------------------------------------------------------------------------------------------ opaque


class SortChannels(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sort(x, dim=1).values


class TopChannels(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.topk(x, k=x.shape[1], dim=1).values


class PickChannels(nn.Module):
    def __init__(self, channels: list[int]) -> None:
        super().__init__()
        self.register_buffer("index", torch.tensor(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.index]


@pytest.mark.parametrize(
    ("opaque", "where"),
    [
        (SortChannels(), "aten.sort in reorder"),
        (TopChannels(), "aten.topk in reorder"),
        (PickChannels([0, 2, 4, 5, 1, 3]), "aten.index in reorder"),
    ],
    ids=["sort", "topk", "index"],
)
def test_opaque_op_on_the_channel_dim_blocks_its_group(opaque: nn.Module, where: str) -> None:
    torch.manual_seed(0)
    model = nn.Sequential()
    model.add_module("conv", nn.Conv2d(3, 6, 1))
    model.add_module("reorder", opaque)
    model.add_module("mix", nn.Conv2d(6, 6, 1))
    model.add_module("relu", nn.ReLU())
    model.add_module("head", nn.Conv2d(6, 2, 1))
    model = model.double()
    x = torch.randn(1, 3, 4, 4, dtype=torch.float64)
    graph = pt.trace(model, x)
    (blocked,) = [
        g for g in graph.groups() if "conv" in g.modules and any(m.label == "conv.weight[0]" for m in g.members)
    ]
    assert not blocked.prunable
    assert any(where in reason for reason in blocked.blockers), blocked.blockers
    with pytest.raises(pt.UnprunableError, match=where):
        pt.plan(graph, model.conv, [0])
    # the channels after the opaque op are blocked too (they read its output)
    with pytest.raises(pt.UnprunableError, match=where):
        pt.plan(graph, model.mix, [0], dim=1)
    # everything else stays prunable: the high-level call prunes around the opaque op
    original = copy.deepcopy(model)
    report = pt.prune(model, x, ratio=0.5)
    assert model.conv.out_channels == 6
    assert model.mix.in_channels == 6
    assert model.mix.out_channels == 3
    assert model.head.in_channels == 3
    assert_layer_attributes(model)
    _exact(original, model, report.plan, x)


def test_a_trace_pauses_the_collector_and_leaves_it_as_it_was() -> None:
    import gc

    seen: list[bool] = []

    class Watched(nn.Module):
        def __init__(self, fail: bool = False) -> None:
            super().__init__()
            self.fail = fail
            self.fc = nn.Linear(3, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(gc.isenabled())
            if self.fail:
                raise ValueError("broken")
            return self.fc(x)

    pt.trace(Watched(), torch.randn(2, 3)).groups()
    assert seen == [False]
    assert gc.isenabled()
    with pytest.raises(pt.TraceError, match="broken"):
        pt.trace(Watched(fail=True), torch.randn(2, 3))
    assert gc.isenabled()
    gc.disable()
    try:
        pt.trace(Watched(), torch.randn(2, 3))
        assert not gc.isenabled()  # a caller's own pause is kept
    finally:
        gc.enable()
