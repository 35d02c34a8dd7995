"""ONNX export: the file passes onnx.checker and onnxruntime reproduces chainrule's outputs."""

import numpy as np
import pytest

import chainrule as cr
from chainrule.export import DEFAULT_OPSET, ExportError, to_onnx

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def mnist():
    from chainrule.datasets import load_mnist

    return load_mnist()


def test_mnist_classifier_runs_in_onnxruntime_with_the_same_outputs(tmp_path, mnist):
    (x_train, y_train), (x_test, y_test) = mnist
    net = cr.Network.from_sizes([784, 64, 10], activation="relu", loss=cr.CrossEntropy(),
                                optimizer=cr.Adam(lr=2e-3), dropout=0.1, seed=0)
    net.fit(x_train[:2000], y_train[:2000], epochs=1, batch_size=64, seed=0, verbose=0)
    path = tmp_path / "mnist.onnx"
    net.to_onnx(path)

    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert [(o.domain, o.version) for o in model.opset_import] == [("", DEFAULT_OPSET)]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and dims[1].dim_value == 784
    assert [node.op_type for node in model.graph.node] == ["Gemm", "Relu", "Identity", "Gemm"]

    run = session(path)
    out = run.run(["output"], {"input": x_test})[0]  # all 10,000 test digits at once
    expected = net.predict(x_test)
    assert out.dtype == np.float32 and out.shape == (10_000, 10)
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-5)
    assert (out.argmax(axis=1) == y_test).mean() > 0.8  # it learned something worth exporting
    # The batch dimension is dynamic: any batch size runs.
    for n in (1, 7):
        np.testing.assert_allclose(run.run(None, {"input": x_test[:n]})[0], expected[:n],
                                   rtol=0, atol=1e-5)


@pytest.mark.parametrize("layers, ops", [
    ([cr.Dense(5, 4, seed=0), cr.Sigmoid(), cr.Dense(4, 3, bias=False, seed=1), cr.Softmax()],
     ["Gemm", "Sigmoid", "Gemm", "Softmax"]),
    ([cr.Dense(5, 4, seed=0), cr.Sigmoid(scale=0.01), cr.Dense(4, 3, seed=1), cr.Tanh()],
     ["Gemm", "Mul", "Sigmoid", "Gemm", "Tanh"]),
    ([cr.Dense(5, 4, seed=0), cr.LeakyReLU(0.2), cr.Dropout(0.5, seed=0), cr.Dense(4, 3, seed=1),
      cr.Identity()], ["Gemm", "PRelu", "Identity", "Gemm", "Identity"]),
])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_layer_type_exports_and_matches(tmp_path, layers, ops, dtype):
    import copy

    net = cr.Network(copy.deepcopy(layers), dtype=dtype)
    for layer in net.layers:  # non-zero biases, so they are checked too
        if "bias" in layer.params:
            layer.params["bias"][...] = np.linspace(-1, 1, layer.params["bias"].size)
    model = to_onnx(net, tmp_path / "m.onnx")
    assert [node.op_type for node in model.graph.node] == ops
    x = np.random.default_rng(0).normal(0, 3, (11, 5)).astype(dtype)
    out = session(tmp_path / "m.onnx").run(None, {"input": x})[0]
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_allclose(out, net.predict(x), rtol=0, atol=1e-6 if dtype == "float32" else 1e-12)


def test_every_built_in_layer_has_an_exporter():
    from chainrule.export.onnx import _exporters
    from chainrule.layers import _REGISTRY

    built_in = {cls for cls in _REGISTRY.values() if cls.__module__.startswith("chainrule.")}
    assert built_in - {cr.Layer} == set(_exporters())


