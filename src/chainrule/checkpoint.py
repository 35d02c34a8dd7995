"""Training checkpoints: everything ``fit`` needs to continue a run as if it never stopped.

A checkpoint is a safetensors file (no pickle), like a model file, holding

- tensors ``"model.0.weight"``, ``"model.0.bias"``... : the weights;
- tensors ``"optimizer.0.weight.m"``, ``"optimizer.0.weight.v"``... : the
  optimizer's per-parameter state (Adam's moments, SGD's momentum buffer);
- JSON metadata: the architecture, loss and optimizer settings, the
  optimizer's step count, the number of finished epochs (and steps into the
  next one, for a run stopped mid-epoch), the history so far, the state of
  ``fit``'s random generator and of every layer's own generator (``Dropout``),
  and a SHA-256 digest of all of it.

Random generator states are plain dicts of integers
(``rng.bit_generator.state``); Python's ``json`` keeps 128-bit integers exact.
Writes are atomic (``io.atomic_write_bytes``): after a crash at any moment the
file on disk is the previous checkpoint or the new one.

``fit(..., checkpoint=PATH)`` writes checkpoints and ``fit(..., resume=PATH)``
reads them; ``load_checkpoint`` is the API underneath.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from os import PathLike
from typing import Any

import numpy as np

from .errors import ModelFileError
from .io import (
    DIGEST_KEY,
    atomic_write_bytes,
    build_network,
    check_format,
    model_metadata,
    read_safetensors,
    tensor_digest,
)

__all__ = ["CHECKPOINT_FORMAT_VERSION", "Checkpoint", "load_checkpoint", "save_checkpoint"]

#: Version of the checkpoint layout; a checkpoint from a newer version is refused.
CHECKPOINT_FORMAT_VERSION = 1
_FORMAT = "chainrule-checkpoint"
# Only NumPy's own bit generators may be named by a file.
_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")


@dataclass
class Checkpoint:
    """The contents of a checkpoint file, validated.

    Attributes
    ----------
    epoch : int
        Epochs finished (``fit`` resumes with epoch index ``epoch``).
    step : int
        Optimizer steps already taken in epoch ``epoch`` (0 unless the run
        was stopped mid-epoch).
    parameters : dict name -> array
        The weights, by state-dict name (``"0.weight"``).
    optimizer_state : list of dicts
        Per-parameter optimizer state, in ``parameters`` order (empty before the first step).
    optimizer_steps : int
    rng_state : dict or None
        ``bit_generator.state`` of ``fit``'s generator at the start of epoch ``epoch``.
    layer_rng_states : dict layer index -> state
    history : History
        Metrics of the finished epochs.
    fit_settings : dict
        ``batch_size``, ``shuffle``, ``samples``, ``seed`` and, for a run stopped
        mid-epoch, the running ``epoch_loss`` ``[sum, count]``.
    """

    path: str
    epoch: int
    step: int
    config: dict[str, Any]
    parameters: dict[str, np.ndarray]
    optimizer_state: list[dict[str, np.ndarray]]
    optimizer_steps: int
    rng_state: dict[str, Any] | None
    layer_rng_states: dict[int, dict[str, Any]]
    history: Any
    fit_settings: dict[str, Any] = field(default_factory=dict)
    _metadata: dict[str, str] = field(default_factory=dict, repr=False)

    def build_network(self) -> Any:
        """A new ``Network`` with the checkpoint's architecture, weights and optimizer state."""
        network = build_network(self._metadata, self.parameters, self.path)
        self.restore(network)
        return network

    def restore(self, network: Any) -> None:
        """Put weights, optimizer (settings, state, step count) and layer generators into ``network``.

        Raises ``ValueError`` if ``network`` has another architecture, dtype,
        loss or kind of optimizer than the checkpoint.
        """
        from .optimizers import get_optimizer

        own = network.get_config()
        theirs = self.config
        if own["layers"] != theirs["layers"]:
            raise ValueError(_architecture_difference(self.path, theirs["layers"], own["layers"]))
        for key, what in (("dtype", "dtype"), ("loss", "loss")):
            if own[key] != theirs[key]:
                raise ValueError(
                    f"checkpoint {self.path} was trained with {what} {theirs[key]}, "
                    f"this network has {own[key]}"
                )
        if own["optimizer"]["type"] != theirs["optimizer"]["type"]:
            raise ValueError(
                f"checkpoint {self.path} holds {theirs['optimizer']['type']} state; this network's "
                f"optimizer is {own['optimizer']['type']}"
            )
        network.load_parameters(self.parameters)
        # The run continues with the checkpoint's optimizer settings (a scheduler
        # may have changed lr); only its state and step count make it bit-identical.
        changed = sorted(k for k in theirs["optimizer"]
                         if k != "lr" and own["optimizer"].get(k) != theirs["optimizer"][k])
        if changed:
            warnings.warn(
                f"resuming {self.path} with its own optimizer settings; this network's "
                f"optimizer differs in {', '.join(changed)}, which is ignored", stacklevel=3,
            )
        optimizer = get_optimizer(dict(theirs["optimizer"]))
        optimizer.state = [{k: v.copy() for k, v in s.items()} for s in self.optimizer_state]
        optimizer.steps = self.optimizer_steps
        network.optimizer = optimizer
        for index, state in self.layer_rng_states.items():
            network.layers[index].rng = generator_from_state(state, self.path)

    def generator(self) -> np.random.Generator | None:
        """``fit``'s random generator, in its saved state (``None`` if none was saved)."""
        if self.rng_state is None:
            return None
        return generator_from_state(self.rng_state, self.path)


