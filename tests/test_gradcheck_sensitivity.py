"""How sensitive ``check_gradients`` is, what it reports and what it leaves alone.

A backward wrong by a relative 1e-4 must fail with the default tolerances
(central differences in float64 are right to about 1e-9 here), and the
report's numbers must be the documented maxima.
"""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr
from chainrule.gradcheck import GradientCheck, GradientReport


class SlightlyWrongTanh(cr.Tanh):
    """A backward off by a relative ``error``: what a loosened checker would let through."""

    error = 1e-4

    def backward(self, grad_output):
        return super().backward(grad_output) * (1.0 + self.error)


def tanh_net(act=None):
    return cr.Network([cr.Dense(3, 4, seed=0), act or cr.Tanh(), cr.Dense(4, 2, seed=1)],
                      loss=cr.SquaredError(), dtype="float64")


def batch():
    rng = np.random.default_rng(0)
    return rng.normal(size=(4, 3)), rng.normal(size=(4, 2))


def test_a_backward_wrong_by_1e_4_fails_with_the_defaults():
    x, y = batch()
    report = cr.check_gradients(tanh_net(SlightlyWrongTanh()), x, y)
    assert not report.ok and not bool(report)
    assert not report["0.weight"].ok and not report["input"].ok
    assert report["2.weight"].ok and report["2.bias"].ok
    assert 0.5e-4 < report["0.weight"].max_rel_error < 2e-4
    assert report["0.weight"].max_abs_error > 1e-9  # over atol, so atol does not rescue it
    # a right backward is right to far better than rtol
    right = cr.check_gradients(tanh_net(), x, y)
    assert right.ok and right.max_rel_error < 1e-8
    assert right.rtol == 1e-6 and right.atol == 1e-9 and right.eps == 1e-6


def test_tolerances_are_inclusive_and_either_one_passes():
    x, y = batch()
    wrong = cr.check_gradients(tanh_net(SlightlyWrongTanh()), x, y)
    rel = wrong["0.weight"].max_rel_error
    absolute = wrong["0.weight"].max_abs_error
    assert cr.check_gradients(tanh_net(SlightlyWrongTanh()), x, y, rtol=rel)["0.weight"].ok
    assert not cr.check_gradients(tanh_net(SlightlyWrongTanh()), x, y,
                                  rtol=rel * 0.999)["0.weight"].ok
    assert cr.check_gradients(tanh_net(SlightlyWrongTanh()), x, y, atol=absolute)["0.weight"].ok
    loose = cr.check_gradients(tanh_net(SlightlyWrongTanh()), x, y, rtol=1e-3)
    assert loose.ok and loose.rtol == 1e-3


def test_report_numbers_are_the_documented_maxima():
    # Hand-check one tensor: the errors follow from the analytic and numeric gradients.
    x, y = batch()
    net = tanh_net(SlightlyWrongTanh())
    report = cr.check_gradients(net, x, y)
    net.astype(np.float64)
    net.loss.forward(net.forward(x), y)
    net.backward()
    analytic = net.gradients()["0.bias"]
    eps = 1e-6
    numeric = np.empty(4)
    for i in range(4):
        bias = net.parameters()["0.bias"]
        saved = bias[i]
        bias[i] = saved + eps
        plus = net.loss.forward(net.forward(x), y)
        bias[i] = saved - eps
        minus = net.loss.forward(net.forward(x), y)
        bias[i] = saved
        numeric[i] = (plus - minus) / (2 * eps)
    check = report["0.bias"]
    assert check.shape == (4,) and check.checked == 4
    abs_err = np.max(np.abs(analytic - numeric))
    assert check.max_abs_error == pytest.approx(abs_err, rel=1e-3)
    scale = max(np.abs(analytic).max(), np.abs(numeric).max())
    assert check.max_rel_error == pytest.approx(abs_err / scale, rel=1e-3)
    assert report.max_rel_error == max(c.max_rel_error for c in report)


def test_all_zero_gradients_report_zero_relative_error():
    # ReLU with every unit dead: the first layer's gradients are exactly 0
    net = cr.Network([cr.Dense(2, 2, seed=0), cr.ReLU(), cr.Dense(2, 1, seed=1)],
                     loss="squared_error", dtype="float64")
    net.layers[0].weight = -np.ones((2, 2))
    net.layers[0].bias = [-5.0, -5.0]
    report = cr.check_gradients(net, np.ones((3, 2)), np.zeros((3, 1)))
    zero = report["0.weight"]
    assert zero.max_abs_error == 0.0 and zero.max_rel_error == 0.0 and zero.ok


def test_max_checks_samples_elements_by_seed():
    x, y = batch()
    report = cr.check_gradients(tanh_net(), x, y, max_checks=5)
    assert [c.checked for c in report] == [5, 4, 5, 2, 5]
    assert [c.shape for c in report] == [(4, 3), (4,), (2, 4), (2,), (4, 3)]
    assert report.ok
    # the sample must reach the wrong entries: one wrong weight row is found or not by the seed
    wrong = cr.check_gradients(tanh_net(SlightlyWrongTanh()), x, y, max_checks=1, seed=3)
    assert all(c.checked == 1 for c in wrong)
    assert cr.check_gradients(tanh_net(), x, y, max_checks=12)["0.weight"].checked == 12


