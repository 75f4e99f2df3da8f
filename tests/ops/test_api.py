"""The public surface of prune-ops: a snapshot (changes must be deliberate) and no framework import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import prune_ops

PUBLIC = {
    "FPGM",
    "IMPORTANCES",
    "PLAN_SCHEMA",
    "TOLERANCES",
    "BNScale",
    "ChannelStats",
    "Chosen",
    "Costs",
    "Equivalence",
    "Fluctuation",
    "Group",
    "GroupKind",
    "GroupL2",
    "GroupSet",
    "Importance",
    "IntArray",
    "InvalidIndicesError",
    "L1Strategy",
    "L2Strategy",
    "Magnitude",
    "Member",
    "MemberData",
    "MixNote",
    "Normalisation",
    "Outcome",
    "Plan",
    "PlanEntry",
    "PlanMismatchError",
    "PruningError",
    "Random",
    "RandomStrategy",
    "Reduction",
    "Removal",
    "Scored",
    "Silence",
    "Summary",
    "Target",
    "TargetMissedWarning",
    "Taylor",
    "UnprunableError",
    "Wanda",
    "as_index_array",
    "as_target",
    "check_amount",
    "check_indices",
    "check_plan_groups",
    "choose_global",
    "choose_isomorphic",
    "choose_local",
    "compare_outputs",
    "compensation",
    "complement",
    "contracted_in_products",
    "costs",
    "factor_sets",
    "find_groups",
    "harmonise_head_dims",
    "input_side_axes",
    "keep_count",
    "make_plan",
    "meet_target",
    "mixing_blocker",
    "normalisation_modules",
    "normalise",
    "propagate",
    "reduce_members",
    "removal_from_plan",
    "removal_of",
    "removal_that_fits",
    "resolve_importance",
    "search_amount",
    "select",
    "silence",
    "split_between_factors",
    "summaries_wanted",
    "summarise",
    "units_removed",
}


def test_public_names_are_the_snapshot() -> None:
    assert set(prune_ops.__all__) == PUBLIC, "update PUBLIC when the API changes on purpose"
    assert len(prune_ops.__all__) == len(set(prune_ops.__all__))
    for name in prune_ops.__all__:
        assert getattr(prune_ops, name) is not None
        if not name.isupper() and name != "IntArray" and name != "Importance":
            assert getattr(prune_ops, name).__doc__, f"{name} has no docstring"


def test_prune_ops_and_these_tests_never_import_torch() -> None:
    code = (
        "import sys; import prune_ops, prune_graph; import tests.ops.nets, tests.ops.strategies; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'torch'); print(bad); sys.exit(1 if bad else 0)"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
