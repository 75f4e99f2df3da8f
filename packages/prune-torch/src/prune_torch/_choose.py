"""Choosing units to remove across groups: local, global and isomorphic ranking, cost targets."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from prune_ops import Group, Normalisation, keep_count, normalise, select

__all__ = ["Scored", "choose_global", "choose_isomorphic", "choose_local", "search_amount"]

Scored = Sequence[tuple[Group, np.ndarray]]
Chosen = list[tuple[Group, np.ndarray]]


def choose_local(scored: Scored, amounts: Sequence[float], round_to: int) -> Chosen:
    """Every group loses its own fraction of units (the lowest-scored ones)."""
    return [(g, select(s, amount=a, round_to=round_to)) for (g, s), a in zip(scored, amounts)]


def choose_global(scored: Scored, amount: float, round_to: int, max_ratio: float) -> Chosen:
    """Normalised scores compete across groups; ``amount`` of all units go, no group loses more than ``max_ratio``."""
    entries = []
    for gi, (_group, scores) in enumerate(scored):
        for unit, score in enumerate(normalise(scores, Normalisation.MEAN)):
            entries.append((float(score), gi, unit))
    entries.sort()
    total = sum(g.size for g, _ in scored)
    budget = math.floor(amount * total + 1e-9)
    counts = [0] * len(scored)
    caps = [min(g.size - 1, math.floor(max_ratio * g.size)) for g, _ in scored]
    for _, gi, _ in entries:
        if budget <= 0:
            break
        if counts[gi] < caps[gi]:
            counts[gi] += 1
            budget -= 1
    chosen = []
    for (group, scores), count in zip(scored, counts):
        keep = keep_count(group.size, count=count, round_to=round_to) if count else group.size
        chosen.append((group, select(scores, count=group.size - keep)))
    return chosen


def choose_isomorphic(scored: Scored, amount: float, round_to: int, max_ratio: float) -> Chosen:
    """Global ranking within each set of structurally identical groups (same signature) only."""
    by_signature: dict[object, list[int]] = {}
    for i, (group, _) in enumerate(scored):
        by_signature.setdefault(group.signature(), []).append(i)
    chosen: list[tuple[Group, np.ndarray] | None] = [None] * len(scored)
    for indices in by_signature.values():
        part = choose_global([scored[i] for i in indices], amount, round_to, max_ratio)
        for i, pick in zip(indices, part):
            chosen[i] = pick
    return [c for c in chosen if c is not None]


def search_amount(removed_fraction: Callable[[float], float], target: float, upper: float, tolerance: float) -> float:
    """The channel amount whose plan removes ``target`` of a cost, by bisection (costs grow with the amount)."""
    low, high = 0.0, upper
    best, best_gap = upper, math.inf
    for _ in range(30):
        mid = (low + high) / 2
        got = removed_fraction(mid)
        if abs(got - target) <= tolerance / 2:
            return mid
        # costs move in steps: keep the closest amount seen, on either side of the target
        if abs(got - target) < best_gap:
            best, best_gap = mid, abs(got - target)
        if got < target:
            low = mid
        else:
            high = mid
    return best
