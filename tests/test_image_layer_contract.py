"""Conv2D, pooling, Flatten and BatchNorm at hand-computed points, with configs and messages."""

from __future__ import annotations

import math

import numpy as np
import pytest

import chainrule as cr
from chainrule.layers import layer_from_config
from chainrule.layers.conv import _pair, conv_output_size, scatter_windows, windows


def test_conv_output_size_formula():
    assert conv_output_size(5, 3, 1) == 3
    assert conv_output_size(5, 3, 2) == 2
    assert conv_output_size(5, 3, 2, 1) == 3
    assert conv_output_size(6, 2, 3) == 2


def test_windows_and_their_adjoint():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    view = windows(x, (2, 3), (2, 1))
    assert view.shape == (1, 1, 2, 2, 2, 3)
    np.testing.assert_array_equal(view[0, 0, 1, 1], x[0, 0, 2:4, 1:4])
    # adjoint: <windows(x), w> == <x, scatter(w)>
    w = np.random.default_rng(0).normal(size=view.shape)
    assert np.sum(view * w) == pytest.approx(np.sum(x * scatter_windows(w, x.shape, (2, 1))))
    counts = scatter_windows(np.ones(view.shape), x.shape, (2, 1))
    np.testing.assert_array_equal(counts[0, 0], [[1, 2, 2, 1]] * 4)


def test_pair_validation_messages():
    assert _pair(3, "kernel_size", "Conv2D", 1) == (3, 3)
    assert _pair([2, 3], "stride", "Conv2D", 1) == (2, 3)
    assert _pair((0, np.int64(1)), "padding", "Conv2D", 0) == (0, 1)
    with pytest.raises(ValueError, match=r"^Conv2D: kernel_size must be an int or a pair of ints, "
                                         r"got \(1, 2, 3\)$"):
        _pair((1, 2, 3), "kernel_size", "Conv2D", 1)
    with pytest.raises(TypeError, match=r"^MaxPool2D: stride must be an int or a pair of ints, "
                                        r"got True$"):
        _pair(True, "stride", "MaxPool2D", 1)
    with pytest.raises(TypeError, match=r"^Conv2D: padding must be an int or a pair of ints, "
                                        r"got 1\.5$"):
        _pair(1.5, "padding", "Conv2D", 0)
    with pytest.raises(ValueError, match=r"^Conv2D: stride must be positive, got 0$"):
        _pair(0, "stride", "Conv2D", 1)
    with pytest.raises(ValueError, match=r"^Conv2D: padding must be non-negative, got \(0, -1\)$"):
        _pair((0, -1), "padding", "Conv2D", 0)


def small_conv(**kwargs):
    layer = cr.Conv2D(1, 1, 2, **kwargs)
    layer.params["weight"][...] = [[[[1.0, 2.0], [3.0, 4.0]]]]
    if layer.use_bias:
        layer.params["bias"][...] = 0.5
    return layer


def test_conv_by_hand_with_stride_and_padding():
    x = np.arange(9.0).reshape(1, 1, 3, 3)  # [[0,1,2],[3,4,5],[6,7,8]]
    layer = small_conv()
    y = layer.forward(x)
    # window (0,0): 0*1 + 1*2 + 3*3 + 4*4 = 27, +0.5
    np.testing.assert_array_equal(y[0, 0], [[27.5, 37.5], [57.5, 67.5]])
    g = np.ones((1, 1, 2, 2))
    dx = layer.backward(g)
    np.testing.assert_array_equal(dx[0, 0], [[1, 3, 2], [4, 10, 6], [3, 7, 4]])
    np.testing.assert_array_equal(layer.grads["weight"][0, 0], [[8, 12], [20, 24]])
    np.testing.assert_array_equal(layer.grads["bias"], [4.0])
    strided = small_conv(stride=2, padding=1, bias=False)
    y = strided.forward(x)
    # padded 5x5, windows at (0,0), (0,2), (2,0), (2,2): only the bottom-right of the first sees x
    np.testing.assert_array_equal(y[0, 0], [[4 * 0, 3 * 1 + 4 * 2], [2 * 3 + 4 * 6, 1 * 4 + 2 * 5 + 3 * 7 + 4 * 8]])
    dx = strided.backward(np.ones((1, 1, 2, 2)))
    np.testing.assert_array_equal(dx[0, 0], [[4, 3, 4], [2, 1, 2], [4, 3, 4]])
    assert "bias" not in strided.grads
    strided.forward(x)
    strided.backward_params(np.ones((1, 1, 2, 2)))
    # dW[p, q] = sum over the four windows of padded[2i + p, 2j + q]: e.g. dW[1, 1] = 0 + 2 + 6 + 8
    np.testing.assert_array_equal(strided.grads["weight"][0, 0], [[4, 8], [8, 16]])


