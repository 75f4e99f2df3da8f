"""The ``prune-torch`` command line: prune, inspect, graph, demo.

Conventions: every precondition (model spec, shapes, options, writable outputs, matplotlib,
Graphviz) is checked before any work; outputs are written atomically and an existing file needs
``--force``; errors are one line on stderr with exit status 2 (1 when ``--verify`` finds a
difference); Ctrl-C exits 130 with one line and leaves no partial file; progress goes to stderr,
only when it is a terminal and ``--quiet`` is not given.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import shutil
import sys
import threading
from collections.abc import Iterator
from typing import Any, NoReturn

__all__ = ["CLI_IMPORTANCES", "main"]

# the importance names usable from the command line: "taylor" (calibration batches and a loss
# function), "wanda" and "flap" (calibration batches) need data only the Python API can pass
# (a test keeps this in step with IMPORTANCES)
CLI_IMPORTANCES = ("bn_scale", "fpgm", "group_l2", "l1", "l2", "random")
FORMATS = ("dot", "svg", "html")
INTERRUPTED = 130  # 128 + SIGINT, what shells report for a Ctrl-C


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and the exit code 2), like every other error here."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


class _Help(argparse.HelpFormatter):
    """Shows each option's default, unless it has none worth showing (off, empty, stdout's '-')."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if default in (None, False, [], argparse.SUPPRESS) or "%(default)" in text or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("prune-torch")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model", help="package.module:factory (a callable returning an nn.Module) or a torchvision model name"
    )
    parser.add_argument("--input-shape", default="1,3,224,224", metavar="N,C,...", help="shape of the example input")
    parser.add_argument(
        "--input-dtype", default="float32", choices=["float32", "float64", "int64"], help="dtype of the example input"
    )


def _parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks of errors")
    common.add_argument(
        "--quiet",
        action="store_true",
        default=argparse.SUPPRESS,
        help="no progress bars (none when stderr is no terminal)",
    )
    kw: dict[str, Any] = {"parents": [common], "formatter_class": _Help}
    parser = _Parser(prog="prune-torch", description="Structural pruning for PyTorch models.", **kw)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")

    prune = sub.add_parser("prune", help="prune a model and save it with save_pruned", **kw)
    _add_model_args(prune)
    prune.add_argument("--ratio", type=float, default=0.5, help="share of each group's channels to remove, in [0, 1)")
    prune.add_argument(
        "--importance",
        default="l2",
        choices=CLI_IMPORTANCES,
        help="how channels are ranked ('taylor', 'wanda' and 'flap' need calibration data: use the Python API)",
    )
    prune.add_argument(
        "--round-to",
        type=int,
        default=1,
        metavar="N",
        help="keep a multiple of N channels in every group (the kept count rounds to the nearest multiple)",
    )
    prune.add_argument(
        "--ignore", action="append", default=[], metavar="MODULE", help="module path to keep (repeatable)"
    )
    prune.add_argument(
        "--target",
        default="channels",
        choices=["channels", "params", "macs"],
        help="what --ratio is a share of: each group's channels, or the model's parameters or MACs",
    )
    prune.add_argument("--global-ranking", action="store_true", help="rank channels across groups, not within each")
    prune.add_argument("--steps", type=int, default=1, metavar="N", help="prune in N rounds, re-scoring between them")
    prune.add_argument("--out", required=True, metavar="FILE", help="where to write the pruned model (save_pruned)")
    prune.add_argument("--plot", metavar="FILE.png", help="also save the per-layer width plot (needs matplotlib)")
    prune.add_argument(
        "--approximate",
        default="norms",
        choices=["norms", "yes", "no"],
        help="groups whose channels an op mixes: prune across normalisation layers only, across any mixing op, or none",
    )
    prune.add_argument(
        "--verify",
        action="store_true",
        help="check the outputs against the silenced original after pruning; on a difference, save nothing, exit 1",
    )
    prune.add_argument("--force", action="store_true", help="replace output files that exist")

    inspect = sub.add_parser("inspect", help="list the groups of a model, and why some are blocked", **kw)
    _add_model_args(inspect)
    inspect.add_argument("--all", action="store_true", help="also list groups without parameters")

    graph = sub.add_parser("graph", help="draw the dependency graph", **kw)
    _add_model_args(graph)
    graph.add_argument(
        "--format", default="dot", choices=FORMATS, help="Graphviz text, SVG (needs Graphviz 'dot'), or an HTML page"
    )
    graph.add_argument("--out", default="-", metavar="FILE", help="where to write it; '-' (the default) is stdout")
    graph.add_argument("--force", action="store_true", help="replace the output file if it exists")

    demo = sub.add_parser("demo", help="prune a ResNet-style model by 50%% and check equivalence", **kw)
    demo.add_argument("--ratio", type=float, default=0.5, help="share of each group's channels to remove")
    demo.add_argument("--round-to", type=int, default=8, metavar="N", help="keep a multiple of N channels")
    demo.add_argument("--size", type=int, default=224, help="input height and width")
    return parser


