"""The numba kernels (extra "fast") against the NumPy reference they name.

Each kernel is compared with the NumPy code it must match, to float32
rounding; then whole training steps on both paths are compared. The switch
between paths is tested too. numba is part of CI (the ``fast`` extra).
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import chainrule as cr
from chainrule import kernels

numba = pytest.importorskip("numba", reason="the kernels need the 'fast' extra (numba)")

from chainrule.kernels import elementwise as k  # noqa: E402

RTOL, ATOL = 2e-6, 1e-6  # float32: a few units in the last place


@pytest.fixture
def path():
    """Run a block on the NumPy path or the kernel path, restoring the mode afterwards."""
    saved = kernels.mode()

    class Path:
        def __call__(self, mode: str) -> None:
            kernels.use(mode)

    yield Path()
    kernels.use(saved)


def _rng(seed=0):
    return np.random.default_rng(seed)


# -- each kernel against its NumPy reference -----------------------------------------


@pytest.mark.parametrize(
    "layer, kind, param",
    [
        (cr.ReLU(), k.RELU, 0.0),
        (cr.LeakyReLU(0.1), k.LEAKY_RELU, 0.1),
        (cr.Sigmoid(), k.SIGMOID, 1.0),
        (cr.Sigmoid(scale=0.01), k.SIGMOID, 0.01),
        (cr.Tanh(), k.TANH, 0.0),
        (cr.Identity(), k.IDENTITY, 0.0),
    ],
)
def test_bias_act_forward_and_backward_match_the_layers(layer, kind, param):
    rng = _rng(1)
    z = rng.standard_normal((7, 5)).astype(np.float32) * 3
    bias = rng.standard_normal(5).astype(np.float32)
    g = rng.standard_normal((7, 5)).astype(np.float32)

    expected = layer.forward(z + bias, True)
    expected_grad = layer.backward(g)
    pre, out = z.copy(), np.empty_like(z)
    k.bias_act_forward(pre, bias, kind, np.float32(param), out)
    np.testing.assert_allclose(pre, z + bias, rtol=RTOL, atol=ATOL)  # kept: the activation's input
    np.testing.assert_allclose(out, expected, rtol=RTOL, atol=ATOL)
    in_place = z.copy()
    k.bias_act_forward(in_place, bias, kind, np.float32(param), in_place)
    np.testing.assert_allclose(in_place, expected, rtol=RTOL, atol=ATOL)

    grad, grad_bias = g.copy(), np.empty(5, np.float32)
    k.act_backward(grad, out, kind, np.float32(param), grad_bias)
    np.testing.assert_allclose(grad, expected_grad, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(grad_bias, expected_grad.sum(axis=0), rtol=RTOL, atol=ATOL)


def test_relu_kernels_keep_nan_like_numpy():
    z = np.array([[np.nan, -1.0, 2.0]], np.float32)
    k.bias_act_forward(z, np.empty(0, np.float32), k.RELU, np.float32(0), z)
    assert np.isnan(z[0, 0]) and z[0, 1] == 0 and z[0, 2] == 2
    g = np.array([[1.0, np.inf, 3.0]], np.float32)
    k.act_backward(g, np.array([[0.0, 0.0, 1.0]], np.float32), k.RELU, np.float32(0), np.empty(0, np.float32))
    assert g[0, 0] == 0 and np.isnan(g[0, 1]) and g[0, 2] == 3  # inf * 0 is nan, as g * mask


def test_outer_into_is_the_outer_product():
    out = np.empty((3, 2), np.float32)
    k.outer_into(out, np.array([1.0, -2.0, 0.5], np.float32), np.array([3.0, 4.0], np.float32))
    assert np.array_equal(out, [[3, 4], [-6, -8], [1.5, 2.0]])


@pytest.mark.parametrize("one_hot", [False, True])
def test_cross_entropy_kernel_matches_the_loss(one_hot):
    rng = _rng(2)
    z = (rng.standard_normal((6, 4)) * 5).astype(np.float32)
    z[0] += 1000  # large logits: no overflow on either path
    labels = rng.integers(0, 4, 6)
    target = np.eye(4, dtype=np.float32)[labels] if one_hot else labels
    loss = cr.CrossEntropy()
    expected = loss.forward(z, target)
    expected_grad = loss.backward()
    grad = np.empty_like(z)
    if one_hot:
        value = k.cross_entropy_probs(z, target, grad)
    else:
        value = k.cross_entropy_labels(z, labels.astype(np.intp), grad)
    assert value == pytest.approx(expected, rel=1e-6)
    np.testing.assert_allclose(grad, expected_grad, rtol=RTOL, atol=1e-7)


@pytest.mark.parametrize("loss", [cr.SquaredError(), cr.MeanSquaredError()])
def test_squared_error_kernel_matches_the_loss(loss):
    rng = _rng(3)
    pred = rng.standard_normal((5, 3)).astype(np.float32)
    target = rng.standard_normal((5, 3)).astype(np.float32)
    expected = loss.forward(pred, target)
    expected_grad = loss.backward()
    size = 5 if isinstance(loss, cr.SquaredError) else pred.size
    grad = np.empty_like(pred)
    value = k.squared_error(pred, target, grad, np.float32(2.0 / size)) / size
    assert value == pytest.approx(expected, rel=1e-6)
    np.testing.assert_allclose(grad, expected_grad, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize(
    "make",
    [
        lambda: cr.SGD(lr=0.1),
        lambda: cr.SGD(lr=0.1, momentum=0.9),
        lambda: cr.SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
        lambda: cr.SGD(lr=0.1, momentum=0.5, weight_decay=0.1, decay_1d=False),
        lambda: cr.Adam(lr=0.01),
        lambda: cr.Adam(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.01),
        lambda: cr.Adam(lr=0.01, weight_decay=0.1, decay_1d=False),
    ],
)
def test_optimizer_kernels_match_the_numpy_rule(make, path):
    rng = _rng(4)
    shapes = [(6, 4), (6,), (3, 6), (3,)]
    start = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    runs = {}
    for mode in ("numpy", "numba"):
        path(mode)
        opt = make()
        params = [p.copy() for p in start]
        for step in range(5):
            grads = [_rng(10 + step).standard_normal(s).astype(np.float32) for s in shapes]
            opt.step(params, grads)
        runs[mode] = params, opt.state
    for a, b in zip(runs["numpy"][0], runs["numba"][0]):
        np.testing.assert_allclose(b, a, rtol=RTOL, atol=ATOL)
        assert b.dtype == np.float32
    for sa, sb in zip(runs["numpy"][1], runs["numba"][1]):
        assert sa.keys() == sb.keys()
        for key in sa:
            np.testing.assert_allclose(sb[key], sa[key], rtol=RTOL, atol=ATOL)


def test_optimizer_kernel_follows_changes_between_steps_with_the_same_lists(path):
    """The kernel step passes the same lists every step, and the optimizer keeps its flat
    views for them; a changed weight decay, a reset or loaded state must still be seen."""
    rng = _rng(7)
    shapes = [(5, 3), (5,)]
    start = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    runs = {}
    for mode in ("numpy", "numba"):
        path(mode)
        opt = cr.SGD(lr=0.1, momentum=0.9)
        params = [p.copy() for p in start]
        grads = [np.zeros(s, np.float32) for s in shapes]
        for step in range(6):
            for g, s in zip(grads, shapes):
                g[...] = _rng(20 + step).standard_normal(s)
            if step == 2:
                opt.weight_decay = 0.5
            if step == 3:  # one state array replaced by hand, in the same list and dict
                opt.state[0]["momentum"] = np.full(shapes[0], 0.5, np.float32)
            if step == 4:
                opt.reset()
            if step == 5:
                opt.state = [{"momentum": np.full(s, 0.25, np.float32)} for s in shapes]
            opt.step(params, grads)
        runs[mode] = params
    for a, b in zip(runs["numpy"], runs["numba"]):
        np.testing.assert_allclose(b, a, rtol=RTOL, atol=ATOL)


def test_fit_checks_the_targets_once_and_trains_as_train_step(path, monkeypatch):
    """fit validates the whole training set once; its steps then skip the per-batch check
    on the kernel path and still train exactly as a loop of train_step does."""
    rng = _rng(8)
    x = rng.standard_normal((12, 6)).astype(np.float32)
    for y, loss in ((rng.integers(0, 3, 12), "cross_entropy"),
                    (np.eye(3, dtype=np.float32)[rng.integers(0, 3, 12)], "cross_entropy"),
                    (rng.standard_normal((12, 3)).astype(np.float32), "squared_error")):
        for batch in (1, 4):
            path("numba")
            looped = cr.Network.from_sizes([6, 5, 3], loss=loss, optimizer=cr.SGD(lr=0.1), seed=0)
            losses = [looped.train_step(x[i] if batch == 1 else x[i : i + batch],
                                        y[i] if batch == 1 else y[i : i + batch])
                      for i in range(0, 12, batch)]
            fitted = cr.Network.from_sizes([6, 5, 3], loss=loss, optimizer=cr.SGD(lr=0.1), seed=0)
            calls = []
            check = type(fitted.loss).check_targets
            monkeypatch.setattr(type(fitted.loss), "check_targets",
                                lambda self, *a, calls=calls, check=check, **k:
                                calls.append(a[0]) or check(self, *a, **k))
            history = fitted.fit(x, y, batch_size=batch, shuffle=False, verbose=0, threads=1)
            monkeypatch.undo()
            assert calls == [(12, 3)], (loss, batch)
            assert history.history["loss"][0] == pytest.approx(np.mean(losses), rel=1e-5)
            for name, p in looped.parameters().items():
                np.testing.assert_array_equal(fitted.parameters()[name], p, err_msg=name)


def test_optimizer_kernel_leaves_odd_layouts_to_numpy(path):
    path("numba")
    p = np.asfortranarray(np.ones((3, 2), np.float32))  # not C-contiguous: the NumPy rule runs
    cr.SGD(lr=0.5).step([p], [np.ones((3, 2), np.float32)])
    assert np.array_equal(p, np.full((3, 2), 0.5))


# -- whole steps on both paths ---------------------------------------------------------


def _train(mode, path, make_net, batches, steps=4):
    path(mode)
    net = make_net()
    losses = [net.train_step(x, y) for x, y in batches[:steps]]
    return net, losses


def _batches(n_in, n_out, batch, labels, steps=4, seed=5):
    rng = _rng(seed)
    out = []
    for _ in range(steps):
        x = rng.standard_normal((batch, n_in) if batch else (n_in,)).astype(np.float32)
        shape = (batch,) if batch else ()
        y = rng.integers(0, n_out, shape) if labels else rng.standard_normal(
            (batch, n_out) if batch else (n_out,)).astype(np.float32)
        out.append((x, y))
    return out


@pytest.mark.parametrize(
    "activation, loss, optimizer, batch, width",
    [
        ("relu", "cross_entropy", lambda: cr.SGD(lr=0.1, momentum=0.9, nesterov=True), 16, 6),
        ("tanh", "cross_entropy", lambda: cr.Adam(lr=0.01, weight_decay=0.01), 8, 6),
        ("sigmoid", "mse", lambda: cr.SGD(lr=0.1), 5, 6),
        ("leaky_relu", "squared_error", lambda: cr.Adam(lr=0.01), 1, 6),
        # one 1-D sample per step: a small network takes forward_one/backward_one ...
        ("relu", "squared_error", lambda: cr.SGD(lr=0.05), None, 6),
        ("sigmoid", "cross_entropy", lambda: cr.SGD(lr=0.05, momentum=0.5), None, 6),
        # ... a larger one the matrix-vector products and outer_into
        ("relu", "cross_entropy", lambda: cr.SGD(lr=0.05), None, 90),
    ],
)
def test_fused_step_matches_the_numpy_step(activation, loss, optimizer, batch, width, path):
    from chainrule.kernels import step

    n_out = 3
    batches = _batches(width, n_out, batch, labels=loss == "cross_entropy")
    sizes = [width, 5 * width // 6 * 10 if width > 6 else 5, 4, n_out]

    def make():
        return cr.Network.from_sizes(sizes, activation=activation, loss=loss,
                                     optimizer=optimizer(), seed=0)

    small = sum(a * b for a, b in zip(sizes[:-1], sizes[1:])) <= step.SMALL
    assert small == (width == 6)

    a, la = _train("numpy", path, make, batches)
    b, lb = _train("numba", path, make, batches)
    np.testing.assert_allclose(lb, la, rtol=1e-5)
    for name, p in a.parameters().items():
        np.testing.assert_allclose(b.parameters()[name], p, rtol=1e-5, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(b.gradients()[name], a.gradients()[name], rtol=1e-4, atol=1e-6,
                                   err_msg=name)
    _same_caches(a, b)


def _same_caches(a, b):
    """The layers' caches after a step (what diagnostics read) agree between the paths."""
    for la, lb in zip(a.layers, b.layers):
        for attr in ("_x", "_active", "_slope", "_y"):
            if hasattr(la, attr) and getattr(la, attr) is not None:
                expected, got = getattr(la, attr), getattr(lb, attr, None)
                assert got is not None and got.shape == expected.shape, (la, attr)
                if expected.dtype == bool:
                    assert np.mean(got != expected) < 0.01, (la, attr)  # ties at 0 may differ
                else:
                    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5,
                                               err_msg=f"{la} {attr}")