def test_a_layer_without_exporter_is_named(tmp_path):
    class Square(cr.Layer):
        def forward(self, x):
            self._x = x
            return x * x

        def backward(self, grad_output):
            return 2 * self._saved_input() * grad_output

    class MyDense(cr.Dense):  # a subclass may compute something else: refused too
        pass

    for odd in (Square(), MyDense(3, 3)):
        net = cr.Network([cr.Dense(4, 3, seed=0), odd])
        with pytest.raises(ExportError, match=rf"cannot export layer 1 \(.*\) to ONNX: no exporter "
                                              rf"for {type(odd).__name__}; supported layers: AvgPool2D, .*Dense"):
            net.to_onnx(tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_opset_is_stated_and_checked(tmp_path):
    net = cr.Network.from_sizes([3, 2], seed=0)
    model = to_onnx(net, opset=13)
    assert model.opset_import[0].version == 13
    assert model.ir_version == onnx.helper.find_min_ir_version_for(list(model.opset_import))
    assert model.producer_name == "chainrule" and model.producer_version == cr.__version__
    with pytest.raises(ValueError, match="opset must be >= 13"):
        to_onnx(net, opset=11)


# -- convolutional networks ------------------------------------------------------------


def test_cnn_with_batchnorm_matches_on_all_test_digits(tmp_path, mnist):
    from chainrule.layers import BatchNorm2d, Conv2D, Flatten, MaxPool2D

    (x_train, y_train), (x_test, y_test) = mnist
    images, test_images = x_train.reshape(-1, 1, 28, 28), x_test.reshape(-1, 1, 28, 28)
    net = cr.Network([
        Conv2D(1, 4, 5, padding=2, bias=False, seed=0), BatchNorm2d(4), cr.ReLU(), MaxPool2D(2),
        Conv2D(4, 8, 3, stride=2, seed=1), cr.ReLU(), MaxPool2D(2), Flatten(),
        cr.Dropout(0.1, seed=0), cr.Dense(72, 10, seed=2),
    ], loss="cross_entropy", optimizer=cr.Adam(lr=1e-2))
    net.fit(images[:2000], y_train[:2000], epochs=1, batch_size=32, seed=0, verbose=0)
    assert net.layers[1].num_batches_tracked > 0  # running statistics moved off (0, 1)
    model = net.to_onnx(tmp_path / "cnn.onnx")
    assert [node.op_type for node in model.graph.node] == [
        "Conv", "BatchNormalization", "Relu", "MaxPool", "Conv", "Relu", "MaxPool", "Flatten",
        "Identity", "Gemm"]
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 1, "height", "width"]

    run = session(tmp_path / "cnn.onnx")
    out = run.run(["output"], {"input": test_images})[0]  # all 10,000 test digits
    expected = net.predict(test_images)
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-5)
    assert (out.argmax(axis=1) == y_test).mean() > 0.6  # a tiny CNN after 63 steps: it learned
    for n in (1, 3):  # dynamic batch
        np.testing.assert_allclose(run.run(None, {"input": test_images[:n]})[0], expected[:n],
                                   rtol=0, atol=1e-5)


def test_each_image_layer_exports_and_matches(tmp_path):
    dtype = "float32"
    from chainrule.layers import AvgPool2D, BatchNorm1d, BatchNorm2d, Conv2D, Flatten, MaxPool2D

    rng = np.random.default_rng(0)
    bn2, bn1 = BatchNorm2d(3), BatchNorm1d(4, affine=False)
    net = cr.Network([
        Conv2D(2, 3, (3, 2), stride=(2, 1), padding=(1, 0), seed=0), bn2, cr.Tanh(),
        MaxPool2D(2, stride=1), AvgPool2D((2, 3)), Flatten(), cr.Dense(12, 4, seed=1), bn1,
        cr.Dense(4, 2, seed=2),
    ], dtype=dtype)
    for bn in (bn2, bn1):  # running statistics and scales away from their initial values
        bn.running_mean[...] = rng.normal(size=bn.num_features)
        bn.running_var[...] = rng.uniform(0.5, 2.0, size=bn.num_features)
    bn2.params["weight"][...] = rng.normal(size=3)
    bn2.params["bias"][...] = rng.normal(size=3)
    model = to_onnx(net, tmp_path / "m.onnx", input_shape=(2, 9, 8))
    assert [node.op_type for node in model.graph.node] == [
        "Conv", "BatchNormalization", "Tanh", "MaxPool", "AveragePool", "Flatten", "Gemm",
        "BatchNormalization", "Gemm"]
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 2, 9, 8]
    x = rng.normal(size=(5, 2, 9, 8)).astype(dtype)
    out = session(tmp_path / "m.onnx").run(None, {"input": x})[0]
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_allclose(out, net.predict(x), rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="3 channels; layer 0"):
        to_onnx(net, input_shape=(3, 9, 8))
    # float64 exports and passes the checker; onnxruntime's CPU provider has no
    # double-precision Conv to run it with.
    model = to_onnx(net.astype("float64"))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
