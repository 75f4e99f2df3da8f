"""Calibration statistics: per-channel sums of what every linear and conv reads, over calibration batches.

The model runs on the calibration batches (eval mode, no gradients) under a
``TorchDispatchMode`` that recognises parameters by identity, as the tracer does, and follows
them through the transposes and expands that ``F.linear`` and ``matmul`` put in front of a
matrix product. When a product or convolution reads a parameter, the statistics of its other
operand are added to that parameter's input axis: the number of rows, the per-channel sum and
the per-channel sum of squares (:class:`prune_ops.ChannelStats`). So modules that call
``F.linear`` with their own parameters are covered like ``nn.Linear``, and GPT-2's ``Conv1D``
(``addmm`` with an ``[in, out]`` weight) records its axis 0.

The sums add across batches; with ``torch.distributed`` initialised and ``distributed=True`` they
are all-reduced, so every rank gets the statistics of all ranks' batches.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from prune_ops import ChannelStats, PruningError
from prune_torch._calibrate import progress
from prune_torch._restore import eval_flags
from prune_torch._trace import ExampleInputs, split_inputs

__all__ = [
    "ActivationStats",
    "Collector",
    "Reader",
    "calibrate",
    "collected",
    "gather_statistics",
    "needs_activations",
    "parameter_paths",
]

aten = torch.ops.aten

Key = tuple[str, int]
"""``(parameter path, axis)``: the axis of a parameter along which it reads its input's channels."""


@attrs.frozen
class Reader:
    """How a parameter reads its input: ``kind`` ``"matmul"`` (a linear: weight 2-D) or ``"conv"``."""

    kind: str
    axis: int


@attrs.frozen(eq=False)
class ActivationStats:
    """The gathered statistics by ``(parameter path, input axis)``, with how each parameter reads."""

    stats: Mapping[Key, ChannelStats]
    readers: Mapping[Key, Reader]
    batches: int

    def get(self, path: str, axis: int) -> ChannelStats | None:
        """The statistics of the channels ``path`` reads along ``axis``, if it reads any there."""
        return self.stats.get((path, axis))


class _Sums:
    def __init__(self, channels: int, device: torch.device) -> None:
        self.count = 0
        self.total = torch.zeros(channels, dtype=torch.float64, device=device)
        self.squares = torch.zeros(channels, dtype=torch.float64, device=device)

    def add(self, rows: torch.Tensor) -> None:
        rows = rows.detach().to(torch.float64)
        self.count += rows.shape[0]
        self.total += rows.sum(dim=0)
        self.squares += (rows * rows).sum(dim=0)


_VIEWS = {aten.t.default, aten.transpose.int, aten.permute.default, aten.expand.default, aten.numpy_T.default}
_PRODUCTS = {aten.mm.default: 1, aten.bmm.default: 1, aten.addmm.default: 2, aten.baddbmm.default: 2}


class Collector(TorchDispatchMode):
    """Adds the channel statistics of every operand a parameter is multiplied or convolved with."""

    def __init__(self, parameters: Mapping[int, str]) -> None:
        super().__init__()
        # tensor id -> (parameter path, the parameter axis of each of the tensor's dims, or -1)
        self.axes: dict[int, tuple[str, tuple[int, ...]]] = {}
        self.alive: list[torch.Tensor] = []  # views we map by id stay alive, so no id is reused
        self.parameters = dict(parameters)
        self.sums: dict[Key, _Sums] = {}
        self.readers: dict[Key, Reader] = {}

    def begin_batch(self, model_tensors: Iterable[torch.Tensor]) -> None:
        self.axes = {}
        self.alive = []
        for tensor in model_tensors:
            path = self.parameters.get(id(tensor))
            if path is not None:
                self.axes[id(tensor)] = (path, tuple(range(tensor.dim())))

    def _axes_of(self, tensor: Any) -> tuple[str, tuple[int, ...]] | None:
        return self.axes.get(id(tensor)) if isinstance(tensor, torch.Tensor) else None

    def _add(self, key: Key, reader: Reader, rows: torch.Tensor) -> None:
        sums = self.sums.get(key)
        if sums is None:
            sums = self.sums[key] = _Sums(rows.shape[1], rows.device)
            self.readers[key] = reader
        if sums.total.shape[0] != rows.shape[1]:
            raise PruningError(
                f"calibration: {key[0]} reads {rows.shape[1]} channels here, {sums.total.shape[0]} before"
            )
        sums.add(rows)

    def _view(self, func: Any, args: Any, out: torch.Tensor) -> None:
        found = self._axes_of(args[0])
        if found is None:
            return
        path, axes = found
        if func is aten.expand.default:
            extra = out.dim() - len(axes)
            new = (-1,) * extra + axes
        elif func is aten.permute.default:
            new = tuple(axes[d] for d in args[1])
        elif func is aten.transpose.int:
            d0, d1 = (d % len(axes) for d in args[1:3])
            listed = list(axes)
            listed[d0], listed[d1] = listed[d1], listed[d0]
            new = tuple(listed)
        else:  # t, numpy_T: reverse
            new = tuple(reversed(axes))
        self.axes[id(out)] = (path, new)
        self.alive.append(out)

    def _product(self, first: int, args: Any) -> None:
        left, right = args[first], args[first + 1]
        found = self._axes_of(right)
        if found is None or not isinstance(left, torch.Tensor):
            return
        path, axes = found
        axis = axes[-2]  # the right operand's contracted dim
        if axis < 0:
            return
        self._add((path, axis), Reader("matmul", axis), left.reshape(-1, left.shape[-1]))

    def _convolution(self, args: Any) -> None:
        x, weight = args[0], args[1]
        found = self._axes_of(weight)
        transposed, groups = bool(args[6]), int(args[8])
        if found is None or groups != 1 or found[1] != tuple(range(weight.dim())):
            return  # grouped convs read each channel with other weights; not scored by activations
        axis = 0 if transposed else 1
        self._add((found[0], axis), Reader("conv", axis), x.movedim(1, -1).reshape(-1, x.shape[1]))

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if not kwargs:
            if func in _VIEWS and isinstance(out, torch.Tensor):
                self._view(func, args, out)
            elif func in _PRODUCTS:
                self._product(_PRODUCTS[func] - 1, args)
            elif func is aten.convolution.default:
                self._convolution(args)
        return out


