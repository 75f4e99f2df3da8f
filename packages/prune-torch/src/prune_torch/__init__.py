"""prune-torch: structural pruning for PyTorch.

The classic workflow::

    import prune_torch as pt
    strategy = pt.strategy.L1()
    idxs = strategy(model.conv1.weight, amount=0.4, round_to=16)
    graph = pt.trace(model, example_inputs=torch.randn(1, 3, 224, 224))
    plan = pt.plan(graph, model.conv1, idxs)
    print(plan)
    pt.apply(model, plan)

or in one call: ``pt.prune(model, example_inputs, ratio=0.5)``.
"""

from prune_ops import (
    InvalidIndicesError,
    Plan,
    PlanEntry,
    PlanMismatchError,
    PruningError,
    UnprunableError,
    costs,
)
from prune_torch import examples, strategy
from prune_torch._apply import apply
from prune_torch._errors import ApplyError, TraceError
from prune_torch._layers import LAYER_RULES, LayerRule
from prune_torch._lowlevel import (
    prune_batchnorm,
    prune_conv,
    prune_in_channels,
    prune_linear_in_channels,
    prune_linear_out_channels,
    prune_out_channels,
    prune_related_conv,
)
from prune_torch._plan import plan
from prune_torch._prune import LayerWidth, Report, prune
from prune_torch._traced import TracedGraph
from prune_torch._traced import trace_model as trace
from prune_torch._verify import Equivalence, check_equivalence, silenced_copy

__all__ = [
    "LAYER_RULES",
    "ApplyError",
    "Equivalence",
    "InvalidIndicesError",
    "LayerRule",
    "LayerWidth",
    "Plan",
    "PlanEntry",
    "PlanMismatchError",
    "PruningError",
    "Report",
    "TraceError",
    "TracedGraph",
    "UnprunableError",
    "apply",
    "check_equivalence",
    "costs",
    "examples",
    "plan",
    "prune",
    "prune_batchnorm",
    "prune_conv",
    "prune_in_channels",
    "prune_linear_in_channels",
    "prune_linear_out_channels",
    "prune_out_channels",
    "prune_related_conv",
    "silenced_copy",
    "strategy",
    "trace",
]
