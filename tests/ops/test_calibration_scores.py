"""Calibration statistics and the activation-aware importances (Wanda, FLAP fluctuation), by hand."""

from __future__ import annotations

import numpy as np
import pytest

from prune_graph import OpKind
from prune_ops import (
    IMPORTANCES,
    ChannelStats,
    Fluctuation,
    Group,
    MemberData,
    PruningError,
    Wanda,
    compensation,
    find_groups,
    resolve_importance,
)

from .nets import group_with, member
from .test_importance import W1, W2, conv_bn_conv

# three channels over four rows: channel 1 is constant, channel 2 is large and fluctuating
ROWS = np.array([[1.0, 2.0, 0.0], [-1.0, 2.0, 4.0], [1.0, 2.0, -4.0], [-1.0, 2.0, 0.0]])


@pytest.fixture
def group() -> Group:
    return group_with(find_groups(conv_bn_conv()), "conv1.weight", 0)


def data(group: Group, stats: ChannelStats | None) -> list[MemberData]:
    return [
        MemberData(member(group, "conv1.weight", 0), W1, None, OpKind.CONV),
        MemberData(member(group, "conv2.weight", 1), W2, None, OpKind.CONV, activations=stats),
    ]


def test_stats_match_numpy_and_merge_like_concatenation() -> None:
    a, b = ChannelStats.of(ROWS[:3]), ChannelStats.of(ROWS[3:])
    both = a.merge(b)
    assert both.count == 4
    np.testing.assert_allclose(both.mean, ROWS.mean(axis=0))
    np.testing.assert_allclose(both.variance, ROWS.var(axis=0, ddof=1))
    np.testing.assert_allclose(both.norm, np.linalg.norm(ROWS, axis=0))
    assert both.take([2]).mean.tolist() == [0.0]


def test_stats_validate() -> None:
    with pytest.raises(PruningError, match="1-D of one length"):
        ChannelStats(1, np.zeros(2), np.zeros(3))
    with pytest.raises(PruningError, match="2 channels and 3 channels"):
        ChannelStats.of(np.ones((2, 2))).merge(ChannelStats.of(ROWS))
    with pytest.raises(PruningError, match="rows × channels"):
        ChannelStats.of(np.ones(3))


def test_wanda_scores_input_side_members_only(group: Group) -> None:
    stats = ChannelStats.of(ROWS)
    # conv2 reads the group: per channel ||X_j|| * sum_i |W_ij|; conv1 (output side) has no statistics
    expected = np.linalg.norm(ROWS, axis=0) * np.abs(W2).sum(axis=1)
    np.testing.assert_allclose(Wanda()(group, data(group, stats)), expected)


def test_fluctuation_ignores_constant_channels(group: Group) -> None:
    scores = Fluctuation()(group, data(group, ChannelStats.of(ROWS)))
    expected = ROWS.var(axis=0, ddof=1) * (W2**2).sum(axis=1)
    np.testing.assert_allclose(scores, expected)
    # channel 1 is constant (2.0 everywhere): a large norm, but no fluctuation at all
    assert scores[1] == 0.0
    assert Wanda()(group, data(group, ChannelStats.of(ROWS)))[1] == 0.0
    constant_but_used = ChannelStats.of(np.abs(ROWS) + 5.0)
    assert Wanda()(group, data(group, constant_but_used))[0] > 0.0


def test_activation_importances_need_statistics(group: Group) -> None:
    for importance in (Wanda(), Fluctuation()):
        with pytest.raises(PruningError, match="calibration statistics"):
            importance(group, data(group, None))
    with pytest.raises(PruningError, match="statistics of 2 channels"):
        Wanda()(group, data(group, ChannelStats.of(np.ones((2, 2)))))


def test_names_resolve() -> None:
    assert isinstance(resolve_importance("wanda"), Wanda)
    assert isinstance(resolve_importance("flap"), Fluctuation)
    assert {"wanda", "flap"} <= set(IMPORTANCES)
    assert Wanda.needs_activations
    assert Fluctuation.needs_activations


def test_compensation_replaces_removed_channels_by_their_mean() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 4)) + np.array([3.0, -2.0, 0.0, 1.0])
    weight = rng.normal(size=(4, 3))  # channels × outputs
    removed = np.array([0, 3])
    stats = ChannelStats.of(x)
    delta = compensation(weight[removed], stats.mean[removed])
    np.testing.assert_allclose(delta, (x[:, removed] @ weight[removed]).mean(axis=0))
    kept = np.array([1, 2])
    full, cut = x @ weight, x[:, kept] @ weight[kept]
    assert np.abs(full - (cut + delta)).mean() < np.abs(full - cut).mean()
    with pytest.raises(PruningError, match="channels × outputs"):
        compensation(weight[removed], stats.mean)
