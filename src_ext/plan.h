/* The inference plan: a whole network's forward pass for one image in one call, every buffer allocated once.

   cycnn/nn/plan.py compiles a Sequential into a list of operations (this struct, one per step: a convolution with
   its bias, ReLU and max-pool fused, a pooling, a ReLU, a dense layer); src_ext/plan.pyx holds them and runs them
   here without returning to Python. Activations are NCHW (a dense layer reads the flattened map as it is), except
   where a pooled convolution feeds a Winograd one: that map goes channels-last, so that the pooling stores whole
   vectors of channels and Winograd transforms its input tiles a vector of channels at a time. Each
   image's activations live in a "slot" arena and each thread's scratch (im2col columns, GEMM rows, Winograd tiles)
   in its own arena; offsets into both are fixed when the plan is compiled.

   Threads share the work of one image (split mode: each operation is cut into fixed parts, one per thread, and the
   threads meet at a barrier between operations) or take blocks of whole images each (image mode, for batches:
   the convolutions run image by image, the dense layers on the whole block, so that each weight loaded serves
   every image of the block). Each output
   number is computed by the same sequence of operations whichever thread computes it and however many there are:
   the results do not depend on the thread count.

   - Convolution by the direct kernel (PLAN_CONV_DIRECT, direct.h: the stride-1 layers where training uses it, and
     strided ones with few taps; with a stride and many taps, im2col's gathered copies measured faster per image)
     or by im2col + GEMM (PLAN_CONV_GEMM): the
     thread's share is a range of output rows (of pooled rows, when a max-pool follows: overlapping windows
     compute their shared convolution rows twice). The direct kernel reads the band of
     input rows under them, copied with its zero padding into the thread's scratch; im2col copies the rows'
     patches into its columns (T x P, one row per tap) and multiplies them by the transposed weights in the dense
     kernel's register tiles (dense.h). Either writes GEMM-like rows (P x Fp: the weights are T x Fp, zero columns
     up to a whole vector), to which the bias, the ReLU and the pooling are applied on the way to NCHW.
   - Winograd F(2x2, 3x3) + ReLU + 2x2 pool (PLAN_CONV_WINOGRAD): winograd.h's tile rows, the thread's share a range
     of whole vectors of output channels (of tile rows when there are fewer vectors than threads).
   - PLAN_POOL (a max-pool not fused into a convolution), PLAN_RELU, PLAN_DENSE (one image: the thread's share, whole
     vectors of output columns; a block of images: panel by panel of a copy of the weights laid out panel after
     panel). */
#ifndef CYCNN_PLAN_H
#define CYCNN_PLAN_H
#include <math.h>
#include "dense.h"
#include "direct.h"
#include "winograd.h"
#include "omp_shim.h"

/* About this many bytes of a convolution's GEMM rows at a time (plan_conv): they stay in L1 until pooled. */
#define PLAN_CHUNK_BYTES 16384

enum { PLAN_CONV_GEMM = 1, PLAN_CONV_WINOGRAD = 2, PLAN_POOL = 3, PLAN_RELU = 4, PLAN_DENSE = 5,
       PLAN_CONV_DIRECT = 6 };

typedef struct {
    int kind;
    int relu;          /* a ReLU after the bias */
    int pool;          /* a max-pool after the convolution (PLAN_CONV_*) */
    int hwc_out;       /* a pooled convolution writes its output channels-last (PH x PW x F, F whole vectors) */
    int hwc_in;        /* Winograd reads its input channels-last (H x W x C, C whole vectors) */
    ptrdiff_t C, H, W;  /* input per image: channels and map (dense: C = in_features, H = W = 1) */
    ptrdiff_t F, KH, KW, stride, pad, OH, OW;  /* conv: output channels, kernel, its output map; dense: F = out */
    ptrdiff_t ph, pw, sh, sw, PH, PW;          /* pooling window, stride, pooled map */
    ptrdiff_t Fp;      /* PLAN_CONV_GEMM and _DIRECT: F rounded up to whole vectors, the rows' width */
    ptrdiff_t in, out; /* offsets in the slot arena; in < 0: the input image */
    ptrdiff_t cols, rows, padded, tiles, products;  /* offsets in the thread's scratch arena */
    const void *weight;  /* GEMM and direct: W^T (T x Fp); Winograd: U (16, C, F); dense: W (C x Fp) */
    const void *panels;  /* dense: the same W panel after panel, for blocks of images (plan_impl.h) */
    const void *bias;    /* F numbers */
} cycnn_plan_op;

#define CYCNN_IMPL "plan_impl.h"
#include "instantiate.h"
#endif
