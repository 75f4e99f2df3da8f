"""Plans: for every parameter axis the indices removed, immutable, printable, serialisable, composable."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

import attrs
import numpy as np

from prune_graph import Graph, ValueId, ValueKind
from prune_ops._errors import PlanMismatchError
from prune_ops._indices import complement
from prune_ops._propagate import Removal

__all__ = ["PLAN_SCHEMA", "Plan", "PlanEntry", "make_plan"]

PLAN_SCHEMA = "prune-plan/2"
_READS = (PLAN_SCHEMA, "prune-plan/1")  # /1 named an entry's owner "module" and its tensor "param"
_STATE_KINDS = (ValueKind.PARAMETER, ValueKind.BUFFER, ValueKind.VIRTUAL)


def _ints(values: object) -> tuple[int, ...]:
    if isinstance(values, np.ndarray) and values.dtype.kind in "iu":
        return tuple(values.tolist())
    return tuple(map(int, values))  # type: ignore[call-overload]


def _names(entry: dict[str, Any]) -> tuple[str, str]:
    """An entry's owner and tensor, as either schema names them."""
    if "owner" in entry:
        return str(entry["owner"]), str(entry["tensor"])
    return str(entry["module"]), str(entry["param"])


@attrs.frozen
class PlanEntry:
    """Indices ``removed`` from ``axis`` of the tensor ``owner.tensor`` (a parameter, buffer or virtual axis).

    ``owner`` and ``tensor`` are named by the adapter: a module path and a parameter name in
    torch, a node and an initializer in ONNX.
    """

    owner: str
    tensor: str
    kind: str
    axis: int
    size: int
    shape: tuple[int, ...] = attrs.field(converter=_ints)
    removed: tuple[int, ...] = attrs.field(converter=_ints)

    @property
    def key(self) -> tuple[str, str, int]:
        """``(owner, tensor, axis)``."""
        return (self.owner, self.tensor, self.axis)

    @property
    def path(self) -> str:
        """``owner.tensor``."""
        return f"{self.owner}.{self.tensor}" if self.owner else self.tensor

    @property
    def kept(self) -> tuple[int, ...]:
        """The indices that stay, in order."""
        return tuple(complement(np.asarray(self.removed, dtype=np.int64), self.size).tolist())

    @property
    def size_after(self) -> int:
        """Size of the axis after pruning."""
        return self.size - len(self.removed)


def _entries(entries: Iterable[PlanEntry]) -> tuple[PlanEntry, ...]:
    return tuple(entries)


def _shapes(shapes: Iterable[tuple[str, Iterable[int]]]) -> tuple[tuple[str, tuple[int, ...]], ...]:
    return tuple((str(k), tuple(map(int, v))) for k, v in shapes)


def _inputs(inputs: Iterable[tuple[str, Iterable[int], str]]) -> tuple[tuple[str, tuple[int, ...], str], ...]:
    return tuple((str(n), tuple(int(s) for s in shape), str(dtype)) for n, shape, dtype in inputs)


