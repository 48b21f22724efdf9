/* One precision of winners.h: compiled for float and for double by instantiate.h. */

/* dst[0 : NV*LANES] += sum_k scale[k] * src[k][0 : NV*LANES], the sum in registers (src[k] = base + offset[k]).
   NV is a constant at every call site. */
static inline __attribute__((always_inline)) void NAME(sum_block)(REAL *restrict dst, const REAL *restrict base,
                                                                  const ptrdiff_t *restrict offset,
                                                                  const REAL *restrict scale, ptrdiff_t count,
                                                                  const int NV) {
    VEC acc[WINNERS_BLOCK];
    for (int v = 0; v < NV; v++) acc[v] = NAME(cycnn_load)(dst + v * LANES);
    for (ptrdiff_t k = 0; k < count; k++) {
        const REAL *src = base + offset[k];
        const REAL s = scale[k];
        for (int v = 0; v < NV; v++) acc[v] += s * NAME(cycnn_load)(src + v * LANES);
    }
    for (int v = 0; v < NV; v++) NAME(cycnn_store)(dst + v * LANES, acc[v]);
}

/* dst[0:n] += sum_k scale[k] * (base + offset[k])[0:n]: whole blocks of vectors in registers, then the rest. */
static void NAME(sum_run)(REAL *restrict dst, const REAL *restrict base, const ptrdiff_t *restrict offset,
                          const REAL *restrict scale, ptrdiff_t count, ptrdiff_t n) {
    ptrdiff_t q = 0;
    for (; q + WINNERS_BLOCK * LANES <= n; q += WINNERS_BLOCK * LANES)
        NAME(sum_block)(dst + q, base + q, offset, scale, count, WINNERS_BLOCK);
    switch ((n - q) / LANES) {
    case 1: NAME(sum_block)(dst + q, base + q, offset, scale, count, 1); break;
    case 2: NAME(sum_block)(dst + q, base + q, offset, scale, count, 2); break;
    case 3: NAME(sum_block)(dst + q, base + q, offset, scale, count, 3); break;
    case 4: NAME(sum_block)(dst + q, base + q, offset, scale, count, 4); break;
    case 5: NAME(sum_block)(dst + q, base + q, offset, scale, count, 5); break;
    default: break;
    }
    for (q += (n - q) / LANES * LANES; q < n; q++)
        for (ptrdiff_t k = 0; k < count; k++) dst[q] += scale[k] * base[offset[k] + q];
}

/* Weight gradient dw (F x KH x KW x C) and bias gradient db of output channels f0 <= f < f1, summed over images
   0 .. N-1 in order (so the result does not depend on how channels are shared among threads). x is the input
   channels-last (N x H x W x C); dy, y, argmax are the pooled gradient, output and winners (N x F x PH x PW).
   Winners whose patch lies inside the image are summed in registers, kernel row by kernel row; patches cut by
   the zero padding add their inside part directly. offset and scale are scratch of PH*PW entries. */
static void NAME(cycnn_winners_weight_grad)(const REAL *x, ptrdiff_t N, ptrdiff_t H, ptrdiff_t W, ptrdiff_t C,
                                            const REAL *dy, const REAL *y, const int *argmax, ptrdiff_t F,
                                            ptrdiff_t PH, ptrdiff_t PW, ptrdiff_t KH, ptrdiff_t KW,
                                            ptrdiff_t stride, ptrdiff_t pad, ptrdiff_t OW, ptrdiff_t ph,
                                            ptrdiff_t sh, ptrdiff_t f0, ptrdiff_t f1, ptrdiff_t *offset,
                                            REAL *scale, REAL *dw, REAL *db) {
    const ptrdiff_t plane = PH * PW, run = KW * C, T = KH * run;
    for (ptrdiff_t f = f0; f < f1; f++) {
        memset(dw + f * T, 0, T * sizeof(REAL));
        db[f] = 0;
    }
    for (ptrdiff_t n = 0; n < N; n++) {
        const REAL *image = x + n * H * W * C;
        for (ptrdiff_t f = f0; f < f1; f++) {
            const ptrdiff_t at = (n * F + f) * plane;
            REAL *grad = dw + f * T;
            ptrdiff_t count = 0;
            for (ptrdiff_t i = 0; i < PH; i++)
                for (ptrdiff_t j = 0; j < PW; j++) {
                    const ptrdiff_t q = at + i * PW + j;
                    if (y[q] <= 0) continue;
                    ptrdiff_t row, col;
                    cycnn_winner_position(argmax[q], i * sh, ph, OW, &row, &col);
                    const ptrdiff_t top = row * stride - pad, left = col * stride - pad;
                    db[f] += dy[q];
                    if (top >= 0 && top + KH <= H && left >= 0 && left + KW <= W) {
                        offset[count] = (top * W + left) * C;
                        scale[count++] = dy[q];
                        continue;
                    }
                    for (ptrdiff_t ki = 0; ki < KH; ki++) /* cut by the padding: the inside part */
                        for (ptrdiff_t kj = 0; kj < KW; kj++) {
                            const ptrdiff_t h = top + ki, w = left + kj;
                            if (h < 0 || h >= H || w < 0 || w >= W) continue;
                            for (ptrdiff_t c = 0; c < C; c++)
                                grad[ki * run + kj * C + c] += dy[q] * image[(h * W + w) * C + c];
                        }
                }
            for (ptrdiff_t ki = 0; ki < KH; ki++)
                NAME(sum_run)(grad + ki * run, image + ki * W * C, offset, scale, count, run);
        }
    }
}