def test_fused_step_runs_other_layers_their_own_way(path):
    """Dropout between blocks, a Dense without activation, one-hot targets, float64."""
    rng = _rng(6)
    x = rng.standard_normal((8, 5))
    y = np.eye(3)[rng.integers(0, 3, 8)]

    def make():
        return cr.Network(
            [cr.Dense(5, 4, seed=1), cr.ReLU(), cr.Dropout(0.3, seed=2), cr.Dense(4, 4, seed=3),
             cr.Dense(4, 3, seed=4)],
            loss="cross_entropy", optimizer=cr.SGD(lr=0.1, momentum=0.9), dtype="float64",
        )

    a, la = _train("numpy", path, make, [(x, y)] * 3, steps=3)
    b, lb = _train("numba", path, make, [(x, y)] * 3, steps=3)
    np.testing.assert_allclose(lb, la, rtol=1e-12)
    for name, p in a.parameters().items():
        np.testing.assert_allclose(b.parameters()[name], p, rtol=1e-12, atol=1e-14)
    _same_caches(a, b)


def test_health_check_sees_the_relus_on_the_kernel_path(path):
    """HealthCheck reads each ReLU's input after every step: the kernel path must write it."""
    from chainrule.diagnostics import HealthCheck

    rng = _rng(7)
    x = rng.standard_normal((64, 5)).astype(np.float32)
    y = rng.integers(0, 3, 64)
    reports = {}
    for mode in ("numpy", "numba"):
        path(mode)
        net = cr.Network.from_sizes([5, 8, 3], loss="cross_entropy", seed=0)
        check = HealthCheck()
        net.fit(x, y, epochs=1, batch_size=16, callbacks=[check], verbose=0, shuffle=False)
        reports[mode] = {i: (active.copy(), seen) for i, (active, seen) in check._activity.items()}
    assert reports["numba"].keys() == reports["numpy"].keys() == {1}
    assert reports["numba"][1][1] == reports["numpy"][1][1] == 64
    assert np.array_equal(reports["numba"][1][0], reports["numpy"][1][0])


