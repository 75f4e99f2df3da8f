"""``prune_checkpoint``: prune a Hugging Face safetensors checkpoint without loading the model.

The model is built on the meta device from its config (or a factory), traced and grouped as
:func:`prune_torch.prune` does; each group's member tensors are read from the shards, scored,
and dropped before the next group; the plan is applied to the meta model, which updates its
module attributes and config exactly as an in-memory prune would, and
:func:`prune_torch.check_pretrained` must accept the result before anything is written. Then
every tensor of every shard is read, sliced by the plan and written to new shards one at a
time, next to the updated ``config.json`` and the source folder's other files. Peak memory is
one group's weights (in float64, for scoring) or one tensor, never the model.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import attrs
import numpy as np
import torch

from prune_ops import Group, Member, Outcome, Plan, PruningError, Random, Taylor, costs
from prune_torch._activations import ActivationStats, needs_activations
from prune_torch._apply import apply
from prune_torch._calibrate import progress
from prune_torch._importance import ImportanceLike, SummaryCache, member_data, resolve_importance
from prune_torch._layerwise import stream_statistics
from prune_torch._options import DEFAULTS, parse_options
from prune_torch._pretrained import PretrainedError, check_pretrained
from prune_torch._shards import INDEX, SINGLE, SourceCheckpoint, write_shard
from prune_torch._step import plan_for_step, selected
from prune_torch._trace import ExampleInputs
from prune_torch._traced import TracedGraph, trace_model

__all__ = ["CheckpointReport", "prune_checkpoint"]

ModelSource = Any  # a transformers PretrainedConfig, a factory returning an nn.Module, or None (the folder's config)

# options that would give layers different widths, which one config cannot describe
_NOT_UNIFORM = ("global_ranking", "isomorphic", "ratios", "head_dims")


@attrs.frozen
class CheckpointReport(Outcome):
    """What :func:`prune_checkpoint` wrote: :class:`prune_ops.Outcome` (the plan, costs before and after), bytes and time."""

    bytes_before: int = attrs.field(kw_only=True)
    bytes_after: int = attrs.field(kw_only=True)
    shards: tuple[str, ...] = attrs.field(kw_only=True)
    seconds: float = attrs.field(kw_only=True)

    def __str__(self) -> str:
        return (
            f"parameters {self.before.parameters:,} -> {self.after.parameters:,}, "
            f"checkpoint {self.bytes_before / 2**20:.1f} MiB -> {self.bytes_after / 2**20:.1f} MiB "
            f"in {len(self.shards)} shard(s), {self.seconds:.1f} s"
        )


def _build_on_meta(source: ModelSource, src: Path) -> torch.nn.Module:
    """The model, its parameters on the meta device: from a config, a factory, or the folder's config."""
    if source is None or isinstance(source, (str, os.PathLike)):
        import transformers

        source = transformers.AutoConfig.from_pretrained(source if source is not None else src)
    with torch.device("meta"):
        if callable(source) and not hasattr(source, "to_dict"):
            model = source()
        else:
            import transformers

            model = transformers.AutoModelForCausalLM.from_config(source)
    if not isinstance(model, torch.nn.Module):
        raise PruningError(f"prune_checkpoint: the factory must return an nn.Module (got {type(model).__name__})")
    if any(not t.is_meta for t in model.parameters()):
        model = model.to("meta")
    return model.eval()


def _aliases(model: torch.nn.Module, checkpoint: SourceCheckpoint) -> dict[str, str]:
    """Parameter or buffer path (as traced: the first of tied names) → the checkpoint key holding it."""
    names: dict[int, list[str]] = {}
    for items in (model.named_parameters(remove_duplicate=False), model.named_buffers(remove_duplicate=False)):
        for path, tensor in items:
            names.setdefault(id(tensor), []).append(path)
    found = {}
    for paths in names.values():
        stored = next((p for p in paths if p in checkpoint.shapes), None)
        if stored is not None:
            for path in paths:
                found[path] = stored
    return found


def _reader(checkpoint: SourceCheckpoint, aliases: Mapping[str, str]) -> Callable[[Member], torch.Tensor]:
    def read(member: Member) -> torch.Tensor:
        key = aliases.get(member.value.path)
        if key is None:
            raise PruningError(
                f"prune_checkpoint: {member.value.path} is not in the checkpoint at {checkpoint.directory}; "
                "does the config (or factory) build the model the checkpoint was saved from?"
            )
        tensor = checkpoint.read(key)
        if tuple(tensor.shape) != tuple(member.value.shape):
            raise PruningError(
                f"prune_checkpoint: {key} is {tuple(tensor.shape)} in the checkpoint, "
                f"{tuple(member.value.shape)} in the model built from the config"
            )
        return tensor

    return read


