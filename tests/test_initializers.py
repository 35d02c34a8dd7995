import numpy as np
import pytest

from chainrule import initializers as init


def test_uniform_range_and_determinism():
    rng = np.random.default_rng(0)
    w = init.uniform(0, 1)((200, 300), rng)
    assert w.shape == (200, 300) and w.min() >= 0 and w.max() < 1
    np.testing.assert_array_equal(w, init.uniform(0, 1)((200, 300), np.random.default_rng(0)))
    with pytest.raises(ValueError, match="low < high"):
        init.uniform(1, 0)


@pytest.mark.parametrize(
    "fn, variance",
    [
        (init.glorot_uniform, 2 / (400 + 300)),
        (init.glorot_normal, 2 / (400 + 300)),
        (init.he_uniform, 2 / 400),
        (init.he_normal, 2 / 400),
    ],
)
def test_scaled_initializers_have_their_variance(fn, variance):
    w = fn((300, 400), np.random.default_rng(1))  # (fan_out, fan_in)
    assert abs(w.mean()) < 0.01 * np.sqrt(variance) * 10
    assert w.var() == pytest.approx(variance, rel=0.02)


def test_zeros():
    assert not init.zeros((3, 2), np.random.default_rng(0)).any()


def test_names_resolve_and_defaults_follow_activation():
    assert init.get_initializer("he_normal") is init.he_normal
    assert init.get_initializer("xavier_uniform") is init.glorot_uniform
    assert init.default_initializer("relu") is init.he_normal
    assert init.default_initializer("sigmoid") is init.glorot_uniform
    with pytest.raises(ValueError, match="unknown initializer 'fancy'"):
        init.get_initializer("fancy")
