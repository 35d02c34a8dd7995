"""Training-health diagnostics: is the gradient getting through, and are the units alive?

Three things go wrong in deep networks long before the loss says so:

- **vanishing gradients**: a sigmoid or tanh whose input is large sits on a
  flat part of its curve, its local derivative ``y * (1 - y)`` (or
  ``1 - y**2``) is 0 or nearly, and every layer before it gets (almost) no
  gradient. In float64, ``sigmoid(z)`` is exactly 1.0 for ``z`` above about
  37, so the gradient is exactly zero, not just small.
- **exploding gradients**: weighted sums that grow layer after layer give
  gradients many orders of magnitude larger than the weights.
- **dead relus**: a relu unit whose input is negative for every sample passes
  no gradient, so nothing ever moves it back.

``gradient_norms`` and ``activation_health`` measure these for a batch;
``diagnose`` puts them in a readable report, and ``HealthCheck`` is a ``fit``
callback that warns once per kind of problem, naming the layer and a fix::

    net.fit(x, y, callbacks=[HealthCheck()])
"""

from __future__ import annotations

import math
import textwrap
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .activations import LeakyReLU, ReLU, Sigmoid, Tanh, sigmoid
from .training import Callback

__all__ = [
    "TrainingHealthWarning",
    "LayerHealth",
    "Problem",
    "HealthReport",
    "gradient_norms",
    "parameter_norms",
    "activation_health",
    "diagnose",
    "HealthCheck",
]

#: Fewer samples than this say little about whether a relu is dead for good.
MIN_SAMPLES_FOR_DEAD = 8


class TrainingHealthWarning(UserWarning):
    """Training is unlikely to work: gradients vanish or explode, or most relus are dead."""


@dataclass(frozen=True)
class LayerHealth:
    """The state of one activation layer's outputs over a batch.

    Attributes
    ----------
    index : int
        Position of the layer in ``network.layers``.
    name : str
        The layer, e.g. ``"Sigmoid()"``.
    kind : str
        ``"sigmoid"``, ``"tanh"`` or ``"relu"``.
    units : int
        Width of the layer.
    samples : int
        Samples in the batch.
    saturated : float or None
        Share of outputs (samples x units) within ``tol`` of the curve's
        bounds, where the local derivative is (almost) zero. Sigmoid and tanh.
    dead : float or None
        Share of units whose input is <= 0 for every sample, so they pass no
        gradient for this batch. ReLU only.
    """

    index: int
    name: str
    kind: str
    units: int
    samples: int
    saturated: float | None = None
    dead: float | None = None


@dataclass(frozen=True)
class Problem:
    """One finding of ``diagnose``: its kind, the layer it names, and advice in words."""

    kind: str  # "vanishing", "exploding", "saturated" or "dead"
    layer: int
    message: str


@dataclass
class HealthReport:
    """What ``diagnose`` found; ``str(report)`` is a per-layer table plus the problems.

    ``gradient_norms`` and ``parameter_norms`` are keyed by layer index (layers
    with parameters only), ``activations`` by layer index (activation layers).
    """

    layers: list[str]
    gradient_norms: dict[int, float]
    parameter_norms: dict[int, float]
    activations: dict[int, LayerHealth]
    loss: float | None = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        header = ("#", "layer", "|grad|", "|grad|/|param|", "saturated", "dead relus")
        rows = [header]
        for i, name in enumerate(self.layers):
            grad = ratio = sat = dead = ""
            if i in self.gradient_norms:
                g, p = self.gradient_norms[i], self.parameter_norms[i]
                grad = f"{g:.3e}"
                ratio = f"{g / p:.3e}" if p > 0 else "-"
            health = self.activations.get(i)
            if health is not None and health.saturated is not None:
                sat = f"{health.saturated:.1%}"
            if health is not None and health.dead is not None:
                dead = f"{health.dead:.1%}"
            if grad or sat or dead:
                rows.append((str(i), name, grad, ratio, sat, dead))
        widths = [max(len(r[c]) for r in rows) for c in range(len(header))]
        lines = [
            "  ".join(
                cell.ljust(w) if c == 1 else cell.rjust(w)
                for c, (cell, w) in enumerate(zip(row, widths))
            ).rstrip()
            for row in rows
        ]
        lines.insert(1, "-" * max(len(line) for line in lines))
        if self.loss is not None:
            lines.append(f"loss {self.loss:.6g}")
        if self.problems:
            for p in self.problems:
                lines.extend(textwrap.wrap(f"problem ({p.kind}): {p.message}", 88,
                                           subsequent_indent="    "))
        else:
            lines.append("no problems found")
        return "\n".join(lines)


