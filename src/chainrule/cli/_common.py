"""What the ``chainrule`` commands share: option types, error reporting, model and data loading.

Each command lives in its own module (``train.py``, ``predict.py``...) with
``add_parser(subparsers)`` and ``run(args) -> int``; this module holds the
pieces more than one of them needs, so a new command is a thin front end
over the library too.
"""

from __future__ import annotations

import argparse
import errno
import importlib.util
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

import numpy as np

__all__ = [
    "DEFAULT_MODEL",
    "EXIT_INTERRUPTED",
    "int_list",
    "number",
    "positive_int",
    "non_negative_int",
    "probability",
    "positive_float",
    "non_negative_float",
    "user_errors",
    "one_line",
    "require",
    "check_plot_dir",
    "load_data",
    "load_model",
    "load_test_data",
    "is_model_file",
    "not_a_regular_file",
    "check_input_width",
    "as_model_inputs",
    "architecture",
    "describe_source",
    "write_plots",
    "join",
    "plain_warnings",
    "closed_pipes_ignored",
    "check_writable_file",
    "check_writable_dir",
    "picture_format",
    "class_probabilities",
    "model_outputs",
    "warn_line",
]

DEFAULT_MODEL = "mnist-mlp.safetensors"
#: Where ``chainrule train --model cnn`` saves by default.
DEFAULT_CNN_MODEL = "mnist-cnn.safetensors"
#: Longest error message printed, in characters.
MAX_MESSAGE = 2000
#: Exit status after Ctrl-C, as shells report a process ended by SIGINT (128 + 2).
EXIT_INTERRUPTED = 130


# -- option types ---------------------------------------------------------------------------


def int_list(text: str) -> tuple[int, ...]:
    """An argparse type for layer widths: ``"784,256,10"`` -> ``(784, 256, 10)``."""
    try:
        widths = tuple(int(part) for part in text.replace(" ", "").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected widths separated by commas, like 784,256,128,10; got {text!r}"
        ) from None
    if len(widths) < 2 or min(widths) < 1:
        raise argparse.ArgumentTypeError(
            f"need at least an input and an output width, all positive; got {text!r}"
        )
    return widths


def number(convert: type, accept: Any, expected: str) -> Any:
    """An argparse type: ``convert`` the text, then insist that ``accept(value)``."""
    kind = "a whole number" if convert is int else "a number"

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from None
        if not accept(value):  # NaN fails every comparison, so it lands here too
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text}")
        return value

    return parse


positive_int = number(int, lambda v: v >= 1, "a positive number")
non_negative_int = number(int, lambda v: v >= 0, "0 or more")
probability = number(float, lambda v: 0.0 <= v < 1.0, "a probability in [0, 1)")
positive_float = number(float, lambda v: 0.0 < v < float("inf"), "a positive number")
non_negative_float = number(float, lambda v: 0.0 <= v < float("inf"), "0 or a positive number")


def join(widths: Sequence[int]) -> str:
    return ",".join(str(w) for w in widths)


# -- errors -----------------------------------------------------------------------------------


