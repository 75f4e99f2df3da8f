"""What the cross-adapter tests share: a torch model exported to ONNX in memory."""

from __future__ import annotations

import io
import warnings

import onnx
import torch
from torch import nn


def export(model: nn.Module, x: torch.Tensor) -> onnx.ModelProto:
    """``model`` on ``x`` as an ONNX model (TorchScript exporter, input ``x``, output ``y``)."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), buffer, dynamo=False, input_names=["x"], output_names=["y"])
    return onnx.load_from_string(buffer.getvalue())
