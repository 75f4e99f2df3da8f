"""One prune step: which groups, how many units each (ratios, factors, cost targets), scored and planned."""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from prune_ops import (
    Costs,
    Group,
    GroupKind,
    Plan,
    PruningError,
    Random,
    Target,
    TargetMissedWarning,
    Taylor,
    costs,
    make_plan,
    meet_target,
    mixing_blocker,
    removal_that_fits,
    split_between_factors,
)
from prune_torch._activations import calibrate
from prune_torch._calibrate import LossFn
from prune_torch._choose import (
    choose_global,
    choose_isomorphic,
    choose_local,
    harmonise_head_dims,
)
from prune_torch._importance import SummaryCache, member_data
from prune_torch._layers import LAYER_RULES
from prune_torch._options import Options
from prune_torch._trace import ExampleInputs
from prune_torch._traced import TracedGraph

__all__ = ["left_alone", "plan_for_step", "prepare", "selected"]


def left_alone(groups: tuple[Group, ...], opts: Options) -> list[str]:
    """Why each group the prune would take but mixing ops keep out of it is left alone."""
    notes = []
    for group in _wanted(groups, opts):
        reason = mixing_blocker(group.mixing, opts.approximate)
        if reason is not None:
            notes.append(f"{group.name} left unpruned: {reason}")
    return notes


def _wanted(groups: tuple[Group, ...], opts: Options) -> list[Group]:
    """The kinds of group a prune touches: channels and heads by default; the rest on request."""
    # looked up once, not per group: an enum member is a slow class attribute
    heads, head_dims, query_heads, channels = (
        GroupKind.HEADS,
        GroupKind.HEAD_DIMS,
        GroupKind.QUERY_HEADS,
        GroupKind.CHANNELS,
    )
    has_heads = any(g.kind is heads for g in groups)
    keep_hidden = (not has_heads) if opts.hidden is None else opts.hidden
    wanted = []
    for group in groups:
        kind = group.kind
        if kind is head_dims and not opts.head_dims:
            continue
        if kind is query_heads and not opts.query_heads:
            continue
        if kind is channels and group.normalised and not keep_hidden:
            continue
        wanted.append(group)
    return wanted


def selected(groups: tuple[Group, ...], opts: Options) -> list[Group]:
    """The groups a prune touches: the kinds :func:`_wanted` takes, less those mixing ops keep out.

    Groups whose channels an op mixes (a reduction, softmax or cumulative op over them) are left
    alone unless ``approximate=True``; normalisation layers are accepted unless ``approximate=False``.
    """
    return [g for g in _wanted(groups, opts) if mixing_blocker(g.mixing, opts.approximate) is None]


def _owners(graph: TracedGraph, group: Group) -> tuple[str, ...]:
    """Modules whose output channels are in the group: a layer that only reads them (input side) is not one."""
    owners: dict[str, None] = {}
    for member in group.parameters:
        module = member.value.owner
        if module in owners:
            continue
        cls = graph.module_types.get(module)
        rule = next((LAYER_RULES[c] for c in cls.__mro__ if c in LAYER_RULES), None) if cls else None
        if rule is None or (member.value.name, member.dim.dim) not in rule.in_axes:
            owners[module] = None
    return tuple(owners)


def _head_ratio_applies(group: Group, opts: Options) -> bool:
    return opts.head_ratio is not None and group.kind in (GroupKind.HEADS, GroupKind.QUERY_HEADS)


def _group_ratio(graph: TracedGraph, group: Group, opts: Options) -> float:
    """A group's own ratio: per-module (``opts.ratios``), heads (``opts.head_ratio``), or the global one."""
    ratio = opts.ratio
    if _head_ratio_applies(group, opts):
        ratio = opts.head_ratio  # type: ignore[assignment]
    if not opts.ratios:
        return ratio
    for module in _owners(graph, group):
        for path, value in opts.ratios.items():
            if module == path or module.startswith(path + "."):
                ratio = value
    return ratio


def _group_amount(ratio: float, opts: Options, scale: float) -> float:
    """This step's fraction for a group of the given ratio, scaled (cost targets) and spread over the steps."""
    ratio = min(ratio * scale, opts.max_ratio)
    return 1 - (1 - ratio) ** (1 / opts.steps)


def _score(
    model: torch.nn.Module,
    graph: TracedGraph,
    group: Group,
    importance: Any,
    statistics: Any = None,
    cache: SummaryCache | None = None,
) -> np.ndarray:
    if isinstance(importance, Random):
        data = []
    else:
        data = member_data(model, graph, group, statistics, importance=importance, cache=cache)
    scores = np.asarray(importance(group, data), dtype=np.float64)
    if scores.shape != (group.size,):
        raise PruningError(f"importance returned shape {scores.shape} for group {group.id}; expected ({group.size},)")
    return scores