class _Progress:
    """One tqdm bar on stderr over a command's stages; the elapsed time ticks while a stage runs."""

    def __init__(self, stages: list[str], enabled: bool) -> None:
        from tqdm import tqdm

        self.bar = tqdm(
            total=len(stages),
            file=sys.stderr,
            disable=not enabled,
            leave=False,
            bar_format="{desc:<12} {bar:20} {n_fmt}/{total_fmt} stages [{elapsed}]",
        )
        self._done = threading.Event()
        self._ticker = threading.Thread(target=self._tick, daemon=True) if enabled else None
        if self._ticker is not None:
            self._ticker.start()

    def _tick(self) -> None:
        while not self._done.wait(0.5):
            self.bar.refresh()

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self.bar.set_description_str(name)
        yield
        self.bar.update(1)

    def close(self) -> None:
        """Stop the bar (and clear its line); closing twice is harmless."""
        self._done.set()
        if self._ticker is not None:
            self._ticker.join()
            self._ticker = None
        self.bar.close()


@contextlib.contextmanager
def _progress(args: argparse.Namespace, stages: list[str]) -> Iterator[_Progress]:
    progress = _Progress(stages, enabled=not args.quiet and sys.stderr.isatty())
    try:
        yield progress
    finally:
        progress.close()


def _inputs(args: argparse.Namespace) -> Any:
    import torch

    from prune_torch._models import parse_shape

    shape = parse_shape(args.input_shape)
    if args.input_dtype == "int64":
        return torch.zeros(shape, dtype=torch.long)
    return torch.randn(shape, dtype=getattr(torch, args.input_dtype))


_APPROXIMATE = {"norms": None, "yes": True, "no": False}


def _cmd_prune(args: argparse.Namespace) -> int:
    import torch

    from prune_torch._history import save_pruned
    from prune_torch._models import SpecError, build_model
    from prune_torch._output import Destination
    from prune_torch._prune import prune
    from prune_torch._verify import VerificationError

    if args.plot and importlib.util.find_spec("matplotlib") is None:
        raise SpecError("--plot needs matplotlib: pip install 'prune-torch[plot]'")
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(Destination(args.out, "--out", force=args.force))
        plot = stack.enter_context(Destination(args.plot, "--plot", force=args.force)) if args.plot else None
        stages = ["building", "pruning and verifying" if args.verify else "pruning", "saving"]
        with _progress(args, stages + (["plotting"] if plot else [])) as progress:
            with progress.stage("building"):
                model = build_model(args.model).eval()
                inputs = _inputs(args)
            with progress.stage(stages[1]):
                try:
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
                        approximate=_APPROXIMATE[args.approximate],
                        verify=args.verify,
                        show_progress=not args.quiet,
                    )
                except VerificationError as error:
                    print(f"prune-torch prune: {error}", file=sys.stderr)
                    return 1
            with progress.stage("saving"), torch.no_grad():
                out.write_with(lambda path: save_pruned(model, path))
            if plot is not None:
                with progress.stage("plotting"):
                    plot.write_with(report.plot_widths)
        # both outputs are complete: only now do they replace anything
        out.commit()
        if plot is not None:
            plot.commit()
    print(report)
    if args.verify:
        approximate = f"; {len(report.approximate)} approximate group(s) not comparable" if report.approximate else ""
        print(f"verify: every exact group keeps the outputs of the silenced original{approximate}")
    print(f"saved {args.out}")
    if plot is not None:
        print(f"width plot {args.plot}")
    return 0


