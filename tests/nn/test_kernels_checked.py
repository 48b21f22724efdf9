"""Every kernel, through the layers that call it, on odd shapes: the results do not depend on the thread count.

CI also runs this file (with tests/nn/test_kernels.py and tests/nn/test_fused.py) against a copy of cycnn built with
CYCNN_BOUNDSCHECK=1, where any out-of-range index in a kernel raises IndexError instead of corrupting memory; there
CYCNN_EXPECT_BOUNDSCHECK=1 makes the last test prove that the build really checks its indices.
"""
import os

import numpy as np
import pytest

from cycnn.nn import _dense, gemm
from cycnn.nn import _pool
from cycnn.data.augment import random_affine
from cycnn.nn.layers import Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU
from cycnn.nn.losses import SoftmaxCrossEntropy
from cycnn.nn.sequential import Sequential
from cycnn.nn.optim import make_optimizer
from cycnn.nn.runtime import default_threads, set_threads

# Compared with one thread; 3 is more threads than the CI machine's cores and splits work into odd pieces.
MORE_THREADS = (2, 3)


@pytest.fixture(autouse=True)
def restore_threads():
    yield
    set_threads(default_threads()).restore_original_limits()


def networks(dtype):
    """Odd shapes through every kernel: fused conv+ReLU+pool (direct, with its own weight gradient or the winners',
    and im2col+GEMM for many taps), plain convolutions (direct, and im2col+GEMM for 1,120 taps) with stride,
    padding and non-square kernels, a pool with overlapping windows, ReLU as a layer. The convolutions' products
    are large enough (over 4 MFLOP) to be split among threads."""
    direct_and_gemm = Sequential([
        Conv2D(1, 5, (3, 2), padding=1, activation="relu", seed=1, dtype=dtype), MaxPool2D(2, dtype=dtype),
        Conv2D(5, 24, 3, activation="relu", seed=2, dtype=dtype), MaxPool2D((2, 3), stride=(1, 2), dtype=dtype),
        Flatten(dtype=dtype), Dense(24 * 5 * 2, 13, activation="relu", seed=3, dtype=dtype),
        Dropout(0.3, seed=4, dtype=dtype), Dense(13, 4, seed=5, dtype=dtype)], input_shape=(1, 17, 15))
    unfused = Sequential([
        Conv2D(2, 16, (5, 3), stride=2, padding=2, seed=6, dtype=dtype), MaxPool2D(3, stride=2, dtype=dtype),
        ReLU(dtype=dtype), Conv2D(16, 70, 1, activation="relu", seed=7, dtype=dtype),
        Conv2D(70, 3, 4, padding=1, activation="relu", seed=17, dtype=dtype), Flatten(dtype=dtype),
        Dense(3 * 3 * 2, 5, seed=8, dtype=dtype)], input_shape=(2, 19, 13))
    # Whole vectors of channels: the direct kernel's vector path, Winograd, and the dense layers' own kernel.
    winograd_and_dense = Sequential([
        Conv2D(1, 16, 3, activation="relu", seed=9, dtype=dtype), MaxPool2D(2, dtype=dtype),
        Conv2D(16, 32, 3, padding=1, activation="relu", seed=10, dtype=dtype), MaxPool2D(2, dtype=dtype),
        Flatten(dtype=dtype), Dense(32 * 3 * 3, 32, activation="relu", seed=11, dtype=dtype),
        Dense(32, 3, seed=12, dtype=dtype)], input_shape=(1, 14, 14))
    # 17 input channels: the direct forward with the winners' weight gradient; 1,300 taps: im2col + GEMM.
    wide_direct_and_gemm = Sequential([
        Conv2D(1, 17, 3, activation="relu", seed=13, dtype=dtype), MaxPool2D(2, dtype=dtype),
        Conv2D(17, 52, 3, activation="relu", seed=14, dtype=dtype), MaxPool2D(2, dtype=dtype),
        Conv2D(52, 7, 5, padding=1, activation="relu", seed=15, dtype=dtype), MaxPool2D(2, stride=1, dtype=dtype),
        Flatten(dtype=dtype), Dense(7 * 3 * 3, 3, seed=16, dtype=dtype)], input_shape=(1, 30, 30))
    return [direct_and_gemm, unfused, winograd_and_dense, wide_direct_and_gemm]


