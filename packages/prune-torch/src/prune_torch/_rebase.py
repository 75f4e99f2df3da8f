"""Re-applying a plan by names: the plan rebased onto the model's own trace, and the check after applying.

A saved plan names modules, tensors, axes and indices; its predicted activation shapes are keyed
by the value ids of the trace it was made from, which are trace positions. A freshly built model
can trace differently (a detection head builds its anchor grid on its first forward, a model that
already ran does not), so positions are never trusted across traces: the plan's entries are
mapped onto this model's groups by tensor name, the units they remove are read back, and the plan
is made again on this model's own graph. Its predictions then name this trace's values.

After applying, the model is traced again and compared with those predictions: every parameter
and buffer by name, the model outputs by position in the output structure, and every activation
the two traces share (ops matched in order by module and target, with inputs that correspond).
Values whose sizes come from the data (after non-maximum suppression, ``nonzero``, a boolean
mask, ``unique``) change with any weight and are never compared.

Framework-free (prune-graph and prune-ops only); ``ApplyError`` is the adapter's error type.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator

from prune_graph import Graph, Op, ValueId, ValueKind
from prune_ops import GroupSet, Plan, make_plan, removal_from_plan
from prune_torch._errors import ApplyError

__all__ = ["DATA_DEPENDENT", "compare", "data_sized", "rebase"]

# ops whose output sizes are read from tensor values, not from input sizes
DATA_DEPENDENT = frozenset(
    {
        "aten.nonzero",
        "aten.argwhere",
        "aten.masked_select",
        "aten._unique",
        "aten._unique2",
        "aten.unique_dim",
        "aten.unique_consecutive",
        "aten.unique_dim_consecutive",
        "aten.bincount",
        "aten.repeat_interleave",
        "aten.nonzero_numpy",
        "torchvision::nms",
        "torchvision::batched_nms",
    }
)
_MASK_DTYPES = ("bool", "uint8")


def _reads_data_for_size(graph: Graph, op: Op) -> bool:
    if op.target in DATA_DEPENDENT or op.target.endswith("nms"):
        return True
    # x[mask]: the number of rows kept is the number of true entries
    if op.target in ("aten.index", "aten.index_put", "aten._index_put_impl"):
        return any(graph.value(i).dtype in _MASK_DTYPES for i in op.inputs[1:])
    return False


# ops that take their sizes as plain ints: a count read from data (``len(boxes)``, ``expand_as(scores)``
# of a tensor that has no such dim) reaches them that way
_SIZED_BY_ARGUMENTS = frozenset(
    f"aten.{name}"
    for name in (
        "zeros",
        "ones",
        "empty",
        "full",
        "arange",
        "rand",
        "randn",
        "randint",
        "empty_strided",
        "new_zeros",
        "new_ones",
        "new_empty",
        "new_full",
        "new_empty_strided",
        "expand",
        "broadcast_to",
        "repeat",
        "view",
        "reshape",
        "_unsafe_view",
    )
)


def data_sized(graph: Graph) -> set[ValueId]:
    """Values whose sizes may depend on the data: outputs of data-dependent ops and everything computed from them.

    A count can also leave the data through Python (``torch.zeros(len(boxes), 256, 7, 7)`` in
    torchvision's RoI pooling; ``labels.view(1, -1).expand_as(scores)``): once a data-sized value
    exists, a tensor made or reshaped from plain sizes whose new first dim equals the first dim of a
    data-sized value (above 1) counts as data-sized too, and so does a stack of that many tensors
    (``torch.stack([paste(m) for m in masks])``: a Python list as long as the count).
    """
    tainted: set[ValueId] = set()
    counts: set[int] = set()  # first dims of data-sized values

    def taint(op: Op) -> None:
        tainted.update(op.outputs)
        counts.update(s[0] for s in (graph.shape(o) for o in op.outputs) if s and s[0] > 1)

    def from_count(op: Op) -> bool:
        if op.target == "aten.stack":
            # one tensor per detection, made from plain sizes and stacked (torchvision's pasted masks):
            # the number of tensors in the list is the count
            return len(op.inputs) in counts
        if op.target not in _SIZED_BY_ARGUMENTS:
            return False
        given = {graph.shape(i)[0] for i in op.inputs if graph.shape(i)}  # a first dim passed through
        firsts = [graph.shape(o)[0] for o in op.outputs if graph.shape(o)]
        return any(n in counts and n not in given for n in firsts)

    for op in graph.ops:
        if _reads_data_for_size(graph, op) or any(i in tainted for i in op.inputs) or (counts and from_count(op)):
            taint(op)
    return tainted


# ---------------------------------------------------------------------------------------- rebase


def rebase(graph: Graph, groups: GroupSet, plan: Plan) -> Plan:
    """``plan`` made again on ``graph`` (this model's trace), matched by tensor names.

    The units each group loses are read from the plan's entries and the plan is made again from
    them (:func:`prune_ops.removal_from_plan`); it must give back exactly the same entries. The
    result's predicted shapes name ``graph``'s values, and its fingerprints are ``graph``'s. Done for
    every plan, also one made on an identical trace: the predicted shapes of a saved or composed
    plan are never trusted by position.
    """
    return make_plan(graph, removal_from_plan(graph, groups, plan))


# --------------------------------------------------------------------------------------- compare


def _key(op: Op) -> tuple[str, str, str]:
    return (op.owner, op.target, op.kind.value)


def _pairs(before: Graph, after: Graph) -> Iterator[tuple[Op, Op]]:
    """Ops of the two traces that are the same op: in order, same module, target and kind."""
    a = [_key(op) for op in before.ops]
    b = [_key(op) for op in after.ops]
    if a == b:
        yield from zip(before.ops, after.ops)
        return
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    for i, j, size in matcher.get_matching_blocks():
        for k in range(size):
            yield before.ops[i + k], after.ops[j + k]


def _same_inputs(before: Graph, old: Op, new: Op, image: dict[ValueId, ValueId]) -> bool:
    if len(old.inputs) != len(new.inputs) or len(old.outputs) != len(new.outputs):
        return False
    for x, y in zip(old.inputs, new.inputs):
        kind = before.value(x).kind
        if kind is ValueKind.CONSTANT:
            continue  # a tensor made outside the traced ops (a cached grid, a literal): no identity to follow
        if image.get(x) != y:
            return False
    return True


def _cause(module: str, old: tuple[int, ...], want: tuple[int, ...], got: tuple[int, ...]) -> str:
    where = module or "the model"
    if got == old:
        return (
            f"{where} kept its size from before pruning: a size is probably kept in an attribute of {where} "
            "(or computed in its code) that pruning could not update"
        )
    if want == old:
        return (
            f"the plan leaves this value unchanged, but {where} computes its size from a pruned size "
            "(a width read from a tensor, or a size attribute that changed); its code cannot follow this plan"
        )
    return f"a size is probably kept in an attribute of {where} (or written in its code) that pruning could not update"


def compare(before: Graph, after: Graph, plan: Plan) -> None:
    """Every comparable shape of the re-trace ``after`` must be ``plan``'s prediction on ``before``.

    ``plan`` must be made on ``before`` (see :func:`rebase`). Raises ``ApplyError`` naming the
    module that disagrees.
    """
    expected = plan.new_shapes()
    skip = data_sized(before)

    def want(value: ValueId) -> tuple[int, ...]:
        return tuple(expected.get(value, before.shape(value)))

    after_state = {v.path: v for v in after.values if v.is_state and v.kind is not ValueKind.VIRTUAL}
    for value in before.values:
        if not value.is_state or value.kind is ValueKind.VIRTUAL or value.path not in after_state:
            continue
        got = after_state[value.path].shape
        if got != want(value.id):
            raise ApplyError(
                f"after pruning, {value.path} has shape {got} where the plan predicted {want(value.id)}. "
                "The model was restored.",
                value.owner,
            )
    image: dict[ValueId, ValueId] = {}
    for value in before.values:
        if value.is_state and value.path in after_state:
            image[value.id] = after_state[value.path].id
    for x, y in zip(before.inputs, after.inputs):
        image[x] = y
    for old, new in _pairs(before, after):
        if not _same_inputs(before, old, new, image):
            continue
        for x, y in zip(old.outputs, new.outputs):
            image[x] = y
            if x in skip:
                continue
            got = after.shape(y)
            if got != want(x):
                cause = _cause(new.owner, before.shape(x), want(x), got)
                raise ApplyError(
                    f"after pruning, {new.target} in module {new.owner or '<root>'} produced shape {got} where "
                    f"the plan predicted {want(x)}; {cause}. The model was restored.",
                    new.owner,
                )
    if len(before.outputs) != len(after.outputs) and not any(x in skip for x in before.outputs):
        raise ApplyError(
            f"after pruning, the model returns {len(after.outputs)} tensors where it returned "
            f"{len(before.outputs)}. The model was restored."
        )
    for position, (x, y) in enumerate(zip(before.outputs, after.outputs)):
        if x in skip:
            continue
        if after.shape(y) != want(x):
            module = after.value(y).owner
            raise ApplyError(
                f"after pruning, model output {position} (written by {module or '<root>'}) has shape "
                f"{after.shape(y)} where the plan predicted {want(x)}. The model was restored.",
                module,
            )
