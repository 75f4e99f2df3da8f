"""Comparing a pruned model's outputs with the silenced original's: the verdict both adapters give."""

from __future__ import annotations

import types
from collections.abc import Mapping, Sequence

import attrs
import numpy as np
import numpy.typing as npt

from prune_ops._errors import PruningError

__all__ = ["TOLERANCES", "Equivalence", "compare_outputs"]

# the largest difference, relative to the largest output magnitude, that rounding alone explains
# for outputs of each dtype; a wrong prune moves outputs by 10% or more
TOLERANCES: Mapping[str, float] = types.MappingProxyType(
    {"float64": 1e-9, "float32": 1e-4, "float16": 2e-2, "bfloat16": 5e-2}
)


@attrs.frozen
class Equivalence:
    """Largest absolute and relative difference between the outputs, and whether they are within tolerance."""

    max_abs: float
    max_rel: float
    ok: bool

    def __str__(self) -> str:
        verdict = "equal" if self.ok else "DIFFERENT"
        return f"outputs {verdict} (max abs diff {self.max_abs:.3g}, max rel diff {self.max_rel:.3g})"


def compare_outputs(
    reference: Sequence[npt.ArrayLike],
    result: Sequence[npt.ArrayLike],
    *,
    dtypes: Sequence[str] | None = None,
    rtol: float | None = None,
    atol: float | None = None,
) -> Equivalence:
    """Compare outputs pairwise (the silenced original's, then the pruned model's).

    By default a pair is equal when its largest difference, relative to the reference's largest
    magnitude, is within :data:`TOLERANCES` for its dtype (``dtypes`` names them when the arrays
    were converted, as bfloat16 must be). With ``rtol`` or ``atol``, element by element:
    ``|a - b| <= atol + rtol · |a|``. Non-float outputs must be identical.

    >>> compare_outputs([np.ones(3, np.float32)], [np.ones(3, np.float32) + 1e-6]).ok
    True
    """
    if len(reference) != len(result):
        raise PruningError(f"the pruned model returns {len(result)} outputs, the original {len(reference)}")
    max_abs = max_rel = 0.0
    ok = True
    for i, (ref, out) in enumerate(zip(reference, result)):
        a, b = np.asarray(ref), np.asarray(out)
        if a.shape != b.shape:
            raise PruningError(f"output {i} changed shape from {a.shape} to {b.shape}")
        if a.size == 0:
            continue
        if not np.issubdtype(a.dtype, np.floating):
            ok = ok and bool(np.array_equal(a, b))
            continue
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        diff = np.abs(a64 - b64)
        worst = float(diff.max())
        scale = max(float(np.abs(a64).max()), 1e-30)
        max_abs = max(max_abs, worst)
        max_rel = max(max_rel, worst / scale)
        if rtol is None and atol is None:
            dtype = dtypes[i] if dtypes is not None else str(a.dtype)
            ok = ok and worst / scale <= TOLERANCES.get(dtype, TOLERANCES["float32"])
        else:
            ok = ok and bool((diff <= (atol or 0.0) + (1e-6 if rtol is None else rtol) * np.abs(a64)).all())
    return Equivalence(max_abs, max_rel, ok)
