"""Lesson 1: gradient descent on one layer of weights (the delta rule).

Every network here is one chainrule ``Dense`` layer without bias, trained
with ``SquaredError`` and ``SGD``. The tutorial's update is
``weight -= alpha * delta * input``; chainrule's gradient of ``(pred - true)**2``
is ``2 * delta * input``, so the tutorial's ``alpha`` is ``SGD(lr=alpha / 2)``.
"""

from __future__ import annotations

import os
from typing import Any, TextIO

import numpy as np

from ..gradcheck import check_gradients
from ..layers import Dense
from ..losses import SquaredError
from ..network import Network
from ..optimizers import SGD
from ._common import Printer, num, numerical_gradients, pyplot, save_figure, vec

TITLE = "gradient descent on one layer of weights (the delta rule)"

# Four games of a team; the lessons only use game 0.
TOES = np.array([8.5, 9.5, 9.9, 9.0])    # average toes per player
WLREC = np.array([0.65, 0.8, 0.8, 0.9])  # win/loss record
NFANS = np.array([1.2, 1.3, 0.5, 1.0])   # fans, in millions
WIN = np.array([1.0, 1.0, 0.0, 1.0])
HURT = np.array([0.1, 0.0, 0.0, 0.1])
SAD = np.array([0.1, 0.0, 0.1, 0.2])

INPUTS = ("toes", "wlrec", "nfans")
OUTPUTS = ("hurt", "win", "sad")


def delta_rule_network(weight: Any, alpha: float) -> Network:
    """One bias-free ``Dense`` layer holding ``weight`` (out, in), trained like the tutorial.

    ``SGD(lr=alpha / 2)`` on ``SquaredError`` makes one ``train_step`` equal
    to the tutorial's ``weight -= alpha * outer(delta, input)``, because the
    true gradient carries a factor 2 that the tutorial's weight delta leaves out.
    """
    weight = np.atleast_2d(np.asarray(weight, dtype=np.float64))
    layer = Dense(weight.shape[1], weight.shape[0], bias=False, dtype="float64")
    layer.weight = weight
    return Network([layer], loss=SquaredError(), optimizer=SGD(lr=alpha / 2), dtype="float64")


def _step(net: Network, x: np.ndarray, true: np.ndarray) -> dict[str, np.ndarray]:
    """One tutorial step through chainrule: what the tutorial prints, and chainrule's gradient."""
    layer = net.layers[0]
    pred = net.forward(x).copy()
    delta = pred - true
    error = float(net.train_step(x, true))   # loss before the step; applies the update
    return {
        "pred": pred,
        "delta": delta,
        "error": error,
        "weight_delta": np.outer(delta, x),   # the tutorial's delta * input
        "gradient": layer.grads["weight"].copy(),  # chainrule's dL/dweight
        "weight": layer.weight.copy(),
    }


