"""Lesson 2: a tiny relu network trained with numerical and with analytic derivatives.

The network is ``Network.from_sizes([3, 4, 1], activation="relu", bias=False)``
with weights uniform in [-1, 1). The same SGD step is driven once by
chainrule's backward pass and once by central differences on chainrule's
loss; started from the same weights, the two runs print the same errors.
"""

from __future__ import annotations

import os
import time
from typing import Any, TextIO

import numpy as np

from ..diagnostics import activation_health, diagnose
from ..gradcheck import check_gradients
from ..initializers import uniform
from ..network import Network
from ..optimizers import SGD
from ._common import Printer, num, numerical_gradients, pyplot, save_figure

TITLE = "a tiny relu network: numerical vs analytic derivatives"

# The target is XOR of the first two columns; the third is constant (a stand-in for a bias).
X = np.array([[1, 0, 1], [0, 1, 1], [0, 0, 1], [1, 1, 1]], dtype=np.float64)
Y = np.array([[1], [1], [0], [0]], dtype=np.float64)

ALPHA = 0.1
EPOCHS = 60
H = 1e-4
#: A seed of numpy's default_rng for which training reaches error < 1e-6 within 60 epochs.
SEED = 1


def make_network(seed: int = SEED) -> Network:
    """3 -> 4 -> 1, relu hidden, linear output, no biases, weights uniform in [-1, 1)."""
    return Network.from_sizes(
        [3, 4, 1], activation="relu", init=uniform(-1.0, 1.0), bias=False,
        optimizer=SGD(lr=ALPHA), seed=seed, dtype="float64",
    )


def train(net: Network, epochs: int = EPOCHS, numerical: bool = False) -> np.ndarray:
    """Plain SGD, one sample at a time in row order; the mean error of each epoch.

    The error of a sample is its loss ``(pred - y)**2`` just before its step.
    With ``numerical=True`` the gradient comes from central differences
    (``H`` = 1e-4) instead of ``network.backward``; the step is the same SGD.
    """
    params = list(net.parameters().values())
    errors = np.empty(epochs)
    for epoch in range(epochs):
        total = 0.0
        for x, y in zip(X, Y):
            if numerical:
                total += net.loss.forward(net.forward(x), y)
                grads = numerical_gradients(net, x, y, h=H)
                net.optimizer.step(params, list(grads.values()))
            else:
                total += net.train_step(x, y)
        errors[epoch] = total / len(X)
    return errors


