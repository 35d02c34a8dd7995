"""Losses: a number for how wrong a prediction is, and its gradient.

Interface::

    y = loss.check_targets(pred.shape, target)   # the one target validation
    value = loss.forward(pred, target)           # float, caches what backward needs
    grad = loss.backward()                       # dL/dpred, same shape as pred

``pred`` is one sample ``(k,)`` or a batch ``(n, k)``. Every loss is a mean
over the batch of a per-sample loss ``l_i``, so the gradient carries a
``1 / n``. ``check_targets`` accepts exactly the targets for which
``backward`` is the true gradient of ``forward``; ``fit``, ``evaluate``,
``train_step`` and ``check_gradients`` all go through it (``forward`` calls it).

Weights (``forward(..., sample_weight=s, class_weight=c)``), with ``c_i`` the
class weight of sample ``i``'s target::

    no weights:       L = sum_i l_i / n
    sample_weight:    L = sum_i s_i l_i / n                  (Keras; PyTorch's
                      ``(s * F.cross_entropy(z, y, reduction="none")).mean()``)
    class_weight:     L = sum_i s_i c_i l_i / sum_i c_i      (PyTorch's
                      ``F.cross_entropy(z, y, weight=c)``, a weighted mean)

So sample weights scale each sample's share of the usual mean, and class
weights make a weighted mean (scaling every class weight by 2 changes
nothing). For a row of class probabilities ``y_i``, ``c_i = sum_j y_ij c_j``,
its expected class weight, so one-hot rows give exactly the loss of their
labels. (PyTorch's ``weight=`` with probability targets differs: it divides
``sum_i sum_j c_j y_ij (-log p_ij)`` by ``n``, so there one-hot rows and
labels give different losses.) ``class_weight="balanced"`` gives class ``j`` the weight
``n / (n_classes * count_j)``, scikit-learn's ``compute_class_weight``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
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
    "balanced_class_weight",
]

#: How far a probability row's sum may stray from 1 (float32 rounding of ten 0.1s is ~1e-7).
_ROW_SUM_TOLERANCE = 1e-4


class Loss:
    """Base class: subclasses define ``check_targets`` and ``_terms``; the reduction is here."""

    #: Whether ``accuracy`` (and class weights) make sense for this loss.
    classification: bool = False

    # -- targets ---------------------------------------------------------------

    def check_targets(
        self, outputs_shape: tuple[int, ...], target: Any, dtype: Any = np.float64,
        *, finite: bool = True,
    ) -> np.ndarray:
        """Validate ``target`` for outputs shaped ``outputs_shape``; return it normalised.

        ``outputs_shape`` is ``(n, k)`` for a batch or ``(k,)`` for one sample.
        Regression losses return float targets of that shape (targets shaped
        ``(n,)`` are accepted for ``(n, 1)`` outputs). Raises ``ValueError``
        saying what is wrong and what to use instead. ``finite=False`` leaves
        out the NaN/infinity check (``forward`` makes it only when the loss
        comes out non-finite, which such a target always causes).
        """
        raise NotImplementedError

    def class_weights(self, class_weight: Any, target: np.ndarray, n_outputs: int) -> np.ndarray:
        """``class_weight`` (a dict ``{class: weight}``, a sequence, or ``"balanced"``) as an array.

        ``target`` are normalised targets (``check_targets``), used for
        ``"balanced"``. Classes missing from a dict weigh 1, as in scikit-learn.
        """
        raise ValueError(
            f"class_weight needs a classification loss (CrossEntropy or BinaryCrossEntropy), "
            f"not {self!r}; use sample_weight to weight samples"
        )

    def _class_weight_per_sample(self, weights: np.ndarray, target: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    # -- the math ------------------------------------------------------------------

    def _terms(
        self, z: np.ndarray, target: np.ndarray, per_sample: bool
    ) -> tuple[Any, np.ndarray, float]:
        """``(l, g, c)`` for a batch ``z`` (n, k): the losses, and ``dl_i/dz_i = c * g`` (n, k).

        ``l`` is the per-sample losses (n,) when ``per_sample`` is set, else
        only their sum (a float: cheaper, and all an unweighted mean needs).
        ``c`` is a constant factor, so that backward multiplies only once.
        """
        raise NotImplementedError

    def forward(
        self,
        pred: np.ndarray,
        target: Any,
        *,
        sample_weight: Any = None,
        class_weight: Any = None,
        cache: bool = True,
    ) -> float:
        """The loss of ``pred`` against ``target`` (weighted as in the module docstring).

        With ``cache=False`` nothing is stored (``evaluate`` uses it: thread-safe).
        """
        pred = np.asarray(pred)
        if pred.ndim not in (1, 2):
            raise ValueError(f"predictions must be shaped (k,) or (n, k), got shape {pred.shape}")
        target = self.check_targets(pred.shape, target, pred.dtype, finite=False)
        z = pred if pred.ndim == 2 else pred[None, :]
        n = z.shape[0]
        weight, denominator = self._weights(pred.shape, target, sample_weight, class_weight)
        losses, grad, factor = self._terms(z, _batch_form(target, z.shape), weight is not None)
        if weight is None:
            value = float(losses) / n
            scale: Any = factor / n
        elif denominator == 0:  # every sample weighs 0: nothing to learn from this batch
            value, scale = 0.0, np.zeros((n, 1), dtype=z.dtype)
        else:
            value = float(np.dot(weight, losses.astype(np.float64))) / denominator
            scale = (weight * (factor / denominator)).astype(z.dtype)[:, None]
        if not math.isfinite(value):
            _check_finite(target)  # a NaN or infinite target says so; else the outputs are to blame
        if cache:
            self._cache = (grad, scale, pred.shape)
        return value

    def backward(self) -> np.ndarray:
        """``dL/dpred`` for the last ``forward``, shaped like ``pred``."""
        grad, scale, shape = self._cached()
        return (grad * scale).reshape(shape)

    def _weights(
        self, shape: tuple[int, ...], target: np.ndarray, sample_weight: Any, class_weight: Any
    ) -> tuple[np.ndarray | None, float]:
        n = shape[0] if len(shape) == 2 else 1
        if sample_weight is None and class_weight is None:
            return None, float(n)
        weight = np.ones(n)
        denominator = float(n)
        if sample_weight is not None:
            weight = check_sample_weight(sample_weight, n)
        if class_weight is not None:
            per_class = self.class_weights(class_weight, target, shape[-1])
            c = self._class_weight_per_sample(per_class, _batch_form(target, (n, shape[-1])))
            weight = weight * c
            denominator = float(np.sum(c))
        return weight, denominator

    def __call__(self, pred: np.ndarray, target: Any, **kwargs: Any) -> float:
        return self.forward(pred, target, **kwargs)

    def accuracy(self, pred: np.ndarray, target: Any, sample_weight: Any = None) -> float | None:
        """Share of samples predicted right (weighted by ``sample_weight``), or ``None`` for regression."""
        return None

    def get_config(self) -> dict[str, Any]:
        return {"type": type(self).__name__}

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def _cached(self) -> tuple:
        if getattr(self, "_cache", None) is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        return self._cache


def _batch_form(target: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Normalised targets for a batch shaped (n, k): float rows (n, k), or integer labels (n,)."""
    return target.reshape(shape) if target.dtype.kind == "f" else target.reshape(-1)


