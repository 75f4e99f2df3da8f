"""Typed errors of the data model."""

from __future__ import annotations

__all__ = ["GraphError", "IndexMapError", "SchemaError"]


class GraphError(ValueError):
    """A graph, op, value or coupling is malformed; the message names the culprit."""


class IndexMapError(ValueError):
    """An index map was built with bad sizes or applied to indices it cannot accept."""


class SchemaError(ValueError):
    """A serialised graph does not follow the schema this version reads."""
