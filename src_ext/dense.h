/* Matrix products for dense layers, C = A @ B, computed in vector registers and shared among OpenMP threads in
   tiles of 6 rows by one panel of 4 vectors. Why not BLAS: a dense layer's products are small (a batch of 64
   rows, or an inner dimension of 64), and sharing them among cores from Python costs a thread hand-off of about
   60 microseconds each time, more than the second core gains; OpenMP threads that are still spinning after the
   previous kernel (cycnn/__init__.py) start at once. On one thread this kernel was also faster than OpenBLAS on
   these shapes. Each element of C is one sum over k in order, whichever thread computes it, so the result does
   not depend on the thread count. The Winograd kernel (winograd.h) uses the same tiles for its products.

   B is row-major with N a multiple of the vector width; A's element (r, k) is at A[r * ra + k * ka], so a
   transposed A (a weight gradient's x.T) needs no copy. Six rows by four vectors of C stay in registers while k
   runs, each B vector loaded is used six times: 24 of the 32 AVX-512 registers (the block sizes here and in the
   other kernels are tuned for AVX-512; elsewhere the compiler splits each 64-byte vector and may spill). */
#ifndef CYCNN_DENSE_H
#define CYCNN_DENSE_H
#include "simd.h"

#define DENSE_ROWS 6 /* rows of C per tile */
#define DENSE_VECS 4 /* vectors of columns per tile: one panel */
#define DENSE_ROW_VECS 8 /* vectors of columns at a time in a one-row product (cycnn_dense_row) */

#define CYCNN_IMPL "dense_impl.h"
#include "instantiate.h"
#endif
