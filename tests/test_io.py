import json
import os

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import save_file

import chainrule as cr
from chainrule.io import FORMAT_VERSION


@pytest.fixture
def net():
    return cr.Network([cr.Dense(4, 6, seed=0), cr.LeakyReLU(0.2), cr.Dropout(0.1),
                       cr.Dense(6, 5, seed=1), cr.Sigmoid(scale=0.5), cr.Dense(5, 3, bias=False, seed=2)],
                      loss=cr.CrossEntropy(), optimizer=cr.Adam(lr=0.003))


def test_round_trip_gives_identical_predictions(tmp_path, net):
    path = tmp_path / "model.safetensors"
    net.save(path)
    loaded = cr.load(path)
    x = np.random.default_rng(0).normal(size=(7, 4))
    np.testing.assert_array_equal(loaded.predict(x), net.predict(x))
    assert [repr(layer) for layer in loaded.layers] == [repr(layer) for layer in net.layers]
    assert isinstance(loaded.loss, cr.CrossEntropy)
    assert loaded.optimizer.get_config() == net.optimizer.get_config()
    assert loaded.dtype == np.float32


def test_float64_round_trip(tmp_path):
    net = cr.Network.from_sizes([3, 2], dtype="float64", seed=0)
    net.save(tmp_path / "m.safetensors")
    loaded = cr.load(tmp_path / "m.safetensors")
    assert loaded.dtype == np.float64
    np.testing.assert_array_equal(loaded.parameters()["0.weight"], net.parameters()["0.weight"])


def test_file_is_plain_safetensors_with_state_dict_names(tmp_path, net):
    path = tmp_path / "model.safetensors"
    net.save(path)
    with safe_open(path, framework="numpy") as f:
        assert sorted(f.keys()) == ["0.bias", "0.weight", "3.bias", "3.weight", "5.weight"]
        assert f.get_tensor("3.weight").shape == (5, 6)
        meta = f.metadata()
    assert meta["format"] == "chainrule" and meta["format_version"] == str(FORMAT_VERSION)
    assert meta["chainrule_version"] == cr.__version__
    assert json.loads(meta["architecture"])[4] == {"type": "Sigmoid", "scale": 0.5}
    assert json.loads(meta["loss"]) == {"type": "CrossEntropy"}


def test_save_is_atomic_and_leaves_no_temporary_files(tmp_path, net, monkeypatch):
    path = tmp_path / "model.safetensors"
    net.save(path)
    original = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="No space left"):
        cr.Network.from_sizes([2, 2]).save(path)
    assert path.read_bytes() == original
    assert os.listdir(tmp_path) == ["model.safetensors"]


def _tamper(tmp_path, net, change):
    path = tmp_path / "model.safetensors"
    net.save(path)
    with safe_open(path, framework="numpy") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = f.metadata()
    change(tensors, meta)
    save_file(tensors, path, metadata=meta)
    return path


def test_missing_tensor_is_named(tmp_path, net):
    path = _tamper(tmp_path, net, lambda t, m: t.pop("3.bias"))
    with pytest.raises(cr.ModelFileError, match="missing tensor '3.bias'"):
        cr.load(path)


def test_extra_tensor_is_named(tmp_path, net):
    path = _tamper(tmp_path, net, lambda t, m: t.update({"7.weight": np.zeros(2, np.float32)}))
    with pytest.raises(cr.ModelFileError, match="unexpected tensor '7.weight'"):
        cr.load(path)


def test_misshaped_tensor_is_named(tmp_path, net):
    path = _tamper(tmp_path, net, lambda t, m: t.update({"0.weight": np.zeros((4, 6), np.float32)}))
    with pytest.raises(cr.ModelFileError, match=r"tensor '0.weight' has shape \(4, 6\), expected \(6, 4\)"):
        cr.load(path)


def test_newer_format_version_says_so(tmp_path, net):
    path = _tamper(tmp_path, net, lambda t, m: m.update({"format_version": "99"}))
    with pytest.raises(cr.ModelFileError, match="format version 99.*Upgrade chainrule"):
        cr.load(path)


def test_a_bad_optimizer_or_loss_setting_is_named_as_such(tmp_path, net):
    # Not "invalid architecture metadata": the layers are fine.
    def negative_lr(t, m):
        m["optimizer"] = json.dumps(dict(json.loads(m["optimizer"]), lr=-0.5))

    with pytest.raises(cr.ModelFileError, match=r"model\.safetensors: invalid loss or optimizer "
                       r"metadata: invalid learning rate lr -0\.5: must be >= 0\.0$"):
        cr.load(_tamper(tmp_path, net, negative_lr))
    with pytest.raises(cr.ModelFileError, match=r"model\.safetensors: invalid loss or optimizer "
                       r"metadata: unknown loss type 'hinge'; a saved loss is one of SquaredError, "
                       r"MeanSquaredError, CrossEntropy, BinaryCrossEntropy$"):
        cr.load(_tamper(tmp_path, net, lambda t, m: m.update(loss='{"type": "hinge"}')))


def test_architecture_claiming_more_than_the_file_holds(tmp_path, net):
    # A header claiming a 10**6 x 10**6 layer is refused before anything is allocated.
    def huge(t, m):
        m["architecture"] = json.dumps([{"type": "Dense", "in_features": 10**6,
                                         "out_features": 10**6, "bias": True}])
        t["0.weight"] = np.zeros((3, 3), np.float32)

    with pytest.raises(cr.ModelFileError, match=r"'0.weight' has shape \(3, 3\), expected \(1000000, 1000000\)"):
        cr.load(_tamper(tmp_path, net, huge))