def check_sample_weight(sample_weight: Any, n: int) -> np.ndarray:
    """``sample_weight`` as a float64 array (n,): finite, non-negative, one per sample."""
    w = np.asarray(sample_weight)
    if w.dtype.kind not in "biuf":
        raise ValueError(f"sample_weight must be real numbers, got dtype {w.dtype}")
    w = w.astype(np.float64)
    if w.shape != (n,) and not (n == 1 and w.ndim == 0):
        raise ValueError(f"sample_weight must hold one weight per sample, shape ({n},); got {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("sample_weight must be finite and >= 0")
    return w.reshape(n)


def balanced_class_weight(counts: np.ndarray) -> np.ndarray:
    """``n / (n_classes * count_j)`` for each class with samples (1 for absent ones).

    ``counts`` holds how many samples each class has (soft targets count
    fractionally). This is scikit-learn's ``compute_class_weight("balanced",
    classes=np.unique(y), y=y)``, where ``n_classes`` counts the classes present.
    """
    counts = np.asarray(counts, dtype=np.float64)
    present = counts > 0
    weights = np.ones_like(counts)
    weights[present] = counts.sum() / (np.count_nonzero(present) * counts[present])
    return weights


def _class_weight_array(class_weight: Any, n_classes: int, counts: Any) -> np.ndarray:
    """A dict / sequence / ``"balanced"`` as an array of ``n_classes`` weights, validated."""
    if isinstance(class_weight, str):
        if class_weight != "balanced":
            raise ValueError(f"class_weight must be a dict, a sequence or 'balanced', got {class_weight!r}")
        return balanced_class_weight(counts())
    if isinstance(class_weight, Mapping):
        weights = np.ones(n_classes)
        for key, value in class_weight.items():
            if isinstance(key, (bool, np.bool_)) or not isinstance(key, (int, np.integer)) \
                    or not 0 <= key < n_classes:
                raise ValueError(
                    f"class_weight has a key {key!r}; classes are the integers 0..{n_classes - 1}"
                )
            weights[int(key)] = float(value)
    else:
        weights = np.asarray(class_weight, dtype=np.float64)
        if weights.shape != (n_classes,):
            raise ValueError(
                f"class_weight must give one weight per class ({n_classes}), got shape {weights.shape}"
            )
    if not np.all(np.isfinite(weights)) or np.any(weights < 0):
        raise ValueError("class weights must be finite and >= 0")
    return weights


# dtype.kind rather than np.issubdtype: these run on every training step.
def _numeric(target: Any) -> np.ndarray:
    target = np.asarray(target)
    if target.dtype.kind in "biuf":  # bool, integers, floats
        return target
    try:
        return target.astype(np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"targets must be numbers, got dtype {target.dtype}") from None


def _check_finite(target: np.ndarray) -> None:
    if target.dtype.kind == "f" and not np.all(np.isfinite(target)):
        i = int(np.flatnonzero(~np.isfinite(target.reshape(-1)))[0])
        raise ValueError(f"targets contain NaN or infinite values (first at flat index {i})")


def _integer_valued(target: np.ndarray) -> bool:
    if target.dtype.kind in "biu":
        return True
    return bool(np.all(target == np.round(target)))


def _like_outputs(
    loss: Loss, shape: tuple[int, ...], target: Any, dtype: Any, finite: bool = True
) -> np.ndarray:
    """Targets for a per-output loss: one value per output (``(n,)`` fits ``(n, 1)``)."""
    target = _numeric(target)
    if finite:
        _check_finite(target)
    if target.shape != shape:
        # The only reshapes allowed: (n,) for (n, 1) outputs, and a scalar for one output.
        column = len(shape) == 2 and shape[1] == 1 and target.shape == shape[:1]
        scalar = shape == (1,) and target.ndim == 0
        if not (column or scalar):
            n_rows = shape[0] if len(shape) == 2 else 1
            if len(shape) == 2 and target.ndim >= 1 and target.shape[0] != n_rows and (
                    target.shape[1:] == shape[1:] or target.ndim == 1 and shape[1] == 1):
                raise ValueError(f"got {target.shape[0]} targets for {n_rows} samples")
            hint = ""
            if len(shape) == 2 and target.shape == shape[:1] and _integer_valued(target):
                hint = loss._label_hint(shape[1])
            raise ValueError(
                f"target shape {target.shape} does not match prediction shape {shape}{hint}"
            )
        target = target.reshape(shape)
    return target.astype(dtype, copy=False)


class _Regression(Loss):
    """Targets: one real value per output."""

    def check_targets(self, outputs_shape, target, dtype=np.float64, *, finite=True):
        return _like_outputs(self, tuple(outputs_shape), target, dtype, finite)

    def _label_hint(self, k: int) -> str:
        return (
            f": these look like class labels, one per sample, but {self!r} needs a row of {k} "
            f"values per sample. For a classifier use loss=\"cross_entropy\" (labels as they "
            f"are, logits out), or give one-hot rows"
        )


class SquaredError(_Regression):
    """The tutorials' error: ``sum((pred - target)**2)`` over outputs, mean over the batch.

    Per sample ``l_i = sum_j (pred_ij - target_ij)**2``; for one sample this is
    exactly ``sum((pred - y)**2)``. Gradient: ``2 * (pred - target) / n``.
    """

    def _terms(self, z, target, per_sample):
        diff = z - target
        losses = np.einsum("ij,ij->i", diff, diff) if per_sample else np.vdot(diff, diff)
        return losses, diff, 2.0


class MeanSquaredError(_Regression):
    """``mean((pred - target)**2)`` over every element (PyTorch's ``MSELoss``).

    Per sample ``l_i = mean_j (pred_ij - target_ij)**2``.
    Gradient: ``2 * (pred - target) / pred.size``.
    """

    def _terms(self, z, target, per_sample):
        k = z.shape[1]
        diff = z - target
        losses = np.einsum("ij,ij->i", diff, diff) if per_sample else np.vdot(diff, diff)
        return losses / k, diff, 2.0 / k


class CrossEntropy(Loss):
    """Softmax cross-entropy from logits, averaged over the batch (``torch.nn.CrossEntropyLoss``).

    ``target`` is either integer (or bool) class labels in ``0..k-1``, shaped
    ``(n,)`` (a plain int for one sample), or one row of class probabilities
    per sample (one-hot, or smoothed), shaped like the logits. Rows must be
    non-negative and sum to 1: a multi-hot row (several labels per sample)
    needs ``BinaryCrossEntropy``, and weighting belongs in ``class_weight`` /
    ``sample_weight``, so such rows are refused rather than silently mistrained.

    Notes
    -----
    With ``p = softmax(z)`` and ``l = -sum(y * log p)``, the softmax Jacobian
    and the log's ``1 / p`` cancel, leaving::

        dl/dz = p * sum(y) - y  =  p - y     (rows summing to 1)

    and the mean over the batch divides by ``n``. ``log p`` is computed as
    ``z - max(z) - log(sum(exp(z - max(z))))``, so logits in the thousands
    neither overflow nor give ``log(0)``.
    """

    classification = True

    def check_targets(self, outputs_shape, target, dtype=np.float64, *, finite=True):
        shape = tuple(outputs_shape)
        k = shape[-1]
        if k < 2:
            raise ValueError(_ONE_OUTPUT)
        target = _numeric(target)
        if finite:
            _check_finite(target)
        if target.shape == shape:  # one row of class probabilities per sample
            return _probability_rows(target, dtype)
        return _check_labels(target, k, shape[0] if len(shape) == 2 else 1)

    def _terms(self, z, target, per_sample):
        n = z.shape[0]
        shifted = z - z.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        sum_exp = exp.sum(axis=1, keepdims=True)
        log_sum = np.log(sum_exp)
        exp /= sum_exp  # exp now holds p = softmax(z)
        if target.ndim == 2:
            if per_sample:
                losses = -np.einsum("ij,ij->i", target, shifted - log_sum)
            else:
                losses = -np.vdot(target, shifted - log_sum)
            grad = exp * target.sum(axis=1, keepdims=True) - target
        else:
            rows = np.arange(n)
            picked = log_sum[:, 0] - shifted[rows, target]
            losses = picked if per_sample else np.sum(picked)
            grad = exp
            grad[rows, target] -= 1.0
        return losses, grad, 1.0

    def class_weights(self, class_weight, target, n_outputs):
        def counts():
            if target.dtype.kind == "f":  # probability rows
                return target.reshape(-1, n_outputs).sum(axis=0)
            return np.bincount(target.reshape(-1), minlength=n_outputs)

        return _class_weight_array(class_weight, n_outputs, counts)

    def _class_weight_per_sample(self, weights, target):
        if target.ndim == 2:
            return target @ weights  # a soft row weighs its expected class weight
        return weights[target]

    def accuracy(self, pred, target, sample_weight=None):
        pred = np.asarray(pred)
        z = pred if pred.ndim == 2 else pred[None, :]
        target = self.check_targets(pred.shape, target)
        labels = target.reshape(z.shape).argmax(axis=1) if target.dtype.kind == "f" \
            else target.reshape(-1)
        return _weighted_mean(z.argmax(axis=1) == labels, sample_weight)


_ONE_OUTPUT = (
    "CrossEntropy needs one output (logit) per class, at least 2; the network has 1 output. "
    "For a yes/no answer from one output use BinaryCrossEntropy (loss=\"binary_cross_entropy\"), "
    "or give the network 2 outputs"
)


def _weighted_mean(right: np.ndarray, sample_weight: Any) -> float:
    if sample_weight is None:
        return float(np.mean(right))
    w = check_sample_weight(sample_weight, len(right))
    return float(np.dot(w, right) / w.sum()) if w.sum() > 0 else float("nan")


def _probability_rows(target: np.ndarray, dtype: Any) -> np.ndarray:
    """Rows of class probabilities: non-negative, each summing to 1 (within rounding)."""
    rows = target.reshape(-1, target.shape[-1])
    sums = rows.sum(axis=1, dtype=np.float64)
    if rows.size and (rows.min() < 0 or np.abs(sums - 1.0).max() > _ROW_SUM_TOLERANCE):
        bad = np.any(rows < 0, axis=1) | (np.abs(sums - 1.0) > _ROW_SUM_TOLERANCE)
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"CrossEntropy target rows must be class probabilities (one-hot): non-negative, "
            f"summing to 1; row {i} is {rows[i].tolist()} (sum {float(rows[i].sum()):g}). "
            f"For several labels per sample (multi-label) use BinaryCrossEntropy "
            f"(loss=\"binary_cross_entropy\"); to weight classes or samples use "
            f"class_weight= or sample_weight= in fit and evaluate"
        )
    return target.astype(dtype, copy=False)


