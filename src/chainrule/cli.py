"""The ``chainrule`` command: train, evaluate and use an MNIST digit classifier.

::

    chainrule train                      # the default recipe on the bundled digits
    chainrule evaluate mnist-mlp.safetensors
    chainrule predict mnist-mlp.safetensors my-seven.png
    chainrule demo                       # a 3-4-1 network learning XOR, in a second

Mistakes a user can make (a missing file, a model that does not fit the data,
an unreadable image, a missing optional package) end with one line
``chainrule: error: ...`` on stderr and a non-zero exit status, never a
traceback; set ``CHAINRULE_DEBUG=1`` to see the traceback anyway.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ._version import __version__

__all__ = ["main", "build_parser"]

DEFAULT_MODEL = "mnist-mlp.safetensors"
#: Exit status after Ctrl-C, as shells report a process ended by SIGINT (128 + 2).
EXIT_INTERRUPTED = 130


# -- entry point ------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version, or a usage error argparse reported
        return int(exit_.code or 0) if not isinstance(exit_.code, str) else 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("\nchainrule: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `chainrule lesson 3 | head`: the reader left, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except _user_errors() as error:
        if os.environ.get("CHAINRULE_DEBUG"):
            raise
        print(f"chainrule: error: {_one_line(error)}", file=sys.stderr)
        return 1


def _user_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean "the input was wrong", not "chainrule has a bug"."""
    from .errors import ModelFileError, NonFiniteLossError

    errors: list[type[BaseException]] = [
        OSError,  # FileNotFoundError, permissions, PIL.UnidentifiedImageError
        ValueError,  # ModelFileError, IDXFormatError, ImageReadError, shape mismatches
        ImportError,  # a missing optional extra (Pillow, matplotlib, onnx)
        ModelFileError,
        NonFiniteLossError,
    ]
    return tuple(errors)


def _one_line(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        if error.filename:
            return f"{error.strerror.lower()}: {error.filename}"
        return error.strerror  # without the "[Errno N]" prefix
    text = str(error) or type(error).__name__
    if isinstance(error, KeyError):
        text = str(error.args[0]) if error.args else text
    return " ".join(text.split())


# -- argument parsing ---------------------------------------------------------------------


def _int_list(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(part) for part in text.replace(" ", "").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected widths separated by commas, like 784,256,128,10; got {text!r}"
        ) from None
    if len(widths) < 2 or min(widths) < 1:
        raise argparse.ArgumentTypeError(
            f"need at least an input and an output width, all positive; got {text!r}"
        )
    return widths


def _number(convert: type, accept: Any, expected: str) -> Any:
    """An argparse type: ``convert`` the text, then insist that ``accept(value)``."""
    kind = "a whole number" if convert is int else "a number"

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from None
        if not accept(value):  # NaN fails every comparison, so it lands here too
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text}")
        return value

    return parse


