/* One precision of the inference plan in plan.h: compiled for float and for double by instantiate.h. */

/* The part [lo, hi) of n items that thread tid of a team takes: fixed by (n, tid, team) alone. */
static inline void NAME(plan_share)(ptrdiff_t n, int tid, int team, ptrdiff_t *lo, ptrdiff_t *hi) {
    *lo = n * tid / team;
    *hi = n * (tid + 1) / team;
}

/* cols[t][p] (T x P, one row per tap (c, ki, kj)) = the input under tap t of output pixel p, for the output rows
   [r0, r1) of one image (zero outside it). The taps of one kernel column kj read the input inside the image for
   the same output columns [lo, hi), found once per column (two divisions: per row of taps they cost more than the
   copy): no bounds check per pixel. */
static void NAME(plan_im2col)(const cycnn_plan_op *op, const REAL *restrict in, ptrdiff_t r0, ptrdiff_t r1,
                              REAL *restrict cols) {
    const ptrdiff_t H = op->H, W = op->W, S = op->stride, pad = op->pad, OW = op->OW, KH = op->KH, KW = op->KW;
    const ptrdiff_t P = (r1 - r0) * OW;
    for (ptrdiff_t kj = 0; kj < KW; kj++) {
        /* ow * S + kj - pad in [0, W) for ow in [lo, hi) */
        ptrdiff_t lo = kj >= pad ? 0 : (pad - kj + S - 1) / S;
        ptrdiff_t hi = W - 1 + pad - kj < 0 ? 0 : (W - 1 + pad - kj) / S + 1;
        if (hi > OW) hi = OW;
        if (lo > hi) lo = hi;
        for (ptrdiff_t c = 0; c < op->C; c++)
            for (ptrdiff_t ki = 0; ki < KH; ki++) {
                REAL *row = cols + ((c * KH + ki) * KW + kj) * P;
                for (ptrdiff_t oh = r0; oh < r1; oh++, row += OW) {
                    const ptrdiff_t h = oh * S + ki - pad;
                    if (h < 0 || h >= H) {
                        memset(row, 0, OW * sizeof(REAL));
                        continue;
                    }
                    const REAL *src = in + (c * H + h) * W + kj - pad;
                    ptrdiff_t ow = 0;
                    for (; ow < lo; ow++) row[ow] = 0;
                    if (S == 1)
                        for (; ow < hi; ow++) row[ow] = src[ow];
                    else
                        for (; ow < hi; ow++) row[ow] = src[ow * S];
                    for (; ow < OW; ow++) row[ow] = 0;
                }
            }
    }
}

/* rows (P x Fp) = cols^T (P x T) @ weight (T x Fp), in the dense kernel's register tiles. */
static void NAME(plan_gemm)(const REAL *cols, ptrdiff_t P, ptrdiff_t T, const REAL *weight, ptrdiff_t Fp,
                            REAL *rows) {
    const ptrdiff_t panel = DENSE_VECS * LANES;
    for (ptrdiff_t n0 = 0; n0 < Fp; n0 += panel)
        for (ptrdiff_t p0 = 0; p0 < P; p0 += DENSE_ROWS)
            NAME(cycnn_dense_tile)(cols, 1, P, weight, rows, p0, P - p0 < DENSE_ROWS ? P - p0 : DENSE_ROWS, n0,
                                   Fp - n0 < panel ? Fp : n0 + panel, T, Fp);
}

/* The max over the pooling window (ph x pw) whose first GEMM row is `at` (convolution rows OW GEMM rows apart, each
   Fp numbers long), a vector of channels; the window in row order, ties to the first maximum. */
static inline VEC NAME(window_max)(const REAL *at, ptrdiff_t ph, ptrdiff_t pw, ptrdiff_t OW, ptrdiff_t Fp) {
    VEC best = NAME(cycnn_load)(at);
    for (ptrdiff_t a = 0; a < ph; a++)
        for (ptrdiff_t b = a == 0; b < pw; b++) {
            const VEC v = NAME(cycnn_load)(at + (a * OW + b) * Fp);
            best = NAME(cycnn_select)(v > best, v, best);
        }
    return best;
}

