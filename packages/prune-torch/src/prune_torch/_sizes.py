"""Size attributes that models keep outside their tensors (``num_heads``, ``head_dim`` ...).

Attention modules reshape a projection of width C into heads × head dims with sizes read from
attributes. After a plan changes such a reshape, the attributes of the module that runs it are
updated by role: the first factor is a head count, the last a head dim, the whole a width. Only
attributes with a known name and the old value change; the model config follows where every
layer changed the same way.

Channel counts a module keeps under any other name (``assert x.shape[1] == self.channels``,
``x.split(self.expand_chs // 2)``, diffusers' ``attn.heads``) follow through the attributes the
forward was seen to read (``prune_torch._reads``): where a size of the tensors the module reads,
writes or makes changes one way only (no other dim of that size stays or changes otherwise), the
one int attribute read with the old value follows. Two candidates are never guessed between. Anything else is caught by the re-trace after apply, which names the
module.
"""

from __future__ import annotations

import types
from collections import defaultdict
from collections.abc import Callable, Collection, Mapping
from typing import Any

import attrs
import torch

from prune_graph import DimRef, Graph, OpKind, ValueId, ValueKind, reshape_groups
from prune_ops import GroupKind, GroupSet, Plan, find_groups
from prune_torch._errors import ApplyError
from prune_torch._layers import rule_for
from prune_torch._mha import PrunedMultiheadAttention
from prune_torch._reads import Reads

__all__ = ["CONFIG_NAMES", "ROLE_NAMES", "SizeUpdate", "channel_updates", "size_updates", "update_sizes"]

ROLE_NAMES: Mapping[str, frozenset[str]] = types.MappingProxyType(
    {
        "heads": frozenset(
            {"num_heads", "num_attention_heads", "n_head", "n_heads", "num_key_value_heads", "num_kv_heads"}
        ),
        "head_dim": frozenset({"head_dim", "attention_head_size", "head_size", "dim_head"}),
        "width": frozenset({"all_head_size", "embed_dim", "inner_dim", "split_size", "hidden_size", "kdim", "vdim"}),
        "hidden": frozenset(),
        "kv_groups": frozenset({"num_key_value_groups", "n_rep", "num_queries_per_kv"}),
        "intermediate": frozenset(),
        # a split piece's size, by any name: the one int attribute of the module that holds it
        "split": frozenset(),
        # a channel count of a tensor the module reads or writes: the one read attribute holding it
        "channels": frozenset(),
    }
)

_ROLE_NAMED: frozenset[str] = frozenset().union(*ROLE_NAMES.values())

# the names model configs (Hugging Face's among them) give these sizes, family by family
CONFIG_NAMES: Mapping[str, frozenset[str]] = types.MappingProxyType(
    {
        "heads": frozenset(
            {
                "num_attention_heads",
                "n_head",
                "n_heads",
                "num_heads",
                "num_key_value_heads",
                "num_kv_heads",
                "encoder_attention_heads",
                "decoder_attention_heads",
            }
        ),
        "head_dim": frozenset({"head_dim", "d_kv"}),
        "hidden": frozenset({"hidden_size", "n_embd", "d_model", "embed_dim", "dim"}),
        "intermediate": frozenset(
            {"intermediate_size", "n_inner", "d_ff", "ffn_dim", "encoder_ffn_dim", "decoder_ffn_dim", "hidden_dim"}
        ),
    }
)

# config sizes whose ``None`` stands for a value derived from another one
_CONFIG_DEFAULTS: Mapping[str, tuple[str, int]] = types.MappingProxyType({"n_inner": ("n_embd", 4)})


# roles whose size may follow in an attribute of any name the forward read: only channel counts,
# whose updates are unambiguous over every tensor the module touches (a head count of 8 beside an
# unchanged head dim of 8 is not: the role alone cannot tell the two attributes apart)
_GUESSED = frozenset({"channels"})


@attrs.frozen
class SizeUpdate:
    """A dim of role ``role`` changed from ``old`` to ``new`` in a reshape run by ``module``."""

    module: str
    role: str
    old: int
    new: int


