"""The layers' math as stateless functions with explicit caches (CS231n's and ``torch.nn.functional``'s style).

Each ``*_forward`` returns ``(y, cache)`` and each ``*_backward`` takes the output gradient and that cache and
returns the input gradient (``None`` when ``input_grad`` is false) and, for layers with weights, their gradients.
Inputs are NCHW (dense: (N, features)) C-contiguous arrays of the weights' dtype, float32 or float64: the layer
classes (``cycnn.nn.layers``) convert and check them; these functions do the arithmetic.

The hot loops run in the Cython kernels of ``src_ext/``; a convolution with few enough taps runs in the direct
kernel, a larger one's matrix products go to BLAS through ``cycnn.nn.gemm.matmul``, a dense layer's to cycnn's own
vector kernel through ``cycnn.nn.gemm.dense``.
A ``Workspace`` keeps scratch arrays between calls, so a training step does not allocate them again.
"""
import numpy as np

from cycnn.nn import _activation, _conv, _dense, _fused, _pool, gemm


class Workspace:
    """Scratch arrays reused across calls while their shape and dtype stay the same (contents undefined)."""

    def __init__(self):
        self._arrays = {}

    def get(self, name, shape, dtype):
        array = self._arrays.get(name)
        if array is None or array.shape != tuple(shape) or array.dtype != dtype:
            array = self._arrays[name] = np.empty(shape, dtype=dtype)
        return array

    def clear(self):
        self._arrays = {}


def conv_output_size(h, w, kh, kw, stride, padding):
    """(OH, OW) of a convolution (or a pooling window, with padding 0): floor((H + 2p - k) / s) + 1."""
    return (h + 2 * padding - kh) // stride + 1, (w + 2 * padding - kw) // stride + 1


# --- convolution ------------------------------------------------------------------------------------------------

# Up to this many taps per output pixel, a direct convolution beats im2col + GEMM (1.4-3.6x unpooled, 1.5-4x
# fused with a pool: measured up to 800 taps), as long as its weights stay in the L2 cache (every block of four
# pixels reads all of them).
DIRECT_MAX_TAPS = _fused.DIRECT_MAX_TAPS
DIRECT_MAX_WEIGHT_BYTES = 384 * 1024


def direct_applies(W):
    """Whether the direct kernel (src_ext/direct.h) computes a convolution with weights W (F, C, kh, kw)."""
    return W[0].size <= DIRECT_MAX_TAPS and W.nbytes <= DIRECT_MAX_WEIGHT_BYTES


def conv2d_forward(x, W, b, stride=1, padding=0, relu=False, workspace=None):
    """y = act(conv(x, W) + b); W is (F, C, kh, kw).

    Directly (src_ext/direct.h: every output channel of a pixel at once in vector registers) when
    ``direct_applies``, else as im2col + one GEMM (Caffe's design), whose patches are laid out one row per kernel
    tap (``im2col_t``): their copies are whole output rows."""
    ws = workspace or Workspace()
    n = x.shape[0]
    f, _, kh, kw = W.shape
    oh, ow = conv_output_size(x.shape[2], x.shape[3], kh, kw, stride, padding)
    y = np.empty((n, f, oh, ow), dtype=x.dtype)
    if direct_applies(W):
        _fused.direct_conv_forward(x, np.ascontiguousarray(W.reshape(f, -1).T), b, kh, kw, stride, padding, relu, y)
        return y, (x, None, W, y, stride, padding, relu, ws)
    cols_t = ws.get("cols_t", (W[0].size, n * oh * ow), x.dtype)
    _conv.im2col_t(x, kh, kw, stride, padding, cols_t)
    rows = ws.get("rows", (n * oh * ow, f), x.dtype)
    gemm.matmul(cols_t.T, W.reshape(f, -1).T, out=rows)
    _conv.rows_to_nchw(rows, b, relu, y.reshape(n, f, oh * ow))
    return y, (x, cols_t, W, y, stride, padding, relu, ws)


# The backward pass after a direct forward pass sums each chunk of the batch on its own (see conv2d_backward):
# this many chunks, whatever the thread count.
BACKWARD_CHUNKS = 8


