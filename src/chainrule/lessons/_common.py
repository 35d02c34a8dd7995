"""What the lessons share: printing prose and aligned tables, numerical gradients, figures."""

from __future__ import annotations

import math
import os
import sys
import textwrap
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np

WIDTH = 88


def num(value: Any, digits: int | None = None) -> str:
    """A float as text: ``digits`` significant digits, or by default the shortest form
    within a relative 1e-14 of the value (0.20091, not 0.20091000000000003)."""
    value = float(value)
    if value == 0.0:
        return "0"  # also turns -0.0 into 0
    if digits is not None or not math.isfinite(value):
        return f"{value:.{digits or 6}g}"
    for d in range(1, 18):
        text = f"{value:.{d}g}"
        if abs(float(text) - value) <= 1e-14 * abs(value):
            break
    if 1e-4 <= abs(value) < 1e15:
        return np.format_float_positional(float(text), trim="-")  # 10, not 1e+01
    return text


def vec(values: Iterable[Any], digits: int | None = None) -> str:
    """A vector as ``[0.1119, 0.20091, -0.09832]``."""
    return "[" + ", ".join(num(v, digits) for v in np.ravel(np.asarray(values))) + "]"


class Printer:
    """Writes a lesson to ``file``: headings, wrapped prose, aligned tables."""

    def __init__(self, file: TextIO | None = None) -> None:
        self.file = file if file is not None else sys.stdout

    def line(self, text: str = "") -> None:
        print(text, file=self.file)

    def heading(self, text: str, char: str = "=") -> None:
        self.line()
        self.line(text)
        self.line(char * len(text))

    def say(self, text: str) -> None:
        """Print ``text`` wrapped; blank lines separate paragraphs, indented lines stay as they are."""
        text = textwrap.dedent(text).strip("\n")
        for para in text.split("\n\n"):
            lines = para.split("\n")
            if any(line.startswith("    ") for line in lines):
                for line in lines:
                    self.line(line.rstrip())
            else:
                self.line(textwrap.fill(" ".join(s.strip() for s in lines), WIDTH))
            self.line()

    def table(self, headers: Sequence[str], rows: Iterable[Sequence[Any]],
              indent: int = 2) -> None:
        """An aligned table: text columns left-aligned, numbers right-aligned."""
        rows = [[c if isinstance(c, str) else num(c) for c in row] for row in rows]
        numeric = [
            all(_looks_numeric(r[c]) for r in rows if c < len(r) and r[c]) for c in range(len(headers))
        ]
        cells = [list(headers)] + rows
        widths = [max(len(r[c]) for r in cells if c < len(r)) for c in range(len(headers))]
        pad = " " * indent
        for k, row in enumerate(cells):
            text = "  ".join(
                cell.rjust(w) if numeric[c] else cell.ljust(w)
                for c, (cell, w) in enumerate(zip(row, widths))
            )
            self.line(pad + text.rstrip())
            if k == 0:
                self.line(pad + "  ".join("-" * w for w in widths))
        self.line()


def _looks_numeric(text: str) -> bool:
    text = text.strip().rstrip("%x").replace(",", "")
    if text in ("-", "nan", "inf"):
        return True
    try:
        float(text)
    except ValueError:
        return False
    return True


def numerical_gradients(network: Any, x: np.ndarray, y: Any, h: float = 1e-4) -> dict[str, np.ndarray]:
    """Central differences ``(L(w + h) - L(w - h)) / 2h`` for every weight, by parameter name.

    Each weight of ``network.parameters()`` is perturbed in place and put back,
    so this costs two forward passes per weight. (``chainrule.check_gradients``
    does the same to *check* a backward pass; the lessons also *train* with it.)
    """
    grads = {}
    for name, tensor in network.parameters().items():
        flat = tensor.reshape(-1)  # a view: writing to it perturbs the weight
        grad = np.empty(flat.size)
        for i in range(flat.size):
            saved = flat[i]
            flat[i] = saved + h
            plus = network.loss.forward(network.forward(x), y)
            flat[i] = saved - h
            minus = network.loss.forward(network.forward(x), y)
            flat[i] = saved
            grad[i] = (plus - minus) / (2.0 * h)
        grads[name] = grad.reshape(tensor.shape)
    return grads


def pyplot():
    """matplotlib's pyplot on the non-interactive Agg backend (imported only when plotting)."""
    try:
        import matplotlib
    except ImportError as error:  # pragma: no cover - matplotlib is an optional extra
        raise ImportError("figures need matplotlib: pip install 'chainrule[plot]'") from error
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, plot_dir: str | os.PathLike, name: str, printer: Printer) -> Path:
    """Save ``fig`` as ``plot_dir/name`` (PNG), close it, and say where it went."""
    path = Path(plot_dir) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    pyplot().close(fig)
    printer.line(f"figure saved: {path}")
    return path
