/* One precision of the Winograd kernels in winograd.h: compiled for float and for double by instantiate.h. Read
   winograd.h first: it explains the algorithm. */

/* V[xi][j][c] = (B^T d B)[xi] for the 4x4 input tile d of tile (i, j) and channel c, over one row of tiles. */
static void NAME(input_transform)(const REAL *restrict image, ptrdiff_t C, ptrdiff_t HP, ptrdiff_t WP,
                                  ptrdiff_t i, ptrdiff_t PW, REAL *restrict V) {
    for (ptrdiff_t c = 0; c < C; c++) {
        const REAL *plane = image + (c * HP + 2 * i) * WP;
        for (ptrdiff_t j = 0; j < PW; j++) {
            REAL d[4][4], t[4][4];
            for (int a = 0; a < 4; a++)
                for (int b = 0; b < 4; b++) d[a][b] = plane[a * WP + 2 * j + b];
            for (int b = 0; b < 4; b++) { /* rows: B^T d */
                t[0][b] = d[0][b] - d[2][b];
                t[1][b] = d[1][b] + d[2][b];
                t[2][b] = d[2][b] - d[1][b];
                t[3][b] = d[1][b] - d[3][b];
            }
            REAL *out = V + j * C + c;
            const ptrdiff_t step = PW * C; /* from one xi to the next */
            for (int a = 0; a < 4; a++) { /* columns: (B^T d) B */
                out[(4 * a + 0) * step] = t[a][0] - t[a][2];
                out[(4 * a + 1) * step] = t[a][1] + t[a][2];
                out[(4 * a + 2) * step] = t[a][2] - t[a][1];
                out[(4 * a + 3) * step] = t[a][1] - t[a][3];
            }
        }
    }
}

/* The same V for a channels-last image (HP x WP x C, C a whole number of vectors): a vector of channels at a time,
   every lane the same additions as input_transform's. */
static void NAME(input_transform_hwc)(const REAL *restrict image, ptrdiff_t C, ptrdiff_t WP, ptrdiff_t i,
                                      ptrdiff_t PW, REAL *restrict V) {
    const ptrdiff_t step = PW * C;
    for (ptrdiff_t j = 0; j < PW; j++)
        for (ptrdiff_t c = 0; c < C; c += LANES) {
            const REAL *corner = image + ((2 * i) * WP + 2 * j) * C + c;
            VEC t[4][4];
            for (int b = 0; b < 4; b++) { /* rows: B^T d */
                const VEC d0 = NAME(cycnn_load)(corner + b * C), d1 = NAME(cycnn_load)(corner + (WP + b) * C);
                const VEC d2 = NAME(cycnn_load)(corner + (2 * WP + b) * C);
                const VEC d3 = NAME(cycnn_load)(corner + (3 * WP + b) * C);
                t[0][b] = d0 - d2;
                t[1][b] = d1 + d2;
                t[2][b] = d2 - d1;
                t[3][b] = d1 - d3;
            }
            REAL *out = V + j * C + c;
            for (int a = 0; a < 4; a++) { /* columns: (B^T d) B */
                NAME(cycnn_store)(out + (4 * a + 0) * step, t[a][0] - t[a][2]);
                NAME(cycnn_store)(out + (4 * a + 1) * step, t[a][1] + t[a][2]);
                NAME(cycnn_store)(out + (4 * a + 2) * step, t[a][2] - t[a][1]);
                NAME(cycnn_store)(out + (4 * a + 3) * step, t[a][1] - t[a][3]);
            }
        }
}

/* M[xi] (rows x F) = V[xi] (rows x C) @ U[xi] (C x F) for the 16 points xi, in the dense kernel's register tiles
   (dense.h: 6 rows x one panel of 4 vectors). F is a multiple of LANES. */
static void NAME(tile_products)(const REAL *restrict V, const REAL *restrict U, ptrdiff_t rows, ptrdiff_t C,
                                ptrdiff_t F, ptrdiff_t f0, ptrdiff_t f1, REAL *restrict M) {
    const ptrdiff_t panel = DENSE_VECS * LANES;
    for (int xi = 0; xi < 16; xi++)
        for (ptrdiff_t n0 = f0; n0 < f1; n0 += panel)
            for (ptrdiff_t r0 = 0; r0 < rows; r0 += DENSE_ROWS)
                NAME(cycnn_dense_tile)(V + xi * rows * C, C, 1, U + xi * C * F, M + xi * rows * F, r0,
                                       rows - r0 < DENSE_ROWS ? rows - r0 : DENSE_ROWS, n0,
                                       f1 - n0 < panel ? f1 : n0 + panel, C, F);
}

/* The four convolution outputs A^T m A of tile j's window, channels [f, f + LANES), in window order (0,0), (0,1),
   (1,0), (1,1). */
static inline void NAME(output_tile)(const REAL *restrict M, ptrdiff_t j, ptrdiff_t PW, ptrdiff_t F, ptrdiff_t f,
                                     VEC o[4]) {
    const ptrdiff_t step = PW * F;
    const REAL *m = M + j * F + f;
    VEC s[4][2];
    for (int a = 0; a < 4; a++) { /* columns: m A */
        VEC m0 = NAME(cycnn_load)(m + (4 * a + 0) * step), m1 = NAME(cycnn_load)(m + (4 * a + 1) * step);
        VEC m2 = NAME(cycnn_load)(m + (4 * a + 2) * step), m3 = NAME(cycnn_load)(m + (4 * a + 3) * step);
        s[a][0] = m0 + m1 + m2;
        s[a][1] = m1 - m2 - m3;
    }
    for (int b = 0; b < 2; b++) { /* rows: A^T (m A) */
        o[b] = s[0][b] + s[1][b] + s[2][b];
        o[2 + b] = s[1][b] - s[2][b] - s[3][b];
    }
}

