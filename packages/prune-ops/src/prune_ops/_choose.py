"""Choosing units to remove across groups: local, global and isomorphic ranking, cost-target search.

Framework-free: every adapter scores its groups (one float per unit) and hands the scores here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from fractions import Fraction

import numpy as np
import numpy.typing as npt

from prune_graph import DimRef, Graph
from prune_ops._errors import InvalidIndicesError
from prune_ops._groups import Group, GroupKind
from prune_ops._importance import Normalisation, normalise
from prune_ops._indices import IntArray
from prune_ops._propagate import Removal, removal_of
from prune_ops._selection import keep_count, select

__all__ = [
    "Chosen",
    "Scored",
    "choose_global",
    "choose_isomorphic",
    "choose_local",
    "harmonise_head_dims",
    "meet_target",
    "removal_that_fits",
    "search_amount",
]

Scored = Sequence[tuple[Group, npt.NDArray[np.float64]]]
"""Groups with one score per unit."""
Chosen = list[tuple[Group, IntArray]]
"""Groups with the units to remove."""


def choose_local(scored: Scored, amounts: Sequence[float], round_to: int) -> Chosen:
    """Every group loses its own fraction of units (the lowest-scored ones).

    >>> import numpy as np
    >>> from prune_ops import Group
    >>> from prune_graph import DimRef
    >>> g = Group(0, DimRef("w", 0), 4, ())
    >>> choose_local([(g, np.array([0.4, 0.1, 0.3, 0.2]))], [0.5], 1)[0][1].tolist()
    [1, 3]
    """
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
    chosen: Chosen = []
    for (group, scores), count in zip(scored, counts):
        keep = keep_count(group.size, count=count, round_to=round_to) if count else group.size
        chosen.append((group, select(scores, count=group.size - keep)))
    return chosen


def choose_isomorphic(scored: Scored, amount: float, round_to: int, max_ratio: float) -> Chosen:
    """Global ranking within each set of structurally identical groups (same signature) only."""
    by_signature: dict[object, list[int]] = {}
    for i, (group, _) in enumerate(scored):
        by_signature.setdefault(group.signature(), []).append(i)
    chosen: list[tuple[Group, IntArray] | None] = [None] * len(scored)
    for indices in by_signature.values():
        part = choose_global([scored[i] for i in indices], amount, round_to, max_ratio)
        for i, pick in zip(indices, part):
            chosen[i] = pick
    return [c for c in chosen if c is not None]


def search_amount(removed_fraction: Callable[[float], float], target: float, upper: float, tolerance: float) -> float:
    """The channel amount whose plan removes ``target`` of a cost, by bisection (costs grow with the amount).

    >>> round(search_amount(lambda a: a * a, 0.25, 1.0, 0.001), 2)
    0.5
    """
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


def meet_target(
    choose: Callable[[float], Chosen],
    removed_fraction: Callable[[Chosen], float],
    target: float,
    upper: float,
    tolerance: float,
) -> tuple[Chosen, float]:
    """The choice whose removal is closest to ``target`` of a cost, and the fraction it removes.

    ``choose(scale)`` ranks with every group's amount scaled by ``scale`` (costs grow with it);
    ``removed_fraction(chosen)`` is the share of the cost a choice removes. First a bisection on
    the scale. On a small model one scale step can jump past the target, because groups of the
    same size cross a whole unit at the same scale (removing one channel of a 16-channel stem
    moves MACs by several percent). Then the search walks between the two closest choices on
    either side, moving one group at a time from the lighter choice to the heavier one, and
    keeps the choice nearest the target. The caller judges the result against its tolerance:
    the fraction is returned so that a miss can be reported, never hidden.

    >>> import numpy as np
    >>> from prune_ops import Group
    >>> from prune_graph import DimRef
    >>> big, small = Group(0, DimRef("a", 0), 4, ()), Group(1, DimRef("b", 0), 4, ())
    >>> share = {0: 0.2, 1: 0.05}  # the share of the cost one unit of each group holds
    >>> def choose(scale):
    ...     n = min(4, int(scale * 4))
    ...     return [(big, np.arange(n)), (small, np.arange(n))]
    >>> def removed(chosen):
    ...     return sum(share[g.id] * len(u) for g, u in chosen)
    >>> chosen, got = meet_target(choose, removed, 0.3, 1.0, 0.02)
    >>> [len(u) for _, u in chosen], round(got, 2)
    ([1, 2], 0.3)
    """
    below: list[tuple[Chosen, float]] = []
    above: list[tuple[Chosen, float]] = []
    low, high = 0.0, upper
    for _ in range(30):
        mid = (low + high) / 2
        chosen = choose(mid)
        got = removed_fraction(chosen)
        if abs(got - target) <= tolerance / 2:
            return chosen, got
        if got < target:
            low = mid
            below.append((chosen, got))
        else:
            high = mid
            above.append((chosen, got))
    if not below or not above:
        # the target lies beyond what the upper bound removes, or below the first step: the nearest end
        if not below and not above:
            chosen = choose(upper)
            return chosen, removed_fraction(chosen)
        return min(below + above, key=lambda found: abs(found[1] - target))
    # the nearest choice on one side walks towards a few choices on the other side: with global
    # ranking the nearest two differ in one unit of one group, farther ones let groups trade units
    below = sorted({round(got, 12): (c, got) for c, got in below}.values(), key=lambda found: -found[1])
    above = sorted({round(got, 12): (c, got) for c, got in above}.values(), key=lambda found: found[1])
    walks = [_walk(below[0], end, removed_fraction, target, tolerance) for end in above[:_ENDS]]
    walks += [_walk(above[0], end, removed_fraction, target, tolerance) for end in below[:_ENDS]]
    return min(walks, key=lambda found: abs(found[1] - target))


_ENDS = 4
"""How many choices on the far side of the target the walk tries."""


def _walk(
    start: tuple[Chosen, float],
    end: tuple[Chosen, float],
    removed_fraction: Callable[[Chosen], float],
    target: float,
    tolerance: float,
) -> tuple[Chosen, float]:
    """Greedy steps from ``start`` towards ``end`` (on the other side of the target): each moves the
    one group whose choice in ``end`` brings the removal nearest the target, until the removal
    reaches the target's tolerance band or crosses it (no later step can come closer then)."""
    current, got = list(start[0]), start[1]
    side = 1 if got < target else -1
    best = (list(current), got)
    pending = [i for i, ((_, a), (_, b)) in enumerate(zip(start[0], end[0])) if not np.array_equal(a, b)]
    while pending and side * (target - got) > tolerance / 2:
        trials = []
        for i in pending:
            trial = list(current)
            trial[i] = end[0][i]
            value = removed_fraction(trial)
            trials.append((abs(value - target), i, trial, value))
        _, i, current, got = min(trials, key=lambda t: (t[0], t[1]))
        pending.remove(i)
        if abs(got - target) < abs(best[1] - target):
            best = (list(current), got)
    return best