def _check_labels(target: np.ndarray, n_classes: int, n: int) -> np.ndarray:
    """Validate ``n`` integer class labels in ``[0, n_classes)``; return them as intp."""
    if target.ndim > 1:
        raise ValueError(
            f"class labels must be shaped ({n},), or one-hot rows shaped ({n}, {n_classes}); "
            f"got shape {target.shape}"
        )
    if (target.shape[0] if target.ndim else 1) != n:
        raise ValueError(f"got {target.shape[0] if target.ndim else 1} labels for {n} samples")
    if target.dtype.kind == "f":
        bad = target != np.round(target)
        if np.any(bad):
            i = int(np.flatnonzero(np.reshape(bad, -1))[0])
            raise ValueError(f"class label {target.reshape(-1)[i].item()!r} at index {i} is not an integer")
    target = target.astype(np.intp) if target.dtype.kind == "b" else target
    if target.size and (target.min() < 0 or target.max() >= n_classes):
        bad = (target < 0) | (target >= n_classes)
        i = int(np.flatnonzero(np.reshape(bad, -1))[0])
        value = np.reshape(target, -1)[i]
        raise ValueError(
            f"class label {value.item()!r} at index {i} is out of range for {n_classes} "
            f"classes (labels must be 0..{n_classes - 1})"
        )
    return target.astype(np.intp, copy=False)