/* max(o[0..3]) (compare-and-select in window order, as output_pool's comparisons) + bias, then the ReLU. */
static inline VEC NAME(pooled_relu)(const VEC o[4], const REAL *bias) {
    VEC best = o[0];
    for (int w = 1; w < 4; w++) best = NAME(cycnn_select)(o[w] > best, o[w], best);
    const VEC v = best + NAME(cycnn_load)(bias);
    return NAME(cycnn_select)(v > 0, v, (VEC){0});
}

/* The 2x2 convolution outputs of every tile in the row, then max and argmax over them (the pooling window), bias
   and ReLU, written to y / argmax (F x PH x PW, this image) for the channels [f0, f1); argmax may be NULL
   (inference needs no winners). */
static void NAME(output_pool)(const REAL *restrict M, const REAL *restrict bias, ptrdiff_t i, ptrdiff_t PW,
                              ptrdiff_t F, ptrdiff_t f0, ptrdiff_t f1, ptrdiff_t OW, ptrdiff_t PH, REAL *restrict y,
                              int *restrict argmax) {
    const ptrdiff_t plane = PH * PW;
    for (ptrdiff_t j = 0; j < PW; j++) {
        for (ptrdiff_t f = f0; f < f1; f += LANES) {
            VEC o[4];
            NAME(output_tile)(M, j, PW, F, f, o);
            if (!argmax) { /* the values alone, a vector at a time, then one store per lane */
                REAL lanes[LANES];
                NAME(cycnn_store)(lanes, NAME(pooled_relu)(o, bias + f));
                for (int q = 0; q < LANES; q++) y[(f + q) * plane + i * PW + j] = lanes[q];
                continue;
            }
            REAL out[4][LANES];
            for (int w = 0; w < 4; w++) NAME(cycnn_store)(out[w], o[w]);
            for (int q = 0; q < LANES; q++) {
                REAL best = out[0][q];
                int where = 0;
                for (int w = 1; w < 4; w++)
                    if (out[w][q] > best) { best = out[w][q]; where = w; }
                const REAL v = best + bias[f + q];
                const ptrdiff_t at = (f + q) * plane + i * PW + j;
                y[at] = v > 0 ? v : 0;
                if (argmax) argmax[at] = (int)((2 * i + where / 2) * OW + 2 * j + where % 2);
            }
        }
    }
}

/* output_pool's numbers without the winners, written channels-last (pooled pixel (i, j) at y + (i * PW + j) * F). */
static void NAME(output_pool_hwc)(const REAL *restrict M, const REAL *restrict bias, ptrdiff_t i, ptrdiff_t PW,
                                  ptrdiff_t F, ptrdiff_t f0, ptrdiff_t f1, REAL *restrict y) {
    for (ptrdiff_t j = 0; j < PW; j++)
        for (ptrdiff_t f = f0; f < f1; f += LANES) {
            VEC o[4];
            NAME(output_tile)(M, j, PW, F, f, o);
            NAME(cycnn_store)(y + (i * PW + j) * F + f, NAME(pooled_relu)(o, bias + f));
        }
}

/* U[4a+b][c][f] = (G g G^T)[a][b] for each 3x3 slice g = W[f][c] (W is F x C x 3 x 3). One input channel at a
   time into `rows` (16 x F scratch), then copied out: writing U directly, 16 stores C*F apart for each (c, f),
   hits the same cache set over and over (4 KiB aliasing) and runs ten times slower. */
static void NAME(cycnn_winograd_kernel)(const REAL *restrict W, ptrdiff_t F, ptrdiff_t C, REAL *restrict rows,
                                        REAL *restrict U) {
    for (ptrdiff_t c = 0; c < C; c++) {
        for (ptrdiff_t f = 0; f < F; f++) {
            const REAL *g = W + (f * C + c) * 9;
            REAL gg[4][3];
            for (int k = 0; k < 3; k++) { /* G g */
                gg[0][k] = g[k];
                gg[1][k] = (REAL)0.5 * (g[k] + g[3 + k] + g[6 + k]);
                gg[2][k] = (REAL)0.5 * (g[k] - g[3 + k] + g[6 + k]);
                gg[3][k] = g[6 + k];
            }
            for (int a = 0; a < 4; a++) { /* (G g) G^T */
                rows[(4 * a + 0) * F + f] = gg[a][0];
                rows[(4 * a + 1) * F + f] = (REAL)0.5 * (gg[a][0] + gg[a][1] + gg[a][2]);
                rows[(4 * a + 2) * F + f] = (REAL)0.5 * (gg[a][0] - gg[a][1] + gg[a][2]);
                rows[(4 * a + 3) * F + f] = gg[a][2];
            }
        }
        for (int xi = 0; xi < 16; xi++) memcpy(U + (xi * C + c) * F, rows + xi * F, F * sizeof(REAL));
    }
}

/* Tile row i of one image, every output channel (see winograd.h). V and M are scratch of 16*PW*C and 16*PW*F
   REALs; argmax may be NULL. */
static void NAME(cycnn_winograd_tile_row)(const REAL *image, ptrdiff_t C, ptrdiff_t HP, ptrdiff_t WP,
                                          const REAL *U, const REAL *bias, ptrdiff_t F, ptrdiff_t OW,
                                          ptrdiff_t PH, ptrdiff_t PW, ptrdiff_t i, REAL *V, REAL *M, REAL *y,
                                          int *argmax) {
    NAME(input_transform)(image, C, HP, WP, i, PW, V);
    NAME(tile_products)(V, U, PW, C, F, 0, F, M);
    NAME(output_pool)(M, bias, i, PW, F, 0, F, OW, PH, y, argmax);
}
