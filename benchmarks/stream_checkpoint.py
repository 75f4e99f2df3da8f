"""Peak memory of ``pt.prune_checkpoint`` against the size of the checkpoint it prunes.

A LLaMA-architecture checkpoint with random weights is written tensor by tensor (never the whole
model in memory: names and shapes come from the model built on the meta device, and the files
follow what ``save_pretrained`` writes: safetensors shards, their index, ``config.json``), then
pruned by ``prune_checkpoint`` once per importance, each in a fresh process that reports its
peak resident set (``ru_maxrss``, which counts the pages of memory-mapped shards it read) and
its resident set after the imports. Weight-only importance reads each group's tensors from the
shards; Wanda pushes a few calibration batches through the model one decoder layer at a time.
The checkpoint is deleted afterwards. The defaults are TinyLlama-1.1B's shapes (4.4 GB in
float32); the run takes both cores of a small machine for several minutes. Heads are kept whole
by default (``--head-ratio 0``): with ``--head-ratio 0.5`` the plan for one layer's attention
(layer 4 of a 6-layer, hidden-2048 random checkpoint) fails the apply check ("aten.cat in
module model.layers.4.self_attn produced shape (1, 2, 16, 64) where the plan predicted
(1, 2, 8, 64)"), which the in-memory ``prune`` also meets and answers by leaving that layer's
heads unpruned; a known bug of the head plan, not of streaming.

    python benchmarks/stream_checkpoint.py                       # prints the Markdown section
    python benchmarks/stream_checkpoint.py --out docs/benchmarks.md  # replaces (or appends) it there
    python benchmarks/stream_checkpoint.py --layers 2 --importance l2  # a quick run
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HEADING = "## Streaming a checkpoint larger than memory"

_PRUNE = """
import json, resource, sys, time
import torch, transformers
import prune_torch as pt
transformers.utils.logging.set_verbosity_error()
def rss():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS")) * 1024
job = json.loads(sys.argv[1])
base = rss()
calibration = None
if job["batches"]:
    gen = torch.Generator().manual_seed(0)
    calibration = [torch.randint(0, job["vocab"], (1, job["tokens"]), generator=gen) for _ in range(job["batches"])]
report = pt.prune_checkpoint(None, job["src"], job["dst"], ratio=job["ratio"], head_ratio=job["head_ratio"],
                             importance=job["importance"], calibration=calibration, show_progress=False)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"base": base, "peak": peak, "before": report.bytes_before, "after": report.bytes_after,
                  "parameters_before": report.before.parameters, "parameters_after": report.after.parameters,
                  "seconds": report.seconds}))
