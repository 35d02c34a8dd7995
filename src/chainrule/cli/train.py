"""``chainrule train``: train the digit classifier of ``chainrule.recipes``."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .._version import __version__
from ._common import (
    DEFAULT_MODEL,
    EXIT_INTERRUPTED,
    check_input_width,
    check_plot_dir,
    describe_source,
    int_list,
    join,
    load_data,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    probability,
    write_plots,
)

_ACTIVATION_NAMES = {"ReLU": "relu", "LeakyReLU": "leaky_relu", "Tanh": "tanh", "Sigmoid": "sigmoid"}


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    from ..recipes import DigitRecipe

    default = DigitRecipe()
    p = subparsers.add_parser(
        "train", help="train a digit classifier (by default on the bundled MNIST digits)",
        description="Train an MLP digit classifier. With no options: the default recipe ("
        + default.describe() + ") on the 10,000 bundled MNIST training digits, of which "
        f"the last {default.validation:,} are held out for validation; then the test "
        "accuracy on the 10,000 test digits. Ctrl-C stops after the current step and "
        "saves the model trained so far.",
    )
    p.add_argument("--data", metavar="DIR",
                   help="directory with MNIST's four IDX files (default: the bundled digits)")
    p.add_argument("--layers", type=int_list, metavar="W,W,...",
                   help=f"layer widths, input to output (default {join(default.layers)})")
    p.add_argument("--activation", choices=["relu", "leaky_relu", "tanh", "sigmoid"],
                   help=f"hidden activation (default {default.activation})")
    p.add_argument("--optimizer", choices=["adam", "sgd"],
                   help=f"adam, or sgd with Nesterov momentum 0.9 (default {default.optimizer})")
    p.add_argument("--lr", type=positive_float,
                   help=f"initial learning rate, annealed along a cosine (default {default.lr:g})")
    p.add_argument("--final-lr", type=non_negative_float, metavar="LR",
                   help=f"learning rate at the last epoch (default {default.final_lr:g})")
    p.add_argument("--epochs", type=positive_int,
                   help=f"default {default.epochs} (with --resume: for the whole run)")
    p.add_argument("--batch-size", type=positive_int, help=f"default {default.batch_size}")
    p.add_argument("--dropout", type=probability,
                   help=f"dropout after each hidden layer (default {default.dropout:g})")
    p.add_argument("--weight-decay", type=non_negative_float, metavar="L2",
                   help=f"L2 penalty (default {default.weight_decay:g})")
    p.add_argument("--shift", type=non_negative_int, metavar="PX",
                   help="augment with random shifts of up to PX pixels, 0 for none "
                   f"(default {default.max_shift})")
    p.add_argument("--validation", type=non_negative_int, metavar="N",
                   help=f"training digits held out for validation (default {default.validation})")
    p.add_argument("--limit", type=positive_int, metavar="N",
                   help="train on the first N training digits only (for quick trials)")
    p.add_argument("--seed", type=int, help=f"random seed (default {default.seed})")
    p.add_argument("--out", default=DEFAULT_MODEL, metavar="FILE",
                   help=f"where to save the model (default {DEFAULT_MODEL})")
    p.add_argument("--plots", metavar="DIR",
                   help="also write learning curves, confusion matrix, first-layer weights "
                   "and misclassified digits as PNGs into DIR (needs matplotlib)")
    p.add_argument("--quiet", "-q", action="store_true", help="print only the final results")
    p.add_argument("--progress", choices=["auto", "bar", "lines"], default="auto",
                   help="a progress bar per epoch, or one line per epoch (default: a bar "
                   "when stderr is a terminal)")
    p.add_argument("--checkpoint", metavar="PATH",
                   help="save a checkpoint (weights, optimizer state, progress) to PATH "
                   "during training")
    p.add_argument("--checkpoint-every", type=positive_int, metavar="N",
                   help="checkpoint every N epochs (default 1)")
    p.add_argument("--resume", metavar="PATH",
                   help="continue the training saved in the checkpoint at PATH (the network "
                   "comes from the checkpoint; repeat the first run's other options)")
    return p


def run(args: argparse.Namespace) -> int:
    from ..augmentation import random_shift
    from ..recipes import DigitRecipe, TrainingSetMetrics, build_network, train_digits

    started = time.perf_counter()
    recipe = DigitRecipe().replace(
        layers=args.layers, activation=args.activation, optimizer=args.optimizer, lr=args.lr,
        final_lr=args.final_lr, epochs=args.epochs, batch_size=args.batch_size,
        dropout=args.dropout, weight_decay=args.weight_decay, max_shift=args.shift,
        validation=args.validation, seed=args.seed,
    )
    out = Path(args.out)
    if not out.parent.exists():
        raise FileNotFoundError(2, "No such directory for --out", str(out.parent))
    if out.is_dir():
        raise ValueError(f"--out {out} is a directory; give a file name, e.g. {out / DEFAULT_MODEL}")
    if args.plots:
        check_plot_dir(args.plots, "--plots")  # fail now, not after training
    if recipe.max_shift:
        random_shift(recipe.max_shift)  # checks the shift fits the 28x28 images
    resume = args.resume

    (x, y), (x_test, y_test) = load_data(args.data)
    if args.limit:
        x, y = x[: args.limit], y[: args.limit]
    if recipe.validation >= len(x):
        raise ValueError(
            f"cannot hold out {recipe.validation:,} digits for validation from {len(x):,} "
            "training digits; use a smaller --validation (or a larger --limit)"
        )
    n_classes = int(max(y.max(), y_test.max())) + 1
    if not resume and recipe.layers[0] != x.shape[1]:
        raise ValueError(
            f"--layers starts with {recipe.layers[0]} inputs but the images have "
            f"{x.shape[1]} pixels; start the layers with {x.shape[1]}"
        )
    if not resume and recipe.layers[-1] != n_classes:
        raise ValueError(
            f"--layers ends with {recipe.layers[-1]} outputs but there are {n_classes} "
            f"classes; end the layers with {n_classes}"
        )

    fit_kwargs: dict[str, Any] = {}
    if args.checkpoint:
        fit_kwargs["checkpoint"] = args.checkpoint
        if args.checkpoint_every:
            fit_kwargs["checkpoint_every"] = args.checkpoint_every
    if resume:
        from ..checkpoint import load_checkpoint

        # The architecture comes from the checkpoint; the rest of the recipe
        # (epochs, schedule, shifts...) from the options, which should repeat the first run's.
        if not Path(resume).is_file():
            raise FileNotFoundError(f"no checkpoint file at {resume}")
        saved = load_checkpoint(resume)
        if saved.epoch >= recipe.epochs:
            raise ValueError(
                f"{resume} already holds {saved.epoch} epochs and --epochs {recipe.epochs} "
                "counts the whole run; ask for more epochs to train further"
            )
        network = saved.build_network()
        check_input_width(network, resume, x.shape[1], "the training images have")
        fit_kwargs["resume"] = resume
        # The network comes from the checkpoint; options may repeat it, not change it.
        sizes = (*(layer.in_features for layer in network.layers if hasattr(layer, "in_features")),
                 network.out_features)
        activation = type(network.layers[1]).__name__ if len(network.layers) > 1 else "linear"
        activation = _ACTIVATION_NAMES.get(activation, activation)
        if args.layers and tuple(args.layers) != sizes:
            raise ValueError(f"--layers {join(args.layers)} differs from the checkpoint's "
                             f"network, {join(sizes)}; leave --layers out when resuming")
        if args.activation and args.activation != activation:
            raise ValueError(f"--activation {args.activation} differs from the checkpoint's "
                             f"{activation}; leave --activation out when resuming")
        recipe = recipe.replace(layers=sizes, activation=activation)
    else:
        network = build_network(recipe)

    n_val = recipe.validation
    say = (lambda *a, **k: None) if args.quiet else print
    say(f"chainrule {__version__}: training {recipe.describe()}")
    if resume:
        say(f"resuming {resume}: {saved.epoch} epochs done"
            + (f" and {saved.step} steps into the next" if saved.step else ""))
    say(f"data: {describe_source(args.data)}: {len(x) - n_val:,} training digits, "
        f"{n_val:,} held out for validation, {len(x_test):,} test digits")
    verbose = 0 if args.quiet else _progress_level(args.progress)
    extra = []
    if args.plots:
        extra.append(TrainingSetMetrics(x[: len(x) - n_val], y[: len(x) - n_val]))

    with _stop_on_ctrl_c(network) as interrupted:
        train_started = time.perf_counter()
        network, history = train_digits(recipe, x, y, network=network, callbacks=extra,
                                         verbose=verbose, **fit_kwargs)
        train_seconds = time.perf_counter() - train_started

    network.save(out)
    if interrupted():
        print(f"interrupted: saved the model trained so far ({_epochs_done(history, recipe)}) "
              f"to {out}", file=sys.stderr)
    result = network.evaluate(x_test, y_test, batch_size=4096)
    wall = time.perf_counter() - started
    correct = int(round(result["accuracy"] * len(y_test)))
    print(f"test accuracy: {100 * result['accuracy']:.2f}% ({correct:,} of {len(y_test):,})   "
          f"test loss {result['loss']:.4f}")
    print(f"wall time: {wall:.1f} s (training {train_seconds:.1f} s)")
    if not interrupted():
        print(f"saved the model to {out}")
    if args.plots:
        write_plots(history, network, x_test, y_test, args.plots, quiet=args.quiet)
    return EXIT_INTERRUPTED if interrupted() else 0


def _progress_level(choice: str) -> int:
    if choice == "bar" or (choice == "auto" and sys.stderr.isatty()):
        return 1
    return 2


def _epochs_done(history: Any, recipe: Any) -> str:
    return f"stopped in epoch {len(history)} of {recipe.epochs}"


@contextmanager
def _stop_on_ctrl_c(network: Any) -> Iterator[Callable[[], bool]]:
    """While training: Ctrl-C asks ``fit`` to stop after the current step; a second aborts.

    ``fit`` checks ``network.stop_training`` after every step, so the first
    SIGINT just sets it and training ends cleanly, leaving a consistent
    model to save. The previous handler is restored afterwards.
    """
    state = {"interrupted": False}

    def handler(signum: int, frame: Any) -> None:
        if state["interrupted"]:
            raise KeyboardInterrupt  # second Ctrl-C: stop now, save nothing
        state["interrupted"] = True
        network.stop_training = True
        print("\nchainrule: Ctrl-C: stopping after the current step and saving the model "
              "(press Ctrl-C again to abort without saving)", file=sys.stderr, flush=True)

    # Signal handlers can only be set from the main thread.
    install = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, handler) if install else None
    try:
        yield lambda: state["interrupted"]
    finally:
        if install:
            signal.signal(signal.SIGINT, previous)