@attrs.frozen
class Plan:
    """What pruning changes, made for the graph whose fingerprint it carries.

    ``entries`` are sorted by (module, param, axis); ``shapes`` are the predicted new shapes of
    every value that changes, activations included, so an adapter can check its work.
    """

    fingerprint: str
    result_fingerprint: str
    entries: tuple[PlanEntry, ...] = attrs.field(converter=_entries)
    shapes: tuple[tuple[str, tuple[int, ...]], ...] = attrs.field(converter=_shapes, repr=False)
    inputs: tuple[tuple[str, tuple[int, ...], str], ...] = attrs.field(default=(), converter=_inputs, repr=False)

    @property
    def is_empty(self) -> bool:
        """Whether nothing is removed."""
        return not self.entries

    def entry(self, module: str, param: str, axis: int) -> PlanEntry | None:
        """The entry for one axis, if any."""
        for e in self.entries:
            if e.key == (module, param, axis):
                return e
        return None

    def new_shapes(self) -> dict[str, tuple[int, ...]]:
        """Predicted shape of every changed value, by value id."""
        return dict(self.shapes)

    def state_shapes(self) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
        """``module.param`` → (shape before, shape after) for every changed parameter, buffer and axis."""
        out: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
        for e in self.entries:
            path = e.path
            before, after = out.get(path, (e.shape, e.shape))
            out[path] = (before, (*after[: e.axis], after[e.axis] - len(e.removed), *after[e.axis + 1 :]))
        return out

    @property
    def parameters_removed(self) -> int:
        """Number of parameter elements removed (buffers and virtual axes not counted)."""
        total = 0
        kinds = {e.path: e.kind for e in self.entries}
        for path, (before, after) in self.state_shapes().items():
            if kinds[path] == ValueKind.PARAMETER.value:
                total += math.prod(before) - math.prod(after)
        return total

    def __repr__(self) -> str:
        """One line; ``str(plan)`` is the full table."""
        owners = len({e.owner for e in self.entries})
        return (
            f"Plan({self.fingerprint} → {self.result_fingerprint}: {len(self.entries)} axes of {owners} owners, "
            f"{self.parameters_removed:,} parameters removed)"
        )

    def __str__(self) -> str:
        rows = [("owner", "tensor", "axis", "before → after", "params removed")]
        shapes = self.state_shapes()
        shown: set[str] = set()
        for e in self.entries:
            before, after = shapes[e.path]
            removed = ""
            if e.path not in shown and e.kind == ValueKind.PARAMETER.value:
                removed = f"{math.prod(before) - math.prod(after):,}"
            shown.add(e.path)
            rows.append((e.owner or "<root>", e.tensor, str(e.axis), f"{e.size} → {e.size_after}", removed))
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        lines = [
            f"Plan {self.fingerprint} → {self.result_fingerprint}: {len(shapes)} tensors change, "
            f"{self.parameters_removed:,} parameters removed"
        ]
        for row in rows:
            lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        return "\n".join(lines)

    def to_json(self, indent: int | None = None) -> str:
        """JSON with the schema version, fingerprints, entries (``owner``, ``tensor``, ``axis``, ``indices``) and shapes."""
        doc = {
            "schema": PLAN_SCHEMA,
            "fingerprint": self.fingerprint,
            "result_fingerprint": self.result_fingerprint,
            "entries": [
                {
                    "owner": e.owner,
                    "tensor": e.tensor,
                    "kind": e.kind,
                    "axis": e.axis,
                    "size": e.size,
                    "shape": list(e.shape),
                    "indices": list(e.removed),
                }
                for e in self.entries
            ],
            "shapes": {k: list(v) for k, v in self.shapes},
            "inputs": [[name, list(shape), dtype] for name, shape, dtype in self.inputs],
        }
        return json.dumps(doc, indent=indent)

    @classmethod
    def from_json(cls, text: str) -> Plan:
        """Read :meth:`to_json` output; ``PlanMismatchError`` for another schema or a malformed document."""
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as error:
            raise PlanMismatchError(f"plan is not JSON: {error}") from error
        if not isinstance(doc, dict) or doc.get("schema") not in _READS:
            got = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
            raise PlanMismatchError(f"expected plan schema {PLAN_SCHEMA!r} (got {got!r})")
        try:
            entries = tuple(
                PlanEntry(*_names(e), e["kind"], e["axis"], e["size"], e["shape"], e["indices"]) for e in doc["entries"]
            )
            shapes = tuple((k, tuple(v)) for k, v in doc["shapes"].items())
            inputs = tuple(
                (str(n), tuple(int(s) for s in shape), str(dtype)) for n, shape, dtype in doc.get("inputs", [])
            )
            return cls(doc["fingerprint"], doc["result_fingerprint"], entries, shapes, inputs)
        except (KeyError, TypeError) as error:
            raise PlanMismatchError(f"malformed {PLAN_SCHEMA} document: missing or bad field {error}") from error

    def then(self, other: Plan) -> Plan:
        """One plan equal to applying ``self`` and then ``other`` (made for the result of ``self``)."""
        if other.fingerprint != self.result_fingerprint:
            raise PlanMismatchError(
                f"cannot compose: the second plan was made for graph {other.fingerprint}, "
                f"but the first plan leads to {self.result_fingerprint}"
            )
        combined: dict[tuple[str, str, int], PlanEntry] = {e.key: e for e in self.entries}
        for e in other.entries:
            first = combined.get(e.key)
            if first is None:
                shape = self._original_shape(e)
                combined[e.key] = attrs.evolve(e, shape=shape)
                continue
            kept = np.asarray(first.kept, dtype=np.int64)
            removed = np.union1d(np.asarray(first.removed, dtype=np.int64), kept[list(e.removed)])
            combined[e.key] = attrs.evolve(first, removed=removed.tolist())
        shapes = dict(self.shapes)
        shapes.update(other.shapes)
        entries = tuple(sorted(combined.values(), key=lambda x: x.key))
        return Plan(self.fingerprint, other.result_fingerprint, entries, tuple(sorted(shapes.items())), self.inputs)

    def _original_shape(self, later: PlanEntry) -> tuple[int, ...]:
        """Shape before ``self`` of a tensor that a later plan changes."""
        for e in self.entries:
            if e.path == later.path:
                return e.shape
        return later.shape


def make_plan(graph: Graph, removal: Removal) -> Plan:
    """The plan that carries out ``removal`` on the graph's parameters, buffers and virtual axes."""
    new_shapes: dict[str, list[int]] = {}
    state: dict[ValueId, tuple[int, ...]] = {}
    entries = []
    for dim, removed in removal.indices.items():
        value = graph.value(dim.value)
        shape = new_shapes.setdefault(value.id, list(value.shape))
        shape[dim.dim] -= int(removed.size)
        if value.kind in _STATE_KINDS:
            state[value.id] = ()
            entries.append(
                PlanEntry(
                    value.owner,
                    value.name,
                    value.kind.value,
                    dim.dim,
                    value.shape[dim.dim],
                    value.shape,
                    removed,
                )
            )
    entries.sort(key=lambda e: e.key)
    state = {k: tuple(new_shapes[k]) for k in state}
    shapes = tuple(sorted((k, tuple(v)) for k, v in new_shapes.items()))
    inputs = tuple((v.id, v.shape, v.dtype) for v in (graph.value(i) for i in graph.inputs))
    result = graph.fingerprint(state)
    return Plan(graph.fingerprint(), result, tuple(entries), shapes, inputs)
