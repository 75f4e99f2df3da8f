"""Peak memory of ``pt.prune_checkpoint`` against the size of the checkpoint it prunes.

A LLaMA-architecture checkpoint with random weights is written with ``save_pretrained`` (in a
separate process, so its memory does not count), then pruned by ``prune_checkpoint`` in a fresh
process that reports its peak resident set (``ru_maxrss``) and its resident set after the imports,
before any work. Prints one Markdown table row per run.

    python benchmarks/stream_checkpoint.py --hidden 1024 --intermediate 4096 --layers 8 --vocab 32000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

_SAVE = """
import sys, json, torch, transformers
transformers.utils.logging.set_verbosity_error()
cfg = json.loads(sys.argv[2])
config = transformers.LlamaConfig(**cfg)
torch.manual_seed(0)
with torch.no_grad():
    model = transformers.LlamaForCausalLM(config)
model.save_pretrained(sys.argv[1], safe_serialization=True, max_shard_size=sys.argv[3])
"""

_PRUNE = """
import json, resource, sys, time
import torch, transformers
import prune_torch as pt
transformers.utils.logging.set_verbosity_error()
def rss():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS")) * 1024
base = rss()
report = pt.prune_checkpoint(None, sys.argv[1], sys.argv[2], ratio=float(sys.argv[3]), importance=sys.argv[4],
                             head_ratio=float(sys.argv[5]), show_progress=False)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"base": base, "peak": peak, "before": report.bytes_before, "after": report.bytes_after,
                  "seconds": report.seconds}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--intermediate", type=int, default=4096)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--heads", type=int, default=16)
    parser.add_argument("--kv-heads", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--shard", default="200MB")
    parser.add_argument("--ratio", type=float, default=0.3)
    parser.add_argument("--importance", default="l2")
    # transformers requires hidden_size % num_attention_heads == 0: half the heads keeps that
    parser.add_argument("--head-ratio", type=float, default=0.5)
    args = parser.parse_args()
    config = {
        "vocab_size": args.vocab,
        "hidden_size": args.hidden,
        "intermediate_size": args.intermediate,
        "num_hidden_layers": args.layers,
        "num_attention_heads": args.heads,
        "num_key_value_heads": args.kv_heads,
        "head_dim": args.hidden // args.heads,
    }
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "src", Path(tmp) / "dst"
        subprocess.run([sys.executable, "-c", _SAVE, str(src), json.dumps(config), args.shard], check=True)
        out = subprocess.run(
            [sys.executable, "-c", _PRUNE, str(src), str(dst), str(args.ratio), args.importance, str(args.head_ratio)],
            capture_output=True,
            text=True,
        )
        if out.returncode:
            sys.exit(f"prune_checkpoint failed:\n{out.stderr[-3000:]}")
        result = json.loads(out.stdout.strip().splitlines()[-1])
    mib = 2**20
    work = result["peak"] - result["base"]
    print("| checkpoint | after | peak RSS | RSS after imports | peak − imports | time |")
    print("|---|---|---|---|---|---|")
    print(
        f"| {result['before'] / mib:.0f} MiB | {result['after'] / mib:.0f} MiB | {result['peak'] / mib:.0f} MiB "
        f"| {result['base'] / mib:.0f} MiB | {work / mib:.0f} MiB ({work / result['before']:.0%} of the checkpoint) "
        f"| {result['seconds']:.1f} s |"
    )


if __name__ == "__main__":
    main()