def run(plot_dir: str | os.PathLike | None = None, file: TextIO | None = None,
        survey_seeds: int = 20) -> dict[str, Any]:
    """Print lesson 2 to ``file``; save its figure to ``plot_dir``; return its numbers."""
    out = Printer(file)
    result: dict[str, Any] = {"seed": SEED}

    out.heading(f"Lesson 2: {TITLE}")
    out.say("""
        Four samples; the target is the XOR of the first two inputs, the third input is
        always 1:
    """)
    out.table(["input", "target"], [[str(x.astype(int).tolist()), int(y[0])] for x, y in zip(X, Y)])
    net = make_network()
    n_weights = sum(p.size for p in net.parameters().values())
    out.say(f"""
        The network: 3 inputs, 4 relu units, 1 linear output, no biases, weights drawn
        uniformly from [-1, 1) by numpy.random.default_rng({SEED}). That is a 4x3 and a
        1x4 matrix, {n_weights} weights (the tutorial's text says 5).
    """)
    out.line(_indent(net.summary()))
    out.line()

    # Copies: net.parameters() returns the live arrays, which training changes.
    init = {name: w.copy() for name, w in net.parameters().items()}

    report = check_gradients(net, X, Y, eps=H)
    out.say(f"""
        At these weights chainrule's backward agrees with central differences
        (h = {num(H)}) on all {n_weights} weights (check_gradients on the whole batch):
    """)
    out.line(_indent(report.__str__()))
    out.line()
    result["gradcheck_ok"] = report.ok
    result["gradcheck_max_rel_error"] = report.max_rel_error

    # -- the fair comparison: both runs from the same initial weights ---------------------
    start = time.perf_counter()
    numerical = train(net, numerical=True)
    numerical_seconds = time.perf_counter() - start
    trained_by_numerical = {name: w.copy() for name, w in net.parameters().items()}

    fresh = make_network()
    fresh.load_parameters(init)
    start = time.perf_counter()
    analytic = train(fresh)
    analytic_seconds = time.perf_counter() - start
    rel = np.abs(numerical - analytic) / np.abs(analytic)

    out.heading("Numerical and analytic training from the same weights", "-")
    out.say(f"""
        SGD with alpha = {num(ALPHA)}, one sample at a time in row order, {EPOCHS} epochs.
        "error" is the mean over the four samples of (pred - y)**2, each taken just
        before its step. The numerical run steps along central differences, two forward
        passes per weight; the analytic run is chainrule's train_step.
    """)
    marks = list(range(9, EPOCHS, 10))
    out.table(
        ["epoch", "numerical", "analytic", "relative difference"],
        [[k + 1, num(numerical[k], 10), num(analytic[k], 10), num(rel[k], 2)] for k in marks],
    )
    upto = min(50, EPOCHS)
    out.say(f"""
        Within one relu region the loss is a quadratic function of any single weight,
        and the central difference of a quadratic is exact: the two runs differ only by
        rounding (largest relative difference through epoch {upto}:
        {num(float(rel[:upto].max()), 2)}).

        Time for {EPOCHS} epochs: numerical {numerical_seconds:.3f} s, analytic
        {analytic_seconds:.3f} s ({numerical_seconds / analytic_seconds:.0f}x). The
        numerical gradient needs {2 * n_weights} forward passes per sample, where
        backpropagation needs one forward and one backward pass whatever the number
        of weights.
    """)
    result.update({
        "numerical_errors": numerical, "analytic_errors": analytic, "relative_difference": rel,
        "numerical_seconds": numerical_seconds, "analytic_seconds": analytic_seconds,
    })

    # -- not every start converges ------------------------------------------------------
    out.heading("Not every initialisation converges", "-")
    finals, dead, blind, nets = {}, {}, {}, {}
    for seed in range(survey_seeds):
        survey_net = nets[seed] = make_network(seed)
        finals[seed] = float(train(survey_net)[-1])
        # relu units that output 0 for all four samples (chainrule.diagnostics) ...
        health = activation_health(survey_net, X)[1]
        dead[seed] = round(health.dead * health.units)
        # ... and samples with target 1 for which all four relus output 0
        hidden = np.maximum(X @ survey_net.layers[0].weight.T, 0.0)
        blind[seed] = int(np.sum(np.all(hidden == 0.0, axis=1) & (Y[:, 0] == 1)))
    converged = [seed for seed, e in finals.items() if e < 1e-6]
    stuck = [seed for seed in finals if blind[seed] > 0]
    half = (survey_seeds + 1) // 2
    rows = []
    for k in range(half):
        row: list[Any] = []
        for seed in (k, k + half):
            if seed < survey_seeds:
                row += [seed, num(finals[seed], 3), dead[seed], blind[seed],
                        "yes" if finals[seed] < 1e-6 else ""]
        rows.append(row)
    out.say(f"""
        The error after {EPOCHS} epochs (analytic) for seeds 0 to {survey_seeds - 1}; "dead"
        counts the relus that output 0 for all four samples, "blind" the samples with
        target 1 for which all four relus output 0:
    """)
    out.table(["seed", "error", "dead", "blind", "< 1e-6"] * 2, rows)
    out.say(f"""
        {len(converged)} of {survey_seeds} seeds reach an error below 1e-6. {len(stuck)}
        (seeds {", ".join(str(s) for s in stuck) or "none"}) are stuck: a sample with
        target 1 reaches no live relu, so the network predicts 0 for it whatever the
        output weights (an error of 1 on that sample, 0.25 in the mean), and since no
        gradient flows back through a relu that outputs 0, nothing changes that; without
        biases there is no other way out. The remaining seeds are slower and still
        improving. This lesson uses seed {SEED}, whose error falls from
        {num(analytic[9], 2)} at epoch 10 to {num(analytic[-1], 2)} at epoch {EPOCHS}.

        The tutorial notes report 6 of 20. Which seeds converge depends on how the 16
        weights are drawn from each generator; every layout we tried (layer by layer as
        here, each matrix drawn transposed, one block of 16) gave 4 of 20, so we could
        not reproduce the 6. Either way, a good share of these tiny bias-free networks
        never learns XOR.
    """)
    result.update({"survey": finals, "survey_dead": dead, "survey_blind": blind, "stuck_seeds": stuck, "converged_seeds": converged})
    if stuck:
        example = 2 if 2 in stuck else stuck[0]
        report = diagnose(nets[example], X, Y)
        out.say(f"""
            chainrule.diagnostics.diagnose, given the four rows, names the cause for seed
            {example}:
        """)
        out.line("\n".join("  " + line for line in str(report).splitlines()))
        out.line()
        result["stuck_diagnosis"] = {
            "seed": example, "problems": [(p.kind, p.layer) for p in report.problems],
            "dead": report.activations[1].dead,
        }

    # -- the tutorial's "analytic converges better" ----------------------------------------
    out.heading('"Analytic converges better": an artifact', "-")
    continued_net = make_network()
    continued_net.load_parameters(trained_by_numerical)
    continued = train(continued_net)
    out.say("""
        The tutorial saved its starting weights with init = weights, which binds a second
        name to the same arrays instead of copying them. Its second (analytic) run
        therefore began where the first (numerical) run ended, and of course reached
        lower errors. chainrule's parameters() also returns the live arrays:
    """)
    alias_net = make_network()
    alias = alias_net.parameters()          # the same arrays, not a copy
    saved = {name: w.copy() for name, w in alias_net.parameters().items()}
    train(alias_net, epochs=1)
    moved = not np.array_equal(alias["0.weight"], saved["0.weight"])
    out.say(f"""
        after one epoch of training, alias = net.parameters() has changed too: {moved};
        a copy taken with w.copy() has not. Replaying the tutorial's mistake, the analytic
        run continuing from the numerical run's trained weights:
    """)
    out.table(
        ["epoch", "numerical", "analytic", "analytic, continued (the tutorial's)"],
        [[k + 1, num(numerical[k], 4), num(analytic[k], 4), num(continued[k], 4)]
         for k in marks],
    )
    out.say("""
        From the same start the two methods give the same curve; the "better"
        convergence is only the extra 60 epochs.
    """)
    result.update({"continued_errors": continued, "alias_changed": moved})

    if plot_dir is not None:
        _plot(plot_dir, out, numerical, analytic, continued, rel)
    return result


