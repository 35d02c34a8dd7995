"""BatchNorm1d / BatchNorm2d: hand-computed values, running statistics, gradient checks in both modes."""

import numpy as np
import pytest

import chainrule as cr
from chainrule.layers import BatchNorm1d, BatchNorm2d, Conv2D, Flatten


def test_batchnorm1d_hand_computed():
    bn = BatchNorm1d(1, dtype="float64")
    bn.params["weight"][...] = 2.0
    bn.params["bias"][...] = 0.5
    x = np.array([[1.0], [2.0], [3.0], [4.0]])
    y = bn.forward(x, training=True)
    # mean 2.5, biased variance 1.25
    np.testing.assert_allclose(y[:, 0], 2.0 * (x[:, 0] - 2.5) / np.sqrt(1.25 + 1e-5) + 0.5)
    # running statistics: 0.9 * initial + 0.1 * batch, the variance unbiased (5/3)
    np.testing.assert_allclose(bn.running_mean, [0.25])
    np.testing.assert_allclose(bn.running_var, [0.9 + 0.1 * 5 / 3])
    assert bn.num_batches_tracked == 1
    # inference uses the running statistics and changes nothing
    y_eval = bn.forward(np.array([[0.25]]), training=False)
    np.testing.assert_allclose(y_eval, [[0.5]])
    assert bn.num_batches_tracked == 1


def test_batchnorm2d_statistics_per_channel_over_batch_and_pixels():
    bn = BatchNorm2d(2, momentum=0.5, dtype="float64")
    x = np.zeros((2, 2, 2, 2))
    x[:, 0] = np.arange(8.0).reshape(2, 2, 2)  # channel 0: 0..7, mean 3.5, var 5.25
    x[:, 1] = 10.0  # channel 1 constant: normalises to 0
    y = bn.forward(x, training=True)
    np.testing.assert_allclose(y[:, 0], (x[:, 0] - 3.5) / np.sqrt(5.25 + 1e-5))
    np.testing.assert_allclose(y[:, 1], 0.0)
    np.testing.assert_allclose(bn.running_mean, [1.75, 5.0])
    np.testing.assert_allclose(bn.running_var, [0.5 + 0.5 * 6.0, 0.5])  # 42 / 7 = 6 unbiased


def test_momentum_none_is_a_cumulative_average():
    bn = BatchNorm1d(1, momentum=None, dtype="float64")
    for batch in ([[0.0], [2.0]], [[4.0], [6.0]], [[8.0], [10.0]]):
        bn.forward(np.array(batch), training=True)
    np.testing.assert_allclose(bn.running_mean, [5.0])  # mean of 1, 5, 9
    np.testing.assert_allclose(bn.running_var, [2.0])  # every batch: unbiased variance 2


def test_training_needs_more_than_one_value_per_channel():
    with pytest.raises(ValueError, match="more than one value per channel"):
        BatchNorm1d(3).forward(np.ones((1, 3)), training=True)
    BatchNorm1d(3).forward(np.ones((1, 3)))  # inference is fine


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_batchnorm1d_gradients(training, affine):
    rng = np.random.default_rng(0)
    bn = BatchNorm1d(4, affine=affine)
    if affine:
        bn.params["weight"][...] = rng.normal(size=4)
        bn.params["bias"][...] = rng.normal(size=4)
    bn.running_mean[...] = rng.normal(size=4)
    bn.running_var[...] = rng.uniform(0.5, 2, size=4)
    net = cr.Network([cr.Dense(3, 4, seed=1), bn, cr.Tanh(), cr.Dense(4, 2, seed=2)],
                     loss="mean_squared_error", dtype="float64")
    net.training = training
    x = rng.normal(size=(5, 3))
    report = cr.check_gradients(net, x, rng.normal(size=(5, 2)))
    assert report.ok, str(report)
    assert {"1.weight", "1.bias"} <= {c.name for c in report} or not affine


