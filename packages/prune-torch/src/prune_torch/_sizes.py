"""Size attributes that models keep outside their tensors (``num_heads``, ``head_dim`` ...).

Attention modules reshape a projection of width C into heads × head dims with sizes read from
attributes. After a plan changes such a reshape, the attributes of the module that runs it are
updated by role: the first factor is a head count, the last a head dim, the whole a width. Only
attributes with a known name and the old value change; the model config follows where every
layer changed the same way. Anything else is caught by the re-trace after apply, which names
the module.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from typing import Any

import attrs
import torch

from prune_graph import Graph, OpKind, reshape_groups
from prune_ops import Plan
from prune_torch._errors import ApplyError

__all__ = ["ROLE_NAMES", "SizeUpdate", "size_updates", "update_sizes"]

ROLE_NAMES: Mapping[str, frozenset[str]] = types.MappingProxyType(
    {
        "heads": frozenset(
            {"num_heads", "num_attention_heads", "n_head", "n_heads", "num_key_value_heads", "num_kv_heads"}
        ),
        "head_dim": frozenset({"head_dim", "attention_head_size", "head_size", "dim_head"}),
        "width": frozenset({"all_head_size", "embed_dim", "inner_dim", "split_size", "hidden_size", "kdim", "vdim"}),
        "hidden": frozenset(),
    }
)

_CONFIG_NAMES: Mapping[str, frozenset[str]] = types.MappingProxyType(
    {
        "heads": frozenset({"num_attention_heads", "n_head", "num_heads", "num_key_value_heads", "num_kv_heads"}),
        "head_dim": frozenset({"head_dim"}),
        "hidden": frozenset({"hidden_size", "n_embd", "d_model", "embed_dim"}),
    }
)


@attrs.frozen
class SizeUpdate:
    """A dim of role ``role`` changed from ``old`` to ``new`` in a reshape run by ``module``."""

    module: str
    role: str
    old: int
    new: int


def size_updates(graph: Graph, plan: Plan) -> list[SizeUpdate]:
    """Role-tagged size changes: reshapes into (or out of) heads × head dims, and dims normalised together (hidden)."""
    shapes = plan.new_shapes()
    found: list[SizeUpdate] = []
    for op in graph.ops:
        normalised = ()
        if op.kind is OpKind.NORM and op.attr("mixes", False):
            normalised = op.ints_attr("channel_dims")
        elif op.kind is OpKind.REDUCE:
            normalised = op.ints_attr("dims")
        x = op.inputs[0] if op.inputs else None
        if normalised and x in shapes:
            for d in normalised:
                old, new = graph.shape(x)[d], shapes[x][d]
                if old != new:
                    found.append(SizeUpdate(op.module, "hidden", old, new))
        if op.kind is not OpKind.RESHAPE:
            continue
        x, y = op.inputs[0], op.outputs[0]
        if x not in shapes and y not in shapes:
            continue
        xs, ys = graph.shape(x), graph.shape(y)
        new_x, new_y = shapes.get(x, xs), shapes.get(y, ys)
        for left, right in reshape_groups(xs, ys):
            if len(left) == 1 and len(right) == 2:
                fine, parts = (xs[left[0]], new_x[left[0]]), [(ys[d], new_y[d]) for d in right]
            elif len(right) == 1 and len(left) == 2:
                fine, parts = (ys[right[0]], new_y[right[0]]), [(xs[d], new_x[d]) for d in left]
            else:
                continue
            for role, (old, new) in (("width", fine), ("heads", parts[0]), ("head_dim", parts[1])):
                if old != new:
                    found.append(SizeUpdate(op.module, role, old, new))
    return found


def update_sizes(model: torch.nn.Module, updates: list[SizeUpdate], remember: Any) -> None:
    """Set the matching attributes of each module and, where uniform, of ``model.config``.

    ``remember(obj)`` is called before an object's attributes change, so the caller can restore them.
    """
    planned: dict[tuple[str, str], tuple[int, int]] = {}
    for update in updates:
        module = model.get_submodule(update.module) if update.module else model
        for name in ROLE_NAMES[update.role]:
            value = getattr(module, name, None)
            if isinstance(value, int) and not isinstance(value, bool) and value == update.old:
                key = (update.module, name)
                if key in planned and planned[key][1] != update.new:
                    raise ApplyError(
                        f"module {update.module or '<root>'}: attribute {name!r} would need two new values "
                        f"({planned[key][1]} and {update.new}); prune heads and head dims uniformly"
                    )
                planned[key] = (update.old, update.new)
    touched: set[int] = set()
    for (path, name), (_old, new) in planned.items():
        module = model.get_submodule(path) if path else model
        if id(module) not in touched:
            remember(module)
            touched.add(id(module))
        setattr(module, name, new)
    _update_config(model, updates, remember)


def _update_config(model: torch.nn.Module, updates: list[SizeUpdate], remember: Any) -> None:
    """Config sizes follow when every reshape that had the config's value changed it the same way."""
    config = getattr(model, "config", None)
    if config is None:
        return
    changes: dict[str, int] = {}
    for role, names in _CONFIG_NAMES.items():
        for name in names:
            current = getattr(config, name, None)
            if not isinstance(current, int) or isinstance(current, bool):
                continue
            news = {u.new for u in updates if u.role == role and u.old == current}
            if len(news) == 1:
                changes[name] = news.pop()
    if changes:
        remember(config)
        for name, value in changes.items():
            setattr(config, name, value)
