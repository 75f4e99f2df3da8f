"""Values whose sizes come from the data are found (and so never compared after pruning)."""

from __future__ import annotations

import torch
from torch import nn

from prune_torch._rebase import data_sized
from prune_torch._traced import trace_model


class Pasted(nn.Module):
    """One tensor per kept row, made from plain sizes and stacked (torchvision's pasted masks)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(3, 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        scores = self.conv(x)[0, 0]
        keep = torch.nonzero(scores > 0).flatten()
        pasted = torch.stack([torch.zeros(5, 5) for _ in range(len(keep))])
        fixed = torch.stack([torch.zeros(5, 5) for _ in range(2)])
        return keep, pasted, fixed


def test_a_stack_of_one_tensor_per_kept_row_is_data_sized() -> None:
    torch.manual_seed(0)
    x = torch.randn(1, 3, 12)
    model = Pasted().eval()
    keep, _pasted, _fixed = model(x)
    assert len(keep) > 2  # a count above 1, and not the 2 of the fixed stack
    graph = trace_model(model, x)
    sized = data_sized(graph)
    assert [o in sized for o in graph.outputs] == [True, True, False]
