# The C kernels (the headers beside this file) as the .pyx modules see them: their declarations, one wrapper per
# kernel that calls its float or double instance (the only place that chooses between them), and the argument
# checks and the image padding that the modules' wrappers share. Cython includes every header below into every
# module that cimports from here; nothing here needs a module at run time.
from cython cimport floating
from libc.string cimport memcpy, memset


cdef extern from "omp_shim.h":
    int CYCNN_OPENMP
    const Py_ssize_t CYCNN_PARALLEL_MIN_WORK
    int omp_get_max_threads() nogil
    void omp_set_num_threads(int n) nogil

cdef extern from "simd.h":
    # Bytes per vector: the kernels take channels (or columns) in whole vectors of
    # CYCNN_VECTOR_BYTES // sizeof(floating) elements.
    const Py_ssize_t CYCNN_VECTOR_BYTES

cdef extern from "direct.h":
    const Py_ssize_t CYCNN_DIRECT_MAX_TAPS
    const Py_ssize_t DIRECT_MAX_VECS
    const Py_ssize_t WEIGHT_GRAD_MAX_TAPS
    const Py_ssize_t WEIGHT_GRAD_WIDE_TAPS
    void cycnn_direct_conv_float(const float* padded, Py_ssize_t C, Py_ssize_t HP, Py_ssize_t WP, Py_ssize_t KH,
                                 Py_ssize_t KW, Py_ssize_t stride, Py_ssize_t OH, Py_ssize_t OW, const float* wt,
                                 Py_ssize_t ldw, Py_ssize_t F, float* conv, Py_ssize_t ldc) nogil
    void cycnn_direct_conv_double(const double* padded, Py_ssize_t C, Py_ssize_t HP, Py_ssize_t WP, Py_ssize_t KH,
                                  Py_ssize_t KW, Py_ssize_t stride, Py_ssize_t OH, Py_ssize_t OW, const double* wt,
                                  Py_ssize_t ldw, Py_ssize_t F, double* conv, Py_ssize_t ldc) nogil
    void cycnn_direct_grad_float(const float* padded, Py_ssize_t C, Py_ssize_t HP, Py_ssize_t WP, Py_ssize_t KH,
                                 Py_ssize_t KW, Py_ssize_t stride, Py_ssize_t OW, Py_ssize_t P, const float* dy,
                                 const float* y, const int* argmax, Py_ssize_t F, Py_ssize_t plane, float* grad,
                                 char* touched, float* dwt, float* db) nogil
    void cycnn_direct_grad_double(const double* padded, Py_ssize_t C, Py_ssize_t HP, Py_ssize_t WP, Py_ssize_t KH,
                                  Py_ssize_t KW, Py_ssize_t stride, Py_ssize_t OW, Py_ssize_t P, const double* dy,
                                  const double* y, const int* argmax, Py_ssize_t F, Py_ssize_t plane,
                                  double* grad, char* touched, double* dwt, double* db) nogil

    void cycnn_weight_grad_tile_float(const float* padded, Py_ssize_t HP, Py_ssize_t WP, Py_ssize_t KH,
                                      Py_ssize_t KW, Py_ssize_t stride, Py_ssize_t OH, Py_ssize_t OW,
                                      const float* g, Py_ssize_t ldg, Py_ssize_t t0, Py_ssize_t t1, Py_ssize_t NV,
                                      float* dwt, Py_ssize_t ldd) nogil
    void cycnn_weight_grad_tile_double(const double* padded, Py_ssize_t HP, Py_ssize_t WP, Py_ssize_t KH,
                                       Py_ssize_t KW, Py_ssize_t stride, Py_ssize_t OH, Py_ssize_t OW,
                                       const double* g, Py_ssize_t ldg, Py_ssize_t t0, Py_ssize_t t1,
                                       Py_ssize_t NV, double* dwt, Py_ssize_t ldd) nogil