def _indent(text: str, by: int = 2) -> str:
    return "\n".join(" " * by + line for line in text.splitlines())


def _plot(plot_dir: str | os.PathLike, out: Printer, numerical: np.ndarray, analytic: np.ndarray,
          continued: np.ndarray, rel: np.ndarray) -> None:
    plt = pyplot()
    epochs = np.arange(1, len(numerical) + 1)

    def positive(values: np.ndarray) -> np.ndarray:
        return np.where(values > 0, values, np.nan)  # zero has no place on a log axis

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    left.semilogy(epochs, positive(analytic), linewidth=3, alpha=0.5, label="analytic (backward)")
    left.semilogy(epochs, positive(numerical), "k.", markersize=4,
                  label="numerical (central differences)")
    left.semilogy(epochs, positive(continued), "--", label="analytic, continued from the\n"
                  "numerical run's weights (tutorial)")
    left.set(xlabel="epoch", ylabel="mean error (pred - y)**2",
             title=f"Lesson 2: training from the same weights (seed {SEED})")
    left.legend(loc="upper right", fontsize=9)
    right.semilogy(epochs, positive(rel), marker="o", markersize=3)
    right.set(xlabel="epoch", ylabel="|numerical - analytic| / analytic",
              title="relative difference of the two error curves")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    save_figure(fig, plot_dir, "lesson2_error.png", out)
