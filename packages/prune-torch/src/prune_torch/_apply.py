"""Applying a plan to a torch model: in place, all or nothing, checked by a second trace."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import attrs
import torch

from prune_graph import Graph, ValueKind
from prune_ops import (
    GroupSet,
    Plan,
    PlanEntry,
    PlanMismatchError,
    PruningError,
    check_indices,
    check_plan_groups,
    complement,
    find_groups,
)
from prune_torch._constants import changed_constant
from prune_torch._errors import ApplyError, SizeConstantError, TraceError
from prune_torch._history import build_inputs, record, recorded_inputs
from prune_torch._layers import LAYER_RULES, sync_attributes
from prune_torch._light import light_check
from prune_torch._reads import Reads, reading
from prune_torch._rebase import compare, rebase
from prune_torch._sizes import size_updates, update_sizes
from prune_torch._trace import Calls, ExampleInputs, refuse_script_modules, trace_with_calls
from prune_torch._traced import TracedGraph

__all__ = ["apply", "apply_accepting", "inputs_from_plan"]

_INT_DTYPES = {"int64", "int32", "int16", "int8", "uint8", "bool"}


def inputs_from_plan(plan: Plan, device: str = "meta") -> ExampleInputs | None:
    """Stand-in inputs of the shapes and dtypes the plan's graph was traced with (``None`` if nested)."""
    args: list[torch.Tensor] = []
    kwargs: dict[str, torch.Tensor] = {}
    for name, shape, dtype in plan.inputs:
        if "." in name:
            return None
        tensor = torch.zeros(shape, dtype=getattr(torch, dtype, torch.float32), device=device)
        if name.startswith("input") and name[5:].isdigit():
            if int(name[5:]) != len(args):
                return None
            args.append(tensor)
        else:
            kwargs[name] = tensor
    if kwargs and args:
        return None
    return kwargs if kwargs else tuple(args)


def _flat_shapes(inputs: ExampleInputs) -> list[tuple[int, ...]]:
    from prune_torch._aten import tensors_in

    return [tuple(t.shape) for t in tensors_in(inputs)]


def _inputs_for(model: torch.nn.Module, plan: Plan) -> ExampleInputs:
    """Stand-ins for the inputs ``plan`` was made with: the structure recorded on the model, else the plan's."""
    device = _device_of(model)
    described = recorded_inputs(model)
    if described is not None:
        inputs = build_inputs(described, device)
        if _flat_shapes(inputs) == [shape for _, shape, _ in plan.inputs]:
            return inputs
    inputs = inputs_from_plan(plan, device=device)
    if inputs is None:
        raise PruningError(
            "apply needs example_inputs here: the plan was made with nested inputs ("
            + ", ".join(name for name, _, _ in plan.inputs[:4])
            + ") whose structure the plan does not keep; pass them as pt.apply(model, plan, example_inputs)"
        )
    return inputs


@attrs.define
class _Target:
    entry: PlanEntry
    module: torch.nn.Module
    tensor: torch.Tensor | None  # None for virtual axes
    kept: torch.Tensor | None = None  # the indices the entry keeps, on the CPU (None for virtual axes)


_VIRTUAL = ValueKind.VIRTUAL.value


def _resolve(model: torch.nn.Module, plan: Plan, modules: Mapping[str, torch.nn.Module]) -> list[_Target]:
    """Find every tensor the plan names and check its shape and indices, before touching anything.

    ``modules``: the model's modules by path (``named_modules(remove_duplicate=False)``).
    """
    targets = []
    # the indices kept by each (size, removed) pair, checked once: a layer's weight, bias and statistics share them
    kept_by: dict[tuple[int, tuple[int, ...]], torch.Tensor] = {}
    for entry in plan.entries:
        module = modules.get(entry.owner)
        if module is None:
            raise PlanMismatchError(
                f"plan entry {entry.path}[{entry.axis}]: the model has no module {entry.owner!r} "
                "(was the plan made for another model?)"
            )
        if entry.kind == _VIRTUAL:
            targets.append(_Target(entry, module, None))
            continue
        tensor = getattr(module, entry.tensor, None)
        if not isinstance(tensor, torch.Tensor):
            raise PlanMismatchError(
                f"plan entry {entry.path}[{entry.axis}]: module {entry.owner or '<root>'} "
                f"({type(module).__name__}) has no tensor {entry.tensor!r}"
            )
        if tensor.shape != entry.shape:  # a torch.Size is a tuple
            after = plan.state_shapes()[entry.path][1]
            if tuple(tensor.shape) == after:
                raise PlanMismatchError(
                    f"plan entry {entry.path}[{entry.axis}]: the model already has the shape {after} this plan "
                    f"leads to (from {tuple(entry.shape)}): the plan was already applied to this model"
                )
            raise PlanMismatchError(
                f"plan entry {entry.path}[{entry.axis}]: expected shape {tuple(entry.shape)}, the model has "
                f"{tuple(tensor.shape)} (was the plan made for another model?)"
            )
        kept = kept_by.get((entry.size, entry.removed))
        if kept is None:
            removed = check_indices(entry.removed, entry.size, f"plan entry {entry.path}[{entry.axis}]")
            kept = kept_by[(entry.size, entry.removed)] = torch.from_numpy(complement(removed, entry.size))
        targets.append(_Target(entry, module, tensor, kept))
    return targets


