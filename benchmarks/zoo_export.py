"""Exports of pruned models: torch.export and torch.onnx (dynamo), run and compared with the pruned model.

Each model (random weights): export the unpruned model both ways (what works there must work
after pruning), prune 50% with L2, export again, run the exported program (onnxruntime for ONNX)
on the same input and compare with the pruned model's eager outputs.
"""

from __future__ import annotations

import copy
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

import prune_torch as pt
from prune_torch._aten import tensors_in

ExportCase = tuple[str, Callable[[], torch.nn.Module], Callable[[], tuple[torch.Tensor, ...]]]


class LogitsOnly(torch.nn.Module):
    """A causal LM that returns only its logits (no cache objects), as an exported server would."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, use_cache=False).logits


def export_cases() -> Iterator[ExportCase]:
    from torchvision import models

    yield ("resnet18", lambda: models.resnet18(weights=None), lambda: (torch.randn(1, 3, 224, 224),))
    try:
        import timm

        yield (
            "vit_tiny_patch16_224 (timm)",
            lambda: timm.create_model("vit_tiny_patch16_224", pretrained=False),
            lambda: (torch.randn(1, 3, 224, 224),),
        )
    except ImportError:
        pass
    try:
        from ultralytics import YOLO

        yield (
            "YOLOv8n (ultralytics)",
            lambda: YOLO("yolov8n.yaml", verbose=False).model,
            lambda: (torch.rand(1, 3, 256, 256),),
        )
    except ImportError:
        pass
    try:
        import transformers as tf

        def llama() -> torch.nn.Module:
            config = tf.LlamaConfig(
                vocab_size=100,
                hidden_size=64,
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=2,
                intermediate_size=128,
                max_position_embeddings=64,
            )
            return LogitsOnly(tf.LlamaForCausalLM(config))

        yield ("LLaMA (small, logits)", llama, lambda: (torch.randint(0, 100, (1, 16)),))
    except ImportError:
        pass


def _outputs(result: Any) -> list[torch.Tensor]:
    if hasattr(result, "to_tuple"):
        result = result.to_tuple()
    return [t.detach() for t in tensors_in(result)]


def _max_diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    if len(a) != len(b) or any(x.shape != y.shape for x, y in zip(a, b)):
        raise AssertionError(f"exported outputs {[tuple(y.shape) for y in b]}, eager {[tuple(x.shape) for x in a]}")
    return max((float((x.double() - y.double()).abs().max()) if x.numel() else 0.0) for x, y in zip(a, b))


def _torch_export(model: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
    program = torch.export.export(model, args)
    with torch.no_grad():
        return _outputs(program.module()(*args))


def _onnx_export(model: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
    import onnxruntime

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.onnx"
        program = torch.onnx.export(model, args, dynamo=True, verbose=False)
        program.save(str(path))
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        feeds = {i.name: t.numpy() for i, t in zip(session.get_inputs(), args)}
        return [torch.from_numpy(np.asarray(o)) for o in session.run(None, feeds)]


def _attempt(call: Callable[[], Any]) -> tuple[Any, str]:
    try:
        return call(), ""
    except Exception as error:
        return None, f"{type(error).__name__}: {str(error).strip().splitlines()[0][:160]}"


def check_export(name: str, build: Callable[[], torch.nn.Module], make_inputs: Callable[[], Any]) -> dict[str, Any]:
    """One model: both exports before and after pruning; the row of the exports table."""
    row: dict[str, Any] = {"model": name, "note": ""}
    start = time.perf_counter()
    torch.manual_seed(0)
    model = build().eval()
    args = make_inputs()
    ways = {"torch.export": _torch_export, "onnx (dynamo) + onnxruntime": _onnx_export}
    # the unpruned attempts use a copy: an export can leave caches on the modules it ran (anchor grids)
    unpruned = copy.deepcopy(model)
    before = {way: _attempt(lambda f=f, m=unpruned: f(m, args))[1] for way, f in ways.items()}
    del unpruned
    pt.prune(model, args, ratio=0.5, importance="l2", show_progress=False)
    with torch.no_grad():
        expected = _outputs(model(*args))
    notes = []
    for way, export in ways.items():
        got, error = _attempt(lambda f=export: f(model, args))
        if got is not None:
            diff, error = _attempt(lambda g=got: _max_diff(expected, g))
        if error:
            row[way] = "fails unpruned too" if before[way] else "✗"
            notes.append(f"{way}: {error}" + (f" (unpruned: {before[way]})" if before[way] else ""))
        else:
            row[way] = f"✓ {diff:.1e}"
    row["note"] = "; ".join(notes)
    row["seconds"] = time.perf_counter() - start
    row["ok"] = all(row[way].startswith(("✓", "fails unpruned")) for way in ways)
    return row


def export_table(rows: list[dict[str, Any]]) -> list[str]:
    """Markdown lines of the exports section."""
    lines = [
        "",
        "## Exports",
        "",
        "Pruned by 50% (L2), exported with `torch.export.export` and `torch.onnx.export(..., dynamo=True)`,",
        "run (the exported module; onnxruntime for ONNX) and compared with the pruned model: ✓ and the largest",
        "absolute difference. `fails unpruned too`: the unpruned model does not export that way either.",
        "",
        "| model | torch.export | onnx (dynamo) + onnxruntime | s | note |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        note = str(r["note"]).replace("|", "\\|")
        lines.append(
            f"| {r['model']} | {r.get('torch.export', '')} | {r.get('onnx (dynamo) + onnxruntime', '')} | "
            f"{r.get('seconds', 0):.0f} | {note} |"
        )
    return lines