def test_fused_step_refuses_a_non_finite_loss_before_updating(path):
    path("numba")
    net = cr.Network.from_sizes([2, 3, 2], loss="cross_entropy", seed=0)
    before = {k_: v.copy() for k_, v in net.parameters().items()}
    with pytest.raises(cr.NonFiniteLossError):
        net.train_step(np.array([[np.nan, 1.0]], np.float32), [0])
    for name, p in net.parameters().items():
        assert np.array_equal(p, before[name])


def test_fused_step_validates_targets_like_the_loss(path):
    path("numba")
    net = cr.Network.from_sizes([2, 3, 2], loss="cross_entropy", seed=0)
    with pytest.raises(ValueError, match="out of range"):
        net.train_step(np.ones((2, 2), np.float32), [0, 2])


def test_parameters_stay_live_and_shaped_like_pytorch(path):
    path("numba")
    net = cr.Network.from_sizes([4, 3, 2], loss="cross_entropy", seed=0)
    params = net.parameters()
    weight = params["0.weight"]
    net.train_step(np.ones((2, 4), np.float32), [0, 1])
    assert net.parameters()["0.weight"] is weight and weight.shape == (3, 4)
    for p in params.values():
        p[...] = 0  # written through parameters(): the next step must see it
    net.train_step(np.ones((2, 4), np.float32), [0, 0])
    # hidden relu(0) = 0 and W2 = 0: no gradient reaches W1, and W2's is g.T @ 0
    assert np.all(net.gradients()["0.weight"] == 0) and np.all(net.gradients()["2.weight"] == 0)
    assert np.all(params["2.bias"] != 0)  # the output bias did learn


