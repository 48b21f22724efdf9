"""Process-wide settings for fast training: thread counts for OpenMP and BLAS, and glibc's allocator."""
import ctypes
import ctypes.util
import os

from threadpoolctl import threadpool_limits

from cycnn.nn import _parallel, gemm
from cycnn.errors import ConfigError

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3


def max_threads():
    """The most threads cycnn accepts: four per core this process may run on (more only slows it down, and a
    thread count in the tens of thousands makes the OpenMP runtime crash or hang)."""
    return 4 * default_threads()


def set_threads(n):
    """Use ``n`` threads (1 to ``max_threads()``) for the Cython kernels (OpenMP) and for the matrix products
    (``cycnn.nn.gemm``).

    BLAS itself is limited to one thread: cycnn shares each product's rows among its own threads instead, so
    the kernels and the products never oversubscribe the cores. Returns the threadpoolctl limiter, whose
    ``restore_original_limits()`` gives BLAS back its former thread count.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"thread count must be a positive integer, received {n!r}")
    if n > max_threads():
        raise ConfigError(f"thread count must be at most {max_threads()} (four per core of this machine), "
                          f"received {n}")
    _parallel.set_num_threads(n)
    gemm.set_threads(n)
    return threadpool_limits(limits=1, user_api="blas")


def default_threads():
    """All the cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def keep_large_allocations_in_heap():
    """Stop glibc from serving every large array with a fresh mmap (and a page fault per touched page).

    Training allocates and frees the same large activations every step; keeping them in the heap reuses warm
    pages. A no-op where the C library is not glibc.
    """
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return False
    try:
        libc = ctypes.CDLL(libc_name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = mallopt(M_MMAP_THRESHOLD, 512 << 20) == 1
    ok &= mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1
    return bool(ok)


def available_memory():
    """Bytes of memory this machine can give a new allocation now (Linux's MemAvailable; elsewhere the physical
    memory): the budget a network's estimate is checked against before anything is allocated."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
