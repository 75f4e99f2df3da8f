"""What each torch layer type stores per channel, and how its attributes follow its parameters.

One :class:`LayerRule` per layer type, in a read-only table looked up along the class's MRO, so
subclasses are covered and unrelated classes with the same name are not.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable, Mapping

import attrs
import torch
from torch import nn

from prune_torch._errors import ApplyError
from prune_torch._mha import PrunedMultiheadAttention, needs_own_forward

__all__ = ["LAYER_RULES", "LayerRule", "rule_for", "sync_attributes"]

Axes = tuple[tuple[str, int], ...]


def _conv_sync(m: nn.Module) -> None:
    w = m.weight
    groups = int(m.groups)
    # the meta kernels used to verify a prune do not check this; the real ones would fail later
    split = int(w.shape[0])
    if split % groups:
        side = "input" if m.transposed else "output"
        raise ApplyError(f"{type(m).__name__} would have {split} {side} channels, not a multiple of groups={groups}")
    if m.transposed:
        m.in_channels, m.out_channels = int(w.shape[0]), int(w.shape[1]) * groups
    else:
        m.out_channels, m.in_channels = int(w.shape[0]), int(w.shape[1]) * groups


def _linear_sync(m: nn.Module) -> None:
    m.out_features, m.in_features = int(m.weight.shape[0]), int(m.weight.shape[1])


def _bilinear_sync(m: nn.Module) -> None:
    m.out_features, m.in1_features, m.in2_features = (int(s) for s in m.weight.shape)


def _norm_sync(m: nn.Module) -> None:
    for name in ("weight", "running_mean"):
        t = getattr(m, name, None)
        if isinstance(t, torch.Tensor):
            m.num_features = int(t.shape[0])
            return


def _layer_norm_sync(m: nn.Module) -> None:
    if isinstance(m.weight, torch.Tensor):
        m.normalized_shape = tuple(int(s) for s in m.weight.shape)


def _group_norm_sync(m: nn.Module) -> None:
    if isinstance(m.weight, torch.Tensor):
        m.num_channels = int(m.weight.shape[0])


def _prelu_sync(m: nn.Module) -> None:
    m.num_parameters = int(m.weight.shape[0])


def _embedding_sync(m: nn.Module) -> None:
    m.num_embeddings, m.embedding_dim = int(m.weight.shape[0]), int(m.weight.shape[1])


@attrs.frozen
class LayerRule:
    """Per-channel storage of one layer type.

    ``out_axes``: (tensor name, axis) along the channels the layer writes; ``in_axes``: along the
    channels it reads (empty when they are the same channels, as for BatchNorm); ``sync`` sets
    the size attributes from the sliced tensors.
    """

    out_axes: Axes
    in_axes: Axes
    sync: Callable[[nn.Module], None]
    in_is_out: bool = False


_CONV = LayerRule((("weight", 0), ("bias", 0)), (("weight", 1),), _conv_sync)
_CONV_T = LayerRule((("weight", 1), ("bias", 0)), (("weight", 0),), _conv_sync)
_NORM = LayerRule((("weight", 0), ("bias", 0), ("running_mean", 0), ("running_var", 0)), (), _norm_sync, True)


def _conv1d_sync(m: nn.Module) -> None:
    m.nx, m.nf = int(m.weight.shape[0]), int(m.weight.shape[1])


def _rnn_sync(m: nn.Module) -> None:
    m.hidden_size = int(m.weight_hh_l0.shape[1]) if not getattr(m, "proj_size", 0) else int(m.weight_hr_l0.shape[1])
    m.input_size = int(m.weight_ih_l0.shape[1])
    if getattr(m, "proj_size", 0):
        m.proj_size = int(m.weight_hr_l0.shape[0])


def _rnn_rule(max_layers: int = 16) -> LayerRule:
    """Every per-layer tensor of nn.RNN / LSTM / GRU; names of absent layers are skipped."""
    suffixes = [f"_l{k}{d}" for k in range(max_layers) for d in ("", "_reverse")]
    writes = tuple((f"{name}{s}", 0) for s in suffixes for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
    reads = tuple((f"{name}{s}", 1) for s in suffixes for name in ("weight_ih", "weight_hh", "weight_hr"))
    return LayerRule(writes, reads, _rnn_sync)


def _attention_sync(m: nn.Module) -> None:
    """torch's attention needs its widths tied to ``embed_dim``: one that lost heads, head dims or
    input channels becomes a :class:`PrunedMultiheadAttention` (same object, sizes from its tensors).

    Its head count comes from the reshapes into heads (``prune_torch._sizes``), afterwards.
    """
    if type(m) is nn.MultiheadAttention and needs_own_forward(m):
        m.__class__ = PrunedMultiheadAttention


# q/k/v rows (packed or separate) and the key/value biases carry the attention's inner channels;
# the columns read the query, key and value inputs
_ATTENTION = LayerRule(
    (
        ("in_proj_weight", 0),
        ("in_proj_bias", 0),
        ("q_proj_weight", 0),
        ("k_proj_weight", 0),
        ("v_proj_weight", 0),
        ("bias_k", 2),
        ("bias_v", 2),
    ),
    (("in_proj_weight", 1), ("q_proj_weight", 1), ("k_proj_weight", 1), ("v_proj_weight", 1)),
    _attention_sync,
)


def _optional_rules() -> dict[type, LayerRule]:
    """Rules for layer types of optional libraries already imported, keyed by the class itself.

    Looked up only when a module matches no built-in rule, so importing prune_torch never
    imports those libraries; a model that uses their layers has imported them already.
    """
    rules: dict[type, LayerRule] = {}
    utils = sys.modules.get("transformers.pytorch_utils")
    conv1d = getattr(utils, "Conv1D", None)
    if isinstance(conv1d, type):
        # GPT-2's Conv1D is a linear layer with its weight stored (in, out)
        rules[conv1d] = LayerRule((("weight", 1), ("bias", 0)), (("weight", 0),), _conv1d_sync)
    return rules


LAYER_RULES: Mapping[type, LayerRule] = types.MappingProxyType(
    {
        nn.Linear: LayerRule((("weight", 0), ("bias", 0)), (("weight", 1),), _linear_sync),
        nn.Bilinear: LayerRule((("weight", 0), ("bias", 0)), (("weight", 1),), _bilinear_sync),
        nn.modules.conv._ConvTransposeNd: _CONV_T,
        nn.modules.conv._ConvNd: _CONV,
        nn.modules.batchnorm._NormBase: _NORM,
        nn.LayerNorm: LayerRule((("weight", 0), ("bias", 0)), (), _layer_norm_sync, True),
        nn.GroupNorm: LayerRule((("weight", 0), ("bias", 0)), (), _group_norm_sync, True),
        nn.PReLU: LayerRule((("weight", 0),), (), _prelu_sync, True),
        nn.Embedding: LayerRule((("weight", 1),), (), _embedding_sync),
        nn.RNNBase: _rnn_rule(),
        nn.MultiheadAttention: _ATTENTION,
    }
)


def rule_for(module: nn.Module, rules: Mapping[type, LayerRule] = LAYER_RULES) -> LayerRule | None:
    """The rule of the closest class in the module's MRO, if any."""
    for table in (rules, _optional_rules()):
        for cls in type(module).__mro__:
            rule = table.get(cls)
            if rule is not None:
                return rule
    return None


def sync_attributes(module: nn.Module, rules: Mapping[type, LayerRule] = LAYER_RULES) -> None:
    """Set a module's size attributes from its (pruned) tensors."""
    rule = rule_for(module, rules)
    if rule is not None:
        rule.sync(module)
