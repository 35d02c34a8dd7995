"""How many BLAS threads the matrix products of a step use: the one place that decides.

Why this exists: OpenBLAS starts one thread per core, and its threads spin
while they wait for work. On an idle machine that is the fastest choice for
large products; on a machine where other processes compete for the cores the
spinning threads steal time from each other and from the main thread, and a
training run can become several times slower than on one thread (see
``benchmarks/RESULTS.md``). No fixed number is right everywhere, so by
default chainrule measures.

``threads="auto"`` (the default of ``fit`` and ``predict``):

- Small work is left to the BLAS, which keeps short products on one thread:
  below ``MIN_WORK`` multiply-adds per step (about 3 x ``batch_size`` x the
  Dense weights; a convolutional network counts as large and is measured).
- Otherwise a few steps run on ``N`` threads (the BLAS's own default,
  usually the number of cores; ``OPENBLAS_NUM_THREADS`` lowers it) and then a
  few on 1 (last, so that OpenBLAS's spinning workers have stopped when the
  chosen count takes over); the first step after each switch is not counted.
  The count with the lower *mean* time per sample over its latest ``WINDOW``
  steps wins: the chosen count's window includes its steps since the last
  probe, so the occasional very slow multi-threaded step of a busy machine
  (a thread that waited for a core) counts against it, as it does in the run.
- The choice follows changes in the machine's load. Between probes, when the
  chosen count's mean becomes ``SWITCH`` times another count's (as last
  measured), training switches to that one at once, without probing: a probe
  of the slow count is most expensive exactly when the machine is busy. Every
  count is measured afresh at least every ``RECHECK_SECONDS``, and no more
  often than keeps the probe's cost to about 1/``RECHECK_FACTOR`` of the time.
  A later ``fit`` of the same network and batch size goes on from the last decision.

An integer fixes the count (``threads=1`` is the safe choice on a machine
you share). The setting applies only inside ``fit``/``predict``: the BLAS's
previous thread count is restored afterwards.

Reproducibility: OpenBLAS's one- and multi-threaded products round
differently in the last bits of float32, so with ``"auto"`` two runs may
differ slightly where the measurements chose differently. Pass an integer
for bit-for-bit repeatable runs (and when resuming must repeat a run exactly).
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = [
    "ThreadPolicy", "blas_threads", "set_blas_threads", "thread_policy", "predict_policy",
    "step_work", "MIN_WORK",
]

#: Multiply-adds per step below which "auto" stays on one thread.
MIN_WORK = 4_000_000
#: Re-measure at least this often (seconds of training).
RECHECK_SECONDS = 5.0
#: ... but no more often than keeps the probe's extra cost under 1/RECHECK_FACTOR.
RECHECK_FACTOR = 25.0
#: Steps counted per candidate in one probe (after one uncounted warm-up step).
PROBE_STEPS = 3
#: Each count is judged by the mean time per sample of its latest WINDOW counted steps.
WINDOW = 8
#: Between probes, switch when the chosen count's mean exceeds another's by this factor.
SWITCH = 1.2

_controllers: list | None = None
_default: int | None = None


def _blas() -> list:
    """threadpoolctl's controllers of the BLAS libraries loaded in this process (found once)."""
    global _controllers, _default
    if _controllers is None:
        try:
            from threadpoolctl import ThreadpoolController

            _controllers = [c for c in ThreadpoolController().lib_controllers if c.user_api == "blas"]
        except Exception:  # noqa: BLE001 - no control over threads: leave the BLAS alone
            _controllers = []
        _default = max((c.num_threads for c in _controllers), default=1)
    return _controllers


def _caller_level() -> int:
    """The ``stacklevel`` that makes a warning from the caller of this name the first frame outside chainrule."""
    package = os.path.dirname(os.path.abspath(__file__))
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(package):
        frame, level = frame.f_back, level + 1
    return level


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the system tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def blas_threads() -> int:
    """The BLAS thread count chainrule treats as "all" (the BLAS's default when first asked)."""
    _blas()
    return int(_default or 1)