def user_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean "the input was wrong", not "chainrule has a bug"."""
    from ..errors import ModelFileError, NonFiniteLossError

    return (
        OSError,  # FileNotFoundError, permissions, PIL.UnidentifiedImageError
        ValueError,  # ModelFileError, IDXFormatError, ImageReadError, shape mismatches
        ImportError,  # a missing optional extra (Pillow, matplotlib, onnx)
        ModelFileError,
        NonFiniteLossError,
    )


def one_line(error: BaseException) -> str:
    """``error`` as one line for ``chainrule: error: ...`` (no ``[Errno N]`` prefix)."""
    if isinstance(error, OSError) and error.strerror:
        if error.filename:
            return f"{error.strerror.lower()}: {error.filename}"
        return error.strerror
    text = str(error) or type(error).__name__
    if isinstance(error, KeyError):
        text = str(error.args[0]) if error.args else text
    text = " ".join(text.split())
    if len(text) > MAX_MESSAGE:  # a value quoted from a hostile file can be megabytes long
        text = f"{text[:MAX_MESSAGE]}... ({len(text) - MAX_MESSAGE:,} more characters)"
    return text


def require(module: str, extra: str) -> None:
    """Raise ``ImportError`` naming the pip extra if ``module`` is not installed."""
    if importlib.util.find_spec(module) is None:
        raise ImportError(
            f"this needs {module}, which is not installed; install it with: "
            f'pip install "chainrule[{extra}]"'
        )


# -- files, data and models ---------------------------------------------------------------------


def check_plot_dir(path: str, option: str) -> None:
    """Fail before any work if figures cannot go to ``path``."""
    require("matplotlib", "plot")
    check_writable_dir(path, option)


def load_data(directory: str | None) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """MNIST's ``(x, y), (x_test, y_test)`` from ``directory`` (default: the bundled digits)."""
    from ..datasets import load_mnist

    if directory is not None and not Path(directory).exists():
        raise FileNotFoundError(2, "No such file or directory", directory)
    (x, y), (x_test, y_test) = load_mnist(directory)
    _refuse_empty(directory, "train", y)
    _refuse_empty(directory, "t10k", y_test)
    return (x, y), (x_test, y_test)


def load_test_data(directory: str | None) -> tuple[np.ndarray, np.ndarray]:
    """MNIST's test split only: ``directory`` needs no training files."""
    from ..datasets import load_mnist_split

    if directory is not None and not Path(directory).exists():
        raise FileNotFoundError(2, "No such file or directory", directory)
    x, y = load_mnist_split("test", directory)
    _refuse_empty(directory, "t10k", y)
    return x, y


def _refuse_empty(directory: str | None, prefix: str, labels: np.ndarray) -> None:
    """An IDX pair that holds no digits cannot be trained or scored on: say which."""
    if len(labels) == 0:
        raise ValueError(f"{directory}: {prefix}-images-idx3-ubyte holds no digits (0 images)")


def describe_source(directory: str | None) -> str:
    return f"MNIST from {directory}" if directory else "the bundled MNIST digits"


def load_model(path: str, hint: str = "") -> Any:
    """The ``Network`` saved at ``path``.

    A picture or a directory where a model was expected is named as such
    (``hint`` is added, e.g. the order of ``predict``'s arguments) rather than
    failing deep in the safetensors reader.
    """
    from ..io import load

    if not Path(path).exists():
        raise FileNotFoundError(2, "No such file or directory", path)
    other = not_a_regular_file(path)
    if other:
        raise ValueError(f"{path} is {other}, not a model file")
    kind = picture_format(path)
    if kind is not None:
        raise ValueError(f"{path} looks like a picture ({kind}), not a model{hint}")
    return load(path)


def not_a_regular_file(path: str | os.PathLike) -> str | None:
    """What ``path`` is when it is not a regular file (``"a directory"``...), else ``None``.

    Checked before anything opens the file: reading a named pipe would wait
    for a writer for ever.
    """
    from .._files import describe_node

    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None  # missing: the caller's open reports it
    return describe_node(mode)


#: Leading bytes of the picture formats a user may hand over by mistake.
_PICTURE_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"),
)


def picture_format(path: str | os.PathLike) -> str | None:
    """``"PNG"``, ``"JPEG"``, ``"GIF"``, ``"TIFF"``, ``"WebP"`` or ``"BMP"`` if the file starts like one.

    Reads 32 bytes, of regular files only. A safetensors file starts with its
    header length (8 bytes, little-endian) and ``{``, which none of these
    signatures match.
    """
    if not_a_regular_file(path):
        return None
    try:
        with open(path, "rb") as file:
            head = file.read(32)
    except OSError:
        return None
    for signature, name in _PICTURE_SIGNATURES:
        if head.startswith(signature):
            return name
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    # BMP: "BM", then the size of its info header at byte 14 (12, 40, 52, 56, 64, 108 or 124).
    if head[:2] == b"BM" and len(head) >= 18 and int.from_bytes(head[14:18], "little") in (
            12, 40, 52, 56, 64, 108, 124):
        return "BMP"
    return None