@attrs.define
class _Snapshot:
    """Everything apply may change, to put back on failure."""

    tensors: list[tuple[torch.nn.Module, str, torch.Tensor, torch.Tensor | None, bool]] = attrs.field(factory=list)
    attributes: list[tuple[Any, dict[str, Any]]] = attrs.field(factory=list)
    # a pruned nn.MultiheadAttention changes class (prune_torch._mha)
    classes: list[tuple[Any, type]] = attrs.field(factory=list)

    def remember(self, obj: Any) -> None:
        """Keep the plain attributes (and the class) of a module or config object."""
        self.attributes.append((obj, _plain_attributes(obj)))
        self.classes.append((obj, type(obj)))

    def restore(self) -> None:
        for module, name, data, grad, is_param in reversed(self.tensors):
            if is_param:
                param = module._parameters[name]
                if param is not None:
                    param.data = data
                    param.grad = grad
            else:
                module._buffers[name] = data
        for obj, saved in reversed(self.attributes):
            for key, value in saved.items():
                obj.__dict__[key] = value
        for obj, cls in reversed(self.classes):
            if type(obj) is not cls:
                obj.__class__ = cls


def _plain_attributes(module: torch.nn.Module) -> dict[str, Any]:
    # the name first: most of a module's __dict__ is torch's own ``_``-named bookkeeping
    return {
        k: v for k, v in module.__dict__.items() if not k.startswith("_") and not isinstance(v, (dict, torch.Tensor))
    }


class _KeptIndices:
    """The indices the targets' entries keep (found by ``_resolve``, on the CPU), moved once to each other device.

    A layer's weight, bias and running statistics lose the same indices: one tensor serves them all.
    """

    def __init__(self, targets: Iterable[_Target]) -> None:
        self._on_cpu = {id(t.entry): t.kept for t in targets if t.kept is not None}
        self._moved: dict[tuple[int, torch.device], torch.Tensor] = {}

    def of(self, entry: PlanEntry, device: torch.device) -> torch.Tensor:
        kept = self._on_cpu[id(entry)]
        if device.type == "cpu":
            return kept
        moved = self._moved.get((id(kept), device))
        if moved is None:
            moved = self._moved[(id(kept), device)] = kept.to(device)
        return moved


def _slice(tensor: torch.Tensor, entries: list[PlanEntry], kept: _KeptIndices) -> torch.Tensor:
    for entry in entries:
        tensor = tensor.index_select(entry.axis, kept.of(entry, tensor.device))
    return tensor


def set_data(param: torch.nn.Parameter, data: torch.Tensor) -> None:
    """``param.data = data``, renewing a gradient accumulator cached with the old shape.

    A graph still alive from before (the last ``loss`` of a training loop) keeps the parameter's
    accumulator, which torch renews only when the dtype or device changes; the next backward would
    check gradients against the old shape. Passing through another dtype renews it.
    """
    other = torch.float16 if data.dtype != torch.float16 else torch.float32
    param.data = torch.empty(0, dtype=other, device=data.device)
    param.data = data


def _modules_of(targets: list[_Target]) -> Iterator[torch.nn.Module]:
    seen: set[int] = set()
    for t in targets:
        if id(t.module) not in seen:
            seen.add(id(t.module))
            yield t.module


