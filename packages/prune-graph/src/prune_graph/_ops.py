"""Ops: one operation of a traced model, from a closed vocabulary of kinds."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import NewType, Union

from attrs import field, frozen

from prune_graph._errors import GraphError
from prune_graph._values import ValueId

__all__ = ["AttrValue", "Op", "OpId", "OpKind"]

OpId = NewType("OpId", str)

AttrValue = Union[bool, int, float, str, None, tuple["AttrValue", ...]]


class OpKind(enum.Enum):
    """The closed vocabulary of op kinds. Inputs, outputs and attributes per kind:

    - ``CONV``: (x, weight[, bias]) → y. attrs ``groups``, ``transposed``. Grouped convs own two
      virtual axes (``Op.axes``): the group axis and the per-group width on the weight's
      unshared side.
    - ``LINEAR``: (x, weight[, bias]) → y, weight (out, in); attr ``weight_in_out`` for (in, out).
    - ``MATMUL``: (a, b[, bias]) → y, batched ``a @ b (+ bias)`` with broadcasting.
    - ``NORM``: (x, *params) → y. attrs ``channel_dims`` (dims of x the params run along, in
      order), ``num_groups`` (group norm; one virtual axis pair when 1 < groups < channels),
      ``mixes`` (statistics are taken over the channel dims, as LayerNorm does; for a group norm,
      over the positions within each group), ``statistic_dims`` (other dims the statistics are
      taken over, which they mix: a batch norm with batch statistics, as in weight standardisation).
    - ``ELEMENTWISE``: n-ary with broadcasting (activations, add, mul, dropout, casts, copies).
    - ``REDUCE``: (x) → y, attrs ``dims`` and ``keepdim``; attr ``normalises`` when the reduction
      computes the statistics of a recognised normalisation layer (an RMSNorm written with plain
      tensor ops). A reduction mixes the channels of its dims.
    - ``MIX``: (x) → y of the same shape, attrs ``dims`` and ``how`` (``"softmax"`` or
      ``"cumulative"``, a :class:`Mixing` value): every output reads every channel along ``dims``.
    - ``POOL``: (x) → y..., attr ``dims``: the dims whose size the op sets (pooling,
      interpolation, padding); every other dim passes through.
    - ``CONCAT``: (x0, x1, ...) → y, attr ``dim``.
    - ``STACK``: (x0, x1, ...) → y, attr ``dim``: the inputs along a new dim.
    - ``SPLIT``: (x) → (y0, y1, ...), attr ``dim``; attr ``squeeze`` for ``unbind``.
    - ``SLICE``: (x) → y, attrs ``dim``, ``start``, ``step``.
    - ``SELECT``: (x) → y, attrs ``dim``, ``index``; the dim disappears.
    - ``RESHAPE``: (x) → y, same number of elements.
    - ``PERMUTE``: (x) → y, attr ``perm`` (y dim i is x dim perm[i]).
    - ``EXPAND``: (x) → y, size-1 dims broadcast (new leading dims allowed).
    - ``REPEAT``: (x) → y, attr ``repeats`` per dim (``Tensor.repeat``).
    - ``EMBEDDING``: (weight, indices) → y.
    - ``ATTENTION``: (q, k, v[, mask]) → y, scaled dot-product attention; attr ``size_scaled``
      when the scale is the default 1/√(query-key dim), which changes when that dim is pruned.
    - ``PIXEL_SHUFFLE``: (x) → y, attrs ``factor`` and ``inverse`` (pixel_unshuffle).
    - ``RECURRENT``: (x, w, r[, b][, initial states...]) → (y[, final states...]), a fused
      recurrent layer (ONNX ``LSTM`` / ``GRU`` / ``RNN``). attrs ``gates`` (blocks of hidden
      units in w's and r's rows: 4, 3 or 1) and ``batch_first`` (x is (batch, seq, in), y is
      (batch, seq, directions, hidden), states (batch, directions, hidden); otherwise x is
      (seq, batch, in), y (seq, directions, batch, hidden), states (directions, batch, hidden)).
      w is (directions, gates·hidden, in), r (directions, gates·hidden, hidden), b (directions,
      2·gates·hidden); the rank tells a bias (2) from a state (3) and y (4) from a final state (3).
      Every direction shares the hidden units; the directions themselves are pinned.
    - ``CONSTANT``: () → y, a tensor made from nothing (arange, zeros, full).
    - ``OPAQUE``: anything else; every dim it touches is unprunable. attr ``why`` (optional): why
      an adapter left a known op opaque, shown with each pinned dim.
    """

    CONV = "conv"
    LINEAR = "linear"
    MATMUL = "matmul"
    NORM = "norm"
    ELEMENTWISE = "elementwise"
    REDUCE = "reduce"
    MIX = "mix"
    POOL = "pool"
    CONCAT = "concat"
    STACK = "stack"
    SPLIT = "split"
    SLICE = "slice"
    SELECT = "select"
    RESHAPE = "reshape"
    PERMUTE = "permute"
    EXPAND = "expand"
    REPEAT = "repeat"
    EMBEDDING = "embedding"
    ATTENTION = "attention"
    PIXEL_SHUFFLE = "pixel_shuffle"
    RECURRENT = "recurrent"
    CONSTANT = "constant"
    OPAQUE = "opaque"


_PLAIN = frozenset({type(None), bool, int, float, str})  # attribute values kept as they are


def _freeze_attr(value: object) -> AttrValue:
    # the common cases by exact type first (a trace makes thousands of ops); the rules below decide the rest
    kind = type(value)
    if kind in _PLAIN:
        return value  # type: ignore[return-value]
    if kind is tuple and _plain_tuple(value):  # type: ignore[arg-type]
        return value  # type: ignore[return-value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return tuple(_freeze_attr(v) for v in value)
    raise GraphError(f"op attributes must be plain data (got {type(value).__name__}: {value!r})")


def _plain_tuple(value: tuple[object, ...]) -> bool:
    for v in value:  # noqa: SIM110 (a loop, not all(): no generator per call, on a hot path)
        if type(v) not in _PLAIN:
            return False
    return True


def _to_attrs(value: object) -> tuple[tuple[str, AttrValue], ...]:
    if type(value) is dict:
        if not value:
            return ()
        # a dict's keys are unique: no pair-by-pair check, and sorting never compares two values
        pairs = []
        for key, val in value.items():
            if type(key) is not str:
                break
            pairs.append((key, _freeze_attr(val)))
        else:
            pairs.sort()
            return tuple(pairs)
    if isinstance(value, Mapping):
        items = list(value.items())
    elif isinstance(value, (list, tuple)) and all(isinstance(i, (list, tuple)) and len(i) == 2 for i in value):
        items = [(i[0], i[1]) for i in value]
    else:
        raise GraphError(f"'attrs' must be a mapping or (name, value) pairs (got {value!r})")
    out: list[tuple[str, AttrValue]] = []
    for key, val in items:
        if not isinstance(key, str):
            raise GraphError(f"attribute names must be str (got {key!r})")
        if any(key == seen for seen, _ in out):
            raise GraphError(f"attribute {key!r} given twice (got {value!r})")
        out.append((key, _freeze_attr(val)))
    return tuple(sorted(out))


def _to_ids(value: object) -> tuple[ValueId, ...]:
    if type(value) is tuple and all(type(item) is str for item in value):
        return value
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise GraphError(f"value id lists must be sequences of str (got {value!r})")
    for item in value:
        if not isinstance(item, str):
            raise GraphError(f"value ids must be str (got {item!r})")
    return tuple(ValueId(v) for v in value)


@frozen
class Op:
    """One operation.

    >>> op = Op(OpId("op0"), OpKind.CONCAT, "aten.cat", (ValueId("a"), ValueId("b")), (ValueId("c"),), attrs={"dim": 1})
    >>> op.attr("dim")
    1
    """

    id: OpId
    kind: OpKind = field()
    target: str
    inputs: tuple[ValueId, ...] = field(converter=_to_ids)
    outputs: tuple[ValueId, ...] = field(converter=_to_ids)
    owner: str = ""  # what ran it, as the adapter names it (the module path in torch)
    attrs: tuple[tuple[str, AttrValue], ...] = field(default=(), converter=_to_attrs)
    axes: tuple[ValueId, ...] = field(default=(), converter=_to_ids)

    @kind.validator
    def _check_kind(self, _attribute: object, kind: object) -> None:
        if not isinstance(kind, OpKind):
            valid = ", ".join(k.name for k in OpKind)
            raise GraphError(f"'kind' must be an OpKind ({valid}) (got {kind!r} for op {self.id!r})")

    def attr(self, name: str, default: AttrValue = None) -> AttrValue:
        """The attribute ``name``, or ``default``."""
        for key, value in self.attrs:
            if key == name:
                return value
        return default

    def int_attr(self, name: str, default: int | None = None) -> int:
        """An int attribute; a ``GraphError`` naming the op when it is missing or not an int."""
        value = self.attr(name, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise GraphError(
                f"op {self.id} ({self.target} in {self.owner or '<root>'}): attribute {name!r} must be an int (got {value!r})"
            )
        return value

    def ints_attr(self, name: str) -> tuple[int, ...]:
        """A tuple-of-ints attribute."""
        value = self.attr(name, ())
        if not isinstance(value, tuple) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise GraphError(
                f"op {self.id} ({self.target} in {self.owner or '<root>'}): attribute {name!r} must be ints (got {value!r})"
            )
        return tuple(int(v) for v in value if isinstance(v, int))

    @property
    def location(self) -> str:
        """What a user reads: ``aten.convolution in layer1.0.conv1`` (no internal op id)."""
        return f"{self.target} in {self.owner or '<root>'}"

    @property
    def where(self) -> str:
        """Human-readable location: ``op12 aten.convolution in layer1.0.conv1``."""
        return f"{self.id} {self.target} in {self.owner or '<root>'}"
