"""Image layers at values a mutant would change: dtypes kept, messages, chunked inference, one-sample batch norm.

Each test compares with a hand-computed value or an independent NumPy computation.
"""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr
from chainrule.layers.pooling import AvgPool2D, MaxPool2D


def _xcorr(x, w, b, stride=(1, 1)):
    """Explicit-loop cross-correlation, no padding: (n, C, H, W) * (O, C, kh, kw)."""
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    sh, sw = stride
    oh, ow = (h - kh) // sh + 1, (wd - kw) // sw + 1
    y = np.zeros((n, o, oh, ow))
    for bi in range(n):
        for oi in range(o):
            for i in range(oh):
                for j in range(ow):
                    y[bi, oi, i, j] = b[oi] + np.sum(w[oi] * x[bi, :, i * sh:i * sh + kh, j * sw:j * sw + kw])
    return y


# -- Flatten ----------------------------------------------------------------------

def test_flatten_accepts_a_two_dimensional_batch():
    x = np.arange(6.0).reshape(3, 2)
    np.testing.assert_array_equal(cr.layers.Flatten().forward(x), x)


# -- pooling ----------------------------------------------------------------------

@pytest.mark.parametrize("cls", [MaxPool2D, AvgPool2D])
def test_pool_setting_messages_name_the_layer(cls):
    name = cls.__name__
    with pytest.raises(ValueError, match=rf"^{name}: kernel_size must be positive, got 0$"):
        cls(0)
    with pytest.raises(ValueError, match=rf"^{name}: stride must be positive, got \(1, 0\)$"):
        cls(2, stride=(1, 0))


def test_maxpool_backward_keeps_the_gradient_dtype():
    x = np.array([[[[1.0, 3.0], [2.0, 0.0]]]], dtype=np.float32)
    pool = MaxPool2D(2)
    pool.forward(x)
    g = pool.backward(np.array([[[[5.0]]]], dtype=np.float32))
    assert g.dtype == np.float32
    np.testing.assert_array_equal(g, [[[[0.0, 5.0], [0.0, 0.0]]]])
    # integer gradients are routed as integers
    gi = pool.backward(np.array([[[[7]]]], dtype=np.int64))
    assert gi.dtype == np.int64
    np.testing.assert_array_equal(gi, [[[[0, 7], [0, 0]]]])


# -- Conv2D -----------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    ({"kernel_size": 0}, r"^Conv2D: kernel_size must be positive, got 0$"),
    ({"kernel_size": 2, "stride": 0}, r"^Conv2D: stride must be positive, got 0$"),
    ({"kernel_size": 2, "padding": -1}, r"^Conv2D: padding must be non-negative, got -1$"),
])
def test_conv_setting_messages(kwargs, message):
    with pytest.raises(ValueError, match=message):
        cr.layers.Conv2D(1, 1, **kwargs)


@pytest.mark.parametrize("shape, padded", [((1, 1, 1, 9), "3x11"), ((1, 1, 9, 1), "11x3")])
def test_conv_kernel_larger_than_padded_input_on_one_axis(shape, padded):
    conv = cr.layers.Conv2D(1, 1, 4, padding=1, seed=0)
    message = (rf"^Conv2D.*: the 4x4 kernel is larger than the padded input \({padded}\) "
               rf"of shape \({shape[0]}, {shape[1]}, {shape[2]}, {shape[3]}\)$")
    with pytest.raises(ValueError, match=message):
        conv.forward(np.zeros(shape))
    with pytest.raises(ValueError, match=r"kernel is larger than the padded input"):
        conv.output_shape(shape[1:])


def test_conv_dtype_of_weights_and_gradients():
    conv = cr.layers.Conv2D(2, 3, 2, dtype="float32", seed=0)
    assert conv.params["weight"].dtype == np.float32
    assert conv.params["bias"].dtype == np.float32
    assert conv.grads["weight"].dtype == np.float32
    assert conv.grads["bias"].dtype == np.float32


def _chunked_conv():
    conv = cr.layers.Conv2D(2, 3, (1, 2), seed=1)  # kh != kw
    # per sample: C*kh*kw*OH*OW = 2*1*2*3*2 = 24 im2col elements for (2, 3, 3) inputs
    conv.chunk_elements = 2 * 24 + 5  # two samples a chunk
    x = np.random.default_rng(2).normal(size=(5, 2, 3, 3))
    return conv, x


