"""Activations: parameter-free layers applied element by element (Softmax by row).

Each backward multiplies the upstream gradient by the activation's local
derivative, written in terms of what forward already computed.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from .layers import Layer

__all__ = [
    "Identity",
    "ReLU",
    "LeakyReLU",
    "Sigmoid",
    "Tanh",
    "Softmax",
    "sigmoid",
    "softmax",
    "get_activation",
]


def sigmoid(z: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-z))`` without overflow for large ``|z|``.

    Uses ``e = exp(-|z|) <= 1``: for ``z >= 0`` the value is ``1 / (1 + e)``,
    for ``z < 0`` it is ``e / (1 + e)``. For ``z`` beyond about 37 the result
    is exactly 1.0 in float64, which is what "saturated" means in practice.
    """
    z = np.asarray(z)
    if not np.issubdtype(z.dtype, np.floating):
        z = z.astype(np.float64)
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(z.dtype, copy=False)


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise ``exp(z) / sum(exp(z))``, shifted by the row maximum so nothing overflows."""
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    e /= e.sum(axis=-1, keepdims=True)
    return e


class Identity(Layer):
    """``y = x``; ``dy/dx = 1``."""

    def forward(self, x: np.ndarray, training: bool = False, *, cache: bool = True) -> np.ndarray:
        if cache:
            self._x = x
        return x

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        self._saved_input()
        return grad_output


class ReLU(Layer):
    """``y = max(x, 0)``; ``dy/dx = 1`` where ``x > 0``, else 0."""

    def forward(self, x: np.ndarray, training: bool = False, *, cache: bool = True) -> np.ndarray:
        if cache:
            self._x = x
            self._active = x > 0
        return np.maximum(x, 0)

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        self._saved_input()
        return grad_output * self._active


class LeakyReLU(Layer):
    """``y = x`` for ``x > 0``, else ``negative_slope * x``.

    The small slope keeps a gradient flowing through negative inputs, so a
    unit that is pushed negative can recover (a plain relu "dies").
    """

    def __init__(self, negative_slope: float = 0.01) -> None:
        self.negative_slope = float(negative_slope)
        super().__init__()

    def forward(self, x: np.ndarray, training: bool = False, *, cache: bool = True) -> np.ndarray:
        slope = np.where(x > 0, 1.0, self.negative_slope).astype(x.dtype, copy=False)
        if cache:
            self._x, self._slope = x, slope
        return x * slope

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        self._saved_input()
        return grad_output * self._slope

    def get_config(self) -> dict[str, Any]:
        return {"type": type(self).__name__, "negative_slope": self.negative_slope}


class Sigmoid(Layer):
    """``y = sigmoid(scale * x)``; ``dy/dx = scale * y * (1 - y)``.

    ``scale < 1`` is the tutorials' "stretched" sigmoid (``scale=0.01``): it
    widens the region where the curve is not flat, so weighted sums in the
    hundreds still get a gradient.
    """

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = float(scale)
        super().__init__()

    def forward(self, x: np.ndarray, training: bool = False, *, cache: bool = True) -> np.ndarray:
        y = sigmoid(x * self.scale if self.scale != 1.0 else x)
        if cache:
            self._x, self._y = x, y
        return y

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        self._saved_input()
        y = self._y
        local = y * (1.0 - y)
        if self.scale != 1.0:
            local *= self.scale
        return grad_output * local

    def __repr__(self) -> str:
        return "Sigmoid()" if self.scale == 1.0 else f"Sigmoid(scale={self.scale!r})"

    def get_config(self) -> dict[str, Any]:
        return {"type": type(self).__name__, "scale": self.scale}


class Tanh(Layer):
    """``y = tanh(x)``; ``dy/dx = 1 - y**2``."""

    def forward(self, x: np.ndarray, training: bool = False, *, cache: bool = True) -> np.ndarray:
        y = np.tanh(x)
        if cache:
            self._x, self._y = x, y
        return y

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        self._saved_input()
        return grad_output * (1.0 - self._y * self._y)


class Softmax(Layer):
    """Row-wise softmax, ``y_i = exp(x_i) / sum_j exp(x_j)``.

    Notes
    -----
    The Jacobian is ``dy_i/dx_j = y_i (delta_ij - y_j)``, so the
    vector-Jacobian product needs no matrix::

        dL/dx = y * (g - sum(g * y))      (sum along each row)

    For classification prefer a linear output with ``CrossEntropy``, which
    fuses the softmax into the loss and is more stable.
    """

    def forward(self, x: np.ndarray, training: bool = False, *, cache: bool = True) -> np.ndarray:
        y = softmax(x)
        if cache:
            self._x, self._y = x, y
        return y

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        self._saved_input()
        y = self._y
        return y * (grad_output - (grad_output * y).sum(axis=-1, keepdims=True))


_BY_NAME: dict[str, type[Layer]] = {
    "identity": Identity,
    "linear": Identity,
    "relu": ReLU,
    "leaky_relu": LeakyReLU,
    "sigmoid": Sigmoid,
    "tanh": Tanh,
    "softmax": Softmax,
}


def get_activation(name: str | Layer | None) -> Layer | None:
    """A fresh activation layer for ``name`` (``"relu"``, ...); ``None`` gives ``None``."""
    if name is None:
        return None
    if isinstance(name, Layer):
        return copy.copy(name)  # a fresh instance per use: layers cache their inputs
    try:
        return _BY_NAME[name.lower()]()
    except (KeyError, AttributeError):
        choices = ", ".join(_BY_NAME)
        raise ValueError(f"unknown activation {name!r}; choose one of {choices}") from None