def parameter_paths(model: torch.nn.Module) -> dict[int, str]:
    """``id(parameter)`` → its first path, as the tracer names it (tied parameters once)."""
    paths: dict[int, str] = {}
    for path, parameter in model.named_parameters():
        paths.setdefault(id(parameter), path)
    return paths


def _all_reduce(sums: dict[Key, _Sums]) -> None:
    import torch.distributed as dist

    for key in sorted(sums):
        entry = sums[key]
        packed = torch.cat(
            [torch.tensor([float(entry.count)], dtype=torch.float64), entry.total.cpu(), entry.squares.cpu()]
        )
        dist.all_reduce(packed)
        channels = entry.total.shape[0]
        entry.count = int(packed[0].item())
        entry.total = packed[1 : 1 + channels].to(entry.total.device)
        entry.squares = packed[1 + channels :].to(entry.squares.device)


def gather_statistics(
    model: torch.nn.Module,
    batches: Iterable[ExampleInputs] | None,
    *,
    show_progress: bool = True,
    distributed: bool = False,
) -> ActivationStats:
    """Run ``model`` on every calibration batch and gather, per parameter input axis, the channel statistics.

    Eval mode and no gradients inside; every module's mode is put back afterwards. With
    ``distributed=True`` and ``torch.distributed`` initialised, the sums are all-reduced over the
    ranks (every rank must gather for the same parameters, which holds for one model).

    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1))
    >>> found = gather_statistics(model, [torch.ones(4, 3)], show_progress=False)
    >>> found.get("0.weight", 1).mean.tolist()
    [1.0, 1.0, 1.0]
    """
    if batches is None:
        raise PruningError("calibration-aware importance needs 'calibration': an iterable of example inputs")
    collector = Collector(parameter_paths(model))
    model_tensors = list(model.parameters())
    total = len(batches) if hasattr(batches, "__len__") else None  # type: ignore[arg-type]
    count = 0
    with torch.no_grad(), eval_flags(model):
        for batch in progress(batches, "calibrating (activations)", show_progress, total):
            args, kwargs = split_inputs(batch)
            collector.begin_batch(model_tensors)
            with collector:
                model(*args, **kwargs)
            count += 1
    collector.begin_batch(())
    return collected(collector, count, distributed)


def collected(collector: Collector, batches: int, distributed: bool) -> ActivationStats:
    """The collector's sums as :class:`ActivationStats`, all-reduced over the ranks when ``distributed``."""
    if batches == 0:
        raise PruningError("calibration-aware importance needs at least one calibration batch")
    if distributed:
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            raise PruningError("distributed=True needs torch.distributed initialised (init_process_group)")
        _all_reduce(collector.sums)
    stats = {
        key: ChannelStats(s.count, s.total.cpu().numpy(), s.squares.cpu().numpy()) for key, s in collector.sums.items()
    }
    return ActivationStats(stats, dict(collector.readers), batches)


def needs_activations(importance: Any) -> bool:
    """Whether an importance scores from calibration statistics (``Wanda``, ``Fluctuation``, or any
    callable with a true ``needs_activations`` attribute)."""
    return bool(getattr(importance, "needs_activations", False))


def calibrate(
    model: torch.nn.Module,
    importance: Any,
    calibration: Iterable[ExampleInputs] | None,
    loss_fn: Any,
    *,
    compensate: bool,
    show_progress: bool,
    distributed: bool = False,
) -> ActivationStats | None:
    """What the importance and bias compensation need from the calibration batches.

    Activation statistics for a calibration-aware importance or for ``compensate``; gradients
    (Taylor) when batches come with a ``loss_fn`` and the importance does not score activations.
    """
    from prune_torch._calibrate import accumulate_gradients

    by_activations = needs_activations(importance)
    if distributed and not (by_activations or compensate):
        raise PruningError(
            "distributed=True all-reduces activation statistics; this importance uses none "
            "(use 'wanda' or 'flap', or compensate=True)"
        )
    if calibration is not None and not by_activations and (loss_fn is not None or not compensate):
        accumulate_gradients(model, calibration, loss_fn, show_progress=show_progress)
    if not (by_activations or compensate):
        return None
    if calibration is None:
        what = "bias compensation" if not by_activations else f"{type(importance).__name__} importance"
        raise PruningError(f"{what} needs 'calibration': an iterable of example inputs (batches)")
    return gather_statistics(model, calibration, show_progress=show_progress, distributed=distributed)