def train_step(model, x, labels):
    """One forward and backward pass: the logits, the input gradient and every parameter gradient."""
    model.train()
    loss = SoftmaxCrossEntropy()
    logits = model.forward(x)
    loss(logits, labels)
    dx = model.backward(loss.backward(), input_grad=True)
    return [logits, dx] + [grad.copy() for _, _, grad in model.parameters()]


@pytest.mark.parametrize("threads", MORE_THREADS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("index", [0, 1, 2, 3], ids=["fused", "unfused", "winograd", "wide-direct-gemm"])
def test_layers_give_the_same_bits_on_any_thread_count(index, dtype, threads):
    rng = np.random.default_rng(0)
    shape, classes = networks(dtype)[index].input_shape, networks(dtype)[index].num_classes
    x = rng.standard_normal((67, *shape)).astype(dtype)  # 67 images: no even split among threads
    labels = rng.integers(0, classes, 67)
    results = []
    for count in (1, threads):
        set_threads(count)
        model = networks(dtype)[index]
        for layer in model.layers:
            if isinstance(layer, Dropout):
                layer.rng = np.random.default_rng(9)
        results.append(train_step(model, x, labels))
    names = ["logits", "input gradient"] + [f"gradient {key}" for key, _, _ in model.parameters()]
    for name, a, b in zip(names, *results):
        assert a.dtype == b.dtype and np.array_equal(a, b), f"{name} differs on {threads} threads"


# (m, k, n) of products the layers above compute: the second convolution's weight gradient (24 x 2412 by
# 2412 x 45), its forward product, and the first network's dense layer; then the reference network's dense layer
# at batch 64 forward (cut by columns: wider than tall) and its input gradient.
# Cut by rows, by columns, and by the inner dimension (the first and the last: a convolution's weight gradient).
PRODUCTS = [(24, 2412, 45), (2412, 45, 24), (5360, 30, 16), (67, 240, 13), (64, 1600, 128), (64, 128, 1600),
            (27, 9001, 32)]


@pytest.mark.parametrize("threads", MORE_THREADS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m, k, n", PRODUCTS, ids=["x".join(map(str, p)) for p in PRODUCTS])
def test_matrix_products_give_the_same_bits_on_any_thread_count(m, k, n, dtype, threads):
    """cycnn.nn.gemm cuts a product into blocks of rows, columns or the inner dimension by its shape alone and shares
    the blocks among threads, so any thread count computes the same blocks, bit for bit; and the blocks make up the
    product."""
    rng = np.random.default_rng(3)
    a = rng.standard_normal((k, m)).astype(dtype).T  # a transposed view, as in the weight gradients
    b = rng.standard_normal((k, n)).astype(dtype)
    set_threads(1)
    one = gemm.matmul(a, b)
    set_threads(threads)
    assert np.array_equal(gemm.matmul(a, b), one)
    np.testing.assert_allclose(one, a.astype(np.float64) @ b, rtol=1e-4 if dtype == np.float32 else 1e-12,
                               atol=1e-3 if dtype == np.float32 else 1e-10)


def test_products_are_cut_along_their_longest_dimension():
    """A long inner dimension (a weight gradient summed over every pixel of a batch) is cut into partial products,
    since cutting a 27 x 32 output would leave each block too little to do; a tall or a wide product by rows or
    columns; a small one not at all."""
    def axis(m, k, n):
        return gemm._cut(np.empty((m, k)), np.empty((k, n)))[0]
    assert [axis(*p) for p in PRODUCTS] == ["inner", "rows", "rows", None, "inner", "columns", "inner"]


@pytest.mark.parametrize("threads", MORE_THREADS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dense_products_give_the_same_bits_on_any_thread_count(threads, dtype):
    """cycnn.nn.gemm.dense, a dense layer's forward, weight-gradient and input-gradient products, with 48 outputs
    (whole vectors) and 10 (padded with zero columns to a vector; the weight gradient as (dz.T @ x).T), and the
    input gradient of a batch smaller than the outputs (as (W @ dz.T).T); each is also the product numpy
    computes."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((67, 400)).astype(dtype)
    products = []
    for outputs in (48, 10):
        dz, w = rng.standard_normal((67, outputs)).astype(dtype), rng.standard_normal((400, outputs)).astype(dtype)
        products += [(x, w), (x.T, dz), (dz, w.T), (dz[:13], w.T)]
    set_threads(1)
    expected = [gemm.dense(a, b) for a, b in products]
    for a, b in products:  # the reordered products sum as the direct ones do
        assert np.array_equal(gemm.dense(a, b), gemm.dense(np.ascontiguousarray(a), np.ascontiguousarray(b)))
    set_threads(threads)
    for (a, b), want in zip(products, expected):
        got = gemm.dense(a, b)
        assert got.flags.c_contiguous and np.array_equal(got, want)
        np.testing.assert_allclose(got, a.astype(np.float64) @ b, rtol=1e-4 if dtype == np.float32 else 1e-12,
                                   atol=1e-3 if dtype == np.float32 else 1e-10)


@pytest.mark.parametrize("threads", MORE_THREADS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dense_products_summed_in_parts_of_the_inner_dimension_keep_their_bits(threads, dtype):
    """Panels of B larger than dense.pyx's DENSE_L2_BYTES are summed 64 terms at a time (4,500 x 64: 1.15 MB in
    float32, two panels in float64): the same bits, on any thread count, as the products of B's columns one
    vector at a time (small enough to be summed whole), and numpy's product."""
    rng = np.random.default_rng(6)
    a, b = rng.standard_normal((13, 4500)).astype(dtype), rng.standard_normal((4500, 64)).astype(dtype)
    lanes = _dense.lanes(dtype == np.float64)
    set_threads(1)
    whole = []
    for j in range(0, 64, lanes):
        part = np.empty((13, lanes), dtype=dtype)
        _dense.dense_product(a, np.ascontiguousarray(b[:, j:j + lanes]), part)
        whole.append(part)
    set_threads(threads)
    got = np.empty((13, 64), dtype=dtype)
    _dense.dense_product(a, b, got)
    assert np.array_equal(got, np.hstack(whole))
    np.testing.assert_allclose(got, a.astype(np.float64) @ b, rtol=1e-4 if dtype == np.float32 else 1e-12,
                               atol=1e-3 if dtype == np.float32 else 1e-10)


def test_augmentation_and_optimizers_give_the_same_bits_on_any_thread_count():
    rng = np.random.default_rng(1)
    images = rng.random((53, 1, 31, 29), dtype=np.float32)
    params = {"0.W": rng.standard_normal((41, 997)).astype(np.float32)}  # above the kernels' parallel threshold
    grads = [rng.standard_normal((41, 997)).astype(np.float32) for _ in range(3)]
    results = {}
    for threads in (1, *MORE_THREADS):
        set_threads(threads)
        warped = random_affine(images, np.random.default_rng(2), 15.0, 3.0)
        updated = []
        for name in ("adam", "sgd"):
            param = params["0.W"].copy()
            optimizer = make_optimizer(name, 0.01)
            for grad in grads:
                optimizer.step([("0.W", param, grad)])
            updated.append(param)
        results[threads] = [warped, *updated]
    for threads in MORE_THREADS:
        for a, b in zip(results[1], results[threads]):
            assert np.array_equal(a, b), threads


@pytest.mark.skipif(os.environ.get("CYCNN_EXPECT_BOUNDSCHECK") != "1",
                    reason="only in the bounds-checked build (an unchecked kernel would write out of bounds)")
def test_the_checked_build_catches_an_out_of_range_index():
    """The build switch works: a winner index past its plane (which no shape check can see) raises IndexError
    instead of writing past the gradient."""
    dy, argmax = np.ones((1, 1, 2, 2), np.float32), np.full((1, 1, 2, 2), 16, np.int32)  # past a 4x4 plane
    with pytest.raises(IndexError):
        _pool.maxpool_backward(dy, argmax, np.empty((1, 1, 4, 4), np.float32))


@pytest.mark.parametrize("threads", MORE_THREADS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("split", [True, False], ids=["split", "images"])
def test_the_inference_plan_gives_the_same_bits_on_any_thread_count(threads, dtype, split):
    """The plan's operations are cut among threads by shape alone (rows, channels, columns, images): the same
    logits on 1, 2 and 3 threads, for every network of tests/nn/test_plan.py (each of its operations)."""
    from cycnn.nn import plan
    from test_plan import networks
    for name, model in networks(dtype):
        x = np.random.default_rng(4).standard_normal((7, *model.input_shape)).astype(dtype).reshape(7, -1)
        results = []
        for count in (1, threads):
            logits = np.empty((7, model.num_classes), dtype=dtype)
            assert plan.plan_for(model, count).kernel.run(x, None, logits, split)
            results.append(logits)
        assert np.array_equal(*results), f"{name}: the plan's logits differ on {threads} threads"
