/* One precision of the direct convolution in direct.h: compiled for float and for double by instantiate.h. */

/* conv[r * ldc + v * LANES ..] for R pixels and NV vectors of channels: acc[r][v] += x(pixel r, tap t) *
   wt[t * ldw + v * LANES ..] over the T taps, whose input offsets from a pixel's corner are `offsets`. Pixel r's
   corner is at input offset bases[r] when `across` (a block across the end of a row), else at bases[0] + r *
   stride (one pointer: eight pixels' own pointers would spill, and moving them back costs the FMA units' ports).
   The last vector stores only its first `tail` channels when `tail` is not 0 (the channels beyond the whole
   vectors). R, NV, `across` and whether tail is 0 are constants at every call site. */
static inline __attribute__((always_inline)) void NAME(direct_block)(
        const REAL *restrict padded, const ptrdiff_t *restrict bases, ptrdiff_t stride,
        const ptrdiff_t *restrict offsets, ptrdiff_t T, const REAL *restrict wt, ptrdiff_t ldw, ptrdiff_t ldc,
        REAL *restrict conv, const int R, const int NV, ptrdiff_t tail, const int across) {
    VEC acc[DIRECT_WIDE_ROWS][DIRECT_MAX_VECS];
    const REAL *corner[DIRECT_ROWS];
    for (int r = 0; r < R; r++)
        for (int v = 0; v < NV; v++) acc[r][v] = (VEC){0};
    if (across)
        for (int r = 0; r < R; r++) corner[r] = padded + bases[r];
    for (ptrdiff_t t = 0; t < T; t++) {
        VEC w[DIRECT_MAX_VECS];
        for (int v = 0; v < NV; v++) w[v] = NAME(cycnn_load)(wt + t * ldw + v * LANES);
        const REAL *x = padded + bases[0] + offsets[t];
        for (int r = 0; r < R; r++) {
            const REAL xv = across ? corner[r][offsets[t]] : x[r * stride];
            for (int v = 0; v < NV; v++) acc[r][v] += xv * w[v];
        }
    }
    for (int r = 0; r < R; r++)
        for (int v = 0; v < NV; v++) {
            if (tail != 0 && v == NV - 1)
                memcpy(conv + r * ldc + v * LANES, &acc[r][v], (size_t)tail * sizeof(REAL));
            else
                NAME(cycnn_store)(conv + r * ldc + v * LANES, acc[r][v]);
        }
}

/* R pixels: every whole vector of channels (NV = 4, then what is left), then the channels beyond them as one more
   vector, whose weights `tail_wt` (T x LANES) are zero past the last channel. */
static inline __attribute__((always_inline)) void NAME(direct_pixels)(
        const REAL *restrict padded, const ptrdiff_t *restrict bases, ptrdiff_t stride,
        const ptrdiff_t *restrict offsets, ptrdiff_t T, const REAL *restrict wt, ptrdiff_t ldw,
        const REAL *restrict tail_wt, ptrdiff_t F, REAL *restrict conv, ptrdiff_t ldc, const int R,
        const int across) {
#define BLOCK(w, c, nv, tail) NAME(direct_block)(padded, bases, stride, offsets, T, w, ldw, ldc, c, R, nv, tail, across)
    ptrdiff_t f0 = 0;
    for (; f0 + DIRECT_MAX_VECS * LANES <= F; f0 += DIRECT_MAX_VECS * LANES)
        BLOCK(wt + f0, conv + f0, DIRECT_MAX_VECS, 0);
    switch ((F - f0) / LANES) {
    case 1: BLOCK(wt + f0, conv + f0, 1, 0); break;
    case 2: BLOCK(wt + f0, conv + f0, 2, 0); break;
    case 3: BLOCK(wt + f0, conv + f0, 3, 0); break;
    default: break;
    }
#undef BLOCK
    const ptrdiff_t whole = F / LANES * LANES;
    if (whole < F)
        NAME(direct_block)(padded, bases, stride, offsets, T, tail_wt, LANES, ldc, conv + whole, R, 1, F - whole,
                           across);
}

/* The full convolution output conv (OH*OW rows of F channels, row stride ldc >= F) of one zero-padded image
   (C x HP x WP), weights wt (T rows of F, row stride ldw >= F, taps ordered (c, ki, kj)). A band of an image's
   rows is an image too: HP rows from any first row. */
