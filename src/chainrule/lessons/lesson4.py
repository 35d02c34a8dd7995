"""Lesson 4: why convolution. An MLP and a small CNN on the same digits, tested on shifted digits.

Beyond the three tutorials. Both networks train on the same bundled MNIST
digits with the same small random shifts (up to 1 pixel), then read the test
digits moved by 0 to 4 pixels, further than any shift seen in training. The
MLP has one weight per pixel and neuron, so a stroke in a new place meets
weights that never learned it; a convolution slides the same small kernels
over every position, and pooling forgets exactly where a feature was, so the
CNN holds its accuracy much better.
"""

from __future__ import annotations

import os
import time
from typing import Any, TextIO

import numpy as np

from ..activations import ReLU
from ..augmentation import random_shift
from ..datasets import load_mnist
from ..layers import Conv2D, Dense, Flatten, MaxPool2D
from ..network import Network
from ..optimizers import Adam
from ._common import Printer, num, pyplot, save_figure

TITLE = "why convolution: an MLP and a CNN on shifted digits"

SHIFTS = (0, 1, 2, 3, 4)
SEED = 0


def shift_images(x: np.ndarray, pixels: int, rng: np.random.Generator) -> np.ndarray:
    """Each image ``(n, C, H, W)`` moved ``pixels`` up, down, left or right (drawn per image).

    What moves out of the frame is lost; what comes in is 0 (background).
    """
    out = np.zeros_like(x)
    if pixels == 0:
        return x.copy()
    direction = rng.integers(0, 4, size=len(x))
    h, w = x.shape[-2:]
    k = int(pixels)
    for d, (dy, dx) in enumerate(((k, 0), (-k, 0), (0, k), (0, -k))):
        rows = direction == d
        # out[y + dy, x + dx] = in[y, x], cropped to the frame
        out[rows, :, max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = (
            x[rows, :, max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)])
    return out


def build_mlp(seed: int = SEED) -> Network:
    """784-256-10 relu MLP, Adam 1e-3 (He initialisation)."""
    return Network.from_sizes([784, 256, 10], activation="relu", loss="cross_entropy",
                              optimizer=Adam(lr=1e-3), seed=seed)


def build_small_cnn(seed: int = SEED) -> Network:
    """conv 16 5x5 pad 2, relu, pool 2; conv 32 5x5 pad 2, relu, pool 2; dense 1568 -> 10."""
    rng = np.random.default_rng(seed)
    return Network([
        Conv2D(1, 16, 5, padding=2, rng=rng), ReLU(), MaxPool2D(2),
        Conv2D(16, 32, 5, padding=2, rng=rng), ReLU(), MaxPool2D(2),
        Flatten(), Dense(32 * 7 * 7, 10, rng=rng),
    ], loss="cross_entropy", optimizer=Adam(lr=1e-3))


