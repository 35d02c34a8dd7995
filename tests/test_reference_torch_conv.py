"""The convolutional layers against PyTorch: outputs, gradients and Adam steps of a whole CNN."""

import numpy as np
import pytest

import chainrule as cr
from chainrule.layers import AvgPool2D, BatchNorm1d, BatchNorm2d, Conv2D, Flatten, MaxPool2D

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _compare(layer, torch_fn, x, params=(), training=False, rtol=1e-10, atol=1e-12):
    """Forward ``x`` through both and backward the same upstream gradient; compare everything."""
    rng = np.random.default_rng(0)
    xt = torch.tensor(x, requires_grad=True)
    pt = {name: torch.tensor(layer.params[name], requires_grad=True) for name in params}
    y = layer.forward(x, training)
    yt = torch_fn(xt, pt)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=rtol, atol=atol)
    g = rng.normal(size=y.shape)
    yt.backward(torch.tensor(g))
    np.testing.assert_allclose(layer.backward(g), xt.grad.numpy(), rtol=rtol, atol=atol)
    for name in params:
        np.testing.assert_allclose(layer.grads[name], pt[name].grad.numpy(), rtol=rtol, atol=atol)


@pytest.mark.parametrize("in_c, out_c, kernel, stride, padding, size, bias", [
    (1, 2, 2, 1, 0, (4, 4), True),
    (3, 4, 3, 1, 1, (8, 7), True),
    (2, 3, 3, 2, 0, (9, 9), False),
    (2, 2, (2, 4), (1, 3), (1, 2), (6, 10), True),
    (4, 8, 5, 1, 2, (12, 12), True),
    (3, 2, 1, 2, 0, (5, 5), True),
    (1, 3, 4, 3, 3, (7, 8), True),
])
def test_conv2d(in_c, out_c, kernel, stride, padding, size, bias):
    rng = np.random.default_rng(1)
    layer = Conv2D(in_c, out_c, kernel, stride, padding, bias=bias, seed=2)
    if bias:
        layer.params["bias"][...] = rng.normal(size=out_c)
    x = rng.normal(size=(3, in_c, *size))
    names = ("weight", "bias") if bias else ("weight",)
    _compare(layer, lambda xt, p: F.conv2d(xt, p["weight"], p.get("bias"), stride=stride,
                                          padding=padding), x, names)


@pytest.mark.parametrize("kernel, stride, size", [
    (2, None, (8, 8)), (2, 1, (5, 6)), (3, 2, (9, 7)), ((2, 3), (1, 2), (6, 9)), (3, 3, (10, 10)),
])
@pytest.mark.parametrize("relu", [False, True])
def test_max_pool2d(kernel, stride, size, relu):
    x = np.random.default_rng(3).normal(size=(2, 3, *size))
    if relu:
        x = np.maximum(x, 0)  # windows of zeros: ties broken as PyTorch breaks them
    _compare(MaxPool2D(kernel, stride), lambda xt, p: F.max_pool2d(xt, kernel, stride), x)


@pytest.mark.parametrize("kernel, stride, size", [
    (2, None, (8, 8)), (2, 1, (5, 6)), (3, 2, (9, 7)), ((2, 3), (1, 2), (6, 9)),
])
def test_avg_pool2d(kernel, stride, size):
    x = np.random.default_rng(4).normal(size=(2, 3, *size))
    _compare(AvgPool2D(kernel, stride), lambda xt, p: F.avg_pool2d(xt, kernel, stride), x)


@pytest.mark.parametrize("layer_type, shape", [
    (BatchNorm1d, (6, 4)), (BatchNorm1d, (5, 4, 3)), (BatchNorm2d, (3, 4, 5, 5)),
])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_batch_norm(layer_type, shape, training, momentum):
    rng = np.random.default_rng(5)
    layer = layer_type(4, eps=1e-3, momentum=momentum)
    layer.params["weight"][...] = rng.normal(size=4)
    layer.params["bias"][...] = rng.normal(size=4)
    layer.running_mean[...] = rng.normal(size=4)
    layer.running_var[...] = rng.uniform(0.5, 2.0, size=4)
    running_mean = torch.tensor(layer.running_mean.copy())
    running_var = torch.tensor(layer.running_var.copy())
    x = rng.normal(size=shape) * 3 + 1
    # PyTorch's momentum=None is a cumulative average: factor 1 / num_batches_tracked
    factor = 1.0 if momentum is None else momentum
    _compare(layer, lambda xt, p: F.batch_norm(xt, running_mean, running_var, p["weight"],
                                               p["bias"], training=training, momentum=factor,
                                               eps=1e-3),
             x, ("weight", "bias"), training=training)
    np.testing.assert_allclose(layer.running_mean, running_mean.numpy(), rtol=1e-12)
    np.testing.assert_allclose(layer.running_var, running_var.numpy(), rtol=1e-12)
    assert layer.num_batches_tracked == int(training)


def _small_cnns(seed=0):
    """The same CNN in both libraries, chainrule's weights copied into PyTorch's.

    No bias before a BatchNorm: its exact gradient is 0, and Adam would turn the
    rounding noise in its place into different steps in each library.
    """
    net = cr.Network([
        Conv2D(1, 4, 3, padding=1, bias=False, seed=seed), BatchNorm2d(4), cr.ReLU(), MaxPool2D(2),
        Conv2D(4, 6, 3, stride=1, seed=seed + 1), cr.ReLU(), AvgPool2D(2),
        Flatten(), cr.Dense(6, 8, bias=False, seed=seed + 2), BatchNorm1d(8), cr.Tanh(), cr.Dense(8, 3, seed=seed + 3),
    ], loss="cross_entropy", optimizer=cr.Adam(lr=1e-2), dtype="float64")
    nn = torch.nn
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3), nn.ReLU(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(6, 8, bias=False), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 3),
    ).double()
    model.load_state_dict({k: torch.tensor(v) for k, v in net.state_dict().items()})
    return net, model


def test_adam_steps_of_a_whole_cnn_agree_with_torch():
    net, model = _small_cnns()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    rng = np.random.default_rng(6)
    for _ in range(5):
        x = rng.normal(size=(8, 1, 8, 8))
        y = rng.integers(0, 3, size=8)
        loss = net.train_step(x, y)
        optimizer.zero_grad()
        loss_t = F.cross_entropy(model(torch.tensor(x)), torch.tensor(y))
        loss_t.backward()
        optimizer.step()
        assert loss == pytest.approx(loss_t.item(), rel=1e-10)
    state = model.state_dict()
    for name, value in net.state_dict().items():
        np.testing.assert_allclose(value, state[name].numpy(), rtol=1e-8, atol=1e-10,
                                   err_msg=name)
    model.eval()
    x = rng.normal(size=(5, 1, 8, 8))
    np.testing.assert_allclose(net.predict(x), model(torch.tensor(x)).detach().numpy(),
                               rtol=1e-8, atol=1e-10)
