"""Losses: a number for how wrong a prediction is, and its gradient.

Interface::

    value = loss.forward(pred, target)   # float, caches what backward needs
    grad = loss.backward()               # dL/dpred, same shape as pred

``pred`` is one sample ``(k,)`` or a batch ``(n, k)``; losses are averaged over
the batch, so the gradient carries a ``1 / n``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .activations import sigmoid

__all__ = [
    "Loss",
    "SquaredError",
    "MeanSquaredError",
    "CrossEntropy",
    "BinaryCrossEntropy",
    "get_loss",
]


class Loss:
    """Base class for losses."""

    #: Whether ``accuracy`` makes sense for this loss.
    classification: bool = False

    def forward(self, pred: np.ndarray, target: Any, *, cache: bool = True) -> float:
        raise NotImplementedError

    def backward(self) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, pred: np.ndarray, target: Any) -> float:
        return self.forward(pred, target)

    def accuracy(self, pred: np.ndarray, target: Any) -> float | None:
        """Share of samples predicted right, or ``None`` for regression losses."""
        return None

    def check_target(self, target: Any, n_outputs: int) -> None:
        """Raise ``ValueError`` if ``target`` cannot be a target for ``n_outputs`` outputs."""

    def get_config(self) -> dict[str, Any]:
        return {"type": type(self).__name__}

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def _cached(self) -> tuple:
        if getattr(self, "_cache", None) is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        return self._cache


def _as_target_like(pred: np.ndarray, target: Any) -> np.ndarray:
    """``target`` as an array of ``pred``'s dtype and shape ((n,) and (n, 1) both fit (n, 1))."""
    target = np.asarray(target, dtype=pred.dtype)
    if target.shape == pred.shape:
        return target
    # The only reshapes allowed: (n,) for (n, 1) outputs, and a scalar for one output.
    column = pred.ndim == 2 and pred.shape[1] == 1 and target.shape == pred.shape[:1]
    scalar = pred.shape == (1,) and target.ndim == 0
    if not (column or scalar):
        raise ValueError(f"target shape {target.shape} does not match prediction shape {pred.shape}")
    return target.reshape(pred.shape)


def _batch_size(pred: np.ndarray) -> int:
    return pred.shape[0] if pred.ndim == 2 else 1


class SquaredError(Loss):
    """The tutorials' error: ``sum((pred - target)**2)`` over outputs, mean over the batch.

    For one sample this is exactly ``sum((pred - y)**2)``.
    Gradient: ``2 * (pred - target) / n``.
    """

    def forward(self, pred: np.ndarray, target: Any, *, cache: bool = True) -> float:
        diff = pred - _as_target_like(pred, target)
        n = _batch_size(pred)
        if cache:
            self._cache = (diff, n)
        return float(np.vdot(diff, diff)) / n

    def backward(self) -> np.ndarray:
        diff, n = self._cached()
        return diff * (2.0 / n)


class MeanSquaredError(Loss):
    """``mean((pred - target)**2)`` over every element (PyTorch's ``MSELoss``).

    Gradient: ``2 * (pred - target) / pred.size``.
    """

    def forward(self, pred: np.ndarray, target: Any, *, cache: bool = True) -> float:
        diff = pred - _as_target_like(pred, target)
        if cache:
            self._cache = (diff,)
        return float(np.vdot(diff, diff)) / diff.size

    def backward(self) -> np.ndarray:
        (diff,) = self._cached()
        return diff * (2.0 / diff.size)


class CrossEntropy(Loss):
    """Softmax cross-entropy from logits, averaged over the batch.

    ``target`` is either integer class labels, shaped ``(n,)`` (a plain int for
    one sample), or one row of class probabilities per sample (one-hot),
    shaped like the logits.

    Notes
    -----
    With ``p = softmax(z)`` and ``L = -sum(y * log p)``, the softmax Jacobian
    and the log's ``1 / p`` cancel, leaving the fused gradient::

        dL/dz = (p - y) / n

    ``log p`` is computed as ``z - max(z) - log(sum(exp(z - max(z))))``, so
    logits in the thousands neither overflow nor give ``log(0)``.
    """

    classification = True

    def check_target(self, target: Any, n_outputs: int) -> None:
        target = np.asarray(target)
        if target.ndim >= 1 and target.shape[-1] == n_outputs and target.ndim == 2:
            return
        _labels(target, n_outputs)

    def forward(self, pred: np.ndarray, target: Any, *, cache: bool = True) -> float:
        z = pred if pred.ndim == 2 else pred[None, :]
        n, k = z.shape
        shifted = z - z.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        sum_exp = exp.sum(axis=1, keepdims=True)
        log_sum = np.log(sum_exp)
        target = np.asarray(target)
        if _one_hot(target, pred):
            y = target.reshape(n, k).astype(z.dtype, copy=False)
            loss = -float(np.vdot(y, shifted - log_sum)) / n
            labels = None
        else:
            labels = _labels(target, k).reshape(-1)
            if labels.shape[0] != n:
                raise ValueError(f"got {labels.shape[0]} labels for {n} samples")
            rows = np.arange(n)
            loss = float(np.sum(log_sum[:, 0] - shifted[rows, labels])) / n
            y = None
        exp /= sum_exp  # exp now holds p = softmax(z)
        if cache:
            self._cache = (exp, y, labels, pred.shape)
        return loss

    def backward(self) -> np.ndarray:
        p, y, labels, shape = self._cached()
        n = p.shape[0]
        grad = p.copy() if y is None else p - y
        if y is None:
            grad[np.arange(n), labels] -= 1.0
        grad *= 1.0 / n
        return grad.reshape(shape)

    def accuracy(self, pred: np.ndarray, target: Any) -> float:
        z = pred if pred.ndim == 2 else pred[None, :]
        target = np.asarray(target)
        if _one_hot(target, pred):
            labels = target.reshape(z.shape).argmax(axis=1)
        else:
            labels = _labels(target, z.shape[1]).reshape(-1)
        return float(np.mean(z.argmax(axis=1) == labels))


