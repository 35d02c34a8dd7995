"""The default digit-classifier recipe, shared by ``chainrule train`` and the benchmark.

A recipe is every choice that turns data into a trained model: layer sizes,
activation, dropout, optimizer, learning rate and its schedule, epochs,
batch size, augmentation and the validation split. Keeping them in one
place means the command line, the benchmark against PyTorch and a reader's
own script all train exactly the same thing.

>>> from chainrule.datasets import load_mnist
>>> from chainrule.recipes import DigitRecipe, train_digits
>>> (x, y), (x_test, y_test) = load_mnist()                          # doctest: +SKIP
>>> network, history = train_digits(DigitRecipe(), x, y)              # doctest: +SKIP
>>> network.evaluate(x_test, y_test)["accuracy"]                      # doctest: +SKIP
0.98...
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from .activations import get_activation
from .augmentation import random_shift
from .initializers import default_initializer
from .layers import Dense, Dropout, Layer
from .network import Network
from .optimizers import SGD, Adam, Optimizer
from .training import (
    Callback,
    History,
    LearningRateScheduler,
    cosine_schedule,
    train_validation_split,
)

__all__ = [
    "DigitRecipe",
    "build_network",
    "build_optimizer",
    "build_callbacks",
    "split_validation",
    "train_digits",
    "TrainingSetMetrics",
    "softmax_probabilities",
    "confusion_matrix",
    "per_class_scores",
]


@dataclass(frozen=True)
class DigitRecipe:
    """How the default MNIST classifier is built and trained.

    The defaults train on the 10,000 bundled training digits (9,000 to
    train on, 1,000 held out for validation) and are scored on the real
    MNIST test set. ``benchmarks/mnist_vs_torch.py`` trains this recipe
    beside the same recipe in PyTorch and keeps its transcript (test
    accuracy and training time per seed, with date, commit, machine and
    load) in ``benchmarks/ACCURACY.md``: the figures live there, not here.
    The larger batch (256 rather than 128) is cheaper per epoch (fewer
    optimizer updates), which pays for the extra epochs.

    Attributes
    ----------
    layers : widths from input to output, e.g. ``(784, 512, 256, 10)``.
    activation : hidden activation name (``"relu"``, ``"leaky_relu"``, ``"tanh"``...).
    dropout : probability of zeroing each hidden unit while training.
    input_dropout : probability of zeroing each input pixel while training.
    optimizer : ``"adam"`` or ``"sgd"`` (SGD uses Nesterov momentum 0.9).
    lr, final_lr : learning rate, annealed along a cosine towards ``final_lr``, reached as the
        last epoch ends (``cosine_schedule``: every epoch trains at a rate above it).
    weight_decay : L2 penalty coefficient added to every gradient.
    epochs, batch_size : passes over the data and digits per step.
    max_shift : random shifts of up to this many pixels each epoch (0 for none).
    validation : digits held out of the training set (at random, stratified by
        class; see ``split_validation``), for validation accuracy after every
        epoch (0 for none).
    seed : seeds the initial weights, dropout, shuffling and shifts.
    """

    layers: tuple[int, ...] = (784, 512, 256, 10)
    activation: str = "relu"
    dropout: float = 0.2
    input_dropout: float = 0.0
    optimizer: str = "adam"
    lr: float = 2e-3
    final_lr: float = 1e-5
    weight_decay: float = 0.0
    epochs: int = 40
    batch_size: int = 256
    max_shift: int = 2
    validation: int = 1000
    seed: int = 0

    def replace(self, **changes: Any) -> DigitRecipe:
        """A copy with some settings changed; ``None`` values keep the default."""
        changes = {k: v for k, v in changes.items() if v is not None}
        if "layers" in changes:
            changes["layers"] = tuple(int(w) for w in changes["layers"])
        return replace(self, **changes)

    def describe(self) -> str:
        """One line a person can read, e.g. for the start of a training run."""
        net = "-".join(str(w) for w in self.layers)
        parts = [f"{net} {self.activation} MLP"]
        if self.dropout:
            parts.append(f"dropout {self.dropout:g}")
        if self.input_dropout:
            parts.append(f"input dropout {self.input_dropout:g}")
        opt = "Adam" if self.optimizer == "adam" else "SGD (Nesterov 0.9)"
        parts.append(f"{opt} lr {self.lr:g} cosine to {self.final_lr:g}")
        if self.weight_decay:
            parts.append(f"weight decay {self.weight_decay:g}")
        parts.append(f"{self.epochs} epochs of batch {self.batch_size}")
        parts.append(f"random shifts of up to {self.max_shift} px" if self.max_shift
                     else "no augmentation")
        return ", ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_network(recipe: DigitRecipe = DigitRecipe()) -> Network:
    """The recipe's network (cross-entropy on logits, so no output activation) and optimizer.

    Layers: ``[Dropout(input_dropout)] Dense ReLU Dropout ... Dense``. Weights
    use He initialisation for the relu family and Glorot otherwise; biases
    start at zero.
    """
    widths = [int(w) for w in recipe.layers]
    if len(widths) < 2 or min(widths) < 1:
        raise ValueError(f"layers needs at least two positive widths, got {recipe.layers}")
    rng = np.random.default_rng(recipe.seed)
    init = default_initializer(recipe.activation)
    layers: list[Layer] = []
    if recipe.input_dropout:
        layers.append(Dropout(recipe.input_dropout, rng=_child(rng)))
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(Dense(n_in, n_out, init=init, rng=rng))
        if i < len(widths) - 2:
            activation = get_activation(recipe.activation)
            if activation is not None:
                layers.append(activation)
            if recipe.dropout:
                layers.append(Dropout(recipe.dropout, rng=_child(rng)))
    return Network(layers, loss="cross_entropy", optimizer=build_optimizer(recipe))


def _child(rng: np.random.Generator) -> np.random.Generator:
    return np.random.default_rng(rng.integers(2**63))


def build_optimizer(recipe: DigitRecipe) -> Optimizer:
    name = recipe.optimizer.lower()
    if name == "adam":
        return Adam(lr=recipe.lr, weight_decay=recipe.weight_decay)
    if name == "sgd":
        return SGD(lr=recipe.lr, momentum=0.9, nesterov=True, weight_decay=recipe.weight_decay)
    raise ValueError(f"unknown optimizer {recipe.optimizer!r}; choose adam or sgd")


def build_callbacks(recipe: DigitRecipe) -> list[Callback]:
    """The learning-rate schedule: ``lr`` down to ``final_lr`` along half a cosine."""
    return [LearningRateScheduler(cosine_schedule(recipe.lr, recipe.epochs, recipe.final_lr))]


def split_validation(
    x: np.ndarray, y: np.ndarray, n_validation: int, seed: int = 0
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray] | None]:
    """``(x_train, y_train), (x_val, y_val)``: ``n_validation`` rows held out, ``None`` for 0.

    The rows are drawn at random (seeded: the same rows on every run) and
    stratified by the class labels ``y``, through
    ``chainrule.training.train_validation_split``, the function behind
    ``fit(validation_split=...)``: data sorted by class still trains and
    validates on every class (taking the last rows would hold out one class).
    """
    n_validation = int(n_validation)
    if n_validation <= 0:
        return (x, y), None
    if n_validation >= len(x):
        raise ValueError(
            f"cannot hold out {n_validation} digits for validation from {len(x)} training digits"
        )
    y_array = np.asarray(y)
    stratify = y_array if y_array.ndim == 1 else y_array.argmax(axis=1)
    train, val = train_validation_split(x, y, n_validation, seed=seed, stratify=stratify)
    return train, val


def train_digits(
    recipe: DigitRecipe,
    x: np.ndarray,
    y: np.ndarray,
    *,
    network: Network | None = None,
    callbacks: Sequence[Callback] = (),
    verbose: int = 0,
    **fit_kwargs: Any,
) -> tuple[Network, History]:
    """Build (unless ``network`` is given) and train the recipe's network on ``(x, y)``.

    ``recipe.validation`` digits (drawn by ``split_validation``) are held out and reported after
    every epoch as ``val_loss`` and ``val_accuracy``. Extra keyword
    arguments go to ``Network.fit``.
    """
    (x_train, y_train), validation = split_validation(x, y, recipe.validation)
    if network is None:
        network = build_network(recipe)
    augment = random_shift(recipe.max_shift) if recipe.max_shift else None
    history = network.fit(
        x_train, y_train, epochs=recipe.epochs, batch_size=recipe.batch_size,
        validation_data=validation, callbacks=[*build_callbacks(recipe), *callbacks],
        seed=recipe.seed, verbose=verbose, augment=augment, **fit_kwargs,
    )
    return network, history


class TrainingSetMetrics(Callback):
    """Measure loss and accuracy on a fixed sample of the training data after every epoch.

    ``fit``'s own ``loss`` is a running mean over the epoch with dropout and
    augmentation on; this measures the training digits the way validation
    is measured (inference mode), so the two curves can be compared. A
    sample keeps the cost small (1,000 digits: a few percent of an epoch).
    Adds ``train_loss`` and ``train_accuracy`` to each epoch's logs, and so
    to the ``History``.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, sample: int = 1000, seed: int = 0) -> None:
        rows = np.random.default_rng(seed).permutation(len(x))[:sample]
        self.x, self.y = x[rows], y[rows]

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        result = self.network.evaluate(self.x, self.y, batch_size=4096)
        for key, value in result.items():
            logs[f"train_{key}"] = value


