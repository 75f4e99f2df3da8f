"""``prune(model, example_inputs, ratio=...)``: the one obvious high-level call, and the interactive way."""

from __future__ import annotations

import copy
import types
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Union

import attrs
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
    as_target,
    check_amount,
    contracted_in_products,
    costs,
    make_plan,
    meet_target,
    mixing_blocker,
    removal_of,
    removal_that_fits,
    split_between_factors,
)
from prune_torch import _latency
from prune_torch._activations import calibrate
from prune_torch._apply import apply
from prune_torch._calibrate import LossFn
from prune_torch._choose import (
    choose_global,
    choose_isomorphic,
    choose_local,
    harmonise_head_dims,
)
from prune_torch._compensate import add_compensation, plan_compensation
from prune_torch._errors import ApplyError
from prune_torch._importance import ImportanceLike, member_data, resolve_importance
from prune_torch._layers import LAYER_RULES
from prune_torch._optim import prune_optimizer
from prune_torch._report import Report, layer_widths
from prune_torch._rollback import ModelState
from prune_torch._trace import ExampleInputs
from prune_torch._traced import TracedGraph, trace_model
from prune_torch._verify import verify_step

__all__ = ["InteractivePruner", "Proposal", "Target", "interactive", "prune"]

ModuleKey = Union[str, torch.nn.Module]


@attrs.frozen
class _Options:
    ratio: float
    round_to: int
    ignore: tuple[str, ...]
    ratios: Mapping[str, float]
    global_ranking: bool
    isomorphic: bool
    max_ratio: float
    steps: int
    prune_outputs: bool
    head_ratio: float | None
    head_dims: bool
    query_heads: bool
    hidden: bool | None
    target: Target
    tolerance: float
    approximate: bool | None = None
    compensate: bool = False
    distributed: bool = False


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


def _options(model: torch.nn.Module, **kw: Any) -> _Options:
    ratio = check_amount(kw["ratio"], "ratio")
    max_ratio = check_amount(kw["max_ratio"], "max_ratio")
    steps = kw["steps"]
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise PruningError(f"'steps' must be an int >= 1 (got {steps!r})")
    round_to = kw["round_to"]
    if isinstance(round_to, bool) or not isinstance(round_to, int) or round_to < 1:
        raise PruningError(f"'round_to' must be an int >= 1 (got {round_to!r})")
    target = kw["target"]
    target = as_target(target)
    ratios_in = kw["ratios"] or {}
    ratios = dict(zip(_paths(model, ratios_in.keys(), "ratios"), ratios_in.values()))
    for path, value in ratios.items():
        check_amount(value, f"ratios[{path!r}]")
    head_ratio = kw["head_ratio"]
    if head_ratio is not None:
        head_ratio = check_amount(head_ratio, "head_ratio")
    tolerance = float(kw["tolerance"])
    if not 0 < tolerance < 1:
        raise PruningError(f"'tolerance' must be in (0, 1) (got {tolerance!r})")
    approximate = kw.get("approximate")
    if approximate is not None and not isinstance(approximate, bool):
        raise PruningError(f"'approximate' must be None, True or False (got {approximate!r})")
    if approximate is False and kw["hidden"] is True:
        raise PruningError(
            "hidden=True prunes channels a normalisation layer mixes, which approximate=False forbids; drop one"
        )
    return _Options(
        ratio=ratio,
        round_to=round_to,
        ignore=tuple(_paths(model, kw["ignore"], "ignore")),
        ratios=ratios,
        global_ranking=bool(kw["global_ranking"]),
        isomorphic=bool(kw["isomorphic"]),
        max_ratio=max_ratio,
        steps=steps,
        prune_outputs=bool(kw["prune_outputs"]),
        head_ratio=head_ratio,
        head_dims=bool(kw["head_dims"]),
        query_heads=bool(kw["query_heads"]),
        hidden=kw["hidden"],
        target=target,
        tolerance=tolerance,
        approximate=approximate,
        compensate=bool(kw.get("compensate", False)),
        distributed=bool(kw.get("distributed", False)),
    )


