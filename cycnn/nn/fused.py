"""Operator fusion: a Conv2D with a ReLU followed by a MaxPool2D, computed as one step.

The pair computes what the two layers compute one after the other (the same real numbers; the Winograd path
rounds differently in the last bits; tests check both against each other), but never writes the full-resolution
convolution output: the pooled map comes straight out of the convolution (src_ext/fused.pyx), and in the backward
pass only each window's winner gets a gradient. Three paths, chosen from the shapes by ``fused_path``:

- ``direct``: up to DIRECT_MAX_TAPS input taps (in_channels * kh * kw) per output pixel and weights that fit in
  the L2 cache (``cycnn.nn.functional.direct_applies``), convolved directly, all output channels at once in vector
  registers. Its backward pass, when the input gradient is needed and there are at most SCATTERED_MAX_TAPS taps,
  scatters the winners' gradients onto the full-resolution map and runs the unpooled convolution's backward
  (``cycnn.nn.functional.conv2d_backward_by_image``); otherwise its weight gradient is the direct kernel's when
  there are fewer input channels than a vector holds, the winners kernel's (vectorized over input channels)
  otherwise;
- ``winograd``: a 3x3 stride-1 convolution followed by 2x2 pooling with more than DIRECT_FEW_TAPS taps (the
  reference network's second layer) by Winograd's F(2x2, 3x3) algorithm (src_ext/winograd.h);
- ``im2col``: the others, through im2col and a BLAS product (cycnn.nn.gemm.matmul).

``conv_relu_maxpool_forward``/``_backward`` are the stateless functions; ``ConvReluPool`` is the step that
``Sequential`` runs in place of the two layers, keeping the parameters and gradients in the Conv2D layer.
"""
import numpy as np

from cycnn.nn import _conv, _fused, _pool, gemm
from cycnn.nn.functional import Workspace, conv2d_backward_by_image, conv_output_size, direct_applies
from cycnn.nn.layers import Conv2D, MaxPool2D

# Up to this many taps the direct kernel beats Winograd too (the reference network's first layer, 9 taps).
DIRECT_FEW_TAPS = 32
# The direct weight gradient is summed in this many fixed batch chunks, then the chunks in order: the same
# floating-point result on any number of threads.
GRADIENT_CHUNKS = 16
# With an input gradient to compute and up to this many taps, a direct layer's backward pass scatters the winners'
# gradients onto the full-resolution map and runs the unpooled backward (image by image, dense register blocks):
# 1.6-2.2x the winners kernels, whose input gradient is vectorized over the input channels, on the matrix's layers
# of 1-32 input channels and 4-180 taps; 0.94x at 800 taps. Without one (a first layer), the direct weight
# gradient of the winners alone is faster (2.2x).
SCATTERED_MAX_TAPS = 256
# Winograd's kernel works on whole vectors of output channels: 16 floats or 8 doubles.
WINOGRAD_CHANNEL_MULTIPLE = {np.dtype(np.float32): _fused.WINOGRAD_LANES_FLOAT,
                             np.dtype(np.float64): _fused.WINOGRAD_LANES_DOUBLE}


def fused_path(W, stride, pool_size, pool_stride):
    """"direct", "winograd" or "im2col": the kernel that computes this conv + ReLU + max-pool fastest.

    Decided from W on every call: its dtype (``Sequential.astype`` can change it) sets the vector width that
    Winograd's output channels must fill.
    """
    f, c, kh, kw = W.shape
    taps = c * kh * kw
    if taps <= DIRECT_FEW_TAPS:
        return "direct"
    if ((kh, kw) == (3, 3) and stride == 1 and tuple(pool_size) == (2, 2) and tuple(pool_stride) == (2, 2)
            and f % WINOGRAD_CHANNEL_MULTIPLE[W.dtype] == 0):
        return "winograd"
    return "direct" if direct_applies(W) else "im2col"


def direct_weight_grad(W):
    """Whether the direct kernel computes the weight gradient: it vectorizes over output channels, the winners
    kernel over input channels, which wins once they fill a vector."""
    return W.shape[1] < WINOGRAD_CHANNEL_MULTIPLE[W.dtype]


