"""Network at hand-computed points: a training step, inference, state, checks and messages."""

from __future__ import annotations

import gc

import numpy as np
import pytest

import chainrule as cr
from chainrule.network import check_tensors


def linear_net(**kwargs):
    """y = [[1, 2], [0, -1]] x + [0.5, 0]: every number below follows by hand."""
    layer = cr.Dense(2, 2)
    layer.weight = [[1.0, 2.0], [0.0, -1.0]]
    layer.bias = [0.5, 0.0]
    return cr.Network([layer], dtype="float64", **kwargs)


def test_train_step_by_hand(kernel_path):
    net = linear_net(optimizer=cr.SGD(lr=0.1))
    x = np.array([[1.0, 1.0], [2.0, 0.0]])
    y = np.array([[3.0, -1.0], [2.0, 1.0]])
    # out = [[3.5, -1], [2.5, 0]], diff = [[0.5, 0], [0.5, -1]], loss = (0.25 + 1.25) / 2
    assert net.train_step(x, y) == pytest.approx(0.75, rel=1e-15)
    # dL/dout = diff (2/n = 1); dW = diff.T @ x = [[1.5, 0.5], [-2, 0]]; db = [1, -1]
    np.testing.assert_allclose(net.layers[0].weight, [[0.85, 1.95], [0.2, -1.0]], rtol=1e-15)
    np.testing.assert_allclose(net.layers[0].bias, [0.4, 0.1], rtol=1e-15)
    assert net.optimizer.steps == 1


def test_train_step_with_weights_and_two_layers(kernel_path):
    first = cr.Dense(2, 1, bias=False)
    first.weight = [[1.0, -1.0]]
    second = cr.Dense(1, 1, bias=False)
    second.weight = [[2.0]]
    net = cr.Network([first, second], optimizer=cr.SGD(lr=0.5), dtype="float64")
    x, y = np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([[1.0], [0.0]])
    # h = [1, -1], out = [2, -2], diff = [1, -2]; weights [1, 0]: loss = 1 / 2 (n = 2)
    assert net.train_step(x, y, sample_weight=[1.0, 0.0]) == pytest.approx(0.5)
    # dL/dout = [1, 0] (2 * w * diff / n); dW2 = sum g h = 1; dh = g * 2 = [2, 0]; dW1 = [2, 0]
    np.testing.assert_allclose(second.weight, [[1.5]])
    np.testing.assert_allclose(first.weight, [[0.0, -1.0]])
    net.train_step(x, y)  # unweighted after a weighted one: the usual mean
    # h = [0, -1], out = [0, -1.5], diff = [-1, -1.5], loss = (1 + 2.25) / 2
    # g = diff; dW2 = sum g h = 1.5 -> 1.5 - 0.75 = 0.75; dh = 1.5 g; dW1 = [-1.5, -2.25]
    np.testing.assert_allclose(second.weight, [[0.75]])
    np.testing.assert_allclose(first.weight, [[0.75, 0.125]])


def test_non_finite_loss_leaves_the_weights(kernel_path):
    net = linear_net(optimizer=cr.SGD(lr=0.1))
    before = net.layers[0].weight.copy()
    with pytest.raises(cr.errors.NonFiniteLossError, match=r"^the loss is inf; the weights were "
                                                           r"left as they were$"):
        net.train_step(np.array([[1e300, 1e300]]), np.array([[0.0, 0.0]]))
    np.testing.assert_array_equal(net.layers[0].weight, before)
    assert net.optimizer.steps == 0


def test_forward_backward_and_modes():
    net = cr.Network([cr.Dense(2, 3, seed=0), cr.Dropout(0.5, seed=1), cr.Dense(3, 1, seed=2)],
                     dtype="float64")
    x = np.ones((4, 2))
    assert net.training is True
    assert net.eval() is net and net.training is False
    np.testing.assert_array_equal(net(x), net.predict(x))
    assert net.train() is net and net.training is True
    assert not np.array_equal(net.forward(x), net.predict(x))  # dropout active
    np.testing.assert_array_equal(net.forward(x, training=False), net.predict(x))
    np.testing.assert_array_equal(net(x, training=False), net.predict(x))
    net.eval()
    assert not np.array_equal(net(x, training=True), net.predict(x))
    net.train()
    net.train(0)
    assert net.training is False
    # backward of a given gradient: through Dense 2 (no dropout in eval), then Dense 1
    net.forward(x)
    g = np.ones((4, 1))
    expected = g @ net.layers[2].weight @ net.layers[0].weight
    np.testing.assert_allclose(net.backward(g), expected, rtol=1e-14)
    # backward of the loss by default
    net.loss.forward(net.forward(x), np.zeros((4, 1)))
    np.testing.assert_allclose(net.backward(), net.loss.backward() @ net.layers[2].weight
                               @ net.layers[0].weight, rtol=1e-14)


