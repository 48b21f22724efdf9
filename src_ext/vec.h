/* y += a * x over n elements. Written in C because `restrict` (which Cython cannot express) tells the compiler
   that y and x never overlap, and that is what lets it vectorize these short loops. */
#ifndef CYCNN_VEC_H
#define CYCNN_VEC_H
#include <stddef.h>

static inline void cycnn_axpy_float(float *restrict y, const float *restrict x, float a, ptrdiff_t n) {
    for (ptrdiff_t i = 0; i < n; i++) y[i] += a * x[i];
}

static inline void cycnn_axpy_double(double *restrict y, const double *restrict x, double a, ptrdiff_t n) {
    for (ptrdiff_t i = 0; i < n; i++) y[i] += a * x[i];
}
#endif
