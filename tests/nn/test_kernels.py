"""The Cython kernels, each against a slow plain-numpy loop written here, in float32 and float64, on odd shapes."""
import itertools

import numpy as np
import pytest

from cycnn.nn import _activation, _conv, _dense, _pool
from cycnn.data import _augment
from oracles import im2col_reference, maxpool_reference, out_size

DTYPES = [np.float32, np.float64]
TOL = {np.float32: dict(rtol=1e-5, atol=1e-5), np.float64: dict(rtol=1e-12, atol=1e-12)}

# (N, C, H, W): batch 1 and several channels, odd and non-square sizes.
CONV_CASES = [
    # kernel (kh, kw), stride, pad, input shape
    (k, stride, pad, shape)
    for (k, shape), stride, pad in itertools.product(
        [((1, 1), (1, 3, 5, 4)), ((3, 3), (2, 2, 7, 6)), ((5, 5), (1, 1, 9, 7)), ((2, 3), (2, 3, 6, 7))],
        [1, 2], [0, 1])
] + [((3, 3), 3, 2, (1, 2, 7, 8)), ((1, 1), 2, 3, (1, 1, 2, 3)), ((4, 2), 3, 3, (2, 1, 5, 4))]  # wide padding


def _ids(case):
    (kh, kw), stride, pad, shape = case
    return f"k{kh}x{kw}-s{stride}-p{pad}-{'x'.join(map(str, shape))}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV_CASES, ids=_ids)
def test_im2col_t_matches_loops(case, dtype):
    (kh, kw), stride, pad, shape = case
    x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    expected = im2col_reference(x, kh, kw, stride, pad).T
    cols_t = np.full(expected.shape, np.nan, dtype=dtype)  # every entry must be written, padding included
    _conv.im2col_t(x, kh, kw, stride, pad, cols_t)
    np.testing.assert_array_equal(cols_t, expected)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV_CASES, ids=_ids)
