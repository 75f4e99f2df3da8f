"""The model zoo: prune real architectures nobody here wrote and check them numerically.

For each model (random weights, no downloads): trace, prune 50% of channels with L2, run the
pruned model, check its output shapes, compare with the silenced original in float64, and
round-trip save_pruned / load_pruned. Writes a Markdown table (docs/zoo.md by default).

    python benchmarks/zoo.py --suite torchvision --subset ci --out docs/zoo.md
"""

from __future__ import annotations

import argparse
import copy
import gc
import hashlib
import json
import math
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

import prune_torch as pt


def _outputs(result: Any) -> list[torch.Tensor]:
    from prune_torch._aten import tensors_in

    if hasattr(result, "to_tuple"):
        result = result.to_tuple()
    if isinstance(result, dict):
        result = list(result.values())
    return [t for t in tensors_in(result) if t.is_floating_point() or t.dtype == torch.long]


def _run(model: torch.nn.Module, inputs: Any) -> list[torch.Tensor]:
    with torch.no_grad():
        if isinstance(inputs, dict):
            return _outputs(model(**inputs))
        if isinstance(inputs, tuple):
            return _outputs(model(*inputs))
        return _outputs(model(inputs))


def _double(inputs: Any) -> Any:
    if isinstance(inputs, torch.Tensor):
        return inputs.double() if inputs.is_floating_point() else inputs
    if isinstance(inputs, dict):
        return {k: _double(v) for k, v in inputs.items()}
    if isinstance(inputs, (list, tuple)):
        return type(inputs)(_double(v) for v in inputs)
    return inputs


def _equivalence(original: torch.nn.Module, model: torch.nn.Module, report: Any, inputs: Any) -> Any:
    try:
        return pt.check_equivalence(
            original.double(),
            copy.deepcopy(model).double(),
            report.plan,
            _double(inputs),
            rtol=1e-6,
            atol=1e-7,
            silence_outputs=report.silence_outputs,
        )
    except RuntimeError as error:
        if "scalar type" not in str(error):
            raise
    # a model that makes float32 tensors of its own (RAFT's coordinate grids) runs in float32 only:
    # compared there, within what float32 rounding explains
    return pt.check_equivalence(
        original.float(), copy.deepcopy(model).float(), report.plan, inputs, silence_outputs=report.silence_outputs
    )


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(x.shape == y.shape and torch.equal(x, y) for x, y in zip(a, b))


def reload_check(model: torch.nn.Module, build: Callable[[], torch.nn.Module], inputs: Any) -> str:
    """save_pruned, then a freshly built model in train mode and one in eval mode, load_pruned without
    example inputs (the file keeps their structure): outputs bit-identical, modes left as they were."""
    expected = _run(model, inputs)
    with tempfile.TemporaryDirectory() as folder:
        path = pt.save_pruned(model, Path(folder) / "model.pt")
        for mode in ("train", "eval"):
            torch.manual_seed(1)
            fresh = build().train(mode == "train")
            pt.load_pruned(fresh, path)
            if fresh.training != (mode == "train"):
                raise AssertionError(f"load_pruned changed the mode of a model in {mode} mode")
            if not _same(_run(fresh.eval(), inputs), expected):
                raise AssertionError(f"load_pruned into a fresh model in {mode} mode gives different outputs")
            del fresh
    return "✓/✓"


Case = tuple[str, str, Callable[[], torch.nn.Module], Callable[[], Any], dict[str, Any]]


