import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import chainrule as cr

ACTIVATIONS = [cr.Identity, cr.ReLU, lambda: cr.LeakyReLU(0.1), cr.Sigmoid,
               lambda: cr.Sigmoid(scale=0.3), cr.Tanh, cr.Softmax]
ACT_IDS = ["identity", "relu", "leaky_relu", "sigmoid", "sigmoid_scaled", "tanh", "softmax"]


def _targets(loss, rng, n, k):
    if isinstance(loss, cr.CrossEntropy):
        return rng.integers(0, k, size=n)
    if isinstance(loss, cr.BinaryCrossEntropy):
        return rng.random((n, k))
    return rng.normal(size=(n, k))


@pytest.mark.parametrize("make_act", ACTIVATIONS, ids=ACT_IDS)
@pytest.mark.parametrize("loss_cls", [cr.SquaredError, cr.MeanSquaredError, cr.CrossEntropy,
                                      cr.BinaryCrossEntropy])
def test_every_activation_and_loss_passes(make_act, loss_cls):
    rng = np.random.default_rng(0)
    net = cr.Network([cr.Dense(4, 5, seed=1), make_act(), cr.Dense(5, 3, seed=2)],
                     loss=loss_cls(), dtype="float64")
    x = rng.normal(size=(6, 4))
    report = cr.check_gradients(net, x, _targets(net.loss, rng, 6, 3))
    assert report.ok, str(report)
    assert report.max_rel_error < 1e-6
    assert [c.name for c in report] == ["0.weight", "0.bias", "2.weight", "2.bias", "input"]


def test_dropout_and_a_deep_stack_pass():
    rng = np.random.default_rng(1)
    net = cr.Network([cr.Dense(3, 6, seed=1), cr.Tanh(), cr.Dropout(0.4, seed=3),
                      cr.Dense(6, 6, bias=False, seed=2), cr.LeakyReLU(0.05), cr.Dense(6, 4, seed=4),
                      cr.Softmax()], loss=cr.SquaredError(), dtype="float64")
    report = cr.check_gradients(net, rng.normal(size=(5, 3)), rng.random((5, 4)))
    assert report.ok, str(report)


def test_single_sample_passes():
    net = cr.Network.from_sizes([3, 4, 1], activation="relu", bias=False, dtype="float64", seed=3)
    assert cr.check_gradients(net, np.array([1.0, 0.0, 1.0]), np.array([1.0])).ok


def test_float32_network_is_checked_in_float64_and_left_unchanged():
    net = cr.Network.from_sizes([4, 5, 2], activation="sigmoid", loss="cross_entropy", seed=0)
    before = {k: v.copy() for k, v in net.parameters().items()}
    report = cr.check_gradients(net, np.random.default_rng(0).normal(size=(3, 4)), [0, 1, 1])
    assert report.ok
    assert net.dtype == np.float32
    for name, value in net.parameters().items():
        assert value.dtype == np.float32
        np.testing.assert_array_equal(value, before[name])


class WrongTanh(cr.Tanh):
    """Forgets the square in 1 - y**2: a plausible mistake the checker must catch."""

    def backward(self, grad_output):
        return grad_output * (1.0 - self._y)


def test_a_wrong_backward_fails_and_is_named():
    rng = np.random.default_rng(0)
    net = cr.Network([cr.Dense(3, 4, seed=0), WrongTanh(), cr.Dense(4, 2, seed=1)],
                     loss=cr.SquaredError(), dtype="float64")
    report = cr.check_gradients(net, rng.normal(size=(4, 3)), rng.normal(size=(4, 2)))
    assert not report.ok
    assert not report["0.weight"].ok and not report["input"].ok
    assert report["2.weight"].ok  # layers after the bug are still right
    text = str(report)
    assert "FAILED" in text and "NO" in text


def test_wrong_parameter_gradient_fails():
    class HalfDense(cr.Dense):
        def backward(self, grad_output):
            grad = super().backward(grad_output)
            self.grads["weight"] *= 0.5
            return grad

    rng = np.random.default_rng(0)
    net = cr.Network([HalfDense(3, 2, seed=0)], loss=cr.MeanSquaredError(), dtype="float64")
    report = cr.check_gradients(net, rng.normal(size=(4, 3)), rng.normal(size=(4, 2)))
    assert not report["0.weight"].ok and report["0.bias"].ok and report["input"].ok


def test_report_table_and_sampling():
    rng = np.random.default_rng(0)
    net = cr.Network.from_sizes([30, 20, 3], loss="cross_entropy", dtype="float64", seed=0)
    report = cr.check_gradients(net, rng.normal(size=(4, 30)), [0, 1, 2, 0], max_checks=10)
    assert report.ok
    assert report["0.weight"].checked == 10 and report["2.bias"].checked == 3
    lines = str(report).splitlines()
    assert lines[0].split() == ["tensor", "shape", "checked", "max", "abs", "error", "max", "rel",
                                "error", "ok"]
    assert "gradient check passed" in lines[-1]


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 6), min_size=2, max_size=4),
    activation=st.sampled_from(["relu", "leaky_relu", "sigmoid", "tanh", "identity"]),
    loss=st.sampled_from(["squared_error", "mse", "cross_entropy", "binary_cross_entropy"]),
    batch=st.integers(1, 5),
    bias=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_gradients_check_on_generated_networks(sizes, activation, loss, batch, bias, seed):
    if loss == "cross_entropy" and sizes[-1] == 1:
        sizes = [*sizes[:-1], 2]  # CrossEntropy needs two outputs at least (refused when built)
    rng = np.random.default_rng(seed)
    net = cr.Network.from_sizes(sizes, activation=activation, loss=loss, bias=bias,
                                dtype="float64", seed=seed)
    # Random biases: with zero biases behind a dead relu, z sits exactly on the
    # kink, where no derivative exists for the central difference to match.
    for name, value in net.parameters().items():
        if name.endswith("bias"):
            value[...] = rng.normal(size=value.shape)
    x = rng.normal(size=(batch, sizes[0]))
    report = cr.check_gradients(net, x, _targets(net.loss, rng, batch, sizes[-1]))
    assert report.ok, str(report)
