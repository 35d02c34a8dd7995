"""The fast paths of a training step compute the same numbers as the plain math.

Correctness only; timings live in benchmarks/.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import chainrule as cr
from chainrule import kernels
from chainrule.parallel import threaded_matmul


@pytest.fixture(autouse=True)
def numpy_path():
    """These tests compare NumPy with NumPy, bit for bit; the kernels are compared in test_kernels.py."""
    saved = kernels.use("numpy")
    yield
    kernels.use(saved)


def _net(sizes=(20, 16, 8, 3), loss="cross_entropy", seed=0, dtype="float32"):
    return cr.Network.from_sizes(
        list(sizes), activation="relu", loss=loss, optimizer=cr.SGD(lr=0.1), seed=seed, dtype=dtype
    )


def _data(n=32, features=20, classes=3, seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, features)).astype(np.float32), rng.integers(0, classes, n)


def _manual_step(net, x, y):
    """forward, loss, backward, then p -= g * lr by hand, the way a reader would write it."""
    loss = net.loss.forward(net.forward(x), y)
    net.backward()
    for name, p in net.parameters().items():
        p -= net.gradients()[name] * net.optimizer.lr
    return loss


@pytest.mark.parametrize("batch", [None, 1, 7, 32])
def test_train_step_is_bit_identical_to_manual_step(batch):
    x, y = _data()
    a, b = _net(), _net()
    for step in range(4):
        if batch is None:  # one sample, 1-D
            xb, yb = x[step], y[step]
        else:
            xb, yb = x[step : step + batch], y[step : step + batch]
        la = a.train_step(xb, yb)
        lb = _manual_step(b, xb, yb)
        assert la == lb
        for name, p in a.parameters().items():
            assert np.array_equal(p, b.parameters()[name]), name
            assert np.array_equal(a.gradients()[name], b.gradients()[name]), name


def test_one_sample_weight_gradient_is_the_outer_product():
    dense = cr.Dense(5, 4, seed=0, dtype="float64")
    x = np.arange(5.0) - 2.0
    g = np.array([0.5, -1.0, 2.0, 0.0])
    dense.forward(x)
    dense.backward(g)
    assert np.array_equal(dense.grads["weight"], np.outer(g, x))
    assert np.array_equal(dense.grads["bias"], g)


def test_squared_error_one_sample_matches_manual_step():
    rng = np.random.default_rng(0)
    x = rng.random((10, 3), dtype=np.float32)
    y = (x.sum(axis=1, keepdims=True) > 1.5).astype(np.float32)
    a, b = _net((3, 4, 1), loss="squared_error"), _net((3, 4, 1), loss="squared_error")
    for xi, yi in zip(x, y):
        assert a.train_step(xi, yi) == _manual_step(b, xi, yi)
    for name, p in a.parameters().items():
        assert np.array_equal(p, b.parameters()[name])


def test_returned_arrays_are_not_overwritten_by_later_steps():
    x, y = _data()
    net = _net()
    out = net.forward(x[:8])
    pred = net.predict(x[:8])
    net.loss.forward(out, y[:8])
    grad_in = net.backward()
    kept = out.copy(), pred.copy(), grad_in.copy()
    grads = {k: v.copy() for k, v in net.gradients().items()}
    for i in range(3):
        net.train_step(x[i * 8 : i * 8 + 8], y[i * 8 : i * 8 + 8])
    assert np.array_equal(out, kept[0])
    assert np.array_equal(pred, kept[1])
    assert np.array_equal(grad_in, kept[2])
    # gradients() hands out the live buffers: they hold the latest step's values
    assert any(not np.array_equal(net.gradients()[k], grads[k]) for k in grads)


def test_same_seed_same_training():
    x, y = _data(64)
    a, b = _net(seed=3), _net(seed=3)
    for i in range(0, 64, 16):
        assert a.train_step(x[i : i + 16], y[i : i + 16]) == b.train_step(x[i : i + 16], y[i : i + 16])
    for name, p in a.parameters().items():
        assert np.array_equal(p, b.parameters()[name])


def test_split_products_agree_with_unsplit():
    pytest.importorskip("threadpoolctl")
    x, y = _data(256, features=300)
    sizes = (300, 200, 100, 3)
    a, b = _net(sizes, seed=5), _net(sizes, seed=5)
    saved = threaded_matmul.enabled
    try:
        for i in range(0, 256, 128):
            threaded_matmul.enabled = True
            la = a.train_step(x[i : i + 128], y[i : i + 128])
            threaded_matmul.enabled = False
            lb = b.train_step(x[i : i + 128], y[i : i + 128])
            assert la == pytest.approx(lb, rel=1e-6)
    finally:
        threaded_matmul.enabled = saved
    for name, p in a.parameters().items():
        np.testing.assert_allclose(p, b.parameters()[name], rtol=1e-5, atol=1e-6)


def test_split_is_off_by_default_and_plain_matmul_outside_a_step():
    assert threaded_matmul.enabled is False
    a = np.arange(12.0).reshape(3, 4)
    assert np.array_equal(threaded_matmul(a, a.T), a @ a.T)


# -- the thread policy (chainrule.threads) ------------------------------------------------

from chainrule import threads as threads_module  # noqa: E402


class _FakeBlas:
    """Stands in for threadpoolctl: a thread count and a clock that a fake step advances."""

    def __init__(self, monkeypatch, default=2):
        self.threads = default
        self.now = 0.0
        self.history = []
        monkeypatch.setattr(threads_module, "blas_threads", lambda: default)
        monkeypatch.setattr(threads_module, "set_blas_threads", self.set)
        monkeypatch.setattr(threads_module, "_current", lambda: [(self, self.threads)])

    def set(self, n):
        self.threads = n

    def set_num_threads(self, n):  # the controller interface used to restore
        self.threads = n

    def clock(self):
        return self.now


def _step_timed(fake, cost):
    """A fake training step whose duration per sample is ``cost(threads)``."""

    def step(x):
        fake.history.append(fake.threads)
        fake.now += cost(fake.threads) * len(x)
        return len(x)

    return step


def test_auto_picks_the_faster_thread_count_and_restores_the_setting(monkeypatch):
    fake = _FakeBlas(monkeypatch)
    policy = threads_module.ThreadPolicy("auto", work=1e9, clock=fake.clock)
    step = policy.wrap(_step_timed(fake, lambda n: 1.0 if n == 1 else 0.5))
    batch = np.zeros((4, 1))
    for _ in range(20):
        step(batch)
        assert fake.threads == 2  # the BLAS's own setting is back after every step
    # the probe: one uncounted step then three counted ones on each candidate, one thread last
    assert fake.history[:8] == [2, 2, 2, 2, 1, 1, 1, 1]
    assert policy.decisions[0] == (2, 0.5)
    assert fake.history[8:] == [2] * 12


def test_auto_follows_a_change_of_load(monkeypatch):
    fake = _FakeBlas(monkeypatch)
    policy = threads_module.ThreadPolicy("auto", work=1e9, clock=fake.clock)
    load = {"busy": False}
    # idle: 2 threads twice as fast; busy: 2 threads ten times slower than 1
    cost = lambda n: (1.0 if n == 1 else 10.0) if load["busy"] else (1.0 if n == 1 else 0.5)  # noqa: E731
    step = policy.wrap(_step_timed(fake, cost))
    batch = np.zeros((1, 1))
    for _ in range(10):
        step(batch)
    assert policy.choice == 2
    load["busy"] = True
    for _ in range(30):
        step(batch)
    assert policy.choice == 1  # the chosen count became 20x slower: measured again, switched
    assert [d[0] for d in policy.decisions] == [2, 1]
    # after the switch the probe of 2 threads is repeated only rarely: mostly 1 thread
    before = len(fake.history)
    for _ in range(100):
        step(batch)
    assert fake.history[before:].count(1) >= 90


def test_auto_counts_the_rare_stalls_of_a_busy_machine(monkeypatch):
    """On a busy machine a two-thread step is usually fast but every fourth one waits for a
    core (20x slower): its median looks best, its mean (what a run pays) is worse than one
    thread's. auto must end on one thread and stay there."""
    fake = _FakeBlas(monkeypatch)
    policy = threads_module.ThreadPolicy("auto", work=1e9, clock=fake.clock)
    count = {2: 0}

    def cost(n):
        if n == 1:
            return 1.0
        count[2] += 1
        return 10.0 if count[2] % 4 == 0 else 0.5

    step = policy.wrap(_step_timed(fake, cost))
    for _ in range(60):
        step(np.zeros((1, 1)))
    assert policy.choice == 1
    before = len(fake.history)
    for _ in range(100):
        step(np.zeros((1, 1)))
    assert fake.history[before:].count(1) >= 90


