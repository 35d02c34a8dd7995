"""Training-health diagnostics on networks built to be saturated, dead, exploding or healthy."""

import warnings

import numpy as np
import pytest

import chainrule as cr
from chainrule.diagnostics import (
    HealthCheck,
    TrainingHealthWarning,
    activation_health,
    at_chance,
    chance_accuracy,
    diagnose,
    gradient_norms,
    input_scale,
    parameter_norms,
)


def saturated_net():
    """4 -> 8 -> 8 -> 2, sigmoid everywhere, every weight 10.

    Each unit after the first layer sums 8 sigmoid outputs (all > 0.5) times 10, so
    its input is at least 40, where sigmoid is exactly 1.0 in float64.
    """
    net = cr.Network.from_sizes([4, 8, 8, 2], activation="sigmoid", output_activation="sigmoid",
                                seed=0, dtype="float64", optimizer=cr.SGD(lr=0.1))
    for layer in net.layers:
        if isinstance(layer, cr.Dense):
            layer.weight = np.full(layer.weight.shape, 10.0)
    return net


def healthy_net(dtype="float64"):
    return cr.Network.from_sizes([4, 16, 16, 3], activation="relu", seed=0, dtype=dtype,
                                 optimizer=cr.SGD(lr=0.05))


def data(n=32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, size=(n, 4))
    y = rng.uniform(0, 1, size=(n, 3))
    return x, y


def test_saturated_network_has_exactly_zero_gradients():
    net = saturated_net()
    x, _ = data()
    y = np.full((len(x), 2), 0.5)
    norms = gradient_norms(net, x, y)
    assert set(norms) == {0, 2, 4}
    assert norms == {0: 0.0, 2: 0.0, 4: 0.0}
    health = activation_health(net)  # from the cached forward pass
    assert set(health) == {1, 3, 5}
    assert health[1].kind == "sigmoid" and health[1].units == 8 and health[1].samples == 32
    assert health[3].saturated == 1.0 and health[5].saturated == 1.0
    assert health[1].dead is None


def test_diagnose_names_the_saturated_layer_and_a_fix():
    net = saturated_net()
    x, _ = data()
    report = diagnose(net, x, np.full((len(x), 2), 0.5))
    kinds = [p.kind for p in report.problems]
    assert "vanishing" in kinds and "saturated" in kinds
    assert not report.ok
    vanishing = next(p for p in report.problems if p.kind == "vanishing")
    assert vanishing.layer == 0
    assert "exactly 0" in vanishing.message
    assert "layer 5 (Sigmoid())" in vanishing.message  # the layer that blocks the gradient
    assert "Glorot" in vanishing.message and "Sigmoid(scale=0.01)" in vanishing.message
    # The inputs are in [0, 1] already, so scaling them is not advised.
    assert "scale the inputs" not in vanishing.message and "inputs" not in kinds
    text = str(report)
    assert "Dense(4, 8)" in text and "100.0%" in text and "problem (vanishing)" in text
    assert report.loss == pytest.approx(0.5)  # both outputs 1.0 against targets 0.5


def test_tanh_saturation_is_measured():
    net = cr.Network([cr.Dense(3, 5, seed=0), cr.Tanh()], dtype="float64")
    net.layers[0].weight = np.full((5, 3), 10.0)
    health = activation_health(net, np.ones((4, 3)))
    assert health[1].kind == "tanh" and health[1].saturated == 1.0
    health = activation_health(net, np.full((4, 3), 1e-3))
    assert health[1].saturated == 0.0


def test_dead_relus_are_found_on_a_batch():
    net = healthy_net()
    dense = net.layers[2]  # second hidden layer: push every unit negative
    dense.bias = np.full(dense.out_features, -100.0)
    x, y = data(n=16)
    health = activation_health(net, x)
    assert health[3].kind == "relu" and health[3].dead == 1.0 and health[3].saturated is None
    assert 0.0 <= health[1].dead < 0.5
    report = diagnose(net, x, y)
    dead = [p for p in report.problems if p.kind == "dead"]
    assert len(dead) == 1 and dead[0].layer == 3
    assert "100% of its relus are dead" in dead[0].message and "LeakyReLU" in dead[0].message
    # the first layers get no gradient through the dead layer
    assert report.gradient_norms[0] == 0.0 and report.gradient_norms[2] == 0.0
    assert report.gradient_norms[4] > 0.0


