"""Figures for a trained digit classifier: learning curves, confusion matrix,
first-layer weights and the digits it got wrong.

Needs matplotlib, an optional extra (``pip install "chainrule[plot]"``),
imported only when a figure is drawn. Figures are built with
``matplotlib.figure.Figure`` rather than ``pyplot``, so nothing here needs a
display or touches pyplot's global state; call ``fig.savefig(path)`` to
write one, or pass ``ax=`` to draw into an axes of your own. Every plotting
function also takes a file path where the axes would go (or ``path=``) and
saves the figure there: ``plot_learning_curves(history, "curves.png")``.

>>> from chainrule import plotting
>>> fig = plotting.plot_confusion_matrix(matrix)              # doctest: +SKIP
>>> plotting.save_all(history, net, x_test, y_test, "plots")   # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "plot_learning_curves",
    "plot_confusion_matrix",
    "plot_first_layer_weights",
    "plot_misclassified",
    "plot_conv_kernels",
    "plot_feature_maps",
    "save_all",
]


def _figure(ax: Any = None, figsize: tuple[float, float] = (6.0, 5.0)) -> tuple[Any, Any]:
    """``(figure, axes)``: the given axes and its figure, or a new single-axes figure."""
    try:
        from matplotlib.figure import Figure
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            'plots need matplotlib; install it with: pip install "chainrule[plot]"'
        ) from None
    if ax is not None:
        return ax.figure, ax
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def _ax_and_path(ax: Any, path: str | PathLike | None) -> tuple[Any, str | PathLike | None]:
    """A file path given where the axes go is where to save the figure."""
    if isinstance(ax, (str, PathLike)):
        if path is not None:
            raise TypeError("give the file to save to once (positionally or as path=)")
        return None, ax
    return ax, path


def _saved(fig: Any, path: str | PathLike | None, dpi: int) -> Any:
    if path is not None:
        fig.savefig(os.fspath(path), dpi=dpi)
    return fig


def _metrics(history: Any) -> Mapping[str, Sequence[float]]:
    """A History's metrics or a plain ``{name: values per epoch}`` mapping."""
    metrics = getattr(history, "metrics", history)
    if not isinstance(metrics, Mapping):
        raise TypeError(
            f"the history must be what fit returns, or a dict {{name: values per epoch}} such "
            f"as {{'loss': [...]}}; got {type(history).__name__}")
    return metrics