# -- measurements ---------------------------------------------------------------


def _forward_backward(network: Any, x: Any, y: Any | None) -> float | None:
    """One forward (and backward, when ``y`` is given) pass in inference mode; no step.

    Inference mode turns dropout off, so the batch is seen deterministically
    and no dropout random numbers are used up.
    """
    pred = network.forward(x, training=False)
    if y is None:
        return None
    loss = network.loss.forward(pred, y)
    network.backward()
    return float(loss)


def _norm(arrays: list[np.ndarray]) -> float:
    """L2 norm of several arrays taken together."""
    return math.sqrt(sum(float(np.linalg.norm(a)) ** 2 for a in arrays))


def gradient_norms(network: Any, x: Any = None, y: Any = None) -> dict[int, float]:
    """L2 norm of each layer's gradient (all its parameters together).

    Parameters
    ----------
    network : Network
    x, y : a batch and its targets, optional
        When given, a forward and backward pass on them fills the gradients
        first (in inference mode, without an optimizer step); otherwise the
        gradients of the network's last backward pass are used.

    Returns
    -------
    dict
        Layer index -> ``sqrt(sum of squared gradient entries)``, for the
        layers that have parameters, e.g. ``{0: 0.12, 2: 0.0}``.
    """
    if (x is None) != (y is None):
        raise ValueError("pass both x and y, or neither")
    if x is not None:
        _forward_backward(network, x, y)
    return {i: _norm(list(layer.grads.values()))
            for i, layer in enumerate(network.layers) if layer.params}


def parameter_norms(network: Any) -> dict[int, float]:
    """L2 norm of each layer's parameters, keyed like ``gradient_norms``."""
    return {i: _norm(list(layer.params.values()))
            for i, layer in enumerate(network.layers) if layer.params}


def activation_health(network: Any, x: Any = None, tol: float = 1e-3) -> dict[int, LayerHealth]:
    """Saturation of sigmoid/tanh layers and dead units of relu layers, for a batch.

    Parameters
    ----------
    network : Network
    x : array (n, features), optional
        The batch to look at (one forward pass, inference mode). Without it,
        the inputs cached by the network's last forward pass are used.
    tol : float
        A sigmoid output below ``tol`` or above ``1 - tol``, or a tanh output
        with ``|y| > 1 - tol``, counts as saturated (its local derivative is
        below about ``tol``).

    Returns
    -------
    dict
        Layer index -> ``LayerHealth``, for each Sigmoid, Tanh and ReLU layer.
        (LeakyReLU never blocks the gradient, so it is not listed.)
    """
    if x is not None:
        _forward_backward(network, x, None)
    result = {}
    for i, layer in enumerate(network.layers):
        if not isinstance(layer, (Sigmoid, Tanh, ReLU)) or isinstance(layer, LeakyReLU):
            continue
        z = layer._x  # the input the last forward pass saw
        if z is None:
            raise RuntimeError(f"{layer.name}: run a forward pass first, or pass x")
        z2 = z.reshape(-1, z.shape[-1])
        samples, units = z2.shape
        if isinstance(layer, Sigmoid):
            out = sigmoid(z2 * layer.scale if layer.scale != 1.0 else z2)
            saturated = float(np.mean((out < tol) | (out > 1.0 - tol)))
            result[i] = LayerHealth(i, repr(layer), "sigmoid", units, samples, saturated=saturated)
        elif isinstance(layer, Tanh):
            saturated = float(np.mean(np.abs(np.tanh(z2)) > 1.0 - tol))
            result[i] = LayerHealth(i, repr(layer), "tanh", units, samples, saturated=saturated)
        else:
            dead = float(np.mean(np.all(z2 <= 0, axis=0)))
            result[i] = LayerHealth(i, repr(layer), "relu", units, samples, dead=dead)
    return result