def harmonise_head_dims(chosen: Chosen, scored: Scored) -> Chosen:
    """Head-dim groups that share an attention module remove the same number of dims per head.

    A model reshapes queries, keys and values with one ``head_dim``, but rotary query/key dims go
    in pairs while value dims go one by one, and each group picks its own count. Within every set
    of head-dim groups joined by a module, the removed fraction of each head is lowered to the
    largest one all of them can reach.
    """
    scores = {id(g): s for g, s in scored}
    heads = [i for i, (g, u) in enumerate(chosen) if g.kind is GroupKind.HEAD_DIMS]
    if len(heads) < 2:
        return chosen
    parent = list(range(len(chosen)))

    def find(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    owner: dict[str, int] = {}
    for i in heads:
        # the modules that run the reshapes into heads hold activations of every head-dim group they use
        for module in {m.value.owner for m in chosen[i][0].members}:
            if module in owner:
                parent[find(i)] = find(owner[module])
            else:
                owner[module] = i
    components: dict[int, list[int]] = {}
    for i in heads:
        components.setdefault(find(i), []).append(i)
    result = list(chosen)
    for members in components.values():
        if len(members) < 2:
            continue
        share = {i: _unit_share(chosen[i][0]) for i in members}
        target = min(len(chosen[i][1]) * share[i] for i in members)
        step = _lcm_fraction([share[i] for i in members])
        target = (target // step) * step
        for i in members:
            group = chosen[i][0]
            count = int(target / share[i])
            result[i] = (group, select(scores[id(group)], count=count) if count else np.zeros(0, dtype=np.int64))
    return result


def _unit_share(group: Group) -> Fraction:
    """The fraction of a head one unit holds: the indices of unit 0 over the size of a projection's dim."""
    member = group.parameters[0] if group.parameters else group.members[0]
    return Fraction(int((member.units == 0).sum()), len(member.units))


def _lcm_fraction(values: list[Fraction]) -> Fraction:
    """The least common multiple of positive fractions."""
    numerator = 1
    denominator = 0
    for v in values:
        numerator = numerator * v.numerator // math.gcd(numerator, v.numerator)
        denominator = v.denominator if denominator == 0 else math.gcd(denominator, v.denominator)
    return Fraction(numerator, denominator)


def removal_that_fits(graph: Graph, chosen: Chosen) -> tuple[Removal, list[str]]:
    """The removal of ``chosen``, leaving whole the groups that together would empty a dim.

    Groups meet in a dim through a concat, split or slice; each can lose its fraction and the
    dim still lose everything. The group removing the most there keeps its units, until every
    dim keeps a channel. Returns the removal and one note per group left whole.
    """
    chosen = list(chosen)
    notes: list[str] = []
    while True:
        try:
            return removal_of(graph, chosen), notes
        except InvalidIndicesError:
            parts: dict[DimRef, list[tuple[int, IntArray]]] = {}
            for i, (group, units) in enumerate(chosen):
                if len(units) and not group.blockers:
                    for dim, removed in group.removal(units).items():
                        parts.setdefault(dim, []).append((i, removed))
            emptied = [
                (dim, found)
                for dim, found in parts.items()
                if np.unique(np.concatenate([r for _, r in found])).size >= graph.dim_size(dim)
            ]
            if not emptied:
                raise
            dim, found = emptied[0]
            i = max(found, key=lambda item: item[1].size)[0]
            group = chosen[i][0]
            member = next((m for m in group.members if m.dim == dim), None)
            where = member.label if member is not None and member.is_parameter else "a tensor they share"
            notes.append(f"{group.name} left unpruned: with the other groups it would remove every channel of {where}")
            chosen[i] = (group, np.zeros(0, dtype=np.int64))
