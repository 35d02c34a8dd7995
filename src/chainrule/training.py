"""The training loop: minibatches, epochs, history and callbacks.

``fit`` only orchestrates: each step is ``Network.train_step``, where the
math lives. Callbacks watch the loop and may stop it; they never change the
math.
"""

from __future__ import annotations

import math
import operator
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from os import PathLike
from typing import Any

import numpy as np

from .checkpoint import holds_checkpoint_lock
from .errors import NonFiniteLossError
from .threads import blas_threads, thread_policy

__all__ = [
    "fit",
    "History",
    "Callback",
    "EarlyStopping",
    "ProgressBar",
    "LearningRateScheduler",
    "cosine_schedule",
    "check_finite",
    "train_validation_split",
    "validation_rows",
]

Augment = Callable[[np.ndarray, np.random.Generator], np.ndarray]


class History:
    """Per-epoch metrics of a ``fit`` run: ``history["loss"]``, ``history["val_accuracy"]``....

    As in Keras, ``history.history`` is the dict of lists (``{"loss": [...],
    "val_loss": [...]}``), ``history.epoch`` the epoch numbers (from 0), and
    the History itself reads like that dict: ``keys()``, ``items()``,
    ``values()``, ``get()``, iteration over the names and ``len`` (epochs).
    """

    def __init__(self) -> None:
        self.epochs: list[int] = []
        self.metrics: dict[str, list[float]] = {}

    @property
    def history(self) -> dict[str, list[float]]:
        """Metric name -> one value per epoch (Keras' ``History.history``); the live dict."""
        return self.metrics

    @property
    def epoch(self) -> list[int]:
        """The epochs recorded, counted from 0 (Keras' ``History.epoch``)."""
        return self.epochs

    def keys(self):
        return self.metrics.keys()

    def items(self):
        return self.metrics.items()

    def values(self):
        return self.metrics.values()

    def get(self, key: str, default: Any = None) -> Any:
        return self.metrics.get(key, default)

    def __iter__(self):
        return iter(self.metrics)

    def append(self, epoch: int, logs: dict[str, float]) -> None:
        self.epochs.append(epoch)
        for key, value in logs.items():
            self.metrics.setdefault(key, []).append(float(value))

    def __getitem__(self, key: str) -> list[float]:
        return self.metrics[key]

    def __contains__(self, key: str) -> bool:
        return key in self.metrics

    def __len__(self) -> int:
        return len(self.epochs)

    def __repr__(self) -> str:
        last = {k: round(v[-1], 6) for k, v in self.metrics.items()}
        return f"History(epochs={len(self.epochs)}, last={last})"


class Callback:
    """Hooks into ``fit``. Override what you need; ``self.network`` is set at the start."""

    network: Any = None

    def on_train_begin(self, logs: dict[str, Any]) -> None:
        pass

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any]) -> None:
        pass

    def on_batch_end(self, step: int, logs: dict[str, float]) -> None:
        pass

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        pass

    def on_train_end(self, logs: dict[str, Any]) -> None:
        pass


def train_validation_split(
    x: Any, y: Any, validation: float | int, *, seed: int | None = 0, stratify: Any = None
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """``(x_train, y_train), (x_val, y_val)``: rows held out at random, seeded, stratified if asked.

    Parameters
    ----------
    validation : float in (0, 1), or int >= 1
        The share of the rows to hold out (rounded to the nearest row, at
        least one), or how many rows.
    seed : int
        The same seed holds out the same rows (``None`` draws fresh ones).
    stratify : array (n,) of class labels, optional
        Hold out each class in proportion to its share (largest remainders
        decide the odd rows), so class-sorted data validates on every class
        and trains on every class, like scikit-learn's ``train_test_split(...,
        stratify=y)``. ``fit(validation_split=...)`` passes the class labels of
        classification targets.

    Both parts keep the rows' original order. The CLI's ``--validation N``
    and ``fit(validation_split=...)`` both hold out rows with this function.
    """
    x, y = np.asarray(x), np.asarray(y)
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} rows but y has {len(y)}")
    train, val = validation_rows(len(x), validation, seed=seed, stratify=stratify)
    return (x[train], y[train]), (x[val], y[val])


