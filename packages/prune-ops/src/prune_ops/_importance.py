"""Importance: one score per unit of a group, from the members' parameter arrays.

An importance is any callable ``(group, data) -> scores`` where ``data`` holds one
:class:`MemberData` per parameter member and ``scores`` has one float per unit. The factories
here build the usual criteria as frozen callables; a plain function works the same way.

The built-in weight criteria read a member's weight only through a :class:`Summary` (a per-index
or per-unit reduction), and say which through :meth:`summaries`: an adapter that can reduce the
tensors where they live hands over those small vectors instead of float64 copies of the weights
(see :func:`summaries_wanted`); :func:`summarise` is the reference they must agree with.
"""

from __future__ import annotations

import enum
import math
import types
from collections.abc import Callable, Mapping, Sequence
from typing import ClassVar

import attrs
import numpy as np
import numpy.typing as npt

from prune_graph import OpKind
from prune_ops._errors import PruningError
from prune_ops._groups import Group, Member
from prune_ops._statistics import ChannelStats
from prune_ops._summary import FloatArray, Summary, summarise
from prune_ops._unit_scores import (
    Reduction,
    mean_of_stacked,
    reduce_members,
    unit_sums,
    unit_sums_of_members,
)

__all__ = [
    "FPGM",
    "IMPORTANCES",
    "BNScale",
    "Fluctuation",
    "Importance",
    "Magnitude",
    "MemberData",
    "Normalisation",
    "Random",
    "Reduction",
    "Taylor",
    "Wanda",
    "normalise",
    "reduce_members",
    "resolve_importance",
    "summaries_wanted",
]


def _summaries(values: Mapping[Summary, FloatArray]) -> Mapping[Summary, FloatArray]:
    return types.MappingProxyType(dict(values))


@attrs.frozen(eq=False)
class MemberData:
    """A parameter member's values: ``weight`` and ``grad`` have the member's axis first, flattened to 2-D.

    ``role`` is the kind of the op that reads the parameter (``OpKind.NORM`` for a BatchNorm
    scale) and ``slot`` its position among that op's inputs (1 for a norm's scale, 2 for its
    shift), when known; :attr:`is_norm_scale` goes by these two alone.
    ``activations`` are the calibration statistics of the channels this member's axis reads
    (the input side of a linear or conv: one entry per index of the axis), when gathered.
    ``summaries`` are reductions of the weight an adapter computed for an importance that asked
    for them (:func:`summaries_wanted`); it may then leave ``weight`` out (``None``).
    """

    member: Member
    weight: FloatArray | None
    grad: FloatArray | None = None
    role: OpKind | None = None
    slot: int | None = None
    activations: ChannelStats | None = None
    summaries: Mapping[Summary, FloatArray] = attrs.field(factory=dict, converter=_summaries)

    @property
    def is_norm_scale(self) -> bool:
        """Whether this is the scale of a normalisation op: the op's first parameter (slot 1).

        Decided by the reading op's kind and the input slot alone, never by the tensor's name (an
        ONNX initializer is called anything): a member whose adapter does not report both is not
        a scale.
        """
        return self.role is OpKind.NORM and self.slot == 1

    @property
    def rows(self) -> int:
        """Indices on the member's axis (the weight's first dim)."""
        return len(self.member.units)

    @property
    def columns(self) -> int:
        """Entries per index (the weight's second dim): the product of the tensor's other dims."""
        if self.weight is not None:
            return int(self.weight.shape[1])
        shape = self.member.value.shape
        return math.prod(shape) // max(shape[self.member.dim.dim], 1)

    def summary(self, summary: Summary, size: int) -> FloatArray:
        """``summary`` of the weight: the adapter's when it gave one, else computed from ``weight``."""
        given = self.summaries.get(summary)
        if given is not None:
            return given
        if self.weight is None:
            raise PruningError(f"{self.member.label}: no weight and no {summary.value} summary to score from")
        return summarise(summary, self.weight, self.member.units, size)


Importance = Callable[[Group, Sequence[MemberData]], FloatArray]


class Normalisation(enum.Enum):
    """How to scale a group's scores before ranking across groups."""

    NONE = "none"
    MEAN = "mean"
    MAX = "max"
    SUM = "sum"
    STANDARD = "standard"


