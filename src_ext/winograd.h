/* A 3x3 convolution (stride 1) fused with bias, ReLU and 2x2 max-pooling (stride 2), by Winograd's minimal
   filtering algorithm F(2x2, 3x3) (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", 2015).

   Why: the pooling window is 2x2, and F(2x2, 3x3) produces exactly one 2x2 block of convolution outputs per 4x4
   input tile. So each pooled output is one tile: transform the tile (B^T d B, additions only), multiply
   element-wise by the transformed kernel (U = G g G^T, 16 numbers per input/output channel pair, computed once per
   pass in Python), sum over input channels, transform back (A^T m A) and take the max of the four results. The
   sum over input channels is, for each of the 16 tile points xi, a small matrix product
   M[xi] (tiles x F) = V[xi] (tiles x C) @ U[xi] (C x F): 16 * C * F multiplications per tile instead of the
   36 * C * F of the four convolution outputs directly, 2.25x fewer. Convolution outputs that no pooling window
   covers (the last row and column of an odd-sized map) are never computed.

   The same real numbers come out as with a direct convolution; in float32 they differ by rounding (about 1e-6
   relative, growing slowly with the number of input channels; the tests bound it). One row of tiles at a time:
   its input tiles V and products M stay in L1/L2 cache. The products run in dense.h's register-blocked kernel. */
#ifndef CYCNN_WINOGRAD_H
#define CYCNN_WINOGRAD_H
#include "dense.h"

/* F, the output channels, must be a whole number of vectors (LANES: 16 floats or 8 doubles). */
#define CYCNN_IMPL "winograd_impl.h"
#include "instantiate.h"
#endif