/* plan_pool_rows for a window of ph x pw (constants at the call sites, so that the common 2x2 window unrolls). */
static inline __attribute__((always_inline)) void NAME(pool_rows_window)(const cycnn_plan_op *op,
                                                                         const REAL *restrict rows, ptrdiff_t r0,
                                                                         ptrdiff_t i0, ptrdiff_t i1,
                                                                         REAL *restrict out, const ptrdiff_t ph,
                                                                         const ptrdiff_t pw) {
    const ptrdiff_t F = op->F, Fp = op->Fp, OW = op->OW, PW = op->PW, plane = op->PH * op->PW;
    const ptrdiff_t sh = op->sh, sw = op->sw;
    const int relu = op->relu, hwc = op->hwc_out;
    const REAL *bias = (const REAL *)op->bias;
    for (ptrdiff_t i = i0; i < i1; i++)
        for (ptrdiff_t j = 0; j < PW; j++) {
            const REAL *corner = rows + ((i * sh - r0) * OW + j * sw) * Fp;
            if (hwc) { /* channels-last, F whole vectors: each vector goes out as it is */
                REAL *dst = out + (i * PW + j) * F;
                for (ptrdiff_t f0 = 0; f0 < F; f0 += LANES) {
                    VEC v = NAME(window_max)(corner + f0, ph, pw, OW, Fp) + NAME(cycnn_load)(bias + f0);
                    if (relu) v = NAME(cycnn_select)(v > 0, v, (VEC){0});
                    NAME(cycnn_store)(dst + f0, v);
                }
                continue;
            }
            for (ptrdiff_t f0 = 0; f0 < F; f0 += LANES) {
                REAL lanes[LANES];
                NAME(cycnn_store)(lanes, NAME(window_max)(corner + f0, ph, pw, OW, Fp));
                const ptrdiff_t count = F - f0 < LANES ? F - f0 : LANES;
                for (ptrdiff_t q = 0; q < count; q++) {
                    REAL v = lanes[q] + bias[f0 + q];
                    if (relu) v = v > 0 ? v : 0;
                    out[(f0 + q) * plane + i * PW + j] = v;
                }
            }
        }
}

/* The pooled outputs of rows [i0, i1): max over each window of the GEMM rows (whose first row is the convolution
   row r0), then the bias and the ReLU, written NCHW (or channels-last: op->hwc_out). A vector of channels at a
   time, compare-and-select. */
static void NAME(plan_pool_rows)(const cycnn_plan_op *op, const REAL *restrict rows, ptrdiff_t r0, ptrdiff_t i0,
                                 ptrdiff_t i1, REAL *restrict out) {
    if (op->ph == 2 && op->pw == 2)
        NAME(pool_rows_window)(op, rows, r0, i0, i1, out, 2, 2);
    else
        NAME(pool_rows_window)(op, rows, r0, i0, i1, out, op->ph, op->pw);
}

/* band (C x BH x WP) = the zero-padded input rows [first, first + BH) of one image (padded coordinates): the
   direct kernel's band of rows, or Winograd's whole padded image. */
static void NAME(plan_pad_band)(const cycnn_plan_op *op, const REAL *restrict in, ptrdiff_t first, ptrdiff_t BH,
                                REAL *restrict band) {
    const ptrdiff_t H = op->H, W = op->W, pad = op->pad, WP = W + 2 * pad;
    for (ptrdiff_t c = 0; c < op->C; c++)
        for (ptrdiff_t b = 0; b < BH; b++) {
            REAL *row = band + (c * BH + b) * WP;
            const ptrdiff_t h = first + b - pad;
            if (h < 0 || h >= H) {
                memset(row, 0, WP * sizeof(REAL));
                continue;
            }
            memset(row, 0, pad * sizeof(REAL));
            memcpy(row + pad, in + (c * H + h) * W, W * sizeof(REAL));
            memset(row + pad + W, 0, pad * sizeof(REAL));
        }
}

