"""Prune real ONNX models shipped inside PyPI packages by 50% and write docs/onnx.md.

``nox -s onnx`` installs the packages without their dependencies (only the .onnx files are used):
nudenet's YOLOv8n detector and rapidocr-onnxruntime's PP-OCR detector, classifier and recogniser.
For each: prune, onnx.checker (inside apply), onnxruntime runs it, outputs against the silenced
original, parameters and MACs before and after, onnxruntime latency before and after.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import time
import traceback
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

import prune_onnx as po

CASES = (
    ("nudenet YOLOv8n detector", "nudenet", "320n.onnx", {"images": (1, 3, 320, 320)}),
    ("PP-OCRv4 text detector", "rapidocr_onnxruntime", "models/ch_PP-OCRv4_det_infer.onnx", {"x": (1, 3, 320, 320)}),
    (
        "PP-OCR mobile v2 direction classifier",
        "rapidocr_onnxruntime",
        "models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
        {"x": (1, 3, 48, 192)},
    ),
    ("PP-OCRv4 text recogniser", "rapidocr_onnxruntime", "models/ch_PP-OCRv4_rec_infer.onnx", {"x": (1, 3, 48, 320)}),
)


CONDITIONS = (
    "Within these, a node is read as opaque, with its reason in the report, where its mapping would have to guess:",
    "",
    "- `Attention` (opset 23+, Q/K/V packed as (B, L, H·E) or per head as (B, H, L, E)): grouped-query attention",
    "  (fewer key/value heads than query heads) and a requested `qk_matmul_output`; past key/value states pin the",
    "  heads they meet. Heads prune, and `q_num_heads` / `kv_num_heads` follow. The query-key head dims are",
    "  approximate (the default scale 1/√(head dim) changes with them) unless a `scale` attribute is given; the",
    "  default prune leaves head dims alone, as for attention written with MatMul.",
    "- `com.microsoft.Attention`: past / present states, `do_rotary`, `past_present_share_buffer`, weights that are",
    "  not initializers. Heads prune through the packed QKV weight and bias; `num_heads` and `qkv_hidden_sizes`",
    "  follow. Masks and attention biases pin what they touch.",
    "- `com.microsoft.MultiHeadAttention`: read like the packed `Attention` when Q, K and V are (B, L, H·E) projections",
    "  without its packed bias and without past / present states; `num_heads` follows. Other layouts stay opaque.",
    "- `Einsum`: one or two operands. Two: one contracted letter, every other letter a batch letter or a free letter",
    "  of one operand (`bsd,od->bso`, `...d,do->...o`, `bsd,hed->bhse`, `bij,bjk->bik`, `bhqd,bhkd->bhqk`,",
    "  `bhqk,bhkd->bqhd`), read as transposes around a (batched) MatMul. One: a transpose, after a sum over the",
    "  letters the output drops (a reduction, which mixes them). Opaque: three or more operands, a letter repeated",
    "  in one operand (diagonals), outer products, two or more contracted letters, a letter summed in one operand",
    "  only, broadcast sizes, an implicit output over capitals and small letters (their order is the runtime's).",
    "- `Gemm` with `transA`, `Slice` with a negative step, `Pad` with `axes`, `LayerNormalization` with broadcast",
    "  scales, `GroupNormalization` with one scale per group (opset 18), `LSTM` / `GRU` / `RNN` with peepholes or",
    "  weights that are not initializers, `Gather` of an activation by a non-scalar index, and any node whose sizes",
    "  (axes, repeats, bounds) are not constants.",
)


def coverage() -> list[str]:
    """The coverage statement: the node types prune-onnx reads, from its rule table, and where each stays opaque."""
    types = sorted(po.NODE_RULES, key=str.lower)
    return [
        "## Coverage",
        "",
        f"Node types prune-onnx reads (`prune_onnx.NODE_RULES`, {len(types)}): "
        + ", ".join(f"`{t}`" for t in types)
        + ". Every other node type is opaque: no dim it touches is pruned, and the report names it.",
        "",
        *CONDITIONS,
    ]


def _locate(package: str, relative: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / relative
    return path if path.is_file() else None


def _latency(model: onnx.ModelProto, feeds: dict[str, np.ndarray], repeats: int = 20) -> float:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    session.run(None, feeds)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ratio", type=float, default=0.5)
    parser.add_argument("--out", default="docs/onnx.md")
    parser.add_argument("--exported", help="a folder of models exported by benchmarks/onnx_export.py")
    parser.add_argument("--subset", choices=["ci", "full"], default="full", help="ci: the two small PP-OCR models")
    args = parser.parse_args()
    rows = []
    failures = 0
    cases: list[tuple[str, Path | None, str, dict[str, tuple[int, ...]]]] = []
    for label, package, relative, shapes in CASES:
        if args.subset == "ci" and ("PP-OCR" not in label or "recogniser" in label):
            continue
        cases.append((label, _locate(package, relative), package, shapes))
    if args.exported:
        for path in sorted(Path(args.exported).glob("*.onnx")):
            meta = json.loads(path.with_suffix(".json").read_text())
            cases.append((meta["label"], path, "", {k: tuple(v) for k, v in meta["shapes"].items()}))
    for label, path, package, shapes in cases:
        if path is None:
            rows.append(f"| {label} | `{package}` not installed | | | | | |")
            failures += 1
            continue
        try:
            graph = po.trace(str(path), shapes)
            pruned, report = po.prune(str(path), ratio=args.ratio, input_shapes=shapes)
            onnx.checker.check_model(pruned)
            result = po.check_equivalence(graph, pruned, report.plan)
            feeds = po.random_inputs(graph)
            before_ms, after_ms = _latency(graph.model, feeds), _latency(pruned, feeds)  # type: ignore[arg-type]
            verdict = "equal" if result.ok else "DIFFERENT"
            failures += 0 if result.ok else 1
            rows.append(
                f"| {label} | {report.before.parameters:,} → {report.after.parameters:,} | "
                f"{report.before.macs / 1e6:,.1f}M → {report.after.macs / 1e6:,.1f}M | "
                f"{len(graph.groups().prunable)} | {verdict} (max rel {result.max_rel:.1e}) | "
                f"{before_ms:.1f} → {after_ms:.1f} | {len(report.skipped)} |"
            )
        except Exception as error:  # a failing model is a row of the table, not the end of the run
            traceback.print_exc()
            rows.append(f"| {label} | failed: {str(error).splitlines()[0][:120]} | | | | | |")
            failures += 1
        print(rows[-1], flush=True)
    text = "\n".join(
        [
            "# prune-onnx on real ONNX models",
            "",
            f"Generated by `nox -s onnx` (benchmarks/onnx_zoo.py): ratio {args.ratio} of every prunable group's channels,",
            "L2 importance, local ranking; models as shipped inside their PyPI packages, and torchvision / transformers",
            "models with random weights exported by `torch.onnx.export` in the session; onnxruntime "
            f"{ort.__version__} on one CPU thread ({platform.machine()}), median of 20 runs. `onnx.checker` passes for",
            "every pruned model (apply checks it and reads the model back). Outputs are compared with the silenced",
            "original (the original with the input-side weights of every consumer of a removed channel zeroed; channels",
            "summed in a product of two activations, such as attention's query-key dims, zeroed where they are made).",
            "",
            "| model | parameters | MACs | prunable groups | outputs vs silenced | ORT ms before → after | groups left whole |",
            "| --- | --- | --- | --- | --- | --- | --- |",
            *rows,
            "",
            *coverage(),
            "",
        ]
    )
    Path(args.out).write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