# -- evaluation -------------------------------------------------------------------------


def softmax_probabilities(network: Network, x: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    """Class probabilities ``(n, outputs)`` as float64: ``network.predict_proba`` (kept for old callers).

    The name is historical: the link is the one that matches the network
    (softmax for cross-entropy on logits, sigmoid for binary cross-entropy,
    a softmax or sigmoid output layer as it is); a regression is refused.
    """
    out = np.asarray(network.predict_proba(x, batch_size=batch_size), dtype=np.float64)
    return out[None, :] if out.ndim == 1 else out


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int = 10) -> np.ndarray:
    """Counts ``(n_classes, n_classes)``: ``[i, j]`` = samples of class ``i`` predicted as ``j``."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has shape {y_true.shape} but y_pred {y_pred.shape}")
    flat = np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes)


def per_class_scores(matrix: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall and support per class from a confusion matrix.

    ``precision[j]`` = right among those predicted ``j`` (column ``j``);
    ``recall[i]`` = right among those truly ``i`` (row ``i``); NaN where a
    class was never predicted / never present.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    right = np.diag(matrix)
    predicted, support = matrix.sum(axis=0), matrix.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, right / predicted, np.nan)
        recall = np.where(support > 0, right / support, np.nan)
    return {"precision": precision, "recall": recall, "support": support.astype(np.int64)}
