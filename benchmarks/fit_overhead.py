"""What fit costs beyond a bare train_step loop over the same shuffled batches.

    python benchmarks/fit_overhead.py

Both train the benchmark MLP (784-256-128-10, relu, cross-entropy, SGD) for two
epochs on the bundled digits; repetitions alternate and medians are reported.
"""

import time

import numpy as np

import chainrule as cr

EPOCHS, REPEATS = 2, 5


def network():
    return cr.Network.from_sizes([784, 256, 128, 10], loss="cross_entropy",
                                 optimizer=cr.SGD(lr=0.01), seed=0)


def bare_loop(x, y, batch_size):
    net, rng = network(), np.random.default_rng(0)
    start = time.perf_counter()
    for _ in range(EPOCHS):
        order = rng.permutation(len(x))
        for i in range(0, len(x), batch_size):
            rows = order[i : i + batch_size]
            net.train_step(x[rows], y[rows])
    return time.perf_counter() - start


def through_fit(x, y, batch_size):
    net = network()
    start = time.perf_counter()
    net.fit(x, y, epochs=EPOCHS, batch_size=batch_size, verbose=0, seed=0)
    return time.perf_counter() - start


def main():
    (x, y), _ = cr.datasets.load_mnist()
    print("batch   loop samples/s   fit samples/s   fit speed / loop speed")
    for batch_size in (32, 128, 512):
        loop, fit = [], []
        for _ in range(REPEATS):
            loop.append(bare_loop(x, y, batch_size))
            fit.append(through_fit(x, y, batch_size))
        n = EPOCHS * len(x)
        print(f"{batch_size:5d}   {n / np.median(loop):14,.0f}   {n / np.median(fit):13,.0f}"
              f"   {np.median(loop) / np.median(fit):22.3f}")


if __name__ == "__main__":
    main()