def test_auto_rechecks_after_its_interval(monkeypatch):
    fake = _FakeBlas(monkeypatch)
    policy = threads_module.ThreadPolicy("auto", work=1e9, clock=fake.clock)
    step = policy.wrap(_step_timed(fake, lambda n: 0.01 if n == 1 else 0.02))
    for _ in range(8):
        step(np.zeros((1, 1)))
    assert len(policy.decisions) == 1 and policy.choice == 1
    steps = int(threads_module.RECHECK_SECONDS / 0.01) + 10
    for _ in range(steps):
        step(np.zeros((1, 1)))
    assert len(policy.decisions) == 2  # measured again once RECHECK_SECONDS had passed


def test_small_steps_stay_on_one_thread_and_fixed_counts_are_kept(monkeypatch):
    _FakeBlas(monkeypatch, default=4)
    monkeypatch.setattr(threads_module, "usable_cores", lambda: 4)  # a four-core machine
    assert threads_module.ThreadPolicy("auto", work=threads_module.MIN_WORK - 1).candidates == [1]
    assert threads_module.ThreadPolicy("auto", work=threads_module.MIN_WORK).candidates == [1, 4]
    assert threads_module.ThreadPolicy(3).candidates == [3]
    for bad in ("fast", 0, -1, 1.5, True):
        with pytest.raises(ValueError, match="threads must be 'auto' or an integer >= 1"):
            threads_module.ThreadPolicy(bad)


