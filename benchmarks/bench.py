"""Benchmarks against Torch-Pruning, side by side in one run.

For each model: graph build time and full prune time (build, importance, selection, apply at
50% L2), ours and theirs in alternation, median of ``--repeats`` runs after a warm-up; a floor
(the cheaper of one meta or one CPU forward, plus copying the kept weights) and our prune time
over it; peak resident memory of each in a separate process. Then depth scaling on a residual
chain and a DenseNet-style concat chain, and the Llama-3-8B configuration traced on the meta
device. Writes docs/benchmarks.md and the scaling plot beside it.

    python benchmarks/bench.py --out docs/benchmarks.md
    python benchmarks/bench.py --quick   # smoke test: two models, short chains, one repeat; writes to /tmp
"""

from __future__ import annotations

import argparse
import copy
import gc
import importlib.metadata
import itertools
import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

import prune_torch as pt

# One intra-op thread for both libraries: pruning is mostly Python, and on a shared two-core machine a
# second OpenMP thread that has to wait for its core made tensor copies and forwards up to 100× slower.
torch.set_num_threads(1)

Built = tuple[nn.Module, Any, list[str]]


# -- models ----------------------------------------------------------------------------------------
def _tv(name: str) -> Callable[[], Built]:
    def build() -> Built:
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


def _bert() -> Built:
    from transformers import BertConfig, BertModel
    from transformers.utils import logging

    logging.set_verbosity_error()
    model = BertModel(BertConfig()).eval()  # BERT-base: 12 layers, hidden 768, 12 heads
    return model, {"input_ids": torch.randint(0, 30522, (1, 128))}, ["pooler.dense"]


def _llama() -> Built:
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


MODELS: dict[str, Callable[[], Built]] = {
    "resnet50": _tv("resnet50"),
    "mobilenet_v2": _tv("mobilenet_v2"),
    "densenet121": _tv("densenet121"),
    "vit_b_16": _tv("vit_b_16"),
    "convnext_tiny": _tv("convnext_tiny"),
    "bert-base": _bert,
    "llama (1024 hidden, 8 layers, GQA)": _llama,
}
# the models the speed targets are stated for (issue 14); the llama row is shown for reference
TARGET_MODELS = ("resnet50", "mobilenet_v2", "densenet121", "vit_b_16", "convnext_tiny", "bert-base")
QUICK_MODELS = ["resnet50", "mobilenet_v2"]
BUILD_TARGET, PRUNE_TARGET, FLOOR_TARGET, R2_TARGET = 0.5, 0.5, 3.0, 0.99


class Residual(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))


def deep_resnet(blocks: int, width: int = 32) -> Built:
    body = [nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
    body += [Residual(width) for _ in range(blocks)]
    model = nn.Sequential(*body, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 10)).eval()
    return model, torch.randn(1, 3, 32, 32), [str(len(body) + 2)]


class DenseLayer(nn.Module):
    """DenseNet's layer without the bottleneck: norm over everything so far, conv, append to it."""

    def __init__(self, channels: int, growth: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)
        self.conv = nn.Conv2d(channels, growth, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.conv(torch.relu(self.bn(x)))], 1)


def dense_chain(layers: int, width: int = 32, growth: int = 12, block: int = 12) -> Built:
    """Dense blocks of ``block`` layers, each closed by a 1×1 transition back to ``width`` channels.

    The transitions keep the width bounded, as DenseNet's do: without them the channel count (and
    every group through the concats) grows with depth, and no library could scale linearly.
    """
    body: list[nn.Module] = [nn.Conv2d(3, width, 3, padding=1)]
    for start in range(0, layers, block):
        n = min(block, layers - start)
        body += [DenseLayer(width + i * growth, growth) for i in range(n)]
        wide = width + n * growth
        body += [nn.BatchNorm2d(wide), nn.ReLU(), nn.Conv2d(wide, width, 1, bias=False)]
    model = nn.Sequential(*body, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 10)).eval()
    return model, torch.randn(1, 3, 32, 32), [str(len(body) + 2)]