cdef extern from "winograd.h":
    void cycnn_winograd_kernel_float(const float* W, Py_ssize_t F, Py_ssize_t C, float* rows, float* U) nogil
    void cycnn_winograd_kernel_double(const double* W, Py_ssize_t F, Py_ssize_t C, double* rows, double* U) nogil
    void cycnn_winograd_tile_row_float(const float* image, Py_ssize_t C, Py_ssize_t HP, Py_ssize_t WP,
                                       const float* U, const float* bias, Py_ssize_t F, Py_ssize_t OW,
                                       Py_ssize_t PH, Py_ssize_t PW, Py_ssize_t i, float* V, float* M, float* y,
                                       int* argmax) nogil
    void cycnn_winograd_tile_row_double(const double* image, Py_ssize_t C, Py_ssize_t HP, Py_ssize_t WP,
                                        const double* U, const double* bias, Py_ssize_t F, Py_ssize_t OW,
                                        Py_ssize_t PH, Py_ssize_t PW, Py_ssize_t i, double* V, double* M,
                                        double* y, int* argmax) nogil

cdef extern from "pool_rows.h":
    void cycnn_pool_rows_float(const float* rows, const float* bias, Py_ssize_t F, Py_ssize_t OW, Py_ssize_t PH,
                               Py_ssize_t PW, int ph, int pw, int sh, int sw, float* pooled, int* where,
                               float* y, int* argmax) nogil
    void cycnn_pool_rows_double(const double* rows, const double* bias, Py_ssize_t F, Py_ssize_t OW, Py_ssize_t PH,
                                Py_ssize_t PW, int ph, int pw, int sh, int sw, double* pooled, int* where,
                                double* y, int* argmax) nogil

cdef extern from "winners.h":
    void cycnn_winners_weight_grad_float(const float* x, Py_ssize_t N, Py_ssize_t H, Py_ssize_t W, Py_ssize_t C,
                                         const float* dy, const float* y, const int* argmax, Py_ssize_t F,
                                         Py_ssize_t PH, Py_ssize_t PW, Py_ssize_t KH, Py_ssize_t KW,
                                         Py_ssize_t stride, Py_ssize_t pad, Py_ssize_t OW, Py_ssize_t ph,
                                         Py_ssize_t sh, Py_ssize_t f0, Py_ssize_t f1, Py_ssize_t* offset,
                                         float* scale, float* dw, float* db) nogil
    void cycnn_winners_weight_grad_double(const double* x, Py_ssize_t N, Py_ssize_t H, Py_ssize_t W, Py_ssize_t C,
                                          const double* dy, const double* y, const int* argmax, Py_ssize_t F,
                                          Py_ssize_t PH, Py_ssize_t PW, Py_ssize_t KH, Py_ssize_t KW,
                                          Py_ssize_t stride, Py_ssize_t pad, Py_ssize_t OW, Py_ssize_t ph,
                                          Py_ssize_t sh, Py_ssize_t f0, Py_ssize_t f1, Py_ssize_t* offset,
                                          double* scale, double* dw, double* db) nogil
    void cycnn_winners_input_grad_float(const float* kernel, const float* dy, const float* y, const int* argmax,
                                        Py_ssize_t F, Py_ssize_t PH, Py_ssize_t PW, Py_ssize_t ph, Py_ssize_t pw,
                                        Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t C,
                                        Py_ssize_t stride, Py_ssize_t pad, Py_ssize_t OW, Py_ssize_t H,
                                        Py_ssize_t W, Py_ssize_t* members, float* scale, Py_ssize_t* counts,
                                        float* patch, float* dx) nogil
    void cycnn_winners_input_grad_double(const double* kernel, const double* dy, const double* y,
                                         const int* argmax, Py_ssize_t F, Py_ssize_t PH, Py_ssize_t PW,
                                         Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t KH,
                                         Py_ssize_t KW, Py_ssize_t C, Py_ssize_t stride, Py_ssize_t pad,
                                         Py_ssize_t OW, Py_ssize_t H, Py_ssize_t W, Py_ssize_t* members,
                                         double* scale, Py_ssize_t* counts, double* patch, double* dx) nogil

