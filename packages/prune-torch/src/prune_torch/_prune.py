"""``prune(model, example_inputs, ratio=...)``: the one obvious high-level call."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Union

import attrs
import numpy as np
import torch

from prune_ops import (
    Costs,
    Group,
    GroupKind,
    Normalisation,
    Plan,
    PruningError,
    Random,
    check_amount,
    costs,
    keep_count,
    make_plan,
    normalise,
    removal_of,
    select,
)
from prune_torch._apply import apply
from prune_torch._importance import ImportanceLike, member_data, resolve_importance
from prune_torch._layers import rule_for
from prune_torch._trace import ExampleInputs
from prune_torch._traced import TracedGraph, trace_model

__all__ = ["LayerWidth", "Report", "prune"]

ModuleKey = Union[str, torch.nn.Module]


@attrs.frozen
class LayerWidth:
    """Output channels of one layer before and after."""

    module: str
    kind: str
    before: int
    after: int


@attrs.frozen
class Report:
    """What a prune did: the combined plan, costs before and after, per-layer widths.

    ``silence_outputs`` lists the modules whose pruned head dims meet in a product of
    activations; pass it to :func:`prune_torch.check_equivalence`.
    """

    plan: Plan
    before: Costs
    after: Costs
    layers: tuple[LayerWidth, ...]
    steps: int
    silence_outputs: tuple[str, ...] = ()

    @property
    def params_ratio(self) -> float:
        """Parameters after / before."""
        return self.after.parameters / max(self.before.parameters, 1)

    @property
    def macs_ratio(self) -> float:
        """MACs after / before."""
        return self.after.macs / max(self.before.macs, 1)

    def __str__(self) -> str:
        lines = [
            f"parameters {self.before.parameters:,} → {self.after.parameters:,} ({self.params_ratio:.1%})",
            f"MACs       {self.before.macs:,} → {self.after.macs:,} ({self.macs_ratio:.1%})",
            f"steps      {self.steps}",
            "",
        ]
        width = max([len(layer.module) for layer in self.layers] + [6])
        lines.append(f"{'layer'.ljust(width)}  {'type':<16} channels")
        for layer in self.layers:
            lines.append(f"{layer.module.ljust(width)}  {layer.kind:<16} {layer.before} → {layer.after}")
        return "\n".join(lines)


def _paths(model: torch.nn.Module, keys: Iterable[ModuleKey], what: str) -> list[str]:
    by_object = {id(m): name for name, m in model.named_modules()}
    names = set(by_object.values())
    out = []
    for key in keys:
        if isinstance(key, torch.nn.Module):
            if id(key) not in by_object:
                raise PruningError(f"{what}: a {type(key).__name__} that is not part of the model")
            out.append(by_object[id(key)])
        elif isinstance(key, str):
            if key not in names:
                raise PruningError(f"{what}: the model has no module {key!r}")
            out.append(key)
        else:
            raise PruningError(f"{what}: entries must be modules or module paths (got {type(key).__name__})")
    return out


def _group_ratio(group: Group, default: float, ratios: Mapping[str, float]) -> float:
    for module in group.modules:
        for path, value in ratios.items():
            if module == path or module.startswith(path + "."):
                return value
    return default


def _selected(groups: tuple[Group, ...], head_dims: bool, query_heads: bool, hidden: bool | None) -> list[Group]:
    """The groups a prune touches by default: channels and heads; the rest on request."""
    has_heads = any(g.kind is GroupKind.HEADS for g in groups)
    keep_hidden = (not has_heads) if hidden is None else hidden
    chosen = []
    for group in groups:
        if group.kind is GroupKind.HEAD_DIMS and not head_dims:
            continue
        if group.kind is GroupKind.QUERY_HEADS and not query_heads:
            continue
        if group.kind is GroupKind.CHANNELS and group.normalised and not keep_hidden:
            continue
        chosen.append(group)
    return chosen


def _kind_ratio(group: Group, ratio: float, head_ratio: float | None) -> float:
    heads = group.kind in (GroupKind.HEADS, GroupKind.QUERY_HEADS)
    return head_ratio if (head_ratio is not None and heads) else ratio


def _scores(model: torch.nn.Module, graph: TracedGraph, group: Group, importance: Any) -> np.ndarray:
    data = [] if isinstance(importance, Random) else member_data(model, graph, group)
    scores = np.asarray(importance(group, data), dtype=np.float64)
    if scores.shape != (group.size,):
        raise PruningError(f"importance returned shape {scores.shape} for group {group.id}; expected ({group.size},)")
    return scores


def _choose_local(
    scored: list[tuple[Group, np.ndarray]], amounts: list[float], round_to: int
) -> list[tuple[Group, np.ndarray]]:
    return [(g, select(s, amount=a, round_to=round_to)) for (g, s), a in zip(scored, amounts)]


def _choose_global(
    scored: list[tuple[Group, np.ndarray]], amount: float, round_to: int, max_ratio: float
) -> list[tuple[Group, np.ndarray]]:
    entries = []
    for gi, (_group, scores) in enumerate(scored):
        for unit, score in enumerate(normalise(scores, Normalisation.MEAN)):
            entries.append((float(score), gi, unit))
    entries.sort()
    total = sum(g.size for g, _ in scored)
    budget = math.floor(amount * total + 1e-9)
    counts = [0] * len(scored)
    caps = [min(g.size - 1, math.floor(max_ratio * g.size)) for g, _ in scored]
    for _, gi, _ in entries:
        if budget <= 0:
            break
        if counts[gi] < caps[gi]:
            counts[gi] += 1
            budget -= 1
    chosen = []
    for (group, scores), count in zip(scored, counts):
        keep = keep_count(group.size, count=count, round_to=round_to) if count else group.size
        chosen.append((group, select(scores, count=group.size - keep)))
    return chosen


def _layers(model: torch.nn.Module, graph: TracedGraph, plan: Plan) -> tuple[LayerWidth, ...]:
    shapes = plan.state_shapes()
    layers = []
    for value in graph.values:
        if value.kind.value != "parameter" or value.name != "weight":
            continue
        module = model.get_submodule(value.module) if value.module else model
        rule = rule_for(module)
        if rule is None or not rule.out_axes:
            continue
        axis = rule.out_axes[0][1]
        before = value.shape[axis]
        after = shapes.get(value.path, (value.shape, value.shape))[1][axis]
        layers.append(LayerWidth(value.module, type(module).__name__, before, after))
    return tuple(layers)


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
    max_ratio: float = 0.9,
    steps: int = 1,
    reduction: str = "mean",
    seed: int = 0,
    prune_outputs: bool = False,
    head_ratio: float | None = None,
    head_dims: bool = False,
    query_heads: bool = False,
    hidden: bool | None = None,
    between_steps: Callable[[int, torch.nn.Module], None] | None = None,
) -> Report:
    """Prune ``model`` in place and return a :class:`Report`.

    ``ratio``: fraction of each group's channels to remove (local ranking), or of all channels
    when ``global_ranking`` (normalised scores compete across groups, no group loses more than
    ``max_ratio``). ``ratios`` overrides the ratio for groups owned by given modules (objects or
    paths, a path covers its children). ``ignore`` keeps the output channels of the given modules.
    Transformers: attention heads are pruned whole (``head_ratio`` overrides their ratio), head
    dims only with ``head_dims=True``, query heads within each key/value group of grouped-query
    attention only with ``query_heads=True``, and the hidden size (channels normalised together, such
    as the residual stream under LayerNorm/RMSNorm) only with ``hidden=True``; ``hidden=None``
    prunes normalised channels only in models without attention heads (GroupNorm CNNs, ConvNeXt).
    ``steps`` reaches the target over several rounds, re-scoring each round and calling
    ``between_steps(step, model)`` after each (fine-tune there). ``importance`` is a name
    (``l1``, ``l2``, ``random``, ``bn_scale``, ``taylor``, ``fpgm``) or a callable
    ``(group, member_data) -> scores``.
    """
    ratio = check_amount(ratio, "ratio")
    max_ratio = check_amount(max_ratio, "max_ratio")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise PruningError(f"'steps' must be an int >= 1 (got {steps!r})")
    scorer = resolve_importance(importance, reduction, seed)
    ignored = tuple(_paths(model, ignore, "ignore"))
    ratio_paths = dict(zip(_paths(model, (ratios or {}).keys(), "ratios"), (ratios or {}).values()))
    for path, value in ratio_paths.items():
        check_amount(value, f"ratios[{path!r}]")
    if head_ratio is not None:
        head_ratio = check_amount(head_ratio, "head_ratio")
    step_amount = 1 - (1 - ratio) ** (1 / steps)
    first_graph: TracedGraph | None = None
    combined: Plan | None = None
    head_dim_modules: dict[str, None] = {}
    for step in range(steps):
        graph = trace_model(model, example_inputs)
        if first_graph is None:
            first_graph = graph
        groups = _selected(graph.groups(ignored, prune_outputs).prunable, head_dims, query_heads, hidden)
        scored = [(g, _scores(model, graph, g, scorer)) for g in groups]
        if global_ranking:
            chosen = _choose_global(scored, step_amount, round_to, max_ratio)
        else:
            amounts = [
                1 - (1 - _group_ratio(g, _kind_ratio(g, ratio, head_ratio), ratio_paths)) ** (1 / steps)
                for g, _ in scored
            ]
            chosen = _choose_local(scored, amounts, round_to)
        plan = make_plan(graph, removal_of(graph, chosen))
        for group, units in chosen:
            if group.kind is GroupKind.HEAD_DIMS and len(units):
                head_dim_modules.update((m.value.module, None) for m in group.parameters)
        apply(model, plan, example_inputs)
        combined = plan if combined is None else combined.then(plan)
        if between_steps is not None:
            between_steps(step, model)
    graph0 = first_graph
    if graph0 is None or combined is None:
        raise PruningError("nothing was traced")
    layers = _layers(model, graph0, combined)
    return Report(combined, costs(graph0), costs(graph0, combined), layers, steps, tuple(head_dim_modules))
