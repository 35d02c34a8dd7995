import numpy as np
import pytest

import chainrule as cr
from chainrule.layers import layer_from_config


def test_dense_hand_computed_values():
    layer = cr.Dense(3, 2)
    layer.weight = [[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0]]
    layer.bias = [0.5, -0.5]
    x = np.array([[1.0, 1.0, 1.0], [2.0, 0.0, -1.0]])
    np.testing.assert_allclose(layer.forward(x), [[6.5, -1.0], [-0.5, -2.5]])
    g = np.array([[1.0, 0.0], [0.0, 2.0]])
    grad_x = layer.backward(g)
    # dL/dW = g.T @ x, dL/db = sum of g rows, dL/dx = g @ W
    np.testing.assert_allclose(layer.grads["weight"], [[1.0, 1.0, 1.0], [4.0, 0.0, -2.0]])
    np.testing.assert_allclose(layer.grads["bias"], [1.0, 2.0])
    np.testing.assert_allclose(grad_x, [[1.0, 2.0, 3.0], [-2.0, 1.0, 0.0]])


def test_a_dense_layer_that_cannot_fit_is_refused_before_its_weight_is_drawn(monkeypatch):
    import tracemalloc

    from chainrule import resources

    monkeypatch.setattr(resources, "available_memory", lambda: (10**9, "a test's limit"))
    tracemalloc.start()
    try:
        # 784 x 2,000,000 weights: 8 bytes each for the float64 draw + 4 for the float32 copy.
        with pytest.raises(cr.InsufficientMemoryError, match=(
                r"^Dense\(784, 2000000\) \(float32; the float64 draw of its weight and the cast "
                r"copy\) needs about 18\.8 GB, but only 1\.0 GB is available \(a test's limit\); "
                r"use a narrower layer$")):
            cr.Dense(784, 2_000_000, dtype="float32")
        with pytest.raises(MemoryError, match=r"^Dense\(784, 200000\) \(float64; the float64 "
                           r"draw of its weight\) needs about 1\.3 GB"):
            cr.Network([cr.Dense(784, 200_000), cr.ReLU(), cr.Dense(200_000, 10)])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20
    # At the edge of a 10 MB limit: 784 x 1594 x 8 bytes fits, 784 x 1595 x 8 does not.
    monkeypatch.setattr(resources, "available_memory", lambda: (10**7, "a test's limit"))
    assert cr.Dense(784, 1594).weight.shape == (1594, 784)
    with pytest.raises(cr.InsufficientMemoryError, match=r"needs about 10\.0 MB, but only 10\.0 MB"):
        cr.Dense(784, 1595)
    # Loading builds zero weights in the final dtype (the file fills them): only those count,
    # so a float32 model file that fits loads where a fresh draw (12 bytes a weight) would not.
    config = {"in_features": 784, "out_features": 3000, "bias": True}
    loaded = cr.Dense.from_config(dict(config, dtype="float32"))
    assert loaded.weight.dtype == np.float32 and not loaded.weight.any()
    with pytest.raises(cr.InsufficientMemoryError, match=r"^Dense\(784, 3000\) \(float32; the "
                       r"float64 draw of its weight and the cast copy\) needs about 28\.2 MB"):
        cr.Dense(784, 3000, dtype="float32")
    with pytest.raises(cr.InsufficientMemoryError, match=r"^Dense\(784, 4000\) \(float32\) needs "
                       r"about 12\.5 MB, but only 10\.0 MB"):
        cr.Dense.from_config(dict(config, out_features=4000, dtype="float32"))


def test_dense_single_sample_matches_batch_of_one():
    layer = cr.Dense(4, 3, seed=0)
    x = np.arange(4.0)
    y1 = layer.forward(x)
    g1 = layer.backward(np.ones(3))
    w1 = layer.grads["weight"].copy()
    yb = layer.forward(x[None, :])
    gb = layer.backward(np.ones((1, 3)))
    assert y1.shape == (3,) and g1.shape == (4,)
    np.testing.assert_allclose(y1, yb[0])
    np.testing.assert_allclose(g1, gb[0])
    np.testing.assert_allclose(w1, layer.grads["weight"])


def test_dense_without_bias_has_only_weight():
    layer = cr.Dense(3, 1, bias=False)
    assert list(layer.parameters()) == ["weight"]
    assert layer.bias is None
    with pytest.raises(ValueError, match="bias=False"):
        layer.bias = [1.0]


def test_dense_shapes_follow_pytorch_linear():
    layer = cr.Dense(784, 128)
    assert layer.weight.shape == (128, 784)
    assert layer.bias.shape == (128,)


def test_dense_wrong_feature_count_names_shapes():
    layer = cr.Dense(4, 2)
    with pytest.raises(ValueError, match=r"expected input of shape \(batch, 4\).*got shape \(5, 3\)"):
        layer.forward(np.zeros((5, 3)))


def test_dense_rejects_bad_sizes():
    with pytest.raises(ValueError, match="in_features"):
        cr.Dense(0, 3)
    with pytest.raises(ValueError, match="out_features"):
        cr.Dense(3, 2.5)