def test_one_sample_forward_and_predict():
    net = linear_net()
    np.testing.assert_array_equal(net.forward([1.0, 1.0]), [3.5, -1.0])
    np.testing.assert_array_equal(net.predict([1, 1]), [3.5, -1.0])
    np.testing.assert_array_equal(net.backward(np.array([1.0, 1.0])), [1.0, 1.0])


def test_predict_in_batches_and_empty():
    net = linear_net()
    x = np.arange(10.0).reshape(5, 2)
    expected = x @ np.array([[1.0, 2.0], [0.0, -1.0]]).T + [0.5, 0.0]
    for batch_size in (None, 1, 2, 5, 7):
        np.testing.assert_array_equal(net.predict(x, batch_size=batch_size, threads=1), expected)
    np.testing.assert_array_equal(net.predict(x, batch_size=2), expected)
    assert net.predict(np.zeros((0, 2)), batch_size=2).shape == (0, 2)


def test_predict_proba_links():
    x = np.array([[1.0, 0.0]])
    out = np.array([[1.5, 0.0]])
    soft = np.exp(out) / np.exp(out).sum()
    np.testing.assert_allclose(linear_net(loss="cross_entropy").predict_proba(x), soft)
    np.testing.assert_allclose(linear_net(loss="binary_cross_entropy").predict_proba(x),
                               1 / (1 + np.exp(-out)))
    layer = cr.Dense(2, 2)
    layer.weight = [[1.0, 2.0], [0.0, -1.0]]
    with_sigmoid = cr.Network([layer, cr.Sigmoid(), cr.Dropout(0.5), cr.Identity()],
                              dtype="float64")
    np.testing.assert_allclose(with_sigmoid.predict_proba(x), 1 / (1 + np.exp(-np.array([[1.0, 0.0]]))))
    with pytest.raises(ValueError, match=r"^this network's outputs are not probabilities: it ends "
                                         r"in Dense\(2, 2\) and is trained with SquaredError\(\), "
                                         r"a regression\. Use predict\(\)"):
        linear_net().predict_proba(x)
    only_identity = cr.Network([cr.Identity()])
    assert only_identity._output_layer() is only_identity.layers[0]
    passing = cr.Network([cr.Identity(), cr.Identity(), cr.Dropout(0.1)])
    with pytest.raises(ValueError, match=r"it ends in Dropout\(p=0\.1\) and is trained"):
        passing.predict_proba(np.ones((1, 2)))


def test_evaluate_values():
    net = linear_net(loss="cross_entropy")
    x = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # logits [1.5, 0], [2.5, -1], [3.5, -1]
    result = net.evaluate(x, [0, 1, 1])
    lse = lambda a, b: np.log(np.exp(a) + np.exp(b))  # noqa: E731
    expected = (lse(1.5, 0) - 1.5 + lse(2.5, -1) + 1 + lse(3.5, -1) + 1) / 3
    assert result == {"loss": pytest.approx(expected, rel=1e-14), "accuracy": pytest.approx(1 / 3)}
    onehot = net.evaluate(x, np.eye(2)[[0, 1, 1]], batch_size=2)
    assert onehot["accuracy"] == pytest.approx(1 / 3)
    weighted = net.evaluate(x, [0, 1, 1], sample_weight=[1.0, 0.0, 0.0])
    assert weighted["accuracy"] == 1.0
    assert weighted["loss"] == pytest.approx((lse(1.5, 0) - 1.5) / 3, rel=1e-14)
    balanced = net.evaluate(x, [0, 1, 1], class_weight="balanced")
    assert balanced["loss"] == pytest.approx(
        (1.5 * (lse(1.5, 0) - 1.5) + 0.75 * (lse(2.5, -1) + 1 + lse(3.5, -1) + 1)) / 3, rel=1e-14)
    assert set(linear_net().evaluate(x, np.zeros((3, 2)))) == {"loss"}
    with pytest.raises(ValueError, match=r"^cannot evaluate on 0 samples$"):
        net.evaluate(np.zeros((0, 2)), [])


