"""The cyclic garbage collector paused while a trace, a group search or a prune makes its many small objects."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

__all__ = ["gc_paused"]


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off inside the block, as it was after (also on failure).

    A trace makes many small objects that live until the prune ends; the collector's passes over
    them grow faster than linearly with the model's size (about a tenth of a trace of
    densenet121). Reference counting still frees the rest; a block inside another leaves the
    collector as the outer one set it.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
