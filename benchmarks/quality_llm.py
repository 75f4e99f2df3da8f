"""Pruning quality of a tiny LLaMA on Python's own help texts: held-out perplexity per importance.

The text is ``pydoc_data.topics.topics`` (the help texts that ``help("with")`` prints; shipped with
CPython, so no download), split by topic into a training and a held-out part. A byte-level LLaMA
(transformers ``LlamaForCausalLM``, grouped-query attention) is trained from scratch on CPU for a fixed
number of steps and cached; then 30% of its MLP units and key/value head groups are pruned with each
importance, and the held-out perplexity is measured before, right after pruning and after a short
recovery fine-tune (the same budget and data order for every run). Writes the section
"## Tiny LLaMA on Python's own help texts" of docs/quality.md (the rest of the page is
benchmarks/quality.py's) and docs/quality-llm.png.

    python benchmarks/quality_llm.py --cache /tmp/quality-cache --out docs/quality.md
    python benchmarks/quality_llm.py --quick      # a tiny budget: checks the pipeline, numbers meaningless
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import platform
import sys
import time
from importlib import metadata
from pathlib import Path
from pydoc_data.topics import topics
from typing import Any

import torch
import transformers

import prune_torch as pt

HEADING = "## Tiny LLaMA on Python's own help texts"
SEED = 0
# bytes 0-255 are the bytes themselves; each topic is framed as BOS + its UTF-8 bytes + EOS
BOS, EOS = 256, 257
VOCAB = 258
HELD_OUT_EVERY = 8  # topics 0, 8, 16, ... in sorted order are held out
CONTEXT = 128
# 8 query heads in 4 key/value groups: heads are pruned a whole key/value group at a time, and with only
# 2 groups a 30% ratio rounds down to none (4 groups lose 1)
MODEL = {
    "hidden_size": 128,
    "intermediate_size": 384,
    "num_hidden_layers": 4,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
}
BATCH = 32
TRAIN_STEPS = 600
LR = 3e-3
FINETUNE_STEPS = 80
FINETUNE_LR = 1e-3
CALIBRATION_BATCHES = 8
CALIBRATION_BATCH = 16
RATIO = 0.3
EVAL_BATCH = 64
# one thread: on a shared 2-core machine a second thread waits on the other jobs (as in quality.py)
THREADS = 1
# (label, importance, compensate); random is the reference a criterion must beat
RUNS = (
    ("random", "random", False),
    ("l2", "l2", False),
    ("taylor", "taylor", False),
    ("wanda", "wanda", False),
    ("flap", "flap", False),
    ("flap + compensate", "flap", True),
)
CALIBRATED = ("taylor", "wanda", "flap")


# -- data ------------------------------------------------------------------------------------------
def split_text() -> tuple[torch.Tensor, torch.Tensor, dict[str, int]]:
    """The training and held-out byte streams (topics framed by BOS/EOS) and their sizes."""
    names = sorted(topics)
    parts: dict[bool, list[int]] = {False: [], True: []}
    counts = {"topics_train": 0, "topics_held_out": 0}
    for i, name in enumerate(names):
        held_out = i % HELD_OUT_EVERY == 0
        parts[held_out] += [BOS, *topics[name].encode("utf-8"), EOS]
        counts["topics_held_out" if held_out else "topics_train"] += 1
    train, held = (torch.tensor(parts[k], dtype=torch.long) for k in (False, True))
    return train, held, {**counts, "bytes_train": len(train), "bytes_held_out": len(held)}


def windows(stream: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` random windows of CONTEXT tokens from ``stream``, drawn by ``generator``."""
    starts = torch.randint(0, len(stream) - CONTEXT, (count,), generator=generator)
    return torch.stack([stream[s : s + CONTEXT] for s in starts.tolist()])


def held_out_windows(stream: torch.Tensor) -> torch.Tensor:
    """The held-out stream cut into consecutive windows (the tail shorter than a window is dropped)."""
    n = len(stream) // CONTEXT
    return stream[: n * CONTEXT].view(n, CONTEXT)


