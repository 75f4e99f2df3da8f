"""The demo: prune a ResNet-style model by 50% and show it is smaller, faster and still equivalent."""

from __future__ import annotations

import copy
import time

import torch

from prune_ops import costs
from prune_torch._prune import prune
from prune_torch._traced import trace_model
from prune_torch._verify import check_equivalence
from prune_torch.examples import resnet_like


def _latency(model: torch.nn.Module, x: torch.Tensor, repeats: int = 10) -> float:
    with torch.no_grad():
        model(x)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2] * 1000


def run_demo(ratio: float = 0.5, round_to: int = 8, size: int = 224) -> bool:
    """Print parameters, MACs, CPU latency and the equivalence check; return whether it passed."""
    torch.manual_seed(0)
    model = resnet_like().eval()
    x = torch.randn(1, 3, size, size)
    original = copy.deepcopy(model)
    graph = trace_model(model, x)
    before = costs(graph)
    latency_before = _latency(model, x)
    start = time.perf_counter()
    report = prune(model, x, ratio=ratio, importance="l2", round_to=round_to, ignore=["fc"])
    elapsed = time.perf_counter() - start
    latency_after = _latency(model, x)
    print(f"ResNet-style model, input {tuple(x.shape)}, {ratio:.0%} of channels by L2, round_to={round_to}")
    print(f"{'':12}{'before':>16}{'after':>16}{'ratio':>9}")
    print(f"{'parameters':12}{before.parameters:>16,}{report.after.parameters:>16,}{report.params_ratio:>9.1%}")
    print(f"{'MACs':12}{before.macs:>16,}{report.after.macs:>16,}{report.macs_ratio:>9.1%}")
    print(f"{'latency ms':12}{latency_before:>16.1f}{latency_after:>16.1f}{latency_after / latency_before:>9.1%}")
    print(
        f"pruning took {elapsed:.2f} s; every kept width is a multiple of {round_to}:",
        all(layer.after % round_to == 0 for layer in report.layers if layer.kind == "Conv2d"),
    )
    result = check_equivalence(original.double(), model.double(), report.plan, x.double(), rtol=1e-9, atol=1e-9)
    print(f"equivalence with the silenced original (float64): {result}")
    out = model(x.double())
    print(f"pruned model runs: output shape {tuple(out.shape)}")
    return result.ok
