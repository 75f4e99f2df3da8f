"""Whether a pruned Hugging Face model's config describes it, and saving it only when it does.

``from_pretrained`` builds a model from its config and then loads the weights, so a pruned model
round-trips only if a model built from its config has the same tensors, with the same shapes,
and computes the same way: the same attention scale, the same rotary frequencies. The check
builds that model with its parameters on the meta device (no memory for weights; buffers such
as rotary frequencies are computed for real, as ``from_pretrained`` would) and compares:

- the per-layer widths: a config holds one width for all layers;
- every parameter and persistent buffer: name and shape;
- every buffer the model computes from its config (not saved): shape and values;
- every plain number a module derives from the config (``scaling``, ``head_dim``, ``num_heads`` ...).

Each difference is explained with the pruning option that avoids it.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from typing import Any

import attrs
import torch

from prune_ops import PruningError
from prune_torch._sizes import ROLE_NAMES

__all__ = ["PretrainedCheck", "PretrainedError", "check_pretrained", "save_pretrained"]

_LAYER_INDEX = re.compile(r"\.\d+\.")
_PLAIN = (bool, int, float, str)
# where the trouble comes from, and the option that keeps it away
_UNIFORM = (
    "the config holds one width for all layers: prune every layer alike, with local ranking "
    "(global_ranking=False, isomorphic=False), without per-module `ratios`, and with head_dims=False"
)
_HEAD_DIMS = (
    "head dims were pruned, and a model built from the config recomputes its attention scale and rotary "
    "frequencies from the new head dim: prune with head_dims=False (whole heads, MLP units and the hidden "
    "size round-trip)"
)
_DERIVED = (
    "this model's config derives the head dim from hidden size / head count, so it cannot express pruned "
    "heads or a pruned hidden size: prune with head_ratio=0.0 and hidden=False (MLP units round-trip)"
)
_HIDDEN = (
    "the hidden size was pruned to a size the config cannot express: prune with hidden=False, or with "
    "`round_to` a multiple of the number of attention heads"
)


class PretrainedError(PruningError):
    """A pruned model's config cannot describe it, so ``from_pretrained`` would not rebuild it.

    ``problems`` lists each difference with the option that avoids it; nothing was written.
    """

    def __init__(self, message: str, problems: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems


@attrs.frozen
class PretrainedCheck:
    """What :func:`check_pretrained` found: ``ok`` when the config describes the model exactly."""

    model: str
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """Whether ``save_pretrained`` / ``from_pretrained`` rebuild the model exactly."""
        return not self.problems

    def __str__(self) -> str:
        if self.ok:
            return f"{self.model}: the config describes the pruned model; save_pretrained / from_pretrained round-trip"
        lines = [f"{self.model}: a model built from the config would differ from the pruned model:"]
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


@contextlib.contextmanager
def _parameters_on_meta() -> Iterator[None]:
    """Modules built inside get their parameters on the meta device; buffers stay real."""
    register = torch.nn.Module.register_parameter

    def on_meta(module: torch.nn.Module, name: str, param: torch.nn.Parameter | None) -> None:
        if param is not None and not param.is_meta:
            param = torch.nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        register(module, name, param)

    torch.nn.Module.register_parameter = on_meta  # type: ignore[method-assign]
    try:
        yield
    finally:
        torch.nn.Module.register_parameter = register  # type: ignore[method-assign]


def _pattern(path: str) -> str:
    """``model.layers.3.mlp.up_proj.weight`` → ``model.layers.*.mlp.up_proj.weight``."""
    previous = None
    while previous != path:
        previous, path = path, _LAYER_INDEX.sub(".*.", path)
    return path


def _uneven_layers(model: torch.nn.Module) -> list[str]:
    """Tensors that repeat across layers with different shapes."""
    shapes: dict[str, dict[tuple[int, ...], str]] = {}
    for path, tensor in model.state_dict().items():
        shapes.setdefault(_pattern(path), {}).setdefault(tuple(tensor.shape), path)
    problems = []
    for pattern, found in shapes.items():
        if len(found) > 1:
            listed = ", ".join(f"{path} {shape}" for shape, path in list(found.items())[:3])
            problems.append(f"layers differ in width ({pattern}: {listed}); {_UNIFORM}")
    return problems


def _describe_build_error(error: Exception) -> str:
    text = f"{type(error).__name__}: {error}".splitlines()[0][:300]
    if "divisible" in text or "multiple" in text:
        return f"building a model from the config fails ({text}); {_HIDDEN}"
    return f"building a model from the config fails ({text})"


def _numbers(module: torch.nn.Module) -> dict[str, Any]:
    return {
        k: v for k, v in vars(module).items() if not k.startswith("_") and k != "training" and isinstance(v, _PLAIN)
    }


def _compare(model: torch.nn.Module, built: torch.nn.Module) -> list[str]:
    problems: list[str] = []
    ours, theirs = model.state_dict(), built.state_dict()
    missing = sorted(set(theirs) - set(ours))
    extra = sorted(set(ours) - set(theirs))
    if missing or extra:
        problems.append(
            f"the tensors differ in name (missing {missing[:3]}, not expected {extra[:3]}); "
            "was the model changed in other ways than by pruning?"
        )
    causes: set[str] = set()
    wrong_shapes = []
    for key in sorted(set(ours) & set(theirs)):
        if ours[key].shape != theirs[key].shape:
            wrong_shapes.append(f"{key} {tuple(ours[key].shape)} (from the config {tuple(theirs[key].shape)})")
    built_modules = dict(built.named_modules())
    numbers = []
    for path, module in model.named_modules():
        other = built_modules.get(path)
        if other is None:
            continue
        mine, derived = _numbers(module), _numbers(other)
        for key in sorted(set(mine) & set(derived)):
            if mine[key] != derived[key]:
                numbers.append(f"{path or '<root>'}.{key} = {mine[key]!r} (from the config {derived[key]!r})")
                if key in ROLE_NAMES["head_dim"] or key in ROLE_NAMES["width"]:
                    causes.add(_DERIVED)  # the config's head dim or attention width is not the model's
                elif key == "scaling":
                    causes.add(_HEAD_DIMS)  # the head dim follows, the attention scale made from it does not
        saved = {name for name, _ in module.named_buffers(recurse=False)} - set(module._non_persistent_buffers_set)
        for name, buffer in module.named_buffers(recurse=False):
            if name in saved or buffer is None:
                continue
            theirs_buffer = getattr(other, name, None)
            if not isinstance(theirs_buffer, torch.Tensor) or theirs_buffer.is_meta or buffer.is_meta:
                continue
            same = buffer.shape == theirs_buffer.shape and torch.equal(
                buffer.detach().cpu().to(theirs_buffer.dtype), theirs_buffer
            )
            if not same:
                numbers.append(f"buffer {path}.{name} is not what the config computes")
                causes.add(_HEAD_DIMS)  # rotary frequencies of pruned head dims
    if _DERIVED in causes:
        causes.discard(_HEAD_DIMS)  # the scale follows the derived head dim: not a cause of its own
    if not causes and _hidden_differs(model, built):
        causes.add(_HIDDEN)
    reason = "; ".join(sorted(causes)) if causes else "the config cannot express this model"
    if numbers:
        problems.append(f"values the model computes from its config differ ({'; '.join(numbers[:4])}); {reason}")
    if wrong_shapes:
        shown = "; ".join(wrong_shapes[:4]) + (f" and {len(wrong_shapes) - 4} more" if len(wrong_shapes) > 4 else "")
        problems.append(f"tensor shapes differ: {shown}; {reason}")
    return problems


def _hidden_differs(model: torch.nn.Module, built: torch.nn.Module) -> bool:
    """Whether the model's token (or patch) embedding width is not the one its config builds."""
    ours, theirs = _embedding_width(model), _embedding_width(built)
    return ours is not None and theirs is not None and ours != theirs


