"""numba kernels for the image layers: im2col, its adjoint, and max pooling.

Profiling the CNN recipe's step on the NumPy path put about 60% of its time
outside the matrix products: the im2col copy through a six-axis transposed
view, ``np.pad``, the scatter of window gradients, and MaxPool2D's passes
over strided views. Each kernel here does one of those in one loop nest
over memory in order, and names (in its first docstring line) the NumPy
code it must reproduce; ``tests/test_kernels.py`` compares them.

The layers call these only when the kernels are on (``chainrule.kernels``)
and the arrays are float32 or float64; otherwise their NumPy code runs.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_jit = njit(cache=True, error_model="numpy", nogil=True)


@_jit
def im2col(x, kh, kw, sh, sw, ph, pw, cols):
    """Matches: ``Conv2D._convolve``'s ``np.pad``, ``windows`` and ``transpose(1, 4, 5, 0, 2, 3).reshape``.

    ``x`` (n, C, H, W), unpadded; ``cols`` (C*kh*kw, n*OH*OW) receives row
    ``(c, p, q)``, column ``(b, i, j)``: ``x[b, c, i*sh + p - ph, j*sw + q - pw]``,
    or 0 where that pixel lies in the padding.
    """
    n, c, h, w = x.shape
    oh = (h + 2 * ph - kh) // sh + 1
    ow = (w + 2 * pw - kw) // sw + 1
    zero = cols.dtype.type(0.0)
    for ci in range(c):
        for p in range(kh):
            for q in range(kw):
                row = (ci * kh + p) * kw + q
                for b in range(n):
                    for i in range(oh):
                        r = i * sh + p - ph
                        base = (b * oh + i) * ow
                        if r < 0 or r >= h:
                            for j in range(ow):
                                cols[row, base + j] = zero
                            continue
                        for j in range(ow):
                            s = j * sw + q - pw
                            cols[row, base + j] = x[b, ci, r, s] if 0 <= s < w else zero


@_jit
def col2im(grad_cols, kh, kw, sh, sw, ph, pw, grad):
    """Matches: ``Conv2D.backward``'s ``scatter_windows`` of ``grad_cols``, then cutting off the padding.

    ``grad_cols`` (C*kh*kw, n*OH*OW) as ``im2col`` lays it out; ``grad``
    (n, C, H, W), zeros on entry, receives for every pixel the sum of the
    entries that ``im2col`` copied from it (entries from the padding are dropped).
    """
    n, c, h, w = grad.shape
    oh = (h + 2 * ph - kh) // sh + 1
    ow = (w + 2 * pw - kw) // sw + 1
    for b in range(n):
        for ci in range(c):
            for p in range(kh):
                for q in range(kw):
                    row = (ci * kh + p) * kw + q
                    for i in range(oh):
                        r = i * sh + p - ph
                        if r < 0 or r >= h:
                            continue
                        base = (b * oh + i) * ow
                        for j in range(ow):
                            s = j * sw + q - pw
                            if 0 <= s < w:
                                grad[b, ci, r, s] += grad_cols[row, base + j]


@_jit
def max_pool_forward(x, kh, kw, sh, sw, y, argmax):
    """Matches: ``MaxPool2D.forward`` (the output, and its cached first row-major offset of the maximum).

    ``x`` (n, C, H, W); ``y`` (n, C, OH, OW) receives each window's maximum
    (NaN if the window holds one, as ``np.maximum`` gives); ``argmax``, of
    ``y``'s shape or empty for none, the offset ``p * kw + q`` of the first
    input equal to it (0 for a NaN window, where nothing equals it). The loop
    body has no data-dependent branch (selects only): on real activations
    "is this larger?" is a coin toss that a branch predictor loses.
    """
    n, c, oh, ow = y.shape
    record = argmax.size == y.size
    nan = x.dtype.type(np.nan)
    for b in range(n):
        for ci in range(c):
            for i in range(oh):
                for j in range(ow):
                    r0, c0 = i * sh, j * sw
                    best = x[b, ci, r0, c0]
                    at = 0
                    has_nan = best != best
                    for p in range(kh):
                        for q in range(kw):
                            v = x[b, ci, r0 + p, c0 + q]
                            has_nan |= v != v
                            bigger = v > best
                            best = v if bigger else best
                            at = p * kw + q if bigger else at
                    y[b, ci, i, j] = nan if has_nan else best
                    if record:
                        argmax[b, ci, i, j] = 0 if has_nan else at


@_jit
def max_pool_backward(g, argmax, kh, kw, sh, sw, grad):
    """Matches: ``MaxPool2D.backward``: each window's ``g`` added onto the input its ``argmax`` names.

    ``g`` and ``argmax`` (n, C, OH, OW); ``grad`` (n, C, H, W), zeros on entry.
    """
    n, c, oh, ow = g.shape
    for b in range(n):
        for ci in range(c):
            for i in range(oh):
                for j in range(ow):
                    k = argmax[b, ci, i, j]
                    grad[b, ci, i * sh + k // kw, j * sw + k % kw] += g[b, ci, i, j]
