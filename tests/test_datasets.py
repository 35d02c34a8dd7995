"""Tests for chainrule.datasets: the IDX reader/writer and the MNIST loader."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import os
import re
import shutil
import struct
import sys
import threading
import time
import tracemalloc
import zlib
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from chainrule.datasets import (
    BUNDLED_SHA256,
    MNIST_CHECKSUMS,
    MNIST_PROVENANCE,
    ChecksumError,
    IDXFormatError,
    MNISTInfo,
    default_cache_dir,
    describe_mnist,
    download_mnist,
    load_mnist,
    read_idx,
    read_idx_header,
    write_idx,
)
from chainrule.datasets import idx as idx_module

DATA_DIR = Path(str(resources.files("chainrule.datasets").joinpath("data", "mnist")))
NAMES = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
]
SUPPORTED = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


def header(code: int, *dims: int, ndim: int | None = None) -> bytes:
    """Hand-made IDX header; ``ndim`` may be set to lie about the dimension count."""
    n = len(dims) if ndim is None else ndim
    return bytes([0, 0, code, n]) + struct.pack(f">{len(dims)}I", *dims)


@pytest.fixture(scope="module")
def bundled():
    return load_mnist()


@pytest.fixture(scope="module")
def bundled_raw():
    return load_mnist(flatten=False, normalize=False, channels=False)


# --------------------------------------------------------------------------- IDX round trips


def _sample(dtype, shape=(3, 4, 5)) -> np.ndarray:
    rng = np.random.default_rng(0)
    dt = np.dtype(dtype)
    if dt.kind == "f":
        a = rng.standard_normal(shape).astype(dt)
        a.flat[:4] = [np.inf, -np.inf, np.finfo(dt).max, np.finfo(dt).tiny]
    else:
        info = np.iinfo(dt)
        a = rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dt)
        a.flat[:2] = [info.min, info.max]
    return a


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", SUPPORTED)
def test_round_trip_every_dtype(tmp_path, dtype, suffix):
    a = _sample(dtype)
    path = tmp_path / f"a.idx{suffix}"
    write_idx(path, a)
    b = read_idx(path)
    assert b.dtype == a.dtype and b.dtype.isnative
    assert b.shape == a.shape
    np.testing.assert_array_equal(b, a)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == (suffix == ".gz")
    assert read_idx_header(path) == (a.dtype, a.shape)


@pytest.mark.parametrize("shape", [(7,), (2, 3), (1, 1, 1, 1, 1, 1, 1, 2), (0,), (3, 0, 2)])
def test_round_trip_shapes(tmp_path, shape):
    a = np.arange(int(np.prod(shape)), dtype=np.int32).reshape(shape)
    for name in ("s.idx", "s.idx.gz"):
        write_idx(tmp_path / name, a)
        b = read_idx(tmp_path / name)
        assert b.shape == shape
        np.testing.assert_array_equal(b, a)


def test_round_trip_nan_and_non_contiguous_and_big_endian(tmp_path):
    a = np.arange(24, dtype=np.float64).reshape(4, 6)
    a[1, 2] = np.nan
    view = a.T[::2]  # neither C- nor F-contiguous
    write_idx(tmp_path / "v.idx", view)
    np.testing.assert_array_equal(read_idx(tmp_path / "v.idx"), view)

    big = np.arange(10, dtype=">i4")
    write_idx(tmp_path / "big.idx", big)
    out = read_idx(tmp_path / "big.idx")
    assert out.dtype == np.dtype("int32") and out.dtype.isnative
    np.testing.assert_array_equal(out, big)


def test_write_produces_exact_bytes(tmp_path):
    write_idx(tmp_path / "x.idx", np.array([[1, 2, 3], [4, 5, 256]], dtype=np.int16))
    expected = header(0x0B, 2, 3) + struct.pack(">6h", 1, 2, 3, 4, 5, 256)
    assert (tmp_path / "x.idx").read_bytes() == expected


def test_gzip_detected_by_content_not_name(tmp_path):
    a = _sample(np.float32)
    write_idx(tmp_path / "a.gz", a)
    os.rename(tmp_path / "a.gz", tmp_path / "plain-name")
    np.testing.assert_array_equal(read_idx(tmp_path / "plain-name"), a)
    write_idx(tmp_path / "raw", a)
    os.rename(tmp_path / "raw", tmp_path / "misleading.gz")
    np.testing.assert_array_equal(read_idx(tmp_path / "misleading.gz"), a)


def test_gzip_output_is_reproducible(tmp_path):
    a = _sample(np.uint8)
    write_idx(tmp_path / "1.gz", a)
    write_idx(tmp_path / "2.gz", a)
    first = (tmp_path / "1.gz").read_bytes()
    assert first == (tmp_path / "2.gz").read_bytes()
    assert first[4:8] == bytes(4)  # gzip mtime field: zero rather than the clock


@pytest.mark.parametrize(
    "array",
    [
        np.zeros(3, dtype=np.int64),
        np.zeros(3, dtype=np.uint16),
        np.zeros(3, dtype=np.float16),
        np.zeros(3, dtype=bool),
        np.zeros(3, dtype=np.complex64),
        np.array(["a", "b"]),
        np.array([None, 1], dtype=object),
    ],
    ids=lambda a: str(a.dtype),
)
def test_write_rejects_unsupported_dtype(tmp_path, array):
    with pytest.raises(ValueError, match="dtype"):
        write_idx(tmp_path / "x.idx", array)
    assert list(tmp_path.iterdir()) == []


def test_write_rejects_bad_dimensions(tmp_path):
    with pytest.raises(ValueError, match="dimensions"):
        write_idx(tmp_path / "x.idx", np.uint8(3))
    with pytest.raises(ValueError, match="dimensions"):
        write_idx(tmp_path / "x.idx", np.zeros((1,) * 9, dtype=np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "keep.idx"
    write_idx(path, np.arange(5, dtype=np.uint8))
    before = path.read_bytes()

    def fail(*args):
        raise OSError("disk on fire")

    monkeypatch.setattr(idx_module.os, "replace", fail)
    with pytest.raises(OSError, match="disk on fire"):
        write_idx(path, np.arange(50, dtype=np.uint8))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.idx"]  # temp file removed


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_written_file_gets_umask_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        write_idx(tmp_path / "p.idx", np.zeros(2, dtype=np.uint8))
    finally:
        os.umask(umask)
    assert (tmp_path / "p.idx").stat().st_mode & 0o777 == 0o644


# --------------------------------------------------------------------------- corrupt IDX files


@pytest.mark.parametrize(
    ("content", "raw_message", "gz_message"),
    [
        (b"", "too short", None),
        (b"\x00\x00\x08", "too short", None),
        (b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"\x00", "magic", None),
        (b"\x00\x07\x08\x01" + struct.pack(">I", 1) + b"\x00", "magic", None),
        (header(0x0A, 1) + b"\x00", "type code 0x0a", None),
        (header(0x0F, 1) + b"\x00", "type code 0x0f", None),
        (header(0x08, ndim=0), "number of dimensions is 0", None),
        (header(0x08, *([1] * 9)) + b"\x00", "number of dimensions is 9", None),
        (header(0x08, 2, 3, ndim=3), "header truncated", None),
        (
            header(0x08, 10, 28, 28) + bytes(1234),
            "expected 7840 bytes of data for 10x28x28 uint8, file has 1234$",
            "expected 7840 bytes of data for 10x28x28 uint8, file has 1234 "
            r"\(after decompression\)",
        ),
        (header(0x0C, 4) + bytes(15), "expected 16 bytes of data for 4 int32, file has 15", None),
        (
            header(0x08, 4) + bytes(5),
            r"file has 5 \(trailing data\)",
            "trailing data after the 4 bytes of data that the header promises for 4 uint8",
        ),
    ],
)
@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gz"])
def test_corrupt_idx(tmp_path, content, raw_message, gz_message, compress):
    path = tmp_path / "bad.idx"
    path.write_bytes(gzip.compress(content) if compress else content)
    message = (gz_message or raw_message) if compress else raw_message
    with pytest.raises(IDXFormatError, match=message) as info:
        read_idx(path)
    assert str(info.value).startswith(f"{path}: ")  # the message names the file


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gz"])
def test_huge_header_fails_fast_without_allocating(tmp_path, compress):
    content = header(0x08, 2**31, 2**31) + bytes(1000)
    path = tmp_path / "huge.idx"
    path.write_bytes(gzip.compress(content) if compress else content)
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(IDXFormatError, match="4,611,686,018,427,387,904 bytes .* more "
                                                 "than max_bytes=1,073,741,824"):
            read_idx(path)
        # Without the cap, the file-size and deflate-ratio checks still refuse it.
        with pytest.raises(IDXFormatError, match="4611686018427387904"):
            read_idx(path, max_bytes=None)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - start < 1.0
    assert peak < 2**20


def test_lying_gzip_header(tmp_path):
    # 8 MB promised by a ~50-byte file: more than deflate can possibly expand to.
    path = tmp_path / "lie.gz"
    path.write_bytes(gzip.compress(header(0x0E, 1000, 1000) + bytes(80)))
    with pytest.raises(IDXFormatError, match="cannot hold more than"):
        read_idx(path)
    # Random bytes do not compress, so 1 MB is plausible for this file size and
    # the reader has to decompress to find out; it stops at what is there.
    raw = np.random.default_rng(0).bytes(10240)
    path.write_bytes(gzip.compress(header(0x08, 10**6) + raw))
    with pytest.raises(IDXFormatError, match=f"file has {len(raw)} \\(after decompression\\)"):
        read_idx(path)


def test_gzip_bomb_stops_after_promised_bytes(tmp_path):
    # 10 bytes promised, then 64 MiB of zeros hidden in a ~64 KiB gzip file.
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits=31: gzip container
    parts = [comp.compress(header(0x08, 10) + bytes(10))]
    block = bytes(2**20)
    parts += [comp.compress(block) for _ in range(64)]
    parts.append(comp.flush())
    path = tmp_path / "bomb.gz"
    path.write_bytes(b"".join(parts))
    assert path.stat().st_size < 2**17
    tracemalloc.start()
    try:
        with pytest.raises(IDXFormatError, match="trailing data"):
            read_idx(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2**20


@pytest.mark.parametrize(
    "mangle",
    [
        lambda g: g[:2] + b"\x07" + g[3:],  # compression method other than deflate
        lambda g: g[:-8] + bytes(4) + g[-4:],  # wrong CRC
        lambda g: g[:-4] + struct.pack("<I", 1),  # wrong length
        lambda g: g[:len(g) // 2],  # truncated stream
        lambda g: g[:12] + b"\xff" * 8 + g[20:],  # garbage deflate data
        lambda g: g + b"trailing garbage",  # non-gzip bytes after the member
        lambda g: b"\x1f\x8b",  # magic only
    ],
    ids=["method", "crc", "length", "truncated", "garbage", "trailing", "magic-only"],
)
def test_corrupt_gzip(tmp_path, mangle):
    good = gzip.compress(header(0x08, 4, 4) + bytes(range(16)), mtime=0)
    path = tmp_path / "bad.gz"
    path.write_bytes(mangle(good))
    with pytest.raises(IDXFormatError, match=re.escape(str(path))):
        read_idx(path)


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nope.idx")
    with pytest.raises(FileNotFoundError):
        read_idx_header(tmp_path / "nope.idx.gz")


def test_read_header_only(tmp_path):
    path = tmp_path / "h.idx.gz"
    write_idx(path, np.zeros((6, 2), dtype=np.float32))
    assert read_idx_header(path) == (np.dtype(np.float32), (6, 2))
    path.write_bytes(b"\x1f\x8bnot really gzip")
    with pytest.raises(IDXFormatError):
        read_idx_header(path)


# --------------------------------------------------------------------------- bundled MNIST


def test_bundled_checksums_match_readme():
    readme = (DATA_DIR / "README.md").read_text()
    block = readme.split("sha256:\n```\n", 1)[1].split("```", 1)[0]
    from_readme = dict(reversed(line.split()) for line in block.strip().splitlines())
    assert from_readme == BUNDLED_SHA256
    for name, digest in BUNDLED_SHA256.items():
        assert hashlib.sha256((DATA_DIR / name).read_bytes()).hexdigest() == digest
    # The test files are the originals, so they double as full-set checksums.
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        assert MNIST_CHECKSUMS[name] == ("sha256", BUNDLED_SHA256[name])
    assert MNIST_CHECKSUMS["train-images-idx3-ubyte.gz"] == (
        "md5", "f68b3c2dcbeaaa9fbdd348bbdeb94873")


def test_provenance_text():
    for fact in ("LeCun", "Cortes", "Burges", "CC BY-SA 3.0", "mnist`` 1.1.0", "20261122",
                 *BUNDLED_SHA256.values()):
        assert fact in MNIST_PROVENANCE


def test_bundled_defaults(bundled):
    (x_train, y_train), (x_test, y_test) = bundled
    assert x_train.shape == (10000, 784) and x_test.shape == (10000, 784)
    assert x_train.dtype == np.float32 and x_test.dtype == np.float32
    assert y_train.dtype == np.int64 and y_test.dtype == np.int64
    assert y_train.shape == (10000,) and y_test.shape == (10000,)
    for x in (x_train, x_test):
        assert x.min() == 0.0 and x.max() == 1.0
    assert np.bincount(y_train).tolist() == [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944,
                                             978]
    assert y_test[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert np.bincount(y_test, minlength=10).sum() == 10000


def test_bundled_train_and_test_are_disjoint(bundled_raw):
    (x_train, _), (x_test, _) = bundled_raw
    train_rows = {row.tobytes() for row in x_train.reshape(len(x_train), -1)}
    assert not any(row.tobytes() in train_rows for row in x_test.reshape(len(x_test), -1))


def test_flatten_and_normalize_variants(bundled, bundled_raw):
    (x_raw, y_raw), (t_raw, _) = bundled_raw
    assert x_raw.shape == (10000, 28, 28) and x_raw.dtype == np.uint8
    assert x_raw.max() == 255 and t_raw.shape == (10000, 28, 28)
    assert y_raw.dtype == np.int64

    (x_grid, _), _ = load_mnist(flatten=False)  # pictures in PyTorch's (N, C, H, W)
    assert x_grid.shape == (10000, 1, 28, 28) and x_grid.dtype == np.float32
    (x_grid, _), _ = load_mnist(flatten=False, channels=False)
    assert x_grid.shape == (10000, 28, 28)

    (x_flat_u8, _), _ = load_mnist(normalize=False)
    assert x_flat_u8.shape == (10000, 784) and x_flat_u8.dtype == np.uint8

    (x_norm, y_norm), _ = bundled
    np.testing.assert_array_equal(x_flat_u8, x_raw.reshape(10000, 784))
    np.testing.assert_allclose(x_norm, x_raw.reshape(10000, 784) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(x_grid.reshape(10000, 784), x_norm)
    np.testing.assert_array_equal(y_norm, y_raw)


def test_describe_bundled():
    info = describe_mnist()
    assert (info.n_train, info.n_test) == (10000, 10000)
    assert str(info).startswith("found 10000 training and 10000 test images in ")


# --------------------------------------------------------------------------- MNIST directories


def _copy_bundled(dest: Path, gz: bool) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in NAMES:
        if gz:
            shutil.copy(DATA_DIR / f"{name}.gz", dest / f"{name}.gz")
        else:
            (dest / name).write_bytes(gzip.decompress((DATA_DIR / f"{name}.gz").read_bytes()))
    return dest


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
def test_load_directory(tmp_path, bundled_raw, gz):
    directory = _copy_bundled(tmp_path / "mnist", gz)
    loaded = load_mnist(directory, flatten=False, normalize=False, channels=False)
    for got, want in zip(loaded, bundled_raw):
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
    assert describe_mnist(str(directory)) == MNISTInfo(str(directory), 10000, 10000)


def _write_fake_mnist(directory: Path, n_train: int, n_test: int, *, gz: bool = True,
                      dotted: bool = False) -> None:
    rng = np.random.default_rng(1)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {
        NAMES[0]: rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        NAMES[1]: rng.integers(0, 10, n_train, dtype=np.uint8),
        NAMES[2]: rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        NAMES[3]: rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for name, a in arrays.items():
        if dotted:
            name = name.replace("-idx", ".idx")
        write_idx(directory / (name + (".gz" if gz else "")), a)


def test_load_directory_of_other_size(tmp_path, caplog):
    # Stands in for the full 60,000/10,000 set, which is not available offline.
    _write_fake_mnist(tmp_path, 60, 25)
    caplog.set_level("INFO", logger="chainrule.datasets")
    (x, y), (xt, yt) = load_mnist(tmp_path)
    assert x.shape == (60, 784) and y.shape == (60,) and xt.shape == (25, 784)
    assert f"found 60 training and 25 test images in {tmp_path}" in caplog.text
    assert str(describe_mnist(tmp_path)) == f"found 60 training and 25 test images in {tmp_path}"


def test_load_directory_mixed_and_dotted_names(tmp_path):
    _write_fake_mnist(tmp_path / "a", 5, 3, gz=False, dotted=True)
    (x, _), (xt, _) = load_mnist(tmp_path / "a")
    assert x.shape == (5, 784) and xt.shape == (3, 784)
    _copy_bundled(tmp_path / "b", gz=True)
    (tmp_path / "b" / "t10k-labels-idx1-ubyte.gz").unlink()
    (tmp_path / "b" / "t10k-labels-idx1-ubyte").write_bytes(
        gzip.decompress((DATA_DIR / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    _, (_, yt) = load_mnist(tmp_path / "b")
    assert yt[:3].tolist() == [7, 2, 1]


@pytest.mark.parametrize("missing", NAMES)
def test_load_directory_missing_file(tmp_path, missing):
    _copy_bundled(tmp_path, gz=True)
    (tmp_path / f"{missing}.gz").unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(f"{missing} (or {missing}.gz) not "
                                                          f"found in {tmp_path}")):
        load_mnist(tmp_path)


def test_load_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_mnist(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        describe_mnist(tmp_path / "nowhere")


def test_load_rejects_inconsistent_data(tmp_path):
    _write_fake_mnist(tmp_path, 8, 4)
    train_labels = tmp_path / "train-labels-idx1-ubyte.gz"
    test_images = tmp_path / "t10k-images-idx3-ubyte.gz"

    write_idx(train_labels, np.zeros(7, dtype=np.uint8))
    with pytest.raises(ValueError, match="has 8 images but .* has 7 labels"):
        load_mnist(tmp_path)

    write_idx(train_labels, np.full(8, 10, dtype=np.uint8))
    with pytest.raises(ValueError, match="labels must be 0..9, found 10"):
        load_mnist(tmp_path)

    write_idx(train_labels, np.zeros(8, dtype=np.uint8))
    write_idx(test_images, np.zeros((4, 27, 28), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"shape \(n, 28, 28\)"):
        load_mnist(tmp_path)

    write_idx(test_images, np.zeros((4, 28, 28), dtype=np.int16))
    with pytest.raises(ValueError, match="uint8 images"):
        load_mnist(tmp_path)

    write_idx(test_images, np.zeros((4, 28, 28), dtype=np.uint8))
    write_idx(train_labels, np.zeros((8, 1), dtype=np.uint8))
    with pytest.raises(ValueError, match="1-D uint8 label"):
        load_mnist(tmp_path)

    train_labels.write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(IDXFormatError, match="corrupt gzip"):
        load_mnist(tmp_path)


# --------------------------------------------------------------------------- downloads


class _Handler(http.server.SimpleHTTPRequestHandler):
    requests: list[str]

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):
        self.requests.append(self.path)
        super().do_GET()


@pytest.fixture
def server(tmp_path, monkeypatch):
    """An HTTP server on 127.0.0.1 serving copies of the bundled .gz files."""
    # Make sure urllib does not route 127.0.0.1 through a proxy from the environment.
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("NO_PROXY", "*")
    root = _copy_bundled(tmp_path / "served", gz=True)
    requests: list[str] = []
    handler = type("Handler", (_Handler,), {"requests": requests})
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/", requests, root
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def _served_checksums(root: Path) -> dict[str, tuple[str, str]]:
    sums = {name: ("sha256", hashlib.sha256((root / name).read_bytes()).hexdigest())
            for name in BUNDLED_SHA256}
    # Exercise the md5 path as for the full training images.
    name = "train-images-idx3-ubyte.gz"
    sums[name] = ("md5", hashlib.md5((root / name).read_bytes()).hexdigest())
    return sums


def test_download_and_cache(server, tmp_path, bundled):
    url, requests, root = server
    cache = tmp_path / "cache"
    got = load_mnist(download=True, cache_dir=cache, url=url, checksums=_served_checksums(root))
    for split, want in zip(got, bundled):
        np.testing.assert_array_equal(split[0], want[0])
        np.testing.assert_array_equal(split[1], want[1])
    assert len(requests) == 4
    assert sorted(p.name for p in cache.iterdir()) == sorted(BUNDLED_SHA256)

    # A second call finds valid files and fetches nothing.
    load_mnist(download=True, cache_dir=cache, url=url, checksums=_served_checksums(root))
    assert len(requests) == 4

    # A damaged cached file is fetched again.
    (cache / "t10k-labels-idx1-ubyte.gz").write_bytes(b"junk")
    download_mnist(cache, url=url.rstrip("/"), checksums=_served_checksums(root))
    assert len(requests) == 5
    assert (cache / "t10k-labels-idx1-ubyte.gz").read_bytes() == (
        root / "t10k-labels-idx1-ubyte.gz").read_bytes()


def test_download_checksum_mismatch(server, tmp_path):
    url, requests, root = server
    sums = _served_checksums(root)
    sums["t10k-images-idx3-ubyte.gz"] = ("sha256", "0" * 64)
    actual = hashlib.sha256((root / "t10k-images-idx3-ubyte.gz").read_bytes()).hexdigest()
    cache = tmp_path / "cache"
    with pytest.raises(ChecksumError) as info:
        load_mnist(download=True, cache_dir=cache, url=url, checksums=sums)
    message = str(info.value)
    assert "t10k-images-idx3-ubyte.gz" in message
    assert "0" * 64 in message and actual in message
    # Nothing of the bad file is left, neither under its name nor as a temp file.
    assert sorted(p.name for p in cache.iterdir()) == ["train-images-idx3-ubyte.gz",
                                                       "train-labels-idx1-ubyte.gz"]


def test_download_http_error(server, tmp_path):
    url, _, root = server
    sums = _served_checksums(root)
    (root / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(OSError, match="t10k-labels-idx1-ubyte.gz failed.*404"):
        download_mnist(tmp_path / "cache", url=url, checksums=sums)
    assert not any(p.name.endswith(".part") for p in (tmp_path / "cache").iterdir())


def test_download_argument_checks(tmp_path):
    with pytest.raises(ValueError, match="http or https"):
        download_mnist(tmp_path, url="file:///etc/")
    with pytest.raises(ValueError, match="no checksum"):
        download_mnist(tmp_path, url="http://127.0.0.1:9/", checksums={})
    with pytest.raises(ValueError, match="not both"):
        load_mnist(tmp_path, download=True)


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("CHAINRULE_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path / "mnist"
    monkeypatch.delenv("CHAINRULE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "chainrule" / "mnist"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    if sys.platform != "win32":
        assert default_cache_dir() == tmp_path / "home" / ".cache" / "chainrule" / "mnist"


def test_images_written_with_their_channel_axis_are_refused_saying_how_to_write_them(tmp_path):
    # load_mnist(flatten=False) gives (n, 1, 28, 28); written as they are, they are not MNIST's
    # (n, 28, 28) IDX layout.
    (x, y), (x_test, y_test) = load_mnist(normalize=False, flatten=False)
    assert x.shape[1:] == (1, 28, 28)
    write_idx(tmp_path / "train-images-idx3-ubyte", x[:20])
    write_idx(tmp_path / "train-labels-idx1-ubyte", y[:20].astype(np.uint8))
    write_idx(tmp_path / "t10k-images-idx3-ubyte", x_test[:5, 0])
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", y_test[:5].astype(np.uint8))
    with pytest.raises(ValueError, match=re.escape(
            f"{tmp_path / 'train-images-idx3-ubyte'}: expected uint8 images of shape (n, 28, 28), "
            "got uint8 (20, 1, 28, 28); MNIST's IDX files hold no channel axis: write "
            "images[:, 0] (or load with channels=False before write_idx)")):
        load_mnist(tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte", x[:20, 0])
    (back, labels), _ = load_mnist(tmp_path, normalize=False, flatten=False)
    np.testing.assert_array_equal(back, x[:20])
    np.testing.assert_array_equal(labels, y[:20])
