"""Saving and loading models as ``.safetensors`` files, never pickle.

A model file holds the parameters and buffers as plain tensors named like a
PyTorch ``nn.Sequential`` state dict (``"0.weight"``, ``"0.bias"``,
``"2.weight"``...) and, as JSON strings in the safetensors metadata, the
architecture, the loss, the optimizer's settings, the chainrule version and
a SHA-256 digest of everything else in the file.

Loading treats the file as hostile, and checks before it spends:

1. the path must be a regular file (a FIFO, directory or device is named as
   such, at once);
2. the 8-byte header length and the JSON header are read and parsed here,
   not by safetensors' Rust code, after bounding their sizes
   (``MAX_HEADER_BYTES``, ``MAX_HEADER_ITEMS``, ``MAX_TENSORS``, name
   lengths); every tensor's dtype, shape and offsets are checked against the
   file's size;
3. each metadata field is bounded (characters and JSON items) before it is
   parsed, and checked against a schema; the tensors the architecture
   implies (asked of each layer class, see ``state_shapes``) are compared
   with the tensors in the header, so nothing the file cannot back is built;
4. the SHA-256 digest is computed by streaming the file in 1 MiB chunks;
5. the memory the network needs is compared with what is available;
6. only then is the network built, in its final dtype, and the tensors are
   read straight into its arrays, then checked for NaN and infinity.

Whatever the bytes, the only errors are ``ModelFileError`` (a ``ValueError``)
and ``FileNotFoundError``. Error messages quote values from the file cut to
``QUOTE_CHARS`` characters.

Format versions (``FORMAT_VERSION``): version 1 files carry no digest (one
present is verified all the same; a file without one loads with an
``UnverifiedFileWarning``); version 2 requires the digest, so a file that
claims to be current is always verified.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import reprlib
import stat
import sys
import warnings
from collections.abc import Iterator
from os import PathLike
from typing import Any, BinaryIO

import numpy as np

from ._files import describe_node
from ._version import __version__
from .errors import InsufficientMemoryError, ModelFileError, UnverifiedFileWarning

try:  # POSIX; elsewhere temporary files are not locked
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "FORMAT_VERSION", "SafetensorsFile", "atomic_write", "atomic_write_bytes", "load",
    "open_safetensors", "read_metadata", "read_safetensors", "save",
]

#: Version of the metadata layout; a file from a newer version is refused.
#: 1: architecture, loss, optimizer, dtype; no digest (verified if present, warned if absent).
#: 2: adds the SHA-256 digest, required from then on (so that flipping a bit
#: in its key cannot switch the check off).
FORMAT_VERSION = 2
_FORMAT = "chainrule"
#: Metadata key of the digest; the digest covers every other key and all tensors.
DIGEST_KEY = "sha256"

# -- limits on what a file may make the loader parse or allocate ---------------------------
#: Largest JSON header read (safetensors' own limit is 100 MB); a 1000-layer
#: checkpoint with a 10,000-epoch history needs well under 2 MB.
MAX_HEADER_BYTES = 8 * 2**20
#: JSON values a header may hold (counted from its brackets and commas before parsing).
MAX_HEADER_ITEMS = 500_000
#: Tensors in one file (a 1000-layer checkpoint with Adam holds about 6,000).
MAX_TENSORS = 20_000
#: Characters in a tensor name or a metadata key.
MAX_NAME_CHARS = 256
#: Entries in the metadata.
MAX_METADATA_KEYS = 256
#: Dimensions of one tensor.
MAX_DIMS = 8
#: Layers in an architecture: each parameter-free layer costs ~1 KB of Python
#: objects for ~16 bytes of JSON.
_MAX_LAYERS = 1000
#: Characters of a value from the file quoted in an error message.
QUOTE_CHARS = 80
#: (characters, JSON items) each metadata field parsed as JSON may have.
FIELD_LIMITS: dict[str, tuple[int, int]] = {
    "architecture": (2**20, 100_000),
    "loss": (2**16, 5_000),
    "optimizer": (2**16, 1_000),
    "history": (4 * 2**20, 400_000),
    "rng": (2**16, 2_000),
    "layer_rngs": (2 * 2**20, 200_000),
    "fit": (2**16, 5_000),
}
_CHUNK = 1 << 20
_FLOAT_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))

# safetensors dtype code -> (NumPy name, item size in bytes)
_ST_DTYPES: dict[str, tuple[str, int]] = {
    "F64": ("float64", 8), "F32": ("float32", 4), "F16": ("float16", 2),
    "BF16": ("bfloat16", 2), "I64": ("int64", 8), "I32": ("int32", 4), "I16": ("int16", 2),
    "I8": ("int8", 1), "U64": ("uint64", 8), "U32": ("uint32", 4), "U16": ("uint16", 2),
    "U8": ("uint8", 1), "BOOL": ("bool", 1), "F8_E4M3": ("float8_e4m3fn", 1),
    "F8_E5M2": ("float8_e5m2", 1), "C64": ("complex64", 8),
}
_NUMPY_NATIVE = {"float64", "float32", "float16", "int64", "int32", "int16", "int8", "uint64",
                 "uint32", "uint16", "uint8", "bool", "complex64"}


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
    unchanged.

    The writer holds an advisory lock (``fcntl.flock``) on its temporary file
    until the rename. A process killed mid-write leaves its ``.part`` file
    behind, unlocked (the kernel drops the locks of a dead process); the next
    write to the same path removes such files, and never one whose lock is
    held. Unlike a check of the PID in the name, this also holds between
    containers that share the directory but not their process IDs.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    stem = _temp_stem(path)
    _remove_stale_temp_files(directory, stem)
    fd, tmp = _open_temp(directory, stem)
    try:
        try:
            with open(fd, "wb", closefd=False) as f:
                yield f
                f.flush()
            os.fsync(fd)
            os.replace(tmp, path)  # still locked: no cleaner can take it first
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    finally:
        os.close(fd)  # releases the lock
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
    """Create and lock a new, empty temporary file; unlike ``mkstemp``'s 0600 it gets umask permissions."""
    while True:
        tmp = os.path.join(directory, f"{stem}{os.getpid()}.{os.urandom(6).hex()}.part")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0),
                         0o666)
        except FileExistsError:
            continue
        # A cleaner may have locked and removed the file between its creation
        # and this lock: then start again with another name.
        if _lock(fd, wait=True) is not False and _still_named(fd, tmp):
            return fd, tmp
        os.close(fd)


