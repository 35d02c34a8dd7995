"""``--threads N`` for the benchmarks that compare both libraries on N threads each.

Imported before NumPy, so that the BLAS starts with that many threads; not
part of the library.
"""

from __future__ import annotations

import os


def pin_threads(argv: list[str], default: int = 2) -> int:
    """Read ``--threads N`` (or ``--threads=N``) from ``argv`` and set the BLAS/OpenMP
    variables to it, so that NumPy's BLAS uses as many threads as PyTorch will be given.

    Must run before NumPy is imported. Returns N (``default`` when not given).
    """
    threads = default
    for i, arg in enumerate(argv):
        if arg == "--threads" and i + 1 < len(argv):
            threads = int(argv[i + 1])
        elif arg.startswith("--threads="):
            threads = int(arg.split("=", 1)[1])
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(threads)
    return threads
