"""Operator fusion: how Sequential runs a Conv2D with a ReLU followed by a MaxPool2D as one step.

The pair computes what the two layers compute one after the other (the same real numbers; the Winograd path
rounds differently in the last bits; tests check both against each other), but never writes the full-resolution
convolution output: the pooled map comes straight out of the convolution (src_ext/fused.pyx), and in the backward
pass only each window's winner gets a gradient. A layer with few input taps (in_channels * kh * kw, e.g. the first
layer on grayscale images) is convolved directly; a 3x3 convolution followed by 2x2 pooling (the reference
network's second layer) by Winograd's F(2x2, 3x3) algorithm (src_ext/winograd.h); the others go through im2col
and a BLAS product (cycnn.gemm.matmul). The parameters and gradients stay in the Conv2D layer, as without fusion.
"""
import numpy as np

from cycnn import _conv, _fused, gemm
from cycnn.layers import Conv2D, MaxPool2D

# Up to this many taps per output pixel, a direct convolution beats im2col + GEMM (which is tiny and memory-bound).
DIRECT_MAX_TAPS = _fused.DIRECT_MAX_TAPS
# The direct weight gradient is summed in this many fixed batch chunks, then the chunks in order: the same
# floating-point result on any number of threads.
GRADIENT_CHUNKS = 16
# Winograd's kernel works on whole vectors of output channels: 16 floats or 8 doubles.
WINOGRAD_CHANNEL_MULTIPLE = {np.dtype(np.float32): _fused.WINOGRAD_LANES_FLOAT,
                             np.dtype(np.float64): _fused.WINOGRAD_LANES_DOUBLE}


class ConvReluPool:
    """Conv2D(activation="relu") then MaxPool2D, fused. ``forward(x)`` returns the pooled map."""

    def __init__(self, conv, pool):
        self.conv, self.pool = conv, pool
        kh, kw = conv.kernel_size
        self.direct = conv.in_channels * kh * kw <= DIRECT_MAX_TAPS
        self._winograd_shape = (not self.direct and conv.kernel_size == (3, 3) and conv.stride == 1
                                and pool.pool_size == (2, 2) and pool.stride == (2, 2))
        self._cache = None

    @property
    def winograd(self):
        """Whether the Winograd kernel runs: decided on every pass, since ``Sequential.astype`` can change the
        dtype, and with it the vector width the channels must fill."""
        return (self._winograd_shape
                and self.conv.out_channels % WINOGRAD_CHANNEL_MULTIPLE[np.dtype(self.conv.dtype)] == 0)

    @staticmethod
    def applies(first, second):
        return isinstance(first, Conv2D) and first.activation == "relu" and isinstance(second, MaxPool2D)

    def forward(self, x):
        conv, pool = self.conv, self.pool
        x = conv._input(x, 4)
        n = x.shape[0]
        f, oh, ow = conv.output_shape(x.shape[1:])
        _, ph, pw = pool.output_shape((f, oh, ow))
        W, b = conv.params["W"], conv.params["b"]
        y = np.empty((n, f, ph, pw), dtype=conv.dtype)
        argmax = conv._buffer("pool_argmax", y.shape, np.int32)
        if self.direct:
            taps_by_channel = np.ascontiguousarray(W.reshape(f, -1).T)
            _fused.direct_relu_maxpool_forward(x, taps_by_channel, b, *conv.kernel_size, conv.stride, conv.padding,
                                               *pool.pool_size, *pool.stride, y, argmax)
            self._cache = (x, y, argmax)
            return y
        if self.winograd:
            kernel = conv._buffer("winograd_kernel", (16, conv.in_channels, conv.out_channels))
            _fused.winograd_kernel(W, kernel)
            _fused.winograd_relu_maxpool_forward(x, kernel, b, conv.padding, y, argmax)
            self._cache = (x, y, argmax)
            return y
        kh, kw = conv.kernel_size
        cols_t = conv._buffer("cols_t", (conv.in_channels * kh * kw, n * oh * ow))
        _conv.im2col_t(x, kh, kw, conv.stride, conv.padding, cols_t)
        rows = conv._buffer("rows", (n * oh * ow, f))
        gemm.matmul(cols_t.T, W.reshape(f, -1).T, out=rows)
        _fused.rows_relu_maxpool_forward(rows, b, oh, ow, *pool.pool_size, *pool.stride, y, argmax)
        self._cache = (x, y, argmax)
        return y

    def backward(self, dy, input_grad=True):
        if self._cache is None:
            raise RuntimeError("ConvReluPool.backward called without a forward pass before it")
        (x, y, argmax), self._cache = self._cache, None
        conv = self.conv
        W = conv.params["W"]
        dy = np.ascontiguousarray(dy, dtype=conv.dtype)
        if dy.shape != y.shape:
            raise ValueError(f"gradient of shape {dy.shape} for an output of shape {y.shape}")
        if self.direct:
            f, taps = W.shape[0], W[0].size
            chunks = min(GRADIENT_CHUNKS, len(x))
            partial_dwt = conv._buffer("partial_dwt", (chunks, taps, f))
            partial_db = conv._buffer("partial_db", (chunks, f))
            _fused.direct_relu_maxpool_backward(x, dy, y, argmax, *conv.kernel_size, conv.stride, conv.padding,
                                                partial_dwt, partial_db)
            conv.grads["W"] = np.ascontiguousarray(partial_dwt.sum(axis=0).T).reshape(W.shape)
            conv.grads["b"] = partial_db.sum(axis=0)
            return self._input_grad(x, dy, y, argmax) if input_grad else None
        n, c, h, w = x.shape
        x_rows = x.reshape(n, c, h * w)
        x_nhwc = conv._buffer("x_nhwc", (n * h * w, c))
        _conv.nchw_to_rows(x_rows, x_rows, False, x_nhwc)  # channels-last, transposed in parallel
        x_nhwc = x_nhwc.reshape(n, h, w, c)
        dw_hwc = np.empty(W.transpose(0, 2, 3, 1).shape, dtype=conv.dtype)
        db = np.empty_like(conv.params["b"])
        _fused.winners_weight_grad(x_nhwc, dy, y, argmax, conv.stride, conv.padding,
                                   conv.output_shape(x.shape[1:])[2], self.pool.pool_size[0], self.pool.stride[0], dw_hwc, db)
        conv.grads["W"] = np.ascontiguousarray(dw_hwc.transpose(0, 3, 1, 2))
        conv.grads["b"] = db
        return self._input_grad(x, dy, y, argmax) if input_grad else None

    def _input_grad(self, x, dy, y, argmax):
        conv = self.conv
        dx = np.empty_like(x)
        kernel_hwc = np.ascontiguousarray(conv.params["W"].transpose(0, 2, 3, 1))
        _fused.winners_input_grad(kernel_hwc, dy, y, argmax, conv.stride, conv.padding,
                                  conv.output_shape(x.shape[1:])[2], *self.pool.pool_size, *self.pool.stride, dx)
        return dx


def plan(layers):
    """Group ``layers`` into steps: (first index, number of layers, fused op or None for a plain layer)."""
    steps, i = [], 0
    while i < len(layers):
        if i + 1 < len(layers) and ConvReluPool.applies(layers[i], layers[i + 1]):
            steps.append((i, 2, ConvReluPool(layers[i], layers[i + 1])))
            i += 2
        else:
            steps.append((i, 1, None))
            i += 1
    return steps
