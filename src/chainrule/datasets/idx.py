"""Reading and writing the IDX format used by the MNIST files.

An IDX file is a tiny header followed by raw array data::

    0x00 0x00 <type code> <ndim> <dim 0> ... <dim ndim-1> <data>

Each ``dim`` is a big-endian uint32, and multi-byte values in ``data`` are
big-endian too. The file may also be gzipped as a whole, which is how MNIST is
distributed; gzip is recognised by its magic bytes, whatever the file name.

The reader treats its input as untrusted: only regular files are opened (a
FIFO, a directory or a device is refused at once, never waited on); the
header is checked against the amount of data actually present and against a
cap on the data size (:data:`DEFAULT_MAX_BYTES`, a parameter) before any array
is allocated; and a gzip stream is never decompressed past what the header
promises (plus one byte, to notice trailing data), straight into the final
array. A lying header or a gzip bomb fails fast with :class:`IDXFormatError`
instead of exhausting memory.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .._files import open_regular as _open_regular
from ..io import atomic_write

__all__ = ["DEFAULT_MAX_BYTES", "MAX_NDIM", "IDXFormatError", "read_idx", "read_idx_header",
           "write_idx"]

#: Largest number of dimensions accepted; the format allows 255, but nothing
#: sensible needs more than a handful, and a cap keeps fuzzed headers cheap.
MAX_NDIM = 8

#: Default cap on the data an IDX file may hold, in bytes (after decompression):
#: 1 GiB, twenty times MNIST's training images (47 MB) and nearly twice EMNIST's
#: largest file (ByClass training images, 0.55 GB). Pass ``max_bytes`` to read more.
DEFAULT_MAX_BYTES = 2**30

# Type code -> big-endian dtype as stored on disk.
_CODE_TO_DTYPE: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
# Keyed by (kind, itemsize) so that byte order does not matter when writing.
_DTYPE_TO_CODE: dict[tuple[str, int], int] = {
    (dt.kind, dt.itemsize): code for code, dt in _CODE_TO_DTYPE.items()
}

_GZIP_MAGIC = b"\x1f\x8b"
# Deflate cannot expand data by more than 1032:1 (a 258-byte match costs at
# least 2 bits), so a gzip file of n bytes decompresses to at most 1032 * n
# bytes. A header promising more than that is a lie we can reject for free.
_DEFLATE_MAX_RATIO = 1032
# Decompress in slices of this size so memory grows with the data actually
# present, not with what a (possibly lying) header claims.
_CHUNK = 1 << 20

PathLike = str | os.PathLike[str]


class IDXFormatError(ValueError):
    """A file is not a well-formed IDX file (bad header, wrong size, corrupt gzip)."""


def _describe(shape: tuple[int, ...], dtype: np.dtype) -> str:
    dims = "x".join(str(d) for d in shape)
    return f"{dims} {dtype.newbyteorder('=').name}"


def _parse_header(f: BinaryIO, name: str) -> tuple[np.dtype, tuple[int, ...], int]:
    """Read and validate the header; return (on-disk dtype, shape, header length)."""
    head = f.read(4)
    if len(head) < 4:
        raise IDXFormatError(f"{name}: file too short for an IDX header ({len(head)} bytes)")
    if head[0] != 0 or head[1] != 0:
        raise IDXFormatError(
            f"{name}: bad magic bytes {head[:2].hex()} (an IDX file starts with 0000)"
        )
    code, ndim = head[2], head[3]
    if code not in _CODE_TO_DTYPE:
        raise IDXFormatError(
            f"{name}: unknown data type code 0x{code:02x} "
            f"(expected one of {', '.join(f'0x{c:02x}' for c in _CODE_TO_DTYPE)})"
        )
    if not 1 <= ndim <= MAX_NDIM:
        raise IDXFormatError(f"{name}: number of dimensions is {ndim}, expected 1..{MAX_NDIM}")
    raw_dims = f.read(4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise IDXFormatError(
            f"{name}: header truncated: {ndim} dimensions need {4 * ndim} bytes, "
            f"file has {len(raw_dims)}"
        )
    shape = struct.unpack(f">{ndim}I", raw_dims)
    dtype = _CODE_TO_DTYPE[code]
    # A zero dimension makes the array empty whatever the others say, but NumPy
    # still refuses shapes whose non-zero sizes overflow its index type.
    if math.prod(d for d in shape if d) * dtype.itemsize > np.iinfo(np.intp).max:
        raise IDXFormatError(
            f"{name}: shape {_describe(shape, dtype)} is too large for an array"
        )
    return dtype, shape, 4 + 4 * ndim


def _check_cap(name: str, dtype: np.dtype, shape: tuple[int, ...], max_bytes: int | None) -> None:
    size = math.prod(shape) * dtype.itemsize
    if max_bytes is not None and size > max_bytes:
        raise IDXFormatError(
            f"{name}: header claims {size:,} bytes of data for {_describe(shape, dtype)}, "
            f"more than max_bytes={max_bytes:,}; pass a larger max_bytes to read it")


def open_regular(path: PathLike, what: str = "IDX file") -> BinaryIO:
    """Open ``path`` for binary reading if it is a regular file, without ever blocking.

    Raises
    ------
    FileNotFoundError
        If nothing is at ``path``.
    IDXFormatError
        If ``path`` is a directory, FIFO, device or socket (see
        ``chainrule._files.open_regular``).
    """
    return _open_regular(path, what, IDXFormatError)


def _to_native(flat: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Reshape and convert a big-endian array to native order, in place."""
    if not flat.dtype.isnative:
        flat = flat.byteswap(inplace=True).view(flat.dtype.newbyteorder("="))
    return flat.reshape(shape)


