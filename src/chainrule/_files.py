"""Opening a file a user named, without hanging on a named pipe or reading a directory.

Models, checkpoints, IDX files and pictures all come from paths a user types,
and any of them may turn out to be a directory, a FIFO (reading one waits for
a writer for ever), a device or a socket. ``describe_node`` says which, in
words, and ``open_regular`` opens only regular files, never blocking.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from os import PathLike
from typing import BinaryIO

__all__ = ["describe_node", "open_regular"]

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
          (stat.S_ISCHR, "a device (character)"), (stat.S_ISBLK, "a device (block)"),
          (stat.S_ISSOCK, "a socket"))


def describe_node(mode: int) -> str | None:
    """What a file of ``st_mode`` ``mode`` is when it is not a regular file, else ``None``."""
    if stat.S_ISREG(mode):
        return None
    return next((words for test, words in _KINDS if test(mode)), "not a regular file")


def open_regular(path: str | PathLike, what: str, refuse: Callable[[str], Exception],
                 missing: str | None = None) -> BinaryIO:
    """Open ``path`` for binary reading if it is a regular file.

    The file is opened non-blocking, so a FIFO without a writer cannot hang
    the call, then checked with ``fstat`` (no race between a check and the
    open) and switched back to blocking reads.

    Parameters
    ----------
    path : the file.
    what : what the caller expected, for messages ("IDX file", "picture file").
    refuse : builds the exception raised for anything that is not a regular
        file, from a one-line message (e.g. ``IDXFormatError``).
    missing : how the message for a missing file names it (default ``what``).

    Raises
    ------
    FileNotFoundError
        If nothing is at ``path`` ("no IDX file at PATH").
    Exception from ``refuse``
        If ``path`` is a directory, FIFO, device or socket ("PATH is a named
        pipe (FIFO), not an IDX file").
    """
    name = os.fspath(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(name, flags)
    except FileNotFoundError:
        raise FileNotFoundError(f"no {missing or what} at {name}") from None
    except IsADirectoryError:
        raise refuse(f"{name} is a directory, not {_article(what)}") from None
    kind = describe_node(os.fstat(fd).st_mode)
    if kind is not None:
        os.close(fd)
        raise refuse(f"{name} is {kind}, not {_article(what)}")
    if hasattr(os, "set_blocking"):
        os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def _article(noun: str) -> str:
    return ("an " if noun[:1].lower() in "aeiou" else "a ") + noun