def _score_groups(
    model: torch.nn.Module,
    graph: TracedGraph,
    groups: list[Group],
    scorer: Any,
    read: Callable[[Member], torch.Tensor],
    statistics: ActivationStats | None,
    show_progress: bool,
) -> list[tuple[Group, np.ndarray]]:
    scored = []
    cache = SummaryCache.of_groups(groups)  # a tensor read and reduced once for the groups of both its axes
    for group in progress(groups, "scoring groups", show_progress, len(groups)):
        data = (
            []
            if isinstance(scorer, Random)
            else member_data(model, graph, group, statistics, tensors=read, importance=scorer, cache=cache)
        )
        scores = np.asarray(scorer(group, data), dtype=np.float64)
        if scores.shape != (group.size,):
            raise PruningError(
                f"importance returned shape {scores.shape} for group {group.id}; expected ({group.size},)"
            )
        scored.append((group, scores))
        del data
    return scored


def _slicer(
    checkpoint: SourceCheckpoint, plan: Plan, aliases: Mapping[str, str]
) -> tuple[dict[str, list[tuple[int, torch.Tensor]]], dict[str, tuple[int, ...]]]:
    """Per checkpoint key, the (axis, kept indices) to take, and its shape after."""
    cuts: dict[str, list[tuple[int, torch.Tensor]]] = {}
    shapes = dict(checkpoint.shapes)
    for entry in plan.entries:
        key = aliases.get(entry.path)
        if key is None:
            continue  # a buffer the checkpoint does not store (rotary frequencies) or a virtual axis
        if key in cuts and any(axis == entry.axis for axis, _ in cuts[key]):
            continue  # tied names of one tensor: one cut
        cuts.setdefault(key, []).append((entry.axis, torch.as_tensor(entry.kept, dtype=torch.long)))
        shape = list(shapes[key])
        shape[entry.axis] = entry.size_after
        shapes[key] = tuple(shape)
    return cuts, shapes


def _write(
    checkpoint: SourceCheckpoint,
    cuts: Mapping[str, list[tuple[int, torch.Tensor]]],
    shapes: Mapping[str, tuple[int, ...]],
    out: Path,
    show_progress: bool,
) -> int:
    import json

    def produce(key: str, file: BinaryIO) -> torch.Tensor | None:
        if key not in cuts:
            checkpoint.copy_bytes(key, file)
            return None
        tensor = checkpoint.read(key)
        for axis, kept in cuts.get(key, ()):
            tensor = tensor.index_select(axis, kept)
        return tensor

    written = 0
    weight_map = {}
    for shard in progress(checkpoint.shards, "writing shards", show_progress, len(checkpoint.shards)):
        entries = [(k, shapes[k], checkpoint.dtypes[k]) for k in shard.keys]
        written += write_shard(out / shard.name, entries, produce)
        weight_map.update((k, shard.name) for k in shard.keys)
    if (checkpoint.directory / INDEX).is_file():
        parameters = sum(int(np.prod(shapes[k])) for k in weight_map)
        index = {"metadata": {"total_size": written, "total_parameters": parameters}, "weight_map": weight_map}
        (out / INDEX).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    return written


def _rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _copy_other_files(src: Path, out: Path) -> None:
    """Tokenizer, generation config and the like come along; weights and config are written anew."""
    for item in src.iterdir():
        if item.name in (INDEX, SINGLE, "config.json") or item.suffix == ".safetensors":
            continue
        if item.is_file():
            shutil.copy2(item, out / item.name)


