"""ReLU forward and backward over flat arrays, in parallel (one pass each, no temporaries)."""
from cython cimport floating
from cython.parallel cimport prange

from kernels cimport CYCNN_PARALLEL_MIN_WORK, require


cpdef int relu_forward(const floating[::1] x, floating[::1] y) except -1 nogil:
    """``y = max(x, 0)``."""
    cdef Py_ssize_t i, n = x.shape[0]
    require(y.shape[0] == n, b"x and y differ in length")
    for i in prange(n, schedule="static", use_threads_if=n > CYCNN_PARALLEL_MIN_WORK):
        y[i] = x[i] if x[i] > 0 else 0
    return 0


cpdef int relu_backward(const floating[::1] dy, const floating[::1] y, floating[::1] dx) except -1 nogil:
    """``dx = dy`` where the forward output ``y`` was positive, else 0."""
    cdef Py_ssize_t i, n = dy.shape[0]
    require(y.shape[0] == n and dx.shape[0] == n, b"dy, y and dx differ in length")
    for i in prange(n, schedule="static", use_threads_if=n > CYCNN_PARALLEL_MIN_WORK):
        dx[i] = dy[i] if y[i] > 0 else 0
    return 0
