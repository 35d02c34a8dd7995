"""MaxPool2D, AvgPool2D and Flatten: hand-computed values, gradient checks, properties."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import chainrule as cr
from chainrule.layers import AvgPool2D, Flatten, MaxPool2D

IMAGE = np.arange(16.0).reshape(1, 1, 4, 4)  # x[i, j] = 4i + j


def test_maxpool_hand_computed():
    pool = MaxPool2D(2)
    np.testing.assert_array_equal(pool.forward(IMAGE)[0, 0], [[5, 7], [13, 15]])
    grad = pool.backward(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]))
    expected = np.zeros((4, 4))
    expected[1, 1], expected[1, 3], expected[3, 1], expected[3, 3] = 1, 2, 3, 4
    np.testing.assert_array_equal(grad[0, 0], expected)


def test_maxpool_overlapping_windows_add_up():
    pool = MaxPool2D(2, stride=1)
    y = pool.forward(IMAGE)
    np.testing.assert_array_equal(y[0, 0], [[5, 6, 7], [9, 10, 11], [13, 14, 15]])
    grad = pool.backward(np.ones_like(y))[0, 0]
    # each window's maximum is its bottom-right pixel
    np.testing.assert_array_equal(grad, [[0, 0, 0, 0], [0, 1, 1, 1], [0, 1, 1, 1], [0, 1, 1, 1]])


def test_maxpool_tie_goes_to_first_in_window():
    pool = MaxPool2D(2)
    pool.forward(np.zeros((1, 1, 2, 2)))
    np.testing.assert_array_equal(pool.backward(np.ones((1, 1, 1, 1)))[0, 0], [[1, 0], [0, 0]])


def test_avgpool_hand_computed():
    pool = AvgPool2D(2)
    np.testing.assert_array_equal(pool.forward(IMAGE)[0, 0], [[2.5, 4.5], [10.5, 12.5]])
    grad = pool.backward(np.array([[[[4.0, 8.0], [0.0, -4.0]]]]))[0, 0]
    np.testing.assert_array_equal(grad, [[1, 1, 2, 2], [1, 1, 2, 2], [0, 0, -1, -1], [0, 0, -1, -1]])


def test_flatten_row_major_and_back():
    flat = Flatten()
    x = np.arange(24.0).reshape(2, 3, 2, 2)
    y = flat.forward(x)
    np.testing.assert_array_equal(y[1], np.arange(12.0, 24.0))
    np.testing.assert_array_equal(flat.backward(y * 2), x * 2)


@pytest.mark.parametrize("pool_type", [MaxPool2D, AvgPool2D])
@pytest.mark.parametrize("kernel, stride, size", [(2, None, (4, 4)), (3, 1, (5, 6)), ((2, 3), (1, 2), (5, 7)), (2, 3, (7, 7))])
def test_gradients_match_central_differences(pool_type, kernel, stride, size):
    rng = np.random.default_rng(0)
    net = cr.Network([pool_type(kernel, stride), cr.Tanh(), Flatten()], loss="mean_squared_error",
                     dtype="float64")
    x = rng.normal(size=(2, 3, *size))
    report = cr.check_gradients(net, x, rng.normal(size=net.forward(x).shape))
    assert report.ok, str(report)


def test_checker_fails_on_wrong_maxpool_backward():
    class SpreadsEvenly(MaxPool2D):  # wrong: as if it were an average
        def backward(self, grad_output):
            n, c, oh, ow = grad_output.shape
            return np.repeat(np.repeat(grad_output / 4, 2, axis=2), 2, axis=3)

    rng = np.random.default_rng(1)
    net = cr.Network([SpreadsEvenly(2), Flatten()], loss="mean_squared_error", dtype="float64")
    x = rng.normal(size=(2, 1, 4, 4))
    assert not cr.check_gradients(net, x, rng.normal(size=(2, 4))).ok


@pytest.mark.parametrize("pool_type", [MaxPool2D, AvgPool2D])
def test_validation_and_shape_errors(pool_type):
    with pytest.raises(ValueError, match="kernel_size must be positive"):
        pool_type(0)
    with pytest.raises(ValueError, match="stride must be positive"):
        pool_type(2, stride=0)
    net = cr.Network([pool_type(3), Flatten()], loss="mean_squared_error")
    with pytest.raises(ValueError, match=rf"layer 0 \({pool_type.__name__}.*3x3 window is larger.*\(1, 2, 2, 2\)"):
        net.forward(np.zeros((1, 2, 2, 2)))
    assert pool_type(2).stride == (2, 2)  # stride defaults to the kernel size, as in PyTorch
    assert cr.layers.layer_from_config(pool_type(3, 2).get_config()).get_config() == \
        pool_type(3, 2).get_config()


@settings(max_examples=30, deadline=None)
@given(
    kernel=st.integers(1, 3),
    stride=st.integers(1, 3),
    seed=st.integers(0, 2**16),
    ties=st.booleans(),
)
def test_maxpool_gradient_routes_to_exactly_one_input_per_window(kernel, stride, seed, ties):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2, 2, 7, 7))
    if ties:
        x = np.round(x)  # many equal values: still one winner per window
    pool = MaxPool2D(kernel, stride)
    y = pool.forward(x)
    for b, c, i, j in np.ndindex(*y.shape):
        one = np.zeros_like(y)
        one[b, c, i, j] = 1.0
        routed = pool.backward(one)
        (where,) = np.argwhere(routed)  # exactly one input receives it...
        assert routed[tuple(where)] == 1.0
        rows = slice(i * stride, i * stride + kernel)
        cols = slice(j * stride, j * stride + kernel)
        # ...inside the window, and it holds the window's maximum
        assert (where[0], where[1]) == (b, c)
        assert rows.start <= where[2] < rows.stop and cols.start <= where[3] < cols.stop
        assert x[tuple(where)] == x[b, c, rows, cols].max() == y[b, c, i, j]


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 4), kernel=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_pool_batch_equals_samples_one_by_one(n, kernel, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2, 6, 5))
    for pool in (MaxPool2D(kernel), AvgPool2D(kernel, 1)):
        batch = pool.forward(x)
        for i in range(n):
            np.testing.assert_array_equal(pool.forward(x[i : i + 1])[0], batch[i])
