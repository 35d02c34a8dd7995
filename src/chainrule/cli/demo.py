"""``chainrule demo``: the tutorials' 3-4-1 relu network learning XOR, in a second."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from ._common import positive_int

#: The tutorials' lesson-2 data: the target is XOR of the first two columns.
XOR_X = np.array([[1, 0, 1], [0, 1, 1], [0, 0, 1], [1, 1, 1]], dtype=np.float64)
XOR_Y = np.array([[1], [1], [0], [0]], dtype=np.float64)
#: An initialisation (numpy default_rng seed) from which the demo converges in 60 epochs.
DEMO_SEED = 1


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("demo", help="watch a tiny 3-4-1 network learn XOR (no data needed)",
                              description="Train the tutorials' 3-4-1 relu network on four XOR "
                              "rows and print the error falling. Takes a second.")
    p.add_argument("--epochs", type=positive_int, default=60, help="default 60")
    p.add_argument("--seed", type=int, default=None, help="initial weights (default: one "
                   "that converges)")
    return p


def run(args: argparse.Namespace) -> int:
    from ..activations import ReLU
    from ..diagnostics import diagnose
    from ..layers import Dense
    from ..network import Network
    from ..optimizers import SGD
    from ..training import Callback

    seed = DEMO_SEED if args.seed is None else args.seed
    rng = np.random.default_rng(seed)
    network = Network(
        [Dense(3, 4, bias=False, init="uniform", rng=rng), ReLU(),
         Dense(4, 1, bias=False, init="uniform", rng=rng)],
        loss="squared_error", optimizer=SGD(lr=0.1), dtype="float64",
    )
    print("A 3-4-1 network (relu hidden layer, no biases, 16 weights) learning XOR of the "
          "first two inputs:")
    for row, target in zip(XOR_X, XOR_Y):
        print(f"  {row.astype(int).tolist()} -> {int(target[0])}")
    print(f"Plain SGD, lr 0.1, one row at a time, {args.epochs} epochs; weights uniform in "
          f"[-1, 1) from seed {seed}.")

    class Every10(Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
            if (epoch + 1) % 10 == 0 or epoch == 0:
                print(f"  epoch {epoch + 1:>3}: mean squared error {logs['loss']:.3e}")

    network.fit(XOR_X, XOR_Y, epochs=args.epochs, batch_size=1, shuffle=False,
                callbacks=[Every10()], verbose=0)
    prediction = network.predict(XOR_X)[:, 0]
    print("predictions: " + "  ".join(
        f"{row.astype(int).tolist()} -> {p:.3f}" for row, p in zip(XOR_X, prediction)))
    if np.max(np.abs(prediction - XOR_Y[:, 0])) >= 0.5:
        # Not every start learns: say so, and why, rather than imply it did.
        report = diagnose(network, XOR_X, XOR_Y)
        print(f"This start did not learn XOR (mean squared error {report.loss:.3g}).")
        for problem in report.problems:
            print(f"  {problem.message}")
        if not report.problems:
            print("  diagnose finds nothing wrong: it may need more epochs (--epochs).")
    return 0
