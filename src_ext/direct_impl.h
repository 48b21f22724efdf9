/* One precision of the direct convolution in direct.h: compiled for float and for double by instantiate.h. */

/* conv[(p + r) * F + f0 ..] for R pixels starting at input offset `base` (pixel r at base + r * stride) and NV
   vectors of channels from f0: acc[r][v] += x(pixel r, tap t) * wt[t][f0 + v * LANES ..] over the T taps, whose
   input offsets from a pixel's corner are `offsets`. R and NV are constants at every call site. */
static inline __attribute__((always_inline)) void NAME(direct_block)(
        const REAL *restrict padded, ptrdiff_t base, ptrdiff_t stride, const ptrdiff_t *restrict offsets,
        ptrdiff_t T, const REAL *restrict wt, ptrdiff_t F, ptrdiff_t f0, REAL *restrict conv, const int R,
        const int NV) {
    VEC acc[DIRECT_ROWS][DIRECT_MAX_VECS];
    for (int r = 0; r < R; r++)
        for (int v = 0; v < NV; v++) acc[r][v] = (VEC){0};
    for (ptrdiff_t t = 0; t < T; t++) {
        VEC w[DIRECT_MAX_VECS];
        for (int v = 0; v < NV; v++) w[v] = NAME(cycnn_load)(wt + t * F + f0 + v * LANES);
        const REAL *x = padded + base + offsets[t];
        for (int r = 0; r < R; r++) {
            const REAL xv = x[r * stride];
            for (int v = 0; v < NV; v++) acc[r][v] += xv * w[v];
        }
    }
    for (int r = 0; r < R; r++)
        for (int v = 0; v < NV; v++) NAME(cycnn_store)(conv + r * F + f0 + v * LANES, acc[r][v]);
}

/* R pixels, every whole vector of channels (NV = 4, then what is left), then the channels beyond them. */
static inline __attribute__((always_inline)) void NAME(direct_pixels)(
        const REAL *restrict padded, ptrdiff_t base, ptrdiff_t stride, const ptrdiff_t *restrict offsets,
        ptrdiff_t T, const REAL *restrict wt, ptrdiff_t F, REAL *restrict conv, const int R) {
    ptrdiff_t f0 = 0;
    for (; f0 + DIRECT_MAX_VECS * LANES <= F; f0 += DIRECT_MAX_VECS * LANES)
        NAME(direct_block)(padded, base, stride, offsets, T, wt, F, f0, conv, R, DIRECT_MAX_VECS);
    switch ((F - f0) / LANES) {
    case 1: NAME(direct_block)(padded, base, stride, offsets, T, wt, F, f0, conv, R, 1); break;
    case 2: NAME(direct_block)(padded, base, stride, offsets, T, wt, F, f0, conv, R, 2); break;
    case 3: NAME(direct_block)(padded, base, stride, offsets, T, wt, F, f0, conv, R, 3); break;
    default: break;
    }
    for (ptrdiff_t f = f0 + (F - f0) / LANES * LANES; f < F; f++)
        for (int r = 0; r < R; r++) {
            REAL sum = 0;
            for (ptrdiff_t t = 0; t < T; t++) sum += padded[base + r * stride + offsets[t]] * wt[t * F + f];
            conv[r * F + f] = sum;
        }
}

/* The full convolution output conv (OH*OW x F, channels contiguous) of one zero-padded image (C x HP x WP),
   weights wt (T x F, taps ordered (c, ki, kj)). */
static void NAME(cycnn_direct_conv)(const REAL *padded, ptrdiff_t C, ptrdiff_t HP, ptrdiff_t WP, ptrdiff_t KH,
                                    ptrdiff_t KW, ptrdiff_t stride, ptrdiff_t OH, ptrdiff_t OW, const REAL *wt,
                                    ptrdiff_t F, REAL *conv) {
    ptrdiff_t offsets[CYCNN_DIRECT_MAX_TAPS], T = 0;
    for (ptrdiff_t c = 0; c < C; c++)
        for (ptrdiff_t ki = 0; ki < KH; ki++)
            for (ptrdiff_t kj = 0; kj < KW; kj++) offsets[T++] = (c * HP + ki) * WP + kj;
    for (ptrdiff_t oh = 0; oh < OH; oh++) {
        ptrdiff_t ow = 0;
        for (; ow + DIRECT_ROWS <= OW; ow += DIRECT_ROWS)
            NAME(direct_pixels)(padded, oh * stride * WP + ow * stride, stride, offsets, T, wt, F,
                                conv + (oh * OW + ow) * F, DIRECT_ROWS);
        for (; ow < OW; ow++)
            NAME(direct_pixels)(padded, oh * stride * WP + ow * stride, stride, offsets, T, wt, F,
                                conv + (oh * OW + ow) * F, 1);
    }
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
   zero and are left all zero: closed windows only ever add +0, and each touched row is cleared after its use. */
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
    const ptrdiff_t whole = F / LANES * LANES;
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
        for (ptrdiff_t t = 0; t < T; t++)
            for (ptrdiff_t f = whole; f < F; f++) dwt[t * F + f] += pixel[offsets[t]] * g[f];
        touched[p] = 0;
        memset(g, 0, F * sizeof(REAL));
    }
}
