"""The ``Layer`` interface every layer follows, and the registry that rebuilds saved layers.

Every layer has the same three-part interface::

    y = layer.forward(x, training=False, cache=True)  # caches what backward needs
    grad_x = layer.backward(grad_y)   # fills layer.grads, returns dL/dx
    layer.parameters()                # name -> array, matching layer.grads

``backward`` *assigns* the parameter gradients (there is nothing to zero
between steps).

The training/inference mode travels with each call (``training=True``: dropout
active); a layer keeps no mode of its own. With ``cache=False`` a forward pass
stores nothing on the layer, so inference (``Network.predict``) changes no
shared state and several threads may run it on one model at once.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["Layer", "layer_from_config"]

_REGISTRY: dict[str, type[Layer]] = {}


class Layer:
    """Base class. Subclasses implement ``forward`` and ``backward``."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # The first class of a name keeps it: a user's subclass called "ReLU"
        # must not change what a saved ReLU loads as. Private helper bases
        # ("_BatchNorm", "_Pool2D") are no layers a file may name.
        if not cls.__name__.startswith("_"):
            _REGISTRY.setdefault(cls.__name__, cls)

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self._x: np.ndarray | None = None
        #: How errors name this layer; a Network sets it to "layer 2 (Dense(...))".
        self.name = repr(self)

    def forward(self, x: np.ndarray, training: bool = False, *, cache: bool = True) -> np.ndarray:
        """``y`` for the batch ``x``.

        ``training`` selects training behaviour (dropout active). With
        ``cache=False`` nothing is stored on the layer (``backward`` then
        has nothing new to work from): inference from several threads is safe.
        """
        raise NotImplementedError

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def backward_params(self, grad_output: np.ndarray) -> None:
        """Fill ``grads`` like ``backward`` does, without returning ``dL/dx``.

        A training step never uses the gradient with respect to the network's
        input, so ``Network.train_step`` calls this on the first layer; layers
        for which that gradient is costly (``Dense``) skip computing it.
        """
        self.backward(grad_output)

    def __call__(self, x: np.ndarray, training: bool = False, *, cache: bool = True) -> np.ndarray:
        return self.forward(x, training, cache=cache)

    # A layer has no mode of its own (it travels with each call); PyTorch's
    # ``module.training`` habit must fail loudly rather than silently do nothing.
    @property
    def training(self) -> bool:
        raise AttributeError(
            f"{type(self).__name__} keeps no training mode: pass forward(x, training=...), "
            "or set it on the network (net.train(), net.eval(), net.training)"
        )

    @training.setter
    def training(self, value: bool) -> None:
        raise AttributeError(
            f"{type(self).__name__} keeps no training mode: pass forward(x, training=...), "
            "or set it on the network (net.train(), net.eval(), net.training)"
        )

    def parameters(self) -> dict[str, np.ndarray]:
        """The trainable arrays, by name (``"weight"``, ``"bias"``)."""
        return self.params

    def gradients(self) -> dict[str, np.ndarray]:
        """``dL/dparameter`` from the last ``backward``, by the same names."""
        return self.grads

    def buffers(self) -> dict[str, np.ndarray]:
        """Non-trainable state saved with the model, by name (``BatchNorm``'s
        ``running_mean``...); live arrays. None by default."""
        return {}

    def output_features(self, in_features: int) -> int:
        """Width of the output for an input of width ``in_features``."""
        return in_features

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of one output sample for one input sample shaped ``input_shape``.

        The default keeps rows of features as ``output_features`` says and any
        other shape as it is (element-wise layers). Layers that check their
        input raise ``ValueError`` naming themselves and both shapes.
        """
        if len(input_shape) == 1:
            return (self.output_features(input_shape[0]),)
        return tuple(input_shape)

    def astype(self, dtype: np.dtype | str) -> None:
        """Cast parameters and gradient buffers to ``dtype`` in place."""
        for name in self.params:
            if self.params[name].dtype == dtype:
                continue  # nothing to cast: the arrays keep their identity (plans and views hold them)
            self.params[name] = self.params[name].astype(dtype)
            self.grads[name] = np.zeros(self.params[name].shape, self.params[name].dtype)  # calloc: no pages touched until used

    def get_config(self) -> dict[str, Any]:
        """A JSON-able recipe that ``layer_from_config`` turns back into this layer."""
        return {"type": type(self).__name__}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Layer:
        """Build the layer from ``get_config()`` output (without its ``"type"``)."""
        return cls(**config)

    def _saved_input(self) -> np.ndarray:
        if self._x is None:
            raise RuntimeError(f"{self.name}: backward called before forward")
        return self._x

    def __repr__(self) -> str:
        args = {k: v for k, v in self.get_config().items() if k != "type"}
        inner = ", ".join(f"{k}={v!r}" for k, v in args.items())
        return f"{type(self).__name__}({inner})"


def layer_from_config(config: dict[str, Any]) -> Layer:
    """Rebuild a layer from ``Layer.get_config()`` output (parameters zeroed)."""
    config = dict(config)
    kind = config.pop("type", None)
    cls = _REGISTRY.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ValueError(f"unknown layer type {kind!r}")
    return cls.from_config(config)


