import numpy as np
import pytest

import chainrule as cr


def test_sgd_plain_step():
    p, g = np.array([1.0, -2.0]), np.array([0.5, 0.5])
    cr.SGD(lr=0.1).step([p], [g])
    np.testing.assert_allclose(p, [0.95, -2.05])


def test_sgd_momentum_and_nesterov_by_hand():
    p, g = np.array([1.0]), np.array([1.0])
    opt = cr.SGD(lr=0.1, momentum=0.9)
    opt.step([p], [g])  # b = 1, p = 0.9
    opt.step([p], [g])  # b = 1.9, p = 0.71
    np.testing.assert_allclose(p, [0.71])
    q = np.array([1.0])
    nest = cr.SGD(lr=0.1, momentum=0.9, nesterov=True)
    nest.step([q], [g])  # b = 1, step g + 0.9 b = 1.9
    np.testing.assert_allclose(q, [0.81])


def test_sgd_weight_decay():
    p = np.array([2.0])
    cr.SGD(lr=0.1, weight_decay=0.5).step([p], [np.array([0.0])])
    np.testing.assert_allclose(p, [1.9])


def test_adam_first_step_is_lr_times_sign():
    p = np.array([1.0, 1.0])
    cr.Adam(lr=0.01).step([p], [np.array([3.0, -0.002])])
    np.testing.assert_allclose(p, [0.99, 1.01], rtol=1e-6)


def test_state_is_per_parameter_and_keeps_dtype():
    a, b = np.ones(3, np.float32), np.ones((2, 2), np.float32)
    opt = cr.Adam()
    opt.step([a, b], [np.ones(3, np.float32), np.ones((2, 2), np.float32)])
    assert len(opt.state) == 2 and opt.state[1]["m"].shape == (2, 2)
    assert a.dtype == np.float32 and opt.state[0]["v"].dtype == np.float32
    assert opt.steps == 1


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: cr.SGD(lr=-0.1), "invalid learning rate lr -0.1"),
        (lambda: cr.SGD(lr=0.1, momentum=-1), "invalid momentum -1"),
        (lambda: cr.SGD(lr=0.1, nesterov=True), "nesterov momentum needs momentum"),
        (lambda: cr.Adam(lr=float("nan")), "invalid learning rate lr nan"),
        (lambda: cr.Adam(betas=(0.9, 1.0)), "invalid beta2 1.0"),
        (lambda: cr.Adam(eps=-1e-8), "invalid eps"),
        (lambda: cr.Adam(weight_decay=-1), "invalid weight_decay"),
    ],
)
def test_bad_arguments_name_the_value(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_get_optimizer_from_name_and_config():
    from chainrule.optimizers import get_optimizer

    opt = get_optimizer("adam", lr=0.5)
    assert isinstance(opt, cr.Adam) and opt.lr == 0.5
    again = get_optimizer(opt.get_config())
    assert again.get_config() == opt.get_config()
    with pytest.raises(ValueError, match="unknown optimizer"):
        get_optimizer("rmsprop")
