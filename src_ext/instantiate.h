/* Compiles the kernel file named by CYCNN_IMPL twice, once per precision (no include guard: it is meant to be
   included once by each kernel header, after `#define CYCNN_IMPL "name_impl.h"`). Inside the file:
   REAL is float or double, VEC the 64-byte vector of REALs (simd.h), IVEC the integer vector that comparing two
   VECs gives and ITYPE its lane type, LANES the REALs per vector, SQRT the square root in REAL's precision
   (math.h), and NAME(x) appends _float or _double to x. */

/* Every kernel module includes every kernel header (kernels.pxd declares them all) but calls only its own
   kernels: the others are not warned about. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"

#define REAL float
#define VEC cycnn_vec_float
#define IVEC cycnn_ivec_float
#define ITYPE int
#define LANES CYCNN_LANES(float)
#define SQRT sqrtf
#define NAME(x) x##_float
#include CYCNN_IMPL
#undef REAL
#undef VEC
#undef IVEC
#undef ITYPE
#undef LANES
#undef SQRT
#undef NAME

#define REAL double
#define VEC cycnn_vec_double
#define IVEC cycnn_ivec_double
#define ITYPE long long
#define LANES CYCNN_LANES(double)
#define SQRT sqrt
#define NAME(x) x##_double
#include CYCNN_IMPL
#undef REAL
#undef VEC
#undef IVEC
#undef ITYPE
#undef LANES
#undef SQRT
#undef NAME
#undef CYCNN_IMPL

#pragma GCC diagnostic pop
