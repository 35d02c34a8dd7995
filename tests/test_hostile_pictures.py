"""Hostile and unusual picture files: only ImageReadError, bounded memory and time, no code run.

The memory and time cases run in a child process under an address-space
limit (``resource.setrlimit``) and a wall-clock limit (``hostile_files.run_limited``).
"""

from __future__ import annotations

import os
import sys
import textwrap

import numpy as np
import pytest

PIL = pytest.importorskip("PIL")
from PIL import Image, ImageDraw, ImageOps  # noqa: E402

import hostile_files as h  # noqa: E402
from chainrule.images import (  # noqa: E402
    MAX_FILE_BYTES,
    MAX_PIXELS,
    PEAK_MEMORY_BOUND,
    ImageReadError,
    load_image,
    to_mnist,
)

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="needs resource limits and FIFOs")
PEAK_MB = PEAK_MEMORY_BOUND / 2**20


def seven(size=(120, 160), ink=0, paper=255) -> Image.Image:
    image = Image.new("L", size, paper)
    w, h_ = size
    ImageDraw.Draw(image).line([(0.25 * w, 0.2 * h_), (0.75 * w, 0.2 * h_), (0.4 * w, 0.8 * h_)],
                               fill=ink, width=max(2, w // 12))
    return image


def corr(a, b) -> float:
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


# -- code execution -------------------------------------------------------------------


@posix_only
def test_postscript_named_png_never_reaches_ghostscript(tmp_path):
    fake = tmp_path / "bin"
    h.fake_ghostscript(fake)
    eps = h.eps_as_png(tmp_path / "x.png")
    env = {"PATH": f"{fake}{os.pathsep}{os.environ.get('PATH', '')}"}
    # The control: plain Pillow hands this file to `gs`, so the fake would notice.
    control = h.run_limited(f"""
        from PIL import Image
        Image.open({str(eps)!r}).load()
    """, env=env, timeout=60)
    assert (fake / "gs-called").exists(), control
    (fake / "gs-called").unlink()
    result = h.run_limited(f"""
        from chainrule.images import load_image
        load_image({str(eps)!r})
    """, env=env, timeout=60)
    assert result["error"] == "ImageReadError", result
    assert "not a picture in a format chainrule reads (PNG, JPEG" in result["message"]
    assert "\n" not in result["message"]
    assert not (fake / "gs-called").exists()


# -- sizes: refused before decoding, one line each ----------------------------------------


@posix_only
@pytest.mark.parametrize("make, fragment", [
    (lambda p: h.png_bomb(p, 30000, 30000), "declares 900,000,000 pixels;"),  # 0.9 MB
    (h.gif_screen_bomb, "declares 4,294,836,225 pixels;"),  # 57 bytes, screen 65535 x 65535
    (lambda p: h.png_bomb(p, 13000, 13000), "13000x13000 pixels (169.0 megapixels)"),
    (lambda p: h.png_bomb(p, 8000, 5001), "8000x5001 pixels"),  # just over 40 MP
    # 40 MP in one row: the PNG decoder's row buffers alone would take 320 MB.
    (lambda p: h.png_bomb(p, 40_000_000, 1, colour_type=6), "40000000x1 pixels"),
    (lambda p: h.png_bomb(p, 20_001, 100), "20001x100 pixels"),
])
def test_pictures_above_the_pixel_limit_are_refused_in_bounded_memory(tmp_path, make, fragment):
    path = make(tmp_path / "bomb.png")
    assert path.stat().st_size < 1_000_000
    result = h.run_limited(f"""
        from chainrule.images import load_image
        load_image({str(path)!r})
    """, memory_mb=1000, timeout=60)
    assert result["error"] == "ImageReadError", result
    message = result["message"]
    assert fragment in message and "\n" not in message
    assert (f"at most {MAX_PIXELS:,} pixels" in message
            or "at most 40 megapixels and 20,000 pixels a side" in message)
    assert result["peak_mb"] < 120, result  # nothing was decoded


@posix_only
@pytest.mark.parametrize("width, height, colour_type, bit_depth", [
    (7000, 5700, 6, 16), (20_000, 1999, 0, 16)])
def test_largest_accepted_pictures_stay_under_the_memory_bound(tmp_path, width, height,
                                                               colour_type, bit_depth):
    # 39.9 MP, just under the limit; RGBA is what Pillow stores widest.
    path = h.png_bomb(tmp_path / "big.png", width, height, colour_type=colour_type,
                      bit_depth=bit_depth)
    result = h.run_limited(f"""
        from chainrule.images import load_image
        load_image({str(path)!r})
    """, memory_mb=1000, timeout=120)
    # Read in full (all black: no digit), within the bound.
    assert result["error"] == "ImageReadError" and "no digit" in result["message"], result
    assert result["peak_mb"] < PEAK_MB, result


@posix_only
def test_big_text_chunks_are_bounded_by_the_file_size_limit(tmp_path):
    accepted = h.png_bomb(tmp_path / "text.png", 28, 28, text_bytes=MAX_FILE_BYTES - 4096)
    result = h.run_limited(f"""
        from chainrule.images import load_image
        load_image({str(accepted)!r})
    """, memory_mb=1000, timeout=60)
    assert result["error"] == "ImageReadError" and "no digit" in result["message"], result
    assert result["peak_mb"] < PEAK_MB, result
    refused = tmp_path / "sparse.png"
    seven().save(refused)
    os.truncate(refused, MAX_FILE_BYTES + 1)  # sparse: nothing written
    with pytest.raises(ImageReadError, match=r"sparse.png is 48 MiB; .* at most 48 MiB"):
        load_image(refused)


def test_max_pixels_is_a_parameter(tmp_path):
    path = tmp_path / "seven.png"
    seven((120, 160)).save(path)
    assert load_image(path, max_pixels=120 * 160).shape == (28, 28)
    with pytest.raises(ImageReadError, match=r"120x160 pixels .* at most 0.019\d* megapixels"):
        load_image(path, max_pixels=120 * 160 - 1)


# -- what is not a file -----------------------------------------------------------------


@posix_only
def test_fifo_directory_and_device_are_refused_at_once(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    result = h.run_limited(f"""
        from chainrule.images import load_image
        load_image({str(fifo)!r})
    """, timeout=30)
    assert result["error"] == "ImageReadError" and "named pipe (FIFO)" in result["message"]
    with pytest.raises(ImageReadError, match="is a directory, not a picture file"):
        load_image(tmp_path)
    if os.path.exists("/dev/zero"):
        with pytest.raises(ImageReadError, match="is a device"):
            load_image("/dev/zero")


def test_broken_files_raise_only_image_read_error(tmp_path):
    good = tmp_path / "good.png"
    seven().save(good)
    data = good.read_bytes()
    rng = np.random.default_rng(0)
    for i in range(40):
        mangled = bytearray(data)
        for _ in range(4):
            mangled[rng.integers(8, len(mangled))] = rng.integers(256)
        path = tmp_path / f"m{i}.png"
        path.write_bytes(bytes(mangled[: rng.integers(8, len(mangled) + 1)]))
        try:
            result = load_image(path)
        except ImageReadError as error:
            assert "\n" not in str(error) and str(path) in str(error)
        else:
            assert result.shape == (28, 28) and np.isfinite(result).all()


# -- every mode scaled by its own range ----------------------------------------------------


def _as_mode(grey: Image.Image, mode: str) -> Image.Image:
    a = np.asarray(grey)
    if mode == "I;16":
        return Image.fromarray(a.astype(np.uint16) * 257)
    if mode == "I;16B":
        return Image.frombytes("I;16B", grey.size, (a.astype(">u2") * 257).tobytes())
    if mode == "I":
        return Image.fromarray(a.astype(np.int32) * 257)
    if mode == "F":
        return Image.fromarray(a.astype(np.float32) / 255)
    if mode == "F255":
        return Image.fromarray(a.astype(np.float32))
    if mode in ("LAB", "HSV"):
        return grey.convert("RGB").convert(mode) if mode == "HSV" else Image.merge(
            "LAB", [grey, Image.new("L", grey.size, 128), Image.new("L", grey.size, 128)])
    if mode in ("RGBa", "La"):  # premultiplied alpha: reached through its straight form
        return grey.convert(mode.upper()).convert(mode)
    return grey.convert(mode)


@pytest.mark.parametrize("mode", ["1", "L", "P", "LA", "PA", "RGB", "RGBA", "RGBX", "RGBa",
                                  "CMYK", "YCbCr", "LAB", "HSV", "La", "I;16", "I;16B", "I",
                                  "F", "F255"])
def test_every_mode_gives_the_same_digit(mode):
    grey = seven()
    reference = to_mnist(grey)
    assert corr(to_mnist(_as_mode(grey, mode)), reference) > 0.95


@pytest.mark.parametrize("mode, suffix", [("I;16", ".png"), ("I", ".tif"), ("F", ".tif"),
                                          ("CMYK", ".jpg"), ("CMYK", ".tif"), ("1", ".bmp"),
                                          ("L", ".pgm"), ("RGB", ".webp"), ("P", ".gif")])
def test_every_mode_from_files(tmp_path, mode, suffix):
    grey = seven()
    path = tmp_path / f"seven{suffix}"
    _as_mode(grey, mode).save(path)
    assert corr(load_image(path), to_mnist(grey)) > 0.9


def test_16bit_digit_is_scaled_not_clamped(tmp_path):
    # Issue 9 §3: Pillow's convert("L") clamps I;16 at 255, leaving no digit.
    grey = np.asarray(seven(), dtype=np.float64) / 255
    # Cameras store 10-, 12- and 14-bit data in 16-bit files: 0..900 is 10-bit data.
    for low, high in [(0, 65535), (3000, 20000), (0, 4095), (0, 900)]:
        values = np.round(low + (high - low) * grey).astype(np.uint16)
        path = tmp_path / f"seven-{high}.png"
        Image.fromarray(values).save(path)
        assert Image.open(path).mode == "I;16"
        assert corr(load_image(path), to_mnist(seven())) > 0.95


def test_transparent_16bit_and_palette_pictures(tmp_path):
    reference = to_mnist(seven())
    p = seven().convert("P")
    p.info["transparency"] = 255  # the paper's palette entry is transparent
    path = tmp_path / "seven-trns.png"
    p.save(path, transparency=255)
    assert corr(load_image(path), reference) > 0.95


# -- orientation, frames, polarity ----------------------------------------------------------


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow(tmp_path, orientation):
    picture = seven((90, 150))
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "seven.jpg"
    picture.save(path, exif=exif, quality=95)
    upright = ImageOps.exif_transpose(Image.open(path))
    assert corr(load_image(path), to_mnist(upright)) > 0.98


@pytest.mark.parametrize("width, level", [(2, 0), (5, 40), (1, 0)])
def test_dark_frame_along_the_edge_is_neither_paper_nor_digit(width, level):
    # Issue 9 §3: a black digit on white paper with a dark frame must not be inverted.
    plain = seven()
    framed = np.asarray(plain).copy()
    framed[:width], framed[-width:], framed[:, :width], framed[:, -width:] = (level,) * 4
    assert corr(to_mnist(framed), to_mnist(plain)) > 0.95


def test_light_frame_on_dark_paper_and_a_shadow_band():
    plain = seven(ink=255, paper=0)
    framed = np.asarray(plain).copy()
    framed[:2], framed[-2:], framed[:, :2], framed[:, -2:] = 255, 255, 255, 255
    assert corr(to_mnist(framed), to_mnist(plain)) > 0.95
    shadow = np.asarray(seven(), dtype=np.float64).copy()
    shadow[:, :12] *= np.linspace(0.1, 0.9, 12)
    assert corr(to_mnist(shadow), to_mnist(seven())) > 0.95


def test_a_tightly_cropped_digit_is_not_taken_for_a_frame():
    picture = seven((200, 260))
    box = ImageOps.invert(picture).getbbox()
    tight = picture.crop(box)
    assert corr(to_mnist(tight), to_mnist(picture)) > 0.9


def test_specks_do_not_move_the_crop():
    picture = np.asarray(seven((300, 300))).copy()
    rng = np.random.default_rng(1)
    picture[rng.random(picture.shape) < 0.002] = 0
    assert corr(to_mnist(picture), to_mnist(seven((300, 300)))) > 0.9


def test_hostile_ink_pattern_is_handled_quickly():
    # 131,072 one-pixel runs: past the limit of the component analysis, which is skipped.
    checker = (np.indices((512, 512)).sum(axis=0) % 2 * 255).astype(np.uint8)
    digit = to_mnist(checker)  # a pattern, not a digit; it must not hang
    assert digit.shape == (28, 28) and np.isfinite(digit).all()


def test_child_runner_reports_limits():
    result = h.run_limited(textwrap.dedent("""
        import numpy as np
        np.ones(400 * 2**20 // 8)
    """), memory_mb=300, timeout=30)
    assert result["error"] == "MemoryError"


# -- fuzzing: mutated files of every allowed format ----------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_SEEDS = {}


def _seed_file(suffix: str) -> bytes:
    if suffix not in _SEEDS:
        import io

        buffer = io.BytesIO()
        picture = seven((40, 48))
        picture = picture.convert("RGB") if suffix in ("jpeg", "webp") else picture
        picture.save(buffer, format=suffix)
        _SEEDS[suffix] = buffer.getvalue()
    return _SEEDS[suffix]


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(fmt=st.sampled_from(["png", "gif", "bmp", "tiff", "jpeg", "webp", "ppm"]),
       edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=6),
       cut=st.integers(0, 10**6), tmp=st.just(None))
def test_mutated_pictures_raise_only_image_read_error(tmp_path_factory, fmt, edits, cut, tmp):
    data = bytearray(_seed_file(fmt))
    for position, value in edits:
        data[position % len(data)] = value
    data = bytes(data[: max(1, cut % (len(data) + 1))])
    path = tmp_path_factory.mktemp("fuzz") / f"x.{fmt}"
    path.write_bytes(data)
    import warnings

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = load_image(path)
    except ImageReadError as error:
        assert "\n" not in str(error)
    else:
        # Pillow's complaints about the bytes are not shown to the user.
        assert not [w for w in caught if "PIL" in w.filename], caught
        assert result.shape == (28, 28) and np.isfinite(result).all()
        assert result.min() >= 0 and result.max() <= 1
