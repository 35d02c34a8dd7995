"""Reference tests: chainrule and PyTorch 2.13 agree on outputs, gradients and optimizer steps."""

import numpy as np
import pytest

import chainrule as cr

torch = pytest.importorskip("torch")
nn = torch.nn


def torch_twin(net):
    """The equivalent nn.Sequential, with chainrule's weights loaded by state-dict name."""
    modules = []
    for layer in net.layers:
        if isinstance(layer, cr.Dense):
            modules.append(nn.Linear(layer.in_features, layer.out_features, bias=layer.use_bias))
        elif isinstance(layer, cr.ReLU):
            modules.append(nn.ReLU())
        elif isinstance(layer, cr.LeakyReLU):
            modules.append(nn.LeakyReLU(layer.negative_slope))
        elif isinstance(layer, cr.Sigmoid):
            assert layer.scale == 1.0
            modules.append(nn.Sigmoid())
        elif isinstance(layer, cr.Tanh):
            modules.append(nn.Tanh())
        elif isinstance(layer, cr.Softmax):
            modules.append(nn.Softmax(dim=-1))
        elif isinstance(layer, cr.Identity):
            modules.append(nn.Identity())
        else:
            raise TypeError(layer)
    model = nn.Sequential(*modules).double()
    model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in net.parameters().items()})
    return model


LOSSES = {
    "squared_error": (cr.SquaredError, lambda p, y: ((p - y) ** 2).sum(dim=1).mean()),
    "mse": (cr.MeanSquaredError, nn.MSELoss()),
    "cross_entropy": (cr.CrossEntropy, nn.CrossEntropyLoss()),
    "bce": (cr.BinaryCrossEntropy, nn.BCEWithLogitsLoss()),
}


def make_targets(name, rng, n, k):
    if name == "cross_entropy":
        return rng.integers(0, k, size=n)
    if name == "bce":
        return rng.random((n, k))
    return rng.normal(size=(n, k))


@pytest.mark.parametrize("activation", [cr.ReLU, lambda: cr.LeakyReLU(0.1), cr.Sigmoid, cr.Tanh,
                                        cr.Softmax, cr.Identity],
                         ids=["relu", "leaky_relu", "sigmoid", "tanh", "softmax", "identity"])
@pytest.mark.parametrize("loss_name", list(LOSSES))
def test_forward_and_gradients_match_torch(activation, loss_name):
    rng = np.random.default_rng(0)
    loss_cls, torch_loss = LOSSES[loss_name]
    net = cr.Network([cr.Dense(5, 7, seed=1), activation(), cr.Dense(7, 4, seed=2)],
                     loss=loss_cls(), dtype="float64")
    model = torch_twin(net)
    x = rng.normal(size=(6, 5))
    y = make_targets(loss_name, rng, 6, 4)

    out = net.forward(x)
    value = net.loss.forward(out, y)
    grad_x = net.backward()

    tx = torch.tensor(x, requires_grad=True)
    tout = model(tx)
    tloss = torch_loss(tout, torch.tensor(y))
    tloss.backward()

    np.testing.assert_allclose(out, tout.detach().numpy(), rtol=1e-10, atol=1e-12)
    assert value == pytest.approx(tloss.item(), rel=1e-10)
    np.testing.assert_allclose(grad_x, tx.grad.numpy(), rtol=1e-9, atol=1e-12)
    for name, param in model.named_parameters():
        np.testing.assert_allclose(net.gradients()[name], param.grad.numpy(), rtol=1e-9,
                                   atol=1e-12, err_msg=name)


