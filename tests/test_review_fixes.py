"""Edge cases found in review: each test pins down one behaviour a user relies on."""

import gc
import threading

import numpy as np
import pytest

import chainrule as cr
from chainrule import parallel


def test_interrupt_during_a_split_product_leaves_later_products_right(monkeypatch):
    rng = np.random.default_rng(0)
    a, b = rng.random((64, 300), dtype=np.float32), rng.random((300, 200), dtype=np.float32)
    real_matmul = np.matmul
    calls = {"n": 0}

    def interrupted_once(*args, **kwargs):
        if threading.current_thread() is threading.main_thread() and calls["n"] == 0:
            calls["n"] += 1
            raise KeyboardInterrupt
        return real_matmul(*args, **kwargs)

    monkeypatch.setattr(parallel.threaded_matmul, "enabled", True)
    monkeypatch.setattr(parallel.threaded_matmul, "min_work", 1)
    monkeypatch.setattr(parallel.np, "matmul", interrupted_once)
    with parallel.threaded_matmul:
        with pytest.raises(KeyboardInterrupt):
            parallel.threaded_matmul(a, b)
        for _ in range(5):
            np.testing.assert_allclose(parallel.threaded_matmul(a, b), a @ b, rtol=1e-5)


def test_a_users_class_named_like_a_built_in_does_not_change_loading(tmp_path):
    net = cr.Network.from_sizes([3, 4, 2], seed=0)
    net.save(tmp_path / "m.safetensors")

    class ReLU(cr.ReLU):  # a clipped relu of the user's own
        def forward(self, x):
            return np.minimum(super().forward(x), 1.0)

    loaded = cr.load(tmp_path / "m.safetensors")
    assert type(loaded.layers[1]) is cr.ReLU


def test_a_subclass_is_saved_under_its_own_name(tmp_path):
    class HardSigmoid(cr.Sigmoid):
        def forward(self, x):
            return np.clip(0.2 * x + 0.5, 0, 1)

    net = cr.Network.from_sizes([3, 4, 4, 2], activation=HardSigmoid(), seed=0)
    assert type(net.layers[1]) is HardSigmoid and net.layers[1] is not net.layers[3]
    assert net.layers[1].get_config()["type"] == "HardSigmoid"


def test_check_gradients_leaves_the_network_exactly_as_it_was():
    net = cr.Network.from_sizes([4, 6, 3], dropout=0.3, loss="cross_entropy", seed=0)
    x, y = np.random.default_rng(0).normal(size=(5, 4)), [0, 1, 2, 1, 0]
    net.train_step(x, y)
    arrays = dict(net.parameters())
    grads = {k: v.copy() for k, v in net.gradients().items()}
    dropout_state = net.layers[2].rng.bit_generator.state
    assert cr.check_gradients(net, x, y).ok
    for name, array in net.parameters().items():
        assert array is arrays[name]  # the same live arrays, not replacements
        np.testing.assert_array_equal(net.gradients()[name], grads[name])
    assert net.layers[2].rng.bit_generator.state == dropout_state


@pytest.mark.parametrize("last, loss", [(cr.Softmax, cr.CrossEntropy),
                                        (cr.Sigmoid, cr.BinaryCrossEntropy)])
def test_a_squashed_output_before_a_loss_from_logits_is_refused(last, loss):
    with pytest.raises(ValueError, match="takes logits and applies the .* itself"):
        cr.Network([cr.Dense(3, 2), last()], loss=loss())


def test_one_optimizer_cannot_train_two_networks():
    opt = cr.Adam(lr=0.01)
    first = cr.Network.from_sizes([3, 2], optimizer=opt)
    with pytest.raises(ValueError, match="already trains another network"):
        cr.Network.from_sizes([3, 2], optimizer=opt)
    first.train_step(np.ones((2, 3)), np.zeros((2, 2)))
    del first
    gc.collect()
    second = cr.Network.from_sizes([3, 2], optimizer=opt)  # the first is gone: allowed, afresh
    assert second.optimizer.steps == 0 and second.optimizer.state == []


def test_integer_one_hot_targets_work_like_float_ones():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(4, 3))
    labels = np.array([0, 2, 1, 2])
    a, b = cr.CrossEntropy(), cr.CrossEntropy()
    assert a.forward(z, np.eye(3, dtype=int)[labels]) == pytest.approx(b.forward(z, labels))
    assert cr.CrossEntropy().forward(z[0], np.array([1, 0, 0])) == pytest.approx(
        cr.CrossEntropy().forward(z[0], 0))


def test_a_target_of_another_shape_is_not_silently_reshaped():
    with pytest.raises(ValueError, match=r"target shape \(3, 2\) does not match"):
        cr.MeanSquaredError().forward(np.zeros((2, 3)), np.zeros((3, 2)))
    assert cr.SquaredError().forward(np.ones((3, 1)), np.zeros(3)) == 1.0  # (n,) for (n, 1)
    assert cr.SquaredError().forward(np.ones(1), 0.0) == 1.0  # a scalar for one output


def test_sigmoid_of_integers_is_a_float():
    np.testing.assert_allclose(cr.activations.sigmoid(np.array([0, 2])), [0.5, 1 / (1 + np.exp(-2))])


def test_sizes_and_names_are_checked():
    with pytest.raises(TypeError):
        cr.Network.from_sizes([4, 2.5, 3])
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        cr.Network.from_sizes([4, 3], activation="gelu")


def test_empty_batches():
    net = cr.Network.from_sizes([4, 3], seed=0)
    assert net.predict(np.zeros((0, 4)), batch_size=2).shape == (0, 3)
    with pytest.raises(ValueError, match="0 samples"):
        net.evaluate(np.zeros((0, 4)), np.zeros((0, 3)))
