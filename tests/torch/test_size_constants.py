"""Numbers a forward derives from a pruned size: never a silent wrong prune.

torchvision's RAFT divides its correlation volume by ``sqrt(torch.tensor(C))`` with ``C`` read
from ``fmap.shape``. Pruning those channels runs fine and changes the outputs; no coupling rule can
see it, only the number the call uses. These models do the same in the three ways Python can hand
a size to torch.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import prune_torch as pt
from prune_torch._errors import SizeConstantError


class Correlation(nn.Module):
    """Two feature maps contracted over their channels, scaled by a number computed from the channel count."""

    def __init__(self, how: str) -> None:
        super().__init__()
        self.how = how
        self.a = nn.Conv2d(3, 16, 1)
        self.b = nn.Conv2d(3, 16, 1)
        self.head = nn.Conv2d(1, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f1, f2 = self.a(x), self.b(x)
        n, c, h, w = f1.shape
        corr = torch.matmul(f1.view(n, c, h * w).transpose(1, 2), f2.view(n, c, h * w)).view(n, 1, h * w, h * w)
        if self.how == "tensor":
            corr = corr / torch.sqrt(torch.tensor(c).float())
        elif self.how == "float":
            corr = corr / c**0.5
        elif self.how == "int":
            corr = corr / c
        elif self.how == "fixed":
            corr = corr * 0.25  # a number that is not a size: nothing to find
        return self.head(corr)


HOWS = ["tensor", "float", "int"]


def _x() -> torch.Tensor:
    return torch.randn(1, 3, 4, 4)


@pytest.mark.parametrize("how", HOWS)
def test_a_size_derived_number_leaves_its_group_unpruned_and_says_where(how: str) -> None:
    torch.manual_seed(0)
    model = Correlation(how).eval()
    report = pt.prune(model, _x(), ratio=0.5, verify=True, show_progress=False)
    assert model.a.out_channels == 16
    assert model.b.out_channels == 16
    (note,) = report.skipped
    assert "channels of a, b" in note
    assert "derived from a pruned size" in note
    assert "test_size_constants.py:" in note  # the model's line that computed it
    assert report.approximate == ()


@pytest.mark.parametrize("how", HOWS)
def test_approximate_true_prunes_it_and_lists_it(how: str) -> None:
    torch.manual_seed(0)
    model = Correlation(how).eval()
    report = pt.prune(model, _x(), ratio=0.5, approximate=True, verify=True, show_progress=False)
    assert model.a.out_channels == 8
    (entry,) = report.approximate
    assert entry.startswith("channels of a, b")
    assert "derived from a pruned size" in entry


def test_a_number_that_is_not_a_size_is_no_obstacle() -> None:
    torch.manual_seed(0)
    model = Correlation("fixed").eval()
    x = _x()
    original = Correlation("fixed").eval()
    original.load_state_dict(model.state_dict())
    report = pt.prune(model, x, ratio=0.5, show_progress=False)
    assert model.a.out_channels == 8
    assert report.skipped == ()
    assert pt.check_equivalence(original, model, report.plan, x, silence_outputs=report.silence_outputs).ok


def test_a_standalone_apply_refuses_and_restores_the_model() -> None:
    torch.manual_seed(0)
    model = Correlation("float").eval()
    x = _x()
    plan = pt.plan(pt.trace(model, x), model.a, range(8))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(SizeConstantError, match=r"aten.div.Tensor in module <root> \(test_size_constants.py:\d+\)"):
        pt.apply(model, plan, x)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


class ScaledByItsOwnOutput(nn.Module):
    """Reads a value into Python (``float(t)``) and computes with it: data, not a size."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 16, 3, padding=1)
        self.c = nn.Conv2d(16, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.c(torch.relu(self.a(x)))
        return y * float(y.abs().max())


def test_numbers_read_from_the_data_are_not_taken_for_sizes() -> None:
    torch.manual_seed(0)
    model = ScaledByItsOwnOutput().eval()
    report = pt.prune(model, _x(), ratio=0.5, show_progress=False)
    assert model.a.out_channels == 8
    assert report.skipped == ()


FORMULAS = {
    "sqrt": lambda c: c**0.5,
    "inverse sqrt": lambda c: c**-0.5,
    "count": lambda c: c,
    "log": lambda c: math.log(c),
    "half": lambda c: c // 2,
}
USES = {
    "div": lambda t, k: t / k,
    "mul": lambda t, k: t * k,
    "add": lambda t, k: t + k,
    "sub": lambda t, k: k - t,
    "clamp": lambda t, k: t.clamp(max=k),
    "tensor": lambda t, k: t * torch.tensor(k, dtype=t.dtype),
}


class Scaled(nn.Module):
    """``a`` then ``b``, joined by one use of a number computed from ``a``'s width."""

    def __init__(self, width: int, formula: str, use: str) -> None:
        super().__init__()
        self.formula, self.use = formula, use
        self.a = nn.Conv2d(3, width, 1)
        self.b = nn.Conv2d(width, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.a(x)
        k = FORMULAS[self.formula](h.shape[1])
        return self.b(USES[self.use](h, k))


@given(
    width=st.sampled_from([4, 6, 8, 12, 16]),
    formula=st.sampled_from(sorted(FORMULAS)),
    use=st.sampled_from(sorted(USES)),
    ratio=st.sampled_from([0.25, 0.5, 0.75]),
)
def test_a_prune_never_silently_changes_what_a_number_from_a_width_computes(
    width: int, formula: str, use: str, ratio: float
) -> None:
    """By default either the group stays whole and says why, or the pruned model equals the silenced original."""
    torch.manual_seed(0)
    model = Scaled(width, formula, use).eval()
    original = copy.deepcopy(model)
    x = _x()
    report = pt.prune(model, x, ratio=ratio, show_progress=False)
    result = pt.check_equivalence(original, model, report.plan, x)
    if model.a.out_channels < width and FORMULAS[formula](width) != FORMULAS[formula](model.a.out_channels):
        raise AssertionError(f"pruned although the number changed: {report.skipped}")
    if model.a.out_channels == width:
        assert any("derived from a pruned size" in note for note in report.skipped)
    else:
        assert result.ok
