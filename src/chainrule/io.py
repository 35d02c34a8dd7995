"""Saving and loading models as ``.safetensors`` files, never pickle.

A model file holds the parameters as plain tensors named like a PyTorch
``nn.Sequential`` state dict (``"0.weight"``, ``"0.bias"``, ``"2.weight"``...)
and, as JSON strings in the safetensors metadata, the architecture, the
loss, the optimizer's settings, the chainrule version and a SHA-256 digest
of everything else in the file.

Loading treats the file as hostile: it parses data only (nothing in a file
can run code), checks every metadata field against a fixed schema, refuses
an architecture that needs more parameters than the file holds before
building anything, and verifies the digest last. Whatever the bytes, the
only errors are ``ModelFileError`` (a ``ValueError``) and
``FileNotFoundError``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
from collections.abc import Iterator
from os import PathLike
from typing import Any, BinaryIO

import numpy as np

from ._version import __version__
from .errors import ModelFileError

__all__ = ["FORMAT_VERSION", "atomic_write", "atomic_write_bytes", "load", "read_safetensors", "save"]

#: Version of the metadata layout; a file from a newer version is refused.
#: 1: architecture, loss, optimizer, dtype. 2: adds the SHA-256 digest, required from then on
#: (so that flipping a bit in its key cannot switch the check off).
FORMAT_VERSION = 2
_FORMAT = "chainrule"
#: Metadata key of the digest; the digest covers every other key and all tensors.
DIGEST_KEY = "sha256"
# An MLP with more layers than this is not a model but an attack on memory:
# each parameter-free layer costs ~1 KB of Python objects for ~16 bytes of JSON.
_MAX_LAYERS = 1000
_FLOAT_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))


# -- writing -------------------------------------------------------------------


@contextlib.contextmanager
def atomic_write(path: str | PathLike) -> Iterator[BinaryIO]:
    """Open a temporary file beside ``path``; on success, rename it onto ``path``.

    Readers see the old file or the new one, never half of one: the data goes
    to a temporary file in the same directory (``.NAME.PID.RANDOM.part``, with
    the usual umask permissions), is flushed and fsynced, and the temporary
    file is renamed over ``path`` (atomic on POSIX); then the directory is
    fsynced so the rename survives a power cut. If the body raises, the
    temporary file is removed, ``path`` is untouched and the error propagates
    unchanged. A process killed mid-write leaves only its ``.part`` file
    behind, which the next write to the same path removes once that process
    is gone.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    stem = _temp_stem(path)
    _remove_stale_temp_files(directory, stem)
    fd, tmp = _open_temp(directory, stem)
    try:
        with open(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)


def atomic_write_bytes(path: str | PathLike, data: bytes, *, what: str = "file") -> None:
    """Write ``data`` to ``path`` with ``atomic_write``.

    Raises
    ------
    OSError
        Of the original kind (``PermissionError`` for a read-only directory,
        errno ``ENOSPC`` for a full disk...), with a message naming ``path``
        and saying that the previous file at ``path`` is unchanged.
    """
    try:
        with atomic_write(path) as f:
            _write_all(f.fileno(), data)
    except OSError as error:
        raise _save_error(error, os.fspath(path), what) from error


def _open_temp(directory: str, stem: str) -> tuple[int, str]:
    """Create a new, empty temporary file; unlike ``mkstemp``'s 0600 it gets umask permissions."""
    while True:
        tmp = os.path.join(directory, f"{stem}{os.getpid()}.{os.urandom(6).hex()}.part")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue


def _write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is out (a single write may be short)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _temp_stem(path: str) -> str:
    # Truncated so that stem + pid + random part stays within NAME_MAX (255).
    return f".{os.path.basename(path)[:120]}."


def _remove_stale_temp_files(directory: str, stem: str) -> None:
    """Delete ``.part`` files of earlier writes to the same path whose writer has died."""
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if not (name.startswith(stem) and name.endswith(".part")):
            continue
        pid_text = name[len(stem):].split(".", 1)[0]
        if not pid_text.isdigit() or _process_alive(int(pid_text)):
            continue
        try:
            os.unlink(os.path.join(directory, name))
        except OSError:
            pass


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # someone else's process (or an odd number): leave its file alone
    return True


def _fsync_directory(directory: str) -> None:
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass  # some filesystems cannot fsync a directory; the rename already happened
    finally:
        os.close(dir_fd)


def _save_error(error: OSError, path: str, what: str) -> OSError:
    reason = error.strerror or str(error)
    hint = ""
    if error.errno == errno.ENOSPC:
        hint = " (the disk is full)"
    elif error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = " (the directory is not writable)"
    previous = "the previous file was left unchanged" if os.path.exists(path) else "nothing was written"
    # OSError(errno, message) picks the matching subclass (PermissionError...).
    return OSError(error.errno, f"could not save {what} to {path}: {reason}{hint}; {previous}")


