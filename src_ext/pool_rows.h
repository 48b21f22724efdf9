/* Bias + ReLU + max-pooling straight out of a convolution's rows (P x F: one row of F channels per output pixel
   p = oh * OW + ow, as an im2col GEMM or the direct kernel writes them), vectorized over the channels: each
   window's max and argmax are kept for a whole vector of channels with compare-and-select, no branches. Ties go
   to the first maximum (row by row through the window). */
#ifndef CYCNN_POOL_ROWS_H
#define CYCNN_POOL_ROWS_H
#include "simd.h"

#define CYCNN_IMPL "pool_rows_impl.h"
#include "instantiate.h"
#endif