class BinaryCrossEntropy(Loss):
    """Binary cross-entropy from logits, averaged over every element (``BCEWithLogitsLoss``).

    Targets are one value in ``[0, 1]`` per output (bools and 0/1 integers
    too): one output for a yes/no answer, several for multi-label.

    Notes
    -----
    ``l = -(y log s + (1 - y) log(1 - s))`` with ``s = sigmoid(z)`` is
    rewritten as ``max(z, 0) - z*y + log(1 + exp(-|z|))``, which never takes
    the log of 0. Per sample, ``l_i`` is the mean over its ``k`` outputs, so
    the gradient is ``(sigmoid(z) - y) / (n * k)``. ``class_weight`` works for
    one output (classes 0 and 1): a target ``y`` weighs ``(1 - y) c_0 + y c_1``.
    """

    classification = True

    def check_targets(self, outputs_shape, target, dtype=np.float64, *, finite=True):
        target = _like_outputs(self, tuple(outputs_shape), target, dtype, finite)
        if target.size and (target.min() < 0 or target.max() > 1):  # NaN: see forward
            outside = (target < 0) | (target > 1)
            value = target.reshape(-1)[int(np.flatnonzero(outside.reshape(-1))[0])]
            raise ValueError(
                f"BinaryCrossEntropy targets must lie in [0, 1] (one yes/no per output); got "
                f"{value.item()!r}. For one class label 0..k-1 per sample use CrossEntropy "
                f"(loss=\"cross_entropy\") with one output per class"
            )
        return target

    def _label_hint(self, k: int) -> str:
        return (
            f": BinaryCrossEntropy needs one target in [0, 1] per output ({k}); for one class "
            f"label per sample use CrossEntropy (loss=\"cross_entropy\")"
        )

    def _terms(self, z, target, per_sample):
        k = z.shape[1]
        elementwise = np.maximum(z, 0) - z * target + np.log1p(np.exp(-np.abs(z)))
        losses = elementwise.sum(axis=1) / k if per_sample else np.sum(elementwise) / k
        return losses, sigmoid(z) - target, 1.0 / k

    def class_weights(self, class_weight, target, n_outputs):
        if n_outputs != 1:
            raise ValueError(
                f"class_weight with BinaryCrossEntropy needs one output (classes 0 and 1); this "
                f"network has {n_outputs} (multi-label): use sample_weight instead"
            )

        def counts():
            positive = float(np.sum(target, dtype=np.float64))
            return np.array([target.size - positive, positive])

        return _class_weight_array(class_weight, 2, counts)

    def _class_weight_per_sample(self, weights, target):
        y = target.reshape(-1).astype(np.float64)
        return (1.0 - y) * weights[0] + y * weights[1]

    def accuracy(self, pred, target, sample_weight=None):
        pred = np.asarray(pred)
        y = self.check_targets(pred.shape, target, pred.dtype)
        right = (pred > 0) == (y > 0.5)
        if sample_weight is None:
            return float(np.mean(right))
        per_sample = right.reshape(len(right) if pred.ndim == 2 else 1, -1).mean(axis=1)
        return _weighted_mean(per_sample, sample_weight)


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
        if cls is None:  # a saved config names the class, not the short name
            raise ValueError(f"unknown loss type {str(loss.get('type'))[:80]!r}; a saved loss "
                             f"is one of {', '.join(_BY_CLASS_NAME)}")
        return cls()
    cls = _BY_NAME.get(str(loss).lower())
    if cls is None:
        raise ValueError(f"unknown loss {loss!r}; choose one of {', '.join(_BY_NAME)}")
    return cls()