def _sharing(modules: Iterable[torch.nn.Module], targets: list[_Target]) -> Iterator[torch.nn.Module]:
    """Modules not named by the plan that hold one of its tensors (an LM head tied to the embedding).

    ``modules``: the model's modules (a module met twice is looked at once).
    """
    seen = {id(t.module) for t in targets}
    tensors = {id(t.tensor) for t in targets if t.tensor is not None}
    for module in modules:
        if id(module) in seen:
            continue
        seen.add(id(module))
        # the module's own parameters (``parameters(recurse=False)`` without its generators)
        if any(id(p) in tensors for p in module._parameters.values()):
            yield module


def _sync_stateless(modules: Mapping[str, torch.nn.Module], graph: Graph, plan: Plan, snapshot: _Snapshot) -> None:
    """Norm layers without parameters keep their channel count only as an attribute: set it from the graph.

    ``modules``: the model's modules by path (``named_modules(remove_duplicate=False)``); a module
    met again under another path is looked at under its first one only.
    """
    shapes = plan.new_shapes()
    first_input: dict[str, str] = {}
    for op in graph.ops:
        if op.inputs and op.owner not in first_input:
            first_input[op.owner] = op.inputs[0]
    seen: set[int] = set()
    for path, module in modules.items():
        if id(module) in seen:
            continue
        seen.add(id(module))
        if path not in first_input or first_input[path] not in shapes:
            continue
        new = shapes[first_input[path]]
        if (
            isinstance(module, torch.nn.modules.batchnorm._NormBase)
            and module.weight is None
            and module.running_mean is None
        ):
            snapshot.attributes.append((module, _plain_attributes(module)))
            module.num_features = int(new[1])
        elif isinstance(module, torch.nn.LayerNorm) and module.weight is None:
            snapshot.attributes.append((module, _plain_attributes(module)))
            k = len(module.normalized_shape)
            module.normalized_shape = tuple(int(s) for s in new[len(new) - k :])


def apply(
    model: torch.nn.Module,
    plan: Plan,
    example_inputs: ExampleInputs | None = None,
    *,
    verify: bool = True,
    traced: TracedGraph | None = None,
) -> None:
    """Carry out ``plan`` on ``model`` in place; on any failure restore the model exactly.

    The plan is matched to the model by names, never by trace position, so a plan saved from one
    model applies to a freshly built one even when the two trace differently (a detection head
    that caches its anchors on the first forward). Checked first: every module and tensor the plan
    names exists with the planned shape and the indices are in range; then, on this model's trace,
    that the entries remove whole units of the model's groups, the same in every member, and that
    no coupled tensor is left out. Every parameter, buffer and existing gradient is sliced with
    ``index_select`` on its own device and dtype; ``nn.Parameter`` objects are kept, so optimiser
    references stay valid. Size attributes (``in_channels``, ``num_features`` ...) follow. With
    ``verify`` the pruned model runs again and every shape is compared with the plan's prediction:
    every parameter by name, the model outputs, and every activation whose size does not depend on
    the data (a light re-run checked call by call; on any difference, a full re-trace finds the
    module to name). ``example_inputs`` default to stand-ins of the inputs the plan was made with.

    ``traced`` is the graph (from ``prune_torch.trace`` on this model, unchanged since) that
    ``plan`` was made on with ``make_plan``: the model is then not traced again before applying
    and its groups are not searched again (``pt.prune`` passes it). Any other plan is checked on a
    fresh trace.

    The verification also compares the plain numbers of both runs (:mod:`prune_torch._constants`):
    a model that computes a number from a pruned size (``x.shape[1] ** 0.5``) runs, but no longer
    computes what the silenced original computes; that raises :class:`SizeConstantError` naming
    the module and line. ``pt.prune`` leaves such a group unpruned, or with ``approximate=True``
    prunes it and lists it in ``report.approximate``.
    """
    apply_accepting(model, plan, example_inputs, verify=verify, traced=traced)


