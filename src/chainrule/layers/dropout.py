"""``Dropout``: inverted dropout."""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import Layer

__all__ = ["Dropout"]


class Dropout(Layer):
    """Inverted dropout: zero each input with probability ``p`` while training.

    Survivors are scaled by ``1 / (1 - p)`` so the expected activation is the
    same in training and in inference, where the layer passes ``x`` through.
    The backward pass lets gradient through the same survivors, equally scaled.
    Only ``forward(x, training=True)`` drops anything (and draws from ``rng``).
    """

    def __init__(
        self, p: float = 0.5, *, rng: np.random.Generator | None = None, seed: int | None = None
    ) -> None:
        if not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout probability p must be in [0, 1), got {p!r}")
        self.p = float(p)
        super().__init__()
        self.rng = rng if rng is not None else np.random.default_rng(seed)
        self._mask: np.ndarray | None = None

    def forward(self, x: np.ndarray, training: bool = False, *, cache: bool = True) -> np.ndarray:
        if not training or self.p == 0.0:
            if cache:
                self._mask = None
            return x
        keep = self.rng.random(x.shape, dtype=np.float64 if x.dtype == np.float64 else np.float32)
        mask = (keep >= self.p).astype(x.dtype)
        mask *= 1.0 / (1.0 - self.p)
        if cache:
            self._mask = mask
        return x * mask

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        if self._mask is None:
            return grad_output
        return grad_output * self._mask

    def get_config(self) -> dict[str, Any]:
        return {"type": type(self).__name__, "p": self.p}
