import os

# One BLAS thread for the tests: results are the same, and on a busy two-core
# machine OpenBLAS's spinning threads can make small products many times slower.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
