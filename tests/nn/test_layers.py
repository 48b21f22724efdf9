"""Layers: forward passes against plain-numpy references, and central-difference gradient checks in float64.

Gradient checks compare every entry of the input gradient and of every parameter gradient with
``(f(p + eps) - f(p - eps)) / (2 eps)``, eps = 1e-6, for the scalar ``f = sum(layer(x) * R)`` with a fixed random R
(or the loss itself for SoftmaxCrossEntropy and the whole network). The relative error is
``max |numeric - analytic| / max(|numeric|.max(), |analytic|.max())`` and must be below 1e-6.

ReLU and max are not differentiable at their kinks, so the inputs are built away from them: every ReLU
pre-activation is at least KINK_MARGIN = 1e-4 from 0 and every pooling window's maximum beats its runner-up by at
least KINK_MARGIN. A perturbation of 1e-6 moves a pre-activation by at most 1e-6 * max|W or x| (about 3e-6 here), so
no perturbed point crosses a kink. Inputs that miss the margin are redrawn with the next seed (deterministically).
"""
import itertools

import numpy as np
import pytest

from cycnn.errors import ArchitectureError, ConfigError
from cycnn.nn.layers import LAYER_TYPES, Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU
from cycnn.nn.losses import SoftmaxCrossEntropy
from cycnn.nn.sequential import Sequential
from oracles import (assert_gradients_match, check_layer_gradients, conv_reference,
                     maxpool_reference, numeric_gradient)

KINK_MARGIN = 1e-4
DTYPES = [np.float32, np.float64]
TOL = {np.float32: dict(rtol=1e-4, atol=1e-5), np.float64: dict(rtol=1e-11, atol=1e-12)}

# kernel (kh, kw), stride, padding, input (N, C, H, W), filters: kernels 1, 3, 5 and 2x3, strides 1 and 2,
# padding 0 and 1, batch 1 and 2, one to three channels, a single filter or three.
CONV_CASES = [
    (k, stride, pad, shape, filters)
    for (k, shape), stride, (pad, filters) in itertools.product(
        [((1, 1), (1, 3, 5, 4)), ((3, 3), (2, 2, 7, 6)), ((5, 5), (1, 1, 9, 7)), ((2, 3), (2, 3, 6, 7))],
        [1, 2], [(0, 1), (1, 3)])
] + [
    # More taps than the direct kernel takes (cycnn.nn.functional.direct_applies): im2col + GEMM.
    ((3, 3), 1, 1, (1, 114, 3, 3), 1),
    ((2, 3), 2, 0, (2, 172, 3, 4), 1),
]
POOL_CASES = [
    # input (N, C, H, W), window, stride, expected output (OH, OW)
    ((1, 3, 11, 11), (2, 2), None, (5, 5)),
    ((2, 2, 9, 9), (3, 3), (2, 2), (4, 4)),
    ((1, 1, 7, 10), (2, 3), None, (3, 3)),
    ((2, 3, 8, 7), (3, 2), (1, 2), (6, 3)),
    ((1, 2, 8, 8), (2, 2), (3, 3), (3, 3)),
]


def _conv_id(case):
    (kh, kw), stride, pad, shape, filters = case
    return f"k{kh}x{kw}-s{stride}-p{pad}-{'x'.join(map(str, shape))}-f{filters}"


def _min_distance_to_zero(z):
    return float(np.abs(z).min())


def _random_bias(layer, rng):
    layer.params["b"][...] = rng.uniform(-0.5, 0.5, layer.params["b"].shape)


def conv_case(case, activation):
    """A float64 Conv2D and input for ``case``, with every pre-activation away from ReLU's kink (and some positive,
    so that the gradient is not all zero)."""
    (kh, kw), stride, pad, shape, filters = case
    for seed in range(50):
        rng = np.random.default_rng(seed)
        layer = Conv2D(shape[1], filters, (kh, kw), stride=stride, padding=pad, activation=activation,
                       seed=seed, dtype=np.float64)
        _random_bias(layer, rng)
        x = rng.standard_normal(shape)
        pre = conv_reference(x, layer.params["W"], layer.params["b"], stride, pad)
        if activation is None or (_min_distance_to_zero(pre) > KINK_MARGIN and (pre > 0).any()):
            return layer, x, pre
    raise AssertionError("no seed gave pre-activations away from 0")  # pragma: no cover


def distinct_values(shape, seed):
    """Values spaced 1/size apart in random order: no two pooling candidates are within KINK_MARGIN."""
    size = int(np.prod(shape))
    assert 1.0 / size > KINK_MARGIN
    return np.random.default_rng(seed).permutation(size).reshape(shape) / size - 0.5