# -- the switch -----------------------------------------------------------------------------


def test_use_switches_paths_and_names_bad_modes(path, monkeypatch):
    path("numpy")
    assert not kernels.enabled() and kernels.mode() == "numpy"
    assert kernels.use("auto") == "numpy" and kernels.enabled()
    with pytest.raises(ValueError, match="kernel mode must be one of auto, numba, numpy"):
        kernels.use("fast")
    monkeypatch.setattr(kernels, "available", lambda: False)
    with pytest.raises(ImportError, match=r"chainrule\[fast\]"):
        kernels.use("numba")
    kernels.use("auto")
    assert not kernels.enabled()  # auto without numba: the NumPy path


def test_environment_variable_chooses_the_path(tmp_path):
    code = "from chainrule import kernels; print(kernels.mode(), kernels.enabled())"
    for value, expected in (("numpy", "numpy False"),):  # (auto is this session's own default)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env={**os.environ, "CHAINRULE_KERNELS": value}, timeout=120)
        assert out.stdout.split() == expected.split(), out.stderr
    # A bad value: importing works, the first question about the path says what is wrong,
    # and kernels.use() replaces the bad setting.
    bad = ("import chainrule\nfrom chainrule import kernels\n"
           "try:\n    kernels.enabled()\nexcept ValueError as e:\n    print('refused:', e)\n"
           "kernels.use('numpy'); print(kernels.enabled())")
    out = subprocess.run([sys.executable, "-c", bad], capture_output=True, text=True,
                         env={**os.environ, "CHAINRULE_KERNELS": "gpu"}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "refused: CHAINRULE_KERNELS must be one of auto, numba, numpy, got 'gpu'", "False"]
    # The command line says it in one line (exit status 1), not with a traceback.
    out = subprocess.run([sys.executable, "-m", "chainrule", "train", "--epochs", "1",
                          "--limit", "200", "--validation", "50", "-q", "--out",
                          "unused.safetensors"],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path,
                         env={**os.environ, "CHAINRULE_KERNELS": "gpu"})
    assert out.returncode == 1, out.stderr
    assert out.stderr.strip().splitlines()[-1] == (
        "chainrule: error: CHAINRULE_KERNELS must be one of auto, numba, numpy, got 'gpu'")
    assert "Traceback" not in out.stderr