def _choose(
    scored: list[tuple[Group, np.ndarray]], opts: Options, scale: float, ratios: list[float]
) -> list[tuple[Group, np.ndarray]]:
    """Units to remove per group at ``scale`` times the ratio; ``ratios``: each group's own (``_group_ratio``)."""
    if opts.global_ranking or opts.isomorphic:
        amount = 1 - (1 - min(opts.ratio * scale, opts.max_ratio)) ** (1 / opts.steps)
        choose = choose_isomorphic if opts.isomorphic else choose_global
        return harmonise_head_dims(choose(scored, amount, opts.round_to, opts.max_ratio), scored)
    groups = [g for g, _ in scored]
    amounts = split_between_factors(
        groups, [_group_amount(r, opts, scale) for r in ratios], [_head_ratio_applies(g, opts) for g in groups]
    )
    chosen = choose_local(scored, amounts, opts.round_to)
    return harmonise_head_dims(chosen, scored)


def plan_for_step(
    graph: TracedGraph,
    scored: list[tuple[Group, np.ndarray]],
    opts: Options,
    original: Costs | None = None,
    step: int = 0,
) -> tuple[Plan, list[tuple[Group, np.ndarray]]]:
    """The step's plan; for a parameter or MAC target, the channel fraction is searched to meet it.

    The cost target is cumulative against the ``original`` model's costs, so the rounding of one
    step does not compound over the next ones and the last step aims at ``ratio`` itself.
    """

    def finish(chosen: list[tuple[Group, np.ndarray]]) -> tuple[Plan, list[tuple[Group, np.ndarray]]]:
        # groups that together would empty a split piece or a slice: the one removing most stays whole
        removal, _notes = removal_that_fits(graph, chosen)
        kept = {id(g) for g, _ in removal.units}
        return make_plan(graph, removal), [(g, u if id(g) in kept else u[:0]) for g, u in chosen]

    ratios = [_group_ratio(graph, g, opts) for g, _ in scored]  # the same at every scale the search tries
    if opts.target is Target.CHANNELS:
        return finish(_choose(scored, opts, 1.0, ratios))
    base = original or costs(graph)
    step_target = 1 - (1 - opts.ratio) ** ((step + 1) / opts.steps)

    def removed(chosen: list[tuple[Group, np.ndarray]]) -> float:
        after = costs(graph, finish(chosen)[0])
        if opts.target is Target.MACS:
            return 1 - after.macs / max(base.macs, 1)
        return 1 - after.parameters / max(base.parameters, 1)

    upper = opts.max_ratio / max(opts.ratio, 1e-9)
    chosen, got = meet_target(
        lambda scale: _choose(scored, opts, scale, ratios), removed, step_target, upper, opts.tolerance
    )
    if step == opts.steps - 1 and abs(got - step_target) > opts.tolerance:
        warnings.warn(
            TargetMissedWarning(
                f"target={opts.target.value!r} ratio={opts.ratio}: the closest plan removes {got:.1%} of the "
                f"{opts.target.value}, not {step_target:.1%} within tolerance {opts.tolerance}; the channel "
                "counts this model allows move the cost in larger jumps (try a smaller round_to, a looser "
                "tolerance, or fewer ignored layers)"
            ),
            stacklevel=4,
        )
    return finish(chosen)


def prepare(
    model: torch.nn.Module,
    graph: TracedGraph,
    opts: Options,
    scorer: Any,
    calibration: Iterable[ExampleInputs] | None,
    loss_fn: LossFn | None,
    show_progress: bool,
    modules: dict[str, torch.nn.Module] | None = None,
) -> list[tuple[Group, np.ndarray]]:
    """Every group the prune touches, scored; ``modules``: the model's modules by path, when the caller has them."""
    # activation statistics (Wanda, FLAP, bias compensation) or gradients (Taylor): see _activations
    statistics = calibrate(
        model,
        scorer,
        calibration,
        loss_fn,
        compensate=opts.compensate,
        show_progress=show_progress,
        distributed=opts.distributed,
    )
    graph.cache["activation statistics"] = statistics
    if calibration is None and isinstance(scorer, Taylor) and not any(p.grad is not None for p in model.parameters()):
        raise PruningError("Taylor importance needs gradients: pass calibration batches and a loss_fn")
    groups = selected(graph.groups(opts.ignore, opts.prune_outputs).prunable, opts)
    cache = SummaryCache.of_groups(groups)  # one float64 pass per tensor for all the groups it belongs to
    cache.modules = modules
    return [(g, _score(model, graph, g, scorer, statistics, cache)) for g in groups]
