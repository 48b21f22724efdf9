"""``cycnn.data.preparation``: how an image file becomes a model input (issue 14), checked against plain PIL and
numpy references: the recipe's validation, the centre crop and Lanczos resize, pictures of any size and mode, the
digit recipe, the preparation a model file records, and the training set's channel statistics."""
import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from cycnn.data.images import load_rgb, prepare_digit
from cycnn.data.preparation import DIGIT, Preparation, channel_statistics, for_model, is_colour, resize
from cycnn.errors import ConfigError
from cycnn.io import architecture
from cycnn.io.model_file import load_model, save_model

LANCZOS = Image.Resampling.LANCZOS


def encode(image, fmt="PNG", **options):
    """A Pillow image (or a uint8 array) as the bytes of an image file."""
    image = Image.fromarray(image) if isinstance(image, np.ndarray) else image
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def pil_resized(channel, height, width):
    """One uint8 channel (H, W) Lanczos-resized by Pillow to (height, width), on the [0, 1] scale (float32)."""
    return np.asarray(Image.fromarray(channel).resize((width, height), LANCZOS), dtype=np.float32) / 255


def small_model(channels, height, width, metadata=None):
    spec = architecture.stack([2], [3], 2, [], [], input_shape=(channels, height, width), num_classes=2)
    model = architecture.build(spec, seed=0)
    model.metadata = {} if metadata is None else metadata
    return model


# --- validation -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fields", [
    {"recipe": "banana"}, {"recipe": ""}, {"recipe": None}, {"recipe": "DIGIT"}, {"recipe": ["digit"]},
    {"recipe": "resize", "channels": 2}, {"recipe": "resize", "channels": 0}, {"recipe": "resize", "channels": 4},
    {"recipe": "resize", "channels": True}, {"channels": True}, {"recipe": "resize", "channels": "3"},
    {"height": 3}, {"height": 1025}, {"height": 0}, {"height": -28}, {"height": True}, {"height": 28.0},
    {"height": "28"}, {"width": 3}, {"width": 1025}, {"width": False}, {"width": 28.5}, {"width": None},
    {"recipe": "digit", "channels": 3}, {"channels": 3}], ids=repr)
def test_a_bad_field_is_refused(fields):
    with pytest.raises(ConfigError):
        Preparation(**fields)


@pytest.mark.parametrize("channels", [1.0, 3.0])
def test_a_float_channel_count_is_refused(channels):
    with pytest.raises(ConfigError):
        Preparation("resize", channels, 32, 32)


@pytest.mark.parametrize("fields", [("digit", 1, 28, 28), ("digit", 1, 4, 1024), ("resize", 1, 1024, 4),
                                    ("resize", 3, 32, 32), ("resize", 3, 17, 61)])
def test_good_fields_are_kept(fields):
    preparation = Preparation(*fields)
    assert (preparation.recipe, *preparation.input_shape) == fields
    assert Preparation.from_dict(preparation.to_dict()) == preparation
    assert preparation.to_dict() == dict(zip(("recipe", "channels", "height", "width"), fields))


def test_the_default_is_mnist():
    assert Preparation() == DIGIT and DIGIT.input_shape == (1, 28, 28) and DIGIT.recipe == "digit"


GOOD = {"recipe": "resize", "channels": 3, "height": 32, "width": 32}


@pytest.mark.parametrize("data", [
    {**GOOD, "mean": [0.5]}, {k: v for k, v in GOOD.items() if k != "width"}, {}, None, [], "resize", 3,
    list(GOOD.items()), {**GOOD, "recipe": "crop"}, {**GOOD, "channels": 2}, {**GOOD, "height": 2000},
    {**GOOD, "width": "32"}, {**GOOD, "recipe": "digit"}], ids=repr)
def test_from_dict_refuses_extra_missing_and_bad_values(data):
    with pytest.raises(ConfigError, match="^m.npz: "):
        Preparation.from_dict(data, source="m.npz")


# --- the resize recipe: centre crop and Lanczos ---------------------------------------------------------------------

