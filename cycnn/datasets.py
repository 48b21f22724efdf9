"""Datasets: an IDX reader (raw or gzip) and MNIST, bundled with the package and checked by SHA-256.

IDX (LeCun's format): two zero bytes, a type byte (0x08 = uint8, ...), the number of dimensions, each dimension as
a big-endian uint32, then the data in C order. The reader checks every one of those against the file's real size.
"""
import contextlib
import gzip
import hashlib
import math
import os
import zlib
from importlib import resources
from typing import NamedTuple, Optional

import numpy as np

from cycnn.errors import DataError

IDX_TYPES = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
             0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
MAX_IDX_BYTES = 2 << 30  # refuse to decompress more than 2 GiB from one file
MAX_CLASSES = 1 << 16  # a label beyond this is damage, not a class (the model would need an output per class)

MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# SHA-256 of the decompressed content of the bundled files (from shared/datasets/mnist/README.md).
MNIST_SHA256 = {
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
}


def _read_bytes(path):
    """The file's content, decompressed if it is gzip (recognised by its magic bytes, not its name).

    Reads no more than the IDX header declares, plus one byte to notice trailing data, so a small gzip file cannot
    make the reader decompress gigabytes; parse_idx then checks the content.
    """
    try:
        with open(path, "rb") as fh:
            gzipped = fh.read(2) == b"\x1f\x8b"
            fh.seek(0)
            with gzip.GzipFile(fileobj=fh) if gzipped else contextlib.nullcontext(fh) as stream:
                return _read_idx_stream(stream, path)
    except OSError as exc:
        if isinstance(exc, gzip.BadGzipFile) or exc.strerror is None:
            raise DataError(f"{path}: damaged gzip file ({exc})") from None
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    except (EOFError, zlib.error) as exc:
        raise DataError(f"{path}: damaged or truncated gzip file ({exc})") from None


def _read_idx_stream(stream, path):
    data = stream.read(4)
    if len(data) == 4 and data[:2] == b"\0\0" and data[2] in IDX_TYPES:
        data += stream.read(4 * data[3])
        dims = data[4:]
        if len(dims) == 4 * data[3]:
            count = math.prod(int.from_bytes(dims[i:i + 4], "big") for i in range(0, len(dims), 4))
            size = len(data) + count * IDX_TYPES[data[2]].itemsize
            if size > MAX_IDX_BYTES:
                raise DataError(f"{path}: its header declares {size:,} bytes, more than the "
                                f"{MAX_IDX_BYTES >> 30} GiB this reader accepts")
            return data + stream.read(size - len(data) + 1)
    return data + stream.read(64)  # not a complete IDX header: parse_idx says what is wrong with it


def parse_idx(data, name="IDX data"):
    """Parse IDX bytes into an ndarray, checking the magic number, dimensions and size."""
    if len(data) < 4:
        raise DataError(f"{name}: too short to be an IDX file ({len(data)} bytes)")
    if data[0] != 0 or data[1] != 0:
        raise DataError(f"{name}: wrong magic number (starts with {data[:4].hex()}, expected 0000 then type and rank)")
    dtype = IDX_TYPES.get(data[2])
    if dtype is None:
        raise DataError(f"{name}: unknown IDX data type 0x{data[2]:02x}")
    ndim = data[3]
    if ndim == 0:
        raise DataError(f"{name}: IDX file with zero dimensions")
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise DataError(f"{name}: truncated header ({len(data)} bytes, {ndim} dimensions need {header_size})")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    if math.prod(d for d in shape if d) * dtype.itemsize > np.iinfo(np.intp).max:  # numpy refuses even if empty
        raise DataError(f"{name}: dimensions {shape} are too large for any array")
    expected = header_size + math.prod(shape) * dtype.itemsize
    if len(data) < expected:
        raise DataError(f"{name}: size disagrees with its header (dimensions {shape} need {expected:,} bytes, "
                        f"the file has {len(data):,}): truncated or not an IDX file")
    if len(data) > expected:
        raise DataError(f"{name}: size disagrees with its header (data after the {expected:,} bytes that "
                        f"dimensions {shape} need)")
    return np.frombuffer(data, dtype=dtype, offset=header_size).reshape(shape).astype(dtype.newbyteorder("="))


def read_idx(path):
    """Read an IDX file (raw or gzip) into an ndarray."""
    return parse_idx(_read_bytes(path), name=os.fspath(path))


def _find(directory, stem):
    for candidate in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        path = os.path.join(directory, candidate)
        if os.path.isfile(path):
            return path
    raise DataError(f"{directory}: no {stem} (or {stem}.gz) in this directory")