def test_weight_assignment_checks_shape_and_keeps_array():
    layer = cr.Dense(2, 2)
    before = layer.weight
    layer.weight = np.eye(2)
    assert layer.weight is before
    with pytest.raises(ValueError, match=r"weight must have shape \(2, 2\)"):
        layer.weight = np.zeros((3, 2))


def test_backward_before_forward_is_an_error():
    with pytest.raises(RuntimeError, match="backward called before forward"):
        cr.Dense(2, 2).backward(np.zeros((1, 2)))
    with pytest.raises(RuntimeError, match="backward called before forward"):
        cr.ReLU().backward(np.zeros((1, 2)))


def test_dense_backward_checks_grad_shape():
    layer = cr.Dense(3, 2)
    layer.forward(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="grad_output must have shape"):
        layer.backward(np.zeros((4, 3)))


def test_seed_makes_init_repeatable():
    a, b = cr.Dense(5, 4, seed=7), cr.Dense(5, 4, seed=7)
    np.testing.assert_array_equal(a.weight, b.weight)
    assert not np.array_equal(a.weight, cr.Dense(5, 4, seed=8).weight)


def test_dropout_scales_survivors_and_is_off_in_inference():
    layer = cr.Dropout(0.25, seed=0)
    x = np.ones((400, 50))
    y = layer.forward(x, training=True)
    kept = y != 0
    np.testing.assert_allclose(y[kept], 1 / 0.75)
    assert abs(kept.mean() - 0.75) < 0.01
    g = layer.backward(np.ones_like(x))
    np.testing.assert_array_equal(g, y)  # gradient flows through the same survivors
    np.testing.assert_array_equal(layer.forward(x), x)  # training=False by default
    np.testing.assert_array_equal(layer.forward(x, training=False), x)


def test_layers_keep_no_training_mode():
    # The mode travels with the call; PyTorch's module.training habit fails loudly.
    layer = cr.Dropout(0.5, seed=0)
    with pytest.raises(AttributeError, match="net.eval"):
        layer.training = False
    with pytest.raises(AttributeError, match="keeps no training mode"):
        _ = layer.training


def _state(layer):
    """Everything a layer holds, by attribute, with arrays copied (rng excluded)."""
    out = {}
    for key, value in vars(layer).items():
        if key == "rng":
            continue
        if isinstance(value, dict):
            value = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in value.items()}
        out[key] = value.copy() if isinstance(value, np.ndarray) else value
    return out


def _same(a, b):
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and np.array_equal(a, b)
    return a is b or a == b


def test_image_layers_without_cache_store_nothing_in_inference():
    # Every built-in layer obeys the contract; BatchNorm's running statistics stay put.
    x = np.random.default_rng(0).normal(size=(2, 3, 6, 6))
    layers = [cr.Conv2D(3, 4, 3, seed=0), cr.MaxPool2D(2), cr.AvgPool2D(2), cr.BatchNorm2d(3),
              cr.Flatten()]
    flat = x.reshape(2, -1)[:, :5]
    layers_1d = [cr.BatchNorm1d(5)]
    for layer, inp in [*((la, x) for la in layers), *((la, flat) for la in layers_1d)]:
        before = _state(layer)
        layer.forward(inp, False, cache=False)
        assert _same(_state(layer), before), type(layer).__name__


def test_forward_without_cache_stores_nothing():
    x = np.array([[1.0, -2.0, 3.0]])
    layers = [cr.Dense(3, 2, seed=0), cr.ReLU(), cr.LeakyReLU(0.1), cr.Sigmoid(), cr.Tanh(),
              cr.Softmax(), cr.Identity(), cr.Dropout(0.5, seed=0)]
    for layer in layers:
        before = {k: v for k, v in vars(layer).items() if k != "rng"}
        for training in (False, True):
            assert layer.forward(x, training, cache=False).shape[0] == 1
        after = {k: v for k, v in vars(layer).items() if k != "rng"}
        assert after.keys() == before.keys()
        assert all(after[k] is before[k] for k in before), type(layer).__name__


def test_dropout_keeps_float32():
    layer = cr.Dropout(0.5, seed=0)
    assert layer.forward(np.ones((3, 4), np.float32)).dtype == np.float32


def test_dropout_rejects_bad_p():
    with pytest.raises(ValueError, match="p must be in"):
        cr.Dropout(1.0)


@pytest.mark.parametrize(
    "layer",
    [cr.Dense(3, 2, bias=False), cr.Dropout(0.1), cr.LeakyReLU(0.2), cr.Sigmoid(scale=0.01), cr.Tanh()],
    ids=repr,
)
def test_config_round_trip(layer):
    rebuilt = layer_from_config(layer.get_config())
    assert type(rebuilt) is type(layer)
    assert rebuilt.get_config() == layer.get_config()


def test_unknown_layer_type():
    with pytest.raises(ValueError, match="unknown layer type"):
        layer_from_config({"type": "Conv9d"})
