"""What the ``chainrule`` commands share: option types, error reporting, model and data loading.

Each command lives in its own module (``train.py``, ``predict.py``...) with
``add_parser(subparsers)`` and ``run(args) -> int``; this module holds the
pieces more than one of them needs, so a new command is a thin front end
over the library too.
"""

from __future__ import annotations

import argparse
import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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
    "check_input_width",
    "architecture",
    "describe_source",
    "write_plots",
    "join",
]

DEFAULT_MODEL = "mnist-mlp.safetensors"
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
    return " ".join(text.split())


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
    if Path(path).exists() and not Path(path).is_dir():
        raise ValueError(f"{option} {path} is a file; give a directory for the figures")


def load_data(directory: str | None) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """MNIST's ``(x, y), (x_test, y_test)`` from ``directory`` (default: the bundled digits)."""
    from ..datasets import load_mnist

    if directory is not None and not Path(directory).exists():
        raise FileNotFoundError(2, "No such file or directory", directory)
    return load_mnist(directory)


def describe_source(directory: str | None) -> str:
    return f"MNIST from {directory}" if directory else "the bundled MNIST digits"


def load_model(path: str) -> Any:
    """The ``Network`` saved at ``path``."""
    from ..io import load

    if not Path(path).exists():
        raise FileNotFoundError(2, "No such file or directory", path)
    return load(path)


def check_input_width(network: Any, model_path: str, width: int, what: str) -> None:
    n_in = network.in_features
    if n_in != width:
        raise ValueError(
            f"{model_path} expects {n_in} input features but {what} {width} "
            f"(28x28 pixels); this model was not trained on MNIST-shaped images"
        )


def architecture(network: Any) -> str:
    """``"784-512-256-10, 535,818 parameters"``."""
    widths = [layer.in_features for layer in network.layers if hasattr(layer, "in_features")]
    widths.append(network.out_features)
    count = sum(a.size for a in network.parameters().values())
    return f"{'-'.join(str(w) for w in widths)}, {count:,} parameters"


def write_plots(history: Any, network: Any, x: np.ndarray, y: np.ndarray, out_dir: str,
                quiet: bool = False) -> None:
    from ..plotting import save_all

    paths = save_all(history, network, x, y, out_dir)
    if not quiet:
        print(f"plots: {', '.join(str(p) for p in paths)}")
