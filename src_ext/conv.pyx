"""Convolution as im2col + one GEMM (Caffe's design), and the passes around the GEMM.

Layout: images are NCHW. ``im2col_t`` writes one row per kernel tap, ``cols_t[(c*kh + i)*kw + j, (n*OH + oh)*OW + ow]``
(with stride 1, runs of whole output rows: long contiguous copies), so ``cols_t.T @ W.reshape(F, -1).T`` is the
whole batch's convolution in a single BLAS call with rows of shape (N*OH*OW, F); ``col2im`` adds such per-pixel
rows of tap gradients back onto the image. ``rows_to_nchw`` adds the bias, applies the optional ReLU and turns those rows back into NCHW in the
same pass; ``nchw_to_rows`` is its adjoint for the backward pass. Every loop runs in parallel over images, so no
two threads ever write the same element and results do not depend on the thread count.
"""
from cython cimport floating
from cython.parallel cimport prange

from kernels cimport CYCNN_PARALLEL_MIN_WORK, require, require_conv, same_shape


cpdef int im2col_t(const floating[:, :, :, ::1] x, int kh, int kw, int stride, int pad,
                   floating[:, ::1] cols_t) except -1 nogil:
    """Every (C, kh, kw) patch of ``x`` (zero padding ``pad``) as one column of ``cols_t``, written row by row.

    Each kernel tap's row is a run of whole output rows, so with stride 1 it is made of contiguous copies of OW
    pixels (instead of kw pixels).
    """
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    require_conv(H, W, kh, kw, stride, pad)
    cdef Py_ssize_t OH = (H + 2 * pad - kh) // stride + 1
    cdef Py_ssize_t OW = (W + 2 * pad - kw) // stride + 1
    require(cols_t.shape[0] == C * kh * kw and cols_t.shape[1] == N * OH * OW, b"cols_t must be (C*kh*kw, N*OH*OW)")
    cdef Py_ssize_t n, c, i, j, oh, ow, h, w, row
    cdef floating* dst
    cdef const floating* src
    for n in prange(N, schedule="static", use_threads_if=N > 1 and N * OH * OW * C * kh * kw > CYCNN_PARALLEL_MIN_WORK):
        for c in range(C):
            for i in range(kh):
                for j in range(kw):
                    row = (c * kh + i) * kw + j
                    dst = &cols_t[row, n * OH * OW]
                    for oh in range(OH):
                        h = oh * stride + i - pad
                        if h < 0 or h >= H:
                            for ow in range(OW):
                                dst[ow] = 0
                        elif stride == 1 and j - pad >= 0 and j - pad + OW <= W:
                            src = &x[n, c, h, j - pad]
                            for ow in range(OW):
                                dst[ow] = src[ow]
                        else:
                            for ow in range(OW):
                                w = ow * stride + j - pad
                                dst[ow] = x[n, c, h, w] if 0 <= w < W else 0
                        dst = dst + OW
    return 0


cpdef int col2im(const floating[:, ::1] cols, int kh, int kw, int stride, int pad,
                 floating[:, :, :, ::1] dx) except -1 nogil:
    """The adjoint of im2col_t: zero ``dx``, then add every row of ``cols`` (one output pixel's tap gradients, the
    layout of ``cols_t.T``) back onto the pixels it came from."""
    cdef Py_ssize_t N = dx.shape[0], C = dx.shape[1], H = dx.shape[2], W = dx.shape[3]
    require_conv(H, W, kh, kw, stride, pad)
    cdef Py_ssize_t OH = (H + 2 * pad - kh) // stride + 1
    cdef Py_ssize_t OW = (W + 2 * pad - kw) // stride + 1
    require(cols.shape[0] == N * OH * OW and cols.shape[1] == C * kh * kw, b"cols must be (N*OH*OW, C*kh*kw)")
    cdef Py_ssize_t n, oh, ow, c, i, j, h, w0, k
    cdef const floating* src
    cdef floating* dst
    for n in prange(N, schedule="static", use_threads_if=N > 1 and N * OH * OW * C * kh * kw > CYCNN_PARALLEL_MIN_WORK):
        dst = &dx[n, 0, 0, 0]
        for k in range(C * H * W):
            dst[k] = 0
        for oh in range(OH):
            for ow in range(OW):
                src = &cols[(n * OH + oh) * OW + ow, 0]
                w0 = ow * stride - pad
                for c in range(C):
                    for i in range(kh):
                        h = oh * stride + i - pad
                        if h >= 0 and h < H:
                            if w0 >= 0 and w0 + kw <= W:
                                dst = &dx[n, c, h, w0]
                                for j in range(kw):
                                    dst[j] += src[j]
                            else:
                                for j in range(kw):
                                    if 0 <= w0 + j < W:
                                        dx[n, c, h, w0 + j] += src[j]
                        src = src + kw
    return 0


cpdef int rows_to_nchw(const floating[:, ::1] rows, const floating[::1] bias, bint relu,
                        floating[:, :, ::1] y) except -1 nogil:
    """``y[n, f, p] = act(rows[n*P + p, f] + bias[f])``: bias, optional ReLU and the NHWC-to-NCHW turn in one pass."""
    cdef Py_ssize_t N = y.shape[0], F = y.shape[1], P = y.shape[2]
    cdef Py_ssize_t n, f, p
    cdef floating v, b
    require(rows.shape[0] == N * P and rows.shape[1] == F and bias.shape[0] == F,
            b"rows must be (N*P, F) and bias (F) for y (N, F, P)")
    for n in prange(N, schedule="static", use_threads_if=N > 1 and N * F * P > CYCNN_PARALLEL_MIN_WORK):
        for f in range(F):
            b = bias[f]
            for p in range(P):
                v = rows[n * P + p, f] + b
                if relu and v < 0:
                    v = 0
                y[n, f, p] = v
    return 0


cpdef int nchw_to_rows(const floating[:, :, ::1] dy, const floating[:, :, ::1] y, bint relu,
                        floating[:, ::1] rows) except -1 nogil:
    """``rows[n*P + p, f] = dy[n, f, p]``, zeroed where the ReLU output ``y`` was zero: the adjoint of rows_to_nchw."""
    cdef Py_ssize_t N = dy.shape[0], F = dy.shape[1], P = dy.shape[2]
    cdef Py_ssize_t n, f, p
    require(same_shape(y.shape, dy.shape, 3) and rows.shape[0] == N * P and rows.shape[1] == F,
            b"y must be shaped as dy (N, F, P), and rows (N*P, F)")
    for n in prange(N, schedule="static", use_threads_if=N > 1 and N * F * P > CYCNN_PARALLEL_MIN_WORK):
        for f in range(F):
            for p in range(P):
                if relu and y[n, f, p] <= 0:
                    rows[n * P + p, f] = 0
                else:
                    rows[n * P + p, f] = dy[n, f, p]
    return 0