/* padded (HP x WP x C) = a channels-last image (H x W x C) with its zero padding: Winograd's input when op->hwc_in. */
static void NAME(plan_pad_hwc)(const cycnn_plan_op *op, const REAL *restrict in, REAL *restrict padded) {
    const ptrdiff_t C = op->C, H = op->H, W = op->W, pad = op->pad, WP = W + 2 * pad;
    memset(padded, 0, pad * WP * C * sizeof(REAL));
    for (ptrdiff_t h = 0; h < H; h++) {
        REAL *row = padded + (h + pad) * WP * C;
        memset(row, 0, pad * C * sizeof(REAL));
        memcpy(row + pad * C, in + h * W * C, W * C * sizeof(REAL));
        memset(row + (pad + W) * C, 0, pad * C * sizeof(REAL));
    }
    memset(padded + (H + pad) * WP * C, 0, pad * WP * C * sizeof(REAL));
}

/* Convolution rows [r0, r1) (with their pooled rows [i0, i1)) of the thread's band, whose first row is band_r0:
   the direct kernel or im2col + GEMM into `rows`, then the bias, the ReLU and the pooling on the way out. */
static void NAME(plan_conv_rows)(const cycnn_plan_op *op, const REAL *in, const REAL *band, ptrdiff_t band_r0,
                                 ptrdiff_t BH, ptrdiff_t r0, ptrdiff_t r1, ptrdiff_t i0, ptrdiff_t i1, REAL *out,
                                 REAL *scratch) {
    const ptrdiff_t P = (r1 - r0) * op->OW, T = op->C * op->KH * op->KW, F = op->F, Fp = op->Fp;
    REAL *rows = scratch + op->rows;
    if (op->kind == PLAN_CONV_DIRECT) {
        const ptrdiff_t WP = op->W + 2 * op->pad;
        NAME(cycnn_direct_conv)(band + (r0 - band_r0) * op->stride * WP, op->C, BH, WP, op->KH, op->KW, op->stride,
                                r1 - r0, op->OW, (const REAL *)op->weight, Fp, F, rows, Fp);
    } else {
        REAL *cols = scratch + op->cols;
        NAME(plan_im2col)(op, in, r0, r1, cols);
        NAME(plan_gemm)(cols, P, T, (const REAL *)op->weight, Fp, rows);
    }
    if (op->pool) {
        NAME(plan_pool_rows)(op, rows, r0, i0, i1, out);
        return;
    }
    const REAL *bias = (const REAL *)op->bias;
    const ptrdiff_t plane = op->OH * op->OW, base = r0 * op->OW;
    for (ptrdiff_t f = 0; f < F; f++) {
        const REAL b = bias[f];
        REAL *dst = out + f * plane + base;
        for (ptrdiff_t p = 0; p < P; p++) {
            REAL v = rows[p * Fp + f] + b;
            if (op->relu && v < 0) v = 0;
            dst[p] = v;
        }
    }
}

/* A convolution (+ bias, ReLU, max-pool) by the direct kernel or by im2col + GEMM, for the thread's rows of one
   image, a few rows at a time: each chunk's GEMM rows (about PLAN_CHUNK_BYTES) are still in L1 when the pooling or
   the NCHW copy reads them back. Pooling windows that overlap vertically take the band in one piece (a chunk would
   compute the shared rows twice). */
