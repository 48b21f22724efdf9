"""Optimizer updates in one pass over each parameter tensor (numpy would make several passes and temporaries)."""
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport sqrt


cdef extern from "omp_shim.h":
    const Py_ssize_t CYCNN_PARALLEL_MIN_WORK


cpdef int adam_update(floating[::1] param, const floating[::1] grad, floating[::1] m, floating[::1] v,
                      double step, double beta1, double beta2, double eps) except -1 nogil:
    """m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2; param -= step * m / (sqrt(v) + eps).

    ``step`` is the bias-corrected learning rate lr * sqrt(1 - b2^t) / (1 - b1^t).
    """
    cdef Py_ssize_t i, n = param.shape[0]
    # The arithmetic runs in the parameters' own precision (float32 vectors are twice as wide as float64 ones).
    cdef floating g, b1 = <floating>beta1, b2 = <floating>beta2, lr_t = <floating>step, e = <floating>eps
    for i in prange(n, schedule="static", use_threads_if=n > CYCNN_PARALLEL_MIN_WORK):
        g = grad[i]
        m[i] = b1 * m[i] + (1 - b1) * g
        v[i] = b2 * v[i] + (1 - b2) * g * g
        param[i] = param[i] - lr_t * m[i] / (sqrt(v[i]) + e)
    return 0


cpdef int momentum_update(floating[::1] param, const floating[::1] grad, floating[::1] velocity,
                          double lr, double momentum) except -1 nogil:
    """velocity = momentum*velocity + g; param -= lr * velocity."""
    cdef Py_ssize_t i, n = param.shape[0]
    for i in prange(n, schedule="static", use_threads_if=n > CYCNN_PARALLEL_MIN_WORK):
        velocity[i] = <floating>(momentum * velocity[i] + grad[i])
        param[i] = <floating>(param[i] - lr * velocity[i])
    return 0
