"""The report a prune returns: costs before and after, per-layer widths, the plan, a width plot."""

from __future__ import annotations

from pathlib import Path

import attrs
import torch

from prune_graph import ValueKind
from prune_ops import Outcome, Plan
from prune_torch._latency import Latency
from prune_torch._layers import LayerRule, rule_for
from prune_torch._traced import TracedGraph

__all__ = ["LayerWidth", "Report", "layer_widths"]


@attrs.frozen
class LayerWidth:
    """Output channels of one layer before and after."""

    module: str
    kind: str
    before: int
    after: int


@attrs.frozen
class Report(Outcome):
    """What a prune did: :class:`prune_ops.Outcome` (``plan``, ``before``, ``after``, ``skipped``, ``approximate``) and more.

    ``plan`` is the combined plan that was applied (save it, inspect it, verify with it);
    ``layers`` the output widths of every layer before and after, over ``steps`` step(s);
    ``silence_outputs`` lists the modules whose pruned channels meet in a product of
    activations (head dims of q·k, a position-attention map), to pass to
    :func:`prune_torch.check_equivalence`; ``normalised`` says that
    channels a normalisation layer mixes (LayerNorm, RMSNorm, positions within GroupNorm groups)
    were pruned. ``approximate`` names every pruned group whose channels an op mixes, with the op
    and module: for those, equality with the silenced original is not expected. ``skipped`` lists
    groups left alone, and why: a module's code keeps a size that pruning cannot update, or an
    op mixes the group's channels (see ``approximate=`` of :func:`prune_torch.prune`).
    ``latency`` is the forward pass's CPU time before and after, when the prune was asked to
    ``measure_latency``.
    """

    layers: tuple[LayerWidth, ...] = attrs.field(kw_only=True)
    steps: int = attrs.field(kw_only=True, default=1)
    silence_outputs: tuple[str, ...] = attrs.field(kw_only=True, default=())
    normalised: bool = attrs.field(kw_only=True, default=False)
    latency: tuple[Latency, Latency] | None = attrs.field(kw_only=True, default=None)

    @property
    def channels_ratio(self) -> float:
        """Output channels of the listed layers after / before."""
        return sum(layer.after for layer in self.layers) / max(sum(layer.before for layer in self.layers), 1)

    def __str__(self) -> str:
        lines = [
            *self.cost_lines(),
            f"channels   {self.channels_ratio:.1%} kept over {len(self.layers)} layers, {self.steps} step(s)",
        ]
        if self.latency is not None:
            before, after = self.latency
            lines.append(f"latency    {before} → {after} ({before.median / max(after.median, 1e-12):.2f}× faster)")
        lines += self.note_lines()
        lines.append("")
        width = max([len(layer.module) for layer in self.layers] + [6])
        lines.append(f"{'layer'.ljust(width)}  {'type':<16} channels")
        for layer in self.layers:
            lines.append(f"{layer.module.ljust(width)}  {layer.kind:<16} {layer.before} → {layer.after}")
        return "\n".join(lines)

    def plot_widths(self, path: str | Path, title: str = "Layer widths before and after pruning") -> Path:
        """Save a bar chart of per-layer widths before and after as PNG (needs matplotlib)."""
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError as error:  # pragma: no cover - depends on the environment
            raise ImportError("plotting needs matplotlib: pip install 'prune-torch[plot]'") from error
        path = Path(path)
        positions = range(len(self.layers))
        fig, ax = plt.subplots(figsize=(max(6.0, 0.25 * len(self.layers)), 4.0))
        ax.bar(positions, [layer.before for layer in self.layers], color="#c8d3e0", label="before")
        ax.bar(positions, [layer.after for layer in self.layers], color="#2f6db5", label="after")
        ax.set_xlabel("layer (execution order)")
        ax.set_ylabel("output channels")
        ax.set_title(title)
        ax.legend()
        if len(self.layers) <= 40:
            ax.set_xticks(list(positions), [layer.module for layer in self.layers], rotation=90, fontsize=6)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return path


def layer_widths(model: torch.nn.Module, graph: TracedGraph, plan: Plan) -> tuple[LayerWidth, ...]:
    """Output widths of every layer with a known rule, before and after ``plan`` (model already pruned or not)."""
    shapes = plan.state_shapes()
    modules = dict(model.named_modules(remove_duplicate=False))
    rules: dict[type, LayerRule | None] = {}  # by class: rule_for walks the class's MRO
    layers = []
    for value in graph.values:
        if value.kind is not ValueKind.PARAMETER or value.name != "weight":
            continue
        module = modules.get(value.owner)
        if module is None:
            module = model.get_submodule(value.owner) if value.owner else model
        cls = type(module)
        if cls not in rules:
            rules[cls] = rule_for(module)
        rule = rules[cls]
        if rule is None or not rule.out_axes:
            continue
        axis = rule.out_axes[0][1]
        before = value.shape[axis]
        after = shapes.get(value.path, (value.shape, value.shape))[1][axis]
        layers.append(LayerWidth(value.owner, type(module).__name__, before, after))
    return tuple(layers)
