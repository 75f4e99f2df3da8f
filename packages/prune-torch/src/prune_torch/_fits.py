"""Applying what the model's code can follow: the groups a module's code cannot follow are found and left alone.

A module may keep a size where no plan can update it (``assert x.shape[1] == 16``, ``view(-1, 16)``,
an int the forward reads under a name nobody can guess). ``apply`` then fails, restores the model and
names the module that was running. Every group touching that module is a suspect; when there are
several, a bisection over them (each try a full ``apply``, rolled back when it succeeds) finds the
one whose change breaks the module, in ``ceil(log2(suspects))`` tries, so a group that merely passes
through the module (its output channels) is still pruned. A failure in the model's own code (the
root module, or no module named) makes every chosen group a suspect: the same bisection.

Each failure names one module, the first that breaks in forward order: a model with the same
broken code in k blocks costs k failed applies before the one that fits, never a group search.

A failure the suspects do not cause (the other groups alone break the module) is raised. That is
checked only when the same module fails again after a culprit was left alone there, not after every
bisection: the check is an apply that usually gets past the module, so it runs the whole model
(tens of seconds on a detector), where a failing try stops at the module.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np

from prune_graph import Graph
from prune_ops import Group, Plan, make_plan, removal_of
from prune_torch._apply import apply_accepting
from prune_torch._errors import ApplyError, SizeConstantError, forget_frames
from prune_torch._rollback import ModelState
from prune_torch._trace import ExampleInputs

__all__ = ["Fit", "apply_what_fits"]

Chosen = Sequence[tuple[Group, np.ndarray]]
_NOWHERE = "\0no module"  # no culprit found yet (``None`` and ``""`` name the model's own code)


@attrs.frozen
class Fit:
    """What ``apply_what_fits`` applied, what it left alone and why, and what finding that cost.

    Each note in ``skipped`` names a group left alone, the module whose code could not follow it,
    and the applies and seconds spent finding it. ``applies`` counts every call of ``apply`` (the
    one that fitted included); ``tries`` the extra ones: failed applies and bisection tries.
    ``seconds`` is the time of all of them.
    """

    plan: Plan
    applied: tuple[tuple[Group, np.ndarray], ...]
    skipped: tuple[str, ...]
    applies: int
    seconds: float
    # groups pruned although the model computes a number from their size (``accept_constants``), with why
    approximate: tuple[tuple[Group, str], ...] = ()

    @property
    def tries(self) -> int:
        """Applies beyond the one that fitted."""
        return self.applies - 1

    @property
    def cost_note(self) -> str | None:
        """The total cost in one line, when groups were left alone (``None`` otherwise)."""
        if not self.skipped:
            return None
        return (
            f"finding the group(s) the model's code cannot follow took {self.tries} extra apply(s) "
            f"(traces) and {self.seconds:.1f} s"
        )


def _inside(module: str, path: str) -> bool:
    return path == "" or module == path or module.startswith(path + ".")


def _touches(group: Group, path: str) -> bool:
    return any(_inside(m.value.owner, path) for m in group.members)


def _reason(error: ApplyError) -> str:
    return str(error).splitlines()[0][:200]


def apply_what_fits(
    model: Any,
    graph: Graph,
    plan: Plan,
    chosen: Chosen,
    example_inputs: ExampleInputs,
    accept_constants: bool = False,
    **apply_options: Any,
) -> Fit:
    """Apply ``plan`` (made on ``graph`` from ``chosen``); leave alone the groups the model's code cannot follow.

    ``apply_options`` go to every ``apply`` call (``traced=graph`` spares each its own trace and
    group search). Returns the plan that was applied, the groups it pruned and a note per group
    left alone. A group whose size the model turns into a number (:class:`SizeConstantError`) is
    left alone too, unless ``accept_constants``: then it is pruned and listed in ``approximate``. Raises the
    ``ApplyError`` when no group can be blamed (the failure does not depend on the chosen groups).

    Example::

        fit = apply_what_fits(model, graph, plan, chosen, x)
        print(fit.skipped, fit.cost_note)
    """
    active = [(g, u) for g, u in chosen if len(u)]
    notes: list[str] = []
    approximate: list[tuple[Group, str]] = []
    counter = _Counter(model, graph, example_inputs, apply_options)
    start = time.perf_counter()
    found, since = 0, start  # applies and time when the last culprit was found
    last: str | None = _NOWHERE  # the module where the last culprit was found
    while True:
        error = counter.attempt(plan)
        if error is None:
            seconds = time.perf_counter() - start
            kept = [(g, why) for g, why in approximate if any(g is a for a, _ in active)]
            return Fit(plan, tuple(active), tuple(notes), counter.applies, seconds, tuple(kept))
        where = error.module
        if where is None:
            suspects = list(active)
        else:
            suspects = [(g, u) for g, u in active if _touches(g, where)]
        if not suspects:
            raise error
        others = [(g, u) for g, u in active if not any(g is s for s, _ in suspects)]
        # the same module failing again: first make sure the failure depends on the suspects at all
        # (checked here, not after every bisection: a try that gets past the module runs the whole model)
        if where == last and others and counter.fails_at(others, where):
            raise error
        group = _bisect(counter, others, suspects, where)[0]
        last = where
        forget_frames(error)  # read for its message only from here: its frames would keep a forward alive
        if accept_constants and isinstance(error, SizeConstantError):
            counter.accepted |= {error.change.key}
            approximate.append((group, error.change.describe()))
            found, since = counter.applies, time.perf_counter()
            continue
        active = [(g, u) for g, u in active if g is not group]
        cost = f"found in module {where or '<root>'} with {counter.applies - found} apply(s), {time.perf_counter() - since:.1f} s"
        notes.append(f"{group.name} left unpruned: {_reason(error)} [{cost}]")
        found, since = counter.applies, time.perf_counter()
        plan = counter.plan_of(active)


@attrs.define
class _Counter:
    """Calls ``apply``, counting the calls; a try that fits is rolled back."""

    model: Any
    graph: Graph
    example_inputs: ExampleInputs
    options: dict[str, Any]
    applies: int = 0
    accepted: frozenset[Any] = frozenset()  # calls whose numbers may change (see ConstantChange.key)

    def plan_of(self, chosen: Chosen) -> Plan:
        return make_plan(self.graph, removal_of(self.graph, chosen))

    def attempt(self, plan: Plan) -> ApplyError | None:
        self.applies += 1
        try:
            apply_accepting(self.model, plan, self.example_inputs, accepted=self.accepted, **self.options)
        except ApplyError as error:
            return error
        return None

    def fails_at(self, chosen: Chosen, where: str | None) -> bool:
        """Whether applying ``chosen`` fails in module ``where`` (the model is left as it was either way)."""
        state = ModelState.capture(self.model)
        error = self.attempt(self.plan_of(chosen))
        if error is None:
            state.restore()
            return False
        forget_frames(error)
        return error.module == where


def _bisect(counter: _Counter, others: Chosen, suspects: Chosen, where: str | None) -> tuple[Group, Any]:
    """The first suspect whose change (with ``others`` and the suspects before it) makes ``where`` fail.

    Applying ``others`` with every suspect fails at ``where``; a failure there is taken to grow
    with the groups applied (one more group never un-breaks a module), so the smallest failing
    prefix of the suspects ends with a culprit. When ``others`` alone fail there already, that is
    the first suspect, wrongly: the next apply, without it, fails at ``where`` again, and
    ``apply_what_fits`` then tries ``others`` alone and raises.
    """
    if len(suspects) == 1:
        return suspects[0]
    low, high = 0, len(suspects)  # the prefix of ``low`` suspects does not fail at ``where``, of ``high`` does
    while high - low > 1:
        middle = (low + high) // 2
        if counter.fails_at([*others, *suspects[:middle]], where):
            high = middle
        else:
            low = middle
    return suspects[high - 1]