# name, builder, unit of depth, default depths, quick depths
CHAINS: tuple[tuple[str, Callable[[int], Built], str, list[int], list[int]], ...] = (
    ("residual chain", deep_resnet, "block", [10, 50, 100, 200, 400, 800], [10, 20, 40]),
    ("concat chain", dense_chain, "layer", [12, 24, 48, 96, 192], [12, 24, 36]),
)


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


RUN_LIMIT = 240  # seconds one build or prune of a benchmark model may take before it counts as failed
SCALING_LIMIT = 120  # the same for one depth of a chain; deeper ones are then skipped
RUN_BUDGET = 60  # seconds of timed runs after which a library stops repeating one measurement
SCALING_BUDGET = 30  # the same for one depth of a chain


# Memos our packages keep per size, shape or op of the graphs they have seen (process-wide, bounded).
# A run that follows another on the same model would find them filled; a user's first prune of a
# model does not. They are cleared before every timed run, so each of ours is cold for the model
# (memos per op type, which any model fills, stay).
MODEL_MEMOS = {
    "prune_graph._rule_parts": ("_identity", "_ref"),
    "prune_graph._rule_memo": ("_pattern",),
    "prune_graph._rule_concat": ("_DESCRIBED",),
    "prune_torch._meta_shapes": ("_contiguous_strides",),
}


def forget_model_memos() -> None:
    """Clear :data:`MODEL_MEMOS`; a memo that is not where the table says is an error (the table is out of date)."""
    for module_name, names in MODEL_MEMOS.items():
        module = importlib.import_module(module_name)
        for name in names:
            memo = getattr(module, name)
            if hasattr(memo, "cache_clear"):
                memo.cache_clear()
            elif isinstance(memo, dict):
                memo.clear()
            else:
                raise TypeError(f"{module_name}.{name} is not a memo this benchmark knows how to clear")


def _timed(
    fn: Callable[..., None], model: nn.Module, inputs: Any, ignore: list[str], copy_first: bool, limit: int
) -> tuple[float, set[str]]:
    subject = copy.deepcopy(model) if copy_first else model  # the copy is not timed
    forget_model_memos()  # each run cold for the model, as a user's first prune of it
    gc.collect()  # the other library's garbage is not collected on this one's time

    def out_of_time(_signum: int, _frame: Any) -> None:
        raise TimeoutError(f"over {limit} s")

    signal.signal(signal.SIGALRM, out_of_time)
    signal.alarm(limit)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            start = time.perf_counter()
            fn(subject, inputs, ignore)
            seconds = time.perf_counter() - start
        return seconds, {str(w.message).splitlines()[0][:100] for w in caught}
    finally:
        signal.alarm(0)


def side_by_side(
    model: nn.Module,
    inputs: Any,
    ignore: list[str],
    repeats: int,
    what: str,
    *,
    warm_up: bool = True,
    limit: int = RUN_LIMIT,
    skip: dict[str, str] | None = None,
    budget: float = RUN_BUDGET,
) -> dict[str, Any]:
    """Median seconds of ours and theirs, alternating, after one warm-up each; errors and warnings recorded.

    ``skip`` maps a library to the reason it is not run (an earlier timeout, say): that becomes its error.
    A library stops repeating once its timed runs add up to ``budget`` seconds (at least one run counts);
    a warm-up that alone takes that long counts as the one run, so slow cases take one or two runs, not six.
    """
    results: dict[str, Any] = {}
    times: dict[str, list[float]] = {"ours": [], "theirs": []}
    errors: dict[str, str] = dict(skip or {})
    warned: dict[str, set[str]] = {"ours": set(), "theirs": set()}
    copy_first = what == "prune"
    for round_ in range(repeats + 1 if warm_up else repeats):
        for who in ("ours", "theirs"):
            if who in errors or (times[who] and sum(times[who]) >= budget):
                continue
            try:
                t, messages = _timed(RUNNERS[f"{who}_{what}"], model, inputs, ignore, copy_first, limit)
            except Exception as error:
                errors[who] = f"{type(error).__name__}: {str(error).splitlines()[0][:100]}"
                continue
            warned[who] |= messages
            if round_ > 0 or not warm_up or t >= budget:
                times[who].append(t)
    for who in ("ours", "theirs"):
        results[who] = statistics.median(times[who]) if times[who] else None
        results[f"{who}_error"] = errors.get(who, "")
        results[f"{who}_warnings"] = sorted(warned[who])
        results[f"{who}_runs"] = f"{len(times[who])}/{repeats}"
    return results


