/* One precision of dense.h: compiled for float and for double by instantiate.h. */

/* C[0:R, 0:NV*LANES] = A[0:R, 0:K] @ B[0:K, 0:NV*LANES] (row strides: A as in dense.h, B and C ldb, ldc). R and NV
   are constants at every call site, so the loops unroll and the accumulators live in registers. */
static inline __attribute__((always_inline)) void NAME(dense_block)(const REAL *restrict A, ptrdiff_t ra,
                                                                    ptrdiff_t ka, const REAL *restrict B,
                                                                    ptrdiff_t ldb, REAL *restrict C, ptrdiff_t ldc,
                                                                    ptrdiff_t K, const int R, const int NV) {
    VEC acc[DENSE_ROWS][DENSE_VECS];
    for (int r = 0; r < R; r++)
        for (int v = 0; v < NV; v++) acc[r][v] = (VEC){0};
    for (ptrdiff_t k = 0; k < K; k++) {
        VEC b[DENSE_VECS];
        for (int v = 0; v < NV; v++) b[v] = NAME(cycnn_load)(B + k * ldb + v * LANES);
        for (int r = 0; r < R; r++) {
            const REAL a = A[r * ra + k * ka];
            for (int v = 0; v < NV; v++) acc[r][v] += a * b[v];
        }
    }
    for (int r = 0; r < R; r++)
        for (int v = 0; v < NV; v++) NAME(cycnn_store)(C + r * ldc + v * LANES, acc[r][v]);
}

/* C[0:R, 0:NV*LANES] = A[0:R, :] @ B[:, 0:NV*LANES] with R <= DENSE_ROWS and NV <= DENSE_VECS given at run time
   (row strides: A as in dense.h, B and C ldb, ldc): dense_block's constants chosen by a switch. */
static inline void NAME(cycnn_dense_panel)(const REAL *A, ptrdiff_t ra, ptrdiff_t ka, const REAL *B, ptrdiff_t ldb,
                                           REAL *C, ptrdiff_t ldc, ptrdiff_t K, ptrdiff_t R, ptrdiff_t NV) {
#define DENSE_CASE(rows, vecs) NAME(dense_block)(A, ra, ka, B, ldb, C, ldc, K, rows, vecs); break;
#define DENSE_ROWS_CASES(vecs) \
    switch (R) { case 1: DENSE_CASE(1, vecs) case 2: DENSE_CASE(2, vecs) case 3: DENSE_CASE(3, vecs) \
                 case 4: DENSE_CASE(4, vecs) case 5: DENSE_CASE(5, vecs) default: DENSE_CASE(6, vecs) }
    switch (NV) {
    case 1: DENSE_ROWS_CASES(1) break;
    case 2: DENSE_ROWS_CASES(2) break;
    case 3: DENSE_ROWS_CASES(3) break;
    case 4: DENSE_ROWS_CASES(4) break;
    default: break; /* callers pass whole vectors, at most DENSE_VECS of them */
    }
#undef DENSE_ROWS_CASES
#undef DENSE_CASE
}

/* C[r0:r0+R, n0:n1] (n1 - n0 at most DENSE_VECS vectors) = A[r0:r0+R, :] @ B[:, n0:n1], with R <= DENSE_ROWS. */
static void NAME(cycnn_dense_tile)(const REAL *A, ptrdiff_t ra, ptrdiff_t ka, const REAL *B, REAL *C, ptrdiff_t r0,
                                   ptrdiff_t R, ptrdiff_t n0, ptrdiff_t n1, ptrdiff_t K, ptrdiff_t N) {
    NAME(cycnn_dense_panel)(A + r0 * ra, ra, ka, B + n0, N, C + r0 * N + n0, N, K, R, (n1 - n0) / LANES);
}
