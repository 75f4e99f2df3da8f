"""Calibration spread over two CPU ranks (gloo): the all-reduced statistics and the plan equal one process's."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import prune_torch as pt
from prune_ops import Plan, PruningError
from prune_torch._activations import gather_statistics

pytestmark = pytest.mark.skipif(
    not dist.is_available() or sys.platform == "win32", reason="needs torch.distributed with gloo"
)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.GELU(), nn.Linear(16, 12), nn.GELU(), nn.Linear(12, 3)).eval()


def _batches() -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return [torch.randn(8, 6, generator=gen) + 0.5 for _ in range(6)]


def _rank(rank: int, world: int, folder: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=world)
    try:
        share = _batches()[rank::world]
        stats = gather_statistics(_model(), share, show_progress=False, distributed=True)
        np.save(f"{folder}/total{rank}.npy", stats.get("2.weight", 1).total)
        model = _model()
        report = pt.prune(
            model, share[0], ratio=0.5, importance="flap", calibration=share, distributed=True, show_progress=False
        )
        Path(f"{folder}/plan{rank}.json").write_text(report.plan.to_json())
    finally:
        dist.destroy_process_group()


def test_two_ranks_derive_the_single_process_plan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # spawned ranks import this module by its package path from the parent's sys.path: make sure
    # the repository root is on it whatever way pytest was started (``pytest`` or ``python -m pytest``)
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2]))
    mp.start_processes(_rank, args=(2, str(tmp_path)), nprocs=2, join=True, start_method="spawn")
    single = gather_statistics(_model(), _batches(), show_progress=False)
    for rank in (0, 1):
        np.testing.assert_allclose(np.load(tmp_path / f"total{rank}.npy"), single.get("2.weight", 1).total, rtol=1e-12)
    expected = pt.prune(
        _model(), _batches()[0], ratio=0.5, importance="flap", calibration=_batches(), show_progress=False
    )
    plans = [Plan.from_json((tmp_path / f"plan{rank}.json").read_text()) for rank in (0, 1)]
    assert plans[0] == plans[1] == expected.plan
    # each rank alone would choose otherwise: the reduction is what makes the plans agree
    alone = pt.prune(
        _model(), _batches()[0], ratio=0.5, importance="flap", calibration=_batches()[0::2], show_progress=False
    )
    assert alone.plan != expected.plan


def test_distributed_needs_an_initialised_group_and_activation_statistics() -> None:
    with pytest.raises(PruningError, match="init_process_group"):
        gather_statistics(_model(), _batches(), show_progress=False, distributed=True)
    with pytest.raises(PruningError, match="uses none"):
        pt.prune(_model(), _batches()[0], importance="l2", distributed=True, show_progress=False)
