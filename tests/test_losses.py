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


# -- issue 9 §1: a loss accepts exactly the targets its gradient is right for ----------------

BAD_ROWS = {
    "multi-hot": [[1.0, 1.0, 0.0], [0.0, 1.0, 0.0]],
    "all-zero": [[0.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
    "weighted": [[0.0, 0.0, 5.0], [0.0, 1.0, 0.0]],
    "negative": [[1.5, -0.5, 0.0], [0.0, 1.0, 0.0]],
}


@pytest.mark.parametrize("kind", sorted(BAD_ROWS))
def test_cross_entropy_refuses_rows_that_are_not_probabilities_everywhere(kind):
    rows = np.array(BAD_ROWS[kind])
    z = np.array([[0.3, -1.0, 2.0], [0.1, 0.2, 0.3]])
    message = r"row 0 .*BinaryCrossEntropy.*class_weight"
    with pytest.raises(ValueError, match=message):
        cr.CrossEntropy().forward(z, rows)
    net = cr.Network([cr.Dense(2, 3, seed=0)], loss="cross_entropy", dtype="float64")
    x = np.ones((2, 2))
    with pytest.raises(ValueError, match=message):
        net.fit(x, rows, verbose=0)
    with pytest.raises(ValueError, match=message):
        net.evaluate(x, rows)
    with pytest.raises(ValueError, match=message):
        net.train_step(x, rows)
    with pytest.raises(ValueError, match=message):
        cr.check_gradients(net, x, rows)


def test_probability_rows_in_float32_pass_and_their_gradient_checks():
    rows = np.full((3, 10), 0.1, dtype=np.float32)  # sums to 1 only up to float32 rounding
    cr.CrossEntropy().check_targets((3, 10), rows)
    net = cr.Network([cr.Dense(2, 3, seed=0)], loss="cross_entropy", dtype="float64")
    smooth = np.array([[0.8, 0.1, 0.1], [0.1, 0.1, 0.8]])
    assert cr.check_gradients(net, np.array([[1.0, -2.0], [0.5, 0.3]]), smooth).ok


def test_binary_cross_entropy_refuses_labels_0_to_9_in_evaluate_as_in_fit():
    net = cr.Network([cr.Dense(2, 1, seed=0)], loss="binary_cross_entropy")
    x, y = np.ones((10, 2)), np.arange(10)
    for call in (lambda: net.evaluate(x, y), lambda: net.fit(x, y, verbose=0),
                 lambda: net.train_step(x, y), lambda: cr.check_gradients(net, x, y)):
        with pytest.raises(ValueError, match=r"must lie in \[0, 1\].*got 2.*CrossEntropy"):
            call()
    # ten outputs and one label per sample: the message names CrossEntropy too
    net10 = cr.Network([cr.Dense(2, 10, seed=0)], loss="binary_cross_entropy")
    with pytest.raises(ValueError, match=r"one target in \[0, 1\] per output.*CrossEntropy"):
        net10.evaluate(x, y)


def test_one_output_with_cross_entropy_is_refused_when_built():
    with pytest.raises(ValueError, match="BinaryCrossEntropy") as info:
        cr.Network.from_sizes([4, 8, 1], loss="cross_entropy")
    assert "0..0" not in str(info.value) and "(n, 1)" not in str(info.value)
    net = cr.Network.from_sizes([4, 8, 1], loss="binary_cross_entropy")
    with pytest.raises(ValueError, match="BinaryCrossEntropy"):
        net.loss = "cross_entropy"  # assigning a loss later is checked the same way
    assert isinstance(net.loss, cr.BinaryCrossEntropy)
    with pytest.raises(ValueError, match="BinaryCrossEntropy"):
        cr.CrossEntropy().forward(np.zeros((32, 1)), np.zeros(32, int))


def test_bool_labels_work_where_integer_labels_do():
    z = np.array([[0.2, -0.4], [1.0, 0.5], [-0.3, 0.3]])
    labels = np.array([True, False, True])
    ce = cr.CrossEntropy()
    assert ce.forward(z, labels) == ce.forward(z, labels.astype(int))
    np.testing.assert_array_equal(ce.backward(), (ce.forward(z, [1, 0, 1]), ce.backward())[1])
    assert ce.accuracy(z, labels) == ce.accuracy(z, [1, 0, 1])
    bce = cr.BinaryCrossEntropy()
    assert bce.forward(z[:, :1], labels) == bce.forward(z[:, :1], labels.astype(float))
    net = cr.Network([cr.Dense(2, 2, seed=0)], loss="cross_entropy", dtype="float64")
    net.fit(np.ones((3, 2)), labels, verbose=0)
    assert net.evaluate(np.ones((3, 2)), labels)["accuracy"] in (1 / 3, 2 / 3)


def test_integer_labels_with_squared_error_name_cross_entropy():
    net = cr.Network.from_sizes([4, 8, 10])  # loss= forgotten: the tutorials' squared error
    x, y = np.ones((32, 4)), np.arange(32) % 10
    for call in (lambda: net.fit(x, y, verbose=0), lambda: net.evaluate(x, y),
                 lambda: net.train_step(x, y)):
        with pytest.raises(ValueError, match='class labels.*loss="cross_entropy"'):
            call()


def test_balanced_class_weight_is_scikit_learns():
    from sklearn.utils.class_weight import compute_class_weight

    y = np.array([0, 0, 0, 0, 1, 2, 2, 0, 1, 0])
    expected = compute_class_weight("balanced", classes=np.unique(y), y=y)
    ce = cr.CrossEntropy()
    np.testing.assert_allclose(ce.class_weights("balanced", y, 3), expected)
    np.testing.assert_allclose(cr.losses.balanced_class_weight(np.bincount(y)), expected)
    yb = (y > 0).astype(float)
    np.testing.assert_allclose(
        cr.BinaryCrossEntropy().class_weights("balanced", yb[:, None], 1),
        compute_class_weight("balanced", classes=np.array([0, 1]), y=yb.astype(int)))


def test_weight_arguments_are_validated():
    z, y = np.zeros((3, 2)), np.array([0, 1, 1])
    ce = cr.CrossEntropy()
    with pytest.raises(ValueError, match=r"one weight per sample, shape \(3,\)"):
        ce.forward(z, y, sample_weight=[1.0, 2.0])
    with pytest.raises(ValueError, match=">= 0"):
        ce.forward(z, y, sample_weight=[1.0, -2.0, 1.0])
    with pytest.raises(ValueError, match="key 2; classes are the integers 0..1"):
        ce.forward(z, y, class_weight={2: 1.0})
    with pytest.raises(ValueError, match="'balanced'"):
        ce.forward(z, y, class_weight="balance")
    with pytest.raises(ValueError, match="classification loss.*sample_weight"):
        cr.SquaredError().forward(z, z, class_weight={0: 2.0})
    with pytest.raises(ValueError, match="multi-label.*sample_weight"):
        cr.BinaryCrossEntropy().forward(z, z, class_weight={0: 2.0})
    # a batch whose every sample weighs 0 contributes nothing (not 0/0)
    z3 = np.array([[1.0, 0.0], [0.0, 2.0], [0.5, 0.5]])
    assert ce.forward(z3, [0, 0, 0], class_weight=[0.0, 1.0]) == 0.0
    np.testing.assert_array_equal(ce.backward(), np.zeros((3, 2)))
    # scaling every class weight changes nothing: it is a weighted mean
    a = ce.forward(np.array([[1.0, 0.0], [0.0, 2.0], [0.5, 0.5]]), y, class_weight=[1.0, 3.0])
    b = ce.forward(np.array([[1.0, 0.0], [0.0, 2.0], [0.5, 0.5]]), y, class_weight=[2.0, 6.0])
    assert a == pytest.approx(b, rel=1e-14)


@pytest.mark.parametrize("loss", ["cross_entropy", "binary_cross_entropy", "squared_error", "mse"])
def test_weighted_gradients_check(loss):
    rng = np.random.default_rng(0)
    k = 1 if loss == "binary_cross_entropy" else 3
    net = cr.Network.from_sizes([4, 5, k], activation="tanh", loss=loss, dtype="float64", seed=1)
    x = rng.normal(size=(6, 4))
    y = {"cross_entropy": rng.integers(0, 3, 6), "binary_cross_entropy": rng.integers(0, 2, 6)}.get(
        loss, rng.normal(size=(6, k)))
    w = rng.uniform(0, 2, 6)
    report = cr.check_gradients(net, x, y, sample_weight=w)
    assert report.ok, str(report)
    if net.loss.classification:
        report = cr.check_gradients(net, x, y, sample_weight=w, class_weight="balanced")
        assert report.ok, str(report)


def test_a_nan_target_is_named_in_every_path_not_blamed_on_the_learning_rate():
    net = cr.Network.from_sizes([2, 3, 2], seed=0, dtype="float64")
    x, y = np.ones((3, 2)), np.zeros((3, 2))
    y[1, 0] = np.nan
    before = {k: v.copy() for k, v in net.parameters().items()}
    for call in (lambda: net.train_step(x, y), lambda: net.evaluate(x, y),
                 lambda: net.fit(x, y, verbose=0), lambda: cr.check_gradients(net, x, y)):
        with pytest.raises(ValueError, match="targets contain NaN or infinite values"):
            call()
    for name, value in net.parameters().items():
        np.testing.assert_array_equal(value, before[name])
    bce = cr.Network.from_sizes([2, 3, 1], loss="binary_cross_entropy", seed=0)
    with pytest.raises(ValueError, match="NaN"):
        bce.train_step(x, [0.0, np.nan, 1.0])