cdef extern from "dense.h":
    const Py_ssize_t DENSE_ROWS
    const Py_ssize_t DENSE_VECS
    void cycnn_dense_tile_float(const float* A, Py_ssize_t ra, Py_ssize_t ka, const float* B, float* C,
                                Py_ssize_t r0, Py_ssize_t R, Py_ssize_t n0, Py_ssize_t n1, Py_ssize_t K,
                                Py_ssize_t N) nogil
    void cycnn_dense_tile_double(const double* A, Py_ssize_t ra, Py_ssize_t ka, const double* B, double* C,
                                 Py_ssize_t r0, Py_ssize_t R, Py_ssize_t n0, Py_ssize_t n1, Py_ssize_t K,
                                 Py_ssize_t N) nogil
    void cycnn_dense_tile_part_float(const float* A, Py_ssize_t ra, Py_ssize_t ka, const float* B, float* C,
                                     Py_ssize_t r0, Py_ssize_t R, Py_ssize_t n0, Py_ssize_t n1, Py_ssize_t k0,
                                     Py_ssize_t k1, Py_ssize_t N) nogil
    void cycnn_dense_tile_part_double(const double* A, Py_ssize_t ra, Py_ssize_t ka, const double* B, double* C,
                                      Py_ssize_t r0, Py_ssize_t R, Py_ssize_t n0, Py_ssize_t n1, Py_ssize_t k0,
                                      Py_ssize_t k1, Py_ssize_t N) nogil

cdef extern from "plan.h":
    enum:
        PLAN_CONV_GEMM
        PLAN_CONV_WINOGRAD
        PLAN_CONV_DIRECT
        PLAN_POOL
        PLAN_RELU
        PLAN_DENSE
    ctypedef struct cycnn_plan_op:
        int kind, relu, pool, hwc_out, hwc_in
        Py_ssize_t C, H, W, F, KH, KW, stride, pad, OH, OW, ph, pw, sh, sw, PH, PW, Fp
        Py_ssize_t in_ "in"
        Py_ssize_t out, cols, rows, padded, tiles, products
        const void* weight
        const void* panels
        const void* bias
    int cycnn_plan_run_float(const cycnn_plan_op* ops, int nops, const float* x, Py_ssize_t N,
                             Py_ssize_t image_size, float* slots, Py_ssize_t slot_size, float* scratch,
                             Py_ssize_t scratch_size, Py_ssize_t logits_at, Py_ssize_t classes, double* probs,
                             float* logits, int threads, int split, Py_ssize_t block,
                             Py_ssize_t capacity) nogil
    int cycnn_plan_run_double(const cycnn_plan_op* ops, int nops, const double* x, Py_ssize_t N,
                              Py_ssize_t image_size, double* slots, Py_ssize_t slot_size, double* scratch,
                              Py_ssize_t scratch_size, Py_ssize_t logits_at, Py_ssize_t classes, double* probs,
                              double* logits, int threads, int split, Py_ssize_t block,
                              Py_ssize_t capacity) nogil

cdef extern from "adam.h":
    void cycnn_adam_float(float* param, const float* grad, float* m, float* v, Py_ssize_t n, float step, float b1,
                          float b2, float eps) nogil
    void cycnn_adam_double(double* param, const double* grad, double* m, double* v, Py_ssize_t n, double step,
                           double b1, double b2, double eps) nogil


# --- each kernel in the precision of its arrays (the headers document the arguments) ----------------------------

