"""Pictures of digits -> MNIST-like inputs (chainrule.images)."""

from __future__ import annotations

import numpy as np
import pytest

PIL = pytest.importorskip("PIL")
from PIL import Image, ImageDraw  # noqa: E402

import chainrule as cr  # noqa: E402
from chainrule.images import (  # noqa: E402
    ImageReadError,
    center_of_mass,
    load_image,
    load_images,
    stroke_width,
    to_mnist,
)


def draw_seven(
    size: tuple[int, int] = (600, 800), pen: int = 40, offset: tuple[int, int] = (0, 0),
    scale: float = 1.0, ink: int = 0, paper: int = 255, mode: str = "L",
) -> Image.Image:
    """A "7": a top bar and a slanted stem, drawn with a round pen."""
    image = Image.new("L", size, paper)
    ox, oy = offset
    points = [(150, 150), (450, 150), (250, 650)]
    points = [(x * scale + ox, y * scale + oy) for x, y in points]
    ImageDraw.Draw(image).line(points, fill=ink, width=pen, joint="curve")
    return image.convert(mode)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def aligned_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation of two 28x28 digits, best over shifts of up to one pixel.

    Centring moves whole pixels, so two drawings of one digit whose mass
    centres round differently land a pixel apart, which for 2-pixel
    strokes alone would halve a plain correlation.
    """
    a, b = np.asarray(a).reshape(28, 28), np.asarray(b).reshape(28, 28)
    return max(
        correlation(np.roll(a, (dy, dx), axis=(0, 1)), b) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
    )


def ink_box(image: np.ndarray, threshold: float = 0.3) -> tuple[int, int]:
    rows = np.flatnonzero((image >= threshold).any(axis=1))
    cols = np.flatnonzero((image >= threshold).any(axis=0))
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    return to_mnist(draw_seven())


def test_output_is_mnist_shaped_and_scaled(reference):
    assert reference.shape == (28, 28)
    assert reference.dtype == np.float32
    assert reference.min() == 0.0
    assert reference.max() == pytest.approx(1.0, abs=0.02)
    # Centring by mass moves the top-heavy 7 down, but never off the frame.
    assert reference[:2].max() == 0 and reference[:, :2].max() == 0
    assert reference[-1].sum() < 2.0  # at most the stem's tip reaches the last row


def test_digit_fills_a_20px_box_centred_by_mass(reference):
    height, width = ink_box(reference)
    assert max(height, width) in (19, 20, 21)
    assert width < height  # the aspect ratio of the drawing (a narrow 7) is kept
    row, col = center_of_mass(reference)
    assert abs(row - 14) <= 0.5 and abs(col - 14) <= 0.5


@pytest.mark.parametrize(
    "variant",
    [
        {"offset": (-50, 200), "scale": 0.5, "pen": 20},  # small, off-centre
        {"size": (2000, 1500), "scale": 2.5, "pen": 100},  # large canvas
        {"ink": 255, "paper": 0},  # white on black
        {"ink": 40, "paper": 200},  # dark grey on light grey, like a photo
        {"mode": "RGB"},
        {"mode": "P"},
    ],
)
def test_same_digit_whatever_the_canvas(reference, variant):
    result = to_mnist(draw_seven(**variant))
    assert aligned_correlation(result, reference) > 0.9


def test_transparent_background_with_dark_or_light_ink(reference):
    for ink in (0, 255):
        alpha = draw_seven(ink=255, paper=0)  # the stroke is opaque, the rest transparent
        rgba = Image.new("RGBA", alpha.size, (ink, ink, ink, 0))
        rgba.putalpha(alpha)
        assert aligned_correlation(to_mnist(rgba), reference) > 0.95, f"ink {ink}"


def test_hairline_strokes_are_thickened_to_mnist_width(reference):
    thin = draw_seven(pen=3)
    thickened = to_mnist(thin)
    assert 1.4 <= stroke_width(thickened) <= 3.0  # MNIST: median 2.0 px, middle 80% 1.4-2.8
    assert aligned_correlation(thickened, reference) > 0.85
    as_drawn = to_mnist(thin, thicken=False)
    assert stroke_width(as_drawn) < 1.2
    assert as_drawn.sum() < 0.6 * thickened.sum()


def test_arrays_are_accepted(reference):
    grey = np.asarray(draw_seven())
    assert correlation(to_mnist(grey), reference) > 0.99
    assert correlation(to_mnist(grey.astype(np.float64) / 255.0), reference) > 0.99
    rgb = np.stack([grey] * 3, axis=-1)
    assert correlation(to_mnist(rgb), reference) > 0.99
    with pytest.raises(ImageReadError, match="shaped"):
        to_mnist(np.zeros((4, 4, 2)))


def test_blank_picture_is_an_error():
    with pytest.raises(ImageReadError, match="no digit"):
        to_mnist(Image.new("L", (50, 50), 255))
    with pytest.raises(ImageReadError, match="no digit"):
        to_mnist(Image.new("L", (50, 50), 250).point(lambda v: v))


def test_unreadable_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no image file"):
        load_image(tmp_path / "missing.png")
    text = tmp_path / "notes.png"
    text.write_bytes(b"this is not a picture")
    with pytest.raises(ImageReadError, match="notes.png is not a readable image"):
        load_image(text)
    good = tmp_path / "seven.png"
    draw_seven().save(good)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ImageReadError, match="truncated.png"):
        load_image(truncated)
    blank = tmp_path / "blank.png"
    Image.new("L", (30, 30), 255).save(blank)
    with pytest.raises(ImageReadError, match="blank.png: no digit"):
        load_image(blank)


def test_load_images_batches_rows(tmp_path):
    paths = []
    for i, variant in enumerate([{}, {"ink": 255, "paper": 0}]):
        path = tmp_path / f"seven{i}.png"
        draw_seven(**variant).save(path)
        paths.append(path)
    batch = load_images(paths)
    assert batch.shape == (2, 784) and batch.dtype == np.float32
    assert correlation(batch[0], batch[1]) > 0.99
    assert load_images([]).shape == (0, 784)


def test_stroke_width_and_center_of_mass_helpers():
    bar = np.zeros((120, 40))
    bar[10:110, 15:25] = 1.0  # a bar 10 px wide and 100 long
    assert stroke_width(bar) == pytest.approx(2 * 1000 / 220)
    assert stroke_width(np.zeros((5, 5))) == 0.0
    assert center_of_mass(bar) == pytest.approx((59.5, 19.5))
    assert center_of_mass(np.zeros((4, 6))) == (1.5, 2.5)


@pytest.fixture(scope="module")
def mnist_and_model():
    from chainrule.datasets import load_mnist

    (x, y), (x_test, y_test) = load_mnist()
    network = cr.Network.from_sizes([784, 64, 10], loss="cross_entropy",
                                    optimizer=cr.Adam(lr=2e-3), seed=0)
    network.fit(x, y, epochs=2, batch_size=128, seed=0, verbose=0)
    return x_test[:120], y_test[:120], network


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_real_digits_survive_a_round_trip_through_picture_files(tmp_path, mnist_and_model, suffix):
    """MNIST test digits, upscaled to 100x100 and inverted to black on white as a
    person would draw them, come back close to the originals and are read the same."""
    x, y, network = mnist_and_model
    paths = []
    for i, row in enumerate(x):
        picture = Image.fromarray(np.round(255 * (1 - row.reshape(28, 28))).astype(np.uint8))
        picture = picture.resize((100, 100), Image.Resampling.BICUBIC)
        path = tmp_path / f"digit{i}{suffix}"
        picture.save(path, **({"quality": 90} if suffix == ".jpg" else {}))
        paths.append(path)
    back = load_images(paths)
    correlations = np.array([correlation(a, b) for a, b in zip(back, x)])
    # Whole-pixel recentring can move a thin digit by half a pixel, hence the median.
    assert np.median(correlations) > 0.95
    assert np.mean(correlations > 0.8) > 0.9
    original = network.predict(x).argmax(axis=1)
    prepared = network.predict(back).argmax(axis=1)
    assert np.mean(original == y) > 0.85  # the quick model is a real classifier...
    assert np.mean(prepared == original) >= 0.95  # ...and reads the pictures as it reads MNIST
    assert np.mean(prepared == y) >= np.mean(original == y) - 0.03


def test_a_one_pixel_line_on_a_big_canvas_comes_out_as_solid_ink():
    canvas = Image.new("L", (800, 800), 255)
    ImageDraw.Draw(canvas).line([(200, 150), (650, 150), (330, 700)], fill=0, width=1)
    digit = to_mnist(canvas)
    stroke = digit[digit > 0.1]
    assert np.median(stroke) > 0.6  # not a faint grey line with a few bright dots
