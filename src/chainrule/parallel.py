"""Two threads for the large matrix products of a training step (opt-in, off by default).

Plumbing, not math: ``threaded_matmul(a, b)`` is ``a @ b``, computed in two
halves on two cores when enabled and when that pays. ``Dense`` calls it;
``Network.train_step`` opens ``with threaded_matmul:`` around each step.

It is off by default: how many threads the products use is decided by
``chainrule.threads`` (``fit(threads="auto")``), which measures the BLAS's
own threads against one thread as training goes. The split is kept as an
alternative whose rounding does not depend on the load (each half is a
one-thread BLAS call); ``tests/test_performance_paths.py`` checks that it
computes the same products. Enable it with
``chainrule.parallel.threaded_matmul.enabled = True``; the NumPy path of
``Network.train_step`` uses it, the kernel path (``chainrule.kernels``) does
not. No speed figure is published for it: no kept benchmark measures it.
"""

from __future__ import annotations

import os
import threading

import numpy as np

__all__ = ["threaded_matmul"]


_CORES = os.cpu_count() or 1


class _ThreadedMatmul:
    """``a @ b`` with the rows of the result split across two threads.

    NumPy releases the GIL inside a matrix product, so a helper thread can
    compute the second half of the rows while the calling thread computes the
    first. Each half is a single-threaded BLAS call: on the thin products of a
    training step, BLAS's own threads cost more than they bring (they spin
    while they wait, which on a busy machine is ruinous). Every output element
    is still computed by one BLAS call, so results do not vary from run to run.

    Products are split only when ``enabled`` is set (see the module
    docstring), inside ``with threaded_matmul:`` (as in
    ``Network.train_step``), when the product is large enough to repay the
    hand-off, and when ``threadpoolctl`` can hold the BLAS at one thread until
    the ``with`` block ends. Anywhere else this is plain ``np.matmul``.
    """

    #: Multiply-adds below which a product is not worth handing off.
    min_work = 2_000_000

    def __init__(self) -> None:
        #: Split products across two threads (needs two cores; off by default).
        self.enabled = False
        self._depth = 0
        self._blas: list | None = None  # threadpoolctl's BLAS controllers, found on first use
        self._saved: list | None = None  # (controller, threads) to restore on leaving
        self._reset()
        os.register_at_fork(after_in_child=self._reset)  # threads do not survive a fork

    def _reset(self) -> None:
        self._helper: _Helper | None = None
        self._busy = threading.Lock()  # one split at a time; others compute unsplit

    def __enter__(self) -> None:
        self._depth += 1

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        if self._depth == 0 and self._saved is not None:
            for blas, threads in self._saved:
                blas.set_num_threads(threads)
            self._saved = None

    def __call__(self, a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        if (
            self._depth and self.enabled and _CORES >= 2
            and a.ndim == 2 and b.ndim == 2 and a.shape[0] >= 2
            and a.shape[0] * a.shape[1] * b.shape[1] >= self.min_work
            and self._blas_single_threaded() and self._busy.acquire(blocking=False)
        ):
            started = False
            try:
                if out is None:
                    out = np.empty((a.shape[0], b.shape[1]), dtype=np.result_type(a, b))
                half = a.shape[0] // 2
                if self._helper is None:
                    self._helper = _Helper()
                self._helper.start(a[half:], b, out[half:])
                started = True
                np.matmul(a[:half], b, out=out[:half])
            finally:
                # Even when interrupted (Ctrl-C), wait for the helper's half:
                # it must not finish into a buffer a later call is using.
                if started:
                    self._helper.wait()
                self._busy.release()
            return out
        return np.matmul(a, b, out=out)

    def _blas_single_threaded(self) -> bool:
        if self._saved is None:
            if self._blas is None:
                self._blas = _blas_controllers()
            if not self._blas:
                self.enabled = False  # no way to stop BLAS threading: leave it to BLAS
                return False
            self._saved = [(blas, blas.num_threads) for blas in self._blas]
            for blas, threads in self._saved:
                if threads != 1:
                    blas.set_num_threads(1)
        return True


class _Helper:
    """A daemon thread that computes one ``np.matmul(a, b, out=out)`` at a time."""

    def __init__(self) -> None:
        self._go, self._done = threading.Lock(), threading.Lock()
        self._go.acquire()
        self._done.acquire()
        self._task: tuple = ()
        self._error: BaseException | None = None
        threading.Thread(target=self._run, name="chainrule-matmul", daemon=True).start()

    def _run(self) -> None:
        while True:
            self._go.acquire()
            try:
                np.matmul(*self._task[:2], out=self._task[2])
            except BaseException as error:  # noqa: BLE001 - handed to the waiting thread
                self._error = error
            self._task = ()
            self._done.release()

    def start(self, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
        self._task = (a, b, out)
        self._go.release()

    def wait(self) -> None:
        self._done.acquire()
        if self._error is not None:
            error, self._error = self._error, None
            raise error


def _blas_controllers() -> list:
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return []
    return [lib for lib in ThreadpoolController().lib_controllers if lib.user_api == "blas"]


#: The one instance Dense uses; ``Network.train_step`` opens it for each step.
threaded_matmul = _ThreadedMatmul()