# --- Conv2D -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("activation", [None, "relu"])
@pytest.mark.parametrize("case", CONV_CASES, ids=_conv_id)
def test_conv2d_gradients(case, activation):
    layer, x, pre = conv_case(case, activation)
    if activation == "relu":
        assert (pre > 0).any() and (pre < 0).any()  # both sides of the kink are exercised
    check_layer_gradients(layer, x)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", [None, "relu"])
@pytest.mark.parametrize("case", CONV_CASES, ids=_conv_id)
def test_conv2d_forward_matches_reference(case, activation, dtype):
    (kh, kw), stride, pad, shape, filters = case
    rng = np.random.default_rng(1)
    layer = Conv2D(shape[1], filters, (kh, kw), stride=stride, padding=pad, activation=activation, seed=1,
                   dtype=dtype)
    _random_bias(layer, rng)
    x = rng.standard_normal(shape)
    expected = conv_reference(x, layer.params["W"], layer.params["b"], stride, pad)
    if activation == "relu":
        expected = np.maximum(expected, 0)
    y = layer(x)
    assert y.dtype == dtype and y.shape == (shape[0], *layer.output_shape(shape[1:]))
    np.testing.assert_allclose(y, expected, **TOL[dtype])


def test_conv2d_is_cross_correlation_with_weights_out_in_kh_kw():
    """No kernel flip (PyTorch's Conv2d): on x = arange(16) as 4x4, kernel [[1, 2], [3, 4]] gives
    y[0, 0] = 0*1 + 1*2 + 4*3 + 5*4 = 34 (a true convolution would give 16). Weights index (out, in, kh, kw)."""
    layer = Conv2D(1, 1, 2, dtype=np.float64)
    layer.params["W"][...] = [[[[1, 2], [3, 4]]]]
    y = layer(np.arange(16.0).reshape(1, 1, 4, 4))
    np.testing.assert_array_equal(y[0, 0], 34 + 10 * np.arange(3)[None, :] + 40 * np.arange(3)[:, None])

    layer = Conv2D(3, 2, (2, 3), dtype=np.float64)
    assert layer.params["W"].shape == (2, 3, 2, 3) and layer.params["b"].shape == (2,)
    layer.params["W"][...] = 0
    layer.params["W"][1, 2] = 1.0  # only input channel 2 feeds only output channel 1
    x = np.zeros((1, 3, 4, 5))
    x[0, 2] = 1.0
    y = layer(x)
    np.testing.assert_array_equal(y[0, 0], 0)
    np.testing.assert_array_equal(y[0, 1], 6)


def test_conv2d_backward_without_input_gradient():
    """A first layer skips the input gradient but still fills the parameter gradients."""
    layer, x, _ = conv_case(((1, 1), 2, 1, (1, 3, 5, 4), 3), None)  # 1x1 kernel, stride 2, padding 1
    y = layer(x)
    layer.input_grad = False
    assert layer.backward(np.ones_like(y)) is None
    np.testing.assert_allclose(layer.grads["b"], np.full(layer.out_channels, y[0, 0].size * len(x)))


def conv_backward_reference(x, W, y, dy, stride, pad, relu):
    """(dx, dW, db) in float64 numpy from each output pixel's patch: the gradient that passed the ReLU (where y is
    positive) times the patches for dW, and times the weights, added back onto the patches, for dx."""
    (h, w), (kh, kw), (oh, ow) = x.shape[2:], W.shape[2:], y.shape[2:]
    g = np.where(y > 0, dy, 0).astype(np.float64) if relu else dy.astype(np.float64)
    padded = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    dx, dW = np.zeros(padded.shape), np.zeros(W.shape)
    rows, cols = slice(None, stride * oh, stride), slice(None, stride * ow, stride)
    for i, j in itertools.product(range(kh), range(kw)):
        patches = padded[:, :, i:, j:][:, :, rows, cols]
        dW[:, :, i, j] = np.einsum("nfhw,nchw->fc", g, patches)
        dx[:, :, i:, j:][:, :, rows, cols] += np.einsum("nfhw,fc->nchw", g, W[:, :, i, j].astype(np.float64))
    return dx[:, :, pad:pad + h, pad:pad + w], dW, g.sum(axis=(0, 2, 3))


