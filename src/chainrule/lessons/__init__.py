"""The tutorial lessons, runnable: ``chainrule lesson 1|2|3|4`` or ``chainrule.lessons.run(n)``.

chainrule grew out of three "neural networks from scratch" tutorials. Each
lesson replays their worked examples with chainrule's own classes, prints the
same numbers in tables, and shows where an original went wrong:

1. the delta rule on one layer (and a transposed weight update),
2. a tiny relu network trained with numerical and with analytic derivatives,
3. networks from a list of layer sizes, sigmoid saturation and its fixes;

and one beyond them:

4. why convolution: an MLP and a small CNN on digits shifted further than in training.

>>> from chainrule import lessons
>>> numbers = lessons.run(1, plot_dir="figures")   # doctest: +SKIP
>>> numbers["1a_weights"]                          # doctest: +SKIP
array([ 0.1119 ,  0.20091, -0.09832])
"""

from __future__ import annotations

import operator
import os
from typing import Any, TextIO

from . import lesson1, lesson2, lesson3, lesson4

__all__ = ["LESSONS", "run"]

_MODULES = {1: lesson1, 2: lesson2, 3: lesson3, 4: lesson4}

#: Lesson number -> one-line title.
LESSONS: dict[int, str] = {n: module.TITLE for n, module in _MODULES.items()}


def run(number: int, plot_dir: str | os.PathLike | None = None,
        file: TextIO | None = None) -> dict[str, Any]:
    """Run lesson ``number``: print its narrative and tables, save its figures.

    Parameters
    ----------
    number : int
        1, 2, 3 or 4 (see ``LESSONS``).
    plot_dir : path, optional
        Where to save the lesson's PNG figures (created if missing). Without
        it nothing is plotted and matplotlib is not imported.
    file : text stream, optional
        Where the narrative goes; ``sys.stdout`` by default.

    Returns
    -------
    dict
        The key numbers the lesson computed, by name (e.g. ``"1a_weights"``).
    """
    try:
        module = None if isinstance(number, bool) else _MODULES.get(operator.index(number))
    except TypeError:  # "1" or 1.0: not a lesson number
        module = None
    if module is None:
        choices = ", ".join(str(n) for n in LESSONS)
        raise ValueError(f"unknown lesson {number!r}; choose one of {choices}")
    return module.run(plot_dir=plot_dir, file=file)