def _dim_kinds(groups: GroupSet) -> dict[DimRef, GroupKind]:
    """The kind of head group each dim carries, for :func:`_part_role` (which reads no other kind).

    A dim of several kinds (a reshaped projection's fine dim, in a channel group too) is left out;
    channel groups are looked at only when there are head groups (a CNN has none).
    """
    kinds: dict[DimRef, GroupKind] = {}
    several: set[DimRef] = set()
    for group in groups:
        kind = group.kind
        if kind is GroupKind.CHANNELS:
            continue
        for member in group.members:
            if kinds.setdefault(member.dim, kind) is not kind:
                several.add(member.dim)
    if kinds:
        for group in groups:
            if group.kind is GroupKind.CHANNELS:
                several.update(member.dim for member in group.members if member.dim in kinds)
    return {dim: kind for dim, kind in kinds.items() if dim not in several}


def _plain_channel_dims(groups: GroupSet) -> set[DimRef]:
    """Dims of channel groups that no norm mixes (a transformer's MLP units, a CNN's channels)."""
    return {
        member.dim
        for group in groups
        if group.kind is GroupKind.CHANNELS and not group.normalised
        for member in group.members
    }


def _part_role(graph: Graph, kinds: dict[DimRef, GroupKind], value: str, dim: int) -> str | None:
    kind = kinds.get(DimRef(ValueId(value), dim))
    if kind is GroupKind.QUERY_HEADS:
        return "kv_groups"
    if kind is GroupKind.HEADS:
        return "heads"
    if kind is GroupKind.HEAD_DIMS:
        return "head_dim"
    return None


def size_updates(
    graph: Graph, plan: Plan, groups: GroupSet | None = None, channel_modules: Collection[str] | None = None
) -> list[SizeUpdate]:
    """Role-tagged size changes: reshapes into (or out of) heads × head dims, and dims normalised together (hidden).

    A reshape's dims get their role from the kind of group they carry: heads, head dims, or the
    repeat count of grouped-query attention (a head dim made by ``expand``); the fine dim of
    heads × head dims is a width, of key/value heads × repeats a head count.
    ``channel_modules``: the modules whose channel counts are wanted (see :func:`channel_updates`).
    """
    shapes = plan.new_shapes()
    groups = groups if groups is not None else find_groups(graph)
    kinds = _dim_kinds(groups)
    found: list[SizeUpdate] = []
    plain = _plain_channel_dims(groups)
    for entry in plan.entries:
        # the width of a feed-forward block: the rows of a matrix in a plain channel group
        if (
            entry.kind == ValueKind.PARAMETER.value
            and len(entry.shape) == 2
            and DimRef(ValueId(entry.path), entry.axis) in plain
        ):
            found.append(SizeUpdate(entry.owner, "intermediate", entry.size, entry.size_after))
    for op in graph.ops:
        normalised: tuple[int, ...] = ()
        if op.kind is OpKind.NORM and op.attr("mixes", False):
            normalised = op.ints_attr("channel_dims")
        elif op.kind is OpKind.REDUCE:
            normalised = op.ints_attr("dims")
        x = op.inputs[0] if op.inputs else None
        if normalised and x in shapes:
            for d in normalised:
                old, new = graph.shape(x)[d], shapes[x][d]
                if old != new:
                    found.append(SizeUpdate(op.owner, "hidden", old, new))
        if op.kind is OpKind.EXPAND and op.outputs[0] in shapes:
            # a dim expanded from size 1 repeats each key/value head for its query heads; with a single
            # key/value head (multi-query) no reshape shows it as a factor, only this expand does
            y = op.outputs[0]
            for d, (old, new) in enumerate(zip(graph.shape(y), shapes[y])):
                if old != new and _broadcast_dim(graph, y, d):
                    found.append(SizeUpdate(op.owner, "kv_groups", old, new))
        if op.kind is OpKind.SPLIT and not op.attr("squeeze", False):
            # pieces of unequal sizes are passed as numbers (``split([key_dim, key_dim, head_dim])``)
            dim = op.int_attr("dim") % len(graph.shape(op.inputs[0]))
            # equal pieces are split by count or by one size that the roles above already follow
            unequal = len({graph.shape(y)[dim] for y in op.outputs}) > 1
            for y in op.outputs if unequal else ():
                if y in shapes and graph.shape(y)[dim] != shapes[y][dim]:
                    found.append(SizeUpdate(op.owner, "split", graph.shape(y)[dim], shapes[y][dim]))
        if op.kind is not OpKind.RESHAPE:
            continue
        x, y = op.inputs[0], op.outputs[0]
        if x not in shapes and y not in shapes:
            continue
        xs, ys = graph.shape(x), graph.shape(y)
        new_x, new_y = shapes.get(x, xs), shapes.get(y, ys)
        for left, right in reshape_groups(xs, ys):
            if len(left) == 1 and len(right) == 2:
                fine, side, dims, new_side = (xs[left[0]], new_x[left[0]]), y, right, new_y
            elif len(right) == 1 and len(left) == 2:
                fine, side, dims, new_side = (ys[right[0]], new_y[right[0]]), x, left, new_x
            else:
                continue
            shape = graph.shape(side)
            roles = [_part_role(graph, kinds, side, d) for d in dims]
            fine_role = {("heads", "head_dim"): "width", ("heads", "kv_groups"): "heads"}.get((roles[0], roles[1]))
            changes = [(fine_role, fine)] + [(r, (shape[d], new_side[d])) for r, d in zip(roles, dims)]
            for role, (old, new) in changes:
                if role is not None and old != new:
                    found.append(SizeUpdate(op.owner, role, old, new))
    return found + channel_updates(graph, plan, channel_modules)


