"""The ``chainrule`` command line (chainrule.cli), with tiny configurations so it stays quick."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import chainrule as cr
from chainrule import cli
from chainrule.checkpoint import load_checkpoint
from chainrule.datasets import load_mnist

# A small, quick training run: 1,100 digits (100 held out), 3 epochs of a 784-32-10 net.
QUICK = ["--epochs", "3", "--batch-size", "32", "--lr", "0.005", "--limit", "1100",
         "--validation", "100", "--layers", "784,32,10", "--progress", "lines"]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    status = cli.main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def assert_one_line_error(status: int, err: str, *fragments: str) -> None:
    assert status != 0
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("chainrule: error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, str]:
    """One quick ``chainrule train`` run with plots; its model file and its output."""
    directory = tmp_path_factory.mktemp("train")
    model = directory / "digits.safetensors"
    before = signal.getsignal(signal.SIGINT)
    status = cli.main(["train", *QUICK, "--out", str(model), "--plots", str(directory / "plots"),
                       "--seed", "3"])
    assert status == 0
    assert signal.getsignal(signal.SIGINT) is before  # the Ctrl-C handler was removed
    return model, directory


def test_train_prints_progress_saves_and_reports(trained, capsys):
    model, directory = trained
    status, out, err = run(capsys, "train", *QUICK, "--out", str(directory / "again.safetensors"),
                           "--seed", "3")
    assert status == 0
    assert "training 784-32-10 relu MLP" in out
    assert "1,000 training digits, 100 held out for validation, 10,000 test digits" in out
    assert re.search(r"epoch 1/3 +loss \d\.\d+ +val_loss \d\.\d+ +val_accuracy \d+\.\d\d%", out)
    assert re.search(r"epoch 3/3 +loss \d\.\d+ +val_loss \d\.\d+ +val_accuracy \d+\.\d\d%", out)
    accuracy = float(re.search(r"test accuracy: ([\d.]+)%", out).group(1))
    assert re.search(r"wall time: [\d.]+ s \(training [\d.]+ s\)", out)
    assert f"saved the model to {directory / 'again.safetensors'}" in out
    # The reported accuracy is the saved model's, and the run is repeatable by seed.
    from chainrule.datasets import load_mnist

    _, (x_test, y_test) = load_mnist()
    network = cr.load(directory / "again.safetensors")
    assert network.evaluate(x_test, y_test)["accuracy"] * 100 == pytest.approx(accuracy, abs=0.006)
    assert accuracy > 60.0  # a few epochs on 1,000 digits: far better than chance (10%)
    first = cr.load(model)
    for name, array in first.parameters().items():
        np.testing.assert_array_equal(array, network.parameters()[name])


def test_train_writes_the_four_plots(trained):
    _, directory = trained
    names = sorted(p.name for p in (directory / "plots").iterdir())
    assert names == ["confusion_matrix.png", "first_layer_weights.png", "learning_curves.png",
                     "misclassified.png"]
    for path in (directory / "plots").iterdir():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_prints_accuracy_scores_and_confusion_matrix(trained, capsys):
    model, _ = trained
    status, out, err = run(capsys, "evaluate", str(model))
    assert status == 0, err
    accuracy = float(re.search(r"accuracy: ([\d.]+)% \(([\d,]+) of 10,000 right\)", out).group(1))
    assert "784-32-10, 25,450 parameters" in out
    assert "digit  precision  recall  support" in out
    rows = re.findall(r"^\s+(\d)\s+([\d.]+)%\s+([\d.]+)%\s+([\d,]+)$", out, flags=re.M)
    assert [int(r[0]) for r in rows] == list(range(10))
    assert sum(int(r[3].replace(",", "")) for r in rows) == 10_000
    table = out.split("confusion matrix (rows: true digit, columns: predicted digit)\n")[1]
    lines = table.strip().splitlines()
    assert lines[0].split()[:11] == ["true\\pred"] + [str(d) for d in range(10)]
    matrix = np.array([[0 if c == "." else int(c) for c in line.split()[1:11]]
                       for line in lines[1:11]])
    assert matrix.sum() == 10_000
    assert np.trace(matrix) / 100 == pytest.approx(accuracy, abs=0.006)
    # Recall of digit d is the diagonal over its row.
    recalls = [float(r[2]) for r in rows]
    assert recalls == pytest.approx(100 * np.diag(matrix) / matrix.sum(axis=1), abs=0.06)


def test_predict_reads_drawn_digits(trained, capsys, tmp_path):
    PIL = pytest.importorskip("PIL")  # noqa: F841
    from PIL import Image

    from chainrule.datasets import load_mnist

    model, _ = trained
    _, (x_test, y_test) = load_mnist()
    network = cr.load(model)
    right = np.flatnonzero(network.predict(x_test[:200]).argmax(axis=1) == y_test[:200])
    paths = []
    for i in right[:3]:
        # As drawn in a paint program: black on white, larger than 28x28.
        picture = Image.fromarray(np.round(255 * (1 - x_test[i].reshape(28, 28))).astype(np.uint8))
        path = tmp_path / f"digit{i}.png"
        picture.resize((140, 140), Image.Resampling.BICUBIC).save(path)
        paths.append((path, y_test[i]))
    status, out, err = run(capsys, "predict", str(model), *[str(p) for p, _ in paths],
                           "--top", "2", "--save-inputs", str(tmp_path / "seen"))
    assert status == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 3
    read = 0
    for line, (path, label) in zip(lines, paths):
        match = re.fullmatch(rf"{re.escape(str(path))}: (\d)   \((\d): ([\d.]+)%  (\d): ([\d.]+)%\)",
                             line)
        assert match, line
        digit, first, p1, _, p2 = match.groups()
        assert digit == first and float(p1) >= float(p2)
        read += int(digit) == label
    assert read >= 2  # a weak model, but these digits it reads right as MNIST
    assert len(list((tmp_path / "seen").glob("*-28x28.png"))) == 3


def test_predict_keeps_going_past_a_bad_image(trained, capsys, tmp_path):
    pytest.importorskip("PIL")
    from PIL import Image, ImageDraw

    model, _ = trained
    good = tmp_path / "one.png"
    image = Image.new("L", (200, 200), 255)
    ImageDraw.Draw(image).line([(100, 30), (100, 170)], fill=0, width=14)
    image.save(good)
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    status, out, err = run(capsys, "predict", str(model), str(bad), str(good))
    assert_one_line_error(status, err, "broken.jpg", "not a readable image")
    assert out.startswith(f"{good}: ")


@pytest.mark.parametrize(
    "argv, fragments",
    [
        (["evaluate", "no-such-model.safetensors"], ["no-such-model.safetensors"]),
        (["predict", "no-such-model.safetensors", "x.png"], ["no-such-model.safetensors"]),
        (["export", "no-such-model.safetensors", "--onnx", "out.onnx"], ["no-such-model"]),
        (["train", "--data", "no-such-dir", "--epochs", "1"], ["no-such-dir"]),
        (["train", "--layers", "100,10", "--epochs", "1"], ["100 inputs", "784 pixels"]),
        (["train", "--layers", "784,16,3", "--epochs", "1"], ["3 outputs", "10 classes"]),
        (["train", "--validation", "600", "--limit", "500", "--epochs", "1"], ["600", "500"]),
        (["train", "--layers", "784,100000000,10", "--epochs", "1"],
         ["layers 784,100000000,10 (float32) needs about", "available"]),
        (["train", "--checkpoint-every", "2"], ["--checkpoint-every needs --checkpoint"]),
    ],
)
def test_user_errors_are_one_line(capsys, tmp_path, monkeypatch, argv, fragments):
    monkeypatch.chdir(tmp_path)
    status, _, err = run(capsys, *argv)
    assert_one_line_error(status, err, *fragments)


def test_a_batch_larger_than_the_training_set_is_estimated_as_the_training_set(capsys, tmp_path):
    # --batch-size 10**8 on 200 training digits is full-batch training: 200 rows of activations.
    small = ["--limit", "300", "--validation", "100", "--batch-size", "100000000", "--epochs", "1"]
    status, out, err = run(capsys, "train", *small, "--layers", "784,8,10",
                           "--out", str(tmp_path / "m.safetensors"))
    assert status == 0, err
    assert "epochs of batch 100000000" in out and (tmp_path / "m.safetensors").exists()
    status, _, err = run(capsys, "train", *small, "--layers", "784,100000000,10",
                         "--out", str(tmp_path / "big.safetensors"))
    assert_one_line_error(status, err, "activations of a batch of 200 ")


def test_model_of_the_wrong_width_names_both_widths(capsys, tmp_path, trained):
    model = tmp_path / "small.safetensors"
    cr.Network.from_sizes([100, 8, 10], loss="cross_entropy", seed=0).save(model)
    status, _, err = run(capsys, "evaluate", str(model))
    assert_one_line_error(status, err, "expects 100 input features", "784")
    picture = tmp_path / "digit.png"
    picture.write_bytes(b"")  # never read: the width check comes first
    status, _, err = run(capsys, "predict", str(model), str(picture))
    assert_one_line_error(status, err, "expects 100 input features", "784")


def test_corrupt_files_are_one_line_errors(capsys, tmp_path):
    model = tmp_path / "junk.safetensors"
    model.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    status, _, err = run(capsys, "evaluate", str(model))
    assert_one_line_error(status, err, "junk.safetensors")
    data = tmp_path / "mnist"
    data.mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (data / name).write_bytes(b"\x00\x00\x08\x03 truncated")
    status, _, err = run(capsys, "train", "--data", str(data), "--epochs", "1")
    assert_one_line_error(status, err)


def test_usage_errors_and_version(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"chainrule {cr.__version__}"
    assert cli.main(["train", "--layers", "784,abc"]) == 2
    assert "expected widths separated by commas" in capsys.readouterr().err
    assert cli.main(["train", "--dropout", "1.5"]) == 2
    assert cli.main([]) == 2


def test_demo_learns_xor(capsys):
    status, out, _ = run(capsys, "demo")
    assert status == 0
    errors = [float(v) for v in re.findall(r"epoch +\d+: mean squared error ([\d.e+-]+)", out)]
    assert len(errors) == 7  # epoch 1, 10, 20, ..., 60
    assert errors[-1] < 1e-4 < errors[0]
    assert all(b < a for a, b in zip(errors, errors[1:]))
    predictions = [float(v) for v in re.findall(r"-> (\d\.\d{3})", out.split("predictions:")[1])]
    assert predictions == pytest.approx([1, 1, 0, 0], abs=0.02)


def test_demo_says_when_a_start_does_not_learn_and_why(capsys):
    status, out, _ = run(capsys, "demo", "--seed", "2")
    assert status == 0
    assert "learns XOR" not in out
    assert "This start did not learn XOR (mean squared error 0.25)." in out
    assert "layer 1 (ReLU()): 50% of its relus are dead" in out


def test_export_onnx(trained, capsys, tmp_path):
    pytest.importorskip("onnx")
    model, _ = trained
    out = tmp_path / "digits.onnx"
    status, stdout, err = run(capsys, "export", str(model), "--onnx", str(out))
    assert status == 0, err
    assert out.stat().st_size > 25_450 * 4  # the weights are in it
    assert f"wrote {out}" in stdout
    # --onnx naming the model itself (or a path to it) would replace the model with the graph.
    copy = tmp_path / "copy.safetensors"
    copy.write_bytes(model.read_bytes())
    before = copy.read_bytes()
    for target in (str(copy), str(tmp_path / "." / "copy.safetensors")):
        status, stdout, err = run(capsys, "export", str(copy), "--onnx", target)
        assert_one_line_error(status, err, f"--onnx {target} is the model itself; the ONNX file "
                              "would replace it")
        assert stdout == ""
    assert copy.read_bytes() == before
    status, _, err = run(capsys, "export", str(copy), "--onnx", str(tmp_path))
    assert_one_line_error(status, err, f"--onnx {tmp_path} is a directory; give a file name, "
                          f"e.g. {tmp_path / 'model.onnx'}")


def test_lesson_runs(capsys, tmp_path):
    pytest.importorskip("chainrule.lessons")
    status, out, err = run(capsys, "lesson", "1")
    assert status == 0, err
    assert "Lesson 1" in out
    status, _, err = run(capsys, "lesson", "99")
    assert_one_line_error(status, err)


def test_checkpoint_and_resume(capsys, tmp_path):
    checkpoint = tmp_path / "run.ckpt"
    status, _, err = run(capsys, "train", "--resume", str(tmp_path / "none.ckpt"))
    assert_one_line_error(status, err, "no checkpoint file at", "none.ckpt")
    # A constant learning rate, so two epochs then a third is the same run as three.
    base = ["--limit", "400", "--validation", "100", "--layers", "784,16,10", "--progress",
            "lines", "--seed", "5", "--lr", "0.003", "--final-lr", "0.003"]
    status, _, err = run(capsys, "train", *base, "--epochs", "2", "--out",
                         str(tmp_path / "two.safetensors"), "--checkpoint", str(checkpoint))
    assert status == 0, err
    assert checkpoint.exists()
    status, out, err = run(capsys, "train", *base, "--epochs", "3", "--resume", str(checkpoint),
                           "--out", str(tmp_path / "resumed.safetensors"))
    assert status == 0, err
    assert f"resuming {checkpoint}: 2 epochs done" in out
    assert "epoch 3/3" in out and "epoch 1/3" not in out
    # Three epochs in one go give the same weights as two, then one more resumed.
    status, _, err = run(capsys, "train", *base, "--epochs", "3", "--out",
                         str(tmp_path / "straight.safetensors"))
    assert status == 0, err
    resumed, straight = cr.load(tmp_path / "resumed.safetensors"), cr.load(
        tmp_path / "straight.safetensors")
    for name, array in straight.parameters().items():
        np.testing.assert_array_equal(resumed.parameters()[name], array)


def test_ctrl_c_stops_after_the_step_and_saves(tmp_path):
    """SIGINT to a real ``chainrule train`` process: it stops, saves, says so, exits 130."""
    model = tmp_path / "interrupted.safetensors"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "chainrule", "train", "--epochs", "500", "--limit", "1000",
         "--validation", "100", "--layers", "784,16,10", "--progress", "lines",
         "--out", str(model)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env,
    )
    try:
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            lines.append(line)
            if line.startswith("epoch 2/500") or not line:
                break
        assert any(line.startswith("epoch 2/500") for line in lines), "".join(lines)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    out = "".join(lines) + out
    assert process.returncode == cli.EXIT_INTERRUPTED, err
    assert "Traceback" not in err
    assert "stopping after the current step" in err
    assert "interrupted: saved the model trained so far (stopped in epoch" in err
    assert str(model) in err
    assert "test accuracy:" in out
    epochs = int(re.findall(r"^epoch (\d+)/500", out, flags=re.M)[-1])
    assert 2 <= epochs < 500
    network = cr.load(model)
    assert network.in_features == 784 and network.out_features == 10


# -- the recipe behind ``chainrule train`` ----------------------------------------------------


def test_default_recipe_builds_the_documented_network():
    from chainrule.recipes import DigitRecipe, build_callbacks, build_network

    recipe = DigitRecipe()
    network = build_network(recipe)
    kinds = [type(layer).__name__ for layer in network.layers]
    assert kinds == ["Dense", "ReLU", "Dropout", "Dense", "ReLU", "Dropout", "Dense"]
    dense = [layer for layer in network.layers if isinstance(layer, cr.Dense)]
    assert [(d.in_features, d.out_features) for d in dense] == [(784, 512), (512, 256), (256, 10)]
    assert all(d.p == recipe.dropout for d in network.layers if isinstance(d, cr.Dropout))
    assert isinstance(network.optimizer, cr.Adam) and network.optimizer.lr == recipe.lr
    assert type(network.loss).__name__ == "CrossEntropy"
    # He initialisation: weight variance 2 / fan_in; biases start at zero.
    assert np.var(dense[0].weight) == pytest.approx(2 / 784, rel=0.05)
    assert not dense[0].bias.any()
    schedule = build_callbacks(recipe)[0].schedule
    assert schedule(0) == pytest.approx(recipe.lr)
    assert schedule(recipe.epochs) == pytest.approx(recipe.final_lr)  # reached as the last epoch ends
    assert schedule(recipe.epochs - 1) > recipe.final_lr  # so the last epoch still trains
    # The same seed builds the same network; the description names every choice.
    again = build_network(recipe)
    np.testing.assert_array_equal(again.layers[0].weight, dense[0].weight)
    text = recipe.describe()
    for part in ("784-512-256-10", "dropout 0.2", "Adam", "40 epochs", "batch 256", "2 px"):
        assert part in text


def test_recipe_variants_and_validation_split():
    from chainrule.recipes import DigitRecipe, build_network, split_validation

    recipe = DigitRecipe().replace(layers=[784, 20, 10], dropout=0.0, input_dropout=0.1,
                                   optimizer="sgd", lr=None)
    assert recipe.layers == (784, 20, 10) and recipe.lr == DigitRecipe().lr
    network = build_network(recipe)
    assert [type(layer).__name__ for layer in network.layers] == [
        "Dropout", "Dense", "ReLU", "Dense"]
    assert isinstance(network.optimizer, cr.SGD) and network.optimizer.nesterov
    with pytest.raises(ValueError, match="unknown optimizer"):
        build_network(recipe.replace(optimizer="rmsprop"))
    # class-sorted labels: the held-out rows come from every class (not the last rows)
    x, y = np.arange(40.0).reshape(20, 2), np.repeat(np.arange(4), 5)
    (x_train, y_train), (x_val, y_val) = split_validation(x, y, 8)
    assert np.bincount(y_val).tolist() == [2, 2, 2, 2] and np.bincount(y_train).tolist() == [3] * 4
    np.testing.assert_array_equal(x_val[:, 0] // 2, np.sort(x_val[:, 0] // 2))  # rows keep order
    np.testing.assert_array_equal(split_validation(x, y, 8)[1][0], x_val)  # seeded
    assert split_validation(x, y, 0)[1] is None
    with pytest.raises(ValueError, match="cannot hold out 20"):
        split_validation(x, y, 20)


def test_softmax_probabilities_of_logits_and_of_softmax_outputs():
    from chainrule.recipes import softmax_probabilities

    logits_net = cr.Network.from_sizes([3, 4], loss="cross_entropy", seed=0)
    x = np.random.default_rng(0).normal(size=(5, 3))
    p = softmax_probabilities(logits_net, x)
    z = logits_net.predict(x).astype(np.float64)
    np.testing.assert_allclose(p, np.exp(z) / np.exp(z).sum(axis=1, keepdims=True), rtol=1e-6)
    softmax_net = cr.Network.from_sizes([3, 4], output_activation="softmax", seed=0)
    np.testing.assert_allclose(softmax_probabilities(softmax_net, x), softmax_net.predict(x),
                               rtol=1e-6)



def test_output_cut_short_by_a_closed_pipe_is_not_an_error(monkeypatch, capsys):
    import os
    import sys

    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader has gone, like `chainrule lesson 1 | head -2`
    with open(write_end, "w", buffering=1) as closed_pipe:
        monkeypatch.setattr(sys, "stdout", closed_pipe)
        assert cli.main(["lesson", "1"]) == 0
    assert "error" not in capsys.readouterr().err


def test_mistakes_in_train_options_are_caught_before_any_training(capsys, tmp_path):
    (tmp_path / "a_file").write_text("")
    quick = ["--epochs", "1", "--limit", "300", "--validation", "100", "--layers", "784,8,10"]
    cases = [
        (["--out", str(tmp_path)], "is a directory"),
        (["--plots", str(tmp_path / "a_file")], f"--plots {tmp_path / 'a_file'} is a file; give a directory"),
        (["--shift", "14"], "--shift 14 is too large: shifts of 0 to 13 pixels fit the 28x28 digits"),
        (["--validation", "300"], "cannot hold out 300 digits"),
    ]
    for extra, says in cases:
        status, out, err = run(capsys, "train", *quick, *extra)
        assert_one_line_error(status, err, says)
        assert "epoch" not in out  # nothing was trained


def test_a_new_run_never_replaces_what_is_at_its_checkpoint_path(capsys, tmp_path):
    checkpoint, model = tmp_path / "run.ckpt", tmp_path / "m.safetensors"
    base = [*TINY, "--epochs", "2", "--out", str(model)]
    assert run(capsys, "train", *base, "--checkpoint", str(checkpoint))[0] == 0
    saved = checkpoint.read_bytes()
    # The first command again after a crash, forgetting --resume: it would restart at epoch 1.
    status, out, err = run(capsys, "train", *base, "--checkpoint", str(checkpoint))
    assert_one_line_error(status, err, f"--checkpoint {checkpoint} already exists; continue its "
                          f"run with --resume {checkpoint}, or give --checkpoint another name")
    assert "epoch" not in out and checkpoint.read_bytes() == saved
    # A trained model named by mistake as the checkpoint is kept too.
    status, _, err = run(capsys, "train", *TINY, "--epochs", "1", "--checkpoint", str(model),
                         "--out", str(tmp_path / "other.safetensors"))
    assert_one_line_error(status, err, f"--checkpoint {model} already exists")
    assert cr.load(model).out_features == 10
    # Resuming it, the checkpoint is continued in place.
    status, out, err = run(capsys, "train", *[*TINY, "--epochs", "3"], "--checkpoint",
                           str(checkpoint), "--resume", str(checkpoint),
                           "--out", str(tmp_path / "three.safetensors"))
    assert status == 0, err
    assert load_checkpoint(checkpoint).epoch == 3


def test_resume_refuses_a_different_network_and_a_finished_run_saves_its_model(
        capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    checkpoint = tmp_path / "run.ckpt"
    model = tmp_path / "m.safetensors"
    base = ["--limit", "300", "--validation", "100", "--layers", "784,8,10", "--progress", "lines",
            "--out", str(model)]
    status, _, err = run(capsys, "train", *base, "--epochs", "2", "--checkpoint", str(checkpoint))
    assert status == 0, err
    status, out, err = run(capsys, "train", "--layers", "784,16,10", "--epochs", "3",
                           "--resume", str(checkpoint))
    assert_one_line_error(status, err, "--layers 784,16,10 differs from its 784,8,10")
    assert "epoch" not in out
    # The input: an Adam run with dropout resumed with --optimizer sgd --dropout 0.
    status, out, err = run(capsys, "train", *base, "--epochs", "3", "--optimizer", "sgd",
                           "--dropout", "0", "--resume", str(checkpoint))
    assert_one_line_error(status, err, "--dropout 0 differs from its 0.2",
                          "--optimizer sgd differs from its adam")
    assert out == ""
    status, _, err = run(capsys, "train", *base, "--epochs", "1", "--resume", str(checkpoint))
    assert_one_line_error(status, err, "already holds 2 epochs, more than --epochs 1",
                          "give --epochs 2 or more")
    # The run died after its last checkpoint but before --out was written: the same
    # command with --resume saves the checkpoint's model instead of refusing.
    model.unlink()
    status, out, err = run(capsys, "train", *base, "--epochs", "2", "--resume", str(checkpoint))
    assert status == 0, err
    assert f"{checkpoint} already holds all 2 epochs of this run; nothing left to train" in out
    assert f"saved the model to {model}" in out and "epoch 1/2" not in out
    saved = load_checkpoint(checkpoint)
    for name, array in saved.parameters.items():
        np.testing.assert_array_equal(cr.load(model).parameters()[name], array)
    accuracy = float(re.search(r"test accuracy: ([\d.]+)%", out).group(1))
    _, (x_test, y_test) = load_mnist()
    assert cr.load(model).evaluate(x_test, y_test)["accuracy"] * 100 == pytest.approx(
        accuracy, abs=0.006)
    assert not (tmp_path / "mnist-mlp.safetensors").exists()


def test_predict_refuses_a_model_that_is_not_a_digit_classifier(capsys, tmp_path):
    pytest.importorskip("PIL")
    from PIL import Image

    model = tmp_path / "regression.safetensors"
    cr.Network.from_sizes([784, 1], seed=0).save(model)
    image = tmp_path / "digit.png"
    Image.new("L", (28, 28), 0).save(image)
    status, _, err = run(capsys, "predict", str(model), str(image))
    assert_one_line_error(status, err, "has 1 outputs; a digit classifier has 10")


# -- issue 9 §9: the command line never claims what it did not do ---------------------------------

TINY = ["--limit", "300", "--validation", "100", "--layers", "784,8,10", "--progress", "lines",
        "--batch-size", "32"]


@pytest.fixture(scope="module")
def sgd_checkpoint(tmp_path_factory) -> Path:
    """Two epochs of a tiny SGD run without dropout, checkpointed."""
    directory = tmp_path_factory.mktemp("sgd")
    checkpoint = directory / "run.ckpt"
    status = cli.main(["train", *TINY, "--epochs", "2", "--optimizer", "sgd", "--dropout", "0",
                       "--seed", "4", "--checkpoint", str(checkpoint),
                       "--out", str(directory / "m.safetensors")])
    assert status == 0
    return checkpoint


@pytest.mark.parametrize("options, says", [
    (["--optimizer", "adam"], "--optimizer adam differs from its sgd"),
    (["--dropout", "0.5"], "--dropout 0.5 differs from its 0"),
    (["--weight-decay", "0.001"], "--weight-decay 0.001 differs from its 0"),
    (["--activation", "tanh"], "--activation tanh differs from its relu"),
    (["--seed", "5"], "--seed 5 differs from its 4"),
])
def test_resume_refuses_options_that_contradict_the_checkpoint(capsys, tmp_path, sgd_checkpoint,
                                                               options, says):
    status, out, err = run(capsys, "train", *TINY, "--epochs", "3", "--resume",
                           str(sgd_checkpoint), "--out", str(tmp_path / "r.safetensors"),
                           *options)
    assert_one_line_error(status, err, says, "leave these options out when resuming")
    assert out == ""  # no banner naming what would not have been trained


def test_resume_trains_what_its_banner_says_and_says_what_changes(capsys, tmp_path,
                                                                  sgd_checkpoint):
    # Options repeating the checkpoint are fine; the batch size comes from it when left out.
    status, out, err = run(capsys, "train", *TINY[:-2], "--epochs", "3", "--optimizer", "sgd",
                           "--dropout", "0", "--resume", str(sgd_checkpoint),
                           "--out", str(tmp_path / "r.safetensors"))
    assert status == 0, err
    banner = out.splitlines()[0]
    assert "SGD (Nesterov 0.9)" in banner and "dropout" not in banner and "batch 32" in banner
    resumed = cr.load(tmp_path / "r.safetensors")
    assert not any(isinstance(layer, cr.Dropout) for layer in resumed.layers)
    # A first run of 2 epochs at the default lr ran its 2nd epoch at cosine(2e-3 -> 1e-5) over 2
    # epochs, epoch index 1: 1e-5 + (2e-3 - 1e-5) * (1 + cos(pi / 2)) / 2 = 1.005e-3. The new
    # options put 3e-3 + ... cosine over 3 epochs at index 1: 1e-5 + (3e-3 - 1e-5)(1 + 0.5)/2.
    planned = 1e-5 + (3e-3 - 1e-5) * 0.75
    status, out, err = run(capsys, "train", *TINY[:-2], "--epochs", "3", "--lr", "0.003",
                           "--batch-size", "64", "--resume", str(sgd_checkpoint),
                           "--out", str(tmp_path / "r2.safetensors"))
    assert status == 0, err
    assert "Traceback" not in err and "RuntimeWarning" not in err and ".py:" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 2, err  # one plain line per warning
    assert all(line.startswith("chainrule: warning: ") for line in lines)
    assert f"its epoch 2 ran at lr 0.001005, where these options (--lr 0.003, --final-lr 1e-05, " \
           f"--epochs 3) put {planned:.4g}" in err
    assert "batch_size 32 -> 64" in err and "not repeat an uninterrupted one" in err
    assert "lr 0.003" in out.splitlines()[0] and "batch 64" in out.splitlines()[0]


def test_a_closed_output_pipe_does_not_lose_the_model(tmp_path):
    """``chainrule train ... | head -3``: the reader leaves, training goes on and saves."""
    model = tmp_path / "piped.safetensors"
    process = subprocess.Popen(
        [sys.executable, "-m", "chainrule", "train", *TINY, "--epochs", "3", "--out", str(model)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        for _ in range(3):
            assert process.stdout.readline()
        process.stdout.close()  # like head -3 exiting
        err = process.stderr.read().decode()
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert "Traceback" not in err and "Broken pipe" not in err
    network = cr.load(model)
    assert (network.in_features, network.out_features) == (784, 10)


def test_evaluate_needs_only_the_test_files(capsys, tmp_path, trained):
    import shutil
    from importlib import resources

    model, _ = trained
    data = tmp_path / "mnist"
    data.mkdir()
    bundled = resources.files("chainrule.datasets").joinpath("data", "mnist")
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        with resources.as_file(bundled.joinpath(name)) as source:
            shutil.copy(source, data / name)
    status, out, err = run(capsys, "evaluate", str(model), "--data", str(data))
    assert status == 0, err
    _, (x_test, y_test) = load_mnist()
    expected = cr.load(model).evaluate(x_test, y_test)["accuracy"]
    assert f"accuracy: {100 * expected:.2f}%" in out
    (data / "t10k-labels-idx1-ubyte.gz").unlink()
    status, _, err = run(capsys, "evaluate", str(model), "--data", str(data))
    assert_one_line_error(status, err, "t10k-labels-idx1-ubyte")


def test_idx_files_holding_no_digits_are_named_before_any_work(capsys, tmp_path, trained):
    from chainrule.datasets import write_idx

    model, _ = trained
    (x, y), (x_test, y_test) = load_mnist(normalize=False, flatten=False, channels=False)
    for name, n_train, n_test in (("no_train", 0, 5), ("no_test", 50, 0)):
        data = tmp_path / name
        data.mkdir()
        write_idx(data / "train-images-idx3-ubyte", x[:n_train])
        write_idx(data / "train-labels-idx1-ubyte", y[:n_train].astype(np.uint8))
        write_idx(data / "t10k-images-idx3-ubyte", x_test[:n_test])
        write_idx(data / "t10k-labels-idx1-ubyte", y_test[:n_test].astype(np.uint8))
        empty = "train" if n_train == 0 else "t10k"
        says = f"{data}: {empty}-images-idx3-ubyte holds no digits (0 images)"
        status, out, err = run(capsys, "train", "--data", str(data), "--validation", "0" if
                               n_train == 0 else "5", "--epochs", "1", "--layers", "784,8,10",
                               "--out", str(tmp_path / "m.safetensors"))
        assert_one_line_error(status, err, says)
        assert "epoch" not in out
    status, _, err = run(capsys, "evaluate", str(model), "--data", str(tmp_path / "no_test"))
    assert_one_line_error(status, err, f"{tmp_path / 'no_test'}: t10k-images-idx3-ubyte holds no "
                          "digits (0 images)")
    assert not (tmp_path / "m.safetensors").exists()


def test_outputs_that_cannot_be_written_are_refused_before_training(capsys, tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    assert os.path.isdir("/sys")  # sysfs refuses new files, even to root
    cases = [
        (["--out", str(a_file / "m.safetensors")], f"{a_file} is a file, not a directory"),
        (["--out", "/sys/m.safetensors"], "--out /sys/m.safetensors cannot be written"),
        (["--checkpoint", "/sys/run.ckpt"], "--checkpoint /sys/run.ckpt cannot be written"),
        (["--checkpoint", str(tmp_path)], "--checkpoint", "is a directory"),
        (["--plots", "/sys/plots"], "--plots /sys/plots cannot be written"),
        (["--checkpoint", str(tmp_path / "same"), "--out", str(tmp_path / "same")],
         "--out and --checkpoint name the same file"),
    ]
    for options, *says in cases:
        extra = [] if "--out" in options else ["--out", str(tmp_path / "m.safetensors")]
        status, out, err = run(capsys, "train", *TINY, "--epochs", "1", *options, *extra)
        assert_one_line_error(status, err, *says)
        assert "epoch" not in out
    status, _, err = run(capsys, "export", str(a_file), "--onnx", "/sys/m.onnx")
    assert_one_line_error(status, err)  # (the model is checked first: not a model)


def test_a_final_lr_above_the_lr_is_refused_in_the_options_names(capsys, tmp_path):
    for model, options in (("mlp", ["--final-lr", "0.01"]), ("cnn", ["--lr", "1e-3", "--final-lr", "2e-3"])):
        status, out, err = run(capsys, "train", "--model", model, "--epochs", "1", *options,
                               "--out", str(tmp_path / "m.safetensors"))
        lr, final = ("0.002", "0.01") if model == "mlp" else ("0.001", "0.002")
        assert_one_line_error(status, err, f"--final-lr {final} is above the starting learning "
                              f"rate --lr {lr}; the cosine schedule goes down from --lr to --final-lr")
        assert "epoch" not in out
    assert not (tmp_path / "m.safetensors").exists()


def test_a_shift_too_large_is_named_by_its_option_for_both_models(capsys, tmp_path):
    for model in ("mlp", "cnn"):
        status, out, err = run(capsys, "train", "--model", model, "--shift", "14", "--epochs", "1",
                               "--out", str(tmp_path / "m.safetensors"))
        assert_one_line_error(status, err, "--shift 14 is too large: shifts of 0 to 13 pixels "
                              "fit the 28x28 digits")
        assert "epoch" not in out


def test_save_inputs_naming_a_file_is_refused_before_reading_pictures(capsys, tmp_path, trained):
    model, _ = trained
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    status, out, err = run(capsys, "predict", str(model), str(tmp_path / "absent.png"),
                           "--save-inputs", str(a_file))
    assert_one_line_error(status, err, f"--save-inputs {a_file} is a file; give a directory")
    assert err.strip().endswith("give a directory") and out == ""


@pytest.mark.parametrize("value", ["abc", "0", "-1", "2.5"])
def test_threads_option_says_auto_is_allowed(capsys, value):
    status, out, err = run(capsys, "train", "--threads", value)
    assert status == 2 and "epoch" not in out
    assert err.strip().splitlines()[-1] == ("chainrule train: error: argument --threads: expected "
                                            f"auto or a positive whole number, got {value!r}")


def test_a_picture_given_as_the_model_is_named(capsys, tmp_path, trained):
    pytest.importorskip("PIL")
    from PIL import Image

    model, _ = trained
    picture = tmp_path / "one.png"
    image = Image.new("L", (60, 60), 255)
    image.paste(0, (27, 8, 33, 52))
    image.save(picture)
    status, out, err = run(capsys, "predict", str(picture), str(model))
    assert_one_line_error(status, err, f"{picture} looks like a picture (PNG), not a model",
                          "the model comes first: chainrule predict MODEL IMAGE")
    for kind in ("JPEG", "GIF", "BMP", "TIFF", "WEBP"):
        other = tmp_path / f"digit.{kind.lower()}"
        Image.new("L", (28, 28), 255).save(other, format=kind)
        status, _, err = run(capsys, "evaluate", str(other))
        assert_one_line_error(status, err, f"looks like a picture ({'WebP' if kind == 'WEBP' else kind})")
    # The other way round: a model among the pictures is one failed file, the rest go on.
    status, out, err = run(capsys, "predict", str(model), str(model), str(picture))
    assert status == 1
    assert f"{model} is a model file, not a picture" in err
    assert out.startswith(f"{picture}: ")


def test_the_default_model_is_not_replaced_by_another_recipe(capsys, tmp_path, monkeypatch,
                                                             trained):
    """README order: `chainrule train`, then a trial with other options, then evaluate."""
    import shutil

    monkeypatch.chdir(tmp_path)
    model, _ = trained
    shutil.copy(model, tmp_path / "mnist-mlp.safetensors")
    before = (tmp_path / "mnist-mlp.safetensors").read_bytes()
    status, out, err = run(capsys, "train", *TINY, "--epochs", "1")
    assert_one_line_error(status, err, "mnist-mlp.safetensors already holds a model",
                          "--out FILE")
    assert "epoch" not in out
    assert (tmp_path / "mnist-mlp.safetensors").read_bytes() == before
    status, _, err = run(capsys, "train", *TINY, "--epochs", "1", "--out",
                         "mnist-mlp.safetensors")  # named: replaced as asked
    assert status == 0, err
    assert (tmp_path / "mnist-mlp.safetensors").read_bytes() != before


def test_weights_that_overflow_are_an_error_naming_the_cause(capsys, tmp_path):
    pytest.importorskip("PIL")
    from PIL import Image

    picture = tmp_path / "one.png"
    image = Image.new("L", (60, 60), 255)
    image.paste(0, (27, 8, 33, 52))
    image.save(picture)
    huge = cr.Network.from_sizes([784, 10], loss="cross_entropy", seed=0)
    huge.layers[0].weight[...] = 3e38
    huge.save(tmp_path / "huge.safetensors")
    status, out, err = run(capsys, "predict", str(tmp_path / "huge.safetensors"), str(picture))
    assert_one_line_error(status, err, "gives outputs that are not finite",
                          "its weights reach 3e+38", "overflow float32")
    assert out == ""
    status, _, err = run(capsys, "evaluate", str(tmp_path / "huge.safetensors"))
    assert_one_line_error(status, err, "gives outputs that are not finite")
    # With a hidden layer and biases, even the blank probe input overflows: still one line,
    # no "overflow encountered in matmul" warning before it.
    deep = cr.Network.from_sizes([784, 4, 10], loss="cross_entropy", seed=0)
    cnn = cr.Network([cr.Conv2D(1, 2, 5, stride=4, seed=0), cr.ReLU(), cr.Flatten(),
                      cr.Dense(2 * 6 * 6, 10, seed=0)], loss="cross_entropy")
    for name, net in (("deep", deep), ("cnn", cnn)):
        for tensor in net.parameters().values():
            tensor[...] = 3e38
        net.save(tmp_path / f"{name}.safetensors")
        for command in (["predict", str(tmp_path / f"{name}.safetensors"), str(picture)],
                        ["evaluate", str(tmp_path / f"{name}.safetensors")]):
            status, out, err = run(capsys, *command)
            assert_one_line_error(status, err, f"{name}.safetensors gives outputs that are not "
                                  "finite", "its weights reach 3e+38")
    broken = cr.Network.from_sizes([784, 10], loss="cross_entropy", seed=0)
    broken.layers[0].bias[3] = np.nan
    broken.save(tmp_path / "nan.safetensors")
    status, _, err = run(capsys, "predict", str(tmp_path / "nan.safetensors"), str(picture))
    assert_one_line_error(status, err, "nan.safetensors", "'0.bias' contains NaN or infinite")


def test_predict_shows_the_models_own_probabilities(capsys, tmp_path):
    """A sigmoid-output model (the tutorials' style) shows its sigmoid outputs, not a softmax."""
    pytest.importorskip("PIL")
    from PIL import Image

    from chainrule.images import load_image

    picture = tmp_path / "one.png"
    image = Image.new("L", (60, 60), 255)
    image.paste(0, (27, 8, 33, 52))
    image.save(picture)
    net = cr.Network.from_sizes([784, 10], output_activation="sigmoid", loss="squared_error",
                                seed=0)
    net.layers[0].weight[...] = 0.0
    net.layers[0].bias[...] = np.log(np.array([9, 1, 1, 1, 1, 1, 1, 1, 1, 1]) / 10 /
                                     (1 - np.array([9, 1, 1, 1, 1, 1, 1, 1, 1, 1]) / 10))
    net.save(tmp_path / "sigmoid.safetensors")
    status, out, err = run(capsys, "predict", str(tmp_path / "sigmoid.safetensors"),
                           str(picture), "--top", "2")
    assert status == 0, err
    # sigmoid(logit(0.9)) = 90.0% and 10.0%; a softmax of those outputs would say 16.6%.
    assert out.strip() == f"{picture}: 0   (0: 90.0%  1: 10.0%)"
    np.testing.assert_allclose(net.predict_proba(load_image(picture).reshape(1, -1))[0, :2],
                               [0.9, 0.1], rtol=1e-5)


def test_training_at_chance_says_so(capsys, tmp_path):
    model = tmp_path / "diverged.safetensors"
    status, out, err = run(capsys, "train", *TINY, "--epochs", "2", "--lr", "1e6",
                           "--out", str(model))
    assert status == 0, err
    accuracy = float(re.search(r"test accuracy: ([\d.]+)%", out).group(1))
    assert accuracy <= 12.3  # 3 standard errors above chance (11.35%) on 10,000 digits
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("chainrule: warning: "), err
    assert f"the test accuracy {accuracy:.2f}% is no better than chance (11.35%" in err
    assert "training diverged" in err and "--lr" in err and "smaller" in err
    status, out, err = run(capsys, "evaluate", str(model))
    assert status == 0
    assert "no better than chance (11.35%" in err and "not learned" in err


def test_validation_holds_out_every_class_of_class_sorted_data(capsys, tmp_path):
    """--validation N on data sorted by label: the old last-N split validated on classes it never
    trained on (val_accuracy 0%); the seeded stratified split trains and validates on all."""
    from chainrule.datasets import write_idx

    (x, y), (x_test, y_test) = load_mnist(normalize=False, flatten=False, channels=False)
    order = np.argsort(y[:600], kind="stable")
    data = tmp_path / "sorted"
    data.mkdir()
    write_idx(data / "train-images-idx3-ubyte", x[:600][order])
    write_idx(data / "train-labels-idx1-ubyte", y[:600][order].astype(np.uint8))
    write_idx(data / "t10k-images-idx3-ubyte", x_test[:500])
    write_idx(data / "t10k-labels-idx1-ubyte", y_test[:500].astype(np.uint8))
    assert set(y[:600][order][-150:]) <= {7, 8, 9}  # what the last rows would have held out
    status, out, err = run(capsys, "train", "--data", str(data), "--validation", "150",
                           "--layers", "784,32,10", "--epochs", "3", "--lr", "0.005",
                           "--batch-size", "32", "--progress", "lines",
                           "--out", str(tmp_path / "m.safetensors"))
    assert status == 0, err
    val = float(re.findall(r"val_accuracy ([\d.]+)%", out)[-1])
    assert val > 40.0, out  # every class trained on and validated; the last-rows split gave 0%


def test_save_inputs_keeps_one_file_per_picture_even_with_the_same_name(capsys, tmp_path, trained):
    pytest.importorskip("PIL")
    from PIL import Image

    model, _ = trained
    paths = []
    for folder, left in (("a", 20), ("b", 32)):
        (tmp_path / folder).mkdir()
        image = Image.new("L", (60, 60), 255)
        image.paste(0, (left, 8, left + 6, 52))
        image.save(tmp_path / folder / "digit.png")
        paths.append(str(tmp_path / folder / "digit.png"))
    status, _, err = run(capsys, "predict", str(model), *paths, "--save-inputs",
                         str(tmp_path / "seen"))
    assert status == 0, err
    assert sorted(p.name for p in (tmp_path / "seen").iterdir()) == [
        "digit-2-28x28.png", "digit-28x28.png"]


def test_a_named_pipe_is_named_at_once_not_read(tmp_path, trained):
    """Reading a FIFO waits for a writer for ever: every file argument is checked first."""
    model, _ = trained
    fifo = tmp_path / "pipe.safetensors"
    os.mkfifo(fifo)
    child = (
        "import signal, sys\n"
        "signal.alarm(60)  # a hang fails the test instead of blocking the suite\n"
        "from chainrule.cli import main\n"
        "m, f = sys.argv[1], sys.argv[2]\n"
        "codes = [main(['evaluate', f]), main(['predict', f, m]), main(['predict', m, f]),\n"
        "         main(['train', '--resume', f, '--out', f + '.out'])]\n"
        "print(codes)\n"
    )
    done = subprocess.run([sys.executable, "-c", child, str(model), str(fifo)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[1, 1, 1, 1]"
    lines = done.stderr.strip().splitlines()
    assert lines[0] == f"chainrule: error: {fifo} is a named pipe (FIFO), not a model file"
    assert lines[1] == lines[0]
    assert "named pipe" in lines[2] or "FIFO" in lines[2] or "not a regular file" in lines[2]
    assert lines[3] == (f"chainrule: error: --resume {fifo} is a named pipe (FIFO), "
                        "not a checkpoint file")


def test_error_messages_are_bounded():
    from chainrule.cli._common import MAX_MESSAGE, one_line

    text = one_line(ValueError("layer type " + "A" * 30_000_000))
    assert len(text) < MAX_MESSAGE + 40
    assert text.endswith(f"... ({30_000_011 - MAX_MESSAGE:,} more characters)")
    assert one_line(ValueError("short\n  and   plain")) == "short and plain"


def test_evaluate_scores_a_classifier_whose_outputs_are_not_probabilities(capsys, tmp_path):
    """Accuracy needs the largest output only: a linear squared-error network is scored too."""
    net = cr.Network.from_sizes([784, 10], loss="squared_error", seed=0)
    net.save(tmp_path / "linear.safetensors")
    status, out, err = run(capsys, "evaluate", str(tmp_path / "linear.safetensors"))
    assert status == 0, err
    _, (x_test, y_test) = load_mnist()
    right = int(np.sum(net.predict(x_test).argmax(axis=1) == y_test))
    assert f"accuracy: {right / 100:.2f}% ({right:,} of 10,000 right)" in out


def test_predict_shows_outputs_that_are_not_probabilities_as_outputs(capsys, tmp_path):
    pytest.importorskip("PIL")
    from PIL import Image

    from chainrule.images import load_image

    picture = tmp_path / "one.png"
    image = Image.new("L", (60, 60), 255)
    image.paste(0, (27, 8, 33, 52))
    image.save(picture)
    net = cr.Network.from_sizes([784, 10], loss="squared_error", seed=0)  # linear outputs
    net.save(tmp_path / "linear.safetensors")
    status, out, err = run(capsys, "predict", str(tmp_path / "linear.safetensors"), str(picture),
                           "--top", "2")
    assert status == 0, err
    outputs = net.predict(load_image(picture).reshape(1, -1))[0].astype(np.float64)
    first, second = np.argsort(-outputs, kind="stable")[:2]
    assert out.strip() == (f"{picture}: {first}   (outputs {first}: {outputs[first]:.3g}  "
                           f"{second}: {outputs[second]:.3g})")
    assert "%" not in out