def conv_relu_maxpool_forward(x, W, b, stride, padding, pool_size, pool_stride, workspace=None):
    """maxpool(relu(conv(x, W) + b)) without the full-resolution map; returns (pooled y, cache)."""
    ws = workspace or Workspace()
    n = x.shape[0]
    f, c, kh, kw = W.shape
    oh, ow = conv_output_size(x.shape[2], x.shape[3], kh, kw, stride, padding)
    ph, pw = (oh - pool_size[0]) // pool_stride[0] + 1, (ow - pool_size[1]) // pool_stride[1] + 1
    y = np.empty((n, f, ph, pw), dtype=x.dtype)
    argmax = ws.get("pool_argmax", y.shape, np.int32)
    path = fused_path(W, stride, pool_size, pool_stride)
    if path == "direct":
        taps_by_channel = np.ascontiguousarray(W.reshape(f, -1).T)
        _fused.direct_relu_maxpool_forward(x, taps_by_channel, b, kh, kw, stride, padding, *pool_size,
                                           *pool_stride, y, argmax)
    elif path == "winograd":
        kernel = ws.get("winograd_kernel", (16, c, f), x.dtype)
        _fused.winograd_kernel(W, kernel)
        _fused.winograd_relu_maxpool_forward(x, kernel, b, padding, y, argmax)
    else:
        cols_t = ws.get("cols_t", (c * kh * kw, n * oh * ow), x.dtype)
        _conv.im2col_t(x, kh, kw, stride, padding, cols_t)
        rows = ws.get("rows", (n * oh * ow, f), x.dtype)
        gemm.matmul(cols_t.T, W.reshape(f, -1).T, out=rows)
        _fused.rows_relu_maxpool_forward(rows, b, oh, ow, *pool_size, *pool_stride, y, argmax)
    return y, (path, x, W, y, argmax, stride, padding, tuple(pool_size), tuple(pool_stride), ow, ws)


def conv_relu_maxpool_backward(dy, cache, input_grad=True):
    """(dx, dW, db) of ``conv_relu_maxpool_forward``: only each window's winner passes a gradient."""
    path, x, W, y, argmax, stride, padding, pool_size, pool_stride, ow, ws = cache
    if dy.shape != y.shape:
        raise ValueError(f"gradient of shape {dy.shape} for an output of shape {y.shape}")
    if path == "direct" and input_grad and W[0].size <= SCATTERED_MAX_TAPS:
        oh = conv_output_size(x.shape[2], x.shape[3], W.shape[2], W.shape[3], stride, padding)[0]
        full = ws.get("full_gradient", (len(x), W.shape[0], oh, ow), x.dtype)
        _pool.maxpool_backward(np.where(y > 0, dy, 0).astype(x.dtype, copy=False), argmax, full)
        return conv2d_backward_by_image(full, x, W, full, stride, padding, False, ws, True)
    if path == "direct" and direct_weight_grad(W):
        f, taps = W.shape[0], W[0].size
        chunks = min(GRADIENT_CHUNKS, len(x))
        partial_dwt = ws.get("partial_dwt", (chunks, taps, f), x.dtype)
        partial_db = ws.get("partial_db", (chunks, f), x.dtype)
        _fused.direct_relu_maxpool_backward(x, dy, y, argmax, W.shape[2], W.shape[3], stride, padding,
                                            partial_dwt, partial_db)
        dW = np.ascontiguousarray(partial_dwt.sum(axis=0).T).reshape(W.shape)
        db = partial_db.sum(axis=0)
    else:
        n, c, h, w = x.shape
        x_nhwc = ws.get("x_nhwc", (n * h * w, c), x.dtype)
        _conv.nchw_to_rows(x.reshape(n, c, h * w), x_nhwc)  # channels-last, transposed in parallel
        dw_hwc = np.empty(W.transpose(0, 2, 3, 1).shape, dtype=x.dtype)
        db = np.empty(W.shape[0], dtype=x.dtype)
        _fused.winners_weight_grad(x_nhwc.reshape(n, h, w, c), dy, y, argmax, stride, padding, ow,
                                   pool_size[0], pool_stride[0], dw_hwc, db)
        dW = np.ascontiguousarray(dw_hwc.transpose(0, 3, 1, 2))
    if not input_grad:
        return None, dW, db
    dx = np.empty_like(x)
    kernel_hwc = np.ascontiguousarray(W.transpose(0, 2, 3, 1))
    _fused.winners_input_grad(kernel_hwc, dy, y, argmax, stride, padding, ow, *pool_size, *pool_stride, dx)
    return dx, dW, db


class ConvReluPool:
    """Conv2D(activation="relu") then MaxPool2D as one step; the gradients land in the Conv2D layer."""

    def __init__(self, conv, pool):
        self.conv, self.pool = conv, pool
        self._cache = None

    @staticmethod
    def applies(first, second):
        return isinstance(first, Conv2D) and first.activation == "relu" and isinstance(second, MaxPool2D)

    @property
    def path(self):
        return fused_path(self.conv.params["W"], self.conv.stride, self.pool.pool_size, self.pool.stride)

    def forward(self, x):
        conv, pool = self.conv, self.pool
        x = conv.check_input(x)
        pool.output_shape(conv.output_shape(x.shape[1:]))
        y, self._cache = conv_relu_maxpool_forward(x, conv.params["W"], conv.params["b"], conv.stride, conv.padding,
                                                   pool.pool_size, pool.stride, conv.workspace)
        return y

    def backward(self, dy, input_grad=True):
        if self._cache is None:
            raise RuntimeError("ConvReluPool.backward called without a forward pass before it")
        cache, self._cache = self._cache, None
        dy = np.ascontiguousarray(dy, dtype=self.conv.dtype)
        dx, self.conv.grads["W"], self.conv.grads["b"] = conv_relu_maxpool_backward(dy, cache, input_grad)
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