def test_names_state_and_loading():
    net = cr.Network([cr.Dense(2, 3, seed=0), cr.ReLU(), cr.Dense(3, 1, bias=False, seed=1)],
                     dtype="float64")
    names = ["0.weight", "0.bias", "2.weight"]
    assert list(net.parameters()) == names and list(net.state_dict()) == names
    assert list(net.gradients()) == names and net.buffers() == {}
    assert net.parameters()["2.weight"] is net.layers[2].weight
    assert net.gradients()["0.bias"] is net.layers[0].grads["bias"]
    other = cr.Network([cr.Dense(2, 3, seed=5), cr.ReLU(), cr.Dense(3, 1, bias=False, seed=6)],
                       dtype="float64")
    net.load_parameters(other.state_dict())
    for name in names:
        np.testing.assert_array_equal(net.parameters()[name], other.parameters()[name])
    net.load_state_dict({k: v.tolist() for k, v in cr.Network(
        [cr.Dense(2, 3, seed=9), cr.ReLU(), cr.Dense(3, 1, bias=False, seed=8)]).state_dict().items()})
    assert net.parameters()["0.bias"].dtype == np.float64


def test_check_tensors_messages():
    expected = {"0.weight": (2, 3), "0.bias": (2,)}
    good = {"0.weight": np.zeros((2, 3)), "0.bias": np.zeros(2)}
    check_tensors(expected, good)
    with pytest.raises(ValueError, match=r"^missing tensor '0\.bias' \(expected shape \(2,\)\)$"):
        check_tensors(expected, {"0.weight": np.zeros((2, 3))})
    with pytest.raises(ValueError, match=r"^unexpected tensor 'x': this network has no such "
                                         r"parameter$"):
        check_tensors(expected, {**good, "x": np.zeros(1)})
    with pytest.raises(ValueError, match=r"^tensor '0\.weight' has shape \(3, 2\), expected "
                                         r"\(2, 3\)$"):
        check_tensors(expected, {**good, "0.weight": np.zeros((3, 2))})
    with pytest.raises(ValueError, match=r"^tensor '0\.bias' contains NaN or infinite values$"):
        check_tensors(expected, {**good, "0.bias": np.array([0.0, np.inf])})


def test_astype_converts_parameters_and_optimizer_state(kernel_path):
    net = linear_net(optimizer=cr.Adam(lr=0.1))
    net.train_step(np.ones((1, 2)), np.zeros((1, 2)))
    assert net.astype("float32") is net and net.dtype == np.float32
    assert net.layers[0].weight.dtype == np.float32
    assert all(v.dtype == np.float32 for s in net.optimizer.state for v in s.values())
    assert net.predict(np.ones((1, 2))).dtype == np.float32
    with pytest.raises(ValueError, match=r"^dtype must be float32 or float64, got float16$"):
        net.astype("float16")
    with pytest.raises(ValueError, match=r"^dtype must be float32 or float64, got int64$"):
        cr.Network([cr.ReLU()], dtype="int64")


def test_widths_and_repr():
    net = cr.Network([cr.Dense(4, 3), cr.ReLU(), cr.Dropout(0.1), cr.Dense(3, 2)])
    assert net.in_features == 4 and net.out_features == 2 and not net.takes_images
    assert cr.Network([cr.ReLU()]).in_features is None
    assert cr.Network([cr.ReLU()]).out_features is None
    assert cr.Network([cr.ReLU(), cr.Dense(3, 5)]).out_features == 5
    assert repr(net) == ("Network([Dense(4, 3), ReLU(), Dropout(p=0.1), Dense(3, 2)], "
                         "loss=SquaredError(), dtype='float32')")
    assert net.layers[3].name == "layer 3 (Dense(3, 2))"
    assert net.get_config() == {
        "layers": [layer.get_config() for layer in net.layers],
        "loss": {"type": "SquaredError"}, "optimizer": net.optimizer.get_config(),
        "dtype": "float32"}
    assert net.optimizer.get_config()["lr"] == 0.01 and type(net.optimizer) is cr.SGD


