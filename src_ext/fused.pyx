"""Conv + bias + ReLU + max-pool fused into single passes, forward and backward.

A Conv2D with a ReLU followed by a MaxPool2D never needs its full-resolution output: max-pooling a ReLU equals the
ReLU of the max, so the pooled map and the argmax are all the backward pass needs, and only the winner of each
window (one output pixel in four for 2x2 pooling), where the ReLU was open, receives a gradient.

Forward, three ways in (the inner loops are C headers beside this file):
- by Winograd's F(2x2, 3x3) for a 3x3 stride-1 convolution followed by 2x2 pooling: one 4x4 input tile gives
  exactly one pooling window's four outputs (``winograd_relu_maxpool_forward``, winograd.h);
- by direct convolution, for layers with few input taps (the first layer: one channel makes an im2col GEMM tiny
  and memory-bound): ``direct_relu_maxpool_forward`` (direct.h), whose weight gradient is
  ``direct_relu_maxpool_backward``;
- from the GEMM rows of an im2col convolution (``rows[n*P + p, f]``, P = OH*OW): ``rows_relu_maxpool_forward``
  pools straight out of the rows (pool_rows.h, which the direct path uses too).

Backward from the winners only (winners.h): ``winners_weight_grad`` and ``winners_input_grad`` touch one input
patch per winner instead of running dense GEMMs over every output pixel (a fifth of the work for the reference
network's second layer), summing in vector registers.

``argmax`` holds, for every pooled output, the winning position p = oh*OW + ow in the convolution's output plane.
Ties go to the first maximum. Loops that reduce (weight and bias gradients) are split over output channels or
fixed batch chunks, never over threads, so every sum runs in the same order whatever the thread count.
"""
from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memset

from kernels cimport (CYCNN_DIRECT_MAX_TAPS, CYCNN_PARALLEL_MIN_WORK, CYCNN_VECTOR_BYTES,
                      cycnn_direct_conv, cycnn_direct_grad, cycnn_pool_rows, cycnn_winners_input_grad,
                      cycnn_winners_weight_grad, cycnn_winograd_kernel, cycnn_winograd_tile_row, omp_get_max_threads,
                      padded_image, require, require_conv, same_shape, windows_fit)

# For cycnn/nn/fused.py, which picks the path: the limits the C headers set (Winograd's output channels come in
# whole vectors).
DIRECT_MAX_TAPS = CYCNN_DIRECT_MAX_TAPS
WINOGRAD_LANES_FLOAT = CYCNN_VECTOR_BYTES // sizeof(float)
WINOGRAD_LANES_DOUBLE = CYCNN_VECTOR_BYTES // sizeof(double)


cpdef int rows_relu_maxpool_forward(const floating[:, ::1] rows, const floating[::1] bias,
                                    int OH, int OW, int ph, int pw, int sh, int sw,
                                    floating[:, :, :, ::1] y, int[:, :, :, ::1] argmax) except -1 nogil:
    """``y[n, f, i, j] = relu(max over window (i, j) of rows[n*P + p, f] + bias[f])`` and its argmax p."""
    cdef Py_ssize_t N = y.shape[0], F = y.shape[1], PH = y.shape[2], PW = y.shape[3]
    cdef Py_ssize_t P = OH * OW
    require(rows.shape[0] == N * P and rows.shape[1] == F and bias.shape[0] == F, b"rows, bias and y disagree")
    require(same_shape(argmax.shape, y.shape, 4), b"argmax and y have different shapes")
    require(windows_fit(PH, PW, OH, OW, ph, pw, sh, sw), b"pooling windows outside the convolution output")
    cdef Py_ssize_t n
    cdef floating* pooled
    cdef int* where
    with parallel(use_threads_if=N > 1 and N * P * F > CYCNN_PARALLEL_MIN_WORK):
        pooled = <floating*>malloc(PH * PW * F * sizeof(floating))
        where = <int*>malloc(PH * PW * F * sizeof(int))
        for n in prange(N, schedule="static"):
            cycnn_pool_rows(&rows[n * P, 0], &bias[0], F, OW, PH, PW, ph, pw, sh, sw, pooled, where,
                            &y[n, 0, 0, 0], &argmax[n, 0, 0, 0])
        free(pooled)
        free(where)
    return 0


