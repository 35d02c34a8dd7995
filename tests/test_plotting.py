"""Figures of a trained classifier (chainrule.plotting): they draw the data they are given."""

from __future__ import annotations

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
from matplotlib.figure import Figure  # noqa: E402

import chainrule as cr  # noqa: E402
from chainrule import plotting  # noqa: E402
from chainrule.recipes import confusion_matrix, per_class_scores  # noqa: E402

HISTORY = {
    "loss": [1.2, 0.6, 0.4, 0.3],
    "val_loss": [0.9, 0.5, 0.45, 0.42],
    "val_accuracy": [0.80, 0.88, 0.90, 0.91],
    "train_loss": [0.8, 0.45, 0.35, 0.30],
    "train_accuracy": [0.82, 0.90, 0.93, 0.95],
}


def rendered(fig: Figure) -> np.ndarray:
    """The figure as an RGB array, as it would be saved."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3]


def test_learning_curves_plot_every_series(tmp_path):
    fig = plotting.plot_learning_curves(HISTORY)
    assert isinstance(fig, Figure)
    ax_loss, ax_acc = fig.axes
    loss_lines = {line.get_label(): list(line.get_ydata()) for line in ax_loss.get_lines()}
    assert loss_lines == {
        "training (running mean over the epoch)": HISTORY["loss"],
        "training": HISTORY["train_loss"],
        "validation": HISTORY["val_loss"],
    }
    acc_lines = {line.get_label(): list(line.get_ydata()) for line in ax_acc.get_lines()}
    assert acc_lines == {"training": HISTORY["train_accuracy"],
                         "validation": HISTORY["val_accuracy"]}
    assert list(ax_acc.get_lines()[0].get_xdata()) == [1, 2, 3, 4]  # epochs count from 1
    low, high = ax_acc.get_ylim()
    assert low <= 0.80 and high >= 0.95  # every point visible
    assert ax_acc.get_yscale() == "logit"


def test_learning_curves_from_a_history_and_into_given_axes():
    network = cr.Network.from_sizes([4, 3, 2], loss="cross_entropy", seed=0)
    x = np.random.default_rng(0).normal(size=(20, 4))
    y = (x[:, 0] > 0).astype(int)
    history = network.fit(x, y, epochs=3, batch_size=5, verbose=0, validation_data=(x, y), seed=0)
    fig = Figure()
    axes = fig.subplots(1, 2)
    assert plotting.plot_learning_curves(history, axes=axes) is fig
    labels = [line.get_label() for line in axes[0].get_lines()]
    assert labels == ["training (running mean over the epoch)", "validation"]
    np.testing.assert_allclose(axes[1].get_lines()[0].get_ydata(), history["val_accuracy"])


def test_confusion_matrix_counts_and_scores():
    y_true = np.array([0, 0, 1, 1, 1, 2, 2, 2, 2])
    y_pred = np.array([0, 1, 1, 1, 2, 2, 2, 2, 0])
    matrix = confusion_matrix(y_true, y_pred, 3)
    np.testing.assert_array_equal(matrix, [[1, 1, 0], [0, 2, 1], [1, 0, 3]])
    scores = per_class_scores(matrix)
    np.testing.assert_allclose(scores["precision"], [1 / 2, 2 / 3, 3 / 4])
    np.testing.assert_allclose(scores["recall"], [1 / 2, 2 / 3, 3 / 4])
    np.testing.assert_array_equal(scores["support"], [2, 3, 4])
    empty = per_class_scores(confusion_matrix([0, 0], [0, 0], 2))
    assert np.isnan(empty["precision"][1]) and np.isnan(empty["recall"][1])
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix([0, 1], [0], 2)


def test_confusion_matrix_figure_shows_the_counts():
    matrix = np.array([[50, 2, 0], [1, 40, 3], [0, 0, 30]])
    fig = plotting.plot_confusion_matrix(matrix)
    ax = fig.axes[0]
    texts = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text()
             for t in ax.texts}
    # One label per non-zero cell, at (row = true, column = predicted).
    assert texts == {(0, 0): "50", (0, 1): "2", (1, 0): "1", (1, 1): "40", (1, 2): "3",
                     (2, 2): "30"}
    assert "120 of 126 right (95.24%)" in ax.get_title()
    assert ax.get_xlabel() == "predicted" and ax.get_ylabel() == "true"


def test_first_layer_weights_are_drawn_as_images():
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(10, 784))
    fig = plotting.plot_first_layer_weights(weight)
    mosaic = fig.axes[0].get_images()[0].get_array()
    assert mosaic.shape == (3 * 29 - 1, 4 * 29 - 1)  # 10 neurons on a 3x4 grid, 1-pixel gaps
    # Neuron 5 sits in row 1, column 1, scaled to its own largest weight.
    np.testing.assert_allclose(mosaic[29:57, 29:57], weight[5].reshape(28, 28)
                               / np.abs(weight[5]).max())
    assert np.ma.getmaskarray(mosaic)[28].all()  # gaps are blank (NaN)
    network = cr.Network.from_sizes([784, 6, 10], seed=0)
    fig = plotting.plot_first_layer_weights(network, max_units=4)
    assert "4 of 6 neurons" in fig.axes[0].get_title()
    with pytest.raises(ValueError, match="28x28"):
        plotting.plot_first_layer_weights(rng.normal(size=(3, 100)))


def test_misclassified_gallery_labels_true_and_predicted():
    rng = np.random.default_rng(1)
    x = rng.random((50, 784))
    y_true = rng.integers(0, 10, size=50)
    y_pred = y_true.copy()
    wrong = [3, 7, 20, 41]
    y_pred[wrong] = (y_true[wrong] + 1) % 10
    fig = plotting.plot_misclassified(x, y_true, y_pred)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.texts]
    assert labels == [f"true {y_true[i]} / pred {y_pred[i]}" for i in wrong]
    assert "4 of 4 mistakes in 50 digits" in ax.get_title()
    mosaic = ax.get_images()[0].get_array()
    # The first mistake's pixels are in the first cell, under its label band.
    np.testing.assert_allclose(mosaic[10:38, 2:30], x[3].reshape(28, 28))
    probabilities = np.full((50, 10), 0.05)
    probabilities[np.arange(50), y_pred] = 0.55
    fig = plotting.plot_misclassified(x, y_true, y_pred, probabilities, max_images=2)
    assert [t.get_text() for t in fig.axes[0].texts][0].endswith("55% sure")
    assert len(fig.axes[0].texts) == 2
    none = plotting.plot_misclassified(x, y_true, y_true)
    assert "none" in none.axes[0].get_title()


def test_save_all_writes_pngs_that_show_something(tmp_path):
    from PIL import Image

    from chainrule.datasets import load_mnist

    _, (x_test, y_test) = load_mnist()
    x_test, y_test = x_test[:500], y_test[:500]
    network = cr.Network.from_sizes([784, 16, 10], loss="cross_entropy",
                                    optimizer=cr.Adam(lr=1e-2), seed=0)
    history = network.fit(x_test, y_test, epochs=2, batch_size=50, verbose=0, seed=0,
                          validation_data=(x_test[:100], y_test[:100]))
    paths = plotting.save_all(history, network, x_test, y_test, tmp_path / "plots")
    assert [p.name for p in paths] == ["learning_curves.png", "confusion_matrix.png",
                                       "first_layer_weights.png", "misclassified.png"]
    for path in paths:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("L"), dtype=float)
        assert min(pixels.shape) > 300
        assert pixels.std() > 10  # not a blank canvas
    # Evaluation only: no history, no learning curves.
    paths = plotting.save_all(None, network, x_test, y_test, tmp_path / "eval")
    assert "learning_curves.png" not in [p.name for p in paths]


def test_drawing_into_a_given_axes():
    fig = Figure()
    ax = fig.add_subplot()
    assert plotting.plot_confusion_matrix(np.eye(3, dtype=int), ax=ax) is fig
    assert rendered(fig).std() > 0


@pytest.mark.parametrize("accuracy", [[0.805, 0.84, 0.866], [0.9712], [0.31, 0.52]])
def test_accuracy_axis_always_shows_labelled_ticks(accuracy):
    fig = plotting.plot_learning_curves({"loss": [1.0] * len(accuracy),
                                         "val_loss": [1.0] * len(accuracy),
                                         "val_accuracy": accuracy})
    ax_acc = fig.axes[1]
    low, high = ax_acc.get_ylim()
    inside = [t for t in ax_acc.get_yticks() if low <= t <= high]
    assert len(inside) >= 2
    assert low <= min(accuracy) and max(accuracy) <= high


def test_plot_functions_save_to_a_path_given_where_the_axes_go(tmp_path):
    from PIL import Image

    fig = plotting.plot_learning_curves(HISTORY, tmp_path / "curves.png", dpi=20)
    assert isinstance(fig, Figure)
    assert Image.open(tmp_path / "curves.png").size == (200, 80)  # 10x4 in at 20 dpi
    plotting.plot_confusion_matrix(np.eye(3, dtype=int) * 5, str(tmp_path / "m.png"), dpi=20)
    plotting.plot_confusion_matrix(np.eye(3, dtype=int) * 5, path=tmp_path / "m2.png", dpi=10)
    plotting.plot_first_layer_weights(np.ones((4, 784)), tmp_path / "w.png", dpi=20)
    x = np.zeros((3, 784))
    plotting.plot_misclassified(x, [1, 2, 3], [1, 0, 3], path=tmp_path / "x.png", dpi=20)
    for name in ("m.png", "m2.png", "w.png", "x.png"):
        assert Image.open(tmp_path / name).format == "PNG"
    assert Image.open(tmp_path / "m2.png").size[0] < Image.open(tmp_path / "m.png").size[0]
    with pytest.raises(TypeError, match="once"):
        plotting.plot_confusion_matrix(np.eye(2), "a.png", path="b.png")


def test_wrong_arguments_are_named_before_drawing():
    labels = np.arange(20) % 3
    # Labels where the matrix goes (or both label arrays) say how to make the matrix.
    for args in ((labels,), (labels, labels), (np.ones((2, 3)),)):
        with pytest.raises(ValueError, match=r"^plot_confusion_matrix takes a square \(k, k\) "
                           r"matrix of counts, got shape \((20,|2, 3)\); make one from labels "
                           r"with chainrule\.recipes\.confusion_matrix\(y_true, y_pred, k\)$"):
            plotting.plot_confusion_matrix(*args)
    with pytest.raises(TypeError, match=r"^the history must be what fit returns, or a dict "
                       r"\{name: values per epoch\} such as \{'loss': \[\.\.\.\]\}; got list$"):
        plotting.plot_learning_curves([0.5, 0.4])


def test_save_all_runs_the_test_set_through_the_network_once(tmp_path, monkeypatch):
    # A CNN's 10,000 test digits take seconds: the confidences come from the same outputs.
    net = cr.Network.from_sizes([784, 8, 10], loss="cross_entropy", seed=0)
    x, y = np.random.default_rng(0).uniform(size=(30, 784)).astype(np.float32), np.arange(30) % 10
    expected = net.predict_proba(x)
    rows = []
    infer = net._infer
    monkeypatch.setattr(net, "_infer", lambda batch: rows.append(len(batch)) or infer(batch))
    seen = []
    original = plotting.plot_misclassified
    monkeypatch.setattr(plotting, "plot_misclassified",
                        lambda *a, **k: seen.append(a[3]) or original(*a, **k))
    plotting.save_all(None, net, x, y, tmp_path)
    assert rows == [30]
    np.testing.assert_array_equal(seen[0], expected)
    with pytest.raises(ValueError, match="outputs are not probabilities"):
        cr.Network.from_sizes([784, 10], seed=0).predict_proba(np.zeros((1, 5)))  # before any shape check


def test_save_all_for_a_regression_network_shows_no_confidence(tmp_path):
    # squared error on one-hot targets, linear outputs: classes by argmax, no probabilities
    net = cr.Network.from_sizes([784, 10], seed=0)
    x, y = np.random.default_rng(0).uniform(size=(20, 784)), np.arange(20) % 10
    paths = plotting.save_all(None, net, x, y, tmp_path)
    assert sorted(p.name for p in paths) == ["confusion_matrix.png", "first_layer_weights.png",
                                             "misclassified.png"]
