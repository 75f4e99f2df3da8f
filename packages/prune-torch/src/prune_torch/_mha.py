"""torch's multi-head attention with its widths read from its tensors, so heads and head dims can go.

``nn.MultiheadAttention`` (and ``F.multi_head_attention_forward`` under it) requires the query
width, ``embed_dim`` and the rows of each of q, k and v to be one number. A pruned attention
breaks that as soon as it loses heads or head dims (the projections get narrower than the
residual stream) or the residual stream loses channels the heads keep. So an attention whose
tensors no longer fit torch's layout becomes a :class:`PrunedMultiheadAttention`: the same
object (its ``__class__`` changes), the same parameters and ``state_dict`` keys, the same
math, and sizes read from its tensors:

- queries of width ``embed_dim`` (``in_proj_weight`` or ``q_proj_weight`` columns), keys of
  width ``kdim``, values of width ``vdim``;
- ``num_heads`` heads of ``head_dim`` query/key dims (the rows of q and of k) and
  ``v_head_dim`` value dims (the rows of v; with a packed ``in_proj_weight`` equal to ``head_dim``);
- an output of ``out_proj.out_features`` channels;
- the softmax scale of the attention as built (``1/sqrt`` of the head dim before pruning), so the
  kept head dims compute what they computed.

The tracer runs every plain ``nn.MultiheadAttention`` through this forward too (see
``prune_torch._trace``), so the graph a plan is made from is the code the pruned model runs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["PrunedMultiheadAttention", "needs_own_forward", "runs_stock_forward"]


def runs_stock_forward(module: nn.Module) -> bool:
    """Whether ``module`` is a plain ``nn.MultiheadAttention`` (a subclass may change the math: left alone)."""
    return type(module) is nn.MultiheadAttention


def _weights(module: nn.Module) -> tuple[Tensor, ...]:
    """``(in_proj_weight,)`` when q, k and v are packed, else the separate q, k and v weights."""
    packed = getattr(module, "in_proj_weight", None)
    if isinstance(packed, Tensor):
        return (packed,)
    separate = tuple(getattr(module, f"{n}_proj_weight", None) for n in "qkv")
    if not all(isinstance(w, Tensor) for w in separate):
        raise ValueError(f"{type(module).__name__} has neither in_proj_weight nor q/k/v_proj_weight")
    return separate  # type: ignore[return-value]


def _rows(module: nn.Module) -> tuple[int, int, int]:
    """Rows of the q, k and v projections."""
    weights = _weights(module)
    if len(weights) == 1:
        third, rest = divmod(int(weights[0].shape[0]), 3)
        if rest:
            raise ValueError(f"in_proj_weight has {weights[0].shape[0]} rows, not three equal parts")
        return third, third, third
    q, k, v = (int(w.shape[0]) for w in weights)
    return q, k, v


def _inputs(module: nn.Module) -> tuple[int, int, int]:
    """Widths of the query, key and value inputs."""
    weights = _weights(module)
    if len(weights) == 1:
        width = int(weights[0].shape[1])
        return width, width, width
    q, k, v = (int(w.shape[1]) for w in weights)
    return q, k, v


def needs_own_forward(module: nn.MultiheadAttention) -> bool:
    """Whether torch's forward no longer fits ``module``'s tensors (after a prune)."""
    embed = int(module.__dict__.get("embed_dim", -1))
    q, k, v = _rows(module)
    e_q, e_k, e_v = _inputs(module)
    kdim = int(module.__dict__.get("kdim", embed))
    vdim = int(module.__dict__.get("vdim", embed))
    return (q, k, v, e_q, e_k, e_v) != (embed, embed, embed, embed, kdim, vdim)


def _additive(mask: Tensor | None, dtype: torch.dtype, name: str) -> Tensor | None:
    """A boolean mask (``True`` = not allowed) as ``-inf`` / ``0``; a float mask as it is."""
    if mask is None:
        return None
    if mask.dtype == torch.bool:
        return torch.zeros_like(mask, dtype=dtype).masked_fill_(mask, float("-inf"))
    if not torch.is_floating_point(mask):
        raise TypeError(f"{name} must be a bool or floating-point tensor (got {mask.dtype})")
    return mask


class PrunedMultiheadAttention(nn.MultiheadAttention):
    """An ``nn.MultiheadAttention`` whose q/k/v widths, head count and head dims are free of ``embed_dim``.

    Not built directly: :func:`prune_torch.apply` turns a plain ``nn.MultiheadAttention`` into one
    in place when a plan changes its widths. It takes the same arguments and returns the same
    ``(output, weights)`` as torch's module; it never takes torch's fused fast path, and it
    refuses nested tensors.

    >>> import torch, prune_torch as pt
    >>> attn = torch.nn.MultiheadAttention(8, 2, batch_first=True)
    >>> x = torch.randn(1, 3, 8)
    >>> graph = pt.trace(attn, (x, x, x))
    >>> plan = pt.plan(graph, attn, [4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23], param="in_proj_weight")
    >>> pt.apply(attn, plan)
    >>> type(attn).__name__, attn.num_heads, attn.head_dim, attn.embed_dim, attn(x, x, x)[0].shape
    ('PrunedMultiheadAttention', 1, 4, 8, torch.Size([1, 3, 8]))
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise TypeError(
            "PrunedMultiheadAttention is made by prune_torch from a pruned nn.MultiheadAttention; "
            "build an nn.MultiheadAttention instead"
        )

    # torch's transformer layers take their fused fast path only for packed q/k/v of embed_dim rows
    @property
    def _qkv_same_embed_dim(self) -> bool:
        return False

    @property
    def embed_dim(self) -> int:
        """Width of the queries."""
        return _inputs(self)[0]

    @property
    def kdim(self) -> int:
        """Width of the keys."""
        return _inputs(self)[1]

    @property
    def vdim(self) -> int:
        """Width of the values."""
        return _inputs(self)[2]

    @property
    def head_dim(self) -> int:
        """Query/key dims per head."""
        return _rows(self)[0] // int(self.num_heads)

    @property
    def v_head_dim(self) -> int:
        """Value dims per head."""
        return _rows(self)[2] // int(self.num_heads)

    @property
    def scaling(self) -> float:
        """The softmax scale: from the head dim the module was built with (kept in its ``__dict__``)."""
        built = self.__dict__.get("head_dim")
        return float(built if isinstance(built, int) else self.head_dim) ** -0.5  # type: ignore[no-any-return]

    def _project(self, query: Tensor, key: Tensor, value: Tensor, same: bool) -> tuple[Tensor, Tensor, Tensor]:
        q_rows, k_rows, _ = _rows(self)
        bias: Tensor | None = self.in_proj_bias
        b_q: Tensor | None
        b_k: Tensor | None
        b_v: Tensor | None
        weights = _weights(self)
        if len(weights) == 1:
            packed = weights[0]
            if same:
                # one projection for self-attention; equal chunks keep q, k and v pruned alike
                q, k, v = F.linear(query, packed, bias).chunk(3, dim=-1)
                return q, k, v
            w_q, w_k, w_v = packed.chunk(3)
            b_q, b_k, b_v = bias.chunk(3) if bias is not None else (None, None, None)
        else:
            w_q, w_k, w_v = weights
            # windows, not chunks: the values may keep other dims than queries and keys
            b_q, b_k, b_v = (
                (bias[:q_rows], bias[q_rows : q_rows + k_rows], bias[q_rows + k_rows :])
                if bias is not None
                else (None, None, None)
            )
        return F.linear(query, w_q, b_q), F.linear(key, w_k, b_k), F.linear(value, w_v, b_v)

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        key_padding_mask: Tensor | None = None,
        need_weights: bool = True,
        attn_mask: Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """torch's multi-head attention (same arguments and results), sizes from the tensors."""
        if query.is_nested or key.is_nested or value.is_nested:
            raise ValueError("a pruned MultiheadAttention does not take nested tensors; pass padded ones with a mask")
        if is_causal and attn_mask is None:
            raise RuntimeError("Need attn_mask if specifying the is_causal hint (as torch's MultiheadAttention)")
        same = query is key and key is value
        batched = query.dim() == 3
        if not batched:
            query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        elif not self.batch_first:
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
        batch, target = query.shape[0], query.shape[1]
        heads = self.num_heads
        q, k, v = self._project(query, key, value, same)
        # as torch: a causal hint without padding mask and weights goes to the fused kernel, mask unused
        causal = is_causal and key_padding_mask is None and not need_weights
        mask = None if causal else _additive(attn_mask, q.dtype, "attn_mask")
        padding = _additive(key_padding_mask, q.dtype, "key_padding_mask")
        if mask is not None:
            # (target, source) for all, or (batch × heads, target, source) per head
            mask = mask.unsqueeze(0).unsqueeze(0) if mask.dim() == 2 else mask.view(batch, heads, target, -1)
        if self.bias_k is not None and self.bias_v is not None:
            k = torch.cat([k, self.bias_k.expand(batch, 1, -1)], dim=1)
            v = torch.cat([v, self.bias_v.expand(batch, 1, -1)], dim=1)
            mask = F.pad(mask, (0, 1)) if mask is not None else None
            padding = F.pad(padding, (0, 1)) if padding is not None else None
        q = q.view(batch, target, heads, -1).transpose(1, 2)
        k = k.view(batch, k.shape[1], heads, -1).transpose(1, 2)
        v = v.view(batch, v.shape[1], heads, -1).transpose(1, 2)
        if self.add_zero_attn:
            k, v = F.pad(k, (0, 0, 0, 1)), F.pad(v, (0, 0, 0, 1))
            mask = F.pad(mask, (0, 1)) if mask is not None else None
            padding = F.pad(padding, (0, 1)) if padding is not None else None
        if padding is not None:
            padding = padding.view(batch, 1, 1, -1)
            mask = padding if mask is None else mask + padding
        dropout = self.dropout if self.training else 0.0
        weights: Tensor | None = None
        if need_weights:
            scores = torch.matmul(q * self.scaling, k.transpose(-2, -1))
            if mask is not None:
                scores = scores + mask
            weights = F.softmax(scores, dim=-1)
            if dropout > 0.0:
                weights = F.dropout(weights, p=dropout)
            out = torch.matmul(weights, v)
            if average_attn_weights:
                weights = weights.mean(dim=1)
        else:
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=dropout, is_causal=causal, scale=self.scaling
            )
        out = out.transpose(1, 2).reshape(batch, target, -1)
        out = F.linear(out, self.out_proj.weight, self.out_proj.bias)
        if not batched:
            return out.squeeze(0), (weights.squeeze(0) if weights is not None else None)
        if not self.batch_first:
            out = out.transpose(0, 1)
        return out, weights
