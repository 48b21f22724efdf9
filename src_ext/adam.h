/* The Adam update written in C because `restrict` (which Cython cannot express) tells the compiler that the
   arrays never overlap, and that is what lets it vectorize the loop. */
#ifndef CYCNN_ADAM_H
#define CYCNN_ADAM_H
#include <math.h>
#include <stddef.h>

/* Adam, one pass: m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2; param -= step * m / (sqrt(v) + eps), in the
   parameters' own precision. With restrict (and -fno-math-errno, so sqrt needs no error branch) it vectorizes:
   an order of magnitude faster than the scalar loop. */
static inline void cycnn_adam_float(float *restrict param, const float *restrict grad, float *restrict m,
                                    float *restrict v, ptrdiff_t n, float step, float b1, float b2, float eps) {
    for (ptrdiff_t i = 0; i < n; i++) {
        const float g = grad[i];
        const float mi = b1 * m[i] + (1 - b1) * g;
        const float vi = b2 * v[i] + (1 - b2) * g * g;
        m[i] = mi;
        v[i] = vi;
        param[i] -= step * mi / (sqrtf(vi) + eps);
    }
}

static inline void cycnn_adam_double(double *restrict param, const double *restrict grad, double *restrict m,
                                     double *restrict v, ptrdiff_t n, double step, double b1, double b2,
                                     double eps) {
    for (ptrdiff_t i = 0; i < n; i++) {
        const double g = grad[i];
        const double mi = b1 * m[i] + (1 - b1) * g;
        const double vi = b2 * v[i] + (1 - b2) * g * g;
        m[i] = mi;
        v[i] = vi;
        param[i] -= step * mi / (sqrt(vi) + eps);
    }
}
#endif
