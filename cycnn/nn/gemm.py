"""Matrix products shared among cores by cycnn itself, two ways.

``matmul`` (convolutions' im2col products: large) cuts a product into blocks, each one single-threaded BLAS call.
Why not let BLAS thread itself: OpenBLAS's threads busy-wait for each other, so on a machine with other work
running, a two-thread product stalls whenever one of its threads is descheduled (a 64x1600 by 1600x128 product was
measured at 0.28 ms on one thread and 54 ms on two, on this 2-core machine under load); and its threaded driver
cuts the inner dimension differently from the one-thread driver, so results changed with the thread count.

Here a large product's output is cut into a fixed number of blocks of rows (or of columns, when it is wider than
tall: each part then packs only its share of the larger right-hand matrix) that depends only on the shape, each
block an ordinary one-thread ``numpy.matmul`` on cycnn's Python threads, which take whole blocks. The blocks (hence
every bit of the result) are the same on any number of threads.

``dense`` (a dense layer's products: a batch of rows or a batch-sized inner dimension, too small to hand to
another Python thread, which costs about 60 us here) runs cycnn's own vector kernel on the OpenMP threads.
"""
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from cycnn.nn import _dense

# Below this many floating-point operations a product is not worth cutting up.
MIN_SPLIT_FLOPS = 4_000_000
# Large products are cut into up to this many blocks of at least MIN_BLOCK rows (or columns); the cut depends on
# the shape only, never on the thread count (so neither do the results).
MAX_BLOCKS = 8
MIN_BLOCK = 32

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


def matmul(a, b, out=None):
    """``a @ b`` for 2-D arrays (into ``out`` if given); large products in blocks shared among the threads."""
    by_rows, blocks = _cut(a, b)
    if not blocks:
        return np.matmul(a, b, out=out)
    if out is None:
        out = np.empty((a.shape[0], b.shape[1]), dtype=np.result_type(a, b))
    count = len(blocks)
    shares = [blocks[count * t // _threads:count * (t + 1) // _threads] for t in range(_threads)]
    futures = [_pool.submit(_multiply_blocks, a, b, out, share, by_rows) for share in shares[1:]]
    _multiply_blocks(a, b, out, shares[0], by_rows)
    for future in futures:
        future.result()
    return out


def dense(a, b):
    """``a @ b`` for a dense layer's products (a batch of rows, or a batch-sized inner dimension) in cycnn's own
    vector kernel (src_ext/dense.h), whose OpenMP threads start in microseconds: cut among Python threads, such
    small products lose more to the hand-off than a second core gains. ``b`` is copied if it is not
    C-contiguous (a transposed weight matrix: in parallel tiles); shapes the kernel does not take go to
    ``matmul``."""
    dtype = np.result_type(a, b)
    if (dtype not in (np.float32, np.float64) or a.dtype != dtype or b.dtype != dtype
            or b.shape[1] % _dense.lanes(dtype == np.float64) != 0):
        return matmul(a, b)
    if b.T.flags.c_contiguous and not b.flags.c_contiguous:
        transposed = np.empty(b.shape, dtype=dtype)
        _dense.transpose(b.T, transposed)
        b = transposed
    out = np.empty((a.shape[0], b.shape[1]), dtype=dtype)
    _dense.dense_product(a, np.ascontiguousarray(b), out)
    return out


def _flops(a, b):
    return 2 * a.shape[0] * a.shape[1] * b.shape[1]


def _cut(a, b):
    """How a product is cut: (by rows?, the blocks as slices, or None to leave it whole). The output's longer
    side is cut, into a number of blocks that depends on the shape only."""
    m, n = a.shape[0], b.shape[1]
    by_rows = m >= n
    length = m if by_rows else n
    count = min(MAX_BLOCKS, length // MIN_BLOCK)
    if _flops(a, b) < MIN_SPLIT_FLOPS or count < 2:
        return by_rows, None
    bounds = [length * i // count for i in range(count + 1)]
    return by_rows, [slice(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:])]


def _multiply_blocks(a, b, out, blocks, by_rows):
    for block in blocks:
        if by_rows:
            np.matmul(a[block], b, out=out[block])
        else:
            np.matmul(a, b[:, block], out=out[:, block])