def run(plot_dir: str | os.PathLike | None = None, file: TextIO | None = None,
        path_steps: int = 10) -> dict[str, Any]:
    """Print lesson 1 to ``file``; save its figures to ``plot_dir``; return its numbers."""
    out = Printer(file)
    result: dict[str, Any] = {}
    x_game = np.array([TOES[0], WLREC[0], NFANS[0]])

    out.heading(f"Lesson 1: {TITLE}")
    out.say(f"""
        A team's game 0: toes {num(TOES[0])}, win/loss record {num(WLREC[0])}, fans
        {num(NFANS[0])} million; it won (win 1), hurt {num(HURT[0])}, sad {num(SAD[0])}.
        Each network below is one chainrule Dense layer without bias, weight shaped
        (outputs, inputs), with error (pred - true)**2 summed over the outputs.

        The tutorial's "weight delta" is delta * input, with delta = pred - true, and
        its step is weight -= alpha * weight_delta. The derivative of (pred - true)**2
        with respect to a weight is 2 * delta * input: chainrule computes exactly that,
        twice the weight delta. So the tutorial's alpha is SGD(lr=alpha / 2) here, and
        each step below is chainrule's own Network.train_step.
    """)

    # -- 1a: three inputs, one output ------------------------------------------------
    out.heading("1a. Three inputs, one output (win), alpha = 0.01", "-")
    w0 = np.array([0.1, 0.2, -0.1])
    net = delta_rule_network(w0, alpha=0.01)
    s = _step(net, x_game, np.array([WIN[0]]))
    out.say(f"""
        weights {vec(w0)}, input {vec(x_game)}, true {num(WIN[0])}:
        pred {num(s['pred'][0])}, error {num(s['error'])}, delta {num(s['delta'][0])}.
    """)
    out.table(
        ["input", "value", "weight", "delta*input", "dL/dw (chainrule)", "ratio", "new weight"],
        [[INPUTS[i], x_game[i], w0[i], s["weight_delta"][0, i], s["gradient"][0, i],
          s["gradient"][0, i] / s["weight_delta"][0, i], s["weight"][0, i]] for i in range(3)],
    )
    result.update({
        "1a_pred": float(s["pred"][0]), "1a_error": s["error"], "1a_delta": float(s["delta"][0]),
        "1a_weight_delta": s["weight_delta"][0], "1a_gradient": s["gradient"][0],
        "1a_weights": s["weight"][0],
    })

    # The same game again and again: the weights' path.
    net = delta_rule_network(w0, alpha=0.01)
    path = [w0.copy()]
    preds, errors = [], []
    for _ in range(max(path_steps, 3)):
        s = _step(net, x_game, np.array([WIN[0]]))
        preds.append(float(s["pred"][0]))
        errors.append(s["error"])
        path.append(s["weight"][0])
    out.say("Training on game 0 over and over, the prediction closes in on 1:")
    out.table(["step", "pred", "error", "weights after the step"],
              [[k + 1, preds[k], errors[k], vec(path[k + 1])] for k in range(3)])
    result.update({"1a_preds": preds[:3], "1a_errors": errors[:3]})

    # -- 1b: one input, three outputs -------------------------------------------------
    out.heading("1b. One input (wlrec), three outputs, alpha = 0.1", "-")
    w1 = np.array([[0.3], [0.2], [0.9]])
    true1 = np.array([HURT[0], WIN[0], SAD[0]])
    net = delta_rule_network(w1, alpha=0.1)
    s = _step(net, np.array([WLREC[0]]), true1)
    out.table(
        ["output", "true", "weight", "pred", "delta", "delta*input", "dL/dw", "new weight"],
        [[OUTPUTS[j], true1[j], w1[j, 0], s["pred"][j], s["delta"][j], s["weight_delta"][j, 0],
          s["gradient"][j, 0], s["weight"][j, 0]] for j in range(3)],
    )
    result.update({
        "1b_pred": s["pred"], "1b_delta": s["delta"], "1b_weight_delta": s["weight_delta"][:, 0],
        "1b_weights": s["weight"][:, 0],
    })

    # -- 1c: three inputs, three outputs ----------------------------------------------
    out.heading("1c. Three inputs, three outputs, alpha = 0.1", "-")
    w2 = np.array([[0.1, 0.1, -0.3], [0.1, 0.2, 0.0], [0.0, 1.3, 0.1]])
    true2 = np.array([HURT[0], WIN[0], SAD[0]])
    net = delta_rule_network(w2, alpha=0.1)
    pred = net.forward(x_game).copy()
    delta = pred - true2
    report = check_gradients(net, x_game, true2)
    numeric = numerical_gradients(net, x_game, true2, h=1e-4)["0.weight"]
    s = _step(net, x_game, true2)
    book_delta = np.outer(x_game, delta)   # outer(input, delta): indexed [in][out]
    book_weights = w2 - 0.1 * book_delta     # ...but applied to weights indexed [out][in]
    out.say("Rows of the weight matrix are outputs, columns are inputs, as in chainrule's Dense:")
    _matrix(out, w2)
    out.table(
        ["output", "true", "pred", "delta", "(pred - true)**2", "pred - true**2"],
        [[OUTPUTS[j], true2[j], pred[j], delta[j], delta[j] ** 2, pred[j] - true2[j] ** 2]
         for j in range(3)],
    )
    out.say("""
        The last column is what the chapter's error line, written pred - true ** 2,
        computes: ** binds tighter than -, so it squares only the target. The error is
        (pred - true) ** 2.

        The weight of output j for input i must move by delta[j] * input[i]: the outer
        product outer(delta, input), shaped like the weights. The book builds
        outer(input, delta), indexed [input][output], and subtracts it from weights
        indexed [output][input]: every off-diagonal weight gets another weight's
        update. A central difference (h = 1e-4, on chainrule's loss) settles it; it
        is halved here to be in weight-delta units:
    """)
    out.table(
        ["weight", "outer(delta, input)", "book: outer(input, delta)", "numerical dL/dw / 2"],
        [[f"{OUTPUTS[j]} <- {INPUTS[i]}", s["weight_delta"][j, i], book_delta[j, i],
          num(numeric[j, i] / 2, 9)] for j in range(3) for i in range(3)],
    )
    right = float(np.max(np.abs(numeric / 2 - s["weight_delta"])))
    wrong = float(np.max(np.abs(numeric / 2 - book_delta)))
    out.say(f"""
        Largest gap to the numerical gradient: outer(delta, input) {num(right, 3)},
        the book's {num(wrong, 3)}. chainrule's backward passes check_gradients too
        (max relative error {num(report.max_rel_error, 3)}).
    """)
    out.say("Weights after one step, correct (chainrule's train_step):")
    _matrix(out, s["weight"])
    out.say("and as the book prints them (its transposed update):")
    _matrix(out, book_weights)
    result.update({
        "1c_pred": pred, "1c_delta": delta, "1c_weight_delta": s["weight_delta"],
        "1c_weights": s["weight"], "1c_book_weights": book_weights,
        "1c_numerical_gradient": numeric, "1c_gradient": s["gradient"],
        "1c_gradcheck_ok": report.ok,
    })

    # -- what a weight delta does ------------------------------------------------------
    out.heading("Stopping, negative reversal, scaling", "-")
    out.say("""
        The same step as 1a, with the record input changed. Each weight moves by
        alpha * delta * its own input, so the input decides how much, and which way:
    """)
    cases = [("game 0", x_game), ("wlrec = 0", np.array([8.5, 0.0, 1.2])),
             ("wlrec = -0.65", np.array([8.5, -0.65, 1.2]))]
    rows, moves = [], {}
    for label, x in cases:
        s = _step(delta_rule_network(w0, alpha=0.01), x, np.array([WIN[0]]))
        moves[label] = s["weight"][0] - w0
        rows.append([label, num(s["delta"][0]), vec(s["weight_delta"][0]), vec(s["weight"][0])])
    out.table(["input", "delta", "delta*input", "new weights"], rows)
    scale = moves["game 0"][0] / moves["game 0"][1]
    out.say(f"""
        Stopping: an input of 0 leaves its weight alone (the wlrec weight moves by
        {num(moves['wlrec = 0'][1])}); that weight did not cause the error.
        Negative reversal: with wlrec = -0.65 the prediction is again too low, yet its
        weight moves down ({num(moves['wlrec = -0.65'][1])}) instead of up
        ({num(moves['game 0'][1])}): raising a weight on a negative input lowers the
        prediction. Scaling: toes (8.5) moves its weight {num(scale, 6)} times as far as
        wlrec (0.65) on the same delta, the ratio of the inputs.
    """)
    result.update({"stop_move": float(moves["wlrec = 0"][1]),
                   "reverse_move": float(moves["wlrec = -0.65"][1]), "scale_ratio": float(scale)})

    # -- divergence --------------------------------------------------------------------
    out.heading("Too large an alpha: overshooting and divergence", "-")
    x1, w_start, steps = TOES[0], 0.1, 6
    out.say(f"""
        One weight, input {num(x1)}, true 1, weight {num(w_start)}. After a step,
        pred - true = (1 - alpha * input**2) * (its value before), so the error is
        multiplied by (1 - alpha * input**2)**2 each step: with alpha * input**2 < 1 the
        prediction approaches the target from one side; between 1 and 2 it overshoots,
        jumping across the target, yet still shrinks; above 2 every step makes it worse.
        A large input needs a small alpha.
    """)
    alphas = (0.01, 0.02, 0.03)
    x_in, target = np.array([x1]), np.array([1.0])
    errors_by_alpha, preds_by_alpha, weights_by_alpha = {}, {}, {}
    for alpha in alphas:
        net = delta_rule_network([[w_start]], alpha=alpha)
        preds, weights = [float(net.forward(x_in)[0])], [w_start]
        for _ in range(steps):
            net.train_step(x_in, target)
            preds.append(float(net.forward(x_in)[0]))
            weights.append(float(net.layers[0].weight[0, 0]))
        preds_by_alpha[alpha], weights_by_alpha[alpha] = np.array(preds), np.array(weights)
        errors_by_alpha[alpha] = (preds_by_alpha[alpha] - 1.0) ** 2
    out.say("The prediction after each step (the target is 1):")
    out.table(
        ["step"] + [f"alpha {a}" for a in alphas],
        [[k] + [num(preds_by_alpha[a][k], 8) for a in alphas] for k in range(steps + 1)]
        + [["alpha * input**2"] + [num(a * x1 * x1, 8) for a in alphas],
           ["error factor"] + [num((1 - a * x1 * x1) ** 2, 8) for a in alphas]],
    )
    result["divergence_preds"] = preds_by_alpha
    result["divergence_errors"] = errors_by_alpha
    result["divergence_factors"] = {a: (1 - a * x1 * x1) ** 2 for a in alphas}

    if plot_dir is not None:
        _plot(plot_dir, out, np.array(path), errors, weights_by_alpha, errors_by_alpha, x1)
    return result


