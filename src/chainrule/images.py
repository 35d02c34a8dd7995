"""Turn ordinary pictures of digits (PNG, JPEG, ...) into MNIST-like inputs.

A network trained on MNIST has only ever seen digits prepared one way, so a
picture must be prepared the same way before the network can read it. MNIST's
digits were made from scanned, black-on-white NIST digits like this:

1. ink is bright (1.0) on a black (0.0) background;
2. the digit was cropped and scaled, keeping its aspect ratio, so that its
   longer side fills a 20x20 box, with anti-aliasing (hence the grey edges);
3. the 20x20 box was placed in a 28x28 frame so that the digit's centre of
   mass sits at the frame's centre, pixel (14, 14).

:func:`to_mnist` repeats these steps for any picture, and adds what a photo,
a scan or a paint program needs:

* every Pillow mode is scaled to grey levels in [0, 1] by its own range
  (8-bit modes by 255; 16-bit greyscale by 2**b - 1 for the smallest b of
  8, 10, 12, 14 and 16 bits that holds its largest value, as cameras store
  10- to 14-bit data in 16-bit files; 32-bit integer and float pictures by
  the range their values use), and transparency is resolved;
* the paper is the picture's dominant tone (the peak of its histogram), and
  the ink is whichever side of the paper holds more contrast, so a dark frame
  or a scanner's shadow along the edge cannot turn the picture over;
* lines touching the picture's edge and running along most of it (a frame,
  the edge of a form cell, a shadow) are not the digit when something else
  is, and specks far smaller than the digit are noise: neither decides the crop;
* strokes drawn with a pen much thinner than MNIST's are thickened (a 3-pixel
  brush on a 500-pixel digit would otherwise shrink to a faint hair).

Reading files (:func:`load_image`) treats them as untrusted:

* only the raster formats in :data:`ALLOWED_FORMATS` are opened, so a
  PostScript file named ``x.png`` never reaches Ghostscript;
* a picture declaring more than :data:`MAX_PIXELS` pixels or
  :data:`MAX_SIDE` pixels a side, or a file larger than
  :data:`MAX_FILE_BYTES`, is refused before anything is decoded;
* large pictures are reduced while being read (JPEG's DCT scaling, then box
  averaging of strips of rows), so the peak memory of reading any accepted
  picture stays below :data:`PEAK_MEMORY_BOUND` (measured by
  ``benchmarks/hostile_inputs.py`` on the worst kinds of accepted picture);
* every failure is one :class:`ImageReadError` whose message is one line.

Needs Pillow, an optional extra: ``pip install "chainrule[image]"``.

>>> from chainrule.images import load_images
>>> x = load_images(["seven.png"])          # doctest: +SKIP
>>> x.shape, x.dtype                        # doctest: +SKIP
((1, 784), dtype('float32'))
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Sequence
from os import PathLike
from typing import Any, BinaryIO

import numpy as np

from ._files import open_regular

__all__ = [
    "ALLOWED_FORMATS",
    "MAX_FILE_BYTES",
    "MAX_PIXELS",
    "MAX_SIDE",
    "PEAK_MEMORY_BOUND",
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
#: Whole pictures are reduced (by whole-pixel box averaging) to at most this long
#: side while they are read: a digit filling a twentieth of it still spans 25 px.
READ_SIDE = 512

#: Pillow format names that :func:`load_image` opens ("PPM" covers PBM, PGM and
#: PPM; "MPO" is how Pillow names the JPEG files of many phone cameras).
ALLOWED_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "PPM")
_OPENED_AS = frozenset(ALLOWED_FORMATS) | {"MPO"}
#: Largest picture read, in pixels (width x height, as the file declares it):
#: 40 megapixels, e.g. 8000 x 5000, more than a phone camera's usual picture.
MAX_PIXELS = 40_000_000
#: Longest side read, in pixels. A decoder holds a few rows at a time, so an
#: absurdly wide picture (40,000,000 x 1) would cost memory of its own.
MAX_SIDE = 20_000
#: Largest picture file read, in bytes. Pillow reads a PNG's text chunks whole
#: (and copies them twice), so the file size bounds that memory too.
MAX_FILE_BYTES = 48 * 2**20
#: Peak resident memory, in bytes, of a process reading any accepted picture
#: with :func:`load_image` (interpreter, NumPy and Pillow included).
PEAK_MEMORY_BOUND = 300 * 10**6
# A picture cut into more ink runs than this is noise, not a drawing; the
# component analysis (frames, specks) is skipped for it.
_MAX_RUNS = 100_000


class ImageReadError(ValueError):
    """A file is not a picture chainrule reads (format, size, content), or holds no digit.

    The message is one line and starts with the file's name when there is a file.
    """


def _pillow() -> Any:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            'reading images needs Pillow; install it with: pip install "chainrule[image]"'
        ) from None
    return Image


def _one_line(error: BaseException, limit: int = 200) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _open_regular(path: str) -> BinaryIO:
    """Open ``path`` for reading only if it is a regular file (never blocks on a FIFO)."""
    try:
        return open_regular(path, "picture file", ImageReadError, missing="image file")
    except (FileNotFoundError, ImageReadError):
        raise
    except OSError as error:
        raise ImageReadError(f"{path} cannot be opened: {_one_line(error)}") from None


def load_image(path: str | PathLike, *, thicken: bool = True,
               max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read the picture at ``path`` and return it as an MNIST-like 28x28 float32 array.

    Parameters
    ----------
    path : str or os.PathLike
        A picture file in one of :data:`ALLOWED_FORMATS`, recognised by its
        content (the name does not matter).
    thicken : bool
        Widen strokes much thinner than MNIST's (see :func:`to_mnist`).
    max_pixels : int
        Largest width x height read; default :data:`MAX_PIXELS`. The memory
        bound :data:`PEAK_MEMORY_BOUND` holds for the default.

    Raises
    ------
    FileNotFoundError
        If there is no such file.
    ImageReadError
        If the file is not a regular file, is larger than :data:`MAX_FILE_BYTES`,
        is not in an allowed format, declares more than ``max_pixels`` pixels
        or a side longer than :data:`MAX_SIDE`,
        cannot be decoded, or holds no visible digit. One line, naming the file.
    """
    Image = _pillow()
    path = os.fspath(path)
    with _open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
        if size > MAX_FILE_BYTES:
            raise ImageReadError(
                f"{path} is {size / 2**20:.0f} MiB; chainrule reads picture files of at most "
                f"{MAX_FILE_BYTES / 2**20:.0f} MiB")
        # Pillow's warnings on hostile files (its own, higher, pixel limit; TIFF
        # tags past the end; EXIF oddities) are not the user's business: what
        # matters is raised below as one ImageReadError.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=r"PIL(\.|$)")
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            try:
                image = Image.open(f, formats=ALLOWED_FORMATS)
            except Image.DecompressionBombError as error:
                # Pillow's own, higher, limit stopped it; its message holds the declared count.
                found = re.search(r"\((\d+) pixels\)", str(error))
                declared = (f"{int(found.group(1)):,}" if found
                            else f"more than {2 * Image.MAX_IMAGE_PIXELS:,}")
                raise ImageReadError(
                    f"{path}: the picture declares {declared} pixels; chainrule reads pictures "
                    f"of at most {max_pixels:,} pixels") from None
            except Image.UnidentifiedImageError:
                raise ImageReadError(
                    f"{path} is not a readable image: not a picture in a format chainrule reads "
                    f"({', '.join(ALLOWED_FORMATS)})") from None
            except Exception as error:  # plugins raise many kinds on hostile bytes
                raise ImageReadError(f"{path} is not a readable image ({_one_line(error)})") from None
            with image:
                if image.format not in _OPENED_AS:  # pragma: no cover - formats= guarantees it
                    raise ImageReadError(f"{path}: {image.format} pictures are not read")
                width, height = image.size
                if width * height > max_pixels or max(width, height) > MAX_SIDE:
                    raise ImageReadError(
                        f"{path}: the picture is {width}x{height} pixels "
                        f"({width * height / 1e6:.1f} megapixels); chainrule reads pictures of "
                        f"at most {max_pixels / 1e6:g} megapixels and {MAX_SIDE:,} pixels a side")
                try:
                    grey, alpha = _read(image)
                except ImageReadError as error:
                    raise ImageReadError(f"{path}: {error}") from None
                except Exception as error:  # truncated data, decoder errors, ...
                    # UnidentifiedImageError is an OSError; truncated files raise OSError too.
                    raise ImageReadError(
                        f"{path} is not a readable image ({_one_line(error)})") from None
    try:
        return _prepare(grey, alpha, thicken)
    except ImageReadError as error:
        raise ImageReadError(f"{path}: {error}") from None