def test_summary_table():
    net = cr.Network([cr.Dense(4, 3), cr.ReLU(), cr.Dense(3, 2, bias=False)],
                     optimizer=cr.SGD(lr=0.5))
    text = net.summary()
    assert repr(text) == str(text)
    assert str(text).splitlines() == [
        "#  layer                    output shape  parameters",
        "----------------------------------------------------",
        "0  Dense(4, 3)              (batch, 3)            15",
        "1  ReLU()                   (batch, 3)             0",
        "2  Dense(3, 2, bias=False)  (batch, 2)             6",
        "----------------------------------------------------",
        "total parameters: 21   dtype: float32",
        "loss: SquaredError()   optimizer: SGD(lr=0.5, momentum=0.0, nesterov=False, "
        "weight_decay=0.0, decay_1d=True)",
    ]
    starts_flat = cr.Network([cr.ReLU(), cr.Dense(3, 2)]).summary().splitlines()
    assert starts_flat[2].split()[:4] == ["0", "ReLU()", "(batch,", "3)"]
    deep = cr.Network([cr.Dense(2, 2)] + [cr.ReLU() for _ in range(10)])
    rows = deep.summary().splitlines()
    assert rows[0].startswith(" #  layer") and rows[12].startswith("10  ReLU()")
    images = cr.Network([cr.Flatten(), cr.Dense(12, 2)])
    rows = images.summary().splitlines()
    assert rows[2].split()[:3] == ["0", "Flatten()", "?"] and "(batch, 2)" in rows[3]
    rows = images.summary(input_shape=(3, 2, 2)).splitlines()
    assert "(batch, 12)" in rows[2] and "(batch, 2)" in rows[3]

    class Printer:
        def text(self, value):
            self.seen = value

    printer = Printer()
    text._repr_pretty_(printer, False)
    assert printer.seen == str(text)


def test_from_sizes_structure():
    net = cr.Network.from_sizes([3, 4, 4, 2], activation="tanh", output_activation="sigmoid",
                                dropout=0.25, seed=0, bias=False, dtype="float64")
    kinds = [type(layer).__name__ for layer in net.layers]
    assert kinds == ["Dense", "Tanh", "Dropout", "Dense", "Tanh", "Dropout", "Dense", "Sigmoid"]
    assert net.layers[2].p == 0.25 and net.layers[2].rng is not net.layers[5].rng
    assert net.layers[0].bias is None and net.dtype == np.float64
    again = cr.Network.from_sizes([3, 4, 4, 2], activation="tanh", output_activation="sigmoid",
                                  dropout=0.25, seed=0, bias=False, dtype="float64")
    for name, value in net.parameters().items():
        np.testing.assert_array_equal(value, again.parameters()[name])
    plain = cr.Network.from_sizes([3, 2], activation=cr.ReLU(), seed=1)
    assert [type(layer).__name__ for layer in plain.layers] == ["Dense"]
    # He initialisation for relu (variance 2 / fan_in), Glorot otherwise (2 / (fan_in + fan_out))
    wide = cr.Network.from_sizes([400, 400, 1], activation="relu", seed=0)
    assert np.var(wide.layers[0].weight) == pytest.approx(2 / 400, rel=0.05)
    wide = cr.Network.from_sizes([400, 400, 1], activation=cr.ReLU(), seed=0)
    assert np.var(wide.layers[0].weight) == pytest.approx(2 / 400, rel=0.05)
    wide = cr.Network.from_sizes([400, 400, 1], activation=cr.LeakyReLU(0.1), seed=0)
    assert np.var(wide.layers[0].weight) == pytest.approx(2 / 400, rel=0.05)
    wide = cr.Network.from_sizes([400, 400, 1], activation="tanh", seed=0)
    assert np.var(wide.layers[0].weight) == pytest.approx(2 / 800, rel=0.05)
    for sizes in ([3], [3, 0], [0, 3]):
        with pytest.raises(ValueError, match=r"^sizes needs at least two positive widths, got "):
            cr.Network.from_sizes(sizes)
    with pytest.raises(TypeError):
        cr.Network.from_sizes([3, 2.5])
    with pytest.raises(ValueError, match="unknown activation"):
        cr.Network.from_sizes([3, 2], activation="nope")