def test_col2im_t_matches_loops(case, dtype):
    (kh, kw), stride, pad, shape = case
    n, c, h, w = shape
    rows = n * out_size(h, kh, stride, pad) * out_size(w, kw, stride, pad)
    cols_t = np.random.default_rng(1).standard_normal((c * kh * kw, rows)).astype(dtype)
    cols = cols_t.T
    expected = np.zeros(shape, dtype=np.float64)
    ohw = out_size(w, kw, stride, pad)
    for row in range(rows):
        b, rest = divmod(row, rows // n)
        r, s = divmod(rest, ohw)
        for col in range(c * kh * kw):
            ch, ij = divmod(col, kh * kw)
            i, j = divmod(ij, kw)
            hh, ww = r * stride + i - pad, s * stride + j - pad
            if 0 <= hh < h and 0 <= ww < w:
                expected[b, ch, hh, ww] += cols[row, col]
    dx = np.full(shape, np.nan, dtype=dtype)  # col2im_t must zero its output first
    _conv.col2im_t(cols_t, kh, kw, stride, pad, dx)
    np.testing.assert_allclose(dx, expected, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV_CASES, ids=_ids)
def test_col2im_t_is_the_adjoint_of_im2col_t(case, dtype):
    """<im2col_t(x), y> == <x, col2im_t(y)> for random x and y."""
    (kh, kw), stride, pad, shape = case
    n, c, h, w = shape
    rng = np.random.default_rng(2)
    x = rng.standard_normal(shape).astype(dtype)
    rows = n * out_size(h, kh, stride, pad) * out_size(w, kw, stride, pad)
    y = rng.standard_normal((c * kh * kw, rows)).astype(dtype)
    cols = np.empty(y.shape, dtype=dtype)
    _conv.im2col_t(x, kh, kw, stride, pad, cols)
    back = np.empty_like(x)
    _conv.col2im_t(y, kh, kw, stride, pad, back)
    lhs = np.dot(cols.ravel().astype(np.float64), y.ravel().astype(np.float64))
    rhs = np.dot(x.ravel().astype(np.float64), back.ravel().astype(np.float64))
    scale = np.abs(cols).ravel() @ np.abs(y).ravel()
    assert abs(lhs - rhs) <= (1e-5 if dtype == np.float32 else 1e-12) * scale


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("n, f, p", [(1, 1, 1), (1, 3, 7), (2, 1, 5), (3, 4, 6)])
def test_rows_to_nchw_is_bias_relu_and_a_transpose(n, f, p, relu, dtype):
    rng = np.random.default_rng(3)
    rows = rng.standard_normal((n * p, f)).astype(dtype)
    bias = rng.standard_normal(f).astype(dtype)
    expected = (rows + bias).reshape(n, p, f).transpose(0, 2, 1)
    if relu:
        expected = np.maximum(expected, 0)
    y = np.full((n, f, p), np.nan, dtype=dtype)
    _conv.rows_to_nchw(rows, bias, relu, y)
    np.testing.assert_allclose(y, expected, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, f, p", [(1, 1, 1), (1, 3, 7), (2, 1, 5), (3, 4, 6)])
def test_nchw_to_rows_is_the_channels_last_transpose(n, f, p, dtype):
    x = np.random.default_rng(4).standard_normal((n, f, p)).astype(dtype)
    rows = np.full((n * p, f), np.nan, dtype=dtype)
    _conv.nchw_to_rows(x, rows)
    np.testing.assert_array_equal(rows, x.transpose(0, 2, 1).reshape(n * p, f))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("n, f, p", [(1, 1, 1), (1, 3, 7), (2, 1, 5), (3, 4, 6)])
def test_nchw_to_planes_is_the_channel_major_transpose_masked_by_relu(n, f, p, relu, dtype):
    rng = np.random.default_rng(4)
    dy = rng.standard_normal((n, f, p)).astype(dtype)
    y = np.maximum(rng.standard_normal((n, f, p)), 0).astype(dtype)  # a ReLU output: zero in about half the places
    expected = np.where(y > 0, dy, 0) if relu else dy
    planes = np.full((f, n * p), np.nan, dtype=dtype)
    _conv.nchw_to_planes(dy, y, relu, planes)
    np.testing.assert_array_equal(planes, expected.transpose(1, 0, 2).reshape(f, n * p))


@pytest.mark.parametrize("dtype", DTYPES)
def test_nchw_to_planes_refuses_mismatched_shapes(dtype):
    dy = np.zeros((2, 3, 5), dtype=dtype)
    with pytest.raises(ValueError, match="planes"):
        _conv.nchw_to_planes(dy, dy, True, np.zeros((3, 9), dtype=dtype))
    with pytest.raises(ValueError, match="planes"):
        _conv.nchw_to_planes(dy, np.zeros((2, 3, 4), dtype=dtype), True, np.zeros((3, 10), dtype=dtype))


# --- pooling ------------------------------------------------------------------------------------------------------

POOL_CASES = [
    # input (N, C, H, W), window (ph, pw), stride (sh, sw), expected output (OH, OW)
    ((1, 3, 11, 11), (2, 2), (2, 2), (5, 5)),
    ((2, 2, 9, 9), (3, 3), (2, 2), (4, 4)),
    ((1, 1, 7, 10), (2, 3), (2, 3), (3, 3)),
    ((2, 3, 8, 7), (3, 2), (1, 2), (6, 3)),
    ((1, 2, 5, 5), (1, 1), (1, 1), (5, 5)),
    ((1, 1, 4, 6), (4, 6), (1, 1), (1, 1)),
    ((1, 2, 8, 8), (2, 2), (3, 3), (3, 3)),  # stride larger than the window: some pixels are skipped
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, window, stride, out_hw", POOL_CASES)
def test_maxpool_forward_matches_loops(shape, window, stride, out_hw, dtype):
    x = np.random.default_rng(6).standard_normal(shape).astype(dtype)
    expected_y, expected_arg = maxpool_reference(x, *window, *stride)
    assert expected_y.shape[2:] == out_hw
    y = np.full(expected_y.shape, np.nan, dtype=dtype)
    arg = np.full(expected_y.shape, -1, dtype=np.int32)
    _pool.maxpool_forward(x, *window, *stride, y, arg)
    np.testing.assert_array_equal(y, expected_y)
    np.testing.assert_array_equal(arg, expected_arg)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, window, stride, out_hw", POOL_CASES)
def test_maxpool_backward_scatters_to_the_argmax(shape, window, stride, out_hw, dtype):
    rng = np.random.default_rng(7)
    x = rng.standard_normal(shape).astype(dtype)
    _, arg = maxpool_reference(x, *window, *stride)
    dy = rng.standard_normal(arg.shape).astype(dtype)
    n, c, h, w = shape
    expected = np.zeros(shape, dtype=np.float64)
    for b, ch, r, s in itertools.product(range(n), range(c), *map(range, arg.shape[2:])):
        expected[b, ch, arg[b, ch, r, s] // w, arg[b, ch, r, s] % w] += dy[b, ch, r, s]  # overlaps accumulate
    dx = np.full(shape, np.nan, dtype=dtype)
    _pool.maxpool_backward(dy, arg, dx)
    np.testing.assert_allclose(dx, expected, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_maxpool_ties_go_to_the_first_maximum(dtype):
    """Constant windows and repeated maxima: the argmax is the first one in row-major order."""
    x = np.zeros((1, 2, 4, 4), dtype=dtype)
    x[0, 1] = [[1, 3, 3, 0],
               [3, 2, 0, 0],
               [5, 1, 2, 5],
               [5, 5, 5, 2]]
    y = np.empty((1, 2, 2, 2), dtype=dtype)
    arg = np.empty((1, 2, 2, 2), dtype=np.int32)
    _pool.maxpool_forward(x, 2, 2, 2, 2, y, arg)
    np.testing.assert_array_equal(arg[0, 0], [[0, 2], [8, 10]])  # all zero: the top-left of each window
    np.testing.assert_array_equal(y[0, 1], [[3, 3], [5, 5]])
    np.testing.assert_array_equal(arg[0, 1], [[1, 2], [8, 11]])
    dx = np.empty_like(x)
    _pool.maxpool_backward(np.ones_like(y), arg, dx)
    assert dx[0, 1].sum() == 4 and dx[0, 1, 0, 1] == 1 and dx[0, 1, 1, 0] == 0  # one winner per window


# --- activation ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", [1, 7, 1000])
def test_relu_forward_and_backward(size, dtype):
    rng = np.random.default_rng(8)
    x = rng.standard_normal(size).astype(dtype)
    x[0] = 0  # the kink: output 0, gradient 0
    y = np.full_like(x, np.nan)
    _activation.relu_forward(x, y)
    np.testing.assert_array_equal(y, np.maximum(x, 0))
    dy = rng.standard_normal(size).astype(dtype)
    dx = np.full_like(x, np.nan)
    _activation.relu_backward(dy, y, dx)
    np.testing.assert_array_equal(dx, np.where(x > 0, dy, 0))


# --- augmentation -------------------------------------------------------------------------------------------------

def warp_reference(src, m):
    """Bilinear sampling at (a*r + b*c + tr, d*r + e*c + tc), reading 0 outside the image."""
    n, h, w = src.shape
    out = np.zeros(src.shape, dtype=np.float64)

    def at(b, r, c):
        return float(src[b, r, c]) if 0 <= r < h and 0 <= c < w else 0.0

    for b, r, c in itertools.product(range(n), range(h), range(w)):
        sr = m[b, 0, 0] * r + m[b, 0, 1] * c + m[b, 0, 2]
        sc = m[b, 1, 0] * r + m[b, 1, 1] * c + m[b, 1, 2]
        r0, c0 = int(np.floor(sr)), int(np.floor(sc))
        fr, fc = sr - r0, sc - c0
        out[b, r, c] = ((1 - fr) * ((1 - fc) * at(b, r0, c0) + fc * at(b, r0, c0 + 1))
                        + fr * ((1 - fc) * at(b, r0 + 1, c0) + fc * at(b, r0 + 1, c0 + 1)))
    return out


def _maps(*rows):
    return np.ascontiguousarray(np.array(rows, dtype=np.float64).reshape(-1, 2, 3))


@pytest.mark.parametrize("dtype", DTYPES)
def test_affine_warp_identity_reproduces_the_input_exactly(dtype):
    src = np.random.default_rng(9).random((2, 7, 9)).astype(dtype)
    dst = np.full_like(src, np.nan)
    _augment.affine_warp(src, _maps([1, 0, 0, 0, 1, 0], [1, 0, 0, 0, 1, 0]), dst)
    np.testing.assert_array_equal(dst, src)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dr, dc", [(2, 0), (0, -3), (1, 2), (-2, -1)])
def test_affine_warp_integer_shift_moves_pixels_and_fills_zero(dr, dc, dtype):
    """Sampling the source at (r - dr, c - dc) moves every pixel by (dr, dc); uncovered pixels become 0."""
    src = (np.random.default_rng(10).random((1, 6, 8)) + 0.5).astype(dtype)  # no zeros in the source
    dst = np.full_like(src, np.nan)
    _augment.affine_warp(src, _maps([1, 0, -dr, 0, 1, -dc]), dst)
    expected = np.zeros_like(src)
    h, w = src.shape[1:]
    expected[0, max(dr, 0):h + min(dr, 0), max(dc, 0):w + min(dc, 0)] = \
        src[0, max(-dr, 0):h + min(-dr, 0), max(-dc, 0):w + min(-dc, 0)]
    np.testing.assert_array_equal(dst, expected)
    assert (dst == 0).sum() == h * w - (h - abs(dr)) * (w - abs(dc))


@pytest.mark.parametrize("dtype", DTYPES)
def test_affine_warp_outside_the_image_is_zero(dtype):
    src = np.ones((1, 5, 5), dtype=dtype)
    dst = np.full_like(src, np.nan)
    _augment.affine_warp(src, _maps([1, 0, 100, 0, 1, -100]), dst)
    np.testing.assert_array_equal(dst, 0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_affine_warp_rotation_matches_bilinear_loops(dtype):
    rng = np.random.default_rng(11)
    src = rng.random((3, 9, 8)).astype(dtype)
    maps = []
    for angle, tr, tc in [(0.3, 1.2, -0.7), (-0.5, 2.5, 3.1), (1.7, 8.0, 0.4)]:
        cos, sin = np.cos(angle), np.sin(angle)
        maps.append([cos, sin, tr, -sin, cos, tc])
    m = _maps(*maps)
    dst = np.empty_like(src)
    _augment.affine_warp(src, m, dst)
    np.testing.assert_allclose(dst, warp_reference(src, m), **TOL[dtype])
    assert (dst == 0).any() and (dst > 0).any()


# --- dense products (src_ext/dense.h) ------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m, k, n", [(1, 1, 16), (5, 3, 16), (6, 7, 64), (13, 50, 80), (64, 200, 128),
                                     (7, 1, 48), (200, 64, 32)])
@pytest.mark.parametrize("layout", ["contiguous", "transposed", "reversed"])
def test_dense_product_matches_numpy(m, k, n, layout, dtype):
    """Row counts around the 6-row block, column counts of 1 to 5 vectors, A given as a transposed view or with
    negative strides (a reversed view)."""
    rng = np.random.default_rng(m * 1000 + k * 10 + n)
    a = rng.standard_normal((k, m)).astype(dtype).T if layout == "transposed" else \
        rng.standard_normal((m, k)).astype(dtype)
    if layout == "reversed":
        a = a[::-1, ::-1]
    b = rng.standard_normal((k, n)).astype(dtype)
    c = np.full((m, n), np.nan, dtype=dtype)
    _dense.dense_product(a, b, c)
    tol = 1e-5 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(c, a.astype(np.float64) @ b, rtol=tol, atol=tol * np.sqrt(k))


def test_dense_product_with_an_empty_inner_dimension_is_zero():
    c = np.full((4, 16), np.nan, dtype=np.float32)
    _dense.dense_product(np.empty((4, 0), np.float32), np.empty((0, 16), np.float32), c)
    assert np.array_equal(c, np.zeros((4, 16), np.float32))


@pytest.mark.parametrize("b_shape, c_shape, message", [((3, 17), (2, 17), "multiple of 16 columns"),
                                                        ((4, 16), (2, 16), "do not match"),
                                                        ((3, 16), (5, 16), "do not match")])
def test_dense_product_refuses_shapes_it_cannot_take(b_shape, c_shape, message):
    with pytest.raises(ValueError, match=message):
        _dense.dense_product(np.ones((2, 3), np.float32), np.ones(b_shape, np.float32), np.ones(c_shape, np.float32))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1), (3, 70), (33, 31), (1600, 128)])
def test_transpose_in_tiles(shape, dtype):
    src = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    dst = np.empty(shape[::-1], dtype=dtype)
    _dense.transpose(src, dst)
    assert np.array_equal(dst, src.T)
