"""The ``prune-onnx`` command line: prune, inspect, graph (the conventions of ``prune-torch``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and the exit code 2), like every other error here."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _shape_arg(text: str) -> tuple[str, tuple[int, ...]]:
    name, _, shape = text.rpartition("=")
    try:
        sizes = tuple(int(s) for s in shape.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NAME=1,3,224,224 (got {text!r})") from None
    if not name or not sizes or any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"expected NAME=1,3,224,224 (got {text!r})")
    return name, sizes


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="path to an .onnx file")
    parser.add_argument(
        "--input-shape",
        action="append",
        default=[],
        type=_shape_arg,
        metavar="NAME=SHAPE",
        help="concrete shape of an input, e.g. images=1,3,640,640 (repeatable; symbolic dims default to 1)",
    )


def _parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    common.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS, help="print less")
    parser = _Parser(prog="prune-onnx", description="Structural pruning for ONNX models.", parents=[common])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    prune = sub.add_parser("prune", help="prune a model and write the pruned .onnx", parents=[common])
    _add_model_args(prune)
    prune.add_argument("--ratio", type=float, default=0.5)
    prune.add_argument("--importance", default="l2")
    prune.add_argument("--round-to", type=int, default=1)
    prune.add_argument("--ignore", action="append", default=[], help="node name whose outputs to keep (repeatable)")
    prune.add_argument("--target", default="channels", choices=["channels", "params", "macs"])
    prune.add_argument("--global-ranking", action="store_true")
    prune.add_argument("--out", required=True, help="where to write the pruned model")
    prune.add_argument("--plan", help="also write the plan as JSON")
    prune.add_argument("--verify", action="store_true", help="check equivalence with the silenced original")

    inspect = sub.add_parser("inspect", help="list the groups of a model", parents=[common])
    _add_model_args(inspect)
    inspect.add_argument("--all", action="store_true", help="also list groups without parameters")

    graph = sub.add_parser("graph", help="write the dependency graph", parents=[common])
    _add_model_args(graph)
    graph.add_argument("--format", default="dot", choices=["dot", "json"])
    graph.add_argument("--out", required=True)
    return parser


def _writable(path: str) -> Path:
    from prune_ops import PruningError

    target = Path(path)
    if not target.parent.is_dir():
        raise PruningError(f"cannot write {path!r}: folder {str(target.parent)!r} does not exist")
    if target.is_dir():
        raise PruningError(f"cannot write {path!r}: it is a folder")
    return target


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_bytes(data)
        tmp.replace(path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _cmd_prune(args: argparse.Namespace) -> int:
    from prune_onnx._prune import prune
    from prune_onnx._trace import trace
    from prune_onnx._verify import check_equivalence

    out = _writable(args.out)
    plan_out = _writable(args.plan) if args.plan else None
    shapes = dict(args.input_shape)
    pruned, report = prune(
        args.model,
        ratio=args.ratio,
        importance=args.importance,
        round_to=args.round_to,
        ignore=args.ignore,
        target=args.target,
        global_ranking=args.global_ranking,
        input_shapes=shapes,
    )
    print(report)
    if args.verify:
        result = check_equivalence(trace(args.model, shapes), pruned, report.plan)
        print(f"verify: {result}")
        if not result.ok and not report.approximate:
            return 1
    _atomic_write(out, pruned.SerializeToString())
    print(f"saved {out}")
    if plan_out is not None:
        _atomic_write(plan_out, report.plan.to_json(indent=1).encode())
        print(f"plan {plan_out}")
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    from prune_onnx._trace import trace

    graph = trace(args.model, dict(args.input_shape))
    groups = graph.groups()
    opaque = sorted({op.target for op in graph.ops if op.kind.value == "opaque"})
    print(f"{len(graph.ops)} ops, {len(groups)} groups, {len(groups.prunable)} prunable")
    if opaque:
        print(f"opaque node types: {', '.join(opaque)}")
    print(f"{'id':>4}  {'kind':<11} {'units':>6}  {'status':<10} members / reason")
    for group in groups:
        own = len({m.value.id for m in group.members}) == 1
        if not args.all and (not group.parameters or (own and not group.prunable)):
            continue
        status = "prunable" if group.prunable else "blocked"
        members = ", ".join(m.label for m in group.parameters[:4]) + (" ..." if len(group.parameters) > 4 else "")
        print(f"{group.id:>4}  {group.kind.value:<11} {group.size:>6}  {status:<10} {members}")
        if not group.prunable:
            print(f"{'':>36}why: {'; '.join(group.blockers) or 'a single unit'}")
    return 0


def _cmd_graph(args: argparse.Namespace) -> int:
    from prune_graph import to_dot, to_json
    from prune_onnx._trace import trace

    out = _writable(args.out)
    graph = trace(args.model, dict(args.input_shape))
    text = to_dot(graph) if args.format == "dot" else to_json(graph)
    _atomic_write(out, text.encode())
    print(f"wrote {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``prune-onnx`` and ``python -m prune_onnx``; errors are one line unless ``--debug``."""
    args = _parser().parse_args(argv)
    args.debug = getattr(args, "debug", False)
    args.quiet = getattr(args, "quiet", False)
    try:
        if args.command == "prune":
            return _cmd_prune(args)
        if args.command == "inspect":
            return _cmd_inspect(args)
        return _cmd_graph(args)
    except Exception as error:
        if args.debug:
            raise
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"prune-onnx {args.command}: error: {message} (rerun with --debug for the traceback)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
