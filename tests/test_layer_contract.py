"""The Layer base class, Dense and Dropout at hand-computed points, and their messages."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr
from chainrule.layers import Layer, layer_from_config
from chainrule.layers.base import _REGISTRY


class Doubler(Layer):
    """A minimal layer: y = 2x, recording how it was called."""

    def forward(self, x, training=False, *, cache=True):
        self.called = (training, cache)
        if cache:
            self._x = x
        return 2 * x

    def backward(self, grad_output):
        self._saved_input()
        self.seen = grad_output
        return 2 * grad_output


def test_base_layer_defaults():
    layer = Doubler()
    assert layer.params == {} and layer.grads == {} and layer._x is None
    assert layer.name == "Doubler()" and repr(layer) == "Doubler()"
    assert layer.parameters() is layer.params and layer.gradients() is layer.grads
    assert layer.buffers() == {}
    assert layer.output_features(7) == 7
    assert layer.output_shape((5,)) == (5,) and layer.output_shape((3, 4, 4)) == (3, 4, 4)
    assert layer.get_config() == {"type": "Doubler"}
    np.testing.assert_array_equal(layer(np.ones(2), True, cache=False), [2.0, 2.0])
    assert layer.called == (True, False)
    layer(np.ones(2))
    assert layer.called == (False, True)
    with pytest.raises(NotImplementedError):
        Layer().forward(np.ones(1))
    with pytest.raises(NotImplementedError):
        Layer().backward(np.ones(1))


def test_backward_params_runs_backward():
    layer = Doubler()
    layer.forward(np.ones(2))
    assert layer.backward_params(np.full(2, 3.0)) is None
    np.testing.assert_array_equal(layer.seen, [3.0, 3.0])


def test_backward_before_forward_names_the_layer():
    layer = Doubler()
    layer.name = "layer 4 (Doubler())"
    with pytest.raises(RuntimeError, match=r"^layer 4 \(Doubler\(\)\): backward called before "
                                           r"forward$"):
        layer.backward(np.ones(1))


def test_layers_keep_no_training_mode():
    message = (r"^ReLU keeps no training mode: pass forward\(x, training=\.\.\.\), or set it on the "
               r"network \(net\.train\(\), net\.eval\(\), net\.training\)$")
    with pytest.raises(AttributeError, match=message):
        _ = cr.ReLU().training
    with pytest.raises(AttributeError, match=message):
        cr.ReLU().training = True


def test_registry_first_class_of_a_name_wins_and_private_bases_are_left_out():
    original = _REGISTRY["ReLU"]

    class ReLU(Layer):  # a user's own layer of the same name
        pass

    class _Helper(Layer):
        pass

    class Tripler(Layer):
        pass

    assert _REGISTRY["Tripler"] is Tripler
    del _REGISTRY["Tripler"]

    assert _REGISTRY["ReLU"] is original is cr.ReLU
    assert "_Helper" not in _REGISTRY
    assert type(layer_from_config({"type": "ReLU"})) is cr.ReLU
    for bad in ({"type": "Nope"}, {"type": 3}, {}, {"type": ["Dense"]}):
        with pytest.raises(ValueError, match=r"^unknown layer type "):
            layer_from_config(bad)
    with pytest.raises(ValueError, match=r"^unknown layer type 'Nope'$"):
        layer_from_config({"type": "Nope"})
    config = {"type": "LeakyReLU", "negative_slope": 0.5}
    assert layer_from_config(config).negative_slope == 0.5
    assert config == {"type": "LeakyReLU", "negative_slope": 0.5}  # not consumed


def test_astype_casts_parameters_and_makes_zero_gradients():
    layer = cr.Dense(2, 3)
    layer.astype(np.float32)
    for name in ("weight", "bias"):
        assert layer.params[name].dtype == np.float32
        assert layer.grads[name].dtype == np.float32
        assert layer.grads[name].shape == layer.params[name].shape
        assert not layer.grads[name].any()


# -- Dense ------------------------------------------------------------------------------------


def make_dense(bias=True):
    layer = cr.Dense(3, 2, bias=bias)
    layer.weight = [[1.0, 2.0, 3.0], [0.0, -1.0, 0.5]]
    if bias:
        layer.bias = [0.5, -0.5]
    return layer


def test_dense_forward_and_backward_by_hand():
    layer = make_dense()
    x = np.array([[1.0, 0.0, 2.0], [0.0, 1.0, -1.0]])
    np.testing.assert_array_equal(layer.forward(x), [[7.5, 0.5], [-0.5, -2.0]])
    g = np.array([[1.0, 2.0], [-1.0, 0.5]])
    np.testing.assert_array_equal(layer.backward(g), [[1.0, 0.0, 4.0], [-1.0, -2.5, -2.75]])
    np.testing.assert_array_equal(layer.grads["weight"], [[1.0, -1.0, 3.0], [2.0, 0.5, 3.5]])
    np.testing.assert_array_equal(layer.grads["bias"], [0.0, 2.5])
    # backward_params: the same gradients, no dL/dx
    layer.grads["weight"][...] = 0
    layer.forward(x)
    assert layer.backward_params(g) is None
    np.testing.assert_array_equal(layer.grads["weight"], [[1.0, -1.0, 3.0], [2.0, 0.5, 3.5]])


def test_dense_one_sample():
    layer = make_dense()
    layer.forward(np.array([1.0, 0.0, 2.0]))
    with pytest.raises(ValueError, match=r"^Dense\(3, 2\): grad_output must have shape \(2,\), "
                                         r"got \(3,\)$"):
        layer.backward(np.ones(3))
    np.testing.assert_array_equal(layer.forward(np.array([1.0, 0.0, 2.0])), [7.5, 0.5])
    np.testing.assert_array_equal(layer.backward(np.array([1.0, 2.0])), [1.0, 0.0, 4.0])
    np.testing.assert_array_equal(layer.grads["weight"], [[1.0, 0.0, 2.0], [2.0, 0.0, 4.0]])
    np.testing.assert_array_equal(layer.grads["bias"], [1.0, 2.0])


def test_dense_without_bias():
    layer = make_dense(bias=False)
    assert layer.bias is None and "bias" not in layer.params and "bias" not in layer.grads
    np.testing.assert_array_equal(layer.forward(np.array([[1.0, 0.0, 2.0]])), [[7.0, 1.0]])
    layer.backward(np.array([[1.0, 1.0]]))
    np.testing.assert_array_equal(layer.forward(np.array([1.0, 1.0, 1.0])), [6.0, -0.5])
    layer.backward(np.array([1.0, 2.0]))
    assert set(layer.grads) == {"weight"}
    assert repr(layer) == "Dense(3, 2, bias=False)" and repr(make_dense()) == "Dense(3, 2)"
    assert layer.get_config() == {"type": "Dense", "in_features": 3, "out_features": 2,
                                  "bias": False}
    with pytest.raises(ValueError, match=r"^Dense\(3, 2, bias=False\) was built with bias=False$"):
        layer.bias = [1.0, 2.0]


def test_dense_subclass_backward_runs_from_backward_params():
    class Scaled(cr.Dense):
        def backward(self, grad_output):
            self.ran = True
            return super().backward(grad_output)

    layer = Scaled(2, 1)
    layer.forward(np.ones((1, 2)))
    layer.backward_params(np.ones((1, 1)))
    assert layer.ran


def test_dense_setters_copy_into_the_live_arrays():
    layer = make_dense()
    weight = layer.params["weight"]
    layer.weight = np.zeros((2, 3))
    assert layer.params["weight"] is weight and not weight.any()
    with pytest.raises(ValueError, match=r"^Dense\(3, 2\): weight must have shape \(2, 3\), got "
                                         r"\(3, 2\)$"):
        layer.weight = np.zeros((3, 2))


def test_dense_construction_and_config():
    layer = cr.Dense(4, 3, seed=0)
    assert layer.weight.shape == (3, 4) and layer.weight.dtype == np.float64
    assert layer.bias.tolist() == [0.0, 0.0, 0.0]
    bound = np.sqrt(6 / (4 + 3))  # glorot_uniform by default
    assert np.abs(layer.weight).max() <= bound and np.abs(layer.weight).std() > 0
    np.testing.assert_array_equal(cr.Dense(4, 3, seed=0).weight, layer.weight)
    same = cr.Dense(4, 3, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(same.weight, layer.weight)
    assert cr.Dense(2, 2, dtype="float32").weight.dtype == np.float32
    assert cr.Dense(2, 2, dtype="float32").bias.dtype == np.float32
    assert {g.dtype for g in cr.Dense(2, 2, dtype="float32").grads.values()} == {np.dtype(np.float32)}
    assert cr.Dense(np.int64(2), 1).in_features == 2
    rebuilt = cr.Dense.from_config({"in_features": 4, "out_features": 3, "bias": True})
    assert not rebuilt.weight.any() and rebuilt.use_bias
    assert layer_from_config(layer.get_config()).weight.shape == (3, 4)
    assert layer.output_features(4) == 3 and layer.output_shape((4,)) == (3,)
    for label, args in (("in_features", (0, 2)), ("out_features", (2, True)),
                        ("in_features", (2.0, 2))):
        with pytest.raises(ValueError, match=rf"^Dense {label} must be a positive integer, got "):
            cr.Dense(*args)
    with pytest.raises(ValueError, match=r"^initializer returned shape \(3,\), expected \(3, 4\)$"):
        cr.Dense(4, 3, init=lambda shape, rng: np.zeros(3))
    custom = cr.Dense(2, 2, init=lambda shape, rng: np.full(shape, 0.5))
    np.testing.assert_array_equal(custom.weight, np.full((2, 2), 0.5))


def test_dense_shape_errors_name_the_layer():
    layer = make_dense()
    with pytest.raises(ValueError, match=r"^Dense\(3, 2\): expected input of shape \(batch, 3\) or "
                                         r"\(3,\), got shape \(2, 2\)$"):
        layer.forward(np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"got shape \(1, 1, 3\)"):
        layer.forward(np.ones((1, 1, 3)))
    layer.forward(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"^Dense\(3, 2\): grad_output must have shape \(2, 2\), "
                                         r"got \(2, 3\)$"):
        layer.backward(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"grad_output must have shape \(2, 2\), got \(1, 2\)"):
        layer.backward(np.ones((1, 2)))


# -- Dropout ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropout_mask_scale_and_backward(dtype):
    x = np.arange(1, 13, dtype=dtype).reshape(3, 4)
    layer = cr.Dropout(0.25, seed=7)
    y = layer.forward(x, True)
    keep = np.random.default_rng(7).random((3, 4), dtype=dtype) >= 0.25
    assert y.dtype == dtype
    np.testing.assert_allclose(y, np.where(keep, x / 0.75, 0.0), rtol=1e-6)
    g = np.full((3, 4), 3.0, dtype)
    np.testing.assert_allclose(layer.backward(g), np.where(keep, 4.0, 0.0), rtol=1e-6)
    # cache=False: the mask of the previous call stays
    layer.forward(x, True, cache=False)
    np.testing.assert_allclose(layer.backward(g), np.where(keep, 4.0, 0.0), rtol=1e-6)


def test_dropout_keeps_a_draw_equal_to_p():
    # an element is dropped when its uniform draw is below p: probability exactly p
    draws = np.random.default_rng(3).random((2, 3), dtype=np.float32)
    p = float(draws[1, 2])
    y = cr.Dropout(p, seed=3).forward(np.ones((2, 3), np.float32), True)
    np.testing.assert_array_equal(y != 0, draws >= np.float32(p))
    assert y[1, 2] != 0


def test_dropout_passes_through_in_inference_and_with_p_zero():
    x = np.ones((2, 3))
    assert cr.Dropout(0.5).backward(x) is x  # nothing dropped yet
    layer = cr.Dropout(0.5, seed=0)
    layer.forward(x, True)
    assert layer.forward(x) is x
    assert layer.backward(x) is x  # the mask of the training call is gone
    layer.forward(x, True)
    assert layer.forward(x, cache=False) is x
    assert not np.array_equal(layer.backward(x), x)  # cache=False kept the mask
    zero = cr.Dropout(0.0, seed=0)
    assert zero.forward(x, True) is x and zero.backward(x) is x
    assert cr.Dropout().p == 0.5 and cr.Dropout(0.3).get_config() == {"type": "Dropout", "p": 0.3}
    rng = np.random.default_rng(1)
    assert cr.Dropout(rng=rng).rng is rng
    for p in (1.0, -0.1):
        with pytest.raises(ValueError, match=rf"^Dropout probability p must be in \[0, 1\), got "
                                             rf"{p}$"):
            cr.Dropout(p)


def test_default_repr_joins_every_setting():
    class Two(Layer):
        def get_config(self):
            return {"type": "Two", "a": 1, "b": "x"}

    assert repr(Two()) == "Two(a=1, b='x')"


def test_a_dense_layer_too_large_for_memory_says_what_to_do():
    with pytest.raises(MemoryError, match=r"^Dense\(1000000, 1000000\) .*needs about 8\.0 TB, but "
                                          r"only .* is available .*; use a narrower layer$"):
        cr.Dense(10**6, 10**6, dtype="float64")
