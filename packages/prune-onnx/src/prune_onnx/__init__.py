"""prune-onnx: structural pruning for ONNX models, on prune-graph and prune-ops alone.

``trace`` reads a model into the framework-neutral graph, ``plan`` / ``apply`` are the classic
workflow, ``prune`` the one call, ``check_equivalence`` runs the pruned model against the silenced
original in onnxruntime. ONNX models are values: every call returns a new model and leaves its
input unchanged.

>>> import prune_onnx as po
>>> # pruned, report = po.prune("model.onnx", ratio=0.5)
"""

from prune_onnx._apply import apply, removal_from_plan
from prune_onnx._errors import OnnxApplyError, OnnxReadError
from prune_onnx._nodes import NODE_RULES
from prune_onnx._prune import Report, Target, member_data, plan, prune
from prune_onnx._trace import OnnxGraph, trace
from prune_onnx._verify import Equivalence, check_equivalence, random_inputs, run, silenced_copy

__all__ = [
    "NODE_RULES",
    "Equivalence",
    "OnnxApplyError",
    "OnnxGraph",
    "OnnxReadError",
    "Report",
    "Target",
    "apply",
    "check_equivalence",
    "member_data",
    "plan",
    "prune",
    "random_inputs",
    "removal_from_plan",
    "run",
    "silenced_copy",
    "trace",
]
