"""``prune(model, example_inputs, ratio=...)``: the one obvious high-level call (steps, verification, rollback)."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs
import torch

from prune_ops import (
    GroupKind,
    Plan,
    PruningError,
    Target,
    TargetMissedWarning,
    contracted_in_products,
    costs,
)
from prune_torch import _latency
from prune_torch._calibrate import LossFn
from prune_torch._compensate import add_compensation, plan_compensation
from prune_torch._fits import apply_what_fits
from prune_torch._gc import gc_paused
from prune_torch._importance import ImportanceLike, resolve_importance
from prune_torch._interactive import InteractivePruner, Proposal, interactive
from prune_torch._optim import prune_optimizer
from prune_torch._options import ModuleKey, Options, parse_options
from prune_torch._report import Report, layer_widths
from prune_torch._rollback import ModelState
from prune_torch._step import left_alone, plan_for_step, prepare
from prune_torch._trace import ExampleInputs
from prune_torch._traced import TracedGraph, trace_model
from prune_torch._verify import verify_step

__all__ = ["InteractivePruner", "Proposal", "Target", "interactive", "prune"]


def prune(
    model: torch.nn.Module,
    example_inputs: ExampleInputs,
    *,
    ratio: float = 0.5,
    importance: ImportanceLike = "l2",
    round_to: int = 1,
    ignore: Iterable[ModuleKey] = (),
    ratios: Mapping[ModuleKey, float] | None = None,
    global_ranking: bool = False,
    isomorphic: bool = False,
    max_ratio: float = 0.9,
    steps: int = 1,
    target: str | Target = "channels",
    tolerance: float = 0.02,
    reduction: str = "mean",
    seed: int = 0,
    prune_outputs: bool = False,
    head_ratio: float | None = None,
    head_dims: bool = False,
    query_heads: bool = False,
    hidden: bool | None = None,
    approximate: bool | None = None,
    calibration: Iterable[ExampleInputs] | None = None,
    loss_fn: LossFn | None = None,
    compensate: bool = False,
    distributed: bool = False,
    between_steps: Callable[[int, torch.nn.Module], None] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    verify: bool = False,
    show_progress: bool = True,
    measure_latency: bool = False,
) -> Report:
    """Prune ``model`` in place and return a :class:`Report`.

    ``ratio`` is what to remove: with ``target="channels"`` (default) a fraction of each group's
    channels (local ranking), or of all channels with ``global_ranking`` (normalised scores
    compete across groups, no group loses more than ``max_ratio``) or ``isomorphic`` (only
    structurally identical groups compete); with ``target="params"`` or ``"macs"`` a fraction of
    parameters or MACs, met within ``tolerance`` by searching the channel fraction; a miss warns
    (``TargetMissedWarning``), also one left by groups the model's code cannot follow, which are
    found and left whole only after the search.
    ``ratios`` overrides the ratio for groups owned by given modules (objects or paths, a path
    covers its children; local ranking only, as is ``head_ratio``); ``ignore`` keeps the output
    channels of the given modules, whatever they feed. Channels factored two or three ways
    (GroupNorm groups × positions, heads × head dims) lose ``ratio`` of the channels in all: each
    factor loses ``1 - (1 - ratio) ** (1 / k)`` of its units (local ranking).

    ``approximate`` decides about groups whose channels an op mixes, where the pruned model can
    no longer compute what the silenced original computes: ``None`` (default) prunes across
    normalisation layers (LayerNorm, RMSNorm, the positions within GroupNorm groups) and leaves
    groups that meet a reduction, softmax or cumulative op over their channels alone, listed in
    ``report.skipped``; ``True`` prunes those too; ``False`` prunes only exact groups.
    ``report.approximate`` names every approximate group that was pruned and the op that mixes it.
    ``verify=True`` compares the pruned model with the silenced original on ``example_inputs``
    (eval mode) after each step; if a group that is not approximate changes the outputs, the
    whole prune is rolled back and the error names that group.

    Transformers: attention heads are pruned whole (``head_ratio`` overrides their ratio), head
    dims only with ``head_dims=True``, query heads within each key/value group of grouped-query
    attention only with ``query_heads=True``, and the hidden size (channels normalised together,
    such as the residual stream under LayerNorm/RMSNorm) only with ``hidden=True``;
    ``hidden=None`` prunes normalised channels only in models without attention heads.

    ``importance`` is ``"l1"``, ``"l2"``, ``"random"``, ``"bn_scale"``, ``"taylor"`` (give
    ``calibration`` batches and ``loss_fn``; gradients are accumulated with a progress bar),
    ``"fpgm"``, ``"group_l2"`` (after :class:`GroupLasso` training), ``"wanda"`` (structured
    Wanda: ``||X_j|| · Σ|W_:,j|`` per input channel of the layers reading the group) or ``"flap"``
    (FLAP's fluctuation: the variance of ``X_j`` times ``||W_:,j||²``), both from activation
    statistics gathered on the ``calibration`` batches (eval mode, no gradients, a progress bar),
    or a callable ``(group, member_data) -> scores``. ``compensate=True`` (needs ``calibration``)
    folds the calibration mean of every removed input channel into the bias of the linear layer
    that read it (FLAP's bias compensation; an ``nn.Linear`` without a bias gets one, which a
    Hugging Face config may not describe), so the pruned model stays closer to the original; it
    is applied after ``verify`` checks the step, and consumers it cannot compensate (convs) are
    listed in ``report.skipped``. Pass ``calibration`` as a list when it is read twice (Taylor
    gradients and compensation). ``distributed=True`` (with ``torch.distributed`` initialised,
    e.g. under ``torchrun``) all-reduces the activation statistics, so each rank calibrates on
    its share of the batches and every rank derives the same plan. ``steps`` reaches the target over several rounds,
    re-scoring each round and calling ``between_steps(step, model)`` after each (fine-tune there);
    an ``optimizer`` given here has its state pruned along with every step. All or nothing: if
    any step, the hook or the verification raises, the model (and the optimizer) are put back
    exactly as they were before the call and the exception propagates. For that, a prune with
    ``between_steps`` keeps one copy of the model's tensors while it runs.

    ``measure_latency=True`` times the forward pass on ``example_inputs`` (eval mode, no
    gradients, median of repeats) before and after; ``report.latency`` holds both.
    """
    opts = parse_options(
        model,
        ratio=ratio,
        round_to=round_to,
        ignore=ignore,
        ratios=ratios,
        global_ranking=global_ranking,
        isomorphic=isomorphic,
        max_ratio=max_ratio,
        steps=steps,
        prune_outputs=prune_outputs,
        head_ratio=head_ratio,
        head_dims=head_dims,
        query_heads=query_heads,
        hidden=hidden,
        target=target,
        tolerance=tolerance,
        approximate=approximate,
        compensate=compensate,
        distributed=distributed,
    )
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise PruningError(f"'optimizer' must be a torch.optim.Optimizer (got {type(optimizer).__name__})")
    if between_steps is not None and not callable(between_steps):
        raise PruningError(f"'between_steps' must be callable (got {type(between_steps).__name__})")
    scorer = resolve_importance(importance, reduction, seed)
    guarded = opts.steps > 1 or between_steps is not None or optimizer is not None or verify
    state = ModelState.capture(model, optimizer, clone=between_steps is not None) if guarded else None
    latency_before = _latency.measure_latency(model, example_inputs) if measure_latency else None
    try:
        report = _prune_steps(
            model, example_inputs, opts, scorer, calibration, loss_fn, between_steps, optimizer, verify, show_progress
        )
        if latency_before is None:
            return report
        return attrs.evolve(report, latency=(latency_before, _latency.measure_latency(model, example_inputs)))
    except BaseException:
        if state is not None:
            state.restore()
        raise


def _warn_if_missed(
    opts: Options, macs: int, macs_after: int, params: int, params_after: int, left_whole: list[str]
) -> None:
    """A cost target missed because groups the search counted on were left whole after it: say so, loudly.

    The search (``plan_for_step``) meets the target with every selected group; groups the model's
    code cannot follow are found only when the plan is applied, and leaving them whole removes less.
    The model is pruned by then: the warning reports what was done (a search that cannot meet the
    target warns before anything changes).
    """
    if opts.target is Target.CHANNELS:
        return
    before, after = (macs, macs_after) if opts.target is Target.MACS else (params, params_after)
    got = 1 - after / max(before, 1)
    if abs(got - opts.ratio) <= opts.tolerance:
        return
    warnings.warn(
        TargetMissedWarning(
            f"target={opts.target.value!r} ratio={opts.ratio}: the pruned model has {got:.1%} fewer "
            f"{opts.target.value}, not {opts.ratio:.1%} within tolerance {opts.tolerance}, because "
            f"{len(left_whole)} group(s) the search counted on were left whole when the plan was applied "
            f"(first: {left_whole[0]}); see report.skipped (approximate=True prunes groups whose sizes the "
            "model's code reads)"
        ),
        stacklevel=4,
    )


def _prune_steps(
    model: torch.nn.Module,
    example_inputs: ExampleInputs,
    opts: Options,
    scorer: Any,
    calibration: Iterable[ExampleInputs] | None,
    loss_fn: LossFn | None,
    between_steps: Callable[[int, torch.nn.Module], None] | None,
    optimizer: torch.optim.Optimizer | None,
    verify: bool,
    show_progress: bool,
) -> Report:
    first_graph: TracedGraph | None = None
    combined: Plan | None = None
    head_dim_modules: dict[str, None] = {}
    normalised = False
    skipped: list[str] = []
    left_whole: list[str] = []  # groups the target search counted on but the model's code could not follow
    approximate: dict[str, None] = {}
    for step in range(opts.steps):
        with gc_paused():  # our work only: a fine-tune in between_steps runs with the collector on
            graph = trace_model(model, example_inputs)
            if first_graph is None:
                first_graph, original = graph, costs(graph)  # counted once: every step's target is against it
            # the model's modules by path, for scoring and applying (the step changes no module)
            modules = dict(model.named_modules(remove_duplicate=False))
            scored = prepare(model, graph, opts, scorer, calibration, loss_fn, show_progress, modules)
            if step == 0:
                skipped += left_alone(graph.groups(opts.ignore, opts.prune_outputs).prunable, opts)
            plan, chosen = plan_for_step(graph, scored, opts, original, step)
            before = copy.deepcopy(model) if verify else None
            pending, notes = ([], [])
            if opts.compensate:
                pending, notes = plan_compensation(model, chosen, graph.cache["activation statistics"])
            # groups the model's code cannot follow are found (bisection) and left alone, each noted with its cost
            fit = apply_what_fits(
                model,
                graph,
                plan,
                chosen,
                example_inputs,
                accept_constants=opts.approximate is True,
                traced=graph,
                modules=modules,
            )
            plan, applied = fit.plan, list(fit.applied)
            skipped += list(fit.skipped)
            left_whole += list(fit.skipped)
            for group, why in fit.approximate:  # the model derives a number from the group's size
                approximate[f"{group.name}: {why}"] = None
            contracted = contracted_in_products(graph)
            for group, _units in applied:
                # channels summed in a product of activations (q·k) have no weight to zero downstream:
                # the silenced original zeroes them where they are made
                if group.kind is GroupKind.HEAD_DIMS or any(m.dim in contracted for m in group.members):
                    head_dim_modules.update((m.value.owner, None) for m in group.parameters)
                normalised = normalised or group.normalised
                if group.approximate:
                    mixed = "; ".join(str(n) for n in group.mixing)
                    approximate[f"{group.name}: mixed by {mixed}"] = None
            if before is not None:
                sized = [group for group, _why in fit.approximate]
                verify_step(before, model, graph, applied, example_inputs, tuple(head_dim_modules), sized)
            if opts.compensate:  # after verifying: compensation moves the outputs off the silenced original
                add_compensation(model, pending, applied, plan)
                skipped += [n for n in notes if n not in skipped]
            if optimizer is not None:
                prune_optimizer(optimizer, model, plan)
        combined = plan if combined is None else combined.then(plan)
        if between_steps is not None:
            between_steps(step, model)
    if first_graph is None or combined is None:
        raise PruningError("nothing was traced")
    layers = layer_widths(model, first_graph, combined)
    cost_before, cost_after = original, costs(first_graph, combined)
    if left_whole:
        _warn_if_missed(
            opts, cost_before.macs, cost_after.macs, cost_before.parameters, cost_after.parameters, left_whole
        )
    return Report(
        combined,
        cost_before,
        cost_after,
        tuple(skipped),
        tuple(approximate),
        layers=layers,
        steps=opts.steps,
        silence_outputs=tuple(head_dim_modules),
        normalised=normalised,
    )
