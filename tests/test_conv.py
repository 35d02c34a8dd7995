"""Conv2D: hand-computed values, gradient checks across settings, shapes and argument errors."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import chainrule as cr
from chainrule.layers import Conv2D, Flatten

# A 4x4 image 0..15 (x[i, j] = 4i + j) and the 2x2 kernel [[1, 2], [3, 4]]:
# y[i, j] = x[i,j] + 2 x[i,j+1] + 3 x[i+1,j] + 4 x[i+1,j+1] = 40 i + 10 j + 34.
IMAGE = np.arange(16.0).reshape(1, 1, 4, 4)
KERNEL = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])


def _conv(**kwargs):
    layer = Conv2D(1, 1, 2, dtype="float64", **kwargs)
    layer.params["weight"][...] = KERNEL
    return layer


def test_hand_computed_forward():
    layer = _conv()
    layer.params["bias"][...] = 1.0
    expected = np.array([[34, 44, 54], [74, 84, 94], [114, 124, 134]], dtype=float) + 1.0
    np.testing.assert_array_equal(layer.forward(IMAGE)[0, 0], expected)


def test_hand_computed_stride_and_padding():
    np.testing.assert_array_equal(_conv(stride=2).forward(IMAGE)[0, 0], [[34, 54], [114, 134]])
    padded = _conv(padding=1).forward(IMAGE)[0, 0]
    assert padded.shape == (5, 5)
    # corner windows see one pixel each: x[0,0] * 4, and x[0,0] * 3 + x[0,1] * 4
    assert padded[0, 0] == 0.0 and padded[0, 1] == 4.0
    # bottom-right: only x[3,3] = 15 under the kernel's top-left 1
    assert padded[4, 4] == 15.0


def test_hand_computed_backward():
    layer = _conv()
    layer.forward(IMAGE)
    grad_x = layer.backward(np.ones((1, 1, 3, 3)))
    # each pixel collects the kernel weights of the windows that cover it
    np.testing.assert_array_equal(
        grad_x[0, 0], [[1, 3, 3, 2], [4, 10, 10, 6], [4, 10, 10, 6], [3, 7, 7, 4]]
    )
    # dL/dweight[p, q] = sum of the 3x3 block of x starting at (p, q)
    np.testing.assert_array_equal(layer.grads["weight"][0, 0], [[45, 54], [81, 90]])
    np.testing.assert_array_equal(layer.grads["bias"], [9.0])


def test_backward_params_matches_backward():
    rng = np.random.default_rng(0)
    layer = Conv2D(2, 3, 3, stride=2, padding=1, seed=0)
    x = rng.normal(size=(4, 2, 7, 6))
    g = rng.normal(size=layer.forward(x).shape)
    layer.backward(g)
    full = {k: v.copy() for k, v in layer.grads.items()}
    layer.backward_params(g)
    for name in full:
        np.testing.assert_allclose(layer.grads[name], full[name], rtol=1e-12)


def _network(layers):
    return cr.Network(layers, loss="mean_squared_error", dtype="float64")


@pytest.mark.parametrize(
    "in_channels, out_channels, kernel, stride, padding, size, bias",
    [
        (1, 1, 2, 1, 0, (4, 4), True),
        (2, 3, 3, 1, 1, (5, 5), True),
        (3, 2, 3, 2, 0, (7, 6), True),
        (2, 2, (2, 3), (2, 1), (1, 0), (5, 6), False),
        (1, 4, 5, 1, 2, (6, 6), True),
        (2, 1, 1, 3, 0, (7, 7), True),
        (1, 2, 3, 3, 2, (4, 5), True),
    ],
)
def test_gradients_match_central_differences(in_channels, out_channels, kernel, stride, padding,
                                             size, bias):
    rng = np.random.default_rng(1)
    conv = Conv2D(in_channels, out_channels, kernel, stride, padding, bias=bias, seed=2)
    if bias:
        conv.params["bias"][...] = rng.normal(size=out_channels)
    net = _network([conv, cr.Tanh(), Flatten()])
    x = rng.normal(size=(2, in_channels, *size))
    target = rng.normal(size=net.forward(x).shape)
    report = cr.check_gradients(net, x, target)
    assert report.ok, str(report)
    names = {c.name for c in report}
    assert names == {"0.weight", "input"} | ({"0.bias"} if bias else set())


class _ForgetsPadding(Conv2D):
    """A wrong backward: returns the padded input's gradient cropped on one side only."""

    def backward(self, grad_output):
        g = super().backward(grad_output)
        return np.roll(g, 1, axis=-1)


class _ScaledWeightGrad(Conv2D):
    def backward(self, grad_output):
        g = super().backward(grad_output)
        self.grads["weight"] *= 1.001
        return g


@pytest.mark.parametrize("wrong, tensor", [(_ForgetsPadding, "input"), (_ScaledWeightGrad, "0.weight")])
def test_checker_fails_on_wrong_backward(wrong, tensor):
    rng = np.random.default_rng(3)
    net = _network([wrong(2, 2, 3, padding=1, seed=0), Flatten()])
    x = rng.normal(size=(2, 2, 4, 4))
    report = cr.check_gradients(net, x, rng.normal(size=(2, 32)))
    assert not report.ok
    assert not report[tensor].ok