static void NAME(cycnn_direct_conv)(const REAL *padded, ptrdiff_t C, ptrdiff_t HP, ptrdiff_t WP, ptrdiff_t KH,
                                    ptrdiff_t KW, ptrdiff_t stride, ptrdiff_t OH, ptrdiff_t OW, const REAL *wt,
                                    ptrdiff_t ldw, ptrdiff_t F, REAL *conv, ptrdiff_t ldc) {
    ptrdiff_t offsets[CYCNN_DIRECT_MAX_TAPS], T = 0;
    for (ptrdiff_t c = 0; c < C; c++)
        for (ptrdiff_t ki = 0; ki < KH; ki++)
            for (ptrdiff_t kj = 0; kj < KW; kj++) offsets[T++] = (c * HP + ki) * WP + kj;
    const ptrdiff_t whole = F / LANES * LANES;
    REAL tail_wt[CYCNN_DIRECT_MAX_TAPS * LANES];
    if (whole < F)
        for (ptrdiff_t t = 0; t < T; t++)
            for (ptrdiff_t f = 0; f < LANES; f++) tail_wt[t * LANES + f] = whole + f < F ? wt[t * ldw + whole + f] : 0;
#define PIXELS(n, across) NAME(direct_pixels)(padded, bases, stride, offsets, T, wt, ldw, tail_wt, F, out, ldc, n, across)
    ptrdiff_t bases[DIRECT_ROWS];
    if ((F + LANES - 1) / LANES <= 2) {
        /* With one or two vectors of channels, four pixels leave too few independent sums to keep the vector
           units busy: eight pixels of a row share each weight vector instead, and the row's last pixels are one
           block too (one at a time, each sum would wait out the FMA's latency). */
        for (ptrdiff_t oh = 0; oh < OH; oh++)
            for (ptrdiff_t ow = 0; ow < OW; ow += DIRECT_WIDE_ROWS) {
                bases[0] = oh * stride * WP + ow * stride;
                REAL *out = conv + (oh * OW + ow) * ldc;
                switch (OW - ow < DIRECT_WIDE_ROWS ? OW - ow : DIRECT_WIDE_ROWS) {
                case 1: PIXELS(1, 0); break; case 2: PIXELS(2, 0); break; case 3: PIXELS(3, 0); break;
                case 4: PIXELS(4, 0); break; case 5: PIXELS(5, 0); break; case 6: PIXELS(6, 0); break;
                case 7: PIXELS(7, 0); break; default: PIXELS(8, 0); break;
                }
            }
        return;
    }
    /* Blocks of four consecutive pixels in row order, across the ends of rows: a map only a few pixels wide (7
       after two stride-2 layers) still fills whole blocks. */
    const ptrdiff_t P = OH * OW;
    for (ptrdiff_t p = 0; p < P; p += DIRECT_ROWS) {
        const ptrdiff_t count = P - p < DIRECT_ROWS ? P - p : DIRECT_ROWS;
        for (ptrdiff_t r = 0; r < count; r++) bases[r] = (p + r) / OW * stride * WP + (p + r) % OW * stride;
        REAL *out = conv + p * ldc;
        switch (count) { case 1: PIXELS(1, 1); break; case 2: PIXELS(2, 1); break; case 3: PIXELS(3, 1); break;
                         default: PIXELS(4, 1); break; }
    }
#undef PIXELS
}

/* dwt[t][f0 ..] += x(pixel, tap t) * g[0 : NV*LANES] for all T taps: one pixel's gradient row (NV vectors, held in
   registers) times its input taps. NV is a constant at every call site. */
static inline __attribute__((always_inline)) void NAME(direct_grad_block)(
        const REAL *restrict pixel, const ptrdiff_t *restrict offsets, ptrdiff_t T, const REAL *restrict g,
        REAL *restrict dwt, ptrdiff_t F, const int NV) {
    VEC gv[DIRECT_MAX_VECS];
    for (int v = 0; v < NV; v++) gv[v] = NAME(cycnn_load)(g + v * LANES);
    for (ptrdiff_t t = 0; t < T; t++) {
        const REAL x = pixel[offsets[t]];
        REAL *row = dwt + t * F;
        for (int v = 0; v < NV; v++) NAME(cycnn_store)(row + v * LANES, NAME(cycnn_load)(row + v * LANES) + x * gv[v]);
    }
}

