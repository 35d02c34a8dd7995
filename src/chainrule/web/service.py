"""What the web page does, without HTTP: models, predictions, labelled drawings, trainings.

Everything here calls the library: ``chainrule.images.to_mnist`` prepares a
drawing, ``Network.predict_proba`` classifies it, ``Network.fit`` with callbacks trains, ``chainrule.diagnostics``
looks inside a training, ``chainrule.io`` saves and loads, ``write_idx`` keeps
the drawings. ``app.py`` turns HTTP requests into calls of :class:`Service`.

Threads: predictions run in the server's thread pool, several at once, on
models that no training touches (a model is registered only once its
training has ended, and fine-tuning trains a copy). One training runs at a
time, in its own thread (:class:`Trainer`).
"""

from __future__ import annotations

import math
import os
import re
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import io as model_io
from ..datasets import load_mnist
from ..diagnostics import HealthCheck
from ..network import Network
from ..optimizers import Adam
from ..recipes_cnn import build_cnn
from ..training import Callback
from .digits import DigitStore
from .errors import Busy, ServiceError
from .jobs import LiveUpdates, Trainer, TrainingJob, TrainSettings
from .models import (
    NAME,
    ModelEntry,
    check_digit_model,
    describe,
    look_inside,
    probabilities,
    rounded,
)

__all__ = ["Service", "ServiceError", "Busy"]


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
        self.trainer = Trainer()
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
        with self._lock:
            return self._free_name_locked(stem)

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
        """``stem``, or ``stem-2``, ``stem-3``...: a name no model and no file in models/ has."""
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
            "probabilities": rounded(proba, 6),
            "input": {"shape": [28, 28], "values": rounded(digit.reshape(-1), 3)},
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
            network = build_cnn(recipe)
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