def test_construction_errors():
    with pytest.raises(ValueError, match=r"^a Network needs at least one layer$"):
        cr.Network([])
    with pytest.raises(TypeError, match=r"^layers\[1\] is 'relu', not a chainrule Layer$"):
        cr.Network([cr.Dense(2, 2), "relu"])
    relu = cr.ReLU()
    with pytest.raises(ValueError, match=r"^layers\[2\] appears twice; each position needs its "
                                         r"own layer$"):
        cr.Network([relu, cr.Dense(2, 2), relu])
    with pytest.raises(ValueError, match=r"^layer 2 \(Dense\(3, 1\)\) expects 3 input features but "
                                         r"the layer before it produces 2$"):
        cr.Network([cr.Dense(4, 2), cr.ReLU(), cr.Dense(3, 1)])
    with pytest.raises(ValueError, match=r"^CrossEntropy needs one output"):
        cr.Network([cr.Dense(2, 1)], loss="cross_entropy")
    with pytest.raises(ValueError, match=r"^layer 1 \(Softmax\(\)\) ends the network, but "
                                         r"CrossEntropy\(\) takes logits and applies the softmax "
                                         r"itself, so it would be applied twice; remove the last "
                                         r"layer \(predict_proba applies the softmax where "
                                         r"you want probabilities\)$"):
        cr.Network([cr.Dense(2, 2), cr.Softmax()], loss="cross_entropy")
    with pytest.raises(ValueError, match=r"applies the sigmoid itself, .*\(predict_proba "
                                         r"applies the sigmoid where you want probabilities\)$"):
        cr.Network([cr.Dense(2, 2), cr.Sigmoid()], loss="binary_cross_entropy")
    cr.Network([cr.Dense(2, 2), cr.Sigmoid()], loss="cross_entropy")  # allowed: not doubled


def test_input_checks():
    net = linear_net()
    with pytest.raises(TypeError, match=r"^input must be numeric, got dtype <U1$"):
        net.predict(np.array([["a", "b"]]))
    with pytest.raises(ValueError, match=r"^input must be one sample \(features,\) or a batch "
                                         r"\(n, features\), got shape \(1, 1, 2\); flatten "
                                         r"each sample: x\.reshape\(len\(x\), -1\)$"):
        net.predict(np.zeros((1, 1, 2)))
    with pytest.raises(ValueError, match=r"got shape \(1, 1, 3\)$"):  # no reshape makes it fit
        net.predict(np.zeros((1, 1, 3)))
    assert net.predict(np.array([True, False])).tolist() == [1.5, 0.0]
    assert net.predict(np.array([[1, 0]], dtype=np.int32)).dtype == np.float64


def test_an_optimizer_trains_one_network():
    opt = cr.SGD(lr=0.1, momentum=0.5)
    first = linear_net(optimizer=opt)
    with pytest.raises(ValueError, match=r"^SGD\(lr=0\.1, momentum=0\.5, nesterov=False, "
                                         r"weight_decay=0\.0, decay_1d=True\) already trains "
                                         r"another network, and its state"):
        linear_net(optimizer=opt)
    first.optimizer = opt  # the same network again is fine
    first.train_step(np.ones((1, 2)), np.zeros((1, 2)))
    assert opt.steps == 1
    del first
    gc.collect()
    second = linear_net(optimizer=opt)  # its network is gone: the state is reset
    assert opt.steps == 0 and opt.state == [] and second.optimizer is opt
    assert linear_net(optimizer="adam").optimizer.lr == 1e-3


def test_loading_an_integer_buffer():
    net = cr.Network([cr.Dense(2, 2), cr.BatchNorm1d(2)], dtype="float64")
    state = {k: np.array(v) for k, v in net.state_dict().items()}
    assert state["1.num_batches_tracked"].dtype == np.int64
    net.load_parameters({**state, "1.num_batches_tracked": np.array(0)})
    assert net.layers[1].num_batches_tracked == 0
    net.load_parameters({**state, "1.num_batches_tracked": np.array(7)})
    assert net.layers[1].num_batches_tracked == 7
    with pytest.raises(ValueError, match=r"^tensor '1\.num_batches_tracked' has dtype float64, "
                                         r"expected an integer$"):
        net.load_parameters({**state, "1.num_batches_tracked": np.array(3.0)})
    with pytest.raises(ValueError, match=r"^tensor '1\.num_batches_tracked' must not be "
                                         r"negative$"):
        net.load_parameters({**state, "1.num_batches_tracked": np.array(-1)})
    net.load_parameters({**state, "1.running_mean": np.array([-1.0, -2.0])})  # floats may be < 0
    np.testing.assert_array_equal(net.layers[1].buffers()["running_mean"], [-1.0, -2.0])


