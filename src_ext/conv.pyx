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

``conv_backward`` is the backward pass after a direct forward pass (few taps): image by image, without im2col,
each image's gradients in the L2 cache, in fixed chunks of the batch whose partial sums the caller adds in order.
"""
from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.stdlib cimport free, malloc
from libc.string cimport memset

from kernels cimport (CYCNN_PARALLEL_MIN_WORK, CYCNN_VECTOR_BYTES, DENSE_ROWS, DENSE_VECS, DIRECT_MAX_VECS,
                      WEIGHT_GRAD_MAX_TAPS, WEIGHT_GRAD_WIDE_TAPS, cycnn_dense_tile, cycnn_weight_grad_tile,
                      omp_get_max_threads, padded_image, require, require_conv, same_shape)


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


cdef inline void add_patches(const floating* cols, Py_ssize_t ld, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                             int kh, int kw, int stride, int pad, Py_ssize_t OH, Py_ssize_t OW,
                             floating* image) noexcept nogil:
    """One image's part of col2im: zero ``image`` (C, H, W), then add each kernel tap's row of ``cols`` (taps
    ordered (c, i, j), row stride ``ld``, one column per output pixel) back onto the pixels it was copied from."""
    cdef Py_ssize_t c, i, j, oh, ow, h, k, shift, first, last
    cdef const floating* src
    cdef floating* dst
    for k in range(C * H * W):
        image[k] = 0
    for c in range(C):
        for i in range(kh):
            for j in range(kw):
                src = cols + ((c * kh + i) * kw + j) * ld
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
    cdef Py_ssize_t n
    for n in prange(N, schedule="static", use_threads_if=N > 1 and N * OH * OW * C * kh * kw > CYCNN_PARALLEL_MIN_WORK):
        add_patches(&cols_t[0, n * OH * OW], N * OH * OW, C, H, W, kh, kw, stride, pad, OH, OW, &dx[n, 0, 0, 0])
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


cdef inline void image_to_rows(const floating* x, Py_ssize_t C, Py_ssize_t P, floating* rows) noexcept nogil:
    """``rows[p * C + c] = x[c * P + p]``: one image channels-last, 16 pixels at a time, so that the 16 rows being
    written stay in the L1 cache while every channel is read (channel after channel, every write to a large
    image's rows missed it: 1.6-1.9x on 32 channels of 1,024 pixels and 64 of 196)."""
    cdef Py_ssize_t p0, p, c
    for p0 in range(0, P, 16):
        for c in range(C):
            for p in range(p0, min(p0 + 16, P)):
                rows[p * C + c] = x[c * P + p]


cpdef int nchw_to_rows(const floating[:, :, ::1] x, floating[:, ::1] rows) except -1 nogil:
    """``rows[n*P + p, c] = x[n, c, p]``: images (N, C, P) channels-last, as the fused kernels read them."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], P = x.shape[2]
    cdef Py_ssize_t n
    require(rows.shape[0] == N * P and rows.shape[1] == C, b"rows must be (N*P, C) for x (N, C, P)")
    if N == 0 or C == 0 or P == 0:
        return 0
    for n in prange(N, schedule="static", use_threads_if=N > 1 and N * C * P > CYCNN_PARALLEL_MIN_WORK):
        image_to_rows(&x[n, 0, 0], C, P, &rows[n * P, 0])
    return 0


cdef inline void masked_planes(const floating* dy, const floating* y, bint relu, Py_ssize_t F, Py_ssize_t P,
                               Py_ssize_t ld, floating* planes) noexcept nogil:
    """One image's output gradient (F, P), zero where the ReLU output ``y`` was zero, into ``planes`` (F rows of
    stride ``ld`` >= P): contiguous runs of P pixels, branch-free selects."""
    cdef Py_ssize_t f, p
    cdef floating g
    for f in range(F):
        for p in range(P):
            g = dy[f * P + p]
            planes[f * ld + p] = g if not relu or y[f * P + p] > 0 else 0


cpdef int nchw_to_planes(const floating[:, :, ::1] dy, const floating[:, :, ::1] y, bint relu,
                          floating[:, ::1] planes) except -1 nogil:
    """``planes[f, n*P + p] = dy[n, f, p]``, zeroed where the ReLU output ``y`` was zero: one row per channel, so
    the bias gradient is each row's sum, the weight gradient ``cols_t @ planes.T`` and the patches' gradient
    ``W.T @ planes`` (in im2col_t's layout). Contiguous runs of P pixels, in parallel over images."""
    cdef Py_ssize_t N = dy.shape[0], F = dy.shape[1], P = dy.shape[2]
    cdef Py_ssize_t n
    require(same_shape(y.shape, dy.shape, 3) and planes.shape[0] == F and planes.shape[1] == N * P,
            b"y must be shaped as dy (N, F, P), and planes (F, N*P)")
    if N == 0 or F == 0 or P == 0:
        return 0
    for n in prange(N, schedule="static", use_threads_if=N > 1 and N * F * P > CYCNN_PARALLEL_MIN_WORK):
        masked_planes(&dy[n, 0, 0], &y[n, 0, 0], relu, F, P, N * P, &planes[0, n * P])
    return 0


# --- the backward pass image by image, without im2col ---------------------------------------------------------

cpdef int conv_backward(const floating[:, :, :, ::1] x, const floating[:, ::1] w2,
                        const floating[:, :, :, ::1] dy, const floating[:, :, :, ::1] y, bint relu, int KH, int KW,
                        int stride, int pad, floating[:, :, ::1] partial_dwt, floating[:, ::1] partial_db,
                        floating[:, :, :, ::1] dx=None) except -1 nogil:
    """Gradients of an unpooled convolution (weights ``w2`` as (F, taps), taps ordered (c, ki, kj); optionally
    followed by a ReLU whose output is ``y``) without im2col, image by image, each in the L2 cache.

    Per image: its output gradient masked by the ReLU, one row per channel (``plane``: pixels padded to whole
    vectors), then channels-last (``rows``: channels padded to whole vectors). The weight gradient comes from the
    direct kernel's blocks (src_ext/direct.h: a few taps by up to four vectors of channels held in registers while
    the pixels run); the input gradient ``dx`` (when given) from the plane times the weights in cycnn's dense
    kernel (src_ext/dense.h), the patches' gradient in im2col_t's layout, added back onto the image as col2im_t
    does. The batch is cut into K = ``partial_dwt.shape[0]`` fixed chunks, each summing into its own
    ``partial_dwt[k]`` (taps x Fpad) and ``partial_db[k]`` (Fpad) pixel by pixel in order, so the caller's sum over
    the chunks does not depend on the thread count."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t F = w2.shape[0], T = w2.shape[1], K = partial_dwt.shape[0], Fpad = partial_dwt.shape[2]
    cdef Py_ssize_t lanes = CYCNN_VECTOR_BYTES // sizeof(floating), panel = DENSE_VECS * lanes
    require_conv(H, W, KH, KW, stride, pad)
    cdef Py_ssize_t HP = H + 2 * pad, WP = W + 2 * pad
    cdef Py_ssize_t OH = (HP - KH) // stride + 1, OW = (WP - KW) // stride + 1, P = OH * OW
    cdef Py_ssize_t ld = (P + lanes - 1) // lanes * lanes
    cdef bint input_grad = dx is not None
    require(T == C * KH * KW, b"weights must be (F, C*KH*KW)")
    require(K >= 1 and partial_dwt.shape[1] == T and Fpad % lanes == 0 and F <= Fpad and partial_db.shape[0] == K
            and partial_db.shape[1] == Fpad, b"partial gradients must be (K, taps, Fpad) and (K, Fpad), Fpad whole "
            b"vectors")
    require(same_shape(dy.shape, y.shape, 4) and dy.shape[0] == N and dy.shape[1] == F and dy.shape[2] == OH
            and dy.shape[3] == OW, b"dy and y must both be (N, F, OH, OW)")
    require(not input_grad or same_shape(dx.shape, x.shape, 4), b"dx must be shaped as x")
    cdef Py_ssize_t n, f, p, k, i, r0, n0, vecs, group, taps, tiles, count = 0
    cdef Py_ssize_t vectors = Fpad // lanes, groups = (vectors + DIRECT_MAX_VECS - 1) // DIRECT_MAX_VECS
    # The weight gradient's blocks: each group of up to DIRECT_MAX_VECS vectors of channels cut into tiles of taps,
    # up to WEIGHT_GRAD_MAX_TAPS (WEIGHT_GRAD_WIDE_TAPS with more than two vectors) and as even as can be.
    cdef Py_ssize_t* blocks = <Py_ssize_t*>malloc(4 * groups * T * sizeof(Py_ssize_t))
    if blocks == NULL:
        with gil:
            raise MemoryError()
    for group in range(groups):
        vecs = min(DIRECT_MAX_VECS, vectors - group * DIRECT_MAX_VECS)
        taps = WEIGHT_GRAD_MAX_TAPS if vecs <= 2 else WEIGHT_GRAD_WIDE_TAPS
        tiles = (T + taps - 1) // taps
        for i in range(tiles):
            blocks[4 * count] = T * i // tiles
            blocks[4 * count + 1] = T * (i + 1) // tiles
            blocks[4 * count + 2] = group * DIRECT_MAX_VECS * lanes
            blocks[4 * count + 3] = vecs
            count += 1
    cdef const floating* image
    cdef floating* padded
    cdef floating* plane
    cdef floating* rows
    cdef floating* cols
    cdef floating* db
    with parallel(use_threads_if=K > 1 and N * P * F * T > CYCNN_PARALLEL_MIN_WORK):
        padded = <floating*>malloc(C * HP * WP * sizeof(floating)) if pad > 0 else NULL
        plane = <floating*>malloc(F * ld * sizeof(floating))
        rows = <floating*>malloc(P * Fpad * sizeof(floating))
        cols = <floating*>malloc((T * ld if input_grad else 1) * sizeof(floating))
        for k in prange(K, schedule="static"):
            memset(&partial_dwt[k, 0, 0], 0, T * Fpad * sizeof(floating))
            memset(&partial_db[k, 0], 0, Fpad * sizeof(floating))
            db = &partial_db[k, 0]
            for n in range(k * N // K, (k + 1) * N // K):
                image = padded_image(x[n], pad, padded)
                masked_planes(&dy[n, 0, 0, 0], &y[n, 0, 0, 0], relu, F, P, ld, plane)
                for f in range(F):
                    for p in range(P, ld):
                        plane[f * ld + p] = 0
                for p in range(P):
                    for f in range(F):
                        rows[p * Fpad + f] = plane[f * ld + p]
                    for f in range(F, Fpad):
                        rows[p * Fpad + f] = 0
                    for f in range(Fpad):
                        db[f] += rows[p * Fpad + f]
                for i in range(count):
                    cycnn_weight_grad_tile(image, HP, WP, KH, KW, stride, OH, OW, rows + blocks[4 * i + 2], Fpad,
                                           blocks[4 * i], blocks[4 * i + 1], blocks[4 * i + 3],
                                           &partial_dwt[k, 0, blocks[4 * i + 2]], Fpad)
                if input_grad:
                    # Tiles of DENSE_ROWS taps by one panel of pixels, each panel (in L1) under every tile of taps.
                    for n0 in range((ld + panel - 1) // panel):
                        for r0 in range((T + DENSE_ROWS - 1) // DENSE_ROWS):
                            cycnn_dense_tile(&w2[0, 0], 1, T, plane, cols, r0 * DENSE_ROWS,
                                             min(DENSE_ROWS, T - r0 * DENSE_ROWS), n0 * panel,
                                             min((n0 + 1) * panel, ld), F, ld)
                    add_patches(cols, ld, C, H, W, KH, KW, stride, pad, OH, OW, &dx[n, 0, 0, 0])
        free(padded)
        free(plane)
        free(rows)
        free(cols)
    free(blocks)
    return 0