def load_images(paths: Sequence[str | PathLike], *, thicken: bool = True,
                max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Several pictures as one batch of flattened MNIST-like rows, shape ``(len(paths), 784)``.

    Raises the first error of :func:`load_image`; to go on past bad files,
    call :func:`load_image` for each.
    """
    if not paths:
        return np.zeros((0, FRAME * FRAME), dtype=np.float32)
    return np.stack([load_image(p, thicken=thicken, max_pixels=max_pixels).reshape(-1)
                     for p in paths])


def to_mnist(image: Any, *, thicken: bool = True) -> np.ndarray:
    """Prepare one picture of a digit the way MNIST's digits were prepared.

    Parameters
    ----------
    image : PIL.Image.Image or array
        Any Pillow mode (colour, grey, 1/8/16/32-bit, float, with or without
        transparency), or an array shaped (height, width) or (height, width,
        3 or 4): uint8 (0..255), uint16 (0..65535), or float (0..1, or 0..255
        when larger values occur).
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
    if isinstance(image, np.ndarray) or not hasattr(image, "mode"):
        grey, alpha = _array_grey(np.asarray(image))
    else:
        grey, alpha = _read(image)
    return _prepare(grey, alpha, thicken)


def _prepare(grey: np.ndarray, alpha: np.ndarray | None, thicken: bool) -> np.ndarray:
    """The steps after reading: ink, the digit's pixels, crop, size, stroke, centre."""
    ink = _ink(_composite(grey, alpha))
    ink = _crop(_digit_only(ink))
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


# -- reading: every mode to grey levels in [0, 1], reduced while read ----------------------

# EXIF orientation tag -> the array operation that shows the picture upright
# (the same transposes as PIL.ImageOps.exif_transpose).
_ORIENT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.T,
    6: lambda a: np.rot90(a, -1),
    7: lambda a: np.rot90(a, 2).T,
    8: lambda a: np.rot90(a, 1),
}
_EIGHT_BIT_ALPHA = ("RGBA", "LA", "PA", "RGBa", "La")


