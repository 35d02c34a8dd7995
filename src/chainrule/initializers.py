"""Weight initializers: pure functions ``(shape, rng) -> array``.

Every initializer takes a shape such as ``(out_features, in_features)`` and a
``numpy.random.Generator`` and returns a float64 array; the layer casts it to
the network's dtype. For a ``Dense`` weight, ``fan_in = shape[1]`` (inputs per
neuron) and ``fan_out = shape[0]`` (neurons).

The scaled schemes keep the variance of activations roughly constant from
layer to layer, which is what keeps deep sigmoid and relu networks trainable:

- Glorot/Xavier (sigmoid, tanh, linear): ``Var(w) = 2 / (fan_in + fan_out)``
- He/Kaiming (relu family): ``Var(w) = 2 / fan_in``

A uniform distribution on ``[-a, a)`` has variance ``a**2 / 3``, which gives the
limits used below.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Initializer = Callable[[tuple, np.random.Generator], np.ndarray]

__all__ = [
    "Initializer",
    "uniform",
    "zeros",
    "glorot_uniform",
    "glorot_normal",
    "he_uniform",
    "he_normal",
    "get_initializer",
    "default_initializer",
]


def _fans(shape: tuple) -> tuple[int, int]:
    if len(shape) == 1:
        return shape[0], shape[0]
    fan_out, fan_in = shape[0], int(np.prod(shape[1:]))
    return fan_in, fan_out


def uniform(low: float = -1.0, high: float = 1.0) -> Initializer:
    """Return an initializer drawing from the uniform distribution ``[low, high)``.

    The tutorials use ``uniform(0, 1)`` and ``uniform(-1, 1)``.
    """
    if not high > low:
        raise ValueError(f"uniform needs low < high, got low={low!r}, high={high!r}")

    def init(shape: tuple, rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(low, high, size=shape)

    init.__name__ = f"uniform({low!r}, {high!r})"
    return init


def zeros(shape: tuple, rng: np.random.Generator | None = None) -> np.ndarray:
    """All zeros (biases; never weights, which would stay symmetric)."""
    return np.zeros(shape)


def glorot_uniform(shape: tuple, rng: np.random.Generator) -> np.ndarray:
    """Uniform on ``[-a, a)`` with ``a = sqrt(6 / (fan_in + fan_out))``."""
    fan_in, fan_out = _fans(shape)
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape)


def glorot_normal(shape: tuple, rng: np.random.Generator) -> np.ndarray:
    """Normal with ``std = sqrt(2 / (fan_in + fan_out))``."""
    fan_in, fan_out = _fans(shape)
    return rng.normal(0.0, np.sqrt(2.0 / (fan_in + fan_out)), size=shape)


def he_uniform(shape: tuple, rng: np.random.Generator) -> np.ndarray:
    """Uniform on ``[-a, a)`` with ``a = sqrt(6 / fan_in)``."""
    fan_in, _ = _fans(shape)
    limit = np.sqrt(6.0 / fan_in)
    return rng.uniform(-limit, limit, size=shape)


def he_normal(shape: tuple, rng: np.random.Generator) -> np.ndarray:
    """Normal with ``std = sqrt(2 / fan_in)``."""
    fan_in, _ = _fans(shape)
    return rng.normal(0.0, np.sqrt(2.0 / fan_in), size=shape)


_BY_NAME: dict[str, Initializer] = {
    "zeros": zeros,
    "glorot_uniform": glorot_uniform,
    "glorot_normal": glorot_normal,
    "xavier_uniform": glorot_uniform,
    "xavier_normal": glorot_normal,
    "he_uniform": he_uniform,
    "he_normal": he_normal,
    "kaiming_uniform": he_uniform,
    "kaiming_normal": he_normal,
}


def get_initializer(init: str | Initializer) -> Initializer:
    """Resolve a name (``"he_normal"``) or a callable to an initializer."""
    if callable(init):
        return init
    if isinstance(init, str):
        if init == "uniform":
            return uniform(-1.0, 1.0)
        try:
            return _BY_NAME[init]
        except KeyError:
            names = ", ".join(sorted(_BY_NAME) + ["uniform"])
            raise ValueError(f"unknown initializer {init!r}; choose one of {names}") from None
    raise TypeError(f"init must be a name or a callable (shape, rng) -> array, got {init!r}")


def default_initializer(activation: str | None) -> Initializer:
    """He for the relu family, Glorot for everything else."""
    if activation in ("relu", "leaky_relu"):
        return he_normal
    return glorot_uniform

