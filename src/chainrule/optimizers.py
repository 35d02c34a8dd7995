"""Optimizers: a rule for turning gradients into parameter updates.

An optimizer holds only its hyperparameters and its per-parameter state (a
momentum buffer, Adam's moments). ``step(params, grads)`` updates the arrays
in ``params`` in place, so they keep their dtype and identity; the i-th
state belongs to the i-th parameter.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from . import kernels

__all__ = ["Optimizer", "SGD", "Adam", "get_optimizer"]


def _check(name: str, value: float, low: float = 0.0, high: float | None = None) -> float:
    value = float(value)
    if not np.isfinite(value) or value < low or (high is not None and value >= high):
        bound = f"in [{low}, {high})" if high is not None else f">= {low}"
        raise ValueError(f"invalid {name} {value!r}: must be {bound}")
    return value


class _Views(NamedTuple):
    """``Optimizer._flat_views``'s cache: the views, and what they were made from."""

    key: tuple  # ids of every array, and the decays
    views: tuple | None  # flat parameters, gradients, state and decays; None for odd layouts
    params: Sequence[np.ndarray]  # the lists the views were made from (identity checks)
    grads: Sequence[np.ndarray]
    state: list  # the optimizer's state list at the time
    state_arrays: list  # (state dict, name, array) for every state array in it
    decay: tuple  # (weight_decay, decay_1d)