def plot_learning_curves(
    history: Any, path: str | PathLike | Sequence[Any] | None = None, *,
    axes: Sequence[Any] | None = None, dpi: int = 110,
) -> Any:
    """Loss and accuracy per epoch, training beside validation; saved to ``path`` if given.

    Parameters
    ----------
    history : History or mapping name -> list of per-epoch values
        Uses ``loss`` (the running training loss, dropout and augmentation on),
        ``val_loss``, ``val_accuracy``, and where present ``train_loss`` and
        ``train_accuracy`` (the training set measured like the validation set,
        in inference mode, e.g. by ``recipes.TrainingSetMetrics``).
    path : file path, optional
        Also save the figure there (PNG, PDF, SVG... by the extension).
    axes : two Axes, optional
        Where to draw the loss and the accuracy panels (also accepted in
        place of ``path``, the older signature).

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.ticker import MaxNLocator

    if path is not None and not isinstance(path, (str, PathLike)):
        if axes is not None:
            raise TypeError("axes given twice")
        path, axes = None, path
    metrics = _metrics(history)
    if axes is None:
        fig, _ = _figure(figsize=(10.0, 4.0))
        fig.clear()
        ax_loss, ax_acc = fig.subplots(1, 2)
    else:
        ax_loss, ax_acc = axes
        fig = ax_loss.figure
    lines = {
        ax_loss: [
            ("loss", "training (running mean over the epoch)", {"color": "C0", "ls": ":", "alpha": 0.8}),
            ("train_loss", "training", {"color": "C0"}),
            ("val_loss", "validation", {"color": "C1"}),
        ],
        ax_acc: [
            ("train_accuracy", "training", {"color": "C0"}),
            ("val_accuracy", "validation", {"color": "C1"}),
        ],
    }
    for ax, specs in lines.items():
        for key, label, style in specs:
            values = metrics.get(key) if hasattr(metrics, "get") else None
            if values:
                epochs = np.arange(1, len(values) + 1)
                ax.plot(epochs, values, marker="o", markersize=3, label=label, **style)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    if max((len(v) for v in metrics.values() if v), default=0) == 1:
        for ax in (ax_loss, ax_acc):  # one epoch: whole-number ticks around it
            ax.set_xlim(0.5, 1.5)
            ax.set_xticks([1])
    ax_loss.set_ylabel("loss")
    ax_loss.set_yscale("log")
    ax_loss.set_title("Loss")
    ax_acc.set_ylabel("accuracy (logit scale)")
    ax_acc.set_title("Accuracy")
    if any(metrics.get(key) for key in ("train_accuracy", "val_accuracy")):
        # A logit scale spreads 0.9, 0.99, 0.999 evenly: the first epochs and the
        # last tenths of a percent are both readable on one axis.
        from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

        ticks = [0.01, 0.1, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 0.998, 0.999]
        ax_acc.set_yscale("logit", nonpositive="clip")
        ax_acc.yaxis.set_major_locator(FixedLocator(ticks))
        # Limits on ticks around the data, so at least two ticks are always labelled.
        shown = [v for key in ("train_accuracy", "val_accuracy") for v in metrics.get(key) or []
                 if 0 < v < 1]
        if shown:
            low = max([t for t in ticks if t <= min(shown)], default=ticks[0])
            high = min([t for t in ticks if t >= max(shown)], default=ticks[-1])
            ax_acc.set_ylim(low, high if high > low else ticks[min(ticks.index(low) + 1, len(ticks) - 1)])
        ax_acc.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{100 * v:.4g}%"))
        ax_acc.yaxis.set_minor_formatter(NullFormatter())
    return _saved(fig, path, dpi)


def plot_confusion_matrix(
    matrix: np.ndarray, ax: Any = None, class_names: Sequence[str] | None = None, *,
    path: str | PathLike | None = None, dpi: int = 110,
) -> Any:
    """The confusion matrix as a heat map with counts; rows true, columns predicted.

    Parameters
    ----------
    matrix : array (n_classes, n_classes) of counts
        ``matrix[i, j]`` digits of class ``i`` predicted as ``j``
        (see ``recipes.confusion_matrix``).
    """
    matrix = np.asarray(matrix)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(
            f"plot_confusion_matrix takes a square (k, k) matrix of counts, got shape "
            f"{matrix.shape}; make one from labels with "
            "chainrule.recipes.confusion_matrix(y_true, y_pred, k)")
    ax, path = _ax_and_path(ax, path)
    n = len(matrix)
    names = list(class_names) if class_names is not None else [str(i) for i in range(n)]
    fig, ax = _figure(ax, figsize=(6.5, 5.5))
    # Colour by share of each true class, so small classes are as visible as large ones;
    # a log-like power keeps the few errors visible beside the large diagonal.
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    image = ax.imshow(shares**0.3, cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(n):
        for j in range(n):
            if matrix[i, j]:
                dark = shares[i, j] ** 0.3 > 0.6
                ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center",
                        fontsize=8, color="white" if dark else "black")
    ax.set_xticks(range(n), names)
    ax.set_yticks(range(n), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    correct = np.trace(matrix)
    total = matrix.sum()
    ax.set_title(f"Confusion matrix: {correct:,} of {total:,} right "
                 f"({100.0 * correct / max(total, 1):.2f}%)")
    colorbar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ticks = np.array([0.0, 0.001, 0.01, 0.1, 0.5, 1.0])
    colorbar.set_ticks(ticks**0.3, labels=[f"{t:g}" for t in ticks])
    colorbar.set_label("share of the true class")
    return _saved(fig, path, dpi)


def _first_dense_weight(network_or_weight: Any) -> np.ndarray:
    if isinstance(network_or_weight, np.ndarray):
        return network_or_weight
    for layer in network_or_weight.layers:
        if "weight" in getattr(layer, "params", {}):
            return layer.params["weight"]
    raise ValueError("the network has no layer with a weight")


def plot_first_layer_weights(
    network_or_weight: Any, ax: Any = None, max_units: int = 64,
    image_shape: tuple[int, int] = (28, 28), *, path: str | PathLike | None = None,
    dpi: int = 110,
) -> Any:
    """Each first-layer neuron's incoming weights drawn as an image.

    Row ``j`` of the first ``Dense`` weight (out_features, 784) holds what
    neuron ``j`` multiplies each pixel by: red pixels push it up, blue ones
    down. Each image is scaled to its own largest weight (white = 0).

    Parameters
    ----------
    network_or_weight : Network or array (units, 784)
    max_units : int
        Draw the first this many neurons.
    """
    ax, path = _ax_and_path(ax, path)
    weight = np.asarray(_first_dense_weight(network_or_weight), dtype=np.float64)
    height, width = image_shape
    if weight.ndim != 2 or weight.shape[1] != height * width:
        raise ValueError(
            f"first-layer weights must be shaped (units, {height * width}) to be drawn as "
            f"{height}x{width} images, got {weight.shape}"
        )
    units = weight[:max_units]
    cols = math.ceil(math.sqrt(len(units)))
    rows = math.ceil(len(units) / cols)
    # One mosaic image with 1-pixel gaps: far faster than one axes per neuron.
    pad = 1
    mosaic = np.full((rows * (height + pad) - pad, cols * (width + pad) - pad), np.nan)
    for k, w in enumerate(units):
        r, c = divmod(k, cols)
        scale = np.abs(w).max() or 1.0
        top, left = r * (height + pad), c * (width + pad)
        mosaic[top : top + height, left : left + width] = (w / scale).reshape(height, width)
    fig, ax = _figure(ax, figsize=(7.0, 7.0))
    cmap = _colormap("RdBu_r", bad="#444444")
    ax.imshow(mosaic, cmap=cmap, vmin=-1.0, vmax=1.0, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(f"First-layer weights, {len(units)} of {len(weight)} neurons\n"
                 f"(red +, blue -, each scaled to its own largest weight)", fontsize=10)
    return _saved(fig, path, dpi)


def _mosaic(tiles: np.ndarray, pad: int = 1) -> np.ndarray:
    """Tiles ``(k, h, w)`` laid out in a near-square grid, NaN in the gaps."""
    k, height, width = tiles.shape
    cols = math.ceil(math.sqrt(k))
    rows = math.ceil(k / cols)
    mosaic = np.full((rows * (height + pad) - pad, cols * (width + pad) - pad), np.nan)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        top, left = r * (height + pad), c * (width + pad)
        mosaic[top : top + height, left : left + width] = tile
    return mosaic


def _first_conv(network: Any) -> tuple[int, Any]:
    from .layers import Conv2D

    for i, layer in enumerate(network.layers):
        if isinstance(layer, Conv2D):
            return i, layer
    raise ValueError("the network has no Conv2D layer")


def plot_conv_kernels(
    network: Any, ax: Any = None, max_kernels: int = 64, *,
    path: str | PathLike | None = None, dpi: int = 110,
) -> Any:
    """The first ``Conv2D``'s kernels, one small image each (its first input channel).

    A kernel is the pattern its feature map responds to, wherever it sits in
    the picture: red weights push the output up, blue ones down, each kernel
    scaled to its own largest weight.
    """
    ax, path = _ax_and_path(ax, path)
    _, conv = _first_conv(network)
    kernels = np.asarray(conv.params["weight"][:max_kernels, 0], dtype=np.float64)
    scale = np.abs(kernels).max(axis=(1, 2), keepdims=True)
    mosaic = _mosaic(kernels / np.where(scale > 0, scale, 1.0))
    fig, ax = _figure(ax, figsize=(6.0, 6.0))
    ax.imshow(mosaic, cmap=_colormap("RdBu_r", bad="#444444"), vmin=-1.0, vmax=1.0,
              interpolation="nearest")
    ax.set_axis_off()
    kh, kw = conv.kernel_size
    ax.set_title(f"First convolution: {len(kernels)} of {conv.out_channels} kernels, {kh}x{kw}"
                 f"\n(red +, blue -, each scaled to its own largest weight)", fontsize=10)
    return _saved(fig, path, dpi)


def plot_feature_maps(
    network: Any, image: np.ndarray, ax: Any = None, max_maps: int = 32, *,
    path: str | PathLike | None = None, dpi: int = 110,
) -> Any:
    """What the first ``Conv2D`` (and the activation after it) makes of one image ``(C, H, W)``.

    One map per output channel: bright where the channel's kernel matches the
    picture. Computed in inference mode, storing nothing on the network.
    """
    ax, path = _ax_and_path(ax, path)
    index, _ = _first_conv(network)
    stop = index + 1
    if stop < len(network.layers) and not network.layers[stop].params \
            and type(network.layers[stop]).__module__.endswith("activations"):
        stop += 1  # include the activation: the maps the next layer sees
    x = np.asarray(image, dtype=network.dtype)[None]
    for layer in network.layers[:stop]:
        x = layer.forward(x, False, cache=False)
    maps = np.asarray(x[0, :max_maps], dtype=np.float64)
    scale = np.abs(maps).max(axis=(1, 2), keepdims=True)
    fig, ax = _figure(ax, figsize=(6.0, 6.0))
    ax.imshow(_mosaic(maps / np.where(scale > 0, scale, 1.0)), cmap=_colormap("magma", bad="#444444"),
              vmin=0.0 if maps.min() >= 0 else -1.0, vmax=1.0, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(f"Feature maps of one digit after layer {stop - 1} "
                 f"({network.layers[stop - 1]!r}), {len(maps)} channels", fontsize=10)
    return _saved(fig, path, dpi)


def _colormap(name: str, bad: str) -> Any:
    import matplotlib

    return matplotlib.colormaps[name].with_extremes(bad=bad)


def plot_misclassified(
    x: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray,
    probabilities: np.ndarray | None = None, max_images: int = 36, ax: Any = None,
    image_shape: tuple[int, int] = (28, 28), *, path: str | PathLike | None = None,
    dpi: int = 110,
) -> Any:
    """A gallery of the digits the model got wrong, each labelled ``true 4 / pred 9``.

    Parameters
    ----------
    x : array (n, 784)
    y_true, y_pred : arrays (n,) of labels
    probabilities : array (n, classes), optional
        Adds the model's confidence in its wrong answer to each label.
    max_images : int
        Show the first this many mistakes, in dataset order.
    """
    ax, path = _ax_and_path(ax, path)
    x = np.asarray(x)
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    wrong = np.flatnonzero(y_true != y_pred)
    shown = wrong[:max_images]
    cols = max(1, min(9, math.ceil(math.sqrt(max(len(shown), 1)) * 1.3)))
    rows = max(1, math.ceil(len(shown) / cols))
    height, width = image_shape
    # One mosaic in one axes, a label band above each digit: drawing dozens of
    # separate axes would take seconds.
    band, gap = 16 if probabilities is not None else 10, 4
    cell_h, cell_w = height + band, width + gap
    mosaic = np.full((rows * cell_h, cols * cell_w), np.nan)
    fig, ax = _figure(ax, figsize=(1.15 * cols + 0.2, 1.5 * rows + 0.5))
    for k, i in enumerate(shown):
        r, c = divmod(k, cols)
        top, left = r * cell_h + band, c * cell_w + gap // 2
        mosaic[top : top + height, left : left + width] = x[i].reshape(image_shape)
        label = f"true {y_true[i]} / pred {y_pred[i]}"
        if probabilities is not None:
            label += f"\n{100.0 * probabilities[i, y_pred[i]]:.0f}% sure"
        ax.text(left + width / 2, top - 1, label, ha="center", va="bottom", fontsize=7,
                color="firebrick")
    ax.imshow(mosaic, cmap=_colormap("gray_r", bad="white"), vmin=0.0, vmax=1.0,
              interpolation="nearest")
    ax.set_axis_off()
    if len(shown):
        ax.set_title(f"Misclassified: {len(shown)} of {len(wrong):,} mistakes "
                     f"in {len(y_true):,} digits")
    else:
        ax.set_title(f"Misclassified: none in {len(y_true):,} digits")
    return _saved(fig, path, dpi)


def save_all(
    history: Any, network: Any, x_test: np.ndarray, y_test: np.ndarray,
    out_dir: str | PathLike, dpi: int = 110,
) -> list[Path]:
    """Write the four standard figures of a trained classifier as PNGs into ``out_dir``.

    ``learning_curves.png`` (skipped when ``history`` is None, e.g. when only
    evaluating), ``confusion_matrix.png``, ``first_layer_weights.png`` (an
    MLP) or ``conv_kernels.png`` and ``feature_maps.png`` (of the first test
    digit; a CNN), and ``misclassified.png``. Returns the paths written.
    """
    from .recipes import confusion_matrix

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    outputs = np.atleast_2d(network.predict(x_test, batch_size=4096))
    y_pred = outputs.argmax(axis=1)
    # Confidence only where the outputs have a probability reading (not for a regression),
    # from the same outputs: one pass over the test set, not two.
    probabilities = (network._link_outputs(outputs)
                     if network._probability_link() is not None else None)
    n_classes = max(int(np.max(y_test)) + 1, outputs.shape[1])
    figures: dict[str, Any] = {}
    if history is not None:
        figures["learning_curves.png"] = plot_learning_curves(history)
    figures["confusion_matrix.png"] = plot_confusion_matrix(
        confusion_matrix(y_test, y_pred, n_classes)
    )
    weight = _first_dense_weight(network)
    if weight.ndim == 2 and weight.shape[1] == 784:
        figures["first_layer_weights.png"] = plot_first_layer_weights(weight)
    if getattr(network, "takes_images", False) and any(type(layer).__name__ == "Conv2D"
                                                       for layer in network.layers):
        figures["conv_kernels.png"] = plot_conv_kernels(network)
        figures["feature_maps.png"] = plot_feature_maps(network, x_test[0])
    figures["misclassified.png"] = plot_misclassified(x_test, y_test, y_pred, probabilities)
    paths = []
    for name, fig in figures.items():
        path = out / name
        fig.savefig(os.fspath(path), dpi=dpi)
        paths.append(path)
    return paths
