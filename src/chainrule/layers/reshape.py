"""``Flatten``: images to rows, the bridge from convolutions to ``Dense`` layers."""

from __future__ import annotations

import math

import numpy as np

from .base import Layer

__all__ = ["Flatten"]


class Flatten(Layer):
    """``(n, C, H, W)`` (any ``(n, ...)``) -> ``(n, C*H*W)``, as ``torch.nn.Flatten()``.

    Row-major (C order), so feature ``c*H*W + i*W + j`` is pixel ``(c, i, j)``,
    the same order as PyTorch: a ``Dense`` after it has the same weights in both.
    The backward pass reshapes ``dL/dy`` back to the input's shape.
    """

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """``(prod(input_shape),)`` for one sample."""
        return (math.prod(input_shape),)

    def forward(self, x: np.ndarray, training: bool = False, *, cache: bool = True) -> np.ndarray:
        if x.ndim < 2:
            raise ValueError(f"{self.name}: expected a batch (n, ...), got shape {x.shape}")
        if cache:
            self._x = x
        return x.reshape(len(x), -1)

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        x = self._saved_input()
        if grad_output.shape != (len(x), math.prod(x.shape[1:])):
            raise ValueError(
                f"{self.name}: grad_output must have shape {(len(x), math.prod(x.shape[1:]))}, "
                f"got {grad_output.shape}"
            )
        return grad_output.reshape(x.shape)