static void NAME(plan_conv)(const cycnn_plan_op *op, const REAL *in, REAL *out, REAL *scratch, int tid, int team) {
    ptrdiff_t r0, r1, i0 = 0, i1 = 0;
    if (op->pool) {
        NAME(plan_share)(op->PH, tid, team, &i0, &i1);
        r0 = i0 * op->sh;
        r1 = (i1 - 1) * op->sh + op->ph;
    } else {
        NAME(plan_share)(op->OH, tid, team, &r0, &r1);
        i0 = r0;
        i1 = r1;
    }
    if (i0 >= i1) return;
    const ptrdiff_t BH = (r1 - r0 - 1) * op->stride + op->KH;
    REAL *band = scratch + op->padded;
    if (op->kind == PLAN_CONV_DIRECT) NAME(plan_pad_band)(op, in, r0 * op->stride, BH, band);
    /* Output rows (pooled rows when pooling) per chunk, each of `height` convolution rows. */
    const ptrdiff_t height = op->pool ? op->ph : 1, step = op->pool ? op->sh : 1;
    const ptrdiff_t row_bytes = op->OW * op->Fp * (ptrdiff_t)sizeof(REAL);
    ptrdiff_t per_chunk = PLAN_CHUNK_BYTES / (height * row_bytes);
    if (per_chunk < 1) per_chunk = 1;
    if (height > step) per_chunk = i1 - i0;
    for (ptrdiff_t c0 = i0; c0 < i1; c0 += per_chunk) {
        const ptrdiff_t c1 = c0 + per_chunk < i1 ? c0 + per_chunk : i1;
        NAME(plan_conv_rows)(op, in, band, r0, BH, c0 * step, (c1 - 1) * step + height, c0, c1, out, scratch);
    }
}

/* A 3x3 stride-1 convolution + bias + ReLU + 2x2 max-pool by Winograd F(2x2, 3x3) (winograd.h), for the
   thread's whole vectors of output channels (or, with fewer vectors than threads, its rows of tiles). */
static void NAME(plan_conv_winograd)(const cycnn_plan_op *op, const REAL *in, REAL *out, REAL *scratch, int tid,
                                     int team) {
    const ptrdiff_t C = op->C, H = op->H, W = op->W, pad = op->pad, F = op->F;
    const ptrdiff_t HP = H + 2 * pad, WP = W + 2 * pad, vectors = F / LANES;
    ptrdiff_t f0 = 0, f1 = F, i0 = 0, i1 = op->PH;
    if (vectors >= team) {
        NAME(plan_share)(vectors, tid, team, &f0, &f1);
        f0 *= LANES;
        f1 *= LANES;
    } else {
        NAME(plan_share)(op->PH, tid, team, &i0, &i1);
    }
    if (f0 >= f1 || i0 >= i1) return;
    const REAL *image = in, *U = (const REAL *)op->weight, *bias = (const REAL *)op->bias;
    if (pad > 0) {
        REAL *padded = scratch + op->padded;
        if (op->hwc_in)
            NAME(plan_pad_hwc)(op, in, padded);
        else
            NAME(plan_pad_band)(op, in, 0, HP, padded);
        image = padded;
    }
    REAL *V = scratch + op->tiles, *M = scratch + op->products;
    for (ptrdiff_t i = i0; i < i1; i++) {
        if (op->hwc_in)
            NAME(input_transform_hwc)(image, C, WP, i, op->PW, V);
        else
            NAME(input_transform)(image, C, HP, WP, i, op->PW, V);
        NAME(tile_products)(V, U, op->PW, C, F, f0, f1, M);
        if (op->hwc_out)
            NAME(output_pool_hwc)(M, bias, i, op->PW, F, f0, f1, out);
        else
            NAME(output_pool)(M, bias, i, op->PW, F, f0, f1, WP - 2, op->PH, out, NULL);
    }
}

