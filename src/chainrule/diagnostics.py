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
- **unscaled inputs**, behind most of the above: initialisations size the
  weights for inputs of about unit size, so raw pixel values (0..255) make
  weighted sums hundreds of times too large.

``gradient_norms`` and ``activation_health`` measure these for a batch;
``diagnose`` puts them in a readable report, and ``HealthCheck`` is a ``fit``
callback that warns once per kind of problem, naming the layer and a fix::

    net.fit(x, y, callbacks=[HealthCheck()])

The advice of one report, and of one ``HealthCheck`` over a whole run, never
contradicts itself (it never says "lower the learning rate" and "raise the
learning rate" both). ``chance_accuracy`` is the accuracy a model that learned
nothing reaches, for telling a failed training from a poor one.
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
    "chance_accuracy",
    "at_chance",
    "input_scale",
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
    active : array of bool (units,) or None
        ReLU only: which units had a positive input for at least one sample
        (``dead`` is the share of False).
    """

    index: int
    name: str
    kind: str
    units: int
    samples: int
    saturated: float | None = None
    dead: float | None = None
    active: np.ndarray | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class Problem:
    """One finding of ``diagnose``: its kind, the layer it names, and advice in words.

    ``message`` is ``finding`` followed by the fixes in ``advice``.
    """

    kind: str  # "inputs", "vanishing", "exploding", "saturated" or "dead"
    layer: int
    message: str
    finding: str = ""
    advice: tuple[str, ...] = ()

    @classmethod
    def of(cls, kind: str, layer: int, finding: str, advice: tuple[str, ...]) -> Problem:
        message = finding + (f". Fix: {'; or '.join(advice)}." if advice else ".")
        return cls(kind, layer, message, finding, advice)

    def without(self, dropped: set[str]) -> Problem:
        """The same finding, leaving out the pieces of advice in ``dropped``."""
        return Problem.of(self.kind, self.layer, self.finding,
                          tuple(a for a in self.advice if a not in dropped))


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
    input_rms: float | None = None

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
        if self.input_rms is not None:
            lines.append(f"inputs: root mean square {self.input_rms:.3g}")
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
        z2 = _units_last(z)
        samples, units = (len(z) if z.ndim > 1 else 1), z2.shape[1]
        if isinstance(layer, Sigmoid):
            out = sigmoid(z2 * layer.scale if layer.scale != 1.0 else z2)
            saturated = float(np.mean((out < tol) | (out > 1.0 - tol)))
            result[i] = LayerHealth(i, repr(layer), "sigmoid", units, samples, saturated=saturated)
        elif isinstance(layer, Tanh):
            saturated = float(np.mean(np.abs(np.tanh(z2)) > 1.0 - tol))
            result[i] = LayerHealth(i, repr(layer), "tanh", units, samples, saturated=saturated)
        else:
            active = np.any(z2 > 0, axis=0)
            result[i] = LayerHealth(i, repr(layer), "relu", units, samples,
                                    dead=float(1.0 - np.mean(active)), active=active)
    return result


def _units_last(z: np.ndarray) -> np.ndarray:
    """Activations as ``(observations, units)``: a unit is a feature, or a channel of images.

    ``(n, features)`` stays; one sample ``(features,)`` becomes ``(1, features)``;
    images ``(n, C, H, W)`` become ``(n * H * W, C)``, since every position of a
    channel shares its weights (a channel is dead when no position of any
    sample switches it on).
    """
    if z.ndim == 4:
        return np.moveaxis(z, 1, -1).reshape(-1, z.shape[1])
    return z.reshape(-1, z.shape[-1])


# -- judgement --------------------------------------------------------------------

# The fixes, as pieces that each problem picks from; two of them contradict each other.
SCALE_INPUTS = "scale the inputs to [0, 1] (pixels: divide by 255) or standardise them"
INITIALISE = ("initialise with Glorot (sigmoid/tanh) or He (relu) instead of large "
              "all-positive weights")
STRETCH = "stretch the curve with Sigmoid(scale=0.01)"
LEAKY = "use LeakyReLU, which always passes some gradient"
LOWER_LR = "lower the learning rate"
RAISE_LR = "raise the learning rate"
_OPPOSITE = {LOWER_LR: RAISE_LR, RAISE_LR: LOWER_LR}


def input_scale(x: Any) -> float:
    """Root mean square of the inputs ``x`` (any shape): about 1 or less when they are scaled.

    Initialisations (Glorot, He) size the weights so that weighted sums of
    inputs of about unit size stay about unit size; MNIST's raw pixels
    (0..255) have a root mean square near 80.
    """
    x = np.asarray(x, dtype=np.float64)
    return math.sqrt(float(np.mean(np.square(x)))) if x.size else 0.0


def chance_accuracy(y_true: Any) -> float:
    """The accuracy of always answering the most common class of ``y_true`` (labels, shape (n,)).

    A classifier that learned nothing does no better (scikit-learn's
    ``DummyClassifier(strategy="most_frequent")``).
    """
    y_true = np.asarray(y_true)
    if y_true.ndim == 2:  # one-hot rows
        y_true = y_true.argmax(axis=1)
    if y_true.size == 0:
        raise ValueError("chance accuracy of no labels is undefined")
    return float(np.max(np.unique(y_true, return_counts=True)[1]) / y_true.size)


def at_chance(accuracy: float, y_true: Any, z: float = 3.0) -> bool:
    """Whether ``accuracy`` on ``y_true`` is no better than ``chance_accuracy(y_true)``.

    "No better" allows for luck: the accuracy must exceed chance by ``z``
    binomial standard errors, ``sqrt(p (1 - p) / n)``, to count as learning.
    For 10,000 MNIST test digits (chance 11.35%) that is 12.3%.
    """
    p = chance_accuracy(y_true)
    n = len(np.asarray(y_true))
    return accuracy <= p + z * math.sqrt(p * (1.0 - p) / n)


def _samples(n: int) -> str:
    return "the one sample" if n == 1 else f"all {n} samples"


def _first_input(network: Any) -> np.ndarray | None:
    """The inputs of the network's last cached forward pass, if the first layer kept them.

    Layers that pass the input on unscaled in size (``Dropout``, ``Flatten``)
    may stand before the one that kept it; past any other layer the cache
    holds something else than the inputs, and ``None`` is returned.
    """
    from .layers import Dropout

    for layer in network.layers:
        x = getattr(layer, "_x", None)
        if x is not None:
            return x
        if not isinstance(layer, Dropout) and type(layer).__name__ != "Flatten":
            return None
    return None


def coherent(problems: list[Problem], given: set[str] = frozenset()) -> list[Problem]:
    """``problems`` with advice that contradicts other advice left out.

    Advice to lower the learning rate (dead relus, exploding gradients)
    outranks advice to raise it (a gradient shrinking through small slopes);
    advice already ``given`` (earlier in the same run) outranks both.
    """
    given = set(given) | {a for p in problems for a in p.advice if a == LOWER_LR}
    dropped = {_OPPOSITE[a] for a in given if a in _OPPOSITE}
    return [p.without(dropped) if dropped & set(p.advice) else p for p in problems]


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
    unscaled: float = 10.0,
    min_loss: float = 1e-8,
    tol: float = 1e-3,
    activity: dict[int, tuple[np.ndarray, int]] | None = None,
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
        Share of dead relu units (input <= 0 for every sample looked at) that
        counts as a problem. Judged on the samples given: a unit dead on all
        of the training data never recovers, one dead on a small batch may
        be alive for other samples (the message gives the count).
    unscaled : float
        Inputs whose root mean square (``input_scale``) exceeds this count
        as unscaled.
    tol : float
        Saturation tolerance, see ``activation_health``.
    activity : dict, optional
        Relu layer index -> ``(active, samples)``: which units were active
        over ``samples`` samples seen across several batches. Replaces the
        batch's own count for judging dead units (``HealthCheck`` passes what
        it saw over the epoch).

    Returns
    -------
    HealthReport
        Its problems never give contradicting advice (see ``coherent``).
    """
    if (x is None) != (y is None):
        raise ValueError("pass both x and y, or neither")
    if x is not None:
        loss = _forward_backward(network, x, y)
    grads = gradient_norms(network)
    params = parameter_norms(network)
    acts = activation_health(network, tol=tol)
    names = [repr(layer) for layer in network.layers]
    inputs = np.asarray(x) if x is not None else _first_input(network)
    rms = input_scale(inputs) if inputs is not None else None
    problems: list[Problem] = []
    scale = (SCALE_INPUTS,) if rms is not None and rms > unscaled else ()

    def where(i: int) -> str:
        return f"layer {i} ({names[i]})"

    if scale:
        top = float(np.max(np.abs(inputs)))
        problems.append(Problem.of("inputs", 0, (
            f"the inputs are not scaled: their root mean square is {rms:.3g} (largest "
            f"{top:.3g}), where initialisations expect about 1, so the weighted sums are "
            f"about {rms:.0f} times too large: relus die, sigmoids saturate, gradients explode"
        ), scale))
    saturation_fix = (*scale, INITIALISE, STRETCH)
    dead_fix = (*scale, INITIALISE, LOWER_LR, LEAKY)

    for i, health in acts.items():
        if health.saturated is not None and health.saturated >= saturated:
            problems.append(Problem.of("saturated", i, (
                f"{where(i)}: {health.saturated:.0%} of its outputs are saturated, where its "
                f"slope is (almost) zero"
            ), saturation_fix))
        if health.dead is None:
            continue
        share, samples = health.dead, health.samples
        if activity is not None and i in activity:
            active, samples = activity[i]
            share = float(1.0 - np.mean(active))
        if samples and share >= dead:
            problems.append(Problem.of("dead", i, (
                f"{where(i)}: {share:.0%} of its relus are dead (input <= 0 for "
                f"{_samples(samples)} looked at), so they pass no gradient, and if that holds "
                "for all the training data they never recover"
            ), dead_fix))

    bad = [i for i, g in grads.items() if not math.isfinite(g)]
    bad += [i for i, g in grads.items() if math.isfinite(g) and g > exploding * params[i]]
    if bad:
        i = bad[0]
        problems.append(Problem.of("exploding", i, (
            f"gradients explode: {where(i)} has |grad| {grads[i]:.3g} against |weights| "
            f"{params[i]:.3g}, so the weighted sums are too large"
        ), (*scale, INITIALISE, LOWER_LR)))

    if loss is None or loss > min_loss:
        flat = [i for i, g in grads.items() if g <= vanishing * params[i]]
        if flat:
            # What blocks the gradient: the saturated activation, or the relu layer
            # silent on this batch, nearest the output above the layers that get none.
            blockers = [j for j, h in acts.items() if j > flat[0] and (
                (h.saturated is not None and h.saturated >= saturated)
                or (h.dead is not None and h.dead >= dead))]
            listed = ", ".join(str(i) for i in flat)
            zero = all(grads[i] == 0.0 for i in flat)
            size = "exactly 0" if zero else f"below {vanishing:g} of the weights' norm"
            if blockers and acts[blockers[-1]].kind == "relu":
                h = acts[blockers[-1]]
                cause = (f"; {where(h.index)} passes almost none: {h.dead:.0%} of its relus "
                         f"output 0 for {_samples(h.samples)} of the batch (dead relus)")
                fix = dead_fix
            elif blockers:
                cause = (f"; {where(blockers[-1])} is saturated and passes almost no "
                         "gradient")
                fix = saturation_fix
            elif zero:
                cause = ("; no activation blocks it, so the weights above pass none "
                         "(all zero?)")
                fix = (*scale, INITIALISE)
            else:
                cause = ("; nothing is saturated or dead, so the gradient shrinks layer by "
                         "layer (small slopes, e.g. a stretched sigmoid, or small weights)")
                fix = (*scale, INITIALISE, RAISE_LR)
            problems.append(Problem.of("vanishing", flat[0], (
                f"gradients vanish: {'layer' if len(flat) == 1 else 'layers'} {listed} "
                f"{'gets' if len(flat) == 1 else 'get'} gradients {size}, so "
                f"{'it does' if len(flat) == 1 else 'they do'} not learn{cause}"
            ), fix))
    return HealthReport(names, grads, params, acts, loss, coherent(problems), rms)


class HealthCheck(Callback):
    """A ``fit`` callback that warns, once per kind, when training is unhealthy.

    Parameters
    ----------
    x, y : a probe batch, optional
        Inspected with a forward and backward pass (no step). Without it the
        state of the last training step (its batch, activations and
        gradients) is inspected, which costs no extra pass; dead relus are
        then judged over every sample the epoch has trained on so far (at
        least ``MIN_SAMPLES_FOR_DEAD`` before the epoch ends), not on one batch.
    every_steps : int, optional
        Inspect every this many optimizer steps. By default: after the first
        step and at the end of every epoch.
    **thresholds :
        Passed to ``diagnose`` (``vanishing``, ``exploding``, ``saturated``, ...).

    Each kind of problem (``"inputs"``, ``"vanishing"``, ``"exploding"``,
    ``"saturated"``, ``"dead"``) is announced once per ``fit`` with
    ``warnings.warn`` and a ``TrainingHealthWarning``; advice that would
    contradict advice already given in the run is left out. ``self.problems``
    keeps what was announced and ``self.last_report`` the most recent
    ``HealthReport``.
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
        self._kept = False
        self._activity: dict[int, tuple[np.ndarray, int]] = {}

    def on_train_begin(self, logs: dict[str, Any]) -> None:
        self.problems, self.last_report, self._steps = [], None, 0
        if self.x is None:
            # Inspecting the last step needs the layers' caches, which the fused
            # kernel path (chainrule.kernels) does not write: ask for the NumPy step.
            self._kept = getattr(self.network, "keep_caches", False)
            self.network.keep_caches = True

    def on_train_end(self, logs: dict[str, Any]) -> None:
        if self.x is None:
            self.network.keep_caches = self._kept

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any]) -> None:
        self._activity = {}

    def on_batch_end(self, step: int, logs: dict[str, float]) -> None:
        self._steps += 1
        if self.x is None:
            self._record_activity()
        due = (self._steps % self.every_steps == 0) if self.every_steps else self._steps == 1
        if due:
            self.check(logs.get("loss"), epoch_done=False)

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        if self.every_steps is None:
            self.check(logs.get("loss"), epoch_done=True)

    def _record_activity(self) -> None:
        """Which relus the last training step's batch switched on, added to the epoch's."""
        for i, layer in enumerate(self.network.layers):
            if not isinstance(layer, ReLU) or isinstance(layer, LeakyReLU) or layer._x is None:
                continue
            z = _units_last(layer._x)
            active, seen = self._activity.get(i, (np.zeros(z.shape[1], dtype=bool), 0))
            samples = len(layer._x) if layer._x.ndim > 1 else 1
            self._activity[i] = (active | np.any(z > 0, axis=0), seen + samples)

    def check(self, loss: float | None = None, *, epoch_done: bool = True) -> HealthReport:
        """Inspect the network now and warn about problems not yet announced.

        ``epoch_done``: the relu activity recorded covers the whole epoch, so
        dead units are judged on it whatever the number of samples.
        """
        activity = None
        if self.x is None:
            seen = max((s for _, s in self._activity.values()), default=0)
            if epoch_done or seen >= MIN_SAMPLES_FOR_DEAD:
                activity = self._activity
            else:  # too few samples yet to call a unit dead
                activity = {i: (np.ones_like(a), s) for i, (a, s) in self._activity.items()}
        report = diagnose(self.network, self.x, self.y, loss=loss, activity=activity,
                          **self.thresholds)
        self.last_report = report
        announced = {p.kind for p in self.problems}
        given = {a for p in self.problems for a in p.advice}
        for problem in coherent(report.problems, given):
            if problem.kind not in announced:
                announced.add(problem.kind)
                self.problems.append(problem)
                warnings.warn(problem.message, TrainingHealthWarning, stacklevel=2)
        return report
