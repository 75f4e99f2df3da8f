"""Mixing: which dims an op reads as a whole, and which groups that makes approximate.

A group whose channels pass through a reduction, softmax, cumulative op or normalisation over
their dim is *approximate*: after pruning, the kept channels take other values than in the
silenced original. Normalisation layers are the accepted case (pruning across LayerNorm,
RMSNorm and GroupNorm is what ConvNeXt, Swin, UNet and transformer pruning does); any other
mixing leaves the group alone unless the caller asks for approximate pruning.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import attrs

from prune_graph import Coupling, DimRef, Graph, Mix, Mixing, Op, OpId, OpKind, ValueKind

__all__ = ["MixNote", "mixing_blocker", "mixing_of", "normalisation_modules"]

# ops a normalisation layer written with plain tensor ops is made of (an RMSNorm: pow, mean, rsqrt, mul)
_NORM_BODY = frozenset({OpKind.REDUCE, OpKind.ELEMENTWISE, OpKind.EXPAND, OpKind.RESHAPE, OpKind.NORM, OpKind.CONSTANT})


@attrs.frozen
class MixNote:
    """One op that mixes a group's channels: how, which op, in which module."""

    how: Mixing
    target: str
    module: str
    op: OpId | None = None

    def __str__(self) -> str:
        return f"{self.how.value} ({self.target}) in {self.module or '<root>'}"


def normalisation_modules(graph: Graph) -> dict[str, int]:
    """Modules that look like a normalisation layer, with the size of the dim they normalise.

    Recognised by structure, not by class name: the module's own ops are reductions and
    elementwise arithmetic only, and it owns one or two 1-D parameters of one size (a scale and
    maybe a shift). That covers the RMSNorm and LayerNorm classes of transformers and timm that
    compute their statistics with ``pow``/``mean``/``rsqrt``.
    """
    return _normalisation_modules(graph, None)


def _normalisation_modules(graph: Graph, among: Collection[str] | None) -> dict[str, int]:
    """:func:`normalisation_modules`, looking only at the modules ``among`` (all with ``None``)."""
    kinds: dict[str, set[OpKind]] = {}
    for op in graph.ops:
        owner = op.owner
        if owner and (among is None or owner in among):
            kinds.setdefault(owner, set()).add(op.kind)
    if not kinds:
        return {}
    parameter = ValueKind.PARAMETER  # looked up once: an enum member is a slow class attribute
    params: dict[str, list[tuple[int, ...]]] = {}
    for value in graph.values:
        if value.owner in kinds and value.kind is parameter:
            params.setdefault(value.owner, []).append(value.shape)
    found = {}
    for module, shapes in params.items():
        if not kinds[module] <= _NORM_BODY or OpKind.REDUCE not in kinds[module]:
            continue
        if len(shapes) <= 2 and all(len(s) == 1 for s in shapes) and len({s[0] for s in shapes}) == 1:
            found[module] = shapes[0][0]
    return found


def _note(graph: Graph, mix: Mix, op: Op | None, norms: dict[str, int]) -> MixNote:
    how = mix.how
    module = op.owner if op is not None else ""
    if how is Mixing.REDUCTION and op is not None and norms.get(module) == graph.dim_size(mix.dim):
        how = Mixing.NORMALISATION
    return MixNote(how, op.target if op is not None else "?", module, mix.op)


def mixing_of(graph: Graph, couplings: Sequence[Coupling]) -> dict[DimRef, tuple[MixNote, ...]]:
    """Every dim some op mixes, with the ops that mix it."""
    mixes = [c for c in couplings if isinstance(c, Mix)]
    if not mixes:
        return {}
    ops = {op.id: op for op in graph.ops}
    mixing_ops = [ops.get(c.op) if c.op is not None else None for c in mixes]
    # only a reduction may turn out to be a normalisation layer's: only its module is looked at
    reducing = {op.owner for c, op in zip(mixes, mixing_ops) if op is not None and c.how is Mixing.REDUCTION}
    norms = _normalisation_modules(graph, reducing) if reducing else {}
    found: dict[DimRef, list[MixNote]] = {}
    for c, op in zip(mixes, mixing_ops):
        note = _note(graph, c, op, norms)
        notes = found.setdefault(c.dim, [])
        if note not in notes:
            notes.append(note)
    return {dim: tuple(notes) for dim, notes in found.items()}


def mixing_blocker(mixing: Sequence[MixNote], approximate: bool | None) -> str | None:
    """Why a group with these mixing ops is left alone, or ``None`` when it may be pruned.

    ``approximate=None`` (the default policy) accepts normalisation layers only; ``True``
    accepts every mixing op; ``False`` none.
    """
    if not mixing or approximate is True:
        return None
    refused = [n for n in mixing if approximate is False or n.how is not Mixing.NORMALISATION]
    if not refused:
        return None
    listed = "; ".join(str(n) for n in refused[:3]) + (f" and {len(refused) - 3} more" if len(refused) > 3 else "")
    return f"pruning would change the kept channels' values: mixed by {listed} (pass approximate=True to prune anyway)"