def _one_hot(target: np.ndarray, pred: np.ndarray) -> bool:
    """Whether ``target`` holds a row of class probabilities per sample (any dtype), not labels."""
    return target.shape == pred.shape and pred.shape[-1] > 1


def _labels(target: np.ndarray, n_classes: int) -> np.ndarray:
    """Validate integer class labels in ``[0, n_classes)``; return them as intp."""
    target = np.asarray(target)
    if target.ndim > 1:
        raise ValueError(
            f"class labels must be shaped (n,), or one-hot rows shaped (n, {n_classes}); "
            f"got shape {target.shape}"
        )
    if np.issubdtype(target.dtype, np.floating):
        bad = ~np.isfinite(target) | (target != np.round(target))
        if bad.any():
            i = int(np.flatnonzero(bad.reshape(-1))[0])
            raise ValueError(f"class label {target.reshape(-1)[i]!r} at index {i} is not an integer")
    elif not np.issubdtype(target.dtype, np.integer):
        raise ValueError(f"class labels must be integers, got dtype {target.dtype}")
    bad = (target < 0) | (target >= n_classes)
    if np.any(bad):
        i = int(np.flatnonzero(np.reshape(bad, -1))[0])
        value = np.reshape(target, -1)[i]
        raise ValueError(
            f"class label {value.item()!r} at index {i} is out of range for {n_classes} "
            f"classes (labels must be 0..{n_classes - 1})"
        )
    return target.astype(np.intp, copy=False)


class BinaryCrossEntropy(Loss):
    """Binary cross-entropy from logits, averaged over every element.

    Notes
    -----
    ``L = -(y log s + (1 - y) log(1 - s))`` with ``s = sigmoid(z)`` is
    rewritten as ``max(z, 0) - z*y + log(1 + exp(-|z|))``, which never takes
    the log of 0. Its gradient is ``(sigmoid(z) - y) / size``.
    """

    classification = True

    def check_target(self, target: Any, n_outputs: int) -> None:
        target = np.asarray(target, dtype=np.float64)
        if np.any((target < 0) | (target > 1)):
            raise ValueError("BinaryCrossEntropy targets must lie in [0, 1]")

    def forward(self, pred: np.ndarray, target: Any, *, cache: bool = True) -> float:
        y = _as_target_like(pred, target)
        z = pred
        loss = np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))
        if cache:
            self._cache = (z, y)
        return float(loss.mean())

    def backward(self) -> np.ndarray:
        z, y = self._cached()
        grad = sigmoid(z) - y
        grad *= 1.0 / z.size
        return grad

    def accuracy(self, pred: np.ndarray, target: Any) -> float:
        y = _as_target_like(pred, target)
        return float(np.mean((pred > 0) == (y > 0.5)))


_BY_NAME: dict[str, type[Loss]] = {
    "squared_error": SquaredError,
    "mse": MeanSquaredError,
    "mean_squared_error": MeanSquaredError,
    "cross_entropy": CrossEntropy,
    "binary_cross_entropy": BinaryCrossEntropy,
}
_BY_CLASS_NAME = {cls.__name__: cls for cls in _BY_NAME.values()}


def get_loss(loss: str | Loss | dict) -> Loss:
    """A loss from an instance, a name (``"cross_entropy"``) or a saved config."""
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, dict):
        cls = _BY_CLASS_NAME.get(loss.get("type"))
    else:
        cls = _BY_NAME.get(str(loss).lower())
    if cls is None:
        raise ValueError(f"unknown loss {loss!r}; choose one of {', '.join(_BY_NAME)}")
    return cls()
