"""MNIST test digits rendered as picture files the many ways real pictures come.

Shared by ``tests/test_picture_corpus.py`` (a small version, with an accuracy
bound) and ``benchmarks/picture_corpus.py`` (the full table). Each rendering
takes one MNIST digit (28x28 floats, ink 1 on 0) and writes one file; reading
the file back with :func:`chainrule.images.load_image` should give the
network the same digit whatever the rendering.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

SIZE = 112  # the usual rendering: 4x MNIST, so strokes are about 8 px wide


def _upscale(digit: np.ndarray, size: int = SIZE) -> np.ndarray:
    """Ink in [0, 1] at ``size`` x ``size``, smooth (bicubic), like a drawn digit."""
    picture = Image.fromarray(np.asarray(digit, dtype=np.float32).reshape(28, 28))
    return np.clip(np.asarray(picture.resize((size, size), Image.Resampling.BICUBIC)), 0, 1)


def _paint(ink: np.ndarray, ink_colour, paper_colour) -> np.ndarray:
    """Colour ``ink`` onto paper: float array (h, w) or (h, w, 3) in 0..255."""
    ink_colour = np.asarray(ink_colour, dtype=np.float32)
    paper_colour = np.asarray(paper_colour, dtype=np.float32)
    if ink_colour.ndim:
        ink = ink[..., None]
    return paper_colour + (ink_colour - paper_colour) * ink


def _u8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.round(values), 0, 255).astype(np.uint8)


def _save(array: np.ndarray, path: Path, **options) -> Path:
    Image.fromarray(_u8(array)).save(path, **options)
    return path


def _frame(grey: np.ndarray, width: int, level: float) -> np.ndarray:
    grey = grey.copy()
    grey[:width], grey[-width:], grey[:, :width], grey[:, -width:] = level, level, level, level
    return grey


def _morph(ink: np.ndarray, size: int, grow: bool) -> np.ndarray:
    picture = Image.fromarray(_u8(255 * ink))
    picture = picture.filter(ImageFilter.MaxFilter(size) if grow else ImageFilter.MinFilter(size))
    return np.asarray(picture, dtype=np.float32) / 255


def _rng(digit: np.ndarray) -> np.random.Generator:
    # The same noise for the same digit on every run.
    return np.random.default_rng(int(np.round(np.asarray(digit) * 255).sum()) % 2**32)


def plain(d, p):
    return _save(_paint(_upscale(d), 0, 255), p.with_suffix(".png"))


def white_on_black(d, p):
    return _save(_paint(_upscale(d), 255, 0), p.with_suffix(".png"))


def blue_ballpoint(d, p):
    return _save(_paint(_upscale(d), (25, 40, 160), (255, 255, 255)), p.with_suffix(".png"))


def yellow_paper_brown_ink(d, p):
    return _save(_paint(_upscale(d), (70, 45, 20), (240, 225, 170)), p.with_suffix(".png"))


def pencil_low_contrast(d, p):
    return _save(_paint(_upscale(d), 150, 215), p.with_suffix(".png"))


def chalk_on_green_board(d, p):
    return _save(_paint(_upscale(d), (225, 230, 220), (40, 80, 60)), p.with_suffix(".png"))


def bilevel_1bit(d, p):
    grey = _paint(_upscale(d), 0, 255)
    path = p.with_suffix(".png")
    Image.fromarray(grey >= 128).save(path)  # mode "1"
    return path


def grey_16bit(d, p):
    grey = _paint(_upscale(d), 0, 65535)
    path = p.with_suffix(".png")
    Image.fromarray(np.round(grey).astype(np.uint16)).save(path)  # mode "I;16"
    return path


def grey_16bit_narrow_range(d, p):
    # A raw scan: the 16-bit values use a narrow part of the range.
    grey = _paint(_upscale(d), 2000, 21000)
    path = p.with_suffix(".png")
    Image.fromarray(np.round(grey).astype(np.uint16)).save(path)
    return path


def grey_32bit_int_tiff(d, p):
    grey = _paint(_upscale(d), 0, 65535)
    path = p.with_suffix(".tif")
    Image.fromarray(np.round(grey).astype(np.int32)).save(path)  # mode "I"
    return path


def grey_float_tiff(d, p):
    grey = _paint(_upscale(d), 0.0, 1.0).astype(np.float32)
    path = p.with_suffix(".tif")
    Image.fromarray(grey).save(path)  # mode "F"
    return path


def rgba_black_ink_transparent(d, p):
    ink = _upscale(d)
    rgba = np.zeros((SIZE, SIZE, 4))
    rgba[..., 3] = 255 * ink
    return _save(rgba, p.with_suffix(".png"))


def rgba_white_ink_transparent(d, p):
    ink = _upscale(d)
    rgba = np.full((SIZE, SIZE, 4), 255.0)
    rgba[..., 3] = 255 * ink
    return _save(rgba, p.with_suffix(".png"))


def palette_16_colours(d, p):
    rgb = _u8(_paint(_upscale(d), (25, 40, 160), (250, 250, 240)))
    path = p.with_suffix(".png")
    Image.fromarray(rgb).quantize(16).save(path)  # mode "P"
    return path


def gif(d, p):
    return _save(_paint(_upscale(d), 0, 255), p.with_suffix(".gif"))


def jpeg_quality_40(d, p):
    return _save(_paint(_upscale(d), 0, 255), p.with_suffix(".jpg"), quality=40)


def small_28px(d, p):
    return _save(_paint(np.asarray(d).reshape(28, 28), 0, 255), p.with_suffix(".png"))


def large_1000px(d, p):
    return _save(_paint(_upscale(d, 1000), 0, 255), p.with_suffix(".png"))


def thin_strokes(d, p):
    return _save(_paint(_morph(_upscale(d), 5, grow=False), 0, 255), p.with_suffix(".png"))


def thick_strokes(d, p):
    return _save(_paint(_morph(_upscale(d), 7, grow=True), 0, 255), p.with_suffix(".png"))


def off_centre_on_a_wide_page(d, p):
    page = np.zeros((300, 420))
    page[20 : 20 + SIZE, 280 : 280 + SIZE] = _upscale(d)
    return _save(_paint(page, 0, 255), p.with_suffix(".png"))


def tight_crop(d, p):
    ink = _upscale(d)
    rows = np.flatnonzero((ink > 0.2).any(axis=1))
    cols = np.flatnonzero((ink > 0.2).any(axis=0))
    ink = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    return _save(_paint(ink, 0, 255), p.with_suffix(".png"))


def gaussian_noise(d, p):
    grey = _paint(_upscale(d), 0, 255) + _rng(d).normal(0, 25, (SIZE, SIZE))
    return _save(grey, p.with_suffix(".png"))


def speckles(d, p):
    grey = _paint(_upscale(d), 0, 255)
    spots = _rng(d).random((SIZE, SIZE)) < 0.003
    grey[spots] = 0
    return _save(grey, p.with_suffix(".png"))


def dark_frame_2px(d, p):
    return _save(_frame(_paint(_upscale(d), 0, 255), 2, 0), p.with_suffix(".png"))


def dark_frame_2px_16bit(d, p):
    grey = _frame(_paint(_upscale(d), 0, 65535), 2, 0)
    path = p.with_suffix(".png")
    Image.fromarray(np.round(grey).astype(np.uint16)).save(path)
    return path


def light_frame_on_dark_paper(d, p):
    return _save(_frame(_paint(_upscale(d), 255, 0), 2, 255), p.with_suffix(".png"))


def scanner_shadow(d, p):
    grey = _paint(_upscale(d), 0, 255)
    grey[:, :10] *= np.linspace(0.1, 0.9, 10)  # a dark band fading in from the left edge
    return _save(grey, p.with_suffix(".png"))


def form_cell(d, p):
    # A cell cut from a form: thin grey rules along two edges, the digit inside.
    grey = _paint(_upscale(d), 0, 255)
    grey[:3], grey[:, -3:] = 90, 90
    return _save(grey, p.with_suffix(".png"))


RENDERINGS: dict[str, Callable[[np.ndarray, Path], Path]] = {
    f.__name__: f
    for f in [
        plain, white_on_black, blue_ballpoint, yellow_paper_brown_ink, pencil_low_contrast,
        chalk_on_green_board, bilevel_1bit, grey_16bit, grey_16bit_narrow_range,
        grey_32bit_int_tiff, grey_float_tiff, rgba_black_ink_transparent,
        rgba_white_ink_transparent, palette_16_colours, gif, jpeg_quality_40, small_28px,
        large_1000px, thin_strokes, thick_strokes, off_centre_on_a_wide_page, tight_crop,
        gaussian_noise, speckles, dark_frame_2px, dark_frame_2px_16bit,
        light_frame_on_dark_paper, scanner_shadow, form_cell,
    ]
}


def accuracy_by_rendering(network, digits: np.ndarray, labels: np.ndarray, directory: Path,
                          renderings=None) -> dict[str, float]:
    """Share of ``digits`` (n, 784) that ``network`` reads right after each rendering."""
    from chainrule.images import ImageReadError, load_image

    out = {}
    for name in renderings or RENDERINGS:
        render = RENDERINGS[name]
        rows = []
        for i, digit in enumerate(digits):
            path = render(digit.reshape(28, 28), directory / f"{name}-{i}")
            try:
                rows.append(load_image(path).reshape(-1))
            except ImageReadError:
                rows.append(np.zeros(784, dtype=np.float32))  # counted as wrong
            path.unlink()
        predicted = network.predict(np.stack(rows)).argmax(axis=1)
        out[name] = float(np.mean(predicted == labels))
    return out
