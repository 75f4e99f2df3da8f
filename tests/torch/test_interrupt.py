"""An interrupt (KeyboardInterrupt, or any BaseException such as a harness's timeout) stops a prune.

The trace and the fitting of a plan catch ``Exception`` where a model's forward may fail and try
again; an interrupt must pass through them, and the model must be left exactly as it was.
"""

from __future__ import annotations

import pytest
import torch
from support import assert_unchanged, snapshot
from torch import nn

import prune_torch as pt

X = torch.randn(1, 3, 6, 6)


class Interrupting(nn.Module):
    """a → b → c; raises ``KeyboardInterrupt`` at the point of the prune named by ``when``.

    ``"trace"``: on every forward (the first trace). ``"check"``: once ``a`` has lost channels (the
    run that checks the first apply). ``"fit"``: ``a`` keeps its width in code (a ``ValueError`` the
    fit search handles), and the interrupt comes once ``b`` alone has lost channels (a later try).
    ``"kept"``: the same without the interrupt.
    """

    def __init__(self, when: str) -> None:
        super().__init__()
        self.when = when
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 6, 3, padding=1)
        self.c = nn.Conv2d(6, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.when == "trace":
            raise KeyboardInterrupt
        y = torch.relu(self.a(x))
        if self.when == "check" and y.shape[1] != 8:
            raise KeyboardInterrupt
        if self.when in ("fit", "kept") and y.shape[1] != 8:
            raise ValueError("this model keeps 8 channels after a")
        z = torch.relu(self.b(y))
        if self.when == "fit" and z.shape[1] != 6:
            raise KeyboardInterrupt
        return self.c(z)


@pytest.mark.parametrize("when", ["trace", "check", "fit"])
def test_an_interrupt_stops_the_prune_and_leaves_the_model_as_it_was(when: str) -> None:
    torch.manual_seed(0)
    model = Interrupting(when).eval()
    before = snapshot(model)
    with pytest.raises(KeyboardInterrupt):
        pt.prune(model, X, ratio=0.5, show_progress=False)
    assert_unchanged(model, before)
    assert (model.a.out_channels, model.b.in_channels, model.b.out_channels) == (8, 8, 6)


def test_without_the_interrupt_the_try_it_stopped_goes_on() -> None:
    """The control of ``"fit"``: the try that raised the interrupt fits; ``a`` is left whole, with why."""
    torch.manual_seed(0)
    model = Interrupting("kept").eval()
    report = pt.prune(model, X, ratio=0.5, show_progress=False)
    assert (model.a.out_channels, model.b.in_channels, model.b.out_channels) == (8, 8, 3)
    assert len(report.skipped) == 1
    assert "keeps 8 channels after a" in report.skipped[0]
