"""Groups made in bulk (prune_ops._members.new_groups) equal groups made by Group's own init."""

from __future__ import annotations

import attrs
import numpy as np
import pytest
from tests.graph.test_rule_memo import repeated_layers

from prune_graph import DimRef, ValueId
from prune_ops import find_groups
from prune_ops._groups import Group, GroupKind, Member
from prune_ops._members import new_groups


def _fields(group: Group) -> tuple[object, ...]:
    return tuple(getattr(group, f.name) for f in attrs.fields(Group))


def test_groups_made_in_bulk_equal_groups_made_by_init() -> None:
    graph = repeated_layers()
    x, w = graph.value("x"), graph.values[1]
    first = (Member(DimRef(ValueId("x"), 1), x, np.arange(8)),)
    second = (Member(DimRef(w.id, 0), w, np.array([0, -1, 1])), *first)
    rows = [
        ((1, "x"), 8, first, (), GroupKind.CHANNELS, ()),
        ((0, "w"), 2, second, ("a reason",), GroupKind.HEADS, ()),
    ]
    made = new_groups(rows)
    expected = [Group(i, m[0].dim, size, m, b, k, n) for i, (_key, size, m, b, k, n) in enumerate(rows)]
    assert [type(g) for g in made] == [Group, Group]
    assert [_fields(g) for g in made] == [_fields(g) for g in expected]
    assert made[0]._memo is not made[1]._memo  # each its own
    # every field is set: a field added to Group must be added to new_groups too
    assert [f.name for f in attrs.fields(Group)] == [
        "id", "root", "size", "members", "blockers", "kind", "mixing", "_memo"
    ]  # fmt: skip
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        made[0].size = 3  # type: ignore[misc]
    assert new_groups([]) == []


def test_found_groups_work_as_groups_made_by_init() -> None:
    for group in find_groups(repeated_layers()):
        again = Group(group.id, group.root, group.size, group.members, group.blockers, group.kind, group.mixing)
        assert group.whole_parameters == again.whole_parameters
        assert group.parameters == again.parameters
        assert str(group) == str(again)
