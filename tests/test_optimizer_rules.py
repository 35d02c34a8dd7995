"""The optimizers' update rules, step by step, without PyTorch.

Each rule is rerun here as a plain-Python scalar recurrence written from the
formula in the optimizer's docstring (PyTorch's documented rules for SGD and
Adam), and the library must match it over several steps, on the NumPy path
and on the numba kernel path (when numba is installed). A few first steps are
also worked out by hand in the comments.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import chainrule as cr
from chainrule.optimizers import get_optimizer


def sgd_reference(p, grads, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    """PyTorch's SGD for one scalar: the docstring's four lines."""
    b = 0.0
    for g in grads:
        g = g + weight_decay * p
        if momentum:
            b = momentum * b + g
            g = g + momentum * b if nesterov else b
        p = p - lr * g
    return p


def adam_reference(p, grads, lr, beta1, beta2, eps, weight_decay=0.0):
    """PyTorch's Adam (L2 weight decay added to the gradient) for one scalar."""
    m = v = 0.0
    for t, g in enumerate(grads, start=1):
        g = g + weight_decay * p
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        p = p - lr * (m / (1 - beta1**t)) / (math.sqrt(v / (1 - beta2**t)) + eps)
    return p


GRADS = [0.5, -1.5, 2.0, 0.25]  # changing sign, so swapped or dropped terms show


def run(opt, start, grads, dtype=np.float64, shape=(2, 3)):
    """Step ``opt`` on one matrix whose entries all start at ``start`` with these gradients."""
    p = np.full(shape, start, dtype)
    for g in grads:
        opt.step([p], [np.full(shape, g, dtype)])
    return p


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_sgd_momentum_several_steps(kernel_path, nesterov, weight_decay):
    opt = cr.SGD(lr=0.1, momentum=0.8, nesterov=nesterov, weight_decay=weight_decay)
    p = run(opt, 1.5, GRADS)
    expected = sgd_reference(1.5, GRADS, 0.1, 0.8, nesterov, weight_decay)
    np.testing.assert_allclose(p, expected, rtol=1e-12)
    assert opt.steps == len(GRADS)


def test_nesterov_by_hand(kernel_path):
    # b1 = 1, step = 1 + 0.5*1 = 1.5, p = 2 - 0.15 = 1.85
    # b2 = 0.5*1 + (-2) = -1.5, step = -2 + 0.5*(-1.5) = -2.75, p = 1.85 + 0.275 = 2.125
    opt = cr.SGD(lr=0.1, momentum=0.5, nesterov=True)
    np.testing.assert_allclose(run(opt, 2.0, [1.0, -2.0]), 2.125, rtol=1e-12)


def test_sgd_weight_decay_with_momentum_by_hand(kernel_path):
    # g1 = 1 + 0.5*2 = 2, b1 = 2, p = 2 - 0.2 = 1.8
    # g2 = 0 + 0.5*1.8 = 0.9, b2 = 0.5*2 + 0.9 = 1.9, p = 1.8 - 0.19 = 1.61
    opt = cr.SGD(lr=0.1, momentum=0.5, weight_decay=0.5)
    np.testing.assert_allclose(run(opt, 2.0, [1.0, 0.0]), 1.61, rtol=1e-12)


@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
@pytest.mark.parametrize("betas", [(0.9, 0.999), (0.5, 0.8)])
def test_adam_several_steps(kernel_path, weight_decay, betas):
    opt = cr.Adam(lr=0.05, betas=betas, eps=1e-3, weight_decay=weight_decay)
    p = run(opt, 1.5, GRADS)
    expected = adam_reference(1.5, GRADS, 0.05, *betas, 1e-3, weight_decay)
    np.testing.assert_allclose(p, expected, rtol=1e-12)


def test_adam_weight_decay_by_hand(kernel_path):
    # One step: g = 0 + 0.5*2 = 1; m_hat = 1, v_hat = 1; p = 2 - 0.1 * 1 / (1 + 1) = 1.95
    # (AdamW would give 2 - 0.1 * (0 + 0.5 * 2) ... with g = 0 no Adam step at all: 1.9)
    opt = cr.Adam(lr=0.1, eps=1.0, weight_decay=0.5)
    np.testing.assert_allclose(run(opt, 2.0, [0.0]), 1.95, rtol=1e-12)


