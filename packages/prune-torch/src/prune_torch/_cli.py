"""The ``prune-torch`` command line."""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``prune-torch`` and ``python -m prune_torch``."""
    parser = argparse.ArgumentParser(prog="prune-torch", description="Structural pruning for PyTorch models.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="prune a ResNet-style model by 50%% and check equivalence")
    demo.add_argument("--ratio", type=float, default=0.5)
    demo.add_argument("--round-to", type=int, default=8)
    demo.add_argument("--size", type=int, default=224, help="input height and width")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from prune_torch._demo import run_demo

        return 0 if run_demo(args.ratio, args.round_to, args.size) else 1
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
