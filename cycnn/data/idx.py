"""The IDX reader (raw or gzip) and MNIST, bundled with the package and checked by SHA-256.

IDX (LeCun's format): two zero bytes, a type byte (0x08 = uint8, ...), the number of dimensions, each dimension as
a big-endian uint32, then the data in C order. The reader checks every one of those against the file's real size.
"""
import contextlib
import gzip
import hashlib
import math
import os
import stat
import zlib
from importlib import resources

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
    make the reader decompress gigabytes; parse_idx then checks the content. FIFOs and devices are refused before
    opening: reading one may block or never end.
    """
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise DataError(f"{path}: not a regular file (a directory, FIFO or device); expected an IDX file")
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


def find_idx_file(directory, stem):
    """The path of IDX file ``stem`` in ``directory``, raw or gzip, with MNIST's dashes or dots (whatever it is:
    reading it refuses a FIFO or a directory by that name)."""
    for candidate in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        path = os.path.join(directory, candidate)
        if os.path.lexists(path):
            return path
    raise DataError(f"{directory}: no {stem} (or {stem}.gz) in this directory")


def bundled_mnist_dir():
    """Where the package keeps its copy of MNIST."""
    return str(resources.files("cycnn.data").joinpath("mnist"))


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
        path = find_idx_file(directory, stem)
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