# -- model, training, evaluation ---------------------------------------------------------------------
def build() -> transformers.LlamaForCausalLM:
    config = transformers.LlamaConfig(
        vocab_size=VOCAB,
        max_position_embeddings=CONTEXT,
        bos_token_id=BOS,
        eos_token_id=EOS,
        tie_word_embeddings=False,
        **MODEL,
    )
    torch.manual_seed(SEED)
    return transformers.LlamaForCausalLM(config)


def params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def train(model: torch.nn.Module, stream: torch.Tensor, steps: int, lr: float, seed: int) -> float:
    """AdamW with a cosine schedule (5% warm-up) on random windows; returns the last steps' mean loss."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1, betas=(0.9, 0.95))
    warmup = max(1, steps // 20)

    def rate(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, rate)
    model.train()
    recent: list[float] = []
    for step in range(steps):
        x = windows(stream, BATCH, generator)
        loss = model(input_ids=x, labels=x).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        recent = [*recent[-19:], loss.item()]
        if step % 100 == 0 or step == steps - 1:
            print(f"  step {step:5d}/{steps} loss {loss.item():.3f}", flush=True)
    model.eval()
    return sum(recent) / len(recent)


@torch.no_grad()
def perplexity(model: torch.nn.Module, held_out: torch.Tensor) -> float:
    """exp of the mean next-byte cross-entropy over every predicted position of the held-out windows."""
    model.eval()
    total, count = 0.0, 0
    for batch in held_out.split(EVAL_BATCH):
        logits = model(input_ids=batch).logits[:, :-1]
        target = batch[:, 1:]
        total += torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), target.reshape(-1), reduction="sum")
        count += target.numel()
    return math.exp(float(total) / count)


def trained(cache: Path, train_stream: torch.Tensor) -> tuple[transformers.LlamaForCausalLM, float, bool]:
    """The trained model, its training time, and whether it came from the cache (same text, model and budget)."""
    key = hashlib.sha256(
        json.dumps([MODEL, CONTEXT, BATCH, TRAIN_STEPS, LR, SEED, VOCAB, torch.__version__]).encode()
        + train_stream.numpy().tobytes()
    ).hexdigest()[:16]
    path = cache / f"llama-{key}.pt"  # the weights and the training time
    model = build()
    if path.exists():
        stored = torch.load(path)
        model.load_state_dict(stored["state"])
        model.eval()
        print(f"trained weights from {path}")
        return model, stored["seconds"], True
    print(f"training {TRAIN_STEPS} steps ({params(model):,} parameters)")
    started = time.perf_counter()
    train(model, train_stream, TRAIN_STEPS, LR, SEED)
    seconds = time.perf_counter() - started
    torch.save({"state": model.state_dict(), "seconds": seconds}, path)
    return model, seconds, False


# -- pruning runs ---------------------------------------------------------------------------------------
def lm_loss(output: Any) -> torch.Tensor:
    return output.loss


def run_one(
    base: torch.nn.Module,
    label: str,
    importance: str,
    compensate: bool,
    train_stream: torch.Tensor,
    held_out: torch.Tensor,
    calibration: list[dict[str, torch.Tensor]],
) -> dict[str, Any]:
    model = copy.deepcopy(base)
    example = {"input_ids": held_out[:2]}
    options: dict[str, Any] = {}
    if importance in CALIBRATED:
        options["calibration"] = calibration
    if importance == "taylor":
        options["loss_fn"] = lm_loss
    started = time.perf_counter()
    report = pt.prune(
        model,
        example,
        ratio=RATIO,
        importance=importance,
        compensate=compensate,
        seed=SEED,
        show_progress=False,
        **options,
    )
    prune_seconds = time.perf_counter() - started
    model.zero_grad(set_to_none=True)
    pruned = perplexity(model, held_out)
    attention = model.model.layers[0].self_attn
    row = {
        "label": label,
        "params": params(model),
        "heads": f"{model.config.num_attention_heads}/{model.config.num_key_value_heads}",
        "intermediate": model.model.layers[0].mlp.up_proj.out_features,
        "q_out": attention.q_proj.out_features,
        "ppl_pruned": pruned,
        "prune_s": prune_seconds,
    }
    started = time.perf_counter()
    train(model, train_stream, FINETUNE_STEPS, FINETUNE_LR, SEED + 1)
    row["finetune_s"] = time.perf_counter() - started
    row["ppl_recovered"] = perplexity(model, held_out)
    print(f"{label}: pruned {pruned:.3f}, recovered {row['ppl_recovered']:.3f} ({report.skipped or 'nothing skipped'})")
    return row


# -- the page ------------------------------------------------------------------------------------------
def versions() -> str:
    found = []
    for package in ("torch", "transformers", "numpy", "matplotlib"):
        try:
            found.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            found.append(f"{package} (not installed)")
    return ", ".join(found)


def plot(record: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = record["rows"]
    labels = [r["label"] for r in rows]
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.27
    xs = range(len(rows))
    series = (
        ("before", [record["ppl_before"]] * len(rows), "#999999"),
        ("pruned 30%", [r["ppl_pruned"] for r in rows], "#d62728"),
        (f"recovered ({FINETUNE_STEPS} steps)", [r["ppl_recovered"] for r in rows], "#1f77b4"),
    )
    for k, (name, values, colour) in enumerate(series):
        bars = ax.bar([x + (k - 1) * width for x in xs], values, width, label=name, color=colour)
        ax.bar_label(bars, fmt="%.2f", fontsize=7, rotation=90, padding=2)
    ax.axhline(record["ppl_unpruned_finetuned"], color="black", linestyle="--", linewidth=1)
    ax.plot([], [], color="black", linestyle="--", linewidth=1, label="unpruned, same fine-tune")
    ax.set_yscale("log")
    ax.set_xticks(list(xs), labels)
    ax.set_ylabel("held-out perplexity per byte (log)")
    ax.set_title("Tiny LLaMA on pydoc_data.topics: 30% of MLP units and KV head groups pruned")
    ax.legend(fontsize=8, loc="upper right", ncol=2)
    top = max(max(values) for _, values, _ in series)
    ax.set_ylim(min(record["ppl_before"], *(r["ppl_recovered"] for r in rows)) * 0.8, top * 3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def checks(record: dict[str, Any]) -> list[str]:
    """Plain statements: do the calibration criteria beat l2 (and l2 beat random) right after pruning?"""
    by = {r["label"]: r for r in record["rows"]}
    lines = []
    l2 = by["l2"]["ppl_pruned"]
    for label in ("taylor", "wanda", "flap", "flap + compensate"):
        value = by[label]["ppl_pruned"]
        verdict = "better than" if value < l2 else "NOT better than"
        lines.append(f"- Right after pruning, `{label}` ({value:.2f}) is {verdict} `l2` ({l2:.2f}).")
    for name in ("l2", *CALIBRATED):
        value, random_ppl = by[name]["ppl_pruned"], by["random"]["ppl_pruned"]
        if value >= random_ppl:
            lines.append(f"- `{name}` ({value:.2f}) is NOT better than random ({random_ppl:.2f}) right after pruning.")
    recovered = sorted(record["rows"], key=lambda r: r["ppl_recovered"])
    order = ", ".join(f"`{r['label']}` {r['ppl_recovered']:.2f}" for r in recovered)
    lines.append(f"- After recovery the order is {order}.")
    before, tuned = record["ppl_before"], record["ppl_unpruned_finetuned"]
    effect = "lowers" if tuned < before else "raises"
    lines.append(
        f"- The recovery fine-tune alone {effect} the unpruned model's perplexity ({before:.2f} → {tuned:.2f}): "
        "read the recovered column against that, not against the trained model."
    )
    flap, compensated = by["flap"]["ppl_pruned"], by["flap + compensate"]["ppl_pruned"]
    verdict = "helps" if compensated < flap else "does NOT help"
    lines.append(f"- Bias compensation {verdict} `flap` right after pruning ({flap:.2f} → {compensated:.2f}).")
    return lines


def section(record: dict[str, Any]) -> list[str]:
    data = record["data"]
    cpu = platform.processor() or platform.machine()
    trained_note = (
        f"trained in {record['train_s'] / 60:.1f} min by an earlier run (same text, model and budget), loaded "
        f"from the cache; a run without the cache takes about {(record['seconds'] + record['train_s']) / 60:.1f} min"
        if record["cached"]
        else f"trained in this run, {record['train_s'] / 60:.1f} min of it"
    )
    lines = [
        HEADING,
        "",
        "Generated by `benchmarks/quality_llm.py` (run by `nox -s quality` after `benchmarks/quality.py`); "
        "do not edit by hand." + (" **Quick run: tiny budget, the numbers mean nothing.**" if record["quick"] else ""),
        "",
        f"Machine: {platform.system()} {platform.release()}, {cpu}, {THREADS} torch thread(s) on a shared 2-core "
        f"machine; Python {platform.python_version()}; {versions()}. Seed {SEED} for the weights, data order, "
        f"random importance and calibration; fine-tunes draw their windows with seed {SEED + 1}. "
        f"Whole script: {record['seconds'] / 60:.1f} min; model {trained_note}.",
        "",
        f"- **Text**: `pydoc_data.topics.topics` of this Python ({len(topics)} help topics, the text `help()` "
        f"prints). Topics are sorted by name; every {HELD_OUT_EVERY}th (the 0th, {HELD_OUT_EVERY}th, ...) is held "
        f"out: {data['topics_train']} topics / {data['bytes_train']:,} bytes for training, "
        f"{data['topics_held_out']} topics / {data['bytes_held_out']:,} bytes held out. Byte-level vocabulary: "
        "the 256 bytes of the UTF-8 text plus BOS and EOS framing each topic. The text differs between Python "
        "versions, so numbers from another Python are not comparable.",
        f"- **Model**: `LlamaForCausalLM`, hidden {MODEL['hidden_size']}, {MODEL['num_hidden_layers']} layers, "
        f"{MODEL['num_attention_heads']} query heads in {MODEL['num_key_value_heads']} key/value groups (GQA, "
        f"head dim {MODEL['hidden_size'] // MODEL['num_attention_heads']}), MLP {MODEL['intermediate_size']}, "
        f"context {CONTEXT}, untied embeddings: {record['params_before']:,} parameters. Trained from scratch, "
        f"{TRAIN_STEPS} steps of {BATCH} random windows (AdamW, lr {LR}, 5% warm-up, cosine, weight decay 0.1, "
        "clip 1.0). Four key/value groups rather than two because heads are pruned a whole group at a time "
        "(a group's query heads with its key and value) and 30% of two groups rounds down to none.",
        f"- **Pruning**: `pt.prune(model, example, ratio={RATIO}, importance=...)`, local ranking, defaults "
        "otherwise: per layer 30% of the MLP units (gate/up outputs with the down input) and of the key/value "
        "groups (rounded: 1 of 4, so 2 of 8 query heads); the residual stream stays whole. "
        f"Calibration for `taylor`, `wanda`, `flap`: {CALIBRATION_BATCHES} batches of {CALIBRATION_BATCH} "
        "random training windows (the same for all three); `taylor` accumulates the gradients of the LM loss "
        "(`loss_fn=lambda out: out.loss`). `flap + compensate` adds `compensate=True`: the calibration mean of "
        "each removed input channel folded into a bias of the layer that read it (`o_proj`, `down_proj` get "
        "one).",
        f"- **Recovery**: {FINETUNE_STEPS} steps of {BATCH} windows (AdamW, lr {FINETUNE_LR}, same schedule), the "
        "same windows in the same order for every run. Perplexity: exp of the mean next-byte cross-entropy over "
        f"{record['held_out_windows']} consecutive held-out windows of {CONTEXT} bytes.",
        "",
        "| importance | parameters kept | heads / KV groups | MLP units | perplexity before | pruned | recovered |",
        "|---|---:|---:|---:|---:|---:|---:|",
        f"| (unpruned) | {record['params_before']:,} (100%) | "
        f"{MODEL['num_attention_heads']}/{MODEL['num_key_value_heads']} | {MODEL['intermediate_size']} | "
        f"{record['ppl_before']:.3f} | — | {record['ppl_unpruned_finetuned']:.3f} |",
    ]
    for r in record["rows"]:
        lines.append(
            f"| {r['label']} | {r['params']:,} ({r['params'] / record['params_before']:.1%}) | {r['heads']} | "
            f"{r['intermediate']} | {record['ppl_before']:.3f} | {r['ppl_pruned']:.3f} | {r['ppl_recovered']:.3f} |"
        )
    lines += [
        "",
        "The unpruned row's last column is the unpruned model after the same recovery fine-tune, for reference.",
        "",
        "Checks (one seed, one model: differences of a few hundredths are noise):",
        "",
        *checks(record),
        "",
        "![Tiny LLaMA perplexity per importance](quality-llm.png)",
        "",
    ]
    return lines


def replace_section(page: str, new: list[str]) -> str:
    """``page`` with its HEADING section (up to the next ``## `` heading) replaced by ``new``, or ``new`` appended."""
    lines = page.splitlines()
    if HEADING in lines:
        start = lines.index(HEADING)
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        lines[start:end] = new
    else:
        if lines and lines[-1].strip():
            lines.append("")
        lines += new
    return "\n".join(lines).rstrip("\n") + "\n"


def main() -> None:
    global TRAIN_STEPS, FINETUNE_STEPS, CALIBRATION_BATCHES
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=Path(".nox/quality/cache"), help="trained weights")
    parser.add_argument("--out", type=Path, default=Path("docs/quality.md"))
    parser.add_argument("--quick", action="store_true", help="tiny budget: check the pipeline only")
    parser.add_argument("--render", action="store_true", help="rewrite the section and plot from quality-llm.json")
    args = parser.parse_args()
    if args.render:
        record = json.loads((args.out.parent / "quality-llm.json").read_text())
        globals().update(record["budgets"])
        write(record, args.out)
        return
    if args.quick:
        TRAIN_STEPS, FINETUNE_STEPS, CALIBRATION_BATCHES = 30, 5, 2
        args.cache = args.cache / "quick"
    args.cache.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(THREADS)
    transformers.utils.logging.set_verbosity_error()
    started = time.perf_counter()

    train_stream, held_stream, data = split_text()
    held_out = held_out_windows(held_stream)
    base, train_seconds, cached = trained(args.cache, train_stream)
    generator = torch.Generator().manual_seed(SEED)
    calibration = [
        {"input_ids": x, "labels": x}
        for x in windows(train_stream, CALIBRATION_BATCHES * CALIBRATION_BATCH, generator).split(CALIBRATION_BATCH)
    ]
    record: dict[str, Any] = {
        "quick": args.quick,
        "data": data,
        "held_out_windows": len(held_out),
        "params_before": params(base),
        "ppl_before": perplexity(base, held_out),
        "train_s": train_seconds,
        "cached": cached,
    }
    print(f"before: {record['ppl_before']:.3f}")
    unpruned = copy.deepcopy(base)
    train(unpruned, train_stream, FINETUNE_STEPS, FINETUNE_LR, SEED + 1)
    record["ppl_unpruned_finetuned"] = perplexity(unpruned, held_out)
    runs: list[tuple[str, str, bool]] = list(RUNS)
    record["rows"] = [run_one(base, *run, train_stream, held_out, calibration) for run in runs]
    record["seconds"] = time.perf_counter() - started
    record["budgets"] = {name: globals()[name] for name in ("TRAIN_STEPS", "FINETUNE_STEPS", "CALIBRATION_BATCHES")}
    write(record, args.out)


def write(record: dict[str, Any], out: Path) -> None:
    """The section of ``out``, the plot and the record (quality-llm.json, for ``--render``) beside it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    plot(record, out.parent / "quality-llm.png")
    page = out.read_text() if out.exists() else ""
    out.write_text(replace_section(page, section(record)))
    (out.parent / "quality-llm.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {out}, quality-llm.png and quality-llm.json in {out.parent} ({record['seconds'] / 60:.1f} min)")


if __name__ == "__main__":
    sys.exit(main())
