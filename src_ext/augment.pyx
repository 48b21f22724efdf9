"""Batch affine warp (rotation + shift) with bilinear sampling, for data augmentation.

Each output pixel (r, c) reads the source at ``(a*r + b*c + tr, d*r + e*c + tc)`` with the per-image inverse map
``m[n] = [[a, b, tr], [d, e, tc]]``; samples outside the image read as 0 (background). One image per thread.
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport floor

from kernels cimport CYCNN_PARALLEL_MIN_WORK, require, same_shape


cpdef int affine_warp(const floating[:, :, ::1] src, const double[:, :, ::1] m,
                      floating[:, :, ::1] dst) except -1 nogil:
    """Write the warped batch ``src`` into ``dst`` (same shape) using inverse maps ``m`` of shape (N, 2, 3)."""
    cdef Py_ssize_t N = src.shape[0], H = src.shape[1], W = src.shape[2]
    cdef Py_ssize_t n, r, c, r0, c0
    cdef double sr, sc, fr, fc, v00, v01, v10, v11
    require(m.shape[0] == N and m.shape[1] == 2 and m.shape[2] == 3, b"m must hold one (2, 3) map per image")
    require(same_shape(dst.shape, src.shape, 3), b"dst and src have different shapes")
    for n in prange(N, schedule="static", use_threads_if=N > 1 and N * H * W > CYCNN_PARALLEL_MIN_WORK):
        for r in range(H):
            for c in range(W):
                sr = m[n, 0, 0] * r + m[n, 0, 1] * c + m[n, 0, 2]
                sc = m[n, 1, 0] * r + m[n, 1, 1] * c + m[n, 1, 2]
                r0 = <Py_ssize_t>floor(sr)
                c0 = <Py_ssize_t>floor(sc)
                fr = sr - r0
                fc = sc - c0
                v00 = src[n, r0, c0] if 0 <= r0 < H and 0 <= c0 < W else 0.0
                v01 = src[n, r0, c0 + 1] if 0 <= r0 < H and 0 <= c0 + 1 < W else 0.0
                v10 = src[n, r0 + 1, c0] if 0 <= r0 + 1 < H and 0 <= c0 < W else 0.0
                v11 = src[n, r0 + 1, c0 + 1] if 0 <= r0 + 1 < H and 0 <= c0 + 1 < W else 0.0
                dst[n, r, c] = <floating>((1 - fr) * ((1 - fc) * v00 + fc * v01) + fr * ((1 - fc) * v10 + fc * v11))
    return 0
