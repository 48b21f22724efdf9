/* One precision of dense.h: compiled for float and for double by instantiate.h. */

/* C[0:R, 0:NV*LANES] = A[0:R, 0:K] @ B[0:K, 0:NV*LANES] (row strides: A as in dense.h, B and C ldb, ldc), or
   C += that when `add`: a sum over k cut into parts, each continuing from the previous part's C (a float's trip
   through memory is exact, so the sums are the same as in one part). R and NV are constants at every call site,
   so the loops unroll and the accumulators live in registers. */
static inline __attribute__((always_inline)) void NAME(dense_block)(const REAL *restrict A, ptrdiff_t ra,
                                                                    ptrdiff_t ka, const REAL *restrict B,
                                                                    ptrdiff_t ldb, REAL *restrict C, ptrdiff_t ldc,
                                                                    ptrdiff_t K, const int R, const int NV,
                                                                    int add) {
    VEC acc[DENSE_ROWS][DENSE_VECS];
    for (int r = 0; r < R; r++)
        for (int v = 0; v < NV; v++) acc[r][v] = add ? NAME(cycnn_load)(C + r * ldc + v * LANES) : (VEC){0};
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

/* C[0:R, 0:NV*LANES] = (or += when `add`) A[0:R, :] @ B[:, 0:NV*LANES] with R <= DENSE_ROWS and NV <= DENSE_VECS
   given at run time (row strides: A as in dense.h, B and C ldb, ldc): dense_block's constants chosen by a switch. */
static inline void NAME(cycnn_dense_panel)(const REAL *A, ptrdiff_t ra, ptrdiff_t ka, const REAL *B, ptrdiff_t ldb,
                                           REAL *C, ptrdiff_t ldc, ptrdiff_t K, ptrdiff_t R, ptrdiff_t NV, int add) {
#define DENSE_CASE(rows, vecs) NAME(dense_block)(A, ra, ka, B, ldb, C, ldc, K, rows, vecs, add); break;
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

/* c[0:NV*LANES] = a[0:K] @ B[:, 0:NV*LANES] for one row a (NV <= DENSE_ROW_VECS, a constant at each call site):
   each column the same sum over k in order as dense_block's. */
static inline __attribute__((always_inline)) void NAME(dense_row_block)(const REAL *restrict a,
                                                                        const REAL *restrict B, ptrdiff_t ldb,
                                                                        REAL *restrict c, ptrdiff_t K, const int NV) {
    VEC acc[DENSE_ROW_VECS];
    for (int v = 0; v < NV; v++) acc[v] = (VEC){0};
    for (ptrdiff_t k = 0; k < K; k++) {
        const REAL x = a[k];
        for (int v = 0; v < NV; v++) acc[v] += x * NAME(cycnn_load)(B + k * ldb + v * LANES);
    }
    for (int v = 0; v < NV; v++) NAME(cycnn_store)(c + v * LANES, acc[v]);
}

/* c[0:NV*LANES] = a[0:K] @ B[:, 0:NV*LANES] for one row a, NV vectors of columns (B's row stride ldb): one image's
   dense layer, DENSE_ROW_VECS vectors at a time. A panel of the tiles' four vectors would leave a chain of K
   dependent FMAs per accumulator, each waiting out the FMA's latency, and read B's rows a part at a time; eight
   accumulators keep both FMA units busy and read whole 512-byte rows in order, which the prefetcher follows. */
static void NAME(cycnn_dense_row)(const REAL *a, const REAL *B, ptrdiff_t ldb, REAL *c, ptrdiff_t K, ptrdiff_t NV) {
    for (; NV >= DENSE_ROW_VECS; NV -= DENSE_ROW_VECS, B += DENSE_ROW_VECS * LANES, c += DENSE_ROW_VECS * LANES)
        NAME(dense_row_block)(a, B, ldb, c, K, DENSE_ROW_VECS);
#define ROW_CASE(vecs) case vecs: NAME(dense_row_block)(a, B, ldb, c, K, vecs); break;
    switch (NV) { ROW_CASE(1) ROW_CASE(2) ROW_CASE(3) ROW_CASE(4) ROW_CASE(5) ROW_CASE(6) ROW_CASE(7) default: break; }
#undef ROW_CASE
}

/* C[r0:r0+R, n0:n1] (n1 - n0 at most DENSE_VECS vectors) = the terms k0 <= k < k1 of A[r0:r0+R, :] @ B[:, n0:n1],
   with R <= DENSE_ROWS: set into C when k0 is 0, else added to the earlier terms' sum there. */
static void NAME(cycnn_dense_tile_part)(const REAL *A, ptrdiff_t ra, ptrdiff_t ka, const REAL *B, REAL *C,
                                        ptrdiff_t r0, ptrdiff_t R, ptrdiff_t n0, ptrdiff_t n1, ptrdiff_t k0,
                                        ptrdiff_t k1, ptrdiff_t N) {
    NAME(cycnn_dense_panel)(A + r0 * ra + k0 * ka, ra, ka, B + k0 * N + n0, N, C + r0 * N + n0, N, k1 - k0, R,
                            (n1 - n0) / LANES, k0 > 0);
}

/* The whole tile: all K terms. */
static void NAME(cycnn_dense_tile)(const REAL *A, ptrdiff_t ra, ptrdiff_t ka, const REAL *B, REAL *C, ptrdiff_t r0,
                                   ptrdiff_t R, ptrdiff_t n0, ptrdiff_t n1, ptrdiff_t K, ptrdiff_t N) {
    NAME(cycnn_dense_tile_part)(A, ra, ka, B, C, r0, R, n0, n1, 0, K, N);
}
