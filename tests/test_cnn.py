"""CNNs end to end: the recipe, image-shaped data, files (PyTorch both ways), checkpoints, the CLI."""

import json

import numpy as np
import pytest

import chainrule as cr
from chainrule import cli
from chainrule.augmentation import random_shift
from chainrule.layers import BatchNorm2d, Conv2D, Flatten, MaxPool2D
from chainrule.recipes_cnn import CNNRecipe, as_images, build_cnn


def small_cnn(seed=0, optimizer=None):
    return cr.Network([
        Conv2D(1, 3, 3, padding=1, bias=False, seed=seed), BatchNorm2d(3), cr.ReLU(), MaxPool2D(2),
        Flatten(), cr.Dropout(0.2, seed=seed), cr.Dense(3 * 4 * 4, 4, seed=seed + 1),
    ], loss="cross_entropy", optimizer=optimizer or cr.Adam(lr=1e-2))


@pytest.fixture
def digits():
    rng = np.random.default_rng(0)
    return rng.random((24, 1, 8, 8), dtype=np.float32), rng.integers(0, 4, 24)


def test_recipe_network_is_the_documented_one():
    net = build_cnn(CNNRecipe())
    assert [repr(layer) for layer in net.layers] == [
        "Conv2D(1, 32, kernel_size=5, padding=2)", "ReLU()", "MaxPool2D(kernel_size=2)",
        "Conv2D(32, 64, kernel_size=5, padding=2)", "ReLU()", "MaxPool2D(kernel_size=2)",
        "Flatten()", "Dense(3136, 128)", "ReLU()", "Dropout(p=0.3)", "Dense(128, 10)",
    ]
    # 32*25 + 32, 64*32*25 + 64, 3136*128 + 128, 128*10 + 10
    assert sum(p.size for p in net.parameters().values()) == 832 + 51_264 + 401_536 + 1_290
    summary = net.summary(input_shape=(1, 28, 28))
    assert "(batch, 32, 28, 28)" in summary and "(batch, 64, 7, 7)" in summary
    assert "(batch, 3136)" in summary and "total parameters: 454,922" in summary
    with_bn = build_cnn(CNNRecipe(batch_norm=True))
    assert [type(layer).__name__ for layer in with_bn.layers[:3]] == ["Conv2D", "BatchNorm2d", "ReLU"]
    assert not with_bn.layers[0].use_bias  # BatchNorm's shift makes a bias redundant


def test_image_data_flows_through_fit_predict_evaluate(digits):
    x, y = digits
    net = small_cnn()
    history = net.fit(x, y, epochs=2, batch_size=8, seed=0, verbose=0,
                      augment=random_shift(1, image_shape=(8, 8)))
    assert len(history) == 2 and np.isfinite(history["loss"]).all()
    assert net.predict(x).shape == (24, 4) and net.predict(x[0]).shape == (4,)
    assert 0.0 <= net.evaluate(x, y)["accuracy"] <= 1.0
    with pytest.raises(ValueError, match=r"images shaped \(n, C, H, W\), got shape \(24, 64\)"):
        net.fit(x.reshape(24, -1), y, epochs=1, verbose=0)


def test_random_shift_moves_image_batches_like_flat_ones():
    x = np.random.default_rng(1).random((30, 784), dtype=np.float32)
    flat = random_shift(2)(x, np.random.default_rng(5))
    images = random_shift(2)(x.reshape(30, 1, 28, 28), np.random.default_rng(5))
    np.testing.assert_array_equal(images.reshape(30, 784), flat)
    # all channels of an image move together
    two = np.repeat(x.reshape(30, 1, 28, 28), 2, axis=1)
    moved = random_shift(2)(two, np.random.default_rng(5))
    np.testing.assert_array_equal(moved[:, 0], moved[:, 1])
    with pytest.raises(ValueError, match=r"images shaped \(n, C, 28, 28\)"):
        random_shift(2)(np.zeros((3, 1, 27, 28)), np.random.default_rng(0))


def test_as_images():
    x = np.zeros((5, 784))
    assert as_images(x).shape == (5, 1, 28, 28)
    assert as_images(x.reshape(5, 28, 28)).shape == (5, 1, 28, 28)
    with pytest.raises(ValueError, match="cannot read inputs of shape"):
        as_images(np.zeros((5, 100)))


def test_checkpoint_resume_is_bit_identical_with_batchnorm(tmp_path, digits):
    x, y = digits
    whole = small_cnn()
    whole.fit(x, y, epochs=4, batch_size=8, seed=3, verbose=0)
    first = small_cnn()
    first.fit(x, y, epochs=2, batch_size=8, seed=3, verbose=0,
              checkpoint=tmp_path / "run.safetensors")
    resumed = small_cnn()
    resumed.fit(x, y, epochs=4, batch_size=8, seed=3, verbose=0,
                resume=tmp_path / "run.safetensors")
    assert resumed.layers[1].num_batches_tracked == whole.layers[1].num_batches_tracked == 12
    for name, value in whole.state_dict().items():
        np.testing.assert_array_equal(resumed.state_dict()[name], value, err_msg=name)


