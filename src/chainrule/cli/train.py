"""``chainrule train``: train the digit classifier of ``chainrule.recipes``."""

from __future__ import annotations

import argparse
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ._common import (
    DEFAULT_CNN_MODEL,
    DEFAULT_MODEL,
    EXIT_INTERRUPTED,
    as_model_inputs,
    check_input_width,
    check_plot_dir,
    check_writable_file,
    describe_source,
    int_list,
    join,
    load_data,
    non_negative_float,
    non_negative_int,
    not_a_regular_file,
    picture_format,
    positive_float,
    positive_int,
    probability,
    warn_line,
    write_plots,
)


def _threads(text: str) -> int | str:
    """``--threads``: ``auto`` or a positive whole number (see ``chainrule.threads``)."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected auto or a positive whole number, got {text!r}") from None


_ACTIVATION_NAMES = {"ReLU": "relu", "LeakyReLU": "leaky_relu", "Tanh": "tanh", "Sigmoid": "sigmoid"}


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    from ..recipes import DigitRecipe

    default = DigitRecipe()
    p = subparsers.add_parser(
        "train", help="train a digit classifier (by default on the bundled MNIST digits)",
        description="Train an MLP digit classifier. With no options: the default recipe ("
        + default.describe() + ") on the 10,000 bundled MNIST training digits, of which "
        f"{default.validation:,}, drawn at random (seeded) and stratified by digit, are held "
        "out for validation; then the test "
        "accuracy on the 10,000 test digits. Ctrl-C stops after the current step and "
        "saves the model trained so far.",
    )
    from ..recipes_cnn import CNNRecipe

    p.add_argument("--model", choices=["mlp", "cnn"], default="mlp",
                   help="mlp (the default: the recipe above, about a minute), or cnn: "
                   + CNNRecipe().describe() + f", on all training digits (several times "
                   f"slower; saved to {DEFAULT_CNN_MODEL} by default). --layers and "
                   "--activation are for mlp")
    p.add_argument("--batch-norm", action="store_true",
                   help="with --model cnn: BatchNorm2d after each convolution")
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
                   help=f"learning rate the cosine reaches at the end of the last epoch "
                   f"(default {default.final_lr:g})")
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
                   help="training digits held out for validation, drawn at random (seeded) "
                   f"and stratified by digit (default {default.validation})")
    p.add_argument("--limit", type=positive_int, metavar="N",
                   help="train on the first N training digits only (for quick trials)")
    p.add_argument("--seed", type=int, help=f"random seed (default {default.seed})")
    p.add_argument("--out", metavar="FILE",
                   help=f"where to save the model (default {DEFAULT_MODEL}; an existing one "
                   "is replaced only by a run of the default recipe, or when --out names it)")
    p.add_argument("--plots", metavar="DIR",
                   help="also write learning curves, confusion matrix, first-layer weights "
                   "and misclassified digits as PNGs into DIR (needs matplotlib)")
    p.add_argument("--quiet", "-q", action="store_true", help="print only the final results")
    p.add_argument("--threads", type=_threads, default="auto", metavar="N|auto",
                   help="BLAS threads for the matrix products: auto (default) measures one "
                   "thread against all as training goes and keeps the faster; a number fixes "
                   "it (1 is safe on a busy machine and repeats a run bit for bit)")
    p.add_argument("--progress", choices=["auto", "bar", "lines"], default="auto",
                   help="a progress bar per epoch, or one line per epoch (default: a bar "
                   "when stderr is a terminal)")
    p.add_argument("--checkpoint", metavar="PATH",
                   help="save a checkpoint (weights, optimizer state, progress) to PATH "
                   "during training")
    p.add_argument("--checkpoint-every", type=positive_int, metavar="N",
                   help="checkpoint every N epochs (default 1)")
    p.add_argument("--resume", metavar="PATH",
                   help="continue the training saved in the checkpoint at PATH: the network, "
                   "optimizer, batch size and random state come from the checkpoint (options "
                   "that contradict its network, optimizer or seed are refused; another "
                   "--batch-size applies, with a warning); repeat the first run's --epochs and "
                   "learning-rate options. A finished checkpoint just saves its model")
    return p


def run(args: argparse.Namespace) -> int:
    from ..recipes import DigitRecipe, build_network, build_optimizer
    from ..resources import check_mlp_memory

    started = time.perf_counter()
    if args.model == "cnn":
        return _run_cnn(args, started)
    if args.batch_norm:
        raise ValueError("--batch-norm applies to --model cnn")
    recipe = DigitRecipe().replace(
        layers=args.layers, activation=args.activation, optimizer=args.optimizer, lr=args.lr,
        final_lr=args.final_lr, epochs=args.epochs, batch_size=args.batch_size,
        dropout=args.dropout, weight_decay=args.weight_decay, max_shift=args.shift,
        validation=args.validation, seed=args.seed,
    )
    _check_final_lr(recipe)
    out = _check_outputs(args, Path(args.out or DEFAULT_MODEL), recipe.max_shift)

    saved = None
    if args.resume:
        saved, network, recipe = _resume(args, recipe)
    (x, y), (x_test, y_test) = _training_data(args, recipe.validation)
    n_classes = int(max(y.max(), y_test.max())) + 1
    if saved is not None:
        check_input_width(network, args.resume, x.shape[1], "the training images have")
    elif recipe.layers[0] != x.shape[1]:
        raise ValueError(
            f"--layers starts with {recipe.layers[0]} inputs but the images have "
            f"{x.shape[1]} pixels; start the layers with {x.shape[1]}"
        )
    if recipe.layers[-1] != n_classes:
        raise ValueError(
            f"{'the checkpoint' if saved is not None else '--layers'} ends with "
            f"{recipe.layers[-1]} outputs but there are {n_classes} classes; end the layers "
            f"with {n_classes}"
        )
    if (args.out is None and out.exists()
            and (recipe != DigitRecipe() or args.data is not None or args.limit is not None)):
        # Following the README in order must not replace the default model with a trial's.
        raise ValueError(
            f"{out} already holds a model, and this run is not the default recipe; give its "
            f"model a name of its own with --out FILE (or --out {out} to replace it)"
        )
    if saved is None:
        # Refuse a network that cannot fit before allocating it (the kernel would kill us).
        # A batch holds at most the training rows (--batch-size 100000 on 9,000 digits is
        # full-batch training, not 100,000 rows of activations).
        check_mlp_memory(recipe.layers, batch_size=min(recipe.batch_size, len(x) - recipe.validation),
                         optimizer=build_optimizer(recipe), dropout=bool(recipe.dropout))
        network = build_network(recipe)

    say = (lambda *a, **k: None) if args.quiet else print
    say(f"chainrule {__version__}: training {recipe.describe()}")
    if saved is not None:
        say(f"resuming {args.resume}: {saved.epoch} epochs done"
            + (f" and {saved.step} steps into the next" if saved.step else "")
            + "; network, optimizer and dropout from the checkpoint")
        if saved.epoch == recipe.epochs and not saved.step:
            return _finish_done_run(args, saved, network, out, x_test, y_test, started)
        _say_schedule_change(saved, recipe)
    n_val = recipe.validation
    say(f"data: {describe_source(args.data)}: {len(x) - n_val:,} training digits, "
        f"{n_val:,} held out for validation, {len(x_test):,} test digits")
    return _train(args, recipe, network, x, y, x_test, y_test, out, started)


def _train(args: argparse.Namespace, recipe: Any, network: Any, x: Any, y: Any, x_test: Any,
           y_test: Any, out: Path, started: float) -> int:
    from ..recipes import TrainingSetMetrics, split_validation, train_digits

    fit_kwargs: dict[str, Any] = {"threads": args.threads}
    if args.checkpoint:
        fit_kwargs["checkpoint"] = args.checkpoint
        if args.checkpoint_every:
            fit_kwargs["checkpoint_every"] = args.checkpoint_every
    if args.resume:
        fit_kwargs["resume"] = args.resume
    verbose = 0 if args.quiet else _progress_level(args.progress)
    extra = []
    if args.plots:
        (x_train, y_train), _ = split_validation(x, y, recipe.validation)
        extra.append(TrainingSetMetrics(x_train, y_train))

    with _stop_on_ctrl_c(network) as interrupted:
        train_started = time.perf_counter()
        network, history = train_digits(recipe, x, y, network=network, callbacks=extra,
                                         verbose=verbose, **fit_kwargs)
        train_seconds = time.perf_counter() - train_started

    network.save(out)
    if interrupted():
        print(f"interrupted: saved the model trained so far ({_epochs_done(history, recipe)}) "
              f"to {out}", file=sys.stderr)
    # A CNN's activations are much larger per digit than an MLP's: smaller batches.
    result = network.evaluate(x_test, y_test, batch_size=500 if network.takes_images else 4096)
    _report(result, y_test, history)
    print(f"wall time: {time.perf_counter() - started:.1f} s (training {train_seconds:.1f} s)")
    if not interrupted():
        print(f"saved the model to {out}")
    if args.plots:
        write_plots(history, network, x_test, y_test, args.plots, quiet=args.quiet)
    return EXIT_INTERRUPTED if interrupted() else 0


def _run_cnn(args: argparse.Namespace, started: float) -> int:
    """``train --model cnn``: the recipe of ``chainrule.recipes_cnn`` on (n, 1, 28, 28) images."""
    from ..recipes_cnn import CNNRecipe, build_cnn

    for option, value in (("--layers", args.layers), ("--activation", args.activation)):
        if value is not None:
            raise ValueError(f"{option} sets up the MLP; it does not apply to --model cnn")
    recipe = CNNRecipe().replace(
        optimizer=args.optimizer, lr=args.lr, final_lr=args.final_lr, epochs=args.epochs,
        batch_size=args.batch_size, dropout=args.dropout, weight_decay=args.weight_decay,
        max_shift=args.shift, validation=args.validation, seed=args.seed,
        batch_norm=args.batch_norm or None,
    )
    _check_final_lr(recipe)
    out = _check_outputs(args, Path(args.out or DEFAULT_CNN_MODEL), recipe.max_shift)
    saved = None
    if args.resume:
        # The network, optimizer and random state come from the checkpoint; repeat the
        # first run's other options (fit warns if the batch size or data differ).
        from ..checkpoint import load_checkpoint

        if not Path(args.resume).is_file():
            raise FileNotFoundError(f"no checkpoint file at {args.resume}")
        saved = load_checkpoint(args.resume)
        if not saved.build_network().takes_images:
            raise ValueError(f"{args.resume} holds an MLP; resume it without --model cnn")
    (x, y), (x_test, y_test) = _training_data(args, recipe.validation)
    if (args.out is None and out.exists()
            and (recipe != CNNRecipe() or args.data is not None or args.limit is not None)):
        raise ValueError(
            f"{out} already holds a model, and this run is not the default CNN recipe; give "
            f"its model a name of its own with --out FILE (or --out {out} to replace it)"
        )
    n_classes = int(max(y.max(), y_test.max())) + 1
    network = build_cnn(recipe, n_classes=n_classes) if saved is None else saved.build_network()
    x, x_test = as_model_inputs(network, x), as_model_inputs(network, x_test)
    if saved is not None and saved.epoch >= recipe.epochs and not saved.step:
        return _finish_done_run(args, saved, network, out, x_test, y_test, started)
    say = (lambda *a, **k: None) if args.quiet else print
    say(f"chainrule {__version__}: training {recipe.describe()}")
    n_val = recipe.validation
    say(f"data: {describe_source(args.data)}: {len(x) - n_val:,} training digits, "
        f"{n_val:,} held out for validation, {len(x_test):,} test digits")
    return _train(args, recipe, network, x, y, x_test, y_test, out, started)


def _report(result: dict[str, float], y_test: Any, history: Any) -> None:
    """The test accuracy, and plainly so when it is no better than chance."""
    from ..diagnostics import at_chance, chance_accuracy

    accuracy = result["accuracy"]
    correct = int(round(accuracy * len(y_test)))
    print(f"test accuracy: {100 * accuracy:.2f}% ({correct:,} of {len(y_test):,})   "
          f"test loss {result['loss']:.4f}")
    if not at_chance(accuracy, y_test):
        return
    n_classes = int(np.max(y_test)) + 1
    guess = math.log(n_classes)  # the cross-entropy of a uniform guess
    losses = [float(v) for v in history["loss"]] if history is not None and len(history) else []
    last = losses[-1] if losses else float("nan")
    if not math.isfinite(last) or last > 2 * guess:
        cause = (f"the training loss ended at {last:.4g}, far above the {guess:.3f} of a "
                 "uniform guess: training diverged, so the learning rate (--lr) is far too "
                 "large; try one 10 to 1000 times smaller")
    else:
        cause = (f"the training loss ended at {last:.4g}, near the {guess:.3f} of a uniform "
                 "guess: it barely moved; train for more epochs, or with a larger --lr")
    warn_line(f"the test accuracy {100 * accuracy:.2f}% is no better than chance "
              f"({100 * chance_accuracy(y_test):.2f}% for always answering the most common "
              f"digit): the model learned nothing; {cause}")


def _finish_done_run(args: argparse.Namespace, saved: Any, network: Any, out: Path,
                     x_test: Any, y_test: Any, started: float) -> int:
    """A checkpoint holding the whole run: no training left, so save its model (and report)."""
    print(f"{args.resume} already holds all {saved.epoch} epochs of this run; nothing left "
          "to train")
    network.save(out)
    _report(network.evaluate(x_test, y_test, batch_size=4096), y_test, saved.history)
    print(f"wall time: {time.perf_counter() - started:.1f} s (training 0.0 s)")
    print(f"saved the model to {out}")
    if args.plots:
        write_plots(saved.history, network, x_test, y_test, args.plots, quiet=args.quiet)
    return 0


def _refuse_same_file(path: Path, option: str, other: str, other_option: str) -> None:
    if Path(other).resolve() == path.resolve():
        raise ValueError(f"{option} and {other_option} name the same file, {other}; the model "
                         "would replace the checkpoint: give --out another name")


# -- resuming ---------------------------------------------------------------------------


def _refuse_overwriting_checkpoint(path: str, resume: str | None) -> None:
    """A new run must not replace what is at ``--checkpoint`` (an earlier run's progress, a model).

    Rerunning the first command after a crash, without ``--resume``, would start again at
    epoch 1 and overwrite the checkpoint it meant to continue.
    """
    from ..checkpoint import checkpoint_lock

    with checkpoint_lock(path):  # another run writing there is named as such
        pass
    if Path(path).exists() and not (resume and Path(resume).resolve() == Path(path).resolve()):
        raise ValueError(
            f"--checkpoint {path} already exists; continue its run with --resume {path}, or "
            "give --checkpoint another name (or delete the file) to start afresh"
        )


def _check_shift(max_shift: int) -> None:
    """A shift must leave part of the 28x28 digit in the picture: say so in the option's name."""
    from ..augmentation import random_shift

    try:
        random_shift(max_shift)
    except ValueError:
        raise ValueError(f"--shift {max_shift} is too large: shifts of 0 to 13 pixels fit the "
                         "28x28 digits") from None



def _training_data(args: argparse.Namespace, validation: int) -> tuple[tuple, tuple]:
    """The training and test digits for ``args.data``, the training set cut to ``--limit``.

    Raises ``ValueError`` when ``validation`` digits cannot be held out of it.
    """
    (x, y), test = load_data(args.data)
    if args.limit:
        x, y = x[: args.limit], y[: args.limit]
    if validation >= len(x):
        raise ValueError(
            f"cannot hold out {validation:,} digits for validation from {len(x):,} "
            "training digits; use a smaller --validation (or a larger --limit)"
        )
    return (x, y), test


def _check_outputs(args: argparse.Namespace, out: Path, max_shift: int) -> Path:
    """Check every file the run will write, and the shift, before any training; returns ``out``.

    Shared by the MLP and CNN runs, so both refuse the same mistakes up front.
    """
    check_writable_file(out, "--out")
    if args.checkpoint_every and not args.checkpoint:
        raise ValueError("--checkpoint-every needs --checkpoint PATH to say where to save")
    if args.checkpoint:
        check_writable_file(args.checkpoint, "--checkpoint")
        _refuse_same_file(out, "--out", args.checkpoint, "--checkpoint")
        _refuse_overwriting_checkpoint(args.checkpoint, args.resume)
    if args.resume:
        _refuse_same_file(out, "--out", args.resume, "--resume")
    if args.plots:
        check_plot_dir(args.plots, "--plots")
    _check_shift(max_shift)
    return out

def _check_final_lr(recipe: Any) -> None:
    """The cosine only goes down: say so in the options' own names."""
    if recipe.final_lr > recipe.lr:
        raise ValueError(
            f"--final-lr {recipe.final_lr:g} is above the starting learning rate --lr "
            f"{recipe.lr:g}; the cosine schedule goes down from --lr to --final-lr"
        )


def _resume(args: argparse.Namespace, recipe: Any) -> tuple[Any, Any, Any]:
    """The checkpoint, its network, and the recipe that continues it.

    The network and optimizer come from the checkpoint, so options that
    contradict them are refused rather than printed and ignored; options the
    checkpoint cannot know (learning-rate schedule, epochs, shifts) apply,
    and a changed schedule is said (``_say_schedule_change``).
    """
    from ..checkpoint import load_checkpoint

    path = args.resume
    other = not_a_regular_file(path)
    if other:
        raise ValueError(f"--resume {path} is {other}, not a checkpoint file")
    if not Path(path).is_file():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    kind = picture_format(path)
    if kind is not None:
        raise ValueError(f"--resume {path} looks like a picture ({kind}), not a checkpoint")
    saved = load_checkpoint(path)
    network = saved.build_network()
    own = _recipe_of(network, path)
    given = {"layers": args.layers, "activation": args.activation, "dropout": args.dropout,
             "optimizer": args.optimizer, "weight_decay": args.weight_decay}
    seed = saved.fit_settings.get("seed")
    conflicts = [(name, value, own[name]) for name, value in given.items()
                 if value is not None and _differs(value, own[name])]
    if args.seed is not None and seed is not None and args.seed != seed:
        conflicts.append(("seed", args.seed, seed))
    if conflicts:
        raise ValueError(
            f"a resumed run continues the network, optimizer and random state of {path}; "
            + ", ".join(f"--{name.replace('_', '-')} {_show(value)} differs from its "
                        f"{_show(theirs)}" for name, value, theirs in conflicts)
            + ": leave these options out when resuming, or start a new run without --resume"
        )
    changes = dict(own)
    if args.batch_size is None and "batch_size" in saved.fit_settings:
        changes["batch_size"] = int(saved.fit_settings["batch_size"])
    if args.seed is None and isinstance(seed, int):
        changes["seed"] = seed
    recipe = recipe.replace(**changes)
    if saved.epoch > recipe.epochs or (saved.epoch == recipe.epochs and saved.step):
        raise ValueError(
            f"{path} already holds {saved.epoch} epochs"
            + (f" and {saved.step} steps" if saved.step else "")
            + f", more than --epochs {recipe.epochs} (which counts the whole run); give "
            f"--epochs {saved.epoch + (1 if saved.step else 0)} or more"
        )
    return saved, network, recipe


def _differs(value: Any, theirs: Any) -> bool:
    if isinstance(value, tuple):
        return tuple(value) != tuple(theirs)
    if isinstance(value, float):
        return not math.isclose(value, float(theirs), rel_tol=1e-9, abs_tol=0.0)
    return value != theirs


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return join(value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def _recipe_of(network: Any, path: str) -> dict[str, Any]:
    """The recipe settings that built ``network``: verified by building it again.

    Raises ``ValueError`` for a checkpoint that ``chainrule train`` did not
    write (its network or optimizer is not one a recipe builds).
    """
    from ..recipes import DigitRecipe, build_network

    config = network.get_config()
    layers = config["layers"]
    dense = [c for c in layers if c["type"] == "Dense"]
    own: dict[str, Any] = {
        "layers": tuple([c["in_features"] for c in dense[:1]] + [c["out_features"] for c in dense]),
        "input_dropout": layers[0]["p"] if layers and layers[0]["type"] == "Dropout" else 0.0,
        "dropout": next((c["p"] for i, c in enumerate(layers)
                         if c["type"] == "Dropout" and i > 0), 0.0),
        "activation": next((_ACTIVATION_NAMES[c["type"]] for c in layers
                            if c["type"] in _ACTIVATION_NAMES), DigitRecipe().activation),
        "optimizer": str(config["optimizer"]["type"]).lower(),
        "weight_decay": float(config["optimizer"].get("weight_decay", 0.0)),
    }
    try:
        rebuilt = build_network(DigitRecipe().replace(**own)).get_config()
    except (ValueError, KeyError, TypeError):
        rebuilt = None
    same = rebuilt is not None and rebuilt["layers"] == layers and rebuilt["loss"] == config["loss"] \
        and {k: v for k, v in rebuilt["optimizer"].items() if k != "lr"} \
        == {k: v for k, v in config["optimizer"].items() if k != "lr"}
    if not same:
        raise ValueError(
            f"{path} holds a network that chainrule train does not build ({_describe(network)}); "
            "continue it from Python with fit(..., resume=PATH)"
        )
    return own


def _describe(network: Any) -> str:
    return " ".join(repr(layer) for layer in network.layers) + f", {network.optimizer!r}"


def _say_schedule_change(saved: Any, recipe: Any) -> None:
    """Say so when the options' learning-rate schedule is not the one the checkpoint ran."""
    from ..recipes import build_callbacks

    epoch = saved.epoch if saved.step else saved.epoch - 1  # the epoch whose lr it holds
    if epoch < 0:
        return
    ran = float(saved.config["optimizer"]["lr"])
    planned = float(build_callbacks(recipe)[0].schedule(epoch))
    if not math.isclose(ran, planned, rel_tol=1e-6):
        warn_line(
            f"the learning rate changes from the checkpoint's run: its epoch {epoch + 1} ran at "
            f"lr {ran:.4g}, where these options (--lr {recipe.lr:g}, --final-lr "
            f"{recipe.final_lr:g}, --epochs {recipe.epochs}) put {planned:.4g}; the rest of the "
            "run follows these options"
        )


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