cpdef int direct_relu_maxpool_forward(const floating[:, :, :, ::1] x, const floating[:, ::1] wt,
                                      const floating[::1] bias, int KH, int KW, int stride, int pad,
                                      int ph, int pw, int sh, int sw,
                                      floating[:, :, :, ::1] y, int[:, :, :, ::1] argmax) except -1 nogil:
    """Direct convolution of each image (weights ``wt`` as (taps, F), taps ordered (c, ki, kj)), then bias, ReLU
    and max-pool. One image per thread; its (P x F) convolution output lives in a per-thread buffer and the inner
    loop runs over the F output channels, which vectorizes."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t T = wt.shape[0], F = wt.shape[1]
    cdef Py_ssize_t PH = y.shape[2], PW = y.shape[3]
    require_conv(H, W, KH, KW, stride, pad)
    cdef Py_ssize_t HP = H + 2 * pad, WP = W + 2 * pad
    cdef Py_ssize_t OH = (HP - KH) // stride + 1, OW = (WP - KW) // stride + 1
    cdef Py_ssize_t n
    cdef floating* padded
    cdef floating* conv
    cdef floating* pooled
    cdef int* where
    require(T == C * KH * KW and T <= CYCNN_DIRECT_MAX_TAPS,
            b"weights do not have C*KH*KW taps, or more than the direct kernel takes")
    require(bias.shape[0] == F and y.shape[0] == N and y.shape[1] == F, b"weights, bias and y disagree")
    require(same_shape(argmax.shape, y.shape, 4), b"argmax and y have different shapes")
    require(windows_fit(PH, PW, OH, OW, ph, pw, sh, sw), b"pooling windows outside the convolution output")
    with parallel(use_threads_if=N > 1 and N * OH * OW * F * T > CYCNN_PARALLEL_MIN_WORK):
        padded = <floating*>malloc(C * HP * WP * sizeof(floating)) if pad > 0 else NULL
        conv = <floating*>malloc(OH * OW * F * sizeof(floating))
        pooled = <floating*>malloc(PH * PW * F * sizeof(floating))
        where = <int*>malloc(PH * PW * F * sizeof(int))
        for n in prange(N, schedule="static"):
            cycnn_direct_conv(padded_image(x[n], pad, padded), C, HP, WP, KH, KW, stride, OH, OW, &wt[0, 0], F,
                              conv)
            cycnn_pool_rows(conv, &bias[0], F, OW, PH, PW, ph, pw, sh, sw, pooled, where, &y[n, 0, 0, 0],
                            &argmax[n, 0, 0, 0])
        free(padded)
        free(conv)
        free(pooled)
        free(where)
    return 0


cpdef int direct_conv_forward(const floating[:, :, :, ::1] x, const floating[:, ::1] wt,
                              const floating[::1] bias, int KH, int KW, int stride, int pad, bint relu,
                              floating[:, :, :, ::1] y) except -1 nogil:
    """``y = act(conv(x) + bias)`` without pooling, by the direct kernel (weights ``wt`` as (taps, F)): one image per
    thread, its (P x F) convolution output in a per-thread buffer, then turned NCHW with the bias and the optional
    ReLU."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t T = wt.shape[0], F = wt.shape[1]
    require_conv(H, W, KH, KW, stride, pad)
    cdef Py_ssize_t HP = H + 2 * pad, WP = W + 2 * pad
    cdef Py_ssize_t OH = (HP - KH) // stride + 1, OW = (WP - KW) // stride + 1
    cdef Py_ssize_t n, f, p, p0
    cdef Py_ssize_t block = OH * OW if OH * OW * F * sizeof(floating) <= 48 * 1024 else 16
    cdef floating v, b
    cdef floating* padded
    cdef floating* conv
    cdef floating* out
    require(T == C * KH * KW and T <= CYCNN_DIRECT_MAX_TAPS,
            b"weights do not have C*KH*KW taps, or more than the direct kernel takes")
    require(bias.shape[0] == F and y.shape[0] == N and y.shape[1] == F and y.shape[2] == OH and y.shape[3] == OW,
            b"weights, bias and y (N, F, OH, OW) disagree")
    with parallel(use_threads_if=N > 1 and N * OH * OW * F * T > CYCNN_PARALLEL_MIN_WORK):
        padded = <floating*>malloc(C * HP * WP * sizeof(floating)) if pad > 0 else NULL
        conv = <floating*>malloc(OH * OW * F * sizeof(floating))
        for n in prange(N, schedule="static"):
            cycnn_direct_conv(padded_image(x[n], pad, padded), C, HP, WP, KH, KW, stride, OH, OW, &wt[0, 0], F,
                              conv)
            # Turned NCHW, a block of pixels at a time: all of them when their rows of channels fit in the L1 cache
            # (48 KB here), else 16, whose rows stay there while every channel is read (1.2-1.6x on 16-32 channels
            # of 576-1024 pixels; smaller blocks were slower when everything fits).
            for p0 in range((OH * OW + block - 1) // block):
                for f in range(F):
                    b = bias[f]
                    out = &y[n, f, 0, 0]
                    for p in range(p0 * block, min((p0 + 1) * block, OH * OW)):
                        v = conv[p * F + f] + b
                        out[p] = 0 if relu and v < 0 else v
        free(padded)
        free(conv)
    return 0


cpdef int winograd_relu_maxpool_forward(const floating[:, :, :, ::1] x, const floating[:, :, ::1] U,
                                        const floating[::1] bias, int pad,
                                        floating[:, :, :, ::1] y, int[:, :, :, ::1] argmax) except -1 nogil:
    """3x3 convolution (stride 1, zero padding ``pad``) + bias + ReLU + 2x2/2 max-pool by Winograd F(2x2, 3x3)
    (src_ext/winograd.h). ``U`` (16, C, F) is the transformed kernel; F must be a whole number of vectors
    (16 floats or 8 doubles). One image per thread, one row of tiles (= one row of pooled outputs) at a time."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t F = U.shape[2], PH = y.shape[2], PW = y.shape[3]
    cdef Py_ssize_t HP = H + 2 * pad, WP = W + 2 * pad, OW = WP - 2
    cdef Py_ssize_t n, i
    cdef Py_ssize_t lanes = CYCNN_VECTOR_BYTES // sizeof(floating)
    if F % lanes != 0:
        with gil:
            raise ValueError(f"Winograd kernel needs a multiple of {lanes} output channels, received {F}")
    require(pad >= 0, b"padding must be at least 0")
    require(U.shape[0] == 16 and U.shape[1] == C and bias.shape[0] == F and y.shape[0] == N and y.shape[1] == F,
            b"transformed kernel (16, C, F), bias and y disagree")
    require(same_shape(argmax.shape, y.shape, 4), b"argmax and y have different shapes")
    require(windows_fit(PH, PW, HP - 2, WP - 2, 2, 2, 2, 2), b"pooling windows outside the convolution output")
    cdef floating* padded
    cdef const floating* image
    cdef floating* V
    cdef floating* M
    with parallel(use_threads_if=N > 1 and N * PH * PW * 16 * C * F > CYCNN_PARALLEL_MIN_WORK):
        padded = <floating*>malloc(C * HP * WP * sizeof(floating)) if pad > 0 else NULL
        V = <floating*>malloc(16 * PW * C * sizeof(floating))
        M = <floating*>malloc(16 * PW * F * sizeof(floating))
        for n in prange(N, schedule="static"):
            image = padded_image(x[n], pad, padded)
            for i in range(PH):
                cycnn_winograd_tile_row(image, C, HP, WP, &U[0, 0, 0], &bias[0], F, OW, PH, PW, i, V, M,
                                        &y[n, 0, 0, 0], &argmax[n, 0, 0, 0])
        free(padded)
        free(V)
        free(M)
    return 0


cpdef int winograd_kernel(const floating[:, :, :, ::1] W, floating[:, :, ::1] U) except -1 nogil:
    """The transformed kernel for ``winograd_relu_maxpool_forward``: ``U[4a+b, c, f] = (G W[f, c] G^T)[a, b]``
    with G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]], for 3x3 weights W (F, C, 3, 3)."""
    require(W.shape[2] == 3 and W.shape[3] == 3 and U.shape[0] == 16 and U.shape[1] == W.shape[1]
            and U.shape[2] == W.shape[0], b"Winograd kernel takes 3x3 weights (F, C, 3, 3) into U (16, C, F)")
    cdef floating* rows = <floating*>malloc(16 * W.shape[0] * sizeof(floating))
    if rows == NULL:
        with gil:
            raise MemoryError()
    cycnn_winograd_kernel(&W[0, 0, 0, 0], W.shape[0], W.shape[1], rows, &U[0, 0, 0])
    free(rows)
    return 0


cpdef int direct_relu_maxpool_backward(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] dy,
                                       const floating[:, :, :, ::1] y, const int[:, :, :, ::1] argmax,
                                       int KH, int KW, int stride, int pad,
                                       floating[:, :, ::1] partial_dwt, floating[:, ::1] partial_db) except -1 nogil:
    """Per-chunk weight gradients (taps, F) and bias gradients (F) of the fused direct convolution
    (``cycnn_direct_grad`` in src_ext/direct.h does one image).

    The batch is cut into ``partial_dwt.shape[0]`` fixed chunks; each sums its images in order, and the caller adds
    the chunks in order, so the result does not depend on how many threads ran.
    """
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t K = partial_dwt.shape[0], T = partial_dwt.shape[1], F = partial_dwt.shape[2]
    require_conv(H, W, KH, KW, stride, pad)
    cdef Py_ssize_t HP = H + 2 * pad, WP = W + 2 * pad
    cdef Py_ssize_t OH = (HP - KH) // stride + 1, OW = (WP - KW) // stride + 1
    cdef Py_ssize_t P = OH * OW
    cdef Py_ssize_t plane = y.shape[2] * y.shape[3]
    cdef Py_ssize_t k, n
    cdef floating* padded
    cdef floating* grad
    cdef char* touched
    require(T == C * KH * KW and T <= CYCNN_DIRECT_MAX_TAPS,
            b"gradients do not have C*KH*KW taps, or more than the direct kernel takes")
    require(partial_db.shape[0] == K and partial_db.shape[1] == F and K >= 1, b"partial gradients disagree")
    require(same_shape(dy.shape, y.shape, 4) and same_shape(argmax.shape, y.shape, 4) and y.shape[0] == N
            and y.shape[1] == F, b"dy, y and argmax must have one shape, (N, F, PH, PW)")
    with parallel(use_threads_if=N > 1 and N * F * plane * T > CYCNN_PARALLEL_MIN_WORK):
        padded = <floating*>malloc(C * HP * WP * sizeof(floating)) if pad > 0 else NULL
        grad = <floating*>calloc(P * F, sizeof(floating))
        touched = <char*>calloc(P, sizeof(char))
        for k in prange(K, schedule="static"):
            memset(&partial_dwt[k, 0, 0], 0, T * F * sizeof(floating))
            memset(&partial_db[k, 0], 0, F * sizeof(floating))
            for n in range(k * N // K, (k + 1) * N // K):
                cycnn_direct_grad(padded_image(x[n], pad, padded), C, HP, WP, KH, KW, stride, OW, P, &dy[n, 0, 0, 0],
                                  &y[n, 0, 0, 0],
                                  &argmax[n, 0, 0, 0], F, plane, grad, touched, &partial_dwt[k, 0, 0],
                                  &partial_db[k, 0])
        free(padded)
        free(grad)
        free(touched)
    return 0


cpdef int winners_weight_grad(const floating[:, :, :, ::1] x_nhwc, const floating[:, :, :, ::1] dy,
                              const floating[:, :, :, ::1] y, const int[:, :, :, ::1] argmax,
                              int stride, int pad, int OW, int ph, int sh, floating[:, :, :, ::1] dw_hwc,
                              floating[::1] db) except -1 nogil:
    """Weight gradient (F, KH, KW, C) and bias gradient of a fused conv+ReLU+pool, from the winners only
    (src_ext/winners.h); ``ph`` and ``sh`` are the pooling window's height and stride in rows.

    Each thread owns a range of output channels and walks the images in order: every sum runs image by image in
    the same order whatever the thread count.
    """
    cdef Py_ssize_t N = x_nhwc.shape[0], H = x_nhwc.shape[1], W = x_nhwc.shape[2], C = x_nhwc.shape[3]
    cdef Py_ssize_t F = dw_hwc.shape[0], KH = dw_hwc.shape[1], KW = dw_hwc.shape[2]
    cdef Py_ssize_t PH = y.shape[2], PW = y.shape[3]
    cdef Py_ssize_t parts = min(F, omp_get_max_threads())
    require_conv(H, W, KH, KW, stride, pad)
    require(ph >= 1 and sh >= 1, b"pooling window and stride must be at least 1")
    require(dw_hwc.shape[3] == C and db.shape[0] == F, b"weight gradient (F, KH, KW, C) and bias gradient disagree")
    require(same_shape(dy.shape, y.shape, 4) and same_shape(argmax.shape, y.shape, 4) and y.shape[0] == N
            and y.shape[1] == F, b"dy, y and argmax must have one shape, (N, F, PH, PW)")
    require(OW == (W + 2 * pad - KW) // stride + 1, b"OW is not the convolution's output width")
    cdef Py_ssize_t part
    cdef Py_ssize_t* offset
    cdef floating* scale
    with parallel(use_threads_if=parts > 1 and N * F * PH * PW * KH * KW * C > CYCNN_PARALLEL_MIN_WORK):
        offset = <Py_ssize_t*>malloc(PH * PW * sizeof(Py_ssize_t))
        scale = <floating*>malloc(PH * PW * sizeof(floating))
        for part in prange(parts, schedule="static"):
            cycnn_winners_weight_grad(&x_nhwc[0, 0, 0, 0], N, H, W, C, &dy[0, 0, 0, 0], &y[0, 0, 0, 0],
                                      &argmax[0, 0, 0, 0], F, PH, PW, KH, KW, stride, pad, OW, ph, sh,
                                      F * part // parts, F * (part + 1) // parts, offset, scale, &dw_hwc[0, 0, 0, 0],
                                      &db[0])
        free(offset)
        free(scale)
    return 0


cpdef int winners_input_grad(const floating[:, :, :, ::1] w_hwc, const floating[:, :, :, ::1] dy,
                             const floating[:, :, :, ::1] y, const int[:, :, :, ::1] argmax,
                             int stride, int pad, int OW, int ph, int pw, int sh, int sw,
                             floating[:, :, :, ::1] dx) except -1 nogil:
    """Input gradient (N, C, H, W) of a fused conv+ReLU+pool from the winners only (src_ext/winners.h), with the
    kernel channels-last (F, KH, KW, C) and the pooling window / stride (ph, pw) / (sh, sw); one image per thread,
    summed channels-last in a per-thread buffer, then copied out."""
    cdef Py_ssize_t N = dx.shape[0], C = dx.shape[1], H = dx.shape[2], W = dx.shape[3]
    cdef Py_ssize_t F = w_hwc.shape[0], KH = w_hwc.shape[1], KW = w_hwc.shape[2]
    cdef Py_ssize_t PH = y.shape[2], PW = y.shape[3]
    require_conv(H, W, KH, KW, stride, pad)
    require(w_hwc.shape[3] == C, b"kernel (F, KH, KW, C) and dx (N, C, H, W) disagree")
    require(same_shape(dy.shape, y.shape, 4) and same_shape(argmax.shape, y.shape, 4) and y.shape[0] == N
            and y.shape[1] == F, b"dy, y and argmax must have one shape, (N, F, PH, PW)")
    require(OW == (W + 2 * pad - KW) // stride + 1, b"OW is not the convolution's output width")
    require(windows_fit(PH, PW, (H + 2 * pad - KH) // stride + 1, OW, ph, pw, sh, sw),
            b"pooling windows outside the convolution output")
    cdef Py_ssize_t n, c, h, w
    cdef floating* acc
    cdef floating* patch
    cdef floating* scale
    cdef Py_ssize_t* members
    cdef Py_ssize_t* counts
    with parallel(use_threads_if=N > 1 and N * F * PH * PW * KH * KW * C > CYCNN_PARALLEL_MIN_WORK):
        acc = <floating*>malloc(H * W * C * sizeof(floating))
        patch = <floating*>malloc(KH * KW * C * sizeof(floating))
        scale = <floating*>malloc(ph * pw * F * sizeof(floating))
        members = <Py_ssize_t*>malloc(ph * pw * F * sizeof(Py_ssize_t))
        counts = <Py_ssize_t*>malloc(ph * pw * sizeof(Py_ssize_t))
        for n in prange(N, schedule="static"):
            cycnn_winners_input_grad(&w_hwc[0, 0, 0, 0], &dy[n, 0, 0, 0], &y[n, 0, 0, 0], &argmax[n, 0, 0, 0], F,
                                     PH, PW, ph, pw, sh, sw, KH, KW, C, stride, pad, OW, H, W, members, scale,
                                     counts, patch, acc)
            for c in range(C):
                for h in range(H):
                    for w in range(W):
                        dx[n, c, h, w] = acc[(h * W + w) * C + c]
        free(acc)
        free(patch)
        free(scale)
        free(members)
        free(counts)
    return 0