def test_not_a_model_file(tmp_path):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    with pytest.raises(cr.ModelFileError, match="not a readable safetensors file"):
        cr.load(path)
    with pytest.raises(FileNotFoundError):
        cr.load(tmp_path / "absent.safetensors")


@pytest.mark.parametrize("start", [
    b"\x08\x08\x12\x09chainrule\x1a\x050.1.0",   # what chainrule export writes (ir_version 8)
    b"\x08\x07\x12\x07pytorch\x1a\x032.1",        # torch.onnx.export (ir_version 7)
    b"\x08\x0a\x3a\x90\x01\x0a\x05",             # ir_version 10, then the graph
])
def test_an_onnx_file_given_as_a_model_is_named(tmp_path, start):
    # The first 8 bytes of an ONNX file read as a safetensors header length of
    # about 10**18; the error says what the file is, not "header too large".
    path = tmp_path / "mnist.onnx"
    path.write_bytes(start + bytes(200))
    with pytest.raises(cr.ModelFileError, match=r"mnist\.onnx looks like an ONNX model \(chainrule "
                       r"reads the \.safetensors file it was exported from\), not a safetensors"):
        cr.load(path)


def test_a_safetensors_file_opening_like_onnx_still_loads(tmp_path, net):
    # A header of 0x120808 bytes makes a file start 08 08 12, as ONNX files do:
    # the guess is used only when the length does not fit the file.
    path = tmp_path / "m.safetensors"
    net.save(path)
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    padded = data[8:8 + n] + b" " * (0x120808 - n)
    path.write_bytes((0x120808).to_bytes(8, "little") + padded + data[8 + n:])
    assert path.read_bytes()[:3] == b"\x08\x08\x12"
    x = np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4)
    np.testing.assert_array_equal(cr.load(path).predict(x), net.predict(x))


def test_saved_file_gets_umask_permissions_not_private_ones(tmp_path, net):
    old = os.umask(0o022)
    try:
        net.save(tmp_path / "model.safetensors")
    finally:
        os.umask(old)
    assert (tmp_path / "model.safetensors").stat().st_mode & 0o777 == 0o644


def test_every_built_in_layer_says_which_tensors_its_settings_imply():
    """So a file's settings (a kernel size, a width) are checked against its tensors
    before anything is built: each layer type is in io's table, parameter-free, or has
    a ``state_shapes`` classmethod."""
    import chainrule.io as cio
    from chainrule.layers import _REGISTRY

    built_in = {name for name, cls in _REGISTRY.items() if cls.__module__.startswith("chainrule.")}
    uncovered = sorted(name for name in built_in - {"Layer"}
                       if name not in cio._STATE_SHAPES and name not in cio.PARAMETER_FREE
                       and not hasattr(_REGISTRY[name], "state_shapes"))
    assert uncovered == []
    # Each table entry agrees with the layer it describes, built from the same config.
    for layer in (cr.Dense(3, 2), cr.Dense(3, 2, bias=False), cr.Conv2D(2, 4, (3, 2)),
                  cr.Conv2D(1, 2, 3, bias=False), cr.BatchNorm1d(5), cr.BatchNorm2d(3, affine=False)):
        config = layer.get_config()
        shapes = cio.layer_state_shapes(0, config)
        actual = {f"0.{k}": (v.shape, None if k != "num_batches_tracked" else "int64")
                  for k, v in {**layer.parameters(), **layer.buffers()}.items()}
        assert shapes == actual, config


def test_a_kernel_size_the_tensors_do_not_back_is_refused_before_allocation(tmp_path):
    net = cr.Network([cr.Conv2D(1, 2, 3, seed=0), cr.Flatten(), cr.Dense(2 * 4 * 4, 3, seed=1)])
    huge = [dict(net.get_config()["layers"][0], in_channels=4096, kernel_size=[4096, 4096])]
    path = _tamper(tmp_path, net, lambda t, m: m.update(
        architecture=json.dumps(huge + net.get_config()["layers"][1:])))
    import tracemalloc

    tracemalloc.start()
    with pytest.raises(cr.ModelFileError, match=r"tensor '0.weight' has shape \(2, 1, 3, 3\), "
                                                r"expected \(2, 4096, 4096, 4096\)"):
        cr.load(path)
    assert tracemalloc.get_traced_memory()[1] < 2**20
    tracemalloc.stop()


def test_a_layer_class_of_ones_own_can_describe_its_tensors(tmp_path):
    class IoTestScale(cr.Layer):
        """y = x * weight (per feature)."""

        def __init__(self, features: int, dtype=None) -> None:
            self.features = features
            super().__init__()
            self.params["weight"] = np.ones(features, dtype=dtype or np.float64)
            self.grads["weight"] = np.zeros(features, dtype=dtype or np.float64)

        @classmethod
        def state_shapes(cls, config):
            if not isinstance(config.get("features"), int) or config["features"] < 1:
                raise ValueError(f"features must be a positive integer, got {config.get('features')!r}")
            return {"weight": (config["features"],)}

        def forward(self, x, training=False, *, cache=True):
            return x * self.params["weight"]

        def get_config(self):
            return {"type": "IoTestScale", "features": self.features}

    net = cr.Network([cr.Dense(3, 4, seed=0), IoTestScale(4)])
    net.layers[1].params["weight"][:] = [1, 2, 3, 4]
    net.save(tmp_path / "m.safetensors")
    loaded = cr.load(tmp_path / "m.safetensors")
    assert loaded.layers[1].params["weight"].tolist() == [1, 2, 3, 4]
    path = _tamper(tmp_path, net, lambda t, m: m.update(architecture=m["architecture"].replace(
        '"features": 4', '"features": 100000000')))
    with pytest.raises(cr.ModelFileError, match=r"'1.weight' has shape \(4,\), expected \(100000000,\)"):
        cr.load(path)