def test_saved_cnn_loads_with_its_buffers(tmp_path, digits):
    x, y = digits
    net = small_cnn()
    net.fit(x, y, epochs=1, batch_size=8, seed=0, verbose=0)
    net.save(tmp_path / "cnn.safetensors")
    back = cr.load(tmp_path / "cnn.safetensors")
    assert back.takes_images
    for name, value in net.state_dict().items():
        np.testing.assert_array_equal(back.state_dict()[name], value, err_msg=name)
    assert back.buffers()["1.num_batches_tracked"].shape == ()
    np.testing.assert_array_equal(back.predict(x), net.predict(x))


def test_hostile_conv_configs_are_refused_before_building(tmp_path):
    """A kernel size or channel count the tensors do not back is refused from the header."""
    from safetensors.numpy import load_file, save_file

    from chainrule.io import DIGEST_KEY, tensor_digest

    net = small_cnn()
    net.save(tmp_path / "good.safetensors")
    tensors = load_file(tmp_path / "good.safetensors")
    from safetensors import safe_open

    with safe_open(tmp_path / "good.safetensors", framework="numpy") as f:
        metadata = dict(f.metadata())
    for change, message in (
        ({"kernel_size": [4096, 4096]}, r"tensor '0.weight' has shape \(3, 1, 3, 3\), expected \(3, 1, 4096, 4096\)"),
        ({"out_channels": 10**9}, r"expected \(1000000000, 1, 3, 3\)"),
        ({"kernel_size": [0, 3]}, "kernel_size"),
    ):
        layers = json.loads(metadata["architecture"])
        layers[0].update(change)
        bad = dict(metadata, architecture=json.dumps(layers))
        bad[DIGEST_KEY] = tensor_digest(tensors, bad)
        save_file(tensors, tmp_path / "bad.safetensors", metadata=bad)
        with pytest.raises(cr.ModelFileError, match=message):
            cr.load(tmp_path / "bad.safetensors")


def _small_mnist(directory, n_train=256, n_test=300):
    """A few training and test digits as MNIST's four IDX files (the full test set is slow here)."""
    from chainrule.datasets import load_mnist, write_idx

    (x, y), (x_test, y_test) = load_mnist(normalize=False)
    directory.mkdir()
    write_idx(directory / "train-images-idx3-ubyte", x[:n_train].reshape(-1, 28, 28))
    write_idx(directory / "train-labels-idx1-ubyte", y[:n_train].astype(np.uint8))
    write_idx(directory / "t10k-images-idx3-ubyte", x_test[:n_test].reshape(-1, 28, 28))
    write_idx(directory / "t10k-labels-idx1-ubyte", y_test[:n_test].astype(np.uint8))
    return str(directory)


def test_cli_trains_evaluates_predicts_and_exports_a_cnn(tmp_path, capsys):
    data = _small_mnist(tmp_path / "mnist")
    model = tmp_path / "cnn.safetensors"
    status = cli.main(["train", "--model", "cnn", "--data", data, "--epochs", "1",
                       "--batch-size", "64", "--out", str(model), "-q"])
    out = capsys.readouterr().out
    assert status == 0 and "test accuracy:" in out and "of 300)" in out and model.exists()
    assert cr.load(model).takes_images
    assert cli.main(["evaluate", str(model), "--data", data]) == 0
    assert "CNN conv 32-64, dense 3136-128-10, 454,922 parameters" in capsys.readouterr().out
    assert cli.main(["export", str(model), "--onnx", str(tmp_path / "cnn.onnx")]) == 0
    assert (tmp_path / "cnn.onnx").stat().st_size > 1_000_000
    assert cli.main(["train", "--model", "cnn", "--layers", "784,10", "--out",
                     str(tmp_path / "x.safetensors")]) == 1
    assert "--layers sets up the MLP" in capsys.readouterr().err


def test_cli_resumes_a_cnn_run_bit_for_bit(tmp_path, capsys):
    data = _small_mnist(tmp_path / "mnist", n_train=64, n_test=20)
    common = ["train", "--model", "cnn", "--batch-norm", "--data", data, "--batch-size", "32", "-q"]
    assert cli.main([*common, "--epochs", "2", "--out", str(tmp_path / "whole.safetensors")]) == 0
    assert cli.main([*common, "--epochs", "1", "--out", str(tmp_path / "half.safetensors"),
                     "--checkpoint", str(tmp_path / "run.safetensors")]) == 0
    assert cli.main([*common, "--epochs", "2", "--out", str(tmp_path / "resumed.safetensors"),
                     "--resume", str(tmp_path / "run.safetensors")]) == 0
    whole = cr.load(tmp_path / "whole.safetensors").state_dict()
    resumed = cr.load(tmp_path / "resumed.safetensors").state_dict()
    assert "1.running_var" in whole
    for name, value in whole.items():
        np.testing.assert_array_equal(resumed[name], value, err_msg=name)