def test_conv_inference_in_chunks_matches():
    rng = np.random.default_rng(0)
    layer = cr.Conv2D(2, 3, 3, padding=1, seed=0)
    x = rng.normal(size=(5, 2, 4, 4))
    full = layer.forward(x)
    layer.chunk_elements = 2 * 9 * 16 * 2  # two samples at a time
    np.testing.assert_allclose(layer.forward(x, cache=False), full, rtol=1e-14)
    layer.chunk_elements = 1  # at least one sample per chunk
    np.testing.assert_allclose(layer.forward(x, cache=False), full, rtol=1e-14)


def test_conv_subclass_backward_runs_from_backward_params():
    class Seen(cr.Conv2D):
        def backward(self, grad_output):
            self.ran = True
            return super().backward(grad_output)

    layer = Seen(1, 1, 2)
    layer.forward(np.ones((1, 1, 2, 2)))
    layer.backward_params(np.ones((1, 1, 1, 1)))
    assert layer.ran


def test_conv_config_repr_and_messages():
    layer = cr.Conv2D(2, 4, (3, 2), stride=(1, 2), padding=1, bias=False, seed=0)
    assert layer.get_config() == {"type": "Conv2D", "in_channels": 2, "out_channels": 4,
                                  "kernel_size": [3, 2], "stride": [1, 2], "padding": [1, 1],
                                  "bias": False}
    assert repr(layer) == "Conv2D(2, 4, kernel_size=(3, 2), stride=(1, 2), padding=1, bias=False)"
    assert repr(cr.Conv2D(1, 2, 3)) == "Conv2D(1, 2, kernel_size=3)"
    assert repr(cr.Conv2D(1, 2, 3, stride=2, padding=(1, 2))) == (
        "Conv2D(1, 2, kernel_size=3, stride=2, padding=(1, 2))")
    rebuilt = layer_from_config(layer.get_config())
    assert rebuilt.get_config() == layer.get_config() and not rebuilt.params["weight"].any()
    assert layer.params["weight"].shape == (4, 2, 3, 2)
    bound = math.sqrt(6 / (2 * 3 * 2))  # he_uniform
    assert np.abs(layer.params["weight"]).max() <= bound
    assert layer.output_shape((2, 5, 5)) == (4, 5, 3)
    assert cr.Conv2D(1, 1, 2, dtype="float32").params["bias"].dtype == np.float32
    for args, message in [((0, 1, 2), r"^Conv2D: in_channels must be a positive integer, got 0$"),
                          ((1, True, 2), r"^Conv2D: out_channels must be a positive integer, "
                                         r"got True$"),
                          ((1.0, 1, 2), r"^Conv2D: in_channels must be a positive integer")]:
        with pytest.raises(ValueError, match=message):
            cr.Conv2D(*args)
    with pytest.raises(ValueError, match=r"^initializer returned shape \(1,\), expected "
                                         r"\(1, 1, 2, 2\)$"):
        cr.Conv2D(1, 1, 2, init=lambda shape, rng: np.zeros(1))
    conv = cr.Conv2D(3, 2, 3)
    with pytest.raises(ValueError, match=r"^Conv2D\(3, 2, kernel_size=3\): expected input of shape "
                                         r"\(batch, 3, H, W\) or \(3, H, W\), got shape "
                                         r"\(2, 5, 5\)$"):
        conv.output_shape((2, 5, 5))
    with pytest.raises(ValueError, match=r"^Conv2D\(3, 2, kernel_size=3\): the 3x3 kernel is larger "
                                         r"than the padded input \(2x5\) of shape \(3, 2, 5\)$"):
        conv.output_shape((3, 2, 5))
    with pytest.raises(ValueError, match=r"larger than the padded input \(5x2\)"):
        conv.output_shape((3, 5, 2))
    cr.Conv2D(3, 2, 3, padding=1).output_shape((3, 1, 1))  # 1 + 2 >= 3
    with pytest.raises(ValueError, match=r"^Conv2D\(3, 2, kernel_size=3\): expected input of shape "
                                         r"\(batch, 3, H, W\), got shape \(3, 5, 5\)$"):
        conv.forward(np.zeros((3, 5, 5)))
    with pytest.raises(RuntimeError, match=r"^Conv2D\(3, 2, kernel_size=3\): backward called "
                                           r"before forward$"):
        conv.backward(np.zeros((1, 2, 3, 3)))
    conv.forward(np.zeros((2, 3, 5, 5)))
    with pytest.raises(ValueError, match=r"^Conv2D\(3, 2, kernel_size=3\): grad_output must have "
                                         r"shape \(2, 2, 3, 3\), got \(2, 2, 3, 2\)$"):
        conv.backward(np.zeros((2, 2, 3, 2)))