# input (N, C, H, W), filters, kernel, stride, padding: whole vectors of channels and tails, one to three groups of
# four vectors (70 channels), tiles of taps of uneven sizes, more images than chunks and fewer.
UNPOOLED_BACKWARD_CASES = [((11, 3, 9, 9), 70, (3, 3), 1, 2), ((9, 1, 12, 10), 17, (2, 3), 2, 1),
                           ((3, 20, 7, 7), 5, (3, 3), 1, 0), ((2, 2, 6, 6), 33, (1, 1), 2, 0),
                           ((17, 16, 10, 10), 32, (3, 3), 1, 1)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("shape, filters, kernel, stride, pad", UNPOOLED_BACKWARD_CASES)
def test_unpooled_conv2d_backward_matches_reference(shape, filters, kernel, stride, pad, relu, dtype):
    """A direct forward pass (the blocks of four pixels across the ends of rows with more than two vectors of
    channels) and the backward pass after it (image by image, without im2col) against numpy."""
    rng = np.random.default_rng(3)
    layer = Conv2D(shape[1], filters, kernel, stride=stride, padding=pad, activation="relu" if relu else None,
                   seed=4, dtype=dtype)
    _random_bias(layer, rng)
    x = rng.standard_normal(shape).astype(dtype)
    y = layer(x)
    pre = conv_reference(x, layer.params["W"], layer.params["b"], stride, pad)
    np.testing.assert_allclose(y, np.maximum(pre, 0) if relu else pre, **TOL[dtype])
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = layer.backward(dy)
    expected = conv_backward_reference(x, layer.params["W"], y, dy, stride, pad, relu)
    for name, got, want in zip(["dx", "dW", "db"], [dx, layer.grads["W"], layer.grads["b"]], expected):
        assert got.dtype == dtype, name
        np.testing.assert_allclose(got, want, rtol=0, atol=TOL[dtype]["rtol"] * np.abs(want).max(), err_msg=name)


# --- MaxPool2D ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape, window, stride, out_hw", POOL_CASES)
def test_maxpool_gradients(shape, window, stride, out_hw):
    layer = MaxPool2D(window, stride, dtype=np.float64)
    check_layer_gradients(layer, distinct_values(shape, seed=2))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, window, stride, out_hw", POOL_CASES)
def test_maxpool_forward_matches_reference(shape, window, stride, out_hw, dtype):
    layer = MaxPool2D(window, stride, dtype=dtype)
    x = np.random.default_rng(3).standard_normal(shape).astype(dtype)
    y = layer(x)
    assert y.shape == (shape[0], shape[1], *out_hw) == (shape[0], *layer.output_shape(shape[1:]))
    np.testing.assert_array_equal(y, maxpool_reference(x, *window, *layer.stride)[0])


# --- ReLU, Flatten ------------------------------------------------------------------------------------------------

def test_relu_gradients():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 5, 4))
    x += np.sign(x) * 10 * KINK_MARGIN  # every input at least 1e-3 from the kink
    check_layer_gradients(ReLU(dtype=np.float64), x)


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_forward_matches_reference(dtype):
    x = np.random.default_rng(5).standard_normal((3, 2, 5, 7)).astype(dtype)
    np.testing.assert_array_equal(ReLU(dtype=dtype)(x), np.maximum(x, 0))


