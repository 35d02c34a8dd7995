"""scikit-learn estimators backed by chainrule: drop-in ``MLPClassifier`` and ``MLPRegressor``.

Same constructor parameters, defaults, fitted attributes and methods as
``sklearn.neural_network.MLPClassifier`` / ``MLPRegressor`` (scikit-learn >= 1.4),
plus ``class_weight``, ``dtype`` (float32 by default), ``network=`` (a builder
for any chainrule architecture), ``network_`` (the trained ``Network``),
``save``/``load`` (safetensors, never pickle) and ``to_onnx``.

This module is a thin adapter: every step is ``Network.train_step`` inside
``chainrule.training.fit`` with chainrule's ``SGD``/``Adam`` (``lbfgs`` hands
chainrule's loss and gradients to ``scipy.optimize.minimize``). scikit-learn's
per-epoch rules (``tol``, ``n_iter_no_change``, ``early_stopping``, the
``invscaling``/``adaptive`` learning rates) run as a ``fit`` callback.

BLAS threads are left as the caller set them (``fit(..., threads=None)``),
as scikit-learn leaves them: limit them with ``threadpoolctl`` (joblib and
Dask workers already run on one thread each).

How scikit-learn's objective maps onto chainrule's
-------------------------------------------------
scikit-learn minimises, per batch ``B`` (``_multilayer_perceptron.py``, ``_backprop``)::

    J = sum_i w_i * l_i / sum_i w_i  +  alpha / (2 * sum_i w_i) * sum ||W||^2

with ``w_i = 1`` without sample weights and ``l`` the log loss summed over
outputs (softmax for several classes, logistic for two classes and for
multi-label) or half the squared error summed over outputs (regression);
the penalty covers weights, not biases. chainrule's losses give ``c * J``'s
data term up to a constant ``1 / c``: ``c = 1`` for ``CrossEntropy`` and a
one-output ``BinaryCrossEntropy``, ``c = k`` for ``BinaryCrossEntropy`` over
``k`` labels (chainrule averages over labels), ``c = 1/2`` for
``SquaredError``. So the estimators train on ``J / c``: weight decay
``alpha / (c * sum_i w_i)`` on weights only (``decay_1d=False``), reset
before every batch, and SGD's learning rate times ``c``. Adam is invariant
to the scale but for ``epsilon``, which scikit-learn adds before the bias
correction (``lr * sqrt(1 - beta_2**t) / (1 - beta_1**t) * m / (sqrt(v) + eps)``)
and chainrule after it: chainrule's ``eps`` is set before every step to
``epsilon / (c * sqrt(1 - beta_2**t))``, which makes the two steps equal.
``loss_`` and ``loss_curve_`` report scikit-learn's numbers (penalty included).

With ``sample_weight`` (or ``class_weight``) the minibatch solvers divide by
each batch's size times the mean weight where scikit-learn divides by the
batch's own weight sum (chainrule's weighted loss is Keras's
``sum_i w_i l_i / n``, given weights scaled to mean 1); the two agree for
lbfgs's single full batch and whenever the batches' weights sum alike.
"""

from __future__ import annotations

import copy
import json
import math
import os
import warnings
from collections.abc import Callable, Sequence
from os import PathLike
from typing import Any

import numpy as np

try:
    import scipy.optimize
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier as _SkMLPClassifier
    from sklearn.preprocessing import LabelBinarizer
    from sklearn.utils import check_random_state
    from sklearn.utils._param_validation import StrOptions
    from sklearn.utils.class_weight import compute_sample_weight
    from sklearn.utils.metaestimators import available_if
    from sklearn.utils.multiclass import type_of_target, unique_labels
    from sklearn.utils.validation import (
        _check_sample_weight,
        check_is_fitted,
        column_or_1d,
        validate_data,
    )
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "chainrule.sklearn needs scikit-learn and scipy: pip install 'chainrule[sklearn]'"
    ) from error

from .activations import ReLU, Sigmoid, Tanh
from .errors import ModelFileError
from .layers import Dense, Layer
from .losses import BinaryCrossEntropy, CrossEntropy, SquaredError
from .network import Network
from .optimizers import SGD, Adam
from .training import Callback, fit

__all__ = ["MLPClassifier", "MLPRegressor", "load"]

#: scikit-learn's hidden activations by their scikit-learn names ("identity" adds no layer).
_ACTIVATIONS: dict[str, type[Layer] | None] = {
    "identity": None, "logistic": Sigmoid, "tanh": Tanh, "relu": ReLU,
}
_METADATA_KEY = "sklearn_estimator"
_STOCHASTIC = ("sgd", "adam")
NetworkBuilder = Callable[[int, int, np.random.Generator], "Network | Sequence[Layer]"]