def channel_updates(graph: Graph, plan: Plan, modules: Collection[str] | None = None) -> list[SizeUpdate]:
    """Per module, the sizes of the tensors it reads or writes that change one way only.

    A module's tensors: the activations its own ops touch and those crossing its boundary (read by
    an op inside it and made outside, or the reverse). A size that is also the size of a dim that
    stays, or that changes to another size, is ambiguous and left out.
    ``modules``: the only modules whose sizes are wanted (``None``: every module). Such a size
    follows only in an attribute the module's forward read (:func:`update_sizes`), and most
    modules read none: the ops outside the wanted modules are not looked at.
    """
    shapes = plan.new_shapes()
    wanted = None if modules is None else frozenset(modules)
    if not shapes or wanted == frozenset():
        return []
    activations = {v.id for v in graph.values if v.kind in (ValueKind.INPUT, ValueKind.ACTIVATION)}
    producer_module = {y: op.owner for op in graph.ops for y in op.outputs}
    touched: defaultdict[str, set[str]] = defaultdict(set)
    # the scopes of a module: its path and every enclosing one ("" the model); a module is inside
    # a scope exactly when the scope is one of these (no module, a model input: inside none)
    known: dict[str, tuple[str, ...]] = {}
    known_sets: dict[str, frozenset[str]] = {}

    def scopes_of(module: str) -> tuple[str, ...]:
        found = known.get(module)
        if found is None:
            parts = module.split(".") if module else []
            found = known[module] = ("", *(".".join(parts[: k + 1]) for k in range(len(parts))))
        return found

    def scope_set(module: str) -> frozenset[str]:
        found = known_sets.get(module)
        if found is None:
            found = known_sets[module] = frozenset(scopes_of(module))
        return found

    outputs = frozenset(graph.outputs)
    for op in graph.ops:
        scopes = scopes_of(op.owner)
        if wanted is not None and wanted.isdisjoint(scopes):
            continue  # a module's tensors are those of the ops inside it
        for x in op.inputs:
            if x not in activations:
                continue
            producer = producer_module.get(x)
            around = scope_set(producer) if producer is not None else frozenset()
            for path in scopes:
                if path == op.owner or path not in around:
                    touched[path].add(x)
        for y in op.outputs:
            if y not in activations:
                continue
            # a scope every reader is inside (with no reader: every scope)
            readers = [scope_set(c.owner) for c in graph.consumers(y)]
            shared = frozenset.intersection(*readers) if readers else None
            returned = y in outputs
            for path in scopes:
                if path == op.owner or returned or (shared is not None and path not in shared):
                    touched[path].add(y)
    found: list[SizeUpdate] = []
    sizes: dict[str, tuple[tuple[int, int], ...]] = {}  # a value's (old, new) sizes: it is in many scopes
    for path, values in sorted(touched.items()):
        if (wanted is not None and path not in wanted) or not any(v in shapes for v in values):
            continue
        news: dict[int, set[int]] = {}
        for v in values:
            pairs = sizes.get(v)
            if pairs is None:
                old_shape = graph.shape(v)
                pairs = sizes[v] = tuple(zip(old_shape, shapes.get(v, old_shape)))
            for old, new in pairs:
                news.setdefault(old, set()).add(new)
        for old, new_sizes in sorted(news.items()):
            if len(new_sizes) == 1 and old not in new_sizes and old > 1:
                found.append(SizeUpdate(path, "channels", old, new_sizes.pop()))
    return found


