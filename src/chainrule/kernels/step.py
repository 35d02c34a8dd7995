"""A training step with the elementwise work fused: the kernel path of ``Network.train_step``.

Matches: ``Network.train_step`` (the NumPy reference: each layer's forward,
the loss's forward and backward, each layer's backward, ``optimizer.step``).

A ``Dense`` layer and the elementwise activation after it (ReLU, LeakyReLU
with a non-negative slope, Sigmoid, Tanh, Identity, or none) become one
block: ``z = x @ weight.T`` by BLAS, then one kernel adds the bias and
applies the activation in place; backward, one kernel applies the
activation's derivative in place and sums the bias gradient, then BLAS
computes ``g.T @ x`` into the layer's gradient buffer and ``g @ weight``
for the layer below. Any other layer (Dropout, Conv2D, ...) runs its own
``forward(x, training=True)`` and ``backward``. The losses CrossEntropy,
SquaredError and MeanSquaredError compute value and gradient in one kernel
(the targets are validated by the loss's own checks, except in ``fit``,
which validated the whole training set once); other losses use
their NumPy ``forward``/``backward``. The layers' ``grads`` are the same
live buffers the NumPy path fills, so ``Network.gradients()`` reads alike.

The layers' caches are written as their own ``forward`` writes them
(``Dense._x``, an activation's input ``_x``, ReLU's ``_active``, LeakyReLU's
``_slope``, Sigmoid's and Tanh's output ``_y``), so what reads them after a
step (``diagnostics.HealthCheck`` watches the relus) sees the same arrays'
values on both paths; ``tests/test_kernels.py`` compares them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..activations import Identity, LeakyReLU, ReLU, Sigmoid, Tanh
from ..errors import NonFiniteLossError
from ..layers import Dense
from ..losses import CrossEntropy, MeanSquaredError, SquaredError
from . import elementwise as _k

__all__ = ["train_step"]

_EMPTY = {np.dtype(np.float32): np.empty(0, np.float32), np.dtype(np.float64): np.empty(0, np.float64)}


class _Block:
    """``Dense`` plus the activation that follows it (``act`` None for none)."""

    __slots__ = ("dense", "act", "kind", "param", "weight", "bias", "grad_weight", "grad_bias")

    def __init__(self, dense: Dense, act: Any, kind: int, param: float, dtype: np.dtype) -> None:
        self.dense, self.act, self.kind = dense, act, kind
        self.param = dtype.type(param)
        self.weight = dense.params["weight"]
        self.bias = dense.params.get("bias", _EMPTY[dtype])
        self.grad_weight = dense.grads["weight"]
        self.grad_bias = dense.grads.get("bias", _EMPTY[dtype])


def _activation_code(layer: Any) -> tuple[int, float] | None:
    kind = type(layer)
    if kind is ReLU:
        return _k.RELU, 0.0
    if kind is LeakyReLU and layer.negative_slope >= 0:
        return _k.LEAKY_RELU, layer.negative_slope
    if kind is Sigmoid:
        return _k.SIGMOID, layer.scale
    if kind is Tanh:
        return _k.TANH, 0.0
    if kind is Identity:
        return _k.IDENTITY, 0.0
    return None


class _Plan:
    """The network cut into fused blocks and other layers, with its parameter lists."""

    def __init__(self, network: Any) -> None:
        dtype = network.dtype
        self.items: list[Any] = []
        layers = network.layers
        i = 0
        while i < len(layers):
            layer = layers[i]
            if type(layer) is Dense:
                code = _activation_code(layers[i + 1]) if i + 1 < len(layers) else None
                if code is not None:
                    self.items.append(_Block(layer, layers[i + 1], code[0], code[1], dtype))
                    i += 2
                    continue
                self.items.append(_Block(layer, None, _k.IDENTITY, 0.0, dtype))
            else:
                self.items.append(layer)
            i += 1
        self.params = [p for layer in layers for p in layer.params.values()]
        self.grads = [g for layer in layers for g in layer.grads.values()]
        self.key = _key(network)
        # A small network of blocks only: one sample goes through in one kernel call each way.
        blocks = [item for item in self.items if type(item) is _Block]
        self.small = len(blocks) == len(self.items) and sum(b.weight.size for b in blocks) <= SMALL
        if self.small:
            self.weights = tuple(b.weight for b in blocks)
            self.biases = tuple(b.bias for b in blocks)
            self.kinds = np.array([b.kind for b in blocks], dtype=np.int64)
            self.act_params = np.array([b.param for b in blocks], dtype=dtype)
            self.blocks = blocks
            self.widths = [b.weight.shape[0] for b in blocks]
            self.grad_weights = tuple(b.grad_weight for b in blocks)
            self.grad_biases = tuple(b.grad_bias for b in blocks)
            # Each block's Dense output and block output, reused from step to step (the
            # layers' caches point at them, as they would at fresh arrays).
            self.pres = tuple(np.empty(n, dtype) for n in self.widths)
            self.outs = tuple(np.empty(n, dtype) for n in self.widths)


#: Weights up to which one sample takes the one-call kernels (``forward_one``, ``backward_one``).
SMALL = 4096


def _key(network: Any) -> tuple:
    # Rebuild the plan when a layer, a parameter array, the loss or the dtype changes.
    # A layer replaces its gradient buffers only together with its parameters (astype
    # to another dtype), so the parameters' identities cover both.
    return (network.dtype, id(network.loss), *map(id, network.layers),
            *(id(p) for layer in network.layers for p in layer.params.values()))


def train_step(network: Any, x: Any, y: Any, checked: bool = False) -> float:
    """One optimizer step on ``(x, y)``, as ``Network.train_step``; returns the loss before it.

    ``checked``: ``y`` is already what ``network.loss.check_targets`` returns
    for it (``fit`` checks the whole training set once), so it is not checked again.
    """
    plan = getattr(network, "_kernel_plan", None)
    if plan is None or plan.key != _key(network):
        plan = network._kernel_plan = _Plan(network)
    x = network._as_input(x)
    single = x.ndim in (1, 3)  # one sample (features,) or one image (C, H, W): a batch of one
    if single and plan.small and x.ndim == 1 and x.shape[0] == plan.weights[0].shape[1]:
        return _small_step(network, plan, x, y, checked)
    a = x[None] if single else x
    inputs: list[np.ndarray] = []
    for item in plan.items:
        inputs.append(a)
        if type(item) is _Block:
            dense = item.dense
            if a.ndim != 2 or a.shape[1] != dense.in_features:
                dense.forward(a[0] if single else a, cache=False)  # raises its shape error
            # one sample: a matrix-vector product (gemv), cheaper than a (1, n) matrix product
            z = (a[0] @ item.weight.T)[None, :] if single else a @ item.weight.T
            out = z if item.act is None else np.empty_like(z)
            _k.bias_act_forward(z, item.bias, item.kind, item.param, out)
            _cache(item, a[0] if single else a, z[0] if single else z, out[0] if single else out)
            a = out
        else:
            a = item.forward(a, True)
    inputs.append(a)  # inputs[i + 1] is the output of item i

    loss, grad = _loss(network.loss, a, y, single, checked)
    if not math.isfinite(loss):
        raise NonFiniteLossError(f"the loss is {loss}; the weights were left as they were")

    items = plan.items
    for index in range(len(items) - 1, -1, -1):
        item = items[index]
        a_in = inputs[index]
        if type(item) is _Block:
            # identity: the derivative needs no forward output
            out = grad if item.kind == _k.IDENTITY else inputs[index + 1]
            _k.act_backward(grad, out, item.kind, item.param, item.grad_bias)
            if single:
                _k.outer_into(item.grad_weight, grad[0], a_in[0])
            else:
                np.matmul(grad.T, a_in, out=item.grad_weight)
            if index:
                grad = (grad[0] @ item.weight)[None, :] if single else grad @ item.weight
        elif index:
            grad = item.backward(grad)
        else:
            item.backward_params(grad)
    network.optimizer.step(plan.params, plan.grads)
    return loss


def _cache(block: _Block, x: np.ndarray, z: np.ndarray, out: np.ndarray) -> None:
    """Write the caches that ``Dense.forward`` and the activation's ``forward`` would write."""
    block.dense._x = x
    act = block.act
    if act is None:
        return
    act._x = z
    kind = block.kind
    if kind == _k.RELU:
        act._active = out > 0  # relu(z) > 0 exactly where z > 0
    elif kind == _k.LEAKY_RELU:
        act._slope = np.where(z > 0, 1.0, act.negative_slope).astype(z.dtype, copy=False)
    elif kind == _k.SIGMOID or kind == _k.TANH:
        act._y = out


