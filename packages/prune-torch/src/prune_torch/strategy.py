"""The classic per-weight strategies on torch tensors: ``strategy(weight, amount=0.4, round_to=16)``.

>>> import torch
>>> from prune_torch import strategy
>>> strategy.L1()(torch.tensor([[1.0], [-5.0], [0.1], [2.0]]), amount=0.5)
[0, 2]
"""

from __future__ import annotations

import attrs
import numpy as np
import torch

from prune_ops import L1Strategy, L2Strategy, PruningError, RandomStrategy

__all__ = ["L1", "L2", "Random"]


def _numpy(weight: torch.Tensor) -> np.ndarray:
    if not isinstance(weight, torch.Tensor):
        raise PruningError(f"a strategy needs a torch.Tensor (got {type(weight).__name__})")
    if weight.is_meta:
        raise PruningError(
            "a strategy needs real weights (got a tensor on the meta device); use Random for meta models"
        )
    return weight.detach().to("cpu", torch.float64).numpy()


@attrs.frozen
class L1:
    """Output channels (dim 0) with the smallest L1 norm."""

    def __call__(self, weight: torch.Tensor, amount: float = 0.5, round_to: int = 1) -> list[int]:
        return L1Strategy()(_numpy(weight), amount=amount, round_to=round_to).tolist()


@attrs.frozen
class L2:
    """Output channels (dim 0) with the smallest L2 norm."""

    def __call__(self, weight: torch.Tensor, amount: float = 0.5, round_to: int = 1) -> list[int]:
        return L2Strategy()(_numpy(weight), amount=amount, round_to=round_to).tolist()


@attrs.frozen
class Random:
    """Random output channels, reproducible for a given ``seed``."""

    seed: int | None = None

    def __call__(self, weight: torch.Tensor, amount: float = 0.5, round_to: int = 1) -> list[int]:
        size = int(weight.shape[0])
        return RandomStrategy(self.seed)(np.zeros((size, 1)), amount=amount, round_to=round_to).tolist()
