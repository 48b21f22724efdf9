"""Datasets (IDX files, the bundled MNIST, input scaling) and the MNIST-style preprocessing of digit images."""
import gzip

import numpy as np
import pytest
from PIL import Image

from cycnn.data.idx import read_idx
from cycnn.data.datasets import to_input
from cycnn.errors import DataError, ImageError
from cycnn.data.images import load_image, mnist_style, prepare_digit

IDX_TYPES = [(0x08, ">u1"), (0x09, ">i1"), (0x0B, ">i2"), (0x0C, ">i4"), (0x0D, ">f4"), (0x0E, ">f8")]


def idx_bytes(array, type_code):
    """IDX encoding: 0, 0, type, rank, each dimension as big-endian uint32, then big-endian data in C order."""
    header = bytes([0, 0, type_code, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array).tobytes()


# --- IDX ----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("compressed", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize("type_code, big_endian", IDX_TYPES, ids=[t for _, t in IDX_TYPES])
def test_read_idx_round_trip(tmp_path, type_code, big_endian, compressed):
    rng = np.random.default_rng(type_code)
    values = rng.integers(-100, 100, (3, 4, 5)) if big_endian[1] != "u" else rng.integers(0, 256, (3, 4, 5))
    if big_endian[1] == "f":
        values = values + rng.random((3, 4, 5))
    array = values.astype(big_endian)
    data = idx_bytes(array, type_code)
    path = tmp_path / "data.idx"  # no .gz suffix: gzip is recognised by its content
    path.write_bytes(gzip.compress(data) if compressed else data)
    result = read_idx(path)
    assert result.shape == (3, 4, 5)
    assert result.dtype == np.dtype(big_endian).newbyteorder("=")  # native byte order, ready for arithmetic
    np.testing.assert_array_equal(result, values.astype(big_endian))


def test_read_idx_one_dimensional_labels(tmp_path):
    labels = np.array([5, 0, 4, 1, 9], dtype=np.uint8)
    path = tmp_path / "labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(labels, 0x08)))
    np.testing.assert_array_equal(read_idx(path), labels)


@pytest.mark.parametrize("data, message", [
    (b"\x00\x00\x08", "too short"),
    (b"\x01\x00\x08\x01" + (2).to_bytes(4, "big") + b"ab", "magic"),
    (b"\x00\x00\x07\x01" + (2).to_bytes(4, "big") + b"ab", "data type"),
    (b"\x00\x00\x08\x02" + (2).to_bytes(4, "big"), "truncated header"),
    (b"\x00\x00\x08\x01" + (3).to_bytes(4, "big") + b"ab", "size disagrees"),
    (b"\x00\x00\x08\x01" + (1).to_bytes(4, "big") + b"ab", "size disagrees"),
], ids=["short", "magic", "type", "header", "truncated", "trailing"])
def test_read_idx_rejects_bad_files(tmp_path, data, message):
    path = tmp_path / "bad.idx"
    path.write_bytes(data)
    with pytest.raises(DataError, match=message):
        read_idx(path)


def test_read_idx_rejects_damaged_gzip_and_missing_files(tmp_path):
    path = tmp_path / "bad.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros(100, np.uint8), 0x08))[:-12])
    with pytest.raises(DataError, match="gzip"):
        read_idx(path)
    with pytest.raises(DataError, match="cannot read"):
        read_idx(tmp_path / "missing.idx")


# --- bundled MNIST ------------------------------------------------------------------------------------------------

def test_bundled_mnist_shapes_and_types(mnist):
    x_train, y_train, x_test, y_test = mnist
    assert x_train.shape == (60000, 28, 28) and x_train.dtype == np.uint8
    assert x_test.shape == (10000, 28, 28) and x_test.dtype == np.uint8
    assert y_train.shape == (60000,) and y_test.shape == (10000,)
    assert y_train.dtype == np.int64 and y_test.dtype == np.int64


def test_bundled_mnist_labels(mnist):
    _, y_train, _, y_test = mnist
    assert y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert y_test[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert np.bincount(y_train).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert np.bincount(y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.mark.slow
def test_bundled_mnist_pixels(mnist):
    """Mean 33.318 and std 78.567 (0.1307 and 0.3081 of 255), from the histogram to avoid a 376 MB float copy."""
    counts = np.bincount(mnist[0].ravel(), minlength=256)
    assert counts[0] > 0 and counts[255] > 0 and len(counts) == 256
    values = np.arange(256)
    mean = counts @ values / counts.sum()
    std = np.sqrt(counts @ (values - mean) ** 2 / counts.sum())
    assert mean == pytest.approx(33.318, abs=1e-3)
    assert std == pytest.approx(78.567, abs=1e-3)


def test_to_input_scales_to_unit_float32_nchw():
    images = np.array([[[0, 255], [128, 51]]], dtype=np.uint8)
    x = to_input(images)
    assert x.shape == (1, 1, 2, 2) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, 0], [[0, 1], [128 / 255, 0.2]], rtol=1e-6)
    assert to_input(np.zeros((3, 1, 4, 4), np.uint8)).shape == (3, 1, 4, 4)
    assert images[0, 0, 1] == 255  # the caller's array is untouched


def test_to_input_matches_on_mnist(mnist):
    x = to_input(mnist[2][:100])
    assert x.shape == (100, 1, 28, 28)
    assert float(x.max()) == 1.0 and float(x.min()) == 0.0
    np.testing.assert_allclose(x[:, 0] * 255, mnist[2][:100], atol=1e-4)


# --- digit images -------------------------------------------------------------------------------------------------

def centre_of_mass(image):
    rows, cols = np.indices(image.shape)
    return (rows * image).sum() / image.sum(), (cols * image).sum() / image.sum()


def test_prepare_digit_is_mnist_style(digit_png):
    """A dark "0" on light paper, off-centre in a 160x200 picture, becomes a 28x28 white-on-black digit that
    fills (but stays inside) the central 20x20 box, with its centre of mass at the centre."""
    image = prepare_digit(digit_png)
    assert image.shape == (28, 28) and image.dtype == np.float32
    assert image.min() >= 0 and image.max() <= 1 and image.max() > 0.9
    assert image[0].max() == 0 and image[:, 0].max() == 0  # black background
    ink = np.argwhere(image > 0)
    assert ink.min(axis=0).tolist() >= [4, 4] and ink.max(axis=0).tolist() <= [23, 23]
    assert ink[:, 0].max() - ink[:, 0].min() + 1 == 20  # the taller side is scaled to 20 pixels
    assert image[13:15, 13:15].max() < 0.1  # the hole of the 0 is dark: ink was not filled in or inverted
    r, c = centre_of_mass(image)
    assert abs(r - 13.5) <= 1 and abs(c - 13.5) <= 1


def test_top_heavy_digit_is_centred_by_mass(tmp_path, draw_digit):
    path = tmp_path / "seven.png"
    draw_digit("seven").save(path)
    image = prepare_digit(path)
    r, c = centre_of_mass(image)
    assert abs(r - 13.5) <= 1 and abs(c - 13.5) <= 1
    ink = np.argwhere(image > 0)
    assert max(ink.max(axis=0) - ink.min(axis=0) + 1) == 20


def _variants(gray):
    """The same drawing as RGB, RGBA (ink opaque on transparent paper), palette and 16-bit grayscale images."""
    a = np.asarray(gray)
    rgba = np.zeros((*a.shape, 4), dtype=np.uint8)
    rgba[..., 3] = 255 - a  # black ink with alpha = darkness; transparent paper shows white
    return {"RGB": gray.convert("RGB"), "RGBA": Image.fromarray(rgba), "P": gray.convert("P"),
            "I;16": Image.fromarray(a.astype(np.uint16) * 257)}


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P", "I;16"])
def test_other_image_modes_give_the_same_digit(tmp_path, draw_digit, mode):
    gray = draw_digit("seven")
    gray.save(tmp_path / "gray.png")
    reference = prepare_digit(tmp_path / "gray.png")
    variant = _variants(gray)[mode]
    assert variant.mode == mode
    path = tmp_path / f"variant-{mode.replace(';', '')}.png"
    variant.save(path)
    with Image.open(path) as reopened:
        assert reopened.mode == mode  # the file really is in that mode
    np.testing.assert_allclose(prepare_digit(path), reference, atol=0.02)


def test_light_ink_on_dark_paper_is_not_inverted(tmp_path, draw_digit):
    dark = draw_digit("seven")
    light = draw_digit("seven", ink=255, paper=0)
    np.testing.assert_allclose(mnist_style(np.asarray(light) / 255.0), mnist_style(np.asarray(dark) / 255.0),
                               atol=1e-6)


def test_blank_and_non_image_files_raise_image_error(tmp_path):
    blank = tmp_path / "blank.png"
    Image.new("L", (40, 40), 255).save(blank)
    with pytest.raises(ImageError, match="blank"):
        prepare_digit(blank)
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(ImageError, match="not an image"):
        load_image(text)
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "missing.png")
