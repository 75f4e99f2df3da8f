"""prune-graph: the framework-neutral data model of structural pruning.

Values (tensors and virtual axes), ops from a closed vocabulary of kinds, coupling rules with
index maps between dims, and the immutable :class:`Graph` with its queries, validation, JSON
and DOT forms. Imports nothing but the standard library and ``attrs``.
"""

from prune_graph._builder import GraphBuilder
from prune_graph._couplings import Broadcast, Coupling, FactorLink, Link, Mix, Mixing, Pin
from prune_graph._dot import to_dot
from prune_graph._errors import GraphError, IndexMapError, SchemaError
from prune_graph._graph import Graph
from prune_graph._index_maps import (
    Compose,
    Factor,
    Identity,
    IndexMap,
    IndexMapLike,
    Offset,
    Window,
    block_expand,
    compose,
    normalise_indices,
)
from prune_graph._ops import AttrValue, Op, OpId, OpKind
from prune_graph._reshape import reshape_groups
from prune_graph._rule_concat import ConcatCouplings
from prune_graph._rule_memo import CouplingPart, RepeatedCouplings
from prune_graph._rule_parts import dim_ref, dim_refs
from prune_graph._rules import RULES, Rule, ShapeOf, couplings_of
from prune_graph._serialize import SCHEMA, from_json, to_json
from prune_graph._validate import problems, validate
from prune_graph._values import DimRef, Value, ValueId, ValueKind

__all__ = [
    "RULES",
    "SCHEMA",
    "AttrValue",
    "Broadcast",
    "Compose",
    "ConcatCouplings",
    "Coupling",
    "CouplingPart",
    "DimRef",
    "Factor",
    "FactorLink",
    "Graph",
    "GraphBuilder",
    "GraphError",
    "Identity",
    "IndexMap",
    "IndexMapError",
    "IndexMapLike",
    "Link",
    "Mix",
    "Mixing",
    "Offset",
    "Op",
    "OpId",
    "OpKind",
    "Pin",
    "RepeatedCouplings",
    "Rule",
    "SchemaError",
    "ShapeOf",
    "Value",
    "ValueId",
    "ValueKind",
    "Window",
    "block_expand",
    "compose",
    "couplings_of",
    "dim_ref",
    "dim_refs",
    "from_json",
    "normalise_indices",
    "problems",
    "reshape_groups",
    "to_dot",
    "to_json",
    "validate",
]