# -- pooling --------------------------------------------------------------------------------


def test_max_pool_by_hand_with_ties_and_overlap():
    x = np.array([[[[1.0, 3.0, 2.0], [3.0, 0.0, 5.0], [4.0, 4.0, 1.0]]]])
    pool = cr.MaxPool2D(2, stride=1)
    y = pool.forward(x)
    np.testing.assert_array_equal(y[0, 0], [[3.0, 5.0], [4.0, 5.0]])
    dx = pool.backward(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]))
    # ties go to the first position in row-major order: (0,1) for the first window, (2,0) for the third
    np.testing.assert_array_equal(dx[0, 0], [[0, 1, 0], [0, 0, 6], [3, 0, 0]])
    assert pool.forward(x, cache=False).shape == (1, 1, 2, 2)
    # one more offset than the first: a tie at the last offset of a window
    last = cr.MaxPool2D(2)
    last.forward(np.array([[[[0.0, 0.0], [0.0, 7.0]]]]))
    np.testing.assert_array_equal(last.backward(np.ones((1, 1, 1, 1)))[0, 0], [[0, 0], [0, 1]])


def test_avg_pool_by_hand():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    pool = cr.AvgPool2D((2, 2), stride=(2, 1))
    y = pool.forward(x)
    np.testing.assert_array_equal(y[0, 0], [[2.5, 3.5, 4.5], [10.5, 11.5, 12.5]])
    dx = pool.backward(np.ones((1, 1, 2, 3)))
    np.testing.assert_array_equal(dx[0, 0], [[0.25, 0.5, 0.5, 0.25]] * 4)
    assert pool.forward(x.astype(np.float32)).dtype == np.float32
    assert pool.backward(np.ones((1, 1, 2, 3), np.float32)).dtype == np.float32


def test_pool_config_repr_and_messages():
    pool = cr.MaxPool2D((2, 3), stride=(1, 2))
    assert pool.get_config() == {"type": "MaxPool2D", "kernel_size": [2, 3], "stride": [1, 2]}
    assert repr(pool) == "MaxPool2D(kernel_size=(2, 3), stride=(1, 2))"
    assert repr(cr.AvgPool2D(2)) == "AvgPool2D(kernel_size=2)"
    assert repr(cr.AvgPool2D(2, stride=1)) == "AvgPool2D(kernel_size=2, stride=1)"
    assert cr.AvgPool2D(3).stride == (3, 3)
    assert type(layer_from_config(pool.get_config())) is cr.MaxPool2D
    assert pool.output_shape((4, 5, 7)) == (4, 4, 3)
    with pytest.raises(ValueError, match=r"^MaxPool2D\(kernel_size=\(2, 3\), stride=\(1, 2\)\): "
                                         r"expected input of shape \(batch, C, H, W\) or \(C, H, W\), "
                                         r"got shape \(4, 5\)$"):
        pool.output_shape((4, 5))
    with pytest.raises(ValueError, match=r"the 2x3 window is larger than the input of shape "
                                         r"\(1, 1, 5, 2\)$"):
        pool.forward(np.zeros((1, 1, 5, 2)))
    with pytest.raises(ValueError, match=r"the 2x3 window is larger than the input of shape "
                                         r"\(1, 1, 1, 5\)$"):
        pool.forward(np.zeros((1, 1, 1, 5)))
    with pytest.raises(ValueError, match=r"expected input of shape \(batch, C, H, W\), got shape "
                                         r"\(1, 5, 5\)$"):
        pool.forward(np.zeros((1, 5, 5)))
    with pytest.raises(RuntimeError, match=r"^AvgPool2D\(kernel_size=2\): backward called before "
                                           r"forward$"):
        cr.AvgPool2D(2).backward(np.zeros((1, 1, 1, 1)))
    pool.forward(np.zeros((2, 1, 3, 3)))
    with pytest.raises(ValueError, match=r"grad_output must have shape \(2, 1, 2, 1\), got "
                                         r"\(2, 1, 1, 1\)$"):
        pool.backward(np.zeros((2, 1, 1, 1)))


