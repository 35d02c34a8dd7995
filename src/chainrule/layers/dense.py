"""``Dense``: the fully connected layer, ``y = x @ weight.T + bias``."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..initializers import Initializer, get_initializer, zeros
from ..parallel import threaded_matmul
from ..resources import check_memory
from .base import Layer

__all__ = ["Dense"]


class Dense(Layer):
    """Fully connected layer: ``y = x @ weight.T + bias``.

    Parameters
    ----------
    in_features, out_features : int
        Widths of input and output.
    bias : bool
        Whether to add a learned bias (the tutorials' delta rule has none).
    init : str or callable
        Weight initializer, a name (``"he_normal"``, ``"glorot_uniform"``, ...)
        or a function ``(shape, rng) -> array``.
    rng, seed :
        Where the initial weights' randomness comes from.
    dtype :
        Parameter dtype. ``None`` keeps float64 until a ``Network`` casts it.

    Notes
    -----
    ``weight`` has shape ``(out_features, in_features)``: row ``j`` holds the
    weights into neuron ``j``, as in the tutorials and in ``torch.nn.Linear``.
    For a batch ``x`` (n, in) and upstream gradient ``g = dL/dy`` (n, out)::

        dL/dweight = g.T @ x        (out, in)   sum over the batch of outer(g_i, x_i)
        dL/dbias   = g.sum(axis=0)  (out,)
        dL/dx      = g @ weight     (n, in)
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        init: str | Initializer = "glorot_uniform",
        *,
        rng: np.random.Generator | None = None,
        seed: int | None = None,
        dtype: np.dtype | str | None = None,
    ) -> None:
        for label, value in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"Dense {label} must be a positive integer, got {value!r}")
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.use_bias = bool(bias)
        super().__init__()
        if rng is None:
            rng = np.random.default_rng(seed)
        dtype = np.dtype(dtype if dtype is not None else np.float64)
        shape = (self.out_features, self.in_features)
        # Refuse at once a layer that cannot fit, rather than be killed by the kernel
        # without a word: a drawn weight is float64, then cast; zeros (what loading
        # uses, the file fills them) are allocated in the final dtype, nothing drawn.
        initializer = get_initializer(init)
        count = self.out_features * self.in_features
        name = f"Dense({self.in_features}, {self.out_features}) ({dtype.name}"
        if initializer is zeros:
            check_memory(count * dtype.itemsize, name + ")", hint="use a narrower layer")
            weight = np.zeros(shape, dtype)
        else:
            cast = dtype != np.float64
            check_memory(count * (8 + (dtype.itemsize if cast else 0)),
                         f"{name}; the float64 draw of its weight{' and the cast copy' if cast else ''})",
                         hint="use a narrower layer")
            weight = np.asarray(initializer(shape, rng), dtype=dtype)
        if weight.shape != shape:
            raise ValueError(f"initializer returned shape {weight.shape}, expected {shape}")
        self.params["weight"] = weight
        if self.use_bias:
            self.params["bias"] = np.zeros(self.out_features, dtype=dtype)
        self.grads = {k: np.zeros(v.shape, v.dtype) for k, v in self.params.items()}  # calloc: lazily committed

    @property
    def weight(self) -> np.ndarray:
        return self.params["weight"]

    @weight.setter
    def weight(self, value: np.ndarray) -> None:
        self._assign("weight", value)

    @property
    def bias(self) -> np.ndarray | None:
        return self.params.get("bias")

    @bias.setter
    def bias(self, value: np.ndarray) -> None:
        if not self.use_bias:
            raise ValueError(f"{self.name} was built with bias=False")
        self._assign("bias", value)

    def _assign(self, name: str, value: np.ndarray) -> None:
        # Copy into the existing array, so optimizer state and dtype stay attached.
        value = np.asarray(value)
        target = self.params[name]
        if value.shape != target.shape:
            raise ValueError(
                f"{self.name}: {name} must have shape {target.shape}, got {value.shape}"
            )
        target[...] = value

    def forward(self, x: np.ndarray, training: bool = False, *, cache: bool = True) -> np.ndarray:
        if x.ndim not in (1, 2) or x.shape[-1] != self.in_features:
            raise ValueError(
                f"{self.name}: expected input of shape (batch, {self.in_features}) or "
                f"({self.in_features},), got shape {x.shape}"
            )
        if cache:
            self._x = x
        params = self.params
        # One sample is a matrix-vector product: too small to hand to threads.
        y = x @ params["weight"].T if x.ndim == 1 else threaded_matmul(x, params["weight"].T)
        if self.use_bias:
            y += params["bias"]
        return y

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        self._fill_grads(grad_output)
        if grad_output.ndim == 1:
            return grad_output @ self.params["weight"]
        return threaded_matmul(grad_output, self.params["weight"])

    def backward_params(self, grad_output: np.ndarray) -> None:
        # Skips dL/dx = g @ weight: for a first layer that is a third of a step's work.
        if type(self).backward is not Dense.backward:
            self.backward(grad_output)  # a subclass redefined backward: run all of it
        else:
            self._fill_grads(grad_output)

    def _fill_grads(self, g: np.ndarray) -> None:
        x = self._saved_input()
        if g.shape[:-1] != x.shape[:-1] or g.shape[-1] != self.out_features:
            raise ValueError(
                f"{self.name}: grad_output must have shape {x.shape[:-1] + (self.out_features,)}, "
                f"got {g.shape}"
            )
        if x.ndim == 1:
            # outer(g, x) written into the existing buffer: every row a copy of x,
            # then each row scaled by its g (faster than one broadcast multiply)
            grad_weight = self.grads["weight"]
            np.copyto(grad_weight, x)
            grad_weight *= g[:, None]
            if self.use_bias:
                np.copyto(self.grads["bias"], g)
        else:
            threaded_matmul(g.T, x, out=self.grads["weight"])
            if self.use_bias:
                np.sum(g, axis=0, out=self.grads["bias"])

    def output_features(self, in_features: int) -> int:
        return self.out_features

    def __repr__(self) -> str:
        extra = "" if self.use_bias else ", bias=False"
        return f"Dense({self.in_features}, {self.out_features}{extra})"

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Dense:
        # Loading fills the weights from the file: drawing random ones first is wasted work.
        return cls(**config, init=zeros)

    def get_config(self) -> dict[str, Any]:
        return {
            "type": type(self).__name__,
            "in_features": self.in_features,
            "out_features": self.out_features,
            "bias": self.use_bias,
        }
