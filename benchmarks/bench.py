"""Benchmarks against Torch-Pruning, side by side in one run.

For each model: graph build time and full prune time (build, importance, selection, apply at
50% L2), ours and theirs in alternation, median of ``--repeats`` runs after a warm-up; peak
resident memory of each in a separate process. Then a depth-scaling run on ResNet-style models,
and the Llama-3-8B configuration traced on the meta device. Writes docs/benchmarks.md.

    python benchmarks/bench.py --out docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

import prune_torch as pt

torch.set_num_threads(max(1, torch.get_num_threads()))


# -- models ----------------------------------------------------------------------------------------
def _tv(name: str) -> Callable[[], tuple[nn.Module, Any, list[str]]]:
    def build() -> tuple[nn.Module, Any, list[str]]:
        import torchvision

        model = torchvision.models.get_model(name, weights=None).eval()
        head = {
            "resnet50": "fc",
            "densenet121": "classifier",
            "mobilenet_v2": "classifier.1",
            "vit_b_16": "heads.head",
            "convnext_tiny": "classifier.2",
        }[name]
        return model, torch.randn(1, 3, 224, 224), [head]

    return build


def _bert() -> tuple[nn.Module, Any, list[str]]:
    from transformers import BertConfig, BertModel
    from transformers.utils import logging

    logging.set_verbosity_error()
    model = BertModel(BertConfig()).eval()  # BERT-base: 12 layers, hidden 768, 12 heads
    return model, {"input_ids": torch.randint(0, 30522, (1, 128))}, ["pooler.dense"]


def _llama() -> tuple[nn.Module, Any, list[str]]:
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging

    logging.set_verbosity_error()
    config = LlamaConfig(
        hidden_size=1024,
        intermediate_size=2816,
        num_hidden_layers=8,
        num_attention_heads=16,
        num_key_value_heads=4,
        vocab_size=32000,
        max_position_embeddings=512,
    )
    return LlamaForCausalLM(config).eval(), {"input_ids": torch.randint(0, 32000, (1, 64))}, ["lm_head"]


MODELS: dict[str, Callable[[], tuple[nn.Module, Any, list[str]]]] = {
    "resnet50": _tv("resnet50"),
    "densenet121": _tv("densenet121"),
    "mobilenet_v2": _tv("mobilenet_v2"),
    "vit_b_16": _tv("vit_b_16"),
    "convnext_tiny": _tv("convnext_tiny"),
    "bert-base": _bert,
    "llama (1024 hidden, 8 layers, GQA)": _llama,
}


class Residual(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))


def deep_resnet(blocks: int, width: int = 32) -> tuple[nn.Module, Any, list[str]]:
    body = [nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
    body += [Residual(width) for _ in range(blocks)]
    model = nn.Sequential(*body, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 10)).eval()
    return model, torch.randn(1, 3, 32, 32), [str(len(body) + 2)]


# -- the two libraries -----------------------------------------------------------------------------
def ours_build(model: nn.Module, inputs: Any, ignore: list[str]) -> None:
    pt.trace(model, inputs).groups()


def ours_prune(model: nn.Module, inputs: Any, ignore: list[str]) -> None:
    pt.prune(model, inputs, ratio=0.5, importance="l2", ignore=ignore, show_progress=False)


def _first_tensor(output: Any) -> torch.Tensor:
    """What Torch-Pruning needs from a Hugging Face output: one tensor to walk back from."""
    if isinstance(output, torch.Tensor):
        return output
    if hasattr(output, "to_tuple"):
        output = output.to_tuple()
    return output[0] if isinstance(output, (tuple, list)) else output


def theirs_build(model: nn.Module, inputs: Any, ignore: list[str]) -> None:
    import torch_pruning as tp

    tp.DependencyGraph().build_dependency(model, example_inputs=inputs, output_transform=_first_tensor)


def theirs_prune(model: nn.Module, inputs: Any, ignore: list[str]) -> None:
    import torch_pruning as tp

    ignored = [model.get_submodule(path) for path in ignore]
    pruner = tp.pruner.BasePruner(
        model,
        inputs,
        importance=tp.importance.GroupMagnitudeImportance(p=2),
        pruning_ratio=0.5,
        ignored_layers=ignored,
        output_transform=_first_tensor,
    )
    pruner.step()


RUNNERS = {
    "ours_build": ours_build,
    "ours_prune": ours_prune,
    "theirs_build": theirs_build,
    "theirs_prune": theirs_prune,
}


RUN_LIMIT = 240  # seconds one build or prune may take before it counts as failed


def _timed(fn: Callable[..., None], model: nn.Module, inputs: Any, ignore: list[str], copy_first: bool) -> float:
    subject = copy.deepcopy(model) if copy_first else model  # the copy is not timed

    def out_of_time(_signum: int, _frame: Any) -> None:
        raise TimeoutError(f"over {RUN_LIMIT} s")

    signal.signal(signal.SIGALRM, out_of_time)
    signal.alarm(RUN_LIMIT)
    try:
        start = time.perf_counter()
        fn(subject, inputs, ignore)
        return time.perf_counter() - start
    finally:
        signal.alarm(0)


def side_by_side(model: nn.Module, inputs: Any, ignore: list[str], repeats: int, what: str) -> dict[str, Any]:
    """Median seconds of ours and theirs, alternating, after one warm-up each; errors recorded."""
    results: dict[str, Any] = {}
    times: dict[str, list[float]] = {"ours": [], "theirs": []}
    errors: dict[str, str] = {}
    copy_first = what == "prune"
    for round_ in range(repeats + 1):
        for who in ("ours", "theirs"):
            if who in errors:
                continue
            try:
                t = _timed(RUNNERS[f"{who}_{what}"], model, inputs, ignore, copy_first)
            except Exception as error:
                errors[who] = f"{type(error).__name__}: {str(error).splitlines()[0][:100]}"
                continue
            if round_ > 0:
                times[who].append(t)
    for who in ("ours", "theirs"):
        results[who] = statistics.median(times[who]) if times[who] else None
        results[f"{who}_error"] = errors.get(who, "")
    return results


def child_peak_rss(who: str, model_name: str) -> float | None:
    """Extra peak memory (MB) a full prune needs, in a fresh process, over the model already built.

    The kernel's high-water mark is reset after the model is built (``/proc/self/clear_refs``),
    so importing torch and building the model do not hide the pruning's own peak.
    """
    code = (
        "import sys; sys.path.insert(0, 'benchmarks'); import bench; "
        f"m, x, ig = bench.MODELS[{model_name!r}](); "
        "status = lambda key: int(next(l for l in open('/proc/self/status') if l.startswith(key)).split()[1]); "
        "open('/proc/self/clear_refs', 'w').write('5'); base = status('VmRSS:'); "
        f"bench.RUNNERS['{who}_prune'](m, x, ig); "
        "print((status('VmHWM:') - base) / 1024)"
    )
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=RUN_LIMIT + 120)
    except subprocess.TimeoutExpired:
        return None
    if done.returncode != 0:
        return None
    return float(done.stdout.split()[-1])


def llama8b() -> dict[str, float]:
    code = (
        "import time, resource, torch; from transformers import LlamaConfig, LlamaForCausalLM; "
        "from transformers.utils import logging; logging.set_verbosity_error(); import prune_torch as pt; "
        "c = LlamaConfig(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8, "
        "intermediate_size=14336, vocab_size=128256, max_position_embeddings=8192); "
        "t0 = time.perf_counter(); m = None\n"
        "with torch.device('meta'): m = LlamaForCausalLM(c)\n"
        "status = lambda key: int(next(l for l in open('/proc/self/status') if l.startswith(key)).split()[1]); "
        "open('/proc/self/clear_refs', 'w').write('5'); base = status('VmRSS:'); "
        "t1 = time.perf_counter(); g = pt.trace(m, {'input_ids': torch.zeros(1, 16, dtype=torch.long)}); "
        "t2 = time.perf_counter(); gs = g.groups(); t3 = time.perf_counter(); "
        "print(t1 - t0, t2 - t1, t3 - t2, len(g.ops), len(gs.prunable), (status('VmHWM:') - base) / 1024)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, check=True)
    build, trace_s, groups_s, ops, prunable, rss = (float(v) for v in done.stdout.split()[-6:])
    return {"build": build, "trace": trace_s, "groups": groups_s, "ops": ops, "prunable": prunable, "rss": rss}


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    threads = torch.get_num_threads()
    return f"{cpu}, {os.cpu_count()} cores ({threads} torch thread(s)), Python {platform.python_version()}, torch {torch.__version__}"


def _fmt(v: float | None) -> str:
    return "—" if v is None else f"{v:.3f}"


def _ratio(a: float | None, b: float | None) -> str:
    return "—" if a is None or b is None or b == 0 else f"{a / b:.2f}×"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="docs/benchmarks.md")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    parser.add_argument("--depths", nargs="*", type=int, default=[10, 25, 50, 100, 200])
    parser.add_argument("--no-memory", action="store_true")
    args = parser.parse_args()
    import torch_pruning

    rows = []
    for name in args.models:
        model, inputs, ignore = MODELS[name]()
        build = side_by_side(model, inputs, ignore, args.repeats, "build")
        prune = side_by_side(model, inputs, ignore, args.repeats, "prune")
        memory = {} if args.no_memory else {who: child_peak_rss(who, name) for who in ("ours", "theirs")}
        rows.append((name, build, prune, memory))
        print(name, json.dumps({"build": build, "prune": prune, "rss_mb": memory}), flush=True)
        del model

    scaling = []
    for depth in args.depths:
        model, inputs, ignore = deep_resnet(depth)
        build = side_by_side(model, inputs, ignore, max(1, args.repeats // 2), "build")
        prune = side_by_side(model, inputs, ignore, max(1, args.repeats // 2), "prune")
        scaling.append((depth, build, prune))
        print("depth", depth, json.dumps({"build": build, "prune": prune}), flush=True)
    big = llama8b()
    print("llama-3-8b", json.dumps(big), flush=True)

    out = Path(args.out)
    plot = out.with_name("benchmarks-scaling.png")
    _plot_scaling(scaling, plot)
    lines = [
        "# Benchmarks against Torch-Pruning",
        "",
        f"Generated by `nox -s bench` on {time.strftime('%Y-%m-%d')}; do not edit by hand.",
        f"Machine: {machine()}. Torch-Pruning {getattr(torch_pruning, '__version__', '?')} from PyPI.",
        f"Times are medians of {args.repeats} runs after a warm-up, ours and theirs alternating in one process;",
        "a full prune is graph build + importance (L2) + selection + apply at 50% of channels, on a fresh copy.",
        "Peak memory: in a separate process, the rise of the resident-set high-water mark during the full prune, over the built model.",
        "Ratios are ours / theirs (below 1 means we are faster or smaller).",
        "",
        "| model | build ours s | build theirs s | ratio | prune ours s | prune theirs s | ratio | extra peak RSS ours MB | theirs MB | ratio | notes |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, build, prune, memory in rows:
        notes = "; ".join(
            f"{k.split('_')[0]} {kind}: {v}"
            for kind, d in (("build", build), ("prune", prune))
            for k, v in d.items()
            if k.endswith("error") and v
        )
        lines.append(
            f"| {name} | {_fmt(build['ours'])} | {_fmt(build['theirs'])} | {_ratio(build['ours'], build['theirs'])} | "
            f"{_fmt(prune['ours'])} | {_fmt(prune['theirs'])} | {_ratio(prune['ours'], prune['theirs'])} | "
            f"{_fmt(memory.get('ours'))} | {_fmt(memory.get('theirs'))} | {_ratio(memory.get('ours'), memory.get('theirs'))} | {notes} |"
        )
    lines += [
        "",
        "## Scaling with depth",
        "",
        f"![build and prune time against depth]({plot.name})",
        "",
        "| blocks | build ours s | build theirs s | prune ours s | prune theirs s |",
        "|---|---|---|---|---|",
    ]
    for depth, build, prune in scaling:
        lines.append(
            f"| {depth} | {_fmt(build['ours'])} | {_fmt(build['theirs'])} | {_fmt(prune['ours'])} | {_fmt(prune['theirs'])} |"
        )
    lines += [
        "",
        _linearity(scaling),
        "",
        "## Llama-3-8B configuration on the meta device",
        "",
        f"Hidden 4096, 32 layers, 32 heads, 8 key/value heads, intermediate 14336, vocabulary 128256: "
        f"model built on meta in {big['build']:.2f} s, traced in {big['trace']:.2f} s ({int(big['ops'])} ops), "
        f"groups found in {big['groups']:.2f} s ({int(big['prunable'])} prunable); trace and groups raise the peak "
        f"resident memory by {big['rss']:.0f} MB over the process with torch imported and the model built on meta "
        "(target: graph and groups under 10 s and 2 GB).",
        "",
    ]
    out.write_text("\n".join(lines))
    print(f"wrote {out}")
    return 0


def _linearity(scaling: list[tuple[int, dict[str, Any], dict[str, Any]]]) -> str:
    parts = []
    for label, key in (("build", 1), ("prune", 2)):
        xs = [d for d, *_ in scaling]
        ys = [row[key]["ours"] for row in scaling]
        if None in ys or len(xs) < 3:
            continue
        mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
        sxx = sum((x - mean_x) ** 2 for x in xs)
        slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / sxx
        intercept = mean_y - slope * mean_x
        ss_res = sum((y - (intercept + slope * x)) ** 2 for x, y in zip(xs, ys))
        ss_tot = sum((y - mean_y) ** 2 for y in ys) or 1e-12
        parts.append(f"ours {label}: {slope * 1000:.1f} ms per block, linear fit R² = {1 - ss_res / ss_tot:.3f}")
    return "Linear fits: " + "; ".join(parts) + "." if parts else ""


def _plot_scaling(scaling: list[tuple[int, dict[str, Any], dict[str, Any]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    depths = [d for d, *_ in scaling]
    for key, label in ((1, "build"), (2, "prune")):
        for who, style in (("ours", "-o"), ("theirs", "--s")):
            ys = [row[key][who] for row in scaling]
            if None not in ys:
                ax.plot(depths, ys, style, label=f"{label} {who}")
    ax.set_xlabel("residual blocks")
    ax.set_ylabel("seconds")
    ax.set_title("Time against depth")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
