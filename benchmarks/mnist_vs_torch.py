"""chainrule's default MNIST recipe beside the same recipe in PyTorch, in one run.

Both train on the bundled digits (the last 1,000 of the 10,000 training
digits held out for validation) and are scored on the 10,000 test digits.
Everything but the framework is shared:

- architecture and initial weights: PyTorch's ``nn.Sequential`` gets a copy
  of the freshly built chainrule network's weights (He-normal, zero biases);
- optimizer: Adam with the recipe's learning rate and L2 weight decay (added
  to the gradient, as ``torch.optim.Adam`` does), the same cosine schedule
  applied at the start of every epoch;
- dropout after every hidden ReLU, the same epochs and batch size;
- data: each epoch, the same kind of shuffled order and random shifts
  (``chainrule.random_shift``; both draw from a generator seeded alike);
- a validation pass after every epoch, as ``chainrule train`` does;
- float32, and PyTorch limited to ``--threads`` threads (default 2; NumPy's
  BLAS uses as many, set through OPENBLAS_NUM_THREADS before NumPy loads).

Usage::

    python benchmarks/mnist_vs_torch.py                 # seed 0, both frameworks
    python benchmarks/mnist_vs_torch.py --seeds 0,1,2   # several seeds
    python benchmarks/mnist_vs_torch.py --epochs 5      # a quicker look

Times are wall-clock seconds of the training loop (data preparation and the
per-epoch validation included, loading the files not). On a shared machine
they are noisy: the two frameworks alternate, seed by seed, so a busy
neighbour slows both.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from _threads import pin_threads  # benchmarks/_threads.py, beside this script

pin_threads(sys.argv[1:])  # before NumPy starts its thread pool

import numpy as np  # noqa: E402

import chainrule as cr  # noqa: E402
from chainrule.datasets import load_mnist  # noqa: E402
from chainrule.recipes import (  # noqa: E402
    DigitRecipe,
    build_network,
    split_validation,
    train_digits,
)


def run_chainrule(recipe: DigitRecipe, x, y, x_test, y_test) -> dict:
    network = build_network(recipe)
    start = time.perf_counter()
    network, history = train_digits(recipe, x, y, network=network, verbose=0)
    seconds = time.perf_counter() - start
    result = network.evaluate(x_test, y_test, batch_size=4096)
    return {"accuracy": result["accuracy"], "seconds": seconds,
            "val_accuracy": history["val_accuracy"][-1] if "val_accuracy" in history else None}


def run_torch(recipe: DigitRecipe, x, y, x_test, y_test, threads: int) -> dict:
    import torch
    from torch import nn

    torch.set_num_threads(threads)
    torch.manual_seed(recipe.seed)
    reference = build_network(recipe)  # for its initial weights
    dense = [layer for layer in reference.layers if isinstance(layer, cr.Dense)]
    modules: list[nn.Module] = []
    if recipe.input_dropout:
        modules.append(nn.Dropout(recipe.input_dropout))
    for i, layer in enumerate(dense):
        linear = nn.Linear(layer.in_features, layer.out_features)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(layer.weight))
            linear.bias.copy_(torch.from_numpy(layer.bias))
        modules.append(linear)
        if i < len(dense) - 1:
            modules.append(nn.ReLU())
            if recipe.dropout:
                modules.append(nn.Dropout(recipe.dropout))
    model = nn.Sequential(*modules)
    if recipe.optimizer != "adam":
        raise SystemExit("this benchmark mirrors the Adam recipe only")
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr,
                                 weight_decay=recipe.weight_decay)
    schedule = cr.cosine_schedule(recipe.lr, recipe.epochs, recipe.final_lr)
    loss_fn = nn.CrossEntropyLoss()
    augment = cr.random_shift(recipe.max_shift) if recipe.max_shift else None

    start = time.perf_counter()
    (x_train, y_train), validation = split_validation(x, y, recipe.validation)
    rng = np.random.default_rng(recipe.seed)
    labels = torch.from_numpy(y_train)
    for epoch in range(recipe.epochs):
        for group in optimizer.param_groups:
            group["lr"] = schedule(epoch)
        order = rng.permutation(len(x_train))
        x_epoch = x_train[order]
        if augment is not None:
            x_epoch = augment(x_epoch, rng)
        inputs, targets = torch.from_numpy(np.ascontiguousarray(x_epoch)), labels[order]
        model.train()
        for step in range(0, len(inputs), recipe.batch_size):
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(inputs[step : step + recipe.batch_size]),
                           targets[step : step + recipe.batch_size])
            loss.backward()
            optimizer.step()
        if validation is not None:
            val_accuracy = _torch_accuracy(model, *validation)
    seconds = time.perf_counter() - start
    return {"accuracy": _torch_accuracy(model, x_test, y_test), "seconds": seconds,
            "val_accuracy": val_accuracy if validation is not None else None}


def _torch_accuracy(model, x, y) -> float:
    import torch

    model.eval()
    with torch.no_grad():
        predicted = model(torch.from_numpy(x)).argmax(dim=1).numpy()
    return float(np.mean(predicted == y))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    parser.add_argument("--epochs", type=int, help="override the recipe's epochs")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for both (default 2)")
    parser.add_argument("--only", choices=["chainrule", "torch"], help="run one framework")
    parser.add_argument("--output", default=None,
                        help="where to keep the transcript (default benchmarks/ACCURACY.md for "
                        "full-length runs of both frameworks; none otherwise)")
    args = parser.parse_args()
    lines: list[str] = []

    def say(*parts: object, **kwargs: object) -> None:
        print(*parts, **kwargs)
        lines.append(" ".join(str(p) for p in parts))

    import datetime
    import platform
    import subprocess

    here = os.path.dirname(os.path.abspath(__file__))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=here).stdout.strip() or "?"
    say(f"date {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, commit {commit}, "
        f"command: python benchmarks/mnist_vs_torch.py {' '.join(sys.argv[1:])}".rstrip())
    say(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load average (1 min) at the start {os.getloadavg()[0]:.2f}")

    (x, y), (x_test, y_test) = load_mnist()
    base = DigitRecipe().replace(epochs=args.epochs)
    say(f"recipe: {base.describe()}")
    say(f"data: {len(x) - base.validation:,} training, {base.validation:,} validation, "
          f"{len(x_test):,} test digits (bundled MNIST); {args.threads} threads")
    try:
        import torch

        torch_version = torch.__version__
    except ImportError:
        torch_version = None
        if args.only != "chainrule":
            say("PyTorch is not installed: running chainrule only")
    say(f"chainrule {cr.__version__}, numpy {np.__version__}, torch {torch_version}")
    say()
    say(f"{'seed':>4}  {'framework':<10} {'test acc':>9} {'val acc':>8} {'train time':>11}")
    rows: dict[str, list[dict]] = {"chainrule": [], "torch": []}
    for seed in [int(s) for s in args.seeds.split(",")]:
        recipe = base.replace(seed=seed)
        for name in ("chainrule", "torch"):
            if args.only not in (None, name) or (name == "torch" and torch_version is None):
                continue
            if name == "chainrule":
                result = run_chainrule(recipe, x, y, x_test, y_test)
            else:
                result = run_torch(recipe, x, y, x_test, y_test, args.threads)
            rows[name].append(result)
            val = f"{100 * result['val_accuracy']:.2f}%" if result["val_accuracy"] else "-"
            say(f"{seed:>4}  {name:<10} {100 * result['accuracy']:>8.2f}% {val:>8} "
                  f"{result['seconds']:>9.1f} s", flush=True)
    say()
    for name, results in rows.items():
        if results:
            accuracy = [r["accuracy"] for r in results]
            seconds = [r["seconds"] for r in results]
            say(f"{name:<10} test accuracy mean {100 * np.mean(accuracy):.2f}% "
                  f"(min {100 * min(accuracy):.2f}%), train time median {np.median(seconds):.1f} s")
    if rows["chainrule"] and rows["torch"]:
        ratio = np.median([r["seconds"] for r in rows["chainrule"]]) / np.median(
            [r["seconds"] for r in rows["torch"]])
        say(f"chainrule / torch train time: {ratio:.2f}x")
    say(f"load average (1 min) at the end {os.getloadavg()[0]:.2f}")
    output = args.output
    if output is None and args.epochs is None and args.only is None:
        output = os.path.join(here, "ACCURACY.md")
    if output:
        with open(output, "w") as f:
            f.write("# chainrule's default recipe beside PyTorch's (benchmarks/mnist_vs_torch.py)\n\n")
            f.write("```\n" + "\n".join(lines) + "\n```\n")
        print(f"written to {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