# -- judgement --------------------------------------------------------------------

_SATURATION_FIX = (
    "scale the inputs to [0, 1], initialise with Glorot (sigmoid/tanh) or He (relu) "
    "instead of large all-positive weights, or stretch the curve with Sigmoid(scale=0.01)"
)


def diagnose(
    network: Any,
    x: Any = None,
    y: Any = None,
    *,
    loss: float | None = None,
    vanishing: float = 1e-7,
    exploding: float = 1e3,
    saturated: float = 0.9,
    dead: float = 0.5,
    min_loss: float = 1e-8,
    tol: float = 1e-3,
) -> HealthReport:
    """Measure gradients and activations for a batch and name what looks wrong.

    Parameters
    ----------
    network : Network
    x, y : a batch and its targets, optional
        Looked at with one forward and backward pass (no optimizer step).
        Without them, the state left by the last training step is used.
    loss : float, optional
        The loss of that last step, when ``x, y`` are not given.
    vanishing, exploding : float
        A layer's gradients vanish when ``|grad| <= vanishing * |param|`` and
        explode when ``|grad| > exploding * |param|`` (or are not finite).
        Vanishing is only judged while the loss exceeds ``min_loss``: a
        network that has learned its data rightly has tiny gradients.
    saturated : float
        Share of saturated sigmoid/tanh outputs that counts as a problem.
    dead : float
        Share of dead relu units that counts as a problem (judged on batches
        of at least ``MIN_SAMPLES_FOR_DEAD`` samples).
    tol : float
        Saturation tolerance, see ``activation_health``.

    Returns
    -------
    HealthReport
    """
    if (x is None) != (y is None):
        raise ValueError("pass both x and y, or neither")
    if x is not None:
        loss = _forward_backward(network, x, y)
    grads = gradient_norms(network)
    params = parameter_norms(network)
    acts = activation_health(network, tol=tol)
    names = [repr(layer) for layer in network.layers]
    problems: list[Problem] = []

    def where(i: int) -> str:
        return f"layer {i} ({names[i]})"

    for i, health in acts.items():
        if health.saturated is not None and health.saturated >= saturated:
            problems.append(Problem("saturated", i, (
                f"{where(i)}: {health.saturated:.0%} of its outputs are saturated, where its "
                f"slope is (almost) zero; {_SATURATION_FIX}."
            )))
        if (health.dead is not None and health.dead > dead
                and health.samples >= MIN_SAMPLES_FOR_DEAD):
            problems.append(Problem("dead", i, (
                f"{where(i)}: {health.dead:.0%} of its relus are dead (negative for all "
                f"{health.samples} samples), so they pass no gradient and cannot recover; use "
                "He initialisation, a smaller learning rate, or LeakyReLU."
            )))

    bad = [i for i, g in grads.items() if not math.isfinite(g)]
    bad += [i for i, g in grads.items() if math.isfinite(g) and g > exploding * params[i]]
    if bad:
        i = bad[0]
        problems.append(Problem("exploding", i, (
            f"gradients explode: {where(i)} has |grad| {grads[i]:.3g} against |weights| "
            f"{params[i]:.3g}; make the weighted sums smaller (scale the inputs to [0, 1], "
            "Glorot or He initialisation instead of large all-positive weights) or lower "
            "the learning rate."
        )))

    if loss is None or loss > min_loss:
        flat = [i for i, g in grads.items() if g <= vanishing * params[i]]
        if flat:
            # The blocking layer is the saturated activation nearest the output
            # that still lies above the layers that get no gradient.
            blockers = [j for j, h in acts.items()
                        if h.saturated is not None and h.saturated >= saturated and j > flat[0]]
            listed = ", ".join(str(i) for i in flat)
            zero = all(grads[i] == 0.0 for i in flat)
            size = "exactly 0" if zero else f"below {vanishing:g} of the weights' norm"
            if blockers:
                cause = (f"; {where(blockers[-1])} is saturated and passes almost no "
                         f"gradient. Fix: {_SATURATION_FIX}.")
            else:
                cause = (". Nothing is saturated, so the gradient shrinks layer by layer "
                         "(small slopes, e.g. a stretched sigmoid, or small weights): use "
                         "Glorot or He initialisation, or a larger learning rate.")
            problems.append(Problem("vanishing", flat[0], (
                f"gradients vanish: {'layer' if len(flat) == 1 else 'layers'} {listed} "
                f"{'gets' if len(flat) == 1 else 'get'} gradients {size}, so "
                f"{'it does' if len(flat) == 1 else 'they do'} not learn{cause}"
            )))
    return HealthReport(names, grads, params, acts, loss, problems)