_POWER_SUMS: Mapping[int, Summary] = types.MappingProxyType({1: Summary.ABS_SUM, 2: Summary.SQUARE_SUM})


def _weight(d: MemberData, name: str) -> FloatArray:
    if d.weight is None:
        raise PruningError(f"{name} importance needs the weight of {d.member.label}; the adapter gave none")
    return d.weight


def summaries_wanted(importance: object, columns: int) -> tuple[Summary, ...] | None:
    """The summaries ``importance`` reads of a member with ``columns`` entries per index, or ``None``
    when it needs the weight itself (any callable without a ``summaries`` method, such as Taylor).

    An adapter may then hand over :class:`MemberData` with just these ``summaries`` and no weight
    (an empty tuple: the importance does not read that member).

    >>> summaries_wanted(Magnitude(p=1), 9), summaries_wanted(lambda group, data: None, 9)
    ((<Summary.ABS_SUM: 'abs_sum'>,), None)
    """
    wants = getattr(importance, "summaries", None)
    if not callable(wants):
        return None
    got = wants(columns)
    return None if got is None else tuple(got)


@attrs.frozen
class Magnitude:
    """L_p norm of each unit's weights (p=1: L1, p=2: L2), combined across members.

    >>> import numpy as np
    >>> from prune_ops import Magnitude
    >>> Magnitude(p=1).norm(np.array([[1.0, -2.0], [0.5, 0.5]])).tolist()
    [3.0, 1.0]
    """

    p: int = 2
    reduction: Reduction = Reduction.MEAN

    def norm(self, rows: FloatArray) -> FloatArray:
        """Per-row |w|^p sums (p-th power kept so units can add rows before the root)."""
        return np.asarray(np.sum(np.abs(rows) ** self.p, axis=1), dtype=np.float64)

    def summaries(self, columns: int) -> tuple[Summary, ...] | None:
        """What it reads of a member: Σ|w| or Σw² per index (``None``, the weight itself, for another ``p``)."""
        return (_POWER_SUMS[self.p],) if self.p in _POWER_SUMS else None

    def __call__(self, group: Group, data: Sequence[MemberData]) -> FloatArray:
        if self.p in _POWER_SUMS and self.reduction is Reduction.MEAN and data:
            # every member in one array pass: the same sums and means as the loop below
            power_sum = _POWER_SUMS[self.p]
            summaries = [d.summary(power_sum, group.size) for d in data]
            sums, covered = unit_sums_of_members([d.member for d in data], summaries, group.size)
            mean = mean_of_stacked(sums ** (1.0 / self.p), covered.sum(axis=0, dtype=np.intp))
            if mean is not None:
                return mean
        rows = []
        for d in data:
            if self.p in _POWER_SUMS:
                per_index = d.summary(_POWER_SUMS[self.p], group.size)
            else:
                per_index = self.norm(_weight(d, "Magnitude"))
            sums, covered = unit_sums(d.member, per_index, group.size)
            rows.append((sums ** (1.0 / self.p), covered))
        return reduce_members(rows, group.size, self.reduction)


@attrs.frozen
class BNScale:
    """|γ| of the normalisation layers in the group (network slimming); needs a NORM member."""

    reduction: Reduction = Reduction.MEAN

    def summaries(self, columns: int) -> tuple[Summary, ...]:
        """What it reads of a member: |γ| (Σ|w| of one column); nothing of wider members."""
        return (Summary.ABS_SUM,) if columns == 1 else ()

    def __call__(self, group: Group, data: Sequence[MemberData]) -> FloatArray:
        rows = []
        for d in data:
            if d.is_norm_scale and d.columns == 1:
                rows.append(unit_sums(d.member, d.summary(Summary.ABS_SUM, group.size), group.size))
        if not rows:
            raise PruningError(f"BN-scale importance: group {group.id} ({group.root_member.label}) has no norm scale")
        return reduce_members(rows, group.size, self.reduction)