def save_checkpoint(
    path: str | PathLike,
    network: Any,
    *,
    epoch: int,
    step: int = 0,
    history: Any = None,
    rng: np.random.Generator | None = None,
    rng_state: dict[str, Any] | None = None,
    fit_settings: dict[str, Any] | None = None,
) -> None:
    """Write the training state of ``network`` to ``path``, atomically.

    Parameters
    ----------
    epoch, step : finished epochs, and steps already taken in the next one
    history : History, optional
    rng, rng_state : fit's generator, or its state at the start of epoch ``epoch``
    fit_settings : JSON-able dict, kept for the resumed run to compare against
    """
    from safetensors.numpy import save as to_bytes

    from .training import History

    params = network.parameters()
    tensors = {f"model.{name}": np.ascontiguousarray(a) for name, a in params.items()}
    state = network.optimizer.state
    if state:
        for name, per_param in zip(params, state, strict=True):
            for key, value in per_param.items():
                tensors[f"optimizer.{name}.{key}"] = np.ascontiguousarray(value)
    if rng_state is None and rng is not None:
        rng_state = rng.bit_generator.state
    layer_rngs = {
        str(i): layer.rng.bit_generator.state
        for i, layer in enumerate(network.layers)
        if isinstance(getattr(layer, "rng", None), np.random.Generator)
    }
    history = history if history is not None else History()
    metadata = model_metadata(network, _FORMAT, CHECKPOINT_FORMAT_VERSION)
    metadata.update({
        "epoch": str(int(epoch)),
        "step": str(int(step)),
        "optimizer_steps": str(int(network.optimizer.steps)),
        "history": json.dumps({"epochs": history.epochs, "metrics": history.metrics}),
        "rng": json.dumps(rng_state),
        "layer_rngs": json.dumps(layer_rngs),
        "fit": json.dumps(fit_settings or {}),
    })
    metadata[DIGEST_KEY] = tensor_digest(tensors, metadata)
    atomic_write_bytes(path, to_bytes(tensors, metadata=metadata), what="checkpoint")


def load_checkpoint(path: str | PathLike) -> Checkpoint:
    """Read and validate the checkpoint at ``path``.

    Raises
    ------
    ModelFileError
        If the file is not a checkpoint, is corrupt (the digest does not
        match), or was written by a newer checkpoint format (saying so).
    FileNotFoundError
        If there is no file at ``path``.
    """
    path = os.fspath(path)
    tensors, metadata = read_safetensors(path)
    return checkpoint_from_contents(tensors, metadata, path)


def checkpoint_from_contents(
    tensors: dict[str, np.ndarray], metadata: dict[str, str], path: str
) -> Checkpoint:
    """Validate a checkpoint's tensors and metadata as untrusted input."""
    if metadata.get("format") == "chainrule":
        raise ModelFileError(f"{path} is a chainrule model file, not a training checkpoint")
    check_format(metadata, path, _FORMAT, CHECKPOINT_FORMAT_VERSION, "checkpoint")
    model = _strip(tensors, "model.")
    # Builds a zero-weight network after checking the architecture against the
    # tensors, which also validates names, shapes and dtypes.
    network = build_network(metadata, model, path, digest_of=tensors)
    try:
        network.load_parameters(model)
    except ValueError as error:
        raise ModelFileError(f"{path}: {error}") from None
    try:
        epoch, step, steps = (_count(metadata, key) for key in ("epoch", "step", "optimizer_steps"))
        optimizer_state = _optimizer_state(network, _strip(tensors, "optimizer."), steps)
        if len(model) + sum(len(s) for s in optimizer_state) != len(tensors):
            stray = sorted(k for k in tensors if not k.startswith(("model.", "optimizer.")))
            raise ValueError(f"unexpected tensor {stray[0] if stray else '?'!r}")
        rng_state = json.loads(metadata["rng"])
        if rng_state is not None:
            generator_from_state(rng_state, path)
        layer_rngs = _layer_rngs(json.loads(metadata["layer_rngs"]), network, path)
        history = _history(json.loads(metadata["history"]))
        fit_settings = json.loads(metadata["fit"])
        if not isinstance(fit_settings, dict):
            raise TypeError("fit settings must be an object")
    except ModelFileError:
        raise
    except MemoryError:
        raise
    except Exception as error:  # noqa: BLE001 -- any malformed field is the file's fault
        raise ModelFileError(f"{path}: invalid checkpoint metadata: {error}") from None
    return Checkpoint(
        path=path, epoch=epoch, step=step, config=network.get_config(), parameters=model,
        optimizer_state=optimizer_state, optimizer_steps=steps, rng_state=rng_state,
        layer_rng_states=layer_rngs, history=history, fit_settings=fit_settings,
        _metadata=metadata,
    )