# -- Flatten --------------------------------------------------------------------------------


def test_flatten():
    layer = cr.Flatten()
    x = np.arange(12.0).reshape(2, 3, 2)
    np.testing.assert_array_equal(layer.forward(x), x.reshape(2, 6))
    np.testing.assert_array_equal(layer.backward(np.arange(12.0).reshape(2, 6)), x)
    assert layer.output_shape((3, 4, 5)) == (60,)
    with pytest.raises(ValueError, match=r"^Flatten\(\): expected a batch \(n, \.\.\.\), got shape "
                                         r"\(3,\)$"):
        layer.forward(np.zeros(3))
    with pytest.raises(ValueError, match=r"^Flatten\(\): grad_output must have shape \(2, 6\), got "
                                         r"\(2, 5\)$"):
        layer.backward(np.zeros((2, 5)))
    layer.forward(x, cache=False)
    assert layer._x.shape == (2, 3, 2)  # the cached forward's input is kept


# -- BatchNorm ------------------------------------------------------------------------------


def test_batchnorm_training_by_hand():
    layer = cr.BatchNorm1d(2, eps=0.0 + 1e-12, momentum=0.5)
    x = np.array([[1.0, 10.0], [3.0, 10.0], [5.0, 16.0]])
    y = layer.forward(x, True)
    # channel 0: mean 3, biased var 8/3; channel 1: mean 12, var 8
    np.testing.assert_allclose(y[:, 0], np.array([-2, 0, 2]) / math.sqrt(8 / 3), rtol=1e-9)
    np.testing.assert_allclose(y[:, 1], np.array([-2, -2, 4]) / math.sqrt(8), rtol=1e-9)
    # running: 0.5 * 0 + 0.5 * mean; 0.5 * 1 + 0.5 * unbiased var (4 and 12)
    np.testing.assert_allclose(layer.running_mean, [1.5, 6.0])
    np.testing.assert_allclose(layer.running_var, [2.5, 6.5])
    assert layer.num_batches_tracked == 1
    g = np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    dx = layer.backward(g)
    x_hat = y
    expected = (g - g.mean(axis=0) - x_hat * (g * x_hat).mean(axis=0)) / np.sqrt([8 / 3, 8])
    np.testing.assert_allclose(dx, expected, rtol=1e-9)
    np.testing.assert_allclose(layer.grads["weight"], (g * x_hat).sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(layer.grads["bias"], [1.0, 1.0])


def test_batchnorm_inference_cumulative_average_and_no_affine():
    layer = cr.BatchNorm1d(1, momentum=None, affine=False)
    layer.forward(np.array([[0.0], [2.0]]), True)  # mean 1, unbiased var 2
    layer.forward(np.array([[4.0], [4.0]]), True)  # mean 4, var 0
    np.testing.assert_allclose(layer.running_mean, [2.5])  # (1 + 4) / 2
    np.testing.assert_allclose(layer.running_var, [1.0])  # (2 + 0) / 2
    assert layer.num_batches_tracked == 2 and layer.params == {}
    y = layer.forward(np.array([[3.5]]))
    np.testing.assert_allclose(y, [[1.0 / math.sqrt(1.0 + 1e-5)]], rtol=1e-12)
    np.testing.assert_allclose(layer.backward(np.array([[2.0]])), [[2 / math.sqrt(1 + 1e-5)]])
    # one sample (C,) in inference, and back
    np.testing.assert_allclose(layer.forward(np.array([3.5])), [1.0 / math.sqrt(1.0 + 1e-5)])
    np.testing.assert_allclose(layer.backward(np.array([2.0])), [2 / math.sqrt(1 + 1e-5)])


def test_batchnorm2d_statistics_over_pixels_and_affine_inference():
    layer = cr.BatchNorm2d(1, momentum=1.0)
    x = np.array([[[[1.0, 3.0]]], [[[5.0, 7.0]]]])  # (2, 1, 1, 2): m = 4, mean 4, var 5
    layer.forward(x, True)
    np.testing.assert_allclose(layer.running_mean, [4.0])
    np.testing.assert_allclose(layer.running_var, [20 / 3])
    layer.params["weight"][...] = 2.0
    layer.params["bias"][...] = 1.0
    y = layer.forward(x)
    np.testing.assert_allclose(y, 2.0 * (x - 4.0) / math.sqrt(20 / 3 + 1e-5) + 1.0, rtol=1e-12)
    dx = layer.backward(np.ones_like(x))
    np.testing.assert_allclose(dx, np.full(x.shape, 2.0 / math.sqrt(20 / 3 + 1e-5)), rtol=1e-12)


def test_batchnorm_config_repr_and_messages():
    layer = cr.BatchNorm2d(3, eps=1e-3, momentum=None, affine=False)
    assert layer.get_config() == {"type": "BatchNorm2d", "num_features": 3, "eps": 1e-3,
                                  "momentum": None, "affine": False}
    assert repr(layer) == "BatchNorm2d(3, eps=0.001, momentum=None, affine=False)"
    assert repr(cr.BatchNorm1d(4)) == "BatchNorm1d(4)"
    assert layer_from_config(layer.get_config()).get_config() == layer.get_config()
    assert list(layer.buffers()) == ["running_mean", "running_var", "num_batches_tracked"]
    norm = cr.BatchNorm1d(2)
    assert norm.eps == 1e-5 and norm.momentum == 0.1 and norm.affine
    np.testing.assert_array_equal(norm.params["weight"], [1.0, 1.0])
    np.testing.assert_array_equal(norm.running_var, [1.0, 1.0])
    norm.astype("float32")
    assert norm.running_mean.dtype == np.float32 and norm.params["bias"].dtype == np.float32
    assert norm.buffers()["num_batches_tracked"].dtype == np.int64
    assert norm.output_shape((2,)) == (2,) and norm.output_shape((2, 7)) == (2, 7)
    for args, message in [((0,), r"^BatchNorm1d: num_features must be a positive integer, got 0$"),
                          ((True,), r"num_features must be a positive integer, got True"),
                          ((2, 0.0), r"^BatchNorm1d: eps must be a positive number, got 0\.0$"),
                          ((2, float("inf")), r"eps must be a positive number, got inf"),
                          ((2, True), r"eps must be a positive number, got True"),
                          ((2, 1e-5, 1.5), r"^BatchNorm1d: momentum must be in \[0, 1\] or None, "
                                           r"got 1\.5$"),
                          ((2, 1e-5, True), r"momentum must be in \[0, 1\] or None, got True"),
                          ((2, 1e-5, -0.1), r"got -0\.1")]:
        with pytest.raises(ValueError, match=message):
            cr.BatchNorm1d(*args)
    cr.BatchNorm1d(2, 1, 0)  # integer eps and momentum are numbers
    with pytest.raises(ValueError, match=r"^BatchNorm1d\(2\): expected input of shape \(batch, 2\) "
                                         r"or \(batch, 2, L\), got shape \(batch, 3\)$"):
        norm.output_shape((3,))
    with pytest.raises(ValueError, match=r"^BatchNorm2d\(3, eps=0\.001, momentum=None, "
                                         r"affine=False\): expected input of shape "
                                         r"\(batch, 3, H, W\), got shape \(1, 3, 4\)$"):
        layer.forward(np.zeros((1, 3, 4)))
    with pytest.raises(ValueError, match=r"^BatchNorm1d\(2\): training needs more than one value per "
                                         r"channel to take a variance, got input of shape \(1, 2\)$"):
        norm.forward(np.zeros((1, 2)), True)
    norm.forward(np.zeros((1, 2, 2)), True)  # two values per channel: enough
    with pytest.raises(RuntimeError, match=r"^BatchNorm1d\(4\): backward called before forward$"):
        cr.BatchNorm1d(4).backward(np.zeros((2, 4)))
    norm.forward(np.zeros((3, 2), np.float32), True)
    with pytest.raises(ValueError, match=r"^BatchNorm1d\(2\): grad_output must have shape \(3, 2\), "
                                         r"got \(2, 2\)$"):
        norm.backward(np.zeros((2, 2), np.float32))
