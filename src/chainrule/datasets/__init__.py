"""Datasets for chainrule: the IDX file format and MNIST.

>>> from chainrule.datasets import load_mnist
>>> (x_train, y_train), (x_test, y_test) = load_mnist()   # bundled, offline
>>> x_train.shape, x_train.dtype, y_train.dtype
((10000, 784), dtype('float32'), dtype('int64'))
"""

from .idx import DEFAULT_MAX_BYTES, IDXFormatError, read_idx, read_idx_header, write_idx
from .mnist import (
    BUNDLED_SHA256,
    DEFAULT_TIMEOUT,
    MNIST_CHECKSUMS,
    MNIST_PROVENANCE,
    MNIST_URL,
    ChecksumError,
    DownloadError,
    MNISTInfo,
    default_cache_dir,
    describe_mnist,
    download_mnist,
    load_mnist,
    load_mnist_split,
)

__all__ = [
    "BUNDLED_SHA256",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_TIMEOUT",
    "MNIST_CHECKSUMS",
    "MNIST_PROVENANCE",
    "MNIST_URL",
    "ChecksumError",
    "DownloadError",
    "IDXFormatError",
    "MNISTInfo",
    "default_cache_dir",
    "describe_mnist",
    "download_mnist",
    "load_mnist",
    "load_mnist_split",
    "read_idx",
    "read_idx_header",
    "write_idx",
]
