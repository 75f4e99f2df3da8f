"""Which dims of a reshape's input become which dims of its output."""

from __future__ import annotations

import math

__all__ = ["reshape_groups"]


def reshape_groups(src: tuple[int, ...], dst: tuple[int, ...]) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Pair minimal runs of source and destination dims with equal products (size-1 dims skipped).

    >>> reshape_groups((2, 12, 5), (2, 3, 4, 5))
    [((0,), (0,)), ((1,), (1, 2)), ((2,), (3,))]
    >>> reshape_groups((2, 3, 4), (6, 4))
    [((0, 1), (0,)), ((2,), (1,))]

    Returns ``[]`` when either shape holds no elements.
    """
    if math.prod(src) == 0 or math.prod(dst) == 0 or math.prod(src) != math.prod(dst):
        return []
    i = j = 0
    groups: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
    while True:
        while i < len(src) and src[i] == 1:
            i += 1
        while j < len(dst) and dst[j] == 1:
            j += 1
        if i == len(src) or j == len(dst):
            return groups
        left, right = [i], [j]
        prod_left, prod_right = src[i], dst[j]
        i, j = i + 1, j + 1
        while prod_left != prod_right:
            if prod_left < prod_right:
                prod_left *= src[i]
                left.append(i)
                i += 1
            else:
                prod_right *= dst[j]
                right.append(j)
                j += 1
        groups.append((tuple(d for d in left if src[d] != 1), tuple(d for d in right if dst[d] != 1)))