/* A max-pool of its own (NCHW), the thread's channels. Ties go to the first maximum, as in pool.pyx. */
static void NAME(plan_pool)(const cycnn_plan_op *op, const REAL *restrict in, REAL *restrict out, int tid,
                            int team) {
    ptrdiff_t c0, c1;
    NAME(plan_share)(op->C, tid, team, &c0, &c1);
    for (ptrdiff_t c = c0; c < c1; c++) {
        const REAL *plane = in + c * op->H * op->W;
        for (ptrdiff_t i = 0; i < op->PH; i++)
            for (ptrdiff_t j = 0; j < op->PW; j++) {
                const REAL *corner = plane + i * op->sh * op->W + j * op->sw;
                REAL best = corner[0];
                for (ptrdiff_t a = 0; a < op->ph; a++)
                    for (ptrdiff_t b = 0; b < op->pw; b++)
                        if (corner[a * op->W + b] > best) best = corner[a * op->W + b];
                out[(c * op->PH + i) * op->PW + j] = best;
            }
    }
}

/* max(x, 0) over the thread's part of the map. */
static void NAME(plan_relu)(const cycnn_plan_op *op, const REAL *restrict in, REAL *restrict out, int tid,
                            int team) {
    ptrdiff_t k0, k1;
    NAME(plan_share)(op->C * op->H * op->W, tid, team, &k0, &k1);
    for (ptrdiff_t k = k0; k < k1; k++) out[k] = in[k] > 0 ? in[k] : 0;
}

/* C[0:R, c0:c1] = A[0:R, :] @ W[:, c0:c1] (row stride of A: ra; whole vectors of columns, all in one panel;
   R <= DENSE_ROWS) for a dense layer's weights W (K x Fp) laid out panel after panel by plan.pyx (op->panels): the K
   rows of each DENSE_VECS-vector panel are contiguous, so a panel streams through the cache in order. At the whole
   matrix's row stride, often a power of two (256 columns: 1 KB), every row of a panel falls in the same few cache
   sets, and a panel that fits the L2 cache was read from memory again for each block of rows. */
static void NAME(plan_panel_product)(const REAL *A, ptrdiff_t ra, const REAL *W, ptrdiff_t K, ptrdiff_t Fp,
                                     ptrdiff_t c0, ptrdiff_t c1, REAL *C, ptrdiff_t ldc, ptrdiff_t R) {
    const ptrdiff_t panel = DENSE_VECS * LANES, p0 = c0 / panel * panel;
    const ptrdiff_t width = Fp - p0 < panel ? Fp - p0 : panel;
    NAME(cycnn_dense_panel)(A, ra, 1, W + K * p0 + (c0 - p0), width, C + c0, ldc, K, R, (c1 - c0) / LANES, 0);
}

/* The bias and the ReLU on outputs [j0, j1) of one image. */
static void NAME(plan_dense_finish)(const cycnn_plan_op *op, REAL *out, ptrdiff_t j0, ptrdiff_t j1) {
    const REAL *bias = (const REAL *)op->bias;
    for (ptrdiff_t j = j0; j < j1; j++) {
        const REAL v = out[j] + bias[j];
        out[j] = (op->relu && v < 0) ? 0 : v;
    }
}

/* out = act(in @ W + b) for one image (W: C x Fp, F columns then zero columns up to Fp, a whole number of vectors;
   out has Fp numbers, the first F the outputs): the thread's whole vectors of columns in the one-row product
   (cycnn_dense_row). One image reads each weight once: the row-major matrix serves, and the panels (copied when
   the weights change) are left to blocks of images. */
static void NAME(plan_dense)(const cycnn_plan_op *op, const REAL *restrict in, REAL *restrict out, int tid,
                             int team) {
    const ptrdiff_t K = op->C, F = op->F, Fp = op->Fp;
    ptrdiff_t v0, v1;
    NAME(plan_share)(Fp / LANES, tid, team, &v0, &v1);
    const ptrdiff_t j0 = v0 * LANES, j1 = v1 * LANES;
    NAME(cycnn_dense_row)(in, (const REAL *)op->weight + j0, Fp, out + j0, K, v1 - v0);
    NAME(plan_dense_finish)(op, out, j0, j1 < F ? j1 : F);
}

