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


def test_saved_file_gets_umask_permissions_not_private_ones(tmp_path, net):
    old = os.umask(0o022)
    try:
        net.save(tmp_path / "model.safetensors")
    finally:
        os.umask(old)
    assert (tmp_path / "model.safetensors").stat().st_mode & 0o777 == 0o644