def test_fused_step_gives_dense_shape_errors(path):
    path("numba")
    net = cr.Network.from_sizes([4, 3, 2], loss="cross_entropy", seed=0)
    with pytest.raises(ValueError, match=r"layer 0 \(Dense.*expected input of shape \(batch, 4\)"):
        net.train_step(np.ones((2, 5), np.float32), [0, 1])


# -- the image layers' kernels (kernels/images.py) against the layers' NumPy code ----------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "c_in, c_out, kernel, stride, padding, hw",
    [
        (1, 4, 5, 1, 2, (28, 28)),  # the CNN recipe's first convolution, smaller
        (3, 2, (3, 2), (2, 1), (1, 0), (9, 7)),  # non-square everything, an odd size
        (2, 3, 3, 2, 0, (8, 8)),  # stride 2 leaves the last row and column unread
        (2, 2, 4, 3, 3, (5, 6)),  # padding wider than the stride: windows of pure padding
    ],
)
def test_conv_kernels_match_the_numpy_convolution(c_in, c_out, kernel, stride, padding, hw,
                                                  dtype, path):
    rng = _rng(11)
    x = rng.standard_normal((3, c_in, *hw)).astype(dtype)
    runs = {}
    for mode in ("numpy", "numba"):
        path(mode)
        layer = cr.Conv2D(c_in, c_out, kernel, stride=stride, padding=padding, seed=0, dtype=dtype)
        y = layer.forward(x)
        g = _rng(12).standard_normal(y.shape).astype(dtype)
        dx = layer.backward(g)
        inference = layer.forward(x, cache=False)
        runs[mode] = y, dx, layer.grads["weight"].copy(), layer.grads["bias"].copy(), inference
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    for a, b in zip(runs["numpy"], runs["numba"]):
        assert b.dtype == dtype and b.shape == a.shape
        np.testing.assert_allclose(b, a, **tol)


