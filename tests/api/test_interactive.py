"""interactive(): walk the proposals, change, accept or reject them; apply() carries out only the accepted ones."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import prune_torch as pt

from . import nets
from .helpers import assert_same_model, randomize_norms, root, snapshot

X16 = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(7))


def session_model() -> torch.nn.Module:
    return randomize_norms(nets.tiny()).eval()


def test_proposals_describe_what_prune_would_do_without_touching_the_model() -> None:
    model = session_model()
    before = snapshot(model)
    session = pt.interactive(model, X16, ratio=0.5)
    assert_same_model(model, before)
    proposals = list(session)
    assert len(session) == len(proposals) == 3
    assert [root(p.group) for p in proposals] == ["conv1", "conv2", "conv3"]
    reference = pt.prune(copy.deepcopy(model), X16, ratio=0.5, show_progress=False)
    for proposal in proposals:
        assert not proposal.accepted
        assert proposal.scores.shape == (proposal.group.size,)
        assert len(proposal.units) == proposal.group.size // 2
        # the proposed units are the lowest-scored ones, the same that prune() removes
        assert set(proposal.units) == set(np.argsort(proposal.scores, kind="stable")[: len(proposal.units)])
        entry = reference.plan.entry(root(proposal.group), "weight", 0)
        assert tuple(int(u) for u in proposal.units) == entry.removed
        text = str(proposal)
        assert f"remove {len(proposal.units)} of {proposal.group.size} units" in text
        assert f"{root(proposal.group)}.weight[0]" in text


def test_apply_carries_out_only_the_accepted_proposals_with_their_edited_units() -> None:
    model = session_model()
    original = copy.deepcopy(model)
    session = pt.interactive(model, X16, ratio=0.5)
    conv1, conv2, conv3 = list(session)
    conv1.units = np.array([2, 3, 11])
    conv1.accept()
    conv2.accept()
    conv2.reject()
    conv3.accept()
    report = session.apply()

    assert (model.conv1.out_channels, model.bn1.num_features) == (13, 13)
    assert model.conv2.out_channels == 32
    assert model.conv3.out_channels == 16
    assert report.plan.entry("conv1", "weight", 0).removed == (2, 3, 11)
    assert report.plan.entry("conv2", "weight", 0) is None
    assert report.plan.entry("conv3", "weight", 0).removed == tuple(int(u) for u in conv3.units)
    assert report.after.parameters == sum(p.numel() for p in model.parameters())
    assert report.before.parameters == sum(p.numel() for p in original.parameters())
    # the kept channels carry the original weights
    keep = [i for i in range(16) if i not in (2, 3, 11)]
    assert torch.equal(model.conv1.weight, original.conv1.weight[keep])
    result = pt.check_equivalence(original.double(), copy.deepcopy(model).double(), report.plan, X16.double())
    assert result.ok, result


def test_nothing_accepted_changes_nothing() -> None:
    model = session_model()
    before = snapshot(model)
    session = pt.interactive(model, X16, ratio=0.5)
    for proposal in session:
        proposal.reject()
    report = session.apply()
    assert report.plan.is_empty
    assert report.after == report.before
    assert_same_model(model, before)


def test_interactive_takes_prune_options_and_rejects_unknown_ones() -> None:
    model = session_model()
    session = pt.interactive(model, X16, ratio=0.25, ignore=["conv2"], round_to=4)
    assert [root(p.group) for p in session] == ["conv1", "conv3"]
    assert [len(p.units) for p in session] == [4, 8]
    with pytest.raises(pt.PruningError, match="unknown option"):
        pt.interactive(model, X16, ratio=0.5, stepz=2)
