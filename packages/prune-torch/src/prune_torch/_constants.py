"""Numbers a forward computes from sizes: found by comparing the plain numbers of two runs.

A model can turn a width into a number in Python, where no trace sees where it came from:
``corr / sqrt(torch.tensor(C))`` with ``C`` read from ``x.shape`` (torchvision RAFT),
``q * q.shape[-1] ** -0.5``, ``torch.arange(C) / C``. Pruning that width changes the number, so the
pruned model no longer computes what the silenced original computes, and no coupling rule can
tell. What the dispatcher does see is the number itself, as an argument of the aten call that
uses it. So each run keeps the plain numbers of its calls: every number of a pointwise op
(``aten.div.Tensor(x, 4.0)``), every float of any other op (an explicit attention ``scale``), the
values of small tensors made from Python data (``torch.tensor(C)``) and fill values. After a
prune the re-run must use the same numbers at the same calls; a number that changed was computed
from a pruned size.

Sizes, dims and indices are ints of non-pointwise ops (``view``, ``split``, ``arange``) and are
checked as shapes, not here. A number that follows a read of tensor values into Python
(``.item()``, ``bool(t)``, ``torch.equal``) may come from the data, which pruning changes
legitimately (the original runs unsilenced); such numbers are not compared.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch

__all__ = ["Constant", "ConstantChange", "changed_constant", "constants_of", "reads_data", "same_numbers"]

_LIFTS = frozenset({"lift_fresh", "lift_fresh_copy"})
_FILLS = {"scalar_tensor": 0, "full": 1, "fill": 1, "fill_": 1, "new_full": 2, "full_like": 1}
_DATA_READS = frozenset({"_local_scalar_dense", "equal", "is_nonzero"})
_SMALL = 64  # a tensor made from Python data is compared by value up to this many elements

_FLOATS = ("float", "number")  # schema types that take a float: float, Optional[float], Scalar ...

# per overload: 0 nothing to keep, 1 pointwise (every number), 2 any other op (floats only), 3 lift, 4 fill at an index, 5 data read
_KINDS: dict[Any, tuple[int, int]] = {}


def _arguments(func: Any) -> tuple[Any, ...]:
    schema = getattr(func, "_schema", None)
    return tuple(schema.arguments) if schema is not None else ()


def _kind(func: Any) -> tuple[int, int]:
    kind = _KINDS.get(func)
    if kind is None:
        name = func.overloadpacket.__name__ if hasattr(func, "overloadpacket") else ""
        if name in _DATA_READS:
            kind = (5, 0)
        elif name in _LIFTS:
            kind = (3, 0)
        elif name in _FILLS:
            kind = (4, _FILLS[name])
        elif torch.Tag.pointwise in getattr(func, "tags", ()):
            kind = (1, 0)  # a Python number can arrive as any argument, a Tensor one included (x / 4.0)
        elif any(t in str(a.type) for a in _arguments(func) for t in _FLOATS):
            kind = (2, 0)
        else:
            kind = (0, 0)  # no argument can be a float: nothing to keep
        _KINDS[func] = kind
    return kind


def _number(x: Any, ints: bool) -> bool:
    kind = type(x)
    return kind is float or (ints and kind is int)


def constants_of(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """The plain numbers of one aten call that a size could have become (empty for most calls)."""
    kind, at = _kind(func)
    if kind == 0:
        return ()
    if kind == 3:
        t = args[0] if args else None
        if isinstance(t, torch.Tensor) and t.device.type == "cpu" and t.numel() <= _SMALL:
            return tuple(t.reshape(-1).tolist())
        return ()
    if kind == 5:
        return ()
    if kind == 4:
        value = args[at] if len(args) > at else kwargs.get("fill_value", kwargs.get("value"))
        return (value,) if _number(value, True) else ()
    if kind == 1:
        found = [a for a in args if type(a) is float or type(a) is int]
        if kwargs:
            found += [v for v in kwargs.values() if type(v) is float or type(v) is int]
    else:
        found = [a for a in args if type(a) is float]
        if kwargs:
            found += [v for v in kwargs.values() if type(v) is float]
    return tuple(found)


def reads_data(func: Any) -> bool:
    """Whether the call hands tensor values to Python (``.item()``, ``bool(t)``, ``torch.equal``)."""
    return _kind(func)[0] == 5


@attrs.frozen
class Constant:
    """The numbers of one call: its position in the run, the module running, the op, and whether data came first."""

    position: int
    module: str
    func: Any
    values: tuple[Any, ...]
    after_data: bool
    line: str | None = None

    @property
    def op(self) -> str:
        return str(self.func).replace("aten::", "aten.").removesuffix(".default")


@attrs.frozen
class ConstantChange:
    """A number the pruned model computes differently: the calls before and after."""

    before: Constant
    after: Constant
    key: tuple[str, Any, int]

    @property
    def module(self) -> str:
        return self.after.module

    def describe(self) -> str:
        where = f" ({self.after.line})" if self.after.line else ""
        return (
            f"a number derived from a pruned size changed: {self.after.op} in module {self.module or '<root>'}{where} "
            f"computes with {_show(self.before.values)} before pruning and {_show(self.after.values)} after "
            "(a size read in Python, such as x.shape[1] ** 0.5), so the pruned model no longer computes what "
            "the silenced original computes"
        )


def _show(values: tuple[Any, ...]) -> str:
    shown = ", ".join(f"{v:.6g}" if isinstance(v, float) else str(v) for v in values[:6])
    return shown + (", ..." if len(values) > 6 else "")


def same_numbers(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    """Whether two calls used the same numbers (NaN equals NaN)."""
    return len(a) == len(b) and all(x == y or (x != x and y != y) for x, y in zip(a, b))  # NaN equals NaN


def _keyed(constants: tuple[Constant, ...]) -> dict[tuple[str, Any, int], Constant]:
    """Each call's numbers by (module, op, occurrence of that op in that module): stable across traces."""
    seen: dict[tuple[str, Any], int] = {}
    keyed = {}
    for c in constants:
        n = seen.get((c.module, c.func), 0)
        seen[(c.module, c.func)] = n + 1
        keyed[(c.module, c.func, n)] = c
    return keyed


def changed_constant(
    before: tuple[Constant, ...], after: tuple[Constant, ...], accepted: frozenset[tuple[str, Any, int]] = frozenset()
) -> ConstantChange | None:
    """The first call (in run order) whose numbers differ between two runs of one model; ``None`` if none.

    Calls are matched by module, op and occurrence (the change's ``key``), so two traces that
    differ elsewhere (a detection head that caches its anchors) still line up. Numbers after a read
    of data are not compared, nor the calls whose keys are ``accepted``.
    """
    old = _keyed(before)
    for key, new in _keyed(after).items():
        was = old.get(key)
        if was is None or was.after_data or new.after_data or key in accepted:
            continue
        if not same_numbers(was.values, new.values):
            return ConstantChange(was, new, key)
    return None