class Optimizer:
    """Base class: hyperparameters plus a list of per-parameter state dicts."""

    #: Weak reference to the Network this optimizer trains (set by the Network).
    _network: Any = None

    def __init__(self, lr: float) -> None:
        self.lr = _check("learning rate lr", lr)
        self.state: list[dict[str, np.ndarray]] = []
        self.steps = 0

    def __getstate__(self) -> dict[str, Any]:
        # Copies and pickles (joblib, Dask, copy.deepcopy) leave out the weak reference to
        # the network (its Network relinks it) and the flat views cached by array id
        # (ids mean nothing for the copy's arrays).
        state = dict(self.__dict__)
        state.pop("_network", None)
        state.pop("_views", None)
        return state

    def step(self, params: Sequence[np.ndarray], grads: Sequence[np.ndarray]) -> None:
        """Update every ``params[i]`` in place from ``grads[i]``."""
        if len(self.state) != len(params):
            self.state = [self._new_state(p) for p in params]
        self.steps += 1
        # One fused kernel for every parameter when numba is installed (see
        # chainrule.kernels), else (or for layouts it does not take) the NumPy rule.
        if kernels.enabled() and self._kernel_step(params, grads):
            return
        for p, g, s in zip(params, grads, self.state):
            self._update(p, g, s)

    def _new_state(self, p: np.ndarray) -> dict[str, np.ndarray]:
        return {}

    def _update(self, p: np.ndarray, g: np.ndarray, state: dict[str, np.ndarray]) -> None:
        """The update rule in NumPy: the reference the kernels must match."""
        raise NotImplementedError

    def _kernel_step(self, params: Sequence[np.ndarray], grads: Sequence[np.ndarray]) -> bool:
        """Apply ``_update`` to every parameter through a compiled kernel; False where there is none."""
        return False

    def _flat_views(self, params: Sequence[np.ndarray], grads: Sequence[np.ndarray],
                    names: tuple[str, ...]) -> tuple | None:
        """Flat views of parameters, gradients and the named state, cached while the arrays stay.

        None unless every array is C-contiguous float32/float64 of one dtype
        (the kernels take flat views of one type).
        """
        decay = (getattr(self, "weight_decay", 0.0), getattr(self, "decay_1d", True))
        cached: _Views | None = getattr(self, "_views", None)
        # The kernel step passes the same two lists every step: then only the state
        # arrays (rebuilt, loaded, cast by Network.astype, or replaced by hand) and the
        # decays can have changed, and comparing those by identity is cheap.
        if cached is not None and cached.params is params and cached.grads is grads \
                and cached.state is self.state and cached.decay == decay \
                and all(d.get(n) is a for d, n, a in cached.state_arrays):
            return cached.views
        # The decays are part of the key: weight_decay may change between steps (a
        # callback, or chainrule.sklearn's alpha / batch weight before every batch).
        key = (*map(id, params), *map(id, grads),
               *(id(s[name]) if name in s else 0 for s in self.state for name in names),
               *decay)
        state_arrays = [(s, n, s[n]) for s in self.state for n in names if n in s]
        if cached is not None and cached.key == key:
            self._views = _Views(key, cached.views, params, grads, self.state, state_arrays, decay)
            return cached.views
        views = None
        dtype = params[0].dtype if params else None
        empty = _EMPTY.get(dtype)
        arrays = [*params, *grads, *(s[n] for s in self.state for n in names if n in s)]
        if empty is not None and all(a.dtype == dtype and a.flags.c_contiguous for a in arrays):
            flat = tuple(tuple(a.reshape(-1) for a in group) for group in (params, grads))
            state = tuple(
                tuple(s[name].reshape(-1) if name in s else empty for s in self.state)
                for name in names
            )
            decays = np.array([self._decay(p) for p in params], dtype=dtype)
            views = (*flat, *state, decays)
        self._views = _Views(key, views, params, grads, self.state, state_arrays, decay)
        return views

    def _decay(self, p: np.ndarray) -> float:
        """The weight decay that ``_update`` applies to ``p`` (0 for a 1-D one with ``decay_1d=False``)."""
        decay = getattr(self, "weight_decay", 0.0)
        return decay if getattr(self, "decay_1d", True) or p.ndim > 1 else 0.0

    def reset(self) -> None:
        """Forget all state (momentum, moments, step count)."""
        self.state = []
        self.steps = 0

    def get_config(self) -> dict[str, Any]:
        return {"type": type(self).__name__, "lr": self.lr}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "type")
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Stochastic gradient descent, with optional momentum and weight decay.

    The update, for each parameter ``p`` with gradient ``g`` (PyTorch's rule)::

        g = g + weight_decay * p
        b = momentum * b + g                  (b starts at 0)
        g = g + momentum * b   if nesterov   else   b
        p = p - lr * g

    With ``momentum=0`` this is the tutorials' ``weight -= alpha * delta``.
    ``decay_1d=False`` leaves 1-D parameters (biases) out of the weight decay,
    as scikit-learn's ``alpha`` does.
    """

    def __init__(
        self, lr: float = 0.01, momentum: float = 0.0, nesterov: bool = False,
        weight_decay: float = 0.0, decay_1d: bool = True,
    ) -> None:
        super().__init__(lr)
        self.momentum = _check("momentum", momentum)
        self.nesterov = bool(nesterov)
        self.weight_decay = _check("weight_decay", weight_decay)
        self.decay_1d = bool(decay_1d)
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov momentum needs momentum > 0")

    def _new_state(self, p: np.ndarray) -> dict[str, np.ndarray]:
        return {"momentum": np.zeros_like(p)} if self.momentum else {}

    def _update(self, p: np.ndarray, g: np.ndarray, state: dict[str, np.ndarray]) -> None:
        if self.weight_decay and (self.decay_1d or p.ndim > 1):
            g = g + self.weight_decay * p
        if self.momentum:
            b = state["momentum"]
            b *= self.momentum
            b += g
            g = g + self.momentum * b if self.nesterov else b
        p -= g * self.lr

    def _kernel_step(self, params: Sequence[np.ndarray], grads: Sequence[np.ndarray]) -> bool:
        # kernels.elementwise.sgd_update_all, which matches _update above
        if type(self)._update is not SGD._update:
            return False  # a subclass's own rule
        views = self._flat_views(params, grads, ("momentum",))
        if views is None:
            return False
        ps, gs, bufs, decays = views
        t = decays.dtype.type
        kernels.compiled().sgd_update_all(
            ps, gs, bufs, t(self.lr), t(self.momentum), decays, self.nesterov
        )
        return True

    def get_config(self) -> dict[str, Any]:
        return {
            "type": "SGD", "lr": self.lr, "momentum": self.momentum,
            "nesterov": self.nesterov, "weight_decay": self.weight_decay,
            "decay_1d": self.decay_1d,
        }


class Adam(Optimizer):
    """Adam: per-weight step sizes from running moments of the gradient.

    For step ``t`` (counting from 1)::

        g = g + weight_decay * p
        m = beta1 * m + (1 - beta1) * g          mean of g
        v = beta2 * v + (1 - beta2) * g**2       mean of g**2
        p = p - lr * (m / (1 - beta1**t)) / (sqrt(v / (1 - beta2**t)) + eps)

    The ``1 - beta**t`` factors undo the bias of starting ``m`` and ``v`` at 0.
    ``decay_1d=False`` leaves 1-D parameters (biases) out of the weight decay,
    as scikit-learn's ``alpha`` does.
    """

    def __init__(
        self, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
        weight_decay: float = 0.0, decay_1d: bool = True,
    ) -> None:
        super().__init__(lr)
        beta1, beta2 = betas
        self.betas = (_check("beta1", beta1, 0.0, 1.0), _check("beta2", beta2, 0.0, 1.0))
        self.eps = _check("eps", eps)
        self.weight_decay = _check("weight_decay", weight_decay)
        self.decay_1d = bool(decay_1d)

    def _new_state(self, p: np.ndarray) -> dict[str, np.ndarray]:
        return {"m": np.zeros_like(p), "v": np.zeros_like(p)}

    def _update(self, p: np.ndarray, g: np.ndarray, state: dict[str, np.ndarray]) -> None:
        beta1, beta2 = self.betas
        t = self.steps
        if self.weight_decay and (self.decay_1d or p.ndim > 1):
            g = g + self.weight_decay * p
        m, v = state["m"], state["v"]
        m *= beta1
        m += (1.0 - beta1) * g
        v *= beta2
        v += (1.0 - beta2) * (g * g)
        step_size = self.lr / (1.0 - beta1**t)
        denom = np.sqrt(v)
        denom *= 1.0 / math.sqrt(1.0 - beta2**t)
        denom += self.eps
        p -= step_size * (m / denom)

    def _kernel_step(self, params: Sequence[np.ndarray], grads: Sequence[np.ndarray]) -> bool:
        # kernels.elementwise.adam_update_all, which matches _update above
        if type(self)._update is not Adam._update:
            return False
        views = self._flat_views(params, grads, ("m", "v"))
        if views is None:
            return False
        ps, gs, ms, vs, decays = views
        beta1, beta2 = self.betas
        t, step = decays.dtype.type, self.steps
        kernels.compiled().adam_update_all(
            ps, gs, ms, vs, t(self.lr / (1.0 - beta1**step)), t(beta1), t(1.0 - beta1),
            t(beta2), t(1.0 - beta2), t(1.0 / math.sqrt(1.0 - beta2**step)), t(self.eps), decays,
        )
        return True

    def get_config(self) -> dict[str, Any]:
        return {
            "type": "Adam", "lr": self.lr, "betas": list(self.betas), "eps": self.eps,
            "weight_decay": self.weight_decay, "decay_1d": self.decay_1d,
        }


_EMPTY = {np.dtype(np.float32): np.empty(0, np.float32), np.dtype(np.float64): np.empty(0, np.float64)}


_BY_NAME: dict[str, type[Optimizer]] = {"sgd": SGD, "adam": Adam}


def get_optimizer(optimizer: str | Optimizer | dict, **kwargs: Any) -> Optimizer:
    """An optimizer from an instance, a name (``"adam"``, with keyword arguments) or a config."""
    if isinstance(optimizer, Optimizer):
        return optimizer
    if isinstance(optimizer, dict):
        kwargs = {k: v for k, v in optimizer.items() if k != "type"}
        if "betas" in kwargs:
            kwargs["betas"] = tuple(kwargs["betas"])
        optimizer = str(optimizer.get("type", ""))
    cls = _BY_NAME.get(str(optimizer).lower())
    if cls is None:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {', '.join(_BY_NAME)}")
    return cls(**kwargs)
