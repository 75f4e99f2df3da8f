"""Values: the tensors (and virtual axes) a graph talks about."""

from __future__ import annotations

import enum
from typing import NewType

import attrs

from prune_graph._errors import GraphError

__all__ = ["DimRef", "Value", "ValueId", "ValueKind"]

ValueId = NewType("ValueId", str)


class ValueKind(enum.Enum):
    """What a value is.

    ``INPUT``: a model input. ``ACTIVATION``: produced by an op. ``PARAMETER`` / ``BUFFER``: owned
    by an owner (``Value.owner``: a module path in torch, a node in ONNX) under a tensor
    name (``Value.name``). ``CONSTANT``: a tensor made
    inside the forward pass or coming from outside the model. ``VIRTUAL``: an axis with no tensor,
    such as the group axis of a grouped convolution; its size is an attribute of its owner
    (``Value.name`` says which, e.g. ``groups``).
    """

    INPUT = "input"
    ACTIVATION = "activation"
    PARAMETER = "parameter"
    BUFFER = "buffer"
    CONSTANT = "constant"
    VIRTUAL = "virtual"


def _to_shape(shape: object) -> tuple[int, ...]:
    if type(shape) is tuple and all(type(size) is int and size >= 0 for size in shape):
        return shape
    if not isinstance(shape, (tuple, list)):
        raise GraphError(f"'shape' must be a sequence of sizes (got {shape!r})")
    out = tuple(shape)
    for size in out:
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise GraphError(f"'shape' must hold non-negative ints (got {shape!r})")
    return out


@attrs.frozen
class Value:
    """One tensor of the graph.

    >>> Value(ValueId("conv.weight"), (8, 3, 3, 3), "float32", ValueKind.PARAMETER, "conv", "weight").rank
    4
    """

    id: ValueId
    shape: tuple[int, ...] = attrs.field(converter=_to_shape)
    dtype: str
    kind: ValueKind = attrs.field()
    owner: str = ""  # what holds the tensor, as the adapter names it (a module path, a node name)
    name: str = ""

    @kind.validator
    def _check_kind(self, _attribute: object, kind: object) -> None:
        if not isinstance(kind, ValueKind):
            valid = ", ".join(k.name for k in ValueKind)
            raise GraphError(f"'kind' must be a ValueKind ({valid}) (got {kind!r} for value {self.id!r})")

    @property
    def rank(self) -> int:
        """Number of dims."""
        return len(self.shape)

    @property
    def path(self) -> str:
        """``owner.name`` for owned values (parameters, buffers, virtual axes), else the id."""
        if self.name:
            return f"{self.owner}.{self.name}" if self.owner else self.name
        return str(self.id)

    @property
    def is_state(self) -> bool:
        """Whether pruning this value changes the model's stored state."""
        return self.kind in (ValueKind.PARAMETER, ValueKind.BUFFER, ValueKind.VIRTUAL)


@attrs.frozen(order=True, cache_hash=True)
class DimRef:
    """Dimension ``dim`` of value ``value``; ``dim`` is non-negative.

    >>> DimRef(ValueId("x"), 1)
    DimRef(value='x', dim=1)
    """

    value: ValueId
    dim: int = attrs.field()

    @dim.validator
    def _check_dim(self, _attribute: object, dim: int) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 0:
            raise GraphError(f"'dim' must be a non-negative int (got {dim!r} for value {self.value!r})")

    def __str__(self) -> str:
        return f"{self.value}[{self.dim}]"
