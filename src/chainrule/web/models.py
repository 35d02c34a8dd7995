"""The models the page offers: checks, probabilities, and the look inside a network.

A model is named, never a path: the page chooses from the server's list.
Everything is inference through the library (``Network.predict_proba``, and
each layer's ``forward(x, training=False, cache=False)`` for the look
inside), which stores nothing on the model, so several threads may use one
model at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..activations import Identity, LeakyReLU, ReLU, Sigmoid, Tanh
from ..layers import BatchNorm1d, BatchNorm2d, Conv2D, Dense, Layer
from ..network import Network
from .errors import ServiceError

__all__ = ["NAME", "ModelEntry", "describe", "check_digit_model", "probabilities",
           "inside_layer", "look_inside", "is_conv", "rounded"]

#: A model name: what the page shows and sends back; never a path.
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_ACTIVATION_LAYERS = (ReLU, LeakyReLU, Sigmoid, Tanh, Identity)


def is_conv(layer: Layer) -> bool:
    return isinstance(layer, Conv2D)


@dataclass
class ModelEntry:
    """A model the page may use, by name. The network is never trained after registration."""

    name: str
    network: Network
    description: str
    path: str | None = None

    @property
    def is_cnn(self) -> bool:
        return any(is_conv(layer) for layer in self.network.layers)

    def input_batch(self, digit: np.ndarray) -> np.ndarray:
        """One 28x28 digit as the batch this model takes: (1, 784) or, for a CNN, (1, 1, 28, 28)."""
        return digit.reshape(1, 1, 28, 28) if self.is_cnn else digit.reshape(1, 784)

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description,
                "kind": "cnn" if self.is_cnn else "mlp",
                "parameters": int(sum(p.size for p in self.network.parameters().values()))}


def describe(network: Network) -> str:
    """e.g. ``"Dense(784->128) ReLU Dense(128->10)"``: short enough for a menu."""
    parts = []
    for layer in network.layers:
        if isinstance(layer, Dense):
            parts.append(f"Dense({layer.in_features}->{layer.out_features})")
        elif is_conv(layer):
            parts.append(f"Conv2D({layer.in_channels}->{layer.out_channels}, "
                         f"{layer.kernel_size[0]}x{layer.kernel_size[1]})")
        else:
            parts.append(type(layer).__name__)
    return " ".join(parts)


def check_digit_model(network: Network, name: str) -> None:
    """Refuse a model that cannot read a 28x28 digit into 10 classes."""
    if network.out_features is not None and network.out_features != 10:
        raise ServiceError(f"model {name} has {network.out_features} outputs; a digit model "
                           "needs 10")
    first = next((layer for layer in network.layers if layer.params), None)
    if isinstance(first, Dense) and first.in_features != 784:
        raise ServiceError(f"model {name} takes {first.in_features} inputs; a digit model "
                           "takes 784 (28x28 pixels)")
    blank = np.zeros((1, 1, 28, 28) if is_conv(first) else (1, 784), dtype=network.dtype)
    try:
        probabilities(network, blank)
    except ValueError as error:  # e.g. a regression: its outputs are not probabilities
        raise ServiceError(f"model {name}: {error}") from None


def probabilities(network: Network, x: np.ndarray) -> np.ndarray:
    """Class probabilities for the batch ``x``: ``Network.predict_proba``, in float64."""
    return np.asarray(network.predict_proba(x), dtype=np.float64)


def inside_layer(network: Network) -> int | None:
    """Index of the layer whose output the page shows as the look inside.

    The first convolution's feature maps for a CNN; otherwise the first
    hidden layer: the first ``Dense`` that is not the last one. In both cases
    after the batch normalisation and the activation that follow it, when
    they do (``Conv2D, BatchNorm2d, ReLU``: the ReLU's output).
    """
    layers = network.layers
    conv = next((i for i, layer in enumerate(layers) if is_conv(layer)), None)
    dense = [i for i, layer in enumerate(layers) if isinstance(layer, Dense)]
    if conv is not None:
        index = conv
    elif len(dense) >= 2:
        index = dense[0]
    else:
        return None
    after = index + 1
    while after < len(layers) and isinstance(layers[after], (BatchNorm1d, BatchNorm2d)):
        after += 1
    if after < len(layers) and isinstance(layers[after], _ACTIVATION_LAYERS):
        index = after
    return index


def look_inside(network: Network, x: np.ndarray) -> dict[str, Any] | None:
    """The output of :func:`inside_layer` for the batch ``x`` of one digit.

    Runs the layers up to it in inference mode with ``cache=False``, so it
    stores nothing on the layers and is safe beside other threads.

    Returns ``{"layer": i, "name": ..., "kind": "maps", "shape": [C, H, W], "values": [...]}``
    for feature maps, ``{"kind": "units", "shape": [units], ...}`` for a
    hidden layer, or ``None`` when the model has no hidden layer.
    """
    index = inside_layer(network)
    if index is None:
        return None
    h = np.asarray(x, dtype=network.dtype)
    for layer in network.layers[: index + 1]:
        h = layer.forward(h, training=False, cache=False)
    values = np.asarray(h[0], dtype=np.float64)
    return {
        "layer": index,
        "name": repr(network.layers[index]),
        "kind": "maps" if values.ndim == 3 else "units",
        "shape": list(values.shape),
        "values": rounded(values.reshape(-1)),
    }


def rounded(values: np.ndarray, digits: int = 4) -> list[float]:
    return [float(v) for v in np.round(values.astype(np.float64), digits)]
