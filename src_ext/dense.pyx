"""Matrix products for dense layers in cycnn's own vector kernel (src_ext/dense.h), threads by OpenMP."""
from cython cimport floating
from cython.parallel cimport prange

from kernels cimport (CYCNN_PARALLEL_MIN_WORK, CYCNN_VECTOR_BYTES, DENSE_ROWS, DENSE_VECS, cycnn_dense_tile_part,
                      omp_get_max_threads)


def lanes(dtype_is_double):
    """The vector width in elements: B's and C's columns must be a multiple of it."""
    return CYCNN_VECTOR_BYTES // (sizeof(double) if dtype_is_double else sizeof(float))


# When the panels of B that one thread reads do not fit in DENSE_L2_BYTES (half of this machine's 2 MB L2 cache
# per core), the inner dimension is summed DENSE_K_PART terms at a time over all of the thread's tiles, so that the
# rows of B they share stay in the L1 cache (64 rows of a panel: 16 KB, even at a power-of-two row stride, which
# leaves only some of the cache's sets to them): 1.4-2.4x on a 64 x 3136 by 3136 x 128 product on one thread, or
# 3200 x 256 on two. Panels that fit stay whole: their rows stream in order, which the prefetcher follows better
# (parts were 0.75x there).
cdef enum:
    DENSE_K_PART = 64
    DENSE_L2_BYTES = 1 << 20


cpdef int dense_product(const floating[:, :] A, const floating[:, ::1] B, floating[:, ::1] C) except -1 nogil:
    """``C = A @ B``; A may be any strided view (a transpose), B and C are C-contiguous with a whole number of
    vectors of columns. C is cut into tiles of DENSE_ROWS rows by one panel (DENSE_VECS vectors) of columns, panel
    by panel, and each thread takes a run of them in that order (so it reads as few of B's panels as it can),
    all of the inner dimension at once or, when those panels are large, DENSE_K_PART terms of every tile at a
    time. Every element is the same sum in the same order whichever tile or thread computes it."""
    cdef Py_ssize_t M = A.shape[0], K = A.shape[1], N = B.shape[1]
    cdef Py_ssize_t width = CYCNN_VECTOR_BYTES // sizeof(floating)
    cdef Py_ssize_t panel = DENSE_VECS * width
    # Signed division: a reversed view has negative strides (sizeof alone is unsigned and would wrap them).
    cdef Py_ssize_t item = sizeof(floating)
    cdef Py_ssize_t ra = A.strides[0] // item, ka = A.strides[1] // item
    cdef Py_ssize_t row_blocks = (M + DENSE_ROWS - 1) // DENSE_ROWS, panels = (N + panel - 1) // panel
    cdef Py_ssize_t tiles = row_blocks * panels, tile, r0, n0, part, k0  # k0: which part of the inner dimension
    if B.shape[0] != K or C.shape[0] != M or C.shape[1] != N:
        with gil:
            raise ValueError(f"shapes ({M}, {K}) @ ({B.shape[0]}, {N}) -> ({C.shape[0]}, {C.shape[1]}) do not match")
    if N % width != 0:
        with gil:
            raise ValueError(f"the dense kernel needs a multiple of {width} columns, received {N}")
    if M == 0 or N == 0:
        return 0
    if K == 0:
        C[:, :] = 0
        return 0
    cdef bint threaded = tiles > 1 and M * K * N > CYCNN_PARALLEL_MIN_WORK
    cdef Py_ssize_t parts = min(tiles, omp_get_max_threads()) if threaded else 1
    # The panels one part reads: its run of tiles spans up to one more panel than its share.
    cdef Py_ssize_t part_panels = min(panels, (panels + parts - 1) // parts + 1)
    cdef Py_ssize_t k_part = DENSE_K_PART if part_panels * K * min(N, panel) * item > DENSE_L2_BYTES else K
    for part in prange(parts, schedule="static", use_threads_if=parts > 1):
        for k0 in range((K + k_part - 1) // k_part):
            for tile in range(tiles * part // parts, tiles * (part + 1) // parts):
                r0 = tile % row_blocks * DENSE_ROWS
                n0 = tile // row_blocks * panel
                cycnn_dense_tile_part(&A[0, 0], ra, ka, &B[0, 0], &C[0, 0], r0, min(DENSE_ROWS, M - r0), n0,
                                      min(N, n0 + panel), k0 * k_part, min(K, (k0 + 1) * k_part), N)
    return 0


cpdef int transpose(const floating[:, ::1] src, floating[:, ::1] dst) except -1 nogil:
    """``dst = src.T`` (a weight matrix laid out for the input gradient's product), in 32 x 32 tiles so that both
    sides stay in cache, the rows of tiles shared among the threads."""
    cdef Py_ssize_t R = src.shape[0], C = src.shape[1], i0, j0, i, j
    if dst.shape[0] != C or dst.shape[1] != R:
        with gil:
            raise ValueError(f"cannot transpose ({R}, {C}) into ({dst.shape[0]}, {dst.shape[1]})")
    for i0 in prange(0, R, 32, schedule="static", use_threads_if=R * C > CYCNN_PARALLEL_MIN_WORK):
        for j0 in range(0, C, 32):
            for i in range(i0, min(i0 + 32, R)):
                for j in range(j0, min(j0 + 32, C)):
                    dst[j, i] = src[i, j]
    return 0