def test_sampled_elements_follow_the_seed():
    """With ``max_checks`` the elements come from ``default_rng(seed)``, one draw per larger tensor."""

    class OneWrongEntry(cr.Dense):
        """Dense whose weight gradient is off by 1 at one flat index."""

        wrong = 0

        def backward(self, grad_output):
            out = super().backward(grad_output)
            self.grads["weight"].reshape(-1)[self.wrong] += 1.0
            return out

    def drawn(seed, sizes, k):
        rng = np.random.default_rng(seed)
        return [set(np.sort(rng.choice(n, size=k, replace=False)).tolist()) if n > k else
                set(range(n)) for n in sizes]

    x, y = batch()
    # tensors: 0.weight (12), 0.bias (4), 2.weight (8), 2.bias (2), input (12); max_checks=4
    sampled = drawn(7, [12, 4, 8, 2, 12], 4)[2]
    for wrong in range(8):
        last = OneWrongEntry(4, 2, seed=1)
        last.wrong = wrong
        net = cr.Network([cr.Dense(3, 4, seed=0), cr.Tanh(), last], dtype="float64")
        report = cr.check_gradients(net, x, y, max_checks=4, seed=7)
        assert report["2.weight"].ok == (wrong not in sampled), wrong
    # the default seed is 0, and the same seed gives the same report
    first = cr.check_gradients(tanh_net(), x, y, max_checks=3)
    again = cr.check_gradients(tanh_net(), x, y, max_checks=3, seed=0)
    other = cr.check_gradients(tanh_net(), x, y, max_checks=3, seed=1)
    assert [c.max_abs_error for c in first] == [c.max_abs_error for c in again]
    assert [c.max_abs_error for c in first] != [c.max_abs_error for c in other]


def test_max_checks_zero_checks_nothing():
    x, y = batch()
    report = cr.check_gradients(tanh_net(SlightlyWrongTanh()), x, y, max_checks=0)
    assert report.ok and all(c.checked == 0 and c.max_abs_error == 0.0 for c in report)


def test_float32_and_integer_inputs_are_perturbed_in_float64():
    x, y = batch()
    report = cr.check_gradients(tanh_net(), x.astype(np.float32), y)
    assert report.ok and report["input"].max_rel_error < 1e-8
    assert cr.check_gradients(tanh_net(), np.round(x * 3).astype(int), y)["input"].ok


def test_network_is_left_untouched_and_dropout_masks_repeat():
    rng = np.random.default_rng(2)
    net = cr.Network([cr.Dense(3, 5, seed=1), cr.Tanh(), cr.Dropout(0.5, seed=4),
                      cr.Dense(5, 2, seed=2)], loss="squared_error", dtype="float32")
    state = net.layers[2].rng.bit_generator.state
    before = {k: v.copy() for k, v in net.parameters().items()}
    report = cr.check_gradients(net, rng.normal(size=(4, 3)), rng.normal(size=(4, 2)))
    assert report.ok, str(report)
    assert net.layers[2].rng.bit_generator.state == state
    assert net.dtype == np.float32
    for name, value in net.parameters().items():
        np.testing.assert_array_equal(value, before[name])


def test_weights_reach_the_loss():
    x = np.random.default_rng(0).normal(size=(4, 3))
    net = cr.Network([cr.Dense(3, 3, seed=0)], loss="cross_entropy", dtype="float64")
    plain = cr.check_gradients(net, x, [0, 1, 2, 0])
    weighted = cr.check_gradients(net, x, [0, 1, 2, 0], sample_weight=[1.0, 0.0, 0.0, 0.0])
    classed = cr.check_gradients(net, x, [0, 1, 2, 0], class_weight={0: 0.0, 1: 0.0})
    assert plain.ok and weighted.ok and classed.ok
    # weights of 0 make the loss 0 whatever the weights: both sides are exactly 0
    zero = cr.check_gradients(net, x, [0, 1, 2, 0], sample_weight=[0.0] * 4)
    assert all(c.max_abs_error == 0.0 for c in zero)
    zero = cr.check_gradients(net, x, [0, 1, 2, 0], class_weight=[0.0, 0.0, 0.0])
    assert all(c.max_abs_error == 0.0 for c in zero)
    assert all(c.max_abs_error > 0.0 for c in plain)
    with pytest.raises(ValueError, match="sample_weight must hold one weight per sample"):
        cr.check_gradients(net, x, [0, 1, 2, 0], sample_weight=[1.0])
    with pytest.raises(ValueError, match="class label"):
        cr.check_gradients(net, x, [0, 1, 2, 5])


def test_report_text_and_access():
    checks = [GradientCheck("a", (2,), 2, 1e-12, 2e-7, True),
              GradientCheck("input", (1, 3), 3, 0.5, 0.25, False)]
    report = GradientReport(checks, rtol=1e-6, atol=1e-9, eps=1e-6)
    assert not report.ok and report.max_rel_error == 0.25
    assert list(report) == checks and report["input"] is checks[1]
    with pytest.raises(KeyError, match="'b'"):
        report["b"]
    assert repr(report) == "GradientReport(ok=False, max_rel_error=2.500e-01)"
    header = "tensor  shape   checked  max abs error  max rel error  ok"
    assert str(report).splitlines() == [
        header,
        "-" * len(header),
        "a       (2,)    2        1.000e-12      2.000e-07      yes",
        "input   (1, 3)  3        5.000e-01      2.500e-01      NO",
        "gradient check FAILED: central differences with eps=1e-06, rtol=1e-06, atol=1e-09",
    ]
    good = GradientReport(checks[:1], rtol=1e-3, atol=0.0, eps=1e-5)
    assert good.ok and bool(good)
    assert str(good).splitlines()[-1] == ("gradient check passed: central differences with "
                                          "eps=1e-05, rtol=0.001, atol=0")
    empty = GradientReport([], rtol=1e-6, atol=1e-9, eps=1e-6)
    assert empty.ok and empty.max_rel_error == 0.0
