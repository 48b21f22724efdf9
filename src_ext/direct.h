/* Direct convolution of one image for layers with few input taps (in_channels * kh * kw, at most
   CYCNN_DIRECT_MAX_TAPS; the first layer on grayscale images has 9): an im2col GEMM with an inner dimension of 9
   is tiny and memory-bound, so each output pixel is computed here straight from the input, all output channels
   at once in vector registers (the channels beyond the whole vectors in one more, zero-padded: a 6-channel layer
   runs as fast as a 16-channel one). Four pixels of a row share every weight vector loaded. */
#ifndef CYCNN_DIRECT_H
#define CYCNN_DIRECT_H
#include "simd.h"

#define CYCNN_DIRECT_MAX_TAPS 1024
#define DIRECT_ROWS 4 /* output pixels per block */
#define DIRECT_WIDE_ROWS 8 /* output pixels per block when there are at most two vectors of channels */
#define DIRECT_MAX_VECS 4 /* vectors of output channels per block */
#define WEIGHT_GRAD_MAX_TAPS 8 /* taps per block of cycnn_weight_grad_tile, with one or two vectors */
#define WEIGHT_GRAD_WIDE_TAPS 6 /* with three or four: 24 accumulators, or they spill */

#define CYCNN_IMPL "direct_impl.h"
#include "instantiate.h"
#endif
