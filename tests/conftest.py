import os

# One BLAS thread for the tests: results are the same, and on a busy two-core
# machine OpenBLAS's spinning threads can make small products many times slower.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(params=["numpy", "numba"])
def kernel_path(request):
    """Run the test once on each step path: NumPy, then the numba kernels (skipped without numba)."""
    from chainrule import kernels

    if request.param == "numba" and not kernels.available():
        pytest.skip("the numba kernels need the 'fast' extra")
    saved = kernels.use(request.param)
    yield request.param
    kernels.use(saved)
