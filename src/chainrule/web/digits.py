"""The visitor's labelled drawings, kept as an MNIST-style IDX folder."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ..datasets import read_idx, write_idx
from .errors import ServiceError

__all__ = ["DigitStore"]

_IDX = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


class DigitStore:
    """The visitor's labelled drawings, kept as an MNIST-style IDX folder.

    The four files carry MNIST's names, so ``load_mnist(folder)`` and
    ``chainrule train --data folder`` read them. A drawing goes to the test
    split (``t10k-*``) when the SHA-256 of its pixels is divisible by 5
    (about one in five, and the same drawing always lands in the same split,
    whatever the order), otherwise to the training split.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self._lock = threading.Lock()
        self.images = np.zeros((0, 28, 28), dtype=np.uint8)
        self.labels = np.zeros(0, dtype=np.uint8)
        files = {role: self.folder / name for role, name in _IDX.items()}
        if all(f.is_file() for f in files.values()):
            images = [read_idx(files["train_images"]), read_idx(files["test_images"])]
            labels = [read_idx(files["train_labels"]), read_idx(files["test_labels"])]
            for imgs, lbls in zip(images, labels):
                if imgs.dtype != np.uint8 or imgs.shape[1:] != (28, 28) or len(imgs) != len(lbls):
                    raise ServiceError(f"{self.folder} does not hold 28x28 digits with labels")
            self.images = np.concatenate(images)
            self.labels = np.concatenate(labels).astype(np.uint8)

    @staticmethod
    def is_test(image: np.ndarray) -> bool:
        return int.from_bytes(hashlib.sha256(image.tobytes()).digest()[:8], "big") % 5 == 0

    def add(self, digit: np.ndarray, label: int) -> dict[str, Any]:
        """Add one preprocessed drawing (28x28 floats in [0, 1]) with its label and rewrite the files."""
        image = np.round(np.clip(digit, 0.0, 1.0) * 255).astype(np.uint8)
        with self._lock:
            self.images = np.concatenate([self.images, image[None]])
            self.labels = np.append(self.labels, np.uint8(label))
            self._write()
            return self._summary()

    def _write(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        test = np.array([self.is_test(image) for image in self.images], dtype=bool)
        for split, rows in (("train", ~test), ("test", test)):
            write_idx(self.folder / _IDX[f"{split}_images"], self.images[rows])
            write_idx(self.folder / _IDX[f"{split}_labels"], self.labels[rows])

    def splits(self) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """``(x_train, y_train), (x_test, y_test)`` as float32 rows of 784 and int64 labels."""
        with self._lock:
            images, labels = self.images.copy(), self.labels.astype(np.int64)
        test = np.array([self.is_test(image) for image in images], dtype=bool)
        x = images.reshape(len(images), 784).astype(np.float32) / np.float32(255)
        return (x[~test], labels[~test]), (x[test], labels[test])

    def summary(self) -> dict[str, Any]:
        with self._lock:
            return self._summary()

    def _summary(self) -> dict[str, Any]:
        test = sum(self.is_test(image) for image in self.images)
        return {"count": int(len(self.labels)), "train": int(len(self.labels) - test),
                "test": int(test),
                "per_label": [int(c) for c in np.bincount(self.labels, minlength=10)[:10]],
                "folder": str(self.folder)}
