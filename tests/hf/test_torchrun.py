"""Calibration spread over two CPU ranks launched with ``torchrun`` (gloo), as a user would run it.

``tests/torch/test_distributed.py`` spawns ranks from inside pytest; this test starts
``python -m torch.distributed.run --nproc_per_node 2 --standalone`` on ``distributed_worker.py``
and compares the plan rank 0 writes with the plan of one process calibrating on all the batches,
and the checkpoint rank 0 writes with ``prune_checkpoint(distributed=True)`` with that process's model.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
import torch.distributed as dist

import prune_torch as pt
from prune_ops import Plan

transformers = pytest.importorskip("transformers", minversion="5.0")
pytestmark = pytest.mark.skipif(
    not dist.is_available() or sys.platform == "win32", reason="needs torch.distributed with gloo"
)

WORKER = Path(__file__).resolve().parent / "distributed_worker.py"


def _worker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("distributed_worker", WORKER)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _torchrun(out: Path) -> None:
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*command, str(WORKER), str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, f"torchrun failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"


def test_torchrun_ranks_derive_the_single_process_plan(tmp_path: Path) -> None:
    worker = _worker()
    worker.model().save_pretrained(tmp_path / "src", max_shard_size="20KB")
    _torchrun(tmp_path)
    batches = worker.batches()
    model = worker.model()
    single = pt.prune(model, batches[0], calibration=batches, **worker.OPTIONS)
    written = Plan.from_json((tmp_path / "plan.json").read_text())
    assert written == single.plan
    assert Plan.from_json((tmp_path / "plan-rank1.json").read_text()) == single.plan
    assert written.entries, "the plan removes something"
    # rank 0 alone would choose otherwise: the all-reduce is what makes the plans agree
    alone = pt.prune(worker.model(), batches[0], calibration=batches[0::2], **worker.OPTIONS)
    assert alone.plan != single.plan
    # the streamed prune of the saved checkpoint: same plan on both ranks, one writer, the same model
    for rank in (0, 1):
        assert Plan.from_json((tmp_path / f"streamed-rank{rank}.json").read_text()).entries == single.plan.entries
    streamed = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "streamed").eval()
    with torch.no_grad():
        assert torch.equal(streamed(batches[1]).logits, model(batches[1]).logits)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