def _left_alone(groups: tuple[Group, ...], opts: _Options) -> list[str]:
    """Why each group the prune would take but mixing ops keep out of it is left alone."""
    notes = []
    for group in _wanted(groups, opts):
        reason = mixing_blocker(group.mixing, opts.approximate)
        if reason is not None:
            notes.append(f"{group.name} left unpruned: {reason}")
    return notes


def _wanted(groups: tuple[Group, ...], opts: _Options) -> list[Group]:
    """The kinds of group a prune touches: channels and heads by default; the rest on request."""
    has_heads = any(g.kind is GroupKind.HEADS for g in groups)
    keep_hidden = (not has_heads) if opts.hidden is None else opts.hidden
    wanted = []
    for group in groups:
        if group.kind is GroupKind.HEAD_DIMS and not opts.head_dims:
            continue
        if group.kind is GroupKind.QUERY_HEADS and not opts.query_heads:
            continue
        if group.kind is GroupKind.CHANNELS and group.normalised and not keep_hidden:
            continue
        wanted.append(group)
    return wanted


def _selected(groups: tuple[Group, ...], opts: _Options) -> list[Group]:
    """The groups a prune touches: the kinds :func:`_wanted` takes, less those mixing ops keep out.

    Groups whose channels an op mixes (a reduction, softmax or cumulative op over them) are left
    alone unless ``approximate=True``; normalisation layers are accepted unless ``approximate=False``.
    """
    return [g for g in _wanted(groups, opts) if mixing_blocker(g.mixing, opts.approximate) is None]


def _owners(graph: TracedGraph, group: Group) -> tuple[str, ...]:
    """Modules whose output channels are in the group: a layer that only reads them (input side) is not one."""
    owners: dict[str, None] = {}
    for member in group.parameters:
        cls = graph.module_types.get(member.value.module)
        rule = next((LAYER_RULES[c] for c in cls.__mro__ if c in LAYER_RULES), None) if cls else None
        if rule is None or (member.value.name, member.dim.dim) not in rule.in_axes:
            owners[member.value.module] = None
    return tuple(owners)


def _head_ratio_applies(group: Group, opts: _Options) -> bool:
    return opts.head_ratio is not None and group.kind in (GroupKind.HEADS, GroupKind.QUERY_HEADS)


def _group_amount(graph: TracedGraph, group: Group, opts: _Options, scale: float) -> float:
    """This step's fraction for a group: its own ratio (per-module, heads, or global), spread over the steps."""
    ratio = opts.ratio
    if _head_ratio_applies(group, opts):
        ratio = opts.head_ratio  # type: ignore[assignment]
    for module in _owners(graph, group):
        for path, value in opts.ratios.items():
            if module == path or module.startswith(path + "."):
                ratio = value
    ratio = min(ratio * scale, opts.max_ratio)
    return 1 - (1 - ratio) ** (1 / opts.steps)


def _score(
    model: torch.nn.Module, graph: TracedGraph, group: Group, importance: Any, statistics: Any = None
) -> np.ndarray:
    data = [] if isinstance(importance, Random) else member_data(model, graph, group, statistics)
    scores = np.asarray(importance(group, data), dtype=np.float64)
    if scores.shape != (group.size,):
        raise PruningError(f"importance returned shape {scores.shape} for group {group.id}; expected ({group.size},)")
    return scores


def _choose(
    graph: TracedGraph, scored: list[tuple[Group, np.ndarray]], opts: _Options, scale: float
) -> list[tuple[Group, np.ndarray]]:
    if opts.global_ranking or opts.isomorphic:
        amount = 1 - (1 - min(opts.ratio * scale, opts.max_ratio)) ** (1 / opts.steps)
        choose = choose_isomorphic if opts.isomorphic else choose_global
        return harmonise_head_dims(choose(scored, amount, opts.round_to, opts.max_ratio), scored)
    groups = [g for g, _ in scored]
    amounts = split_between_factors(
        groups, [_group_amount(graph, g, opts, scale) for g in groups], [_head_ratio_applies(g, opts) for g in groups]
    )
    chosen = choose_local(scored, amounts, opts.round_to)
    return harmonise_head_dims(chosen, scored)