def _broadcast_dim(graph: Graph, value: str, dim: int) -> bool:
    """Whether ``dim`` of ``value`` was made by an expand of a size-1 dim."""
    producer = graph.producer(value)
    if producer is None or producer.kind is not OpKind.EXPAND:
        return False
    source = graph.shape(producer.inputs[0])
    lead = len(graph.shape(value)) - len(source)
    return dim >= lead and source[dim - lead] == 1


def update_sizes(
    model: torch.nn.Module,
    updates: list[SizeUpdate],
    remember: Any,
    reads: Reads | None = None,
    modules: Mapping[str, torch.nn.Module] | None = None,
) -> None:
    """Set the matching attributes of each module and, where uniform, of ``model.config``.

    ``remember(obj)`` is called before an object's attributes change, so the caller can restore them.
    ``reads``: the int attributes each module's forward read (:func:`prune_torch._reads.reading`);
    a size no known name holds follows in the one read attribute that holds it.
    ``modules``: the model's modules by path, when the caller has them already.
    """
    planned: dict[tuple[str, str], tuple[int, int]] = {}
    guesses: dict[tuple[str, str], tuple[int, set[int]]] = {}
    reads = reads or {}
    submodule = _submodules(model, modules or {})
    for update in updates:
        module = submodule(update.module)
        if isinstance(module, torch.nn.MultiheadAttention) and update.role != "heads":
            # its widths and head dims are read from its tensors (prune_torch._mha); only the count is kept
            continue
        if update.role == "split":
            _plan_split(module, update, planned)
            continue
        named = [n for n in ROLE_NAMES[update.role] if _int_value(module, n) == update.old]
        if not named:
            if update.role in _GUESSED and rule_for(module) is None:
                # layers with a rule take their sizes from their tensors
                _guess_from_reads(module, update, reads.get(update.module, {}), guesses)
            continue
        for name in ROLE_NAMES[update.role]:
            value = getattr(module, name, None)
            if isinstance(value, int) and not isinstance(value, bool) and value == update.old:
                key = (update.module, name)
                if key in planned and planned[key][1] != update.new:
                    raise ApplyError(
                        f"module {update.module or '<root>'}: attribute {name!r} would need two new values "
                        f"({planned[key][1]} and {update.new}); prune heads and head dims uniformly",
                        update.module,
                    )
                planned[key] = (update.old, update.new)
    for key, (old, news) in guesses.items():
        if len(news) == 1 and planned.get(key, (old, next(iter(news))))[1] in news:
            planned[key] = (old, news.pop())
    touched: set[int] = set()
    for (path, name), (_old, new) in planned.items():
        module = submodule(path)
        if id(module) not in touched:
            remember(module)
            touched.add(id(module))
        setattr(module, name, new)
    _no_nested_tensors(model, remember)
    _update_config(model, updates, remember)