def test_dead_relus_are_judged_on_the_samples_given_and_the_message_counts_them():
    net = healthy_net()
    net.layers[2].bias = np.full(16, -100.0)
    x, y = data(n=4)
    report = diagnose(net, x, y)
    dead = [p for p in report.problems if p.kind == "dead"]
    assert len(dead) == 1 and "100% of its relus are dead" in dead[0].message
    assert "all 4 samples looked at" in dead[0].message
    one = diagnose(net, x[:1], y[:1])
    assert "the one sample looked at" in next(p for p in one.problems if p.kind == "dead").message


def test_exploding_gradients_are_reported():
    net = cr.Network([cr.Dense(4, 50, seed=0), cr.LeakyReLU(), cr.Dense(50, 3, seed=1)],
                     dtype="float64")
    for layer in (net.layers[0], net.layers[2]):
        layer.weight = np.full(layer.weight.shape, 30.0)
    report = diagnose(net, *data())
    kinds = [p.kind for p in report.problems]
    assert kinds == ["exploding"]
    assert "learning rate" in report.problems[0].message
    assert 1 not in report.activations  # LeakyReLU never blocks the gradient


def test_healthy_network_has_no_problems():
    net = healthy_net()
    x, y = data()
    report = diagnose(net, x, y)
    assert report.ok, str(report)
    assert "no problems found" in str(report)
    norms = report.gradient_norms
    grads = net.gradients()
    for i in (0, 2, 4):
        expected = np.sqrt(sum(np.sum(grads[f"{i}.{k}"] ** 2) for k in ("weight", "bias")))
        assert norms[i] == pytest.approx(expected, rel=1e-12)
        assert norms[i] > 0
    params = parameter_norms(net)
    assert params[0] == pytest.approx(
        np.sqrt(np.sum(net.layers[0].weight ** 2) + np.sum(net.layers[0].bias ** 2)), rel=1e-12)


def test_gradient_norms_reads_the_last_backward_without_a_batch():
    net = healthy_net()
    x, y = data()
    net.train_step(x, y)
    expected = {i: float(np.sqrt(sum(np.sum(g ** 2) for g in layer.grads.values())))
                for i, layer in enumerate(net.layers) if layer.params}
    got = gradient_norms(net)
    assert got == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="both"):
        gradient_norms(net, x)
    with pytest.raises(ValueError, match="both"):
        diagnose(net, y=y)


def test_activation_health_needs_a_forward_pass():
    net = healthy_net()
    with pytest.raises(RuntimeError, match="forward"):
        activation_health(net)


def test_converged_network_is_not_called_vanishing():
    net = saturated_net()
    x, _ = data()
    report = diagnose(net, x, np.ones((len(x), 2)))  # predicts exactly its targets
    assert report.loss == 0.0
    assert "vanishing" not in [p.kind for p in report.problems]


def test_diagnose_leaves_dropout_and_training_mode_alone():
    net = cr.Network.from_sizes([4, 16, 3], dropout=0.5, seed=0, dtype="float64")
    dropout = net.layers[2]
    state = dropout.rng.bit_generator.state
    diagnose(net, *data())
    assert dropout.rng.bit_generator.state == state
    assert net.training


def test_float32_network():
    report = diagnose(healthy_net("float32"), *data())
    assert report.ok and all(np.isfinite(v) for v in report.gradient_norms.values())


