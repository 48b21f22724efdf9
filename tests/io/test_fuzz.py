"""Property-based tests: whatever bytes reach the IDX reader, the model loader or the image preprocessing, the
result is either a valid value or a cycnn error (CycnnError), never another exception and never a crash.

Besides arbitrary bytes, each reader gets mutations of a valid input (flipped, overwritten, inserted and cut bytes),
and the model loader gets valid archives whose JSON header has been rewritten field by field, which reaches the
validation behind the zip checksums.
"""
import gzip
import io
import json
import struct
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from cycnn.io import architecture
from cycnn.train.checkpoint import load_checkpoint, save_checkpoint
from cycnn.data.idx import parse_idx, read_idx
from cycnn.errors import CycnnError, DataError
from cycnn.data.images import load_image, mnist_style
from cycnn.nn.optim import make_optimizer
from cycnn.io.model_file import load_model, save_model
from cycnn.train.settings import RunSettings
from cycnn.train.state import TrainState

# 150 examples per test by default (about ten seconds for the file); HYPOTHESIS_PROFILE=thorough runs more.
FUZZ = settings(max_examples=max(150, settings.default.max_examples), deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


# --- mutations --------------------------------------------------------------------------------------------------

@st.composite
def mutated(draw, original):
    """``original`` with a few random edits: flip a byte, overwrite a run, insert bytes, or cut the end off."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "overwrite", "insert", "truncate"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif kind == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=16))
            data[at:at + len(chunk)] = chunk
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        else:
            del data[at:]
    return bytes(data)


# --- IDX --------------------------------------------------------------------------------------------------------

def idx_bytes(array, type_byte=0x08):
    return bytes([0, 0, type_byte, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


VALID_IDX = idx_bytes(np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4))
VALID_IDX_F4 = idx_bytes(np.linspace(0, 1, 6).astype(">f4").reshape(2, 3), type_byte=0x0D)


def check_idx(data):
    try:
        array = parse_idx(data)
    except CycnnError:
        return
    assert isinstance(array, np.ndarray) and array.dtype.isnative
    assert array.nbytes + 4 + 4 * array.ndim == len(data)


@FUZZ
@given(st.binary(max_size=200))
def test_parse_idx_on_arbitrary_bytes(data):
    check_idx(data)


@FUZZ
@given(st.one_of(mutated(VALID_IDX), mutated(VALID_IDX_F4)))
def test_parse_idx_on_mutated_files(data):
    check_idx(data)


@FUZZ
@given(header=st.tuples(st.just(0), st.just(0), st.sampled_from([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x07]),
                        st.integers(0, 4)),
       dims=st.lists(st.integers(0, 2**32 - 1), max_size=4), body=st.binary(max_size=64))
def test_parse_idx_on_plausible_headers(header, dims, body):
    """Headers that pass the magic-number check, with any dimensions (up to 4 GiB each) and any body."""
    check_idx(bytes(header) + struct.pack(f">{len(dims)}I", *dims) + body)


def test_parse_idx_refuses_an_empty_array_with_impossible_dimensions():
    """Found by the fuzzer above: a zero first dimension needs no data, but numpy cannot even shape an empty
    array whose other dimensions multiply past its largest size."""
    with pytest.raises(DataError, match="too large for any array"):
        parse_idx(bytes([0, 0, 8, 4]) + struct.pack(">4I", 0, 6168, 38665250, 38674485))


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@FUZZ
@given(data=st.one_of(st.binary(max_size=200), mutated(gzip.compress(VALID_IDX)), mutated(VALID_IDX)))
def test_read_idx_on_files_raw_or_gzip(scratch, data):
    path = scratch / "data-idx3-ubyte"
    path.write_bytes(data)
    try:
        array = read_idx(path)
    except CycnnError:
        return
    assert isinstance(array, np.ndarray)


# --- model files ------------------------------------------------------------------------------------------------

def tiny_model():
    spec = architecture.stack([2], [3], 2, [4], [0.5], input_shape=(1, 8, 8), num_classes=3)
    return architecture.build(spec, seed=0)


@pytest.fixture(scope="module")
def model_file(scratch):
    path = scratch / "valid.npz"
    save_model(tiny_model(), path)
    return path.read_bytes()


@pytest.fixture(scope="module")
def checkpoint_file(scratch):
    path = scratch / "valid.ckpt.npz"
    model = tiny_model()
    save_checkpoint(path, model, make_optimizer("adam"), TrainState(epoch=1, step=2, global_step=7),
                    RunSettings(epochs=2, out="m.npz", limit_train=10, val_split=0.1))
    return path.read_bytes()


def check_model_bytes(path, data):
    path.write_bytes(data)
    try:
        model = load_model(path)
    except CycnnError:
        return
    assert model.parameter_count >= 0
    for _, param, _ in model.parameters():
        assert np.all(np.isfinite(param))


@FUZZ
@given(data=st.binary(max_size=300))
def test_load_model_on_arbitrary_bytes(scratch, data):
    check_model_bytes(scratch / "arbitrary.npz", data)


@FUZZ
@given(data=st.data())
def test_load_model_on_mutated_files(scratch, model_file, data):
    check_model_bytes(scratch / "mutated.npz", data.draw(mutated(model_file)))


def rewrite_header(original, edit):
    """A copy of an archive with its JSON header replaced by ``edit(header)`` (zip checksums recomputed)."""
    source = zipfile.ZipFile(io.BytesIO(original))
    header = json.loads(np.load(io.BytesIO(source.read("header.npy"))).tobytes())
    header = edit(header)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            if info.filename == "header.npy":
                raw = io.BytesIO()
                np.save(raw, np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8))
                target.writestr("header.npy", raw.getvalue())
            else:
                target.writestr(info.filename, source.read(info.filename))
    return out.getvalue()


JSON = st.recursive(st.none() | st.booleans() | st.integers(-3, 2**40) | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                  max_size=4),
                    max_leaves=12)


def paths_in(value, prefix=()):
    """Every key path into a JSON value (so that an edit can land anywhere in the header)."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from paths_in(item, prefix + (key,))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from paths_in(item, prefix + (i,))


def replace_at(header, path, value):
    if not path:
        return value
    node = header
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return header


@pytest.mark.slow  # about a second: the fast tier stays under a minute
@FUZZ
@given(data=st.data())
def test_load_model_on_rewritten_headers(scratch, model_file, data):
    """Valid archives whose header has one field replaced by arbitrary JSON (sizes, types, layers, versions)."""
    header = json.loads(np.load(io.BytesIO(zipfile.ZipFile(io.BytesIO(model_file)).read("header.npy"))).tobytes())
    path = data.draw(st.sampled_from(sorted(paths_in(header), key=str)))
    value = data.draw(JSON | st.integers(-1, 10**12) | st.lists(st.integers(-1, 10**9), max_size=4))
    check_model_bytes(scratch / "rewritten.npz", rewrite_header(model_file, lambda h: replace_at(h, path, value)))


@pytest.mark.slow  # about a second: the fast tier stays under a minute
@FUZZ
@given(data=st.data())
def test_load_checkpoint_on_rewritten_training_state(scratch, checkpoint_file, data):
    header = json.loads(np.load(io.BytesIO(zipfile.ZipFile(io.BytesIO(checkpoint_file)).read("header.npy"))).tobytes())
    path = data.draw(st.sampled_from(sorted(paths_in(header["training"], ("training",)), key=str)))
    value = data.draw(JSON | st.integers(-1, 10**12))
    target = scratch / "rewritten.ckpt.npz"
    target.write_bytes(rewrite_header(checkpoint_file, lambda h: replace_at(h, path, value)))
    try:
        model, optimizer, state, settings = load_checkpoint(target)
    except CycnnError:
        return
    assert state.epoch <= settings.epochs and state.step >= 0 and optimizer.t >= 0
    assert isinstance(settings.out, str) and settings.out


# --- images -----------------------------------------------------------------------------------------------------

def encoded_digits():
    """A small digit in several formats and modes: the seeds the image mutations start from."""
    img = Image.new("L", (24, 20), 255)
    ImageDraw.Draw(img).ellipse((6, 3, 18, 17), outline=0, width=3)
    pixels = np.asarray(img)
    special = {"F": Image.fromarray(pixels.astype(np.float32), "F"),  # float pixels (any range)
               "I;16": Image.fromarray(pixels.astype(np.uint16) * 257)}  # a real 16-bit image, full range
    seeds = []
    for fmt, mode in [("PNG", "L"), ("PNG", "P"), ("PNG", "RGBA"), ("PNG", "I;16"), ("GIF", "L"), ("BMP", "RGB"),
                      ("TIFF", "L"), ("TIFF", "F"), ("JPEG", "L"), ("ICO", "RGBA"), ("WEBP", "RGB")]:
        out = io.BytesIO()
        (special[mode] if mode in special else img.convert(mode)).save(out, fmt)
        seeds.append(out.getvalue())
    return seeds


IMAGE_SEEDS = encoded_digits()


def check_image_bytes(data):
    try:
        gray = load_image(data)
        digit = mnist_style(gray)
    except CycnnError:
        return
    assert gray.ndim == 2 and np.all(np.isfinite(gray))
    assert digit.shape == (28, 28) and digit.dtype == np.float32
    assert np.all(np.isfinite(digit)) and digit.min() >= 0 and digit.max() <= 1


def test_every_image_seed_is_a_readable_digit():
    for data in IMAGE_SEEDS:
        digit = mnist_style(load_image(data))
        assert digit.max() > 0.5


@FUZZ
@given(data=st.binary(max_size=300))
def test_load_image_on_arbitrary_bytes(data):
    check_image_bytes(data)


@FUZZ
@given(data=st.data())
def test_load_image_on_mutated_files(data):
    check_image_bytes(data.draw(mutated(data.draw(st.sampled_from(IMAGE_SEEDS)))))


@FUZZ
@given(pixels=st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=1, max_size=64),
       width=st.integers(1, 8))
def test_float_images_with_any_values(pixels, width):
    """Float TIFFs may hold NaN, infinities and any range: a digit or a CycnnError."""
    height = len(pixels) // width
    assume(height >= 1)
    array = np.array(pixels[:width * height], dtype=np.float32).reshape(height, width)
    out = io.BytesIO()
    Image.fromarray(array, "F").save(out, "TIFF")
    check_image_bytes(out.getvalue())