def _plan_for_step(
    graph: TracedGraph,
    scored: list[tuple[Group, np.ndarray]],
    opts: _Options,
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

    if opts.target is Target.CHANNELS:
        return finish(_choose(graph, scored, opts, 1.0))
    base = original or costs(graph)
    step_target = 1 - (1 - opts.ratio) ** ((step + 1) / opts.steps)

    def removed(chosen: list[tuple[Group, np.ndarray]]) -> float:
        after = costs(graph, finish(chosen)[0])
        if opts.target is Target.MACS:
            return 1 - after.macs / max(base.macs, 1)
        return 1 - after.parameters / max(base.parameters, 1)

    upper = opts.max_ratio / max(opts.ratio, 1e-9)
    chosen, got = meet_target(
        lambda scale: _choose(graph, scored, opts, scale), removed, step_target, upper, opts.tolerance
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


@attrs.define
class Proposal:
    """One group the pruner wants to shrink: inspect it, change ``units``, then ``accept()`` or ``reject()``."""

    group: Group
    units: np.ndarray
    scores: np.ndarray
    accepted: bool = False

    def accept(self) -> None:
        """Keep this proposal (with its current ``units``)."""
        self.accepted = True

    def reject(self) -> None:
        """Drop this proposal."""
        self.accepted = False

    def __str__(self) -> str:
        units = ", ".join(str(int(u)) for u in self.units[:12]) + (" ..." if len(self.units) > 12 else "")
        return f"{self.group.describe()}\n  remove {len(self.units)} of {self.group.size} units: [{units}]"


class InteractivePruner:
    """Walk the groups the pruner chose, inspect or change each, and apply only those accepted.

    >>> import torch
    >>> from prune_torch.examples import resnet_like
    >>> model = resnet_like(10).eval()
    >>> session = interactive(model, torch.randn(1, 3, 32, 32), ratio=0.5, ignore=["fc"])
    >>> for proposal in session:
    ...     proposal.accept()
    >>> report = session.apply()
    """

    def __init__(
        self, model: torch.nn.Module, example_inputs: ExampleInputs, graph: TracedGraph, proposals: list[Proposal]
    ) -> None:
        self.model = model
        self.example_inputs = example_inputs
        self.graph = graph
        self.proposals = proposals

    def __iter__(self) -> Iterator[Proposal]:
        return iter(self.proposals)

    def __len__(self) -> int:
        return len(self.proposals)

    def plan(self) -> Plan:
        """The plan of the accepted proposals."""
        chosen = [(p.group, np.asarray(p.units, dtype=np.int64)) for p in self.proposals if p.accepted]
        return make_plan(self.graph, removal_of(self.graph, chosen))

    def apply(self) -> Report:
        """Apply the accepted proposals and report."""
        plan = self.plan()
        apply(self.model, plan, self.example_inputs)
        return Report(plan, costs(self.graph), costs(self.graph, plan), layer_widths(self.model, self.graph, plan), 1)


def _prepare(
    model: torch.nn.Module,
    graph: TracedGraph,
    opts: _Options,
    scorer: Any,
    calibration: Iterable[ExampleInputs] | None,
    loss_fn: LossFn | None,
    show_progress: bool,
) -> list[tuple[Group, np.ndarray]]:
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
    groups = _selected(graph.groups(opts.ignore, opts.prune_outputs).prunable, opts)
    return [(g, _score(model, graph, g, scorer, statistics)) for g in groups]


_DEFAULTS: Mapping[str, Any] = types.MappingProxyType(
    {
        "ratio": 0.5,
        "round_to": 1,
        "ignore": (),
        "ratios": None,
        "global_ranking": False,
        "isomorphic": False,
        "max_ratio": 0.9,
        "steps": 1,
        "prune_outputs": False,
        "head_ratio": None,
        "head_dims": False,
        "query_heads": False,
        "hidden": None,
        "approximate": None,
        "target": "channels",
        "tolerance": 0.02,
    }
)


def _inside(module: str, path: str) -> bool:
    return path == "" or module == path or module.startswith(path + ".")


def _apply_what_fits(
    model: torch.nn.Module,
    graph: TracedGraph,
    plan: Plan,
    chosen: list[tuple[Group, np.ndarray]],
    example_inputs: ExampleInputs,
    skipped: list[str],
) -> tuple[Plan, list[tuple[Group, np.ndarray]]]:
    """Apply ``plan``; when a module's code cannot follow (it keeps a size we cannot update), leave
    the groups that touch that module alone, note why, and apply the rest. Returns what was applied."""
    while True:
        try:
            apply(model, plan, example_inputs)
            return plan, [(g, u) for g, u in chosen if len(u)]
        except ApplyError as error:
            where = error.module
            if where is None:
                raise
            hit = [g for g, u in chosen if len(u) and any(_inside(m.value.module, where) for m in g.members)]
            if not hit or (len(hit) == sum(1 for _, u in chosen if len(u)) and where == ""):
                raise
            reason = str(error).splitlines()[0][:200]
            skipped.append(f"{len(hit)} group(s) touching {where or '<root>'} left unpruned: {reason}")
            chosen = [(g, u) for g, u in chosen if g not in hit]
            plan = make_plan(graph, removal_of(graph, chosen))


def interactive(
    model: torch.nn.Module,
    example_inputs: ExampleInputs,
    *,
    importance: ImportanceLike = "l2",
    reduction: str = "mean",
    seed: int = 0,
    calibration: Iterable[ExampleInputs] | None = None,
    loss_fn: LossFn | None = None,
    **options: Any,
) -> InteractivePruner:
    """Like :func:`prune` (same options, one step), but returns the proposals for review instead of applying them."""
    unknown = set(options) - set(_DEFAULTS)
    if unknown:
        raise PruningError(f"unknown option(s) {sorted(unknown)}; valid: {', '.join(sorted(_DEFAULTS))}")
    opts = _options(model, **{**_DEFAULTS, **options, "steps": 1})
    scorer = resolve_importance(importance, reduction, seed)
    graph = trace_model(model, example_inputs)
    scored = _prepare(model, graph, opts, scorer, calibration, loss_fn, False)
    _, chosen = _plan_for_step(graph, scored, opts)
    scores = {id(g): s for g, s in scored}
    proposals = [Proposal(g, units, scores[id(g)]) for g, units in chosen if len(units)]
    return InteractivePruner(model, example_inputs, graph, proposals)


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
    parameters or MACs, met within ``tolerance`` by searching the channel fraction.
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
    opts = _options(
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


def _prune_steps(
    model: torch.nn.Module,
    example_inputs: ExampleInputs,
    opts: _Options,
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
    approximate: dict[str, None] = {}
    for step in range(opts.steps):
        graph = trace_model(model, example_inputs)
        first_graph = first_graph or graph
        scored = _prepare(model, graph, opts, scorer, calibration, loss_fn, show_progress)
        if step == 0:
            skipped += _left_alone(graph.groups(opts.ignore, opts.prune_outputs).prunable, opts)
        plan, chosen = _plan_for_step(graph, scored, opts, costs(first_graph), step)
        before = copy.deepcopy(model) if verify else None
        pending, notes = ([], [])
        if opts.compensate:
            pending, notes = plan_compensation(model, chosen, graph.cache["activation statistics"])
        plan, applied = _apply_what_fits(model, graph, plan, chosen, example_inputs, skipped)
        contracted = contracted_in_products(graph)
        for group, _units in applied:
            # channels summed in a product of activations (q·k) have no weight to zero downstream:
            # the silenced original zeroes them where they are made
            if group.kind is GroupKind.HEAD_DIMS or any(m.dim in contracted for m in group.members):
                head_dim_modules.update((m.value.module, None) for m in group.parameters)
            normalised = normalised or group.normalised
            if group.approximate:
                mixed = "; ".join(str(n) for n in group.mixing)
                approximate[f"{group.name}: mixed by {mixed}"] = None
        if before is not None:
            verify_step(before, model, graph, applied, example_inputs, tuple(head_dim_modules))
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
    return Report(
        combined,
        costs(first_graph),
        costs(first_graph, combined),
        layers,
        opts.steps,
        tuple(head_dim_modules),
        normalised,
        tuple(skipped),
        tuple(approximate),
    )
