"""numba kernels: one pass through memory for each piece of a step's elementwise work.

Each kernel names, in its first docstring line, the NumPy code it must match
("Matches: ..."); the tests compare the two to float32 rounding. Scalars
arrive already cast to the arrays' dtype (see ``kernels/step.py`` and
``optimizers.py``), so float32 arithmetic stays float32 as it does in NumPy.
``error_model="numpy"``: a division by zero gives inf or nan, as in NumPy,
instead of raising.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_jit = njit(cache=True, error_model="numpy", nogil=True)

#: Activation codes shared with ``kernels/step.py``.
IDENTITY, RELU, LEAKY_RELU, SIGMOID, TANH = 0, 1, 2, 3, 4


# -- forward: bias and activation --------------------------------------------------


@_jit
def bias_act_forward(z, bias, kind, param, out):
    """Matches: ``Dense.forward``'s ``y += bias``, then ``activations.<kind>.forward(y)``.

    ``z`` (n, k) holds ``x @ weight.T``; the bias is added to it in place
    (it is then the activation's input), and the activation's output goes to
    ``out`` (n, k) (``out`` may be ``z`` itself when the input need not be
    kept). ``bias`` (k,) or empty for none; ``param`` is LeakyReLU's
    ``negative_slope`` or Sigmoid's ``scale`` (ignored otherwise).
    """
    n, k = z.shape
    has_bias = bias.shape[0] == k
    zero, one = z.dtype.type(0.0), z.dtype.type(1.0)
    for i in range(n):
        for j in range(k):
            v = z[i, j] + bias[j] if has_bias else z[i, j]
            z[i, j] = v
            if kind == RELU:
                if v <= 0:  # NaN stays NaN, as with np.maximum
                    v = zero
            elif kind == LEAKY_RELU:
                if not v > 0:
                    v = v * param
            elif kind == SIGMOID:
                if param != one:
                    v = v * param
                e = np.exp(-abs(v))
                v = one / (one + e) if v >= 0 else e / (one + e)
            elif kind == TANH:
                v = np.tanh(v)
            out[i, j] = v


# -- backward: activation derivative and bias gradient ----------------------------------


@_jit
def act_backward(g, a, kind, param, grad_bias):
    """Matches: ``activations.<kind>.backward(g)``, then ``np.sum(g, axis=0, out=grad_bias)``.

    ``g`` (n, k), the gradient with respect to the activation's output, is
    overwritten with the gradient with respect to its input, using the
    forward output ``a`` (n, k). ``grad_bias`` (k,) receives the column sums
    (pass an empty array for a layer without bias). For ReLU and LeakyReLU
    (``negative_slope >= 0``) ``a > 0`` exactly where the input was.
    """
    n, k = g.shape
    has_bias = grad_bias.shape[0] == k
    zero, one = g.dtype.type(0.0), g.dtype.type(1.0)
    if has_bias:
        for j in range(k):
            grad_bias[j] = zero
    for i in range(n):
        for j in range(k):
            d = g[i, j]
            if kind == RELU:
                d = d if a[i, j] > 0 else d * zero  # d * 0: nan or inf upstream stays nan, as g * mask
            elif kind == LEAKY_RELU:
                d = d if a[i, j] > 0 else d * param
            elif kind == SIGMOID:
                y = a[i, j]
                local = y * (one - y)
                if param != one:
                    local = local * param
                d = d * local
            elif kind == TANH:
                y = a[i, j]
                d = d * (one - y * y)
            g[i, j] = d
            if has_bias:
                grad_bias[j] += d


@_jit
def outer_into(out, g, x):
    """Matches: ``np.outer(g, x)`` written into ``out`` (the one-sample weight gradient)."""
    for i in range(g.shape[0]):
        gi = g[i]
        for j in range(x.shape[0]):
            out[i, j] = gi * x[j]


# -- losses: value and gradient in one pass ---------------------------------------


@_jit
def cross_entropy_labels(z, labels, grad):
    """Matches: ``CrossEntropy.forward(z, labels)`` and then ``.backward()``.

    ``z`` (n, k) logits, ``labels`` (n,) integers already checked to lie in
    ``[0, k)``. Writes ``(softmax(z) - onehot(labels)) / n`` into ``grad``
    and returns the mean loss ``mean(logsumexp(z) - z[label])``.
    """
    n, k = z.shape
    inv_n = z.dtype.type(1.0 / n)
    total = 0.0
    for i in range(n):
        m = z[i, 0]
        for j in range(1, k):
            if z[i, j] > m:
                m = z[i, j]
        s = z.dtype.type(0.0)
        for j in range(k):
            e = np.exp(z[i, j] - m)
            grad[i, j] = e
            s += e
        label = labels[i]
        total += np.log(s) - (z[i, label] - m)
        for j in range(k):
            grad[i, j] = grad[i, j] / s
        grad[i, label] -= 1
        for j in range(k):
            grad[i, j] *= inv_n
    return total / n


@_jit
def cross_entropy_probs(z, y, grad):
    """Matches: ``CrossEntropy.forward(z, y)`` with one row of probabilities per sample, then ``.backward()``.

    Writes ``(softmax(z) - y) / n`` into ``grad``; returns ``-sum(y * log_softmax(z)) / n``.
    """
    n, k = z.shape
    inv_n = z.dtype.type(1.0 / n)
    total = 0.0
    for i in range(n):
        m = z[i, 0]
        for j in range(1, k):
            if z[i, j] > m:
                m = z[i, j]
        s = z.dtype.type(0.0)
        for j in range(k):
            e = np.exp(z[i, j] - m)
            grad[i, j] = e
            s += e
        log_s = np.log(s)
        for j in range(k):
            total -= y[i, j] * ((z[i, j] - m) - log_s)
            grad[i, j] = (grad[i, j] / s - y[i, j]) * inv_n
    return total / n


@_jit
def squared_error(pred, target, grad, scale):
    """Matches: ``SquaredError`` / ``MeanSquaredError`` forward then backward.

    Writes ``(pred - target) * scale`` into ``grad`` (``scale`` is ``2 / n``
    or ``2 / size``) and returns ``sum((pred - target)**2)`` (the caller divides).
    """
    n, k = pred.shape
    total = 0.0
    for i in range(n):
        for j in range(k):
            d = pred[i, j] - target[i, j]
            total += d * d
            grad[i, j] = d * scale
    return total


# -- optimizers (flat views of one parameter) ---------------------------------------------


@_jit
def sgd_update(p, g, buf, lr, momentum, weight_decay, nesterov):
    """Matches: ``SGD._update`` (PyTorch's rule; ``buf`` is the momentum buffer, empty without momentum).

    ``g = g + weight_decay * p``; ``b = momentum * b + g``;
    ``g = g + momentum * b`` (Nesterov) or ``b``; ``p -= g * lr``.
    """
    use_momentum = buf.shape[0] == p.shape[0]
    for i in range(p.shape[0]):
        d = g[i]
        if weight_decay != 0:
            d = d + weight_decay * p[i]
        if use_momentum:
            b = buf[i] * momentum + d
            buf[i] = b
            d = d + momentum * b if nesterov else b
        p[i] -= d * lr


@_jit
def adam_update(p, g, m, v, step_size, beta1, one_minus_beta1, beta2, one_minus_beta2,
                inv_sqrt_bias2, eps, weight_decay):
    """Matches: ``Adam._update`` (``step_size = lr / (1 - beta1**t)``,
    ``inv_sqrt_bias2 = 1 / sqrt(1 - beta2**t)``).

    ``m = beta1 m + (1 - beta1) g``; ``v = beta2 v + (1 - beta2) g**2``;
    ``p -= step_size * m / (sqrt(v) * inv_sqrt_bias2 + eps)``.
    """
    for i in range(p.shape[0]):
        d = g[i]
        if weight_decay != 0:
            d = d + weight_decay * p[i]
        mi = m[i] * beta1 + one_minus_beta1 * d
        vi = v[i] * beta2 + one_minus_beta2 * (d * d)
        m[i] = mi
        v[i] = vi
        p[i] -= step_size * (mi / (np.sqrt(vi) * inv_sqrt_bias2 + eps))


@_jit
def sgd_update_all(ps, gs, bufs, lr, momentum, decays, nesterov):
    """Matches: ``SGD.step`` (``sgd_update`` on each parameter; one call for a whole network)."""
    for t in range(len(ps)):
        sgd_update(ps[t], gs[t], bufs[t], lr, momentum, decays[t], nesterov)


@_jit
def adam_update_all(ps, gs, ms, vs, step_size, beta1, one_minus_beta1, beta2, one_minus_beta2,
                    inv_sqrt_bias2, eps, decays):
    """Matches: ``Adam.step`` (``adam_update`` on each parameter; one call for a whole network)."""
    for t in range(len(ps)):
        adam_update(ps[t], gs[t], ms[t], vs[t], step_size, beta1, one_minus_beta1, beta2,
                    one_minus_beta2, inv_sqrt_bias2, eps, decays[t])


# -- one sample through a small all-Dense network, in one call each way ---------------------


@_jit
def _act1(v, kind, param, one, zero):
    if kind == RELU:
        return zero if v <= 0 else v
    if kind == LEAKY_RELU:
        return v if v > 0 else v * param
    if kind == SIGMOID:
        if param != one:
            v = v * param
        e = np.exp(-abs(v))
        return one / (one + e) if v >= 0 else e / (one + e)
    if kind == TANH:
        return np.tanh(v)
    return v


@_jit
def forward_one(x, weights, biases, kinds, params, pres, outs):
    """Matches: ``Dense.forward`` then the activation, block after block, for one sample.

    ``x`` (in,), ``weights[l]`` (out, in) and ``biases[l]`` (out,) or empty,
    ``kinds``/``params`` the activation codes; ``pres[l]`` (out,) receives
    each Dense output (the activation's input), ``outs[l]`` the block's
    output. For small networks, where one call beats a BLAS call per product.
    """
    one, zero = x.dtype.type(1.0), x.dtype.type(0.0)
    a = x
    for layer in range(len(weights)):
        w, b, out = weights[layer], biases[layer], outs[layer]
        kind, param = kinds[layer], params[layer]
        has_bias = b.shape[0] == w.shape[0]
        for j in range(w.shape[0]):
            s = zero
            for i in range(w.shape[1]):
                s += w[j, i] * a[i]
            if has_bias:
                s += b[j]
            pres[layer][j] = s
            out[j] = _act1(s, kind, param, one, zero)
        a = out


@_jit
def backward_one(grad, x, weights, kinds, params, outs, grad_weights, grad_biases):
    """Matches: each block's ``act_backward`` (bias gradient = g), ``outer_into`` and ``g @ weight``, last block first.

    ``grad`` (out,) is ``dL/d(output)``; fills ``grad_weights[l]`` and
    ``grad_biases[l]`` (empty for none). The input gradient of the first
    block is not computed (a training step does not need it).
    """
    one, zero = x.dtype.type(1.0), x.dtype.type(0.0)
    g = grad.copy()
    for layer in range(len(weights) - 1, -1, -1):
        w, out, gw, gb = weights[layer], outs[layer], grad_weights[layer], grad_biases[layer]
        kind, param = kinds[layer], params[layer]
        for j in range(g.shape[0]):
            d, y = g[j], out[j]
            if kind == RELU:
                d = d if y > 0 else d * zero
            elif kind == LEAKY_RELU:
                d = d if y > 0 else d * param
            elif kind == SIGMOID:
                local = y * (one - y)
                if param != one:
                    local = local * param
                d = d * local
            elif kind == TANH:
                d = d * (one - y * y)
            g[j] = d
        if gb.shape[0] == g.shape[0]:
            for j in range(g.shape[0]):
                gb[j] = g[j]
        a_in = x if layer == 0 else outs[layer - 1]
        for j in range(g.shape[0]):
            for i in range(a_in.shape[0]):
                gw[j, i] = g[j] * a_in[i]
        if layer:
            below = np.zeros(w.shape[1], dtype=g.dtype)
            for j in range(w.shape[0]):
                for i in range(w.shape[1]):
                    below[i] += g[j] * w[j, i]
            g = below