def test_fixed_threads_apply_during_the_step_only_even_when_it_raises():
    pytest.importorskip("threadpoolctl")
    blas = threads_module._blas()
    if not blas:
        pytest.skip("threadpoolctl finds no BLAS to control in this NumPy build")
    before = [c.get_num_threads() for c in blas]
    target = 2 if before[0] != 2 else 1
    seen = []

    def step(x):
        seen.append([c.get_num_threads() for c in blas])
        if len(seen) == 2:
            raise RuntimeError("boom")
        return x

    wrapped = threads_module.ThreadPolicy(target).wrap(step)
    wrapped(np.zeros((2, 1)))
    with pytest.raises(RuntimeError, match="boom"):
        wrapped(np.zeros((2, 1)))
    assert seen == [[target] * len(blas)] * 2
    assert [c.get_num_threads() for c in blas] == before


def test_fit_threads_argument_is_checked_and_gives_the_same_training():
    x, y = _data(64)
    a, b, c = _net(seed=2), _net(seed=2), _net(seed=2)
    ha = a.fit(x, y, epochs=2, batch_size=16, seed=0, verbose=0, threads=1)
    hb = b.fit(x, y, epochs=2, batch_size=16, seed=0, verbose=0, threads="auto")
    hc = c.fit(x, y, epochs=2, batch_size=16, seed=0, verbose=0, threads=None)
    assert ha["loss"] == hb["loss"] == hc["loss"]  # small steps: one thread either way
    with pytest.raises(ValueError, match="threads must be"):
        _net().fit(x, y, epochs=1, verbose=0, threads="many")


