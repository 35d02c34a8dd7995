"""The ``chainrule`` command: train, evaluate and use an MNIST digit classifier.

::

    chainrule train                      # the default recipe on the bundled digits
    chainrule evaluate mnist-mlp.safetensors
    chainrule predict mnist-mlp.safetensors my-seven.png
    chainrule demo                       # a 3-4-1 network learning XOR, in a second

Mistakes a user can make (a missing file, a model that does not fit the data,
an unreadable image, a missing optional package) end with one line
``chainrule: error: ...`` on stderr and a non-zero exit status, never a
traceback; set ``CHAINRULE_DEBUG=1`` to see the traceback anyway.

Each command is a module of this package with ``add_parser(subparsers)`` and
``run(args) -> int``; registering one is a line in ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from .._version import __version__
from ._common import (
    DEFAULT_MODEL,
    EXIT_INTERRUPTED,
    closed_pipes_ignored,
    one_line,
    plain_warnings,
    user_errors,
)

__all__ = ["main", "build_parser", "COMMANDS", "DEFAULT_MODEL", "EXIT_INTERRUPTED"]

#: The command modules, in the order ``chainrule --help`` lists them.
COMMANDS: tuple[str, ...] = (
    "train",
    "evaluate",
    "predict",
    "export",
    "lesson",
    "demo",
    "serve",
    "sweep",
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``chainrule`` command, subcommands included."""
    parser = argparse.ArgumentParser(
        prog="chainrule",
        description="Neural networks from scratch in NumPy: train, evaluate and use "
        "an MNIST digit classifier.",
    )
    parser.add_argument("--version", action="version", version=f"chainrule {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"{__name__}.{name}")
        module.add_parser(subparsers).set_defaults(func=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    # Warnings as one plain line; a reader leaving early (`| head`) does not stop the work.
    with plain_warnings(), closed_pipes_ignored():
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as exit_:  # --help, --version, or a usage error argparse reported
            return int(exit_.code or 0) if not isinstance(exit_.code, str) else 2
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("\nchainrule: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # a pipe closed outside the guard: the reader left, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except user_errors() as error:
        if os.environ.get("CHAINRULE_DEBUG"):
            raise
        print(f"chainrule: error: {one_line(error)}", file=sys.stderr)
        return 1