"""


def write_random_checkpoint(config: dict[str, Any], directory: Path, shard_bytes: int, seed: int = 0) -> int:
    """A LLaMA checkpoint with random float32 weights, written one tensor at a time; returns its bytes."""
    import torch
    import transformers

    from prune_torch._shards import write_shard

    llama_config = transformers.LlamaConfig(**config)
    with torch.device("meta"):
        model = transformers.LlamaForCausalLM(llama_config)
    entries = [(name, tuple(t.shape), torch.float32) for name, t in model.state_dict().items()]
    shards: list[list[tuple[str, tuple[int, ...], torch.dtype]]] = [[]]
    size = 0
    for entry in entries:
        nbytes = 4 * int(torch.Size(entry[1]).numel())
        if shards[-1] and size + nbytes > shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(entry)
        size += nbytes
    gen = torch.Generator().manual_seed(seed)
    std = llama_config.initializer_range

    shapes = {name: shape for name, shape, _ in entries}

    def produce(name: str, _file: Any) -> torch.Tensor:
        shape = shapes[name]
        if name.endswith("norm.weight"):
            return torch.ones(shape)
        return torch.randn(shape, generator=gen).mul_(std)

    directory.mkdir(parents=True)
    weight_map, total = {}, 0
    for i, shard in enumerate(shards):
        name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        total += write_shard(directory / name, shard, produce)
        weight_map.update((key, name) for key, _, _ in shard)
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (directory / "model.safetensors.index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    llama_config.save_pretrained(directory)
    return total


def prune_in_child(job: dict[str, Any]) -> dict[str, Any]:
    """Run one ``prune_checkpoint`` in a fresh interpreter; its report and memory as a dict."""
    out = subprocess.run([sys.executable, "-c", _PRUNE, json.dumps(job)], capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"prune_checkpoint ({job['importance']}) failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def section(config: dict[str, Any], args: argparse.Namespace, results: list[tuple[str, dict[str, Any]]]) -> str:
    """The Markdown section: what was run, one row per importance, and whether the target is met."""
    gib, mib = 2**30, 2**20
    first = results[0][1]
    lines = [
        HEADING,
        "",
        f"`python benchmarks/stream_checkpoint.py` (see its docstring): a LLaMA-architecture checkpoint with random "
        f"float32 weights, hidden {config['hidden_size']}, intermediate {config['intermediate_size']}, "
        f"{config['num_hidden_layers']} layers, {config['num_attention_heads']} heads "
        f"({config['num_key_value_heads']} key/value), vocabulary {config['vocab_size']}: "
        f"{first['parameters_before'] / 1e9:.2f} B parameters, {first['before'] / gib:.2f} GiB in "
        f"{args.shard_mb} MB shards. `pt.prune_checkpoint(None, src, dst, ratio={args.ratio}, "
        f"head_ratio={args.head_ratio})` ({args.ratio:.0%} of the MLP units, {args.head_ratio:.0%} of the heads), "
        "each in a fresh process; Wanda with "
        f"{args.batches} calibration batches of {args.tokens} tokens, pushed through one decoder layer at a time. "
        "Peak RSS is the process's `ru_maxrss` (it counts the pages of the memory-mapped shards it read); "
        "RSS after imports is what torch and transformers take before any work.",
        "",
        "| importance | checkpoint before | after | parameters after | peak RSS | RSS after imports "
        "| peak / checkpoint | time |",
        "|---|---|---|---|---|---|---|---|",
    ]
    met = True
    for importance, r in results:
        share = r["peak"] / r["before"]
        met = met and share <= 1 / 3
        lines.append(
            f"| {importance} | {r['before'] / gib:.2f} GiB | {r['after'] / gib:.2f} GiB "
            f"| {r['parameters_after'] / 1e9:.2f} B | {r['peak'] / mib:,.0f} MiB | {r['base'] / mib:,.0f} MiB "
            f"| {share:.1%} | {r['seconds']:.0f} s |"
        )
    lines += [
        "",
        f"**Target (peak RSS ≤ one third of the checkpoint): {'met' if met else 'missed'}.** "
        f"Machine: {platform.machine()}, {_cpus()} CPU cores; Python {platform.python_version()}.",
        "",
    ]
    return "\n".join(lines)


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def put_section(path: Path, text: str, heading: str = HEADING) -> None:
    """Replace the section under ``heading`` in ``path`` (up to the next level-2 heading), or append it."""
    lines = path.read_text().split("\n") if path.exists() else []
    new = [*text.rstrip("\n").split("\n"), ""]
    if heading in lines:
        start = lines.index(heading)
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        lines[start:end] = new
    else:
        if lines and lines[-1] != "":
            lines.append("")
        lines += new
    path.write_text("\n".join(lines).rstrip("\n") + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--intermediate", type=int, default=5632)
    parser.add_argument("--layers", type=int, default=22)
    parser.add_argument("--heads", type=int, default=32)
    parser.add_argument("--kv-heads", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--shard-mb", type=int, default=500)
    parser.add_argument("--ratio", type=float, default=0.3)
    # MLP units only by default: transformers needs hidden_size % num_attention_heads == 0 (0.3 of 32
    # heads breaks it), and with 0.5 one layer of this config hits an apply error (see the docstring)
    parser.add_argument("--head-ratio", type=float, default=0.0)
    parser.add_argument("--importance", default="l2,wanda", help="comma-separated; each runs in its own process")
    parser.add_argument("--batches", type=int, default=4, help="calibration batches (calibration-aware importance)")
    parser.add_argument("--tokens", type=int, default=64, help="tokens per calibration batch")
    parser.add_argument("--tmp", default=None, help="where to write the checkpoints (default: the temp dir)")
    parser.add_argument("--out", default=None, help="a Markdown file whose streaming section is replaced or appended")
    args = parser.parse_args()
    config = {
        "vocab_size": args.vocab,
        "hidden_size": args.hidden,
        "intermediate_size": args.intermediate,
        "num_hidden_layers": args.layers,
        "num_attention_heads": args.heads,
        "num_key_value_heads": args.kv_heads,
        "head_dim": args.hidden // args.heads,
        "max_position_embeddings": max(2048, args.tokens),
    }
    results = []
    with tempfile.TemporaryDirectory(dir=args.tmp, prefix="stream-checkpoint-") as tmp:
        src = Path(tmp) / "src"
        total = write_random_checkpoint(config, src, args.shard_mb * 10**6)
        free = shutil.disk_usage(tmp).free
        print(f"wrote {total / 2**30:.2f} GiB to {src} ({free / 2**30:.1f} GiB left there)", flush=True)
        for importance in args.importance.split(","):
            job = {
                "src": str(src),
                "dst": str(Path(tmp) / f"dst-{importance}"),
                "ratio": args.ratio,
                "head_ratio": args.head_ratio,
                "importance": importance,
                "vocab": args.vocab,
                "tokens": args.tokens,
                "batches": args.batches if importance in ("wanda", "flap") else 0,
            }
            result = prune_in_child(job)
            print(f"{importance}: {json.dumps(result)}", flush=True)
            results.append((importance, result))
            shutil.rmtree(job["dst"])
    text = section(config, args, results)
    print(text)
    if args.out:
        put_section(Path(args.out), text)


if __name__ == "__main__":
    main()