@pytest.mark.parametrize("training", [True, False])
def test_batchnorm2d_gradients(training):
    rng = np.random.default_rng(1)
    bn = BatchNorm2d(3)
    bn.params["weight"][...] = rng.normal(size=3)
    bn.params["bias"][...] = rng.normal(size=3)
    net = cr.Network([Conv2D(2, 3, 2, seed=0), bn, cr.Tanh(), Flatten()],
                     loss="mean_squared_error", dtype="float64")
    net.training = training
    x = rng.normal(size=(3, 2, 4, 4))
    report = cr.check_gradients(net, x, rng.normal(size=(3, 27)))
    assert report.ok, str(report)


def test_checker_fails_when_backward_ignores_the_batch_statistics():
    class TreatsStatisticsAsConstants(BatchNorm1d):  # the inference formula in training
        def backward(self, grad_output):
            x_hat, inv_std, _ = self._cache
            self._cache = (x_hat, inv_std, False)
            return super().backward(grad_output)

    rng = np.random.default_rng(2)
    net = cr.Network([TreatsStatisticsAsConstants(3), cr.Tanh()], loss="mean_squared_error",
                     dtype="float64")
    x = rng.normal(size=(4, 3))
    report = cr.check_gradients(net, x, rng.normal(size=(4, 3)))
    assert not report["input"].ok
    assert report["0.weight"].ok  # the parameter gradients do not depend on that mistake


def test_buffers_in_state_dict_with_torch_names():
    net = cr.Network([Conv2D(1, 2, 3), BatchNorm2d(2), cr.ReLU(), Flatten(), cr.Dense(8, 2),
                      BatchNorm1d(2)], loss="cross_entropy")
    assert list(net.state_dict()) == [
        "0.weight", "0.bias",
        "1.weight", "1.bias", "1.running_mean", "1.running_var", "1.num_batches_tracked",
        "4.weight", "4.bias",
        "5.weight", "5.bias", "5.running_mean", "5.running_var", "5.num_batches_tracked",
    ]
    assert set(net.buffers()) == {f"{i}.{b}" for i in (1, 5)
                                  for b in ("running_mean", "running_var", "num_batches_tracked")}
    assert net.buffers()["1.num_batches_tracked"].dtype == np.int64
    assert net.buffers()["1.running_mean"].dtype == np.float32  # follows the network's dtype
    # parameters() stays the trainable ones: optimizers never touch the buffers
    assert "1.running_mean" not in net.parameters()


def test_training_updates_running_statistics_inference_does_not():
    rng = np.random.default_rng(3)
    net = cr.Network([cr.Dense(3, 4, seed=0), BatchNorm1d(4), cr.Dense(4, 2, seed=1)],
                     loss="cross_entropy", optimizer=cr.SGD(lr=0.1), dtype="float64")
    x, y = rng.normal(size=(8, 3)), rng.integers(0, 2, 8)
    net.train_step(x, y)
    assert net.layers[1].num_batches_tracked == 1
    before = {k: v.copy() for k, v in net.buffers().items()}
    net.predict(x)
    net.evaluate(x, y)
    for name, value in net.buffers().items():
        np.testing.assert_array_equal(value, before[name])


def test_wrong_channels_and_rank_name_the_layer():
    net = cr.Network([BatchNorm2d(3), Flatten()], loss="mean_squared_error")
    with pytest.raises(ValueError, match=r"layer 0 \(BatchNorm2d\(3\)\).*\(batch, 3, H, W\).*\(2, 4, 5, 5\)"):
        net.forward(np.zeros((2, 4, 5, 5)))
    with pytest.raises(ValueError, match=r"\(batch, 2\) or \(batch, 2, L\).*\(4, 3\)"):
        BatchNorm1d(2).forward(np.zeros((4, 3)))


@pytest.mark.parametrize("kwargs, message", [
    ({"num_features": 0}, "num_features"), ({"num_features": 2, "eps": 0}, "eps"),
    ({"num_features": 2, "momentum": 1.5}, "momentum"),
])
def test_argument_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BatchNorm2d(**kwargs)
