"""Data augmentation: new training inputs from old ones, fresh every epoch.

An augmentation is a function ``(x, rng) -> x`` that ``fit(..., augment=...)``
applies to each epoch's shuffled inputs.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["random_shift"]


def random_shift(
    max_shift: int = 2, image_shape: tuple[int, int] = (28, 28)
) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
    """Shift each image by up to ``max_shift`` pixels in x and y, filling with 0.

    The returned function takes a batch of flattened images ``(n, height *
    width)`` or image-shaped ones ``(n, C, height, width)`` (all channels of
    an image move together) and returns a new batch of the same shape.

    A digit moved by a pixel or two is still the same digit, so the network
    learns features that do not depend on exact position. Images sharing a
    shift are moved together with one slice copy, so an epoch costs
    ``(2 * max_shift + 1)**2`` array copies rather than one per image.
    """
    height, width = image_shape
    if not 0 <= max_shift < min(height, width) // 2:
        raise ValueError(
            f"max_shift must be from 0 to {min(height, width) // 2 - 1} for {height}x{width} "
            f"images, got {max_shift}"
        )

    def shift(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        flat = x.ndim == 2 and x.shape[-1] == height * width
        if not (flat or (x.ndim == 4 and x.shape[-2:] == (height, width))):
            raise ValueError(
                f"random_shift expects rows of {height * width} pixels ({height}x{width}) or "
                f"images shaped (n, C, {height}, {width}), got shape {x.shape}"
            )
        # (n, C, H, W) in both cases: a flat row is one channel
        images = x.reshape(len(x), -1, height, width)
        out = np.zeros_like(images)
        dy = rng.integers(-max_shift, max_shift + 1, size=len(images))
        dx = rng.integers(-max_shift, max_shift + 1, size=len(images))
        for sy in range(-max_shift, max_shift + 1):
            for sx in range(-max_shift, max_shift + 1):
                rows = np.flatnonzero((dy == sy) & (dx == sx))
                if rows.size == 0:
                    continue
                # out[y + sy, x + sx] = in[y, x], cropped to the frame
                out[rows, :, max(sy, 0) : height + min(sy, 0), max(sx, 0) : width + min(sx, 0)] = (
                    images[rows, :, max(-sy, 0) : height + min(-sy, 0),
                           max(-sx, 0) : width + min(-sx, 0)]
                )
        return out.reshape(x.shape)

    return shift