def check(
    family: str,
    name: str,
    build: Callable[[], torch.nn.Module],
    make_inputs: Callable[[], Any],
    options: dict[str, Any],
) -> dict[str, Any]:
    """One model through every check; the row of the table."""
    row: dict[str, Any] = {"family": family, "model": name, "result": "fail", "blocker": ""}
    stage = "build"
    options = dict(options)
    # detectors: how many boxes survive non-maximum suppression depends on the weights, so output
    # shapes are compared only where they do not come from the data (the plan check does the rest)
    detections = bool(options.pop("detections", False))

    def out_of_time(_signum: int, _frame: Any) -> None:
        raise OutOfTime(TIME_LIMIT)

    signal.signal(signal.SIGALRM, out_of_time)
    signal.alarm(TIME_LIMIT)
    try:
        try:
            torch.manual_seed(0)
            model = build().eval()
            inputs = make_inputs()
            stage = "trace"
            start = time.perf_counter()
            graph = pt.trace(model, inputs)
            row["trace_s"] = time.perf_counter() - start
            groups = graph.groups()
            row["groups"] = f"{len(groups.prunable)}/{sum(1 for g in groups if g.parameters)}"
            opaque = sorted({f"{op.target} in {op.owner or '<root>'}" for op in graph.ops if op.kind.value == "opaque"})
            original = copy.deepcopy(model)
            reference_shapes = [tuple(t.shape) for t in _run(model, inputs)]
            stage = "prune"
            start = time.perf_counter()
            report = pt.prune(model, inputs, ratio=0.5, importance="l2", show_progress=False, **options)
            row["prune_s"] = time.perf_counter() - start
            before, after = report.before, report.after
            row.update(params=(before.parameters, after.parameters), macs=(before.macs, after.macs))
            mixed = sum(1 for note in report.skipped if "would change the kept channels' values" in note)
            row["approximate"] = f"{len(report.approximate)}/{mixed}"
            row["plan"] = plan_digest(report.plan)
            stage = "forward"
            shapes = [tuple(t.shape) for t in _run(model, inputs)]
            if len(shapes) != len(reference_shapes) or (shapes != reference_shapes and not detections):
                raise AssertionError(f"output shapes changed: {reference_shapes} → {shapes}")
            stage = "equivalence"
            try:
                result = _equivalence(original, model, report, inputs)
                row["equivalence"] = f"{result.max_rel:.1e}"
            except Exception as error:
                if not detections:
                    raise
                # float64 can keep another set of boxes than float32 did: then there is nothing to compare by position
                result = None
                row["equivalence"] = "n/a"
                row["note"] = f"detections of the silenced original not comparable ({str(error).splitlines()[0][:120]})"
            stage = "save/load"
            row["reload"] = reload_check(model, build, inputs)
            if result is not None and not result.ok and report.approximate:
                row["result"] = "pass"
                row["blocker"] = (
                    f"{len(report.approximate)} approximate group(s) pruned across a normalisation layer: "
                    "equality with the silenced original not expected"
                )
            elif result is not None and not result.ok:
                row["result"] = "pass*"
                row["blocker"] = f"outputs differ from the silenced original (max rel {result.max_rel:.1e})"
            elif after.parameters >= before.parameters:
                row["result"] = "pass*"
                row["blocker"] = "nothing prunable: " + (opaque[0] if opaque else "every group is blocked")
            else:
                row["result"] = "pass"
            if report.skipped and not row["blocker"]:
                # the count first: the notes are cut to fit the table
                count = f"{len(report.skipped)} groups, the first: " if len(report.skipped) > 1 else ""
                row["blocker"] = (count + "; ".join(report.skipped))[:300]
            if row.get("note") and not row["blocker"]:
                row["blocker"] = row["note"]
            if after.parameters > KEPT_LIMIT * before.parameters:
                row["blocker"] = "; ".join(filter(None, [_why_kept(graph, before.parameters), row["blocker"]]))[:300]
        except Exception as error:
            # a trace error lists the meta run, then the real run: the last attempt is the blocker
            message = str(error).splitlines()[0].split(" | ")[-1]
            row["blocker"] = f"{stage}: {type(error).__name__}: {message[:200]}"
            if stage == "save/load":
                row["reload"] = "✗"
            if "--debug" in sys.argv:
                traceback.print_exc()
    except OutOfTime as error:  # outside the inner try: also when it strikes in that try's handler
        row["blocker"] = f"{stage}: {error}"
        if "--debug" in sys.argv:
            traceback.print_exc()
    finally:
        signal.alarm(0)
        gc.collect()
    return row


TIME_LIMIT = 420


class OutOfTime(BaseException):
    """A model ran past ``TIME_LIMIT`` (raised by the alarm).

    A ``BaseException``, like ``KeyboardInterrupt``: the code under test catches ``Exception`` where
    a model's forward may fail (a trace, a fit's try) and would take a ``TimeoutError`` for one more
    failure and go on; this one passes through it and stops the model.
    """

    def __init__(self, seconds: int) -> None:
        super().__init__(f"timeout after {seconds} s (the limit per model on this machine)")


