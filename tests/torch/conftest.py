"""Shared setup of the torch tests.

The tests import their helpers (``models``, ``support``) by name: this folder cannot be a
package, because under ``--import-mode=importlib`` a ``tests/torch/__init__.py`` would register
the package as ``torch`` and shadow PyTorch itself.

Every tensor here is tiny, so intra-op threads only add overhead; on a busy two-core machine
OpenMP's spinning threads made the suite several times slower.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

torch.set_num_threads(1)