def run(plot_dir: str | os.PathLike | None = None, file: TextIO | None = None,
        n_train: int = 2000, epochs: int = 3, n_test: int = 1000) -> dict[str, Any]:
    """Print lesson 4 to ``file``; save its figures to ``plot_dir``; return its numbers.

    ``n_train`` training digits (of the 10,000 bundled), ``epochs`` passes,
    and ``n_test`` test digits at each shift.
    """
    out = Printer(file)
    out.heading(f"Lesson 4: {TITLE}")
    (x, y), (x_test, y_test) = load_mnist(flatten=False)
    x, y = x[:n_train], y[:n_train]
    x_test, y_test = x_test[:n_test], y_test[:n_test]
    mlp, cnn = build_mlp(), build_small_cnn()
    count = {name: sum(p.size for p in net.parameters().values())
             for name, net in (("mlp", mlp), ("cnn", cnn))}
    out.say(f"""
        Two digit readers, trained on the same {n_train:,} digits for {epochs} epochs of
        batch 64 with Adam (lr 1e-3), each epoch's digits moved at random by up to 1 pixel:

            MLP: 784 -> 256 relu -> 10                              {count['mlp']:>8,} weights
            CNN: conv 16 5x5, pool 2; conv 32 5x5, pool 2; -> 10    {count['cnn']:>8,} weights

        The MLP gives each pixel its own weight in every neuron. The CNN's first layer is
        16 kernels of 5x5 weights, each slid over all 28x28 positions: the same detector
        everywhere. Max-pooling then keeps the strongest response in each 2x2 block,
        forgetting where in the block it was.
    """)
    result: dict[str, Any] = {"parameters": count, "shifts": SHIFTS}
    accuracy: dict[str, list[float]] = {}
    for name, net, as_input in (("mlp", mlp, lambda a: a.reshape(len(a), -1)),
                                ("cnn", cnn, lambda a: a)):
        started = time.perf_counter()
        net.fit(as_input(x), y, epochs=epochs, batch_size=64, seed=SEED, verbose=0,
                augment=random_shift(1))
        result[f"{name}_seconds"] = time.perf_counter() - started
        accuracy[name] = [
            net.evaluate(as_input(shift_images(x_test, k, np.random.default_rng(SEED + k))),
                         y_test, batch_size=500)["accuracy"]
            for k in SHIFTS
        ]
    out.say(f"""
        Test accuracy on {n_test:,} test digits, each moved by the given number of pixels
        up, down, left or right (the same moves for both networks):
    """)
    out.table(["network", *[f"{k} px" for k in SHIFTS], "training seconds"],
              [[name.upper(), *[f"{100 * a:.1f}%" for a in accuracy[name]],
                f"{result[f'{name}_seconds']:.1f}"] for name in ("mlp", "cnn")])
    keep = {name: [a / accuracy[name][0] for a in accuracy[name]] for name in accuracy}
    out.say(f"""
        Unshifted, the two are close ({num(100 * accuracy['mlp'][0], 3)}% and
        {num(100 * accuracy['cnn'][0], 3)}%). Moved 3 pixels, beyond anything in training,
        the MLP keeps {keep['mlp'][3]:.0%} of its accuracy and the CNN {keep['cnn'][3]:.0%};
        at 4 pixels {keep['mlp'][4]:.0%} against {keep['cnn'][4]:.0%}. Neither is fully
        shift-invariant (the last layer is still a dense layer over positions, and each
        pooling forgives only a pixel or two), but the CNN degrades far more gracefully,
        with {count['cnn'] / count['mlp']:.0%} of the MLP's weights. It costs compute
        instead: every kernel is applied at every position.
    """)
    result["accuracy"] = accuracy
    result["kept"] = keep
    if plot_dir is not None:
        _plot(plot_dir, out, cnn, x_test[0], accuracy)
        out.say("""
            The kernels (lesson4_kernels.png) are small stroke and edge detectors; the
            feature maps (lesson4_feature_maps.png) show where each one fires on a digit.
        """)
    return result


def _plot(plot_dir: str | os.PathLike, out: Printer, cnn: Network, digit: np.ndarray,
          accuracy: dict[str, list[float]]) -> None:
    from ..plotting import plot_conv_kernels, plot_feature_maps

    save_figure(plot_conv_kernels(cnn), plot_dir, "lesson4_kernels.png", out)
    save_figure(plot_feature_maps(cnn, digit), plot_dir, "lesson4_feature_maps.png", out)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, values in accuracy.items():
        ax.plot(SHIFTS, [100 * v for v in values], marker="o", label=name.upper())
    ax.set(xlabel="shift of the test digits (pixels)", ylabel="test accuracy (%)",
           title="Lesson 4: accuracy on shifted digits", xticks=SHIFTS)
    ax.axvspan(-0.2, 1.0, color="grey", alpha=0.15, label="shifts seen in training")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, plot_dir, "lesson4_shifts.png", out)