def tensor_digest(tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> str:
    """SHA-256 over every metadata entry but the digest itself and every tensor.

    Each piece is length-prefixed, so no two different files hash the same
    sequence of bytes; tensors are hashed little-endian, as safetensors stores them.
    """
    h = hashlib.sha256()

    def piece(data: bytes) -> None:
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)

    for key in sorted(metadata):
        if key != DIGEST_KEY:
            piece(key.encode())
            piece(str(metadata[key]).encode())
    for name in sorted(tensors):
        array = np.asarray(tensors[name])
        piece(name.encode())
        piece(array.dtype.name.encode())
        piece(repr(tuple(array.shape)).encode())
        piece(np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes())
    return h.hexdigest()


def save(network: Any, path: str | PathLike, *, metadata: dict[str, str] | None = None) -> None:
    """Write ``network`` to ``path`` (a ``.safetensors`` file), atomically.

    ``metadata``: extra string entries stored beside the model's own (and
    covered by its digest), e.g. a scikit-learn estimator's label encoding;
    they may not replace the model's own keys.
    """
    from safetensors.numpy import save as to_bytes

    tensors = {name: np.ascontiguousarray(a) for name, a in network.parameters().items()}
    extra = dict(metadata or {})
    metadata = model_metadata(network)
    clash = sorted(set(extra) & (set(metadata) | {DIGEST_KEY}))
    if clash:
        raise ValueError(f"metadata may not replace the model's own keys: {clash}")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in extra.items()):
        raise TypeError("metadata keys and values must be strings")
    metadata.update(extra)
    metadata[DIGEST_KEY] = tensor_digest(tensors, metadata)
    atomic_write_bytes(path, to_bytes(tensors, metadata=metadata), what="model")


def model_metadata(network: Any, format_name: str = _FORMAT, version: int = FORMAT_VERSION) -> dict[str, str]:
    """The JSON-string metadata describing ``network`` (shared with checkpoints)."""
    config = network.get_config()
    return {
        "format": format_name,
        "format_version": str(version),
        "chainrule_version": __version__,
        "architecture": json.dumps(config["layers"]),
        "loss": json.dumps(config["loss"]),
        "optimizer": json.dumps(config["optimizer"]),
        "dtype": config["dtype"],
    }


# -- reading -------------------------------------------------------------------


