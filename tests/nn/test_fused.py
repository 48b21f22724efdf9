"""The fused Conv2D(relu)+MaxPool2D step computes exactly what the two layers compute one after the other."""
import numpy as np
import pytest

from cycnn.nn import fused as fusion
from cycnn.nn.functional import direct_applies
from cycnn.nn.layers import Conv2D, MaxPool2D

CASES = [
    # in_channels, out_channels, kernel, stride, padding, size, pool, pool_stride
    (1, 4, 3, 1, 0, 28, 2, None),   # the reference first layer's shape, 4 channels (direct path: one partial vector)
    (1, 32, 3, 1, 0, 28, 2, None),  # the reference first layer (direct, two vectors of channels)
    (1, 36, 3, 1, 0, 12, 2, None),  # direct: two vectors and 4 channels left over
    (1, 112, 3, 1, 1, 10, 2, None),  # direct: a block of 4 vectors and 3 more, padded
    (1, 3, 5, 2, 1, 13, 3, 2),      # direct, strided, padded, overlapping windows
    (3, 5, (2, 3), 1, 1, 9, 2, None),  # direct, non-square kernel
    (8, 6, 3, 1, 0, 13, 2, None),   # direct, 72 taps (odd map 11 -> 5); 6 channels are not whole vectors
    (5, 4, 3, 2, 1, 12, 3, 2),      # direct, 45 taps, strided, padded, overlapping windows
    (8, 20, 3, 1, 0, 10, 2, None),  # direct: a vector of channels and 4 left over; 8 input channels fill a
                                    # float64 vector (winners weight gradient) but not a float32 one (direct)
    (17, 6, 3, 1, 1, 9, 2, None),   # direct, 153 taps, padded, winners weight gradient
    (29, 6, 3, 1, 0, 9, 2, None),   # direct, 261 taps (odd map 7 -> 3)
    (120, 6, 3, 1, 0, 9, 2, None),  # im2col path: 1080 taps (odd map 7 -> 3)
    (48, 5, 5, 2, 1, 12, 3, 2),     # im2col, 1200 taps, strided, padded, overlapping windows
    (120, 20, 3, 1, 0, 6, 2, None),  # im2col: pooling a vector of channels and 4 left over
    (30, 200, 5, 1, 0, 9, 2, None),  # im2col: 750 taps, but 200 channels of weights too large for the cache
    (8, 16, 3, 1, 0, 13, 2, None),  # Winograd path, as the reference second layer (odd map 11 -> 5)
    (5, 32, 3, 1, 1, 12, 2, None),  # Winograd, padded, even map
    (3, 80, 3, 1, 1, 9, 2, None),   # Winograd, 80 channels: the kernel's block of 64 and a remainder of 16
    (4, 80, 3, 1, 0, 18, 2, None),  # Winograd, 8 tiles a row: more than one block of 6 rows in the products
]


def _pair(c, f, k, s, p, dtype, seed=0):
    conv = Conv2D(c, f, k, stride=s, padding=p, activation="relu", seed=seed, dtype=dtype)
    conv.params["b"] = np.random.default_rng(seed + 1).normal(0, 0.1, f).astype(dtype)
    return conv


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("c, f, k, s, p, size, pool, pool_stride", CASES)
@pytest.mark.parametrize("input_grad", [True, False])
def test_fused_matches_layers(dtype, c, f, k, s, p, size, pool, pool_stride, input_grad):
    rng = np.random.default_rng(42)
    x = rng.standard_normal((3, c, size, size)).astype(dtype)
    conv, pool_layer = _pair(c, f, k, s, p, dtype), MaxPool2D(pool, pool_stride, dtype=dtype)
    fused = fusion.ConvReluPool(conv, pool_layer)
    taps = c * conv.kernel_size[0] * conv.kernel_size[1]
    lanes = fusion.WINOGRAD_CHANNEL_MULTIPLE[np.dtype(dtype)]
    winograd = taps > fusion.DIRECT_FEW_TAPS and k == 3 and s == 1 and pool == 2 and f % lanes == 0
    assert fused.path == ("winograd" if winograd else "direct" if direct_applies(conv.params["W"]) else "im2col")

    expected = pool_layer(conv(x))
    dy = rng.standard_normal(expected.shape).astype(dtype)
    expected_dx = conv.backward(pool_layer.backward(dy))
    expected_grads = {k: v.copy() for k, v in conv.grads.items()}

    y = fused.forward(x)
    dx = fused.backward(dy, input_grad=input_grad)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(y, expected, rtol=tol, atol=tol)
    for name in ("W", "b"):
        np.testing.assert_allclose(conv.grads[name], expected_grads[name], rtol=tol * 10, atol=tol * 10)
    if input_grad:
        np.testing.assert_allclose(dx, expected_dx, rtol=tol * 10, atol=tol * 10)
    else:
        assert dx is None


