import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import chainrule as cr

XOR_X = np.array([[1, 0, 1], [0, 1, 1], [0, 0, 1], [1, 1, 1]], dtype=float)
XOR_Y = np.array([1, 1, 0, 0], dtype=float)


def test_from_sizes_builds_the_tutorial_layout():
    net = cr.Network.from_sizes([2, 3, 3, 2], activation="sigmoid", output_activation="sigmoid")
    kinds = [type(layer).__name__ for layer in net.layers]
    assert kinds == ["Dense", "Sigmoid", "Dense", "Sigmoid", "Dense", "Sigmoid"]
    assert list(net.parameters()) == ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"]
    assert net.parameters()["2.weight"].shape == (3, 3)
    assert net.in_features == 2 and net.out_features == 2


def test_from_sizes_with_dropout_and_no_output_activation():
    net = cr.Network.from_sizes([4, 8, 8, 3], dropout=0.2, loss="cross_entropy", seed=0)
    kinds = [type(layer).__name__ for layer in net.layers]
    assert kinds == ["Dense", "ReLU", "Dropout", "Dense", "ReLU", "Dropout", "Dense"]


def test_seed_makes_networks_identical():
    a = cr.Network.from_sizes([3, 5, 2], seed=3)
    b = cr.Network.from_sizes([3, 5, 2], seed=3)
    for (name, p), q in zip(a.parameters().items(), b.parameters().values()):
        np.testing.assert_array_equal(p, q, err_msg=name)


def test_layer_widths_must_chain():
    with pytest.raises(ValueError, match=r"layer 2 \(Dense\(4, 2\)\) expects 4 input features but"):
        cr.Network([cr.Dense(3, 5), cr.ReLU(), cr.Dense(4, 2)])


def test_same_layer_twice_is_refused():
    relu = cr.ReLU()
    with pytest.raises(ValueError, match="appears twice"):
        cr.Network([cr.Dense(2, 2), relu, cr.Dense(2, 2), relu])


def test_wrong_feature_count_names_layer_and_shapes():
    net = cr.Network.from_sizes([784, 16, 10])
    with pytest.raises(ValueError, match=r"layer 0 \(Dense\(784, 16\)\).*\(batch, 784\).*got shape \(2, 100\)"):
        net.predict(np.zeros((2, 100)))


def test_float32_stays_float32_everywhere():
    net = cr.Network.from_sizes([6, 5, 4, 3], activation="tanh", loss="cross_entropy",
                                optimizer=cr.Adam(), dropout=0.1, seed=0)
    x = np.random.default_rng(0).normal(size=(8, 6))  # float64 input is cast once
    assert net.forward(x).dtype == np.float32
    net.train_step(x, np.arange(8) % 3)
    for name, p in net.parameters().items():
        assert p.dtype == np.float32, name
    for name, g in net.gradients().items():
        assert g.dtype == np.float32, name
    for state in net.optimizer.state:
        assert all(v.dtype == np.float32 for v in state.values())
    assert net.backward(np.ones((8, 3), np.float32)).dtype == np.float32


def test_float64_on_request():
    net = cr.Network.from_sizes([2, 3, 1], dtype="float64", seed=0)
    assert net.forward(np.ones(2)).dtype == np.float64
    with pytest.raises(ValueError, match="float32 or float64"):
        cr.Network.from_sizes([2, 1], dtype="float16")


def test_single_sample_and_batch_agree():
    net = cr.Network.from_sizes([3, 4, 2], seed=1, dtype="float64")
    batch = net.predict(XOR_X)
    for row, expected in zip(XOR_X, batch):
        out = net.predict(row)
        assert out.shape == (2,)
        np.testing.assert_allclose(out, expected, rtol=1e-12)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 12), st.integers(1, 12), st.integers(0, 2**31))