def read_safetensors(path: str | PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Tensors and metadata of a safetensors file; any corruption is a ``ModelFileError``.

    safetensors checks the header against the file size before reading, so
    a header claiming huge tensors fails here without allocating them.
    """
    from safetensors import safe_open

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no model file at {path}")
    try:
        with safe_open(path, framework="numpy") as f:
            metadata = dict(f.metadata() or {})
            names = f.keys()
            tensors = {name: f.get_tensor(name) for name in names}
    except MemoryError:
        raise
    except Exception as error:  # noqa: BLE001 -- the library's own errors, and NumPy's for odd dtypes
        raise ModelFileError(f"{path} is not a readable safetensors file: {error}") from None
    return tensors, metadata


def check_format(
    metadata: dict[str, str], path: str, format_name: str, version: int, kind: str
) -> int:
    """Refuse a file of another kind, or one written by a newer format version (saying so).

    Returns the file's format version.
    """
    found = metadata.get("format")
    if found != format_name:
        raise ModelFileError(f"{path} is not a chainrule {kind} (format {found!r})")
    try:
        file_version = int(metadata.get("format_version", ""))
    except ValueError:
        raise ModelFileError(f"{path}: unreadable format_version") from None
    if file_version > version:
        raise ModelFileError(
            f"{path} was written in {kind} format version {file_version} by chainrule "
            f"{metadata.get('chainrule_version', '?')}; this chainrule ({__version__}) reads "
            f"up to version {version}. Upgrade chainrule to load it."
        )
    if file_version < 1:
        raise ModelFileError(f"{path}: invalid format_version {file_version}")
    return file_version


def check_digest(
    tensors: dict[str, np.ndarray], metadata: dict[str, str], path: str, required: bool = True
) -> None:
    """Compare the stored digest with the file's contents (files from before digests have none)."""
    stored = metadata.get(DIGEST_KEY)
    if stored is None:
        if required:
            raise ModelFileError(f"{path} is corrupt: its SHA-256 digest ({DIGEST_KEY!r}) is missing")
        return
    if tensor_digest(tensors, metadata) != stored:
        raise ModelFileError(
            f"{path} is corrupt: its contents do not match the SHA-256 digest stored in it"
        )


def load(path: str | PathLike, architecture: Any = None) -> Any:
    """Load a model file: a chainrule model, a training checkpoint, or a plain state dict.

    Parameters
    ----------
    path : a ``.safetensors`` file
    architecture : Network, optional
        For a state dict written by another tool (PyTorch's
        ``safetensors.torch.save_file(model.state_dict(), path)``): a network
        of the same shape, e.g. ``Network.from_sizes([784, 128, 10])``, whose
        parameters are overwritten with the file's and which is returned.
        Tensor names must be this network's (``"0.weight"``, ``"2.bias"``...,
        the indices of ``nn.Sequential``); float16/32/64 tensors are cast to
        the network's dtype.

    Raises
    ------
    ModelFileError
        If the file is corrupt, was written by a newer chainrule format, or
        its tensors do not match the architecture (the message names the tensor).
    FileNotFoundError
        If there is no file at ``path``.
    """
    path = os.fspath(path)
    tensors, metadata = read_safetensors(path)
    kind = metadata.get("format")
    if kind == "chainrule-checkpoint":
        from .checkpoint import checkpoint_from_contents

        checkpoint = checkpoint_from_contents(tensors, metadata, path)
        if architecture is None:
            return checkpoint.build_network()
        tensors, metadata = checkpoint.parameters, {}
    if architecture is not None:
        return _load_into(architecture, tensors, path)
    if kind != _FORMAT:
        raise ModelFileError(
            f"{path} has no chainrule metadata (format {kind!r}); if it is a plain state dict, "
            f"pass its shape: chainrule.load(path, architecture=Network.from_sizes([...]))"
        )
    version = check_format(metadata, path, _FORMAT, FORMAT_VERSION, "model")
    network = build_network(metadata, tensors, path, digest_of=tensors,
                            digest_required=version >= 2)
    _load_parameters(network, tensors, path)
    return network


def _load_into(network: Any, tensors: dict[str, np.ndarray], path: str) -> Any:
    from .network import Network

    if not isinstance(network, Network):
        raise TypeError(
            "architecture must be a chainrule Network, e.g. "
            f"Network.from_sizes([784, 128, 10], activation='relu'); got {network!r}"
        )
    tensors = dict(tensors)
    for name, array in tensors.items():
        if array.dtype.name == "bfloat16":  # NumPy knows it once ml_dtypes is imported (onnx does)
            tensors[name] = array.astype(np.float32)  # exact: bfloat16 is float32's top half
        elif array.dtype not in _FLOAT_DTYPES:
            raise ModelFileError(
                f"{path}: tensor {name!r} has dtype {array.dtype}; weights must be float16, "
                f"float32 or float64"
            )
    _load_parameters(network, tensors, path)
    return network


def _load_parameters(network: Any, tensors: dict[str, np.ndarray], path: str) -> None:
    try:
        network.load_parameters(tensors)
    except ValueError as error:
        held = ", ".join(f"{k} {tuple(v.shape)}" for k, v in list(tensors.items())[:12])
        more = " ..." if len(tensors) > 12 else ""
        raise ModelFileError(f"{path}: {error}. The file holds: {held or 'no tensors'}{more}") from None


def build_network(
    metadata: dict[str, str],
    tensors: dict[str, np.ndarray],
    path: str,
    digest_of: dict[str, np.ndarray] | None = None,
    digest_required: bool = True,
) -> Any:
    """A zero-weight ``Network`` from validated metadata, refusing anything the file cannot back.

    Every field is checked against a schema, and the state dict the
    architecture implies against the tensors the file actually holds, before
    any layer is built, so memory use stays proportional to the file's size.
    With ``digest_of`` (all the file's tensors), the stored digest is verified
    too, after those checks (so their messages say what is wrong) and before
    building.
    """
    from .layers import layer_from_config
    from .losses import get_loss
    from .network import Network
    from .optimizers import get_optimizer

    dtype = metadata.get("dtype")
    if dtype not in ("float32", "float64"):
        raise ModelFileError(f"{path}: dtype must be 'float32' or 'float64', got {dtype!r:.40}")
    for name, array in tensors.items():
        if array.dtype != np.dtype(dtype):
            raise ModelFileError(
                f"{path}: tensor {name!r} has dtype {array.dtype}, the model's is {dtype}"
            )
    try:
        layer_configs = _check_layers(json.loads(metadata["architecture"]))
    except MemoryError:
        raise
    except Exception as error:  # noqa: BLE001 -- whatever a hostile field provokes, report it as the file's fault
        raise ModelFileError(f"{path}: invalid architecture metadata: {error}") from None
    try:
        _check_tensor_shapes(layer_configs, tensors)
    except ValueError as error:
        raise ModelFileError(f"{path}: {error}") from None
    if digest_of is not None:
        check_digest(digest_of, metadata, path, required=digest_required)
    try:
        loss = get_loss(_check_json_object(json.loads(metadata["loss"]), "loss"))
        optimizer = get_optimizer(
            _check_json_object(json.loads(metadata.get("optimizer", '{"type": "SGD"}')), "optimizer")
        )
        layers = [layer_from_config(c) for c in layer_configs]
        return Network(layers, loss=loss, optimizer=optimizer, dtype=dtype)
    except MemoryError:
        raise
    except Exception as error:  # noqa: BLE001 -- whatever a hostile field provokes, report it as the file's fault
        raise ModelFileError(f"{path}: invalid architecture metadata: {error}") from None


# Settings each built-in layer accepts, with a check per value.
def _positive_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


_LAYER_SCHEMA: dict[str, dict[str, Any]] = {
    "Dense": {"in_features": _positive_int, "out_features": _positive_int,
              "bias": lambda v: isinstance(v, bool)},
    "Dropout": {"p": lambda v: _finite(v) and 0 <= v < 1},
    "LeakyReLU": {"negative_slope": _finite},
    "Sigmoid": {"scale": _finite},
    "Identity": {}, "ReLU": {}, "Tanh": {}, "Softmax": {},
}
_REQUIRED = {"Dense": ("in_features", "out_features")}


def _check_layers(configs: Any) -> list[dict[str, Any]]:
    from .layers import _REGISTRY

    if not isinstance(configs, list) or not configs:
        raise ValueError("architecture must be a non-empty list of layers")
    if len(configs) > _MAX_LAYERS:
        raise ValueError(f"architecture has {len(configs)} layers; at most {_MAX_LAYERS} are read")
    for i, config in enumerate(configs):
        if not isinstance(config, dict) or not isinstance(config.get("type"), str):
            raise TypeError(f"layer {i} is not a {{'type': ...}} object")
        kind = config["type"]
        schema = _LAYER_SCHEMA.get(kind)
        if schema is None:
            # A Layer subclass defined by the user's own code (its import ran it, not
            # this file); the file may only hand it plain JSON scalars.
            if kind not in _REGISTRY:
                raise ValueError(f"layer {i} has unknown type {kind!r}")
            for key, value in config.items():
                if not isinstance(value, (str, int, float, bool, type(None))):
                    raise TypeError(f"layer {i} ({kind}): setting {key!r} is not a plain value")
            continue
        for key, value in config.items():
            if key == "type":
                continue
            if key not in schema:
                raise ValueError(f"layer {i} ({kind}) has unexpected setting {key!r}")
            if not schema[key](value):
                raise ValueError(f"layer {i} ({kind}) has invalid {key} {value!r}")
        for key in _REQUIRED.get(kind, ()):
            if key not in config:
                raise ValueError(f"layer {i} ({kind}) lacks {key!r}")
    return configs


def _check_tensor_shapes(configs: list[dict[str, Any]], tensors: dict[str, np.ndarray]) -> None:
    """Compare the state dict the architecture implies with the file's, before building it.

    This is what keeps a header that claims a 10**6 x 10**6 layer from
    allocating a terabyte: the claim is checked against the tensors present.
    """
    expected: dict[str, tuple[int, ...]] = {}
    custom = set()
    for i, config in enumerate(configs):
        if config["type"] == "Dense":
            expected[f"{i}.weight"] = (config["in_features"], config["out_features"])[::-1]
            if config.get("bias", True):
                expected[f"{i}.bias"] = (config["out_features"],)
        elif config["type"] not in _LAYER_SCHEMA:
            custom.add(str(i))  # its parameters are checked after it is built
    for name, shape in expected.items():
        if name not in tensors:
            raise ValueError(f"missing tensor {name!r} (expected shape {shape})")
        if tuple(tensors[name].shape) != shape:
            raise ValueError(f"tensor {name!r} has shape {tuple(tensors[name].shape)}, expected {shape}")
    for name in tensors:
        if name not in expected and name.split(".", 1)[0] not in custom:
            raise ValueError(f"unexpected tensor {name!r}: this network has no such parameter")

def _check_json_object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise TypeError(f"{what} must be a {{'type': ...}} object, got {value!r:.80}")
    for key, item in value.items():
        ok = isinstance(item, (str, int, float, bool)) or (
            isinstance(item, list) and len(item) <= 8 and all(_finite(x) for x in item)
        )
        if not ok:
            raise ValueError(f"{what} setting {key!r} is not a plain value")
    return value
