/* Compiles the kernel file named by CYCNN_IMPL twice, once per precision (no include guard: it is meant to be
   included once by each kernel header, after `#define CYCNN_IMPL "name_impl.h"`). Inside the file:
   REAL is float or double, VEC the 64-byte vector of REALs (simd.h), IVEC the integer vector that comparing two
   VECs gives and ITYPE its lane type, LANES the REALs per vector, and NAME(x) appends _float or _double to x. */
#define REAL float
#define VEC cycnn_vec_float
#define IVEC cycnn_ivec_float
#define ITYPE int
#define LANES 16
#define NAME(x) x##_float
#include CYCNN_IMPL
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
#include CYCNN_IMPL
#undef REAL
#undef VEC
#undef IVEC
#undef ITYPE
#undef LANES
#undef NAME
#undef CYCNN_IMPL
