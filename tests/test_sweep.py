"""chainrule.sweep: the same scores sequentially and on Dask, data sent once, no fit lost."""

from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")
distributed = pytest.importorskip("distributed")

from sklearn.datasets import load_digits  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402

from chainrule.recipes import DigitRecipe  # noqa: E402
from chainrule.sklearn import MLPClassifier  # noqa: E402
from chainrule.sweep import (  # noqa: E402
    DigitsTask,
    EstimatorTask,
    candidates,
    load_table,
    local_cluster,
    make_splits,
    run_sweep,
)

SPACE = {"alpha": [1e-4, 1e-1], "learning_rate_init": [1e-3, 1e-2]}


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    return x[:400] / 16, y[:400]


@pytest.fixture(scope="module")
def task():
    return EstimatorTask(MLPClassifier(hidden_layer_sizes=(16,), max_iter=60))


@pytest.fixture(scope="module")
def sequential(task, digits):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return run_sweep(task, *digits, SPACE, cv=2, progress=False)


@pytest.fixture(scope="module")
def client():
    with local_cluster(2) as cluster, distributed.Client(cluster) as client:
        client.wait_for_workers(2, timeout=60)
        yield client


def _scores(result):
    return {(f.candidate, f.split): f.score for f in result.fits}


def test_candidates_and_splits_are_seeded():
    assert candidates(SPACE) == [
        {"alpha": 1e-4, "learning_rate_init": 1e-3}, {"alpha": 1e-4, "learning_rate_init": 1e-2},
        {"alpha": 1e-1, "learning_rate_init": 1e-3}, {"alpha": 1e-1, "learning_rate_init": 1e-2},
    ]
    space = {"alpha": [1e-4, 1e-3, 1e-2, 1e-1], "momentum": [0.5, 0.9, 0.99]}
    drawn = candidates(space, search="random", n_iter=5, seed=3)
    assert drawn == candidates(space, search="random", n_iter=5, seed=3)
    assert len(drawn) == 5 and all(d in candidates(space) for d in drawn)
    y = np.repeat([0, 1, 2], [50, 30, 20])
    folds = make_splits(y, cv=5, seed=0)
    assert sorted(np.concatenate([test for _, test in folds]).tolist()) == list(range(100))
    for train, test in folds:
        assert np.bincount(y[test]).tolist() == [10, 6, 4]  # stratified
        assert not set(train) & set(test)
    ((train, test),) = make_splits(y, validation=0.2, seed=0)
    assert len(test) == 20 and np.bincount(y[test]).tolist() == [10, 6, 4]


def test_load_table_reads_npz_and_csv(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(20, 3)), rng.integers(0, 3, 20)
    np.savez(tmp_path / "xy.npz", x=x, label=y)
    features, target, names = load_table(tmp_path / "xy.npz", "label")
    np.testing.assert_array_equal(features, x)
    np.testing.assert_array_equal(target, y)
    np.savez(tmp_path / "columns.npz", height=x[:, 0], width=x[:, 1], price=x[:, 2])
    features, target, names = load_table(tmp_path / "columns.npz", "price")
    assert names == ["height", "width"] and target.dtype == np.float64
    np.testing.assert_array_equal(features, x[:, :2])
    (tmp_path / "t.csv").write_text("a,b,kind\n1,2.5,cat\n3,4,dog\n")
    features, target, names = load_table(tmp_path / "t.csv", "kind")
    assert features.tolist() == [[1.0, 2.5], [3.0, 4.0]] and list(target) == ["cat", "dog"]
    with pytest.raises(ValueError, match="no column 'price'"):
        load_table(tmp_path / "t.csv", "price")
    (tmp_path / "bad.csv").write_text("a,kind\nhigh,cat\n")
    with pytest.raises(ValueError, match="must be numeric"):
        load_table(tmp_path / "bad.csv", "kind")


