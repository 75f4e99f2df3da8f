"""Importance criteria on members of real groups, against scores worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from prune_graph import Graph, OpKind
from prune_ops import (
    FPGM,
    BNScale,
    Group,
    GroupL2,
    Magnitude,
    MemberData,
    Normalisation,
    PruningError,
    Random,
    Reduction,
    Taylor,
    find_groups,
    normalise,
    reduce_members,
)

from .nets import Net, group_with, member


def conv_bn_conv() -> Graph:
    """conv1 (3 out, 1x1 on 2 inputs) -> bn -> conv2 (2 out, 1x1): the group of conv1's 3 channels."""
    net = Net()
    x = net.input((1, 2, 4, 4))
    h = net.bn(net.conv(x, 3, k=1, module="conv1"), buffers=False, module="bn")
    return net.build([net.conv(h, 2, k=1, module="conv2")])


@pytest.fixture
def group() -> Group:
    return group_with(find_groups(conv_bn_conv()), "conv1.weight", 0)


# conv1.weight (3, 2, 1, 1) with its output axis first, flattened: one row per channel
W1 = np.array([[1.0, -2.0], [0.0, 3.0], [4.0, 0.0]])
# conv2.weight (2, 3, 1, 1) with its input axis (dim 1) moved first: one row per channel
W2 = np.array([[1.0, 1.0], [0.0, 0.0], [-2.0, 2.0]])


def data(group: Group, *, grads: bool = False) -> list[MemberData]:
    g1 = np.array([[0.5, 0.5], [1.0, -1.0], [0.0, 2.0]]) if grads else None
    g2 = np.array([[1.0, 0.0], [3.0, 3.0], [1.0, 1.0]]) if grads else None
    return [
        MemberData(member(group, "conv1.weight", 0), W1, g1, OpKind.CONV),
        MemberData(member(group, "conv2.weight", 1), W2, g2, OpKind.CONV),
    ]


def test_magnitude_l1_per_member_and_reduced(group: Group) -> None:
    # L1 rows: conv1 [3, 3, 4], conv2 [2, 0, 4]
    assert Magnitude(p=1)(group, data(group)).tolist() == [2.5, 1.5, 4.0]
    assert Magnitude(p=1, reduction=Reduction.SUM)(group, data(group)).tolist() == [5.0, 3.0, 8.0]
    assert Magnitude(p=1, reduction=Reduction.MAX)(group, data(group)).tolist() == [3.0, 3.0, 4.0]
    assert Magnitude(p=1, reduction=Reduction.FIRST)(group, data(group)).tolist() == [3.0, 3.0, 4.0]
    assert Magnitude(p=1, reduction=Reduction.FIRST)(group, data(group)[::-1]).tolist() == [2.0, 0.0, 4.0]


def test_magnitude_l2(group: Group) -> None:
    # L2 rows: conv1 [sqrt 5, 3, 4], conv2 [sqrt 2, 0, sqrt 8]
    expected = [(np.sqrt(5) + np.sqrt(2)) / 2, 1.5, (4 + np.sqrt(8)) / 2]
    np.testing.assert_allclose(Magnitude(p=2)(group, data(group)), expected)
    np.testing.assert_allclose(Magnitude()(group, data(group)[:1]), [np.sqrt(5), 3.0, 4.0])


def test_magnitude_of_a_flattened_block_is_the_norm_of_the_whole_block() -> None:
    net = Net()
    x = net.input((1, 2, 1, 2))
    h = net.conv(x, 3, k=1, module="conv")
    graph = net.build([net.linear(net.flatten(h), 4, module="fc")])
    group = group_with(find_groups(graph), "conv.weight", 0)
    fc = member(group, "fc.weight", 1)
    assert fc.units.tolist() == [0, 0, 1, 1, 2, 2]
    # fc.weight (4, 6) with dim 1 first: six rows of four; channel c owns rows 2c and 2c+1
    rows = np.arange(24, dtype=float).reshape(6, 4) - 10
    scores = Magnitude(p=2)(group, [MemberData(fc, rows)])
    expected = [np.linalg.norm(rows[2 * c : 2 * c + 2]) for c in range(3)]
    np.testing.assert_allclose(scores, expected)
    np.testing.assert_allclose(
        Magnitude(p=1)(group, [MemberData(fc, rows)]), [np.abs(rows[2 * c : 2 * c + 2]).sum() for c in range(3)]
    )