@pytest.mark.parametrize("tall", [False, True], ids=["wide", "tall"])
def test_resize_keeps_the_centre_square_of_a_40x20_picture(tall):
    """A 40-wide, 20-high picture to 10x10 keeps columns 10 to 29 (rows for the tall one): exactly Pillow's Lanczos
    of that square, and none of the white margins (the centre is dark) leaks in."""
    rng = np.random.default_rng(0)
    picture = np.full((20, 40), 255, np.uint8)
    picture[:, 10:30] = rng.integers(0, 100, (20, 20))
    picture = picture.T.copy() if tall else picture
    centre = picture[10:30] if tall else picture[:, 10:30]
    out = resize(picture[..., None].astype(np.float64) / 255, 10, 10)
    assert out.shape == (1, 10, 10) and out.dtype == np.float32
    np.testing.assert_array_equal(out[0], pil_resized(centre, 10, 10))
    assert out.max() < 0.6  # a squashed or uncropped picture would show its white margins
    squashed = pil_resized(picture, 10, 10)
    assert np.abs(squashed - out[0]).max() > 0.2


def test_prepare_crops_every_channel_alike():
    rng = np.random.default_rng(1)
    picture = rng.integers(0, 256, (20, 40, 3), dtype=np.uint8)
    out = Preparation("resize", 3, 10, 10).prepare(encode(picture))
    assert out.shape == (3, 10, 10) and out.dtype == np.float32
    for c in range(3):
        np.testing.assert_array_equal(out[c], pil_resized(np.ascontiguousarray(picture[:, 10:30, c]), 10, 10))


def test_a_picture_of_the_target_shape_is_resized_whole():
    rng = np.random.default_rng(2)
    picture = rng.integers(0, 256, (30, 90), dtype=np.uint8)
    out = Preparation("resize", 1, 8, 24).prepare(encode(picture))
    np.testing.assert_array_equal(out[0], pil_resized(picture, 8, 24))


def extent(dark):
    rows, cols = np.flatnonzero(dark.any(axis=1)), np.flatnonzero(dark.any(axis=0))
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


@pytest.mark.parametrize("size", [(90, 30), (30, 90)])
def test_a_circle_stays_round(size):
    """No squashing: a disc in a 3:1 picture is as tall as it is wide after the resize to 16x16."""
    image = Image.new("L", size, 255)
    w, h = size
    ImageDraw.Draw(image).ellipse((w / 2 - 12, h / 2 - 12, w / 2 + 12, h / 2 + 12), fill=0)
    out = Preparation("resize", 1, 16, 16).prepare(encode(image))[0]
    height, width = extent(out < 0.5)
    assert abs(height - width) <= 1 and 11 <= height <= 14  # 24 of 30 pixels -> about 13 of 16


@pytest.mark.parametrize("size", [(5, 3), (3, 5), (1, 1), (300, 200), (33, 17)])
def test_pictures_of_any_size_are_resized(size):
    picture = np.random.default_rng(3).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    out = Preparation("resize", 3, 12, 20).prepare(encode(picture))
    assert out.shape == (3, 12, 20) and out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1


# --- modes ------------------------------------------------------------------------------------------------------------

def test_transparency_shows_as_white():
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[..., :3] = (200, 30, 0)
    rgba[:5, :, 3] = 255  # the top half opaque, the bottom half transparent (its colour must not show)
    rgba[5:, :, :3] = (0, 0, 255)
    rgba[:, 9, 3] = 128  # a half-transparent column over white paper
    out = Preparation("resize", 3, 10, 10).prepare(encode(Image.fromarray(rgba, "RGBA")))
    np.testing.assert_allclose(out[:, 0, 0], np.array([200, 30, 0]) / 255, atol=1e-7)
    np.testing.assert_array_equal(out[:, 7, :9], 1)
    expected = (np.array([200, 30, 0]) * 128 + 255 * 127) / 255 / 255
    np.testing.assert_allclose(out[:, 2, 9], expected, atol=1.5 / 255)


