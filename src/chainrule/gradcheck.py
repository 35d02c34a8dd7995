"""Numerical gradient checking: does backward agree with the definition of a derivative?

For every parameter element ``w`` the central difference

    dL/dw  ~  (L(w + eps) - L(w - eps)) / (2 * eps)

has error ``O(eps**2)``, against the rounding error ``O(machine_eps / eps)``;
``eps = 1e-6`` in float64 balances the two at about 1e-10 relative to the
loss. The check runs on a float64 copy of the network, which it leaves untouched.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["check_gradients", "GradientCheck", "GradientReport"]


@dataclass(frozen=True)
class GradientCheck:
    """The comparison for one tensor (a parameter, or ``"input"``).

    ``max_rel_error`` is the largest absolute difference divided by the
    largest gradient magnitude in the tensor, so it says how many digits of
    the gradient are right, and does not explode on entries that are zero.
    """

    name: str
    shape: tuple[int, ...]
    checked: int
    max_abs_error: float
    max_rel_error: float
    ok: bool


class GradientReport:
    """All checks of one ``check_gradients`` call; ``report.ok`` if every tensor passed."""

    def __init__(self, checks: list[GradientCheck], rtol: float, atol: float, eps: float) -> None:
        self.checks, self.rtol, self.atol, self.eps = checks, rtol, atol, eps

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def max_rel_error(self) -> float:
        return max((c.max_rel_error for c in self.checks), default=0.0)

    def __getitem__(self, name: str) -> GradientCheck:
        for check in self.checks:
            if check.name == name:
                return check
        raise KeyError(name)

    def __iter__(self):
        return iter(self.checks)

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        rows = [("tensor", "shape", "checked", "max abs error", "max rel error", "ok")]
        for c in self.checks:
            rows.append((
                c.name, str(c.shape), str(c.checked), f"{c.max_abs_error:.3e}",
                f"{c.max_rel_error:.3e}", "yes" if c.ok else "NO",
            ))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
        lines.insert(1, "-" * len(lines[0]))
        verdict = "passed" if self.ok else "FAILED"
        lines.append(
            f"gradient check {verdict}: central differences with eps={self.eps:g}, "
            f"rtol={self.rtol:g}, atol={self.atol:g}"
        )
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"GradientReport(ok={self.ok}, max_rel_error={self.max_rel_error:.3e})"


def check_gradients(
    network: Any,
    x: np.ndarray,
    y: Any,
    eps: float = 1e-6,
    rtol: float = 1e-6,
    atol: float = 1e-9,
    max_checks: int | None = None,
    seed: int = 0,
    sample_weight: Any = None,
    class_weight: Any = None,
) -> GradientReport:
    """Compare ``network.backward`` with central differences, tensor by tensor.

    Parameters
    ----------
    network : Network
    x, y : a batch (or one sample) and its targets
    eps : float
        Step of the central difference.
    rtol, atol : float
        A tensor passes if ``max_rel_error <= rtol`` or ``max_abs_error <= atol``
        (the latter for gradients that are all but zero).
    max_checks : int, optional
        Check at most this many randomly chosen elements per tensor (every
        element by default; large layers take two forward passes per element).
    seed : int
        Chooses the elements when ``max_checks`` is set.
    sample_weight, class_weight :
        Weight the loss as ``fit`` does (see ``chainrule.losses``).

    The network runs in its own mode (``network.training``, dropout masks
    repeated exactly between the two sides of each difference); the targets
    go through ``Loss.check_targets`` as in ``fit``.

    Returns
    -------
    GradientReport
        Per tensor (every parameter, then ``"input"``): elements checked,
        max absolute and relative error, and whether it passed.
    """
    # Work on a float64 copy: the network itself (its arrays, gradients,
    # random generators) is left exactly as it was.
    network = copy.deepcopy(network).astype(np.float64)
    x = np.array(x, dtype=np.float64)
    # The same target validation as fit and evaluate; a mistake is reported, not checked.
    y = network.loss.check_targets(network.predict(x).shape, y)  # raises for a mistake
    weights = {"sample_weight": sample_weight, "class_weight": class_weight}
    # Randomness inside the forward pass (dropout masks) must repeat exactly.
    rngs = [layer.rng for layer in network.layers if isinstance(getattr(layer, "rng", None),
                                                                 np.random.Generator)]
    states = [rng.bit_generator.state for rng in rngs]

    def loss_at() -> float:
        for rng, state in zip(rngs, states):
            rng.bit_generator.state = state
        return network.loss.forward(network.forward(x), y, **weights)

    loss_at()
    grad_input = network.backward()
    analytic = {name: g.copy() for name, g in network.gradients().items()}
    analytic["input"] = np.array(grad_input, dtype=np.float64)
    tensors = dict(network.parameters())
    tensors["input"] = x

    choose = np.random.default_rng(seed)
    checks = []
    for name, tensor in tensors.items():
        flat = tensor.reshape(-1)  # a view: writing to it perturbs the tensor
        indices = np.arange(flat.size)
        if max_checks is not None and flat.size > max_checks:
            indices = np.sort(choose.choice(flat.size, size=max_checks, replace=False))
        numeric = np.empty(len(indices))
        for k, i in enumerate(indices):
            saved = flat[i]
            flat[i] = saved + eps
            plus = loss_at()
            flat[i] = saved - eps
            minus = loss_at()
            flat[i] = saved
            numeric[k] = (plus - minus) / (2.0 * eps)
        exact = analytic[name].reshape(-1)[indices]
        abs_err = float(np.max(np.abs(exact - numeric), initial=0.0))
        scale = float(max(np.max(np.abs(exact), initial=0.0), np.max(np.abs(numeric), initial=0.0)))
        rel_err = abs_err / scale if scale > 0 else 0.0
        checks.append(GradientCheck(
            name=name, shape=tuple(tensor.shape), checked=len(indices),
            max_abs_error=abs_err, max_rel_error=rel_err,
            ok=bool(rel_err <= rtol or abs_err <= atol),
        ))
    return GradientReport(checks, rtol=rtol, atol=atol, eps=eps)
