"""A cost target the plan met on paper but the model's code did not let it meet: never a silent miss.

The MAC search counts on every selected group; a group the model's code cannot follow (here the
q/k head dims of an attention whose scale is read from ``q.shape`` at run time) is found only
when the plan is applied and is then left whole, so the pruned model keeps more MACs than asked.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

import prune_torch as pt


class Attention(nn.Module):
    """Two heads of 8 dims; ``scale_from_shape`` reads the scale from q's shape, as many ViTs do."""

    def __init__(self, scale_from_shape: bool) -> None:
        super().__init__()
        self.scale_from_shape = scale_from_shape
        self.num_heads = 2
        self.scale = 8**-0.5
        self.q, self.k, self.v = nn.Linear(16, 16), nn.Linear(16, 16), nn.Linear(16, 16)
        self.proj = nn.Linear(16, 16)
        self.out = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = (f(x).reshape(b, n, self.num_heads, -1).transpose(1, 2) for f in (self.q, self.k, self.v))
        scale = q.shape[-1] ** -0.5 if self.scale_from_shape else self.scale
        attn = (q @ k.transpose(-2, -1) * scale).softmax(dim=-1)
        return self.out(x + self.proj((attn @ v).transpose(1, 2).reshape(b, n, -1)))


def _prune(model: nn.Module) -> tuple[pt.Report, list[warnings.WarningMessage], float]:
    x = torch.randn(1, 6, 16)
    before = pt.costs(pt.trace(model, x)).macs
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", pt.TargetMissedWarning)
        report = pt.prune(
            model, x, ratio=0.4, target="macs", head_dims=True, head_ratio=0.0, tolerance=0.05, show_progress=False
        )
    missed = [w for w in caught if issubclass(w.category, pt.TargetMissedWarning)]
    return report, missed, 1 - pt.costs(pt.trace(model, x)).macs / before


def test_a_target_missed_because_groups_were_left_whole_warns_and_names_them() -> None:
    torch.manual_seed(0)
    model = Attention(scale_from_shape=True).eval()
    report, missed, removed = _prune(model)
    assert model.q.out_features == 16  # q/k head dims left whole: the scale reads their size
    assert any("derived from a pruned size" in note for note in report.skipped)
    assert abs(removed - 0.4) > 0.05
    (warning,) = missed
    message = str(warning.message)
    assert "left whole" in message
    assert "head_dims of q, k" in message
    assert f"{removed:.1%}" in message
    assert warning.filename == __file__  # points at the caller's line


def test_no_warning_when_the_plan_is_applied_whole() -> None:
    torch.manual_seed(0)
    model = Attention(scale_from_shape=False).eval()
    report, missed, removed = _prune(model)
    assert model.q.out_features < 16
    assert abs(removed - 0.4) <= 0.05
    assert missed == []
    assert not any("derived from a pruned size" in note for note in report.skipped)
