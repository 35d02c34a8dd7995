"""The tutorial lessons reproduce the numbers of LESSONS.md.

Each lesson runs once per module (lesson 3 with shortened 1000-unit runs) and
the tests assert on the numbers it returns, the text it prints and the
figures it saves.
"""

import io
import subprocess
import sys

import numpy as np
import pytest

from chainrule import lessons
from chainrule.lessons import lesson2, lesson3

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 10_000, path


@pytest.fixture(scope="module")
def plot_dir(tmp_path_factory):
    """Where the lessons draw their figures; None without matplotlib (the numbers still run)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return None
    return tmp_path_factory.mktemp("figures") / "new"  # run() must create it


@pytest.fixture
def figures(plot_dir):
    """For the tests that look at the figures: those alone need matplotlib."""
    if plot_dir is None:
        pytest.skip("matplotlib is not installed: the figures cannot be drawn")
    return plot_dir


def flat(text):
    """The printed text with line breaks and runs of spaces folded, so wrapped prose matches."""
    return " ".join(text.split())


@pytest.fixture(scope="module")
def one(plot_dir):
    out = io.StringIO()
    numbers = lessons.run(1, plot_dir=plot_dir, file=out)
    return numbers, out.getvalue()


@pytest.fixture(scope="module")
def two(plot_dir):
    out = io.StringIO()
    numbers = lessons.run(2, plot_dir=plot_dir, file=out)
    return numbers, out.getvalue()


@pytest.fixture(scope="module")
def three(plot_dir):
    out = io.StringIO()
    numbers = lesson3.run(plot_dir=plot_dir, file=out, fix_steps=20)  # shortened wide runs
    return numbers, out.getvalue()


def close(actual, expected, tol=1e-12):
    np.testing.assert_allclose(np.asarray(actual, dtype=float), expected, rtol=0, atol=tol)


# -- the lesson registry ------------------------------------------------------------------------


def test_lessons_are_listed_with_titles():
    assert sorted(lessons.LESSONS) == [1, 2, 3, 4]
    assert all(isinstance(t, str) and t and "\n" not in t for t in lessons.LESSONS.values())


@pytest.mark.parametrize("number", [0, 5, -1, "1", 1.0, True, None])
def test_unknown_lesson_is_a_value_error(number):
    with pytest.raises(ValueError, match="lesson"):
        lessons.run(number, file=io.StringIO())


def test_numpy_integers_are_lesson_numbers():
    numbers = lessons.run(np.int64(1), file=io.StringIO())
    close(numbers["1a_weights"], [0.1119, 0.20091, -0.09832])


def test_no_matplotlib_without_a_plot_dir():
    code = ("import io, sys; import chainrule.lessons as L; L.run(1, file=io.StringIO()); "
            "print('matplotlib' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, check=True)
    assert result.stdout.strip() == "False"


def test_run_prints_to_stdout_by_default(capsys):
    lessons.run(1)
    assert "Lesson 1" in capsys.readouterr().out


# -- lesson 1: the delta rule (exact to 1e-12) -----------------------------------------------------


def test_1a_one_step(one):
    n, _ = one
    close(n["1a_pred"], 0.86)
    close(n["1a_error"], 0.0196)
    close(n["1a_delta"], -0.14)
    close(n["1a_weight_delta"], [-1.19, -0.091, -0.168])
    close(n["1a_gradient"], 2 * np.array([-1.19, -0.091, -0.168]))  # chainrule's dL/dw
    close(n["1a_weights"], [0.1119, 0.20091, -0.09832])


def test_1a_three_steps(one):
    n, _ = one
    close(n["1a_preds"], [0.86, 0.9637575, 0.9906177228125])
    close(n["1a_errors"], [0.0196, 0.00131351880625, 8.8027125223e-05])


def test_1b(one):
    n, _ = one
    close(n["1b_pred"], [0.195, 0.13, 0.585])
    close(n["1b_delta"], [0.095, -0.87, 0.485])
    close(n["1b_weight_delta"], [0.06175, -0.5655, 0.31525])
    close(n["1b_weights"], [0.293825, 0.25655, 0.868475])


def test_1c_correct_and_book_updates(one):
    n, _ = one
    close(n["1c_pred"], [0.555, 0.98, 0.965])
    close(n["1c_delta"], [0.455, -0.02, 0.865])
    close(n["1c_weights"], [[-0.28675, 0.070425, -0.3546], [0.117, 0.2013, 0.0024],
                            [-0.73525, 1.243775, -0.0038]])
    close(n["1c_book_weights"], [[-0.28675, 0.117, -1.03525], [0.070425, 0.2013, -0.056225],
                                 [-0.0546, 1.3024, -0.0038]])
    # the numerical gradient settles it: it is 2 * outer(delta, input), not the book's
    # delta (0.455, -0.02, 0.865) times input (8.5, 0.65, 1.2), worked by hand:
    correct = np.array([[3.8675, 0.29575, 0.546], [-0.17, -0.013, -0.024],
                        [7.3525, 0.56225, 1.038]])
    x = np.array([8.5, 0.65, 1.2])
    close(n["1c_weight_delta"], correct)
    close(n["1c_gradient"], 2 * correct)
    close(n["1c_numerical_gradient"], 2 * correct, tol=1e-9)
    assert np.abs(n["1c_numerical_gradient"] - 2 * np.outer(x, n["1c_delta"])).max() > 1
    assert n["1c_gradcheck_ok"]


def test_stopping_reversal_scaling_divergence(one):
    n, _ = one
    assert n["stop_move"] == 0.0
    close(n["reverse_move"], -0.0026)  # delta -0.4 on input -0.65, alpha 0.01
    close(n["scale_ratio"], 8.5 / 0.65)
    for alpha, errors in n["divergence_errors"].items():
        np.testing.assert_allclose(errors[1:] / errors[:-1], n["divergence_factors"][alpha],
                                   rtol=1e-9)
    assert np.all(np.diff(n["divergence_errors"][0.01]) < 0)
    assert np.all(np.diff(n["divergence_errors"][0.03]) > 0)  # alpha * 8.5**2 > 2
    preds = n["divergence_preds"]
    assert np.all(preds[0.01] < 1)  # approaches from one side
    assert np.all(np.sign(preds[0.02][1:] - 1) == -np.sign(preds[0.02][:-1] - 1))  # overshoots


def test_lesson1_text(one):
    _, text = one
    for expected in ["pred 0.86, error 0.0196, delta -0.14", "[0.1119, 0.20091, -0.09832]",
                     "0.9906177228125", "0.00131351880625", "0.293825", "0.868475",
                     "-1.03525", "1.243775", "SGD(lr=alpha / 2)", "pred - true ** 2"]:
        assert expected in flat(text), expected
    # tables are aligned: header, rule and rows of the 1a table have the same width
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if "dL/dw (chainrule)" in line)
    table = lines[start:start + 5]
    assert table[2].split()[0] == "toes" and table[4].split()[0] == "nfans"
    assert len({len(row) for row in table}) == 1


def test_lesson1_figures(one, figures):
    assert_png(figures / "lesson1_weights.png")
    assert_png(figures / "lesson1_error.png")


# -- lesson 2: numerical vs analytic -------------------------------------------------------------


def test_lesson2_numerical_and_analytic_agree(two):
    n, text = two
    assert n["gradcheck_ok"] and n["gradcheck_max_rel_error"] < 1e-8
    assert np.max(n["relative_difference"][:50]) < 2e-10
    np.testing.assert_allclose(n["numerical_errors"], n["analytic_errors"], rtol=1e-8)
    assert "16 weights" in flat(text) and "says 5" in flat(text)


def test_lesson2_seed_converges(two):
    n, text = two
    analytic = n["analytic_errors"]
    assert n["seed"] == lesson2.SEED
    assert analytic[-1] < 1e-6 and n["numerical_errors"][-1] < 1e-6
    assert 1e-3 < analytic[9] < 1e-1  # ~1e-2 at epoch 10
    assert np.all(np.diff(analytic[9:]) < 0)
    assert n["converged_seeds"] == [1, 10, 11, 18]
    assert f"uses seed {lesson2.SEED}" in flat(text)


def test_lesson2_stuck_seeds_have_a_blind_sample(two):
    n, _ = two
    assert n["stuck_seeds"]
    for seed in n["stuck_seeds"]:
        assert n["survey"][seed] >= 0.25 - 1e-6 and n["survey_blind"][seed] >= 1
    for seed in n["converged_seeds"]:
        assert n["survey_blind"][seed] == 0


def test_lesson2_diagnose_finds_the_dead_relus_of_stuck_seed_2(two):
    n, text = two
    assert 2 in n["stuck_seeds"] and n["survey"][2] == pytest.approx(0.25, abs=1e-6)
    assert n["stuck_diagnosis"] == {"seed": 2, "problems": [("dead", 1)], "dead": 0.5}
    assert "50% of its relus are dead" in flat(text) and "all 4 samples" in flat(text)
    assert "no problems found" not in text


def test_lesson2_artifact(two):
    n, text = two
    assert n["alias_changed"]
    assert np.all(n["continued_errors"] < n["analytic_errors"])
    assert n["continued_errors"][0] < n["analytic_errors"][-1]  # it starts where training ended
    assert "init = weights" in flat(text)


def test_lesson2_figure(two, figures):
    assert_png(figures / "lesson2_error.png")


# -- lesson 3: layer sizes, saturation, fixes -----------------------------------------------------


def test_lesson3_bias_column_and_psi(three):
    n, _ = three
    assert n["fold_max_diff"] <= 1e-15
    assert n["psi_max_diff"] <= 1e-15
    assert n["grad_max_diff"] <= 1e-15


def test_lesson3_small_network_learns(three):
    small = three[0]["small_errors"]
    assert small[0.01][1000] == pytest.approx(0.012, abs=5e-4)
    assert 3.5e-7 < small[0.01][3000] < 4.5e-7
    assert small[0.01][10000] < 1e-21
    assert small[0.1][1000] < 1e-21
    assert list(small[0.1]) == [1000]  # the faster run stops at the first checkpoint


def test_lesson3_saturated_network_has_exactly_zero_gradients(three):
    n, _ = three
    assert n["saturated_grad_norms"] == {0: 0.0, 2: 0.0, 4: 0.0}
    assert n["saturated_exact_one"] == {1: 0.0, 3: 1.0, 5: 1.0}
    assert n["saturated_share"][3] == 1.0 and n["saturated_share"][5] == 1.0
    assert np.all(n["saturated_losses"] == n["saturated_losses"][0])
    assert n["saturated_unchanged"]
    assert "vanishing" in n["saturated_problems"]


def test_lesson3_fixes_learn(three):
    n, _ = three
    assert len(n["fixes"]) == 4
    for name, run in n["fixes"].items():
        losses = run["losses"]
        assert losses[-1] < losses[0], name
        assert all(np.all(norms > 0) for norms in run["grad_norms"].values()), name
    glorot = n["fixes"]["(c) Glorot, sigmoid, lr 0.01"]["losses"]
    assert glorot[-1] < 1e-6 * glorot[0]
    assert n["leaky_problems"] == ["exploding"]
    assert n["glorot_problems"] == []


def test_lesson3_stretched_sigmoid(three):
    n, _ = three
    np.testing.assert_allclose(n["stretched_psi_ratios"], [1e6, 1e4, 1e2], rtol=1e-9)
    assert n["stretched_gradcheck_ok"]
    slow = n["stretched_slow_losses"]
    assert slow[-1] < slow[0] and slow[0] - slow[-1] < 1e-4  # the true gradient at lr 0.01


def test_lesson3_inputs_must_be_small(three):
    n, _ = three
    assert n["input_scale_saturation"][1] == 0.0
    assert n["input_scale_saturation"][10000] > 0.9
    assert n["input_scale_learning"][1] == 1.0 and n["input_scale_learning"][10000] < 0.1


def test_lesson3_text(three):
    _, text = three
    for expected in ["[2, 3, 3, 2]", "[2, 1000, 1000, 2]", "100.0%", "Glorot", "LeakyReLU",
                     "Sigmoid(scale=0.01)", "train_step", "predict"]:
        assert expected in flat(text), expected


def test_lesson3_figure(three, figures):
    assert_png(figures / "lesson3_gradients.png")
