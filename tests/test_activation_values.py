"""Activations at hand-computed points: values, local derivatives, the kinks, names and configs."""

from __future__ import annotations

import math

import numpy as np
import pytest

import chainrule as cr
from chainrule.activations import get_activation, sigmoid, softmax


def test_sigmoid_values_both_branches_and_dtypes():
    z = np.array([-2.0, 0.0, 3.0])
    expected = [1 / (1 + math.exp(2.0)), 0.5, 1 / (1 + math.exp(-3.0))]
    np.testing.assert_allclose(sigmoid(z), expected, rtol=1e-15)
    assert sigmoid(np.float32([1.0])).dtype == np.float32
    ints = sigmoid(np.array([0, 1]))
    assert ints.dtype == np.float64
    np.testing.assert_allclose(ints, [0.5, 1 / (1 + math.exp(-1))], rtol=1e-15)
    # no overflow warning far out, and the saturated ends are exact
    with np.errstate(over="raise"):
        np.testing.assert_array_equal(sigmoid(np.array([-1000.0, 1000.0])), [0.0, 1.0])


def test_softmax_values_by_row():
    z = np.array([[0.0, math.log(3.0)], [1000.0, 1000.0]])
    np.testing.assert_allclose(softmax(z), [[0.25, 0.75], [0.5, 0.5]], rtol=1e-15)


def forward_backward(layer, x, g):
    y = layer.forward(np.array(x, dtype=np.float64), True)
    return y, layer.backward(np.array(g, dtype=np.float64))


def test_relu_kink_has_zero_gradient():
    y, dx = forward_backward(cr.ReLU(), [-1.0, 0.0, 2.0], [5.0, 5.0, 5.0])
    np.testing.assert_array_equal(y, [0.0, 0.0, 2.0])
    np.testing.assert_array_equal(dx, [0.0, 0.0, 5.0])


def test_leaky_relu_values_slope_and_kink():
    layer = cr.LeakyReLU(0.25)
    y, dx = forward_backward(layer, [-2.0, 0.0, 3.0], [4.0, 4.0, 4.0])
    np.testing.assert_array_equal(y, [-0.5, 0.0, 3.0])
    np.testing.assert_array_equal(dx, [1.0, 1.0, 4.0])  # slope 0.25 at the kink, as PyTorch
    assert cr.LeakyReLU().negative_slope == 0.01
    assert layer.forward(np.float32([-2.0])).dtype == np.float32
    assert layer.get_config() == {"type": "LeakyReLU", "negative_slope": 0.25}


def test_sigmoid_layer_with_scale():
    layer = cr.Sigmoid(scale=0.5)
    y, dx = forward_backward(layer, [2.0, -4.0], [1.0, 2.0])
    s1, s2 = 1 / (1 + math.exp(-1.0)), 1 / (1 + math.exp(2.0))
    np.testing.assert_allclose(y, [s1, s2], rtol=1e-15)
    np.testing.assert_allclose(dx, [0.5 * s1 * (1 - s1), 2 * 0.5 * s2 * (1 - s2)], rtol=1e-15)
    y, dx = forward_backward(cr.Sigmoid(), [2.0], [3.0])
    s = 1 / (1 + math.exp(-2.0))
    np.testing.assert_allclose(dx, [3 * s * (1 - s)], rtol=1e-15)
    assert repr(cr.Sigmoid()) == "Sigmoid()" and repr(layer) == "Sigmoid(scale=0.5)"
    assert layer.get_config() == {"type": "Sigmoid", "scale": 0.5}
    assert cr.Sigmoid().scale == 1.0


def test_tanh_and_identity():
    y, dx = forward_backward(cr.Tanh(), [0.5], [2.0])
    np.testing.assert_allclose(dx, [2.0 * (1 - math.tanh(0.5) ** 2)], rtol=1e-15)
    y, dx = forward_backward(cr.Identity(), [0.5, -1.0], [2.0, 3.0])
    np.testing.assert_array_equal(y, [0.5, -1.0])
    np.testing.assert_array_equal(dx, [2.0, 3.0])


def test_softmax_backward_is_the_vector_jacobian_product():
    x = np.array([[0.1, -0.3, 0.7]])
    g = np.array([[1.0, -2.0, 0.5]])
    y, dx = forward_backward(cr.Softmax(), x, g)
    jacobian = np.diag(y[0]) - np.outer(y[0], y[0])
    np.testing.assert_allclose(dx[0], jacobian @ g[0], rtol=1e-13)


@pytest.mark.parametrize("layer", [cr.Identity(), cr.ReLU(), cr.LeakyReLU(), cr.Sigmoid(),
                                   cr.Tanh(), cr.Softmax()])
def test_backward_without_forward_is_an_error(layer):
    with pytest.raises(RuntimeError):
        layer.backward(np.ones((1, 2)))
    layer.forward(np.ones((1, 2)), cache=False)  # stores nothing
    with pytest.raises(RuntimeError):
        layer.backward(np.ones((1, 2)))


def test_get_activation_by_name_copy_and_errors():
    for name, cls in [("identity", cr.Identity), ("linear", cr.Identity), ("relu", cr.ReLU),
                      ("Leaky_ReLU", cr.LeakyReLU), ("sigmoid", cr.Sigmoid), ("TANH", cr.Tanh),
                      ("softmax", cr.Softmax)]:
        assert type(get_activation(name)) is cls
    assert get_activation(None) is None
    original = cr.Sigmoid(scale=0.25)
    fresh = get_activation(original)
    assert fresh is not original and type(fresh) is cr.Sigmoid and fresh.scale == 0.25
    with pytest.raises(ValueError, match=r"^unknown activation 'swish'; choose one of identity, "
                                         r"linear, relu, leaky_relu, sigmoid, tanh, softmax$"):
        get_activation("swish")
    with pytest.raises(ValueError, match=r"^unknown activation 3; choose one of identity"):
        get_activation(3)


def test_softmax_one_sample():
    layer = cr.Softmax()
    y = layer.forward(np.array([0.0, math.log(3.0)]), True)
    np.testing.assert_allclose(y, [0.25, 0.75], rtol=1e-15)
    # dL/dx = y * (g - sum(g * y)): g = (1, 0) gives 0.25 * 0.75 * (1, -1)
    np.testing.assert_allclose(layer.backward(np.array([1.0, 0.0])), [0.1875, -0.1875],
                               rtol=1e-14)


def test_sigmoid_scale_two():
    layer = cr.Sigmoid(scale=2.0)
    y, dx = forward_backward(layer, [0.5], [1.0])
    s = 1 / (1 + math.exp(-1.0))
    np.testing.assert_allclose(y, [s], rtol=1e-15)
    np.testing.assert_allclose(dx, [2.0 * s * (1 - s)], rtol=1e-15)