cdef inline void cycnn_direct_conv(const floating* padded, Py_ssize_t C, Py_ssize_t HP, Py_ssize_t WP,
                                   Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t stride, Py_ssize_t OH, Py_ssize_t OW,
                                   const floating* wt, Py_ssize_t F, floating* conv) noexcept nogil:
    if floating is float:
        cycnn_direct_conv_float(padded, C, HP, WP, KH, KW, stride, OH, OW, wt, F, F, conv, F)
    else:
        cycnn_direct_conv_double(padded, C, HP, WP, KH, KW, stride, OH, OW, wt, F, F, conv, F)


cdef inline void cycnn_direct_grad(const floating* padded, Py_ssize_t C, Py_ssize_t HP, Py_ssize_t WP,
                                   Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t stride, Py_ssize_t OW, Py_ssize_t P,
                                   const floating* dy, const floating* y, const int* argmax, Py_ssize_t F,
                                   Py_ssize_t plane, floating* grad, char* touched, floating* dwt,
                                   floating* db) noexcept nogil:
    if floating is float:
        cycnn_direct_grad_float(padded, C, HP, WP, KH, KW, stride, OW, P, dy, y, argmax, F, plane, grad, touched,
                                dwt, db)
    else:
        cycnn_direct_grad_double(padded, C, HP, WP, KH, KW, stride, OW, P, dy, y, argmax, F, plane, grad, touched,
                                 dwt, db)


cdef inline void cycnn_weight_grad_tile(const floating* padded, Py_ssize_t HP, Py_ssize_t WP, Py_ssize_t KH,
                                        Py_ssize_t KW, Py_ssize_t stride, Py_ssize_t OH, Py_ssize_t OW,
                                        const floating* g, Py_ssize_t ldg, Py_ssize_t t0, Py_ssize_t t1,
                                        Py_ssize_t NV, floating* dwt, Py_ssize_t ldd) noexcept nogil:
    if floating is float:
        cycnn_weight_grad_tile_float(padded, HP, WP, KH, KW, stride, OH, OW, g, ldg, t0, t1, NV, dwt, ldd)
    else:
        cycnn_weight_grad_tile_double(padded, HP, WP, KH, KW, stride, OH, OW, g, ldg, t0, t1, NV, dwt, ldd)


cdef inline void cycnn_winograd_kernel(const floating* W, Py_ssize_t F, Py_ssize_t C, floating* rows,
                                       floating* U) noexcept nogil:
    if floating is float:
        cycnn_winograd_kernel_float(W, F, C, rows, U)
    else:
        cycnn_winograd_kernel_double(W, F, C, rows, U)


cdef inline void cycnn_winograd_tile_row(const floating* image, Py_ssize_t C, Py_ssize_t HP, Py_ssize_t WP,
                                         const floating* U, const floating* bias, Py_ssize_t F, Py_ssize_t OW,
                                         Py_ssize_t PH, Py_ssize_t PW, Py_ssize_t i, floating* V, floating* M,
                                         floating* y, int* argmax) noexcept nogil:
    if floating is float:
        cycnn_winograd_tile_row_float(image, C, HP, WP, U, bias, F, OW, PH, PW, i, V, M, y, argmax)
    else:
        cycnn_winograd_tile_row_double(image, C, HP, WP, U, bias, F, OW, PH, PW, i, V, M, y, argmax)


cdef inline void cycnn_pool_rows(const floating* rows, const floating* bias, Py_ssize_t F, Py_ssize_t OW,
                                 Py_ssize_t PH, Py_ssize_t PW, int ph, int pw, int sh, int sw, floating* pooled,
                                 int* where, floating* y, int* argmax) noexcept nogil:
    if floating is float:
        cycnn_pool_rows_float(rows, bias, F, OW, PH, PW, ph, pw, sh, sw, pooled, where, y, argmax)
    else:
        cycnn_pool_rows_double(rows, bias, F, OW, PH, PW, ph, pw, sh, sw, pooled, where, y, argmax)