def test_one_image_forward_and_backward():
    net = cr.Network([cr.Conv2D(1, 2, 2, seed=0), cr.Flatten(), cr.Dense(8, 1, seed=1)],
                     dtype="float64")
    image = np.arange(9.0).reshape(1, 3, 3) / 9
    out = net.forward(image)
    assert out.shape == (1,)
    grad = net.backward(np.array([2.0]))
    assert grad.shape == (1, 3, 3)
    batch_out = net.forward(image[None])
    np.testing.assert_array_equal(out, batch_out[0])
    np.testing.assert_array_equal(grad, net.backward(np.array([[2.0]]))[0])


def test_backward_before_any_forward():
    with pytest.raises(RuntimeError, match=r"backward called before forward"):
        linear_net().backward(np.ones((1, 2)))


def test_to_onnx_passes_its_options():
    pytest.importorskip("onnx")
    model = linear_net().to_onnx(opset=18)  # not the default, 17
    assert {o.version for o in model.opset_import if o.domain in ("", "ai.onnx")} == {18}


def test_fit_default_batch_size_is_32():
    net = linear_net(optimizer=cr.SGD(lr=0.01))
    net.fit(np.ones((33, 2)), np.zeros((33, 2)), epochs=1, verbose=0)
    assert net.optimizer.steps == 2  # 32 + 1
    net.fit(np.ones((33, 2)), np.zeros((33, 2)), epochs=1, batch_size=11, verbose=0)
    assert net.optimizer.steps == 5


def test_from_sizes_checks_the_memory_of_the_network_it_builds(monkeypatch):
    import chainrule.network as network_module

    seen = []
    monkeypatch.setattr(network_module, "check_mlp_memory",
                        lambda sizes, **kwargs: seen.append((sizes, kwargs)))
    adam = cr.Adam()
    cr.Network.from_sizes([3, 4, 2], optimizer=adam, dtype="float64", bias=False, dropout=0.25)
    assert seen == [([3, 4, 2], {"optimizer": adam, "dtype": "float64", "bias": False,
                                 "dropout": True})]
    cr.Network.from_sizes([3, 2])
    assert seen[1] == ([3, 2], {"optimizer": None, "dtype": "float32", "bias": True,
                                "dropout": False})


def test_from_sizes_defaults():
    net = cr.Network.from_sizes([400, 400, 1], seed=0)
    assert [type(layer).__name__ for layer in net.layers] == ["Dense", "ReLU", "Dense"]
    assert np.var(net.layers[0].weight) == pytest.approx(2 / 400, rel=0.05)  # He, for relu
    assert type(net.loss) is cr.SquaredError and net.dtype == np.float32


def test_evaluate_computes_in_the_network_dtype_and_caches_nothing():
    layer = cr.Dense(1, 1, bias=False)
    layer.weight = [[1.0]]
    net = cr.Network([layer], dtype="float32")
    value = net.evaluate(np.array([[0.3]]), np.array([[0.1]]))["loss"]
    d = np.float32(0.3) - np.float32(0.1)  # targets are cast to float32 too, as in fit
    assert value == float(d * d)
    with pytest.raises(RuntimeError, match="backward called before forward"):
        net.loss.backward()


