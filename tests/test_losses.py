import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import chainrule as cr


def test_squared_error_one_sample_is_the_tutorials_sum():
    loss = cr.SquaredError()
    assert loss.forward(np.array([0.86]), 1.0) == pytest.approx(0.0196)
    np.testing.assert_allclose(loss.backward(), [2 * -0.14])
    value = loss.forward(np.array([0.195, 0.13, 0.585]), [0.1, 1.0, 0.1])
    assert value == pytest.approx(0.095**2 + 0.87**2 + 0.485**2)


def test_squared_error_means_over_the_batch():
    loss = cr.SquaredError()
    pred = np.array([[1.0, 2.0], [0.0, 0.0]])
    target = np.array([[0.0, 0.0], [0.0, 1.0]])
    assert loss.forward(pred, target) == pytest.approx((1 + 4 + 1) / 2)
    np.testing.assert_allclose(loss.backward(), [[1.0, 2.0], [0.0, -1.0]])


def test_mean_squared_error_means_over_elements():
    loss = cr.MeanSquaredError()
    pred = np.array([[1.0, 2.0], [0.0, 0.0]])
    target = np.zeros((2, 2))
    assert loss.forward(pred, target) == pytest.approx(5 / 4)
    np.testing.assert_allclose(loss.backward(), pred * 2 / 4)


def test_regression_target_shape_mismatch():
    with pytest.raises(ValueError, match="does not match prediction shape"):
        cr.SquaredError().forward(np.zeros((4, 2)), np.zeros((4, 3)))


def test_cross_entropy_hand_computed():
    loss = cr.CrossEntropy()
    logits = np.array([[0.0, np.log(3.0)], [np.log(4.0), 0.0]])
    # p = [[.25, .75], [.8, .2]]
    value = loss.forward(logits, np.array([1, 1]))
    assert value == pytest.approx(-(np.log(0.75) + np.log(0.2)) / 2)
    np.testing.assert_allclose(loss.backward(), [[0.25 / 2, -0.25 / 2], [0.8 / 2, -0.8 / 2]])


def test_cross_entropy_one_hot_equals_labels():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(5, 4))
    labels = np.array([0, 3, 2, 2, 1])
    a, b = cr.CrossEntropy(), cr.CrossEntropy()
    assert a.forward(z, labels) == pytest.approx(b.forward(z, np.eye(4)[labels]))
    np.testing.assert_allclose(a.backward(), b.backward())


def test_cross_entropy_single_sample():
    loss = cr.CrossEntropy()
    value = loss.forward(np.array([0.0, np.log(3.0)]), 1)
    assert value == pytest.approx(-np.log(0.75))
    np.testing.assert_allclose(loss.backward(), [0.25, -0.25])


def test_cross_entropy_names_bad_label():
    with pytest.raises(ValueError, match=r"class label 10 at index 2 is out of range for 10 classes"):
        cr.CrossEntropy().forward(np.zeros((3, 10)), np.array([1, 2, 10]))
    with pytest.raises(ValueError, match=r"class label -1 at index 0"):
        cr.CrossEntropy().forward(np.zeros((1, 3)), np.array([-1]))
    with pytest.raises(ValueError, match="not an integer"):
        cr.CrossEntropy().forward(np.zeros((2, 3)), np.array([0.5, 1.0]))


def test_accuracy():
    z = np.array([[2.0, 1.0], [0.0, 3.0], [5.0, 0.0]])
    assert cr.CrossEntropy().accuracy(z, [0, 1, 1]) == pytest.approx(2 / 3)
    assert cr.BinaryCrossEntropy().accuracy(np.array([[1.0], [-1.0]]), [[1.0], [1.0]]) == 0.5
    assert cr.SquaredError().accuracy(z, z) is None


def test_binary_cross_entropy_hand_computed():
    loss = cr.BinaryCrossEntropy()
    z = np.array([[0.0], [np.log(3.0)]])  # sigmoid: 0.5, 0.75
    y = np.array([[1.0], [0.0]])
    assert loss.forward(z, y) == pytest.approx(-(np.log(0.5) + np.log(0.25)) / 2)
    np.testing.assert_allclose(loss.backward(), [[-0.25], [0.375]])


big_logits = arrays(
    np.float64, st.tuples(st.integers(1, 5), st.integers(2, 6)),
    elements=st.floats(-1e3, 1e3, allow_nan=False) | st.sampled_from([-1e3, 1e3]),
)


@settings(max_examples=60, deadline=None)
@given(big_logits, st.data())
def test_losses_stay_finite_for_huge_logits(z, data):
    n, k = z.shape
    labels = np.array(data.draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow / divide warnings either
        ce = cr.CrossEntropy()
        assert np.isfinite(ce.forward(z, labels))
        assert np.all(np.isfinite(ce.backward()))
        bce = cr.BinaryCrossEntropy()
        targets = (z > 0).astype(float)[:, ::-1]
        assert np.isfinite(bce.forward(z, targets))
        assert np.all(np.isfinite(bce.backward()))
        for loss in (cr.SquaredError(), cr.MeanSquaredError()):
            assert np.isfinite(loss.forward(z, np.zeros_like(z)))


def test_cross_entropy_at_extreme_logits_is_exact():
    loss = cr.CrossEntropy()
    assert loss.forward(np.array([[1000.0, -1000.0]]), [0]) == 0.0
    assert loss.forward(np.array([[1000.0, -1000.0]]), [1]) == pytest.approx(2000.0)


def test_backward_before_forward():
    with pytest.raises(RuntimeError, match="before forward"):
        cr.CrossEntropy().backward()


def test_float32_in_float32_out():
    z = np.ones((3, 4), np.float32)
    for loss, target in [(cr.CrossEntropy(), [0, 1, 2]), (cr.SquaredError(), z),
                         (cr.MeanSquaredError(), z), (cr.BinaryCrossEntropy(), z)]:
        loss.forward(z, target)
        assert loss.backward().dtype == np.float32, loss