def generator_from_state(state: Any, path: str = "checkpoint") -> np.random.Generator:
    """A ``numpy.random.Generator`` set to ``state`` (a ``bit_generator.state`` dict)."""
    name = state.get("bit_generator") if isinstance(state, dict) else None
    if name not in _BIT_GENERATORS:
        raise ModelFileError(f"{path}: unsupported random generator state {name!r:.40}")
    bit_generator = getattr(np.random, name)()
    try:
        bit_generator.state = state
    except (TypeError, ValueError, KeyError, OverflowError) as error:
        raise ModelFileError(f"{path}: invalid {name} generator state: {error}") from None
    return np.random.Generator(bit_generator)


# -- helpers ---------------------------------------------------------------------------


def _strip(tensors: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def _count(metadata: dict[str, str], key: str) -> int:
    text = metadata[key]
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise ValueError(f"{key} must be a non-negative integer, got {text!r:.40}")
    return int(text)


def _optimizer_state(
    network: Any, tensors: dict[str, np.ndarray], steps: int
) -> list[dict[str, np.ndarray]]:
    """The per-parameter state, checked against what this optimizer keeps for each parameter."""
    params = network.parameters()
    if not tensors:
        return []
    state = []
    for name, param in params.items():
        expected = network.optimizer._new_state(param)
        entry = {}
        for key in expected:
            value = tensors.get(f"{name}.{key}")
            if value is None:
                raise ValueError(f"missing optimizer tensor 'optimizer.{name}.{key}'")
            if value.shape != param.shape or value.dtype != param.dtype:
                raise ValueError(
                    f"optimizer tensor 'optimizer.{name}.{key}' is {value.dtype} {value.shape}, "
                    f"expected {param.dtype} {param.shape}"
                )
            if not np.all(np.isfinite(value)):
                raise ValueError(f"optimizer tensor 'optimizer.{name}.{key}' is not finite")
            entry[key] = value
        state.append(entry)
    if sum(len(s) for s in state) != len(tensors):
        known = {f"{n}.{k}" for n, s in zip(params, state, strict=True) for k in s}
        extra = sorted(set(tensors) - known)[0]
        raise ValueError(f"unexpected optimizer tensor 'optimizer.{extra}'")
    if steps == 0 and any(state):
        raise ValueError("optimizer state is present but optimizer_steps is 0")
    return state


def _layer_rngs(value: Any, network: Any, path: str) -> dict[int, dict[str, Any]]:
    if not isinstance(value, dict):
        raise TypeError("layer_rngs must be an object")
    states = {}
    for key, state in value.items():
        if not (key.isascii() and key.isdigit()) or int(key) >= len(network.layers):
            raise ValueError(f"layer_rngs names no layer: {key!r:.20}")
        index = int(key)
        if not isinstance(getattr(network.layers[index], "rng", None), np.random.Generator):
            raise ValueError(f"layer {index} has no random generator")
        generator_from_state(state, path)
        states[index] = state
    return states


def _history(value: Any) -> Any:
    from .training import History

    if not isinstance(value, dict) or set(value) != {"epochs", "metrics"}:
        raise TypeError("history must be an object with 'epochs' and 'metrics'")
    epochs, metrics = value["epochs"], value["metrics"]
    if not (isinstance(epochs, list) and all(type(e) is int for e in epochs)):
        raise TypeError("history epochs must be a list of integers")
    if not isinstance(metrics, dict):
        raise TypeError("history metrics must be an object")
    history = History()
    history.epochs = list(epochs)
    for key, values in metrics.items():
        if not (isinstance(values, list) and len(values) == len(epochs)):
            raise ValueError(f"history metric {key!r:.40} does not have one value per epoch")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise TypeError(f"history metric {key!r:.40} holds non-numbers")
        history.metrics[key] = [float(v) for v in values]
    return history


def _architecture_difference(path: str, theirs: list[dict], own: list[dict]) -> str:
    def describe(configs: list[dict], i: int) -> str:
        if i >= len(configs):
            return "nothing"
        args = ", ".join(f"{k}={v!r}" for k, v in configs[i].items() if k != "type")
        return f"{configs[i]['type']}({args})"

    i = next(
        k for k in range(max(len(theirs), len(own)))
        if k >= len(theirs) or k >= len(own) or theirs[k] != own[k]
    )
    return (
        f"checkpoint {path} was saved from a different architecture: layer {i} is "
        f"{describe(theirs, i)} in the checkpoint but {describe(own, i)} in this network "
        f"({len(theirs)} vs {len(own)} layers)"
    )