/* Every operation of the plan on one image; with a team of threads, each does its part and they meet at a barrier
   after each operation. */
static void NAME(plan_image)(const cycnn_plan_op *ops, int nops, const REAL *image, REAL *slot, REAL *scratch,
                             int tid, int team) {
    for (int k = 0; k < nops; k++) {
        const cycnn_plan_op *op = ops + k;
        const REAL *in = op->in < 0 ? image : slot + op->in;
        REAL *out = slot + op->out;
        switch (op->kind) {
        case PLAN_CONV_GEMM:
        case PLAN_CONV_DIRECT: NAME(plan_conv)(op, in, out, scratch, tid, team); break;
        case PLAN_CONV_WINOGRAD: NAME(plan_conv_winograd)(op, in, out, scratch, tid, team); break;
        case PLAN_POOL: NAME(plan_pool)(op, in, out, tid, team); break;
        case PLAN_RELU: NAME(plan_relu)(op, in, out, tid, team); break;
        case PLAN_DENSE: NAME(plan_dense)(op, in, out, tid, team); break;
        default: break;
        }
        if (team > 1) {
#pragma omp barrier
        }
    }
}

/* probs = softmax(logits) in double precision, the row maximum subtracted first. */
static void NAME(plan_softmax)(const REAL *logits, ptrdiff_t classes, double *probs) {
    double top = logits[0], sum = 0;
    for (ptrdiff_t k = 1; k < classes; k++)
        if (logits[k] > top) top = logits[k];
    for (ptrdiff_t k = 0; k < classes; k++) {
        probs[k] = exp((double)logits[k] - top);
        sum += probs[k];
    }
    for (ptrdiff_t k = 0; k < classes; k++) probs[k] /= sum;
}

/* A dense layer on a block of B images at once (image b's numbers at slot + b * slot_size): each panel of weights
   loaded serves all B images (a batch's product, instead of B matrix-vector products that read the whole weight
   matrix B times). Every output is the same sum in the same order as plan_dense's. */
static void NAME(plan_dense_block)(const cycnn_plan_op *op, const REAL *in, ptrdiff_t in_stride, REAL *out,
                                   ptrdiff_t out_stride, ptrdiff_t B) {
    const ptrdiff_t K = op->C, F = op->F, Fp = op->Fp, panel = DENSE_VECS * LANES;
    for (ptrdiff_t c0 = 0; c0 < Fp; c0 += panel)
        for (ptrdiff_t r0 = 0; r0 < B; r0 += DENSE_ROWS)
            NAME(plan_panel_product)(in + r0 * in_stride, in_stride, (const REAL *)op->panels, K, Fp, c0,
                                     Fp - c0 < panel ? Fp : c0 + panel, out + r0 * out_stride, out_stride,
                                     B - r0 < DENSE_ROWS ? B - r0 : DENSE_ROWS);
    for (ptrdiff_t b = 0; b < B; b++) NAME(plan_dense_finish)(op, out + b * out_stride, 0, F);
}

/* Every operation on a block of B images by one thread (image b in the slot at slots + b * slot_size): the
   convolutions image by image, the dense layers on the whole block. */
