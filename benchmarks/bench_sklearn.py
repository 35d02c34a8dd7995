"""chainrule.sklearn against scikit-learn's own MLPClassifier / MLPRegressor.

Same hyperparameters, same float32 data, each fit in a fresh process on one
BLAS thread (two BLAS thread pools alive in one process distort both); the
libraries alternate within each of ``--repeat`` repetitions and the table
gives medians with the range. Data: the bundled MNIST digits (10,000 to
train, 10,000 to test), scikit-learn's ``load_digits`` and ``load_diabetes``
(a 75/25 seeded split, features standardised; diabetes' target too).

    python benchmarks/bench_sklearn.py                 # prints a Markdown table
    python benchmarks/bench_sklearn.py --out benchmarks/RESULTS_sklearn.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

CASES = {
    # name: (dataset, estimator kind, parameters shared by both libraries)
    "mnist adam": ("mnist", "classifier", dict(hidden_layer_sizes=(128,), max_iter=20)),
    "mnist sgd": ("mnist", "classifier", dict(hidden_layer_sizes=(128,), solver="sgd",
                                              learning_rate_init=0.05, max_iter=20)),
    "digits adam": ("digits", "classifier", dict(hidden_layer_sizes=(100,), max_iter=200)),
    "digits lbfgs": ("digits", "classifier", dict(hidden_layer_sizes=(100,), solver="lbfgs",
                                                  max_iter=200)),
    "diabetes adam": ("diabetes", "regressor", dict(hidden_layer_sizes=(32,), alpha=3.0,
                                                    max_iter=300, learning_rate_init=0.003)),
    "diabetes lbfgs": ("diabetes", "regressor", dict(hidden_layer_sizes=(32,), solver="lbfgs",
                                                     alpha=30.0, max_iter=200)),
}


def load(dataset: str):
    import numpy as np
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    if dataset == "mnist":
        from chainrule.datasets import load_mnist

        (x, y), (x_test, y_test) = load_mnist()
        return x, y, x_test, y_test
    if dataset == "digits":
        from sklearn.datasets import load_digits

        x, y = load_digits(return_X_y=True)
    else:
        from sklearn.datasets import load_diabetes

        x, y = load_diabetes(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=0)
    scaler = StandardScaler().fit(x_train)
    x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)
    if dataset == "diabetes":
        mean, std = y_train.mean(), y_train.std()
        y_train, y_test = (y_train - mean) / std, (y_test - mean) / std
    f32 = np.float32
    return x_train.astype(f32), y_train, x_test.astype(f32), y_test


def one(library: str, case: str) -> dict:
    """Fit once in this process and report the time and test score."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    dataset, kind, params = CASES[case]
    x, y, x_test, y_test = load(dataset)
    if library == "chainrule":
        from chainrule import sklearn as lib
    else:
        from sklearn import neural_network as lib
    cls = lib.MLPClassifier if kind == "classifier" else lib.MLPRegressor
    model = cls(random_state=0, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        # A first short fit pays the one-off costs of a process (lazy imports, chainrule's
        # numba kernels compiling), reported apart from the timed fit.
        start = time.perf_counter()
        cls(random_state=0, **{**params, "max_iter": 2}).fit(x[:64], y[:64])
        warmup = time.perf_counter() - start
        start = time.perf_counter()
        model.fit(x, y)
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "warmup": warmup, "score": float(model.score(x_test, y_test)),
            "n_iter": int(model.n_iter_)}


def products_alone(case: str) -> dict:
    """The floor under both libraries: each step's batch gather and its two large products
    (``x @ W.T`` forward, ``g.T @ x`` for the first layer's weight gradient), nothing else."""
    import numpy as np

    dataset, _, params = CASES[case]
    x, y, _, _ = load(dataset)
    n, width = x.shape[0], params["hidden_layer_sizes"][0]
    batch = min(200, n)
    rng = np.random.default_rng(0)
    weight = rng.random((width, x.shape[1]), dtype=np.float32)
    grad = rng.random((batch, width), dtype=np.float32)
    start = time.perf_counter()
    for _ in range(params["max_iter"]):
        order = rng.permutation(n)
        for i in range(0, n - batch + 1, batch):
            xb = x[order[i : i + batch]]
            xb @ weight.T
            grad.T @ xb
    return {"seconds": time.perf_counter() - start}