def test_gray_with_alpha_gives_equal_channels_and_white_paper():
    la = np.zeros((8, 8, 2), np.uint8)
    la[..., 0], la[:4, :, 1] = 60, 255
    out = Preparation("resize", 3, 8, 8).prepare(encode(Image.fromarray(la, "LA")))
    np.testing.assert_allclose(out[:, 0, 0], 60 / 255, atol=1e-7)
    np.testing.assert_array_equal(out[:, 6], 1)
    assert np.ptp(out, axis=0).max() == 0


def test_a_palette_picture_keeps_its_colours():
    index = np.zeros((8, 8), np.uint8)
    index[:, 4:] = 1
    image = Image.fromarray(index, "P")
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    data = encode(image)
    assert Image.open(io.BytesIO(data)).mode == "P"
    out = Preparation("resize", 3, 8, 8).prepare(data)
    np.testing.assert_array_equal(out[:, 0, 0], [1, 0, 0])
    np.testing.assert_array_equal(out[:, 0, 7], [0, 0, 1])
    assert is_colour(load_rgb(data))
    gray_palette = Image.fromarray(index, "P")
    gray_palette.putpalette([k // 3 for k in range(768)])
    assert not is_colour(load_rgb(encode(gray_palette)))


def test_16_bit_gray_is_stretched_to_its_range_in_three_equal_channels():
    data16 = (np.arange(100, dtype=np.uint16).reshape(10, 10) * 500 + 1000)
    data = encode(Image.fromarray(data16))
    assert Image.open(io.BytesIO(data)).mode.startswith("I;16")
    out = Preparation("resize", 3, 10, 10).prepare(data)
    stretched = (data16 - 1000) / (99 * 500)
    assert np.ptp(out, axis=0).max() == 0 and not is_colour(load_rgb(data))
    np.testing.assert_allclose(out[0], stretched, atol=0.5 / 255 + 1e-6)
    assert out.min() == 0 and out.max() == 1


def test_a_gray_jpeg_saved_as_rgb_is_not_colour_and_a_colour_jpeg_is():
    rng = np.random.default_rng(4)
    gray = np.repeat(rng.integers(0, 256, (32, 32, 1), dtype=np.uint8), 3, axis=2)
    data = encode(gray, "JPEG", quality=85)
    assert Image.open(io.BytesIO(data)).mode == "RGB"
    assert not is_colour(load_rgb(data))
    colour = np.zeros((32, 32, 3), np.uint8)
    colour[:, :16] = (220, 40, 40)
    colour[:, 16:] = (40, 40, 220)
    assert is_colour(load_rgb(encode(colour, "JPEG", quality=85)))


def test_is_colour_has_a_threshold_of_8_levels():
    picture = np.full((4, 4, 3), 0.5)
    picture[2, 2, 1] += 7 / 255
    assert not is_colour(picture)
    picture[2, 2, 1] += 2 / 255
    assert is_colour(picture)


def test_a_colour_file_given_one_channel_is_converted_to_gray():
    picture = np.random.default_rng(5).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    data = encode(picture)
    out = Preparation("resize", 1, 12, 16).prepare(data)
    assert out.shape == (1, 12, 16)
    gray = np.asarray(Image.open(io.BytesIO(data)).convert("L"), dtype=np.float32) / 255
    np.testing.assert_array_equal(out[0], gray)


def test_a_gray_file_given_three_channels_gets_three_equal_ones():
    picture = np.random.default_rng(6).integers(0, 256, (30, 20), dtype=np.uint8)
    data = encode(picture)
    colour, gray = Preparation("resize", 3, 9, 9).prepare(data), Preparation("resize", 1, 9, 9).prepare(data)
    assert colour.shape == (3, 9, 9)
    for c in range(3):
        np.testing.assert_array_equal(colour[c], gray[0])
    np.testing.assert_array_equal(gray[0], pil_resized(np.ascontiguousarray(picture[5:25]), 9, 9))


# --- the digit recipe -------------------------------------------------------------------------------------------------

def test_the_digit_recipe_at_28x28_is_prepare_digit(digit_png):
    out = Preparation("digit", 1, 28, 28).prepare(digit_png)
    assert out.shape == (1, 28, 28) and out.dtype == np.float32
    np.testing.assert_array_equal(out[0], prepare_digit(digit_png))
    np.testing.assert_array_equal(out, DIGIT.prepare(digit_png.read_bytes()))


def test_the_digit_recipe_at_16x16_is_the_28x28_digit_resized(digit_png):
    out = Preparation("digit", 1, 16, 16).prepare(digit_png)
    digit = np.rint(prepare_digit(digit_png) * 255).astype(np.uint8)
    assert out.shape == (1, 16, 16)
    np.testing.assert_array_equal(out[0], pil_resized(digit, 16, 16))
    assert out[0, 0, 0] < 0.05 and out.max() > 0.5  # still light ink on black


def test_the_digit_recipe_reads_a_colour_file_as_gray(draw_digit):
    gray = draw_digit("seven")
    tinted = Image.merge("RGB", [gray, gray, gray])
    np.testing.assert_array_equal(DIGIT.prepare(encode(tinted)), DIGIT.prepare(encode(gray)))


# --- the preparation a model file records --------------------------------------------------------------------------

def test_for_model_uses_the_stored_preparation(tmp_path):
    stored = Preparation("resize", 1, 12, 12)
    model = small_model(1, 12, 12, {"preparation": stored.to_dict()})
    assert for_model(model) == stored  # not the 1-channel default, the digit recipe
    save_model(model, tmp_path / "m.npz", metadata=model.metadata)
    assert for_model(load_model(tmp_path / "m.npz")) == stored


@pytest.mark.parametrize("stored", [Preparation("resize", 3, 16, 16), Preparation("resize", 1, 12, 12),
                                    Preparation("digit", 1, 12, 12)])
def test_a_stored_preparation_that_does_not_fit_the_model_is_refused(stored):
    model = small_model(3, 12, 12, {"preparation": stored.to_dict()})
    with pytest.raises(ConfigError, match="preparation"):
        for_model(model)


def test_a_damaged_stored_preparation_is_refused():
    model = small_model(3, 12, 12, {"preparation": {**Preparation("resize", 3, 12, 12).to_dict(), "extra": 1}})
    with pytest.raises(ConfigError):
        for_model(model)


@pytest.mark.parametrize("shape, expected", [((1, 28, 28), DIGIT), ((1, 16, 20), Preparation("digit", 1, 16, 20)),
                                             ((3, 12, 16), Preparation("resize", 3, 12, 16))])
@pytest.mark.parametrize("metadata", [{}, {"history": []}, None], ids=["empty", "other", "none"])
def test_a_model_without_a_stored_preparation_gets_the_default(shape, expected, metadata):
    model = small_model(*shape)
    model.metadata = metadata
    assert for_model(model) == expected


def test_a_model_of_two_channels_cannot_take_image_files():
    with pytest.raises(ConfigError, match="2 input channels"):
        for_model(small_model(2, 12, 12))


# --- channel statistics ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(7, 5, 6), (9, 3, 4, 5), (1500, 2, 3, 3)], ids=["gray", "colour", "chunked"])
def test_channel_statistics_are_numpys_mean_and_std(shape):
    rng = np.random.default_rng(7)
    images = rng.integers(0, 256, shape, dtype=np.uint8)
    mean, std = channel_statistics(images)
    x = images.astype(np.float64) / 255
    x = x[:, None] if x.ndim == 3 else x
    assert len(mean) == len(std) == x.shape[1] and all(type(v) is float for v in mean + std)
    np.testing.assert_allclose(mean, x.mean(axis=(0, 2, 3)), atol=1e-6)
    np.testing.assert_allclose(std, x.std(axis=(0, 2, 3)), atol=1e-6)


def test_a_flat_channel_gets_the_least_std():
    images = np.zeros((4, 3, 5, 5), np.uint8)
    images[:, 0] = 51
    images[:, 1] = np.arange(25).reshape(5, 5) * 10
    mean, std = channel_statistics(images)
    assert mean[0] == pytest.approx(0.2) and std[0] == 1e-3 and std[2] == 1e-3 and mean[2] == 0
    assert std[1] == pytest.approx(np.std(np.arange(25) * 10 / 255), abs=1e-6)