def test_adam_eps_is_added_after_the_square_root(kernel_path):
    # g = 4: m_hat = 4, v_hat = 16; p = 1 - 1 * 4 / (4 + 4) = 0.5
    opt = cr.Adam(lr=1.0, eps=4.0)
    np.testing.assert_allclose(run(opt, 1.0, [4.0]), 0.5, rtol=1e-12)


@pytest.mark.parametrize("make", [
    lambda decay_1d: cr.SGD(lr=0.1, momentum=0.5, weight_decay=0.5, decay_1d=decay_1d),
    lambda decay_1d: cr.Adam(lr=0.1, weight_decay=0.5, decay_1d=decay_1d),
])
def test_decay_1d_false_spares_only_vectors(kernel_path, make):
    grads = [0.0, 1.0, -0.5]
    weight = np.full((2, 2), 2.0)
    bias = np.full(2, 2.0)
    opt = make(False)
    for g in grads:
        opt.step([weight, bias], [np.full((2, 2), g), np.full(2, g)])
    with_decay = run(make(True), 2.0, grads, shape=(2, 2))
    np.testing.assert_allclose(weight, with_decay, rtol=1e-12)
    # no decay on the bias: the same as an optimizer without any
    plain = make(True)
    plain.weight_decay = 0.0
    np.testing.assert_allclose(bias, run(plain, 2.0, grads, shape=(2,)), rtol=1e-12)
    assert not np.allclose(bias, with_decay[0, :2])
    # and decay_1d=True decays vectors too
    np.testing.assert_allclose(run(make(True), 2.0, grads, shape=(2,)), with_decay[0, :2],
                               rtol=1e-12)


def test_weight_decay_changed_between_steps_takes_effect(kernel_path):
    # chainrule.sklearn and callbacks change weight_decay between batches: the
    # kernels' cached views must not keep the old value.
    p = np.full((2, 2), 2.0)
    g = np.zeros((2, 2))
    opt = cr.SGD(lr=0.1, weight_decay=0.0)
    opt.step([p], [g])
    np.testing.assert_allclose(p, 2.0)
    opt.weight_decay = 0.5
    opt.step([p], [g])  # p = 2 - 0.1 * 0.5 * 2 = 1.9
    np.testing.assert_allclose(p, 1.9, rtol=1e-12)
    opt.decay_1d = False
    b = np.full(2, 2.0)
    opt.step([p, b], [g, np.zeros(2)])  # a new layout; the bias is spared
    np.testing.assert_allclose(b, 2.0)
    np.testing.assert_allclose(p, 1.9 - 0.1 * 0.5 * 1.9, rtol=1e-12)


def test_toggling_decay_1d_on_the_same_arrays_takes_effect(kernel_path):
    w, b = np.full((2, 2), 2.0), np.full(2, 2.0)
    gw, gb = np.zeros((2, 2)), np.zeros(2)
    opt = cr.SGD(lr=0.1, weight_decay=0.5, decay_1d=False)
    opt.step([w, b], [gw, gb])
    np.testing.assert_allclose(b, 2.0)
    opt.decay_1d = True
    opt.step([w, b], [gw, gb])  # now the bias decays: 2 - 0.1 * 0.5 * 2
    np.testing.assert_allclose(b, 1.9, rtol=1e-12)


def test_reset_then_the_same_arrays_start_afresh(kernel_path):
    p, g = np.full((2, 2), 1.0), np.full((2, 2), 2.0)
    opt = cr.SGD(lr=0.1, momentum=0.9)
    opt.step([p], [g])  # buffer 2, p = 0.8
    opt.reset()
    opt.step([p], [g])  # a fresh buffer: 2 again, p = 0.6
    np.testing.assert_allclose(p, 0.6, rtol=1e-12)
    adam = cr.Adam(lr=0.1)
    q = np.full((2, 2), 1.0)
    adam.step([q], [np.full((2, 2), 5.0)])
    adam.reset()
    adam.step([q], [np.full((2, 2), -1.0)])  # first step again: +lr
    np.testing.assert_allclose(q, 1.0, rtol=1e-6)


