/* OpenMP when the build has it, a serial stand-in when it does not (as in scikit-learn). */
#ifndef CYCNN_OMP_SHIM_H
#define CYCNN_OMP_SHIM_H
#ifdef _OPENMP
#include <omp.h>
#define CYCNN_OPENMP 1
#else
#define CYCNN_OPENMP 0
static int omp_get_max_threads(void) { return 1; }
static void omp_set_num_threads(int n) { (void)n; }
static int omp_get_thread_num(void) { return 0; }
static int omp_get_num_threads(void) { return 1; }
#endif

/* Below this many elements of work (or with a single image to share out), a kernel runs on one thread: waking
   sleeping OpenMP threads costs more. */
#define CYCNN_PARALLEL_MIN_WORK 32768
#endif