def test_flatten_gradients():
    check_layer_gradients(Flatten(dtype=np.float64), np.random.default_rng(6).standard_normal((2, 3, 5, 4)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_flatten_is_c_order(dtype):
    x = np.random.default_rng(7).standard_normal((2, 3, 5, 4)).astype(dtype)
    layer = Flatten(dtype=dtype)
    y = layer(x)
    np.testing.assert_array_equal(y, x.reshape(2, 60))
    assert layer.output_shape((3, 5, 4)) == (60,)
    np.testing.assert_array_equal(layer.backward(y), x)


# --- Dense --------------------------------------------------------------------------------------------------------

def dense_case(n, fan_in, fan_out, activation):
    for seed in range(50):
        rng = np.random.default_rng(seed)
        layer = Dense(fan_in, fan_out, activation=activation, seed=seed, dtype=np.float64)
        _random_bias(layer, rng)
        x = rng.standard_normal((n, fan_in))
        pre = x @ layer.params["W"] + layer.params["b"]
        if activation is None or (_min_distance_to_zero(pre) > KINK_MARGIN and (pre > 0).any()):
            return layer, x, pre
    raise AssertionError("no seed gave pre-activations away from 0")  # pragma: no cover


@pytest.mark.parametrize("activation", [None, "relu"])
@pytest.mark.parametrize("n, fan_in, fan_out", [(1, 1, 1), (1, 7, 3), (3, 5, 1), (4, 6, 8), (7, 16, 8)])
def test_dense_gradients(n, fan_in, fan_out, activation):
    """Widths that are whole float64 vectors (8) go through cycnn's own product kernel, the others numpy's."""
    layer, x, pre = dense_case(n, fan_in, fan_out, activation)
    if activation == "relu" and pre.size > 4:
        assert (pre > 0).any() and (pre < 0).any()
    check_layer_gradients(layer, x)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", [None, "relu"])
@pytest.mark.parametrize("fan_in, fan_out", [(6, 4), (40, 32)])
def test_dense_forward_is_x_times_w_in_out_plus_b(activation, dtype, fan_in, fan_out):
    layer = Dense(fan_in, fan_out, activation=activation, seed=8, dtype=dtype)
    assert layer.params["W"].shape == (fan_in, fan_out) and layer.params["b"].shape == (fan_out,)
    _random_bias(layer, np.random.default_rng(8))
    x = np.random.default_rng(9).standard_normal((5, fan_in))
    expected = x @ layer.params["W"].astype(np.float64) + layer.params["b"]
    if activation == "relu":
        expected = np.maximum(expected, 0)
    y = layer(x)
    assert y.dtype == dtype
    np.testing.assert_allclose(y, expected, **TOL[dtype])


# --- Dropout ------------------------------------------------------------------------------------------------------

def test_dropout_gradients_with_a_fixed_mask():
    layer = Dropout(0.3, dtype=np.float64)

    def same_mask():
        layer.rng = np.random.default_rng(10)

    x = np.random.default_rng(11).standard_normal((3, 40))
    same_mask()
    y = layer(x)
    dropped = y == 0
    assert 0 < dropped.mean() < 0.6  # some units dropped, most kept
    np.testing.assert_allclose(y[~dropped], x[~dropped] / 0.7, rtol=1e-12)
    layer.backward(np.ones_like(y))
    check_layer_gradients(layer, x, before_forward=same_mask)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_is_identity_in_eval_mode(dtype):
    layer = Dropout(0.5, seed=12, dtype=dtype)
    layer.training = False
    x = np.random.default_rng(12).standard_normal((4, 9)).astype(dtype)
    np.testing.assert_array_equal(layer(x), x)
    np.testing.assert_array_equal(layer.backward(x), x)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_keeps_the_expected_value(dtype):
    layer = Dropout(0.25, seed=13, dtype=dtype)
    y = layer(np.ones((200, 500), dtype=dtype))
    assert set(np.unique(y)) == {0, dtype(1 / 0.75)}
    assert abs((y == 0).mean() - 0.25) < 0.01
    assert abs(y.mean() - 1) < 0.02


# --- SoftmaxCrossEntropy ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n, k", [(1, 2), (1, 10), (5, 3), (7, 10)])
def test_softmax_cross_entropy_gradient(n, k):
    rng = np.random.default_rng(14)
    logits = rng.standard_normal((n, k)) * 3
    labels = rng.integers(0, k, n)
    loss_fn = SoftmaxCrossEntropy()
    loss = loss_fn(logits, labels)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    assert loss == pytest.approx(-log_probs[np.arange(n), labels].mean(), rel=1e-12)
    analytic = loss_fn.backward()
    assert_gradients_match(numeric_gradient(lambda: loss_fn(logits, labels), logits), analytic,
                           "SoftmaxCrossEntropy logits gradient")


def test_softmax_cross_entropy_is_stable_for_huge_logits():
    loss_fn = SoftmaxCrossEntropy()
    loss = loss_fn(np.array([[1000.0, 0.0, -1000.0], [0.0, 1000.0, 0.0]]), np.array([0, 0]))
    assert loss == pytest.approx(500.0)
    assert np.isfinite(loss_fn.backward()).all()


# --- the whole network --------------------------------------------------------------------------------------------

def tiny_network(seed, in_channels, kernel):
    """conv(relu) -> pool -> flatten -> dense(relu) -> dropout -> dense, float32 converted to float64.

    Sequential runs the conv+pool pair fused (cycnn.nn.fused): with few taps per output pixel (2 channels x 3x2)
    as a direct convolution, with more (4 channels x 3x3) through im2col; both are checked here.
    """
    layers = [Conv2D(in_channels, 3, kernel, stride=1, padding=1, activation="relu", seed=seed),
              MaxPool2D(2), Flatten(), Dense(27, 5, activation="relu", seed=seed + 1), Dropout(0.2),
              Dense(5, 3, seed=seed + 2)]
    model = Sequential(layers, input_shape=(in_channels, 7, 6)).astype(np.float64)
    rng = np.random.default_rng(seed)
    for layer in (layers[0], layers[3], layers[5]):
        _random_bias(layer, rng)
    return model


def network_is_away_from_kinks(model, x):
    conv, pool, _, dense = model.layers[:4]
    pre_conv = conv_reference(x, conv.params["W"], conv.params["b"], conv.stride, conv.padding)
    if _min_distance_to_zero(pre_conv) <= KINK_MARGIN:
        return False
    relu_out = np.maximum(pre_conv, 0)
    (ph, pw), (sh, sw) = pool.pool_size, pool.stride
    oh, ow = (relu_out.shape[2] - ph) // sh + 1, (relu_out.shape[3] - pw) // sw + 1
    for r, s in itertools.product(range(oh), range(ow)):
        window = relu_out[:, :, r * sh:r * sh + ph, s * sw:s * sw + pw].reshape(*relu_out.shape[:2], -1)
        top2 = np.sort(window, axis=2)[:, :, -2:]
        winners_positive = top2[:, :, 1] > 0
        if (winners_positive & (top2[:, :, 1] - top2[:, :, 0] <= KINK_MARGIN)).any():
            return False
    pooled = maxpool_reference(relu_out, *pool.pool_size, *pool.stride)[0].reshape(len(x), -1)
    return _min_distance_to_zero(pooled @ dense.params["W"] + dense.params["b"]) > KINK_MARGIN


@pytest.mark.parametrize("in_channels, kernel", [(2, (3, 2)), (4, (3, 3))], ids=["12-taps", "36-taps"])
def test_sequential_gradients_of_a_tiny_network(in_channels, kernel):
    for seed in range(50):
        model = tiny_network(seed, in_channels, kernel)
        x = np.random.default_rng(seed).standard_normal((2, in_channels, 7, 6))
        if network_is_away_from_kinks(model, x):
            break
    else:  # pragma: no cover
        raise AssertionError("no seed gave a network away from kinks")
    assert model.dtype == np.float64
    labels = np.array([0, 2])
    loss_fn = SoftmaxCrossEntropy()
    dropout = model.layers[4]

    def loss():
        dropout.rng = np.random.default_rng(15)  # the same dropout mask on every pass
        return loss_fn(model.forward(x), labels)

    loss()
    dx = model.backward(loss_fn.backward(), input_grad=True)
    analytic = {key: grad.copy() for key, _, grad in model.parameters()}
    assert len(analytic) == 6
    assert_gradients_match(numeric_gradient(loss, x), dx, "network input gradient")
    for key, param, _ in model.parameters():
        assert_gradients_match(numeric_gradient(loss, param), analytic[key], f"network parameter {key}")


# --- construction and config --------------------------------------------------------------------------------------

@pytest.mark.parametrize("layer", [
    Conv2D(3, 4, (2, 3), stride=2, padding=1, activation="relu"), MaxPool2D((2, 3), (1, 2)), ReLU(), Flatten(),
    Dense(5, 2, activation="relu"), Dropout(0.3)], ids=lambda layer: type(layer).__name__)
def test_config_rebuilds_the_layer(layer):
    rebuilt = LAYER_TYPES[type(layer).__name__](**layer.get_config())
    assert rebuilt.get_config() == layer.get_config()
    assert {k: v.shape for k, v in rebuilt.params.items()} == {k: v.shape for k, v in layer.params.items()}


@pytest.mark.parametrize("make", [
    lambda: Conv2D(0, 4, 3), lambda: Conv2D(1, 4, 3, stride=0), lambda: Conv2D(1, 4, (3, 3, 3)),
    lambda: Conv2D(1, 4, 3, padding=-1), lambda: Conv2D(1, 4, 3, activation="tanh"), lambda: Dense(3, -1),
    lambda: MaxPool2D(0), lambda: Dropout(1.0), lambda: Dropout(-0.1), lambda: Dense(2, 2, dtype=np.int32)])
def test_bad_layer_arguments_raise_config_error(make):
    with pytest.raises(ConfigError):
        make()


def test_shape_errors_raise_architecture_error():
    with pytest.raises(ArchitectureError, match="larger than its input"):
        Conv2D(1, 2, 5).output_shape((1, 4, 4))
    with pytest.raises(ArchitectureError, match="input channels"):
        Conv2D(3, 2, 3)(np.zeros((1, 2, 5, 5)))
    with pytest.raises(ArchitectureError, match="larger than its input"):
        MaxPool2D(3)(np.zeros((1, 1, 2, 5)))
    with pytest.raises(ArchitectureError, match=r"\(4,\)"):
        Dense(4, 2)(np.zeros((3, 5)))
