"""prune-ops: the framework-free functions of structural pruning, on prune-graph data and numpy arrays.

Groups of coupled channels, propagation, importance criteria, selection with ``round_to``,
plans (printable, JSON, composable) and costs. Imports no deep-learning framework.
"""

from prune_ops._choose import (
    Chosen,
    Scored,
    choose_global,
    choose_isomorphic,
    choose_local,
    harmonise_head_dims,
    meet_target,
    removal_that_fits,
    search_amount,
)
from prune_ops._costs import Costs, costs
from prune_ops._equivalence import TOLERANCES, Equivalence, compare_outputs
from prune_ops._errors import (
    InvalidIndicesError,
    PlanMismatchError,
    PruningError,
    TargetMissedWarning,
    UnprunableError,
)
from prune_ops._grouping import find_groups
from prune_ops._groups import Group, GroupKind, GroupSet, Member
from prune_ops._importance import (
    FPGM,
    IMPORTANCES,
    BNScale,
    Fluctuation,
    GroupL2,
    Importance,
    Magnitude,
    MemberData,
    Normalisation,
    Random,
    Reduction,
    Taylor,
    Wanda,
    normalise,
    reduce_members,
    resolve_importance,
    summaries_wanted,
)
from prune_ops._indices import IntArray, as_index_array, check_indices, complement
from prune_ops._kinds import contracted_in_products
from prune_ops._mixing import MixNote, mixing_blocker, normalisation_modules
from prune_ops._outcome import Outcome
from prune_ops._plan import PLAN_SCHEMA, Plan, PlanEntry, make_plan
from prune_ops._plan_check import check_plan_groups, removal_from_plan, units_removed
from prune_ops._propagate import Removal, propagate, removal_of
from prune_ops._selection import check_amount, factor_sets, keep_count, select, split_between_factors
from prune_ops._silence import Silence, input_side_axes, silence
from prune_ops._statistics import ChannelStats, compensation
from prune_ops._strategy import L1Strategy, L2Strategy, RandomStrategy
from prune_ops._summary import Summary, summarise
from prune_ops._target import Target, as_target

__all__ = [
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
]
