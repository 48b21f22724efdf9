/* Bias + ReLU + max-pooling straight out of a convolution's rows (P x F: one row of F channels per output pixel
   p = oh * OW + ow, as an im2col GEMM or the direct kernel writes them), vectorized over the channels: each
   window's max and argmax are kept for a whole vector of channels with compare-and-select, no branches. Ties go
   to the first maximum (row by row through the window). */
#ifndef CYCNN_POOL_ROWS_H
#define CYCNN_POOL_ROWS_H
#include "simd.h"

#define REAL float
#define VEC cycnn_vec_float
#define IVEC cycnn_ivec_float
#define ITYPE int
#define LANES 16
#define NAME(x) x##_float
#include "pool_rows_impl.h"
#undef REAL
#undef VEC
#undef IVEC
#undef ITYPE
#undef LANES
#undef NAME

#define REAL double
#define VEC cycnn_vec_double
#define IVEC cycnn_ivec_double
#define ITYPE long long
#define LANES 8
#define NAME(x) x##_double
#include "pool_rows_impl.h"
#undef REAL
#undef VEC
#undef IVEC
#undef ITYPE
#undef LANES
#undef NAME
#endif