/* Weight (T x F) and bias (F) gradients of the fused direct convolution + ReLU + pool, added for one zero-padded
   image. The pooled gradients that passed the ReLU are first scattered onto their windows' winners (grad: one
   row of F channels per convolution output pixel, without branches on the data); then every pixel that won
   somewhere adds its input taps times its gradient row. grad (P x F) and touched (P) are scratch that start all
   zero and are left all zero: closed windows only ever add +0, and each touched row is cleared after its use.
   The channels beyond the whole vectors are summed as one more vector over the image, then added to dwt. */
static void NAME(cycnn_direct_grad)(const REAL *padded, ptrdiff_t C, ptrdiff_t HP, ptrdiff_t WP, ptrdiff_t KH,
                                    ptrdiff_t KW, ptrdiff_t stride, ptrdiff_t OW, ptrdiff_t P, const REAL *dy,
                                    const REAL *y, const int *argmax, ptrdiff_t F, ptrdiff_t plane, REAL *grad,
                                    char *touched, REAL *dwt, REAL *db) {
    ptrdiff_t offsets[CYCNN_DIRECT_MAX_TAPS], T = 0;
    for (ptrdiff_t c = 0; c < C; c++)
        for (ptrdiff_t ki = 0; ki < KH; ki++)
            for (ptrdiff_t kj = 0; kj < KW; kj++) offsets[T++] = (c * HP + ki) * WP + kj;
    for (ptrdiff_t f = 0; f < F; f++) {
        const REAL *yf = y + f * plane, *dyf = dy + f * plane;
        const int *af = argmax + f * plane;
        REAL sum = 0;
        for (ptrdiff_t q = 0; q < plane; q++) {
            const int open = yf[q] > 0;
            const REAL g = open ? dyf[q] : 0;
            sum += g;
            grad[(ptrdiff_t)af[q] * F + f] += g;
            touched[af[q]] |= (char)open;
        }
        db[f] += sum;
    }
    /* The channels beyond the whole vectors: summed over this image as one more vector (zero past the last). */
    const ptrdiff_t whole = F / LANES * LANES;
    REAL tail_dwt[CYCNN_DIRECT_MAX_TAPS * LANES] = {0};
    for (ptrdiff_t p = 0; p < P; p++) {
        if (!touched[p]) continue;
        const REAL *pixel = padded + (p / OW) * stride * WP + (p % OW) * stride;
        REAL *g = grad + p * F;
        ptrdiff_t f0 = 0;
        for (; f0 + DIRECT_MAX_VECS * LANES <= whole; f0 += DIRECT_MAX_VECS * LANES)
            NAME(direct_grad_block)(pixel, offsets, T, g + f0, dwt + f0, F, DIRECT_MAX_VECS);
        switch ((whole - f0) / LANES) {
        case 1: NAME(direct_grad_block)(pixel, offsets, T, g + f0, dwt + f0, F, 1); break;
        case 2: NAME(direct_grad_block)(pixel, offsets, T, g + f0, dwt + f0, F, 2); break;
        case 3: NAME(direct_grad_block)(pixel, offsets, T, g + f0, dwt + f0, F, 3); break;
        default: break;
        }
        if (whole < F) {
            VEC gt = (VEC){0};
            memcpy(&gt, g + whole, (size_t)(F - whole) * sizeof(REAL));
            NAME(direct_grad_block)(pixel, offsets, T, (const REAL *)&gt, tail_dwt, LANES, 1);
        }
        touched[p] = 0;
        memset(g, 0, F * sizeof(REAL));
    }
    for (ptrdiff_t t = 0; t < T; t++)
        for (ptrdiff_t f = whole; f < F; f++) dwt[t * F + f] += tail_dwt[t * LANES + f - whole];
}