def _submodules(model: torch.nn.Module, known: Mapping[str, torch.nn.Module]) -> Callable[[str], torch.nn.Module]:
    """``model.get_submodule``, each path looked up once (a module has many updates); ``known`` by path first."""
    found: dict[str, torch.nn.Module] = {**known, "": model}

    def submodule(path: str) -> torch.nn.Module:
        module = found.get(path)
        if module is None:
            module = found[path] = model.get_submodule(path)
        return module

    return submodule


def _int_value(module: torch.nn.Module, name: str) -> int | None:
    value = getattr(module, name, None)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _guess_from_reads(
    module: torch.nn.Module,
    update: SizeUpdate,
    read: dict[str, int],
    guesses: dict[tuple[str, str], tuple[int, set[int]]],
) -> None:
    """The one attribute the forward read with the old value follows; two such, or none, are left alone."""
    # a name the role table knows is that role's, never another size that happens to be equal
    names = [
        n for n, v in read.items() if v == update.old and type(module.__dict__.get(n)) is int and n not in _ROLE_NAMED
    ]
    if len(names) != 1:
        return
    key = (update.module, names[0])
    guesses.setdefault(key, (update.old, set()))[1].add(update.new)


def _plan_split(module: torch.nn.Module, update: SizeUpdate, planned: dict[tuple[str, str], tuple[int, int]]) -> None:
    """A split piece's size follows when exactly one public int attribute of the module holds it.

    Two candidates (``key_dim`` and ``window`` both 8), or one already given another new value, are
    left alone: the re-trace after apply then names the module, and nothing is guessed.
    """
    names = [
        name
        for name, value in vars(module).items()
        if type(value) is int and value == update.old and not name.startswith("_")
    ]
    if len(names) != 1:
        return
    key = (update.module, names[0])
    if planned.get(key, (update.old, update.new))[1] == update.new:
        planned[key] = (update.old, update.new)


def _no_nested_tensors(model: torch.nn.Module, remember: Any) -> None:
    """Transformer encoders over a pruned attention stop packing padded batches into nested tensors.

    The fused path that takes them reads torch's own attention layout; a pruned attention runs
    its own forward on padded tensors (the mask does the rest, as it does in training).
    """
    for module in model.modules():
        if (
            isinstance(module, torch.nn.TransformerEncoder)
            and getattr(module, "use_nested_tensor", False)
            and any(isinstance(m, PrunedMultiheadAttention) for m in module.modules())
        ):
            remember(module)
            module.use_nested_tensor = False


def _update_config(model: torch.nn.Module, updates: list[SizeUpdate], remember: Any) -> None:
    """Config sizes follow when every reshape that had the config's value changed it the same way."""
    config = getattr(model, "config", None)
    if config is None:
        return
    changes: dict[str, tuple[int, int]] = {}
    for role, names in CONFIG_NAMES.items():
        for name in names:
            current = getattr(config, name, None)
            if current is None and name in _CONFIG_DEFAULTS:
                base, factor = _CONFIG_DEFAULTS[name]
                current = getattr(config, base, None)
                current = current * factor if isinstance(current, int) else None
            if not isinstance(current, int) or isinstance(current, bool):
                continue
            news = {u.new for u in updates if u.role == role and u.old == current}
            if len(news) == 1:
                changes[name] = (current, news.pop())
    if not changes:
        return
    remember(config)
    for name, (_, new) in changes.items():
        setattr(config, name, new)
    # modules that copied a config size into an attribute of the same name (an MLP's
    # ``intermediate_size``, a layer's ``hidden_size``) follow it, so they describe the model too
    for module in model.modules():
        mirrors = {
            name: new
            for name, (old, new) in changes.items()
            if type(module.__dict__.get(name)) is int and module.__dict__[name] == old
        }
        if mirrors:
            remember(module)
            module.__dict__.update(mirrors)
