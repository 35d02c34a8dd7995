"""Trainings started from the page: their settings, their events, one at a time in a thread.

``fit`` runs in a background thread with two callbacks: ``HealthCheck``
(``chainrule.diagnostics``) and :class:`LiveUpdates`, which turns each step
and epoch into an event the page receives over Server-Sent Events.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..diagnostics import HealthCheck
from ..layers import Dense
from ..network import Network
from ..recipes_cnn import CNNRecipe
from ..training import Callback
from .errors import Busy, ServiceError

__all__ = ["ACTIVATIONS", "OPTIMIZERS", "TrainSettings", "TrainingJob", "LiveUpdates",
           "first_layer_pictures", "Trainer"]

logger = logging.getLogger("chainrule.web")

ACTIVATIONS = ("relu", "leaky_relu", "tanh", "sigmoid")
OPTIMIZERS = ("adam", "sgd")
#: First-layer weight pictures sent per epoch (the rest would not fit on the page).
MAX_WEIGHT_PICTURES = 32


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
            return CNNRecipe().replace(
                channels=self.channels, hidden=self.hidden[0] if self.hidden else 0, **common)
        from ..recipes import DigitRecipe

        return DigitRecipe().replace(layers=(784, *self.hidden, 10),
                                     activation=self.activation, **common)


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

    def __init__(self) -> None:
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