def test_fit_batch_size_one_sends_vectors_through_the_one_sample_path():
    x, y = _data(12)
    a, b = _net(seed=4), _net(seed=4)
    shapes = []
    first = a.layers[0]
    original = first.forward

    def spy(inputs, *args, **kwargs):
        shapes.append(inputs.shape)
        return original(inputs, *args, **kwargs)

    first.forward = spy
    history = a.fit(x, y, epochs=1, batch_size=1, shuffle=False, verbose=0)
    assert set(shapes) == {(20,)}
    losses = [b.train_step(x[i], y[i]) for i in range(12)]
    assert history["loss"][0] == pytest.approx(np.mean(losses), rel=1e-6)
    for name, p in a.parameters().items():
        assert np.array_equal(p, b.parameters()[name]), name


def test_predict_on_large_inputs_in_chunks_matches_one_piece():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8 * threads_module.PREDICT_ROWS + 5, 20)).astype(np.float32)
    net = _net()
    whole = net.predict(x, threads=None)
    chunked = net.predict(x, threads=1)  # one thread, in chunks of PREDICT_ROWS rows
    assert np.array_equal(whole, chunked)
    np.testing.assert_allclose(net.predict(x), whole, rtol=1e-5, atol=1e-6)  # "auto"


def test_cli_train_threads_option(monkeypatch, tmp_path, capsys):
    from chainrule import training
    from chainrule.cli import build_parser, main

    parser = build_parser()
    assert parser.parse_args(["train"]).threads == "auto"
    assert parser.parse_args(["train", "--threads", "AUTO"]).threads == "auto"
    assert parser.parse_args(["train", "--threads", "3"]).threads == 3
    for bad in ("0", "two", "-1"):
        with pytest.raises(SystemExit):
            parser.parse_args(["train", "--threads", bad])
    assert "--threads" in capsys.readouterr().err
    seen = []
    original = training.fit

    def spy(*args, **kwargs):
        seen.append(kwargs.get("threads"))
        return original(*args, **kwargs)

    monkeypatch.setattr(training, "fit", spy)
    out = tmp_path / "m.safetensors"
    code = main(["train", "--threads", "1", "--epochs", "1", "--limit", "300", "--validation", "0",
                 "--layers", "784,8,10", "--shift", "0", "--out", str(out), "--quiet"])
    assert code == 0 and seen == [1] and out.exists()


def test_step_work_counts_dense_weights_and_measures_convolutions():
    from chainrule.layers import Conv2D, Flatten

    dense = _net(sizes=(20, 16, 8, 3))
    assert threads_module.step_work(dense, 32) == 3 * (20 * 16 + 16 * 8 + 8 * 3) * 32
    cnn = cr.Network([Conv2D(1, 2, 3, seed=0), cr.ReLU(), Flatten(), cr.Dense(2 * 4 * 4, 3, seed=0)],
                     loss="cross_entropy")
    assert threads_module.step_work(cnn, 1) == float("inf")  # unknown: measured, not assumed small


def test_a_later_fit_goes_on_from_the_last_decision(monkeypatch):
    _FakeBlas(monkeypatch, default=2)
    net = _net(sizes=(2000, 1000, 3))  # 3 * 2M weights * batch: measured
    first = threads_module.thread_policy("auto", net, 32)
    assert first.adaptive and threads_module.thread_policy("auto", net, 32) is first
    assert threads_module.thread_policy("auto", net, 64) is not first  # another batch size
    assert threads_module.thread_policy(1, net, 32).candidates == [1]
    assert threads_module.thread_policy(None, net, 32) is None