def is_model_file(path: str | os.PathLike) -> bool:
    """Whether the file starts like a safetensors file (8-byte header length, then ``{``)."""
    if not_a_regular_file(path):
        return False
    try:
        with open(path, "rb") as file:
            head = file.read(9)
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{" and 2 <= int.from_bytes(head[:8], "little") < 2**40


def class_probabilities(network: Any, x: np.ndarray, path: str, what: str) -> np.ndarray:
    """``network.predict_proba(x)`` as float64 rows, refusing outputs that are not finite.

    A model with finite but huge weights (say 3e38) overflows to infinity
    inside the forward pass and then gives NaN probabilities; that is an
    error naming the cause, not ``0 (nan%)``.
    """
    return model_outputs(network, x, path, what, probabilities=True)


def model_outputs(network: Any, x: np.ndarray, path: str, what: str, *,
                  probabilities: bool = False) -> np.ndarray:
    """``network.predict(x)`` (or ``predict_proba``) as float64 rows; not finite is an error.

    The error names the cause: the largest weight, and the float type whose
    range the weighted sums left.
    """
    with np.errstate(over="ignore", invalid="ignore"):  # checked just below, and explained
        out = network.predict_proba(x) if probabilities else network.predict(x)
    out = np.asarray(out, dtype=np.float64)
    if out.ndim == 1:
        out = out[None, :]
    if not np.all(np.isfinite(out)):
        largest = max((float(np.max(np.abs(a))) for a in network.parameters().values()
                       if np.asarray(a).size), default=0.0)
        info = np.finfo(network.dtype) if hasattr(network, "dtype") else np.finfo(np.float32)
        raise ValueError(
            f"{path} gives outputs that are not finite for {what}: its weights reach "
            f"{largest:.3g}, so the weighted sums overflow {info.dtype} (largest "
            f"{float(info.max):.3g}); the model is broken, retrain it"
        )
    return out


def check_input_width(network: Any, model_path: str, width: int, what: str) -> None:
    """Refuse a model that cannot read MNIST digits (``width`` pixels, 28x28)."""
    if getattr(network, "takes_images", False):
        side = int(round(width ** 0.5))
        try:  # the layers check the shapes they are given, and say which one failed
            with np.errstate(over="ignore", invalid="ignore"):  # outputs are checked later
                network.predict(np.zeros((1, 1, side, side), dtype=network.dtype))
        except ValueError as error:
            raise ValueError(
                f"{model_path} cannot read one-channel {side}x{side} images ({what} {width} "
                f"pixels): {error}"
            ) from None
        return
    n_in = network.in_features
    if n_in != width:
        raise ValueError(
            f"{model_path} expects {n_in} input features but {what} {width} "
            f"(28x28 pixels); this model was not trained on MNIST-shaped images"
        )


def as_model_inputs(network: Any, x: np.ndarray) -> np.ndarray:
    """MNIST pixels as ``network`` takes them: rows of 784 for an MLP, ``(n, 1, 28, 28)`` for a CNN."""
    if getattr(network, "takes_images", False):
        from ..recipes_cnn import as_images

        return as_images(x, (1, 28, 28))
    return x


def architecture(network: Any) -> str:
    """``"784-512-256-10, 535,818 parameters"``; ``"CNN conv 32-64, dense 3136-128-10, ..."``."""
    widths = [layer.in_features for layer in network.layers if hasattr(layer, "in_features")]
    widths.append(network.out_features)
    count = sum(a.size for a in network.parameters().values())
    text = "-".join(str(w) for w in widths)
    channels = [layer.out_channels for layer in network.layers if hasattr(layer, "out_channels")]
    if channels:
        text = f"CNN conv {'-'.join(str(c) for c in channels)}, dense {text}"
    return f"{text}, {count:,} parameters"


def write_plots(history: Any, network: Any, x: np.ndarray, y: np.ndarray, out_dir: str,
                quiet: bool = False) -> None:
    from ..plotting import save_all

    paths = save_all(history, network, x, y, out_dir)
    if not quiet:
        print(f"plots: {', '.join(str(p) for p in paths)}")


# -- what the commands print ------------------------------------------------------------------


def warn_line(text: str) -> None:
    """Print ``chainrule: warning: text`` on stderr, as one line."""
    print(f"chainrule: warning: {' '.join(text.split())}", file=sys.stderr, flush=True)


@contextmanager
def plain_warnings() -> Iterator[None]:
    """While running a command: each warning is one line ``chainrule: warning: ...`` on stderr.

    Python's default format adds the category and the source line that
    raised it (``.../training.py:190: RuntimeWarning: ...``), which says
    nothing to someone at a command line.
    """
    def show(message: Any, category: Any, filename: str, lineno: int, file: Any = None,
             line: Any = None) -> None:
        warn_line(str(message))

    with warnings.catch_warnings():  # the filters stay as they are (-W, PYTHONWARNINGS)
        warnings.showwarning = show
        yield


class _ClosedPipeGuard:
    """A text stream that, once its reader has gone (``| head``), quietly drops what follows.

    The command goes on: a training run still saves its model after
    ``chainrule train | head -3``. The file descriptor is pointed at
    ``/dev/null`` so Python's final flush at exit has nowhere to fail.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.reader_gone = False

    def write(self, text: str) -> int:
        if not self.reader_gone:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._reader_left()
        return len(text)

    def flush(self) -> None:
        if not self.reader_gone:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._reader_left()

    def _reader_left(self) -> None:
        self.reader_gone = True
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), self._stream.fileno())
        except (OSError, ValueError, AttributeError):  # not a real file (e.g. a test's capture)
            pass

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding, ...
        return getattr(self._stream, name)


@contextmanager
def closed_pipes_ignored() -> Iterator[None]:
    """``sys.stdout`` and ``sys.stderr`` guarded by ``_ClosedPipeGuard`` for the duration."""
    saved = sys.stdout, sys.stderr
    if saved[0] is None or saved[1] is None:  # no console at all (pythonw): nothing to guard
        yield
        return
    sys.stdout, sys.stderr = _ClosedPipeGuard(saved[0]), _ClosedPipeGuard(saved[1])
    try:
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        sys.stdout, sys.stderr = saved


# -- files the command will write -------------------------------------------------------------


def _probe_directory(directory: Path, option: str, target: Path) -> None:
    """Create and delete a file in ``directory``: the only test that holds for root and read-only mounts."""
    try:
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".chainrule-probe-"):
            pass
    except OSError as error:
        reason = error.strerror or str(error)
        raise OSError(error.errno or errno.EACCES,
                      f"{option} {target} cannot be written: {reason.lower()} ({directory})") from None


def check_writable_file(path: str | os.PathLike, option: str) -> None:
    """Fail before any work if a file cannot be written at ``path`` (given as ``option``)."""
    target = Path(path)
    if target.is_dir():
        example = "model.onnx" if option == "--onnx" else "model.safetensors"
        raise ValueError(f"{option} {target} is a directory; give a file name, "
                         f"e.g. {target / example}")
    parent = target.parent
    if not parent.exists():
        raise FileNotFoundError(2, f"No such directory for {option}", str(parent))
    if not parent.is_dir():
        raise ValueError(f"{option} {target}: {parent} is a file, not a directory")
    _probe_directory(parent, option, target)


def check_writable_dir(path: str | os.PathLike, option: str) -> None:
    """Fail before any work if ``path`` cannot be (made into) a directory of files."""
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise ValueError(f"{option} {target} is a file; give a directory")
    existing = target
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"{option} {target}: {existing} is a file, not a directory")
    _probe_directory(existing, option, target)
