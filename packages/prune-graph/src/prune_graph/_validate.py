"""A pure check of a graph's consistency, with messages that say what to fix."""

from __future__ import annotations

from prune_graph._couplings import Broadcast, FactorLink, Link, Mix, Pin
from prune_graph._errors import GraphError, IndexMapError
from prune_graph._graph import Graph
from prune_graph._values import DimRef, ValueKind

__all__ = ["problems", "validate"]

_SOURCES = (ValueKind.INPUT, ValueKind.PARAMETER, ValueKind.BUFFER, ValueKind.CONSTANT, ValueKind.VIRTUAL)


def _dim_problem(graph: Graph, ref: DimRef, where: str) -> str | None:
    if not graph.has_value(ref.value):
        return f"{where}: refers to unknown value {ref.value!r}"
    rank = graph.value(ref.value).rank
    if ref.dim >= rank:
        return f"{where}: dim {ref.dim} of value {ref.value!r} does not exist (rank {rank})"
    return None


def problems(graph: Graph) -> tuple[str, ...]:
    """Every problem found, as messages; empty for a valid graph.

    Checks dangling ids, producers (one per activation, none for sources), graph inputs and
    outputs, cycles, and every coupling: dims exist and the index maps' sizes match the dims.
    """
    found: list[str] = []
    writers: dict[str, str] = {}
    for op in graph.ops:
        for role, ids in (("input", op.inputs), ("output", op.outputs), ("axis", op.axes)):
            for value_id in ids:
                if not graph.has_value(value_id):
                    found.append(f"op {op.where}: {role} {value_id!r} is not a value of the graph")
        for value_id in op.outputs:
            if value_id in writers:
                found.append(f"value {value_id!r} is written by both {writers[value_id]} and {op.id}")
            writers[value_id] = op.id
            if graph.has_value(value_id) and graph.value(value_id).kind in _SOURCES:
                kind = graph.value(value_id).kind.value
                found.append(f"op {op.where}: writes {value_id!r}, which is a {kind} and has no producer")
    for value in graph.values:
        if value.kind is ValueKind.ACTIVATION and value.id not in writers:
            found.append(f"activation {value.id!r} has no producer (expected an op that outputs it)")
    for role, ids in (("input", graph.inputs), ("output", graph.outputs)):
        for value_id in ids:
            if not graph.has_value(value_id):
                found.append(f"graph {role} {value_id!r} is not a value of the graph")
    if found:
        return tuple(found)
    try:
        graph.topological_order()
        couplings = graph.couplings
    except (GraphError, IndexMapError) as error:
        return (str(error),)
    for c in couplings:
        where = f"coupling from op {c.op}" if c.op else "coupling"
        if isinstance(c, Link):
            bad = _dim_problem(graph, c.src, where) or _dim_problem(graph, c.dst, where)
            if bad:
                found.append(bad)
                continue
            src, dst = graph.dim_size(c.src), graph.dim_size(c.dst)
            if (c.map.src_size, c.map.dst_size) != (src, dst):
                found.append(
                    f"{where}: {type(c.map).__name__} maps size {c.map.src_size} → {c.map.dst_size}, "
                    f"but {c.src} has size {src} and {c.dst} has size {dst}"
                )
        elif isinstance(c, FactorLink):
            for ref in (c.fine, *(p for p in c.parts if p is not None)):
                bad = _dim_problem(graph, ref, where)
                if bad:
                    found.append(bad)
            if any(_dim_problem(graph, ref, where) for ref in (c.fine, *(p for p in c.parts if p is not None))):
                continue
            if graph.dim_size(c.fine) != c.size:
                found.append(
                    f"{where}: {c.fine} has size {graph.dim_size(c.fine)}, expected {' × '.join(map(str, c.sizes))} = {c.size}"
                )
            for part, size in zip(c.parts, c.sizes):
                if part is not None and graph.dim_size(part) != size:
                    found.append(f"{where}: factor part {part} has size {graph.dim_size(part)}, expected {size}")
        elif isinstance(c, (Pin, Mix, Broadcast)):
            bad = _dim_problem(graph, c.dim, where)
            if bad:
                found.append(bad)
    return tuple(found)


def validate(graph: Graph) -> Graph:
    """Return ``graph`` unchanged when it is valid; raise ``GraphError`` listing every problem."""
    found = problems(graph)
    if found:
        listing = "\n  - ".join(found)
        raise GraphError(f"invalid graph ({len(found)} problem{'s' if len(found) > 1 else ''}):\n  - {listing}")
    return graph
