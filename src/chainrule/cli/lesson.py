"""``chainrule lesson N``: run one of the tutorial lessons."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import check_plot_dir


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("lesson", help="run one of the tutorial lessons",
                              description="Run a lesson from the tutorials chainrule grew out of.")
    p.add_argument("number", metavar="N", help="which lesson (1, 2, 3, ...)")
    p.add_argument("--plot", metavar="DIR", help="write the lesson's figures into DIR")
    return p


def run(args: argparse.Namespace) -> int:
    from .. import lessons

    if args.plot:
        check_plot_dir(args.plot, "--plot")
    lessons.run(int(args.number) if args.number.isdigit() else args.number, plot_dir=args.plot)
    return 0