def test_plan_fuses_only_relu_conv_followed_by_pool():
    layers = [Conv2D(1, 2, 3, activation="relu"), MaxPool2D(2), Conv2D(2, 2, 3), MaxPool2D(2)]
    steps = fusion.plan(layers)
    assert [(first, count, op is not None) for first, count, op in steps] == [
        (0, 2, True), (2, 1, False), (3, 1, False)]


def test_winograd_choice_follows_a_change_of_dtype():
    """8 channels fill a float64 vector but not a float32 one: after astype, the fused step must notice."""
    from cycnn.nn.layers import Dense, Flatten
    from cycnn.nn.sequential import Sequential
    f64 = np.float64
    model = Sequential([Conv2D(4, 8, 3, activation="relu", seed=0, dtype=f64), MaxPool2D(2, dtype=f64),
                        Flatten(dtype=f64), Dense(8 * 3 * 3, 2, seed=1, dtype=f64)], input_shape=(4, 9, 9))
    fused = model.steps[0][2]
    assert fused.path == "winograd"
    model.astype(np.float32)
    assert fused.path == "direct"
    x = np.random.default_rng(0).standard_normal((2, 4, 9, 9)).astype(np.float32)
    expected = x
    for layer in model.layers:
        expected = layer(expected)
    np.testing.assert_allclose(model.forward(x), expected, rtol=1e-5, atol=1e-5)


def test_fused_backward_rejects_a_gradient_of_the_wrong_shape():
    fused = fusion.ConvReluPool(_pair(3, 16, 3, 1, 0, np.float32), MaxPool2D(2))
    y = fused.forward(np.ones((2, 3, 8, 8), dtype=np.float32))
    with pytest.raises(ValueError, match="gradient of shape"):
        fused.backward(np.ones((2, *y.shape[1:-1], y.shape[-1] + 1), dtype=np.float32))


def test_kernels_refuse_arguments_that_do_not_fit_together():
    """The kernels run without bounds checks: mismatched shapes are refused before any memory is touched."""
    from cycnn.nn import _fused
    x = np.ones((2, 1, 8, 8), np.float32)
    y, argmax = np.empty((2, 4, 3, 3), np.float32), np.empty((2, 4, 3, 3), np.int32)
    with pytest.raises(ValueError, match="taps"):  # 9 taps claimed by KH x KW, 6 rows of weights given
        _fused.direct_relu_maxpool_forward(x, np.ones((6, 4), np.float32), np.ones(4, np.float32), 3, 3, 1, 0,
                                           2, 2, 2, 2, y, argmax)
    with pytest.raises(ValueError, match="argmax and y"):
        _fused.direct_relu_maxpool_forward(x, np.ones((9, 4), np.float32), np.ones(4, np.float32), 3, 3, 1, 0,
                                           2, 2, 2, 2, y, np.empty((2, 4, 3, 2), np.int32))
    with pytest.raises(ValueError, match="pooling windows"):
        _fused.direct_relu_maxpool_forward(x, np.ones((9, 4), np.float32), np.ones(4, np.float32), 3, 3, 1, 0,
                                           2, 2, 2, 2, np.empty((2, 4, 4, 3), np.float32),
                                           np.empty((2, 4, 4, 3), np.int32))
    with pytest.raises(ValueError, match="transformed kernel"):
        _fused.winograd_relu_maxpool_forward(np.ones((2, 3, 8, 8), np.float32), np.ones((16, 2, 16), np.float32),
                                             np.ones(16, np.float32), 0, np.empty((2, 16, 3, 3), np.float32),
                                             np.empty((2, 16, 3, 3), np.int32))
