"""``Conv2D``: two-dimensional convolution (cross-correlation, as PyTorch computes it).

Images are batches shaped ``(n, C, H, W)`` (PyTorch's NCHW layout). The
forward pass is one matrix product: every ``kh x kw`` window of the (padded)
input is read through ``numpy.lib.stride_tricks.sliding_window_view`` and laid
out as a row of a matrix ("im2col"), which multiplies the kernels laid out as
columns. The backward pass is the same product transposed, and a scatter of
the window gradients back onto the pixels they came from (one loop step per
kernel offset, never per sample or per pixel).
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .. import kernels
from ..initializers import Initializer, get_initializer, zeros
from .base import Layer

__all__ = ["Conv2D", "conv_output_size", "windows", "scatter_windows"]


def _pair(value: Any, what: str, layer: str, minimum: int) -> tuple[int, int]:
    """``value`` as ``(rows, columns)``: an int for both, or a pair, as ``torch.nn.Conv2d`` takes.

    Raises ``ValueError`` naming the layer and the setting for anything but
    integers of at least ``minimum`` (``TypeError`` for non-integers).
    """
    items = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(items) != 2:
        raise ValueError(f"{layer}: {what} must be an int or a pair of ints, got {value!r}")
    out = []
    for item in items:
        if isinstance(item, bool):
            raise TypeError(f"{layer}: {what} must be an int or a pair of ints, got {value!r}")
        try:
            number = operator.index(item)
        except TypeError:
            raise TypeError(
                f"{layer}: {what} must be an int or a pair of ints, got {value!r}"
            ) from None
        if number < minimum:
            kind = "positive" if minimum == 1 else "non-negative"
            raise ValueError(f"{layer}: {what} must be {kind}, got {value!r}")
        out.append(int(number))
    return out[0], out[1]


def _positive(value: Any, what: str, layer: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{layer}: {what} must be a positive integer, got {value!r}")
    return int(value)


def conv_output_size(size: int, kernel: int, stride: int, padding: int = 0) -> int:
    """``floor((size + 2 * padding - kernel) / stride) + 1``, the formula in ``torch.nn.Conv2d``'s docs."""
    return (size + 2 * padding - kernel) // stride + 1


def windows(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int]) -> np.ndarray:
    """Every ``kh x kw`` window of ``x`` ``(n, C, H, W)``: a view shaped ``(n, C, OH, OW, kh, kw)``.

    ``windows(x)[b, c, i, j]`` is ``x[b, c, i*sh : i*sh + kh, j*sw : j*sw + kw]``. No copy.
    """
    return sliding_window_view(x, kernel, axis=(2, 3))[:, :, :: stride[0], :: stride[1]]


def scatter_windows(
    grad_windows: np.ndarray, input_shape: tuple[int, ...], stride: tuple[int, int]
) -> np.ndarray:
    """The adjoint of ``windows``: add each window's gradient back onto its pixels.

    ``grad_windows`` is shaped ``(n, C, OH, OW, kh, kw)`` (or with the first
    two axes swapped, as ``Conv2D`` keeps them); the result ``(n, C, H, W)``
    holds, for every pixel, the sum over all windows that contain it. One vectorised add per kernel offset ``(i, j)``: that offset
    of every window lands on the strided grid ``x[..., i::sh, j::sw]``.
    """
    _, _, oh, ow, kh, kw = grad_windows.shape
    sh, sw = stride
    grad = np.zeros(input_shape, dtype=grad_windows.dtype)
    for i in range(kh):
        for j in range(kw):
            grad[:, :, i : i + sh * oh : sh, j : j + sw * ow : sw] += grad_windows[:, :, :, :, i, j]
    return grad