def fit_saturated(callback, epochs=3):
    net = saturated_net()
    x, _ = data(n=64)
    y = np.full((len(x), 2), 0.5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        net.fit(x, y, epochs=epochs, batch_size=16, verbose=0, callbacks=[callback], seed=0)
    return [w for w in caught if issubclass(w.category, TrainingHealthWarning)]


def test_health_check_warns_once_per_kind_during_fit():
    check = HealthCheck()
    caught = fit_saturated(check, epochs=3)
    kinds = [p.kind for p in check.problems]
    assert sorted(kinds) == ["saturated", "vanishing"]  # once each, over 3 epochs x 4 steps
    assert len(caught) == 2
    messages = " ".join(str(w.message) for w in caught)
    assert "gradients vanish" in messages and "Sigmoid(scale=0.01)" in messages
    assert check.last_report is not None and not check.last_report.ok


def test_health_check_with_a_probe_batch_and_a_step_interval():
    x, _ = data(n=8, seed=3)
    check = HealthCheck(x, np.full((8, 2), 0.5), every_steps=5)
    caught = fit_saturated(check, epochs=2)
    assert len(caught) == 2
    assert check.last_report.loss == pytest.approx(0.5)
    with pytest.raises(ValueError):
        HealthCheck(every_steps=0)
    with pytest.raises(ValueError):
        HealthCheck(x)


def test_health_check_is_silent_on_a_healthy_run():
    net = healthy_net()
    x, y = data(n=64)
    check = HealthCheck()
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrainingHealthWarning)
        net.fit(x, y, epochs=3, batch_size=16, verbose=0, callbacks=[check], seed=0)
    assert check.problems == [] and check.last_report.ok


# -- the classic failures of issue 9 §6: each must be explained by its real cause ---------------

XOR_X = np.array([[1, 0, 1], [0, 1, 1], [0, 0, 1], [1, 1, 1]], dtype=np.float64)
XOR_Y = np.array([[1], [1], [0], [0]], dtype=np.float64)


def xor_seed_2():
    """The tutorials' 3-4-1 relu XOR network, no biases, weights uniform in [-1, 1), seed 2."""
    return cr.Network.from_sizes([3, 4, 1], activation="relu", bias=False, seed=2,
                                 init=cr.initializers.uniform(-1.0, 1.0), dtype="float64",
                                 optimizer=cr.SGD(lr=0.1))


def test_stuck_xor_network_is_blamed_on_its_dead_relus():
    net = xor_seed_2()
    check = HealthCheck()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = net.fit(XOR_X, XOR_Y, epochs=60, batch_size=1, shuffle=False, verbose=0,
                          callbacks=[check])
    # Stuck: row [1, 0, 1] (target 1) reaches no live relu, so its error of 1 stays: 1/4.
    assert history["loss"][-1] == pytest.approx(0.25, abs=1e-6)
    np.testing.assert_allclose(net.predict(XOR_X)[0], [0.0], atol=0)
    # Two of the four relus are negative for every row: the weights show it directly.
    weight = net.layers[0].weight
    silent = np.flatnonzero(np.all(XOR_X @ weight.T <= 0, axis=0))
    assert silent.tolist() == [2, 3]

    messages = [str(w.message) for w in caught if issubclass(w.category, TrainingHealthWarning)]
    assert "dead" in [p.kind for p in check.problems]
    dead = next(p for p in check.problems if p.kind == "dead")
    assert dead.layer == 1 and "50% of its relus are dead" in dead.message
    assert "all 4 samples" in dead.message  # judged over the whole epoch, not one row
    for message in messages:  # nothing else takes the blame
        assert "saturat" not in message and "small weights" not in message, message
        assert "raise the learning rate" not in message, message
    assert all(p.kind in ("dead", "vanishing") for p in check.problems), messages
    vanishing = [p for p in check.problems if p.kind == "vanishing"]
    assert all("dead relus" in p.message for p in vanishing)

    # diagnose on all four rows finds the same two dead units.
    report = diagnose(net, XOR_X, XOR_Y)
    assert report.loss == pytest.approx(0.25, abs=1e-6)
    assert activation_health(net, XOR_X)[1].dead == 0.5
    assert [(p.kind, p.layer) for p in report.problems] == [("dead", 1)]
    assert "no problems found" not in str(report)


def raw_pixels(n=500):
    (x, y), _ = cr.datasets.load_mnist(normalize=False)
    return x[:n].astype(np.float32), y[:n]


@pytest.mark.parametrize("optimizer", [lambda: cr.SGD(lr=0.1, momentum=0.9),
                                       lambda: cr.SGD(lr=0.01), lambda: cr.Adam(lr=1e-3)])
