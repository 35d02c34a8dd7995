"""Lesson 4 (why convolution) and lesson 3's batch-normalisation fix, with their numbers."""

import io

import numpy as np

from chainrule import lessons
from chainrule.lessons import lesson3, lesson4
from chainrule.lessons._common import Printer


def test_shift_images_moves_by_whole_pixels():
    x = np.zeros((4, 1, 6, 6))
    x[:, 0, 2, 3] = 1.0
    moved = lesson4.shift_images(x, 2, np.random.default_rng(0))
    for image in moved[:, 0]:
        (r,), (c,) = np.nonzero(image)
        assert abs(r - 2) + abs(c - 3) == 2 and (r == 2 or c == 3)  # one axis, two pixels
    np.testing.assert_array_equal(lesson4.shift_images(x, 0, np.random.default_rng(0)), x)


def test_lesson4_cnn_holds_its_accuracy_on_shifted_digits():
    text = io.StringIO()
    result = lesson4.run(file=text, n_train=600, epochs=2, n_test=300)
    mlp, cnn = result["accuracy"]["mlp"], result["accuracy"]["cnn"]
    assert min(mlp[0], cnn[0]) > 0.6  # both learned the unshifted digits
    # beyond the training shifts (<= 1 px) the CNN keeps far more of its accuracy
    for k in (3, 4):
        assert result["kept"]["cnn"][k] > result["kept"]["mlp"][k] + 0.05
        assert cnn[k] > mlp[k]
    assert result["parameters"] == {"mlp": 784 * 256 + 256 + 2570,
                                    "cnn": 16 * 25 + 16 + 32 * 16 * 25 + 32 + 1568 * 10 + 10}
    printed = text.getvalue()
    assert "Lesson 4: why convolution" in printed and "4 px" in printed
    assert f"{100 * cnn[4]:.1f}%" in printed


def test_lesson4_is_registered():
    assert lessons.LESSONS[4] == lesson4.TITLE


def test_lesson3_batchnorm_fix_unsticks_the_saturated_network():
    result = lesson3._batchnorm_fix(Printer(io.StringIO()), steps=50)
    assert result["saturated_without"] == 1.0  # every second-layer sigmoid exactly 0 or 1
    # every Dense layer gets a gradient at the first step (saturated, they are exactly 0)
    assert all(result["first_grad_norms"][i] > 1e-7 for i in (0, 3, 6))
    assert result["error_before"] == lesson3.error_after(
        lesson3.tutorial_network(lesson3.WIDE, lr=0.01))  # the saturated network's error
    assert result["error_after"] < 1e-5 < result["error_before"]
    assert result["losses"][-1] < 1e-4 * result["losses"][0]
