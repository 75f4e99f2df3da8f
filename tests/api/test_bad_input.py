"""Bad options to prune(): a clear error naming what is wrong, raised before the model changes at all."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import prune_torch as pt

from . import nets
from .helpers import assert_same_model, randomize_norms, snapshot

X16 = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(11))
STRANGER = torch.nn.Conv2d(3, 3, 1)

CASES = [
    pytest.param({"ratio": -0.1}, r"'ratio' must be a fraction in \[0, 1\) \(got -0.1\)", id="ratio-negative"),
    pytest.param({"ratio": 1.0}, r"'ratio' must be a fraction in \[0, 1\) \(got 1.0\)", id="ratio-one"),
    pytest.param({"ratio": 1.5}, r"'ratio'.*1.5", id="ratio-above-one"),
    pytest.param({"ratio": "half"}, r"'ratio'.*'half'", id="ratio-not-a-number"),
    pytest.param({"ratio": True}, r"'ratio'", id="ratio-bool"),
    pytest.param({"importance": "l3"}, r"unknown importance 'l3'; valid: .*l2", id="importance-unknown"),
    pytest.param({"reduction": "median"}, r"unknown reduction 'median'", id="reduction-unknown"),
    pytest.param({"ignore": ["conv9"]}, r"ignore: the model has no module 'conv9'", id="ignore-unknown-path"),
    pytest.param({"ignore": [STRANGER]}, r"ignore: a Conv2d that is not part of the model", id="ignore-foreign-module"),
    pytest.param({"ignore": [3]}, r"ignore: entries must be modules or module paths", id="ignore-not-a-path"),
    pytest.param({"ratios": {"conv9": 0.5}}, r"ratios: the model has no module 'conv9'", id="ratios-unknown-path"),
    pytest.param({"ratios": {"conv2": 1.2}}, r"ratios\['conv2'\]", id="ratios-out-of-range"),
    pytest.param({"steps": 0}, r"'steps' must be an int >= 1 \(got 0\)", id="steps-zero"),
    pytest.param({"steps": -2}, r"'steps'.*-2", id="steps-negative"),
    pytest.param({"steps": 1.5}, r"'steps'.*1.5", id="steps-float"),
    pytest.param({"round_to": 0}, r"'round_to' must be an int >= 1 \(got 0\)", id="round-to-zero"),
    pytest.param({"round_to": 2.0}, r"'round_to'", id="round-to-float"),
    pytest.param({"target": "flops"}, r"unknown target 'flops'; valid: channels, params, macs", id="target-unknown"),
    pytest.param({"target": "macs", "tolerance": 0}, r"'tolerance' must be in \(0, 1\)", id="tolerance-zero"),
    pytest.param({"max_ratio": 1.0}, r"'max_ratio'", id="max-ratio-one"),
    pytest.param({"head_ratio": 2.0}, r"'head_ratio'", id="head-ratio-out-of-range"),
]


@pytest.mark.parametrize(("options", "message"), CASES)
def test_bad_options_are_clear_errors_and_leave_the_model_untouched(options: dict[str, Any], message: str) -> None:
    model = randomize_norms(nets.tiny()).eval()
    # gradients must survive a refused prune too
    model(X16).sum().backward()
    before = snapshot(model)
    with pytest.raises(pt.PruningError, match=message):
        pt.prune(model, X16, show_progress=False, **options)
    assert_same_model(model, before)


@pytest.mark.parametrize(("options", "message"), CASES[:3] + CASES[5:9])
def test_interactive_refuses_the_same_options(options: dict[str, Any], message: str) -> None:
    model = nets.tiny().eval()
    before = snapshot(model)
    with pytest.raises(pt.PruningError, match=message):
        pt.interactive(model, X16, **options)
    assert_same_model(model, before)


def test_inputs_the_model_cannot_run_are_a_trace_error_and_change_nothing() -> None:
    model = nets.tiny().eval()
    before = snapshot(model)
    with pytest.raises(pt.TraceError, match="TinyCNN"):
        pt.prune(model, torch.randn(1, 5, 16, 16), show_progress=False)
    assert_same_model(model, before)


def test_every_error_is_a_value_error_for_callers_that_catch_broadly() -> None:
    assert issubclass(pt.PruningError, ValueError)
    assert issubclass(pt.TraceError, pt.PruningError)
    assert issubclass(pt.PlanMismatchError, pt.PruningError)
