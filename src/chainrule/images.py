"""Turn ordinary pictures of digits (PNG, JPEG, ...) into MNIST-like inputs.

A network trained on MNIST has only ever seen digits prepared one way, so a
picture must be prepared the same way before the network can read it. MNIST's
digits were made from scanned, black-on-white NIST digits like this:

1. ink is bright (1.0) on a black (0.0) background;
2. the digit was cropped and scaled, keeping its aspect ratio, so that its
   longer side fills a 20x20 box, with anti-aliasing (hence the grey edges);
3. the 20x20 box was placed in a 28x28 frame so that the digit's centre of
   mass sits at the frame's centre, pixel (14, 14).

:func:`to_mnist` repeats these steps for any picture, and adds two that a
photo or a paint program needs: it decides which of dark and light is ink,
and it thickens strokes drawn with a pen much thinner than MNIST's (a
3-pixel brush on a 500-pixel digit would otherwise shrink to a faint hair).

Needs Pillow, an optional extra: ``pip install "chainrule[image]"``.

>>> from chainrule.images import load_images
>>> x = load_images(["seven.png"])          # doctest: +SKIP
>>> x.shape, x.dtype                        # doctest: +SKIP
((1, 784), dtype('float32'))
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from os import PathLike
from typing import Any

import numpy as np

__all__ = [
    "ImageReadError",
    "load_image",
    "load_images",
    "to_mnist",
    "stroke_width",
    "center_of_mass",
]

#: Side of the box the digit is scaled into, and of the frame around it.
BOX, FRAME = 20, 28
#: MNIST's strokes are about a tenth of the digit's longer side wide (measured on
#: the bundled digits with :func:`stroke_width`: median 1.96 px for a 20 px box).
STROKE_RATIO = 0.1
#: Pixels above this share of full ink count as the digit when cropping.
INK_THRESHOLD = 0.3
#: Strokes are thickened only when thinner than this share of MNIST's typical width:
#: 1 px in the 20 px box, about MNIST's own thinnest tenth (a hairline from a paint
#: program is far thinner), so real MNIST digits pass through unchanged.
THIN = 0.5
#: Very large crops are first reduced to this long side; plenty for a 20 px result.
WORK_SIDE = 160


class ImageReadError(ValueError):
    """A file is not an image Pillow can read, or holds no digit."""


def _pillow() -> Any:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            'reading images needs Pillow; install it with: pip install "chainrule[image]"'
        ) from None
    return Image


def load_image(path: str | PathLike, *, thicken: bool = True) -> np.ndarray:
    """Read the picture at ``path`` and return it as an MNIST-like 28x28 float32 array.

    Raises
    ------
    FileNotFoundError
        If there is no such file.
    ImageReadError
        If Pillow cannot read it, or it holds no visible digit.
    """
    Image = _pillow()
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no image file at {path}")
    try:
        with Image.open(path) as image:
            image.load()
            image = _upright(image)
    except (OSError, SyntaxError, ValueError) as error:
        # UnidentifiedImageError is an OSError; truncated files raise OSError too.
        raise ImageReadError(f"{path} is not a readable image ({error})") from None
    try:
        return to_mnist(image, thicken=thicken)
    except ImageReadError as error:
        raise ImageReadError(f"{path}: {error}") from None


def load_images(paths: Sequence[str | PathLike], *, thicken: bool = True) -> np.ndarray:
    """Several pictures as one batch of flattened MNIST-like rows, shape ``(len(paths), 784)``."""
    if not paths:
        return np.zeros((0, FRAME * FRAME), dtype=np.float32)
    return np.stack([load_image(p, thicken=thicken).reshape(-1) for p in paths])


def to_mnist(image: Any, *, thicken: bool = True) -> np.ndarray:
    """Prepare one picture of a digit the way MNIST's digits were prepared.

    Parameters
    ----------
    image : PIL.Image.Image or array
        Any Pillow mode (colour, grey, with or without transparency), or an
        array shaped (height, width) or (height, width, 3 or 4), either
        uint8 0..255 or float 0..1.
    thicken : bool
        Widen strokes that are much thinner than MNIST's (see the module notes).

    Returns
    -------
    array (28, 28) float32 in [0, 1]
        Ink high, the digit's longer side 20 px, its centre of mass at (14, 14).

    Raises
    ------
    ImageReadError
        If the picture is blank (no ink stands out from the background).
    """
    ink = _ink(_grey(image))
    ink = _crop(ink)
    if max(ink.shape) > WORK_SIDE:
        # Averaging down first keeps a thin line as a fainter line; the
        # rescale below brings it back to full ink. It scales by a high
        # percentile of the stroke, not its maximum: a 1-px line falls on the
        # coarse grid unevenly, and a few lucky pixels would set the scale.
        ink = _resize(ink, _fit(ink.shape, WORK_SIDE), "box")
        stroke = ink[ink > 0.1 * ink.max()]
        ink = np.minimum(ink / np.percentile(stroke, 90), 1.0)
    if thicken:
        ink = _thicken(ink)
    digit = np.clip(_resize(ink, _fit(ink.shape, BOX), "lanczos"), 0.0, 1.0)
    return _center(digit)


# -- the steps ---------------------------------------------------------------------


def _upright(image: Any) -> Any:
    """Apply the EXIF orientation a phone camera writes, so the digit is upright."""
    from PIL import ImageOps

    return ImageOps.exif_transpose(image)


def _grey(image: Any) -> np.ndarray:
    """Grey levels in [0, 1] (1 = white), with transparency resolved.

    Transparent pixels are shown over a background that contrasts with the
    opaque ones: white under dark strokes (the usual case), black under light
    strokes, so that a white digit on a transparent canvas survives.
    """
    if isinstance(image, np.ndarray):
        array = np.asarray(image)
        if array.dtype == np.uint8:
            array = array.astype(np.float32) / 255.0
        else:
            array = array.astype(np.float32)
            if array.size and array.max() > 1.0:
                array /= 255.0
        if array.ndim == 2:
            return np.clip(array, 0.0, 1.0)
        if array.ndim == 3 and array.shape[2] in (3, 4):
            rgb, alpha = array[..., :3], array[..., 3] if array.shape[2] == 4 else None
            # ITU-R 601 luma, the weights Pillow's convert("L") uses.
            grey = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        else:
            raise ImageReadError(
                f"expected an image array shaped (h, w), (h, w, 3) or (h, w, 4), got {array.shape}"
            )
    else:
        has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
        grey = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
        alpha = None
        if has_alpha:
            alpha = np.asarray(image.convert("RGBA").getchannel("A"), dtype=np.float32) / 255.0
    if grey.size == 0:
        raise ImageReadError("the image is empty")
    if alpha is not None and alpha.min() < 1.0:
        opaque = alpha.sum()
        stroke_level = (grey * alpha).sum() / opaque if opaque > 0 else 0.0
        background = 0.0 if stroke_level > 0.5 else 1.0
        grey = alpha * grey + (1.0 - alpha) * background
    return np.clip(grey, 0.0, 1.0)


def _ink(grey: np.ndarray) -> np.ndarray:
    """Ink in [0, 1] on a 0 background, whichever of dark and light the ink was.

    The border of a picture of one digit is background, so its median says
    which polarity the picture has and what level the paper is; the paper is
    then mapped to 0 and the strongest ink to 1.
    """
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    paper = float(np.median(border))
    ink = (1.0 - grey) if paper > 0.5 else grey.copy()
    paper = 1.0 - paper if paper > 0.5 else paper
    ink -= paper
    peak = float(ink.max())
    if peak < 0.1:
        raise ImageReadError("no digit found: nothing stands out from the background")
    ink /= peak
    np.clip(ink, 0.0, 1.0, out=ink)
    return ink.astype(np.float32, copy=False)


def _crop(ink: np.ndarray) -> np.ndarray:
    """The bounding box of the pixels with at least ``INK_THRESHOLD`` ink."""
    mask = ink >= INK_THRESHOLD
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    # Faint fringes outside the box are gone; inside, keep the grey edges.
    return np.ascontiguousarray(crop)


def stroke_width(ink: np.ndarray, threshold: float = 0.5) -> float:
    """Typical stroke width in pixels of the ink ``>= threshold`` in a 2-D array.

    A stroke of length L and width w covers about ``L * w`` pixels and has
    an outline about ``2 * L`` long, so ``w ~ 2 * area / perimeter``. The
    perimeter counts pixel edges between ink and background, which slightly
    overstates slanted outlines; the same estimate is used on MNIST and on
    the picture, so the two stay comparable.
    """
    mask = np.pad(np.asarray(ink) >= threshold, 1).astype(np.int8)
    area = int(mask.sum())
    if area == 0:
        return 0.0
    perimeter = int(np.abs(np.diff(mask, axis=0)).sum() + np.abs(np.diff(mask, axis=1)).sum())
    return 2.0 * area / perimeter


def _thicken(ink: np.ndarray) -> np.ndarray:
    """Widen strokes much thinner than MNIST's, relative to the digit's size.

    A ``k x k`` maximum filter adds ``k - 1`` pixels to the stroke width and
    to the box; ``k`` is chosen so that afterwards width / long side is about
    ``STROKE_RATIO``: ``(w + k - 1) = STROKE_RATIO * (L + k - 1)``.
    """
    width, long_side = stroke_width(ink), max(ink.shape)
    if width >= THIN * STROKE_RATIO * long_side:
        return ink
    grow = int(round((STROKE_RATIO * long_side - width) / (1.0 - STROKE_RATIO)))
    if grow < 1:
        return ink
    return _max_filter(np.pad(ink, grow), grow + 1)


def _max_filter(a: np.ndarray, size: int) -> np.ndarray:
    """Maximum over a ``size x size`` window, as two 1-D running maxima (rows, then columns)."""
    lo = size // 2
    for axis in (0, 1):
        out = a.copy()
        for shift in range(-lo, size - lo):
            if shift == 0:
                continue
            src = [slice(None)] * 2
            dst = [slice(None)] * 2
            n = a.shape[axis]
            # out[i] = max(out[i], a[i + shift]) where i + shift is inside the array
            dst[axis] = slice(max(-shift, 0), n - max(shift, 0))
            src[axis] = slice(max(shift, 0), n + min(shift, 0))
            np.maximum(out[tuple(dst)], a[tuple(src)], out=out[tuple(dst)])
        a = out
    return a


def _fit(shape: tuple[int, ...], side: int) -> tuple[int, int]:
    """(height, width) with the longer side ``side`` and the aspect ratio kept."""
    height, width = shape
    scale = side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def _resize(a: np.ndarray, shape: tuple[int, int], method: str) -> np.ndarray:
    """Anti-aliased resize of a float image with Pillow (its 32-bit float mode)."""
    Image = _pillow()
    resample = {"box": Image.Resampling.BOX, "lanczos": Image.Resampling.LANCZOS}[method]
    picture = Image.fromarray(np.ascontiguousarray(a, dtype=np.float32))
    height, width = shape
    return np.asarray(picture.resize((width, height), resample), dtype=np.float32).copy()


def center_of_mass(image: np.ndarray) -> tuple[float, float]:
    """The ink-weighted mean (row, column) of a 2-D image, in pixel-index coordinates."""
    image = np.asarray(image, dtype=np.float64)
    total = image.sum()
    if total <= 0:
        return (image.shape[0] - 1) / 2, (image.shape[1] - 1) / 2
    rows = image.sum(axis=1) @ np.arange(image.shape[0]) / total
    cols = image.sum(axis=0) @ np.arange(image.shape[1]) / total
    return float(rows), float(cols)


def _center(digit: np.ndarray) -> np.ndarray:
    """Paste ``digit`` into a 28x28 frame with its centre of mass at pixel (14, 14).

    MNIST moved whole pixels; so do we. Anything pushed past the frame's
    edge (only for very lopsided digits) is cut off.
    """
    frame = np.zeros((FRAME, FRAME), dtype=np.float32)
    row, col = center_of_mass(digit)
    top, left = int(round(FRAME / 2 - row)), int(round(FRAME / 2 - col))
    height, width = digit.shape
    r0, c0 = max(top, 0), max(left, 0)
    r1, c1 = min(top + height, FRAME), min(left + width, FRAME)
    frame[r0:r1, c0:c1] = digit[r0 - top : r1 - top, c0 - left : c1 - left]
    return frame