def test_conv_kernel_reuses_its_im2col_matrix_only_while_training(path):
    path("numba")
    layer = cr.Conv2D(1, 2, 3, padding=1, seed=0, dtype=np.float32)
    x = _rng(13).standard_normal((2, 1, 5, 5)).astype(np.float32)
    layer.forward(x)
    cols = layer._cache[0]
    layer.forward(x[::-1].copy())
    assert layer._cache[0] is cols  # the same buffer, refilled
    np.testing.assert_array_equal(layer.forward(x, cache=False), layer.forward(x))
    assert layer._cache[0] is cols
    layer.forward(x[:1])  # another batch size: a new matrix
    assert layer._cache[0] is not cols and layer._cache[0].shape[1] == 25


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kernel, stride", [(2, None), (3, 2), ((2, 3), (1, 2))])
def test_max_pool_kernels_match_numpy_with_ties_and_nan(kernel, stride, dtype, path):
    rng = _rng(14)
    # Small integers make ties common; a NaN in one window; overlapping windows when stride < kernel.
    x = rng.integers(-2, 3, (2, 3, 7, 8)).astype(dtype)
    x[0, 1, 2, 3] = np.nan
    runs = {}
    for mode in ("numpy", "numba"):
        path(mode)
        layer = cr.MaxPool2D(kernel, stride=stride)
        y = layer.forward(x)
        argmax = layer._cache[0].copy()
        g = _rng(15).standard_normal(y.shape).astype(dtype)
        runs[mode] = y, argmax, layer.backward(g), layer.forward(x, cache=False)
    for a, b in zip(runs["numpy"], runs["numba"]):
        assert b.dtype == a.dtype and b.shape == a.shape
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6)  # NaN where NumPy has NaN
    assert np.isnan(runs["numba"][0]).any()