def test_group_l2_is_one_norm_over_all_members(group: Group) -> None:
    # squares per row: conv1 [5, 9, 16], conv2 [2, 0, 8]
    np.testing.assert_allclose(GroupL2()(group, data(group)), np.sqrt([7.0, 9.0, 24.0]))
    with pytest.raises(PruningError, match=r"group \d+ \(conv1\.weight\[0\]\) holds no parameters"):
        GroupL2()(group, [])


def test_reduce_members_leaves_out_units_a_member_does_not_cover() -> None:
    a = (np.array([1.0, 2.0, 3.0]), np.array([True, True, False]))
    b = (np.array([5.0, 6.0, 7.0]), np.array([False, True, True]))
    assert reduce_members([a, b], 3, Reduction.MEAN).tolist() == [1.0, 4.0, 7.0]
    assert reduce_members([a, b], 3, Reduction.SUM).tolist() == [1.0, 8.0, 7.0]
    assert reduce_members([a, b], 3, Reduction.MAX).tolist() == [1.0, 6.0, 7.0]
    assert reduce_members([a, b], 3, Reduction.FIRST).tolist() == [1.0, 2.0, 7.0]
    # a unit nobody covers scores zero rather than NaN
    nobody = (np.array([1.0, 1.0, 1.0]), np.array([True, False, False]))
    assert reduce_members([nobody], 3, Reduction.MEAN).tolist() == [1.0, 0.0, 0.0]
    with pytest.raises(PruningError, match="no parameter member"):
        reduce_members([], 3, Reduction.MEAN)


def test_concat_consumer_scores_only_its_own_slice() -> None:
    net = Net()
    x = net.input((1, 1, 2, 2))
    a, b = net.conv(x, 2, k=1, module="a"), net.conv(x, 3, k=1, module="b")
    graph = net.build([net.conv(net.concat([a, b]), 1, k=1, module="c")])
    group = group_with(find_groups(graph), "b.weight", 0)
    consumer = member(group, "c.weight", 1)
    assert consumer.units.tolist() == [-1, -1, 0, 1, 2]
    rows = np.array([[100.0], [100.0], [1.0], [-2.0], [3.0]])
    assert Magnitude(p=1)(group, [MemberData(consumer, rows)]).tolist() == [1.0, 2.0, 3.0]


def test_bn_scale_uses_the_norm_weight_only(group: Group) -> None:
    gamma = np.array([[0.5], [-2.0], [1.0]])
    beta = np.array([[9.0], [9.0], [9.0]])
    items = [
        *data(group),
        MemberData(member(group, "bn.weight", 0), gamma, role=OpKind.NORM, slot=1),
        MemberData(member(group, "bn.bias", 0), beta, role=OpKind.NORM, slot=2),
    ]
    assert BNScale()(group, items).tolist() == [0.5, 2.0, 1.0]
    with pytest.raises(PruningError, match=r"group \d+ \(conv1\.weight\[0\]\) has no norm scale"):
        BNScale()(group, data(group))
    # a norm weight whose reader is not known to be a norm is not a BN scale
    with pytest.raises(PruningError, match="no norm scale"):
        BNScale()(group, [MemberData(member(group, "bn.weight", 0), gamma)])
    # the op and the slot decide, never the name: a tensor called "weight" without a slot is not
    # a scale, the shift (slot 2) is not either, whatever it is called
    with pytest.raises(PruningError, match="no norm scale"):
        BNScale()(group, [MemberData(member(group, "bn.weight", 0), gamma, role=OpKind.NORM)])
    with pytest.raises(PruningError, match="no norm scale"):
        BNScale()(group, [MemberData(member(group, "bn.weight", 0), gamma, role=OpKind.NORM, slot=2)])