def _embedding_width(model: torch.nn.Module) -> int | None:
    getter = getattr(model, "get_input_embeddings", None)
    try:
        embedding = getter() if callable(getter) else None
    except (AttributeError, NotImplementedError):
        return None
    weight = getattr(embedding, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.dim() < 2:
        return None
    return int(weight.shape[0] if isinstance(embedding, torch.nn.Conv2d) else weight.shape[1])


def check_pretrained(model: torch.nn.Module) -> PretrainedCheck:
    """Whether ``model.save_pretrained`` → ``from_pretrained`` would rebuild this pruned model exactly.

    A model is built from ``model.config`` (parameters on the meta device, so it costs no
    memory for weights) and compared with ``model``: per-layer widths, tensor names and shapes,
    buffers computed from the config (rotary frequencies) and numbers derived from it (the
    attention scale). Every difference names the pruning option that would avoid it.

    >>> import transformers, torch
    >>> import prune_torch as pt
    >>> config = transformers.LlamaConfig(vocab_size=40, hidden_size=32, intermediate_size=48,
    ...     num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=8)
    >>> model = transformers.LlamaForCausalLM(config).eval()
    >>> report = pt.prune(model, torch.randint(0, 40, (1, 6)), ratio=0.5, show_progress=False)
    >>> pt.check_pretrained(model).ok
    True
    """
    name = type(model).__name__
    config = getattr(model, "config", None)
    if config is None or not callable(getattr(model, "save_pretrained", None)):
        return PretrainedCheck(name, (f"{name} is not a Hugging Face model (no config and save_pretrained)",))
    problems = _uneven_layers(model)
    try:
        # the way from_pretrained reads it back: through the dict form, with the config's own checks
        reloaded = type(config).from_dict(config.to_dict())
    except Exception as error:  # whatever the config class refuses (a width not divisible by the heads ...)
        message = " ".join(str(error).split())[:240] or type(error).__name__
        return PretrainedCheck(
            name,
            (
                *problems,
                f"the saved config would not load ({message}); prune with round_to= a multiple of the head "
                "count, or head_ratio=0.0, so the sizes stay compatible",
            ),
        )
    try:
        with _parameters_on_meta():
            built = type(model)(reloaded)
    except Exception as error:  # whatever the model's constructor raises on this config
        return PretrainedCheck(name, (*problems, _describe_build_error(error)))
    if not problems:
        problems = _compare(model, built)
    return PretrainedCheck(name, tuple(problems))


def save_pretrained(model: torch.nn.Module, directory: str | os.PathLike[str], **kwargs: Any) -> None:
    """``model.save_pretrained(directory, **kwargs)`` after :func:`check_pretrained` passes.

    When the config cannot describe the pruned model, raise :class:`PretrainedError` listing
    why and the option that would work, before writing anything: ``from_pretrained`` would
    otherwise fail on the shapes, or load a model that computes something else.
    """
    result = check_pretrained(model)
    if not result.ok:
        raise PretrainedError(f"{result}\nNothing was written to {os.fspath(directory)!r}.", result.problems)
    model.save_pretrained(directory, **kwargs)