/* Input gradient of one image, channels-last (H x W x C), from its pooled gradient, output and winners
   (F x PH x PW each) and the kernel (F x KH x KW x C). For each window, the channels are grouped by the position
   that won (one of ph*pw); each group's kernels, times their gradients, are summed in registers into `patch`
   (KH*KW*C scratch) and added to the image once. `members` / `scale` are scratch of ph*pw*F entries. */
static void NAME(cycnn_winners_input_grad)(const REAL *kernel, const REAL *dy, const REAL *y, const int *argmax,
                                           ptrdiff_t F, ptrdiff_t PH, ptrdiff_t PW, ptrdiff_t ph, ptrdiff_t pw,
                                           ptrdiff_t sh, ptrdiff_t sw, ptrdiff_t KH, ptrdiff_t KW, ptrdiff_t C,
                                           ptrdiff_t stride, ptrdiff_t pad, ptrdiff_t OW, ptrdiff_t H, ptrdiff_t W,
                                           ptrdiff_t *members, REAL *scale, ptrdiff_t *counts, REAL *patch,
                                           REAL *dx) {
    const ptrdiff_t plane = PH * PW, run = KW * C, T = KH * run, spots = ph * pw;
    memset(dx, 0, H * W * C * sizeof(REAL));
    for (ptrdiff_t i = 0; i < PH; i++) {
        for (ptrdiff_t j = 0; j < PW; j++) {
            for (ptrdiff_t s = 0; s < spots; s++) counts[s] = 0;
            for (ptrdiff_t f = 0; f < F; f++) {
                const ptrdiff_t q = f * plane + i * PW + j;
                if (y[q] <= 0) continue;
                ptrdiff_t row, col;
                cycnn_winner_position(argmax[q], i * sh, ph, OW, &row, &col);
                const ptrdiff_t s = (row - i * sh) * pw + (col - j * sw);
                members[s * F + counts[s]] = f * T;
                scale[s * F + counts[s]++] = dy[q];
            }
            for (ptrdiff_t s = 0; s < spots; s++) {
                if (counts[s] == 0) continue;
                memset(patch, 0, T * sizeof(REAL));
                for (ptrdiff_t ki = 0; ki < KH; ki++)
                    NAME(sum_run)(patch + ki * run, kernel + ki * run, members + s * F, scale + s * F, counts[s],
                                  run);
                const ptrdiff_t top = (i * sh + s / pw) * stride - pad, left = (j * sw + s % pw) * stride - pad;
                for (ptrdiff_t ki = 0; ki < KH; ki++) {
                    const ptrdiff_t h = top + ki;
                    if (h < 0 || h >= H) continue;
                    for (ptrdiff_t kj = 0; kj < KW; kj++) {
                        const ptrdiff_t w = left + kj;
                        if (w < 0 || w >= W) continue;
                        REAL *out = dx + (h * W + w) * C;
                        const REAL *in = patch + ki * run + kj * C;
                        for (ptrdiff_t c = 0; c < C; c++) out[c] += in[c];
                    }
                }
            }
        }
    }
}