_positive_int = _number(int, lambda v: v >= 1, "a positive number")
_non_negative_int = _number(int, lambda v: v >= 0, "0 or more")
_probability = _number(float, lambda v: 0.0 <= v < 1.0, "a probability in [0, 1)")
_positive_float = _number(float, lambda v: 0.0 < v < float("inf"), "a positive number")
_non_negative_float = _number(float, lambda v: 0.0 <= v < float("inf"), "0 or a positive number")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``chainrule`` command, subcommands included."""
    from .recipes import DigitRecipe

    default = DigitRecipe()
    parser = argparse.ArgumentParser(
        prog="chainrule",
        description="Neural networks from scratch in NumPy: train, evaluate and use "
        "an MNIST digit classifier.",
    )
    parser.add_argument("--version", action="version", version=f"chainrule {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    # train
    p = sub.add_parser(
        "train", help="train a digit classifier (by default on the bundled MNIST digits)",
        description="Train an MLP digit classifier. With no options: the default recipe ("
        + default.describe() + ") on the 10,000 bundled MNIST training digits, of which "
        f"the last {default.validation:,} are held out for validation; then the test "
        "accuracy on the 10,000 test digits. Ctrl-C stops after the current step and "
        "saves the model trained so far.",
    )
    p.add_argument("--data", metavar="DIR",
                   help="directory with MNIST's four IDX files (default: the bundled digits)")
    p.add_argument("--layers", type=_int_list, metavar="W,W,...",
                   help=f"layer widths, input to output (default {_join(default.layers)})")
    p.add_argument("--activation", choices=["relu", "leaky_relu", "tanh", "sigmoid"],
                   help=f"hidden activation (default {default.activation})")
    p.add_argument("--optimizer", choices=["adam", "sgd"],
                   help=f"adam, or sgd with Nesterov momentum 0.9 (default {default.optimizer})")
    p.add_argument("--lr", type=_positive_float,
                   help=f"initial learning rate, annealed along a cosine (default {default.lr:g})")
    p.add_argument("--final-lr", type=_non_negative_float, metavar="LR",
                   help=f"learning rate at the last epoch (default {default.final_lr:g})")
    p.add_argument("--epochs", type=_positive_int,
                   help=f"default {default.epochs} (with --resume: for the whole run)")
    p.add_argument("--batch-size", type=_positive_int, help=f"default {default.batch_size}")
    p.add_argument("--dropout", type=_probability,
                   help=f"dropout after each hidden layer (default {default.dropout:g})")
    p.add_argument("--weight-decay", type=_non_negative_float, metavar="L2",
                   help=f"L2 penalty (default {default.weight_decay:g})")
    p.add_argument("--shift", type=_non_negative_int, metavar="PX",
                   help="augment with random shifts of up to PX pixels, 0 for none "
                   f"(default {default.max_shift})")
    p.add_argument("--validation", type=_non_negative_int, metavar="N",
                   help=f"training digits held out for validation (default {default.validation})")
    p.add_argument("--limit", type=_positive_int, metavar="N",
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
    p.add_argument("--checkpoint-every", type=_positive_int, metavar="N",
                   help="checkpoint every N epochs (default 1)")
    p.add_argument("--resume", metavar="PATH",
                   help="continue the training saved in the checkpoint at PATH (the network "
                   "comes from the checkpoint; repeat the first run's other options)")
    p.set_defaults(func=cmd_train)

    # evaluate
    p = sub.add_parser(
        "evaluate", help="accuracy, per-class precision and recall, and the confusion matrix",
        description="Evaluate a saved model on the MNIST test set.",
    )
    p.add_argument("model", metavar="MODEL", help="a .safetensors model saved by chainrule")
    p.add_argument("--data", metavar="DIR",
                   help="directory with MNIST's IDX files (default: the bundled digits)")
    p.add_argument("--plots", metavar="DIR",
                   help="also write the confusion matrix, first-layer weights and "
                   "misclassified digits as PNGs into DIR")
    p.set_defaults(func=cmd_evaluate)

    # predict
    p = sub.add_parser(
        "predict", help="read digits from PNG/JPEG files and print what the model sees",
        description="Classify pictures of single handwritten digits. Each picture is "
        "prepared the way MNIST was made: grey, ink bright, cropped, scaled into a "
        "20x20 box and centred by mass in 28x28 (needs Pillow).",
    )
    p.add_argument("model", metavar="MODEL", help="a .safetensors model saved by chainrule")
    p.add_argument("images", metavar="IMAGE", nargs="+", help="picture files (PNG, JPEG, ...)")
    p.add_argument("--top", type=_positive_int, default=3, metavar="K",
                   help="show the K most likely digits (default 3)")
    p.add_argument("--save-inputs", metavar="DIR",
                   help="also save each prepared 28x28 input as a PNG in DIR, to see "
                   "what the model sees")
    p.add_argument("--no-thicken", dest="thicken", action="store_false",
                   help="keep strokes as drawn, even when much thinner than MNIST's")
    p.set_defaults(func=cmd_predict)

    # export
    p = sub.add_parser("export", help="export a model to ONNX",
                       description="Write a saved model's inference graph as ONNX.")
    p.add_argument("model", metavar="MODEL", help="a .safetensors model saved by chainrule")
    p.add_argument("--onnx", required=True, metavar="OUT", help="the .onnx file to write")
    p.set_defaults(func=cmd_export)

    # lesson
    p = sub.add_parser("lesson", help="run one of the tutorial lessons",
                       description="Run a lesson from the tutorials chainrule grew out of.")
    p.add_argument("number", metavar="N", help="which lesson (1, 2, 3, ...)")
    p.add_argument("--plot", metavar="DIR", help="write the lesson's figures into DIR")
    p.set_defaults(func=cmd_lesson)

    # demo
    p = sub.add_parser("demo", help="watch a tiny 3-4-1 network learn XOR (no data needed)",
                       description="Train the tutorials' 3-4-1 relu network on four XOR "
                       "rows and print the error falling. Takes a second.")
    p.add_argument("--epochs", type=_positive_int, default=60, help="default 60")
    p.add_argument("--seed", type=int, default=None, help="initial weights (default: one "
                   "that converges)")
    p.set_defaults(func=cmd_demo)
    return parser


def _join(widths: Sequence[int]) -> str:
    return ",".join(str(w) for w in widths)


# -- train ------------------------------------------------------------------------------


def _load_data(directory: str | None) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    from .datasets import load_mnist

    if directory is not None and not Path(directory).exists():
        raise FileNotFoundError(2, "No such file or directory", directory)
    return load_mnist(directory)


_ACTIVATION_NAMES = {"ReLU": "relu", "LeakyReLU": "leaky_relu", "Tanh": "tanh", "Sigmoid": "sigmoid"}


def _check_plot_dir(path: str, option: str) -> None:
    """Fail before any work if figures cannot go to ``path``."""
    _require("matplotlib", "plot")
    if Path(path).exists() and not Path(path).is_dir():
        raise ValueError(f"{option} {path} is a file; give a directory for the figures")


def _describe_source(directory: str | None) -> str:
    return f"MNIST from {directory}" if directory else "the bundled MNIST digits"


def cmd_train(args: argparse.Namespace) -> int:
    from .augmentation import random_shift
    from .recipes import DigitRecipe, TrainingSetMetrics, build_network, train_digits

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
        _check_plot_dir(args.plots, "--plots")  # fail now, not after training
    if recipe.max_shift:
        random_shift(recipe.max_shift)  # checks the shift fits the 28x28 images
    resume = args.resume

    (x, y), (x_test, y_test) = _load_data(args.data)
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
        from .checkpoint import load_checkpoint

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
        _check_input_width(network, resume, x.shape[1], "the training images have")
        fit_kwargs["resume"] = resume
        # The network comes from the checkpoint; options may repeat it, not change it.
        sizes = (*(layer.in_features for layer in network.layers if hasattr(layer, "in_features")),
                 network.out_features)
        activation = type(network.layers[1]).__name__ if len(network.layers) > 1 else "linear"
        activation = _ACTIVATION_NAMES.get(activation, activation)
        if args.layers and tuple(args.layers) != sizes:
            raise ValueError(f"--layers {_join(args.layers)} differs from the checkpoint's "
                             f"network, {_join(sizes)}; leave --layers out when resuming")
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
    say(f"data: {_describe_source(args.data)}: {len(x) - n_val:,} training digits, "
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
        _write_plots(history, network, x_test, y_test, args.plots, quiet=args.quiet)
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


def _require(module: str, extra: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise ImportError(
            f"this needs {module}, which is not installed; install it with: "
            f'pip install "chainrule[{extra}]"'
        )


def _write_plots(history: Any, network: Any, x: np.ndarray, y: np.ndarray, out_dir: str,
                 quiet: bool = False) -> None:
    from .plotting import save_all

    paths = save_all(history, network, x, y, out_dir)
    if not quiet:
        print(f"plots: {', '.join(str(p) for p in paths)}")


# -- evaluate ---------------------------------------------------------------------------


def _load_model(path: str) -> Any:
    from .io import load

    if not Path(path).exists():
        raise FileNotFoundError(2, "No such file or directory", path)
    return load(path)


def _check_input_width(network: Any, model_path: str, width: int, what: str) -> None:
    n_in = network.in_features
    if n_in != width:
        raise ValueError(
            f"{model_path} expects {n_in} input features but {what} {width} "
            f"(28x28 pixels); this model was not trained on MNIST-shaped images"
        )


def _architecture(network: Any) -> str:
    widths = [layer.in_features for layer in network.layers if hasattr(layer, "in_features")]
    widths.append(network.out_features)
    count = sum(a.size for a in network.parameters().values())
    return f"{'-'.join(str(w) for w in widths)}, {count:,} parameters"


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .recipes import confusion_matrix, per_class_scores, softmax_probabilities

    if args.plots:
        _check_plot_dir(args.plots, "--plots")
    network = _load_model(args.model)
    _, (x, y) = _load_data(args.data)
    _check_input_width(network, args.model, x.shape[1], "the test images have")
    n_classes = int(y.max()) + 1
    if network.out_features is not None and network.out_features < n_classes:
        raise ValueError(
            f"{args.model} has {network.out_features} outputs but the data has "
            f"{n_classes} classes"
        )
    probabilities = softmax_probabilities(network, x)
    predicted = probabilities.argmax(axis=1)
    matrix = confusion_matrix(y, predicted, max(n_classes, probabilities.shape[1]))
    scores = per_class_scores(matrix)
    correct = int(np.trace(matrix))
    print(f"model: {args.model} ({_architecture(network)})")
    print(f"data: {_describe_source(args.data)}, test set of {len(y):,} digits")
    print(f"accuracy: {100 * correct / len(y):.2f}% ({correct:,} of {len(y):,} right)")
    print()
    print(format_scores(scores))
    print()
    print("confusion matrix (rows: true digit, columns: predicted digit)")
    print(format_confusion_matrix(matrix))
    if args.plots:
        _write_plots(None, network, x, y, args.plots)
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


# -- predict ----------------------------------------------------------------------------


def cmd_predict(args: argparse.Namespace) -> int:
    from .images import ImageReadError, load_image
    from .recipes import softmax_probabilities

    _require("PIL", "image")
    network = _load_model(args.model)
    _check_input_width(network, args.model, 784, "a prepared image has")
    if network.out_features != 10:
        raise ValueError(
            f"{args.model} has {network.out_features} outputs; a digit classifier has 10"
        )
    save_dir = Path(args.save_inputs) if args.save_inputs else None
    if save_dir is not None:
        save_dir.mkdir(parents=True, exist_ok=True)
    failures = 0
    for path in args.images:
        try:
            image = load_image(path, thicken=args.thicken)
        except (FileNotFoundError, ImageReadError) as error:
            # One bad file should not hide the answers for the others.
            print(f"chainrule: error: {_one_line(error)}", file=sys.stderr)
            failures += 1
            continue
        probabilities = softmax_probabilities(network, image.reshape(1, -1))[0]
        order = np.argsort(-probabilities, kind="stable")[: args.top]
        top = "  ".join(f"{k}: {100 * probabilities[k]:.1f}%" for k in order)
        print(f"{path}: {order[0]}   ({top})")
        if save_dir is not None:
            _save_input(image, save_dir / (Path(path).stem + "-28x28.png"))
    return 1 if failures else 0


def _save_input(image: np.ndarray, path: Path) -> None:
    from PIL import Image

    Image.fromarray(np.round(image * 255).astype(np.uint8)).save(path)


# -- export, lesson, demo ---------------------------------------------------------------------


def cmd_export(args: argparse.Namespace) -> int:
    network = _load_model(args.model)
    _require("onnx", "onnx")
    network.to_onnx(args.onnx)
    print(f"wrote {args.onnx} ({_architecture(network)})")
    return 0


def cmd_lesson(args: argparse.Namespace) -> int:
    from . import lessons

    if args.plot:
        _check_plot_dir(args.plot, "--plot")
    lessons.run(int(args.number) if args.number.isdigit() else args.number, plot_dir=args.plot)
    return 0


#: The tutorials' lesson-2 data: the target is XOR of the first two columns.
XOR_X = np.array([[1, 0, 1], [0, 1, 1], [0, 0, 1], [1, 1, 1]], dtype=np.float64)
XOR_Y = np.array([[1], [1], [0], [0]], dtype=np.float64)
#: An initialisation (numpy default_rng seed) from which the demo converges in 60 epochs.
DEMO_SEED = 1


def cmd_demo(args: argparse.Namespace) -> int:
    from .activations import ReLU
    from .layers import Dense
    from .network import Network
    from .optimizers import SGD
    from .training import Callback

    seed = DEMO_SEED if args.seed is None else args.seed
    rng = np.random.default_rng(seed)
    network = Network(
        [Dense(3, 4, bias=False, init="uniform", rng=rng), ReLU(),
         Dense(4, 1, bias=False, init="uniform", rng=rng)],
        loss="squared_error", optimizer=SGD(lr=0.1), dtype="float64",
    )
    print("A 3-4-1 network (relu hidden layer, no biases, 16 weights) learns XOR of the "
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
    return 0
