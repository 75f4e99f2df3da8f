"""Resolving a model spec from the command line: ``package.module:factory`` or a known model name."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import torch

from prune_ops import PruningError

__all__ = ["SpecError", "build_model", "parse_shape"]


class SpecError(PruningError):
    """A model spec, shape or option given on the command line is not usable."""


def _factory(spec: str) -> Callable[..., Any]:
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise SpecError(f"cannot import {module_name!r} from model spec {spec!r}: {error}") from error
    target: Any = module
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise SpecError(f"module {module_name!r} has no {attr!r} (model spec {spec!r})") from None
    if not callable(target):
        raise SpecError(f"{spec!r} is not callable; give a function or class that returns an nn.Module")
    return target  # type: ignore[no-any-return]


def _named(spec: str) -> Callable[..., Any] | None:
    """A torchvision or transformers model by name, when those libraries are installed."""
    try:
        import torchvision

        if spec in torchvision.models.list_models():
            return lambda: torchvision.models.get_model(spec, weights=None)
    except ImportError:
        pass
    return None


def build_model(spec: str) -> torch.nn.Module:
    """Call the factory named by ``spec`` (``package.module:function``, or a torchvision model name)."""
    if ":" in spec:
        factory = _factory(spec)
    else:
        named = _named(spec)
        if named is None:
            raise SpecError(
                f"model spec {spec!r} is neither 'package.module:factory' nor a known torchvision model name"
            )
        factory = named
    try:
        model = factory()
    except Exception as error:
        raise SpecError(f"the factory {spec!r} raised {type(error).__name__}: {error}") from error
    if not isinstance(model, torch.nn.Module):
        raise SpecError(f"the factory {spec!r} returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def parse_shape(text: str) -> tuple[int, ...]:
    """``"1,3,224,224"`` → ``(1, 3, 224, 224)``."""
    try:
        shape = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise SpecError(f"bad input shape {text!r}: expected comma-separated positive ints like 1,3,224,224") from None
    if not shape or any(s <= 0 for s in shape):
        raise SpecError(f"bad input shape {text!r}: expected comma-separated positive ints like 1,3,224,224")
    return shape