static void NAME(plan_block)(const cycnn_plan_op *ops, int nops, const REAL *images, ptrdiff_t image_size,
                             ptrdiff_t B, REAL *slots, ptrdiff_t slot_size, REAL *scratch) {
    for (int k = 0; k < nops; k++) {
        const cycnn_plan_op *op = ops + k;
        if (op->kind == PLAN_DENSE && B == 1) {
            NAME(plan_dense)(op, op->in < 0 ? images : slots + op->in, slots + op->out, 0, 1);
            continue;
        }
        if (op->kind == PLAN_DENSE) {
            NAME(plan_dense_block)(op, op->in < 0 ? images : slots + op->in, op->in < 0 ? image_size : slot_size,
                                   slots + op->out, slot_size, B);
            continue;
        }
        for (ptrdiff_t b = 0; b < B; b++) {
            const REAL *in = op->in < 0 ? images + b * image_size : slots + b * slot_size + op->in;
            REAL *out = slots + b * slot_size + op->out;
            switch (op->kind) {
            case PLAN_CONV_GEMM:
            case PLAN_CONV_DIRECT: NAME(plan_conv)(op, in, out, scratch, 0, 1); break;
            case PLAN_CONV_WINOGRAD: NAME(plan_conv_winograd)(op, in, out, scratch, 0, 1); break;
            case PLAN_POOL: NAME(plan_pool)(op, in, out, 0, 1); break;
            case PLAN_RELU: NAME(plan_relu)(op, in, out, 0, 1); break;
            default: break;
            }
        }
    }
}

/* The plan on N images x (image_size REALs each): class probabilities (N x classes) into probs when probs is not
   NULL, and each image's logits (N x classes) into logits when that is not NULL. Returns 1 without computing
   anything when an input is not finite. scratch holds one arena per thread.
   split: the threads share each image (in the slot at `slots`). Otherwise each thread takes blocks of `block`
   images (at most `capacity`, its number of slots), the next free block each time (a thread the system
   deschedules holds up only the block it has), in its own `capacity` slots. Which thread computes an image
   changes nothing in its numbers. */
static int NAME(cycnn_plan_run)(const cycnn_plan_op *ops, int nops, const REAL *x, ptrdiff_t N,
                                ptrdiff_t image_size, REAL *slots, ptrdiff_t slot_size, REAL *scratch,
                                ptrdiff_t scratch_size, ptrdiff_t logits_at, ptrdiff_t classes, double *probs,
                                REAL *logits, int threads, int split, ptrdiff_t block, ptrdiff_t capacity) {
    int bad = 0;
    for (ptrdiff_t k = 0; k < N * image_size; k++) bad |= !(x[k] - x[k] == 0);
    if (bad) return 1;
    if (block < 1 || block > capacity) block = capacity;
    ptrdiff_t next = 0; /* the next block of images no thread has taken */
    /* No more threads than blocks: a thread with nothing to do would still be waited for at the end. */
    const ptrdiff_t blocks = (N + block - 1) / block;
    if (!split && blocks < threads) threads = (int)blocks;
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        const int tid = omp_get_thread_num(), team = omp_get_num_threads();
        REAL *own = scratch + tid * scratch_size;
        if (split) {
            for (ptrdiff_t n = 0; n < N; n++) {
                NAME(plan_image)(ops, nops, x + n * image_size, slots, own, tid, team);
                if (tid == 0) {
                    if (probs) NAME(plan_softmax)(slots + logits_at, classes, probs + n * classes);
                    if (logits) memcpy(logits + n * classes, slots + logits_at, classes * sizeof(REAL));
                }
                /* One operation only: the next image's would overwrite these logits while they are read. */
                if (team > 1 && nops == 1) {
#pragma omp barrier
                }
            }
        } else {
            REAL *mine = slots + (ptrdiff_t)tid * capacity * slot_size;
            for (;;) {
                ptrdiff_t n0;
#pragma omp atomic capture
                { n0 = next; next += block; }
                if (n0 >= N) break;
                const ptrdiff_t B = N - n0 < block ? N - n0 : block;
                NAME(plan_block)(ops, nops, x + n0 * image_size, image_size, B, mine, slot_size, own);
                for (ptrdiff_t b = 0; b < B; b++) {
                    const REAL *l = mine + b * slot_size + logits_at;
                    if (probs) NAME(plan_softmax)(l, classes, probs + (n0 + b) * classes);
                    if (logits) memcpy(logits + (n0 + b) * classes, l, classes * sizeof(REAL));
                }
            }
        }
    }
    return 0;
}
