import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import chainrule as cr
from chainrule.activations import sigmoid, softmax

X = np.array([[-2.0, -0.5, 0.0, 0.5, 3.0]])


def test_relu_values_and_gradient():
    layer = cr.ReLU()
    np.testing.assert_array_equal(layer.forward(X), [[0, 0, 0, 0.5, 3.0]])
    np.testing.assert_array_equal(layer.backward(np.ones_like(X)), [[0, 0, 0, 1, 1]])


def test_leaky_relu_values_and_gradient():
    layer = cr.LeakyReLU(0.1)
    np.testing.assert_allclose(layer.forward(X), [[-0.2, -0.05, 0, 0.5, 3.0]])
    np.testing.assert_allclose(layer.backward(np.ones_like(X)), [[0.1, 0.1, 0.1, 1, 1]])
    assert cr.LeakyReLU().negative_slope == 0.01


def test_sigmoid_values_and_gradient():
    layer = cr.Sigmoid()
    y = layer.forward(np.array([0.0, np.log(3.0)]))
    np.testing.assert_allclose(y, [0.5, 0.75])
    np.testing.assert_allclose(layer.backward(np.ones(2)), [0.25, 0.1875])


def test_stretched_sigmoid():
    layer = cr.Sigmoid(scale=0.01)
    y = layer.forward(np.array([100 * np.log(3.0)]))
    np.testing.assert_allclose(y, [0.75])
    np.testing.assert_allclose(layer.backward(np.ones(1)), [0.01 * 0.1875])


def test_sigmoid_saturates_to_exactly_one_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = sigmoid(np.array([-1000.0, 40.0, 300.0, 1000.0]))
    assert y[0] == 0.0 and y[1] == 1.0 and y[2] == 1.0 and y[3] == 1.0


def test_tanh_values_and_gradient():
    layer = cr.Tanh()
    y = layer.forward(np.array([0.0, 1.0]))
    np.testing.assert_allclose(y, [0.0, np.tanh(1.0)])
    np.testing.assert_allclose(layer.backward(np.ones(2)), [1.0, 1 - np.tanh(1.0) ** 2])


def test_identity():
    layer = cr.Identity()
    np.testing.assert_array_equal(layer.forward(X), X)
    np.testing.assert_array_equal(layer.backward(X), X)


def test_softmax_values_and_gradient():
    layer = cr.Softmax()
    y = layer.forward(np.array([[0.0, np.log(3.0)]]))
    np.testing.assert_allclose(y, [[0.25, 0.75]])
    # Jacobian y_i (delta_ij - y_j) times g = [1, 0]
    np.testing.assert_allclose(layer.backward(np.array([[1.0, 0.0]])), [[0.1875, -0.1875]])


@pytest.mark.parametrize("cls", [cr.ReLU, cr.LeakyReLU, cr.Sigmoid, cr.Tanh, cr.Softmax, cr.Identity])
def test_activations_keep_float32(cls):
    layer = cls()
    x = np.linspace(-3, 3, 12, dtype=np.float32).reshape(3, 4)
    assert layer.forward(x).dtype == np.float32
    assert layer.backward(np.ones_like(x)).dtype == np.float32


finite_rows = arrays(
    np.float64, st.tuples(st.integers(1, 6), st.integers(1, 8)),
    elements=st.floats(-1e3, 1e3, allow_nan=False),
)


@settings(max_examples=60, deadline=None)
@given(finite_rows, st.floats(-500, 500))
def test_softmax_rows_sum_to_one_and_are_shift_invariant(z, shift):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = softmax(z)
        q = softmax(z + shift)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-12)
    assert np.all(p >= 0)
    np.testing.assert_allclose(p, q, atol=1e-9)


def test_unknown_activation_name():
    from chainrule.activations import get_activation

    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        get_activation("swish")
