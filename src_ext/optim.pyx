"""Optimizer updates in one pass over each parameter tensor (numpy would make several passes and temporaries)."""
from cython cimport floating
from cython.parallel cimport prange


cdef extern from "omp_shim.h":
    const Py_ssize_t CYCNN_PARALLEL_MIN_WORK

cdef extern from "adam.h":
    void cycnn_adam_float(float* param, const float* grad, float* m, float* v, Py_ssize_t n, float step, float b1,
                          float b2, float eps) nogil
    void cycnn_adam_double(double* param, const double* grad, double* m, double* v, Py_ssize_t n, double step,
                           double b1, double b2, double eps) nogil

# Adam runs over the parameters in this many fixed pieces, which the threads share.
cdef enum:
    ADAM_PIECES = 8


cpdef int adam_update(floating[::1] param, const floating[::1] grad, floating[::1] m, floating[::1] v,
                      double step, double beta1, double beta2, double eps) except -1 nogil:
    """m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2; param -= step * m / (sqrt(v) + eps).

    ``step`` is the bias-corrected learning rate lr * sqrt(1 - b2^t) / (1 - b1^t).
    """
    cdef Py_ssize_t piece, lo, hi, n = param.shape[0]
    # The arithmetic runs in the parameters' own precision (float32 vectors are twice as wide as float64 ones).
    for piece in prange(ADAM_PIECES, schedule="static", use_threads_if=n > CYCNN_PARALLEL_MIN_WORK):
        lo = n * piece // ADAM_PIECES
        hi = n * (piece + 1) // ADAM_PIECES
        if hi == lo:
            continue
        if floating is float:
            cycnn_adam_float(&param[lo], &grad[lo], &m[lo], &v[lo], hi - lo, <float>step, <float>beta1,
                             <float>beta2, <float>eps)
        else:
            cycnn_adam_double(&param[lo], &grad[lo], &m[lo], &v[lo], hi - lo, step, beta1, beta2, eps)
    return 0


cpdef int momentum_update(floating[::1] param, const floating[::1] grad, floating[::1] velocity,
                          double lr, double momentum) except -1 nogil:
    """velocity = momentum*velocity + g; param -= lr * velocity."""
    cdef Py_ssize_t i, n = param.shape[0]
    for i in prange(n, schedule="static", use_threads_if=n > CYCNN_PARALLEL_MIN_WORK):
        velocity[i] = <floating>(momentum * velocity[i] + grad[i])
        param[i] = <floating>(param[i] - lr * velocity[i])
    return 0
