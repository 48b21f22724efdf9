"""How many OpenMP threads the kernels use, and whether the build has OpenMP at all."""

from kernels cimport CYCNN_OPENMP, omp_get_max_threads, omp_set_num_threads


def openmp_enabled():
    """True when the kernels were compiled with OpenMP (otherwise every loop runs serially)."""
    return CYCNN_OPENMP == 1


def set_num_threads(int n):
    """Set the number of threads the kernels' parallel loops use."""
    if n < 1:
        raise ValueError(f"thread count must be at least 1, got {n}")
    omp_set_num_threads(n)


def get_num_threads():
    """The number of threads the kernels' parallel loops use."""
    return omp_get_max_threads()