class _BaseMLP(BaseEstimator):
    """What MLPClassifier and MLPRegressor share: building, training, saving."""

    _parameter_constraints: dict = {
        **{k: v for k, v in _SkMLPClassifier._parameter_constraints.items() if k != "loss"},
        "dtype": [StrOptions({"float32", "float64"})],
        "network": [callable, None],
        "input_shape": ["array-like", None],
    }

    # -- fitted attributes that live in the network -------------------------------

    @property
    def coefs_(self) -> list[np.ndarray]:
        """Weight matrices in scikit-learn's shape ``(fan_in, fan_out)``: live views of ``network_``.

        Assigning a list copies the values into the network (shapes must match).
        """
        return [layer.weight.T for layer in self._dense_layers()]

    @coefs_.setter
    def coefs_(self, values: Sequence[np.ndarray]) -> None:
        layers = self._dense_layers()
        if len(values) != len(layers):
            raise ValueError(f"coefs_ needs {len(layers)} arrays, got {len(values)}")
        for layer, value in zip(layers, values):
            layer.weight = np.asarray(value).T

    @property
    def intercepts_(self) -> list[np.ndarray]:
        """Bias vectors ``(fan_out,)``: live views of ``network_``; assigning copies values in."""
        return [layer.bias for layer in self._dense_layers()]

    @intercepts_.setter
    def intercepts_(self, values: Sequence[np.ndarray]) -> None:
        layers = self._dense_layers()
        if len(values) != len(layers):
            raise ValueError(f"intercepts_ needs {len(layers)} arrays, got {len(values)}")
        for layer, value in zip(layers, values):
            layer.bias = value

    def _dense_layers(self) -> list[Dense]:
        if "network_" not in self.__dict__:
            raise AttributeError(f"This {type(self).__name__} instance is not fitted yet")
        return [layer for layer in self.network_.layers if isinstance(layer, Dense)]

    # -- pickling for joblib's process transport ------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        network = state.get("network_")
        if network is not None:
            # The optimizer keeps a weak reference to its network (not picklable): pickle
            # shallow copies without it, relinked by __setstate__.
            network, optimizer = copy.copy(network), copy.copy(network.optimizer)
            optimizer.__dict__.pop("_network", None)
            network.__dict__["_optimizer"] = optimizer
            state["network_"] = network
            if "_optimizer" in state:
                state["_optimizer"] = optimizer
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        network = self.__dict__.get("network_")
        if network is not None:  # the optimizer's link to its network is a weak reference
            network.optimizer = network.optimizer
            if "_optimizer" in self.__dict__:
                self._optimizer = network.optimizer

    # -- the task (classification or regression) ---------------------------------------

    def _task_loss(self) -> Any:
        raise NotImplementedError

    def _scale(self) -> tuple[float, float]:
        """``(c, r)``: scikit-learn's data loss is ``c * chainrule_loss`` for gradients and
        ``r * chainrule_loss`` for the reported ``loss_``."""
        raise NotImplementedError

    # -- building -----------------------------------------------------------------------

    def _hidden_sizes(self) -> list[int]:
        sizes = self.hidden_layer_sizes
        sizes = list(sizes) if hasattr(sizes, "__iter__") else [sizes]
        if any(int(s) <= 0 for s in sizes):
            raise ValueError(f"hidden_layer_sizes must be > 0, got {sizes}.")
        return [int(s) for s in sizes]

    def _build(self, n_features: int, n_outputs: int, random_state: np.random.RandomState) -> Network:
        """The network: ``network(n_features, n_outputs, rng)`` or scikit-learn's MLP.

        The MLP's weights are drawn as scikit-learn draws them (``_init_coef``:
        uniform in ``+-sqrt(6 / (fan_in + fan_out))``, 2 instead of 6 for
        ``logistic``, weight then bias, layer by layer, from ``random_state``),
        so a seeded estimator starts from scikit-learn's initial weights.
        """
        if self.network is not None:
            rng = np.random.default_rng(random_state.randint(np.iinfo(np.int32).max))
            built = self.network(n_features, n_outputs, rng)
            layers = list(built.layers) if isinstance(built, Network) else list(built)
            network = Network(layers, loss=self._task_loss(), dtype=self.dtype)
            if network.out_features not in (None, n_outputs):
                raise ValueError(
                    f"the network builder made {network.out_features} outputs; this task needs "
                    f"{n_outputs} (raw outputs: no softmax or sigmoid at the end)"
                )
            return network
        sizes = [n_features, *self._hidden_sizes(), n_outputs]
        factor = 2.0 if self.activation == "logistic" else 6.0
        activation = _ACTIVATIONS[self.activation]
        layers: list[Layer] = []
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            bound = math.sqrt(factor / (fan_in + fan_out))
            coef = random_state.uniform(-bound, bound, (fan_in, fan_out))
            intercept = random_state.uniform(-bound, bound, fan_out)
            dense = Dense(fan_in, fan_out, init="zeros", dtype=self.dtype)
            dense.weight, dense.bias = coef.T, intercept
            layers.append(dense)
            if i < len(sizes) - 2 and activation is not None:
                layers.append(activation())
        return Network(layers, loss=self._task_loss(), dtype=self.dtype)

    def _new_optimizer(self) -> SGD | Adam:
        c, _ = self._scale()
        if self.solver == "sgd":
            return SGD(lr=self._learning_rate * c, momentum=self.momentum,
                       nesterov=self.nesterovs_momentum and self.momentum > 0, decay_1d=False)
        return Adam(lr=self.learning_rate_init, betas=(self.beta_1, self.beta_2),
                    eps=self.epsilon, decay_1d=False)

    def _to_network_input(self, X: np.ndarray) -> np.ndarray:
        """Rows ``(n, features)`` as the network takes them: images ``(n, *input_shape)``
        when ``input_shape`` is set (e.g. ``(1, 28, 28)`` for a CNN), else unchanged."""
        X = X.astype(self.dtype, copy=False)
        if self.input_shape is None:
            return X
        shape = tuple(int(d) for d in self.input_shape)
        if math.prod(shape) != X.shape[1]:
            raise ValueError(f"input_shape {shape} holds {math.prod(shape)} values per sample, "
                             f"but X has {X.shape[1]} features")
        return X.reshape(len(X), *shape)

    # -- fitting ---------------------------------------------------------------------

    def _fit(self, X: Any, y: Any, sample_weight: Any = None, incremental: bool = False):
        self._validate_params()
        first_pass = "network_" not in self.__dict__ or (not self.warm_start and not incremental)
        X, y = self._validate_input(X, y, incremental, reset=first_pass)
        targets, n_outputs = self._encode(y)
        sample_weight = self._sample_weight(X, y, sample_weight)
        self._random_state = check_random_state(self.random_state)
        if first_pass:
            self.network_ = self._build(X.shape[1], n_outputs, self._random_state)
            self.n_outputs_ = n_outputs
            self.n_layers_ = len(self._dense_layers()) + 1
            self.n_iter_ = 0
            self.t_ = 0
            self._initialize_curves()
        elif n_outputs != self.n_outputs_:
            raise ValueError(f"y has {n_outputs} outputs; this estimator was fitted with {self.n_outputs_}")
        if self.solver == "lbfgs":
            self._fit_lbfgs(self._to_network_input(X), targets, sample_weight)
        else:
            self._fit_stochastic(X, y, targets, sample_weight, incremental)
        if not all(np.isfinite(p).all() for p in self.network_.parameters().values()):
            raise ValueError(
                "Solver produced non-finite parameter weights. The input data may contain "
                "large values and need to be preprocessed."
            )
        return self

    def _initialize_curves(self) -> None:
        for name in ("loss_curve_", "best_loss_", "validation_scores_", "best_validation_score_",
                     "_optimizer"):
            self.__dict__.pop(name, None)
        if self.solver in _STOCHASTIC:
            self.loss_curve_ = []
            self._no_improvement_count = 0
            if self.early_stopping:
                self.validation_scores_ = []
                self.best_validation_score_ = -np.inf
                self.best_loss_ = None
            else:
                self.best_loss_ = np.inf
                self.validation_scores_ = None
                self.best_validation_score_ = None

    def _sample_weight(self, X: np.ndarray, y: np.ndarray, sample_weight: Any) -> np.ndarray | None:
        class_weight = getattr(self, "class_weight", None)
        if sample_weight is None and class_weight is None:
            return None
        weight = _check_sample_weight(sample_weight, X, dtype=np.float64)
        if class_weight is not None:
            weight = weight * compute_sample_weight(class_weight, y)
        return weight

    def _fit_stochastic(self, X, y, targets, sample_weight, incremental) -> None:
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        network = self.network_
        if not incremental or "_optimizer" not in self.__dict__:
            self._learning_rate = float(self.learning_rate_init)
            self._optimizer = self._new_optimizer()
            network.optimizer = self._optimizer
        validation = None
        if self.early_stopping:
            stratify = y if self._stratify() else None
            parts = train_test_split(
                X, y, targets, *([] if sample_weight is None else [sample_weight]),
                random_state=self._random_state, test_size=self.validation_fraction,
                stratify=stratify,
            )
            X, X_val, y, y_val, targets, _ = parts[:6]
            if sample_weight is not None:
                sample_weight, weight_val = parts[6:8]
            else:
                weight_val = None
            if X_val.shape[0] < 2:
                raise ValueError(
                    "The validation set is too small. Increase 'validation_fraction' or the "
                    "size of your dataset."
                )
            validation = (X_val, y_val, weight_val)
        X = self._to_network_input(X)  # after the split: scoring the validation rows needs rows
        n = X.shape[0]
        if self.batch_size == "auto":
            batch_size = min(200, n)
        else:
            if self.batch_size > n:
                warnings.warn(
                    "Got `batch_size` less than 1 or larger than sample size. It is going "
                    "to be clipped", stacklevel=3,
                )
            batch_size = int(np.clip(self.batch_size, 1, n))
        epochs = _SklearnEpochs(self, n, batch_size, sample_weight, validation, incremental)
        # chainrule's weighted loss is sum_i w_i l_i / n (Keras), scikit-learn's divides by
        # sum_i w_i: weights scaled to mean 1 make the two agree when a batch's weights sum
        # to its size (exactly, for lbfgs's single full batch).
        kwargs = {} if sample_weight is None else {"sample_weight": _mean_one(sample_weight)}
        try:
            fit(network, X, targets, epochs=1 if incremental else self.max_iter,
                batch_size=batch_size, shuffle=self.shuffle,
                seed=int(self._random_state.randint(np.iinfo(np.int32).max)),
                verbose=0, callbacks=[epochs], threads=None, **kwargs)
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.", stacklevel=3)
        if self.early_stopping and epochs.best_parameters is not None:
            network.load_parameters(epochs.best_parameters)

    def _objective(self, network: Network, X: np.ndarray, targets: Any,
                   sample_weight: np.ndarray | None) -> Callable[[np.ndarray], tuple[float, np.ndarray]]:
        """scikit-learn's full-batch objective and its gradient, from chainrule's, for lbfgs."""
        params = list(network.parameters().values())
        c, _ = self._scale()
        total_weight = float(len(X) if sample_weight is None else sample_weight.sum())
        kwargs = {} if sample_weight is None else {"sample_weight": _mean_one(sample_weight)}

        def objective(packed: np.ndarray) -> tuple[float, np.ndarray]:
            offset = 0
            for p in params:
                p[...] = packed[offset : offset + p.size].reshape(p.shape)
                offset += p.size
            value = c * network.loss.forward(network.forward(X, training=True), targets, **kwargs)
            network.backward()
            grads = []
            for p, g in zip(params, network.gradients().values()):
                g = c * g.astype(np.float64)
                if p.ndim > 1 and self.alpha:  # the L2 penalty is on weights only
                    value += 0.5 * self.alpha * float(np.vdot(p, p)) / total_weight
                    g += (self.alpha / total_weight) * p
                grads.append(g.ravel())
            return float(value), np.concatenate(grads)

        return objective

    def _fit_lbfgs(self, X, targets, sample_weight) -> None:
        network = self.network_
        start = np.concatenate([p.ravel() for p in network.parameters().values()]).astype(np.float64)
        result = scipy.optimize.minimize(
            self._objective(network, X, targets, sample_weight), start,
            method="L-BFGS-B", jac=True,
            options={"maxfun": self.max_fun, "maxiter": self.max_iter, "gtol": self.tol},
        )
        if result.status != 0:
            warnings.warn(
                f"lbfgs failed to converge after {result.nit} iteration(s) (status="
                f"{result.status}): {result.message}. Increase the number of iterations "
                "(max_iter) or scale the data.", ConvergenceWarning, stacklevel=3,
            )
        self.n_iter_ = min(int(result.nit), self.max_iter)
        self.loss_ = float(result.fun)
        offset = 0
        for p in network.parameters().values():
            p[...] = result.x[offset : offset + p.size].reshape(p.shape)
            offset += p.size
        if self.verbose:
            print(f"lbfgs: {self.n_iter_} iterations, loss = {self.loss_:.8f}")

    def _update_no_improvement_count(self, validation) -> None:
        """scikit-learn's rule (``_update_no_improvement_count``), word for word."""
        if validation is not None:
            X_val, y_val, weight_val = validation
            score = self.score(X_val, y_val, sample_weight=weight_val)
            self.validation_scores_.append(score)
            if self.verbose:
                print(f"Validation score: {score:f}")
            if score < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                return True
            return False
        if self.loss_curve_[-1] > self.best_loss_ - self.tol:
            self._no_improvement_count += 1
        else:
            self._no_improvement_count = 0
        if self.loss_curve_[-1] < self.best_loss_:
            self.best_loss_ = self.loss_curve_[-1]
        return False

    def _set_learning_rate(self, lr: float) -> None:
        """Change SGD's rate the way scikit-learn does: its velocity keeps the old rate's steps.

        scikit-learn stores ``v = momentum * v - lr * g``; chainrule (PyTorch)
        stores ``b = momentum * b + g`` and steps ``lr * b``. The same ``v`` is
        ``-lr * b``, so ``b`` is rescaled by ``old / new`` when the rate changes.
        """
        c, _ = self._scale()
        old, self._learning_rate = self._learning_rate, lr
        optimizer = self.network_.optimizer
        optimizer.lr = lr * c
        for state in optimizer.state:
            if "momentum" in state and lr > 0:
                state["momentum"] *= old / lr

    # -- inference ----------------------------------------------------------------

    def _outputs(self, X: Any) -> np.ndarray:
        """The network's raw outputs (logits for classifiers), shaped (n_samples, n_outputs),
        in the input's float dtype (scikit-learn's habit), computed in the network's."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=(np.float64, np.float32))
        outputs = self.network_.predict(self._to_network_input(X), threads=None)
        return outputs.astype(X.dtype, copy=False)

    # -- files ------------------------------------------------------------------------

    def save(self, path: str | PathLike) -> None:
        """Write the fitted estimator to a ``.safetensors`` file, atomically.

        The file is a chainrule model file (``chainrule.load`` reads the
        network) whose metadata also holds the estimator's parameters, label
        encoding and fitted attributes as JSON; ``chainrule.sklearn.load``
        reads it back. A ``network=`` builder is not stored (the architecture
        is): the loaded estimator has ``network=None``.
        """
        from .io import save

        check_is_fitted(self)
        save(self.network_, path, metadata={_METADATA_KEY: json.dumps(self._describe())})

    def _describe(self) -> dict[str, Any]:
        params = {k: _jsonable(v) for k, v in self.get_params().items() if k != "network"}
        fitted = {
            name: _jsonable(self.__dict__[name])
            for name in ("n_features_in_", "n_outputs_", "n_layers_", "n_iter_", "t_", "loss_",
                         "loss_curve_", "best_loss_", "validation_scores_",
                         "best_validation_score_", "out_activation_")
            if name in self.__dict__
        }
        if "feature_names_in_" in self.__dict__:
            fitted["feature_names_in_"] = [str(v) for v in self.feature_names_in_]
        return {"estimator": type(self).__name__, "params": params, "fitted": fitted}

    def to_onnx(self, path: str | PathLike | None = None, **kwargs: Any) -> Any:
        """Export ``network_`` to ONNX (see ``chainrule.export.to_onnx``).

        The graph outputs the network's raw outputs: logits for a classifier
        (apply softmax, or a sigmoid for ``out_activation_ == "logistic"``, for
        ``predict_proba``), predictions for a regressor.
        """
        check_is_fitted(self)
        return self.network_.to_onnx(path, **kwargs)

    def _check_solver(self) -> bool:
        if self.solver not in _STOCHASTIC:
            raise AttributeError(f"partial_fit is only available for stochastic optimizers. "
                                 f"{self.solver} is not stochastic.")
        return True


class _SklearnEpochs(Callback):
    """scikit-learn's per-batch penalty and per-epoch bookkeeping, as a ``fit`` callback.

    Before each batch it sets the optimizer's weight decay to
    ``alpha / (c * batch weight)``, and adds the batch's penalty
    ``alpha / 2 * sum ||W||^2`` to the epoch's loss; after each epoch it keeps
    ``loss_curve_``, the validation scores, the learning-rate schedule and the
    stopping rule as ``_fit_stochastic`` in scikit-learn does.
    """

    def __init__(self, estimator: _BaseMLP, n: int, batch_size: int,
                 sample_weight: np.ndarray | None, validation: Any, incremental: bool) -> None:
        self.estimator, self.n, self.incremental = estimator, n, incremental
        self.validation = validation
        sizes = [batch_size] * (n // batch_size) + ([n % batch_size] if n % batch_size else [])
        # With sample weights each batch's weight is estimated by its size times the mean
        # weight (fit draws the batches); without, it is exact.
        mean_weight = 1.0 if sample_weight is None else float(np.mean(sample_weight))
        self.batch_weights = [size * mean_weight for size in sizes]
        self.sizes = sizes
        self.best_parameters: dict[str, np.ndarray] | None = None
        estimator.n_iter_ = 0

    def _before_batch(self, step: int) -> None:
        est, optimizer = self.estimator, self._optimizer
        if self._adam:
            # scikit-learn adds epsilon to sqrt(v) before the bias correction, chainrule
            # (PyTorch) after it: the same step needs eps / sqrt(1 - beta_2**t), over c.
            t = optimizer.steps + 1
            optimizer.eps = self._eps / math.sqrt(1.0 - est.beta_2**t)
        if not est.alpha:
            return
        weight = self.batch_weights[step]
        optimizer.weight_decay = est.alpha / (self._c * weight)
        squares = sum(float(np.vdot(w, w)) for w in self._weights)
        self.penalty += 0.5 * est.alpha * squares * self.sizes[step] / weight

    def on_train_begin(self, logs: dict[str, Any]) -> None:
        est = self.estimator
        self._c, _ = est._scale()
        self._optimizer = self.network.optimizer
        self._adam = est.solver == "adam"
        self._eps = est.epsilon / self._c
        self._weights = [layer.weight for layer in est._dense_layers()]  # live arrays

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any]) -> None:
        self.penalty = 0.0
        self._before_batch(0)

    def on_batch_end(self, step: int, logs: dict[str, float]) -> None:
        if step + 1 < len(self.sizes):
            self._before_batch(step + 1)

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        est = self.estimator
        _, r = est._scale()
        est.n_iter_ += 1
        est.t_ += self.n
        est.loss_ = r * logs["loss"] + self.penalty / self.n
        est.loss_curve_.append(est.loss_)
        if est.verbose:
            print(f"Iteration {est.n_iter_}, loss = {est.loss_:.8f}")
        if est._update_no_improvement_count(self.validation):
            self.best_parameters = {k: v.copy() for k, v in self.network.parameters().items()}
        if est.solver == "sgd" and est.learning_rate == "invscaling":
            est._set_learning_rate(est.learning_rate_init / (est.t_ + 1) ** est.power_t)
        if est._no_improvement_count > est.n_iter_no_change:
            what = "Validation score" if self.validation is not None else "Training loss"
            message = (f"{what} did not improve more than tol={est.tol:f} for "
                       f"{est.n_iter_no_change} consecutive epochs.")
            if est.solver == "sgd" and est.learning_rate == "adaptive" and est._learning_rate > 1e-6:
                est._set_learning_rate(est._learning_rate / 5.0)
                if est.verbose:
                    print(f"{message} Setting learning rate to {est._learning_rate:f}")
                est._no_improvement_count = 0
            else:
                if est.verbose:
                    print(f"{message} Stopping.")
                self.network.stop_training = True
                return
        if not self.incremental and est.n_iter_ == est.max_iter:
            warnings.warn(
                f"Stochastic Optimizer: Maximum iterations ({est.max_iter}) reached and the "
                "optimization hasn't converged yet.", ConvergenceWarning, stacklevel=2,
            )


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier: ``sklearn.neural_network.MLPClassifier`` on chainrule.

    Parameters are scikit-learn's (same names, meanings and defaults; see its
    documentation), plus:

    class_weight : dict, "balanced" or None
        Weights per class, multiplied into ``sample_weight`` (scikit-learn's
        ``compute_sample_weight``; ``"balanced"`` is ``n / (n_classes * count)``).
    dtype : "float32" (default) or "float64"
        The network's dtype: parameters, activations and gradients.
    network : callable ``(n_features, n_outputs, rng) -> Network or list of layers``, optional
        Builds the architecture instead of ``hidden_layer_sizes``/``activation``;
        it must end in ``n_outputs`` raw outputs (logits). The loss is the
        estimator's: softmax cross-entropy for several classes, logistic for
        two classes and for multi-label.
    input_shape : tuple, optional
        Each row of ``X`` is reshaped to this before the network, e.g.
        ``(1, 28, 28)`` for a CNN built by ``network`` (scikit-learn passes rows).

    Fitted attributes are scikit-learn's (``classes_``, ``coefs_``,
    ``intercepts_``, ``loss_``, ``loss_curve_``, ``best_loss_``,
    ``validation_scores_``, ``best_validation_score_``, ``n_iter_``, ``t_``,
    ``n_features_in_``, ``feature_names_in_``, ``n_layers_``, ``n_outputs_``,
    ``out_activation_``), plus ``network_``, the trained chainrule ``Network``.
    """

    _parameter_constraints: dict = {
        **_BaseMLP._parameter_constraints,
        "class_weight": [dict, StrOptions({"balanced"}), None],
    }

    def __init__(
        self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam", alpha=0.0001,
        batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5,
        max_iter=200, shuffle=True, random_state=None, tol=1e-4, verbose=False,
        warm_start=False, momentum=0.9, nesterovs_momentum=True, early_stopping=False,
        validation_fraction=0.1, beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10,
        max_fun=15000, class_weight=None, dtype="float32", network=None, input_shape=None,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.class_weight = class_weight
        self.dtype = dtype
        self.network = network
        self.input_shape = input_shape

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> MLPClassifier:
        """Train on ``X`` (n_samples, n_features) and labels ``y`` (n_samples,) of any type,
        or a multi-label indicator matrix (n_samples, n_labels)."""
        return self._fit(X, y, sample_weight=sample_weight, incremental=False)

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None, classes: Any = None) -> MLPClassifier:
        """One epoch over ``(X, y)``; ``classes`` (every label) is required on the first call."""
        if "classes_" not in self.__dict__:
            if classes is None and not type_of_target(y).startswith("multilabel"):
                raise ValueError("classes must be passed on the first call to partial_fit.")
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y if classes is None else classes)
            self.classes_ = self._label_binarizer.classes_
        elif classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise ValueError(
                f"`classes={classes!r}` is not the same as on last call to partial_fit, "
                f"was: {self.classes_!r}"
            )
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, multi_output=True, dtype=(np.float64, np.float32),
                             reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if "classes_" not in self.__dict__ or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same classes as in the "
                        f"previous call to fit. Previously got {self.classes_}, `y` has {classes}"
                    )
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(
                    f"`y` has classes not in `self.classes_`. `self.classes_` has "
                    f"{self.classes_}. 'y' has {classes}."
                )
        return X, y

    def _encode(self, y: np.ndarray) -> tuple[np.ndarray, int]:
        """Targets for chainrule's loss: class indices for softmax, 0/1 columns for logistic."""
        indicator = self._label_binarizer.transform(y)
        if self._label_binarizer.y_type_ == "multiclass":
            self.out_activation_ = "softmax"
            return indicator.argmax(axis=1), indicator.shape[1]
        self.out_activation_ = "logistic"
        return np.asarray(indicator, dtype=np.float64), indicator.shape[1]

    def _task_loss(self) -> Any:
        return CrossEntropy() if self.out_activation_ == "softmax" else BinaryCrossEntropy()

    def _scale(self) -> tuple[float, float]:
        k = 1 if self.out_activation_ == "softmax" else self.n_outputs_
        return float(k), float(k)

    def _stratify(self) -> bool:
        return self._label_binarizer.y_type_ != "multilabel-indicator"

    def _describe(self) -> dict[str, Any]:
        info = super()._describe()
        info["fitted"]["classes_"] = _encode_classes(np.asarray(self.classes_))
        info["fitted"]["label_type"] = self._label_binarizer.y_type_
        return info

    def predict(self, X: Any) -> np.ndarray:
        """Labels shaped (n_samples,), or an indicator matrix for multi-label."""
        proba = self._probabilities(X)
        if self.n_outputs_ == 1:
            proba = proba.ravel()
        return self._label_binarizer.inverse_transform(proba)

    def _probabilities(self, X: Any) -> np.ndarray:
        """``Network.predict_proba``: softmax of the logits, or a sigmoid of each (logistic)."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=(np.float64, np.float32))
        proba = self.network_.predict_proba(self._to_network_input(X))
        return proba.astype(X.dtype, copy=False)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities (n_samples, n_classes), columns in the order of ``classes_``."""
        proba = self._probabilities(X)
        if self.n_outputs_ == 1:
            p = proba.ravel()
            return np.vstack([1 - p, p]).T
        return proba

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """``log(predict_proba(X))``."""
        proba = self.predict_proba(X)
        return np.log(proba, out=proba)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor: ``sklearn.neural_network.MLPRegressor`` on chainrule.

    Parameters are scikit-learn's (``loss="squared_error"`` only; "poisson" is
    refused), plus ``dtype``, ``network`` and ``input_shape`` as in ``MLPClassifier``. The
    output is linear (``out_activation_ == "identity"``); targets may have
    several columns.
    """

    _parameter_constraints: dict = {
        **_BaseMLP._parameter_constraints,
        "loss": [StrOptions({"squared_error"})],
    }

    def __init__(
        self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *,
        solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
        learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True, random_state=None,
        tol=1e-4, verbose=False, warm_start=False, momentum=0.9, nesterovs_momentum=True,
        early_stopping=False, validation_fraction=0.1, beta_1=0.9, beta_2=0.999, epsilon=1e-8,
        n_iter_no_change=10, max_fun=15000, dtype="float32", network=None, input_shape=None,
    ):
        self.loss = loss
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dtype = dtype
        self.network = network
        self.input_shape = input_shape

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> MLPRegressor:
        """Train on ``X`` (n_samples, n_features) and ``y`` (n_samples,) or (n_samples, n_outputs)."""
        return self._fit(X, y, sample_weight=sample_weight, incremental=False)

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None) -> MLPRegressor:
        """One epoch over ``(X, y)``."""
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True,
                             dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        return X, y

    def _encode(self, y: np.ndarray) -> tuple[np.ndarray, int]:
        self.out_activation_ = "identity"
        targets = np.asarray(y, dtype=np.float64)
        targets = targets.reshape(len(targets), -1)
        return targets, targets.shape[1]

    def _task_loss(self) -> Any:
        return SquaredError()

    def _scale(self) -> tuple[float, float]:
        # SquaredError sums over outputs; scikit-learn's gradient is half of it, and
        # its reported loss is the mean over every element, halved.
        return 0.5, 0.5 / self.n_outputs_

    def _stratify(self) -> bool:
        return False

    def predict(self, X: Any) -> np.ndarray:
        """Predictions shaped (n_samples,) for one output, else (n_samples, n_outputs)."""
        y = self._outputs(X)
        return y.ravel() if y.shape[1] == 1 else y

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        tags.target_tags.multi_output = True
        return tags


def _mean_one(weight: np.ndarray) -> np.ndarray:
    mean = float(np.mean(weight))
    if mean <= 0:
        raise ValueError("sample weights must not all be 0")
    return weight / mean


# -- files -----------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _encode_classes(classes: np.ndarray) -> dict[str, Any]:
    dtype = classes.dtype
    if dtype.kind not in "biufUO":
        raise TypeError(f"cannot save class labels of dtype {dtype}")
    values = [v.item() if isinstance(v, np.generic) else v for v in classes.tolist()]
    if dtype.kind == "O" and not all(isinstance(v, (str, int, float, bool)) for v in values):
        raise TypeError("cannot save class labels that are not strings or numbers")
    return {"values": values, "dtype": "object" if dtype.kind == "O" else dtype.str}


def _decode_classes(data: Any, path: str) -> np.ndarray:
    if not (isinstance(data, dict) and isinstance(data.get("values"), list)
            and isinstance(data.get("dtype"), str)):
        raise ModelFileError(f"{path}: invalid class labels in the estimator metadata")
    values = data["values"]
    if not all(isinstance(v, (str, int, float, bool)) for v in values):
        raise ModelFileError(f"{path}: class labels must be strings or numbers")
    try:
        dtype = np.dtype(data["dtype"])
    except TypeError:
        raise ModelFileError(f"{path}: invalid class label dtype {data['dtype']!r:.40}") from None
    if dtype.kind not in "biufUO":
        raise ModelFileError(f"{path}: invalid class label dtype {dtype}")
    return np.array(values, dtype=dtype)


def load(path: str | PathLike) -> MLPClassifier | MLPRegressor:
    """Read an estimator written by ``MLPClassifier.save`` / ``MLPRegressor.save``.

    The network is loaded by ``chainrule.load`` (hostile-file checks, SHA-256
    digest over the tensors and every metadata field, the estimator's
    included); the estimator's JSON is then checked field by field.

    Raises
    ------
    ModelFileError
        If the file is corrupt or holds a plain chainrule model (load that
        with ``chainrule.load``).
    FileNotFoundError
        If there is no file at ``path``.
    """
    from .io import load as load_network
    from .io import read_safetensors

    path = os.fspath(path)
    _, metadata = read_safetensors(path)
    if _METADATA_KEY not in metadata:
        raise ModelFileError(
            f"{path} holds a chainrule model but no scikit-learn estimator; read it with "
            "chainrule.load"
        )
    network = load_network(path)  # verifies the digest, which covers the estimator's JSON
    try:
        info = json.loads(metadata[_METADATA_KEY])
        cls = {"MLPClassifier": MLPClassifier, "MLPRegressor": MLPRegressor}[info["estimator"]]
        params, fitted = dict(info["params"]), dict(info["fitted"])
        known = set(cls().get_params())
        unknown = set(params) - known
        if unknown:
            raise ValueError(f"unknown parameters {sorted(unknown)}")
        for name in ("hidden_layer_sizes", "input_shape"):
            if isinstance(params.get(name), list):
                params[name] = tuple(params[name])
        estimator = cls(**params)
        estimator._validate_params()
        allowed = {"n_features_in_", "n_outputs_", "n_layers_", "n_iter_", "t_", "loss_",
                   "loss_curve_", "best_loss_", "validation_scores_", "best_validation_score_",
                   "out_activation_", "feature_names_in_", "classes_", "label_type"}
        if set(fitted) - allowed:
            raise ValueError(f"unknown fitted attributes {sorted(set(fitted) - allowed)}")
        outputs = ("softmax", "logistic") if cls is MLPClassifier else ("identity",)
        if fitted.get("out_activation_") not in outputs:
            raise ValueError(f"out_activation_ must be one of {outputs}")
        if not isinstance(fitted.get("n_outputs_"), int) or (
                network.out_features not in (None, fitted["n_outputs_"])):
            raise ValueError("n_outputs_ does not match the network's output width")
    except ModelFileError:
        raise
    except Exception as error:  # noqa: BLE001 -- a hostile field is the file's fault
        raise ModelFileError(f"{path}: invalid scikit-learn estimator metadata: {error}") from None
    estimator.network_ = network
    for name, value in fitted.items():
        if name == "feature_names_in_":
            estimator.feature_names_in_ = np.array([str(v) for v in value], dtype=object)
        elif name not in ("classes_", "label_type"):
            setattr(estimator, name, value)
    if network.in_features not in (None, estimator.__dict__.get("n_features_in_")):
        raise ModelFileError(f"{path}: n_features_in_ does not match the network's input width")
    if cls is MLPClassifier:
        classes = _decode_classes(fitted.get("classes_"), path)
        binarizer = LabelBinarizer()
        if fitted.get("label_type") == "multilabel-indicator":
            binarizer.fit(np.eye(len(classes), dtype=int))
        else:
            binarizer.fit(classes)
        estimator._label_binarizer = binarizer
        estimator.classes_ = binarizer.classes_
        if len(classes) != (estimator.n_outputs_ if estimator.n_outputs_ > 1 else 2) and (
                len(classes) != 1):
            raise ModelFileError(f"{path}: {len(classes)} classes for {estimator.n_outputs_} outputs")
    return estimator