class Conv2D(Layer):
    """2-D convolution over ``(n, in_channels, H, W)`` batches, as ``torch.nn.Conv2d``.

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size : int or (int, int)
        ``(kh, kw)``; an int is used for both.
    stride : int or (int, int)
        Step between windows (default 1).
    padding : int or (int, int)
        Zeros added on both sides of each spatial axis (default 0).
    bias : bool
        Whether to add a learned bias per output channel.
    init : str or callable
        Weight initializer, default ``"he_uniform"`` (fan_in = ``in_channels * kh * kw``).
    rng, seed, dtype : as for ``Dense``.

    Shapes
    ------
    ``weight`` ``(out_channels, in_channels, kh, kw)``, ``bias`` ``(out_channels,)``;
    input ``(n, C, H, W)`` gives output ``(n, O, OH, OW)`` with
    ``OH = floor((H + 2 * ph - kh) / sh) + 1`` (and the same for ``OW``).

    Notes
    -----
    Cross-correlation, as PyTorch computes it (no kernel flip)::

        y[b, o, i, j] = bias[o] + sum_{c, p, q} weight[o, c, p, q] * x[b, c, i*sh + p, j*sw + q]

    With ``cols`` the batch's im2col matrix (one row per kernel element
    ``(c, p, q)``, one column per output pixel ``(b, i, j)``),
    ``W = weight.reshape(O, -1)`` and ``G = dL/dy`` laid out as ``(O, n*OH*OW)``::

        y        = W @ cols              (O, n*OH*OW), then transposed to NCHW
        dL/dW    = G @ cols.T            (O, C*kh*kw)
        dL/dbias = G.sum(axis=1)         (O,)
        dL/dcols = W.T @ G               (C*kh*kw, n*OH*OW)
        dL/dx    = each window's gradient added back onto the pixels it read, minus the padding

    Each product covers the whole batch at once (one large matrix product is
    faster than one per sample); the only Python loop is the scatter's, over
    the ``kh * kw`` kernel offsets.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        bias: bool = True,
        init: str | Initializer = "he_uniform",
        *,
        rng: np.random.Generator | None = None,
        seed: int | None = None,
        dtype: np.dtype | str | None = None,
    ) -> None:
        what = "Conv2D"
        self.in_channels = _positive(in_channels, "in_channels", what)
        self.out_channels = _positive(out_channels, "out_channels", what)
        self.kernel_size = _pair(kernel_size, "kernel_size", what, 1)
        self.stride = _pair(stride, "stride", what, 1)
        self.padding = _pair(padding, "padding", what, 0)
        self.use_bias = bool(bias)
        super().__init__()
        if rng is None:
            rng = np.random.default_rng(seed)
        dtype = np.dtype(dtype if dtype is not None else np.float64)
        shape = (self.out_channels, self.in_channels, *self.kernel_size)
        weight = np.asarray(get_initializer(init)(shape, rng), dtype=dtype)
        if weight.shape != shape:
            raise ValueError(f"initializer returned shape {weight.shape}, expected {shape}")
        self.params["weight"] = weight
        if self.use_bias:
            self.params["bias"] = np.zeros(self.out_channels, dtype=dtype)
        self.grads = {k: np.zeros(v.shape, v.dtype) for k, v in self.params.items()}  # calloc: lazily committed
        self._cache: tuple[np.ndarray, tuple[int, ...]] | None = None

    # -- shapes ------------------------------------------------------------------

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """``(O, OH, OW)`` for one sample shaped ``input_shape`` ``(C, H, W)``.

        Raises ``ValueError`` naming the layer and both shapes if the input
        has the wrong rank or channel count, or is smaller than the kernel.
        """
        return self._shape_after(tuple(input_shape), tuple(input_shape))

    def _shape_after(self, sample: tuple[int, ...], shown: tuple[int, ...]) -> tuple[int, ...]:
        if len(sample) != 3 or sample[0] != self.in_channels:
            raise ValueError(
                f"{self.name}: expected input of shape (batch, {self.in_channels}, H, W) "
                f"or ({self.in_channels}, H, W), got shape {shown}"
            )
        _, h, w = sample
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        if h + 2 * ph < kh or w + 2 * pw < kw:
            raise ValueError(
                f"{self.name}: the {kh}x{kw} kernel is larger than the padded input "
                f"({h + 2 * ph}x{w + 2 * pw}) of shape {shown}"
            )
        return (self.out_channels, conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw))

    def _check_input(self, x: np.ndarray) -> None:
        if x.ndim != 4:
            raise ValueError(
                f"{self.name}: expected input of shape (batch, {self.in_channels}, H, W), "
                f"got shape {x.shape}"
            )
        self._shape_after(x.shape[1:], x.shape)

    # -- the math ------------------------------------------------------------------

    #: Without a cache, inputs are convolved this many im2col elements at a time
    #: (64 MiB in float32), so inference on thousands of images stays in bounded memory.
    chunk_elements = 2**24

    def forward(self, x: np.ndarray, training: bool = False, *, cache: bool = True) -> np.ndarray:
        """``y`` ``(n, O, OH, OW)`` for ``x`` ``(n, C, H, W)``.

        With ``cache=False`` (inference) a large batch is convolved in chunks of
        samples, each one batched product, so the im2col matrix stays small.
        """
        self._check_input(x)
        if not cache:
            oh, ow = self.output_shape(x.shape[1:])[1:]
            per_sample = self.in_channels * self.kernel_size[0] * self.kernel_size[1] * oh * ow
            step = max(1, self.chunk_elements // per_sample)
            if len(x) > step:
                return np.concatenate([self._convolve(x[i : i + step], cache=False)
                                       for i in range(0, len(x), step)])
        return self._convolve(x, cache=cache)

    def _convolve(self, x: np.ndarray, *, cache: bool) -> np.ndarray:
        n = x.shape[0]
        ph, pw = self.padding
        fast = kernels.for_images(x)
        if fast is not None:  # kernels/images.py im2col, which matches the four lines below
            _, oh, ow = self.output_shape(x.shape[1:])
            (kh, kw), (sh, sw) = self.kernel_size, self.stride
            shape = (self.in_channels * kh * kw, n * oh * ow)
            # Training overwrites the last step's cached im2col matrix when it fits: a
            # fresh one of tens of MB costs page faults on every step.
            cols = self._cache[0] if cache and self._cache is not None else None
            # (only an array of its own: the NumPy path may have cached a read-only view of x)
            if cols is None or cols.shape != shape or cols.dtype != x.dtype \
                    or not (cols.flags.owndata and cols.flags.writeable):
                cols = np.empty(shape, x.dtype)
            fast.im2col(np.ascontiguousarray(x), kh, kw, sh, sw, ph, pw, cols)
            x_shape = (n, x.shape[1], x.shape[2] + 2 * ph, x.shape[3] + 2 * pw)  # padded
        else:
            if ph or pw:
                x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
            view = windows(x, self.kernel_size, self.stride)  # (n, C, OH, OW, kh, kw)
            oh, ow = view.shape[2:4]
            # im2col, a copy: (C*kh*kw, n*OH*OW), rows (c, p, q), columns (b, i, j)
            cols = view.transpose(1, 4, 5, 0, 2, 3).reshape(-1, n * oh * ow)
            x_shape = x.shape
        weight = self.params["weight"].reshape(self.out_channels, -1)
        y = weight @ cols  # (O, n*OH*OW): the whole batch in one product
        if self.use_bias:
            y += self.params["bias"][:, None]
        if cache:
            self._cache = (cols, x_shape)
        return np.ascontiguousarray(y.reshape(self.out_channels, n, oh, ow).transpose(1, 0, 2, 3))

    def _fill_grads(self, grad_output: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
        """Set ``grads`` from ``dL/dy``; returns ``G`` ``(O, n*OH*OW)`` and the padded input's shape."""
        if self._cache is None:
            raise RuntimeError(f"{self.name}: backward called before forward")
        cols, padded_shape = self._cache
        n = padded_shape[0]
        oh, ow = self._out_hw(padded_shape)
        expected = (n, self.out_channels, oh, ow)
        if grad_output.shape != expected:
            raise ValueError(
                f"{self.name}: grad_output must have shape {expected}, got {grad_output.shape}"
            )
        # (n, O, OH, OW) -> (O, n*OH*OW), the layout of y before its transpose; a copy
        g = grad_output.transpose(1, 0, 2, 3).reshape(self.out_channels, -1)
        np.matmul(g, cols.T, out=self.grads["weight"].reshape(self.out_channels, -1))  # dL/dW
        if self.use_bias:
            np.sum(g, axis=1, out=self.grads["bias"])  # dL/dbias
        return g, padded_shape

    def _out_hw(self, padded_shape: tuple[int, ...]) -> tuple[int, int]:
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        return conv_output_size(padded_shape[2], kh, sh), conv_output_size(padded_shape[3], kw, sw)

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        """``dL/dx`` ``(n, C, H, W)`` from ``dL/dy`` ``(n, O, OH, OW)``; fills ``grads``."""
        g, padded_shape = self._fill_grads(grad_output)
        n, c = padded_shape[:2]
        oh, ow = self._out_hw(padded_shape)
        weight = self.params["weight"].reshape(self.out_channels, -1)
        grad_cols = weight.T @ g  # dL/dcols = W.T @ G: (C*kh*kw, n*OH*OW)
        ph, pw = self.padding
        fast = kernels.for_images(grad_cols)
        if fast is not None:  # kernels/images.py col2im, which matches the scatter below
            (kh, kw), (sh, sw) = self.kernel_size, self.stride
            grad = np.zeros((n, c, padded_shape[2] - 2 * ph, padded_shape[3] - 2 * pw),
                            grad_cols.dtype)
            fast.col2im(grad_cols, kh, kw, sh, sw, ph, pw, grad)
            return grad
        # one gradient per window element, channels first: (C, n, OH, OW, kh, kw), so that
        # each kernel offset's slice is contiguous; then onto the pixels, (C, n, H, W)
        grad_windows = grad_cols.reshape(c, *self.kernel_size, n, oh, ow).transpose(0, 3, 4, 5, 1, 2)
        grad = scatter_windows(grad_windows, (c, n, *padded_shape[2:]), self.stride)
        return grad[:, :, ph : padded_shape[2] - ph, pw : padded_shape[3] - pw].transpose(1, 0, 2, 3)

    def backward_params(self, grad_output: np.ndarray) -> None:
        # The first layer's dL/dx is never used: skip the product and the scatter.
        if type(self).backward is not Conv2D.backward:
            self.backward(grad_output)
        else:
            self._fill_grads(grad_output)

    # -- config ------------------------------------------------------------------

    def get_config(self) -> dict[str, Any]:
        return {
            "type": type(self).__name__,
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "kernel_size": list(self.kernel_size),
            "stride": list(self.stride),
            "padding": list(self.padding),
            "bias": self.use_bias,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Conv2D:
        # Loading fills the weights from the file: drawing random ones first is wasted work.
        return cls(**config, init=zeros)

    def __repr__(self) -> str:
        kh, kw = self.kernel_size
        parts = [str(self.in_channels), str(self.out_channels),
                 f"kernel_size={kh if kh == kw else self.kernel_size}"]
        for name, value, default in (("stride", self.stride, 1), ("padding", self.padding, 0)):
            if value != (default, default):
                parts.append(f"{name}={value[0] if value[0] == value[1] else value}")
        if not self.use_bias:
            parts.append("bias=False")
        return f"Conv2D({', '.join(parts)})"
