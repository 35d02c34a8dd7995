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
reads them; ``load_checkpoint`` is the API underneath. A run writing to PATH
holds an advisory lock (``checkpoint_lock``) on it for its whole duration, so
a second run on the same path is refused rather than overwriting the first.

Loading checks the header as ``chainrule.load`` does (sizes bounded before
parsing, tensors against the architecture, the digest streamed), then every
restored value against a schema before anything uses it: the random
generators' states (field by field, with NumPy's ranges; an all-zero MT19937
state, which would make ``rng.integers`` loop for ever, is refused), the
counters, the history, ``fit``'s settings (``epoch_loss`` is ``[finite
number, count]``), and the optimizer's state (finite; Adam's second moment
``v`` non-negative).
"""

from __future__ import annotations

import errno
import json
import math
import os
import warnings
from dataclasses import dataclass, field
from os import PathLike
from typing import Any

import numpy as np

from .errors import CheckpointInUseError, ModelFileError
from .io import (
    DIGEST_KEY,
    SafetensorsFile,
    atomic_write_bytes,
    check_format,
    check_load_memory,
    check_values,
    compare_tensors,
    cut,
    fill_network,
    metadata_json,
    model_config,
    model_metadata,
    network_from_config,
    open_safetensors,
    quote,
    state_arrays,
    tensor_digest,
    verify_digest,
)

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

__all__ = ["CHECKPOINT_FORMAT_VERSION", "Checkpoint", "CheckpointLock", "checkpoint_lock",
           "holds_checkpoint_lock", "load_checkpoint", "save_checkpoint"]

#: Version of the checkpoint layout; a checkpoint from a newer version is refused.
#: Every version requires the SHA-256 digest.
CHECKPOINT_FORMAT_VERSION = 1
_FORMAT = "chainrule-checkpoint"
#: Largest history a checkpoint may hold (epochs; metrics).
MAX_EPOCHS = 1_000_000
MAX_METRICS = 64


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
        The weights and buffers, by state-dict name (``"0.weight"``).
    optimizer_state : list of dicts
        Per-parameter optimizer state, in ``Network.parameters()`` order
        (empty before the first step).
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
    _network: Any = field(default=None, repr=False)

    def build_network(self) -> Any:
        """A new ``Network`` with the checkpoint's architecture, weights and optimizer state.

        The first call hands over the network the loader read the weights
        into (no copy: ``parameters`` are its live arrays); later calls build
        another and copy ``parameters`` into it.
        """
        network, self._network = self._network, None
        if network is None:
            network = network_from_config(self.config, self.path)
            self.restore(network)
        else:
            self._restore(network, weights=False)
        return network

    def restore(self, network: Any) -> None:
        """Put weights, optimizer (settings, state, step count) and layer generators into ``network``.

        Raises ``ValueError`` if ``network`` has another architecture, dtype,
        loss or kind of optimizer than the checkpoint.
        """
        self._restore(network, weights=True)

    def _restore(self, network: Any, weights: bool) -> None:
        from .optimizers import get_optimizer

        # Compared as JSON, as they were saved (tuples and lists alike).
        own = json.loads(json.dumps(network.get_config()))
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
        for index in self.layer_rng_states:
            if not isinstance(getattr(network.layers[index], "rng", None), np.random.Generator):
                raise ModelFileError(f"{self.path}: layer_rngs names layer {index}, which has "
                                     "no random generator")
        if weights:
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


def _jsonable(state: Any) -> Any:
    """A ``bit_generator.state`` with its arrays (MT19937's key, Philox's counter) as lists."""
    if isinstance(state, dict):
        return {k: _jsonable(v) for k, v in state.items()}
    if isinstance(state, np.ndarray):
        return [int(x) for x in state.tolist()]
    if isinstance(state, np.integer):
        return int(state)
    return state


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
    # np.require keeps 0-d buffers (num_batches_tracked) 0-d; ascontiguousarray makes them (1,)
    tensors = {f"model.{name}": np.require(a, requirements="C") for name, a in state_arrays(network).items()}
    state = network.optimizer.state
    if state:
        for name, per_param in zip(params, state, strict=True):
            for key, value in per_param.items():
                tensors[f"optimizer.{name}.{key}"] = np.require(value, requirements="C")
    if rng_state is None and rng is not None:
        rng_state = rng.bit_generator.state
    layer_rngs = {
        str(i): _jsonable(layer.rng.bit_generator.state)
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
        "rng": json.dumps(_jsonable(rng_state)),
        "layer_rngs": json.dumps(layer_rngs),
        "fit": json.dumps(fit_settings or {}),
    })
    metadata[DIGEST_KEY] = tensor_digest(tensors, metadata)
    atomic_write_bytes(path, to_bytes(tensors, metadata=metadata), what="checkpoint")


# -- the run lock ------------------------------------------------------------------------


class CheckpointLock:
    """An advisory lock (``fcntl.flock``) held by the run that writes checkpoints to ``path``.

    The lock is taken on a small file beside the checkpoint, ``.NAME.lock``
    (the checkpoint itself is replaced by every save, so a lock on it would
    be on an old file). It is never deleted: removing a lock file lets two
    runs lock two different files. The kernel releases the lock when the
    holder exits or dies, in whatever container or PID namespace, so a
    crashed run never leaves a path locked. Where the file system has no
    locks (some network file systems), the run goes on unlocked.

    Raises ``CheckpointInUseError`` (a ``BlockingIOError``) if another run holds it.
    """

    def __init__(self, path: str | PathLike) -> None:
        self.path = os.fspath(path)
        folder, name = os.path.split(os.path.abspath(self.path))
        self.lock_path = os.path.join(folder, f".{name[:200]}.lock")
        self._fd = -1

    def acquire(self) -> CheckpointLock:
        if fcntl is None or self._fd >= 0:
            return self
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise CheckpointInUseError(
                errno.EWOULDBLOCK,
                f"checkpoint {self.path} is in use by another training run (it holds the lock "
                f"on {self.lock_path}); wait for that run to end, or give this run another "
                "checkpoint path",
            ) from None
        except OSError:
            os.close(fd)  # no locks on this file system
            return self
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    @property
    def held(self) -> bool:
        return self._fd >= 0

    def __enter__(self) -> CheckpointLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()


def checkpoint_lock(path: str | PathLike) -> CheckpointLock:
    """``with checkpoint_lock(path):`` holds the run lock on checkpoint ``path`` (see ``CheckpointLock``)."""
    return CheckpointLock(path)


def holds_checkpoint_lock(fit: Any) -> Any:
    """Decorate ``fit`` so that a call with ``checkpoint=PATH`` holds PATH's run lock throughout.

    A second run on the same path raises ``CheckpointInUseError`` before
    training. Where the checkpoint's directory does not exist, ``fit``'s own
    check reports it.
    """
    import functools
    import inspect

    signature = inspect.signature(fit)

    @functools.wraps(fit)
    def locked(*args: Any, **kwargs: Any) -> Any:
        path = signature.bind_partial(*args, **kwargs).arguments.get("checkpoint")
        if path is None or not os.path.isdir(os.path.dirname(os.path.abspath(os.fspath(path)))):
            return fit(*args, **kwargs)
        with CheckpointLock(path):
            return fit(*args, **kwargs)

    return locked


# -- loading -----------------------------------------------------------------------------


def load_checkpoint(path: str | PathLike) -> Checkpoint:
    """Read and validate the checkpoint at ``path``.

    Raises
    ------
    ModelFileError
        If the file is not a checkpoint, is corrupt (the digest does not
        match), holds a value its schema refuses, or was written by a newer
        checkpoint format (saying so).
    FileNotFoundError
        If there is no file at ``path``.
    """
    try:
        with open_safetensors(path, kind="checkpoint file") as st:
            return checkpoint_from_file(st)
    except (MemoryError, RecursionError) as error:  # a file must never end in these
        what = "memory" if isinstance(error, MemoryError) else "stack"
        raise ModelFileError(f"{os.fspath(path)}: not enough {what} to load it") from None


def checkpoint_from_file(st: SafetensorsFile) -> Checkpoint:
    """Validate an open checkpoint file as untrusted input, then read it.

    Order: format and version; names, shapes and dtypes in the header against
    the architecture; counters; the digest (streamed); the other metadata
    against their schemas; the memory the network needs; then the network is
    built and the tensors are read straight into it and checked.
    """
    path, metadata = st.path, st.metadata
    if metadata.get("format") == "chainrule":
        raise ModelFileError(f"{path} is a chainrule model file, not a training checkpoint")
    check_format(metadata, path, _FORMAT, CHECKPOINT_FORMAT_VERSION, "checkpoint")
    stray = sorted(k for k in st.tensors if not k.startswith(("model.", "optimizer.")))
    if stray:
        raise ModelFileError(f"{path}: invalid checkpoint metadata: unexpected tensor {quote(stray[0])}")
    model = {k[len("model."):]: v for k, v in st.tensors.items() if k.startswith("model.")}
    moments = {k[len("optimizer."):]: v for k, v in st.tensors.items() if k.startswith("optimizer.")}
    config, _ = model_config(metadata, model, path)
    try:
        epoch, step, steps = (_count(metadata, key) for key in ("epoch", "step", "optimizer_steps"))
        keys = _optimizer_keys(config["optimizer"])
        _check_moment_headers(moments, model, keys)
    except ValueError as error:
        raise ModelFileError(f"{path}: invalid checkpoint metadata: {error}") from None
    verify_digest(st, required=True)
    try:
        rng_state = metadata_json(metadata, "rng")
        if rng_state is not None:
            check_generator_state(rng_state)
        layer_rngs = _layer_rngs(metadata_json(metadata, "layer_rngs"), len(config["layers"]))
        history = _history(metadata_json(metadata, "history"), epoch)
        fit_settings = _fit_settings(metadata_json(metadata, "fit"), step)
    except (TypeError, ValueError, KeyError) as error:
        raise ModelFileError(f"{path}: invalid checkpoint metadata: {cut(str(error))}") from None
    # The network (weights and gradient buffers) and the optimizer's state.
    check_load_memory(2 * sum(t.nbytes for t in model.values())
                      + sum(t.nbytes for t in moments.values()), path)
    network = network_from_config(config, path)
    for index in layer_rngs:
        if not isinstance(getattr(network.layers[index], "rng", None), np.random.Generator):
            raise ModelFileError(f"{path}: invalid checkpoint metadata: layer_rngs names layer "
                                 f"{index} ({config['layers'][index]['type']}), which has no "
                                 "random generator")
    try:
        compare_tensors({n: (a.shape, a.dtype.name) for n, a in state_arrays(network).items()}, model)
        optimizer_state = _read_optimizer_state(st, network, moments, keys, steps)
        fill_network(network, st, {name: f"model.{name}" for name in state_arrays(network)})
    except ValueError as error:
        if isinstance(error, ModelFileError):
            raise
        raise ModelFileError(f"{path}: invalid checkpoint metadata: {cut(str(error))}") from None
    except MemoryError:
        raise ModelFileError(f"{path}: not enough memory to read its tensors") from None
    return Checkpoint(
        path=path, epoch=epoch, step=step, config=config, parameters=state_arrays(network),
        optimizer_state=optimizer_state, optimizer_steps=steps, rng_state=rng_state,
        layer_rng_states=layer_rngs, history=history, fit_settings=fit_settings,
        _metadata=dict(metadata), _network=network,
    )


# -- schemas -----------------------------------------------------------------------------

_U32, _U64, _U128 = 2**32, 2**64, 2**128


def _uint(bound: int) -> Any:
    return lambda v: type(v) is int and 0 <= v < bound


def _uints(count: int, bound: int) -> Any:
    return lambda v: isinstance(v, list) and len(v) == count and all(
        type(x) is int and 0 <= x < bound for x in v)


_FLAG = lambda v: type(v) is int and v in (0, 1)  # noqa: E731

# bit_generator name -> {field: check} (nested dicts for "state"), as NumPy writes them.
_GENERATOR_SCHEMAS: dict[str, dict[str, Any]] = {
    "PCG64": {"state": {"state": _uint(_U128), "inc": lambda v: _uint(_U128)(v) and v % 2 == 1},
              "has_uint32": _FLAG, "uinteger": _uint(_U32)},
    "MT19937": {"state": {"key": _uints(624, _U32),
                          "pos": lambda v: type(v) is int and 0 <= v <= 624}},
    "Philox": {"state": {"counter": _uints(4, _U64), "key": _uints(2, _U64)},
               "buffer": _uints(4, _U64), "buffer_pos": lambda v: type(v) is int and 0 <= v <= 4,
               "has_uint32": _FLAG, "uinteger": _uint(_U32)},
    "SFC64": {"state": {"state": _uints(4, _U64)}, "has_uint32": _FLAG, "uinteger": _uint(_U32)},
}
_GENERATOR_SCHEMAS["PCG64DXSM"] = _GENERATOR_SCHEMAS["PCG64"]
# Only NumPy's own bit generators may be named by a file.
_BIT_GENERATORS = tuple(_GENERATOR_SCHEMAS)


def check_generator_state(state: Any) -> str:
    """Check a ``bit_generator.state`` dict field by field; return the generator's name.

    Every field must be present, with no others, each an integer in NumPy's
    range. An MT19937 state whose 19937 significant bits are all zero is
    refused: that generator then outputs zeros for ever, and
    ``rng.integers`` loops without end rejecting them.

    Raises ``ValueError`` naming the field.
    """
    name = state.get("bit_generator") if isinstance(state, dict) else None
    if name not in _GENERATOR_SCHEMAS:
        raise ValueError(f"unsupported random generator state {quote(name)}")

    def check(value: Any, schema: dict[str, Any], where: str) -> None:
        if not isinstance(value, dict) or set(value) != set(schema):
            raise ValueError(f"invalid {name} generator state: {where} must have exactly the "
                             f"fields {sorted(schema)}")
        for key, test in schema.items():
            if isinstance(test, dict):
                check(value[key], test, f"{where}.{key}")
            elif not test(value[key]):
                raise ValueError(f"invalid {name} generator state: {where}.{key} is out of "
                                 f"range: {quote(value[key])}")

    check(state, {"bit_generator": lambda v: True, **_GENERATOR_SCHEMAS[name]}, "state")
    if name == "MT19937":
        key = state["state"]["key"]
        # The state is 19937 bits: the top bit of key[0] and all of key[1:].
        if key[0] & 0x80000000 == 0 and not any(key[1:]):
            raise ValueError("invalid MT19937 generator state: it is all zeros, which "
                             "would produce zeros for ever")
    return name


def generator_from_state(state: Any, path: str = "checkpoint") -> np.random.Generator:
    """A ``numpy.random.Generator`` set to ``state`` (a ``bit_generator.state`` dict).

    Raises ``ModelFileError`` if ``check_generator_state`` refuses the state.
    """
    try:
        name = check_generator_state(state)
        bit_generator = getattr(np.random, name)()
        if name == "MT19937":
            state = {**state, "state": {**state["state"],
                                        "key": np.array(state["state"]["key"], np.uint32)}}
        elif name in ("Philox", "SFC64"):
            state = json.loads(json.dumps(state))
            inner = state["state"]
            for key in inner:
                inner[key] = np.array(inner[key], np.uint64)
            if "buffer" in state:
                state["buffer"] = np.array(state["buffer"], np.uint64)
        bit_generator.state = state
    except (TypeError, ValueError, KeyError, OverflowError) as error:
        raise ModelFileError(f"{path}: {cut(str(error))}") from None
    return np.random.Generator(bit_generator)


def _count(metadata: dict[str, str], key: str) -> int:
    text = metadata.get(key)
    if text is None:
        raise ValueError(f"the metadata has no {key!r} field")
    if not (text.isascii() and text.isdigit()) or len(text) > 15:
        raise ValueError(f"{key} must be a non-negative integer, got {quote(text)}")
    return int(text)


def _optimizer_keys(config: dict[str, Any]) -> tuple[str, ...]:
    from .optimizers import get_optimizer

    return tuple(get_optimizer(dict(config))._new_state(np.zeros(1)))


def _check_moment_headers(moments: dict[str, Any], model: dict[str, Any], keys: tuple[str, ...]) -> None:
    """Each optimizer tensor is ``PARAM.KEY`` for a model tensor, with its dtype and shape."""
    for name, info in moments.items():
        param, _, key = name.rpartition(".")
        target = model.get(param)
        if target is None or key not in keys:
            raise ValueError(f"unexpected optimizer tensor {quote('optimizer.' + name)}")
        if info.shape != target.shape or info.dtype_name != target.dtype_name:
            raise ValueError(
                f"optimizer tensor {quote('optimizer.' + name)} is {info.dtype_name} {info.shape}, "
                f"expected {target.dtype_name} {target.shape}"
            )


def _read_optimizer_state(st: SafetensorsFile, network: Any, moments: dict[str, Any],
                          keys: tuple[str, ...], steps: int) -> list[dict[str, np.ndarray]]:
    """The per-parameter state in ``network.parameters()`` order, read and checked."""
    if not moments:
        return []
    params = network.parameters()
    wanted = {f"{name}.{key}" for name in params for key in keys}
    extra = sorted(set(moments) - wanted)
    if extra:
        raise ValueError(f"unexpected optimizer tensor {quote('optimizer.' + extra[0])}")
    state = []
    for name, param in params.items():
        entry = {}
        for key in keys:
            full = f"optimizer.{name}.{key}"
            if f"{name}.{key}" not in moments:
                raise ValueError(f"missing optimizer tensor {quote(full)}")
            value = st.read(full, param.dtype)
            check_values(full, value, st.path)
            entry[key] = value
        state.append(entry)
    if steps == 0 and any(state):
        raise ValueError("optimizer state is present but optimizer_steps is 0")
    return state


def _layer_rngs(value: Any, n_layers: int) -> dict[int, dict[str, Any]]:
    if not isinstance(value, dict):
        raise TypeError("layer_rngs must be an object")
    states = {}
    for key, state in value.items():
        if not (key.isascii() and key.isdigit() and len(key) <= 6) or int(key) >= n_layers:
            raise ValueError(f"layer_rngs names no layer: {quote(key)}")
        check_generator_state(state)
        states[int(key)] = state
    return states


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _history(value: Any, epoch: int) -> Any:
    from .training import History

    if not isinstance(value, dict) or set(value) != {"epochs", "metrics"}:
        raise TypeError("history must be an object with 'epochs' and 'metrics'")
    epochs, metrics = value["epochs"], value["metrics"]
    if not (isinstance(epochs, list) and len(epochs) <= MAX_EPOCHS
            and all(type(e) is int for e in epochs)):
        raise TypeError("history epochs must be a list of integers")
    if any(not 0 <= e < epoch for e in epochs) or any(a >= b for a, b in zip(epochs, epochs[1:])):
        raise ValueError(f"history epochs must increase and stay below epoch {epoch}")
    if not isinstance(metrics, dict) or len(metrics) > MAX_METRICS:
        raise TypeError(f"history metrics must be an object of at most {MAX_METRICS} metrics")
    history = History()
    history.epochs = list(epochs)
    for key, values in metrics.items():
        if len(key) > 80:
            raise ValueError(f"history metric name {quote(key)} is too long")
        if not (isinstance(values, list) and len(values) == len(epochs)):
            raise ValueError(f"history metric {quote(key)} does not have one value per epoch")
        if not all(_number(v) for v in values):
            raise TypeError(f"history metric {quote(key)} holds non-numbers")
        history.metrics[key] = [float(v) for v in values]
    return history


def _fit_settings(value: Any, step: int) -> dict[str, Any]:
    """``fit``'s settings: known keys checked by type and range, others plain JSON scalars."""
    if not isinstance(value, dict):
        raise TypeError("fit settings must be an object")
    checks = {
        "batch_size": lambda v: type(v) is int and v >= 1,
        "shuffle": lambda v: isinstance(v, bool),
        "samples": lambda v: type(v) is int and v >= 0,
        "seed": lambda v: v is None or type(v) is int,
        "epoch_loss": lambda v: (isinstance(v, list) and len(v) == 2 and _number(v[0])
                                 and math.isfinite(v[0]) and type(v[1]) is int and v[1] >= 0),
        "validation_split": lambda v: _number(v) and 0 < v < 1,
        "split_seed": lambda v: v is None or (type(v) is int and 0 <= v < 2**63),
    }
    for key, item in value.items():
        test = checks.get(key)
        if test is not None:
            if not test(item):
                raise ValueError(f"fit setting {key!r} is invalid: {quote(item)}")
        elif len(key) > 80 or not (item is None or isinstance(item, (bool, int, float))
                                   or (isinstance(item, str) and len(item) <= 80)
                                   or (isinstance(item, list) and len(item) <= 4096
                                       and all(_number(x) for x in item))):
            raise ValueError(f"fit setting {quote(key)} is not a plain value")
    if step:
        if "epoch_loss" not in value:
            raise ValueError("a checkpoint stopped mid-epoch needs fit setting 'epoch_loss'")
        batch_size, samples = value.get("batch_size"), value.get("samples")
        if batch_size is not None and samples is not None and step >= -(-samples // batch_size):
            raise ValueError(f"step {step} is not inside an epoch of {samples} samples in "
                             f"batches of {batch_size}")
    return value


def _architecture_difference(path: str, theirs: list[dict], own: list[dict]) -> str:
    def describe(configs: list[dict], i: int) -> str:
        if i >= len(configs):
            return "nothing"
        args = ", ".join(f"{k}={v!r}" for k, v in configs[i].items() if k != "type")
        return cut(f"{configs[i]['type']}({args})", 200)

    i = next(
        k for k in range(max(len(theirs), len(own)))
        if k >= len(theirs) or k >= len(own) or theirs[k] != own[k]
    )
    return (
        f"checkpoint {path} was saved from a different architecture: layer {i} is "
        f"{describe(theirs, i)} in the checkpoint but {describe(own, i)} in this network "
        f"({len(theirs)} vs {len(own)} layers)"
    )
