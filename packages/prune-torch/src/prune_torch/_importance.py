"""Scoring groups of a torch model: member tensors reduced in torch, or handed over as numpy; importance by name or callable."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Union

import numpy as np
import torch

from prune_graph import Graph, OpKind, ValueKind
from prune_ops import (
    IMPORTANCES,
    Group,
    Importance,
    Member,
    MemberData,
    PruningError,
    Summary,
    resolve_importance,
    summaries_wanted,
)

if TYPE_CHECKING:
    from prune_torch._activations import ActivationStats

__all__ = ["IMPORTANCES", "ImportanceLike", "SummaryCache", "member_data", "resolve_importance", "summarise_tensor"]

ImportanceLike = Union[str, Importance]
"""An importance name (see ``prune_ops.IMPORTANCES``) or a callable ``(group, member_data) -> scores``."""

# float64 temporaries are made a slice of the tensor's first axis at a time: on a CPU, slices of
# this many elements stay in cache, so reducing a float32 tensor costs about one read of it
_CHUNK = 1 << 18
# on an accelerator, bigger slices: fewer kernel launches
_CHUNK_ACCELERATOR = 1 << 24


def _chunk(tensor: torch.Tensor) -> int:
    return _CHUNK if tensor.device.type == "cpu" else _CHUNK_ACCELERATOR


def _float64(tensor: torch.Tensor) -> torch.Tensor:
    # MPS has no float64: reduce such tensors on the CPU
    if tensor.device.type == "mps":
        tensor = tensor.cpu()
    return tensor.to(torch.float64, copy=True)


def _powered(tensor: torch.Tensor, summary: Summary) -> torch.Tensor:
    """|w| or w² elementwise in float64 (a fresh tensor, changed in place)."""
    part = _float64(tensor)
    return part.abs_() if summary is Summary.ABS_SUM else part.square_()


_NUMPY_FLOATS = (torch.float32, torch.float64)


def _numpy(values: torch.Tensor | np.ndarray) -> np.ndarray:
    return values if isinstance(values, np.ndarray) else values.cpu().numpy()


def _per_index(tensor: torch.Tensor, dims: tuple[int, ...], summary: Summary) -> dict[int, torch.Tensor | np.ndarray]:
    """Σ|w| or Σw² over every axis but one, for each axis in ``dims``, in one float64 pass over ``tensor`` (detached).

    Axes 0 and 1 (a layer's outputs and inputs) come from one matrix of sums over the other
    axes; any other axis is reduced on its own. Big tensors go a slice of axis 0 at a time.
    """
    if tensor.dim() <= 1:
        if tensor.is_cpu and tensor.dtype in _NUMPY_FLOATS and not tensor.is_neg():
            # no sum here, so numpy gives the very same float64 values without torch's cost per call
            values = tensor.reshape(-1).numpy().astype(np.float64)
            return {0: np.abs(values, out=values) if summary is Summary.ABS_SUM else np.square(values, out=values)}
        return {0: _powered(tensor, summary).reshape(-1)}
    out: dict[int, torch.Tensor | np.ndarray] = {}
    for dim in dims:
        if dim >= 2:
            others = [d for d in range(tensor.dim()) if d != dim]
            out[dim] = _powered(tensor, summary).sum(others)
    leading = [d for d in (0, 1) if d in dims]
    if not leading:
        return out
    rows, columns = tensor.shape[0], tensor.shape[1]
    step = max(1, _chunk(tensor) // max(tensor.numel() // max(rows, 1), 1))
    firsts = []
    second: torch.Tensor | None = None
    for start in range(0, rows, step):
        part = _powered(tensor.narrow(0, start, min(step, rows - start)), summary)
        if leading == [0]:
            firsts.append(part.reshape(part.shape[0], -1).sum(1))
            continue
        matrix = part.reshape(part.shape[0], columns, -1)
        matrix = matrix.sum(2) if matrix.shape[2] > 1 else matrix[:, :, 0]
        if 0 in leading:
            firsts.append(matrix.sum(1))
        second = matrix.sum(0) if second is None else second + matrix.sum(0)
    if 0 in leading:
        out[0] = torch.cat(firsts) if len(firsts) > 1 else firsts[0]
    if 1 in leading:
        out[1] = second if second is not None else torch.zeros(0)  # no rows to sum
    return out


def _distance_sums(tensor: torch.Tensor, dim: int, units: np.ndarray, size: int) -> torch.Tensor:
    """FPGM's per-unit sums of distances to the member's other units (see ``prune_ops.summarise``)."""
    rows = _float64(tensor.movedim(dim, 0).reshape(tensor.shape[dim], -1))
    index = torch.as_tensor(units, device=rows.device)
    valid = index >= 0
    vectors = torch.zeros(size, rows.shape[1], dtype=torch.float64, device=rows.device)
    vectors.index_add_(0, index[valid], rows[valid])
    covered = vectors[torch.bincount(index[valid], minlength=size) > 0]
    # cdist without the matrix-product shortcut takes each difference itself, as the definition
    # does, and never holds a units × covered × columns tensor (a broadcast difference did, a block
    # of units at a time: slow, and its many large temporaries grew resnet50's process past 16 GB)
    step = max(1, _chunk(covered) // max(covered.shape[0], 1))
    sums = [
        torch.cdist(vectors[start : start + step], covered, compute_mode="donot_use_mm_for_euclid_dist").sum(1)
        for start in range(0, size, step)
    ]
    return torch.cat(sums)


def summarise_tensor(tensor: torch.Tensor, member: Member, summary: Summary, size: int) -> np.ndarray:
    """``summary`` of ``tensor`` along the member's axis, computed in float64 on the tensor's device.

    Agrees with ``prune_ops.summarise`` on the tensor as numpy to rounding (the sums are taken in
    another order).
    """
    tensor = tensor.detach()
    if summary is Summary.DISTANCE_SUM:
        return _distance_sums(tensor, member.dim.dim, member.units, size).cpu().numpy()
    return _numpy(_per_index(tensor, (member.dim.dim,), summary)[member.dim.dim])


class SummaryCache:
    """Per-index summaries of the tensors scored in one pass over a model's groups.

    A layer's weight is a member of two groups (its outputs and its inputs): when ``axes`` says
    so (see :meth:`of_groups`), both summaries come from one float64 pass over it, made when the
    first group asks.
    """

    def __init__(self, axes: Mapping[str, Iterable[int]] | None = None) -> None:
        # the axes of each tensor, sorted: the order ``_per_index`` takes them in
        self._axes = {key: tuple(sorted(dims)) for key, dims in (axes or {}).items()}
        self._found: dict[tuple[str, Summary], dict[int, np.ndarray]] = {}
        # for one scoring pass: the model's modules by path, and what the importance reads by columns
        self.modules: dict[str, torch.nn.Module] | None = None
        self.wanted: dict[int, tuple[Summary, ...] | None] = {}
        self.wanted_by: object = None  # the importance ``wanted`` is for
        self.readers: dict[str, tuple[OpKind | None, int | None]] = {}  # by value: see ``_reader``

    @classmethod
    def of_groups(cls, groups: Iterable[Group]) -> SummaryCache:
        """A cache that reduces each parameter along every axis by which these groups hold it."""
        axes: dict[str, set[int]] = {}
        for group in groups:
            for member in group.parameters:
                axes.setdefault(member.value.id, set()).add(member.dim.dim)
        return cls(axes)

    def get(self, key: str, dim: int, summary: Summary) -> np.ndarray | None:
        """The summary along ``dim`` of the tensor known as ``key``, if made already."""
        found = self._found.get((key, summary))
        return None if found is None else found.get(dim)

    def make(self, key: str, tensor: torch.Tensor, dim: int, summary: Summary) -> np.ndarray:
        """The summary along ``dim``, with those along the tensor's other axes the groups hold kept for later."""
        axes = self._axes.get(key, ())
        made = _per_index(tensor.detach(), axes if dim in axes else tuple(sorted({*axes, dim})), summary)
        found = self._found.setdefault((key, summary), {})
        for d, values in made.items():
            found[d] = _numpy(values)
        return found[dim]


def member_data(
    model: torch.nn.Module,
    graph: Graph,
    group: Group,
    statistics: ActivationStats | None = None,
    tensors: Callable[[Member], torch.Tensor] | None = None,
    importance: object = None,
    cache: SummaryCache | None = None,
) -> list[MemberData]:
    """The group's parameter members as 2-D numpy arrays (member axis first), with gradients when present,
    and with the calibration ``statistics`` of the channels each member reads, when given.

    ``tensors`` reads a member's tensor from elsewhere than the model (a checkpoint on disk), so a
    model on the meta device is scored exactly as the same model with its weights loaded.
    For an ``importance`` that reads members only through summaries (the built-in weight
    criteria, see ``prune_ops.summaries_wanted``), the members carry just those, reduced in
    torch where the tensor lives, and no weight; pass one ``cache`` to every call of a scoring
    pass so each tensor is reduced once for all the groups it belongs to.
    """
    cache = cache if cache is not None else SummaryCache()
    if tensors is None and cache.modules is None:
        cache.modules = dict(model.named_modules(remove_duplicate=False))
    if cache.wanted_by is not importance:
        cache.wanted, cache.wanted_by = {}, importance
    found = []
    parameter = ValueKind.PARAMETER  # looked up once: an enum member is a slow class attribute
    for member in group.parameters:
        if member.value.kind is not parameter:
            continue
        wanted = _wanted(member, importance, cache) if importance is not None else None
        summaries = _summaries(model, member, wanted, tensors, cache, group.size) if wanted is not None else {}
        weight = grad = None
        if wanted is None:
            weight, grad = _rows(_read(model, member, tensors, cache.modules), member.dim.dim)
        role, slot = _reader(graph, member.value.id, cache)
        activations = statistics.get(member.value.path, member.dim.dim) if statistics is not None else None
        found.append(MemberData(member, weight, grad, role, slot, activations, summaries))
    return found


def _wanted(member: Member, importance: object, cache: SummaryCache) -> tuple[Summary, ...] | None:
    """What ``importance`` reads of the member (see ``prune_ops.summaries_wanted``), asked once per width."""
    shape = member.value.shape
    columns = math.prod(shape) // max(shape[member.dim.dim], 1)
    if columns not in cache.wanted:
        cache.wanted[columns] = summaries_wanted(importance, columns)
    return cache.wanted[columns]


def _summaries(
    model: torch.nn.Module,
    member: Member,
    wanted: tuple[Summary, ...],
    tensors: Callable[[Member], torch.Tensor] | None,
    cache: SummaryCache,
    size: int,
) -> dict[Summary, np.ndarray]:
    """The ``wanted`` summaries of the member's tensor: from the cache, the tensor read only for the others."""
    key, dim = member.value.id, member.dim.dim
    summaries = {}
    tensor = None
    for summary in wanted:
        known = cache.get(key, dim, summary)
        if known is not None:
            summaries[summary] = known
            continue
        if tensor is None:
            tensor = _read(model, member, tensors, cache.modules)
        if summary is Summary.DISTANCE_SUM:
            summaries[summary] = summarise_tensor(tensor, member, summary, size)
        else:
            summaries[summary] = cache.make(key, tensor, dim, summary)
    return summaries


def _rows(tensor: torch.Tensor, dim: int) -> tuple[np.ndarray, np.ndarray | None]:
    """The tensor and its gradient (if any) as float64 numpy rows, the member's axis first."""
    rows = tensor.detach().movedim(dim, 0).reshape(tensor.shape[dim], -1)
    weight = rows.to("cpu", torch.float64).numpy()
    grad = None
    if isinstance(tensor, torch.nn.Parameter) and tensor.grad is not None:
        grad = tensor.grad.detach().movedim(dim, 0).reshape(rows.shape).to("cpu", torch.float64).numpy()
    return weight, grad


def _reader(graph: Graph, value: str, cache: SummaryCache) -> tuple[OpKind | None, int | None]:
    """The kind of the first op that reads ``value`` and the value's slot among its inputs."""
    found = cache.readers.get(value)
    if found is None:
        consumers = graph.consumers(value)
        role = consumers[0].kind if consumers else None
        slot = consumers[0].inputs.index(value) if consumers else None
        found = cache.readers[value] = (role if isinstance(role, OpKind) else None, slot)
    return found


def _read(
    model: torch.nn.Module,
    member: Member,
    tensors: Callable[[Member], torch.Tensor] | None,
    modules: Mapping[str, torch.nn.Module] | None = None,
) -> torch.Tensor:
    if tensors is not None:
        tensor = tensors(member)
    else:
        path = member.value.owner
        module = modules.get(path) if modules is not None else None
        if module is None:
            module = model.get_submodule(path) if path else model
        tensor = getattr(module, member.value.name)
    if tensor.is_meta:
        raise PruningError(f"{member.label} is on the meta device; only 'random' importance works without weights")
    return tensor
