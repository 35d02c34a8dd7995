"""Fuzzing read_idx: whatever the bytes, it returns the right array or raises IDXFormatError.

Every result is checked against a small, independent reference decoder written
straight from the format description, so "returned an array" also means
"returned the correct array".
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from chainrule.datasets import IDXFormatError, read_idx, write_idx

FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])

CODES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
BUNDLED_LABELS = Path(str(resources.files("chainrule.datasets").joinpath(
    "data", "mnist", "t10k-labels-idx1-ubyte.gz")))


def reference_decode(data: bytes) -> np.ndarray | None:
    """Decode IDX bytes (gzipped or not) the obvious way; None if invalid."""
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error):
            return None
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] not in CODES:
        return None
    ndim = data[3]
    if not 1 <= ndim <= 8 or len(data) < 4 + 4 * ndim:
        return None
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    dtype = np.dtype(CODES[data[2]])
    payload = data[4 + 4 * ndim:]
    if len(payload) != math.prod(shape) * dtype.itemsize:
        return None
    try:
        return np.frombuffer(payload, dtype=dtype).reshape(shape)
    except ValueError:  # e.g. 0x2**32x2**32x2**32: empty, yet too big for NumPy
        return None


def native_bytes(a: np.ndarray) -> bytes:
    """Bytes of ``a`` in native order, by pure byte swapping (keeps NaN payloads)."""
    return a.tobytes() if a.dtype.isnative else a.byteswap().tobytes()


def check(path: Path, data: bytes) -> None:
    """Write ``data`` and assert read_idx agrees with the reference decoder."""
    path.write_bytes(data)
    expected = reference_decode(data)
    try:
        got = read_idx(path)
    except IDXFormatError as exc:
        assert str(path) in str(exc)
        assert expected is None, f"valid file rejected: {exc}"
        return
    assert expected is not None, "invalid file accepted"
    assert got.dtype.isnative
    assert got.dtype == expected.dtype.newbyteorder("=")
    assert got.shape == expected.shape
    assert native_bytes(got) == native_bytes(expected)


def idx_bytes(code: int, shape: tuple[int, ...], payload: bytes, ndim: int | None = None) -> bytes:
    n = len(shape) if ndim is None else ndim
    return bytes([0, 0, code, n]) + struct.pack(f">{len(shape)}I", *shape) + payload


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "f.idx"


@pytest.fixture(scope="module")
def valid_files() -> dict[str, bytes]:
    a = np.random.default_rng(0).integers(-999, 999, (3, 4, 5)).astype(np.int16)
    raw = idx_bytes(0x0B, a.shape, a.astype(">i2").tobytes())
    labels_gz = BUNDLED_LABELS.read_bytes()
    return {
        "small": raw,
        "small.gz": gzip.compress(raw, mtime=0),
        "labels": gzip.decompress(labels_gz),
        "labels.gz": labels_gz,
    }


# --------------------------------------------------------------------------- random input


@settings(FUZZ, max_examples=200)
@given(data=st.binary(max_size=80))
def test_random_bytes(scratch, data):
    check(scratch, data)


@settings(FUZZ, max_examples=150)
@given(data=st.binary(max_size=80))
def test_random_bytes_behind_gzip_magic(scratch, data):
    check(scratch, b"\x1f\x8b" + data)


@st.composite
def headers(draw):
    """Plausible-looking headers: any type code, mostly sane sizes, payload near right."""
    code = draw(st.one_of(st.sampled_from(sorted(CODES)), st.integers(0, 255)))
    ndim = draw(st.integers(0, 10))
    shape = tuple(draw(st.lists(st.one_of(st.integers(0, 4), st.integers(0, 2**32 - 1)),
                                min_size=ndim, max_size=ndim)))
    itemsize = np.dtype(CODES.get(code, "u1")).itemsize
    needed = math.prod(shape) * itemsize
    if needed <= 256 and draw(st.booleans()):
        length = needed + draw(st.sampled_from([0, 0, 0, -1, 1]))
    else:
        length = draw(st.integers(0, 64))
    payload = draw(st.binary(min_size=max(length, 0), max_size=max(length, 0)))
    lie = draw(st.sampled_from([None, None, None, max(ndim - 1, 0), ndim + 1]))
    return idx_bytes(code, shape, payload, ndim=lie)


@settings(FUZZ, max_examples=200)
@given(data=headers(), compress=st.booleans())
def test_structured_headers(scratch, data, compress):
    check(scratch, gzip.compress(data, mtime=0) if compress else data)


@settings(FUZZ, max_examples=100)
@given(
    code=st.sampled_from(sorted(CODES)),
    shape=st.lists(st.integers(2**16, 2**32 - 1), min_size=2, max_size=8),
    payload=st.binary(max_size=100),
    compress=st.booleans(),
)
def test_huge_claims_fail_without_allocating(scratch, code, shape, payload, compress):
    # Any attempt to allocate what these headers claim (>= 2**32 bytes) would
    # raise MemoryError or take ages; only a quick IDXFormatError passes.
    data = idx_bytes(code, tuple(shape), payload)
    scratch.write_bytes(gzip.compress(data, mtime=0) if compress else data)
    with pytest.raises(IDXFormatError, match="bytes of data|too large for an array"):
        read_idx(scratch)


# --------------------------------------------------------------------------- damaged valid files


@pytest.mark.parametrize("name", ["small", "small.gz"])
def test_every_truncation(scratch, valid_files, name):
    data = valid_files[name]
    for end in range(len(data)):
        scratch.write_bytes(data[:end])
        with pytest.raises(IDXFormatError):
            read_idx(scratch)


@settings(FUZZ, max_examples=100)
@given(name=st.sampled_from(["labels", "labels.gz"]), cut=st.floats(0, 1, exclude_max=True))
def test_random_truncation_of_real_file(scratch, valid_files, name, cut):
    data = valid_files[name]
    scratch.write_bytes(data[:int(cut * len(data))])
    with pytest.raises(IDXFormatError):
        read_idx(scratch)


@settings(FUZZ, max_examples=60)
@given(name=st.sampled_from(["small", "labels", "small.gz", "labels.gz"]),
       extra=st.binary(min_size=1, max_size=16))
def test_appended_bytes(scratch, valid_files, name, extra):
    check(scratch, valid_files[name] + extra)


@settings(FUZZ, max_examples=250)
@given(
    name=st.sampled_from(["small", "small.gz", "labels", "labels.gz"]),
    flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 7)),
                   min_size=1, max_size=3),
)
def test_bit_flips(scratch, valid_files, name, flips):
    data = bytearray(valid_files[name])
    for where, bit in flips:
        data[int(where * len(data))] ^= 1 << bit
    check(scratch, bytes(data))


@settings(FUZZ, max_examples=100)
@given(name=st.sampled_from(["small", "small.gz"]), byte=st.integers(0, 3),
       value=st.integers(0, 255))
def test_header_byte_replaced(scratch, valid_files, name, byte, value):
    # Targets magic, type code and dimension count, which random flips rarely hit.
    raw = bytearray(valid_files["small"])
    raw[byte] = value
    data = bytes(raw)
    check(scratch, gzip.compress(data, mtime=0) if name.endswith(".gz") else data)


# --------------------------------------------------------------------------- round trips


@settings(FUZZ, max_examples=80)
@given(
    array=hnp.arrays(
        dtype=st.sampled_from([np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]),
        shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=6),
    ),
    suffix=st.sampled_from(["", ".gz"]),
)
def test_write_read_round_trip(scratch, array, suffix):
    path = scratch.with_name("rt.idx" + suffix)
    write_idx(path, array)
    got = read_idx(path)
    assert got.dtype == array.dtype and got.shape == array.shape
    assert got.tobytes() == array.tobytes()
    expected = reference_decode(path.read_bytes())
    assert expected is not None and native_bytes(expected) == array.tobytes()