def test_conv_inference_in_chunks_matches_loops_and_chunk_sizes():
    conv, x = _chunked_conv()
    sizes = []
    convolve = conv._convolve

    def spy(part, *, cache):
        sizes.append(len(part))
        return convolve(part, cache=cache)

    conv._convolve = spy
    y = conv.forward(x, cache=False)
    assert sizes == [2, 2, 1]
    np.testing.assert_allclose(y, _xcorr(x, conv.params["weight"], conv.params["bias"]), atol=1e-12)
    # one sample per chunk when a sample alone exceeds the budget
    sizes.clear()
    conv.chunk_elements = 10
    np.testing.assert_allclose(conv.forward(x, cache=False), y, atol=1e-12)
    assert sizes == [1] * 5
    # inference in chunks keeps no cache
    with pytest.raises(RuntimeError, match=r"backward called before forward"):
        conv.backward(np.ones(y.shape))


def test_conv_training_forward_is_not_chunked_and_backward_works():
    conv, x = _chunked_conv()
    conv.chunk_elements = 1
    y = conv.forward(x)
    np.testing.assert_allclose(y, _xcorr(x, conv.params["weight"], conv.params["bias"]), atol=1e-12)
    conv.backward(np.ones(y.shape))
    # dL/dbias = sum of ones over n*OH*OW = 5*3*2
    np.testing.assert_allclose(conv.grads["bias"], [30.0, 30.0, 30.0])


# -- batch normalisation ----------------------------------------------------------

@pytest.mark.parametrize("cls", [cr.layers.BatchNorm1d, cr.layers.BatchNorm2d])
def test_batchnorm_dtype_of_parameters_gradients_and_buffers(cls):
    bn = cls(3, dtype="float32")
    for arrays in (bn.params, bn.grads):
        assert arrays["weight"].dtype == np.float32
        assert arrays["bias"].dtype == np.float32
    assert bn.running_mean.dtype == np.float32
    assert bn.running_var.dtype == np.float32
    np.testing.assert_array_equal(bn.params["weight"], [1, 1, 1])
    np.testing.assert_array_equal(bn.running_var, [1, 1, 1])


def test_batchnorm_float32_output_stays_float32():
    bn = cr.layers.BatchNorm2d(2, dtype="float32")
    x = np.arange(16, dtype=np.float32).reshape(2, 2, 2, 2)
    assert bn.forward(x, training=True).dtype == np.float32
    assert bn.forward(x).dtype == np.float32


def test_batchnorm2d_rank_message_lists_the_shape():
    with pytest.raises(ValueError, match=r"got shape \(batch, 3, 4\)$"):
        cr.layers.BatchNorm2d(3).output_shape((3, 4))


def test_batchnorm1d_one_sample_training_needs_a_batch():
    bn = cr.layers.BatchNorm1d(3)
    with pytest.raises(ValueError, match=r"training needs more than one value per channel"):
        bn.forward(np.ones(3), training=True)


def test_batchnorm1d_one_sample_inference_and_backward():
    bn = cr.layers.BatchNorm1d(3, eps=0.5)
    bn.running_mean[:] = [1.0, 2.0, 3.0]
    bn.running_var[:] = [1.5, 3.5, 0.5]  # var + eps = 2, 4, 1
    bn.params["weight"][:] = [2.0, 4.0, 3.0]
    y = bn.forward(np.array([3.0, 6.0, 4.0]))
    # (x - mean) / sqrt(var + eps) * weight + bias
    np.testing.assert_allclose(y, [2 / np.sqrt(2) * 2, 4 / 2 * 4, 1 * 3])
    g = bn.backward(np.array([1.0, 1.0, 1.0]))
    np.testing.assert_allclose(g, [2 / np.sqrt(2), 4 / 2, 3.0])


def test_batchnorm1d_one_sample_without_cache_keeps_none():
    bn = cr.layers.BatchNorm1d(3)
    bn.forward(np.ones(3), cache=False)
    with pytest.raises(RuntimeError, match=r"backward called before forward"):
        bn.backward(np.ones(3))


def test_batchnorm2d_no_affine_inference_backward_scales_each_channel():
    bn = cr.layers.BatchNorm2d(3, eps=0.0001, affine=False)
    bn.running_var[:] = [0.9999, 3.9999, 15.9999]  # inv_std = 1, 1/2, 1/4
    x = np.zeros((2, 3, 2, 4))
    bn.forward(x)
    g = bn.backward(np.ones(x.shape))
    expected = np.broadcast_to(np.array([1.0, 0.5, 0.25])[None, :, None, None], x.shape)
    np.testing.assert_allclose(g, expected)
