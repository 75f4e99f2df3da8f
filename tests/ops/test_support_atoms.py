"""Atoms grouped by support (prune_ops._grouping): the bit-row sort and the per-atom keys agree."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from prune_ops._classes import components
from prune_ops._grouping import _atoms_by_support


@st.composite
def joined_places(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, int]:
    """Classes laid end to end (``owner``: each place's class) and atoms joined by random edges."""
    sizes = draw(st.lists(st.integers(0, 6), min_size=1, max_size=70))
    total = sum(sizes)
    owner = np.repeat(np.arange(len(sizes), dtype=np.int64), sizes)
    places = st.integers(0, max(total - 1, 0))
    edges = draw(st.lists(st.tuples(places, places), max_size=2 * total)) if total else []
    a = [np.array([x for x, _ in edges], dtype=np.int64)]
    b = [np.array([y for _, y in edges], dtype=np.int64)]
    return components(total, a, b), owner, len(sizes)


@given(joined_places())
def test_bit_rows_group_atoms_as_keys_do(case: tuple[np.ndarray, np.ndarray, int]) -> None:
    atom, owner, count = case
    rows = _atoms_by_support(atom, owner, count)
    keyed = _atoms_by_support(atom, owner, count, cells=0)  # too many bits for the rows: keys
    assert [support for support, _ in rows] == [support for support, _ in keyed]
    for (_, atoms), (_, expected) in zip(rows, keyed, strict=True):
        assert atoms.dtype == expected.dtype == np.int64
        assert atoms.tolist() == expected.tolist()
    # every atom once, under the classes that hold it
    assert sorted(a for _, atoms in rows for a in atoms.tolist()) == sorted(set(atom.tolist()))
    for support, atoms in rows:
        for a in atoms.tolist():
            assert sorted(set(owner[atom == a].tolist())) == list(support)