def test_no_parameters_is_a_step_that_changes_nothing(kernel_path):
    for opt in (cr.SGD(momentum=0.5), cr.Adam()):
        opt.step([], [])
        assert opt.steps == 1 and opt.state == []


def test_float16_parameters_take_the_numpy_rule(kernel_path):
    p = np.full((2, 2), 1.5, np.float16)
    opt = cr.SGD(lr=0.125, momentum=0.5)
    for g in (0.5, -1.5):
        opt.step([p], [np.full((2, 2), g, np.float16)])
    assert p.dtype == np.float16
    np.testing.assert_allclose(p, sgd_reference(1.5, [0.5, -1.5], 0.125, 0.5), rtol=1e-3)


def test_float32_steps_match_float64(kernel_path):
    opt32 = cr.Adam(lr=0.05, weight_decay=0.05)
    opt64 = cr.Adam(lr=0.05, weight_decay=0.05)
    p32 = run(opt32, 1.5, GRADS, np.float32)
    p64 = run(opt64, 1.5, GRADS, np.float64)
    assert p32.dtype == np.float32
    np.testing.assert_allclose(p32, p64, rtol=1e-6)


def test_non_contiguous_parameters_take_the_numpy_rule(kernel_path):
    # A transposed view is not C-contiguous: the kernels decline it and _update runs.
    base = np.full((3, 2), 1.5)
    p = base.T
    opt = cr.SGD(lr=0.1, momentum=0.8, nesterov=True)
    for g in GRADS:
        opt.step([p], [np.full((2, 3), g)])
    np.testing.assert_allclose(base, sgd_reference(1.5, GRADS, 0.1, 0.8, True), rtol=1e-12)


class SignSGD(cr.SGD):
    """A subclass with its own rule: the fused kernels must not replace it."""

    def _update(self, p, g, state):
        p -= self.lr * np.sign(g)


class HalfAdam(cr.Adam):
    def _update(self, p, g, state):
        p -= 0.5 * g


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_subclass_rule_is_used_on_every_path(kernel_path, dtype):
    p = np.full((2, 2), 1.0, dtype)
    SignSGD(lr=0.25).step([p], [np.full((2, 2), -3.0, dtype)])
    np.testing.assert_array_equal(p, 1.25)
    HalfAdam().step([p], [np.full((2, 2), 0.5, dtype)])
    np.testing.assert_array_equal(p, 1.0)


def test_adam_on_non_contiguous_and_mixed_dtype_parameters(kernel_path):
    base = np.full((3, 2), 1.5)
    p = base.T  # not C-contiguous: the NumPy rule
    opt = cr.Adam(lr=0.05, betas=(0.5, 0.8), eps=1e-3)
    for g in GRADS:
        opt.step([p], [np.full((2, 3), g)])
    np.testing.assert_allclose(base, adam_reference(1.5, GRADS, 0.05, 0.5, 0.8, 1e-3), rtol=1e-12)
    a, b = np.full(2, 1.5), np.full(2, 1.5, np.float32)  # two dtypes: the NumPy rule too
    opt = cr.Adam(lr=0.05, betas=(0.5, 0.8), eps=1e-3)
    for g in GRADS:
        opt.step([a, b], [np.full(2, g), np.full(2, g, np.float32)])
    expected = adam_reference(1.5, GRADS, 0.05, 0.5, 0.8, 1e-3)
    np.testing.assert_allclose(a, expected, rtol=1e-12)
    np.testing.assert_allclose(b, expected, rtol=1e-6)


def test_reset_forgets_momentum_and_step_count(kernel_path):
    opt = cr.Adam(lr=0.1)
    p = np.ones((2, 2))
    opt.step([p], [np.ones((2, 2))])
    opt.reset()
    assert opt.state == [] and opt.steps == 0
    q = np.ones((2, 2))
    opt.step([q], [np.full((2, 2), -3.0)])  # a first step again: lr * sign(g)
    np.testing.assert_allclose(q, 1.1, rtol=1e-6)