def _read_raw(f: BinaryIO, name: str, dtype: np.dtype, shape: tuple[int, ...],
              header_len: int) -> np.ndarray:
    expected = math.prod(shape) * dtype.itemsize
    actual = os.fstat(f.fileno()).st_size - header_len
    if actual != expected:
        raise IDXFormatError(
            f"{name}: expected {expected} bytes of data for {_describe(shape, dtype)}, "
            f"file has {actual}" + (" (trailing data)" if actual > expected else "")
        )
    flat = np.empty(math.prod(shape), dtype=dtype)
    got = f.readinto(flat.view(np.uint8)) if expected else 0
    if got != expected:  # the file changed under us
        raise IDXFormatError(f"{name}: expected {expected} bytes of data, could read {got}")
    return _to_native(flat, shape)


def _read_gzip_payload(gz: gzip.GzipFile, name: str, dtype: np.dtype,
                       shape: tuple[int, ...], compressed_size: int,
                       header_len: int) -> np.ndarray:
    expected = math.prod(shape) * dtype.itemsize
    if expected + header_len > _DEFLATE_MAX_RATIO * compressed_size:
        raise IDXFormatError(
            f"{name}: header claims {expected} bytes of data for {_describe(shape, dtype)}, "
            f"but a {compressed_size}-byte gzip file cannot hold more than "
            f"{_DEFLATE_MAX_RATIO * compressed_size}"
        )
    # Straight into the final array, a slice at a time: the array is allocated
    # once (the header and cap are checked), and nothing is copied afterwards.
    flat = np.empty(math.prod(shape), dtype=dtype)
    view = memoryview(flat.view(np.uint8))
    done = 0
    while done < expected:
        got = gz.readinto(view[done : done + min(_CHUNK, expected - done)])
        if not got:
            raise IDXFormatError(
                f"{name}: expected {expected} bytes of data for {_describe(shape, dtype)}, "
                f"file has {done} (after decompression)"
            )
        done += got
    view.release()
    # One more byte tells a clean end from trailing data; reading it also makes
    # gzip check the CRC and length trailer of the last member.
    if gz.read(1):
        raise IDXFormatError(
            f"{name}: trailing data after the {expected} bytes of data that the header "
            f"promises for {_describe(shape, dtype)}"
        )
    return _to_native(flat, shape)


def _is_gzip(f: BinaryIO) -> bool:
    """Sniff the gzip magic bytes, leaving the file position at the start."""
    magic = f.read(2)
    f.seek(0)
    return magic == _GZIP_MAGIC