def _only_own_dims(group: Any) -> bool:
    """A blocked group made of one tensor's own dim (a kernel dim): noise unless --all."""
    return not group.prunable and len({m.value.id for m in group.members}) == 1


def _trace(args: argparse.Namespace, progress: _Progress) -> Any:
    from prune_torch._models import build_model
    from prune_torch._traced import trace_model

    with progress.stage("building"):
        model = build_model(args.model).eval()
        inputs = _inputs(args)
    with progress.stage("tracing"):
        return trace_model(model, inputs)


def _cmd_inspect(args: argparse.Namespace) -> int:
    with _progress(args, ["building", "tracing", "grouping"]) as progress:
        graph = _trace(args, progress)
        with progress.stage("grouping"):
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
        elif group.mixing:
            from prune_ops import mixing_blocker

            taken = mixing_blocker(group.mixing, None) is None
            default = "pruned by default" if taken else "left whole unless --approximate yes"
            mixed = "; ".join(str(n) for n in group.mixing)
            print(f"{'':>36}approximate ({default}): mixed by {mixed}")
    return 0


def _cmd_graph(args: argparse.Namespace) -> int:
    from prune_torch._models import SpecError
    from prune_torch._output import Destination
    from prune_torch._views import graph_dot, graph_html, graph_svg

    if args.format == "svg" and shutil.which("dot") is None:
        raise SpecError("--format svg needs Graphviz ('dot' on PATH): install graphviz, or use --format dot or html")
    with Destination(args.out, "--out", force=args.force, stdout_ok=True) as out:
        with _progress(args, ["building", "tracing", "drawing"]) as progress:
            graph = _trace(args, progress)
            with progress.stage("drawing"):
                render = {"dot": graph_dot, "svg": graph_svg, "html": lambda g: graph_html(g, args.model)}
                out.write_text(render[args.format](graph))
        out.commit()
    if not out.to_stdout and not args.quiet:
        print(f"wrote {args.out}", file=sys.stderr)  # stderr: stdout may be the output itself
    return 0


def _run(args: argparse.Namespace) -> int:
    if args.command == "demo":
        from prune_torch._demo import run_demo

        return 0 if run_demo(args.ratio, args.round_to, args.size) else 1
    if args.command == "prune":
        return _cmd_prune(args)
    if args.command == "inspect":
        return _cmd_inspect(args)
    return _cmd_graph(args)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``prune-torch`` and ``python -m prune_torch``; errors are one line unless ``--debug``."""
    command = "prune-torch"
    try:
        try:
            args = _parser().parse_args(argv)
        except SystemExit as stop:  # --help, --version, a usage error: argparse has printed it
            return stop.code if isinstance(stop.code, int) else 2
        command = f"prune-torch {args.command}"
        args.debug = getattr(args, "debug", False)
        args.quiet = getattr(args, "quiet", False)
        try:
            return _run(args)
        except Exception as error:
            if args.debug:
                raise
            message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            print(f"{command}: error: {message} (rerun with --debug for the traceback)", file=sys.stderr)
            return 2
    except KeyboardInterrupt:
        # the outputs' context managers have removed every partial file on the way out
        print(f"{command}: interrupted", file=sys.stderr)
        return INTERRUPTED
    except BrokenPipeError:
        # the reader of stdout went away (``| head``): say nothing more, exit like a killed pipe writer
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - stops the interpreter's final flush from failing
        return 141


if __name__ == "__main__":
    sys.exit(main())
