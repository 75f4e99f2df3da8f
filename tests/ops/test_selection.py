"""Selection and the classic strategies, against a small reference implementation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from prune_ops import (
    InvalidIndicesError,
    L1Strategy,
    L2Strategy,
    PruningError,
    RandomStrategy,
    check_amount,
    keep_count,
    select,
)

amounts = st.floats(0.0, 0.99, allow_nan=False)


def reference_lowest(scores: np.ndarray, remove: int) -> list[int]:
    """The ``remove`` lowest scores, ties to the lower index: a plain sort of (score, index) pairs."""
    pairs = sorted((float(s), i) for i, s in enumerate(scores))
    return sorted(i for _, i in pairs[:remove])


# -- keep_count ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "options", "kept"),
    [
        (64, {"amount": 0.4, "round_to": 16}, 32),
        (64, {"amount": 0.3, "round_to": 16}, 48),
        (64, {"amount": 0.5}, 32),
        (10, {"amount": 0.25}, 8),  # floor(2.5) = 2 removed
        (10, {"amount": 0.0}, 10),
        (10, {"count": 3}, 7),
        (10, {"count": 0}, 10),
        (10, {"amount": 0.9, "min_keep": 4}, 4),
        (12, {"amount": 0.9, "round_to": 4}, 4),  # one multiple at least
        (12, {"amount": 0.9, "round_to": 4, "min_keep": 5}, 8),  # min_keep rounded up to a multiple
        (8, {"amount": 0.5, "round_to": 16}, 8),  # smaller than round_to: kept whole
        (30, {"amount": 0.05, "round_to": 16}, 30),  # rounding up past the size keeps it whole
    ],
)
def test_keep_count_examples(size: int, options: dict, kept: int) -> None:
    assert keep_count(size, **options) == kept


@given(
    size=st.integers(1, 300),
    amount=amounts,
    round_to=st.integers(1, 32),
    min_keep=st.integers(1, 40),
)
def test_keep_count_honours_its_constraints(size: int, amount: float, round_to: int, min_keep: int) -> None:
    kept = keep_count(size, amount=amount, round_to=round_to, min_keep=min_keep)
    assert 1 <= kept <= size
    removed = size - kept
    if removed:
        # something goes only when the request asks for it, and then the count is aligned
        assert kept % round_to == 0
        assert kept >= min_keep
        assert amount * size >= 1 - 1e-9
        # rounding moves the kept count by at most half a step (or up to the floors)
        target = size - int(np.floor(amount * size + 1e-9))
        floor = max(round_to, -(-min_keep // round_to) * round_to)
        assert abs(kept - target) <= round_to / 2 or kept == floor
    else:
        assert kept == size


@given(size=st.integers(2, 200), data=st.data())
def test_keep_count_by_count(size: int, data: st.DataObject) -> None:
    count = data.draw(st.integers(0, size - 1))
    assert keep_count(size, count=count) == size - count


@pytest.mark.parametrize("amount", [1.0, 1.5, -0.1, float("nan"), True, "0.5", None])
def test_amount_outside_zero_one_is_refused(amount: object) -> None:
    if amount is None:
        with pytest.raises(PruningError, match="give exactly one of 'amount' and 'count'"):
            keep_count(10)
        return
    with pytest.raises(PruningError, match=r"'amount' must be a fraction in \[0, 1\) \(got " + repr(amount)):
        keep_count(10, amount=amount)  # type: ignore[arg-type]
    with pytest.raises(PruningError, match=r"must be a fraction in \[0, 1\)"):
        select(np.ones(10), amount=amount)  # type: ignore[arg-type]


def test_check_amount() -> None:
    assert check_amount(0) == 0.0
    assert isinstance(check_amount(0), float)
    assert check_amount(0.5, "ratio") == 0.5
    with pytest.raises(PruningError, match=r"'ratio' must be a fraction in \[0, 1\) \(got 1\)"):
        check_amount(1, "ratio")


@pytest.mark.parametrize("round_to", [0, -16, 1.5, True])
def test_round_to_below_one_is_refused(round_to: object) -> None:
    with pytest.raises(PruningError, match=r"'round_to' must be an int >= 1 \(got " + repr(round_to)):
        keep_count(64, amount=0.5, round_to=round_to)  # type: ignore[arg-type]
    with pytest.raises(PruningError, match="'round_to' must be an int >= 1"):
        L1Strategy()(np.ones((4, 2)), amount=0.5, round_to=round_to)  # type: ignore[arg-type]


def test_other_bad_counts_are_refused() -> None:
    with pytest.raises(PruningError, match=r"'min_keep' must be an int >= 1 \(got 0\)"):
        keep_count(8, amount=0.5, min_keep=0)
    with pytest.raises(PruningError, match="exactly one"):
        keep_count(8, amount=0.5, count=2)
    with pytest.raises(PruningError, match=r"'count' must be a non-negative int \(got -1\)"):
        keep_count(8, count=-1)
    with pytest.raises(InvalidIndicesError, match="cannot remove 8 of 8 units"):
        keep_count(8, count=8)


# -- select --------------------------------------------------------------------------------


def test_select_examples() -> None:
    assert select([0.5, 0.1, 0.9, 0.3], amount=0.5).tolist() == [1, 3]
    assert select([0.5, 0.1, 0.9, 0.3], count=1).tolist() == [1]
    # ties go to the lower index
    assert select([1.0, 1.0, 1.0, 1.0], count=2).tolist() == [0, 1]
    assert select([2.0, 1.0, 1.0, 0.0], count=2).tolist() == [1, 3]
    assert select([1.0, 2.0], amount=0.0).tolist() == []
    assert select([1.0, 2.0], amount=0.0).dtype == np.int64


@given(
    scores=hnp.arrays(np.float64, st.integers(1, 120), elements=st.floats(-5, 5, allow_nan=False)),
    amount=amounts,
    round_to=st.integers(1, 16),
    min_keep=st.integers(1, 8),
)
def test_select_removes_the_lowest_scored_units(
    scores: np.ndarray, amount: float, round_to: int, min_keep: int
) -> None:
    removed = select(scores, amount=amount, round_to=round_to, min_keep=min_keep)
    kept = keep_count(scores.size, amount=amount, round_to=round_to, min_keep=min_keep)
    assert removed.size == scores.size - kept
    assert removed.tolist() == reference_lowest(scores, removed.size)
    assert (np.diff(removed) > 0).all()
    others = np.setdiff1d(np.arange(scores.size), removed)
    if removed.size and others.size:
        assert scores[removed].max() <= scores[others].min()


def test_select_refuses_bad_scores() -> None:
    with pytest.raises(PruningError, match="scores contain NaN at index 2"):
        select([0.1, 0.2, float("nan")], amount=0.5)
    with pytest.raises(PruningError, match=r"scores must be 1-D \(got shape \(2, 2\)\)"):
        select(np.ones((2, 2)), amount=0.5)


# -- strategies ------------------------------------------------------------------------------


def norms(weight: np.ndarray, p: int) -> np.ndarray:
    rows = weight.reshape(weight.shape[0], -1)
    return np.abs(rows).sum(axis=1) if p == 1 else np.sqrt((rows**2).sum(axis=1))


def test_classic_strategy_on_a_conv_weight() -> None:
    weight = np.random.default_rng(0).normal(size=(64, 3, 3, 3))
    for strategy, p in ((L1Strategy(), 1), (L2Strategy(), 2)):
        removed = strategy(weight, amount=0.4, round_to=16)
        assert weight.shape[0] - removed.size == 32
        assert removed.tolist() == reference_lowest(norms(weight, p), 32)


@given(
    weight=hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=6).map(lambda s: (s[0] * 7 + 1, *s[1:])),
        elements=st.floats(-3, 3, allow_nan=False),
    ),
    amount=amounts,
    round_to=st.sampled_from([1, 2, 4, 8, 16]),
)
def test_norm_strategies_keep_multiples_and_remove_the_smallest_rows(
    weight: np.ndarray, amount: float, round_to: int
) -> None:
    size = weight.shape[0]
    for strategy, p in ((L1Strategy(), 1), (L2Strategy(), 2)):
        removed = strategy(weight, amount=amount, round_to=round_to)
        kept = size - removed.size
        assert kept == keep_count(size, amount=amount, round_to=round_to)
        assert kept == size or kept % round_to == 0
        assert removed.tolist() == reference_lowest(norms(weight, p), removed.size)


@given(size=st.integers(1, 100), amount=amounts, round_to=st.sampled_from([1, 4, 16]), seed=st.integers(0, 2**32 - 1))
def test_random_strategy_is_seeded_and_aligned(size: int, amount: float, round_to: int, seed: int) -> None:
    weight = np.zeros((size, 3))
    removed = RandomStrategy(seed)(weight, amount=amount, round_to=round_to)
    assert removed.tolist() == RandomStrategy(seed)(weight, amount=amount, round_to=round_to).tolist()
    assert size - removed.size == keep_count(size, amount=amount, round_to=round_to)
    assert removed.tolist() == sorted(set(removed.tolist()))
    assert all(0 <= i < size for i in removed.tolist())
    # the same seed draws the same scores as a generator seeded by hand
    scores = np.random.default_rng(seed).random(size)
    assert removed.tolist() == reference_lowest(scores, removed.size)


def test_strategies_refuse_a_scalar_weight() -> None:
    with pytest.raises(PruningError, match="at least one dim"):
        L2Strategy()(np.float64(3.0), amount=0.5)