def test_splitting_a_batch_does_not_change_outputs(n, split, seed):
    rng = np.random.default_rng(seed)
    net = cr.Network.from_sizes([5, 7, 3], activation="tanh", dropout=0.3, seed=seed % 1000,
                                dtype="float64")
    x = rng.normal(size=(n, 5))
    whole = net.predict(x)
    k = min(split, n)
    parts = np.concatenate([net.predict(x[:k]), net.predict(x[k:])]) if k < n else net.predict(x)
    np.testing.assert_allclose(parts, whole, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(net.predict(x, batch_size=k), whole, rtol=1e-12, atol=1e-15)


def test_predict_turns_dropout_off_and_leaves_the_mode_alone():
    net = cr.Network.from_sizes([4, 64, 2], dropout=0.5, seed=0)
    x = np.ones((3, 4))
    state = net.layers[2].rng.bit_generator.state
    np.testing.assert_array_equal(net.predict(x), net.predict(x))
    np.testing.assert_array_equal(net.predict(x), net.eval().forward(x))
    assert net.layers[2].rng.bit_generator.state == state  # no dropout drawn
    assert net.train().training is True


def test_training_attribute_and_train_eval_switch_dropout_in_forward():
    net = cr.Network.from_sizes([4, 64, 2], dropout=0.5, seed=0, dtype="float64")
    x = np.ones((3, 4))
    clean = net.predict(x)
    assert net.training  # a new network trains, as a torch Module does
    assert not np.array_equal(net.forward(x), clean)
    net.training = False  # the PyTorch habit works directly
    np.testing.assert_array_equal(net.forward(x), clean)
    net.training = True
    assert not np.array_equal(net.forward(x), clean)
    assert net.eval() is net and net.training is False
    np.testing.assert_array_equal(net.forward(x), clean)
    assert net.train() is net and net.training is True
    assert not np.array_equal(net.forward(x), clean)
    np.testing.assert_array_equal(net.forward(x, training=False), clean)  # the call decides
    net.eval()
    assert not np.array_equal(net.forward(x, training=True), clean)
    # train_step always trains, whatever the mode; the mode is left as it was
    state = net.layers[2].rng.bit_generator.state
    net.train_step(x, np.zeros((3, 2)))
    assert net.layers[2].rng.bit_generator.state != state and net.training is False


class _Slow(cr.Identity):
    """Sleeps before passing its input on: widens the window two predicts could interleave in."""

    def forward(self, x, training=False, *, cache=True):
        time.sleep(0.05)
        return super().forward(x, training, cache=cache)


def test_two_threads_predicting_10_ms_apart_both_get_inference_results():
    # The reproducer: a mode flipped on shared layers leaked into the other call.
    net = cr.Network([cr.Dense(6, 32, seed=1), cr.ReLU(), _Slow(), cr.Dropout(0.5, seed=2),
                      cr.Dense(32, 3, seed=3)], dtype="float64")
    x = np.random.default_rng(0).normal(size=(5, 6))
    expected = net.predict(x)
    results = [None, None]

    def call(i):
        results[i] = net.predict(x)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(2)]
    threads[0].start()
    time.sleep(0.01)
    threads[1].start()
    for t in threads:
        t.join(timeout=10)
    for r in results:
        np.testing.assert_array_equal(r, expected)
    assert net.training is True


def test_predict_from_8_threads_at_once_equals_single_threaded():
    net = cr.Network([cr.Dense(20, 64, seed=0), cr.BatchNorm1d(64), cr.ReLU(), cr.Dropout(0.5, seed=1),
                      cr.Dense(64, 64, seed=2), cr.ReLU(), cr.Dropout(0.5, seed=3),
                      cr.Dense(64, 5, seed=4)], loss="cross_entropy")
    rng = np.random.default_rng(1)
    net.train_step(rng.normal(size=(16, 20)), rng.integers(0, 5, 16))  # running statistics move
    inputs = [rng.normal(size=(50, 20)).astype(np.float32) for _ in range(8)]
    expected = [net.predict(x) for x in inputs]
    barrier = threading.Barrier(8)
    results = [None] * 8

    def call(i):
        barrier.wait(timeout=10)
        for _ in range(20):
            out = net.predict(inputs[i])
            if results[i] is None:
                results[i] = out
            np.testing.assert_array_equal(out, expected[i])
        results[i] = net.evaluate(inputs[i], np.zeros(50, dtype=int))["loss"]

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(call, range(8)))  # re-raises any thread's assertion
    for i, x in enumerate(inputs):
        assert results[i] == net.evaluate(x, np.zeros(50, dtype=int))["loss"]


