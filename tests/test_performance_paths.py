"""The fast paths of a training step compute the same numbers as the plain math.

Correctness only; timings live in benchmarks/.
"""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr
from chainrule import kernels
from chainrule.parallel import threaded_matmul


@pytest.fixture(autouse=True)
def numpy_path():
    """These tests compare NumPy with NumPy, bit for bit; the kernels are compared in test_kernels.py."""
    saved = kernels.use("numpy")
    yield
    kernels.use(saved)


def _net(sizes=(20, 16, 8, 3), loss="cross_entropy", seed=0, dtype="float32"):
    return cr.Network.from_sizes(
        list(sizes), activation="relu", loss=loss, optimizer=cr.SGD(lr=0.1), seed=seed, dtype=dtype
    )


def _data(n=32, features=20, classes=3, seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, features)).astype(np.float32), rng.integers(0, classes, n)


def _manual_step(net, x, y):
    """forward, loss, backward, then p -= g * lr by hand, the way a reader would write it."""
    loss = net.loss.forward(net.forward(x), y)
    net.backward()
    for name, p in net.parameters().items():
        p -= net.gradients()[name] * net.optimizer.lr
    return loss


@pytest.mark.parametrize("batch", [None, 1, 7, 32])
def test_train_step_is_bit_identical_to_manual_step(batch):
    x, y = _data()
    a, b = _net(), _net()
    for step in range(4):
        if batch is None:  # one sample, 1-D
            xb, yb = x[step], y[step]
        else:
            xb, yb = x[step : step + batch], y[step : step + batch]
        la = a.train_step(xb, yb)
        lb = _manual_step(b, xb, yb)
        assert la == lb
        for name, p in a.parameters().items():
            assert np.array_equal(p, b.parameters()[name]), name
            assert np.array_equal(a.gradients()[name], b.gradients()[name]), name


def test_one_sample_weight_gradient_is_the_outer_product():
    dense = cr.Dense(5, 4, seed=0, dtype="float64")
    x = np.arange(5.0) - 2.0
    g = np.array([0.5, -1.0, 2.0, 0.0])
    dense.forward(x)
    dense.backward(g)
    assert np.array_equal(dense.grads["weight"], np.outer(g, x))
    assert np.array_equal(dense.grads["bias"], g)


def test_squared_error_one_sample_matches_manual_step():
    rng = np.random.default_rng(0)
    x = rng.random((10, 3), dtype=np.float32)
    y = (x.sum(axis=1, keepdims=True) > 1.5).astype(np.float32)
    a, b = _net((3, 4, 1), loss="squared_error"), _net((3, 4, 1), loss="squared_error")
    for xi, yi in zip(x, y):
        assert a.train_step(xi, yi) == _manual_step(b, xi, yi)
    for name, p in a.parameters().items():
        assert np.array_equal(p, b.parameters()[name])


def test_returned_arrays_are_not_overwritten_by_later_steps():
    x, y = _data()
    net = _net()
    out = net.forward(x[:8])
    pred = net.predict(x[:8])
    net.loss.forward(out, y[:8])
    grad_in = net.backward()
    kept = out.copy(), pred.copy(), grad_in.copy()
    grads = {k: v.copy() for k, v in net.gradients().items()}
    for i in range(3):
        net.train_step(x[i * 8 : i * 8 + 8], y[i * 8 : i * 8 + 8])
    assert np.array_equal(out, kept[0])
    assert np.array_equal(pred, kept[1])
    assert np.array_equal(grad_in, kept[2])
    # gradients() hands out the live buffers: they hold the latest step's values
    assert any(not np.array_equal(net.gradients()[k], grads[k]) for k in grads)


def test_same_seed_same_training():
    x, y = _data(64)
    a, b = _net(seed=3), _net(seed=3)
    for i in range(0, 64, 16):
        assert a.train_step(x[i : i + 16], y[i : i + 16]) == b.train_step(x[i : i + 16], y[i : i + 16])
    for name, p in a.parameters().items():
        assert np.array_equal(p, b.parameters()[name])


def test_split_products_agree_with_unsplit():
    pytest.importorskip("threadpoolctl")
    x, y = _data(256, features=300)
    sizes = (300, 200, 100, 3)
    a, b = _net(sizes, seed=5), _net(sizes, seed=5)
    saved = threaded_matmul.enabled
    try:
        for i in range(0, 256, 128):
            threaded_matmul.enabled = True
            la = a.train_step(x[i : i + 128], y[i : i + 128])
            threaded_matmul.enabled = False
            lb = b.train_step(x[i : i + 128], y[i : i + 128])
            assert la == pytest.approx(lb, rel=1e-6)
    finally:
        threaded_matmul.enabled = saved
    for name, p in a.parameters().items():
        np.testing.assert_allclose(p, b.parameters()[name], rtol=1e-5, atol=1e-6)


def test_split_is_off_by_default_and_plain_matmul_outside_a_step():
    assert threaded_matmul.enabled is False
    a = np.arange(12.0).reshape(3, 4)
    assert np.array_equal(threaded_matmul(a, a.T), a @ a.T)
