"""The functional core on its own: each forward/backward pair against the numpy references and central
differences, called directly as a user of ``cycnn.nn.functional`` would (the layers' tests cover it through them)."""
import numpy as np
import pytest

from cycnn.nn import functional as F
from cycnn.nn import fused
from oracles import assert_gradients_match, conv_reference, maxpool_reference, numeric_gradient


def gradient_check(forward, backward, inputs, seed=0):
    """Check backward's gradients for f = sum(forward(*inputs) * R) against central differences."""
    y, cache = forward(*inputs)
    r = np.random.default_rng(seed).standard_normal(y.shape)
    analytic = backward(r, cache)
    analytic = analytic if isinstance(analytic, tuple) else (analytic,)

    def f():
        return float(np.sum(forward(*inputs)[0] * r))

    for array, grad in zip(inputs, analytic):
        assert_gradients_match(numeric_gradient(f, array), grad, f"gradient of an input of shape {array.shape}")


@pytest.mark.parametrize("stride, padding", [(1, 0), (2, 1)])
def test_conv2d_forward_and_backward(stride, padding):
    rng = np.random.default_rng(1)
    x, W, b = rng.standard_normal((2, 3, 7, 6)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    y, _ = F.conv2d_forward(x, W, b, stride, padding)
    np.testing.assert_allclose(y, conv_reference(x, W, b, stride, padding), rtol=1e-12, atol=1e-12)
    gradient_check(lambda x, W, b: F.conv2d_forward(x, W, b, stride, padding),
                   lambda dy, cache: F.conv2d_backward(dy, cache), [x, W, b])


def test_maxpool_dense_relu_and_dropout_forward_and_backward():
    rng = np.random.default_rng(2)
    x = rng.permutation(2 * 3 * 6 * 6).reshape(2, 3, 6, 6).astype(np.float64) / 10  # distinct: no ties
    y, _ = F.maxpool2d_forward(x, (2, 2), (2, 2))
    np.testing.assert_array_equal(y, maxpool_reference(x, 2, 2, 2, 2)[0])
    gradient_check(lambda x: F.maxpool2d_forward(x, (2, 2), (2, 2)), F.maxpool2d_backward, [x])
    a, W, b = rng.standard_normal((5, 4)) + 0.5, rng.standard_normal((4, 16)), rng.standard_normal(16)
    np.testing.assert_allclose(F.dense_forward(a, W, b)[0], a @ W + b, rtol=1e-12)
    gradient_check(lambda a, W, b: F.dense_forward(a, W, b), F.dense_backward, [a, W, b])
    z = rng.standard_normal((3, 8)) + np.sign(rng.standard_normal((3, 8)))  # away from the kink
    gradient_check(F.relu_forward, F.relu_backward, [z])
    kept, mask = F.dropout_forward(z, 0.5, np.random.default_rng(3))
    np.testing.assert_array_equal(F.dropout_backward(np.ones_like(z), mask), mask)
    assert F.dropout_forward(z, 0.5, None, training=False)[0] is z


@pytest.mark.parametrize("channels", [1, 8, 120])  # direct (9 and 72 taps), and the im2col path (1080 taps)
def test_conv_relu_maxpool_is_the_three_functions_in_a_row(channels):
    rng = np.random.default_rng(4)
    x, W, b = rng.standard_normal((2, channels, 10, 10)), rng.standard_normal((5, channels, 3, 3)), rng.random(5)
    path = fused.fused_path(W, 1, (2, 2), (2, 2))
    assert path == ("direct" if channels < 120 else "im2col")
    y, cache = fused.conv_relu_maxpool_forward(x, W, b, 1, 0, (2, 2), (2, 2))
    conv, conv_cache = F.conv2d_forward(x, W, b, 1, 0, relu=True)
    pooled, pool_cache = F.maxpool2d_forward(conv, (2, 2), (2, 2))
    np.testing.assert_allclose(y, pooled, rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    dx, dW, db = fused.conv_relu_maxpool_backward(dy, cache)
    ref = F.conv2d_backward(F.maxpool2d_backward(dy, pool_cache), conv_cache)
    for got, want in zip((dx, dW, db), ref):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