def _matrix(out: Printer, matrix: np.ndarray) -> None:
    out.table(["", *INPUTS], [[OUTPUTS[j], *matrix[j]] for j in range(3)], indent=4)


def _plot(plot_dir: str | os.PathLike, out: Printer, path: np.ndarray, errors: list[float],
          weights: dict[float, np.ndarray], curves: dict[float, np.ndarray], x1: float) -> None:
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    steps = np.arange(len(path))
    for i, name in enumerate(INPUTS):
        left.plot(steps, path[:, i] - path[0, i], marker="o", markersize=3,
                  label=f"{name} (input {path_input(i)})")
    left.set(xlabel="step", ylabel="weight minus its starting value",
             title="1a: the weights' path, training on game 0")
    left.legend(title="weight of")
    for alpha, w in weights.items():
        right.plot(np.arange(len(w)), w, marker="o", markersize=3, label=f"alpha {alpha}")
    right.axhline(1.0 / x1, color="grey", linestyle="--", linewidth=1, label="1 / input (exact fit)")
    right.set(xlabel="step", ylabel="weight",
              title=f"one weight, input {x1:g}: overshoot and divergence")
    right.legend(loc="lower left")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    save_figure(fig, plot_dir, "lesson1_weights.png", out)

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    left.semilogy(np.arange(1, len(errors) + 1), errors, marker="o", markersize=3)
    left.set(xlabel="step", ylabel="error (pred - true)**2 before the step",
             title="1a: error per step")
    for alpha, curve in curves.items():
        right.semilogy(np.arange(len(curve)), curve, marker="o", markersize=3,
                       label=f"alpha {alpha} (alpha * input**2 = {alpha * x1 * x1:.4g})")
    right.set(xlabel="step", ylabel="error (pred - true)**2",
              title=f"one weight, input {x1:g}: alpha too large")
    right.legend()
    for ax in (left, right):
        ax.grid(alpha=0.3, which="major")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    save_figure(fig, plot_dir, "lesson1_error.png", out)


def path_input(i: int) -> str:
    """Game 0's value of input ``i``, for labels."""
    return num([TOES[0], WLREC[0], NFANS[0]][i])
