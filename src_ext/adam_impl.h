/* One precision of adam.h: compiled for float and for double by instantiate.h. */

/* Adam, one pass: m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2; param -= step * m / (sqrt(v) + eps), in the
   parameters' own precision. With restrict (and -fno-math-errno, so sqrt needs no error branch) it vectorizes:
   an order of magnitude faster than the scalar loop. */
static inline void NAME(cycnn_adam)(REAL *restrict param, const REAL *restrict grad, REAL *restrict m,
                                    REAL *restrict v, ptrdiff_t n, REAL step, REAL b1, REAL b2, REAL eps) {
    for (ptrdiff_t i = 0; i < n; i++) {
        const REAL g = grad[i];
        const REAL mi = b1 * m[i] + (1 - b1) * g;
        const REAL vi = b2 * v[i] + (1 - b2) * g * g;
        m[i] = mi;
        v[i] = vi;
        param[i] -= step * mi / (SQRT(vi) + eps);
    }
}
