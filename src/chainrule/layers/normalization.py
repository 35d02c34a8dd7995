"""Batch normalisation: ``BatchNorm1d`` and ``BatchNorm2d``, as ``torch.nn``.

Ioffe and Szegedy, "Batch Normalization: Accelerating Deep Network Training
by Reducing Internal Covariate Shift" (2015), Algorithm 1 and section 3.1;
the running statistics follow PyTorch (``torch.nn.BatchNorm2d`` docs): an
exponential average with weight ``momentum`` of each batch's mean and of its
*unbiased* variance, used instead of the batch's in inference.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import Layer

__all__ = ["BatchNorm1d", "BatchNorm2d"]


class _BatchNorm(Layer):
    """Normalise each channel (axis 1) over the batch and any spatial axes.

    Parameters
    ----------
    num_features : int
        ``C``, the channel count (axis 1 of the input).
    eps : float
        Added to the variance before the square root (default 1e-5).
    momentum : float or None
        Weight of the new batch in the running averages (default 0.1);
        ``None`` keeps a plain cumulative average, as PyTorch does.
    affine : bool
        Whether to learn a per-channel scale ``weight`` (starts at 1) and
        shift ``bias`` (starts at 0).
    dtype : parameter and running-statistic dtype (float64 until a Network casts it).

    Notes
    -----
    In training (``forward(x, training=True)``), with ``m`` values per channel
    (``n`` for ``(n, C)``, ``n*H*W`` for ``(n, C, H, W)``)::

        mu = mean(x),  var = mean((x - mu)**2)            per channel, biased
        x_hat = (x - mu) / sqrt(var + eps)
        y = weight * x_hat + bias
        running_mean <- (1 - momentum) * running_mean + momentum * mu
        running_var  <- (1 - momentum) * running_var  + momentum * var * m / (m - 1)
        num_batches_tracked += 1

    and the derivatives (the batch statistics depend on every input)::

        dL/dweight = sum(g * x_hat),   dL/dbias = sum(g)
        dL/dx = weight / sqrt(var + eps) * (g - mean(g) - x_hat * mean(g * x_hat))

    In inference ``mu`` and ``var`` are the running statistics, constants, so
    ``dL/dx = weight / sqrt(running_var + eps) * g``.
    """

    #: Ranks of one sample the layer accepts (without the batch axis); set by subclasses.
    _sample_ranks: tuple[int, ...] = ()
    _expected = ""

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        *,
        dtype: np.dtype | str | None = None,
    ) -> None:
        what = type(self).__name__
        if isinstance(num_features, bool) or not isinstance(num_features, (int, np.integer)) \
                or num_features < 1:
            raise ValueError(f"{what}: num_features must be a positive integer, got {num_features!r}")
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0 \
                or not np.isfinite(eps):
            raise ValueError(f"{what}: eps must be a positive number, got {eps!r}")
        if momentum is not None and (isinstance(momentum, bool)
                                     or not isinstance(momentum, (int, float))
                                     or not 0.0 <= momentum <= 1.0):
            raise ValueError(f"{what}: momentum must be in [0, 1] or None, got {momentum!r}")
        self.num_features = int(num_features)
        self.eps = float(eps)
        self.momentum = None if momentum is None else float(momentum)
        self.affine = bool(affine)
        super().__init__()
        dtype = np.dtype(dtype if dtype is not None else np.float64)
        if self.affine:
            self.params["weight"] = np.ones(self.num_features, dtype=dtype)
            self.params["bias"] = np.zeros(self.num_features, dtype=dtype)
        self.grads = {k: np.zeros(v.shape, v.dtype) for k, v in self.params.items()}  # calloc: lazily committed
        self._buffers: dict[str, np.ndarray] = {
            "running_mean": np.zeros(self.num_features, dtype=dtype),
            "running_var": np.ones(self.num_features, dtype=dtype),
            "num_batches_tracked": np.zeros((), dtype=np.int64),
        }
        self._cache: tuple[np.ndarray, np.ndarray, bool] | None = None

    def buffers(self) -> dict[str, np.ndarray]:
        """``running_mean`` ``(C,)``, ``running_var`` ``(C,)``, ``num_batches_tracked`` (int64 scalar); live arrays."""
        return self._buffers

    @property
    def running_mean(self) -> np.ndarray:
        return self._buffers["running_mean"]

    @property
    def running_var(self) -> np.ndarray:
        return self._buffers["running_var"]

    @property
    def num_batches_tracked(self) -> int:
        return int(self._buffers["num_batches_tracked"])

    def astype(self, dtype: np.dtype | str) -> None:
        super().astype(dtype)
        for name in ("running_mean", "running_var"):
            self._buffers[name] = self._buffers[name].astype(dtype, copy=False)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The input's shape (normalisation keeps it); checks rank and channel count."""
        if len(input_shape) not in self._sample_ranks or input_shape[0] != self.num_features:
            raise ValueError(
                f"{self.name}: expected input of shape {self._expected.replace('C', str(self.num_features))}, "
                f"got shape (batch, {', '.join(map(str, input_shape))})"
            )
        return tuple(input_shape)

    def _axes(self, x: np.ndarray) -> tuple[int, ...]:
        """The axes statistics are taken over: all but the channel axis 1."""
        if x.ndim - 1 not in self._sample_ranks or x.shape[1] != self.num_features:
            raise ValueError(
                f"{self.name}: expected input of shape {self._expected.replace('C', str(self.num_features))}, "
                f"got shape {x.shape}"
            )
        return (0, *range(2, x.ndim))

    def forward(self, x: np.ndarray, training: bool = False, *, cache: bool = True) -> np.ndarray:
        if x.ndim == 1 and 1 in self._sample_ranks:
            # one sample (C,), as a Dense network takes it: a batch of one
            return self.forward(x[None], training, cache=cache)[0]
        axes = self._axes(x)
        shape = (1, self.num_features) + (1,) * (x.ndim - 2)  # broadcast a (C,) along axis 1
        if training:
            m = x.size // self.num_features
            if m < 2:
                raise ValueError(
                    f"{self.name}: training needs more than one value per channel to take a "
                    f"variance, got input of shape {x.shape}"
                )
            mean = x.mean(axis=axes)
            centered = x - mean.reshape(shape)
            var = np.mean(centered * centered, axis=axes)
            self._update_running(mean, var, m)
        else:
            mean, var = self.running_mean, self.running_var
            centered = x - mean.reshape(shape)
        inv_std = (1.0 / np.sqrt(var + self.eps)).astype(x.dtype, copy=False)
        x_hat = centered * inv_std.reshape(shape)
        if cache:
            self._cache = (x_hat, inv_std, bool(training))
        if not self.affine:
            return x_hat
        return x_hat * self.params["weight"].reshape(shape) + self.params["bias"].reshape(shape)

    def _update_running(self, mean: np.ndarray, var: np.ndarray, m: int) -> None:
        tracked = self._buffers["num_batches_tracked"]
        tracked += 1
        factor = 1.0 / float(tracked) if self.momentum is None else self.momentum
        unbiased = var * (m / (m - 1))
        for name, batch_value in (("running_mean", mean), ("running_var", unbiased)):
            running = self._buffers[name]
            running *= 1.0 - factor
            running += factor * batch_value

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        """``dL/dx`` shaped like the input; fills ``grads`` (``weight``, ``bias``)."""
        if self._cache is None:
            raise RuntimeError(f"{self.name}: backward called before forward")
        x_hat, inv_std, training = self._cache
        if grad_output.ndim == 1 and x_hat.shape[0] == 1:  # after a one-sample forward
            return self.backward(grad_output[None])[0]
        if grad_output.shape != x_hat.shape:
            raise ValueError(
                f"{self.name}: grad_output must have shape {x_hat.shape}, got {grad_output.shape}"
            )
        g = grad_output
        axes = (0, *range(2, g.ndim))
        shape = (1, self.num_features) + (1,) * (g.ndim - 2)
        if self.affine:
            np.sum(g * x_hat, axis=axes, out=self.grads["weight"])  # dL/dweight
            np.sum(g, axis=axes, out=self.grads["bias"])  # dL/dbias
            scale = (self.params["weight"] * inv_std).reshape(shape)
        else:
            scale = inv_std.reshape(shape)
        if not training:
            return g * scale
        mean_g = g.mean(axis=axes).reshape(shape)
        mean_g_x_hat = (g * x_hat).mean(axis=axes).reshape(shape)
        return scale * (g - mean_g - x_hat * mean_g_x_hat)

    def get_config(self) -> dict[str, Any]:
        return {"type": type(self).__name__, "num_features": self.num_features,
                "eps": self.eps, "momentum": self.momentum, "affine": self.affine}

    def __repr__(self) -> str:
        extra = "".join(
            f", {name}={value!r}" for name, value, default in
            (("eps", self.eps, 1e-5), ("momentum", self.momentum, 0.1), ("affine", self.affine, True))
            if value != default
        )
        return f"{type(self).__name__}({self.num_features}{extra})"


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of ``(n, C)`` (or ``(n, C, L)``) batches, as ``torch.nn.BatchNorm1d``.

    Statistics per feature ``C``, over the batch (and ``L``). See ``_BatchNorm``
    for the parameters, the formulas and their derivatives.
    """

    _sample_ranks = (1, 2)
    _expected = "(batch, C) or (batch, C, L)"


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of ``(n, C, H, W)`` batches, as ``torch.nn.BatchNorm2d``.

    Statistics per channel ``C``, over the batch and every pixel. See
    ``_BatchNorm`` for the parameters, the formulas and their derivatives.
    """

    _sample_ranks = (3,)
    _expected = "(batch, C, H, W)"
