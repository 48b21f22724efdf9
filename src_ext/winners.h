/* The backward pass of a fused conv + ReLU + max-pool from the pooling winners only (see fused.pyx): only the
   winner of each window, where the ReLU was open, has a gradient, so the weight gradient is a sum of input
   patches and the input gradient a sum of kernels, one per winner, instead of dense products over every output
   pixel (a fifth of the multiplications for the reference network's second layer).

   Adding one patch at a time to a gradient in memory costs two loads and a store per multiply-add. Here the
   sums run in vector registers instead: the weight gradient of one output channel takes all its winners in one
   image, a block of up to six vectors of one kernel row at a time; the input gradient of one pooling window
   sums, for each winning position in the window, the kernels of every channel that won there, then adds that
   patch to the image's gradient once. Patches and kernels are channels-last (kh, kw, c), so a kernel row is one
   contiguous run of KW * C numbers. */
#ifndef CYCNN_WINNERS_H
#define CYCNN_WINNERS_H
#include "simd.h"

#define WINNERS_BLOCK 6 /* vectors summed in registers at a time */

/* Where a pooling winner lies: the winning position p = row * OW + col of the convolution output, in a window
   of height ph whose top row is top. Counted without division or branches (which winners' rows would make
   unpredictable). */
static inline void cycnn_winner_position(ptrdiff_t p, ptrdiff_t top, ptrdiff_t ph, ptrdiff_t OW, ptrdiff_t *row,
                                         ptrdiff_t *col) {
    const ptrdiff_t rest = p - top * OW;
    ptrdiff_t down = 0;
    for (ptrdiff_t k = 1; k < ph; k++) down += rest >= k * OW;
    *row = top + down;
    *col = rest - down * OW;
}

#define CYCNN_IMPL "winners_impl.h"
#include "instantiate.h"
#endif
