"""The tests' oracles: plain-numpy (or plain-loop) references for every kernel and layer, and the central-difference
gradient checker, shared by every test file that needs them.

The gradient check compares every entry of an analytic gradient with ``(f(p + eps) - f(p - eps)) / (2 eps)``,
eps = 1e-6, in float64; the relative error ``max |numeric - analytic| / max(|numeric|.max(), |analytic|.max())``
must be below 1e-6.
"""
import itertools

import numpy as np

EPS = 1e-6
MAX_REL_ERROR = 1e-6


def conv_reference(x, w, b, stride, pad):
    """Cross-correlation as PyTorch defines it: y[n,f,r,s] = b[f] + sum_{c,i,j} w[f,c,i,j] x[n,c,r*st+i,s*st+j]."""
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    kh, kw = w.shape[2:]
    windows = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::stride, ::stride]
    return np.einsum("ncrsij,fcij->nfrs", windows, w.astype(np.float64)) + b[None, :, None, None]


def out_size(size, k, stride, pad):
    return (size + 2 * pad - k) // stride + 1


def im2col_reference(x, kh, kw, stride, pad):
    """One row per output pixel (n, oh, ow); columns ordered (c, i, j), with zeros where the patch is padding."""
    n, c, h, w = x.shape
    oh, ow = out_size(h, kh, stride, pad), out_size(w, kw, stride, pad)
    cols = np.zeros((n * oh * ow, c * kh * kw), dtype=x.dtype)
    for b in range(n):
        for r in range(oh):
            for s in range(ow):
                col = 0
                for ch in range(c):
                    for i in range(kh):
                        for j in range(kw):
                            hh, ww = r * stride + i - pad, s * stride + j - pad
                            if 0 <= hh < h and 0 <= ww < w:
                                cols[(b * oh + r) * ow + s, col] = x[b, ch, hh, ww]
                            col += 1
    return cols


def maxpool_reference(x, ph, pw, sh, sw):
    """Window maxima and the flat index h*W + w of each window's first (row-major) maximum."""
    n, c, h, w = x.shape
    oh, ow = (h - ph) // sh + 1, (w - pw) // sw + 1
    y = np.empty((n, c, oh, ow), dtype=x.dtype)
    arg = np.empty((n, c, oh, ow), dtype=np.int32)
    for b, ch, r, s in itertools.product(range(n), range(c), range(oh), range(ow)):
        window = x[b, ch, r * sh:r * sh + ph, s * sw:s * sw + pw]
        i, j = np.unravel_index(np.argmax(window), window.shape)  # np.argmax returns the first maximum
        y[b, ch, r, s] = window[i, j]
        arg[b, ch, r, s] = (r * sh + i) * w + s * sw + j
    return y, arg


def numeric_gradient(f, array):
    """Central differences of the scalar f() with respect to every entry of ``array`` (perturbed in place)."""
    grad = np.zeros(array.shape, dtype=np.float64)
    for idx in np.ndindex(array.shape):
        old = array[idx]
        array[idx] = old + EPS
        plus = f()
        array[idx] = old - EPS
        minus = f()
        array[idx] = old
        grad[idx] = (plus - minus) / (2 * EPS)
    return grad


def assert_gradients_match(numeric, analytic, what):
    analytic = np.asarray(analytic, dtype=np.float64)
    assert analytic.shape == numeric.shape, what
    scale = max(np.abs(numeric).max(), np.abs(analytic).max())
    assert scale > 0, f"{what}: the gradient is identically zero, so the check would prove nothing"
    error = np.abs(numeric - analytic).max() / scale
    assert error < MAX_REL_ERROR, f"{what}: relative error {error:.3g}"


def check_layer_gradients(layer, x, before_forward=lambda: None):
    """Gradient-check ``layer`` (float64) at ``x`` for f = sum(layer(x) * R): the input and every parameter."""
    assert layer.dtype == np.float64
    before_forward()
    y = layer(x)
    r = np.random.default_rng(99).standard_normal(y.shape)
    dx = layer.backward(r)
    analytic = {name: g.copy() for name, g in layer.grads.items()}
    assert set(analytic) == set(layer.params)

    def f():
        before_forward()
        return float(np.sum(layer(x) * r))

    assert_gradients_match(numeric_gradient(f, x), dx, f"{type(layer).__name__} input gradient")
    for name, param in layer.params.items():
        assert_gradients_match(numeric_gradient(f, param), analytic[name], f"{type(layer).__name__} grad {name}")