OPTIMIZERS = {
    "sgd_momentum": (lambda: cr.SGD(lr=0.1, momentum=0.9),
                     lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)),
    "sgd_nesterov_decay": (lambda: cr.SGD(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.01),
                           lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.8, nesterov=True,
                                                     weight_decay=0.01)),
    "adam": (lambda: cr.Adam(lr=0.01), lambda p: torch.optim.Adam(p, lr=0.01)),
    "adam_decay": (lambda: cr.Adam(lr=0.02, betas=(0.8, 0.99), eps=1e-7, weight_decay=0.1),
                   lambda p: torch.optim.Adam(p, lr=0.02, betas=(0.8, 0.99), eps=1e-7,
                                              weight_decay=0.1)),
}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_five_optimizer_steps_match_torch(name):
    ours, theirs = OPTIMIZERS[name]
    rng = np.random.default_rng(3)
    net = cr.Network.from_sizes([6, 8, 8, 3], activation="tanh", loss="cross_entropy",
                                optimizer=ours(), seed=4, dtype="float64")
    model = torch_twin(net)
    opt = theirs(model.parameters())
    loss_fn = nn.CrossEntropyLoss()
    for step in range(5):
        x = rng.normal(size=(10, 6))
        y = rng.integers(0, 3, size=10)
        ours_loss = net.train_step(x, y)
        opt.zero_grad()
        loss = loss_fn(model(torch.tensor(x)), torch.tensor(y))
        loss.backward()
        opt.step()
        assert ours_loss == pytest.approx(loss.item(), rel=1e-9), f"step {step}"
    for key, value in model.state_dict().items():
        np.testing.assert_allclose(net.parameters()[key], value.numpy(), rtol=1e-6, atol=1e-6,
                                   err_msg=key)


def test_saved_file_loads_into_torch_sequential(tmp_path):
    from safetensors.torch import load_file

    net = cr.Network.from_sizes([8, 16, 16, 4], activation="relu", loss="cross_entropy", seed=0)
    path = tmp_path / "model.safetensors"
    net.save(path)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4))
    model.load_state_dict(load_file(path))  # strict: names and shapes must all match
    x = np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32)
    with torch.no_grad():
        expected = model.float()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(net.predict(x), expected, rtol=1e-6, atol=1e-6)


# -- weighted losses (issue 9 §1): chainrule's conventions against PyTorch's ----------------


def _loss_and_grad(loss, z, y, **weights):
    value = loss.forward(z, y, **weights)
    return value, loss.backward()


def _torch_loss_and_grad(fn, z):
    zt = torch.tensor(z, requires_grad=True)
    value = fn(zt)
    value.backward()
    return value.item(), zt.grad.numpy()


def test_cross_entropy_class_weight_is_torch_weight_argument():
    rng = np.random.default_rng(0)
    z, labels = rng.normal(size=(7, 4)), rng.integers(0, 4, 7)
    weight = np.array([0.5, 2.0, 1.0, 3.0])
    ours = _loss_and_grad(cr.CrossEntropy(), z, labels, class_weight=weight)
    theirs = _torch_loss_and_grad(
        lambda t: nn.functional.cross_entropy(t, torch.tensor(labels), weight=torch.tensor(weight)), z)
    assert ours[0] == pytest.approx(theirs[0], rel=1e-12)
    np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-10, atol=1e-15)
    # a dict gives the same (classes left out weigh 1)
    as_dict = cr.CrossEntropy().forward(z, labels, class_weight={0: 0.5, 1: 2.0, 3: 3.0})
    assert as_dict == pytest.approx(theirs[0], rel=1e-12)


def test_cross_entropy_sample_weight_is_the_mean_of_weighted_per_sample_losses():
    rng = np.random.default_rng(1)
    z, labels = rng.normal(size=(6, 3)), rng.integers(0, 3, 6)
    w = rng.uniform(0, 2, 6)
    ours = _loss_and_grad(cr.CrossEntropy(), z, labels, sample_weight=w)
    theirs = _torch_loss_and_grad(lambda t: (torch.tensor(w) * nn.functional.cross_entropy(
        t, torch.tensor(labels), reduction="none")).mean(), z)
    assert ours[0] == pytest.approx(theirs[0], rel=1e-12)
    np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-10, atol=1e-15)
    # one-hot rows give the same as labels
    one_hot = np.eye(3)[labels]
    assert cr.CrossEntropy().forward(z, one_hot, sample_weight=w) == pytest.approx(ours[0], rel=1e-12)


