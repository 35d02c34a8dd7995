"""Memory a network needs, and memory this process can still get, compared before allocating.

A network of ``784, 2000000, 10`` asks for 6.3 GB of float32 weights, as many
again for their gradients, and (while its weights are drawn) a float64 copy
of its largest layer; without a check the kernel's OOM killer ends the
process without a word. ``check_mlp_memory`` (called by
``Network.from_sizes`` and by ``chainrule train``) and ``check_memory``
refuse such a network up front with ``InsufficientMemoryError``, whose
message states the estimate and what is available.

What is available is the smallest of

- ``MemAvailable`` in ``/proc/meminfo`` (the kernel's estimate of memory
  that can be given out without swapping);
- the address-space limit (``RLIMIT_AS``, ``ulimit -v``) less the address
  space this process already uses (``VmSize`` in ``/proc/self/status``);
- the container's limit (cgroup v2 ``memory.max``) less its current use.

Whatever cannot be read (another operating system) is left out; where none
can be read, nothing is refused.
"""

from __future__ import annotations

import resource
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import InsufficientMemoryError

__all__ = [
    "MemoryEstimate",
    "available_memory",
    "check_memory",
    "check_mlp_memory",
    "estimate_mlp_memory",
    "format_bytes",
]

#: fit's default batch size, used where no batch size is given.
DEFAULT_BATCH_SIZE = 32


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a network needs, by kind.

    ``temporary`` is memory needed only while the network is built (a
    float64 draw of the largest weight before it is cast).
    """

    parameters: int
    gradients: int
    optimizer_state: int
    activations: int
    temporary: int = 0
    batch_size: int = DEFAULT_BATCH_SIZE

    @property
    def total(self) -> int:
        return (self.parameters + self.gradients + self.optimizer_state + self.activations
                + self.temporary)

    def __str__(self) -> str:
        parts = [f"parameters {format_bytes(self.parameters)}",
                 f"gradients {format_bytes(self.gradients)}"]
        if self.optimizer_state:
            parts.append(f"optimizer state {format_bytes(self.optimizer_state)}")
        parts.append(f"activations of a batch of {self.batch_size} "
                     f"{format_bytes(self.activations)}")
        if self.temporary:
            parts.append(f"while building {format_bytes(self.temporary)}")
        return f"{format_bytes(self.total)} ({', '.join(parts)})"


def format_bytes(n: int | float) -> str:
    """``1.2 GB``-style text (powers of 1000, as ``free -h`` does not, but as disks and RAM are sold)."""
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


def optimizer_slots(optimizer: Any) -> int:
    """Arrays of state the optimizer keeps per parameter: Adam 2, SGD with momentum 1, plain SGD 0."""
    from .optimizers import Adam, Optimizer, get_optimizer

    if optimizer is None:
        return 0
    if not isinstance(optimizer, Optimizer):
        try:
            optimizer = get_optimizer(optimizer)
        except (TypeError, ValueError):
            return 2  # an optimizer chainrule does not know: assume Adam's two moments
    if isinstance(optimizer, Adam):
        return 2
    probe = optimizer._new_state(np.zeros(1))
    return len(probe)


def estimate_mlp_memory(
    sizes: Sequence[int],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    optimizer: Any = None,
    dtype: str | np.dtype = "float32",
    bias: bool = True,
    dropout: bool = False,
) -> MemoryEstimate:
    """What training a ``Network.from_sizes(sizes)`` network needs, in bytes.

    Parameters: ``sum(n_in * n_out + n_out)`` elements; gradients: as many;
    optimizer state: that many per slot (``optimizer_slots``). Activations of
    one batch: the input, and per layer its output, its activation's output,
    a dropout mask where there is dropout, and the gradient flowing back,
    each ``batch_size x width`` elements. Building draws each weight in
    float64 before casting it: the largest such draw is ``temporary``.
    """
    itemsize = np.dtype(dtype).itemsize
    sizes = [int(s) for s in sizes]
    weights = [n_in * n_out for n_in, n_out in zip(sizes[:-1], sizes[1:])]
    count = sum(weights) + (sum(sizes[1:]) if bias else 0)
    per_sample = sizes[0] + sum((4 if dropout else 3) * width for width in sizes[1:])
    return MemoryEstimate(
        parameters=count * itemsize,
        gradients=count * itemsize,
        optimizer_state=count * itemsize * optimizer_slots(optimizer),
        activations=batch_size * per_sample * itemsize,
        temporary=max(weights, default=0) * 8,
        batch_size=batch_size,
    )


def available_memory() -> tuple[int | None, str]:
    """``(bytes, where that figure comes from)``: the smallest limit this process is under.

    ``(None, "unknown")`` where no limit can be read.
    """
    found: list[tuple[int, str]] = []
    meminfo = _read_fields("/proc/meminfo")
    if "MemAvailable" in meminfo:
        found.append((meminfo["MemAvailable"], "MemAvailable in /proc/meminfo"))
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        used = _read_fields("/proc/self/status").get("VmSize", 0)
        found.append((max(soft - used, 0),
                      f"the address-space limit (RLIMIT_AS, ulimit -v) of {format_bytes(soft)} "
                      f"less the {format_bytes(used)} this process already uses"))
    cgroup = _cgroup_headroom()
    if cgroup is not None:
        found.append(cgroup)
    if not found:
        return None, "unknown"
    return min(found)


def check_memory(needed: int | MemoryEstimate, what: str, hint: str = "") -> None:
    """Raise ``InsufficientMemoryError`` if ``needed`` bytes exceed ``available_memory()``.

    The message names ``what``, the estimate (with its breakdown for a
    ``MemoryEstimate``), what is available and where that figure comes from.
    """
    total = needed.total if isinstance(needed, MemoryEstimate) else int(needed)
    available, source = available_memory()
    if available is None or total <= available:
        return
    described = str(needed) if isinstance(needed, MemoryEstimate) else format_bytes(total)
    raise InsufficientMemoryError(
        f"{what} needs about {described}, but only {format_bytes(available)} is available "
        f"({source}){'; ' + hint if hint else ''}"
    )


def check_mlp_memory(
    sizes: Sequence[int],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    optimizer: Any = None,
    dtype: str | np.dtype = "float32",
    bias: bool = True,
    dropout: bool = False,
) -> MemoryEstimate:
    """``estimate_mlp_memory`` then ``check_memory``; returns the estimate.

    Raises ``InsufficientMemoryError`` (a ``MemoryError`` and a ``ValueError``)
    saying what the layers need and what is available.
    """
    estimate = estimate_mlp_memory(sizes, batch_size=batch_size, optimizer=optimizer,
                                   dtype=dtype, bias=bias, dropout=dropout)
    widths = ",".join(str(int(s)) for s in sizes)
    check_memory(estimate, f"a network of layers {widths} ({np.dtype(dtype).name})",
                 hint="use narrower layers or a smaller batch")
    return estimate


# -- reading the limits -------------------------------------------------------------------


def _read_fields(path: str) -> dict[str, int]:
    """``Key: 123 kB`` lines of a /proc file, in bytes."""
    fields = {}
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            for line in f:
                key, _, rest = line.partition(":")
                parts = rest.split()
                if len(parts) == 2 and parts[1] == "kB" and parts[0].isdigit():
                    fields[key] = int(parts[0]) * 1024
    except OSError:
        pass
    return fields


def _cgroup_headroom() -> tuple[int, str] | None:
    """cgroup v2 ``memory.max - memory.current`` of this process's cgroup, if it has a limit."""
    try:
        with open("/proc/self/cgroup", encoding="ascii", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("0::"):
            folder = "/sys/fs/cgroup" + line[3:].rstrip("/")
            break
    else:
        return None
    try:
        with open(f"{folder}/memory.max", encoding="ascii") as f:
            limit_text = f.read().strip()
        if not limit_text.isdigit():
            return None  # "max": no limit
        with open(f"{folder}/memory.current", encoding="ascii") as f:
            current = int(f.read().strip())
    except (OSError, ValueError):
        return None
    limit = int(limit_text)
    if limit >= 2**62:
        return None
    return max(limit - current, 0), f"the container's memory limit (cgroup memory.max) of {format_bytes(limit)}"