def set_blas_threads(n: int) -> None:
    """Set every loaded BLAS to ``n`` threads (a no-op where threadpoolctl cannot)."""
    for controller in _blas():
        controller.set_num_threads(int(n))


def _current() -> list[tuple[Any, int]]:
    return [(c, c.get_num_threads()) for c in _blas()]


class ThreadPolicy:
    """Chooses the BLAS thread count step by step; see the module docstring.

    Parameters
    ----------
    threads : "auto" or int >= 1
    work : float
        Multiply-adds of one step (decides whether "auto" measures at all).
    clock : callable
        Seconds, for the tests; ``time.perf_counter`` by default.
    """

    def __init__(self, threads: int | str = "auto", work: float = float("inf"),
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        all_threads = blas_threads()
        if threads == "auto":
            self.candidates = [1] if work < MIN_WORK or all_threads <= 1 else [1, all_threads]
        elif isinstance(threads, (int, np.integer)) and not isinstance(threads, bool) and threads >= 1:
            self.candidates = [int(threads)]
            cores = usable_cores()
            if threads > cores:
                warnings.warn(
                    f"threads={int(threads)} is more than the {cores} cores this process may use: "
                    f"BLAS threads beyond that wait for one another and slow every step down "
                    f"(use at most {cores}, or threads='auto')", RuntimeWarning,
                    stacklevel=_caller_level())
        else:
            raise ValueError(f"threads must be 'auto' or an integer >= 1, got {threads!r}")
        self.choice = self.candidates[0]
        #: (threads, seconds per sample) for each decision, for the curious and the tests.
        self.decisions: list[tuple[int, float]] = []
        self._plan: list[tuple[int, bool]] = []  # (threads, counted) for the coming steps
        self._samples: dict[int, list[float]] = {}
        self._next_probe = 0.0
        #: Samples per step (scales the per-sample times back to a step's).
        self.batch = 1
        if self.adaptive:
            self._start_probe()

    @property
    def adaptive(self) -> bool:
        return len(self.candidates) > 1

    def next_threads(self) -> int:
        """The thread count for the coming step."""
        return self._plan[0][0] if self._plan else self.choice

    def wrap(self, function: Callable[..., Any]) -> Callable[..., Any]:
        """``function(x, ...)`` run with the chosen thread count, timed per sample of ``x``.

        The BLAS's own setting is put back after every call, even one that
        raises, so nothing outside the call sees a changed thread count.
        """
        baseline = _current()

        def call(x: Any, *args: Any, **kwargs: Any) -> Any:
            threads = self.next_threads()
            changed = any(n != threads for _, n in baseline)
            if changed:
                set_blas_threads(threads)
            try:
                start = self.clock()
                result = function(x, *args, **kwargs)
                seconds = self.clock() - start
            finally:
                if changed:
                    for controller, n in baseline:
                        controller.set_num_threads(n)
            self.record(seconds, 1 if getattr(x, "ndim", 2) in (1, 3) else len(x))
            return result

        return call

    def record(self, seconds: float, samples: int) -> None:
        """Note that a step took ``seconds`` for ``samples`` samples; end a probe when it is done."""
        if not self.adaptive:
            return
        per_sample = seconds / max(samples, 1)
        now = self.clock()
        if self._plan:
            threads, counted = self._plan.pop(0)
            if counted:
                self._note(threads, per_sample)
            if not self._plan:
                self._decide(now)
        else:
            self._note(self.choice, per_sample)
            # The chosen count has become slower than another count was when last measured
            # (the load changed): switch to that one at once, without a probe, whose steps
            # on the slow count would cost most exactly when the machine is busy.
            other = min((n for n in self.candidates if n != self.choice), key=self._mean)
            if self._mean(self.choice) > SWITCH * self._mean(other):
                self.choice = other
                self.decisions.append((other, self._mean(other)))
            if now >= self._next_probe:  # due: measure every count afresh
                self._start_probe()

    def _note(self, threads: int, per_sample: float) -> None:
        window = self._samples.setdefault(threads, [])
        window.append(per_sample)
        del window[:-WINDOW]

    def _mean(self, threads: int) -> float:
        window = self._samples[threads]
        return sum(window) / len(window)

    def _start_probe(self) -> None:
        # Most threads first, one thread last: after a multi-threaded step OpenBLAS's
        # workers spin for a while, and ending on one thread lets them stop before the
        # steps that follow (which a busy machine would otherwise pay for).
        order = sorted(self.candidates, reverse=True)
        self._plan = [(n, counted) for n in order for counted in [False] + [True] * PROBE_STEPS]
        # The other counts are judged on this probe's steps alone (their older samples
        # may be many re-checks old); the chosen count keeps its steps since the last probe.
        for n in self.candidates:
            if n != self.choice:
                self._samples.pop(n, None)

    def _decide(self, now: float) -> None:
        # The mean, not the median: on a busy machine a multi-threaded step is often as
        # fast as on an idle one but now and then ten times slower (a thread of it waited
        # for a core), and those stalls are what the run pays. Each count's window holds
        # its latest steps, the chosen count's from its run since the last probe.
        means = {n: self._mean(n) for n in self.candidates}
        self.choice = min(means, key=means.__getitem__)
        best = means[self.choice]
        self.decisions.append((self.choice, best))
        # The probe ran each loser for 1 + PROBE_STEPS steps: keep that a small share.
        extra = sum((m - best) * (1 + PROBE_STEPS) for m in means.values())
        self._next_probe = now + max(RECHECK_SECONDS, RECHECK_FACTOR * extra * self.batch)

    def map(self, function: Callable[[np.ndarray], np.ndarray], x: np.ndarray, rows: int) -> np.ndarray:
        """``function`` applied to ``x`` in chunks of ``rows`` rows, each timed as a step."""
        self.batch = rows
        call = self.wrap(function)
        return np.concatenate([call(x[i : i + rows]) for i in range(0, len(x), rows)])


def step_work(network: Any, batch_size: int) -> float:
    """Multiply-adds of one training step: about 3 per weight per sample (forward, two backward).

    Exact for ``Dense`` layers; a layer that reuses its weights across the
    input (``Conv2D``: once per output position) makes the count unknown,
    and so infinite: such a step is measured rather than assumed small.
    """
    from .layers import Dense

    weights = 0
    for layer in network.layers:
        if "weight" in layer.params:
            if type(layer) is not Dense and layer.params["weight"].ndim > 2:
                return float("inf")
            weights += layer.params["weight"].size
    return 3.0 * weights * batch_size


def thread_policy(threads: int | str | None, network: Any, batch_size: int) -> ThreadPolicy | None:
    """The policy ``fit`` uses for ``threads`` (``None``: leave the BLAS as it is)."""
    if threads is None:
        return None
    policy = ThreadPolicy(threads, work=step_work(network, batch_size))
    if threads == "auto" and not policy.adaptive:
        return None  # small steps: BLAS keeps small products on one thread by itself
    policy.batch = batch_size
    # A later fit of the same network and batch size (fit called once per epoch, say)
    # goes on from the last decision and its re-check timer instead of probing afresh.
    previous = getattr(network, "_thread_policy", None)
    if previous is not None and previous.candidates == policy.candidates \
            and previous.batch == batch_size:
        return previous
    network._thread_policy = policy
    return policy


#: Rows per chunk when ``predict`` measures (large inputs only).
PREDICT_ROWS = 1024


def predict_policy(threads: int | str | None, network: Any, rows: int) -> ThreadPolicy | None:
    """The policy for ``predict`` on ``rows`` rows, or None to run it in one piece as it is.

    "auto" measures only on inputs of at least 8 chunks of ``PREDICT_ROWS``
    rows whose forward pass is large enough to share (``MIN_WORK``); smaller
    inputs are left to the BLAS as it is set.
    """
    if threads is None or rows == 0 or (threads == "auto" and rows < 8 * PREDICT_ROWS):
        return None  # small inputs: left as they are (BLAS keeps small products on one thread)
    weights = step_work(network, 1) / 3.0
    return ThreadPolicy(threads, work=weights * PREDICT_ROWS)