def run_in_process(library: str, case: str) -> dict:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, __file__, "--one", library, case], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _spread(values: list[float], unit: str = "") -> str:
    return (f"{statistics.median(values):.2f}{unit} "
            f"({min(values):.2f}-{max(values):.2f})")


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, cwd=os.path.dirname(os.path.abspath(__file__)))
        return out.stdout.strip() or "?"
    except OSError:
        return "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one", nargs=2, metavar=("LIBRARY", "CASE"), help=argparse.SUPPRESS)
    parser.add_argument("--repeat", type=int, default=3, help="fits per library and case")
    parser.add_argument("--cases", nargs="*", default=list(CASES))
    parser.add_argument("--out", help="also write the table to this Markdown file")
    args = parser.parse_args()
    if args.one:
        library, case = args.one
        print(json.dumps(products_alone(case) if library == "products" else one(library, case)))
        return
    load_before = os.getloadavg()
    lines = [
        "| case | scikit-learn s | chainrule s | speed-up | scikit-learn score | chainrule score | "
        "iterations (sk / cr) | first short fit s (sk / cr) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    libraries = ("scikit-learn", "chainrule")
    for case in args.cases:
        runs: dict[str, list[dict]] = {lib: [] for lib in libraries}
        for rep in range(args.repeat):  # interleaved, the first library alternating
            for lib in (libraries if rep % 2 == 0 else libraries[::-1]):
                runs[lib].append(run_in_process(lib, case))
        seconds = {lib: [r["seconds"] for r in rs] for lib, rs in runs.items()}
        ratios = [a / b for a, b in zip(seconds["scikit-learn"], seconds["chainrule"])]
        score = {lib: rs[0]["score"] for lib, rs in runs.items()}
        iters = {lib: rs[0]["n_iter"] for lib, rs in runs.items()}
        warm = {lib: statistics.median(r["warmup"] for r in rs) for lib, rs in runs.items()}
        lines.append(
            f"| {case} | {_spread(seconds['scikit-learn'])} | {_spread(seconds['chainrule'])} | "
            f"{_spread(ratios, 'x')} | {score['scikit-learn']:.4f} | "
            f"{score['chainrule']:.4f} | {iters['scikit-learn']} / {iters['chainrule']} | "
            f"{warm['scikit-learn']:.2f} / {warm['chainrule']:.2f} |"
        )
        print(lines[-1], flush=True)
    load_after = os.getloadavg()
    import sklearn

    import chainrule

    notes = [
        "",
        f"Median (min-max) of {args.repeat} fits per library, interleaved, each in a fresh "
        "process on one BLAS thread; the speed-up is taken within each repetition, "
        "float32 data, `random_state=0`, timed after a first short fit in the same process "
        "(its time is the last column: imports and, for chainrule, compiling its numba "
        "kernels); scores on the held-out test rows (accuracy; R^2 for diabetes).",
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} at commit {_commit()}; "
        f"scikit-learn {sklearn.__version__}, chainrule {chainrule.__version__}, Python "
        f"{platform.python_version()}, {os.cpu_count()} CPUs; load average "
        f"{load_before[0]:.1f} before and {load_after[0]:.1f} after (the machine was shared).",
    ]
    table = "\n".join(lines + notes)
    print("\n".join(notes))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write("# chainrule.sklearn against scikit-learn\n\n"
                    "`python benchmarks/bench_sklearn.py --out benchmarks/RESULTS_sklearn.md`\n\n"
                    + table + "\n")


if __name__ == "__main__":
    main()
