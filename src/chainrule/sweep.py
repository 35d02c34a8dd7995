"""Hyperparameter sweeps: a grid or random search, run in this process or on a Dask cluster.

>>> from chainrule.sweep import DigitsTask, run_sweep
>>> from chainrule.datasets import load_mnist
>>> (x, y), _ = load_mnist()                                                  # doctest: +SKIP
>>> result = run_sweep(DigitsTask(), x, y, {"lr": [1e-3, 2e-3], "dropout": [0.0, 0.2]},
...                    validation=0.1, client=client)                         # doctest: +SKIP
>>> print(result.table())                                                     # doctest: +SKIP

A sweep is a list of candidates (``sklearn.model_selection.ParameterGrid`` or
``ParameterSampler``) times a list of splits (k-fold cross-validation or one
seeded validation split); each (candidate, split) pair is one fit, scored on
the held-out rows. Every fit is seeded and runs on one BLAS thread, so the
same sweep gives the same scores in this process and on any cluster.

On Dask (``client=`` a ``dask.distributed.Client``) the data and the splits
go to the workers once, by ``Client.scatter(..., broadcast=True)``; each task
names them by their future. If a worker dies, the scheduler reruns its fits
elsewhere (the data has a copy on every worker), so the table is complete.

The task objects (``DigitsTask``, ``EstimatorTask``) are small, picklable
descriptions that the workers import from chainrule; all training goes
through ``chainrule.recipes.train_digits`` or a chainrule estimator's ``fit``.
"""

from __future__ import annotations

import csv
import os
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from os import PathLike
from typing import Any

import numpy as np

from .recipes import DigitRecipe, train_digits

__all__ = [
    "DigitsTask",
    "EstimatorTask",
    "Fit",
    "SweepResult",
    "candidates",
    "make_splits",
    "run_sweep",
    "local_cluster",
    "load_table",
]


# -- what one fit trains ------------------------------------------------------------------


@dataclass(frozen=True)
class DigitsTask:
    """Train the digit recipe with some settings changed; score = accuracy on held-out rows.

    Swept parameters are ``DigitRecipe`` fields (``lr``, ``dropout``,
    ``layers``, ``epochs``, ``batch_size``, ...). The recipe's own validation
    hold-out is switched off: the sweep's splits decide what is held out. The
    sweep's ``seed`` seeds every fit (unless ``seed`` is itself swept).
    """

    recipe: DigitRecipe = DigitRecipe()
    classifier: bool = field(default=True, init=False)

    def _recipe(self, params: Mapping[str, Any], seed: int) -> DigitRecipe:
        return self.recipe.replace(**{"seed": seed, **params}, validation=0)

    def fit_score(self, params: Mapping[str, Any], x_train: np.ndarray, y_train: np.ndarray,
                  x_test: np.ndarray, y_test: np.ndarray, seed: int = 0) -> float:
        # threads=None: the BLAS stays as the sweep set it (one thread), so every run of a
        # fit rounds the same way, here or on any worker.
        network, _ = train_digits(self._recipe(params, seed), x_train, y_train, threads=None)
        return float(network.evaluate(x_test, y_test, batch_size=4096)["accuracy"])

    def refit(self, params: Mapping[str, Any], x: np.ndarray, y: np.ndarray, seed: int = 0) -> Any:
        """The recipe trained on all of ``(x, y)``: a ``Network``."""
        network, _ = train_digits(self._recipe(params, seed), x, y, threads=None)
        return network


@dataclass(frozen=True)
class EstimatorTask:
    """Fit a clone of a scikit-learn estimator with some parameters set; score = ``score()``.

    ``estimator``: e.g. ``chainrule.sklearn.MLPClassifier(max_iter=50)``. A
    ``random_state`` left at ``None`` is set to the sweep's seed, so every
    fit is repeatable.
    """

    estimator: Any

    @property
    def classifier(self) -> bool:
        from sklearn.base import is_classifier

        return is_classifier(self.estimator)

    def _build(self, params: Mapping[str, Any], seed: int) -> Any:
        from sklearn.base import clone

        estimator = clone(self.estimator).set_params(**dict(params))
        if "random_state" in estimator.get_params() and estimator.get_params()["random_state"] is None:
            estimator.set_params(random_state=seed)
        return estimator

    def fit_score(self, params: Mapping[str, Any], x_train: np.ndarray, y_train: np.ndarray,
                  x_test: np.ndarray, y_test: np.ndarray, seed: int = 0) -> float:
        return float(self._build(params, seed).fit(x_train, y_train).score(x_test, y_test))

    def refit(self, params: Mapping[str, Any], x: np.ndarray, y: np.ndarray, seed: int = 0) -> Any:
        return self._build(params, seed).fit(x, y)


