"""Convolution as im2col + one GEMM (Caffe's design), and the passes around the GEMM.

Layout: images are NCHW. ``im2col_t`` writes one row per kernel tap, ``cols_t[(c*kh + i)*kw + j, (n*OH + oh)*OW + ow]``
(with stride 1, runs of whole output rows: long contiguous copies), so ``cols_t.T @ W.reshape(F, -1).T`` is the
whole batch's convolution in a single BLAS call with rows of shape (N*OH*OW, F). ``rows_to_nchw`` adds the bias,
applies the optional ReLU and turns those rows back into NCHW in the same pass.

The backward pass works channel by channel: ``nchw_to_planes`` lays the output gradient out as one row per
channel, (F, N*OH*OW); two GEMMs give the weight gradient and the patches' gradient in im2col_t's layout, and
``col2im_t``, im2col_t's adjoint, adds the latter back onto the image in runs of whole rows. ``nchw_to_rows`` turns
images channels-last for the fused kernels. Every loop runs in parallel over images, so no two threads ever write
the same element and results do not depend on the thread count.
"""
from cython cimport floating
from cython.parallel cimport prange

from kernels cimport CYCNN_PARALLEL_MIN_WORK, require, require_conv, same_shape


cdef inline (Py_ssize_t, Py_ssize_t) inside_columns(Py_ssize_t shift, Py_ssize_t stride, Py_ssize_t W,
                                                     Py_ssize_t OW) noexcept nogil:
    """The output columns [first, last) whose input column ow * stride + shift lies inside the image [0, W): the
    rest are padding. Computed with non-negative operands only (C division truncates)."""
    cdef Py_ssize_t first = 0 if shift >= 0 else (stride - 1 - shift) // stride
    cdef Py_ssize_t last = 0 if W - 1 - shift < 0 else min(OW, (W - 1 - shift) // stride + 1)
    first = min(first, OW)
    return first, max(first, last)


cpdef int im2col_t(const floating[:, :, :, ::1] x, int kh, int kw, int stride, int pad,
                   floating[:, ::1] cols_t) except -1 nogil:
    """Every (C, kh, kw) patch of ``x`` (zero padding ``pad``) as one column of ``cols_t``, written row by row.

    Each kernel tap's row is a run of whole output rows, so with stride 1 it is made of contiguous copies of up to
    OW pixels (instead of kw pixels), between the zeros of the padding.
    """
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    require_conv(H, W, kh, kw, stride, pad)
    cdef Py_ssize_t OH = (H + 2 * pad - kh) // stride + 1
    cdef Py_ssize_t OW = (W + 2 * pad - kw) // stride + 1
    require(cols_t.shape[0] == C * kh * kw and cols_t.shape[1] == N * OH * OW, b"cols_t must be (C*kh*kw, N*OH*OW)")
    cdef Py_ssize_t n, c, i, j, oh, ow, h, row, shift, first, last
    cdef floating* dst
    cdef const floating* src
    for n in prange(N, schedule="static", use_threads_if=N > 1 and N * OH * OW * C * kh * kw > CYCNN_PARALLEL_MIN_WORK):
        for c in range(C):
            for i in range(kh):
                for j in range(kw):
                    row = (c * kh + i) * kw + j
                    dst = &cols_t[row, n * OH * OW]
                    shift = j - pad  # the input column of output column 0
                    first, last = inside_columns(shift, stride, W, OW)
                    for oh in range(OH):
                        h = oh * stride + i - pad
                        if h < 0 or h >= H:
                            for ow in range(OW):
                                dst[ow] = 0
                        else:
                            src = &x[n, c, h, 0]
                            for ow in range(first):
                                dst[ow] = 0
                            if stride == 1:
                                for ow in range(first, last):
                                    dst[ow] = src[ow + shift]
                            else:
                                for ow in range(first, last):
                                    dst[ow] = src[ow * stride + shift]
                            for ow in range(last, OW):
                                dst[ow] = 0
                        dst = dst + OW
    return 0


cpdef int col2im_t(const floating[:, ::1] cols_t, int kh, int kw, int stride, int pad,
                   floating[:, :, :, ::1] dx) except -1 nogil:
    """The adjoint of im2col_t: zero ``dx``, then add each kernel tap's row of ``cols_t`` back onto the pixels it
    was copied from. With stride 1 these are runs of whole output rows: contiguous, vectorized additions."""
    cdef Py_ssize_t N = dx.shape[0], C = dx.shape[1], H = dx.shape[2], W = dx.shape[3]
    require_conv(H, W, kh, kw, stride, pad)
    cdef Py_ssize_t OH = (H + 2 * pad - kh) // stride + 1
    cdef Py_ssize_t OW = (W + 2 * pad - kw) // stride + 1
    require(cols_t.shape[0] == C * kh * kw and cols_t.shape[1] == N * OH * OW,
            b"cols_t must be (C*kh*kw, N*OH*OW)")
    cdef Py_ssize_t n, c, i, j, oh, ow, h, k, shift, first, last
    cdef const floating* src
    cdef floating* image
    cdef floating* dst
    for n in prange(N, schedule="static", use_threads_if=N > 1 and N * OH * OW * C * kh * kw > CYCNN_PARALLEL_MIN_WORK):
        image = &dx[n, 0, 0, 0]
        for k in range(C * H * W):
            image[k] = 0
        for c in range(C):
            for i in range(kh):
                for j in range(kw):
                    src = &cols_t[(c * kh + i) * kw + j, n * OH * OW]
                    shift = j - pad  # the input column of output column 0
                    first, last = inside_columns(shift, stride, W, OW)
                    for oh in range(OH):
                        h = oh * stride + i - pad
                        if h >= 0 and h < H:
                            dst = image + (c * H + h) * W
                            if stride == 1:
                                for ow in range(first, last):
                                    dst[ow + shift] += src[ow]
                            else:
                                for ow in range(first, last):
                                    dst[ow * stride + shift] += src[ow]
                        src = src + OW
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


cpdef int nchw_to_rows(const floating[:, :, ::1] x, floating[:, ::1] rows) except -1 nogil:
    """``rows[n*P + p, c] = x[n, c, p]``: images (N, C, P) channels-last, as the fused kernels read them."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], P = x.shape[2]
    cdef Py_ssize_t n, c, p
    require(rows.shape[0] == N * P and rows.shape[1] == C, b"rows must be (N*P, C) for x (N, C, P)")
    for n in prange(N, schedule="static", use_threads_if=N > 1 and N * C * P > CYCNN_PARALLEL_MIN_WORK):
        for c in range(C):
            for p in range(P):
                rows[n * P + p, c] = x[n, c, p]
    return 0


cpdef int nchw_to_planes(const floating[:, :, ::1] dy, const floating[:, :, ::1] y, bint relu,
                          floating[:, ::1] planes) except -1 nogil:
    """``planes[f, n*P + p] = dy[n, f, p]``, zeroed where the ReLU output ``y`` was zero: one row per channel, so
    the bias gradient is each row's sum, the weight gradient ``cols_t @ planes.T`` and the patches' gradient
    ``W.T @ planes`` (in im2col_t's layout). Contiguous runs of P pixels, in parallel over images."""
    cdef Py_ssize_t N = dy.shape[0], F = dy.shape[1], P = dy.shape[2]
    cdef Py_ssize_t n, f, p
    cdef const floating* src
    cdef const floating* out
    cdef floating* dst
    require(same_shape(y.shape, dy.shape, 3) and planes.shape[0] == F and planes.shape[1] == N * P,
            b"y must be shaped as dy (N, F, P), and planes (F, N*P)")
    for n in prange(N, schedule="static", use_threads_if=N > 1 and N * F * P > CYCNN_PARALLEL_MIN_WORK):
        for f in range(F):
            src = &dy[n, f, 0]
            out = &y[n, f, 0]
            dst = &planes[f, n * P]
            if relu:
                for p in range(P):
                    dst[p] = src[p] if out[p] > 0 else 0
            else:
                for p in range(P):
                    dst[p] = src[p]
    return 0
