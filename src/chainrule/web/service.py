"""What the web page does, without HTTP: models, predictions, labelled drawings, trainings.

Everything here calls the library: ``chainrule.images.to_mnist`` prepares a
drawing, ``Network.predict`` (through ``predict_proba`` where the network has
it) classifies it, ``Network.fit`` with callbacks trains, ``chainrule.diagnostics``
looks inside a training, ``chainrule.io`` saves and loads, ``write_idx`` keeps
the drawings. ``app.py`` turns HTTP requests into calls of :class:`Service`.

Threads: predictions run in the server's thread pool, several at once, on
models that no training touches (a model is registered only once its
training has ended, and fine-tuning trains a copy). One training runs at a
time, in its own thread (:class:`Trainer`).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import io as model_io
from ..activations import Identity, LeakyReLU, ReLU, Sigmoid, Tanh
from ..datasets import load_mnist, read_idx, write_idx
from ..diagnostics import HealthCheck
from ..layers import Dense, Layer
from ..network import Network
from ..optimizers import Adam
from ..training import Callback

__all__ = ["ServiceError", "Busy", "ModelEntry", "Service", "Trainer", "TrainingJob",
           "TrainSettings", "look_inside", "probabilities"]

logger = logging.getLogger("chainrule.web")

#: A model name: what the page shows and sends back; never a path.
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
ACTIVATIONS = ("relu", "leaky_relu", "tanh", "sigmoid")
OPTIMIZERS = ("adam", "sgd")
_ACTIVATION_LAYERS = (ReLU, LeakyReLU, Sigmoid, Tanh, Identity)
#: First-layer weight pictures sent per epoch (the rest would not fit on the page).
MAX_WEIGHT_PICTURES = 32


class ServiceError(ValueError):
    """A request the service cannot carry out; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class Busy(ServiceError):
    """A training is already running."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=409)


# -- models ---------------------------------------------------------------------------------


def _conv_type() -> type | None:
    try:
        from ..layers.conv import Conv2D
    except ImportError:  # pragma: no cover - CNN layers not installed in this version
        return None
    return Conv2D


def _is_conv(layer: Layer) -> bool:
    conv = _conv_type()
    return conv is not None and isinstance(layer, conv)


@dataclass
class ModelEntry:
    """A model the page may use, by name. The network is never trained after registration."""

    name: str
    network: Network
    description: str
    path: str | None = None

    @property
    def is_cnn(self) -> bool:
        return any(_is_conv(layer) for layer in self.network.layers)

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
        elif _is_conv(layer):
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
    blank = np.zeros((1, 1, 28, 28) if _is_conv(first) else (1, 784), dtype=network.dtype)
    try:
        probabilities(network, blank)
    except ValueError as error:  # e.g. a regression: its outputs are not probabilities
        raise ServiceError(f"model {name}: {error}") from None


def probabilities(network: Network, x: np.ndarray) -> np.ndarray:
    """Class probabilities for the batch ``x``: ``Network.predict_proba``, in float64."""
    return np.asarray(network.predict_proba(x), dtype=np.float64)


def inside_layer(network: Network) -> int | None:
    """Index of the layer whose output the page shows as the look inside.

    The first convolution's feature maps (after its activation, when one
    follows it directly) for a CNN; otherwise the first hidden layer's
    activations: the activation after the first ``Dense`` that is not the
    last one.
    """
    layers = network.layers
    conv = next((i for i, layer in enumerate(layers) if _is_conv(layer)), None)
    dense = [i for i, layer in enumerate(layers) if isinstance(layer, Dense)]
    if conv is not None:
        index = conv
    elif len(dense) >= 2:
        index = dense[0]
    else:
        return None
    if index + 1 < len(layers) and isinstance(layers[index + 1], _ACTIVATION_LAYERS):
        index += 1
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
        "values": _rounded(values.reshape(-1)),
    }


def _rounded(values: np.ndarray, digits: int = 4) -> list[float]:
    return [float(v) for v in np.round(values.astype(np.float64), digits)]


# -- labelled drawings ----------------------------------------------------------------------

_IDX = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


class DigitStore:
    """The visitor's labelled drawings, kept as an MNIST-style IDX folder.

    The four files carry MNIST's names, so ``load_mnist(folder)`` and
    ``chainrule train --data folder`` read them. A drawing goes to the test
    split (``t10k-*``) when the SHA-256 of its pixels is divisible by 5
    (about one in five, and the same drawing always lands in the same split,
    whatever the order), otherwise to the training split.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self._lock = threading.Lock()
        self.images = np.zeros((0, 28, 28), dtype=np.uint8)
        self.labels = np.zeros(0, dtype=np.uint8)
        files = {role: self.folder / name for role, name in _IDX.items()}
        if all(f.is_file() for f in files.values()):
            images = [read_idx(files["train_images"]), read_idx(files["test_images"])]
            labels = [read_idx(files["train_labels"]), read_idx(files["test_labels"])]
            for imgs, lbls in zip(images, labels):
                if imgs.dtype != np.uint8 or imgs.shape[1:] != (28, 28) or len(imgs) != len(lbls):
                    raise ServiceError(f"{self.folder} does not hold 28x28 digits with labels")
            self.images = np.concatenate(images)
            self.labels = np.concatenate(labels).astype(np.uint8)

    @staticmethod
    def is_test(image: np.ndarray) -> bool:
        return int.from_bytes(hashlib.sha256(image.tobytes()).digest()[:8], "big") % 5 == 0

    def add(self, digit: np.ndarray, label: int) -> dict[str, Any]:
        """Add one preprocessed drawing (28x28 floats in [0, 1]) with its label and rewrite the files."""
        image = np.round(np.clip(digit, 0.0, 1.0) * 255).astype(np.uint8)
        with self._lock:
            self.images = np.concatenate([self.images, image[None]])
            self.labels = np.append(self.labels, np.uint8(label))
            self._write()
            return self._summary()

    def _write(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        test = np.array([self.is_test(image) for image in self.images], dtype=bool)
        for split, rows in (("train", ~test), ("test", test)):
            write_idx(self.folder / _IDX[f"{split}_images"], self.images[rows])
            write_idx(self.folder / _IDX[f"{split}_labels"], self.labels[rows])

    def splits(self) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """``(x_train, y_train), (x_test, y_test)`` as float32 rows of 784 and int64 labels."""
        with self._lock:
            images, labels = self.images.copy(), self.labels.astype(np.int64)
        test = np.array([self.is_test(image) for image in images], dtype=bool)
        x = images.reshape(len(images), 784).astype(np.float32) / np.float32(255)
        return (x[~test], labels[~test]), (x[test], labels[test])

    def summary(self) -> dict[str, Any]:
        with self._lock:
            return self._summary()

    def _summary(self) -> dict[str, Any]:
        test = sum(self.is_test(image) for image in self.images)
        return {"count": int(len(self.labels)), "train": int(len(self.labels) - test),
                "test": int(test),
                "per_label": [int(c) for c in np.bincount(self.labels, minlength=10)[:10]],
                "folder": str(self.folder)}


# -- training -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainSettings:
    """What the Train page may choose; checked by :meth:`from_request`."""

    hidden: tuple[int, ...] = (128,)
    channels: tuple[int, ...] = (8, 16)
    activation: str = "relu"
    optimizer: str = "adam"
    lr: float = 1e-3
    batch_size: int = 64
    epochs: int = 3
    samples: int = 10000
    architecture: str = "mlp"

    @classmethod
    def from_request(cls, data: Mapping[str, Any]) -> TrainSettings:
        allowed = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ServiceError(f"unknown training setting {unknown[0]!r:.40}; "
                               f"known: {', '.join(sorted(allowed))}")
        values: dict[str, Any] = {}
        if "architecture" in data:
            values["architecture"] = _choice(data["architecture"], ("mlp", "cnn"), "architecture")
            if values["architecture"] == "cnn" and _cnn_recipe() is None:
                raise ServiceError("this version of chainrule has no CNN recipe")
        if "hidden" in data:
            hidden = data["hidden"]
            if (not isinstance(hidden, list) or not 0 <= len(hidden) <= 4
                    or not all(_is_int(w) and 1 <= w <= 1024 for w in hidden)):
                raise ServiceError("hidden must be a list of at most 4 widths, each 1..1024")
            values["hidden"] = tuple(hidden)
        if "channels" in data:
            channels = data["channels"]
            if (not isinstance(channels, list) or not 1 <= len(channels) <= 3
                    or not all(_is_int(c) and 1 <= c <= 64 for c in channels)):
                raise ServiceError("channels must be a list of 1 to 3 counts, each 1..64")
            values["channels"] = tuple(channels)
        if "activation" in data:
            values["activation"] = _choice(data["activation"], ACTIVATIONS, "activation")
        if "optimizer" in data:
            values["optimizer"] = _choice(data["optimizer"], OPTIMIZERS, "optimizer")
        if "lr" in data:
            values["lr"] = _number(data["lr"], 1e-6, 1.0, "lr")
        for key, low, high in (("batch_size", 1, 1024), ("epochs", 1, 50),
                               ("samples", 100, 10000)):
            if key in data:
                if not _is_int(data[key]) or not low <= data[key] <= high:
                    raise ServiceError(f"{key} must be a whole number from {low} to {high}")
                values[key] = int(data[key])
        return cls(**values)

    def recipe(self) -> Any:
        """The library recipe these settings pick: ``DigitRecipe`` (MLP) or ``CNNRecipe``.

        Without dropout or augmentation, so that what the page shows is the
        plain effect of the choices; the learning rate follows the recipes'
        cosine down to a hundredth of ``lr``.
        """
        common = dict(optimizer=self.optimizer, lr=self.lr, final_lr=self.lr / 100,
                      batch_size=self.batch_size, epochs=self.epochs, dropout=0.0, max_shift=0,
                      validation=max(1, min(1000, self.samples // 5)))
        if self.architecture == "cnn":
            return _cnn_recipe().CNNRecipe().replace(
                channels=self.channels, hidden=self.hidden[0] if self.hidden else 0, **common)
        from ..recipes import DigitRecipe

        return DigitRecipe().replace(layers=(784, *self.hidden, 10),
                                     activation=self.activation, **common)


def _cnn_recipe() -> Any:
    """The library's CNN recipe module (``chainrule.recipes_cnn``), when this version has one."""
    try:
        from .. import recipes_cnn
    except ImportError:  # pragma: no cover - a version without convolutions
        return None
    return recipes_cnn


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _choice(value: Any, choices: Sequence[str], what: str) -> str:
    if value not in choices:
        raise ServiceError(f"{what} must be one of {', '.join(choices)}")
    return value


def _number(value: Any, low: float, high: float, what: str) -> float:
    if (not isinstance(value, (int, float)) or isinstance(value, bool)
            or not math.isfinite(value) or not low <= value <= high):
        raise ServiceError(f"{what} must be a number from {low:g} to {high:g}")
    return float(value)


@dataclass
class TrainingJob:
    """One training run: its settings, the events the page is sent, and its outcome."""

    id: int
    kind: str  # "train" or "default"
    settings: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)
    state: str = "starting"  # "running", "done", "stopped" or "error"
    network: Network | None = None
    model: str | None = None
    stop_requested: bool = False

    def emit(self, event: dict[str, Any]) -> None:
        # list.append is atomic: the event loop reads while this thread writes.
        self.events.append({"job": self.id, "kind": self.kind, "n": len(self.events), **event})

    @property
    def finished(self) -> bool:
        return self.state in ("done", "stopped", "error")

    def snapshot(self) -> dict[str, Any]:
        return {"job": self.id, "kind": self.kind, "state": self.state, "model": self.model,
                "settings": self.settings, "events": len(self.events)}


class LiveUpdates(Callback):
    """Turns ``fit``'s hooks into the page's events: loss per step, the look inside per epoch.

    ``health`` is the :class:`HealthCheck` that runs before this callback;
    its latest report gives the gradient norms, the dead and saturated shares
    and the problems in words. A run of more than ``max_points`` steps sends
    the mean loss of every ``k`` steps (``k = ceil(steps / max_points)``), so
    a long run does not flood the page; shorter runs send every step.
    """

    def __init__(self, job: TrainingJob, health: HealthCheck, max_points: int = 3000) -> None:
        self.job, self.health, self.max_points = job, health, max_points
        self.step = 0
        self.every = 1
        self._losses: list[float] = []
        self.started = time.perf_counter()

    def on_train_begin(self, logs: dict[str, Any]) -> None:
        total = logs["epochs"] * logs["steps"]
        self.every = max(1, math.ceil(total / self.max_points))
        self.job.emit({"type": "begin", "epochs": logs["epochs"], "steps": logs["steps"],
                       "samples": logs["samples"], "every": self.every})
        self._maybe_stop()

    def on_batch_end(self, step: int, logs: dict[str, float]) -> None:
        self.step += 1
        self._losses.append(float(logs["loss"]))
        if len(self._losses) == self.every:
            self.job.emit({"type": "step", "step": self.step, "loss": float(np.mean(self._losses))})
            self._losses.clear()
        self._maybe_stop()

    def _maybe_stop(self) -> None:
        if self.job.stop_requested:
            self.network.stop_training = True

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        report = self.health.last_report
        event: dict[str, Any] = {
            "type": "epoch", "epoch": epoch + 1, "step": self.step,
            "seconds": round(time.perf_counter() - self.started, 2),
            **{k: float(v) for k, v in logs.items()},
            "weights": first_layer_pictures(self.network),
        }
        if report is not None:
            event["gradient_norms"] = [
                {"layer": i, "name": report.layers[i], "norm": g,
                 "ratio": g / report.parameter_norms[i] if report.parameter_norms[i] else None}
                for i, g in sorted(report.gradient_norms.items())]
            event["activations"] = [
                {"layer": i, "name": h.name, "kind": h.kind, "units": h.units,
                 "dead": h.dead, "saturated": h.saturated}
                for i, h in sorted(report.activations.items())]
        event["warnings"] = [p.message for p in self.health.problems]
        self.job.emit(event)


def first_layer_pictures(network: Network, limit: int = MAX_WEIGHT_PICTURES) -> dict[str, Any] | None:
    """The first layer's weights as small greyscale pictures, one per unit or filter.

    Each picture is scaled on its own to 0..255 around 128 (``128 + 127 * w / max|w|``),
    so positive weights are light and negative dark; returned as bytes in
    hexadecimal, ``count`` pictures of ``height x width``.
    """
    first = next((layer for layer in network.layers if layer.params), None)
    if first is None:
        return None
    weight = np.asarray(first.params["weight"], dtype=np.float64)
    if isinstance(first, Dense) and first.in_features == 784:
        pictures = weight.reshape(-1, 28, 28)
    elif weight.ndim == 4:  # Conv2D (out, in, kh, kw): the first input channel's kernels
        pictures = weight[:, 0]
    else:
        return None
    pictures = pictures[:limit]
    scale = np.abs(pictures).reshape(len(pictures), -1).max(axis=1)
    scale[scale == 0] = 1.0
    pixels = np.round(128 + 127 * pictures / scale[:, None, None]).astype(np.uint8)
    return {"count": int(len(pixels)), "height": int(pixels.shape[1]),
            "width": int(pixels.shape[2]), "hex": pixels.tobytes().hex()}


class Trainer:
    """Runs at most one training at a time, in a background thread."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self._lock = threading.Lock()
        self.job: TrainingJob | None = None
        self._next_id = 1
        self.thread: threading.Thread | None = None

    def busy(self) -> bool:
        return self.job is not None and not self.job.finished

    def reserve(self, kind: str, settings: dict[str, Any]) -> TrainingJob:
        """Claim the one training slot, or raise :class:`Busy` saying what holds it."""
        with self._lock:
            if self.busy():
                assert self.job is not None
                what = ("the default digit model is being trained" if self.job.kind == "default"
                        else "a fine-tuning is running" if self.job.kind == "finetune"
                        else "a training is already running")
                raise Busy(f"{what}; wait for it to finish or stop it first (one training "
                           "at a time)")
            job = TrainingJob(self._next_id, kind, settings)
            self._next_id += 1
            self.job = job
            return job

    def start(self, job: TrainingJob, work: Callable[[TrainingJob], None]) -> None:
        def run() -> None:
            try:
                job.state = "running"
                work(job)
                job.state = "stopped" if job.stop_requested else "done"
                job.emit({"type": "end", "state": job.state, "model": job.model})
            except Exception as error:  # noqa: BLE001 -- reported to the page in one line
                logger.error("training %d failed:\n%s", job.id, traceback.format_exc())
                job.state = "error"
                job.emit({"type": "end", "state": "error", "message": str(error) or
                          type(error).__name__})

        self.thread = threading.Thread(target=run, name=f"chainrule-training-{job.id}",
                                       daemon=True)
        self.thread.start()

    def stop(self) -> TrainingJob:
        job = self.job
        if job is None or job.finished:
            raise ServiceError("no training is running", status=409)
        job.stop_requested = True
        if job.network is not None:
            job.network.stop_training = True
        return job


# -- the service ----------------------------------------------------------------------------


class Service:
    """Models by name, predictions, labelled drawings, fine-tuning and training.

    Parameters
    ----------
    models : paths of ``.safetensors`` models, or a mapping name -> Network
    workdir : folder for the labelled drawings (``my-digits/``) and the
        models made here (``models/``); created when first needed.
    """

    def __init__(self, models: Sequence[str | os.PathLike] | Mapping[str, Network] = (),
                 workdir: str | os.PathLike = "chainrule-web") -> None:
        self.workdir = Path(workdir)
        self.models: dict[str, ModelEntry] = {}
        self._lock = threading.Lock()
        self.default: str | None = None
        if isinstance(models, Mapping):
            for name, network in models.items():
                self.add_model(name, network, describe(network))
        else:
            for path in models:
                self.add_file(path)
        self.digits = DigitStore(self.workdir / "my-digits")
        self.trainer = Trainer(self)
        self._mnist: tuple[Any, Any] | None = None

    # models

    def add_file(self, path: str | os.PathLike) -> ModelEntry:
        network = model_io.load(path)
        name = self._free_name(_safe_name(Path(path).name.removesuffix(".safetensors")))
        return self.add_model(name, network, f"{describe(network)} ({Path(path).name})",
                              path=os.fspath(path))

    def add_model(self, name: str, network: Network, description: str,
                  path: str | None = None) -> ModelEntry:
        if not NAME.match(name):
            raise ServiceError(f"invalid model name {name!r:.70}")
        check_digit_model(network, name)
        entry = ModelEntry(name, network, description, path)
        with self._lock:
            if name in self.models:
                raise ServiceError(f"a model named {name} exists already", status=409)
            self.models[name] = entry
            if self.default is None:
                self.default = name
        return entry

    def model(self, name: Any) -> ModelEntry:
        if name is None:
            if self.default is None:
                raise ServiceError("no model yet: the default model is still training"
                                   if self.trainer.busy() else "no model loaded", status=409)
            name = self.default
        if not isinstance(name, str) or name not in self.models:
            raise ServiceError(f"no model named {str(name)[:64]!r}; see GET /api/models",
                               status=404)
        return self.models[name]

    def _free_name(self, stem: str) -> str:
        """``stem``, or ``stem-2``, ``stem-3``...: a name no model and no file in models/ has."""
        with self._lock:
            taken = set(self.models)
        candidate, k = stem, 1
        while candidate in taken or (self.workdir / "models" / f"{candidate}.safetensors").exists():
            k += 1
            candidate = f"{stem}-{k}"
        return candidate

    def save_new(self, stem: str, network: Network, description: str) -> ModelEntry:
        """Save ``network`` under a new name in ``models/`` (never over a file) and register it."""
        folder = self.workdir / "models"
        folder.mkdir(parents=True, exist_ok=True)
        with self._lock:  # one name per model even when two saves race
            name = self._free_name_locked(stem)
            path = folder / f"{name}.safetensors"
            model_io.save(network, path)
            entry = ModelEntry(name, network, f"{describe(network)} ({description})", str(path))
            self.models[name] = entry
            if self.default is None:
                self.default = name
        return entry

    def _free_name_locked(self, stem: str) -> str:
        candidate, k = stem, 1
        while (candidate in self.models
               or (self.workdir / "models" / f"{candidate}.safetensors").exists()):
            k += 1
            candidate = f"{stem}-{k}"
        return candidate

    # predictions

    def predict(self, name: Any, digit_source: Any) -> dict[str, Any]:
        """Prepare a drawing with ``images.to_mnist`` and classify it; see the README's API."""
        from ..images import ImageReadError, to_mnist

        entry = self.model(name)
        started = time.perf_counter()
        try:
            digit = to_mnist(digit_source)
        except ImageReadError as error:
            raise ServiceError(str(error), status=422) from None
        x = entry.input_batch(digit)
        proba = probabilities(entry.network, x)[0]
        inside = look_inside(entry.network, x)
        return {
            "model": entry.name,
            "prediction": int(np.argmax(proba)),
            "probabilities": _rounded(proba, 6),
            "input": {"shape": [28, 28], "values": _rounded(digit.reshape(-1), 3)},
            "inside": inside,
            "milliseconds": round(1000 * (time.perf_counter() - started), 2),
        }

    # labelled drawings and fine-tuning

    def label(self, digit_source: Any, label: int) -> dict[str, Any]:
        from ..images import ImageReadError, to_mnist

        try:
            digit = to_mnist(digit_source)
        except ImageReadError as error:
            raise ServiceError(str(error), status=422) from None
        return self.digits.add(digit, label)

    def mnist(self) -> tuple[Any, Any]:
        if self._mnist is None:
            self._mnist = load_mnist()
        return self._mnist

    def fine_tune(self, name: Any, epochs: int = 2, seed: int = 0,
                  mnist_test: int = 10000) -> dict[str, Any]:
        """Train a copy of a model on the visitor's digits mixed with MNIST digits.

        The mix: the visitor's training drawings repeated to make up 256 rows,
        beside 768 random bundled MNIST training digits (so the model keeps
        what it knew), ``epochs`` passes in batches of 64 with Adam at lr 3e-4.
        Accuracy before and after is measured on the visitor's training
        drawings, their held-out drawings (the ``t10k`` split) and the first
        ``mnist_test`` digits of the MNIST test set. The result is saved as a
        new model ``<name>-mine`` (``-2``, ``-3``... if taken), never over the original.
        """
        entry = self.model(name)
        (mine_x, mine_y), (held_x, held_y) = self.digits.splits()
        if len(mine_x) == 0:
            raise ServiceError("label some drawings first (\"That was a ...\"): none are in "
                               "the training split yet", status=409)
        job = self.trainer.reserve("finetune", {"model": entry.name})
        job.state = "running"
        try:
            (x_train, y_train), (x_test, y_test) = self.mnist()
            x_test, y_test = x_test[:mnist_test], y_test[:mnist_test]
            network = _copy(entry.network)
            network.optimizer = Adam(lr=3e-4)
            rng = np.random.default_rng(seed)
            repeat = math.ceil(256 / len(mine_x))
            rows = rng.choice(len(x_train), size=768, replace=False)
            x = np.concatenate([np.tile(mine_x, (repeat, 1)), x_train[rows]])
            y = np.concatenate([np.tile(mine_y, repeat), y_train[rows]])

            def scores(net: Network) -> dict[str, Any]:
                def acc(xs: np.ndarray, ys: np.ndarray) -> float | None:
                    if len(xs) == 0:
                        return None
                    xs = xs.reshape(len(xs), 1, 28, 28) if entry.is_cnn else xs
                    return float(np.mean(np.argmax(net.predict(xs, batch_size=2048), axis=1) == ys))
                return {"mine": acc(mine_x, mine_y), "mine_held_out": acc(held_x, held_y),
                        "mnist_test": acc(x_test, y_test)}

            before = scores(entry.network)
            if entry.is_cnn:
                x = x.reshape(len(x), 1, 28, 28)
            network.fit(x, y, epochs=epochs, batch_size=64, seed=seed, verbose=0)
            after = scores(network)
            new = self.save_new(f"{entry.name}-mine", network,
                                f"{entry.name} fine-tuned on {len(mine_x)} of your digits")
            job.model = new.name
            job.state = "done"
        except BaseException:
            job.state = "error"
            raise
        return {"model": new.name, "from": entry.name, "saved": Path(new.path or "").name,
                "digits": {"mine": int(len(mine_x)), "mine_held_out": int(len(held_x)),
                           "mnist_test": int(len(x_test)), "mnist_mixed_in": 768},
                "before": before, "after": after}

    # training

    def start_training(self, settings: TrainSettings) -> TrainingJob:
        job = self.trainer.reserve("train", {**settings.__dict__, "hidden": list(settings.hidden)})
        self.trainer.start(job, lambda job: self._train(job, settings))
        return job

    def _train(self, job: TrainingJob, settings: TrainSettings) -> None:
        from ..recipes import build_network

        (x, y), (x_test, y_test) = self.mnist()
        x, y = x[: settings.samples], y[: settings.samples]
        recipe = settings.recipe()
        if settings.architecture == "cnn":
            network = _cnn_recipe().build_cnn(recipe)
            x, x_test = x.reshape(len(x), 1, 28, 28), x_test.reshape(len(x_test), 1, 28, 28)
            stem = f"trained-cnn-{'-'.join(map(str, recipe.channels))}"
        else:
            network = build_network(recipe)
            stem = f"trained-{'-'.join(map(str, recipe.layers))}"
        self._run_fit(job, recipe, network, x, y, x_test, y_test, stem=stem)

    def _run_fit(self, job: TrainingJob, recipe: Any, network: Network, x: np.ndarray,
                 y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, stem: str,
                 path: str | None = None, callbacks: Sequence[Callback] = ()) -> None:
        from ..recipes import train_digits

        job.network = network
        probe = np.random.default_rng(0).permutation(len(x))[:256]
        health = HealthCheck(x[probe], y[probe])
        live = LiveUpdates(job, health)
        train_digits(recipe, x, y, network=network, callbacks=[health, live, *callbacks])
        if not live.step:
            raise ServiceError("stopped before the first step; no model to keep")
        accuracy = float(np.mean(np.argmax(network.predict(x_test, batch_size=2048), axis=1)
                                 == y_test))
        job.emit({"type": "test", "accuracy": accuracy, "samples": int(len(y_test))})
        what = f"{'stopped, ' if job.stop_requested else ''}{accuracy:.1%} on MNIST test"
        if path is not None and not job.stop_requested:  # a stopped default is no default
            model_io.save(network, path)
            entry = self.add_model(Path(path).name.removesuffix(".safetensors"), network,
                                   f"{describe(network)} ({Path(path).name}, {what})", path)
        else:
            entry = self.save_new(stem, network, what)
        job.model = entry.name

    def train_default(self, path: str | os.PathLike, recipe: Any = None,
                      callbacks: Sequence[Callback] = ()) -> TrainingJob:
        """Train the default digit model (``DigitRecipe``) in the background and save it at ``path``.

        ``callbacks`` watch the training too (``chainrule serve`` prints each epoch).
        """
        from ..recipes import DigitRecipe, build_network

        recipe = recipe if recipe is not None else DigitRecipe()
        job = self.trainer.reserve("default", {"recipe": recipe.describe()})

        def work(job: TrainingJob) -> None:
            (x, y), (x_test, y_test) = self.mnist()
            self._run_fit(job, recipe, build_network(recipe), x, y, x_test, y_test,
                          stem="mnist-mlp", path=os.fspath(path), callbacks=callbacks)

        self.trainer.start(job, work)
        return job

    def download(self, name: Any, fmt: str) -> tuple[bytes, str]:
        """The model's bytes as ``.safetensors`` (``chainrule.io.save``) or ``.onnx`` (``to_onnx``)."""
        entry = self.model(name)
        if fmt == "safetensors":
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / "model.safetensors"
                model_io.save(entry.network, path)
                return path.read_bytes(), f"{entry.name}.safetensors"
        if fmt == "onnx":
            try:
                proto = entry.network.to_onnx()
            except ImportError:
                raise ServiceError("ONNX export needs the onnx package: "
                                   'pip install "chainrule[onnx]"', status=501) from None
            except ValueError as error:
                raise ServiceError(str(error), status=422) from None
            return proto.SerializeToString(), f"{entry.name}.onnx"
        raise ServiceError("format must be safetensors or onnx")


def _safe_name(stem: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", stem)[:64].lstrip(".-_") or "model"
    return name


def _copy(network: Network) -> Network:
    """An independent copy, through the library's own save and load (weights and buffers)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "copy.safetensors"
        model_io.save(network, path)
        return model_io.load(path)
