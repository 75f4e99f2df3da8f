"""Choosing units to remove across groups: framework-free, so it lives in prune-ops (re-exported here)."""

from __future__ import annotations

from prune_ops._choose import (
    Chosen,
    Scored,
    choose_global,
    choose_isomorphic,
    choose_local,
    harmonise_head_dims,
    search_amount,
)

__all__ = [
    "Chosen",
    "Scored",
    "choose_global",
    "choose_isomorphic",
    "choose_local",
    "harmonise_head_dims",
    "search_amount",
]