class HealthCheck(Callback):
    """A ``fit`` callback that warns, once per kind, when training is unhealthy.

    Parameters
    ----------
    x, y : a probe batch, optional
        Inspected with a forward and backward pass (no step). Without it the
        state of the last training step (its batch, activations and
        gradients) is inspected, which costs no extra pass.
    every_steps : int, optional
        Inspect every this many optimizer steps. By default: after the first
        step and at the end of every epoch.
    **thresholds :
        Passed to ``diagnose`` (``vanishing``, ``exploding``, ``saturated``, ...).

    Each kind of problem (``"vanishing"``, ``"exploding"``, ``"saturated"``,
    ``"dead"``) is announced once per ``fit`` with ``warnings.warn`` and a
    ``TrainingHealthWarning``; ``self.problems`` keeps what was announced and
    ``self.last_report`` the most recent ``HealthReport``.
    """

    def __init__(self, x: Any = None, y: Any = None, every_steps: int | None = None,
                 **thresholds: float) -> None:
        if (x is None) != (y is None):
            raise ValueError("pass both x and y, or neither")
        if every_steps is not None and int(every_steps) < 1:
            raise ValueError(f"every_steps must be >= 1, got {every_steps!r}")
        self.x, self.y = x, y
        self.every_steps = None if every_steps is None else int(every_steps)
        self.thresholds = thresholds
        self.problems: list[Problem] = []
        self.last_report: HealthReport | None = None
        self._steps = 0

    def on_train_begin(self, logs: dict[str, Any]) -> None:
        self.problems, self.last_report, self._steps = [], None, 0

    def on_batch_end(self, step: int, logs: dict[str, float]) -> None:
        self._steps += 1
        due = (self._steps % self.every_steps == 0) if self.every_steps else self._steps == 1
        if due:
            self.check(logs.get("loss"))

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        if self.every_steps is None:
            self.check(logs.get("loss"))

    def check(self, loss: float | None = None) -> HealthReport:
        """Inspect the network now and warn about problems not yet announced."""
        report = diagnose(self.network, self.x, self.y, loss=loss, **self.thresholds)
        self.last_report = report
        announced = {p.kind for p in self.problems}
        for problem in report.problems:
            if problem.kind not in announced:
                announced.add(problem.kind)
                self.problems.append(problem)
                warnings.warn(problem.message, TrainingHealthWarning, stacklevel=2)
        return report