def test_raw_pixels_are_blamed_on_the_input_scale_without_contradicting_advice(optimizer):
    x, y = raw_pixels()
    net = cr.Network.from_sizes([784, 64, 10], activation="relu", loss="cross_entropy",
                                optimizer=optimizer(), seed=0)
    check = HealthCheck()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        net.fit(x, y, epochs=2, batch_size=64, verbose=0, seed=0, callbacks=[check])
    messages = [str(w.message) for w in caught if issubclass(w.category, TrainingHealthWarning)]
    assert check.problems[0].kind == "inputs"  # the cause, announced first
    first = messages[0]
    assert first.startswith("the inputs are not scaled: their root mean square is 8")
    assert "largest 255" in first and "divide by 255" in first
    text = " ".join(messages)
    assert not ("lower the learning rate" in text and "raise the learning rate" in text), text
    for problem in check.problems[1:]:  # every other finding points at the scale first
        assert problem.advice[0].startswith("scale the inputs to [0, 1]"), problem.message


def test_scaled_pixels_raise_no_input_warning():
    x, y = raw_pixels(200)
    net = cr.Network.from_sizes([784, 64, 10], activation="relu", loss="cross_entropy", seed=0)
    report = diagnose(net, x / 255, y)
    assert "inputs" not in [p.kind for p in report.problems]
    assert report.input_rms == pytest.approx(
        np.sqrt(np.mean(np.square(x.astype(np.float64) / 255))), rel=1e-5)
    assert report.input_rms < 1
    assert input_scale(x) == pytest.approx(255 * report.input_rms, rel=1e-5)


def test_contradicting_advice_is_left_out_in_one_report_and_across_a_run():
    from chainrule.diagnostics import LOWER_LR, RAISE_LR, Problem, coherent

    slow = Problem.of("vanishing", 0, "gradients vanish", ("use He", RAISE_LR))
    fast = Problem.of("exploding", 2, "gradients explode", ("use He", LOWER_LR))
    kept = coherent([slow, fast])
    assert kept[0].advice == ("use He",) and kept[0].message == "gradients vanish. Fix: use He."
    assert kept[1] is fast
    # Advice already given earlier in a run wins over a later, opposite one.
    assert coherent([slow], given={LOWER_LR})[0].advice == ("use He",)
    assert coherent([slow])[0] is slow


def test_chance_accuracy_is_the_most_common_class_share():
    assert chance_accuracy([0, 0, 0, 1]) == 0.75
    assert chance_accuracy(np.eye(3)[[2, 2, 1]]) == pytest.approx(2 / 3)  # one-hot rows
    _, (_, y_test) = cr.datasets.load_mnist()
    assert chance_accuracy(y_test) == 0.1135  # 1,135 ones among the 10,000 test digits
    # 3 standard errors above 11.35% on 10,000 digits: 11.35% + 3 * 0.3172% = 12.30%.
    assert at_chance(0.1230, y_test) and not at_chance(0.1231, y_test)
    assert at_chance(0.0983, y_test) and not at_chance(0.5, y_test)
    with pytest.raises(ValueError, match="no labels"):
        chance_accuracy([])


def test_a_dead_channel_of_a_convolution_is_one_dead_unit():
    """Images (n, C, H, W): a relu unit is a channel, dead when no position of any sample is > 0."""
    rng = np.random.default_rng(0)
    net = cr.Network([cr.Conv2D(1, 4, 3, rng=rng), cr.ReLU(), cr.Flatten(),
                      cr.Dense(4 * 6 * 6, 3, rng=rng)], loss="cross_entropy", dtype="float64")
    conv = net.layers[0]
    conv.params["bias"][...] = [0.0, 0.0, -100.0, 0.0]  # channel 2 cannot reach 0 from inputs in [0, 1)
    x = rng.uniform(0, 1, size=(5, 1, 8, 8))
    health = activation_health(net, x)[1]
    assert (health.units, health.samples, health.dead) == (4, 5, 0.25)
    assert health.active.tolist() == [True, True, False, True]
    report = diagnose(net, x, np.array([0, 1, 2, 0, 1]), dead=0.25)
    assert [(p.kind, p.layer) for p in report.problems] == [("dead", 1)]
    assert "25% of its relus are dead (input <= 0 for all 5 samples" in report.problems[0].message
    # The input scale is read from the images given.
    assert report.input_rms == pytest.approx(np.sqrt(np.mean(x ** 2)))