def _lock(fd: int, wait: bool) -> bool | None:
    """``flock(LOCK_EX)``: True if taken, False if another holder has it, None if unsupported."""
    if fcntl is None:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    except OSError:  # ENOLCK, EOPNOTSUPP: a file system without locks
        return None
    return True


def _still_named(fd: int, path: str) -> bool:
    """Whether ``path`` still names the file open as ``fd``."""
    try:
        mine, named = os.fstat(fd), os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    return (mine.st_dev, mine.st_ino) == (named.st_dev, named.st_ino)


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
    """Delete ``.part`` files of earlier writes to the same path whose writer is gone.

    A file is stale if its lock can be taken: the kernel releases a writer's
    lock when the writer dies, whatever PID namespace it ran in. Where locks
    are not supported, nothing is removed.
    """
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if not (name.startswith(stem) and name.endswith(".part")):
            continue
        full = os.path.join(directory, name)
        try:
            fd = os.open(full, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0)
                         | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            continue
        try:
            if (stat.S_ISREG(os.fstat(fd).st_mode) and _lock(fd, wait=False) is True
                    and _still_named(fd, full)):
                os.unlink(full)
        except OSError:
            pass
        finally:
            os.close(fd)


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


def _digest_header(h: Any, metadata: dict[str, str]) -> None:
    def piece(data: bytes) -> None:
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)

    for key in sorted(metadata):
        if key != DIGEST_KEY:
            piece(key.encode())
            piece(str(metadata[key]).encode())


def _digest_tensor_head(h: Any, name: str, dtype_name: str, shape: tuple[int, ...],
                        nbytes: int) -> None:
    for data in (name.encode(), dtype_name.encode(), repr(tuple(shape)).encode()):
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    h.update(nbytes.to_bytes(8, "little"))