def apply_accepting(
    model: torch.nn.Module,
    plan: Plan,
    example_inputs: ExampleInputs | None = None,
    *,
    verify: bool = True,
    traced: TracedGraph | None = None,
    accepted: frozenset[Any] = frozenset(),
    modules: Mapping[str, torch.nn.Module] | None = None,
) -> None:
    """:func:`apply`, accepting a change of the numbers at the calls whose keys are ``accepted`` (see ``ConstantChange.key``).

    ``modules``: the model's modules by path (``named_modules(remove_duplicate=False)``), when the caller has them.
    """
    refuse_script_modules(model)  # before anything, also when no trace is needed
    if plan.is_empty:
        return
    if modules is None:
        modules = dict(model.named_modules(remove_duplicate=False))
    targets = _resolve(model, plan, modules)
    inputs = example_inputs if example_inputs is not None else _inputs_for(model, plan)
    before: Graph | None = None
    calls: Calls | None = None
    local = plan  # the plan made again on this model's own trace: its predictions name that trace's values
    reads: Reads = {}  # int attributes the forward read (``self.channels``): sizes kept outside tensors
    groups: GroupSet | None = None
    if traced is not None and _made_on(traced, plan):
        before, calls, reads = traced, traced.cache.get("calls"), traced.cache.get("reads", {})
        groups = traced.some_groups()
    elif inputs is not None:
        with reading(model) as reads:
            before, calls = trace_with_calls(model, inputs)
        groups = find_groups(before, prune_outputs=True)
        check_plan_groups(before, groups, plan)
        local = rebase(before, groups, plan)
    snapshot = _Snapshot()
    try:
        _slice_all(modules, targets, snapshot)
        if before is not None:
            _sync_stateless(modules, before, local, snapshot)
            # channel counts follow only in the attributes a module's forward read: only those modules are asked
            updates = size_updates(before, local, groups, channel_modules=reads.keys())
            update_sizes(model, updates, snapshot.remember, reads, modules)
        if verify and before is not None and inputs is not None:
            _verify(model, inputs, before, calls, local, accepted)
    except BaseException:
        snapshot.restore()
        raise
    record(model, plan, inputs)


def _made_on(traced: TracedGraph, plan: Plan) -> bool:
    """Whether ``plan`` was made on ``traced`` itself (so its predicted shapes name that graph's values)."""
    return "calls" in traced.cache and plan.fingerprint == traced.fingerprint()


def _slice_all(modules: Mapping[str, torch.nn.Module], targets: list[_Target], snapshot: _Snapshot) -> None:
    """Slice every tensor the plan names, and set the size attributes that follow from them.

    ``modules``: the model's modules by path, where modules that share a tensor are found.
    """
    by_tensor: dict[int, list[_Target]] = {}
    for t in targets:
        if t.tensor is not None:
            by_tensor.setdefault(id(t.tensor), []).append(t)
    owners = list(_modules_of(targets))
    for module in owners:
        snapshot.remember(module)
    kept = _KeptIndices(targets)
    for group in by_tensor.values():
        first = group[0]
        entries = [t.entry for t in group]
        name = first.entry.tensor
        param = first.module._parameters.get(name) if name in first.module._parameters else None
        if param is not None:
            data, grad = param.data, param.grad  # read once: ``param.data`` makes a new tensor object each time
            snapshot.tensors.append((first.module, name, data, grad, True))
            new_data = _slice(data, entries, kept)
            new_grad = _slice(grad, entries, kept) if grad is not None else None
            set_data(param, new_data)
            if new_grad is not None:
                param.grad = new_grad
        else:
            buffer = first.module._buffers[name]
            if buffer is None:
                raise ApplyError(f"buffer {first.entry.path} is None")
            snapshot.tensors.append((first.module, name, buffer, None, False))
            first.module._buffers[name] = _slice(buffer, entries, kept)
    for t in targets:
        if t.tensor is None and t.entry.tensor in ("groups", "num_groups"):
            setattr(t.module, t.entry.tensor, t.entry.size_after)
    for module in owners:
        sync_attributes(module, LAYER_RULES)
    for module in _sharing(modules.values(), targets):
        snapshot.remember(module)
        sync_attributes(module, LAYER_RULES)


def _verify(
    model: torch.nn.Module,
    inputs: ExampleInputs,
    before: Graph,
    calls: Calls | None,
    local: Plan,
    accepted: frozenset[Any] = frozenset(),
) -> None:
    """The pruned model's shapes and numbers against the plan: the light re-run, the full re-trace only on a difference."""
    if calls is not None and light_check(model, inputs, before, calls, local) is None:
        return
    try:
        # the planning trace ran on meta: a meta failure now is conclusive (no fallback to a real forward)
        after, after_calls = trace_with_calls(
            model, inputs, meta=True if calls is not None and calls.meta else None, lines=True
        )
    except TraceError as error:
        raise ApplyError(f"the pruned model no longer runs: {error}", error.module) from error
    compare(before, after, local)
    change = changed_constant(calls.constants, after_calls.constants, accepted) if calls is not None else None
    if change is not None:
        raise SizeConstantError(f"after pruning, {change.describe()}. The model was restored.", change)


def _device_of(model: torch.nn.Module) -> str:
    for tensor in model.parameters():
        return str(tensor.device)
    return "cpu"
