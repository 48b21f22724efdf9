/* 64-byte vectors (one AVX-512 register; the compiler splits them into two AVX2 or four SSE registers on other
   CPUs) through GCC/Clang vector extensions, and unaligned loads and stores of them. The kernels written in C
   (dense.h, winograd.h, direct.h, pool_rows.h, winners.h, adam.h) are compiled once per precision: each names its
   *_impl.h in CYCNN_IMPL and includes instantiate.h, which defines REAL, VEC, LANES, NAME(x)... for float, then
   for double. Their register blocks are tuned for AVX-512's 32 registers. */
#ifndef CYCNN_SIMD_H
#define CYCNN_SIMD_H
#include <stddef.h>
#include <string.h>

/* The one vector width: every other one (LANES in the kernels, the channel and column multiples that Python reads
   through the kernel modules) is derived from it. */
#define CYCNN_VECTOR_BYTES 64
/* Elements of `type` per vector, as an int: a size_t would turn the kernels' signed index arithmetic unsigned. */
#define CYCNN_LANES(type) ((int)(CYCNN_VECTOR_BYTES / sizeof(type)))

typedef float cycnn_vec_float __attribute__((vector_size(CYCNN_VECTOR_BYTES)));
typedef double cycnn_vec_double __attribute__((vector_size(CYCNN_VECTOR_BYTES)));
/* Integer vectors with the same lanes: what comparing two vectors gives (all ones where true), for selecting. */
typedef int cycnn_ivec_float __attribute__((vector_size(CYCNN_VECTOR_BYTES)));
typedef long long cycnn_ivec_double __attribute__((vector_size(CYCNN_VECTOR_BYTES)));

static inline cycnn_vec_float cycnn_load_float(const float *p) {
    cycnn_vec_float v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline cycnn_vec_double cycnn_load_double(const double *p) {
    cycnn_vec_double v;
    memcpy(&v, p, sizeof v);
    return v;
}
/* mask ? a : b, lane by lane (the ?: operator takes vectors in C++ only). */
static inline cycnn_vec_float cycnn_select_float(cycnn_ivec_float mask, cycnn_vec_float a, cycnn_vec_float b) {
    return (cycnn_vec_float)(((cycnn_ivec_float)a & mask) | ((cycnn_ivec_float)b & ~mask));
}
static inline cycnn_vec_double cycnn_select_double(cycnn_ivec_double mask, cycnn_vec_double a, cycnn_vec_double b) {
    return (cycnn_vec_double)(((cycnn_ivec_double)a & mask) | ((cycnn_ivec_double)b & ~mask));
}
static inline void cycnn_store_float(float *p, cycnn_vec_float v) { memcpy(p, &v, sizeof v); }
static inline void cycnn_store_double(double *p, cycnn_vec_double v) { memcpy(p, &v, sizeof v); }
#endif