def test_taylor_is_weight_times_grad_summed_per_unit(group: Group) -> None:
    # conv1: |1*.5 - 2*.5| = .5, |0 - 3| = 3, |0 + 0| = 0; conv2: |1|, |0|, |-2 + 2| = 0
    assert Taylor(reduction=Reduction.SUM)(group, data(group, grads=True)).tolist() == [1.5, 3.0, 0.0]
    assert Taylor()(group, data(group, grads=True)).tolist() == [0.75, 1.5, 0.0]


def test_taylor_without_gradients_names_the_member(group: Group) -> None:
    with pytest.raises(PruningError, match=r"Taylor importance needs gradients; conv1\.weight\[0\] has none"):
        Taylor()(group, data(group))


def test_fpgm_scores_distance_to_the_other_units(group: Group) -> None:
    vectors = np.array([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]])
    only = [MemberData(member(group, "conv1.weight", 0), vectors)]
    # distances: 0-1 = 5, 1-2 = 5, 0-2 = 10; the middle unit is nearest the median
    assert FPGM()(group, only).tolist() == [15.0, 10.0, 15.0]
    # single-column members carry no geometry and fall back to the L2 magnitude
    column = [MemberData(member(group, "bn.weight", 0), np.array([[3.0], [-1.0], [2.0]]), role=OpKind.NORM)]
    assert FPGM()(group, column).tolist() == [3.0, 1.0, 2.0]


def test_random_is_reproducible_with_a_seeded_generator(group: Group) -> None:
    first = Random(np.random.default_rng(7))(group, [])
    again = Random(np.random.default_rng(7))(group, data(group))
    assert first.shape == (group.size,)
    assert first.tolist() == again.tolist() == np.random.default_rng(7).random(3).tolist()
    other = Random(np.random.default_rng(8))(group, [])
    assert other.tolist() != first.tolist()
    # the generator is the caller's: a second call continues its stream
    rng = np.random.default_rng(7)
    scorer = Random(rng)
    assert scorer(group, []).tolist() == first.tolist()
    assert scorer(group, []).tolist() != first.tolist()


def test_normalise() -> None:
    scores = np.array([1.0, 3.0, 4.0])
    np.testing.assert_allclose(normalise(scores, Normalisation.NONE), [1.0, 3.0, 4.0])
    np.testing.assert_allclose(normalise(scores, Normalisation.MEAN), [0.375, 1.125, 1.5])
    np.testing.assert_allclose(normalise(scores), [0.375, 1.125, 1.5])
    np.testing.assert_allclose(normalise(scores, Normalisation.MAX), [0.25, 0.75, 1.0])
    np.testing.assert_allclose(normalise(scores, Normalisation.SUM), [0.125, 0.375, 0.5])
    std = np.std([1.0, 3.0, 4.0])
    np.testing.assert_allclose(
        normalise(scores, Normalisation.STANDARD), [(1 - 8 / 3) / std, (3 - 8 / 3) / std, (4 - 8 / 3) / std]
    )
    # all-zero scores stay finite
    assert np.isfinite(normalise(np.zeros(3), Normalisation.STANDARD)).all()
    assert np.isfinite(normalise(np.zeros(3), Normalisation.MAX)).all()
    # the ranking is kept by every normalisation
    for how in Normalisation:
        assert np.argsort(normalise(scores, how)).tolist() == [0, 1, 2]


def test_importances_are_plain_callables_of_the_same_shape(group: Group) -> None:
    for importance in (Magnitude(1), Magnitude(2), FPGM(), Random(np.random.default_rng(0))):
        scores = importance(group, data(group))
        assert scores.shape == (group.size,)
        assert scores.dtype == np.float64
    # frozen factories: equal settings compare equal, and cannot be changed
    assert Magnitude(1) == Magnitude(p=1, reduction=Reduction.MEAN)
    with pytest.raises(AttributeError):
        Magnitude(1).p = 2  # type: ignore[misc]