def test_shapes_follow_torch_formula():
    layer = Conv2D(3, 8, (3, 5), stride=(2, 1), padding=(1, 2))
    assert layer.params["weight"].shape == (8, 3, 3, 5)
    assert layer.params["bias"].shape == (8,)
    # floor((H + 2p - k) / s) + 1
    assert layer.output_shape((3, 9, 10)) == (8, 5, 10)
    assert layer.forward(np.zeros((2, 3, 9, 10))).shape == (2, 8, 5, 10)


def test_wrong_input_names_layer_and_both_shapes():
    net = cr.Network([Conv2D(3, 4, 3), Flatten()], loss="mean_squared_error")
    with pytest.raises(ValueError, match=r"layer 0 \(Conv2D\(3, 4, kernel_size=3\)\).*\(batch, 3, H, W\).*\(2, 1, 8, 8\)"):
        net.forward(np.zeros((2, 1, 8, 8)))
    with pytest.raises(ValueError, match=r"3x3 kernel is larger.*\(2, 3, 2, 2\)"):
        net.forward(np.zeros((2, 3, 2, 2)))
    with pytest.raises(ValueError, match=r"one image \(C, H, W\) or a batch \(n, C, H, W\).*\(2, 27\)"):
        net.forward(np.zeros((2, 27)))


def test_channel_mismatch_refused_at_construction():
    with pytest.raises(ValueError, match=r"layer 1 .*expects 3 input channels.*produces 4"):
        cr.Network([Conv2D(1, 4, 3), Conv2D(3, 2, 3)])


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"kernel_size": 0}, ValueError, "kernel_size must be positive"),
        ({"kernel_size": (2, -1)}, ValueError, "kernel_size must be positive"),
        ({"kernel_size": (2, 2, 2)}, ValueError, "int or a pair"),
        ({"kernel_size": 2.5}, TypeError, "int or a pair"),
        ({"kernel_size": 3, "stride": 0}, ValueError, "stride must be positive"),
        ({"kernel_size": 3, "padding": -1}, ValueError, "padding must be non-negative"),
        ({"kernel_size": 3, "stride": True}, TypeError, "stride"),
    ],
)
def test_argument_validation(kwargs, error, message):
    with pytest.raises(error, match=message):
        Conv2D(1, 1, **kwargs)


@pytest.mark.parametrize("bad", [0, -2, 1.5, True])
def test_channel_counts_validated(bad):
    with pytest.raises(ValueError, match="in_channels must be a positive integer"):
        Conv2D(bad, 1, 3)


def test_one_image_and_batch_agree():
    rng = np.random.default_rng(4)
    net = cr.Network([Conv2D(2, 3, 3, padding=1, seed=0), cr.ReLU(), Flatten(), cr.Dense(48, 2)],
                     loss="mean_squared_error", dtype="float64")
    x = rng.normal(size=(3, 2, 4, 4))
    batch = net.predict(x)
    np.testing.assert_allclose(net.predict(x[1]), batch[1], rtol=1e-12)
    np.testing.assert_allclose(net.forward(x[2]), batch[2], rtol=1e-12)


def test_inference_in_chunks_matches_one_product(monkeypatch):
    rng = np.random.default_rng(5)
    layer = Conv2D(2, 3, 3, padding=1, seed=0)
    x = rng.normal(size=(7, 2, 5, 5))
    whole = layer.forward(x)
    monkeypatch.setattr(Conv2D, "chunk_elements", 2 * 18 * 25)  # two samples per chunk
    # the same sums; the BLAS may block a product of other width differently (last bits)
    np.testing.assert_allclose(layer.forward(x, cache=False), whole, rtol=1e-12, atol=1e-14)


def test_config_round_trip():
    layer = Conv2D(3, 5, (3, 1), stride=2, padding=(1, 0), bias=False)
    again = cr.layers.layer_from_config(layer.get_config())
    assert again.get_config() == layer.get_config()
    assert repr(again) == "Conv2D(3, 5, kernel_size=(3, 1), stride=2, padding=(1, 0), bias=False)"


# -- properties ----------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 4),
    channels=st.integers(1, 3),
    kernel=st.integers(1, 3),
    stride=st.integers(1, 2),
    padding=st.integers(0, 1),
    seed=st.integers(0, 2**16),
)
def test_batch_equals_samples_one_by_one(n, channels, kernel, stride, padding, seed):
    rng = np.random.default_rng(seed)
    layer = Conv2D(channels, 2, kernel, stride, padding, seed=seed)
    x = rng.normal(size=(n, channels, 5, 6))
    batch = layer.forward(x)
    for i in range(n):
        np.testing.assert_allclose(layer.forward(x[i : i + 1])[0], batch[i], rtol=1e-12, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(
    dy=st.integers(-2, 2),
    dx=st.integers(-2, 2),
    kernel=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_convolution_commutes_with_whole_pixel_shifts(dy, dx, kernel, seed):
    """Shift the input, convolve: the output shifted the same way, away from the borders."""
    rng = np.random.default_rng(seed)
    layer = Conv2D(2, 3, kernel, seed=seed)
    layer.params["bias"][...] = rng.normal(size=3)
    x = np.zeros((1, 2, 12, 12))
    x[:, :, 4:8, 4:8] = rng.normal(size=(1, 2, 4, 4))  # content well inside the frame
    shifted = np.roll(x, (dy, dx), axis=(2, 3))  # only zeros wrap around
    y, y_shifted = layer.forward(x), layer.forward(shifted)
    np.testing.assert_allclose(np.roll(y, (dy, dx), axis=(2, 3)), y_shifted, atol=1e-12)