def validation_rows(
    n: int, validation: float | int, *, seed: int | None = 0, stratify: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """The row indices ``(train, val)`` that ``train_validation_split`` would use, each sorted."""
    if isinstance(validation, (bool, np.bool_)):
        raise TypeError("validation must be a share in (0, 1) or a number of rows, not a bool")
    if isinstance(validation, (int, np.integer)):
        n_val = int(validation)
        if not 1 <= n_val < n:
            raise ValueError(f"cannot hold out {n_val} of {n} rows for validation "
                             f"(it must leave at least one row to train on)")
    else:
        share = float(validation)
        if not 0.0 < share < 1.0:
            raise ValueError(f"validation_split must be a share in (0, 1), got {validation!r}")
        n_val = min(max(1, round(share * n)), n - 1)
        if n < 2:
            raise ValueError(f"cannot hold out a validation share of {n} row(s)")
    rng = np.random.default_rng(seed)
    if stratify is None:
        val = rng.choice(n, size=n_val, replace=False)
    else:
        labels = np.asarray(stratify).reshape(-1)
        if len(labels) != n:
            raise ValueError(f"stratify has {len(labels)} labels for {n} rows")
        classes, inverse = np.unique(labels, return_inverse=True)
        counts = np.bincount(inverse, minlength=len(classes))
        quota = counts * (n_val / n)
        take = np.floor(quota).astype(int)
        # The rows left over go to the classes with the largest remainders (ties: at random).
        left = n_val - int(take.sum())
        order = np.lexsort((rng.random(len(classes)), -(quota - take)))
        take[order[:left]] += 1
        val = np.concatenate([
            rng.choice(np.flatnonzero(inverse == c), size=take[c], replace=False)
            for c in range(len(classes))
        ])
    is_val = np.zeros(n, dtype=bool)
    is_val[val] = True
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def _stratify_labels(loss: Any, y: np.ndarray) -> np.ndarray | None:
    """Class labels to stratify on for normalised targets ``y``; None for regression or multi-label."""
    if not getattr(loss, "classification", False):
        return None
    if y.dtype.kind in "iu":  # integer class labels
        return y
    if y.ndim == 2 and y.shape[1] > 1:
        from .losses import CrossEntropy

        return y.argmax(axis=1) if isinstance(loss, CrossEntropy) else None  # multi-label: none
    return (y.reshape(len(y), -1)[:, 0] > 0.5).astype(np.intp)  # one yes/no output


def check_finite(array: np.ndarray, what: str) -> None:
    """Raise ``ValueError`` naming the first row of ``array`` holding NaN or infinity."""
    array = np.asarray(array)
    if not np.issubdtype(array.dtype, np.floating):
        return
    finite = np.isfinite(array)
    if finite.all():
        return
    rows = finite.reshape(len(array), -1).all(axis=1) if array.ndim else finite
    row = int(np.flatnonzero(~rows)[0])
    raise ValueError(f"{what} contains NaN or infinite values, first in row {row}")


@holds_checkpoint_lock  # one run per checkpoint path, for the run's whole duration
def fit(
    network: Any,
    x: np.ndarray,
    y: Any,
    epochs: int = 1,
    batch_size: int = 32,
    shuffle: bool = True,
    validation_data: tuple[np.ndarray, Any] | None = None,
    callbacks: Sequence[Callback] = (),
    seed: int | None = None,
    verbose: int = 1,
    augment: Augment | None = None,
    checkpoint: str | PathLike | None = None,
    checkpoint_every: int = 1,
    resume: str | PathLike | None = None,
    sample_weight: Any = None,
    class_weight: Any = None,
    validation_split: float | None = None,
    threads: int | str | None = "auto",
) -> History:
    """Train ``network`` on ``(x, y)`` with minibatch steps.

    Parameters
    ----------
    x : array (n, features)
    y : targets, one per row of ``x`` (labels or rows)
    epochs, batch_size : int
        Passes over the data and samples per optimizer step (the last batch
        of an epoch may be smaller). Setting ``network.stop_training = True``
        (from a callback or a signal handler) ends training after the current step.
        With ``resume``, ``epochs`` is the total for the whole run, counting
        the epochs already in the checkpoint.
    shuffle : bool
        Visit the rows in a fresh random order every epoch.
    validation_data : (x_val, y_val), optional
        Evaluated after every epoch as ``val_loss`` (and ``val_accuracy``).
    callbacks : Callbacks, e.g. ``EarlyStopping``, ``LearningRateScheduler``.
    seed : int, optional
        Seeds the shuffling and augmentation, so a run can be repeated.
    verbose : 0, 1 or 2
        0 prints nothing, 1 a progress bar per epoch, 2 one line per epoch.
    augment : callable ``(x_epoch, rng) -> x_epoch``, optional
        Applied to each epoch's (shuffled) inputs, e.g. ``random_shift()``.
    checkpoint : path, optional
        Write a training checkpoint there (atomically) every
        ``checkpoint_every`` epochs, after the last epoch, and when training
        is stopped early, even mid-epoch (``stop_training``, Ctrl-C in the CLI).
        The run holds an advisory lock on it throughout: a second run on the
        same path raises ``CheckpointInUseError``. See ``chainrule.checkpoint``.
    checkpoint_every : int
        Epochs between checkpoints.
    resume : path, optional
        Continue the run saved in this checkpoint: weights, optimizer state
        and settings, random generators, epoch (and step) and history are
        restored, so the result is bit-identical to an uninterrupted run with
        the same data and arguments. ``seed`` is then ignored. Callbacks start
        afresh (e.g. ``EarlyStopping``'s patience count). It may be the same
        path as ``checkpoint``.
    sample_weight : array (n,), optional
        A non-negative weight per training sample (Keras' and scikit-learn's
        meaning): each batch's loss is ``sum_i w_i l_i / batch size``.
    class_weight : dict ``{class: weight}``, sequence, or ``"balanced"``, optional
        Weights per class for classification losses; each batch's loss is the
        class-weighted mean ``sum_i c_i l_i / sum_i c_i`` (PyTorch's
        ``cross_entropy(weight=...)``), times ``sample_weight`` when given too.
        ``"balanced"`` is ``n / (n_classes * count_j)`` over the whole
        training set, as scikit-learn's ``compute_class_weight``. Validation
        metrics are not class-weighted (as in Keras); pass
        ``validation_data=(x, y, sample_weight)`` to weight them.
    validation_split : float in (0, 1), optional
        Hold out this share of ``(x, y)`` for validation instead of passing
        ``validation_data``: rows drawn at random with ``seed`` (0 when
        ``seed`` is None; a resumed run holds out the rows its checkpoint
        names), and for classification stratified by class. Unlike Keras, which holds out the
        *last* rows, class-sorted data trains and validates on every class.
        See ``train_validation_split``.
    threads : "auto", int or None
        BLAS threads for the steps' matrix products (``chainrule.threads``):
        ``"auto"`` measures one thread against all of them as training goes
        and keeps the faster (large steps only; small ones stay on one), an
        integer fixes the count (bit-for-bit repeatable runs), ``None``
        leaves the BLAS as it is. The BLAS's own setting is restored after
        every step. With ``batch_size=1`` each step gets one sample as a
        vector (shape ``(features,)``), the one-sample path of every layer.

    Returns
    -------
    History
        ``loss`` per epoch (the mean training loss over its steps) and the
        validation metrics; with ``resume``, including the checkpoint's epochs.
    """
    epochs, batch_size = operator.index(epochs), operator.index(batch_size)
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    checkpoint_every = int(checkpoint_every)
    if checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be >= 1 (epochs), got {checkpoint_every}")
    if checkpoint is not None:
        folder = os.path.dirname(os.path.abspath(os.fspath(checkpoint)))
        if not os.path.isdir(folder):  # fail now, not after the first epoch's work
            raise FileNotFoundError(f"no directory {folder} for checkpoint {os.fspath(checkpoint)}")
    x, y = _check_data(network, x, y, "training")
    n = len(x)
    if sample_weight is not None:
        from .losses import check_sample_weight

        sample_weight = check_sample_weight(sample_weight, n)
    saved = None
    if resume is not None:
        from .checkpoint import load_checkpoint

        saved = load_checkpoint(resume)
    split_seed = None
    if validation_split is not None:
        if validation_data is not None:
            raise ValueError("give validation_data or validation_split, not both")
        split_seed = seed if isinstance(seed, int) else 0
        if saved is not None and type(saved.fit_settings.get("split_seed")) is int:
            split_seed = saved.fit_settings["split_seed"]  # the rows the run started with
        train, val = validation_rows(n, float(validation_split), seed=split_seed,
                                     stratify=_stratify_labels(network.loss, y))
        weight_val = None if sample_weight is None else sample_weight[val]
        validation_data = (x[val], y[val], weight_val)
        x, y = x[train], y[train]
        sample_weight = None if sample_weight is None else sample_weight[train]
        n = len(x)
    if sample_weight is not None and not sample_weight.any():
        raise ValueError("every sample_weight is 0: there is nothing to train on")
    if class_weight is not None:
        # Resolved once over the whole training set ("balanced" counts every class).
        class_weight = network.loss.class_weights(class_weight, y, network.out_features)
    val_weight = None
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
            raise ValueError("validation_data must be (x_val, y_val) or (x_val, y_val, sample_weight)")
        x_val, y_val = _check_data(network, *validation_data[:2], "validation")
        if len(validation_data) == 3 and validation_data[2] is not None:
            from .losses import check_sample_weight

            val_weight = check_sample_weight(validation_data[2], len(x_val))
    n_batches = math.ceil(n / batch_size)
    # BLAS threads for the steps' products (chainrule.threads): measured, fixed, or left alone.
    # The targets passed check_targets as a whole above (when the network's outputs are
    # known): the steps need not check each batch again.
    from .network import Network

    train_step = network.train_step
    overridden = type(network).train_step is not Network.train_step or "train_step" in vars(network)
    if network.out_features is not None and sample_weight is None and class_weight is None \
            and not overridden:  # a train_step of the user's own is called as it is
        train_step = network._train_step_checked
    policy = thread_policy(threads, network, batch_size)
    if policy is not None and (policy.adaptive or policy.choice != blas_threads()):
        train_step = policy.wrap(train_step)
    settings = {"batch_size": batch_size, "shuffle": bool(shuffle), "samples": n,
                "seed": seed if isinstance(seed, int) else None}
    if validation_split is not None:
        settings.update(validation_split=float(validation_split), split_seed=split_seed)

    rng = np.random.default_rng(seed)
    history = History()
    start_epoch, start_step, start_loss = 0, 0, (0.0, 0)
    if saved is not None:
        saved.restore(network)
        _warn_if_settings_differ(saved.fit_settings, settings, saved.path)
        if saved.rng_state is not None:
            rng = saved.generator()
        history = saved.history
        start_epoch, start_step = saved.epoch, saved.step
        if start_step:
            total, seen = saved.fit_settings.get("epoch_loss", (0.0, 0))
            start_loss = (float(total), int(seen))

    callbacks = list(callbacks)
    if verbose:
        callbacks.append(ProgressBar(verbose=verbose))  # last: it shows what the others added
    batch_hooks = [c for c in callbacks if type(c).on_batch_end is not Callback.on_batch_end]
    for callback in callbacks:
        callback.network = network
    network.stop_training = False

    last_save: list[tuple] = []

    def save(epoch: int, step: int, epoch_start_state: dict, loss: tuple[float, int]) -> None:
        from .checkpoint import save_checkpoint

        last_save[:] = [(epoch, step, epoch_start_state, loss)]

        extra = {"epoch_loss": list(loss)} if step else {}
        save_checkpoint(
            checkpoint, network, epoch=epoch, step=step, history=history,
            rng_state=epoch_start_state, fit_settings={**settings, **extra},
        )

    for callback in callbacks:
        callback.on_train_begin({"epochs": epochs, "steps": n_batches, "samples": n,
                                 "initial_epoch": start_epoch})
    for epoch in range(start_epoch, epochs):
        first_step, (total, seen) = 0, (0.0, 0)
        if epoch == start_epoch and start_step:
            first_step, (total, seen) = min(start_step, n_batches), start_loss
        for callback in callbacks:
            callback.on_epoch_begin(epoch, {"steps": n_batches, "first_step": first_step})
        # The generator is drawn from only here, at the start of an epoch, so
        # saving its state at this point lets a resumed run redraw the same
        # order and augmentation, then skip the steps already taken.
        epoch_start_state = rng.bit_generator.state if checkpoint is not None else {}
        order = rng.permutation(n) if shuffle else None
        x_epoch = None  # only an augmentation needs the whole epoch's inputs at once
        if augment is not None:
            x_epoch = np.asarray(augment(x if order is None else x[order], rng), dtype=network.dtype)
        steps_done = first_step
        for step in range(first_step, n_batches):
            start = step * batch_size
            # Gather each batch just before its step (rather than a shuffled
            # copy of the whole epoch up front), so its rows are still in cache.
            rows = slice(start, start + batch_size) if order is None else order[start : start + batch_size]
            if batch_size == 1:  # one sample as a vector: the outer-product path of Dense
                i = start if order is None else order[start]
                xb, yb = x[i] if x_epoch is None else x_epoch[start], y[i]
            else:
                xb = x[rows] if x_epoch is None else x_epoch[start : start + batch_size]
                yb = y[rows]
            try:
                if sample_weight is None and class_weight is None:
                    loss = train_step(xb, yb)
                else:
                    loss = train_step(
                        xb, yb, class_weight=class_weight,
                        sample_weight=None if sample_weight is None else sample_weight[rows],
                    )
            except NonFiniteLossError as error:
                lr = getattr(network.optimizer, "lr", None)
                raise NonFiniteLossError(
                    f"training diverged at epoch {epoch + 1}, step {step + 1}: {error}. "
                    f"Try a smaller learning rate (lr is {lr})."
                ) from None
            total += loss * (1 if batch_size == 1 else len(xb))
            seen += 1 if batch_size == 1 else len(xb)
            steps_done = step + 1
            for callback in batch_hooks:
                callback.on_batch_end(step, {"loss": loss})
            if network.stop_training:  # e.g. Ctrl-C in the CLI: stop after this step
                break
        if checkpoint is not None and steps_done < n_batches:
            # Stopped mid-epoch: save before this partial epoch enters the history.
            save(epoch, steps_done, epoch_start_state, (total, seen))
        logs = {"loss": total / seen if seen else float("nan")}
        if validation_data is not None:
            for key, value in network.evaluate(x_val, y_val, batch_size=4096,
                                               sample_weight=val_weight).items():
                logs[f"val_{key}"] = value
        # Callbacks first, so one can add a metric to logs (and so to the history).
        for callback in callbacks:
            callback.on_epoch_end(epoch, logs)
        history.append(epoch, logs)
        finished = epoch + 1
        if checkpoint is not None and steps_done == n_batches and (
            finished % checkpoint_every == 0 or finished == epochs or network.stop_training
        ):
            save(finished, 0, rng.bit_generator.state, (0.0, 0))
        if network.stop_training:
            break
    saved_state = {k: v.copy() for k, v in network.state_dict().items()} if last_save else None
    for callback in callbacks:
        callback.on_train_end({"history": history})
    if saved_state is not None and any(
        not np.array_equal(value, saved_state[name]) for name, value in network.state_dict().items()
    ):
        # A callback changed the weights at the end (EarlyStopping restoring its best
        # epoch): the last checkpoint must hold what fit returns.
        save(*last_save[0])
    return history


def _warn_if_settings_differ(saved: dict[str, Any], current: dict[str, Any], path: str) -> None:
    """A resumed run repeats an uninterrupted one only with the same data and batches."""
    changed = [
        f"{key} {saved[key]!r} -> {current[key]!r}"
        for key in ("batch_size", "shuffle", "samples", "validation_split")
        if key in saved and saved[key] != current[key]
    ]
    if changed:
        warnings.warn(
            f"resuming {path} with different settings ({', '.join(changed)}); the run will "
            f"not repeat an uninterrupted one",
            RuntimeWarning,
            stacklevel=3,
        )


def _check_data(network: Any, x: Any, y: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate a dataset once, before any step, and cast ``x`` to the network's dtype."""
    x = np.asarray(x)
    if network.takes_images:
        if x.ndim != 4:
            grey = x.ndim == 3 and getattr(network.layers[0], "in_channels", None) == 1
            raise ValueError(f"{what} inputs must be images shaped (n, C, H, W), got shape {x.shape}"
                             + ("; for grey images add the channel axis: x[:, None]" if grey else ""))
    elif x.ndim != 2:
        width = network.in_features
        flat = width is not None and x.ndim > 2 and math.prod(x.shape[1:]) == width
        raise ValueError(f"{what} inputs must be shaped (n, features), got shape {x.shape}"
                         + ("; flatten each sample: x.reshape(len(x), -1)" if flat else ""))
    if len(x) == 0:
        raise ValueError(f"the {what} set is empty (0 samples)")
    y = np.asarray(y)
    if y.ndim == 0 or len(y) != len(x):
        raise ValueError(f"{what} data has {len(x)} inputs but {y.size if y.ndim == 0 else len(y)} "
                         "targets")
    check_finite(x, f"{what} inputs")
    x = network._as_input(x)
    n_in = network.in_features
    if n_in is not None and x.shape[1] != n_in:
        raise ValueError(
            f"{network.layers[0].name}: expected {what} inputs with {n_in} features, "
            f"got shape {x.shape}"
        )
    n_out = network.out_features
    if n_out is not None:
        # The one target validation (shared with evaluate, train_step, check_gradients);
        # labels come back as integers, target rows in the network's dtype.
        try:
            y = network.loss.check_targets((len(x), n_out), y, network.dtype)
        except ValueError as error:
            raise ValueError(f"{what} targets: {error}") from None
    return x, y


class ProgressBar(Callback):
    """A tqdm bar per epoch with the running loss (``verbose=1``) or a line per epoch (2)."""

    def __init__(self, verbose: int = 1, file: Any = None) -> None:
        self.verbose = verbose
        self.file = file
        self._bar = None

    def on_train_begin(self, logs: dict[str, Any]) -> None:
        self.epochs = logs["epochs"]
        self._start = time.perf_counter()

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any]) -> None:
        self._epoch_start = time.perf_counter()
        self._total, self._count = 0.0, 0
        if self.verbose == 1:
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=logs["steps"], initial=logs.get("first_step", 0),
                desc=f"epoch {epoch + 1}/{self.epochs}", unit="step",
                leave=True, file=self.file or sys.stderr, dynamic_ncols=True, mininterval=0.2,
            )

    def on_batch_end(self, step: int, logs: dict[str, float]) -> None:
        if self._bar is None:
            return
        self._total += logs["loss"]
        self._count += 1
        if step % 16 == 0:
            self._bar.set_postfix_str(f"loss {self._total / self._count:.4f}", refresh=False)
        self._bar.update(1)

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        text = "  ".join(
            f"{k} {100 * v:.2f}%" if "accuracy" in k else f"{k} {v:.4f}" for k, v in logs.items()
        )
        seconds = time.perf_counter() - self._epoch_start
        line = f"epoch {epoch + 1}/{self.epochs}  {text}  ({seconds:.2f} s)"
        if self._bar is not None:
            from tqdm.auto import tqdm

            self._bar.close()
            self._bar = None
            # On its own line: a bar's postfix is cut to the terminal's width.
            tqdm.write(line, file=self.file or sys.stderr)
        else:
            print(line, file=self.file or sys.stdout, flush=True)

    def on_train_end(self, logs: dict[str, Any]) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs.

    With ``restore_best_weights`` the network ends with the weights of its best epoch.
    """

    def __init__(
        self, monitor: str = "val_loss", patience: int = 5, min_delta: float = 0.0,
        mode: str = "auto", restore_best_weights: bool = True,
    ) -> None:
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
        if mode == "auto":
            mode = "max" if "accuracy" in monitor else "min"
        self.monitor, self.patience, self.min_delta = monitor, int(patience), abs(min_delta)
        self.mode, self.restore_best_weights = mode, restore_best_weights
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.stopped_epoch: int | None = None

    def on_train_begin(self, logs: dict[str, Any]) -> None:
        self.best, self.best_epoch, self.stopped_epoch, self._wait = None, None, None, 0
        self._best_weights: dict[str, np.ndarray] | None = None

    def _improved(self, value: float) -> bool:
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        if self.monitor not in logs:
            raise KeyError(
                f"EarlyStopping monitors {self.monitor!r}, but fit reports only "
                f"{sorted(logs)} (pass validation_data for val_ metrics)"
            )
        value = logs[self.monitor]
        if self._improved(value):
            self.best, self.best_epoch, self._wait = value, epoch, 0
            if self.restore_best_weights:
                # parameters and buffers (BatchNorm's running statistics belong to the weights)
                self._best_weights = {k: v.copy() for k, v in self.network.state_dict().items()}
        else:
            self._wait += 1
            if self._wait >= self.patience:
                self.stopped_epoch = epoch
                self.network.stop_training = True

    def on_train_end(self, logs: dict[str, Any]) -> None:
        if self.restore_best_weights and self._best_weights is not None:
            self.network.load_parameters(self._best_weights)


class LearningRateScheduler(Callback):
    """Set the optimizer's ``lr`` to ``schedule(epoch)`` at the start of every epoch.

    A learning rate of 0 (or below, or not finite) is refused: an epoch at
    lr 0 changes nothing, yet the history would report it as trained.
    """

    def __init__(self, schedule: Callable[[int], float]) -> None:
        self.schedule = schedule

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any]) -> None:
        lr = float(self.schedule(epoch))
        if not (math.isfinite(lr) and lr > 0):
            raise ValueError(
                f"the schedule gave the learning rate {lr!r} for epoch {epoch + 1}; it must be "
                "above 0, or that epoch would not train (end the run earlier instead)"
            )
        self.network.optimizer.lr = lr


def cosine_schedule(lr: float, epochs: int, final_lr: float = 0.0) -> Callable[[int], float]:
    """``lr`` annealed towards ``final_lr`` along half a cosine over ``epochs`` epochs.

    Epoch ``e`` (from 0) trains at ``final_lr + (lr - final_lr) * (1 + cos(pi * e / epochs)) / 2``:
    ``lr`` for the first epoch, and ``final_lr`` is reached at the *end* of the
    last one, so every epoch trains (with ``final_lr=0`` the last epoch still
    has a learning rate above 0). This is PyTorch's ``CosineAnnealingLR`` with
    ``T_max=epochs`` and ``eta_min=final_lr``, stepped once per epoch. Epochs
    past ``epochs`` stay at ``final_lr``.
    """
    epochs = operator.index(epochs)
    if epochs < 1:
        raise ValueError(f"a schedule needs epochs >= 1, got {epochs}")
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    if not (math.isfinite(final_lr) and 0 <= final_lr <= lr):
        raise ValueError(f"final_lr must be in [0, lr] = [0, {lr:g}], got {final_lr!r}")

    def schedule(epoch: int) -> float:
        progress = min(epoch / epochs, 1.0)
        return final_lr + 0.5 * (lr - final_lr) * (1.0 + math.cos(math.pi * progress))

    return schedule