def test_train_step_returns_loss_before_the_step():
    net = cr.Network.from_sizes([3, 4, 1], seed=0, dtype="float64")
    before = net.evaluate(XOR_X, XOR_Y)["loss"]
    assert net.train_step(XOR_X, XOR_Y) == pytest.approx(before)
    assert net.evaluate(XOR_X, XOR_Y)["loss"] < before


def test_tutorial_relu_3_4_1_learns_xor_one_sample_at_a_time():
    # LESSONS.md lesson 2: no biases, uniform [-1, 1) init, lr 0.1, rows in order.
    net = cr.Network.from_sizes([3, 4, 1], activation="relu", bias=False, dtype="float64",
                                init=cr.initializers.uniform(-1, 1), optimizer=cr.SGD(lr=0.1),
                                seed=1)
    first = np.mean([net.evaluate(x, y)["loss"] for x, y in zip(XOR_X, XOR_Y)])
    for _ in range(60):
        errors = [net.train_step(x, y) for x, y in zip(XOR_X, XOR_Y)]
    assert np.mean(errors) < 1e-6 < first
    np.testing.assert_allclose(net.predict(XOR_X)[:, 0], XOR_Y, atol=1e-3)


def test_tutorial_2_3_3_2_sigmoid_reaches_its_targets():
    net = cr.Network.from_sizes([2, 3, 3, 2], activation="sigmoid", output_activation="sigmoid",
                                init=cr.initializers.uniform(0, 1), optimizer=cr.SGD(lr=0.1),
                                dtype="float64", seed=0)
    for _ in range(1000):
        loss = net.train_step([0.2, 0.3], [0.3, 0.67])
    assert loss < 1e-15
    np.testing.assert_allclose(net.predict([0.2, 0.3]), [0.3, 0.67], atol=1e-8)


def test_evaluate_reports_accuracy_for_classification_only():
    net = cr.Network.from_sizes([3, 4, 2], loss="cross_entropy", seed=0)
    result = net.evaluate(XOR_X, XOR_Y.astype(int))
    assert set(result) == {"loss", "accuracy"} and 0 <= result["accuracy"] <= 1
    assert set(cr.Network.from_sizes([3, 1]).evaluate(XOR_X, XOR_Y)) == {"loss"}


def test_summary_table():
    text = cr.Network.from_sizes([784, 128, 10], loss="cross_entropy").summary()
    lines = text.splitlines()
    assert "output shape" in lines[0] and "parameters" in lines[0]
    assert any("Dense(784, 128)" in line and "(batch, 128)" in line and "100,480" in line
               for line in lines)
    assert "total parameters: 101,770" in text


def test_astype_round_trip_is_exact():
    net = cr.Network.from_sizes([3, 4, 2], seed=0)
    before = {k: v.copy() for k, v in net.parameters().items()}
    net.astype("float64").astype("float32")
    for name, value in net.parameters().items():
        assert value.dtype == np.float32
        np.testing.assert_array_equal(value, before[name])


def test_load_parameters_names_the_bad_tensor():
    net = cr.Network.from_sizes([3, 4, 2])
    params = {k: v.copy() for k, v in net.parameters().items()}
    with pytest.raises(ValueError, match="missing tensor '2.bias'"):
        net.load_parameters({k: v for k, v in params.items() if k != "2.bias"})
    with pytest.raises(ValueError, match="unexpected tensor '9.weight'"):
        net.load_parameters({**params, "9.weight": np.zeros(1)})
    with pytest.raises(ValueError, match=r"tensor '0.weight' has shape \(3, 4\), expected \(4, 3\)"):
        net.load_parameters({**params, "0.weight": np.zeros((3, 4))})


# -- issue 9 §4: probabilities of the model's own kind ----------------------------------------