KEPT_LIMIT = 0.8
"""A row that keeps more of its parameters at ratio 0.5 says why."""


def _why_kept(graph: Any, total: int) -> str:
    """How much of the model the traced forward never reads (an encoder stage a decoder does not run)."""
    read = {i for op in graph.ops for i in op.inputs}
    unread = [v for v in graph.values if v.kind.value == "parameter" and v.id not in read]
    size = sum(math.prod(v.shape) for v in unread)
    modules = sorted({v.owner.rsplit(".", 1)[0] if "." in v.owner else v.owner for v in unread})
    where = f" ({', '.join(modules[:3])}{' ...' if len(modules) > 3 else ''})" if modules else ""
    return (
        f"keeps over {KEPT_LIMIT:.0%} of its parameters: {size / max(total, 1):.0%} are never run by the forward{where}"
    )


def plan_digest(plan: pt.Plan) -> str:
    """A short hash of what a plan removes: equal digests mean bit-identical pruned weights from the same model."""
    removed = sorted((e.path, e.axis, e.removed) for e in plan.entries)
    return hashlib.sha256(json.dumps(removed).encode()).hexdigest()[:16]


def compare_plans(rows: list[dict[str, Any]], path: Path, record: bool) -> list[str]:
    """Models whose plan differs from the one recorded in ``path`` (``record`` writes them instead)."""
    digests = {r["model"]: r["plan"] for r in rows if r.get("plan")}
    if record:
        known = json.loads(path.read_text()) if path.exists() else {}
        path.write_text(json.dumps({**known, **digests}, indent=1, sort_keys=True) + "\n")
        return []
    known = json.loads(path.read_text()) if path.exists() else {}
    return [f"{m}: plan {d}, recorded {known[m]}" for m, d in digests.items() if m in known and known[m] != d]


def _tv_input(name: str) -> Callable[[], Any]:
    size = 299 if name == "inception_v3" else 224
    if name.startswith("vit_h"):
        size = 224
    return lambda: torch.randn(1, 3, size, size)


def torchvision_cases(subset: str) -> Iterator[Case]:
    import torchvision
    from torchvision import models

    for name in models.list_models(module=models):
        if subset == "ci" and name not in CI_TORCHVISION:
            continue
        yield (
            "torchvision classification",
            name,
            lambda n=name: models.get_model(n, weights=None),
            _tv_input(name),
            {},
        )
    for name in models.list_models(module=models.segmentation):
        if subset == "ci" and name not in CI_TORCHVISION:
            continue
        yield (
            "torchvision segmentation",
            name,
            lambda n=name: models.get_model(n, weights=None, weights_backbone=None),
            lambda: torch.randn(1, 3, 224, 224),
            {},
        )
    if subset == "ci":
        return
    for name in models.list_models(module=models.video):
        frames = 16 if "mvit" in name or "s3d" in name else 8
        side = 224 if "mvit" in name or "swin" in name or "s3d" in name else 112
        yield (
            "torchvision video",
            name,
            lambda n=name: models.get_model(n, weights=None),
            lambda f=frames, s=side: torch.randn(1, 3, f, s, s),
            {},
        )
    for name in models.list_models(module=models.optical_flow):
        yield (
            "torchvision optical flow",
            name,
            lambda n=name: models.get_model(n, weights=None),
            lambda: (torch.randn(1, 3, 128, 128), torch.randn(1, 3, 128, 128)),
            {},
        )
    del torchvision


# one model per op family: residual, concat growth, depthwise + SE, channel shuffle, grouped convs,
# inception branches, ASPP segmentation, ViT attention, shifted windows, LayerNorm CNN, FPN-free seg
CI_TORCHVISION = {
    "resnet18",
    "densenet121",
    "mobilenet_v3_small",
    "shufflenet_v2_x0_5",
    "resnext50_32x4d",
    "googlenet",
    "vit_b_16",
    "swin_t",
    "convnext_tiny",
    "efficientnet_b0",
    "regnet_y_400mf",
    "squeezenet1_0",
    "deeplabv3_mobilenet_v3_large",
    "lraspp_mobilenet_v3_large",
    "mnasnet0_5",
    "alexnet",
    "vgg11_bn",
}