cdef inline void cycnn_winners_weight_grad(const floating* x, Py_ssize_t N, Py_ssize_t H, Py_ssize_t W,
                                           Py_ssize_t C, const floating* dy, const floating* y, const int* argmax,
                                           Py_ssize_t F, Py_ssize_t PH, Py_ssize_t PW, Py_ssize_t KH,
                                           Py_ssize_t KW, Py_ssize_t stride, Py_ssize_t pad, Py_ssize_t OW,
                                           Py_ssize_t ph, Py_ssize_t sh, Py_ssize_t f0, Py_ssize_t f1,
                                           Py_ssize_t* offset, floating* scale, floating* dw,
                                           floating* db) noexcept nogil:
    if floating is float:
        cycnn_winners_weight_grad_float(x, N, H, W, C, dy, y, argmax, F, PH, PW, KH, KW, stride, pad, OW, ph, sh,
                                        f0, f1, offset, scale, dw, db)
    else:
        cycnn_winners_weight_grad_double(x, N, H, W, C, dy, y, argmax, F, PH, PW, KH, KW, stride, pad, OW, ph, sh,
                                         f0, f1, offset, scale, dw, db)


cdef inline void cycnn_winners_input_grad(const floating* kernel, const floating* dy, const floating* y,
                                          const int* argmax, Py_ssize_t F, Py_ssize_t PH, Py_ssize_t PW,
                                          Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t sh, Py_ssize_t sw,
                                          Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t C, Py_ssize_t stride,
                                          Py_ssize_t pad, Py_ssize_t OW, Py_ssize_t H, Py_ssize_t W,
                                          Py_ssize_t* members, floating* scale, Py_ssize_t* counts, floating* patch,
                                          floating* dx) noexcept nogil:
    if floating is float:
        cycnn_winners_input_grad_float(kernel, dy, y, argmax, F, PH, PW, ph, pw, sh, sw, KH, KW, C, stride, pad, OW,
                                       H, W, members, scale, counts, patch, dx)
    else:
        cycnn_winners_input_grad_double(kernel, dy, y, argmax, F, PH, PW, ph, pw, sh, sw, KH, KW, C, stride, pad,
                                        OW, H, W, members, scale, counts, patch, dx)


cdef inline void cycnn_dense_tile(const floating* A, Py_ssize_t ra, Py_ssize_t ka, const floating* B, floating* C,
                                  Py_ssize_t r0, Py_ssize_t R, Py_ssize_t n0, Py_ssize_t n1, Py_ssize_t K,
                                  Py_ssize_t N) noexcept nogil:
    if floating is float:
        cycnn_dense_tile_float(A, ra, ka, B, C, r0, R, n0, n1, K, N)
    else:
        cycnn_dense_tile_double(A, ra, ka, B, C, r0, R, n0, n1, K, N)


cdef inline void cycnn_dense_tile_part(const floating* A, Py_ssize_t ra, Py_ssize_t ka, const floating* B,
                                       floating* C, Py_ssize_t r0, Py_ssize_t R, Py_ssize_t n0, Py_ssize_t n1,
                                       Py_ssize_t k0, Py_ssize_t k1, Py_ssize_t N) noexcept nogil:
    if floating is float:
        cycnn_dense_tile_part_float(A, ra, ka, B, C, r0, R, n0, n1, k0, k1, N)
    else:
        cycnn_dense_tile_part_double(A, ra, ka, B, C, r0, R, n0, n1, k0, k1, N)


cdef inline int cycnn_plan_run(const cycnn_plan_op* ops, int nops, const floating* x, Py_ssize_t N,
                               Py_ssize_t image_size, floating* slots, Py_ssize_t slot_size, floating* scratch,
                               Py_ssize_t scratch_size, Py_ssize_t logits_at, Py_ssize_t classes, double* probs,
                               floating* logits, int threads, int split, Py_ssize_t block,
                               Py_ssize_t capacity) noexcept nogil:
    if floating is float:
        return cycnn_plan_run_float(ops, nops, x, N, image_size, slots, slot_size, scratch, scratch_size,
                                    logits_at, classes, probs, logits, threads, split, block, capacity)
    else:
        return cycnn_plan_run_double(ops, nops, x, N, image_size, slots, slot_size, scratch, scratch_size,
                                     logits_at, classes, probs, logits, threads, split, block, capacity)


