"""A versioned JSON form of graphs that round-trips exactly."""

from __future__ import annotations

import json
from typing import Any

from prune_graph._errors import GraphError, SchemaError
from prune_graph._graph import Graph
from prune_graph._ops import Op, OpId, OpKind
from prune_graph._values import Value, ValueId, ValueKind

__all__ = ["SCHEMA", "from_json", "to_json"]

SCHEMA = "prune-graph/2"
_READS = (SCHEMA, "prune-graph/1")  # /1 named owners "module"


def _attr_to_json(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_attr_to_json(v) for v in value]
    return value


def to_json(graph: Graph, indent: int | None = None) -> str:
    """The graph as JSON text, tagged with :data:`SCHEMA`."""
    doc = {
        "schema": SCHEMA,
        "inputs": list(graph.inputs),
        "outputs": list(graph.outputs),
        "values": [
            {
                "id": v.id,
                "shape": list(v.shape),
                "dtype": v.dtype,
                "kind": v.kind.value,
                "owner": v.owner,
                "name": v.name,
            }
            for v in graph.values
        ],
        "ops": [
            {
                "id": op.id,
                "kind": op.kind.value,
                "target": op.target,
                "inputs": list(op.inputs),
                "outputs": list(op.outputs),
                "owner": op.owner,
                "attrs": {k: _attr_to_json(v) for k, v in op.attrs},
                "axes": list(op.axes),
            }
            for op in graph.ops
        ],
    }
    return json.dumps(doc, indent=indent)


def _attr_from_json(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_attr_from_json(v) for v in value)
    return value


def _owner(item: dict[str, Any]) -> str:
    return str(item["owner"] if "owner" in item else item["module"])


def from_json(text: str) -> Graph:
    """Read a graph written by :func:`to_json`; ``SchemaError`` for another schema or a malformed document."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as error:
        raise SchemaError(f"not JSON: {error}") from error
    if not isinstance(doc, dict) or doc.get("schema") not in _READS:
        got = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
        raise SchemaError(f"expected schema {SCHEMA!r} (got {got!r})")
    try:
        values = [
            Value(ValueId(v["id"]), tuple(v["shape"]), v["dtype"], ValueKind(v["kind"]), _owner(v), v["name"])
            for v in doc["values"]
        ]
        ops = [
            Op(
                OpId(o["id"]),
                OpKind(o["kind"]),
                o["target"],
                tuple(o["inputs"]),
                tuple(o["outputs"]),
                _owner(o),
                {k: _attr_from_json(v) for k, v in o["attrs"].items()},
                tuple(o["axes"]),
            )
            for o in doc["ops"]
        ]
        return Graph(values, ops, doc["inputs"], doc["outputs"])
    except (KeyError, TypeError, AttributeError) as error:
        raise SchemaError(f"malformed {SCHEMA} document: missing or bad field {error}") from error
    except ValueError as error:
        if isinstance(error, GraphError):
            raise
        raise SchemaError(f"malformed {SCHEMA} document: {error}") from error
