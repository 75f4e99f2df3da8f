"""Sparse training: a group-lasso penalty over the groups of a model ("train sparse, then prune")."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from prune_ops import Group, PruningError
from prune_torch._trace import ExampleInputs
from prune_torch._traced import trace_model

__all__ = ["GroupLasso"]


class GroupLasso:
    """``strength · Σ_groups Σ_units ‖unit's weights over all members‖₂``, to add to a training loss.

    Units driven to zero are exactly what ``importance="group_l2"`` ranks lowest afterwards.

    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    >>> penalty = GroupLasso(model, torch.randn(1, 4), strength=1e-3)
    >>> float(penalty()) > 0
    True
    """

    def __init__(
        self, model: torch.nn.Module, example_inputs: ExampleInputs, strength: float = 1e-4, ignore: Iterable[str] = ()
    ) -> None:
        if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not math.isfinite(strength):
            raise PruningError(f"GroupLasso: 'strength' must be a finite number >= 0 (got {strength!r})")
        if strength < 0:
            raise PruningError(
                f"GroupLasso: 'strength' must be >= 0; a negative penalty rewards large weights (got {strength!r})"
            )
        if not isinstance(model, torch.nn.Module):
            raise PruningError(f"GroupLasso needs an nn.Module (got {type(model).__name__})")
        if isinstance(ignore, str) or any(not isinstance(path, str) for path in ignore):
            raise PruningError(f"GroupLasso: 'ignore' must be a list of module paths (got {ignore!r})")
        self.model = model
        self.strength = float(strength)
        graph = trace_model(model, example_inputs)
        self.terms: list[tuple[int, list[tuple[str, str, int, torch.Tensor, torch.Tensor]]]] = []
        for group in graph.groups(tuple(ignore)).prunable:
            self.terms.append((group.size, self._members(group)))

    @staticmethod
    def _members(group: Group) -> list[tuple[str, str, int, torch.Tensor, torch.Tensor]]:
        found = []
        for member in group.parameters:
            if member.value.kind.value != "parameter":
                continue
            valid = torch.as_tensor(member.units >= 0)
            units = torch.as_tensor(member.units[member.units >= 0], dtype=torch.long)
            found.append((member.value.owner, member.value.name, member.dim.dim, valid, units))
        return found

    def __call__(self) -> torch.Tensor:
        total: torch.Tensor | None = None
        for size, members in self.terms:
            squares: torch.Tensor | None = None
            for module_path, name, axis, valid, units in members:
                module = self.model.get_submodule(module_path) if module_path else self.model
                weight = getattr(module, name)
                rows = weight.movedim(axis, 0).reshape(weight.shape[axis], -1)
                per_index = (rows[valid.to(weight.device)] ** 2).sum(dim=1)
                part = torch.zeros(size, dtype=weight.dtype, device=weight.device)
                part = part.index_add(0, units.to(weight.device), per_index)
                squares = part if squares is None else squares + part
            if squares is not None:
                term = torch.sqrt(squares + 1e-12).sum()
                total = term if total is None else total + term
        if total is None:
            return torch.zeros(())
        return self.strength * total
