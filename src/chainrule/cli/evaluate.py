"""``chainrule evaluate``: accuracy, per-class scores and the confusion matrix on the test set."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from ._common import (
    architecture,
    as_model_inputs,
    check_input_width,
    check_plot_dir,
    describe_source,
    load_model,
    load_test_data,
    model_outputs,
    warn_line,
    write_plots,
)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "evaluate", help="accuracy, per-class precision and recall, and the confusion matrix",
        description="Evaluate a saved model on the MNIST test set.",
    )
    p.add_argument("model", metavar="MODEL", help="a .safetensors model saved by chainrule")
    p.add_argument("--data", metavar="DIR",
                   help="directory with MNIST's two test files, t10k-images-idx3-ubyte and "
                   "t10k-labels-idx1-ubyte, .gz or not (default: the bundled digits)")
    p.add_argument("--plots", metavar="DIR",
                   help="also write the confusion matrix, first-layer weights and "
                   "misclassified digits as PNGs into DIR")
    return p


def run(args: argparse.Namespace) -> int:
    from ..diagnostics import at_chance, chance_accuracy
    from ..recipes import confusion_matrix, per_class_scores

    if args.plots:
        check_plot_dir(args.plots, "--plots")
    network = load_model(args.model)
    x, y = load_test_data(args.data)
    check_input_width(network, args.model, x.shape[1], "the test images have")
    x = as_model_inputs(network, x)  # rows of pixels for an MLP, (n, 1, 28, 28) for a CNN
    n_classes = int(y.max()) + 1
    if network.out_features is not None and network.out_features < n_classes:
        raise ValueError(
            f"{args.model} has {network.out_features} outputs but the data has "
            f"{n_classes} classes"
        )
    # Accuracy needs only the largest output, so any classifier is scored, whether or
    # not its outputs are probabilities (a squared-error network with linear outputs).
    outputs = model_outputs(network, x, args.model, "the test digits")
    predicted = outputs.argmax(axis=1)
    matrix = confusion_matrix(y, predicted, max(n_classes, outputs.shape[1]))
    scores = per_class_scores(matrix)
    correct = int(np.trace(matrix))
    print(f"model: {args.model} ({architecture(network)})")
    print(f"data: {describe_source(args.data)}, test set of {len(y):,} digits")
    print(f"accuracy: {100 * correct / len(y):.2f}% ({correct:,} of {len(y):,} right)")
    if at_chance(correct / len(y), y):
        warn_line(f"the accuracy {100 * correct / len(y):.2f}% is no better than chance "
                  f"({100 * chance_accuracy(y):.2f}% for always answering the most common "
                  "digit): this model has not learned to read these digits")
    print()
    print(format_scores(scores))
    print()
    print("confusion matrix (rows: true digit, columns: predicted digit)")
    print(format_confusion_matrix(matrix))
    if args.plots:
        write_plots(None, network, x, y, args.plots)
    return 0


def format_scores(scores: dict[str, np.ndarray]) -> str:
    """Per-class precision, recall and support as a text table."""
    lines = ["digit  precision  recall  support"]
    for k, (p, r, s) in enumerate(zip(scores["precision"], scores["recall"], scores["support"])):
        lines.append(f"{k:>5}  {_percent(p):>9}  {_percent(r):>6}  {s:>7,}")
    return "\n".join(lines)


def _percent(value: float) -> str:
    return "-" if value != value else f"{100 * value:.1f}%"


def format_confusion_matrix(matrix: np.ndarray) -> str:
    """The confusion matrix as a text table, true classes as rows, totals at the right."""
    n = len(matrix)
    width = max(4, len(f"{int(matrix.max()):,}") + 1)
    header = "true\\pred" + "".join(f"{j:>{width}}" for j in range(n)) + f"{'total':>{width + 2}}"
    lines = [header]
    for i in range(n):
        cells = "".join(f"{int(v) if v else '.':>{width}}" for v in matrix[i])
        lines.append(f"{i:>9}" + cells + f"{int(matrix[i].sum()):>{width + 2}}")
    return "\n".join(lines)