def test_state_is_rebuilt_when_the_parameter_count_changes():
    opt = cr.SGD(lr=0.1, momentum=0.5)
    a = np.ones(2)
    opt.step([a], [np.ones(2)])
    b, c = np.ones(2), np.ones(3)
    opt.step([b, c], [np.ones(2), np.ones(3)])
    assert [s["momentum"].shape for s in opt.state] == [(2,), (3,)]
    np.testing.assert_allclose(b, 0.9)  # a fresh buffer, not a's
    assert cr.SGD(lr=0.1)._new_state(a) == {}


def test_configs_and_repr():
    sgd = cr.SGD(lr=0.5, momentum=0.25, nesterov=True, weight_decay=0.125, decay_1d=False)
    assert sgd.get_config() == {"type": "SGD", "lr": 0.5, "momentum": 0.25, "nesterov": True,
                                "weight_decay": 0.125, "decay_1d": False}
    assert repr(sgd) == ("SGD(lr=0.5, momentum=0.25, nesterov=True, weight_decay=0.125, "
                         "decay_1d=False)")
    adam = cr.Adam(lr=0.5, betas=(0.5, 0.75), eps=0.25, weight_decay=0.125, decay_1d=False)
    config = adam.get_config()
    assert config == {"type": "Adam", "lr": 0.5, "betas": [0.5, 0.75], "eps": 0.25,
                      "weight_decay": 0.125, "decay_1d": False}
    again = get_optimizer(config)
    assert isinstance(again, cr.Adam) and again.betas == (0.5, 0.75)
    assert again.get_config() == config
    assert get_optimizer({"type": "sgd", "lr": 0.5}).get_config()["lr"] == 0.5
    assert get_optimizer("SGD").lr == 0.01 and get_optimizer(sgd) is sgd
    assert cr.Adam().betas == (0.9, 0.999) and cr.Adam().eps == 1e-8 and cr.Adam().lr == 1e-3
    plain = cr.SGD()
    assert (plain.lr, plain.momentum, plain.nesterov, plain.weight_decay, plain.decay_1d) == (
        0.01, 0.0, False, 0.0, True)
    assert cr.Adam().weight_decay == 0.0 and cr.Adam().decay_1d is True
    assert repr(cr.optimizers.Optimizer(0.5)) == "Optimizer(lr=0.5)"
    assert cr.optimizers.Optimizer(0.5).get_config() == {"type": "Optimizer", "lr": 0.5}
    with pytest.raises(NotImplementedError):
        cr.optimizers.Optimizer(0.5).step([np.ones(1)], [np.ones(1)])
    with pytest.raises(ValueError, match=r"unknown optimizer 'rmsprop'; choose one of sgd, adam"):
        get_optimizer("rmsprop")
    with pytest.raises(ValueError, match=r"unknown optimizer ''"):
        get_optimizer({"lr": 0.1})


@pytest.mark.parametrize("make, message", [
    (lambda: cr.SGD(lr=-0.5), r"^invalid learning rate lr -0\.5: must be >= 0\.0$"),
    (lambda: cr.SGD(momentum=float("inf")), r"^invalid momentum inf: must be >= 0\.0$"),
    (lambda: cr.Adam(betas=(1.0, 0.9)), r"^invalid beta1 1\.0: must be in \[0\.0, 1\.0\)$"),
    (lambda: cr.Adam(betas=(0.9, -0.1)), r"^invalid beta2 -0\.1: must be in \[0\.0, 1\.0\)$"),
    (lambda: cr.SGD(weight_decay=-1), r"^invalid weight_decay -1\.0: must be >= 0\.0$"),
    (lambda: cr.SGD(nesterov=True), r"^nesterov momentum needs momentum > 0$"),
])
def test_rejected_hyperparameters_say_why(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_boundary_hyperparameters_are_accepted():
    assert cr.SGD(lr=0.0, momentum=0.0, weight_decay=0.0).lr == 0.0
    assert cr.Adam(betas=(0.0, 0.0), eps=0.0).betas == (0.0, 0.0)
    assert cr.SGD(lr=np.float32(0.5)).lr == 0.5 and type(cr.SGD(lr=np.float32(0.5)).lr) is float