def prune_checkpoint(
    model: ModelSource,
    src_dir: str | os.PathLike[str],
    dst_dir: str | os.PathLike[str],
    *,
    ratio: float = 0.5,
    importance: ImportanceLike = "l2",
    reduction: str = "mean",
    seed: int = 0,
    calibration: Any = None,
    distributed: bool = False,
    uniform: bool = True,
    example_inputs: ExampleInputs | None = None,
    overwrite: bool = False,
    show_progress: bool = True,
    **options: Any,
) -> CheckpointReport:
    """Prune the safetensors checkpoint in ``src_dir`` into ``dst_dir`` without loading the model.

    ``model`` is a transformers config (``AutoModelForCausalLM.from_config`` builds it), a
    factory returning the ``nn.Module`` (called under ``torch.device("meta")``), or ``None`` to
    read ``src_dir/config.json``. ``ratio``, ``importance`` and the other options mean what they
    mean in :func:`prune_torch.prune`, and the result equals an in-memory ``prune`` of the loaded
    model with the same options (the same scores from the same tensors, the same plan). With
    ``uniform=True`` (default) every layer of a kind keeps the same width (local ranking, no
    per-module ratios, whole heads), so the updated config describes the model and plain
    ``from_pretrained(dst_dir)`` loads it; :func:`check_pretrained` runs on the meta model
    before anything is written.

    Weight-only importances (``"l1"``, ``"l2"``, ``"fpgm"``, ``"random"`` ...) read each group's
    tensors from the shards. Calibration-aware ones (``"wanda"``, ``"flap"``) need
    ``calibration`` batches (a list: it is read once per layer) and a decoder-only model (a
    ``ModuleList`` of repeated layers holding most parameters, such as ``model.layers`` or
    ``transformer.h``): the batches are pushed through the model one decoder layer at a time,
    loading that layer's weights, gathering the statistics of the linear layers inside it,
    keeping its outputs for the next layer and freeing it (embeddings first, final norm and
    head last), so the statistics, scores and plan are those of ``prune`` on the loaded model.
    ``distributed=True`` (``torch.distributed`` initialised, e.g. under ``torchrun``) all-reduces
    the statistics of each rank's share of the batches; every rank derives the same plan and
    only rank 0 writes ``dst_dir``. Bias compensation (``compensate``) needs the model in memory.

    Memory: one group's member tensors while scoring, one pruned tensor while writing (tensors
    the plan leaves whole are copied in chunks), and with calibration one decoder layer plus
    one layer's outputs for every batch; ``docs/benchmarks.md`` has measurements.

    Example::

        import prune_torch as pt
        report = pt.prune_checkpoint(None, "llama-src", "llama-pruned", ratio=0.3, head_ratio=0.5)
        print(report)  # parameters and checkpoint size before and after
        model = transformers.AutoModelForCausalLM.from_pretrained("llama-pruned")
    """
    started = time.perf_counter()
    scorer = resolve_importance(importance, reduction, seed)
    by_activations = needs_activations(scorer)
    if isinstance(scorer, Taylor):
        raise PruningError("prune_checkpoint: Taylor importance needs gradients, which a streamed prune has none of")
    if options.get("compensate"):
        raise PruningError(
            "prune_checkpoint does not fold bias compensation (compensate=True): load the model and use "
            "prune(compensate=True, calibration=...)"
        )
    if by_activations and calibration is None:
        raise PruningError(
            f"prune_checkpoint: {importance!r} importance is calibration-aware and needs 'calibration': "
            "a list of example inputs (batches of token ids)"
        )
    if not by_activations and (calibration is not None or distributed):
        what = "'calibration'" if calibration is not None else "distributed=True"
        raise PruningError(
            f"prune_checkpoint: {what} is for calibration-aware importance ('wanda', 'flap'); "
            f"{importance!r} scores the weights alone"
        )
    unknown = set(options) - set(DEFAULTS)
    if unknown:
        raise PruningError(f"unknown option(s) {sorted(unknown)}; valid: {', '.join(sorted(DEFAULTS))}")
    if options.get("steps", 1) != 1:
        raise PruningError("prune_checkpoint prunes in one step (steps=1): steps re-score a pruned model in memory")
    if uniform:
        clash = [name for name in _NOT_UNIFORM if options.get(name)]
        if clash:
            raise PruningError(
                f"uniform=True keeps one width per layer kind, which {', '.join(clash)} would break; "
                "drop them or pass uniform=False (the config must still describe the result)"
            )
    src, dst = Path(src_dir), Path(dst_dir)
    if dst.exists() and any(dst.iterdir()) and not overwrite:
        raise PruningError(f"prune_checkpoint: {dst} exists and is not empty (pass overwrite=True)")
    checkpoint = SourceCheckpoint(src)
    meta_model = _build_on_meta(model, src)
    inputs = example_inputs if example_inputs is not None else {"input_ids": torch.zeros((1, 8), dtype=torch.long)}
    opts = parse_options(meta_model, **{**DEFAULTS, **options, "ratio": ratio, "steps": 1})
    graph = trace_model(meta_model, inputs)
    aliases = _aliases(meta_model, checkpoint)
    statistics = None
    if by_activations:
        statistics = stream_statistics(
            meta_model, checkpoint, aliases, calibration, show_progress=show_progress, distributed=distributed
        )
    groups = selected(graph.groups(opts.ignore, opts.prune_outputs).prunable, opts)
    read = _reader(checkpoint, aliases)
    scored = _score_groups(meta_model, graph, groups, scorer, read, statistics, show_progress)
    plan, _chosen = plan_for_step(graph, scored, opts)
    before, after = costs(graph), costs(graph, plan)
    apply(meta_model, plan, inputs)
    check = check_pretrained(meta_model)
    if not check.ok:
        raise PretrainedError(f"{check}\nNothing was written to {os.fspath(dst)!r}.", check.problems)
    cuts, shapes = _slicer(checkpoint, plan, aliases)

    def report(written: int, shards: tuple[str, ...]) -> CheckpointReport:
        return CheckpointReport(
            plan,
            before,
            after,
            bytes_before=checkpoint.total_bytes,
            bytes_after=written,
            shards=shards,
            seconds=time.perf_counter() - started,
        )

    if distributed and _rank() != 0:  # every rank has the plan; one writes it
        return report(sum(math.prod(shapes[k]) * checkpoint.dtypes[k].itemsize for k in shapes), ())
    dst.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dst.name}-", dir=dst.parent))
    try:
        written = _write(checkpoint, cuts, shapes, staging, show_progress)
        meta_model.config.save_pretrained(staging)
        _copy_other_files(src, staging)
        if dst.exists():
            shutil.rmtree(dst)
        os.replace(staging, dst)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return report(written, tuple(s.name for s in checkpoint.shards))
