"""Errors of the ONNX adapter."""

from __future__ import annotations

from prune_ops import PruningError

__all__ = ["OnnxApplyError", "OnnxReadError"]


class OnnxReadError(PruningError):
    """The model cannot be read into a graph (no static shape for a value, a malformed node ...)."""


class OnnxApplyError(PruningError):
    """A plan cannot be written into the model (a size the graph computes in a way we cannot follow)."""

    def __init__(self, message: str, node: str | None = None) -> None:
        super().__init__(message)
        self.node = node