def test_results_table_csv_and_plot(sequential, tmp_path):
    rows = sequential.rows
    assert [r["mean_score"] for r in rows] == sorted((r["mean_score"] for r in rows), reverse=True)
    for row in rows:
        assert row["mean_score"] == pytest.approx(np.mean(row["split_scores"]))
    assert sequential.best_params == {k: rows[0][k] for k in SPACE}
    assert sequential.table().splitlines()[0].split() == [
        "rank", "alpha", "learning_rate_init", "score", "+/-", "fit", "s"]
    sequential.to_csv(tmp_path / "results.csv")
    with open(tmp_path / "results.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [float(r["mean_score"]) for r in table] == [r["mean_score"] for r in rows]
    pytest.importorskip("matplotlib")
    figure = sequential.plot(tmp_path / "scores.png")
    assert [ax.get_xlabel() for ax in figure.axes] == ["alpha", "learning_rate_init"]
    assert figure.axes[0].get_xscale() == "log"  # 1e-4 .. 1e-1
    assert (tmp_path / "scores.png").stat().st_size > 10_000


def test_dask_gives_the_sequential_scores_and_sends_the_data_once(client, task, digits, sequential):
    submitted, scattered = [], []
    submit, scatter = client.submit, client.scatter

    def spy_submit(*args, **kwargs):
        submitted.append(args)
        return submit(*args, **kwargs)

    def spy_scatter(data, *args, **kwargs):
        scattered.append(data)
        return scatter(data, *args, **kwargs)

    client.submit, client.scatter = spy_submit, spy_scatter
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            result = run_sweep(task, *digits, SPACE, cv=2, client=client, progress=False,
                               timeout=300)
    finally:
        del client.submit, client.scatter
    assert _scores(result) == _scores(sequential)  # seeded, one BLAS thread: exactly equal
    assert len(scattered) == 1 and len(submitted) == 8
    # Every task names the data by its future; no task carries an array of its own.
    for args in submitted:
        assert not any(isinstance(a, np.ndarray) for a in args)
        assert isinstance(args[3], distributed.Future)
    assert len({f.worker for f in result.fits}) == 2  # both workers trained


def test_a_worker_killed_mid_sweep_loses_nothing(client, digits):
    task = DigitsTask(DigitRecipe(layers=(64, 32, 10), epochs=12, batch_size=16, max_shift=0,
                                  dropout=0.0, lr=3e-3))
    space = {"lr": [1e-3, 3e-3, 1e-2], "dropout": [0.0, 0.1]}
    killed = []

    def kill_a_busy_worker(fit):
        if killed:
            return
        busy = [addr for addr, keys in client.processing().items() if keys]
        pids = client.run(os.getpid, workers=busy[:1])
        for pid in pids.values():
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    result = run_sweep(task, *digits, space, validation=0.25, client=client, progress=False,
                       on_fit=kill_a_busy_worker, timeout=300)
    assert killed
    assert sorted((f.candidate, f.split) for f in result.fits) == [(i, 0) for i in range(6)]
    again = run_sweep(task, *digits, space, validation=0.25, progress=False)
    assert _scores(result) == _scores(again)
    client.wait_for_workers(2, timeout=60)  # the nanny restarts the killed one


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_sweep_on_a_scheduler_and_two_dask_worker_processes(tmp_path, digits):
    from chainrule.cli import main

    x, y = digits
    data = tmp_path / "digits.csv"
    with open(data, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([f"p{i}" for i in range(64)] + ["digit"])
        for row, label in zip(x[:200], y[:200]):
            writer.writerow([f"{v:g}" for v in row] + [["zero", "one", "two", "three", "four",
                                                        "five", "six", "seven", "eight",
                                                        "nine"][label]])
    features, target, names = load_table(data, "digit")
    assert features.shape == (200, 64) and target[0] == "zero" and names[-1] == "p63"

    address = f"tcp://127.0.0.1:{_free_port()}"
    # The `dask` command installed beside this Python (the venv's), as a user would run it.
    dask = os.path.join(os.path.dirname(sys.executable), "dask")
    assert os.path.exists(dask), "dask[distributed] installs the `dask` command"
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    processes = [subprocess.Popen(
        [dask, "scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1],
         "--no-dashboard"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        worker = [dask, "worker", address, "--nthreads", "1", "--no-dashboard",
                  "--host", "127.0.0.1", "--no-nanny"]
        processes += [subprocess.Popen(worker, env=env, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL) for _ in range(2)]
        with distributed.Client(address, timeout=60) as probe:
            probe.wait_for_workers(2, timeout=60)
        out = tmp_path / "out"
        status = main(["sweep", str(data), "--target", "digit", "--param", "alpha=1e-4,1e-2",
                       "--param", "hidden_layer_sizes=(8,),(16,)", "--param", "max_iter=30",
                       "--cv", "2", "--scheduler", address, "--timeout", "300",
                       "--out", str(out)])
        assert status == 0
        with open(out / "results.csv", newline="") as f:
            table = list(csv.DictReader(f))
        assert len(table) == 4 and {r["hidden_layer_sizes"] for r in table} == {"(8,)", "(16,)"}
        from chainrule.sklearn import load

        best = load(out / "best.safetensors")
        assert set(best.classes_) == {"zero", "one", "two", "three", "four", "five", "six",
                                      "seven", "eight", "nine"}
        assert best.get_params()["alpha"] == float(table[0]["alpha"])
        assert (out / "scores.png").exists()
    finally:
        for process in processes[::-1]:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def test_cli_sweep_of_the_digit_recipe_sequentially(tmp_path, capsys):
    from chainrule.cli import main

    status = main(["sweep", "--param", "lr=1e-3,1e-2", "--param", "layers=(784,16,10)",
                   "--param", "epochs=1", "--param", "max_shift=0", "--limit", "600",
                   "--sequential", "--out", str(tmp_path)])
    assert status == 0
    printed = capsys.readouterr().out
    assert "sweeping the digit recipe" in printed and "best: " in printed
    import chainrule as cr

    network = cr.load(tmp_path / "best.safetensors")
    assert [layer.out_features for layer in network.layers if hasattr(layer, "out_features")] == [16, 10]
    assert main(["sweep", "--param", "nonsense=1,2", "--sequential", "--out", str(tmp_path)]) != 0
