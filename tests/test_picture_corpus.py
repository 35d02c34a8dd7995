"""A small version of benchmarks/picture_corpus.py: one network reads MNIST test digits
rendered as picture files many ways (tests/picture_corpus.py) about as well as plainly drawn ones."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("PIL")

import chainrule as cr  # noqa: E402
import picture_corpus as corpus  # noqa: E402
from chainrule.datasets import load_mnist  # noqa: E402

N = 25


@pytest.fixture(scope="module")
def accuracies(tmp_path_factory):
    (x, y), (x_test, y_test) = load_mnist()
    network = cr.Network.from_sizes([784, 64, 10], loss="cross_entropy",
                                    optimizer=cr.Adam(lr=2e-3), seed=0)
    network.fit(x[:6000], y[:6000], epochs=3, batch_size=64, seed=0, verbose=0)
    digits, labels = x_test[:N], y_test[:N]
    as_is = float(np.mean(network.predict(digits).argmax(axis=1) == labels))
    return as_is, corpus.accuracy_by_rendering(network, digits, labels,
                                               tmp_path_factory.mktemp("corpus"))


def test_plain_pictures_read_as_mnist(accuracies):
    as_is, results = accuracies
    assert as_is >= 0.85  # the quick network is a real classifier
    assert results["plain"] >= as_is - 1 / N


@pytest.mark.parametrize("rendering", [r for r in corpus.RENDERINGS if r != "plain"])
def test_every_rendering_within_a_few_digits_of_plain(accuracies, rendering):
    # Before issue 9's fixes, frames, shadows, noise and float or 16-bit pictures
    # read at 0-58% here (benchmarks/picture_corpus.md has the full table).
    _, results = accuracies
    assert results[rendering] >= results["plain"] - 3 / N, results