def _read(image: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """Grey levels and alpha (or None) of a Pillow picture, reduced to :data:`READ_SIDE`.

    The picture is reduced by box averaging over k x k blocks (k the smallest
    whole number bringing the long side to READ_SIDE or less), one strip of
    rows at a time, so no full-size float copy is ever made. Alpha-weighted
    grey and alpha are averaged separately (premultiplied averaging), so
    transparent pixels do not bleed their hidden colour into the result.
    """
    width, height = image.size
    if width * height == 0:
        raise ImageReadError("the image is empty")
    k = math.ceil(max(width, height) / READ_SIDE)
    if k > 1 and image.format in ("JPEG", "MPO"):
        # libjpeg decodes at 1/2, 1/4 or 1/8 scale directly; "L" skips the colour.
        image.draft("L" if image.mode in ("L", "RGB", "YCbCr") else None,
                    (math.ceil(width / k), math.ceil(height / k)))
    image.load()
    width, height = image.size
    k = math.ceil(max(width, height) / READ_SIDE)
    to_grey = _grey_reader(image)
    # Strips of whole k x k blocks, about half a million pixels each (at most
    # 40 x 20,000), so the float copies stay small.
    strip = max(k, (500_000 // width) // k * k)
    grey_parts, alpha_parts = [], []
    for top in range(0, height, strip):
        grey, alpha = to_grey(image.crop((0, top, width, min(top + strip, height))))
        if alpha is None:
            grey_parts.append(_block_mean(grey, k))
        else:
            grey_parts.append(_block_mean(grey * alpha, k))
            alpha_parts.append(_block_mean(alpha, k))
    grey = np.concatenate(grey_parts)
    alpha = np.concatenate(alpha_parts) if alpha_parts else None
    if alpha is not None:
        # Back from premultiplied; fully transparent blocks keep grey 0 (alpha hides it).
        np.divide(grey, alpha, out=grey, where=alpha > 0)
        if alpha.min() >= 1.0:
            alpha = None
    orientation = _orientation(image)
    if orientation in _ORIENT:
        grey = np.ascontiguousarray(_ORIENT[orientation](grey))
        alpha = None if alpha is None else np.ascontiguousarray(_ORIENT[orientation](alpha))
    return np.clip(grey, 0.0, 1.0, out=grey), alpha


def _orientation(image: Any) -> int:
    try:
        return int(image.getexif().get(0x0112, 1))
    except Exception:  # a broken EXIF block is no reason to refuse the picture
        return 1


def _grey_reader(image: Any):
    """A function mapping a piece of ``image`` to (grey, alpha or None), float32 in [0, 1]."""
    mode = image.mode
    transparency = image.info.get("transparency")
    if mode.startswith("I;16"):
        # Cameras and scanners store 10-, 12- and 14-bit data in 16-bit files:
        # scale by 2**b - 1 for the smallest such b that holds the largest value.
        try:
            high = image.getextrema()[1]
        except ValueError:  # Pillow has no extrema for I;16B; look at the values
            high = max(int(np.asarray(image.crop((0, top, image.width, top + 256))).max())
                       for top in range(0, image.height, 256))
        span = np.float32(next(2**b - 1 for b in (8, 10, 12, 14, 16) if high <= 2**b - 1))

        def read16(piece):
            values = np.asarray(piece)
            alpha = None
            if isinstance(transparency, int):
                alpha = (values != transparency).astype(np.float32)
            return values.astype(np.float32) / span, alpha
        return read16
    if mode in ("I", "F"):
        low, high = image.getextrema()
        if not (math.isfinite(low) and math.isfinite(high)):
            raise ImageReadError("the picture has non-finite pixel values")
        # Scale by the range the values use: [0, 1] (float) as is, else 8 or 16 bits,
        # else the picture's own min..max.
        if mode == "F" and low >= 0 and high <= 1:
            offset, span = 0.0, 1.0
        elif low >= 0 and high <= 255:
            offset, span = 0.0, 255.0
        elif low >= 0 and high <= 65535:
            offset, span = 0.0, 65535.0
        else:
            offset, span = float(low), float(high - low) or 1.0

        def read32(piece):
            values = np.asarray(piece).astype(np.float32)
            return (values - np.float32(offset)) / np.float32(span), None
        return read32
    if mode == "LAB":
        return lambda piece: (np.asarray(piece)[..., 0].astype(np.float32) / 255, None)
    has_alpha = mode in _EIGHT_BIT_ALPHA or transparency is not None
    if has_alpha:
        def read_alpha(piece):
            if piece.mode == "La":
                piece = piece.convert("LA")
            elif piece.mode not in ("LA", "RGBA"):
                piece = piece.convert("RGBA")  # applies a palette's or a colour key's transparency
            values = np.asarray(piece.convert("LA"), dtype=np.float32) / 255
            return values[..., 0], values[..., 1]
        return read_alpha
    def read8(piece):
        if piece.mode not in ("L", "1", "P", "RGB", "RGBX", "CMYK", "YCbCr", "HSV"):
            piece = piece.convert("RGB")
        return np.asarray(piece.convert("L"), dtype=np.float32) / 255, None
    return read8


def _block_mean(a: np.ndarray, k: int) -> np.ndarray:
    """Mean over k x k blocks; the last row and column of blocks may be partial."""
    if k == 1:
        return np.ascontiguousarray(a, dtype=np.float32)
    height, width = a.shape
    rows, cols = math.ceil(height / k), math.ceil(width / k)
    sums = np.add.reduceat(np.add.reduceat(a.astype(np.float32, copy=False),
                                           np.arange(0, height, k), axis=0),
                           np.arange(0, width, k), axis=1)
    counts = np.outer(np.minimum(k, height - k * np.arange(rows)),
                      np.minimum(k, width - k * np.arange(cols)))
    return (sums / counts).astype(np.float32, copy=False)


def _array_grey(array: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Grey levels and alpha (or None) in [0, 1] from an array picture."""
    if array.dtype == np.uint8:
        array = array.astype(np.float32) / 255.0
    elif array.dtype == np.uint16:
        array = array.astype(np.float32) / 65535.0
    elif array.dtype == bool:
        array = array.astype(np.float32)
    else:
        array = array.astype(np.float32)
        if not np.isfinite(array).all():
            raise ImageReadError("the picture has non-finite pixel values")
        if array.size and array.max() > 1.0:
            array /= 255.0
    if array.ndim == 3 and array.shape[2] in (3, 4):
        alpha = array[..., 3] if array.shape[2] == 4 else None
        # ITU-R 601 luma, the weights Pillow's convert("L") uses.
        grey = array[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    elif array.ndim == 2:
        grey, alpha = array, None
    else:
        raise ImageReadError(
            f"expected an image array shaped (h, w), (h, w, 3) or (h, w, 4), got {array.shape}"
        )
    if grey.size == 0:
        raise ImageReadError("the image is empty")
    k = math.ceil(max(grey.shape) / READ_SIDE)
    if k > 1:
        if alpha is None:
            grey = _block_mean(grey, k)
        else:
            alpha_k = _block_mean(alpha, k)
            grey = np.divide(_block_mean(grey * alpha, k), alpha_k,
                             out=np.zeros_like(alpha_k), where=alpha_k > 0)
            alpha = alpha_k
    return np.clip(grey, 0.0, 1.0), None if alpha is None else np.clip(alpha, 0.0, 1.0)


# -- the steps ---------------------------------------------------------------------


def _composite(grey: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    """Grey levels with transparency resolved.

    Transparent pixels are shown over a background that contrasts with the
    opaque ones: white under dark strokes (the usual case), black under light
    strokes, so that a white digit on a transparent canvas survives.
    """
    if alpha is None or alpha.min() >= 1.0:
        return grey
    opaque = alpha.sum()
    stroke_level = (grey * alpha).sum() / opaque if opaque > 0 else 0.0
    background = 0.0 if stroke_level > 0.5 else 1.0
    return np.clip(alpha * grey + (1.0 - alpha) * background, 0.0, 1.0)


def _ink(grey: np.ndarray) -> np.ndarray:
    """Ink in [0, 1] on a 0 background, whichever of dark and light the ink was.

    The paper is the median of the picture's outermost ring of pixels, once
    uniform lines along the edge that differ from the middle of the picture
    (a frame, a form cell's rules, a scanner's shadow, at most 15% of each
    side) are set aside by :func:`_peel`: a frame is not the paper. The ink
    is on the side of the paper that holds more contrast in total. The noise
    on the paper (its robust spread in that ring: 1.4826 x the median
    absolute deviation) is subtracted three times over, and the ink is scaled
    so that its typical strong stroke (the 75th percentile of the pixels above
    half the maximum) is 1: one hot pixel does not set the scale.
    """
    inner = _peel(grey)
    ring = np.concatenate([inner[0], inner[-1], inner[1:-1, 0], inner[1:-1, -1]])
    paper = float(np.median(ring))
    noise = 1.4826 * float(np.median(np.abs(ring - paper)))
    darker = np.clip(paper - grey, 0.0, None)
    lighter = np.clip(grey - paper, 0.0, None)
    ink = darker if darker.sum(dtype=np.float64) >= lighter.sum(dtype=np.float64) else lighter
    ink -= min(3 * noise, 0.3)
    np.clip(ink, 0.0, None, out=ink)
    top = float(ink.max())
    if top < 0.1:
        raise ImageReadError("no digit found: nothing stands out from the background")
    peak = float(np.percentile(ink[ink >= 0.5 * top], 75))
    ink /= peak
    np.clip(ink, 0.0, 1.0, out=ink)
    return ink.astype(np.float32, copy=False)


def _peel(grey: np.ndarray) -> np.ndarray:
    """``grey`` without the uniform lines along its edges that differ from its middle.

    A line (an outermost row or column of what is left) goes when 90% of its
    pixels are within 0.1 of its median and that median is more than 0.2
    from the median of the picture's middle (the picture less 15% on each
    side); at most 15% of each side goes. Only the paper level and the
    polarity are decided on what is left; the crop looks at the whole picture.
    """
    height, width = grey.shape
    limit_r, limit_c = int(0.15 * height), int(0.15 * width)
    middle = grey[limit_r : height - limit_r, limit_c : width - limit_c]
    reference = float(np.median(middle if middle.size else grey))
    top, bottom, left, right = 0, height, 0, width

    def peelable(line: np.ndarray) -> bool:
        level = float(np.median(line))
        return (abs(level - reference) > 0.2
                and np.count_nonzero(np.abs(line - level) <= 0.1) >= 0.9 * line.size)

    changed = True
    while changed:
        changed = False
        if top < limit_r and bottom - top > 2 and peelable(grey[top, left:right]):
            top, changed = top + 1, True
        if height - bottom < limit_r and bottom - top > 2 and peelable(grey[bottom - 1, left:right]):
            bottom, changed = bottom - 1, True
        if left < limit_c and right - left > 2 and peelable(grey[top:bottom, left]):
            left, changed = left + 1, True
        if width - right < limit_c and right - left > 2 and peelable(grey[top:bottom, right - 1]):
            right, changed = right - 1, True
    return grey[top:bottom, left:right]


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Horizontal runs of True in a 2-D mask: (row, first column, column after the last)."""
    edges = np.diff(np.pad(mask, ((0, 0), (1, 1))).view(np.int8), axis=1)
    rows, starts = np.nonzero(edges == 1)
    _, stops = np.nonzero(edges == -1)
    return rows, starts, stops


def _components(rows: np.ndarray, starts: np.ndarray, stops: np.ndarray,
                width: int) -> np.ndarray:
    """Label of each run: runs touching in adjacent rows (8-connectivity) share a label.

    Two runs in rows r and r + 1 touch when each starts no later than the
    other stops (stops exclusive, one column of slack for diagonal contact).
    Each run's neighbours in the row above are found by binary search on the
    row-major keys row * (width + 2) + column, then merged by union-find.
    """
    n = len(rows)
    pitch = width + 2
    start_key = rows * pitch + starts
    stop_key = rows * pitch + stops
    below = np.flatnonzero(rows > 0)
    base = (rows[below] - 1) * pitch
    first = np.searchsorted(stop_key, base + starts[below], side="left")
    last = np.searchsorted(start_key, base + stops[below], side="right") - 1
    count = np.maximum(last - first + 1, 0)
    pairs_b = np.repeat(below, count)
    offsets = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    pairs_a = np.repeat(first, count) + offsets
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in zip(pairs_a.tolist(), pairs_b.tolist()):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return np.array([find(i) for i in range(n)], dtype=np.intp)


def _digit_only(ink: np.ndarray) -> np.ndarray:
    """Ink with frames along the edge and small specks removed, when a digit remains.

    Components of the ink above ``INK_THRESHOLD`` that touch the picture's
    edge, run along at least half of one side and lie (80% of their pixels)
    within the border band (a tenth of the shorter side) are frames: a form
    cell's rules, a scanner's shadow, a cropped border. They are dropped if
    some other component is at least 5% of the largest frame's size, so a
    digit cropped so tightly that it touches the edges stays: it crosses the
    middle, and it is the only component. Components under 2% of the largest
    remaining one are specks.
    """
    mask = ink >= INK_THRESHOLD
    rows, starts, stops = _runs(mask)
    if len(rows) == 0 or len(rows) > _MAX_RUNS:
        return ink
    height, width = mask.shape
    label = _components(rows, starts, stops, width)
    ids, label = np.unique(label, return_inverse=True)
    m = len(ids)
    area = np.bincount(label, weights=stops - starts, minlength=m)
    top, bottom = np.full(m, height), np.full(m, -1)
    left, right = np.full(m, width), np.full(m, -1)
    np.minimum.at(top, label, rows)
    np.maximum.at(bottom, label, rows)
    np.minimum.at(left, label, starts)
    np.maximum.at(right, label, stops)
    edge = (top == 0) | (bottom == height - 1) | (left == 0) | (right == width)
    # Pixels of each run inside the border band (within `band` of an edge).
    band = max(2, round(0.1 * min(height, width)))
    outer_row = (rows < band) | (rows >= height - band)
    inside = np.where(outer_row, stops - starts,
                      np.clip(np.minimum(stops, band) - starts, 0, None)
                      + np.clip(stops - np.maximum(starts, width - band), 0, None))
    in_band = np.bincount(label, weights=inside, minlength=m)
    frame = (edge & (in_band >= 0.8 * area)
             & ((bottom - top + 1 >= 0.5 * height) | (right - left >= 0.5 * width)))
    keep = ~frame
    if frame.any() and (not keep.any() or area[keep].max() < 0.05 * area[frame].max()):
        keep = np.ones(m, dtype=bool)  # the "frame" is the digit itself
    keep &= area >= 0.02 * area[keep].max()
    if keep.all():
        return ink
    drop_runs = ~keep[label]
    dropped = np.zeros((height, width + 1), dtype=np.int32)
    np.add.at(dropped, (rows[drop_runs], starts[drop_runs]), 1)
    np.add.at(dropped, (rows[drop_runs], stops[drop_runs]), -1)
    dropped = np.cumsum(dropped, axis=1)[:, :width] > 0
    # Also the faint fringe (anti-aliasing, blur) around what is dropped.
    fringe = _max_filter(dropped.view(np.uint8), 3).view(bool) & ~mask
    ink = ink.copy()
    ink[dropped | fringe] = 0.0
    return ink


def _crop(ink: np.ndarray) -> np.ndarray:
    """The bounding box of the pixels with at least ``INK_THRESHOLD`` ink."""
    mask = ink >= INK_THRESHOLD
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if len(rows) == 0:
        raise ImageReadError("no digit found: nothing stands out from the background")
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
