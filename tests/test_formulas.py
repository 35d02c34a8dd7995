"""Hand-computed values that pin formulas a looser test would let drift.

Each test here exists because a one-line change to the library (a swapped
term, a reversed comparison, a tolerance ten thousand times looser) passed
every other test without PyTorch installed. The expected numbers are worked
out by hand in the comments, so none of these needs torch.
"""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr

# -- optimizers: several steps, so that terms which coincide on step 1 separate ------------

GRADS = [0.5, -0.2, 0.3]  # the gradient handed to the optimizer at steps 1, 2, 3


def _run(optimizer: cr.Optimizer, start: float = 1.0) -> list[float]:
    p = np.array([start])
    seen = []
    for g in GRADS:
        optimizer.step([p], [np.array([g])])
        seen.append(float(p[0]))
    return seen


def test_sgd_nesterov_with_weight_decay_three_steps():
    # lr 0.1, momentum 0.9, weight_decay 0.01, p0 = 1:
    # step 1: g = 0.5 + 0.01*1 = 0.51;  b = 0.51;  g + 0.9 b = 0.969;  p = 1 - 0.0969 = 0.9031
    # step 2: g = -0.2 + 0.01*0.9031 = -0.190969;  b = 0.9*0.51 + g = 0.268031
    #         g + 0.9 b = 0.0502589;  p = 0.9031 - 0.00502589 = 0.89807411
    # step 3: g = 0.3 + 0.0089807411 = 0.3089807411;  b = 0.9*0.268031 + g = 0.5502086411
    #         g + 0.9 b = 0.80416851809;  p = 0.89807411 - 0.080416851809 = 0.817657258191
    # (b + 0.9 g instead of g + 0.9 b gives the same step 1 but 0.88845822 at step 2.)
    seen = _run(cr.SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01))
    np.testing.assert_allclose(seen, [0.9031, 0.89807411, 0.817657258191], rtol=1e-12)


def test_sgd_heavy_ball_momentum_three_steps():
    # lr 0.1, momentum 0.9, no decay: b = 0.5, 0.25, 0.525; p = 0.95, 0.925, 0.8725
    seen = _run(cr.SGD(lr=0.1, momentum=0.9))
    np.testing.assert_allclose(seen, [0.95, 0.925, 0.8725], rtol=1e-12)


def test_adam_weight_decay_is_added_to_the_gradient_not_decoupled():
    # lr 0.1, betas (0.9, 0.999), eps 1e-8, weight_decay 0.1, p0 = 1 (PyTorch's Adam, not AdamW):
    # step 1: g = 0.5 + 0.1 = 0.6; m = 0.06, v = 0.00036; m_hat = 0.6, sqrt(v_hat) = 0.6
    #         p = 1 - 0.1 * 0.6 / (0.6 + 1e-8) = 0.9000000016666666
    # step 2: g = -0.2 + 0.09 = -0.11; m = 0.043, v = 3.7314e-4 ... p = 0.8475190629593702
    # step 3: g = 0.3 + 0.08475 ...                                  p = 0.7791121607663536
    # Decoupled decay (p -= lr * wd * p beside the Adam step) gives 0.89 at step 1.
    seen = _run(cr.Adam(lr=0.1, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1))
    np.testing.assert_allclose(
        seen, [0.9000000016666666, 0.8475190629593702, 0.7791121607663536], rtol=1e-12
    )


def test_adam_without_decay_first_step_is_lr_in_the_gradient_direction():
    # With bias correction, step 1 moves every weight by lr * g / (|g| + eps), i.e. by ~lr.
    p = np.array([1.0, -2.0])
    cr.Adam(lr=0.01).step([p], [np.array([3.0, -1e-3])])
    np.testing.assert_allclose(p, [0.99, -1.99], rtol=1e-6)


# -- early stopping in every mode ------------------------------------------------------------


def _drive(callback: cr.EarlyStopping, values: list[float], monitor: str) -> float:
    """Feed ``values`` as epoch results; return the weight the network ends with.

    The network's single weight is set to the epoch number before each epoch
    ends, so the final weight says which epoch's weights were kept.
    """
    net = cr.Network([cr.Dense(1, 1, bias=False)], dtype="float64")
    weight = net.layers[0].weight
    callback.network = net
    callback.on_train_begin({})
    for epoch, value in enumerate(values):
        weight[...] = epoch
        callback.on_epoch_end(epoch, {monitor: value})
        if net.stop_training:
            break
    callback.on_train_end({})
    return float(weight[0, 0])