def test_predict_proba_uses_the_link_of_the_loss_and_output_layer():
    x = np.random.default_rng(0).normal(size=(6, 3))
    ce = cr.Network.from_sizes([3, 5, 4], loss="cross_entropy", seed=0)
    z = ce.predict(x).astype(np.float64)
    np.testing.assert_allclose(ce.predict_proba(x), np.exp(z) / np.exp(z).sum(1, keepdims=True),
                               rtol=1e-6)
    bce = cr.Network.from_sizes([3, 5, 2], loss="binary_cross_entropy", seed=0)
    np.testing.assert_allclose(bce.predict_proba(x), 1 / (1 + np.exp(-bce.predict(x))), rtol=1e-6)
    # the tutorials' style: sigmoid outputs with squared error are probabilities as they are
    tutorial = cr.Network.from_sizes([3, 5, 4], activation="sigmoid", output_activation="sigmoid",
                                     seed=0)
    np.testing.assert_array_equal(tutorial.predict_proba(x), tutorial.predict(x))
    soft = cr.Network.from_sizes([3, 5, 4], output_activation="softmax", seed=0)
    np.testing.assert_array_equal(soft.predict_proba(x), soft.predict(x))
    # a Dropout after the output layer changes nothing in inference, so it hides nothing
    late = cr.Network([cr.Dense(3, 4, seed=0), cr.Sigmoid(), cr.Dropout(0.5, seed=0)])
    np.testing.assert_array_equal(late.predict_proba(x), late.predict(x))
    # one sample keeps predict's shape
    assert ce.predict_proba(x[0]).shape == (4,) and ce.predict_proba(x[0]).sum() == pytest.approx(1)


def test_a_sigmoid_output_of_0_997_is_shown_as_99_7_percent_not_softmaxed():
    # The case: a tutorial-style model outputs 0.997 for "7"; softmax made it 23.1%.
    net = cr.Network([cr.Dense(1, 10, bias=True, seed=0), cr.Sigmoid()], dtype="float64")
    net.layers[0].weight = np.zeros((10, 1))
    bias = np.full(10, -3.0)
    bias[7] = np.log(0.997 / 0.003)
    net.layers[0].bias = bias
    p = net.predict_proba(np.zeros((1, 1)))[0]
    assert p[7] == pytest.approx(0.997)
    from chainrule.recipes import softmax_probabilities

    assert softmax_probabilities(net, np.zeros((1, 1)))[0, 7] == pytest.approx(0.997)


@pytest.mark.parametrize("loss", ["squared_error", "mse"])
def test_predict_proba_refuses_a_regression(loss):
    net = cr.Network.from_sizes([3, 5, 2], loss=loss, seed=0)
    with pytest.raises(ValueError, match="not probabilities.*regression.*predict()"):
        net.predict_proba(np.zeros((2, 3)))
    relu_out = cr.Network.from_sizes([3, 5, 2], output_activation="relu", loss=loss, seed=0)
    with pytest.raises(ValueError, match="regression"):
        relu_out.predict_proba(np.zeros((2, 3)))


def test_summary_shows_as_a_table_at_the_repl():
    net = cr.Network.from_sizes([784, 128, 10], loss="cross_entropy")
    summary = net.summary()
    assert isinstance(summary, str)
    assert repr(summary) == str(summary)  # what the REPL echoes: the table, not '...\\n...'
    assert "\\n" not in repr(summary) and repr(summary).count("\n") == str(summary).count("\n")
    assert "total parameters: 101,770" in repr(summary)


def test_a_network_is_callable_like_a_torch_module():
    net = cr.Network.from_sizes([4, 8, 2], dropout=0.5, seed=0)
    x = np.ones((3, 4))
    np.testing.assert_array_equal(net.eval()(x), net.predict(x))
    assert not np.array_equal(net.train()(x), net.predict(x))