def test_image_networks_widths_and_checks():
    cnn = cr.Network([cr.Conv2D(1, 2, 3, seed=0), cr.ReLU(), cr.MaxPool2D(2), cr.Flatten(),
                      cr.Dense(8, 3, seed=1)])
    assert cnn.takes_images and cnn.in_features is None and cnn.out_features == 3
    assert cr.Network([cr.BatchNorm2d(2)]).takes_images
    assert cr.Network([cr.ReLU(), cr.MaxPool2D(2)]).takes_images
    assert not cr.Network([cr.Flatten(), cr.Dense(4, 2)]).takes_images
    assert not cr.Network([cr.ReLU()]).takes_images
    assert cr.Network([cr.Flatten(), cr.Dense(4, 2)]).in_features is None
    assert cr.Network([cr.Dense(4, 2), cr.ReLU(), cr.Dense(2, 5)]).out_features == 5
    with pytest.raises(ValueError, match=r"^layer 0 \(Conv2D\(1, 2, kernel_size=3\)\): input must "
                                         r"be one image \(C, H, W\) or a batch \(n, C, H, W\), "
                                         r"got shape \(2, 9\)$"):
        cnn.predict(np.zeros((2, 9)))
    with pytest.raises(ValueError, match=r"^layer 2 \(Conv2D\(3, 4, kernel_size=3\)\) expects 3 "
                                         r"input channels but the layer before it produces 2$"):
        cr.Network([cr.Conv2D(1, 2, 3), cr.ReLU(), cr.Conv2D(3, 4, 3)])
    with pytest.raises(ValueError, match=r"^layer 1 \(BatchNorm2d\(3\)\) expects 3 "
                                         r"input channels but the layer before it produces 2$"):
        cr.Network([cr.Conv2D(1, 2, 3), cr.BatchNorm2d(3)])
    cr.Network([cr.Conv2D(1, 2, 3), cr.BatchNorm2d(2), cr.MaxPool2D(2), cr.Conv2D(2, 4, 1)])
    # after Flatten the channel count is not known: any Conv2D width is accepted
    with pytest.raises(ValueError, match=r"expects 5 input features but the layer before it "
                                         r"produces 3"):
        cr.Network([cr.Dense(4, 3), cr.BatchNorm1d(3), cr.Dense(5, 1)])


def test_predict_large_input_with_threads_matches_rows():
    net = linear_net()
    x = np.random.default_rng(0).normal(size=(8 * 1024 + 3, 2))
    expected = x @ np.array([[1.0, 2.0], [0.0, -1.0]]).T + [0.5, 0.0]
    np.testing.assert_allclose(net.predict(x), expected, rtol=1e-12)
    np.testing.assert_allclose(net.predict(x, threads=2, batch_size=1000), expected, rtol=1e-12)
    np.testing.assert_allclose(net.predict(x, threads=None), expected, rtol=1e-12)


def test_one_sample_predict_is_never_split():
    net = linear_net()
    x = np.array([1.0, 2.0])
    for kwargs in ({"threads": 2}, {"batch_size": 1}, {"threads": 2, "batch_size": 1}):
        np.testing.assert_array_equal(net.predict(x, **kwargs), [5.5, -2.0])


def test_predict_writes_no_cache():
    net = linear_net()
    net.predict(np.ones((3, 2)))
    with pytest.raises(RuntimeError, match="backward called before forward"):
        net.backward(np.ones((3, 2)))


def test_train_step_trains_whatever_the_mode(kernel_path):
    dense = cr.Dense(2, 1, bias=False)
    dense.weight = [[1.0, 1.0]]
    net = cr.Network([cr.Dropout(0.5, seed=0), dense], optimizer=cr.SGD(lr=0.0),
                     dtype="float64").eval()
    x, y = np.ones((4, 2)), np.zeros((4, 1))
    draws = np.random.default_rng(0)
    for weights in (None, np.ones(4)):  # with weights, the NumPy step whatever the path
        pred = (x * (draws.random((4, 2)) >= 0.5) / 0.5).sum(axis=1)
        assert net.train_step(x, y, sample_weight=weights) == pytest.approx(np.mean(pred**2),
                                                                            rel=1e-15)


def test_new_network_is_not_stopping():
    assert linear_net().stop_training is False


def test_one_image_train_step(kernel_path):
    def make():
        return cr.Network([cr.Conv2D(1, 2, 2, seed=0), cr.Flatten(), cr.Dense(8, 1, seed=1)],
                          optimizer=cr.SGD(lr=0.1), dtype="float64")

    image = np.arange(9.0).reshape(1, 3, 3) / 9
    one, batch = make(), make()
    assert one.train_step(image, [0.5]) == batch.train_step(image[None], [[0.5]])
    for name, value in one.parameters().items():
        np.testing.assert_array_equal(value, batch.parameters()[name])


def test_batchnorm_passes_the_channel_count_on():
    with pytest.raises(ValueError, match=r"^layer 2 \(Conv2D\(3, 1, kernel_size=1\)\) expects 3 "
                                         r"input channels but the layer before it produces 2$"):
        cr.Network([cr.Conv2D(1, 2, 3), cr.BatchNorm2d(2), cr.Conv2D(3, 1, 1)])