def _small_step(network: Any, plan: _Plan, x: np.ndarray, y: Any, checked: bool) -> float:
    """One sample through a small all-block network: ``forward_one``, the loss, ``backward_one``."""
    if not x.flags.c_contiguous:
        x = np.ascontiguousarray(x)
    pres, outs = plan.pres, plan.outs
    _k.forward_one(x, plan.weights, plan.biases, plan.kinds, plan.act_params, pres, outs)
    for block, a_in, z, out in zip(plan.blocks, (x, *outs[:-1]), pres, outs):
        _cache(block, a_in, z, out if block.act is not None else z)
    loss, grad = _loss(network.loss, outs[-1][None, :], y, True, checked)
    if not math.isfinite(loss):
        raise NonFiniteLossError(f"the loss is {loss}; the weights were left as they were")
    _k.backward_one(grad[0], x, plan.weights, plan.kinds, plan.act_params, outs,
                    plan.grad_weights, plan.grad_biases)
    network.optimizer.step(plan.params, plan.grads)
    return loss


def _loss(loss: Any, pred: np.ndarray, y: Any, single: bool,
          checked: bool = False) -> tuple[float, np.ndarray]:
    """The loss's value and ``dL/dpred`` (shaped like ``pred``, 2-D), by kernel where one exists.

    The targets go through the loss's own ``check_targets``, the one validation
    the NumPy path uses too, unless ``checked`` says they already did.
    """
    kind = type(loss)
    n, k = pred.shape
    if kind in (CrossEntropy, SquaredError, MeanSquaredError):
        target = np.asarray(y) if checked else \
            loss.check_targets(pred.shape[1:] if single else pred.shape, y, pred.dtype)
        grad = np.empty_like(pred)
        if target.dtype.kind == "f":  # one row of floats per sample
            rows = target.reshape(n, k).astype(pred.dtype, copy=False)
            if kind is CrossEntropy:
                return _k.cross_entropy_probs(pred, rows, grad), grad
            size = n if kind is SquaredError else pred.size
            total = _k.squared_error(pred, rows, grad, pred.dtype.type(2.0 / size))
            return total / size, grad
        if kind is CrossEntropy:  # integer class labels
            return _k.cross_entropy_labels(pred, target.reshape(-1), grad), grad
    value = loss.forward(pred[0] if single else pred, y)
    grad = loss.backward()
    return value, grad.reshape(n, k)
