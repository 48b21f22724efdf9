"""Max pooling over NCHW images, keeping the argmax so the backward pass is a scatter.

Output sizes are floored (an 11x11 map pools to 5x5 with a 2x2 window), as in PyTorch. Ties go to the first
maximum in row-major order. Loops run in parallel over (image, channel) planes, each written by one thread only.
"""
from cython cimport floating
from cython.parallel cimport prange

from kernels cimport CYCNN_PARALLEL_MIN_WORK, require, same_shape, windows_fit


cpdef int maxpool_forward(const floating[:, :, :, ::1] x, int ph, int pw, int sh, int sw,
                          floating[:, :, :, ::1] y, int[:, :, :, ::1] argmax) except -1 nogil:
    """``y`` gets each window's maximum and ``argmax`` its flat index ``h*W + w`` within the input plane."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t OH = y.shape[2], OW = y.shape[3]
    cdef Py_ssize_t plane, n, c, oh, ow, i, j, h, w, best_idx
    cdef floating best, v
    require(y.shape[0] == N and y.shape[1] == C and same_shape(argmax.shape, y.shape, 4),
            b"y and argmax must be (N, C, OH, OW) for x (N, C, H, W)")
    require(windows_fit(OH, OW, H, W, ph, pw, sh, sw), b"pooling windows outside the input")
    for plane in prange(N * C, schedule="static", use_threads_if=N * C * H * W > CYCNN_PARALLEL_MIN_WORK):
        n = plane // C
        c = plane % C
        for oh in range(OH):
            for ow in range(OW):
                h = oh * sh
                w = ow * sw
                best = x[n, c, h, w]
                best_idx = h * W + w
                for i in range(ph):
                    for j in range(pw):
                        v = x[n, c, h + i, w + j]
                        if v > best:
                            best = v
                            best_idx = (h + i) * W + w + j
                y[n, c, oh, ow] = best
                argmax[n, c, oh, ow] = <int>best_idx
    return 0


cpdef int maxpool_backward(const floating[:, :, :, ::1] dy, const int[:, :, :, ::1] argmax,
                           floating[:, :, :, ::1] dx) except -1 nogil:
    """Zero ``dx`` and route each output gradient to the input pixel that won its window."""
    cdef Py_ssize_t N = dx.shape[0], C = dx.shape[1], H = dx.shape[2], W = dx.shape[3]
    cdef Py_ssize_t OH = dy.shape[2], OW = dy.shape[3]
    cdef Py_ssize_t plane, n, c, oh, ow, h, w, idx
    require(same_shape(argmax.shape, dy.shape, 4) and dy.shape[0] == N and dy.shape[1] == C,
            b"argmax must be shaped as dy (N, C, OH, OW), for dx (N, C, H, W)")
    for plane in prange(N * C, schedule="static", use_threads_if=N * C * H * W > CYCNN_PARALLEL_MIN_WORK):
        n = plane // C
        c = plane % C
        for h in range(H):
            for w in range(W):
                dx[n, c, h, w] = 0
        for oh in range(OH):
            for ow in range(OW):
                idx = argmax[n, c, oh, ow]
                dx[n, c, idx // W, idx % W] += dy[n, c, oh, ow]
    return 0
