"""Datasets: the bundled MNIST, named datasets, dataset directories (IDX files or an image folder), and the
conversion of uint8 images into the network's input."""
import os
from typing import NamedTuple, Optional

import numpy as np

from cycnn.data import image_folder
from cycnn.data.idx import MNIST_FILES, find_idx_file, load_idx_dataset
from cycnn.data.preparation import DIGIT, Preparation
from cycnn.errors import DataError


def to_input(images):
    """uint8 images (N, H, W) -> float32 NCHW in [0, 1], the scale every cycnn model is trained on."""
    x = np.asarray(images, dtype=np.float32)
    x *= np.float32(1.0 / 255.0)
    return x[:, None] if x.ndim == 3 else x


FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"  # where Debian's package dataset-fashion-mnist puts it
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                         "Ankle boot"]
DATASET_NAMES = ("mnist", "fashion-mnist")


class Dataset(NamedTuple):
    """Train and test images (uint8, (N, H, W) gray or (N, 3, H, W) colour) with integer labels; ``class_names`` is
    None when the labels are their own names (MNIST's digits); ``preparation`` is how an image file is made into
    one of these images (IDX data: the digit recipe)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: Optional[list] = None
    preparation: Preparation = DIGIT


def load_named_dataset(name):
    """A dataset by name: "mnist" (bundled) or "fashion-mnist" (from Debian's dataset-fashion-mnist package)."""
    key = str(name).lower()
    if key == "mnist":
        return Dataset(*load_idx_dataset())
    if key == "fashion-mnist":
        if not os.path.isdir(FASHION_MNIST_DIR):
            raise DataError(f"fashion-mnist is not installed in {FASHION_MNIST_DIR}: install it with "
                            "'apt-get install dataset-fashion-mnist' (Debian/Ubuntu), or download its four IDX files "
                            "from github.com/zalandoresearch/fashion-mnist and pass --data-dir DIR")
        return _idx(load_idx_dataset(FASHION_MNIST_DIR), class_names=list(FASHION_MNIST_CLASSES))
    raise DataError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASET_NAMES)} "
                    "(or give --data-dir DIR with IDX files or one image subfolder per class)")


def load_data(data_dir=None, name=None, prepare=None, image_size=None, grayscale=False, preparation=None):
    """The dataset the user asked for: a named one, a directory (IDX files in MNIST's layout, or an image folder
    with one subfolder per class, see ``cycnn.data.image_folder``, whose pictures ``prepare``, ``image_size`` and
    ``grayscale`` say how to prepare, or ``preparation`` exactly: a model's), or by default the bundled MNIST."""
    if data_dir is not None and name is not None:
        raise DataError("give either a dataset name or a data directory, not both")
    folder = data_dir is not None and image_folder.is_image_folder(os.fspath(data_dir)) \
        and not _has_idx_files(os.fspath(data_dir))
    if not folder and (prepare not in (None, "digit") or image_size is not None or grayscale):
        raise DataError("--prepare, --image-size and --grayscale are for image folders; IDX data is 28x28 digits")
    if name is not None:
        return load_named_dataset(name)
    if data_dir is None:
        return Dataset(*load_idx_dataset())
    directory = os.fspath(data_dir)
    if not os.path.isdir(directory):
        raise DataError(f"{directory}: no such data directory")
    if _has_idx_files(directory):
        return _idx(load_idx_dataset(directory))
    if image_folder.is_image_folder(directory):
        return Dataset(*image_folder.load_image_folder(directory, prepare=prepare, image_size=image_size,
                                                       grayscale=grayscale, preparation=preparation))
    raise DataError(f"{directory}: holds neither MNIST's four IDX files (train-images-idx3-ubyte[.gz], ...) nor "
                    "one subfolder of PNG/JPEG images per class")


def _idx(arrays, class_names=None):
    """A Dataset of IDX arrays: gray digits (or other pictures) prepared the digit way at their own size."""
    height, width = arrays[0].shape[1:]
    return Dataset(*arrays, class_names=class_names, preparation=Preparation("digit", 1, height, width))


def _has_idx_files(directory):
    """True if any of the four IDX files is in ``directory`` (loading then says which others are missing)."""
    for stem in MNIST_FILES.values():
        try:
            find_idx_file(directory, stem)
            return True
        except DataError:
            pass
    return False


def input_shape_of(images):
    """The model input shape (C, H, W) of uint8 images (N, H, W) or (N, C, H, W)."""
    return (1, *images.shape[1:]) if images.ndim == 3 else tuple(images.shape[1:])


def check_model_fits(model, images, labels, what="the data"):
    """Refuse a model whose input shape or class count cannot take these uint8 images and labels."""
    largest = int(labels.max()) if len(labels) else -1
    if tuple(model.input_shape) != input_shape_of(images) or largest >= model.num_classes:
        raise DataError(f"the model takes {tuple(model.input_shape)} inputs and {model.num_classes} classes; "
                        f"{what} has {images.shape[1:]} images with labels up to {largest}")
