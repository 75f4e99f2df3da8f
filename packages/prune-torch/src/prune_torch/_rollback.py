"""A whole-model snapshot that a multi-step prune puts back when anything fails on the way."""

from __future__ import annotations

from typing import Any

import attrs
import torch

__all__ = ["ModelState"]

_CONTAINERS = ("_parameters", "_buffers", "_modules")


def _shallow(value: Any) -> Any:
    """Lists and dicts a prune may append to (the applied-plan history) are copied; the rest kept by reference."""
    if type(value) in (list, dict):
        return type(value)(value)
    return value


def _clone(tensor: torch.Tensor | None, clone: bool) -> torch.Tensor | None:
    return tensor.detach().clone() if clone and tensor is not None else tensor


@attrs.define
class ModelState:
    """The modules, tensors, configs and optimiser state of a model at one moment.

    ``clone=True`` copies every tensor (needed when code in between trains the model in place,
    such as a ``between_steps`` fine-tuning hook); otherwise tensors are kept by reference, which
    is enough when only :func:`prune_torch.apply` runs in between (it replaces tensors, never
    writes into them).
    """

    modules: list[tuple[torch.nn.Module, dict[str, Any], tuple[dict[str, Any], ...]]]
    tensors: list[tuple[torch.nn.Parameter, torch.Tensor, torch.Tensor | None]]
    configs: list[tuple[Any, dict[str, Any]]]
    optimizer: torch.optim.Optimizer | None
    optimizer_state: dict[Any, dict[str, Any]]
    optimizer_groups: list[dict[str, Any]]
    # a pruned nn.MultiheadAttention changes class (prune_torch._mha)
    classes: list[tuple[torch.nn.Module, type]] = attrs.field(factory=list)

    @classmethod
    def capture(
        cls, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None, *, clone: bool = False
    ) -> ModelState:
        """Remember ``model`` (and ``optimizer``) as they are now."""
        modules = []
        tensors = []
        configs = []
        seen_configs: set[int] = set()
        for module in model.modules():
            containers = tuple(dict(module.__dict__[name]) for name in _CONTAINERS)
            saved = {k: _shallow(v) for k, v in module.__dict__.items() if k not in _CONTAINERS}
            if clone:
                containers = (containers[0], {k: _clone(v, True) for k, v in containers[1].items()}, containers[2])
            modules.append((module, saved, containers))
            for param in module._parameters.values():
                if param is not None:
                    tensors.append((param, _clone(param.data, clone), _clone(param.grad, clone)))  # type: ignore[arg-type]
            config = module.__dict__.get("config")
            if config is not None and hasattr(config, "__dict__") and id(config) not in seen_configs:
                seen_configs.add(id(config))
                configs.append((config, {k: _shallow(v) for k, v in vars(config).items()}))
        state: dict[Any, dict[str, Any]] = {}
        groups: list[dict[str, Any]] = []
        if optimizer is not None:
            for param, values in optimizer.state.items():
                state[param] = {
                    k: (v.detach().clone() if isinstance(v, torch.Tensor) else _shallow(v)) for k, v in values.items()
                }
            groups = [{k: _shallow(v) for k, v in group.items()} for group in optimizer.param_groups]
        classes = [(module, type(module)) for module in model.modules()]
        return cls(modules, tensors, configs, optimizer, state, groups, classes)

    def restore(self) -> None:
        """Put everything back exactly (the same ``nn.Parameter`` objects, with their old data)."""
        from prune_torch._apply import set_data

        for module, cls in self.classes:
            if type(module) is not cls:
                module.__class__ = cls
        for module, saved, containers in self.modules:
            for name, content in zip(_CONTAINERS, containers):
                target = module.__dict__[name]
                target.clear()
                target.update(content)
            for key in [k for k in module.__dict__ if k not in _CONTAINERS and k not in saved]:
                del module.__dict__[key]
            module.__dict__.update({k: _shallow(v) for k, v in saved.items()})
        with torch.no_grad():
            for param, data, grad in self.tensors:
                if param.data is not data:
                    set_data(param, data)
                param.grad = grad
        for config, values in self.configs:
            for key in [k for k in vars(config) if k not in values]:
                delattr(config, key)
            vars(config).update({k: _shallow(v) for k, v in values.items()})
        if self.optimizer is not None:
            self.optimizer.state.clear()
            for param, values in self.optimizer_state.items():
                self.optimizer.state[param] = {k: _shallow(v) for k, v in values.items()}
            for group, saved_group in zip(self.optimizer.param_groups, self.optimizer_groups):
                group.clear()
                group.update({k: _shallow(v) for k, v in saved_group.items()})