def test_auto_judges_a_probed_count_on_that_probe_alone(monkeypatch):
    """Busy (two threads 10x slower), then idle (two threads twice as fast as one): the
    first re-check after the change must switch back, not average in the busy samples."""
    fake = _FakeBlas(monkeypatch)
    policy = threads_module.ThreadPolicy("auto", work=1e9, clock=fake.clock)
    load = {"busy": True}
    cost = lambda n: (1.0 if n == 1 else 10.0) if load["busy"] else (1.0 if n == 1 else 0.5)  # noqa: E731
    step = policy.wrap(_step_timed(fake, cost))
    for _ in range(20):
        step(np.zeros((1, 1)))
    assert policy.choice == 1
    load["busy"] = False
    probes = len(policy.decisions)
    while len(policy.decisions) == probes:
        step(np.zeros((1, 1)))
    assert policy.choice == 2


def test_auto_switches_between_probes_without_waiting_for_the_next_one(monkeypatch):
    """Steps so short that no re-check falls due: when two threads become 20x slower, the
    chosen count's own steps must trigger the switch to one thread within a few steps."""
    fake = _FakeBlas(monkeypatch)
    policy = threads_module.ThreadPolicy("auto", work=1e9, clock=fake.clock)
    load = {"busy": False}
    cost = lambda n: (1e-4 if n == 1 else 1e-3) if load["busy"] else (1e-4 if n == 1 else 5e-5)  # noqa: E731
    step = policy.wrap(_step_timed(fake, cost))
    for _ in range(10):
        step(np.zeros((1, 1)))
    assert policy.choice == 2 and len(policy.decisions) == 1
    load["busy"] = True
    for _ in range(3):
        step(np.zeros((1, 1)))
    assert fake.now < threads_module.RECHECK_SECONDS  # no re-check was due
    assert policy.choice == 1 and [d[0] for d in policy.decisions] == [2, 1]
    assert fake.history[-3:] == [2, 1, 1]  # one slow step, then one thread at once: no probe


def test_auto_does_not_count_the_first_step_after_a_switch(monkeypatch):
    """The first step on a new thread count pays for the switch (threads waking up): it is
    run but not counted, so a count that is faster afterwards still wins."""
    fake = _FakeBlas(monkeypatch)
    policy = threads_module.ThreadPolicy("auto", work=1e9, clock=fake.clock)
    last = {"threads": None}

    def cost(n):
        first = last["threads"] != n
        last["threads"] = n
        return 50.0 if first else (1.0 if n == 1 else 0.5)

    step = policy.wrap(_step_timed(fake, cost))
    for _ in range(8):
        step(np.zeros((1, 1)))
    assert policy.decisions == [(2, 0.5)]


def test_auto_spaces_its_re_checks_by_what_the_probe_costs(monkeypatch):
    """A probe runs the losing count for 1 + PROBE_STEPS steps; the next probe comes no
    sooner than RECHECK_FACTOR times that extra cost (here 25 x 4 steps x 9 s extra per
    sample x 2 samples = 1800 s of training), and no sooner than RECHECK_SECONDS."""
    fake = _FakeBlas(monkeypatch)
    policy = threads_module.ThreadPolicy("auto", work=1e9, clock=fake.clock)
    policy.batch = 2
    step = policy.wrap(_step_timed(fake, lambda n: 1.0 if n == 1 else 10.0))
    batch = np.zeros((2, 1))
    for _ in range(8):
        step(batch)
    assert policy.choice == 1
    extra = (10.0 - 1.0) * (1 + threads_module.PROBE_STEPS)
    assert policy._next_probe == pytest.approx(fake.now + threads_module.RECHECK_FACTOR * extra * 2)


def test_more_threads_than_cores_is_warned_about_where_the_user_asked():
    net = _net(sizes=(4, 3))
    x, y = np.zeros((8, 4), np.float32), np.arange(8) % 3
    cores = threads_module.usable_cores()
    with pytest.warns(RuntimeWarning, match=f"threads={cores + 1} is more than the {cores} cores") \
            as caught:
        net.fit(x, y, verbose=0, threads=cores + 1)
    assert caught[0].filename == __file__  # the user's line, not chainrule's
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        net.fit(x, y, verbose=0, threads=cores)
