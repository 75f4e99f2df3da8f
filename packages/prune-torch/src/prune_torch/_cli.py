"""The ``prune-torch`` command line: prune, inspect, graph, demo."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, NoReturn

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and the exit code 2), like every other error here."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model", help="package.module:factory (a callable returning an nn.Module) or a torchvision name"
    )
    parser.add_argument("--input-shape", default="1,3,224,224", help="example input shape, e.g. 1,3,224,224")
    parser.add_argument("--input-dtype", default="float32", choices=["float32", "float64", "int64"])


def _parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    common.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bars")
    parser = _Parser(prog="prune-torch", description="Structural pruning for PyTorch models.", parents=[common])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    prune = sub.add_parser("prune", help="prune a model and save it with save_pruned", parents=[common])
    _add_model_args(prune)
    prune.add_argument("--ratio", type=float, default=0.5)
    prune.add_argument("--importance", default="l2")
    prune.add_argument("--round-to", type=int, default=1)
    prune.add_argument("--ignore", action="append", default=[], help="module path to keep (repeatable)")
    prune.add_argument("--target", default="channels", choices=["channels", "params", "macs"])
    prune.add_argument("--global-ranking", action="store_true")
    prune.add_argument("--steps", type=int, default=1)
    prune.add_argument("--out", required=True, help="where to write the pruned model")
    prune.add_argument("--plot", help="save the per-layer width plot as PNG")
    prune.add_argument("--verify", action="store_true", help="check equivalence with the silenced original")

    inspect = sub.add_parser("inspect", help="list the groups of a model", parents=[common])
    _add_model_args(inspect)
    inspect.add_argument("--all", action="store_true", help="also list groups without parameters")

    graph = sub.add_parser("graph", help="draw the dependency graph", parents=[common])
    _add_model_args(graph)
    graph.add_argument("--format", default="dot", choices=["dot", "svg", "html"])
    graph.add_argument("--out", required=True)

    demo = sub.add_parser("demo", help="prune a ResNet-style model by 50%% and check equivalence", parents=[common])
    demo.add_argument("--ratio", type=float, default=0.5)
    demo.add_argument("--round-to", type=int, default=8)
    demo.add_argument("--size", type=int, default=224, help="input height and width")
    return parser


def _inputs(args: argparse.Namespace) -> Any:
    import torch

    from prune_torch._models import parse_shape

    shape = parse_shape(args.input_shape)
    if args.input_dtype == "int64":
        return torch.zeros(shape, dtype=torch.long)
    return torch.randn(shape, dtype=getattr(torch, args.input_dtype))


def _writable(path: str) -> Path:
    from prune_torch._models import SpecError

    target = Path(path)
    if not target.parent.exists() or not target.parent.is_dir():
        raise SpecError(f"cannot write {path!r}: folder {str(target.parent)!r} does not exist")
    if target.is_dir():
        raise SpecError(f"cannot write {path!r}: it is a folder")
    return target


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _cmd_prune(args: argparse.Namespace) -> int:
    import copy

    import torch

    from prune_torch._history import save_pruned
    from prune_torch._models import build_model
    from prune_torch._prune import prune
    from prune_torch._verify import check_equivalence

    out = _writable(args.out)
    plot = _writable(args.plot) if args.plot else None
    model = build_model(args.model).eval()
    inputs = _inputs(args)
    original = copy.deepcopy(model) if args.verify else None
    report = prune(
        model,
        inputs,
        ratio=args.ratio,
        importance=args.importance,
        round_to=args.round_to,
        ignore=args.ignore,
        target=args.target,
        global_ranking=args.global_ranking,
        steps=args.steps,
        show_progress=not args.quiet,
    )
    print(report)
    if original is not None:
        double = inputs.double() if inputs.is_floating_point() else inputs
        result = check_equivalence(
            original.double(),
            copy.deepcopy(model).double(),
            report.plan,
            double,
            silence_outputs=report.silence_outputs,
            rtol=1e-6,
            atol=1e-9,
        )
        print(f"verify: {result}")
        if not result.ok:
            return 1
    with torch.no_grad():
        save_pruned(model, out)
    print(f"saved {out}")
    if plot is not None:
        report.plot_widths(plot)
        print(f"width plot {plot}")
    return 0


def _only_own_dims(group: Any) -> bool:
    """A blocked group made of one tensor's own dim (a kernel dim): noise unless --all."""
    return not group.prunable and len({m.value.id for m in group.members}) == 1


def _cmd_inspect(args: argparse.Namespace) -> int:
    from prune_torch._models import build_model
    from prune_torch._traced import trace_model

    model = build_model(args.model).eval()
    graph = trace_model(model, _inputs(args))
    groups = graph.groups()
    shown = [g for g in groups if args.all or (g.parameters and not _only_own_dims(g))]
    print(f"{len(graph.ops)} ops, {len(groups)} groups, {len(groups.prunable)} prunable")
    print(f"{'id':>4}  {'kind':<11} {'units':>6}  {'status':<10} members / reason")
    for group in shown:
        status = "prunable" if group.prunable else "blocked"
        members = ", ".join(m.label for m in group.parameters[:4]) + (" ..." if len(group.parameters) > 4 else "")
        print(f"{group.id:>4}  {group.kind.value:<11} {group.size:>6}  {status:<10} {members}")
        if not group.prunable:
            print(f"{'':>36}why: {'; '.join(group.blockers) or 'a single unit'}")
    return 0


def _cmd_graph(args: argparse.Namespace) -> int:
    from prune_torch._models import build_model
    from prune_torch._traced import trace_model
    from prune_torch._views import graph_dot, graph_html, graph_svg

    out = _writable(args.out)
    model = build_model(args.model).eval()
    graph = trace_model(model, _inputs(args))
    render = {"dot": graph_dot, "svg": graph_svg, "html": lambda g: graph_html(g, args.model)}[args.format]
    _atomic_write(out, render(graph))
    print(f"wrote {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``prune-torch`` and ``python -m prune_torch``; errors are one line unless ``--debug``."""
    args = _parser().parse_args(argv)
    args.debug = getattr(args, "debug", False)
    args.quiet = getattr(args, "quiet", False)
    try:
        if args.command == "demo":
            from prune_torch._demo import run_demo

            return 0 if run_demo(args.ratio, args.round_to, args.size) else 1
        if args.command == "prune":
            return _cmd_prune(args)
        if args.command == "inspect":
            return _cmd_inspect(args)
        return _cmd_graph(args)
    except Exception as error:
        if args.debug:
            raise
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"prune-torch {args.command}: error: {message} (rerun with --debug for the traceback)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