def conv2d_backward(dy, cache, input_grad=True):
    """(dx, dW, db) of ``conv2d_forward``; dx is None without ``input_grad``.

    After a direct forward pass (few taps), image by image without im2col (``_conv.conv_backward``: each image's
    patches and gradients stay in the L2 cache; 1.3-3.4x the im2col way on the benchmark's unpooled layers). After
    an im2col forward pass, channel by channel from its patches: the masked gradient as one row per channel
    (``planes``, F x N*OH*OW), whose sums are db; dW = (cols_t @ planes.T).T; the patches' gradient W.T @ planes, in
    im2col_t's layout (written over cols_t), goes back onto the image by col2im_t."""
    x, cols_t, W, y, stride, padding, relu, ws = cache
    n, f = y.shape[0], y.shape[1]
    if cols_t is None:
        return conv2d_backward_by_image(dy, x, W, y, stride, padding, relu, ws, input_grad)
    planes = ws.get("planes", (f, cols_t.shape[1]), y.dtype)
    _conv.nchw_to_planes(dy.reshape(n, f, -1), y.reshape(n, f, -1), relu, planes)
    db = planes.sum(axis=1)
    dW = np.ascontiguousarray(gemm.matmul(cols_t, planes.T).T).reshape(W.shape)
    if not input_grad:
        return None, dW, db
    gemm.matmul(W.reshape(f, -1).T, planes, out=cols_t)
    dx = np.empty(x.shape, dtype=y.dtype)
    _conv.col2im_t(cols_t, W.shape[2], W.shape[3], stride, padding, dx)
    return dx, dW, db


def conv2d_backward_by_image(dy, x, W, y, stride, padding, relu, ws, input_grad):
    """conv2d_backward in ``_conv.conv_backward``: the gradients of each fixed chunk of the batch summed apart (in
    channels padded to whole vectors), then the chunks added in order."""
    f, _, kh, kw = W.shape
    lanes = _dense.lanes(x.dtype == np.float64)
    chunks = min(BACKWARD_CHUNKS, x.shape[0])
    partial_dwt = ws.get("partial_dwt", (chunks, W[0].size, -(-f // lanes) * lanes), x.dtype)
    partial_db = ws.get("partial_db", (chunks, partial_dwt.shape[2]), x.dtype)
    dx = np.empty(x.shape, dtype=x.dtype) if input_grad else None
    _conv.conv_backward(x, W.reshape(f, -1), np.ascontiguousarray(dy), y, relu, kh, kw, stride, padding,
                        partial_dwt, partial_db, dx)
    dW = np.ascontiguousarray(partial_dwt.sum(axis=0)[:, :f].T).reshape(W.shape)
    return dx, dW, partial_db.sum(axis=0)[:f]


# --- pooling, activation, reshaping, dropout --------------------------------------------------------------------

def maxpool2d_forward(x, pool_size, stride, workspace=None):
    """Max over each window (floored output size); ties go to the first maximum, whose index is cached."""
    ws = workspace or Workspace()
    (ph, pw), (sh, sw) = pool_size, stride
    oh, ow = (x.shape[2] - ph) // sh + 1, (x.shape[3] - pw) // sw + 1
    y = np.empty((x.shape[0], x.shape[1], oh, ow), dtype=x.dtype)
    argmax = ws.get("argmax", y.shape, np.int32)
    _pool.maxpool_forward(x, ph, pw, sh, sw, y, argmax)
    return y, (x.shape, argmax)


def maxpool2d_backward(dy, cache):
    """Each window's gradient goes to its winner."""
    x_shape, argmax = cache
    dx = np.empty(x_shape, dtype=dy.dtype)
    _pool.maxpool_backward(dy, argmax, dx)
    return dx


def relu_forward(x):
    y = np.empty_like(x)
    _activation.relu_forward(x.reshape(-1), y.reshape(-1))
    return y, y


def relu_backward(dy, cache):
    """The gradient passes where the output is positive (at exactly 0 it is taken as 0)."""
    y = cache
    dx = np.empty_like(y)
    _activation.relu_backward(dy.reshape(-1), y.reshape(-1), dx.reshape(-1))
    return dx


def flatten_forward(x):
    return x.reshape(x.shape[0], -1), x.shape


def flatten_backward(dy, cache):
    return dy.reshape(cache)


def dropout_forward(x, p, rng, training=True):
    """Inverted dropout: in training, zero each unit with probability p and scale the rest by 1/(1-p)."""
    if not training or p == 0:
        return x, None
    keep = rng.random(x.shape, dtype=np.float32) >= p
    mask = keep.astype(x.dtype) * x.dtype.type(1.0 / (1.0 - p))
    return x * mask, mask


def dropout_backward(dy, cache):
    mask = cache
    return dy if mask is None else dy * mask


# --- dense ------------------------------------------------------------------------------------------------------

def dense_forward(x, W, b, relu=False):
    """y = act(x @ W + b) with W of shape (in_features, out_features)."""
    y = gemm.dense(x, W)
    y += b
    if relu:
        np.maximum(y, 0, out=y)
    return y, (x, W, y, relu)


def dense_backward(dy, cache, input_grad=True):
    """(dx, dW, db) of ``dense_forward``; dx is None without ``input_grad``."""
    x, W, y, relu = cache
    dz = np.where(y > 0, dy, 0).astype(y.dtype, copy=False) if relu else dy
    db = dz.sum(axis=0)
    dW = gemm.dense(x.T, dz)
    return (gemm.dense(dz, W.T) if input_grad else None), dW, db
