"""Hostile IDX files and MNIST directories: refused from the headers, in bounded memory and time.

Cases where memory or time is the point run in a child process under an
address-space limit and a wall-clock limit (``hostile_files.run_limited``).
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

import hostile_files as h
from chainrule.datasets import (
    DEFAULT_MAX_BYTES,
    IDXFormatError,
    load_mnist,
    load_mnist_split,
    read_idx,
    read_idx_header,
    write_idx,
)

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="needs resource limits and FIFOs")


def _mnist_dir(directory, n_train=8, n_test=4):
    directory.mkdir(exist_ok=True)
    write_idx(directory / "train-images-idx3-ubyte.gz", np.zeros((n_train, 28, 28), np.uint8))
    write_idx(directory / "train-labels-idx1-ubyte.gz", np.zeros(n_train, np.uint8))
    write_idx(directory / "t10k-images-idx3-ubyte.gz", np.zeros((n_test, 28, 28), np.uint8))
    write_idx(directory / "t10k-labels-idx1-ubyte.gz", np.zeros(n_test, np.uint8))
    return directory


@posix_only
def test_gzip_claiming_5_million_images_is_refused_before_inflating(tmp_path):
    bomb = h.idx_gzip_bomb(tmp_path / "bomb-idx3-ubyte.gz", 5_400_000)
    assert bomb.stat().st_size < 5_000_000  # 4.2 MB that would inflate to 4.2 GB
    assert read_idx_header(bomb)[1] == (5_400_000, 28, 28)  # an honest header
    result = h.run_limited(f"""
        from chainrule.datasets import read_idx
        read_idx({str(bomb)!r})
    """, memory_mb=500, timeout=30)
    assert result["error"] == "IDXFormatError", result
    assert "4,233,600,000 bytes" in result["message"]
    assert f"more than max_bytes={DEFAULT_MAX_BYTES:,}" in result["message"]
    assert result["peak_mb"] < 100 and result["seconds"] < 5, result


@posix_only
def test_load_mnist_checks_the_headers_before_any_body(tmp_path):
    directory = _mnist_dir(tmp_path / "mnist")
    h.idx_gzip_bomb(directory / "train-images-idx3-ubyte.gz", 5_400_000)
    # Counts disagree: said from the headers, nothing inflated.
    result = h.run_limited(f"""
        from chainrule.datasets import load_mnist
        load_mnist({str(directory)!r})
    """, memory_mb=500, timeout=30)
    assert result["error"] == "ValueError", result
    assert "has 5400000 images but" in result["message"] and "has 8 labels" in result["message"]
    assert result["peak_mb"] < 100, result
    # Counts agree: the size cap refuses the images file, again before inflating.
    h.small_idx_labels(directory / "train-labels-idx1-ubyte.gz", 5_400_000)
    result = h.run_limited(f"""
        from chainrule.datasets import load_mnist
        load_mnist({str(directory)!r})
    """, memory_mb=500, timeout=30)
    assert result["error"] == "IDXFormatError", result
    assert "more than max_bytes" in result["message"]
    assert result["peak_mb"] < 100, result


def test_max_bytes_is_a_parameter(tmp_path):
    directory = _mnist_dir(tmp_path / "mnist")
    with pytest.raises(IDXFormatError, match=r"6,272 bytes .* more than max_bytes=6,000; pass"):
        load_mnist(directory, max_bytes=6000)
    (x, y), _ = load_mnist(directory, max_bytes=6272)
    assert x.shape == (8, 784)
    path = directory / "t10k-images-idx3-ubyte.gz"
    assert read_idx(path, max_bytes=None).shape == (4, 28, 28)
    with pytest.raises(IDXFormatError, match="max_bytes=3,135"):
        read_idx(path, max_bytes=3135)


@posix_only
def test_fifo_directory_and_device_are_refused_at_once(tmp_path):
    fifo = tmp_path / "pipe-idx3-ubyte"
    os.mkfifo(fifo)
    result = h.run_limited(f"""
        from chainrule.datasets import read_idx
        read_idx({str(fifo)!r})
    """, timeout=30)
    assert result["error"] == "IDXFormatError", result
    assert "is a named pipe (FIFO), not an IDX file" in result["message"]
    with pytest.raises(IDXFormatError, match="pipe-idx3-ubyte is a named pipe"):
        read_idx_header(fifo)
    with pytest.raises(IDXFormatError, match="is a directory, not an IDX file"):
        read_idx(tmp_path)
    with pytest.raises(IDXFormatError, match="is a directory"):
        read_idx_header(tmp_path)
    if os.path.exists("/dev/zero"):
        with pytest.raises(IDXFormatError, match="is a device"):
            read_idx("/dev/zero")
    with pytest.raises(FileNotFoundError, match="no IDX file at"):
        read_idx(tmp_path / "missing")
    # In an MNIST directory, a FIFO under a standard name is named as what it is.
    directory = _mnist_dir(tmp_path / "mnist")
    (directory / "t10k-labels-idx1-ubyte.gz").unlink()
    os.mkfifo(directory / "t10k-labels-idx1-ubyte")
    result = h.run_limited(f"""
        from chainrule.datasets import load_mnist
        load_mnist({str(directory)!r})
    """, timeout=30)
    assert result["error"] == "IDXFormatError", result
    assert "t10k-labels-idx1-ubyte is a named pipe (FIFO)" in result["message"]


def test_channels_gives_nchw(tmp_path):
    directory = _mnist_dir(tmp_path / "mnist")
    (x, y), (x_test, _) = load_mnist(directory, flatten=False, channels=True)
    assert x.shape == (8, 1, 28, 28) and x_test.shape == (4, 1, 28, 28)
    assert x.dtype == np.float32
    (x, _), _ = load_mnist(directory, flatten=False, normalize=False, channels=True)
    assert x.shape == (8, 1, 28, 28) and x.dtype == np.uint8
    (x, _), _ = load_mnist(directory, flatten=False)  # channels by default
    assert x.shape == (8, 1, 28, 28)
    (x, _), _ = load_mnist(directory, flatten=False, channels=False)
    assert x.shape == (8, 28, 28)
    x, _ = load_mnist_split("test", directory, flatten=False, channels=True)
    assert x.shape == (4, 1, 28, 28)


def test_gzip_body_inflates_into_the_final_array_only(tmp_path):
    import tracemalloc

    array = np.random.default_rng(0).integers(0, 256, (2000, 28, 28), dtype=np.uint8)
    path = tmp_path / "x.gz"
    write_idx(path, array)
    tracemalloc.start()
    try:
        got = read_idx(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(got, array)
    assert peak < array.nbytes + 2 * 2**20  # the array and about one read slice