def tensor_digest(tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> str:
    """SHA-256 over every metadata entry but the digest itself and every tensor.

    Each piece is length-prefixed, so no two different files hash the same
    sequence of bytes; tensors are hashed little-endian, as safetensors
    stores them (without a copy when they already are).
    ``SafetensorsFile.digest`` computes the same from a file, in chunks.
    """
    h = hashlib.sha256()
    _digest_header(h, metadata)
    for name in sorted(tensors):
        array = np.asarray(tensors[name])  # keeps a 0-d tensor 0-d (ascontiguousarray would not)
        little = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
        _digest_tensor_head(h, name, array.dtype.name, array.shape, little.nbytes)
        h.update(little.reshape(-1).view(np.uint8))
    return h.hexdigest()


def state_arrays(network: Any) -> dict[str, np.ndarray]:
    """Parameters and buffers by state-dict name, live: what a model file holds."""
    state_dict = getattr(network, "state_dict", None)
    return dict(state_dict()) if callable(state_dict) else dict(network.parameters())


def save(network: Any, path: str | PathLike, *, metadata: dict[str, str] | None = None) -> None:
    """Write ``network`` to ``path`` (a ``.safetensors`` file), atomically.

    ``metadata``: extra string entries stored beside the model's own (and
    covered by its digest), e.g. a scikit-learn estimator's label encoding;
    they may not replace the model's own keys.
    """
    from safetensors.numpy import save as to_bytes

    # np.require keeps 0-d buffers (num_batches_tracked) 0-d; ascontiguousarray makes them (1,)
    tensors = {name: np.require(a, requirements="C") for name, a in state_arrays(network).items()}
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


# -- quoting and bounded parsing ---------------------------------------------------------

_REPR = reprlib.Repr()
_REPR.maxstring = QUOTE_CHARS
_REPR.maxother = QUOTE_CHARS
_REPR.maxlist = _REPR.maxdict = _REPR.maxtuple = 8
_REPR.maxlevel = 3


def quote(value: Any) -> str:
    """``repr(value)`` cut to about ``QUOTE_CHARS`` characters: values from a file go into messages so."""
    if isinstance(value, str):
        if len(value) <= QUOTE_CHARS:
            return repr(value)
        return repr(value[:QUOTE_CHARS]) + f"... ({len(value):,} characters)"
    text = _REPR.repr(value)
    return text if len(text) <= 2 * QUOTE_CHARS else text[: 2 * QUOTE_CHARS] + "..."


def short(value: Any) -> str:
    """``str(value)`` cut to ``QUOTE_CHARS`` characters (for text shown without quotes)."""
    text = str(value) if isinstance(value, str) else quote(value)
    return text if len(text) <= QUOTE_CHARS else text[:QUOTE_CHARS] + "..."


def cut(text: str, limit: int = 4 * QUOTE_CHARS) -> str:
    """An error message that may quote a file's values, cut to ``limit`` characters."""
    return text if len(text) <= limit else text[:limit] + f"... ({len(text):,} characters)"


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        duplicate = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise ValueError(f"duplicate key {quote(duplicate)}")
    return result


def parse_json(text: str | bytes, what: str, max_chars: int, max_items: int) -> Any:
    """``json.loads(text)`` after bounding what it can build.

    ``max_chars`` bounds the text, ``max_items`` the JSON values in it, counted
    before parsing as ``2 * (brackets + braces) + commas + 1`` (an upper
    bound: characters inside strings count too). Parsing ``[{},{},...]``
    builds ~70 bytes of objects per 3 characters; these two bounds keep that
    below ~100 bytes per item allowed. Duplicate keys are refused.

    Raises ``ValueError`` saying which bound was exceeded or why the text is
    not JSON.
    """
    if len(text) > max_chars:
        raise ValueError(f"{what} is {len(text):,} characters long; at most {max_chars:,} are read")
    if isinstance(text, bytes):
        opens = text.count(b"[") + text.count(b"{")
        items = 2 * opens + text.count(b",") + 1
    else:
        opens = text.count("[") + text.count("{")
        items = 2 * opens + text.count(",") + 1
    if items > max_items:
        raise ValueError(f"{what} holds up to {items:,} JSON values; at most {max_items:,} are read")
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except RecursionError:
        raise ValueError(f"{what} is nested too deeply") from None
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError, int digits limit
        raise ValueError(f"{what} is not valid JSON: {cut(str(error), 160)}") from None


def metadata_json(metadata: dict[str, str], key: str, default: str | None = None) -> Any:
    """The metadata field ``key`` parsed with its ``FIELD_LIMITS``; ``ValueError`` if absent."""
    text = metadata.get(key, default)
    if text is None:
        raise ValueError(f"the metadata has no {key!r} field")
    chars, items = FIELD_LIMITS.get(key, (2**16, 5_000))
    return parse_json(text, f"the {key!r} field", chars, items)


# -- the file ----------------------------------------------------------------------------


class TensorInfo:
    """One tensor's header entry, checked: dtype, shape, and where its bytes lie."""

    __slots__ = ("name", "code", "dtype_name", "itemsize", "shape", "begin", "end")

    def __init__(self, name: str, code: str, shape: tuple[int, ...], begin: int, end: int) -> None:
        self.name, self.code, self.shape, self.begin, self.end = name, code, shape, begin, end
        self.dtype_name, self.itemsize = _ST_DTYPES[code]

    @property
    def nbytes(self) -> int:
        return self.end - self.begin

    @property
    def size(self) -> int:
        return math.prod(self.shape)


class SafetensorsFile:
    """A safetensors file whose header has been read, bounded and checked; no tensor read yet.

    Built by ``open_safetensors``. ``tensors`` maps each name to its
    ``TensorInfo``; ``metadata`` is the header's string-to-string metadata.
    Reading (``read``, ``read_into``, ``digest``) goes through the open file
    descriptor, in chunks.
    """

    def __init__(self, path: str, fd: int, size: int, data_start: int,
                 tensors: dict[str, TensorInfo], metadata: dict[str, str]) -> None:
        self.path, self._fd, self.size, self.data_start = path, fd, size, data_start
        self.tensors, self.metadata = tensors, metadata

    def __enter__(self) -> SafetensorsFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def error(self, message: str) -> ModelFileError:
        return ModelFileError(f"{self.path}: {message}")

    # -- reading bytes -------------------------------------------------------------------

    def _read_exactly(self, view: memoryview, offset: int) -> None:
        if not _pread_into(self._fd, view, self.data_start + offset):
            raise self.error("the file ended before its last tensor (was it changed "
                             "while being read?)")

    def digest(self) -> str:
        """The SHA-256 ``tensor_digest`` would give for the file's contents, read in 1 MiB chunks."""
        h = hashlib.sha256()
        _digest_header(h, self.metadata)
        largest = max((t.nbytes for t in self.tensors.values()), default=0)
        buffer = memoryview(bytearray(min(_CHUNK, largest)))
        for name in sorted(self.tensors):
            info = self.tensors[name]
            _digest_tensor_head(h, name, info.dtype_name, info.shape, info.nbytes)
            for start in range(info.begin, info.end, _CHUNK):
                part = buffer[: min(_CHUNK, info.end - start)]
                self._read_exactly(part, start)
                h.update(part)
        return h.hexdigest()

    def read_into(self, name: str, out: np.ndarray) -> None:
        """Fill ``out`` (C-contiguous, the tensor's shape) with tensor ``name``, cast to ``out.dtype``.

        Same dtype: read straight into ``out``. float16 / bfloat16 / float32 /
        float64 into another float dtype: through a 1 MiB buffer, so no
        full-size copy is made (bfloat16 is float32's upper half, so its cast is exact).
        """
        info = self.tensors[name]
        if tuple(out.shape) != info.shape or not out.flags.c_contiguous:
            raise ValueError(f"cannot read tensor {quote(name)} {info.shape} into {out.shape}")
        flat = out.reshape(-1)
        if info.dtype_name == out.dtype.name:
            self._read_exactly(memoryview(flat.view(np.uint8)), info.begin)
            if sys.byteorder == "big":  # pragma: no cover
                flat.byteswap(inplace=True)
            return
        if info.dtype_name not in ("float16", "bfloat16", "float32", "float64"):
            raise ValueError(f"cannot cast tensor {quote(name)} from {info.dtype_name} to {out.dtype}")
        raw = np.dtype("<u2") if info.dtype_name == "bfloat16" else np.dtype(info.dtype_name).newbyteorder("<")
        step = min(max(1, _CHUNK // info.itemsize), max(info.size, 1))
        buffer = np.empty(step, dtype=raw)
        for start in range(0, info.size, step):
            part = buffer[: min(step, info.size - start)]
            self._read_exactly(memoryview(part.view(np.uint8)), info.begin + start * info.itemsize)
            if info.dtype_name == "bfloat16":
                values = (part.astype("<u4") << 16).view("<f4")
            else:
                values = part
            flat[start: start + len(part)] = values

    def read(self, name: str, dtype: str | np.dtype | None = None) -> np.ndarray:
        """Tensor ``name`` as a new array, allocated once in ``dtype`` (default: the file's)."""
        info = self.tensors[name]
        if dtype is None:
            dtype = _numpy_dtype(info.dtype_name)
            if dtype is None:
                raise self.error(f"tensor {quote(name)} has dtype {info.dtype_name}, which NumPy "
                                 "cannot hold")
        out = _allocate(info.shape, dtype, self.path)
        self.read_into(name, out)
        return out


def _pread_into(fd: int, view: memoryview, offset: int) -> bool:
    """Fill ``view`` from ``fd`` at ``offset`` (no copy where ``os.preadv`` exists); False at end of file."""
    done = 0
    while done < len(view):
        part = view[done: done + (1 << 30)]
        if hasattr(os, "preadv"):
            n = os.preadv(fd, [part], offset + done)
        else:  # pragma: no cover
            data = os.pread(fd, len(part), offset + done)
            n = len(data)
            part[:n] = data
        if n == 0:
            return False
        done += n
    return True


def _numpy_dtype(name: str) -> np.dtype | None:
    if name in _NUMPY_NATIVE:
        return np.dtype(name)
    if name == "bfloat16":
        try:
            import ml_dtypes
        except ImportError:
            return None
        return np.dtype(ml_dtypes.bfloat16)
    return None


def _allocate(shape: tuple[int, ...], dtype: Any, path: str) -> np.ndarray:
    try:
        return np.empty(shape, dtype=dtype)
    except MemoryError:
        raise ModelFileError(
            f"{path}: not enough memory for a {np.dtype(dtype).name} tensor of shape {shape}"
        ) from None


_MAGIC = (
    (b"\x89PNG", "a PNG picture"), (b"\xff\xd8\xff", "a JPEG picture"), (b"GIF8", "a GIF picture"),
    (b"BM", "a BMP picture"), (b"II*\x00", "a TIFF picture"), (b"MM\x00*", "a TIFF picture"),
    (b"RIFF", "a RIFF file (WebP picture?)"), (b"%!PS", "a PostScript file"),
    (b"%PDF", "a PDF document"), (b"PK\x03\x04", "a ZIP archive (torch.save writes these)"),
    (b"\x1f\x8b", "a gzip file"), (b"\x93NUMPY", "a NumPy .npy file"),
)

# An ONNX ModelProto (protobuf) opens with field 1, ir_version (tag 0x08, a small
# varint: 3 to 10 in files written since 2017), followed by the tag of another
# top-level field: producer_name 0x12, producer_version 0x1a, domain 0x22,
# model_version 0x28, doc_string 0x32, graph 0x3a or opset_import 0x42 (onnx.proto).
_ONNX_NEXT_TAGS = b"\x12\x1a\x22\x28\x32\x3a\x42"


def _describe_content(first: bytes) -> str | None:
    for magic, words in _MAGIC:
        if first.startswith(magic):
            return words
    if first[:1] == b"\x80" and first[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "a Python pickle (never loaded: it could run code)"
    if first[:2] == b"\x00\x00" and first[2:3] in (b"\x08", b"\x09", b"\x0b", b"\x0c", b"\x0d", b"\x0e"):
        return "an IDX data file"
    if len(first) >= 3 and first[0] == 0x08 and 1 <= first[1] < 0x80 and first[2] in _ONNX_NEXT_TAGS:
        return "an ONNX model (chainrule reads the .safetensors file it was exported from)"
    return None


def open_safetensors(path: str | PathLike, kind: str = "model file") -> SafetensorsFile:
    """Open ``path`` and read its header, bounded and checked; the tensors stay on disk.

    Raises
    ------
    FileNotFoundError
        If nothing is at ``path``.
    ModelFileError
        For anything else: not a regular file (saying what it is), not a
        safetensors file (saying what it looks like, for a picture or a
        pickle), a header beyond the limits, offsets that do not tile the data.
    """
    path = os.fspath(path)
    try:
        node = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, f"no {kind} at {path}", path) from None
    except OSError as error:
        raise ModelFileError(f"{path}: cannot be read: {error.strerror or error}") from None
    what = describe_node(node.st_mode)
    if what is not None:
        raise ModelFileError(f"{path} is {what}, not a {kind}")
    try:
        # O_NONBLOCK: should the path become a FIFO after the stat, opening it does not hang.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
                     | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, f"no {kind} at {path}", path) from None
    except OSError as error:
        raise ModelFileError(f"{path}: cannot be read: {error.strerror or error}") from None
    try:
        st = os.fstat(fd)
        what = describe_node(st.st_mode)
        if what is not None:
            raise ModelFileError(f"{path} is {what}, not a {kind}")
        return _read_header(path, fd, st.st_size)
    except BaseException:
        os.close(fd)
        raise


def _read_header(path: str, fd: int, size: int) -> SafetensorsFile:
    def bad(reason: str) -> ModelFileError:
        return ModelFileError(f"{path} is not a readable safetensors file: {reason}")

    first = os.pread(fd, 16, 0)
    looks = _describe_content(first)
    if size < 8:
        raise bad(f"header too small ({size} bytes)")
    n = int.from_bytes(first[:8], "little")
    if looks is not None and 8 + n > size:
        raise ModelFileError(f"{path} looks like {looks}, not a safetensors model file")
    if n > MAX_HEADER_BYTES:
        raise bad(f"header too large ({n:,} bytes; at most {MAX_HEADER_BYTES:,} are read)")
    if 8 + n > size:
        raise bad(f"the header claims {n:,} bytes but the file holds {size - 8:,} after its length")
    raw = bytearray(n)
    view = memoryview(raw)
    if not _pread_into(fd, view, 8):
        raise bad("the file ended inside its header")
    if not raw.startswith(b"{"):
        raise bad("the header is not a JSON object")
    try:
        header = parse_json(bytes(raw).decode("utf-8"), "the header", MAX_HEADER_BYTES,
                            MAX_HEADER_ITEMS)
    except UnicodeDecodeError:
        raise bad("the header is not UTF-8 text") from None
    except ValueError as error:
        raise bad(str(error)) from None
    del raw, view
    if not isinstance(header, dict):
        raise bad("the header is not a JSON object")
    metadata = header.pop("__metadata__", None)
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise bad("its __metadata__ is not an object")
    if len(metadata) > MAX_METADATA_KEYS:
        raise bad(f"{len(metadata):,} metadata entries; at most {MAX_METADATA_KEYS} are read")
    for key, value in metadata.items():
        if len(key) > MAX_NAME_CHARS:
            raise bad(f"metadata key {quote(key)} is longer than {MAX_NAME_CHARS} characters")
        if not isinstance(value, str):
            raise bad(f"metadata entry {quote(key)} is not a string")
    if len(header) > MAX_TENSORS:
        raise bad(f"the header lists {len(header):,} tensors; at most {MAX_TENSORS:,} are read")
    tensors: dict[str, TensorInfo] = {}
    for name, entry in header.items():
        tensors[name] = _tensor_info(name, entry, bad)
    data_size = size - 8 - n
    expected = 0
    for info in sorted(tensors.values(), key=lambda t: (t.begin, t.end)):
        if info.begin != expected:
            raise bad(f"invalid offset: tensor {quote(info.name)} starts at byte {info.begin:,} "
                      f"of the data, expected {expected:,} (tensors must tile the data)")
        expected = info.end
    if expected != data_size:
        raise bad(f"the tensors cover {expected:,} bytes of data but the file holds {data_size:,}")
    return SafetensorsFile(path, fd, size, 8 + n, tensors, metadata)


def _tensor_info(name: str, entry: Any, bad: Any) -> TensorInfo:
    if not name or len(name) > MAX_NAME_CHARS:
        raise bad(f"tensor name {quote(name)} is empty or longer than {MAX_NAME_CHARS} characters")
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        raise bad(f"tensor {quote(name)} is not a {{dtype, shape, data_offsets}} object")
    code, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(code, str) or code not in _ST_DTYPES:
        raise bad(f"tensor {quote(name)} has an unsupported dtype {quote(code)}")
    if not (isinstance(shape, list) and len(shape) <= MAX_DIMS
            and all(type(d) is int and d >= 0 for d in shape)):
        raise bad(f"tensor {quote(name)} has an invalid shape {quote(shape)}")
    if not (isinstance(offsets, list) and len(offsets) == 2
            and all(type(o) is int and o >= 0 for o in offsets) and offsets[0] <= offsets[1]):
        raise bad(f"tensor {quote(name)} has invalid data_offsets {quote(offsets)}")
    info = TensorInfo(name, code, tuple(shape), offsets[0], offsets[1])
    if info.size * info.itemsize != info.nbytes:
        raise bad(f"tensor {quote(name)}: a {info.dtype_name} tensor of shape {info.shape} "
                  f"needs {info.size * info.itemsize:,} bytes, its offsets give {info.nbytes:,}")
    return info


def read_safetensors(path: str | PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """All tensors and the metadata of a safetensors file; any corruption is a ``ModelFileError``.

    The header is bounded and checked first (``open_safetensors``), so a
    header claiming huge tensors fails without allocating them; each tensor
    is allocated once, in its own dtype. bfloat16 needs ``ml_dtypes``; float8
    tensors are refused (NumPy has no such dtype).
    """
    with open_safetensors(path) as st:
        return {name: st.read(name) for name in sorted(st.tensors)}, dict(st.metadata)


def read_metadata(path: str | PathLike) -> dict[str, str]:
    """The metadata of a safetensors file, from its header alone (no tensor is read)."""
    with open_safetensors(path) as st:
        return dict(st.metadata)


# -- checks on the header ----------------------------------------------------------------------


def check_format(
    metadata: dict[str, str], path: str, format_name: str, version: int, kind: str
) -> int:
    """Refuse a file of another kind, or one written by a newer format version (saying so).

    Returns the file's format version.
    """
    found = metadata.get("format")
    if found != format_name:
        raise ModelFileError(f"{path} is not a chainrule {kind} (format {quote(found)})")
    text = metadata.get("format_version", "")
    if not (text.isascii() and text.isdigit() and len(text) <= 6):
        raise ModelFileError(f"{path}: unreadable format_version {quote(text)}")
    file_version = int(text)
    if file_version > version:
        raise ModelFileError(
            f"{path} was written in {kind} format version {file_version} by chainrule "
            f"{short(metadata.get('chainrule_version', '?'))}; this chainrule ({__version__}) "
            f"reads up to version {version}. Upgrade chainrule to load it."
        )
    if file_version < 1:
        raise ModelFileError(f"{path}: invalid format_version {file_version}")
    return file_version


def verify_digest(st: SafetensorsFile, required: bool = True) -> None:
    """Compare the stored digest with the file's contents, streaming them.

    Without a stored digest: an error if ``required``, else an
    ``UnverifiedFileWarning`` (a file of a format version from before digests).
    """
    stored = st.metadata.get(DIGEST_KEY)
    if stored is None:
        if required:
            raise ModelFileError(
                f"{st.path} is corrupt: its SHA-256 digest ({DIGEST_KEY!r}) is missing"
            )
        warnings.warn(
            f"{st.path} is in a format version without a SHA-256 digest, so corruption "
            "or tampering cannot be detected; save it again to add one",
            UnverifiedFileWarning, stacklevel=3,
        )
        return
    if st.digest() != stored:
        raise ModelFileError(
            f"{st.path} is corrupt: its contents do not match the SHA-256 digest stored in it"
        )


# Settings each built-in layer accepts, with a check per value.
def _positive_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _plain(v: Any) -> bool:
    """A JSON scalar (finite, short) or a short list of them: what a layer setting may be."""
    if v is None or isinstance(v, bool):
        return True
    if isinstance(v, (int, float)):
        return math.isfinite(v) and abs(v) < 2**63
    if isinstance(v, str):
        return len(v) <= QUOTE_CHARS
    if isinstance(v, list):
        return len(v) <= 8 and all(_plain(x) and not isinstance(x, list) for x in v)
    return False


_LAYER_SCHEMA: dict[str, dict[str, Any]] = {
    "Dense": {"in_features": _positive_int, "out_features": _positive_int,
              "bias": lambda v: isinstance(v, bool)},
    "Dropout": {"p": lambda v: _finite(v) and 0 <= v < 1},
    "LeakyReLU": {"negative_slope": _finite},
    "Sigmoid": {"scale": _finite},
    "Identity": {}, "ReLU": {}, "Tanh": {}, "Softmax": {},
}
_REQUIRED = {"Dense": ("in_features", "out_features")}


def _dense_shapes(config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    shapes = {"weight": (config["out_features"], config["in_features"])}
    if config.get("bias", True):
        shapes["bias"] = (config["out_features"],)
    return shapes


def _pair(v: Any, what: str, minimum: int) -> tuple[int, int]:
    items = v if isinstance(v, list) else [v, v]
    if len(items) != 2 or not all(type(i) is int and i >= minimum for i in items):
        raise ValueError(f"invalid {what} {quote(v)}")
    return items[0], items[1]


def _conv_shapes(config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    for key in ("in_channels", "out_channels"):
        if not _positive_int(config.get(key)):
            raise ValueError(f"invalid {key} {quote(config.get(key))}")
    kh, kw = _pair(config.get("kernel_size"), "kernel_size", 1)
    shapes = {"weight": (config["out_channels"], config["in_channels"], kh, kw)}
    if config.get("bias", True):
        shapes["bias"] = (config["out_channels"],)
    return shapes


def _batchnorm_shapes(config: dict[str, Any]) -> dict[str, Any]:
    c = config.get("num_features")
    if not _positive_int(c):
        raise ValueError(f"invalid num_features {quote(c)}")
    shapes: dict[str, Any] = {}
    if config.get("affine", True):
        shapes.update(weight=(c,), bias=(c,))
    shapes.update(running_mean=(c,), running_var=(c,), num_batches_tracked=((), "int64"))
    return shapes


#: Tensors each built-in layer type holds, from its config alone (no allocation).
#: A layer class may define ``state_shapes(config) -> {name: shape or (shape, dtype)}``
#: (a classmethod that raises ``ValueError`` for settings it refuses); that is
#: asked first. Types listed in ``PARAMETER_FREE`` hold no tensors.
_STATE_SHAPES: dict[str, Any] = {
    "Dense": _dense_shapes, "Conv2D": _conv_shapes,
    "BatchNorm1d": _batchnorm_shapes, "BatchNorm2d": _batchnorm_shapes,
}
PARAMETER_FREE = frozenset({"Identity", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Softmax",
                            "Dropout", "MaxPool2D", "AvgPool2D", "Flatten"})
#: Saved tensors whose values may not be negative (variances, counts, Adam's second moment).
NON_NEGATIVE = frozenset({"running_var", "num_batches_tracked", "v"})


def layer_state_shapes(index: int, config: dict[str, Any]) -> dict[str, tuple[tuple[int, ...], str | None]] | None:
    """``{"0.weight": (shape, dtype or None for the model's)}`` a layer config implies, or
    ``None`` for a user's own layer class (checked after it is built)."""
    from .layers import _REGISTRY

    kind = config["type"]
    settings = {k: v for k, v in config.items() if k != "type"}
    cls = _REGISTRY.get(kind)
    hook = getattr(cls, "state_shapes", None)
    if hook is not None:
        found = hook(settings)
    elif kind in _STATE_SHAPES:
        found = _STATE_SHAPES[kind](settings)
    elif kind in PARAMETER_FREE:
        found = {}
    else:
        return None
    shapes = {}
    for name, spec in found.items():
        shape, dtype = spec if (isinstance(spec, tuple) and len(spec) == 2
                                and isinstance(spec[1], str)) else (spec, None)
        shapes[f"{index}.{name}"] = (tuple(int(d) for d in shape), dtype)
    return shapes


def check_layers(configs: Any) -> list[dict[str, Any]]:
    """The architecture (parsed JSON) checked against each layer type's schema."""
    from .layers import _REGISTRY

    if not isinstance(configs, list) or not configs:
        raise ValueError("architecture must be a non-empty list of layers")
    if len(configs) > _MAX_LAYERS:
        raise ValueError(f"architecture has {len(configs)} layers; at most {_MAX_LAYERS} are read")
    for i, config in enumerate(configs):
        if not isinstance(config, dict) or not isinstance(config.get("type"), str):
            raise TypeError(f"layer {i} is not a {{'type': ...}} object")
        kind = config["type"]
        if kind not in _REGISTRY:
            raise ValueError(f"layer {i} has unknown type {quote(kind)}")
        for key, value in config.items():
            if len(key) > QUOTE_CHARS or not _plain(value):
                raise TypeError(f"layer {i} ({kind}): setting {quote(key)} is not a plain value")
        schema = _LAYER_SCHEMA.get(kind)
        if schema is None:
            # Layers with a state_shapes hook check their own settings there;
            # a user's own class gets only plain JSON scalars (its code, not
            # this file, decides what they mean).
            continue
        for key, value in config.items():
            if key == "type":
                continue
            if key not in schema:
                raise ValueError(f"layer {i} ({kind}) has unexpected setting {quote(key)}")
            if not schema[key](value):
                raise ValueError(f"layer {i} ({kind}) has invalid {key} {quote(value)}")
        for key in _REQUIRED.get(kind, ()):
            if key not in config:
                raise ValueError(f"layer {i} ({kind}) lacks {key!r}")
    return configs


def expected_tensors(configs: list[dict[str, Any]], dtype: str) -> tuple[dict[str, tuple[tuple[int, ...], str]], set[str]]:
    """The state dict the architecture implies, ``{name: (shape, dtype)}``, and the
    indices of user-defined layers whose tensors can only be checked once built."""
    expected: dict[str, tuple[tuple[int, ...], str]] = {}
    custom: set[str] = set()
    for i, config in enumerate(configs):
        try:
            shapes = layer_state_shapes(i, config)
        except (TypeError, ValueError, KeyError) as error:
            raise ValueError(f"layer {i} ({config['type']}): {cut(str(error), 160)}") from None
        if shapes is None:
            custom.add(str(i))
            continue
        for name, (shape, own_dtype) in shapes.items():
            expected[name] = (shape, own_dtype or dtype)
    return expected, custom


def compare_tensors(expected: dict[str, tuple[tuple[int, ...], str]], found: dict[str, TensorInfo],
                    custom: set[str] = frozenset()) -> None:
    """Names, shapes and dtypes from the header against the expected state dict.

    Raises ``ValueError`` naming the first tensor that is missing, unexpected,
    mis-shaped or of another dtype.
    """
    for name, info in found.items():
        want = expected.get(name)
        if want is not None and info.dtype_name != want[1]:
            raise ValueError(f"tensor {quote(name)} has dtype {info.dtype_name}, the model's is {want[1]}")
    for name, (shape, _) in expected.items():
        if name not in found:
            raise ValueError(f"missing tensor {quote(name)} (expected shape {shape})")
        if found[name].shape != shape:
            raise ValueError(f"tensor {quote(name)} has shape {found[name].shape}, expected {shape}")
    for name in found:
        if name not in expected and name.split(".", 1)[0] not in custom:
            raise ValueError(f"unexpected tensor {quote(name)}: this network has no such parameter")


def _check_json_object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise TypeError(f"{what} must be a {{'type': ...}} object, got {quote(value)}")
    for key, item in value.items():
        ok = isinstance(item, (str, int, float, bool)) or item is None or (
            isinstance(item, list) and len(item) <= 4096 and all(_finite(x) for x in item)
        )
        if not ok or (isinstance(item, str) and len(item) > QUOTE_CHARS):
            raise ValueError(f"{what} setting {quote(key)} is not a plain value")
    return value


def model_config(metadata: dict[str, str], tensors: dict[str, TensorInfo], path: str,
                 ) -> tuple[dict[str, Any], set[str]]:
    """Validate a model's metadata against its header, reading no tensor.

    Returns the network config (``layers``, ``loss``, ``optimizer``,
    ``dtype``) and the indices of user-defined layers. Checks: the dtype; the
    architecture's size and schema; the tensors it implies against the
    header's names, shapes and dtypes; the loss and optimizer settings (by
    building those small objects).
    """
    from .losses import get_loss
    from .optimizers import get_optimizer

    dtype = metadata.get("dtype")
    if dtype not in ("float32", "float64"):
        raise ModelFileError(f"{path}: dtype must be 'float32' or 'float64', got {quote(dtype)}")
    for name, info in tensors.items():
        if info.dtype_name not in (dtype, "int64"):
            raise ModelFileError(
                f"{path}: tensor {quote(name)} has dtype {info.dtype_name}, the model's is {dtype}"
            )
    try:
        configs = check_layers(metadata_json(metadata, "architecture"))
        expected, custom = expected_tensors(configs, dtype)
    except (TypeError, ValueError, KeyError) as error:
        raise ModelFileError(f"{path}: invalid architecture metadata: {cut(str(error))}") from None
    try:
        compare_tensors(expected, tensors, custom)
    except ValueError as error:
        raise ModelFileError(f"{path}: {error}") from None
    try:
        loss = _check_json_object(metadata_json(metadata, "loss"), "loss")
        optimizer = _check_json_object(metadata_json(metadata, "optimizer", '{"type": "SGD"}'),
                                       "optimizer")
        get_loss(dict(loss))
        get_optimizer(dict(optimizer))
    except (TypeError, ValueError, KeyError) as error:
        raise ModelFileError(f"{path}: invalid loss or optimizer metadata: {cut(str(error))}") from None
    return {"layers": configs, "loss": loss, "optimizer": optimizer, "dtype": dtype}, custom


def check_load_memory(nbytes: int, path: str, what: str = "its network") -> None:
    """Refuse (``ModelFileError``) a load that needs more than the available memory."""
    from .resources import check_memory

    try:
        check_memory(nbytes, f"loading {path} ({what})")
    except InsufficientMemoryError as error:
        raise ModelFileError(str(error)) from None


def network_from_config(config: dict[str, Any], path: str) -> Any:
    """A zero-weight ``Network`` from a validated config (``model_config``)."""
    from .losses import get_loss
    from .network import Network
    from .optimizers import get_optimizer

    try:
        layers = [_build_layer(c, config["dtype"]) for c in config["layers"]]
        return Network(layers, loss=get_loss(dict(config["loss"])),
                       optimizer=get_optimizer(dict(config["optimizer"])), dtype=config["dtype"])
    except MemoryError:
        raise ModelFileError(f"{path}: not enough memory to build its network") from None
    except Exception as error:  # noqa: BLE001 -- whatever a hostile field provokes, report it as the file's fault
        raise ModelFileError(f"{path}: invalid architecture metadata: {cut(str(error))}") from None


def _build_layer(config: dict[str, Any], dtype: str) -> Any:
    """``layer_from_config``, in ``dtype`` from the start where the layer takes a ``dtype``
    (a float64 build cast afterwards would need three times the memory for a moment)."""
    import inspect

    from .layers import _REGISTRY, layer_from_config

    settings = dict(config)
    cls = _REGISTRY.get(settings.get("type"))
    try:
        takes_dtype = cls is not None and "dtype" in inspect.signature(cls).parameters
    except (TypeError, ValueError):
        takes_dtype = False
    if takes_dtype:
        settings["dtype"] = dtype
    return layer_from_config(settings)


def check_values(name: str, array: np.ndarray, path: str) -> None:
    """Refuse NaN or infinity (and negative values where ``NON_NEGATIVE``), in 1 MiB chunks."""
    flat = array.reshape(-1)
    step = max(1, _CHUNK // max(array.itemsize, 1))
    floating = np.issubdtype(array.dtype, np.floating)
    non_negative = name.rsplit(".", 1)[-1] in NON_NEGATIVE
    for start in range(0, flat.size, step):
        part = flat[start: start + step]
        if floating and not np.isfinite(part).all():
            raise ModelFileError(f"{path}: tensor {quote(name)} contains NaN or infinite values")
        if non_negative and (part < 0).any():
            raise ModelFileError(f"{path}: tensor {quote(name)} must not be negative")


def fill_network(network: Any, st: SafetensorsFile, names: dict[str, str] | None = None) -> None:
    """Read each of the network's state arrays from the file, in place, then check its values.

    ``names`` maps the network's names to the file's (default: the same).
    """
    for name, array in state_arrays(network).items():
        source = names[name] if names is not None else name
        info = st.tensors.get(source)
        if info is None or info.shape != array.shape or info.dtype_name != array.dtype.name:
            got = "absent" if info is None else f"{info.dtype_name} {info.shape}"
            raise st.error(f"tensor {quote(source)} is {got}, the network needs "
                           f"{array.dtype.name} {array.shape}")
        st.read_into(source, array)
        check_values(source, array, st.path)


# -- loading -----------------------------------------------------------------------------


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
        the indices of ``nn.Sequential``); float16, bfloat16, float32 and
        float64 tensors are cast to the network's dtype (no extra package
        needed for bfloat16).

    Raises
    ------
    ModelFileError
        If the file is not a regular file, is corrupt, was written by a newer
        chainrule format, its tensors do not match the architecture (the
        message names the tensor), or its network does not fit in memory.
    FileNotFoundError
        If there is no file at ``path``.

    Warns
    -----
    UnverifiedFileWarning
        For a format version 1 file without a digest.
    """
    path = os.fspath(path)
    try:
        return _load(path, architecture)
    except (MemoryError, RecursionError) as error:  # a file must never end in these
        what = "memory" if isinstance(error, MemoryError) else "stack"
        raise ModelFileError(f"{path}: not enough {what} to load it") from None


def _load(path: str, architecture: Any) -> Any:
    with open_safetensors(path) as st:
        kind = st.metadata.get("format")
        if kind == "chainrule-checkpoint":
            from .checkpoint import checkpoint_from_file

            checkpoint = checkpoint_from_file(st)
            if architecture is None:
                return checkpoint.build_network()
            return _load_arrays_into(architecture, checkpoint.parameters, path)
        if architecture is not None:
            return _load_file_into(architecture, st)
        if kind != _FORMAT:
            raise ModelFileError(
                f"{path} has no chainrule metadata (format {quote(kind)}); if it is a plain state "
                f"dict, pass its shape: chainrule.load(path, architecture=Network.from_sizes([...]))"
            )
        version = check_format(st.metadata, path, _FORMAT, FORMAT_VERSION, "model")
        config, _ = model_config(st.metadata, st.tensors, path)
        verify_digest(st, required=version >= 2)
        # The network's parameters and their gradient buffers.
        check_load_memory(2 * sum(t.nbytes for t in st.tensors.values()), path)
        network = network_from_config(config, path)
        try:
            fill_network(network, st)
        except MemoryError:
            raise ModelFileError(f"{path}: not enough memory to read its tensors") from None
        return network


def _holds(st_or_arrays: Any) -> str:
    items = sorted(st_or_arrays.items())
    held = ", ".join(f"{short(k)} {tuple(v.shape)}" for k, v in items[:12])
    return (held or "no tensors") + (" ..." if len(items) > 12 else "")


def _check_architecture(network: Any) -> None:
    from .network import Network

    if not isinstance(network, Network):
        raise TypeError(
            "architecture must be a chainrule Network, e.g. "
            f"Network.from_sizes([784, 128, 10], activation='relu'); got {network!r:.200}"
        )


def _load_file_into(network: Any, st: SafetensorsFile) -> Any:
    """A plain state dict's tensors, cast to the network's dtype, copied into ``network``.

    All tensors are read and checked before any is copied, so a refused file
    leaves the network as it was.
    """
    _check_architecture(network)
    own = state_arrays(network)
    for name, info in sorted(st.tensors.items()):
        integer_buffer = name in own and np.issubdtype(own[name].dtype, np.integer)
        if info.dtype_name not in ("float16", "bfloat16", "float32", "float64") and not (
                integer_buffer and info.dtype_name.startswith(("int", "uint"))):
            raise st.error(f"tensor {quote(name)} has dtype {info.dtype_name}; weights must be "
                           "float16, bfloat16, float32 or float64")
    expected = {name: (tuple(a.shape), a.dtype.name) for name, a in own.items()}
    try:
        compare_tensors({k: (s, st.tensors[k].dtype_name if k in st.tensors else d)
                         for k, (s, d) in expected.items()}, st.tensors)
    except ValueError as error:
        raise st.error(f"{error}. The file holds: {_holds(st.tensors)}") from None
    check_load_memory(sum(a.nbytes for a in own.values()), st.path, "a copy of its tensors")
    staged = {}
    for name, array in own.items():
        info = st.tensors[name]
        if np.issubdtype(array.dtype, np.integer):
            value = st.read(name)
            if (value < 0).any():
                raise st.error(f"tensor {quote(name)} must not be negative")
            staged[name] = value.astype(array.dtype)
            continue
        staged[name] = _allocate(info.shape, array.dtype, st.path)
        st.read_into(name, staged[name])
        check_values(name, staged[name], st.path)
    for name, array in own.items():
        array[...] = staged[name]
    return network


def _load_arrays_into(network: Any, tensors: dict[str, np.ndarray], path: str) -> Any:
    _check_architecture(network)
    try:
        network.load_parameters(tensors)
    except ValueError as error:
        raise ModelFileError(f"{path}: {cut(str(error))}. The file holds: {_holds(tensors)}") from None
    return network
