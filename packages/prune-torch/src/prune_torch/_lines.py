"""Where in the model's own code: the ``file.py:line`` a user can read and change.

A size the forward computes in Python (``C // self.num_heads`` with ``C`` from ``x.shape``, or a
number such as ``x.shape[1] ** 0.5``) is invisible to a trace; the line that used it is what the
messages name. The model's own code is every frame outside torch, this package and the standard
library (site-packages count as the model's: that is where torchvision or timm models live).
"""

from __future__ import annotations

import os
import sys
import sysconfig
from types import FrameType, TracebackType

import torch

__all__ = ["current_model_line", "error_model_line"]

# frames of these files are the machinery a forward runs through, never the model's own code
_MACHINERY = (os.path.dirname(str(torch.__file__)) + os.sep, os.path.dirname(__file__) + os.sep)
_STDLIB = sysconfig.get_paths()["stdlib"] + os.sep


def _is_model_code(name: str) -> bool:
    library = name.startswith(_STDLIB) and "-packages" not in name
    return not library and not name.startswith(_MACHINERY) and not name.startswith("<")


def error_model_line(error: BaseException) -> str | None:
    """``file.py:line`` of the innermost frame of the model's own code in ``error``'s traceback."""
    found = None
    tb: TracebackType | None = error.__traceback__
    while tb is not None:
        if _is_model_code(tb.tb_frame.f_code.co_filename):
            found = f"{os.path.basename(tb.tb_frame.f_code.co_filename)}:{tb.tb_lineno}"
        tb = tb.tb_next
    return found


def current_model_line() -> str | None:
    """``file.py:line`` of the innermost frame of the model's own code on the current stack."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        if _is_model_code(frame.f_code.co_filename):
            return f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno}"
        frame = frame.f_back
    return None
