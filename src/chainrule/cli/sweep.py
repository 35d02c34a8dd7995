"""``chainrule sweep``: a grid or random search of the digit recipe or of an estimator, on Dask."""

from __future__ import annotations

import argparse
import ast
import os
import time
from typing import Any

from ._common import check_writable_dir, load_data, positive_int, require

_MODELS = ("auto", "classifier", "regressor")


def parameter(text: str) -> tuple[str, list[Any]]:
    """An argparse type: ``NAME=V1,V2,...`` -> ``(NAME, [V1, V2, ...])``.

    Values are Python literals (``1e-3``, ``(64,)``, ``'relu'``); bare words
    are strings, so ``activation=relu,tanh`` works. One value fixes the
    parameter without sweeping it.
    """
    name, sep, values = text.partition("=")
    name = name.strip()
    if not sep or not name.isidentifier() or not values.strip():
        raise argparse.ArgumentTypeError(
            f"expected NAME=VALUE[,VALUE...], like lr=1e-3,3e-3; got {text!r}"
        )
    try:
        parsed = ast.literal_eval(f"[{values}]")
    except (ValueError, SyntaxError):
        parsed = []
        for item in values.split(","):
            try:
                parsed.append(ast.literal_eval(item.strip()))
            except (ValueError, SyntaxError):
                parsed.append(item.strip())
    return name, [list(v) if isinstance(v, list) else v for v in parsed]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "sweep", help="hyperparameter search (grid or random), on a Dask cluster",
        description="Train every candidate of a grid (or a random draw from it) and rank them "
        "by cross-validated or held-out score. Without DATA it sweeps the digit recipe on the "
        "bundled MNIST digits (parameters: DigitRecipe fields such as lr, dropout, layers, "
        "epochs, batch_size); with a .csv or .npz file it sweeps chainrule's MLPClassifier or "
        "MLPRegressor (parameters: scikit-learn's, such as alpha, hidden_layer_sizes, "
        "learning_rate_init). By default the fits run on a Dask LocalCluster with one worker "
        "per core.",
    )
    p.add_argument("data", nargs="?", metavar="DATA",
                   help="a .csv file (header row) or .npz file with features and a target")
    p.add_argument("--target", metavar="NAME", default="y",
                   help="the target column (.csv) or array (.npz) (default: y)")
    p.add_argument("--model", choices=_MODELS, default="auto",
                   help="estimator for DATA (default: a classifier unless the target is "
                   "continuous)")
    p.add_argument("--param", "-p", metavar="NAME=V1,V2", type=parameter, action="append",
                   default=[], help="a parameter and its values; repeat for each parameter")
    p.add_argument("--search", choices=("grid", "random"), default="grid")
    p.add_argument("--n-iter", type=positive_int, default=10, metavar="N",
                   help="candidates drawn by --search random (default 10)")
    split = p.add_mutually_exclusive_group()
    split.add_argument("--cv", type=positive_int, metavar="K",
                       help="K-fold cross-validation (default: one validation split)")
    split.add_argument("--validation", type=float, default=0.2, metavar="FRACTION",
                       help="fraction held out for scoring when --cv is not given (default 0.2)")
    p.add_argument("--seed", type=int, default=0, help="seeds splits, draws and fits (default 0)")
    p.add_argument("--limit", type=positive_int, metavar="N",
                   help="use only the first N rows (e.g. to try a sweep quickly)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                       help="run on this Dask scheduler's workers instead of a LocalCluster")
    where.add_argument("--workers", type=positive_int, metavar="N",
                       help="LocalCluster worker processes (default: one per core)")
    where.add_argument("--sequential", action="store_true",
                       help="run the fits one after another in this process (no Dask)")
    p.add_argument("--timeout", type=float, metavar="SECONDS",
                   help="on Dask, stop waiting after this long (default: no limit)")
    p.add_argument("--out", metavar="DIR", default="sweep",
                   help="where results.csv, scores.png and best.safetensors go (default: sweep)")
    p.add_argument("--no-refit", action="store_true",
                   help="do not train and save the best candidate on all the data")
    return p


def run(args: argparse.Namespace) -> int:
    require("sklearn", "sklearn")
    if not args.sequential:
        require("distributed", "dask")
    check_writable_dir(args.out, "--out")
    if not 0 < args.validation < 1:
        raise ValueError(f"--validation must be a fraction between 0 and 1, got {args.validation}")
    from ..sweep import DigitsTask, EstimatorTask, load_table, run_sweep

    space = dict(args.param)
    if len(space) != len(args.param):
        raise ValueError("each --param name may be given once")
    if not space:
        raise ValueError("nothing to sweep: give at least one --param NAME=V1,V2")
    if args.data is None:
        (x, y), _ = load_data(None)
        task: Any = DigitsTask()
        what = "the digit recipe on the bundled MNIST digits"
    else:
        x, y, _names = load_table(args.data, args.target)
        task = EstimatorTask(_estimator(args.model, y))
        what = f"{type(task.estimator).__name__} on {args.data}"
    if args.limit:
        x, y = x[: args.limit], y[: args.limit]
    _check_names(task, space)
    split = f"{args.cv}-fold cross-validation" if args.cv else f"{args.validation:g} held out"
    print(f"sweeping {what} ({len(x)} rows, {split})")
    start = time.perf_counter()
    kwargs = dict(search=args.search, n_iter=args.n_iter, cv=args.cv,
                  validation=args.validation, seed=args.seed, refit=not args.no_refit)
    if args.sequential:
        print("running sequentially in this process")
        result = run_sweep(task, x, y, space, **kwargs)
    else:
        from dask.distributed import Client

        from ..sweep import local_cluster

        if args.scheduler:
            with Client(args.scheduler, timeout=30) as client:
                print(f"on {args.scheduler}: {len(client.scheduler_info()['workers'])} workers")
                result = run_sweep(task, x, y, space, client=client, timeout=args.timeout,
                                   **kwargs)
        else:
            with local_cluster(args.workers) as cluster, Client(cluster) as client:
                print(f"on a LocalCluster of {len(cluster.workers)} worker processes")
                result = run_sweep(task, x, y, space, client=client, timeout=args.timeout,
                                   **kwargs)
    print(result.table())
    os.makedirs(args.out, exist_ok=True)
    csv_path = os.path.join(args.out, "results.csv")
    result.to_csv(csv_path)
    written = [csv_path]
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print('no plot: matplotlib is not installed (pip install "chainrule[plot]")')
    else:
        plot_path = os.path.join(args.out, "scores.png")
        result.plot(plot_path)
        written.append(plot_path)
    if result.best_model is not None:
        model_path = os.path.join(args.out, "best.safetensors")
        result.best_model.save(model_path)
        written.append(model_path)
    print(f"best: {_describe(result.best_params)} score {result.best_score:.4f}")
    print(f"{len(result.fits)} fits in {result.wall_seconds:.1f} s "
          f"(all done in {time.perf_counter() - start:.1f} s); wrote {', '.join(written)}")
    return 0


def _estimator(model: str, y: Any) -> Any:
    from sklearn.utils.multiclass import type_of_target

    from ..sklearn import MLPClassifier, MLPRegressor

    if model == "auto":
        model = "regressor" if type_of_target(y).startswith("continuous") else "classifier"
    return MLPClassifier() if model == "classifier" else MLPRegressor()


def _check_names(task: Any, space: dict[str, list[Any]]) -> None:
    """Refuse a parameter the model does not have before any fit starts."""
    from dataclasses import fields

    from ..sweep import DigitsTask

    if isinstance(task, DigitsTask):
        known = {f.name for f in fields(task.recipe)} - {"validation"}
    else:
        known = set(task.estimator.get_params())
    unknown = sorted(set(space) - known)
    if unknown:
        raise ValueError(f"unknown parameter {unknown[0]!r}; choose from {', '.join(sorted(known))}")


def _describe(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={v!r}" for k, v in params.items())
