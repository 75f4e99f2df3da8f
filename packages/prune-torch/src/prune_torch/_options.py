"""The options of ``prune`` and ``interactive``: defaults, checks, module paths."""

from __future__ import annotations

import types
from collections.abc import Iterable, Mapping
from typing import Any, Union

import attrs
import torch

from prune_ops import (
    PruningError,
    Target,
    as_target,
    check_amount,
)

__all__ = ["DEFAULTS", "ModuleKey", "Options", "parse_options"]

ModuleKey = Union[str, torch.nn.Module]


@attrs.frozen
class Options:
    ratio: float
    round_to: int
    ignore: tuple[str, ...]
    ratios: Mapping[str, float]
    global_ranking: bool
    isomorphic: bool
    max_ratio: float
    steps: int
    prune_outputs: bool
    head_ratio: float | None
    head_dims: bool
    query_heads: bool
    hidden: bool | None
    target: Target
    tolerance: float
    approximate: bool | None = None
    compensate: bool = False
    distributed: bool = False


def _paths(model: torch.nn.Module, keys: Iterable[ModuleKey], what: str) -> list[str]:
    keys = list(keys)
    if not keys:
        return []  # nothing to look up: no walk over the model's modules
    by_object = {id(m): name for name, m in model.named_modules()}
    names = set(by_object.values())
    out = []
    for key in keys:
        if isinstance(key, torch.nn.Module):
            if id(key) not in by_object:
                raise PruningError(f"{what}: a {type(key).__name__} that is not part of the model")
            out.append(by_object[id(key)])
        elif isinstance(key, str):
            if key not in names:
                raise PruningError(f"{what}: the model has no module {key!r}")
            out.append(key)
        else:
            raise PruningError(f"{what}: entries must be modules or module paths (got {type(key).__name__})")
    return out


def parse_options(model: torch.nn.Module, **kw: Any) -> Options:
    ratio = check_amount(kw["ratio"], "ratio")
    max_ratio = check_amount(kw["max_ratio"], "max_ratio")
    steps = kw["steps"]
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise PruningError(f"'steps' must be an int >= 1 (got {steps!r})")
    round_to = kw["round_to"]
    if isinstance(round_to, bool) or not isinstance(round_to, int) or round_to < 1:
        raise PruningError(f"'round_to' must be an int >= 1 (got {round_to!r})")
    target = kw["target"]
    target = as_target(target)
    ratios_in = kw["ratios"] or {}
    ratios = dict(zip(_paths(model, ratios_in.keys(), "ratios"), ratios_in.values()))
    for path, value in ratios.items():
        check_amount(value, f"ratios[{path!r}]")
    head_ratio = kw["head_ratio"]
    if head_ratio is not None:
        head_ratio = check_amount(head_ratio, "head_ratio")
    tolerance = float(kw["tolerance"])
    if not 0 < tolerance < 1:
        raise PruningError(f"'tolerance' must be in (0, 1) (got {tolerance!r})")
    approximate = kw.get("approximate")
    if approximate is not None and not isinstance(approximate, bool):
        raise PruningError(f"'approximate' must be None, True or False (got {approximate!r})")
    if approximate is False and kw["hidden"] is True:
        raise PruningError(
            "hidden=True prunes channels a normalisation layer mixes, which approximate=False forbids; drop one"
        )
    return Options(
        ratio=ratio,
        round_to=round_to,
        ignore=tuple(_paths(model, kw["ignore"], "ignore")),
        ratios=ratios,
        global_ranking=bool(kw["global_ranking"]),
        isomorphic=bool(kw["isomorphic"]),
        max_ratio=max_ratio,
        steps=steps,
        prune_outputs=bool(kw["prune_outputs"]),
        head_ratio=head_ratio,
        head_dims=bool(kw["head_dims"]),
        query_heads=bool(kw["query_heads"]),
        hidden=kw["hidden"],
        target=target,
        tolerance=tolerance,
        approximate=approximate,
        compensate=bool(kw.get("compensate", False)),
        distributed=bool(kw.get("distributed", False)),
    )


DEFAULTS: Mapping[str, Any] = types.MappingProxyType(
    {
        "ratio": 0.5,
        "round_to": 1,
        "ignore": (),
        "ratios": None,
        "global_ranking": False,
        "isomorphic": False,
        "max_ratio": 0.9,
        "steps": 1,
        "prune_outputs": False,
        "head_ratio": None,
        "head_dims": False,
        "query_heads": False,
        "hidden": None,
        "approximate": None,
        "target": "channels",
        "tolerance": 0.02,
    }
)
