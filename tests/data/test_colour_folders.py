"""Image folders in colour (issue 14): which preparation a folder gets, the images it makes (against Pillow), what
is refused, the datasets' preparation, and colour augmentation (one image's channels move together, the flip)."""
import numpy as np
import pytest
from PIL import Image

from cycnn.data import _augment
from cycnn.data.augment import random_affine
from cycnn.data.datasets import input_shape_of, load_data
from cycnn.data.image_folder import choose_preparation, load_image_folder, split_files
from cycnn.data.images import prepare_digit
from cycnn.data.preparation import DIGIT, Preparation
from cycnn.errors import ConfigError, DataError, ImageError

from cli_runner import write_tiny_dataset  # tests/cli_runner.py
from colour_pictures import colour_only, shapes  # tests/colour_pictures.py

LANCZOS = Image.Resampling.LANCZOS


def pil_prepared(path, mode, height, width):
    """A picture as the resize recipe should make it, by Pillow alone: converted to ``mode``, centre-cropped to
    height:width, each channel Lanczos-resized; uint8 (C, height, width)."""
    image = Image.open(path).convert(mode)
    w, h = image.size
    if h * width > w * height:
        keep = round(w * height / width)
        image = image.crop((0, (h - keep) // 2, w, (h - keep) // 2 + keep))
    else:
        keep = round(h * width / height)
        image = image.crop(((w - keep) // 2, 0, (w - keep) // 2 + keep, h))
    return np.stack([np.asarray(band.resize((width, height), LANCZOS)) for band in image.split()])


@pytest.fixture
def gray_folder(tmp_path, draw_digit):
    """Two classes of gray digits (mode L) of different sizes, three each."""
    for shape in ("zero", "seven"):
        (tmp_path / shape).mkdir()
        for i in range(3):
            draw_digit(shape, size=(160 + 20 * i, 200 - 10 * i)).save(tmp_path / shape / f"{i}.png")
    return tmp_path


@pytest.fixture
def colour_folder(tmp_path):
    return colour_only(tmp_path / "colours", per_class=3)


def check_pictures(images, entries, mode, height, width):
    assert len(images) == len(entries)
    for image, (path, _) in zip(images, entries):
        expected = pil_prepared(path, mode, height, width)
        np.testing.assert_array_equal(image, expected if mode == "RGB" else expected[0], err_msg=path)


# --- which preparation a folder gets -------------------------------------------------------------------------------

def test_a_gray_folder_is_prepared_the_digit_way(gray_folder):
    x_train, y_train, x_test, y_test, names, preparation = load_image_folder(gray_folder)
    assert preparation == DIGIT and names == ["seven", "zero"]
    assert x_train.dtype == np.uint8 and x_train.shape == (4, 28, 28) and x_test.shape == (2, 28, 28)
    _, train, test = split_files(gray_folder)
    for image, (path, label) in zip(np.concatenate([x_train, x_test]), train + test):
        np.testing.assert_array_equal(image, np.rint(prepare_digit(path) * 255))
    assert list(y_train) + list(y_test) == [label for _, label in train + test]


def test_a_colour_folder_is_resized_in_colour_to_32x32(colour_folder):
    x_train, _, x_test, _, names, preparation = load_image_folder(colour_folder)
    assert preparation == Preparation("resize", 3, 32, 32) and names == ["blue", "green", "red"]
    assert x_train.dtype == np.uint8 and x_train.shape == (6, 3, 32, 32) and x_test.shape == (3, 3, 32, 32)
    _, train, test = split_files(colour_folder)
    check_pictures(np.concatenate([x_train, x_test]), train + test, "RGB", 32, 32)


def test_grayscale_resizes_a_colour_folder_in_one_channel(colour_folder):
    x_train, _, x_test, _, _, preparation = load_image_folder(colour_folder, grayscale=True)
    assert preparation == Preparation("resize", 1, 32, 32) and x_train.shape == (6, 32, 32)
    _, train, test = split_files(colour_folder)
    check_pictures(np.concatenate([x_train, x_test]), train + test, "L", 32, 32)


def test_the_image_size_is_honoured(colour_folder):
    x_train, _, _, _, _, preparation = load_image_folder(colour_folder, image_size=(24, 40))
    assert preparation == Preparation("resize", 3, 24, 40) and x_train.shape == (6, 3, 24, 40)
    _, train, _ = split_files(colour_folder)
    check_pictures(x_train, train, "RGB", 24, 40)


@pytest.mark.parametrize("options, expected", [
    ({"image_size": (20, 20)}, Preparation("resize", 1, 20, 20)), ({"prepare": "resize"}, Preparation("resize", 1, 32, 32)),
    ({"grayscale": True}, Preparation("resize", 1, 32, 32)), ({"prepare": "digit"}, DIGIT),
    ({"prepare": "digit", "image_size": (28, 28)}, DIGIT)], ids=repr)
def test_a_gray_folder_is_resized_when_asked(gray_folder, options, expected):
    paths = [path for path, _ in split_files(gray_folder)[1]]
    assert choose_preparation(paths, **options) == expected
    x_train = load_image_folder(gray_folder, **options)[0]
    assert x_train.shape == (4, *expected.input_shape[1:])


def test_the_digit_recipe_on_a_colour_folder_gives_gray_digits(tmp_path):
    folder = shapes(tmp_path / "shapes", per_class=3)
    x_train, _, x_test, _, _, preparation = load_image_folder(folder, prepare="digit")
    assert preparation == DIGIT and x_train.shape == (6, 28, 28) and x_test.shape == (3, 28, 28)
    _, train, _ = split_files(folder)
    np.testing.assert_array_equal(x_train[0], np.rint(prepare_digit(train[0][0]) * 255))


@pytest.mark.parametrize("size", [(32, 32), (28, 32), (14, 14)])
def test_the_digit_recipe_refuses_another_image_size(gray_folder, size):
    with pytest.raises(DataError, match="--image-size"):
        load_image_folder(gray_folder, prepare="digit", image_size=size)


def test_an_unknown_recipe_is_refused(colour_folder):
    with pytest.raises((DataError, ConfigError)):
        load_data(colour_folder, prepare="resise")


def test_a_given_preparation_is_used_as_it_is(colour_folder):
    """A model's preparation (evaluate --data-dir): the folder's colour is not looked at."""
    x_train, _, _, _, _, preparation = load_image_folder(colour_folder, preparation=Preparation("resize", 1, 16, 12))
    assert preparation == Preparation("resize", 1, 16, 12) and x_train.shape == (6, 16, 12)


def test_a_folder_mixing_colour_and_gray_pictures_is_colour(colour_folder, draw_digit):
    gray = colour_folder / "red" / "zz_gray.png"
    draw_digit("zero", size=(50, 40)).save(gray)
    x_train, _, x_test, _, _, preparation = load_image_folder(colour_folder)
    assert preparation == Preparation("resize", 3, 32, 32)
    _, train, test = split_files(colour_folder)
    images = dict(zip([path for path, _ in train + test], np.concatenate([x_train, x_test])))
    np.testing.assert_array_equal(images[str(gray)], np.repeat(pil_prepared(gray, "L", 32, 32), 3, axis=0))
    colour = images[str(colour_folder / "red" / "red_000.png")].astype(int)
    assert np.ptp(colour, axis=0).max() > 100


@pytest.mark.parametrize("name", ["aaa_bad.png", "zzz_bad.jpg"])
@pytest.mark.parametrize("folder", ["gray_folder", "colour_folder"])
def test_an_unreadable_file_is_named(request, folder, name):
    directory = request.getfixturevalue(folder)
    classes = sorted(p for p in directory.iterdir() if p.is_dir())
    (classes[0] / name).write_bytes(b"not an image at all")
    with pytest.raises(ImageError, match=name):
        load_image_folder(directory)


def test_a_class_without_pictures_is_named(colour_folder):
    (colour_folder / "violet").mkdir()
    (colour_folder / "violet" / "notes.txt").write_text("no pictures here")
    with pytest.raises(DataError, match="violet"):
        load_image_folder(colour_folder)


# --- datasets ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("options", [{"prepare": "resize"}, {"image_size": (32, 32)}, {"grayscale": True},
                                     {"prepare": "resize", "image_size": (28, 28)}], ids=repr)
@pytest.mark.parametrize("where", ["idx", "named", "bundled"])
def test_load_data_refuses_image_options_for_idx_data(tmp_path, where, options):
    source = {"idx": {"data_dir": write_tiny_dataset(tmp_path / "idx")}, "named": {"name": "mnist"},
              "bundled": {}}[where]
    with pytest.raises(DataError, match="image folders"):
        load_data(**source, **options)


def test_idx_data_is_prepared_the_digit_way_at_its_own_size(tmp_path):
    directory = write_tiny_dataset(tmp_path / "idx")
    for data in (load_data(directory), load_data(directory, prepare="digit")):
        assert data.preparation == Preparation("digit", 1, 8, 8)
        assert input_shape_of(data.x_train) == (1, 8, 8) and data.x_train.shape == (40, 8, 8)


def test_load_data_of_a_colour_folder(colour_folder):
    data = load_data(colour_folder)
    assert data.preparation == Preparation("resize", 3, 32, 32) and data.class_names == ["blue", "green", "red"]
    assert input_shape_of(data.x_train) == (3, 32, 32) and input_shape_of(data.x_test) == (3, 32, 32)
    gray = load_data(colour_folder, grayscale=True, image_size=(16, 24))
    assert gray.preparation == Preparation("resize", 1, 16, 24) and input_shape_of(gray.x_train) == (1, 16, 24)
    exact = load_data(colour_folder, preparation=Preparation("resize", 3, 8, 8))
    assert exact.x_train.shape == (6, 3, 8, 8)


# --- augmentation -----------------------------------------------------------------------------------------------------

def old_random_affine(x, rng, max_degrees=10.0, max_shift=2.0):
    """random_affine as it was before colour (one map per image of a gray batch), calling the kernel directly."""
    x = np.ascontiguousarray(x)
    images = x.reshape(-1, x.shape[-2], x.shape[-1])
    n, h, w = images.shape
    angle = np.deg2rad(rng.uniform(-max_degrees, max_degrees, n))
    shift = rng.uniform(-max_shift, max_shift, (n, 2))
    cos, sin = np.cos(angle), np.sin(angle)
    cr, cc = (h - 1) / 2.0, (w - 1) / 2.0
    maps = np.empty((n, 2, 3))
    maps[:, 0, 0], maps[:, 0, 1] = cos, sin
    maps[:, 1, 0], maps[:, 1, 1] = -sin, cos
    dr, dc = -cr - shift[:, 0], -cc - shift[:, 1]
    maps[:, 0, 2] = cos * dr + sin * dc + cr
    maps[:, 1, 2] = -sin * dr + cos * dc + cc
    out = np.empty_like(images)
    _augment.affine_warp(images, maps, out)
    return out.reshape(x.shape)


def batch(shape, seed=0):
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


@pytest.mark.parametrize("shape", [(6, 11, 9), (6, 1, 11, 9)])
def test_without_flip_a_gray_batch_is_augmented_exactly_as_before(shape):
    x = batch(shape)
    rng, old_rng = np.random.default_rng(5), np.random.default_rng(5)
    out = random_affine(x, rng, 12.0, 2.5)
    np.testing.assert_array_equal(out, old_random_affine(x, old_rng, 12.0, 2.5))
    assert out.shape == shape and rng.random() == old_rng.random()  # the same numbers drawn: a resume continues


@pytest.mark.parametrize("flip", [False, True])
def test_a_colour_images_channels_move_together(flip):
    gray = batch((8, 1, 12, 10), seed=1)
    out = random_affine(np.repeat(gray, 3, axis=1), np.random.default_rng(2), 15.0, 2.0, flip=flip)
    assert out.shape == (8, 3, 12, 10)
    np.testing.assert_array_equal(out[:, 1], out[:, 0])
    np.testing.assert_array_equal(out[:, 2], out[:, 0])
    assert np.abs(out[:, 0] - gray[:, 0]).max() > 0.1  # it did move


def test_each_channel_gets_the_transform_a_gray_batch_would():
    x = batch((5, 3, 10, 10), seed=3)
    out = random_affine(x, np.random.default_rng(4), 20.0, 3.0)
    for c in range(3):
        alone = random_affine(np.ascontiguousarray(x[:, c:c + 1]), np.random.default_rng(4), 20.0, 3.0)
        np.testing.assert_array_equal(out[:, c], alone[:, 0])


@pytest.mark.parametrize("channels", [1, 3])
def test_flip_mirrors_about_half_the_images(channels):
    x = batch((40, channels, 7, 9), seed=6)
    out = random_affine(x, np.random.default_rng(7), 0.0, 0.0, flip=True)
    same = [np.allclose(o, i, atol=1e-6) for o, i in zip(out, x)]
    mirrored = [np.allclose(o, i[..., ::-1], atol=1e-6) for o, i in zip(out, x)]
    assert all(s != m for s, m in zip(same, mirrored))  # each image one or the other (never both: not symmetric)
    assert 8 <= sum(mirrored) <= 32
    np.testing.assert_allclose(random_affine(x, np.random.default_rng(7), 0.0, 0.0), x, atol=1e-6)


def test_an_empty_batch_is_augmented_to_an_empty_batch():
    out = random_affine(np.zeros((0, 1, 8, 8), np.float32), np.random.default_rng(0))
    assert out.shape == (0, 1, 8, 8)