@attrs.frozen
class Taylor:
    """First-order Taylor: |Σ w·∂L/∂w| per unit; members need gradients."""

    reduction: Reduction = Reduction.MEAN

    def __call__(self, group: Group, data: Sequence[MemberData]) -> FloatArray:
        rows = []
        for d in data:
            if d.grad is None:
                raise PruningError(
                    f"Taylor importance needs gradients; {d.member.label} has none (run backward on calibration data first)"
                )
            weight = _weight(d, "Taylor")
            rows.append(unit_sums(d.member, np.abs(np.sum(weight * d.grad, axis=1)), group.size))
        return reduce_members(rows, group.size, self.reduction)


def _activation_rows(
    group: Group,
    data: Sequence[MemberData],
    name: str,
    per_index: Callable[[MemberData, ChannelStats], FloatArray],
) -> list[tuple[FloatArray, npt.NDArray[np.bool_]]]:
    """Per-unit rows of the members that read the group's channels and have calibration statistics."""
    rows = []
    for d in data:
        stats = d.activations
        if stats is None:
            continue
        if stats.channels != d.rows:
            raise PruningError(
                f"{name} importance: {d.member.label} has {d.rows} indices but statistics of {stats.channels} channels"
            )
        rows.append(unit_sums(d.member, per_index(d, stats), group.size))
    if not rows:
        raise PruningError(
            f"{name} importance needs calibration statistics of a linear or conv that reads the channels of "
            f"{group.name}; none was gathered (pass calibration batches, or no layer reads these channels)"
        )
    return rows


@attrs.frozen
class Wanda:
    """Wanda, structured: per input channel ``||X_j||_2 · Σ_i |W_ij|`` summed over each unit's channels.

    Only members that read the group's channels (a linear's or conv's input side) carry the
    activation statistics this needs; the group's output-side members do not score.
    Calibration-aware: ``prune(..., importance="wanda", calibration=batches)``.
    """

    reduction: Reduction = Reduction.MEAN
    needs_activations: ClassVar[bool] = True

    def summaries(self, columns: int) -> tuple[Summary, ...]:
        """What it reads of a member: Σ|w| per index."""
        return (Summary.ABS_SUM,)

    def __call__(self, group: Group, data: Sequence[MemberData]) -> FloatArray:
        def score(d: MemberData, stats: ChannelStats) -> FloatArray:
            return np.asarray(d.summary(Summary.ABS_SUM, group.size) * stats.norm, dtype=np.float64)

        return reduce_members(_activation_rows(group, data, "Wanda", score), group.size, self.reduction)


@attrs.frozen
class Fluctuation:
    """FLAP's fluctuation: per input channel the sample variance of ``X_j`` times ``||W_:,j||²``.

    A channel that barely varies over the calibration data can be replaced by its mean (see
    bias compensation), so its score is low whatever its magnitude. Calibration-aware:
    ``prune(..., importance="flap", calibration=batches)``.
    """

    reduction: Reduction = Reduction.MEAN
    needs_activations: ClassVar[bool] = True

    def summaries(self, columns: int) -> tuple[Summary, ...]:
        """What it reads of a member: Σw² per index."""
        return (Summary.SQUARE_SUM,)

    def __call__(self, group: Group, data: Sequence[MemberData]) -> FloatArray:
        def score(d: MemberData, stats: ChannelStats) -> FloatArray:
            return np.asarray(d.summary(Summary.SQUARE_SUM, group.size) * stats.variance, dtype=np.float64)

        return reduce_members(_activation_rows(group, data, "Fluctuation", score), group.size, self.reduction)


@attrs.frozen
class FPGM:
    """Filter pruning via the geometric median: units close to all the others are redundant.

    A unit's score is the sum of Euclidean distances from its weights to every other unit's,
    per member with weights of more than one column.
    """

    reduction: Reduction = Reduction.MEAN

    def summaries(self, columns: int) -> tuple[Summary, ...]:
        """What it reads of a member: the distance sums of its units, or Σw² per index of a single column
        (the fallback to L2 when no member has more than one)."""
        return (Summary.DISTANCE_SUM,) if columns >= 2 else (Summary.SQUARE_SUM,)

    def __call__(self, group: Group, data: Sequence[MemberData]) -> FloatArray:
        rows = []
        for d in data:
            if d.columns < 2:
                continue
            units = d.member.units
            covered = np.bincount(units[units >= 0], minlength=group.size) > 0
            rows.append((d.summary(Summary.DISTANCE_SUM, group.size), covered))
        if not rows:
            return Magnitude(2, self.reduction)(group, data)
        return reduce_members(rows, group.size, self.reduction)


