"""Lesson 3: networks from a list of layer sizes, sigmoid saturation, and its fixes.

The tutorial's network is ``Network.from_sizes(sizes, activation="sigmoid",
output_activation="sigmoid")`` with ``SquaredError`` and ``SGD``; its
initialisation (one matrix ``[W | b]`` per layer, uniform in [0, 1)) is
loaded with ``load_parameters``. Its backward quantity ``psi`` is chainrule's
``dL/dz``, the gradient that leaves each ``Sigmoid.backward``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any, TextIO

import numpy as np

from ..activations import LeakyReLU, Sigmoid
from ..diagnostics import activation_health, diagnose, gradient_norms
from ..gradcheck import check_gradients
from ..initializers import Initializer, glorot_uniform, he_normal
from ..layers import BatchNorm1d, Dense, Layer
from ..network import Network
from ..optimizers import SGD
from ._common import Printer, num, pyplot, save_figure, vec

TITLE = "any list of layer sizes, sigmoid, and vanishing gradients"

X_IN = np.array([0.2, 0.3])
TARGET = np.array([0.3, 0.67])
SEED = 0
WIDE = [2, 1000, 1000, 2]


def tutorial_network(sizes: Sequence[int], lr: float, seed: int = SEED,
                     activation: str | Layer = "sigmoid",
                     output_activation: str | Layer | None = "sigmoid",
                     init: Initializer | None = None) -> Network:
    """A network of ``sizes`` with the tutorial's initialisation, or ``init``.

    The tutorial draws one matrix ``[W | b]`` of shape ``(out, in + 1)`` per
    layer from ``default_rng(seed).uniform(0, 1)``: the last column is the
    bias. With ``init`` (e.g. ``glorot_uniform``) the weights come from it
    instead, and the biases start at zero.
    """
    net = Network.from_sizes(
        sizes, activation=activation, output_activation=output_activation,
        optimizer=SGD(lr=lr), init=init if init is not None else "zeros", seed=seed,
        dtype="float64",
    )
    if init is None:
        rng = np.random.default_rng(seed)
        tensors = {}
        for i, layer in enumerate(net.layers):
            if isinstance(layer, Dense):
                folded = rng.uniform(0.0, 1.0, size=(layer.out_features, layer.in_features + 1))
                tensors[f"{i}.weight"] = folded[:, :-1]
                tensors[f"{i}.bias"] = folded[:, -1]
        net.load_parameters(tensors)
    return net


def error_after(net: Network) -> float:
    """Squared error summed over the outputs, at the current weights."""
    return float(net.loss.forward(net.predict(X_IN), TARGET))


def _psi_tutorial(net: Network) -> list[np.ndarray]:
    """The tutorial's backward pass, written out in numpy from the weights and activations.

    psi = -2 (y - x) x (1 - x) at the output, then psi_prev = (W^T psi) x (1 - x),
    where x is each sigmoid layer's output (with no stretch factor, as in the
    tutorial). Returned from the first layer to the last.
    """
    dense, outputs, h = [], [], X_IN
    for layer in net.layers:
        h = layer.forward(h)
        if isinstance(layer, Dense):
            dense.append(layer)
        else:
            outputs.append(h)
    psi = -2.0 * (TARGET - outputs[-1]) * outputs[-1] * (1.0 - outputs[-1])
    psis = [psi]
    for layer, x in zip(dense[:0:-1], outputs[-2::-1]):
        psi = (layer.weight.T @ psi) * x * (1.0 - x)
        psis.append(psi)
    return psis[::-1]


def _psi_chainrule(net: Network) -> list[np.ndarray]:
    """dL/dz for every Dense layer's output z: the gradient leaving each activation's backward."""
    net.loss.forward(net.forward(X_IN), TARGET)
    grad = net.loss.backward()
    found = []
    for i in range(len(net.layers) - 1, -1, -1):
        grad = net.layers[i].backward(grad)
        if i > 0 and isinstance(net.layers[i - 1], Dense):
            found.append(grad)
    return found[::-1]


def _train(net: Network, steps: int) -> dict[str, Any]:
    """``steps`` one-sample steps; the loss before each and after the last, gradient norms, time."""
    losses, norms = [], []
    start = time.perf_counter()
    for _ in range(steps):
        losses.append(net.train_step(X_IN, TARGET))
        norms.append(gradient_norms(net))  # of the step just taken
    seconds = time.perf_counter() - start
    losses.append(error_after(net))
    layers = list(norms[0]) if norms else []
    return {
        "losses": np.array(losses), "seconds": seconds,
        "grad_norms": {i: np.array([n[i] for n in norms]) for i in layers},
    }


def run(plot_dir: str | os.PathLike | None = None, file: TextIO | None = None,
        small_steps: Sequence[int] = (1000, 3000, 10000), fix_steps: int | None = None
        ) -> dict[str, Any]:
    """Print lesson 3 to ``file``; save its figure to ``plot_dir``; return its numbers.

    ``small_steps`` are the checkpoints of the [2, 3, 3, 2] runs; ``fix_steps``
    (default 50) is the length of each 1000-unit training run.
    """
    out = Printer(file)
    result: dict[str, Any] = {}
    out.heading(f"Lesson 3: {TITLE}")

    # -- [2, 3, 3, 2] -------------------------------------------------------------------
    out.say(f"""
        A network given by its layer sizes: [2, 3, 3, 2] is 2 inputs, two hidden layers
        of 3 sigmoid units and 2 sigmoid outputs. Each layer's weight matrix is shaped
        (units in the next layer, units in this one), plus one bias per unit. The task:
        input {vec(X_IN)}, target {vec(TARGET)}, error = squared error summed over the
        outputs, one sample trained on again and again. chainrule's Network is the
        tutorial's class, with the same shape of API:

            net = Network.from_sizes([2, 3, 3, 2], activation="sigmoid",
                                     output_activation="sigmoid", optimizer=SGD(lr=0.01))
            loss = net.train_step(x, y)   # one step; returns the error before it
            out = net.predict(x)

        The weights below are drawn the tutorial's way: per layer one matrix [W | b] of
        shape (out, in + 1), uniform in [0, 1), from numpy.random.default_rng({SEED}).
    """)
    net = tutorial_network([2, 3, 3, 2], lr=0.01)
    dense0 = net.layers[0]
    folded = np.hstack([dense0.weight, dense0.bias[:, None]])
    z_folded = folded @ np.append(X_IN, 1.0)
    z_dense = dense0.forward(X_IN)
    fold_gap = float(np.max(np.abs(z_folded - z_dense)))
    out.say(f"""
        The bias as an extra column: the tutorial appends a constant 1 to each layer's
        input and multiplies by [W | b]. For the first layer, [W | b] @ [x, 1] =
        {vec(z_folded)} and chainrule's Dense, x @ W.T + b = {vec(z_dense)}: largest
        difference {num(fold_gap)}. Same numbers, two bookkeepings.
    """)

    psi_book = _psi_tutorial(net)
    psi_cr = _psi_chainrule(net)
    dense_idx = [i for i, layer in enumerate(net.layers) if isinstance(layer, Dense)]
    rows, psi_gap, grad_gap = [], 0.0, 0.0
    for k, i in enumerate(dense_idx):
        layer = net.layers[i]
        gap = float(np.max(np.abs(psi_book[k] - psi_cr[k])))
        # The tutorial's weight gradient, outer(psi, [x, 1]), against chainrule's [dW | db].
        g_book = np.outer(psi_book[k], np.append(layer._x, 1.0))
        g_cr = np.hstack([layer.grads["weight"], layer.grads["bias"][:, None]])
        ggap = float(np.max(np.abs(g_book - g_cr)))
        psi_gap, grad_gap = max(psi_gap, gap), max(grad_gap, ggap)
        rows.append([f"{i} ({layer!r})", vec(psi_book[k], 4), vec(psi_cr[k], 4), num(gap, 2),
                     num(ggap, 2)])
    out.say("""
        The tutorial's backward pass carries psi = dE/dz: psi = -2 (y - x) x (1 - x) at the
        output, then psi_prev = (W^T psi) x (1 - x), and the weight gradient is
        outer(psi, [x_prev, 1]). chainrule gets dE/dz as the gradient that leaves each
        Sigmoid's backward:
    """)
    out.table(["layer", "psi (tutorial)", "dE/dz (chainrule)", "max diff",
               "max diff of [dW | db]"], rows)
    result.update({"fold_max_diff": fold_gap, "psi_max_diff": psi_gap,
                   "grad_max_diff": grad_gap})

    small: dict[float, dict[int, float]] = {}
    for lr in (0.01, 0.1):
        net = tutorial_network([2, 3, 3, 2], lr=lr)
        done, small[lr] = 0, {}
        # lr 0.1 is done after the first checkpoint; no need to run it further
        for mark in small_steps if lr == 0.01 else small_steps[:1]:
            for _ in range(mark - done):
                net.train_step(X_IN, TARGET)
            done = mark
            small[lr][mark] = error_after(net)
        if lr == 0.01:
            prediction = net.predict(X_IN)
    out.say("Training (error after the given number of steps):")
    out.table(["steps", "lr 0.01", "lr 0.1"],
              [[m, num(small[0.01][m], 3), num(small[0.1][m], 3) if m in small[0.1] else ""]
               for m in small_steps])
    out.say(f"""
        After {small_steps[-1]:,} steps at lr 0.01 the prediction is
        {vec(prediction, 10)}. A tenfold learning rate gets there in a tenth of the steps.
    """)
    result["small_errors"] = small

    # -- [2, 1000, 1000, 2]: saturation ---------------------------------------------------------
    out.heading("Wide layers, large weights: saturation", "-")
    net = tutorial_network(WIDE, lr=0.01)
    h = X_IN
    rows, shares = [], {}
    for i, layer in enumerate(net.layers):
        h = layer.forward(h)
        if isinstance(layer, Dense):
            z = h
        else:
            exact = float(np.mean(h == 1.0))
            shares[i] = exact
            rows.append([f"{i - 1}-{i}", num(z.min(), 4), num(z.mean(), 4), num(z.max(), 4),
                         f"{exact:.1%}"])
    out.say(f"""
        The same recipe with sizes {WIDE}. Each unit of the second hidden layer adds up
        1000 positive weights times 1000 positive inputs, so the weighted sums z are in
        the hundreds, and sigmoid(z) is exactly 1.0 in float64 once z exceeds about 37:
    """)
    out.table(["layers", "min z", "mean z", "max z", "sigmoid(z) == 1.0"], rows)
    report = diagnose(net, X_IN, TARGET)
    out.say("""
        Where the sigmoid is exactly 1, its derivative x (1 - x) is exactly 0, so psi at
        the output is 0 and so is everything behind it. chainrule.diagnostics measures
        it, per layer (|grad| is the L2 norm of the layer's weight and bias gradients):
    """)
    out.line(_indent(str(report)))
    out.line()
    before = {k: v.copy() for k, v in net.parameters().items()}
    stuck = _train(net, 10)
    unchanged = all(np.array_equal(before[k], v) for k, v in net.parameters().items())
    out.say(f"""
        Ten training steps: the error stays {num(stuck['losses'][0])} (after the tenth:
        {num(stuck['losses'][-1])}), and the weights are bit for bit unchanged:
        {unchanged}. The error alone would only say "training is slow"; the gradient
        norms say "nothing can learn".
    """)
    result.update({
        "saturated_grad_norms": report.gradient_norms, "saturated_exact_one": shares,
        "saturated_share": {i: h.saturated for i, h in report.activations.items()},
        "saturated_losses": stuck["losses"], "saturated_unchanged": unchanged,
        "saturated_problems": [p.kind for p in report.problems],
    })
    runs = {"saturated (uniform [0, 1), sigmoid)": stuck}

    # -- fix (a): stretched sigmoid ---------------------------------------------------------------
    out.heading("Fix (a): a stretched sigmoid, sigmoid(0.01 z)", "-")
    stretched = Sigmoid(scale=0.01)
    net = tutorial_network(WIDE, lr=0.01, activation=stretched, output_activation=stretched)
    ratios = [np.linalg.norm(b) / np.linalg.norm(c)
              for b, c in zip(_psi_tutorial(net), _psi_chainrule(net))]
    check = check_gradients(net, X_IN, TARGET, max_checks=4)
    out.say(f"""
        Sigmoid(scale=0.01) flattens the curve a hundredfold, so sums in the hundreds land
        on its slope: no unit is saturated. Its derivative is 0.01 x (1 - x); the
        tutorial's psi keeps x (1 - x), leaving the 0.01 out, so its gradients are too
        large by 100 at the output layer and by another 100 per layer further back
        (ratios to chainrule's dE/dz, first layer to last: {", ".join(num(r, 4) for r in ratios)}).
        check_gradients confirms chainrule's (4 random entries per tensor):
        {"passed" if check.ok else "FAILED"}.
    """)
    slow = _train(net, 10)
    diag_slow = diagnose(net, X_IN, TARGET)
    found = ", ".join(p.kind for p in diag_slow.problems) or "no problems"
    out.say(f"""
        With the true gradient, lr 0.01 barely moves the error: {num(slow['losses'][0], 6)}
        -> {num(slow['losses'][-1], 6)} in 10 steps, and diagnose reports: {found}. The
        tutorial's published run (error 2.4e-6 after 3,000 steps at lr 0.01) owes its
        speed to the inflated gradient. Following the true gradient takes a larger
        learning rate, here 60 (results with the other fixes below).
    """)
    steps = fix_steps if fix_steps is not None else 50
    net = tutorial_network(WIDE, lr=60.0, activation=stretched, output_activation=stretched)
    runs["(a) Sigmoid(scale=0.01), lr 60"] = _train(net, steps)
    result.update({"stretched_psi_ratios": ratios, "stretched_gradcheck_ok": check.ok,
                   "stretched_slow_losses": slow["losses"]})

    # -- fix (b): leaky relu ------------------------------------------------------------------------
    out.heading("Fix (b): leaky relu hidden layers", "-")
    net = tutorial_network(WIDE, lr=1e-9, activation=LeakyReLU(), output_activation=None)
    report_b = diagnose(net, X_IN, TARGET)
    out.say(f"""
        LeakyReLU never flattens out, so the gradient cannot vanish: same [0, 1) weights,
        leaky relu hidden layers, a linear output. But with every weight positive the sums
        keep growing, layer after layer: the outputs start at
        {vec(net.predict(X_IN), 3)} and the gradients explode instead:
    """)
    out.line(_indent(str(report_b)))
    out.line()
    out.say("""
        It does learn, with a learning rate small enough for gradients of that size
        (1e-9), but slowly: the fix for the weights themselves is (c).
    """)
    runs["(b) LeakyReLU, linear output, lr 1e-9"] = _train(net, steps)
    result["leaky_problems"] = [p.kind for p in report_b.problems]

    # -- fix (c): a proper initialisation ------------------------------------------------------------
    out.heading("Fix (c): Glorot or He initialisation, inputs in [0, 1]", "-")
    out.say("""
        Scaled initialisations keep the weighted sums near 1 whatever the width: Glorot
        draws weights with variance 2 / (fan_in + fan_out) (for sigmoid and tanh), He
        with variance 2 / fan_in (for relus); weights are centred on 0 and biases start at
        0. The tutorial's own sigmoid network, only re-initialised, learns at lr 0.01;
        leaky relu with He weights too:
    """)
    net = tutorial_network(WIDE, lr=0.01, init=glorot_uniform)
    report_c = diagnose(net, X_IN, TARGET)
    runs["(c) Glorot, sigmoid, lr 0.01"] = _train(net, steps)
    net = tutorial_network(WIDE, lr=0.001, activation=LeakyReLU(), output_activation=None,
                           init=he_normal)
    runs["(c) He, LeakyReLU, lr 0.001"] = _train(net, steps)

    names = list(runs)
    marks = [m for m in (0, 5, 10, 20, 50, 100) if m <= max(len(r["losses"]) - 1 for r in runs.values())]
    out.say("Error before the first step and after N steps, for all four runs:")
    table = []
    for name in names[1:]:
        losses = runs[name]["losses"]
        table.append([name] + [num(losses[m], 3) if m < len(losses) else "" for m in marks]
                     + [f"{runs[name]['seconds']:.1f}"])
    out.table(["network", *[f"{m}" for m in marks], "seconds"], table)
    out.say("and the gradient norm of each layer at the first step:")
    out.table(["network", "layer 0", "layer 2", "layer 4"],
              [[name] + [num(runs[name]["grad_norms"][i][0], 3) for i in (0, 2, 4)]
               for name in names])
    result["fixes"] = {name: runs[name] for name in names[1:]}
    result["glorot_problems"] = [p.kind for p in report_c.problems]

    # -- fix (d): batch normalisation -----------------------------------------------------------------
    result["batchnorm"] = _batchnorm_fix(out, steps)

    # -- why inputs must be small ----------------------------------------------------------------------
    out.heading("Why inputs must be small", "-")
    net = tutorial_network(WIDE, lr=0.01, init=glorot_uniform)
    rows, sat, learning = [], {}, {}
    for factor in (1, 100, 1000, 10000):
        x = X_IN * factor
        health = activation_health(net, x)[1]
        gradient_norms(net, x, TARGET)
        unit = np.linalg.norm(net.layers[0].grads["weight"], axis=1)  # one per first-layer unit
        sat[factor] = health.saturated
        learning[factor] = float(np.mean(unit > 1e-6 * unit.max()))
        rows.append([vec(x), f"{health.saturated:.1%}", f"{learning[factor]:.1%}",
                     num(np.median(unit), 3)])
    out.say("""
        Initialisation sizes the weights for inputs of about unit size. The first layer's
        sums grow with the inputs: raw values in the hundreds or thousands (pixel
        intensities 0-255, say) push the Glorot network's first sigmoids onto their flat
        ends, and the weights into those units stop getting a gradient:
    """)
    out.table(["input", "layer 1 saturated", "layer-0 units learning",
               "median unit |grad|"], rows)
    out.say("""
        (A unit counts as learning when its weights' gradient is above 1e-6 of the
        largest.) Scaling inputs to [0, 1], dividing pixels by 255, avoids this.
    """)
    result["input_scale_saturation"] = sat
    result["input_scale_learning"] = learning

    if plot_dir is not None:
        _plot(plot_dir, out, runs)
    return result


def _batchnorm_fix(out: Printer, steps: int, lr: float = 1.0) -> dict[str, Any]:
    """Fix (d): the saturated network with a ``BatchNorm1d`` before every sigmoid, on a batch."""
    out.heading("Fix (d): batch normalisation before each sigmoid", "-")
    net = Network(
        [Dense(2, 1000), BatchNorm1d(1000), Sigmoid(), Dense(1000, 1000), BatchNorm1d(1000),
         Sigmoid(), Dense(1000, 2), BatchNorm1d(2), Sigmoid()],
        loss="squared_error", optimizer=SGD(lr=lr), dtype="float64",
    )
    # the tutorial's saturating initialisation: [W | b] uniform in [0, 1) per layer
    rng = np.random.default_rng(SEED)
    state = dict(net.state_dict())
    for i, layer in enumerate(net.layers):
        if isinstance(layer, Dense):
            folded = rng.uniform(0.0, 1.0, size=(layer.out_features, layer.in_features + 1))
            state[f"{i}.weight"], state[f"{i}.bias"] = folded[:, :-1], folded[:, -1]
    net.load_parameters(state)
    # Statistics need a batch: X_IN and seven neighbours of it, all with the same target.
    x = np.clip(X_IN + np.random.default_rng(1).normal(0.0, 0.05, size=(8, 2)), 0.0, 1.0)
    x[0] = X_IN
    y = np.tile(TARGET, (len(x), 1))
    # the same layers without the normalisation: the second sigmoids' sums are in the hundreds
    plain = Sigmoid().forward(net.layers[0].forward(x, cache=False), cache=False)
    plain = Sigmoid().forward(net.layers[3].forward(plain, cache=False), cache=False)
    saturated = float(np.mean((plain == 0.0) | (plain == 1.0)))
    before = error_after(net)
    losses, first_norms = [], {}
    for step in range(steps):
        losses.append(net.train_step(x, y))
        if step == 0:
            first_norms = gradient_norms(net)
    losses.append(float(net.loss.forward(net.forward(x, training=True), y)))
    after = error_after(net)
    out.say(f"""
        BatchNorm1d (Ioffe and Szegedy, 2015) rescales each unit's weighted sum over the
        batch to mean 0 and variance 1, then by a learned scale and shift, before the
        sigmoid sees it. Same [0, 1) weights as the saturated network, a BatchNorm1d
        after every Dense layer: sums in the hundreds land on the sigmoid's slope whatever
        the weights (without it, {saturated:.0%} of the second layer's sigmoids are exactly
        0 or 1 on these inputs). Normalising over a batch needs a batch: X_IN and seven neighbours
        (Gaussian jitter 0.05), all with the tutorial's target; inference uses the running
        averages of the batch statistics.
    """)
    out.table(["", "layer 0", "layer 3", "layer 6"],
              [["gradient norm at the first step"]
               + [num(first_norms[i], 3) for i in (0, 3, 6)]])
    out.say(f"""
        Every layer gets a gradient from the first step. With SGD at lr {num(lr)} the batch's
        error goes {num(losses[0], 4)} -> {num(losses[-1], 3)} in {steps} steps, and the
        error at X_IN in inference mode {num(before, 4)} -> {num(after, 3)} (outputs
        {vec(net.predict(X_IN), 4)}, target {vec(TARGET)}). The price: a batch, two extra
        parameters and two running statistics per unit, and a network that behaves
        differently in training and in inference.
    """)
    return {"losses": np.array(losses), "error_before": before, "error_after": after,
            "first_grad_norms": first_norms, "saturated_without": saturated}


def _indent(text: str, by: int = 2) -> str:
    return "\n".join(" " * by + line for line in text.splitlines())


def _plot(plot_dir: str | os.PathLike, out: Printer, runs: dict[str, dict[str, Any]]) -> None:
    plt = pyplot()
    names = list(runs)
    fig, axes = plt.subplots(2, 3, figsize=(14, 7.5))
    for ax, name in zip(axes.flat, names):
        norms = runs[name]["grad_norms"]
        for i, values in norms.items():
            steps = np.arange(1, len(values) + 1)
            if np.all(values == 0):
                ax.plot(steps, values, marker="o", markersize=3,
                        label=f"layer {i}: exactly 0.0 at every step")
            else:
                ax.semilogy(steps, np.where(values > 0, values, np.nan), label=f"layer {i}")
        ax.set(title=name, xlabel="step", ylabel="gradient norm")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    ax = axes.flat[len(names)]
    for name in names:
        losses = runs[name]["losses"]
        ax.semilogy(np.arange(len(losses)), np.where(losses > 0, losses, np.nan), label=name)
    ax.set(title="error", xlabel="step", ylabel="squared error")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    for extra in list(axes.flat)[len(names) + 1:]:
        extra.remove()
    fig.suptitle(f"Lesson 3: per-layer gradient norms on {WIDE}, saturated and fixed")
    fig.tight_layout()
    save_figure(fig, plot_dir, "lesson3_gradients.png", out)
