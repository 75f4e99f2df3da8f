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
    TargetMissedWarning,
    UnprunableError,
    costs,
)
from prune_torch import examples, strategy
from prune_torch._apply import apply
from prune_torch._checkpoint import CheckpointReport, prune_checkpoint
from prune_torch._errors import ApplyError, TraceError
from prune_torch._history import history, load_pruned, save_pruned
from prune_torch._lasso import GroupLasso
from prune_torch._latency import Latency, measure_latency
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
from prune_torch._optim import prune_optimizer
from prune_torch._plan import plan
from prune_torch._pretrained import PretrainedCheck, PretrainedError, check_pretrained, save_pretrained
from prune_torch._prune import InteractivePruner, Proposal, Target, interactive, prune
from prune_torch._recalibrate import recalibrate_norms
from prune_torch._report import LayerWidth, Report
from prune_torch._traced import TracedGraph
from prune_torch._traced import trace_model as trace
from prune_torch._verify import Equivalence, VerificationError, check_equivalence, silenced_copy

__all__ = [
    "LAYER_RULES",
    "ApplyError",
    "CheckpointReport",
    "Equivalence",
    "GroupLasso",
    "InteractivePruner",
    "InvalidIndicesError",
    "Latency",
    "LayerRule",
    "LayerWidth",
    "Plan",
    "PlanEntry",
    "PlanMismatchError",
    "PretrainedCheck",
    "PretrainedError",
    "Proposal",
    "PruningError",
    "Report",
    "Target",
    "TargetMissedWarning",
    "TraceError",
    "TracedGraph",
    "UnprunableError",
    "VerificationError",
    "apply",
    "check_equivalence",
    "check_pretrained",
    "costs",
    "examples",
    "history",
    "interactive",
    "load_pruned",
    "measure_latency",
    "plan",
    "prune",
    "prune_batchnorm",
    "prune_checkpoint",
    "prune_conv",
    "prune_in_channels",
    "prune_linear_in_channels",
    "prune_linear_out_channels",
    "prune_optimizer",
    "prune_out_channels",
    "prune_related_conv",
    "recalibrate_norms",
    "save_pretrained",
    "save_pruned",
    "silenced_copy",
    "strategy",
    "trace",
]