@attrs.frozen
class GroupL2:
    """The L2 norm of each unit over all members together: what a group-lasso penalty drives to zero."""

    def summaries(self, columns: int) -> tuple[Summary, ...]:
        """What it reads of a member: Σw² per index."""
        return (Summary.SQUARE_SUM,)

    def __call__(self, group: Group, data: Sequence[MemberData]) -> FloatArray:
        if not data:
            raise PruningError(f"group {group.id} ({group.root_member.label}) holds no parameters to score")
        total = np.zeros(group.size)
        for d in data:
            sums, _ = unit_sums(d.member, d.summary(Summary.SQUARE_SUM, group.size), group.size)
            total += sums
        return np.asarray(np.sqrt(total), dtype=np.float64)


@attrs.frozen
class Random:
    """Random scores from an explicit generator (reproducible with a seeded one)."""

    rng: np.random.Generator = attrs.field(eq=False)

    def __call__(self, group: Group, data: Sequence[MemberData]) -> FloatArray:
        return np.asarray(self.rng.random(group.size), dtype=np.float64)


_EPS = 1e-12

_NORMALISERS: Mapping[Normalisation, Callable[[FloatArray], FloatArray]] = types.MappingProxyType(
    {
        Normalisation.NONE: lambda s: s,
        Normalisation.MEAN: lambda s: s / (s.mean() + _EPS),
        Normalisation.MAX: lambda s: s / (s.max() + _EPS),
        Normalisation.SUM: lambda s: s / (s.sum() + _EPS),
        Normalisation.STANDARD: lambda s: (s - s.mean()) / (s.std() + _EPS),
    }
)


def normalise(scores: npt.ArrayLike, how: Normalisation = Normalisation.MEAN) -> FloatArray:
    """Scale scores so groups of different magnitude can be ranked together.

    >>> normalise(np.array([1.0, 3.0]), Normalisation.MAX).round(3).tolist()
    [0.333, 1.0]
    """
    return _NORMALISERS[how](np.asarray(scores, dtype=np.float64))


IMPORTANCES: Mapping[str, Callable[[Reduction, int], Importance]] = types.MappingProxyType(
    {
        "l1": lambda r, seed: Magnitude(1, r),
        "l2": lambda r, seed: Magnitude(2, r),
        "random": lambda r, seed: Random(np.random.default_rng(seed)),
        "bn_scale": lambda r, seed: BNScale(r),
        "taylor": lambda r, seed: Taylor(r),
        "fpgm": lambda r, seed: FPGM(r),
        "group_l2": lambda r, seed: GroupL2(),
        "wanda": lambda r, seed: Wanda(r),
        "flap": lambda r, seed: Fluctuation(r),
    }
)
"""Importance criteria by name: ``(reduction, seed) -> importance``."""

_REDUCTIONS = types.MappingProxyType({r.value: r for r in Reduction})


def resolve_importance(importance: str | Importance, reduction: str | Reduction = "mean", seed: int = 0) -> Importance:
    """An importance callable from a name (``"l1"``, ``"l2"``, ``"random"``, ``"bn_scale"``, ``"taylor"``,
    ``"fpgm"``, ``"group_l2"``, ``"wanda"``, ``"flap"``) or a callable, which is returned as it is.

    >>> resolve_importance("l1")
    Magnitude(p=1, reduction=<Reduction.MEAN: 'mean'>)
    """
    if isinstance(reduction, str):
        if reduction not in _REDUCTIONS:
            raise PruningError(f"unknown reduction {reduction!r}; valid: {', '.join(sorted(_REDUCTIONS))}")
        reduction = _REDUCTIONS[reduction]
    if callable(importance):
        return importance
    if isinstance(importance, str) and importance in IMPORTANCES:
        return IMPORTANCES[importance](reduction, seed)
    raise PruningError(f"unknown importance {importance!r}; valid: {', '.join(sorted(IMPORTANCES))}, or a callable")
