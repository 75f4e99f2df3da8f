"""Calibration statistics gathered one decoder layer at a time, from a checkpoint on disk.

For :func:`prune_torch.prune_checkpoint` with a calibration-aware importance. The model stays on
the meta device; only the modules outside the decoder stack (embeddings, final norm, head, rotary
tables) and one layer of the stack at a time hold real tensors, read from the safetensors shards.
They are swapped into the meta model's own tensor objects (``torch.utils.swap_tensors``), so the
ids, ties and paths are those of the model the tracer saw, and swapped back once used.

The model's own ``forward`` drives every stage, so whatever it computes before and around the
layers (position embeddings, causal or sliding-window masks, per-layer arguments) comes out as in
an in-memory run. In stage ``i`` the layers before ``i`` return their stored output for the batch
instead of computing (their ``forward`` is replaced for the stage), layer ``i`` runs for real
under the statistics collector, which tracks only its parameters, and a hook stops the forward
right after it; its outputs are kept for stage ``i + 1``. A last stage replays every layer and
tracks the parameters outside the stack (the final norm and head read there). So each product
with a parameter is counted once per batch, on the same inputs and in the same batch order as
:func:`gather_statistics` on the loaded model: the sums agree to the bit.

Peak memory: one layer (copied into ordinary memory), the pages of the outside tensors that were
read (memory-mapped: an embedding's looked-up rows; the head in the last stage), and one layer's
output for every batch.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils import swap_tensors

from prune_ops import PruningError
from prune_torch._activations import ActivationStats, Collector, collected, parameter_paths
from prune_torch._calibrate import progress
from prune_torch._restore import eval_flags
from prune_torch._shards import SourceCheckpoint
from prune_torch._trace import ExampleInputs, split_inputs

__all__ = ["decoder_stack", "stream_statistics"]

Swapped = list[tuple[torch.Tensor, torch.Tensor]]
"""(the model's tensor, now real; the meta tensor it was swapped with): swapping again puts it back."""


class _Stop(Exception):
    """Raised by the hook after the stage's layer, carrying its output out of the model's forward."""

    def __init__(self, output: Any) -> None:
        super().__init__("stage done")
        self.output = output


def decoder_stack(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The repeated layers of a decoder: the ``ModuleList`` holding most parameters, its layers of one class.

    >>> import torch
    >>> body = torch.nn.ModuleList(torch.nn.Linear(8, 8) for _ in range(3))
    >>> decoder_stack(torch.nn.ModuleDict({"embed": torch.nn.Embedding(4, 8), "layers": body}))[0]
    'layers'
    """
    total = sum(p.numel() for p in model.parameters())
    best: tuple[str, nn.ModuleList, int] | None = None
    for path, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module):
            held = sum(p.numel() for p in module.parameters())
            if best is None or held > best[2]:
                best = (path, module, held)
    if best is None or 2 * best[2] <= total or len({type(layer) for layer in best[1]}) != 1:
        found = (
            ""
            if best is None
            else f" (its largest ModuleList, {best[0]!r}, holds {best[2]:,} of {total:,} parameters"
            f" in layers of {len({type(layer) for layer in best[1]})} class(es))"
        )
        raise PruningError(
            "prune_checkpoint streams calibration through a decoder stack: a ModuleList of repeated layers "
            "holding most of the parameters, as model.layers in LLaMA or Qwen2 and transformer.h in GPT-2. "
            f"{type(model).__name__} has none{found}. Load the model and use "
            "prune(model, example_inputs, importance=..., calibration=...) in memory."
        )
    return best[0], best[1]


def _tensor_names(model: nn.Module) -> dict[int, str]:
    """``id(tensor)`` → its first path (parameters and buffers; tied names once)."""
    names: dict[int, str] = {}
    for items in (model.named_parameters(remove_duplicate=False), model.named_buffers(remove_duplicate=False)):
        for path, tensor in items:
            names.setdefault(id(tensor), path)
    return names


def _own_tensors(module: nn.Module) -> list[torch.Tensor]:
    return [t for _, t in module.named_parameters(recurse=False)] + [t for _, t in module.named_buffers(recurse=False)]


def _materialise(
    model: nn.Module,
    modules: Iterable[nn.Module],
    checkpoint: SourceCheckpoint,
    aliases: Mapping[str, str],
    names: Mapping[int, str],
    *,
    mapped: bool,
    swapped: Swapped,
) -> None:
    """Give the meta tensors of ``modules`` their values from the checkpoint, appending each swap to ``swapped``.

    ``mapped`` keeps them memory-mapped (pages read on use); otherwise each is copied into
    ordinary memory. A buffer the checkpoint does not store (rotary frequencies) is computed by
    the model's ``_init_weights``, as ``from_pretrained`` does.
    """

    def value(tensor: torch.Tensor, key: str) -> torch.Tensor:
        found = checkpoint.map(key)
        if tuple(found.shape) != tuple(tensor.shape):
            raise PruningError(
                f"prune_checkpoint: {key} is {tuple(found.shape)} in the checkpoint, "
                f"{tuple(tensor.shape)} in the model built from the config"
            )
        return found.to(tensor.dtype) if mapped else found.to(tensor.dtype, copy=True)

    def swap(tensor: torch.Tensor, real: torch.Tensor) -> None:
        if isinstance(tensor, nn.Parameter):
            real = nn.Parameter(real, requires_grad=False)
        swap_tensors(tensor, real)
        swapped.append((tensor, real))

    seen: set[int] = set()
    for module in modules:
        tensors = [t for t in _own_tensors(module) if t.is_meta and id(t) not in seen]
        seen.update(id(t) for t in tensors)
        keys = {id(t): aliases.get(names[id(t)]) for t in tensors}
        missing = [t for t in tensors if keys[id(t)] is None]
        if not missing:
            for tensor in tensors:
                swap(tensor, value(tensor, keys[id(tensor)]))  # type: ignore[arg-type]
            continue
        init = getattr(model, "_init_weights", None)
        if any(isinstance(t, nn.Parameter) for t in missing) or not callable(init):
            path = names[id(missing[0])]
            raise PruningError(
                f"prune_checkpoint: {path} is not in the checkpoint at {checkpoint.directory}"
                + ("" if callable(init) else f", and {type(model).__name__} has no _init_weights to compute it")
            )
        for tensor in tensors:
            swap(tensor, torch.empty_like(tensor, device="cpu"))
        init(module)
        for tensor in tensors:
            key = keys[id(tensor)]
            if key is not None:
                tensor.copy_(value(tensor, key))


def _release(swapped: Swapped) -> None:
    """Swap the meta tensors back: the real ones (and their mappings) go with the list."""
    while swapped:
        tensor, meta = swapped.pop()
        swap_tensors(tensor, meta)


def _first_tensor(value: Any) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, Mapping):
        value = list(value.values())
    if isinstance(value, (tuple, list)):
        return next((t for t in map(_first_tensor, value) if t is not None), None)
    return None


def _stage(
    model: nn.Module,
    stack: Sequence[nn.Module],
    index: int,
    replay: Any,
    batch: ExampleInputs,
    collector: Collector,
    tracked: list[torch.Tensor],
    extra: Mapping[str, Any],
) -> Any:
    """Run the model on ``batch``, layers before ``index`` replaying ``replay``, and return layer ``index``'s output.

    With ``index == len(stack)`` every layer replays and the forward runs to its end (``None``).
    """
    calls = [0] * index

    def replaying(position: int) -> Callable[..., Any]:
        def forward(*_args: Any, **_kwargs: Any) -> Any:
            calls[position] += 1
            return replay

        return forward

    def same_input(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        given, expected = _first_tensor(list(args) + list(kwargs.values())), _first_tensor(replay)
        if given is not expected and (
            given is None or expected is None or given.shape != expected.shape or not torch.equal(given, expected)
        ):
            raise PruningError(
                f"prune_checkpoint: layer {index} of the decoder stack is not called on layer {index - 1}'s output; "
                "the model's forward changes the hidden states between layers, which streaming cannot replay. "
                "Load the model and use prune(calibration=...) in memory."
            )

    def stop(_module: nn.Module, _args: Any, output: Any) -> None:
        raise _Stop(output)

    args, kwargs = split_inputs(batch)
    handles = []
    for position in range(index):
        stack[position].forward = replaying(position)  # type: ignore[method-assign]
    if index < len(stack):
        if index:
            handles.append(stack[index].register_forward_pre_hook(same_input, with_kwargs=True))
        handles.append(stack[index].register_forward_hook(stop))
    collector.begin_batch(tracked)
    try:
        with collector:
            model(*args, **{**extra, **kwargs})
    except _Stop as done:
        return done.output
    finally:
        collector.begin_batch(())
        for handle in handles:
            handle.remove()
        for position in range(index):
            del stack[position].forward
    if index < len(stack) or calls != [1] * index:
        raise PruningError(
            "prune_checkpoint: the model's forward does not call each layer of its decoder stack once, in order "
            f"(calls per layer: {calls}); load the model and use prune(calibration=...) in memory"
        )
    return None


def stream_statistics(
    model: nn.Module,
    checkpoint: SourceCheckpoint,
    aliases: Mapping[str, str],
    batches: Iterable[ExampleInputs] | None,
    *,
    show_progress: bool = True,
    distributed: bool = False,
) -> ActivationStats:
    """The activation statistics :func:`gather_statistics` would give ``model`` loaded from ``checkpoint``.

    ``model`` is on the meta device and is left there; ``aliases`` maps its tensor paths to the
    checkpoint's keys. ``batches`` are read once per layer, plus once. With ``distributed=True``
    the sums are all-reduced over the ranks, as in memory.
    """
    if batches is None:
        raise PruningError("calibration-aware importance needs 'calibration': an iterable of example inputs")
    stack = decoder_stack(model)[1]
    batches = list(batches)
    names = _tensor_names(model)
    inside = {id(m) for m in stack.modules()}
    outside = [m for m in model.modules() if id(m) not in inside]
    outside_parameters = [p for m in outside for _, p in m.named_parameters(recurse=False)]
    collector = Collector(parameter_paths(model))
    # a cache would only hold keys and values that no stage reads again
    extra = {"use_cache": False} if "use_cache" in inspect.signature(model.forward).parameters else {}
    held: Swapped = []
    layer: Swapped = []
    with torch.no_grad(), eval_flags(model):
        try:
            _materialise(model, outside, checkpoint, aliases, names, mapped=True, swapped=held)
            outputs: list[Any] = [None] * len(batches)
            for index in progress(range(len(stack)), "calibrating layer by layer", show_progress, len(stack)):
                _materialise(model, stack[index].modules(), checkpoint, aliases, names, mapped=False, swapped=layer)
                tracked = list(stack[index].parameters())
                outputs = [
                    _stage(model, stack, index, outputs[b], batch, collector, tracked, extra)
                    for b, batch in enumerate(batches)
                ]
                _release(layer)
            for b, batch in enumerate(batches):
                _stage(model, stack, len(stack), outputs[b], batch, collector, outside_parameters, extra)
        finally:
            _release(layer)
            _release(held)
    return collected(collector, len(batches), distributed)
