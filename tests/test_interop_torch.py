"""PyTorch interop: model files travel both ways through plain safetensors state dicts."""

import numpy as np
import pytest

import chainrule as cr

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")
nn = torch.nn

# chainrule activation -> the torch module computing the same function
TORCH_ACTIVATION = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


def torch_mlp(sizes, activation):
    """``nn.Sequential(Linear, act, Linear, act, ..., Linear)``: indices as in chainrule.

    float32 whatever torch's default dtype (another test module may change it).
    """
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(TORCH_ACTIVATION[activation]())
    return nn.Sequential(*layers).to(torch.float32)


def torch_out(model, x):
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("activation", sorted(TORCH_ACTIVATION))
def test_chainrule_file_loads_into_torch_sequential(tmp_path, activation):
    sizes = [20, 16, 12, 4]
    net = cr.Network.from_sizes(sizes, activation=activation, seed=0)
    rng = np.random.default_rng(0)
    net.fit(rng.random((64, 20)), rng.random((64, 4)), epochs=2, verbose=0, seed=0)
    path = tmp_path / "net.safetensors"
    net.save(path)

    model = torch_mlp(sizes, activation)
    model.load_state_dict(safetensors_torch.load_file(path))  # strict: every name must match
    x = rng.random((9, 20), dtype=np.float32)
    np.testing.assert_allclose(torch_out(model, x), net.predict(x), rtol=1e-6, atol=1e-6)


def test_dropout_and_leaky_relu_keep_the_same_indices(tmp_path):
    net = cr.Network([cr.Dense(8, 6, seed=0), cr.LeakyReLU(0.1), cr.Dropout(0.3),
                      cr.Dense(6, 3, seed=1)], dtype="float64")
    net.save(tmp_path / "net.safetensors")
    model = nn.Sequential(nn.Linear(8, 6), nn.LeakyReLU(0.1), nn.Dropout(0.3), nn.Linear(6, 3))
    model.double().eval()  # before loading, so the float64 weights are not rounded to float32
    model.load_state_dict(safetensors_torch.load_file(tmp_path / "net.safetensors"))
    x = np.random.default_rng(1).normal(size=(5, 8))
    np.testing.assert_allclose(torch_out(model, x), net.predict(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("activation", sorted(TORCH_ACTIVATION))
def test_torch_state_dict_loads_into_chainrule(tmp_path, activation):
    torch.manual_seed(0)
    sizes = [30, 24, 10]
    model = torch_mlp(sizes, activation)
    path = tmp_path / "torch.safetensors"
    safetensors_torch.save_file(model.state_dict(), path)

    net = cr.load(path, architecture=cr.Network.from_sizes(sizes, activation=activation))
    x = np.random.default_rng(2).random((7, 30), dtype=np.float32)
    np.testing.assert_allclose(net.predict(x), torch_out(model, x), rtol=1e-6, atol=1e-6)
    # The loaded network trains and saves like any other.
    net.save(tmp_path / "back.safetensors")
    np.testing.assert_array_equal(cr.load(tmp_path / "back.safetensors").predict(x), net.predict(x))


def test_a_plain_state_dict_needs_its_architecture_and_errors_name_tensors(tmp_path):
    model = torch_mlp([30, 24, 10], "relu")
    path = tmp_path / "torch.safetensors"
    safetensors_torch.save_file(model.state_dict(), path)
    with pytest.raises(cr.ModelFileError, match="no chainrule metadata.*architecture="):
        cr.load(path)
    with pytest.raises(cr.ModelFileError, match=r"tensor '0.weight' has shape \(24, 30\), "
                                                r"expected \(16, 30\)\. The file holds: 0.bias \(24,\), 0.weight"):
        cr.load(path, architecture=cr.Network.from_sizes([30, 16, 10]))
    with pytest.raises(cr.ModelFileError, match="missing tensor '4.weight'"):
        cr.load(path, architecture=cr.Network.from_sizes([30, 24, 10, 10]))
    wrapped = {f"body.{k}": v for k, v in model.state_dict().items()}
    safetensors_torch.save_file(wrapped, path)
    with pytest.raises(cr.ModelFileError, match="missing tensor '0.weight'.*body.0.weight"):
        cr.load(path, architecture=cr.Network.from_sizes([30, 24, 10]))
    safetensors_torch.save_file({k: v.to(torch.int32) for k, v in model.state_dict().items()}, path)
    with pytest.raises(cr.ModelFileError, match="has dtype int32; weights must be float"):
        cr.load(path, architecture=cr.Network.from_sizes([30, 24, 10]))
    with pytest.raises(TypeError, match="architecture must be a chainrule Network"):
        cr.load(path, architecture=[30, 24, 10])


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float64"])
def test_half_precision_state_dict_loads_in_a_fresh_process(tmp_path, dtype):
    """A state dict saved by ``safetensors.torch`` in bfloat16 loads where nothing imported
    ml_dtypes first (NumPy alone has no bfloat16): the cast is done from the raw bits."""
    import json
    import subprocess
    import sys

    torch.manual_seed(0)
    model = torch_mlp([6, 5, 3], "relu").to(getattr(torch, dtype))
    path = tmp_path / "half.safetensors"
    safetensors_torch.save_file(model.state_dict(), path)
    expected = {k: v.to(torch.float32).tolist() for k, v in model.state_dict().items()}
    code = (
        "import json, sys\n"
        "import chainrule as cr\n"
        "net = cr.load(sys.argv[1], architecture=cr.Network.from_sizes([6, 5, 3]))\n"
        "print(json.dumps({'modules': sorted(m for m in ('ml_dtypes', 'onnx', 'torch') if m in sys.modules),\n"
        "                  'params': {k: v.tolist() for k, v in net.parameters().items()},\n"
        "                  'dtype': str(net.dtype)}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                         timeout=120, check=True)
    result = json.loads(out.stdout)
    assert result["modules"] == []  # nothing that would have taught NumPy bfloat16 was imported
    assert result["dtype"] == "float32"
    # Exact: every bfloat16/float16 value is a float32 value (float64 rounds as NumPy does).
    for name, values in expected.items():
        np.testing.assert_array_equal(np.array(result["params"][name], np.float32),
                                      np.array(values, np.float32))
