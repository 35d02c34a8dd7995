"""Saving and loading models as ``.safetensors`` files, never pickle.

A model file holds the parameters as plain tensors named like a PyTorch
``nn.Sequential`` state dict (``"0.weight"``, ``"0.bias"``, ``"2.weight"``...)
and, as JSON strings in the safetensors metadata, the architecture, the
loss, the optimizer's settings and the chainrule version. Loading parses
data only: nothing in a file can run code.
"""

from __future__ import annotations

import json
import os
import tempfile
from os import PathLike
from typing import Any

import numpy as np

from ._version import __version__
from .errors import ModelFileError

__all__ = ["save", "load", "atomic_write_bytes", "FORMAT_VERSION"]

#: Version of the metadata layout; a file from a newer version is refused.
FORMAT_VERSION = 1
_FORMAT = "chainrule"


def atomic_write_bytes(path: str | PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half.

    The bytes go to a temporary file in the same directory, are flushed and
    fsynced, and the temporary file is renamed over ``path`` (atomic on POSIX).
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".part", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def save(network: Any, path: str | PathLike) -> None:
    """Write ``network`` to ``path`` (a ``.safetensors`` file), atomically."""
    from safetensors.numpy import save as to_bytes

    tensors = {name: np.ascontiguousarray(a) for name, a in network.parameters().items()}
    config = network.get_config()
    metadata = {
        "format": _FORMAT,
        "format_version": str(FORMAT_VERSION),
        "chainrule_version": __version__,
        "architecture": json.dumps(config["layers"]),
        "loss": json.dumps(config["loss"]),
        "optimizer": json.dumps(config["optimizer"]),
        "dtype": config["dtype"],
    }
    atomic_write_bytes(path, to_bytes(tensors, metadata=metadata))


def read_safetensors(path: str | PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Tensors and metadata of a safetensors file; any corruption is a ``ModelFileError``."""
    from safetensors import SafetensorError, safe_open

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no model file at {path}")
    try:
        with safe_open(path, framework="numpy") as f:
            metadata = dict(f.metadata() or {})
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except (SafetensorError, OSError, ValueError, TypeError, OverflowError) as error:
        raise ModelFileError(f"{path} is not a readable safetensors file: {error}") from None
    return tensors, metadata


def load(path: str | PathLike) -> Any:
    """Rebuild the ``Network`` saved at ``path`` by ``Network.save``.

    Raises
    ------
    ModelFileError
        If the file is corrupt, was written by a newer chainrule format, or
        its tensors do not match its architecture (the message names the tensor).
    """
    from .layers import layer_from_config
    from .losses import get_loss
    from .network import Network
    from .optimizers import get_optimizer

    tensors, metadata = read_safetensors(path)
    if metadata.get("format") != _FORMAT:
        raise ModelFileError(
            f"{os.fspath(path)} has no chainrule metadata; it may be a plain state dict"
        )
    try:
        version = int(metadata.get("format_version", ""))
    except ValueError:
        raise ModelFileError(f"{os.fspath(path)}: unreadable format_version") from None
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{os.fspath(path)} was written in model format version {version} by chainrule "
            f"{metadata.get('chainrule_version', '?')}; this chainrule ({__version__}) reads "
            f"up to version {FORMAT_VERSION}. Upgrade chainrule to load it."
        )
    try:
        layer_configs = json.loads(metadata["architecture"])
        _check_claimed_size(layer_configs, tensors)
        loss = get_loss(json.loads(metadata["loss"]))
        optimizer = get_optimizer(json.loads(metadata.get("optimizer", '{"type": "SGD"}')))
        layers = [layer_from_config(c) for c in layer_configs]
        network = Network(layers, loss=loss, optimizer=optimizer, dtype=metadata["dtype"])
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise ModelFileError(f"{os.fspath(path)}: invalid architecture metadata: {error}") from None
    try:
        network.load_parameters(tensors)
    except ValueError as error:
        raise ModelFileError(f"{os.fspath(path)}: {error}") from None
    return network


def _check_claimed_size(layer_configs: Any, tensors: dict[str, np.ndarray]) -> None:
    """Refuse an architecture that claims more parameters than the file holds.

    Checked before any layer is built, so a hostile header cannot make us
    allocate more memory than the file itself justifies.
    """
    if not isinstance(layer_configs, list):
        raise ValueError("architecture must be a list of layers")
    claimed = 0
    for config in layer_configs:
        if isinstance(config, dict) and config.get("type") == "Dense":
            n_in, n_out = config.get("in_features"), config.get("out_features")
            if not all(isinstance(v, int) and v > 0 for v in (n_in, n_out)):
                raise ValueError(f"bad Dense sizes {n_in!r}, {n_out!r}")
            claimed += n_in * n_out + (n_out if config.get("bias", True) else 0)
    held = sum(int(t.size) for t in tensors.values())
    if claimed > held:
        raise ValueError(f"the architecture needs {claimed} parameters but the file holds {held}")
