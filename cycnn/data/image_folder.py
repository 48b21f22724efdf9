"""A dataset from a folder of images with one subfolder per class, prepared the way ``cycnn predict`` prepares one.

Two layouts are accepted:

- ``DIR/train/<class>/*.png`` and ``DIR/test/<class>/*.png`` (used whenever ``DIR/train`` exists): the split is
  the user's. Every test class must also be a training class.
- ``DIR/<class>/*.png``: a fixed fraction of each class (``TEST_FRACTION``, at least one image of any class with two
  or more) is held out as the test set, chosen by a generator with a fixed seed over the sorted file names, so that
  ``cycnn train`` and ``cycnn evaluate`` see the same split on every run and machine.

Class names are the subfolder names, sorted; labels are their indices. A name must be printable text of at most
``cycnn.nn.sequential.MAX_CLASS_NAME`` characters (``check_class_name``): tables, messages and reports print it.
Images are PNG or JPEG files (by suffix, any case); other files and hidden files are ignored.

Each image is prepared by one of ``cycnn.data.preparation``'s recipes and stored as uint8: a folder of gray
pictures the digit way (gray, ink light on dark, cropped, scaled into 20x20, centred by mass in 28x28, like MNIST),
a folder with any colour picture resized whole, in colour (3 channels; its gray pictures get three equal channels),
unless the caller chooses (``prepare``, ``image_size``, ``grayscale``). Pictures may be of any size and mode.
"""
import os

import numpy as np

from cycnn.data.images import load_rgb
from cycnn.data.preparation import DEFAULT_SIZE, DIGIT, Preparation, is_colour
from cycnn.errors import DataError
from cycnn.nn.sequential import check_class_name

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
TEST_FRACTION = 0.2
SPLIT_SEED = 20240601
SPLIT_DIRS = ("train", "test")


def _subdirs(directory):
    return sorted(e.name for e in os.scandir(directory) if e.is_dir() and not e.name.startswith("."))


def _image_files(directory):
    return sorted(e.path for e in os.scandir(directory)
                  if e.is_file() and not e.name.startswith(".") and e.name.lower().endswith(IMAGE_SUFFIXES))


def is_image_folder(directory):
    """True if ``directory`` has class subfolders (directly, or under train/) holding at least one image."""
    try:
        root = os.path.join(directory, "train") if os.path.isdir(os.path.join(directory, "train")) else directory
        return any(_image_files(os.path.join(root, name)) for name in _subdirs(root))
    except OSError:
        return False


def _class_files(directory):
    """{class name: sorted image paths} for the subfolders of ``directory``; every class needs an image."""
    classes = {}
    for name in _subdirs(directory):
        check_class_name(name, directory, DataError)
        files = _image_files(os.path.join(directory, name))
        if not files:
            raise DataError(f"{os.path.join(directory, name)}: class folder without PNG or JPEG images")
        classes[name] = files
    if not classes:
        raise DataError(f"{directory}: no class subfolders (expected one subfolder of images per class)")
    return classes


def _holdout(files, fraction, rng):
    """Split one class's files into (train, test): a random ``fraction`` for test, at least one if n >= 2."""
    n = len(files)
    n_test = 0 if n < 2 else min(n - 1, max(1, round(n * fraction)))
    order = rng.permutation(n)
    return [files[i] for i in sorted(order[n_test:])], [files[i] for i in sorted(order[:n_test])]


def _prepare(entries, preparation):
    """[(path, label)] -> (uint8 images (N, H, W) for one channel or (N, 3, H, W), int64 labels (N,))."""
    shape = preparation.input_shape if preparation.channels == 3 else preparation.input_shape[1:]
    images = np.empty((len(entries), *shape), dtype=np.uint8)
    for k, (path, _) in enumerate(entries):
        x = preparation.prepare(path)
        images[k] = np.rint((x if preparation.channels == 3 else x[0]) * 255)
    return images, np.array([label for _, label in entries], dtype=np.int64)


def choose_preparation(paths, prepare=None, image_size=None, grayscale=False):
    """The recipe for these pictures: ``prepare`` ("digit" or "resize") if given, else the digit recipe for gray
    pictures (unless a size or ``grayscale`` asks for a resize) and a resize for the rest; colour (3 channels) if
    any picture is in colour and ``grayscale`` is not set (the pictures are looked at until one in colour is
    found)."""
    if prepare not in (None, "digit", "resize"):
        raise DataError(f"unknown preparation {prepare!r:.40}; choose digit or resize")
    if prepare == "digit":
        if image_size not in (None, (28, 28)):
            raise DataError("the digit preparation makes 28x28 images; drop --image-size or use --prepare resize")
        return DIGIT
    colour = False
    for path in paths if not grayscale else ():
        colour = is_colour(load_rgb(path))
        if colour:
            break
    height, width = image_size or DEFAULT_SIZE
    if prepare is None and not colour and image_size is None and not grayscale:
        return DIGIT
    return Preparation("resize", 3 if colour else 1, height, width)


def split_files(directory, test_fraction=TEST_FRACTION):
    """Which file goes where: returns (class_names, train, test), train and test as lists of (path, label)."""
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise DataError(f"{directory}: no such data directory")
    train_dir, test_dir = (os.path.join(directory, d) for d in SPLIT_DIRS)
    if os.path.isdir(train_dir):
        if not os.path.isdir(test_dir):
            raise DataError(f"{directory}: has a train/ folder but no test/ folder; give both, or put the class "
                            "folders directly in it to hold out a test set automatically")
        train_files, test_files = _class_files(train_dir), _class_files(test_dir)
        class_names = list(train_files)
        unknown = sorted(set(test_files) - set(train_files))
        if unknown:
            raise DataError(f"{test_dir}: test classes {unknown} have no training images in {train_dir}")
    else:
        classes = _class_files(directory)
        class_names = list(classes)
        rng = np.random.default_rng(SPLIT_SEED)
        train_files, test_files = {}, {}
        for name, files in classes.items():
            train_files[name], test_files[name] = _holdout(files, test_fraction, rng)
    if len(class_names) < 2:
        raise DataError(f"{directory}: found only the class {class_names}; a classifier needs two or more")
    label = {name: k for k, name in enumerate(class_names)}
    train = [(p, label[c]) for c, files in train_files.items() for p in files]
    test = [(p, label[c]) for c, files in test_files.items() for p in files]
    if not test:
        raise DataError(f"{directory}: too few images to hold out a test set (put two or more in each class)")
    return class_names, train, test


def load_image_folder(directory, test_fraction=TEST_FRACTION, prepare=None, image_size=None, grayscale=False,
                      preparation=None):
    """Load an image-folder dataset: returns (x_train, y_train, x_test, y_test, class_names, preparation), images
    uint8; ``preparation`` (a ``Preparation``: a model's, to evaluate it on the folder) is how they are made, else
    chosen by ``choose_preparation``."""
    class_names, train, test = split_files(directory, test_fraction)
    if preparation is None:
        preparation = choose_preparation([p for p, _ in train + test], prepare, image_size, grayscale)
    return (*_prepare(train, preparation), *_prepare(test, preparation), class_names, preparation)
