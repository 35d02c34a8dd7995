"""Pooling: ``MaxPool2D`` and ``AvgPool2D`` over ``(n, C, H, W)`` batches, as ``torch.nn``.

Both read every window at once through ``conv.windows`` (a strided view)
and send gradients back with ``conv.scatter_windows`` (one vectorised add per
kernel offset). With the kernels on (``chainrule.kernels``), ``MaxPool2D``
runs ``kernels/images.py``'s ``max_pool_forward`` and ``max_pool_backward``
instead, which match that code.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import kernels
from .base import Layer
from .conv import _pair, conv_output_size, scatter_windows, windows

__all__ = ["MaxPool2D", "AvgPool2D"]


class _Pool2D(Layer):
    """Shared settings, shape checks and config of the two pooling layers."""

    def __init__(
        self,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] | None = None,
    ) -> None:
        what = type(self).__name__
        self.kernel_size = _pair(kernel_size, "kernel_size", what, 1)
        # PyTorch: stride defaults to kernel_size (non-overlapping windows).
        self.stride = self.kernel_size if stride is None else _pair(stride, "stride", what, 1)
        super().__init__()
        self._cache: Any = None

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """``(C, OH, OW)`` for one sample ``(C, H, W)``, ``OH = floor((H - kh) / sh) + 1``."""
        return self._shape_after(tuple(input_shape), tuple(input_shape))

    def _shape_after(self, sample: tuple[int, ...], shown: tuple[int, ...]) -> tuple[int, ...]:
        if len(sample) != 3:
            raise ValueError(
                f"{self.name}: expected input of shape (batch, C, H, W) or (C, H, W), "
                f"got shape {shown}"
            )
        c, h, w = sample
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        if h < kh or w < kw:
            raise ValueError(
                f"{self.name}: the {kh}x{kw} window is larger than the input of shape {shown}"
            )
        return (c, conv_output_size(h, kh, sh), conv_output_size(w, kw, sw))

    def _check_input(self, x: np.ndarray) -> None:
        if x.ndim != 4:
            raise ValueError(
                f"{self.name}: expected input of shape (batch, C, H, W), got shape {x.shape}"
            )
        self._shape_after(x.shape[1:], x.shape)

    def _check_grad(self, grad_output: np.ndarray, input_shape: tuple[int, ...]) -> None:
        expected = (input_shape[0], *self.output_shape(input_shape[1:]))
        if grad_output.shape != expected:
            raise ValueError(
                f"{self.name}: grad_output must have shape {expected}, got {grad_output.shape}"
            )

    def _saved(self) -> Any:
        if self._cache is None:
            raise RuntimeError(f"{self.name}: backward called before forward")
        return self._cache

    def get_config(self) -> dict[str, Any]:
        return {"type": type(self).__name__, "kernel_size": list(self.kernel_size),
                "stride": list(self.stride)}

    def __repr__(self) -> str:
        def show(pair: tuple[int, int]) -> Any:
            return pair[0] if pair[0] == pair[1] else pair

        stride = "" if self.stride == self.kernel_size else f", stride={show(self.stride)}"
        return f"{type(self).__name__}(kernel_size={show(self.kernel_size)}{stride})"


class MaxPool2D(_Pool2D):
    """The largest value of each ``kh x kw`` window, as ``torch.nn.MaxPool2d`` (no padding).

    Parameters
    ----------
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        Defaults to ``kernel_size``.

    Shapes
    ------
    ``(n, C, H, W)`` -> ``(n, C, OH, OW)``, ``OH = floor((H - kh) / sh) + 1``.

    Notes
    -----
    ``y = max over the window`` has derivative 1 for the window's largest
    input and 0 for the others, so ``dL/dx`` routes each window's ``dL/dy``
    to that one input (to the first in row-major order on a tie, like
    PyTorch); overlapping windows add up.
    """

    def forward(self, x: np.ndarray, training: bool = False, *, cache: bool = True) -> np.ndarray:
        self._check_input(x)
        kh, kw = self.kernel_size
        fast = kernels.for_images(x)
        if fast is not None:  # kernels/images.py max_pool_forward, which matches the code below
            y = np.empty((len(x), *self.output_shape(x.shape[1:])), x.dtype)
            argmax = np.empty(y.shape if cache else (0, 0, 0, 0), np.intp)
            fast.max_pool_forward(np.ascontiguousarray(x), kh, kw, *self.stride, y, argmax)
            if cache:
                self._cache = (argmax, x.shape)
            return y
        view = windows(x, self.kernel_size, self.stride)  # (n, C, OH, OW, kh, kw), no copy
        # A running maximum over the kh*kw offsets: each step is one vectorised pass
        # over a strided view, much faster than an argmax along a short last axis.
        y = view[..., 0, 0].copy()
        for k in range(1, kh * kw):
            np.maximum(y, view[..., k // kw, k % kw], out=y)
        if cache:
            # The first offset (row-major) holding the maximum: visit them in
            # reverse so that the earliest match is written last.
            argmax = np.zeros(y.shape, dtype=np.intp)
            for k in range(kh * kw - 1, 0, -1):
                np.copyto(argmax, k, where=view[..., k // kw, k % kw] == y)
            argmax[view[..., 0, 0] == y] = 0
            self._cache = (argmax, x.shape)
        return y

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        """``dL/dx`` ``(n, C, H, W)``: each window's ``dL/dy`` on its largest input."""
        argmax, input_shape = self._saved()
        self._check_grad(grad_output, input_shape)
        kh, kw = self.kernel_size
        (sh, sw), (oh, ow) = self.stride, argmax.shape[2:]
        grad = np.zeros(input_shape, dtype=grad_output.dtype)
        fast = kernels.for_images(grad_output)
        if fast is not None:  # kernels/images.py max_pool_backward, which matches the loop below
            fast.max_pool_backward(np.ascontiguousarray(grad_output), argmax, kh, kw, sh, sw, grad)
            return grad
        zero = np.zeros((), dtype=grad_output.dtype)
        for k in range(kh * kw):
            i, j = divmod(k, kw)
            grad[:, :, i : i + sh * oh : sh, j : j + sw * ow : sw] += np.where(
                argmax == k, grad_output, zero)
        return grad


class AvgPool2D(_Pool2D):
    """The mean of each ``kh x kw`` window, as ``torch.nn.AvgPool2d`` (no padding).

    Parameters and shapes as ``MaxPool2D``.

    Notes
    -----
    ``y = sum(window) / (kh * kw)``, so every input of a window receives
    ``dL/dy / (kh * kw)``; overlapping windows add up.
    """

    def forward(self, x: np.ndarray, training: bool = False, *, cache: bool = True) -> np.ndarray:
        self._check_input(x)
        y = windows(x, self.kernel_size, self.stride).mean(axis=(-2, -1), dtype=x.dtype)
        if cache:
            self._cache = x.shape
        return y

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        """``dL/dx`` ``(n, C, H, W)``: ``dL/dy / (kh * kw)`` on every input of the window."""
        input_shape = self._saved()
        self._check_grad(grad_output, input_shape)
        kh, kw = self.kernel_size
        share = grad_output / np.asarray(kh * kw, dtype=grad_output.dtype)
        spread = np.broadcast_to(share[..., None, None], (*share.shape, kh, kw))
        return scatter_windows(spread, input_shape, self.stride)