# -- candidates and splits ---------------------------------------------------------------


def candidates(space: Mapping[str, Sequence[Any]], search: str = "grid", n_iter: int = 10,
               seed: int = 0) -> list[dict[str, Any]]:
    """Every combination of ``space``'s values (``"grid"``), or ``n_iter`` drawn at random.

    ``space`` maps a parameter to a list of values (or, for ``"random"``, a
    scipy distribution with ``rvs``). The random draw is scikit-learn's
    ``ParameterSampler`` seeded with ``seed``.
    """
    from sklearn.model_selection import ParameterGrid, ParameterSampler

    if search == "grid":
        return [dict(p) for p in ParameterGrid(dict(space))]
    if search == "random":
        return [dict(p) for p in ParameterSampler(dict(space), n_iter=int(n_iter), random_state=seed)]
    raise ValueError(f"search must be 'grid' or 'random', got {search!r}")


def make_splits(y: np.ndarray, *, cv: int | None = None, validation: float = 0.2,
                classifier: bool = True, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``[(train_rows, test_rows), ...]``: ``cv`` shuffled folds, or one validation split.

    Both are seeded and stratified for classifiers (scikit-learn's
    ``StratifiedKFold`` / ``train_test_split``).
    """
    from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

    rows = np.arange(len(y))
    if cv is not None:
        if int(cv) < 2:
            raise ValueError(f"cv needs at least 2 folds, got {cv}")
        splitter = (StratifiedKFold if classifier else KFold)(int(cv), shuffle=True, random_state=seed)
        return [(train, test) for train, test in splitter.split(rows, y)]
    if not 0 < validation < 1:
        raise ValueError(f"validation must be a fraction in (0, 1), got {validation}")
    train, test = train_test_split(rows, test_size=validation, random_state=seed,
                                   stratify=y if classifier else None)
    return [(np.sort(train), np.sort(test))]


# -- a user's data ------------------------------------------------------------------------


def load_table(path: str | PathLike, target: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Features, target and feature names from a ``.csv`` (header row) or ``.npz`` file.

    CSV: every column but ``target`` is a numeric feature; the target keeps
    its text unless every value is a number (integers when all are whole). NPZ: ``target`` names the target
    array; the features are the array ``x`` (or ``X``) shaped (n, features)
    if present, else every other array as a column (pickled object arrays are
    refused: ``np.load`` runs with ``allow_pickle=False``).

    Raises ``ValueError`` naming a missing target or a non-numeric feature.
    """
    path = os.fspath(path)
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
        if target not in arrays:
            raise ValueError(f"{path} has no array {target!r}; it holds {sorted(arrays)}")
        y = arrays.pop(target)
        for name in ("x", "X"):
            if name in arrays:
                x = np.asarray(arrays[name], dtype=np.float64)
                x = x.reshape(len(x), -1)
                return x, y, [f"{name}{i}" for i in range(x.shape[1])]
        names = sorted(arrays)
        if not names:
            raise ValueError(f"{path} holds no feature arrays besides {target!r}")
        return np.column_stack([np.asarray(arrays[n], dtype=np.float64) for n in names]), y, names
    if suffix != ".csv":
        raise ValueError(f"{path}: expected a .csv or .npz file")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise ValueError(f"{path} is empty")
    header, body = [h.strip() for h in rows[0]], [r for r in rows[1:] if r]
    if target not in header:
        raise ValueError(f"{path} has no column {target!r}; its columns are {header}")
    column = header.index(target)
    names = [h for k, h in enumerate(header) if k != column]
    try:
        x = np.array([[float(v) for k, v in enumerate(r) if k != column] for r in body])
    except ValueError as error:
        raise ValueError(f"{path}: every column but {target!r} must be numeric ({error})") from None
    labels = [r[column].strip() for r in body]
    try:
        y = np.array([float(v) for v in labels])
        if np.all(y == np.round(y)):
            y = y.astype(np.int64)  # whole numbers: labels print as 3, not 3.0
    except ValueError:
        y = np.array(labels, dtype=object)
    return x.reshape(len(body), len(names)), y, names


# -- running ------------------------------------------------------------------------------


@dataclass
class Fit:
    """One finished fit: candidate ``candidate`` on split ``split``."""

    candidate: int
    split: int
    score: float
    seconds: float
    worker: str = ""


def _fit_one(task: Any, params: dict[str, Any], payload: tuple, split: int, seed: int) -> tuple:
    """Train and score one (candidate, split) on one BLAS thread; runs on a worker."""
    from threadpoolctl import threadpool_limits

    x, y, splits = payload
    train, test = splits[split]
    start = time.perf_counter()
    with threadpool_limits(limits=1):
        score = task.fit_score(params, x[train], y[train], x[test], y[test], seed=seed)
    return score, time.perf_counter() - start, f"{os.uname().nodename}:{os.getpid()}"


@dataclass
class SweepResult:
    """Scores of every candidate, best first. ``rows``: one dict per candidate with its
    parameters, ``mean_score``, ``std_score``, ``fit_seconds`` (summed over splits) and
    ``split_scores``."""

    params: list[dict[str, Any]]
    fits: list[Fit]
    n_splits: int
    wall_seconds: float
    best_model: Any = None

    @property
    def rows(self) -> list[dict[str, Any]]:
        rows = []
        for i, params in enumerate(self.params):
            fits = sorted((f for f in self.fits if f.candidate == i), key=lambda f: f.split)
            scores = [f.score for f in fits]
            rows.append({
                "candidate": i, **params,
                "mean_score": float(np.mean(scores)), "std_score": float(np.std(scores)),
                "fit_seconds": float(sum(f.seconds for f in fits)), "split_scores": scores,
            })
        return sorted(rows, key=lambda r: (-r["mean_score"], r["candidate"]))

    @property
    def best_params(self) -> dict[str, Any]:
        return dict(self.params[self.rows[0]["candidate"]])

    @property
    def best_score(self) -> float:
        return self.rows[0]["mean_score"]

    def names(self) -> list[str]:
        """The swept parameters, in the order they first appear."""
        seen: dict[str, None] = {}
        for params in self.params:
            seen.update(dict.fromkeys(params))
        return list(seen)

    def table(self, limit: int | None = None) -> str:
        """The results as a text table, best first."""
        names = self.names()
        header = ["rank", *names, "score", "+/-", "fit s"]
        lines = [header]
        for rank, row in enumerate(self.rows[:limit], 1):
            lines.append([str(rank), *(_short(row[n]) for n in names),
                          f"{row['mean_score']:.4f}", f"{row['std_score']:.4f}",
                          f"{row['fit_seconds']:.1f}"])
        widths = [max(len(line[c]) for line in lines) for c in range(len(header))]
        text = ["  ".join(cell.rjust(w) for cell, w in zip(line, widths)) for line in lines]
        text.insert(1, "-" * len(text[0]))
        return "\n".join(text)

    def to_csv(self, path: str | PathLike) -> None:
        """Write the table (best first) as CSV: parameters, scores, seconds, per-split scores."""
        names = self.names()
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["rank", *names, "mean_score", "std_score", "fit_seconds",
                             *(f"split{j}_score" for j in range(self.n_splits))])
            for rank, row in enumerate(self.rows, 1):
                writer.writerow([rank, *(_short(row[n]) for n in names), repr(row["mean_score"]),
                                 repr(row["std_score"]), f"{row['fit_seconds']:.3f}",
                                 *map(repr, row["split_scores"])])

    def plot(self, path: str | PathLike | None = None) -> Any:
        """Score against each swept parameter (one panel each; error bars: spread over splits).

        Numeric values spanning more than a factor of 20 get a log axis;
        other values are shown as categories. Returns the matplotlib Figure.
        """
        from matplotlib.figure import Figure

        names = [n for n in self.names() if len({_short(p.get(n)) for p in self.params}) > 1]
        names = names or self.names()
        fig = Figure(figsize=(4.2 * max(len(names), 1), 3.6), layout="constrained")
        axes = fig.subplots(1, max(len(names), 1), squeeze=False)[0]
        rows = self.rows
        best = rows[0]
        for ax, name in zip(axes, names):
            values = [row.get(name) for row in rows]
            numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
            if numeric:
                xs = np.asarray(values, dtype=float)
                positive = xs[xs > 0]
                if len(positive) == len(xs) and positive.max() / positive.min() > 20:
                    ax.set_xscale("log")
            else:
                labels = list(dict.fromkeys(_short(p.get(name)) for p in self.params))
                xs = np.array([labels.index(_short(v)) for v in values], dtype=float)
                ax.set_xticks(range(len(labels)), labels, rotation=20)
                ax.set_xlim(-0.5, len(labels) - 0.5)
            scores = np.array([row["mean_score"] for row in rows])
            spread = np.array([row["std_score"] for row in rows])
            # The best score reached at each value (over the other parameters' values).
            levels = np.unique(xs)
            ax.plot(levels, [scores[xs == v].max() for v in levels], "-", color="tab:blue",
                    alpha=0.4, label="best at this value")
            ax.errorbar(xs, scores, yerr=spread, fmt="o", color="tab:blue", alpha=0.7,
                        ecolor="0.6", capsize=2, label="candidates")
            bx = xs[0]
            ax.plot([bx], [best["mean_score"]], "*", color="tab:red", markersize=14, label="best")
            ax.set_xlabel(name)
            ax.set_ylabel("score (mean over splits)")
            ax.grid(alpha=0.3)
        axes[0].legend(loc="best", fontsize="small")
        fig.suptitle(f"{len(self.params)} candidates x {self.n_splits} split(s)")
        if path is not None:
            fig.savefig(path, dpi=110)
        return fig


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "(" + ",".join(_short(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    return str(value)


def run_sweep(
    task: DigitsTask | EstimatorTask,
    x: np.ndarray,
    y: np.ndarray,
    space: Mapping[str, Sequence[Any]],
    *,
    search: str = "grid",
    n_iter: int = 10,
    cv: int | None = None,
    validation: float = 0.2,
    seed: int = 0,
    client: Any = None,
    progress: bool = True,
    refit: bool = False,
    on_fit: Callable[[Fit], None] | None = None,
    timeout: float | None = None,
) -> SweepResult:
    """Run a sweep and return its results (best first).

    Parameters
    ----------
    task : DigitsTask or EstimatorTask
    x : array (n, features); y : targets (n,) or (n, outputs)
    space : parameter -> list of values (see ``candidates``)
    search, n_iter : ``"grid"``, or ``"random"`` with ``n_iter`` draws
    cv : int, optional
        Folds of cross-validation; without it, one split holding out ``validation``.
    seed : seeds the splits, the random draw and every fit
    client : ``dask.distributed.Client``, optional
        Run the fits on its cluster; ``None`` runs them here, one after another.
    progress : show a tqdm bar over finished fits
    refit : train the best candidate on all of ``(x, y)`` (here) as ``best_model``
    on_fit : called with each ``Fit`` as it finishes (e.g. to log)
    timeout : seconds, optional
        On Dask, give up (``TimeoutError``, the pending fits cancelled) if the
        sweep has not finished by then.
    """
    from tqdm.auto import tqdm

    x, y = np.asarray(x), np.asarray(y)
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} rows but y has {len(y)}")
    params = candidates(space, search=search, n_iter=n_iter, seed=seed)
    if not params:
        raise ValueError("the search space gives no candidates")
    splits = make_splits(y if y.ndim == 1 else y[:, 0], cv=cv, validation=validation,
                         classifier=bool(task.classifier) and y.ndim == 1, seed=seed)
    jobs = [(i, j) for i in range(len(params)) for j in range(len(splits))]
    fits: list[Fit] = []
    start = time.perf_counter()
    bar = tqdm(total=len(jobs), desc="sweep", unit="fit", disable=not progress, dynamic_ncols=True)

    def finished(i: int, j: int, outcome: tuple) -> None:
        score, seconds, worker = outcome
        fit = Fit(candidate=i, split=j, score=float(score), seconds=float(seconds), worker=worker)
        fits.append(fit)
        best = max(fits, key=lambda f: f.score)
        bar.set_postfix_str(f"best so far {best.score:.4f}", refresh=False)
        bar.update(1)
        if on_fit is not None:
            on_fit(fit)

    try:
        payload = (x, y, splits)
        if client is None:
            for i, j in jobs:
                finished(i, j, _fit_one(task, params[i], payload, j, seed))
        else:
            from dask.distributed import as_completed

            # Once, to every worker: each task then names the data by its future.
            (data,) = client.scatter([payload], broadcast=True, hash=False)
            token = uuid.uuid4().hex[:8]
            futures = {
                client.submit(_fit_one, task, params[i], data, j, seed,
                              key=f"chainrule-fit-{token}-{i}-{j}", pure=False): (i, j)
                for i, j in jobs
            }
            try:
                for future in as_completed(list(futures), timeout=timeout):
                    finished(*futures[future], future.result())
            finally:
                client.cancel([data, *futures])
    finally:
        bar.close()
    result = SweepResult(params=params, fits=fits, n_splits=len(splits),
                         wall_seconds=time.perf_counter() - start)
    if refit:
        result.best_model = task.refit(result.best_params, x, y, seed=seed)
    return result


def local_cluster(n_workers: int | None = None) -> Any:
    """A ``dask.distributed.LocalCluster`` on 127.0.0.1: one worker process per core, one
    thread (and one BLAS thread) each; its dashboard on a free port (`cluster.dashboard_link`)."""
    import logging

    from dask.distributed import LocalCluster

    return LocalCluster(
        n_workers=n_workers or os.cpu_count() or 1, threads_per_worker=1, processes=True,
        host="127.0.0.1", dashboard_address=":0", silence_logs=logging.ERROR,
    )

