/* One precision of pool_rows.h: compiled for float and for double by instantiate.h. */

/* y / argmax (F x PH x PW, one image) from rows (OH*OW x F): y = relu(max over the window + bias). The results
   are first stored channels-last, whole vectors at a time, into `pooled` / `where` (PH*PW x F scratch), then
   transposed: a third faster than storing each lane of each vector straight to its channel plane. */
static void NAME(cycnn_pool_rows)(const REAL *restrict rows, const REAL *restrict bias, ptrdiff_t F, ptrdiff_t OW,
                                  ptrdiff_t PH, ptrdiff_t PW, int ph, int pw, int sh, int sw,
                                  REAL *restrict pooled, int *restrict where_at, REAL *restrict y,
                                  int *restrict argmax) {
    const ptrdiff_t plane = PH * PW, whole = F / LANES * LANES;
    for (ptrdiff_t i = 0; i < PH; i++) {
        for (ptrdiff_t j = 0; j < PW; j++) {
            const ptrdiff_t corner = i * sh * OW + j * sw, out = i * PW + j;
            for (ptrdiff_t f = 0; f < whole; f += LANES) {
                VEC best = NAME(cycnn_load)(rows + corner * F + f);
                IVEC where = (IVEC){0} + (ITYPE)corner;
                for (int a = 0; a < ph; a++)
                    for (int b = 0; b < pw; b++) {
                        const ptrdiff_t p = corner + a * OW + b;
                        const VEC v = NAME(cycnn_load)(rows + p * F + f);
                        const IVEC wins = v > best;
                        best = NAME(cycnn_select)(wins, v, best);
                        where = (wins & ((IVEC){0} + (ITYPE)p)) | (~wins & where);
                    }
                VEC value = best + NAME(cycnn_load)(bias + f);
                value = NAME(cycnn_select)(value > (VEC){0}, value, (VEC){0});
                NAME(cycnn_store)(pooled + out * F + f, value);
                for (int q = 0; q < LANES; q++) where_at[out * F + f + q] = (int)where[q];
            }
            for (ptrdiff_t f = whole; f < F; f++) {
                REAL best = rows[corner * F + f];
                ptrdiff_t where = corner;
                for (int a = 0; a < ph; a++)
                    for (int b = 0; b < pw; b++) {
                        const ptrdiff_t p = corner + a * OW + b;
                        if (rows[p * F + f] > best) { best = rows[p * F + f]; where = p; }
                    }
                const REAL value = best + bias[f];
                pooled[out * F + f] = value > 0 ? value : 0;
                where_at[out * F + f] = (int)where;
            }
        }
    }
    for (ptrdiff_t f = 0; f < F; f++)
        for (ptrdiff_t q = 0; q < plane; q++) {
            y[f * plane + q] = pooled[q * F + f];
            argmax[f * plane + q] = where_at[q * F + f];
        }
}
