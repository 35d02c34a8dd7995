"""Losses at hand-computed points: values, gradients, weights, accuracy and the messages.

Every expected number is worked out from the formulas in ``chainrule.losses``
(PyTorch's and scikit-learn's definitions), in plain Python, here.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import chainrule as cr
from chainrule.losses import balanced_class_weight, check_sample_weight, get_loss


def lse(row):
    return math.log(sum(math.exp(v) for v in row))


# -- values and gradients ---------------------------------------------------------------


def test_squared_error_sum_over_outputs_mean_over_batch():
    loss = cr.SquaredError()
    pred = np.array([[1.0, 2.0], [0.0, -1.0]])
    target = np.array([[0.0, 0.0], [1.0, 1.0]])
    # sample 0: 1 + 4 = 5; sample 1: 1 + 4 = 5; mean 5
    assert loss.forward(pred, target) == pytest.approx(5.0, rel=1e-15)
    np.testing.assert_allclose(loss.backward(), [[1.0, 2.0], [-1.0, -2.0]], rtol=1e-15)
    # weighted: (2*5 + 0*5) / 2 = 5, gradient of sample 1 is zero
    assert loss.forward(pred, target, sample_weight=[2.0, 0.0]) == pytest.approx(5.0)
    np.testing.assert_allclose(loss.backward(), [[2.0, 4.0], [0.0, 0.0]], rtol=1e-15)
    # one sample (k,): exactly sum((pred - y)**2), gradient 2 (pred - y)
    assert loss.forward(np.array([3.0, 1.0]), np.array([1.0, 1.0])) == 4.0
    np.testing.assert_allclose(loss.backward(), [4.0, 0.0])


def test_mean_squared_error_is_a_mean_over_every_element():
    loss = cr.MeanSquaredError()
    pred = np.array([[1.0, 2.0], [0.0, -1.0]])
    target = np.zeros((2, 2))
    assert loss.forward(pred, target) == pytest.approx(6.0 / 4)
    np.testing.assert_allclose(loss.backward(), pred * 2 / 4, rtol=1e-15)
    assert loss.forward(pred, target, sample_weight=[1.0, 3.0]) == pytest.approx(
        (1 * 2.5 + 3 * 0.5) / 2)
    np.testing.assert_allclose(loss.backward(), [[0.5, 1.0], [0.0, -1.5]], rtol=1e-15)


def test_cross_entropy_labels_and_rows():
    loss = cr.CrossEntropy()
    z = np.array([[1.0, 2.0, 0.5], [0.0, 0.0, 3.0]])
    labels = np.array([0, 2])
    l0, l1 = lse(z[0]) - 1.0, lse(z[1]) - 3.0
    assert loss.forward(z, labels) == pytest.approx((l0 + l1) / 2, rel=1e-14)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(loss.backward(), (p - np.eye(3)[labels]) / 2, rtol=1e-13)
    # a soft row: -sum(y log p)
    rows = np.array([[0.5, 0.5, 0.0], [0.0, 0.25, 0.75]])
    expected = (-(0.5 * (1 - lse(z[0])) + 0.5 * (2 - lse(z[0])))
                - (0.25 * (0 - lse(z[1])) + 0.75 * (3 - lse(z[1])))) / 2
    assert loss.forward(z, rows) == pytest.approx(expected, rel=1e-14)
    np.testing.assert_allclose(loss.backward(), (p - rows) / 2, rtol=1e-13)
    # per sample with weights, rows and labels alike
    assert loss.forward(z, rows, sample_weight=[1.0, 0.0]) == pytest.approx(
        -(0.5 * (1 - lse(z[0])) + 0.5 * (2 - lse(z[0]))) / 2, rel=1e-14)
    assert loss.forward(z, labels, sample_weight=[0.0, 4.0]) == pytest.approx(4 * l1 / 2)
    # huge logits: no overflow, the exact limit
    assert loss.forward(np.array([[1000.0, 0.0]]), [1]) == pytest.approx(1000.0)
    assert loss.forward(np.array([2.0, 1.0]), 0) == pytest.approx(lse([2.0, 1.0]) - 2.0)


def test_binary_cross_entropy_values_and_gradient():
    loss = cr.BinaryCrossEntropy()
    z = np.array([[2.0, -1.0], [0.0, 3.0]])
    y = np.array([[1.0, 0.0], [0.5, 0.0]])

    def bce(zi, yi):
        s = 1 / (1 + math.exp(-zi))
        return -(yi * math.log(s) + (1 - yi) * math.log(1 - s))

    per = [[bce(z[i, j], y[i, j]) for j in range(2)] for i in range(2)]
    assert loss.forward(z, y) == pytest.approx(sum(map(sum, per)) / 4, rel=1e-13)
    s = 1 / (1 + np.exp(-z))
    np.testing.assert_allclose(loss.backward(), (s - y) / 4, rtol=1e-13)
    assert loss.forward(z, y, sample_weight=[3.0, 1.0]) == pytest.approx(
        (3 * sum(per[0]) / 2 + sum(per[1]) / 2) / 2, rel=1e-13)
    np.testing.assert_allclose(loss.backward(), (s - y) * [[3.0], [1.0]] / 4, rtol=1e-13)
    assert loss.forward(np.array([-800.0]), np.array([1.0])) == pytest.approx(800.0)


# -- weights -------------------------------------------------------------------------------


def test_class_weight_is_a_weighted_mean():
    loss = cr.CrossEntropy()
    z = np.array([[1.0, 0.0], [0.0, 2.0], [0.5, 0.5]])
    labels = np.array([0, 1, 1])
    per = [lse(z[0]) - 1.0, lse(z[1]) - 2.0, lse(z[2]) - 0.5]
    expected = (1 * per[0] + 3 * per[1] + 3 * per[2]) / 7
    assert loss.forward(z, labels, class_weight={1: 3.0}) == pytest.approx(expected, rel=1e-14)
    assert loss.forward(z, labels, class_weight=[2.0, 6.0]) == pytest.approx(expected, rel=1e-14)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(loss.backward(), (p - np.eye(2)[labels]) * [[2], [6], [6]] / 14,
                               rtol=1e-13)
    # with sample weights too: sum s c l / sum c
    assert loss.forward(z, labels, class_weight=[1.0, 3.0], sample_weight=[2.0, 1.0, 0.0]) \
        == pytest.approx((2 * per[0] + 3 * per[1]) / 7, rel=1e-14)
    # balanced: n / (2 * count) = 3/2 for class 0, 3/4 for class 1
    assert loss.forward(z, labels, class_weight="balanced") == pytest.approx(
        (1.5 * per[0] + 0.75 * (per[1] + per[2])) / 3.0, rel=1e-14)
    # soft rows weigh their expected class weight
    rows = np.array([[0.5, 0.5], [0.0, 1.0], [1.0, 0.0]])
    soft = [-(0.5 * (1 - lse(z[0])) + 0.5 * (0 - lse(z[0]))), per[1], lse(z[2]) - 0.5]
    assert loss.forward(z, rows, class_weight=[1.0, 3.0]) == pytest.approx(
        (2 * soft[0] + 3 * soft[1] + 1 * soft[2]) / 6, rel=1e-14)
    # balanced counts soft rows fractionally: counts (1.5, 1.5) -> weights 1
    assert loss.forward(z, rows, class_weight="balanced") == pytest.approx(
        sum(soft) / 3, rel=1e-14)


def test_every_sample_weighing_zero_gives_zero_loss_and_gradient():
    loss = cr.CrossEntropy()
    z = np.array([[1.0, 0.0], [0.0, 2.0]], dtype=np.float32)
    assert loss.forward(z, [0, 1], class_weight={0: 0.0, 1: 0.0}) == 0.0
    g = loss.backward()
    assert g.dtype == np.float32
    np.testing.assert_array_equal(g, np.zeros((2, 2)))
    assert loss.forward(z, [0, 1], sample_weight=[0, 0]) == 0.0
    np.testing.assert_array_equal(loss.backward(), np.zeros((2, 2)))


def test_binary_class_weight():
    loss = cr.BinaryCrossEntropy()
    z = np.array([[1.0], [-2.0], [0.5]])
    y = np.array([1, 0, 1])
    per = [math.log1p(math.exp(-1.0)), math.log1p(math.exp(-2.0)), math.log1p(math.exp(-0.5))]
    assert loss.forward(z, y, class_weight={0: 4.0, 1: 1.0}) == pytest.approx(
        (per[0] + 4 * per[1] + per[2]) / 6, rel=1e-14)
    # balanced: 3 / (2 * 1) for class 0, 3 / (2 * 2) for class 1
    assert loss.forward(z, y, class_weight="balanced") == pytest.approx(
        (0.75 * per[0] + 1.5 * per[1] + 0.75 * per[2]) / 3.0, rel=1e-14)
    # a soft target y weighs (1 - y) c0 + y c1
    assert loss.forward(np.array([[0.0]]), np.array([0.25]), class_weight=[2.0, 6.0]) \
        == pytest.approx(math.log(2.0), rel=1e-14)
    with pytest.raises(ValueError, match=r"^class_weight with BinaryCrossEntropy needs one output "
                                         r"\(classes 0 and 1\); this network has 2 "):
        loss.forward(np.zeros((1, 2)), np.zeros((1, 2)), class_weight=[1, 1])


def test_class_weights_may_be_any_real_numbers():
    from fractions import Fraction

    z = np.array([[1.0, 0.0], [0.0, 2.0]])
    per = [lse(z[0]) - 1.0, lse(z[1]) - 2.0]
    value = cr.CrossEntropy().forward(z, [0, 1], class_weight=[Fraction(1, 2), Fraction(3, 2)])
    assert value == pytest.approx((0.5 * per[0] + 1.5 * per[1]) / 2, rel=1e-14)


def test_binary_balanced_counts_are_summed_in_float64():
    y = np.array([[0.1], [0.2], [0.7]], dtype=np.float32)
    positive = sum(float(v) for v in y[:, 0])  # the float32 values, added exactly enough
    weights = cr.BinaryCrossEntropy().class_weights("balanced", y, 1)
    np.testing.assert_allclose(weights, [3 / (2 * (3 - positive)), 3 / (2 * positive)], rtol=1e-15)


def test_balanced_class_weight_matches_scikit_learn_formula():
    np.testing.assert_allclose(balanced_class_weight([2, 0, 6]), [2.0, 1.0, 8 / 12])
    np.testing.assert_allclose(balanced_class_weight([1.5, 1.5]), [1.0, 1.0])


@pytest.mark.parametrize("weight, message", [
    ("even", r"^class_weight must be a dict, a sequence or 'balanced', got 'even'$"),
    ({2: 1.0}, r"^class_weight has a key 2; classes are the integers 0\.\.1$"),
    ({-1: 1.0}, r"^class_weight has a key -1; "),
    ({True: 1.0}, r"^class_weight has a key True; "),
    ({"0": 1.0}, r"^class_weight has a key '0'; "),
    ([1.0, 2.0, 3.0], r"^class_weight must give one weight per class \(2\), got shape \(3,\)$"),
    ([1.0, -2.0], r"^class weights must be finite and >= 0$"),
    ({0: float("nan")}, r"^class weights must be finite and >= 0$"),
])
def test_bad_class_weights(weight, message):
    with pytest.raises(ValueError, match=message):
        cr.CrossEntropy().forward(np.zeros((2, 2)), [0, 1], class_weight=weight)


def test_class_weight_with_a_regression_loss_says_use_sample_weight():
    with pytest.raises(ValueError, match=r"^class_weight needs a classification loss \(CrossEntropy "
                                         r"or BinaryCrossEntropy\), not SquaredError\(\); use "
                                         r"sample_weight to weight samples$"):
        cr.SquaredError().forward(np.zeros((2, 1)), [0.0, 1.0], class_weight=[1, 2])


def test_check_sample_weight():
    np.testing.assert_array_equal(check_sample_weight([1, 0, True], 3), [1.0, 0.0, 1.0])
    assert check_sample_weight(2.5, 1).shape == (1,)
    assert check_sample_weight(np.float32(0.0), 1)[0] == 0.0
    with pytest.raises(ValueError, match=r"^sample_weight must be real numbers, got dtype <U1$"):
        check_sample_weight(["a"], 1)
    with pytest.raises(ValueError, match=r"^sample_weight must hold one weight per sample, "
                                         r"shape \(2,\); got \(3,\)$"):
        check_sample_weight([1, 2, 3], 2)
    with pytest.raises(ValueError, match=r"one weight per sample"):
        check_sample_weight(1.0, 2)
    for bad in ([1.0, -0.5], [1.0, float("inf")]):
        with pytest.raises(ValueError, match=r"^sample_weight must be finite and >= 0$"):
            check_sample_weight(bad, 2)


# -- accuracy -------------------------------------------------------------------------------


def test_cross_entropy_accuracy_with_labels_one_hot_and_weights():
    loss = cr.CrossEntropy()
    z = np.array([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 0.0, 5.0], [4.0, 0.0, 0.0]])
    labels = np.array([0, 1, 0, 2])  # right, right, wrong, wrong
    assert loss.accuracy(z, labels) == 0.5
    assert loss.accuracy(z, np.eye(3)[labels]) == 0.5
    assert loss.accuracy(z, np.eye(3)[labels], sample_weight=[3, 0, 1, 0]) == 0.75
    assert loss.accuracy(z, labels, sample_weight=[0, 1, 0, 0]) == 1.0
    assert math.isnan(loss.accuracy(z, labels, sample_weight=[0, 0, 0, 0]))
    assert loss.accuracy(np.array([0.0, 2.0, 1.0]), 1) == 1.0
    assert loss.accuracy(np.array([0.0, 2.0, 1.0]), [0.0, 0.0, 1.0]) == 0.0


def test_binary_accuracy_thresholds_and_weights():
    loss = cr.BinaryCrossEntropy()
    z = np.array([[0.5, -1.0], [-0.1, 0.0], [2.0, 2.0]])
    y = np.array([[1, 0], [1, 0], [0.6, 0.4]])  # 2 right, 1 right, 1 right
    assert loss.accuracy(z, y) == pytest.approx(4 / 6)
    assert loss.accuracy(z, y, sample_weight=[1, 1, 2]) == pytest.approx((1 + 0.5 + 2 * 0.5) / 4)
    assert loss.accuracy(np.array([0.0]), np.array([0.0])) == 1.0  # z = 0 is "no", y = 0.5 is no
    assert loss.accuracy(np.array([0.0]), np.array([0.5])) == 1.0
    assert loss.accuracy(np.array([1e-9]), np.array([0.5])) == 0.0
    assert loss.accuracy(np.array([1.0, -1.0]), np.array([1.0, 1.0]), sample_weight=2.0) == 0.5
    assert cr.SquaredError().accuracy(np.zeros((2, 1)), np.zeros((2, 1))) is None
    # targets are compared in the predictions' dtype: 0.5 + 1e-10 is 0.5 in float32
    assert loss.accuracy(np.float32([1.0]), np.array([0.5 + 1e-10])) == 0.0
    assert loss.accuracy(np.array([1.0]), np.array([0.5 + 1e-10])) == 1.0


# -- targets --------------------------------------------------------------------------------


def test_regression_targets_reshapes_and_messages():
    loss = cr.SquaredError()
    out = loss.check_targets((3, 1), [1, 2, 3])
    assert out.shape == (3, 1) and out.dtype == np.float64
    assert loss.check_targets((1,), 2.0).shape == (1,)
    assert loss.check_targets((2, 1), [1, 2], np.float32).dtype == np.float32
    with pytest.raises(ValueError, match=r"^got 3 targets for 2 samples$"):
        loss.check_targets((2, 1), [1, 2, 3])
    with pytest.raises(ValueError, match=r"^got 1 targets for 2 samples$"):
        loss.check_targets((2, 3), np.zeros((1, 3)))
    with pytest.raises(ValueError, match=r"^target shape \(5,\) does not match prediction shape "
                                         r"\(2, 3\)$"):
        loss.check_targets((2, 3), [0.5, 1.5, 2.5, 3.5, 4.5])
    with pytest.raises(ValueError, match=r"^target shape \(3, 2\) does not match prediction shape "
                                         r"\(2, 1\)$"):
        loss.check_targets((2, 1), np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"^target shape \(\) does not match prediction shape "
                                         r"\(2, 1\)$"):
        loss.check_targets((2, 1), 3.0)
    with pytest.raises(ValueError, match=r"^target shape \(2, 2\) does not match prediction shape "
                                         r"\(2, 3\)$"):
        loss.check_targets((2, 3), np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"^target shape \(2,\) does not match prediction shape "
                                         r"\(2, 3\): these look like class labels, one per sample, "
                                         r"but SquaredError\(\) needs a row of 3 values per sample\. "
                                         r"For a classifier use loss=\"cross_entropy\""):
        loss.check_targets((2, 3), [0, 2])
    with pytest.raises(ValueError, match=r"^target shape \(2,\) does not match prediction shape "
                                         r"\(2, 3\)$"):
        loss.check_targets((2, 3), [0.5, 2.0])
    with pytest.raises(ValueError, match=r"these look like class labels"):
        loss.check_targets((2, 3), [0.0, 2.0])  # whole numbers in floats look like labels too
    with pytest.raises(ValueError, match=r"^targets contain NaN or infinite values \(first at flat "
                                         r"index 1\)$"):
        loss.check_targets((2, 1), [0.0, float("nan")])
    assert np.isnan(loss.check_targets((2, 1), [0.0, float("nan")], finite=False)[1, 0])
    with pytest.raises(ValueError, match=r"^targets must be numbers, got dtype <U1$"):
        loss.check_targets((1, 1), ["a"])
    assert loss.check_targets((2, 1), np.array(["1", "2"], dtype=object))[1, 0] == 2.0


def test_a_nan_target_is_named_by_forward():
    with pytest.raises(ValueError, match=r"first at flat index 0"):
        cr.SquaredError().forward(np.zeros((1, 1)), [float("inf")])
    # a NaN output is not the target's fault: the loss is NaN, no error
    assert math.isnan(cr.SquaredError().forward(np.array([[float("nan")]]), [0.0]))


def test_predictions_must_be_one_or_two_dimensional():
    with pytest.raises(ValueError, match=r"^predictions must be shaped \(k,\) or \(n, k\), got "
                                         r"shape \(1, 1, 1\)$"):
        cr.SquaredError().forward(np.zeros((1, 1, 1)), np.zeros((1, 1, 1)))


def test_cross_entropy_targets_and_messages():
    loss = cr.CrossEntropy()
    out = loss.check_targets((3, 2), [True, False, True])
    assert out.dtype == np.intp and out.tolist() == [1, 0, 1]
    assert loss.check_targets((2, 2), [1.0, 0.0]).dtype == np.intp
    rows = loss.check_targets((1, 2), [[0.25, 0.75]], np.float32)
    assert rows.dtype == np.float32
    assert loss.check_targets((2,), 1).tolist() == 1
    with pytest.raises(ValueError, match=r"^CrossEntropy needs one output \(logit\) per class, at "
                                         r"least 2; the network has 1 output\. For a yes/no"):
        loss.check_targets((2, 1), [0, 1])
    with pytest.raises(ValueError, match=r"^class labels must be shaped \(2,\), or one-hot rows "
                                         r"shaped \(2, 3\); got shape \(2, 1\)$"):
        loss.check_targets((2, 3), [[0], [1]])
    with pytest.raises(ValueError, match=r"^got 3 labels for 2 samples$"):
        loss.check_targets((2, 3), [0, 1, 2])
    with pytest.raises(ValueError, match=r"^got 1 labels for 2 samples$"):
        loss.check_targets((2, 3), 1)
    with pytest.raises(ValueError, match=r"^class label 1\.5 at index 1 is not an integer$"):
        loss.check_targets((2, 3), [1.0, 1.5])
    with pytest.raises(ValueError, match=r"^class label 3 at index 1 is out of range for 3 classes "
                                         r"\(labels must be 0\.\.2\)$"):
        loss.check_targets((3, 3), [2, 3, -1])
    with pytest.raises(ValueError, match=r"^class label -1 at index 0 is out of range"):
        loss.check_targets((2, 3), [-1, 0])
    with pytest.raises(ValueError, match=r"^class label 5 at index 1 is out of range"):
        loss.check_targets((2, 3), [0, 5])
    with pytest.raises(ValueError, match=r"^class label 1e\+20 at index 0 is out of range"):
        loss.check_targets((2, 3), [1e20, 0.0])
    # one sample: a scalar label
    with pytest.raises(ValueError, match=r"^class label 5 at index 0 is out of range"):
        loss.check_targets((3,), 5)
    with pytest.raises(ValueError, match=r"^class label (np\.float64\()?2\.5\)? at index 0 is not "
                                         r"an integer$"):
        loss.check_targets((3,), 2.5)
    with pytest.raises(ValueError, match=r"^CrossEntropy target rows must be class probabilities "
                                         r"\(one-hot\): non-negative, summing to 1; row 1 is "
                                         r"\[1\.0, 1\.0\] \(sum 2\)\. For several labels"):
        loss.check_targets((2, 2), [[0.0, 1.0], [1.0, 1.0]])
    with pytest.raises(ValueError, match=r"row 0 is \[-0\.5, 1\.5\] \(sum 1\)"):
        loss.check_targets((2, 2), [[-0.5, 1.5], [0.0, 1.0]])
    with pytest.raises(ValueError, match=r"row 1 is \[1\.5, -0\.5\] \(sum 1\)"):
        loss.check_targets((2, 2), [[0.0, 1.0], [1.5, -0.5]])
    # rows summing to 1 within the tolerance: the gradient is p * sum(y) - y, exactly
    z = np.array([[0.3, -0.2]])
    row = np.array([[0.5, 0.5 + 5e-5]])
    loss.forward(z, row)
    p = np.exp(z) / np.exp(z).sum()
    np.testing.assert_allclose(loss.backward(), p * 1.00005 - row, rtol=1e-12)
    # rounding within the tolerance passes, beyond it does not
    loss.check_targets((1, 2), [[0.5, 0.5 + 5e-5]])
    # the sum is taken in float64: float16 rounding would make 0.99976 look like 1
    with pytest.raises(ValueError, match=r"row 0"):
        loss.check_targets((1, 2), np.array([[0.5, 0.499755859375]], dtype=np.float16))
    with pytest.raises(ValueError, match=r"row 0"):
        loss.check_targets((1, 2), [[0.5, 0.5 + 5e-4]])
    with pytest.raises(ValueError, match=r"NaN or infinite"):
        loss.check_targets((1, 2), [[float("nan"), 1.0]])


def test_binary_targets_and_messages():
    loss = cr.BinaryCrossEntropy()
    with pytest.raises(ValueError, match=r"NaN or infinite values \(first at flat index 1\)"):
        loss.check_targets((1, 2), [[0.0, float("nan")]])
    assert np.isnan(loss.check_targets((1, 2), [[0.0, float("nan")]], finite=False)[0, 1])
    assert loss.check_targets((2, 1), [True, False]).tolist() == [[1.0], [0.0]]
    assert loss.check_targets((1, 2), [[0.0, 1.0]]).tolist() == [[0.0, 1.0]]
    for bad, shown in ([[0.5, 1.5]], "1.5"), ([[-0.5, 0.5]], "-0.5"):
        with pytest.raises(ValueError, match=rf"^BinaryCrossEntropy targets must lie in \[0, 1\] "
                                             rf"\(one yes/no per output\); got {shown}\. For one "
                                             rf"class label"):
            loss.check_targets((1, 2), bad)
    with pytest.raises(ValueError, match=r"does not match prediction shape \(2, 3\): "
                                         r"BinaryCrossEntropy needs one target in \[0, 1\] per "
                                         r"output \(3\); for one class label per sample use "
                                         r"CrossEntropy"):
        loss.check_targets((2, 3), [0, 2])


def test_backward_before_forward_and_cache_false():
    loss = cr.CrossEntropy()
    with pytest.raises(RuntimeError, match=r"^CrossEntropy\.backward called before forward$"):
        loss.backward()
    assert loss.forward(np.zeros((1, 2)), [0], cache=False) == pytest.approx(math.log(2))
    with pytest.raises(RuntimeError):
        loss.backward()
    assert loss(np.zeros((1, 2)), [0]) == pytest.approx(math.log(2))
    assert loss(np.zeros((2, 2)), [0, 1], sample_weight=[0.0, 1.0]) == pytest.approx(
        math.log(2) / 2)
    np.testing.assert_allclose(loss.backward(), [[0.0, 0.0], [0.25, -0.25]])


def test_get_loss_names_configs_and_errors():
    for name, cls in [("squared_error", cr.SquaredError), ("MSE", cr.MeanSquaredError),
                      ("mean_squared_error", cr.MeanSquaredError),
                      ("cross_entropy", cr.CrossEntropy),
                      ("binary_cross_entropy", cr.BinaryCrossEntropy)]:
        loss = get_loss(name)
        assert type(loss) is cls
        assert loss.get_config() == {"type": cls.__name__}
        assert type(get_loss(loss.get_config())) is cls
        assert repr(loss) == f"{cls.__name__}()"
    same = cr.CrossEntropy()
    assert get_loss(same) is same
    assert cr.CrossEntropy.classification and cr.BinaryCrossEntropy.classification
    assert not cr.SquaredError.classification and not cr.MeanSquaredError.classification
    with pytest.raises(ValueError, match=r"^unknown loss 'hinge'; choose one of squared_error, mse, "
                                         r"mean_squared_error, cross_entropy, binary_cross_entropy$"):
        get_loss("hinge")
    with pytest.raises(ValueError, match=r"^unknown loss type 'Hinge'; a saved loss is one of "
                                         r"SquaredError, MeanSquaredError, CrossEntropy, "
                                         r"BinaryCrossEntropy$"):
        get_loss({"type": "Hinge"})  # a config names the class, so the choices are classes


def test_one_sample_with_weights():
    loss = cr.CrossEntropy()
    z = np.array([1.0, 2.0, 0.5])
    single = lse(z) - 2.0
    assert loss.forward(z, 1, sample_weight=[3.0]) == pytest.approx(3 * single, rel=1e-14)
    assert loss.forward(z, 1, class_weight=[1.0, 4.0, 1.0]) == pytest.approx(single, rel=1e-14)
    assert loss.forward(z, [0.0, 1.0, 0.0], class_weight=[1.0, 4.0, 1.0]) == pytest.approx(
        single, rel=1e-14)
    p = np.exp(z) / np.exp(z).sum()
    np.testing.assert_allclose(loss.backward(), p - [0.0, 1.0, 0.0], rtol=1e-13)


def test_weighted_gradient_keeps_the_prediction_dtype():
    loss = cr.SquaredError()
    loss.forward(np.ones((2, 1), np.float32), [0.0, 0.0], sample_weight=[1.0, 2.0])
    g = loss.backward()
    assert g.dtype == np.float32
    np.testing.assert_allclose(g, [[1.0], [2.0]])


def test_a_nan_label_is_not_an_integer():
    with pytest.raises(ValueError, match=r"^class label (np\.float64\()?nan\)? at index 1 is not "
                                         r"an integer$"):
        cr.CrossEntropy().forward(np.zeros((2, 2)), [0.0, float("nan")])