def test_the_cnn_recipe_trains_alike_on_both_paths(path):
    """One Adam step of the CNN recipe's network (small images) on each path."""
    from chainrule.recipes_cnn import CNNRecipe, build_cnn

    rng = _rng(16)
    x = rng.random((4, 1, 12, 12), dtype=np.float32)
    y = rng.integers(0, 10, 4)
    nets = {}
    for mode in ("numpy", "numba"):
        path(mode)
        net = build_cnn(CNNRecipe(channels=(3, 4), hidden=8, dropout=0.0), image_shape=(1, 12, 12))
        nets[mode] = net, [net.train_step(x, y) for _ in range(2)]
    np.testing.assert_allclose(nets["numba"][1], nets["numpy"][1], rtol=1e-5)
    for name, p in nets["numpy"][0].parameters().items():
        np.testing.assert_allclose(nets["numba"][0].parameters()[name], p, rtol=1e-4, atol=1e-5,
                                   err_msg=name)


def test_fit_calls_a_train_step_of_the_users_own(path):
    """fit's checked-targets shortcut must not bypass an overridden train_step."""
    path("numba")
    calls = []

    class Counting(cr.Network):
        def train_step(self, x, y, sample_weight=None, class_weight=None):
            calls.append(len(x))
            return super().train_step(x, y, sample_weight, class_weight)

    net = Counting([cr.Dense(3, 2)], loss="cross_entropy", optimizer=cr.SGD(lr=0.1))
    x = _rng(17).standard_normal((8, 3)).astype(np.float32)
    net.fit(x, np.arange(8) % 2, batch_size=4, verbose=0, threads=1)
    assert calls == [4, 4]
    patched = cr.Network.from_sizes([3, 2], loss="cross_entropy", seed=0)
    original = patched.train_step
    patched.train_step = lambda *a, **k: calls.append("patched") or original(*a, **k)
    patched.fit(x, np.arange(8) % 2, batch_size=8, verbose=0, threads=1)
    assert calls[-1] == "patched"


def test_astype_to_the_same_dtype_keeps_the_optimizer_state_live(path):
    """Network.astype copies the optimizer's state arrays even to the same dtype; the
    kernel step must update the new arrays (which checkpoints save), as the NumPy step does."""
    x = _rng(18).standard_normal((8, 3)).astype(np.float32)
    y = x.sum(axis=1, keepdims=True)
    states = {}
    for mode in ("numpy", "numba"):
        path(mode)
        net = cr.Network.from_sizes([3, 4, 1], loss="squared_error", optimizer=cr.Adam(lr=0.01),
                                    seed=0)
        for i in range(4):
            net.train_step(x[i], y[i])
        net.astype(net.dtype)
        for i in range(4, 8):
            net.train_step(x[i], y[i])
        states[mode] = [s["m"].copy() for s in net.optimizer.state], net.parameters()
        grads = net.gradients()  # the new gradient buffers astype made are the ones filled
        assert all(np.any(g != 0) for name, g in grads.items() if name.endswith("weight"))
        states[mode + " grads"] = grads
    for name, g in states["numpy grads"].items():
        np.testing.assert_allclose(states["numba grads"][name], g, rtol=1e-5, atol=1e-7)
    for a, b in zip(states["numpy"][0], states["numba"][0]):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7)
    for name, p in states["numpy"][1].items():
        np.testing.assert_allclose(states["numba"][1][name], p, rtol=1e-5, atol=1e-7)


def test_conv_does_not_refill_a_read_only_view_cached_by_the_numpy_path(path):
    path("numpy")
    layer = cr.Conv2D(2, 3, 1, seed=0, dtype=np.float32)  # 1x1 kernel, batch 1: cols is a view of x
    x = np.ones((1, 2, 4, 4), np.float32)
    expected = layer.forward(x)
    path("numba")
    np.testing.assert_allclose(layer.forward(x), expected, rtol=1e-6)