def test_load_state_dict_is_torchs_name_for_load_parameters():
    a = cr.Network.from_sizes([4, 8, 2], seed=0)
    b = cr.Network.from_sizes([4, 8, 2], seed=1)
    b.load_state_dict(a.state_dict())
    x = np.ones((2, 4))
    np.testing.assert_array_equal(b.predict(x), a.predict(x))
    with pytest.raises(ValueError, match="missing tensor '2.bias'"):
        b.load_state_dict({k: v for k, v in a.state_dict().items() if k != "2.bias"})


def test_pictures_in_the_wrong_shape_get_a_message_that_says_how_to_reshape():
    mlp = cr.Network.from_sizes([784, 4, 10], seed=0)
    with pytest.raises(ValueError, match=r"^input must be one sample \(784,\) or a batch \(n, 784\), "
                       r"got shape \(28, 28\); for one 28x28 image, flatten it: x\.reshape\(-1\)$"):
        mlp.predict(np.zeros((28, 28)))
    with pytest.raises(ValueError, match=r"got shape \(5, 28, 28\); flatten each sample: "
                       r"x\.reshape\(len\(x\), -1\)$"):
        mlp.predict(np.zeros((5, 28, 28)))
    with pytest.raises(ValueError, match=r"got shape \(5, 1, 28, 28\); flatten each sample"):
        mlp.forward(np.zeros((5, 1, 28, 28)))
    assert mlp.predict(np.zeros((1, 784))).shape == (1, 10)  # a batch of one is not a picture
    cnn = cr.Network([cr.Conv2D(1, 2, 3, seed=0), cr.ReLU(), cr.Flatten(), cr.Dense(2 * 26 * 26, 3, seed=0)])
    with pytest.raises(ValueError, match=r"^layer 0 \(Conv2D\(1, 2, kernel_size=3\)\): one image must be "
                       r"shaped \(1, H, W\), got shape \(5, 28, 28\); for a batch of 5 grey images "
                       r"add the channel axis: x\[:, None\]$"):
        cnn.predict(np.zeros((5, 28, 28)))
    assert cnn.predict(np.zeros((5, 28, 28))[:, None]).shape == (5, 3)
    assert cnn.predict(np.zeros((1, 28, 28))).shape == (3,)  # one image (C, H, W)
    with pytest.raises(ValueError, match=r"^training inputs must be images shaped \(n, C, H, W\), got "
                       r"shape \(5, 28, 28\); for grey images add the channel axis: x\[:, None\]$"):
        cnn.fit(np.zeros((5, 28, 28)), np.zeros(5, int), epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"^training inputs must be shaped \(n, features\), got shape "
                       r"\(5, 1, 28, 28\); flatten each sample: x\.reshape\(len\(x\), -1\)$"):
        mlp.fit(np.zeros((5, 1, 28, 28)), np.zeros((5, 10)), epochs=1, verbose=0)


def test_a_network_pickles_and_deep_copies_with_its_own_optimizer():
    # joblib and Dask move networks between processes by pickle; Adam's moments travel
    # with them, and each copy's optimizer trains that copy (not the original).
    import copy
    import pickle

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 4)), rng.integers(0, 3, 40)
    net = cr.Network.from_sizes([4, 6, 3], loss="cross_entropy", optimizer=cr.Adam(lr=0.01),
                                dtype="float64", seed=0)
    net.fit(x, y, epochs=2, batch_size=8, seed=0, verbose=0, threads=1)
    copies = [pickle.loads(pickle.dumps(net)), copy.deepcopy(net)]
    for other in copies:
        assert other.optimizer is not net.optimizer
        assert other.optimizer._network() is other and net.optimizer._network() is net
        assert other.optimizer.steps == net.optimizer.steps == 10
        np.testing.assert_array_equal(other.optimizer.state[0]["v"], net.optimizer.state[0]["v"])
    for model in (net, *copies):
        model.fit(x, y, epochs=1, batch_size=8, seed=1, verbose=0, threads=1)
    for other in copies:
        for a, b in zip(net.parameters().values(), other.parameters().values()):
            np.testing.assert_array_equal(a, b)
    assert copy.copy(net).optimizer._network() is net  # a shallow copy shares it, unchanged