def read_idx(path: PathLike, *, max_bytes: int | None = DEFAULT_MAX_BYTES) -> np.ndarray:
    """Read an IDX file, gzipped or raw, into a NumPy array.

    Parameters
    ----------
    path : str or os.PathLike
        File to read. Gzip is detected from the content, not the name.
    max_bytes : int or None
        Largest data size accepted, in bytes after decompression, checked on
        the header before anything is read or allocated; default
        :data:`DEFAULT_MAX_BYTES` (1 GiB). ``None`` for no cap (the gzip
        ratio and file-size checks still apply).

    Returns
    -------
    numpy.ndarray
        Array with the shape from the header, in native byte order. Peak
        memory is the array itself plus about 1 MiB.

    Raises
    ------
    IDXFormatError
        If ``path`` is not a regular file (a directory, a FIFO, a device), the
        header is malformed or claims more than ``max_bytes``, the data is
        shorter or longer than the header says, or the gzip stream is corrupt.
    FileNotFoundError
        If the file does not exist.
    """
    name = os.fspath(path)
    with open_regular(path, "IDX file") as f:
        if not _is_gzip(f):
            dtype, shape, header_len = _parse_header(f, name)
            _check_cap(name, dtype, shape, max_bytes)
            return _read_raw(f, name, dtype, shape, header_len)
        compressed_size = os.fstat(f.fileno()).st_size
        try:
            with gzip.GzipFile(fileobj=f, mode="rb") as gz:
                dtype, shape, header_len = _parse_header(gz, name)
                _check_cap(name, dtype, shape, max_bytes)
                return _read_gzip_payload(gz, name, dtype, shape, compressed_size, header_len)
        except (OSError, EOFError, zlib.error) as exc:
            # gzip.BadGzipFile is an OSError; EOFError means a truncated stream.
            raise IDXFormatError(f"{name}: corrupt gzip stream: {exc}") from exc


def read_idx_header(path: PathLike) -> tuple[np.dtype, tuple[int, ...]]:
    """Read only the header of an IDX file.

    Cheap even for large gzipped files, since only the first few bytes are
    decompressed. The data itself is not checked; :func:`read_idx` does that.

    Parameters
    ----------
    path : str or os.PathLike
        File to inspect, gzipped or raw.

    Returns
    -------
    dtype : numpy.dtype
        Element type, native byte order.
    shape : tuple of int
        Array shape promised by the header.

    Raises
    ------
    IDXFormatError
        If ``path`` is not a regular file, or the header is malformed.
    FileNotFoundError
        If the file does not exist.
    """
    name = os.fspath(path)
    with open_regular(path, "IDX file") as f:
        if not _is_gzip(f):
            dtype, shape, _ = _parse_header(f, name)
        else:
            try:
                with gzip.GzipFile(fileobj=f, mode="rb") as gz:
                    dtype, shape, _ = _parse_header(gz, name)
            except (OSError, EOFError, zlib.error) as exc:
                raise IDXFormatError(f"{name}: corrupt gzip stream: {exc}") from exc
    return dtype.newbyteorder("="), shape


def write_idx(path: PathLike, array: np.ndarray) -> None:
    """Write an array as an IDX file, gzipped if ``path`` ends in ``.gz``.

    The file is written to a temporary name in the same directory and moved
    into place only when complete, so readers never see a half-written file.

    Parameters
    ----------
    path : str or os.PathLike
        Destination file.
    array : array_like
        Data of dtype uint8, int8, int16, int32, float32 or float64 with 1 to
        :data:`MAX_NDIM` dimensions, each smaller than 2**32.

    Raises
    ------
    ValueError
        If the dtype, number of dimensions or a dimension size cannot be
        represented in IDX.
    """
    array = np.asarray(array)
    code = _DTYPE_TO_CODE.get((array.dtype.kind, array.dtype.itemsize))
    if code is None:
        raise ValueError(
            f"IDX cannot store dtype {array.dtype}; use uint8, int8, int16, int32, "
            f"float32 or float64"
        )
    if not 1 <= array.ndim <= MAX_NDIM:
        raise ValueError(f"IDX needs 1..{MAX_NDIM} dimensions, array has {array.ndim}")
    if any(d >= 2**32 for d in array.shape):
        raise ValueError(f"IDX dimensions must be < 2**32, got shape {array.shape}")

    header = struct.pack(f">BBBB{array.ndim}I", 0, 0, code, array.ndim, *array.shape)
    # tobytes() is C order whatever the memory layout of `array`.
    data = array.astype(_CODE_TO_DTYPE[code], copy=False).tobytes()

    with atomic_write(path) as f:
        if Path(path).name.endswith(".gz"):
            # mtime=0 and no file name make the output reproducible; level 6 is
            # zlib's default, several times faster than 9 for nearly the same size.
            with gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0,
                               compresslevel=6) as gz:
                gz.write(header)
                gz.write(data)
        else:
            f.write(header)
            f.write(data)