/* dwt[r * ldd + v * LANES ..] += x(pixel, tap r) * g[pixel * ldg + v * LANES ..] over one image's OH x OW output
   pixels in order, for R taps (input offsets from a pixel's corner: `offsets`) and NV vectors of channels, both
   constants at every call site: the block of the weight gradient stays in registers while the pixels run, and
   each gradient vector loaded serves R taps. */
static inline __attribute__((always_inline)) void NAME(weight_grad_block)(
        const REAL *restrict padded, ptrdiff_t WP, ptrdiff_t stride, ptrdiff_t OH, ptrdiff_t OW,
        const ptrdiff_t *restrict offsets, const REAL *restrict g, ptrdiff_t ldg, REAL *restrict dwt,
        ptrdiff_t ldd, const int R, const int NV) {
    VEC acc[WEIGHT_GRAD_MAX_TAPS][DIRECT_MAX_VECS];
    for (int r = 0; r < R; r++)
        for (int v = 0; v < NV; v++) acc[r][v] = NAME(cycnn_load)(dwt + r * ldd + v * LANES);
    for (ptrdiff_t oh = 0; oh < OH; oh++) {
        const REAL *row = padded + oh * stride * WP;
        for (ptrdiff_t ow = 0; ow < OW; ow++, g += ldg) {
            const REAL *corner = row + ow * stride;
            VEC gv[DIRECT_MAX_VECS];
            for (int v = 0; v < NV; v++) gv[v] = NAME(cycnn_load)(g + v * LANES);
            for (int r = 0; r < R; r++) {
                const REAL x = corner[offsets[r]];
                for (int v = 0; v < NV; v++) acc[r][v] += x * gv[v];
            }
        }
    }
    for (int r = 0; r < R; r++)
        for (int v = 0; v < NV; v++) NAME(cycnn_store)(dwt + r * ldd + v * LANES, acc[r][v]);
}

/* The weight gradient of an unpooled convolution, one block of it for one image: taps [t0, t1) (at most
   WEIGHT_GRAD_MAX_TAPS; WEIGHT_GRAD_WIDE_TAPS with more than two vectors) by NV vectors of channels
   (at most DIRECT_MAX_VECS), added into dwt (taps ordered (c, ki, kj), row stride ldd) from the zero-padded image
   (C x HP x WP) and its output gradient channels-last (g: OH*OW rows, row stride ldg, starting at the block's
   first channel, as dwt does). Called image after image, each element is one sum over the pixels in order. */
static void NAME(cycnn_weight_grad_tile)(const REAL *padded, ptrdiff_t HP, ptrdiff_t WP, ptrdiff_t KH,
                                         ptrdiff_t KW, ptrdiff_t stride, ptrdiff_t OH, ptrdiff_t OW, const REAL *g,
                                         ptrdiff_t ldg, ptrdiff_t t0, ptrdiff_t t1, ptrdiff_t NV, REAL *dwt,
                                         ptrdiff_t ldd) {
    ptrdiff_t offsets[WEIGHT_GRAD_MAX_TAPS];
    for (ptrdiff_t t = t0; t < t1; t++) {
        const ptrdiff_t c = t / (KH * KW), ki = t % (KH * KW) / KW, kj = t % KW;
        offsets[t - t0] = (c * HP + ki) * WP + kj;
    }
    dwt += t0 * ldd;
#define GRAD_CASE(taps, vecs) \
    case taps: NAME(weight_grad_block)(padded, WP, stride, OH, OW, offsets, g, ldg, dwt, ldd, taps, vecs); break;
#define GRAD_TAPS_CASES(vecs) \
    switch (t1 - t0) { GRAD_CASE(1, vecs) GRAD_CASE(2, vecs) GRAD_CASE(3, vecs) GRAD_CASE(4, vecs) \
                       GRAD_CASE(5, vecs) GRAD_CASE(6, vecs) GRAD_CASE(7, vecs) GRAD_CASE(8, vecs) default: break; }
    switch (NV) {
    case 1: GRAD_TAPS_CASES(1) break;
    case 2: GRAD_TAPS_CASES(2) break;
    case 3: GRAD_TAPS_CASES(3) break;
    case 4: GRAD_TAPS_CASES(4) break;
    default: break; /* callers pass at most DIRECT_MAX_VECS vectors */
    }
#undef GRAD_TAPS_CASES
#undef GRAD_CASE
}
