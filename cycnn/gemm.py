"""Matrix products split across cores by cycnn itself, each part one single-threaded BLAS call.

Why not let BLAS thread itself: OpenBLAS's threads busy-wait for each other, so on a machine with other work
running, a two-thread product stalls whenever one of its threads is descheduled (a 64x1600 by 1600x128 product was
measured at 0.28 ms on one thread and 54 ms on two, on this 2-core machine under load). Here the rows of the result
are cut into one block per thread and each block is an ordinary one-thread ``numpy.matmul``: nobody spins, a
waiting thread sleeps, and every row is computed exactly as a single call would compute it, so results do not
depend on the thread count.
"""
from concurrent.futures import ThreadPoolExecutor

import numpy as np

# Below this many floating-point operations a product is not worth handing to another thread.
MIN_SPLIT_FLOPS = 4_000_000

_threads = 1
_pool = None


def set_threads(n):
    """Split large products over ``n`` threads (the caller's thread computes one block itself)."""
    global _threads, _pool
    if _pool is not None:
        _pool.shutdown(wait=True)
        _pool = None
    _threads = n
    if n > 1:
        _pool = ThreadPoolExecutor(max_workers=n - 1, thread_name_prefix="cycnn-gemm")


def get_threads():
    return _threads


def matmul(a, b, out=None):
    """``a @ b`` for 2-D arrays (into ``out`` if given), with the rows of the result shared among the threads."""
    m, k = a.shape
    n = b.shape[1]
    if _threads == 1 or 2 * m * k * n < MIN_SPLIT_FLOPS or m < 2 * _threads:
        return np.matmul(a, b, out=out)
    if out is None:
        out = np.empty((m, n), dtype=np.result_type(a, b))
    bounds = [m * i // _threads for i in range(_threads + 1)]
    futures = [_pool.submit(np.matmul, a[lo:hi], b, out=out[lo:hi]) for lo, hi in zip(bounds[1:-1], bounds[2:])]
    np.matmul(a[:bounds[1]], b, out=out[:bounds[1]])
    for future in futures:
        future.result()
    return out