def _fmt_count(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e5 else f"{n / 1e3:.1f}K"


def write_table(rows: list[dict[str, Any]], path: Path, title: str, command: str) -> None:
    passed = sum(1 for r in rows if r["result"] == "pass")
    partial = sum(1 for r in rows if r["result"] == "pass*")
    lines = [
        f"# {title}",
        "",
        f"Generated by `{command}` on {time.strftime('%Y-%m-%d')} (torch {torch.__version__}, CPU); do not edit by hand.",
        "Each model: random weights, prune 50% of channels (L2; heads, MLP units and conv channels; outputs keep",
        "their shape), run, compare output shapes, compare with the silenced original in float64 (max relative",
        "difference), save_pruned, then load_pruned into a freshly built model in train mode and one in eval mode",
        "(`reload`: outputs bit-identical, detections included). `pass*`: runs and round-trips, but see the note.",
        "`approx.`: approximate groups pruned (channels a normalisation layer mixes) / groups left whole because",
        "another op mixes their channels (a reduction, softmax or cumulative op over them).",
        "",
        f"**Summary: {passed} pass, {partial} pass with a note, {len(rows) - passed - partial} fail, of {len(rows)} models.**",
        "",
        "| family | model | groups (prunable/all) | approx. | params before → after | MACs before → after | trace s | prune s | equivalence (max rel) | reload: train/eval | result | note / blocker |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [_line(r) for r in rows]
    lines += _totals([(r["family"], r["model"], r["result"], r.get("prune_s")) for r in rows])
    path.write_text("\n".join(lines))


def _line(r: dict[str, Any]) -> str:
    """One model's row of the table."""
    params = f"{_fmt_count(r['params'][0])} → {_fmt_count(r['params'][1])}" if "params" in r else ""
    macs = f"{_fmt_count(r['macs'][0])} → {_fmt_count(r['macs'][1])}" if "macs" in r else ""
    trace_s = f"{r['trace_s']:.2f}" if "trace_s" in r else ""
    prune_s = f"{r['prune_s']:.2f}" if "prune_s" in r else ""
    blocker = str(r["blocker"]).replace("|", "\\|")
    return (
        f"| {r['family']} | {r['model']} | {r.get('groups', '')} | {r.get('approximate', '')} | {params} | {macs} | {trace_s} | {prune_s} | "
        f"{r.get('equivalence', '')} | {r.get('reload', '')} | {r['result']} | {blocker} |"
    )


def _totals(results: list[tuple[str, str, str, float | None]]) -> list[str]:
    """The lines under the table: pass rate per family, slowest prune (family, model, result, prune s)."""
    families: dict[str, list[int]] = {}
    for family, _model, result, _seconds in results:
        families.setdefault(family, [0, 0])
        families[family][1] += 1
        families[family][0] += result == "pass"
    lines = ["", "Pass rate per family: " + ", ".join(f"{f} {p}/{n}" for f, (p, n) in families.items()), ""]
    timed = [(model, seconds) for _f, model, _r, seconds in results if seconds is not None]
    if timed:  # issue 14: no model over 60 s
        slowest = max(timed, key=lambda t: t[1])
        over = [model for model, seconds in timed if seconds > 60]
        lines += [f"Slowest prune: {slowest[0]}, {slowest[1]:.1f} s; over 60 s: {', '.join(over) or 'none'}.", ""]
    return lines


def merge_table(rows: list[dict[str, Any]], path: Path) -> None:
    """Rows of the models run now replace theirs in the page at ``path``; the rest of the page stays.

    The summary, the pass rates and the slowest prune are counted again over the whole table, and
    the header says which models were run again and when.
    """
    fresh = {r["model"]: r for r in rows}
    old = path.read_text().split("\n")
    start = next(i for i, line in enumerate(old) if line.startswith("|---"))
    end = next(i for i in range(start + 1, len(old)) if not old[i].startswith("| "))
    table = []
    for line in old[start + 1 : end]:
        model = line.split(" | ")[1]
        table.append(_line(fresh.pop(model)) if model in fresh else line)
    table += [_line(r) for r in fresh.values()]  # models the page did not have yet
    results = []
    for line in table:
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        results.append((cells[0], cells[1], cells[10], float(cells[7]) if cells[7] else None))
    rest = old[end:]
    after_totals = next((i for i, line in enumerate(rest) if line.startswith("Slowest prune")), 1) + 1
    passed = sum(1 for r in results if r[2] == "pass")
    partial = sum(1 for r in results if r[2] == "pass*")
    head = []
    for line in old[: start + 1]:
        if line.startswith("**Summary:"):
            line = f"**Summary: {passed} pass, {partial} pass with a note, {len(results) - passed - partial} fail, of {len(results)} models.**"
        head.append(line)
    rerun = ", ".join(r["model"] for r in rows)
    head.insert(3, f"Rows run again with `--merge` on {time.strftime('%Y-%m-%d')} (the code of that day): {rerun}.")
    tail = rest[after_totals:]
    while tail and not tail[0]:  # the totals end with a blank line: keep one, or each merge adds one
        tail = tail[1:]
    path.write_text("\n".join(head[: start + 2] + table + _totals(results) + [""] + tail))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--suite",
        action="append",
        choices=["torchvision", "timm", "transformers", "detection", "libraries", "exports"],
        default=[],
    )
    parser.add_argument("--subset", choices=["ci", "full"], default="full")
    parser.add_argument("--out", default="docs/zoo.md")
    parser.add_argument("--only", action="append", default=[])
    parser.add_argument("--debug", action="store_true")
    parser.add_argument(
        "--merge", action="store_true", help="replace only the rows of the models run (with --only) in --out"
    )
    parser.add_argument("--plans", default=str(Path(__file__).with_name("zoo-plans.json")))
    parser.add_argument("--record-plans", action="store_true", help="write each model's plan digest to --plans")
    args = parser.parse_args()
    suites = args.suite or ["torchvision", "timm", "transformers", "detection", "libraries"]
    if not args.suite and args.subset == "full":
        suites.append("exports")  # several minutes of export compilation: not in the CI subset
    from zoo_hub import detection_cases, library_cases, timm_cases, transformers_cases

    sources = {
        "torchvision": torchvision_cases,
        "timm": timm_cases,
        "transformers": transformers_cases,
        "detection": detection_cases,
        "libraries": library_cases,
    }
    rows = []
    export_rows = []
    for suite in suites:
        if suite == "exports":
            from zoo_export import check_export, export_cases

            for name, build, make_inputs in export_cases():
                if args.only and name not in args.only:
                    continue
                try:
                    export_row = check_export(name, build, make_inputs)
                except Exception as error:
                    export_row = {"model": name, "ok": False, "note": f"{type(error).__name__}: {error}"[:200]}
                print(
                    f"{'pass' if export_row['ok'] else 'fail':6} {'export':28} {name:36} {export_row['note']}",
                    flush=True,
                )
                export_rows.append(export_row)
            continue
        for family, name, build, make_inputs, options in sources[suite](args.subset):
            if args.only and name not in args.only:
                continue
            start = time.perf_counter()
            row = check(family, name, build, make_inputs, options)
            print(
                f"{row['result']:6} {family:28} {name:36} {time.perf_counter() - start:6.1f}s {row['blocker']}",
                flush=True,
            )
            rows.append(row)
    command = "nox -s zoo" if args.subset == "full" else "nox -s zoo -- --subset ci"
    if args.merge:
        merge_table(rows, Path(args.out))
    else:
        write_table(rows, Path(args.out), "Model zoo", command)
    if export_rows:
        from zoo_export import export_table

        with Path(args.out).open("a") as file:
            file.write("\n".join(export_table(export_rows)) + "\n")
    failed = [r for r in rows if r["result"] == "fail"] + [r for r in export_rows if not r["ok"]]
    # the same model pruned the same way must remove the same units as the recorded run (speed work
    # must not change a plan): a differing digest is a failure
    changed = compare_plans(rows, Path(args.plans), args.record_plans)
    for line in changed:
        print(f"plan changed: {line}")
    if changed:
        failed.append({"model": "plans"})
    total = len(rows) + len(export_rows)
    print(f"{total - len(failed)}/{total} ran; table in {args.out}")
    return 1 if args.subset == "ci" and failed else 0


if __name__ == "__main__":
    sys.exit(main())