def bundled_mnist_dir():
    """Where the package keeps its copy of MNIST."""
    return str(resources.files("cycnn").joinpath("data", "mnist"))


def load_idx_dataset(data_dir=None):
    """Load a dataset in MNIST's IDX layout: returns (x_train, y_train, x_test, y_test), images uint8 (N, H, W).

    With no ``data_dir``, the MNIST copy bundled with cycnn is used and verified against its known SHA-256.
    """
    bundled = data_dir is None
    directory = bundled_mnist_dir() if bundled else os.fspath(data_dir)
    if not os.path.isdir(directory):
        raise DataError(f"{directory}: no such data directory")
    out = {}
    for key, stem in MNIST_FILES.items():
        path = _find(directory, stem)
        data = _read_bytes(path)
        if bundled and hashlib.sha256(data).hexdigest() != MNIST_SHA256[stem]:
            raise DataError(f"{path}: checksum mismatch, the bundled MNIST file is damaged; reinstall cycnn")
        out[key] = parse_idx(data, name=path)
    for split in ("train", "test"):
        images, labels = out[f"{split}_images"], out[f"{split}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataError(f"{directory}: {split} images {images.shape} and labels {labels.shape} do not match "
                            "(expected (N, H, W) images and N labels)")
        if images.dtype != np.uint8:
            raise DataError(f"{directory}: {split} images are {images.dtype}, expected 8-bit (uint8) pixels")
        if not len(images):
            raise DataError(f"{directory}: no {split} images")
        if labels.dtype.kind not in "iu":
            raise DataError(f"{directory}: {split} labels are {labels.dtype}, expected integers")
        if labels.min() < 0 or labels.max() >= MAX_CLASSES:
            raise DataError(f"{directory}: {split} labels range from {labels.min()} to {labels.max()}; expected "
                            f"class numbers from 0 to {MAX_CLASSES - 1}")
    if out["train_images"].shape[1:] != out["test_images"].shape[1:]:
        raise DataError(f"{directory}: train images {out['train_images'].shape[1:]} and test images "
                        f"{out['test_images'].shape[1:]} differ in size")
    return (out["train_images"], out["train_labels"].astype(np.int64),
            out["test_images"], out["test_labels"].astype(np.int64))


def to_input(images):
    """uint8 images (N, H, W) -> float32 NCHW in [0, 1], the scale every cycnn model is trained on."""
    x = np.asarray(images, dtype=np.float32)
    x *= np.float32(1.0 / 255.0)
    return x[:, None] if x.ndim == 3 else x


# --- named datasets and dataset directories -----------------------------------------------------------------------
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"  # where Debian's package dataset-fashion-mnist puts it
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                         "Ankle boot"]
DATASET_NAMES = ("mnist", "fashion-mnist")


class Dataset(NamedTuple):
    """Train and test images (uint8, (N, H, W)) with integer labels; ``class_names`` is None when the labels are
    their own names (MNIST's digits)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: Optional[list] = None


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
        return Dataset(*load_idx_dataset(FASHION_MNIST_DIR), class_names=list(FASHION_MNIST_CLASSES))
    raise DataError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASET_NAMES)} "
                    "(or give --data-dir DIR with IDX files or one image subfolder per class)")


def load_data(data_dir=None, name=None):
    """The dataset the user asked for: a named one, a directory (IDX files in MNIST's layout, or an image folder
    with one subfolder per class, see ``cycnn.image_folder``), or by default the bundled MNIST."""
    if data_dir is not None and name is not None:
        raise DataError("give either a dataset name or a data directory, not both")
    if name is not None:
        return load_named_dataset(name)
    if data_dir is None:
        return Dataset(*load_idx_dataset())
    from cycnn import image_folder
    directory = os.fspath(data_dir)
    if not os.path.isdir(directory):
        raise DataError(f"{directory}: no such data directory")
    if _has_idx_files(directory):
        return Dataset(*load_idx_dataset(directory))
    if image_folder.is_image_folder(directory):
        return Dataset(*image_folder.load_image_folder(directory))
    raise DataError(f"{directory}: holds neither MNIST's four IDX files (train-images-idx3-ubyte[.gz], ...) nor "
                    "one subfolder of PNG/JPEG images per class")


def _has_idx_files(directory):
    """True if any of the four IDX files is in ``directory`` (loading then says which others are missing)."""
    for stem in MNIST_FILES.values():
        try:
            _find(directory, stem)
            return True
        except DataError:
            pass
    return False
