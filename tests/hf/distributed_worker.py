"""One rank of the ``torchrun``-launched test (``tests/hf/test_torchrun.py``), also the source of its model and data.

Run as ``python -m torch.distributed.run --nproc_per_node 2 --standalone distributed_worker.py OUT``:
each rank joins the gloo group that torchrun's environment describes, calibrates a small LLaMA on
its share of the batches with ``distributed=True`` (Wanda importance: the activation statistics
are all-reduced), and writes the plan it derived to ``OUT/plan-rank<r>.json``; rank 0 also writes
``OUT/plan.json``, as a real job would write its result once. Then the ranks prune the checkpoint
``OUT/src`` (the same model, saved by the test) with ``pt.prune_checkpoint(..., distributed=True)``,
layer by layer on their shares; only rank 0 writes ``OUT/streamed``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import transformers

import prune_torch as pt

VOCAB = 48
# half the heads: LLaMA configs need the hidden size to be a multiple of the head count
OPTIONS: dict[str, Any] = {"ratio": 0.3, "head_ratio": 0.5, "importance": "wanda", "show_progress": False}


def model() -> transformers.LlamaForCausalLM:
    """A small LLaMA with grouped-query attention and random weights (the same on every rank)."""
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=8,
        num_key_value_heads=4,
        head_dim=8,
        max_position_embeddings=32,
        initializer_range=0.3,
    )
    return transformers.LlamaForCausalLM(config).eval()


def batches() -> list[torch.Tensor]:
    """Six calibration batches of token ids; rank ``r`` of ``w`` takes ``batches()[r::w]``."""
    gen = torch.Generator().manual_seed(7)
    return [torch.randint(0, VOCAB, (2, 12), generator=gen) for _ in range(6)]


def main(out: Path) -> None:
    torch.set_num_threads(1)
    transformers.utils.logging.set_verbosity_error()
    dist.init_process_group("gloo")  # rank, world size and rendezvous from torchrun's environment
    try:
        rank, world = dist.get_rank(), dist.get_world_size()
        share = batches()[rank::world]
        report = pt.prune(model(), share[0], calibration=share, distributed=True, **OPTIONS)
        (out / f"plan-rank{rank}.json").write_text(report.plan.to_json())
        if rank == 0:
            (out / "plan.json").write_text(report.plan.to_json())
        streamed = pt.prune_checkpoint(
            None, out / "src", out / "streamed", calibration=share, distributed=True, **OPTIONS
        )
        (out / f"streamed-rank{rank}.json").write_text(streamed.plan.to_json())
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
