"""Fused versions of the hot NumPy code of a training step (optional extra ``fast``).

``pip install "chainrule[fast]"`` installs numba; then a training step runs
the elementwise work (bias and activation, their backward, the loss and the
optimizer update) as compiled loops that make one trip through memory where
NumPy makes several. The matrix products stay NumPy's (BLAS).

The NumPy code stays the reference: every kernel in ``kernels/elementwise.py``
names the NumPy function whose numbers it must reproduce (to float32
rounding), and the tests run both paths against each other and against
PyTorch. Without numba, or with the NumPy path forced, nothing here runs.

Choosing the path
-----------------
- ``CHAINRULE_KERNELS=numpy`` in the environment (read at import) forces the
  NumPy code; ``CHAINRULE_KERNELS=numba`` insists on the kernels (an error if
  numba is missing); unset or ``auto``, the kernels are used when numba is
  installed. Any other value raises ``ValueError`` naming the choices (and
  ``numba`` without numba, ``ImportError``) when a step first asks which
  path to run (``enabled()``), not at import.
- ``chainrule.kernels.use("numpy" | "numba" | "auto")`` does the same at run
  time and returns the previous setting; ``enabled()`` says which path runs.

Compilation: each kernel is compiled on first use and cached on disk
(``cache=True``), so the cost is paid once per installation and dtype:
see the README for the measured figures.
"""

from __future__ import annotations

import importlib.util
import os
from types import ModuleType
from typing import Any

import numpy as np

__all__ = ["use", "enabled", "available", "mode", "train_step", "for_images"]

_MODES = ("auto", "numba", "numpy")
_mode = "auto"
_active: bool | None = None  # resolved lazily: importing numba costs a few hundred ms
_elementwise: ModuleType | None = None
_images: ModuleType | None = None
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def available() -> bool:
    """Whether numba is installed (without importing it)."""
    return importlib.util.find_spec("numba") is not None


def use(mode: str) -> str:
    """Choose the path: ``"auto"`` (kernels when numba is installed), ``"numba"`` or ``"numpy"``.

    Returns the previous mode, so a caller can restore it. Raises
    ``ValueError`` for another name and ``ImportError`` for ``"numba"``
    without numba installed.
    """
    global _mode, _active, _env_error
    if mode not in _MODES:
        raise ValueError(f"kernel mode must be one of {', '.join(_MODES)}, got {mode!r}")
    if mode == "numba" and not available():
        raise ImportError('the numba kernels need numba: pip install "chainrule[fast]"')
    previous, _mode, _active, _env_error = _mode, mode, None, None
    return previous


def mode() -> str:
    """The mode set by ``use`` or ``CHAINRULE_KERNELS``."""
    return _mode


def enabled() -> bool:
    """Whether training steps run the numba kernels now."""
    global _active
    if _active is None:
        if _env_error is not None:
            raise _env_error
        _active = _mode != "numpy" and available()
    return _active


def compiled() -> Any:
    """The compiled kernels module (imports numba on first call)."""
    global _elementwise
    if _elementwise is None:
        from . import elementwise as module

        _elementwise = module
    return _elementwise


def for_images(*arrays: Any) -> Any:
    """The image-layer kernels (``kernels/images.py``) when the kernels are on and every
    array is float32 or float64; otherwise None, and the layer runs its NumPy code."""
    global _images
    if not enabled() or any(getattr(a, "dtype", None) not in _FLOATS for a in arrays):
        return None
    if _images is None:
        from . import images as module

        _images = module
    return _images


def train_step(network: Any, x: Any, y: Any, checked: bool = False) -> float:
    """``Network.train_step`` with the fused kernels: see ``kernels/step.py``."""
    global _step
    if _step is None:
        from .step import train_step as step

        _step = step
    return _step(network, x, y, checked)


_step: Any = None
_env = os.environ.get("CHAINRULE_KERNELS", "auto").strip().lower() or "auto"
#: A bad CHAINRULE_KERNELS is reported when a step first asks which path to run (not at
#: import, so that the command line can say so in one line); ``use()`` clears it.
_env_error: Exception | None = None
if _env in _MODES:
    try:
        use(_env)
    except ImportError as error:  # CHAINRULE_KERNELS=numba without numba
        _env_error = ImportError(f"CHAINRULE_KERNELS=numba: {error}")
else:
    _env_error = ValueError(f"CHAINRULE_KERNELS must be one of {', '.join(_MODES)}, got {_env!r}")