@pytest.mark.parametrize("mode", ["max", "auto"])
def test_early_stopping_max_mode_keeps_the_highest(mode):
    # accuracy rises to 0.9 at epoch 2, then two epochs without a gain: stop at epoch 4
    stop = cr.EarlyStopping(monitor="val_accuracy", patience=2, mode=mode)
    kept = _drive(stop, [0.5, 0.8, 0.9, 0.85, 0.7, 0.95], "val_accuracy")
    assert stop.mode == "max"
    assert (stop.best, stop.best_epoch, stop.stopped_epoch) == (0.9, 2, 4)
    assert kept == 2  # restored to the best epoch's weights


@pytest.mark.parametrize("mode", ["min", "auto"])
def test_early_stopping_min_mode_keeps_the_lowest(mode):
    stop = cr.EarlyStopping(monitor="val_loss", patience=2, mode=mode)
    kept = _drive(stop, [1.0, 0.6, 0.7, 0.5, 0.55, 0.52, 0.1], "val_loss")
    assert stop.mode == "min"
    assert (stop.best, stop.best_epoch, stop.stopped_epoch) == (0.5, 3, 5)
    assert kept == 3


def test_early_stopping_min_delta_counts_only_real_gains():
    # 0.95 -> 0.96 is a gain of 0.01, below min_delta 0.05: not an improvement
    stop = cr.EarlyStopping(monitor="val_accuracy", patience=1, min_delta=0.05)
    _drive(stop, [0.9, 0.92, 0.99], "val_accuracy")
    assert (stop.best, stop.best_epoch, stop.stopped_epoch) == (0.9, 0, 1)


def test_early_stopping_without_restore_keeps_the_last_weights():
    stop = cr.EarlyStopping(monitor="val_loss", patience=1, restore_best_weights=False)
    kept = _drive(stop, [0.3, 0.4], "val_loss")
    assert stop.stopped_epoch == 1 and kept == 1


# -- accuracy with one-hot targets -----------------------------------------------------------


def test_cross_entropy_accuracy_with_one_hot_targets():
    logits = np.array([[2.0, 1.0, 0.0], [0.0, 1.0, 3.0], [5.0, 0.0, 0.0]])
    one_hot = np.eye(3)[[0, 2, 1]]  # rows 0 and 1 right, row 2 wrong
    assert cr.CrossEntropy().accuracy(logits, one_hot) == pytest.approx(2 / 3)
    assert cr.CrossEntropy().accuracy(logits, [0, 2, 1]) == pytest.approx(2 / 3)


def test_evaluate_accuracy_with_one_hot_targets():
    net = cr.Network([cr.Dense(2, 3, init="zeros")], loss="cross_entropy", dtype="float64")
    net.layers[0].bias = [0.0, 1.0, 0.0]  # every sample predicted as class 1
    x = np.zeros((4, 2))
    one_hot = np.eye(3)[[1, 1, 0, 2]]
    assert net.evaluate(x, one_hot)["accuracy"] == pytest.approx(0.5)


# -- the gradient checker's sensitivity ------------------------------------------------------


class _SlightlyWrong(cr.Dense):
    """A Dense whose backward is wrong by a relative 1e-4: every gradient scaled by 1.0001."""

    def backward(self, grad_output):
        grad_input = super().backward(grad_output)
        for g in self.grads.values():
            g *= 1.0001
        return grad_input * 1.0001


def _small_net(first: cr.Dense) -> cr.Network:
    return cr.Network([first, cr.Tanh(), cr.Dense(4, 2, seed=1)], loss="mse", dtype="float64")


def test_checker_flags_a_backward_wrong_by_one_part_in_ten_thousand():
    x = np.random.default_rng(0).normal(size=(5, 3))
    y = np.random.default_rng(1).normal(size=(5, 2))
    wrong = cr.check_gradients(_small_net(_SlightlyWrong(3, 4, seed=0)), x, y)
    assert not wrong.ok
    failed = {c.name for c in wrong.checks if not c.ok}
    assert {"0.weight", "0.bias", "input"} <= failed
    for c in wrong.checks:
        if c.name in failed:
            assert 5e-5 < c.max_rel_error < 2e-4  # the error is measured, not just flagged
            # small in absolute terms too: an atol of 1e-4 would wave it through
            assert 1e-9 < c.max_abs_error < 1e-4

    right = cr.check_gradients(_small_net(cr.Dense(3, 4, seed=0)), x, y)
    assert right.ok
    assert max(c.max_rel_error for c in right.checks) < 1e-7
