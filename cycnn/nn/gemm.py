"""Matrix products shared among cores by cycnn itself, two ways.

``matmul`` (convolutions' im2col products: large) cuts a product into blocks, each one single-threaded BLAS call.
Why not let BLAS thread itself: OpenBLAS's threads busy-wait for each other, so on a machine with other work
running, a two-thread product stalls whenever one of its threads is descheduled (a 64x1600 by 1600x128 product was
measured at 0.28 ms on one thread and 54 ms on two, on this 2-core machine under load); and its threaded driver
cuts the inner dimension differently from the one-thread driver, so results changed with the thread count.

Here a large product is cut into a fixed number of blocks that depends only on the shape, each block an ordinary
one-thread ``numpy.matmul`` on cycnn's Python threads, which take whole blocks: blocks of the output's rows, or of
its columns when it is wider than tall (each part then packs only its share of the larger right-hand matrix), or,
when the inner dimension dwarfs the output (a convolution's weight gradient: a few hundred numbers summed over
every pixel of the batch), blocks of the inner dimension, whose partial products are then added in block order.
The blocks (hence every bit of the result) are the same on any number of threads.

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
# The inner dimension is cut when it is this many times the output's longer side, in blocks of at least
# MIN_INNER_BLOCK (each block's partial product costs an extra output-sized sum).
INNER_RATIO = 8
MIN_INNER_BLOCK = 256

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
    axis, blocks = _cut(a, b)
    if not blocks:
        return np.matmul(a, b, out=out)
    if out is None:
        out = np.empty((a.shape[0], b.shape[1]), dtype=np.result_type(a, b))
    target = np.empty((len(blocks), *out.shape), dtype=out.dtype) if axis == "inner" else out
    count = len(blocks)
    shares = [range(count * t // _threads, count * (t + 1) // _threads) for t in range(_threads)]
    futures = [_pool.submit(_multiply_blocks, a, b, target, blocks, share, axis) for share in shares[1:]]
    _multiply_blocks(a, b, target, blocks, shares[0], axis)
    for future in futures:
        future.result()
    if axis == "inner":
        np.sum(target, axis=0, out=out)  # block after block, whatever the thread count
    return out


def dense(a, b):
    """``a @ b`` for a dense layer's products (a batch of rows, or a batch-sized inner dimension) in cycnn's own
    vector kernel (src_ext/dense.h), whose OpenMP threads start in microseconds: cut among Python threads, such
    small products lose more to the hand-off than a second core gains. ``b`` is copied if it is not
    C-contiguous (a transposed weight matrix: in parallel tiles), or with zero columns up to a whole number of
    vectors (a 10-class output layer: its product is then 1.5-8x BLAS's, measured); two transposed products are
    computed the other way round instead (below: the same sums in the same order). Other dtypes go to
    ``matmul``."""
    dtype = np.result_type(a, b)
    if dtype not in (np.float32, np.float64) or a.dtype != dtype or b.dtype != dtype:
        return matmul(a, b)
    lanes = _dense.lanes(dtype == np.float64)
    columns = b.shape[1]
    if columns % lanes != 0 and columns < 2 * lanes and a.T.flags.c_contiguous and not a.flags.c_contiguous:
        # A weight gradient x.T @ dz with few outputs (a 10-class layer): as (dz.T @ x).T, whose right operand is
        # x's rows as stored, instead of x's columns a few elements at a time (the same sums in the same order;
        # 1.3-1.8x, measured up to 18,432 inputs).
        return np.ascontiguousarray(dense(np.ascontiguousarray(b.T), a.T).T)
    if b.T.flags.c_contiguous and not b.flags.c_contiguous and a.shape[0] < b.shape[0]:
        # An input gradient dz @ W.T with fewer rows (the batch) than W has outputs: as (W @ dz.T).T, which turns
        # the batch-sized result instead of copying W transposed (the same sums in the same order).
        return np.ascontiguousarray(dense(b.T, np.ascontiguousarray(a.T)).T)
    if columns % lanes != 0:
        padded = np.zeros((b.shape[0], -(-columns // lanes) * lanes), dtype=dtype)
        padded[:, :columns] = b
        b = padded
    elif b.T.flags.c_contiguous and not b.flags.c_contiguous:
        transposed = np.empty(b.shape, dtype=dtype)
        _dense.transpose(b.T, transposed)
        b = transposed
    out = np.empty((a.shape[0], b.shape[1]), dtype=dtype)
    _dense.dense_product(a, np.ascontiguousarray(b), out)
    return out if out.shape[1] == columns else np.ascontiguousarray(out[:, :columns])


def _flops(a, b):
    return 2 * a.shape[0] * a.shape[1] * b.shape[1]


def _cut(a, b):
    """How a product is cut: ("rows", "columns" or "inner", the blocks as slices), or (None, None) to leave it
    whole; the number of blocks depends on the shape only."""
    m, inner, n = a.shape[0], a.shape[1], b.shape[1]
    if _flops(a, b) < MIN_SPLIT_FLOPS:
        return None, None
    if inner >= INNER_RATIO * max(m, n):
        axis, length, least = "inner", inner, MIN_INNER_BLOCK
    else:
        axis, length, least = ("rows", m, MIN_BLOCK) if m >= n else ("columns", n, MIN_BLOCK)
    count = min(MAX_BLOCKS, length // least)
    if count < 2:
        return None, None
    bounds = [length * i // count for i in range(count + 1)]
    return axis, [slice(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:])]


def _multiply_blocks(a, b, target, blocks, share, axis):
    """The blocks numbered in ``share``; an inner block's partial product goes to its own layer of ``target``."""
    for i in share:
        block = blocks[i]
        if axis == "rows":
            np.matmul(a[block], b, out=target[block])
        elif axis == "columns":
            np.matmul(a, b[:, block], out=target[:, block])
        else:
            np.matmul(a[:, block], b[block], out=target[i])