# -- the floor -------------------------------------------------------------------------------------
def _call(model: nn.Module, inputs: Any) -> Any:
    if isinstance(inputs, dict):
        return model(**inputs)
    if isinstance(inputs, tuple):
        return model(*inputs)
    return model(inputs)


def _to_meta(inputs: Any) -> Any:
    if isinstance(inputs, torch.Tensor):
        return inputs.to("meta")
    if isinstance(inputs, dict):
        return {k: _to_meta(v) for k, v in inputs.items()}
    if isinstance(inputs, (list, tuple)):
        return type(inputs)(_to_meta(v) for v in inputs)
    return inputs


def _median_time(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def floor(model: nn.Module, inputs: Any, ignore: list[str], repeats: int) -> dict[str, Any]:
    """What no pruning library can beat by much: look at the model once, write the kept weights once.

    ``meta``: one forward with every parameter and buffer replaced by a meta stand-in
    (``torch.func.functional_call``), inputs on meta. ``cpu``: one plain forward (eval, no_grad).
    ``copy``: cloning every tensor of the state of the model pruned by us (its kept weights and
    buffers, at their pruned shapes). The floor is ``min(meta, cpu) + copy``; each part is a median.
    """
    result: dict[str, Any] = {"meta": None, "cpu": None, "copy": None, "floor": None, "error": ""}
    model.eval()
    stand_ins = {
        name: torch.empty_like(tensor, device="meta")
        for name, tensor in itertools.chain(model.named_parameters(), model.named_buffers())
    }
    meta_inputs = _to_meta(inputs)

    def meta_forward() -> None:
        args, kwargs = ((), meta_inputs) if isinstance(meta_inputs, dict) else (meta_inputs, None)
        with torch.no_grad():
            torch.func.functional_call(model, stand_ins, args, kwargs)

    errors = []
    try:
        result["meta"] = _median_time(meta_forward, repeats)
    except Exception as error:  # a model that reads a value off a tensor cannot run on meta
        errors.append(f"meta forward: {type(error).__name__}: {str(error).splitlines()[0][:80]}")
    with torch.no_grad():
        result["cpu"] = _median_time(lambda: _call(model, inputs), repeats)
    try:
        pruned = copy.deepcopy(model)
        ours_prune(pruned, inputs, ignore)
        state = pruned.state_dict()
        result["copy"] = _median_time(lambda: {k: v.clone() for k, v in state.items()}, repeats)
    except Exception as error:
        errors.append(f"copy: our prune failed: {type(error).__name__}: {str(error).splitlines()[0][:80]}")
    forward = min(t for t in (result["meta"], result["cpu"]) if t is not None)
    result["via"] = "meta" if result["meta"] is not None and result["meta"] <= result["cpu"] else "CPU"
    if result["copy"] is not None:
        result["floor"] = forward + result["copy"]
    result["error"] = "; ".join(errors)
    return result


# -- memory and the 8B configuration, in separate processes -----------------------------------------
def child_peak_rss(who: str, model_name: str) -> float | None:
    """Extra peak memory (MB) a full prune needs, in a fresh process, over the model already built.

    The kernel's high-water mark is reset after the model is built (``/proc/self/clear_refs``),
    so importing torch and building the model do not hide the pruning's own peak.
    """
    code = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import bench; "
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
        print(f"peak RSS of {who} on {model_name} failed: {done.stderr.strip().splitlines()[-1:]}", flush=True)
        return None
    return float(done.stdout.split()[-1])


def llama8b() -> dict[str, float]:
    code = (
        "import time, resource, torch; torch.set_num_threads(1); from transformers import LlamaConfig, LlamaForCausalLM; "
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
    threads = torch.get_num_threads()
    return f"{cpu}, {os.cpu_count()} cores ({threads} torch thread(s)), Python {platform.python_version()}, torch {torch.__version__}"


# -- formatting ------------------------------------------------------------------------------------
def _fmt(v: float | None) -> str:
    return "—" if v is None else f"{v:.3f}"


def _div(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def _ratio(a: float | None, b: float | None) -> str:
    r = _div(a, b)
    return "—" if r is None else f"{r:.2f}×"


def _cell(result: dict[str, Any], who: str) -> str:
    """A time, or "—" with the reason when there is none."""
    if result[who] is not None:
        runs, asked = result[f"{who}_runs"].split("/")
        return _fmt(result[who]) + ("" if runs == asked else f" ({runs} run{'s' * (runs != '1')})")
    reason = result.get(f"{who}_error", "")
    return f"— ({reason})" if reason else "—"


def fit(xs: list[int], ys: list[float]) -> dict[str, float]:
    """Least squares ``y = intercept + slope·x`` with R², and the exponent of ``y ∝ x^k`` on log-log axes."""
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mean_x) ** 2 for x in xs)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / sxx
    intercept = mean_y - slope * mean_x
    ss_res = sum((y - (intercept + slope * x)) ** 2 for x, y in zip(xs, ys))
    ss_tot = sum((y - mean_y) ** 2 for y in ys) or 1e-12
    lx, ly = [math.log(x) for x in xs], [math.log(max(y, 1e-9)) for y in ys]
    mlx, mly = statistics.fmean(lx), statistics.fmean(ly)
    exponent = sum((a - mlx) * (b - mly) for a, b in zip(lx, ly)) / sum((a - mlx) ** 2 for a in lx)
    return {"slope": slope, "intercept": intercept, "r2": 1 - ss_res / ss_tot, "exponent": exponent}


def scaling_fits(unit: str, rows: list[tuple[int, dict[str, Any], dict[str, Any]]]) -> tuple[list[str], list[str]]:
    """Lines describing the fits of one chain, and the fits of ours that miss the R² target."""
    lines, misses = [], []
    for label, key in (("build", 1), ("prune", 2)):
        parts = []
        for who in ("ours", "theirs"):
            points = [(row[0], row[key][who]) for row in rows if row[key][who] is not None]
            if len(points) < 3:
                parts.append(f"{who}: too few points for a fit")
                continue
            f = fit([d for d, _ in points], [t for _, t in points])
            if who == "ours":
                parts.append(
                    f"**ours {f['slope'] * 1000:.2f} ms per {unit}** (intercept {f['intercept'] * 1000:.0f} ms), "
                    f"linear fit R² = {f['r2']:.4f}, log-log exponent {f['exponent']:.2f}"
                )
                if f["r2"] < R2_TARGET:
                    misses.append(f"{label} R² {f['r2']:.3f}")
            else:
                parts.append(
                    f"Torch-Pruning {f['slope'] * 1000:.2f} ms per {unit} (R² = {f['r2']:.3f}), "
                    f"log-log exponent {f['exponent']:.2f} over {len(points)} depths"
                )
        lines.append(f"- {label}: " + "; ".join(parts) + ".")
    return lines, misses


def target_summary(rows: list[dict[str, Any]]) -> str:
    """Which target models meet build ≤ 0.5×, prune ≤ 0.5× and × floor ≤ 3× (no failure: a statement)."""
    met, missed = [], []
    for row in rows:
        if row["name"] not in TARGET_MODELS:
            continue
        checks = (
            ("build", _div(row["build"]["ours"], row["build"]["theirs"]), BUILD_TARGET, "×"),
            ("prune", _div(row["prune"]["ours"], row["prune"]["theirs"]), PRUNE_TARGET, "×"),
            ("× floor", _div(row["prune"]["ours"], row["floor"]["floor"]), FLOOR_TARGET, ""),
        )
        misses = [
            f"{label} {'—' if value is None else f'{value:.2f}{suffix}'}"
            for label, value, target, suffix in checks
            if value is None or value > target
        ]
        if misses:
            missed.append(f"{row['name']} ({', '.join(misses)})")
        else:
            met.append(row["name"])
    return (
        f"Targets of issue 14 for all but the llama row (build and prune ≤ {PRUNE_TARGET}× Torch-Pruning's, "
        f"prune ≤ {FLOOR_TARGET:g}× floor): "
        f"met by {', '.join(met) or 'none'}; missed by {', '.join(missed) or 'none'}."
    )


STREAMING_HEADING = "## Streaming a checkpoint larger than memory"


def carried_section(path: Path, heading: str = STREAMING_HEADING) -> list[str]:
    """The section under ``heading`` in the file at ``path`` (up to the next level-2 heading), unchanged; [] if none."""
    if not path.exists():
        return []
    lines = path.read_text().split("\n")
    if heading not in lines:
        return []
    start = lines.index(heading)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return lines[start:end]


# -- the run ---------------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=None, help="default docs/benchmarks.md; with --quick a file in the temp dir")
    parser.add_argument("--quick", action="store_true", help="smoke test: two models, short chains, one repeat")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per model (default 5; 1 with --quick)")
    parser.add_argument("--scaling-repeats", type=int, default=None, help="timed runs per depth (default 3)")
    parser.add_argument("--models", nargs="*", default=None)
    parser.add_argument("--depths", nargs="*", type=int, default=None, help="residual chain depths")
    parser.add_argument("--dense-depths", nargs="*", type=int, default=None, help="concat chain depths")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--limit", type=int, default=RUN_LIMIT, help="seconds one build or prune of a model may take")
    args = parser.parse_args()
    quick = args.quick
    out = Path(args.out or (Path(tempfile.gettempdir()) / "benchmarks-quick.md" if quick else "docs/benchmarks.md"))
    repeats = args.repeats or (1 if quick else 5)
    scaling_repeats = args.scaling_repeats or (1 if quick else 3)
    models = args.models if args.models is not None else (QUICK_MODELS if quick else list(MODELS))
    depth_lists = [args.depths, args.dense_depths]
    carried = carried_section(out)
    started = time.perf_counter()

    rows: list[dict[str, Any]] = []
    for name in models:
        model, inputs, ignore = MODELS[name]()
        build = side_by_side(model, inputs, ignore, repeats, "build", limit=args.limit)
        prune = side_by_side(model, inputs, ignore, repeats, "prune", limit=args.limit)
        ground = floor(model, inputs, ignore, min(3, repeats))
        memory: dict[str, float | None] = {}
        if not args.no_memory:
            # a library that failed or timed out here would only do it again, for longer, in the child
            memory = {who: None if prune[f"{who}_error"] else child_peak_rss(who, name) for who in ("ours", "theirs")}
        rows.append({"name": name, "build": build, "prune": prune, "floor": ground, "memory": memory})
        print(name, json.dumps({"build": build, "prune": prune, "floor": ground, "rss_mb": memory}), flush=True)
        del model
    summary = target_summary(rows)
    print(summary, flush=True)

    scaling: dict[str, list[tuple[int, dict[str, Any], dict[str, Any]]]] = {}
    for (chain, build_chain, unit, depths, quick_depths), chosen in zip(CHAINS, depth_lists):
        skip: dict[str, dict[str, str]] = {"build": {}, "prune": {}}
        scaling[chain] = []
        for i, depth in enumerate(chosen or (quick_depths if quick else depths)):
            model, inputs, ignore = build_chain(depth)
            measured = {}
            for what in ("build", "prune"):
                # one warm-up at the first depth; the deeper models reuse warm code paths
                measured[what] = side_by_side(
                    model,
                    inputs,
                    ignore,
                    scaling_repeats,
                    what,
                    warm_up=i == 0,
                    limit=SCALING_LIMIT,
                    skip=skip[what],
                    budget=SCALING_BUDGET,
                )
                for who in ("ours", "theirs"):
                    error = measured[what][f"{who}_error"]
                    if error.startswith("TimeoutError") and who not in skip[what]:
                        skip[what][who] = f"skipped: over {SCALING_LIMIT} s at {depth} {unit}s"
            scaling[chain].append((depth, measured["build"], measured["prune"]))
            print(chain, depth, json.dumps(measured), flush=True)
            del model
    big = llama8b()
    print("llama-3-8b", json.dumps(big), flush=True)

    plot = out.with_name("benchmarks-scaling.png")
    plotted = _plot_scaling(scaling, plot)
    write(out, plot if plotted else None, rows, summary, scaling, big, repeats, scaling_repeats, carried)
    print(f"wrote {out} in {time.perf_counter() - started:.0f} s")
    return 0


def write(
    out: Path,
    plot: Path | None,
    rows: list[dict[str, Any]],
    summary: str,
    scaling: dict[str, list[tuple[int, dict[str, Any], dict[str, Any]]]],
    big: dict[str, float],
    repeats: int,
    scaling_repeats: int,
    carried: list[str],
) -> None:
    version = importlib.metadata.version("torch-pruning")
    lines = [
        "# Benchmarks against Torch-Pruning",
        "",
        f"Generated by `nox -s bench` on {time.strftime('%Y-%m-%d')}; do not edit by hand.",
        f"Machine: {machine()}. Torch-Pruning {version} from PyPI.",
        f"Times are medians of {repeats} runs after a warm-up, ours and theirs alternating in one process",
        f"(fewer where the runs add up to {RUN_BUDGET} s: a warm-up that long is the one run); each of our runs is",
        "cold for its model: the memos our packages keep per size, shape and op of graphs seen before are cleared first;",
        "a full prune is graph build + importance (L2) + selection + apply at 50% of channels, on a fresh copy.",
        "Floor: the cheaper of one forward on meta (parameters and buffers as meta stand-ins through",
        "`torch.func.functional_call`, inputs on meta) and one plain CPU forward (eval, no_grad), plus cloning every",
        "tensor of the state of the model we pruned (the kept weights, written once); `× floor` is our full prune over it.",
        "Peak memory: in a separate process, the rise of the resident-set high-water mark during the full prune, over the built model.",
        "Ratios are ours / theirs (below 1 means we are faster or smaller).",
        "",
        "| model | build ours s | build theirs s | ratio | prune ours s | prune theirs s | ratio | floor s | × floor "
        "| extra peak RSS ours MB | theirs MB | ratio | notes |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        build, prune, ground, memory = row["build"], row["prune"], row["floor"], row["memory"]
        notes = [
            f"{who} {kind}: {d[f'{who}_error']}"
            for kind, d in (("build", build), ("prune", prune))
            for who in ("ours", "theirs")
            if d[f"{who}_error"]
        ]
        notes += [
            f"{who} {kind}: {d[f'{who}_runs']} runs (time budget)"
            for kind, d in (("build", build), ("prune", prune))
            for who in ("ours", "theirs")
            if d[who] is not None and d[f"{who}_runs"].split("/")[0] != d[f"{who}_runs"].split("/")[1]
        ]
        notes += [
            f"{who} {kind} warned: {', '.join(d[f'{who}_warnings'])}"
            for kind, d in (("build", build), ("prune", prune))
            for who in ("ours", "theirs")
            if d[f"{who}_warnings"]
        ]
        if ground["error"]:
            notes.append(f"floor: {ground['error']}")
        floor_cell = "—" if ground["floor"] is None else f"{ground['floor']:.3f} ({ground['via']} forward)"
        lines.append(
            f"| {row['name']} | {_fmt(build['ours'])} | {_fmt(build['theirs'])} | {_ratio(build['ours'], build['theirs'])} | "
            f"{_fmt(prune['ours'])} | {_fmt(prune['theirs'])} | {_ratio(prune['ours'], prune['theirs'])} | "
            f"{floor_cell} | {_ratio(prune['ours'], ground['floor'])} | "
            f"{_fmt(memory.get('ours'))} | {_fmt(memory.get('theirs'))} | {_ratio(memory.get('ours'), memory.get('theirs'))} | "
            + "; ".join(notes).replace("|", "\\|")
            + " |"
        )
    floors = ", ".join(
        f"{r['name']} meta {_fmt(r['floor']['meta'])} / CPU {_fmt(r['floor']['cpu'])} + copy {_fmt(r['floor']['copy'])}"
        for r in rows
    )
    lines += ["", f"Floor parts (s): {floors}.", "", f"**{summary}**", ""]

    lines += [
        "## Scaling with depth",
        "",
        "Residual chain: a stem, then `blocks` residual blocks (conv-BN-ReLU-conv-BN, add, ReLU) of 32 channels, on 1×3×32×32.",
        "Concat chain (DenseNet-style): dense blocks of 12 layers (BN-ReLU-conv 3×3 with 12 new channels, concatenated",
        "to everything before), each closed by BN-ReLU-conv 1×1 back to 32 channels, on 1×3×32×32; depth counts the dense layers.",
        f"Medians of {scaling_repeats} run(s) per depth (fewer once they add up to {SCALING_BUDGET} s), ours and theirs",
        "alternating, one warm-up at the smallest depth;",
        f"a run over {SCALING_LIMIT} s counts as failed and the deeper models of that chain are not run for that library.",
        "",
    ]
    if plot is not None:
        lines += [f"![build and prune time against depth]({plot.name})", ""]
    else:
        lines += ["(No plot: matplotlib is not installed.)", ""]
    r2_misses = []
    for chain, _, unit, *_ in CHAINS:
        if chain not in scaling:
            continue
        lines += [
            f"### {chain[0].upper() + chain[1:]}",
            "",
            f"| {unit}s | build ours s | build theirs s | ratio | prune ours s | prune theirs s | ratio |",
            "|---|---|---|---|---|---|---|",
        ]
        for depth, build, prune in scaling[chain]:
            lines.append(
                f"| {depth} | {_cell(build, 'ours')} | {_cell(build, 'theirs')} | {_ratio(build['ours'], build['theirs'])} | "
                f"{_cell(prune, 'ours')} | {_cell(prune, 'theirs')} | {_ratio(prune['ours'], prune['theirs'])} |"
            )
        warned: dict[str, list[int]] = {}
        for depth, build, prune in scaling[chain]:
            for who, message in {
                (w, m) for d in (build, prune) for w in ("ours", "theirs") for m in d[f"{w}_warnings"]
            }:
                warned.setdefault(f"{'Torch-Pruning' if who == 'theirs' else 'ours'} warned “{message}”", []).append(
                    depth
                )
        if warned:
            lines += ["", *(f"{text} at {', '.join(map(str, depths))} {unit}s." for text, depths in warned.items())]
        fit_lines, misses = scaling_fits(unit, scaling[chain])
        r2_misses += [f"{chain} {m}" for m in misses]
        lines += ["", "Linear fits (time = intercept + cost per " + unit + " × depth):", "", *fit_lines, ""]
    lines += [
        f"**Linearity target (R² ≥ {R2_TARGET} for ours): "
        + (f"missed: {', '.join(r2_misses)}" if r2_misses else "met")
        + ".**",
        "",
        "## Llama-3-8B configuration on the meta device",
        "",
        f"Hidden 4096, 32 layers, 32 heads, 8 key/value heads, intermediate 14336, vocabulary 128256: "
        f"model built on meta in {big['build']:.2f} s, traced in {big['trace']:.2f} s ({int(big['ops'])} ops), "
        f"groups found in {big['groups']:.2f} s ({int(big['prunable'])} prunable); trace and groups raise the peak "
        f"resident memory by {big['rss']:.0f} MB over the process with torch imported and the model built on meta "
        f"(target: graph and groups under 1 s; here {big['trace'] + big['groups']:.2f} s).",
        "",
    ]
    if carried:  # written by benchmarks/stream_checkpoint.py: kept as it was
        lines += [*carried]
        if carried[-1] != "":
            lines.append("")
    out.write_text("\n".join(lines))


def _plot_scaling(scaling: dict[str, list[tuple[int, dict[str, Any], dict[str, Any]]]], path: Path) -> bool:
    """Both chains side by side, log-log; False (and no file) without matplotlib."""
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed: no scaling plot", flush=True)
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    fig, axes = plt.subplots(1, len(CHAINS), figsize=(11, 4))
    for ax, (chain, _, unit, *_) in zip(axes, CHAINS):
        rows = scaling.get(chain, [])
        for key, label, colour in ((1, "build", "tab:blue"), (2, "prune", "tab:orange")):
            for who, style in (("ours", "-o"), ("theirs", "--s")):
                points = [(row[0], row[key][who]) for row in rows if row[key][who] is not None]
                if points:
                    name = "Torch-Pruning" if who == "theirs" else "ours"
                    ax.plot(*zip(*points), style, color=colour, label=f"{label}, {name}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        # plain numbers, not powers of ten: the depths themselves on x, 1-2-5 steps on y
        ax.set_xticks([row[0] for row in rows])
        ax.xaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.yaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(ticker.NullFormatter())
        ax.set_xlabel(f"{unit}s")
        ax.set_ylabel("seconds")
        ax.set_title(chain)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


if __name__ == "__main__":
    sys.exit(main())
