"""Optimizer updates in one pass over each parameter tensor (numpy would make several passes and temporaries)."""
from cython cimport floating
from cython.parallel cimport prange

from kernels cimport CYCNN_PARALLEL_MIN_WORK, cycnn_adam, require

# Adam runs over the parameters in this many fixed pieces, which the threads share.
cdef enum:
    ADAM_PIECES = 8


cpdef int adam_update(floating[::1] param, const floating[::1] grad, floating[::1] m, floating[::1] v,
                      double step, double beta1, double beta2, double eps) except -1 nogil:
    """m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2; param -= step * m / (sqrt(v) + eps).

    ``step`` is the bias-corrected learning rate lr * sqrt(1 - b2^t) / (1 - b1^t).
    """
    cdef Py_ssize_t piece, lo, hi, n = param.shape[0]
    require(grad.shape[0] == n and m.shape[0] == n and v.shape[0] == n, b"param, grad, m and v differ in length")
    # The arithmetic runs in the parameters' own precision, to which cycnn_adam rounds step, the betas and eps
    # (float32 vectors are twice as wide as float64 ones).
    for piece in prange(ADAM_PIECES, schedule="static", use_threads_if=n > CYCNN_PARALLEL_MIN_WORK):
        lo = n * piece // ADAM_PIECES
        hi = n * (piece + 1) // ADAM_PIECES
        if hi == lo:
            continue
        cycnn_adam(&param[lo], &grad[lo], &m[lo], &v[lo], hi - lo, step, beta1, beta2, eps)
    return 0


cpdef int momentum_update(floating[::1] param, const floating[::1] grad, floating[::1] velocity,
                          double lr, double momentum) except -1 nogil:
    """velocity = momentum*velocity + g; param -= lr * velocity."""
    cdef Py_ssize_t i, n = param.shape[0]
    require(grad.shape[0] == n and velocity.shape[0] == n, b"param, grad and velocity differ in length")
    for i in prange(n, schedule="static", use_threads_if=n > CYCNN_PARALLEL_MIN_WORK):
        velocity[i] = <floating>(momentum * velocity[i] + grad[i])
        param[i] = <floating>(param[i] - lr * velocity[i])
    return 0