cdef inline void cycnn_adam(floating* param, const floating* grad, floating* m, floating* v, Py_ssize_t n,
                            floating step, floating b1, floating b2, floating eps) noexcept nogil:
    if floating is float:
        cycnn_adam_float(param, grad, m, v, n, step, b1, b2, eps)
    else:
        cycnn_adam_double(param, grad, m, v, n, step, b1, b2, eps)


# --- argument checks ---------------------------------------------------------------------------------------------

cdef inline int require(bint ok, const char* what) except -1 nogil:
    """Raise ValueError(what) unless ok: the kernels run without bounds checks, so each wrapper checks once that
    its arguments fit together before it touches memory (a wrong shape would read or write outside the arrays).
    Only a failing check takes the GIL."""
    if not ok:
        with gil:
            raise ValueError(what.decode())
    return 0


cdef inline bint same_shape(const Py_ssize_t* a, const Py_ssize_t* b, int ndim) noexcept nogil:
    """Whether two memoryviews' shapes (``x.shape``) agree in their first ``ndim`` dimensions."""
    cdef int d
    for d in range(ndim):
        if a[d] != b[d]:
            return False
    return True


cdef inline int require_conv(Py_ssize_t H, Py_ssize_t W, int kh, int kw, int stride, int pad) except -1 nogil:
    """Refuse a kh x kw kernel (stride, zero padding pad) that has no position on an H x W image. Checked before
    the output size (H + 2*pad - kh) // stride + 1 is computed: C division (cdivision) would divide by zero, or
    truncate toward zero and count a position that does not exist."""
    return require(kh >= 1 and kw >= 1 and stride >= 1 and pad >= 0 and H + 2 * pad >= kh and W + 2 * pad >= kw,
                   b"kernel size and stride must be at least 1, padding at least 0, and the kernel no larger than "
                   b"the padded image")


cdef inline bint windows_fit(Py_ssize_t PH, Py_ssize_t PW, Py_ssize_t OH, Py_ssize_t OW, int ph, int pw, int sh,
                             int sw) noexcept nogil:
    """Whether PH x PW pooling windows (ph x pw, stride sh x sw, all at least 1) lie inside an OH x OW map."""
    return (ph >= 1 and pw >= 1 and sh >= 1 and sw >= 1 and PH >= 1 and PW >= 1
            and (PH - 1) * sh + ph <= OH and (PW - 1) * sw + pw <= OW)


cdef inline const floating* padded_image(const floating[:, :, ::1] x, Py_ssize_t pad,
                                         floating* buffer) noexcept nogil:
    """One image (C, H, W) with a zero border of ``pad``: the image itself when pad is 0, else copied row by row
    into ``buffer`` (C, H + 2*pad, W + 2*pad)."""
    cdef Py_ssize_t C = x.shape[0], H = x.shape[1], W = x.shape[2]
    cdef Py_ssize_t HP = H + 2 * pad, WP = W + 2 * pad, c, h
    cdef floating* row
    if pad == 0:
        return &x[0, 0, 0]
    for c in range(C):
        memset(buffer + c * HP * WP, 0, pad * WP * sizeof(floating))
        for h in range(H):
            row = buffer + (c * HP + pad + h) * WP
            memset(row, 0, pad * sizeof(floating))
            memcpy(row + pad, &x[c, h, 0], W * sizeof(floating))
            memset(row + pad + W, 0, pad * sizeof(floating))
        memset(buffer + (c * HP + pad + H) * WP, 0, pad * WP * sizeof(floating))
    return buffer