def test_both_weights_together_match_torch():
    rng = np.random.default_rng(2)
    z, labels = rng.normal(size=(5, 3)), np.array([0, 1, 2, 2, 1])
    w, c = rng.uniform(0.1, 2, 5), np.array([1.0, 3.0, 0.5])
    ours = _loss_and_grad(cr.CrossEntropy(), z, labels, sample_weight=w, class_weight=c)

    def torch_fn(t):
        per = nn.functional.cross_entropy(t, torch.tensor(labels), weight=torch.tensor(c),
                                          reduction="none")  # c[y_i] * l_i
        return (torch.tensor(w) * per).sum() / torch.tensor(c)[labels].sum()

    theirs = _torch_loss_and_grad(torch_fn, z)
    assert ours[0] == pytest.approx(theirs[0], rel=1e-12)
    np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-10, atol=1e-15)


def test_binary_cross_entropy_weights_match_torch():
    rng = np.random.default_rng(3)
    z, y = rng.normal(size=(6, 3)), rng.integers(0, 2, (6, 3)).astype(float)
    w = rng.uniform(0, 2, 6)
    ours = _loss_and_grad(cr.BinaryCrossEntropy(), z, y, sample_weight=w)
    theirs = _torch_loss_and_grad(lambda t: (torch.tensor(w)[:, None] * nn.functional
                                             .binary_cross_entropy_with_logits(
                                                 t, torch.tensor(y), reduction="none")).mean(), z)
    assert ours[0] == pytest.approx(theirs[0], rel=1e-12)
    np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-10, atol=1e-15)
    # one output, class weights {0: 1, 1: 4}: a weighted mean, like torch's weight= for classes
    z1, y1 = rng.normal(size=(8, 1)), np.array([0, 1, 1, 0, 0, 0, 1, 0])
    ours = _loss_and_grad(cr.BinaryCrossEntropy(), z1, y1, class_weight={0: 1.0, 1: 4.0})
    c = torch.tensor(np.where(y1 == 1, 4.0, 1.0))[:, None]
    theirs = _torch_loss_and_grad(lambda t: (c * nn.functional.binary_cross_entropy_with_logits(
        t, torch.tensor(y1[:, None], dtype=torch.float64), reduction="none")).sum() / c.sum(), z1)
    assert ours[0] == pytest.approx(theirs[0], rel=1e-12)
    np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-10, atol=1e-15)


def test_squared_errors_with_sample_weight_match_torch():
    rng = np.random.default_rng(4)
    z, y, w = rng.normal(size=(5, 2)), rng.normal(size=(5, 2)), rng.uniform(0, 2, 5)
    ours = _loss_and_grad(cr.MeanSquaredError(), z, y, sample_weight=w)
    theirs = _torch_loss_and_grad(lambda t: (torch.tensor(w)[:, None] * nn.functional.mse_loss(
        t, torch.tensor(y), reduction="none")).mean(), z)
    assert ours[0] == pytest.approx(theirs[0], rel=1e-12)
    np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-10, atol=1e-15)
    ours = _loss_and_grad(cr.SquaredError(), z, y, sample_weight=w)
    theirs = _torch_loss_and_grad(lambda t: (torch.tensor(w) * ((t - torch.tensor(y)) ** 2)
                                             .sum(dim=1)).mean(), z)
    assert ours[0] == pytest.approx(theirs[0], rel=1e-12)
    np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-10, atol=1e-15)


def test_smoothed_probability_rows_match_torch():
    # rows that sum to 1 but are not one-hot: value and gradient as torch's probability targets
    rng = np.random.default_rng(5)
    z = rng.normal(size=(4, 3))
    y = np.full((4, 3), 0.05) + 0.85 * np.eye(3)[[0, 2, 1, 1]]
    ours = _loss_and_grad(cr.CrossEntropy(), z, y)
    theirs = _torch_loss_and_grad(lambda t: nn.functional.cross_entropy(t, torch.tensor(y)), z)
    assert ours[0] == pytest.approx(theirs[0], rel=1e-12)
    np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-10, atol=1e-15)
