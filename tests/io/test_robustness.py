"""Hostile and broken input: model files, IDX datasets, images and flag values each end in one line
``cycnn: error: ...`` and exit code 2 (never a traceback); no file is ever unpickled; a save killed at any moment
leaves the old or the new model at the target path."""
import gzip
import io
import json
import multiprocessing
import os
import pickle
import random
import re
import signal
import struct
import subprocess
import sys
import time
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image, ImageDraw

from cycnn.io import architecture
from cycnn.train.checkpoint import load_checkpoint, save_checkpoint
from cycnn.data.idx import load_idx_dataset
from cycnn.data.images import mnist_style, prepare_digit
from cycnn.errors import DataError, ModelFileError, OutputError
from cycnn.nn.optim import make_optimizer
from cycnn.io.atomic import write_atomic
from cycnn.io.model_file import _digest, load_model, save_model
from cycnn.train.settings import RunSettings
from cycnn.train.state import TrainState

from cli_runner import assert_one_line_error, run_cli  # tests/cli_runner.py


# --- model files ------------------------------------------------------------------------------------------------

def small_model(seed=0):
    spec = architecture.stack([4], [3], 2, [16], [0.2], input_shape=(1, 28, 28), num_classes=10)
    return architecture.build(spec, seed=seed)


@pytest.fixture(scope="module")
def good_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "good.npz"
    save_model(small_model(), path)
    return path


class Boom:
    """Unpickling this makes a directory: the proof that a file was unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def rebuild(original, header_edit=None, arrays=None, drop=()):
    """An archive like ``original`` with its JSON header edited, arrays replaced or dropped (zip CRCs recomputed,
    SHA-256 entries left as they were)."""
    source = zipfile.ZipFile(io.BytesIO(original))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            name = info.filename[:-len(".npy")]
            if name in drop:
                continue
            if name == "header" and header_edit is not None:
                header = json.loads(np.load(io.BytesIO(source.read(info))).tobytes())
                header_edit(header)
                value = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
            elif arrays and name in arrays:
                value = arrays[name]
            else:
                target.writestr(info.filename, source.read(info))
                continue
            raw = io.BytesIO()
            np.save(raw, value, allow_pickle=value.dtype.hasobject)
            target.writestr(info.filename, raw.getvalue())
    return out.getvalue()


def set_key(path, value):
    def edit(header):
        node = header
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return edit


def bad_model_files(directory, good, marker):
    """(file name, content, a fragment of the expected message) for each kind of bad model file."""
    data = good.read_bytes()
    savez, zipped, npy = io.BytesIO(), io.BytesIO(), io.BytesIO()
    np.savez(savez, weights=np.ones(3))
    with zipfile.ZipFile(zipped, "w") as z:
        z.writestr("readme.txt", "not a model")
    np.save(npy, np.ones(3))
    w = np.load(io.BytesIO(zipfile.ZipFile(io.BytesIO(data)).read("param.0.W.npy")))
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF
    return [
        ("plain-savez.npz", savez.getvalue(), "without cycnn's header"),
        ("other.zip", zipped.getvalue(), "without cycnn's header"),
        ("array.npy", npy.getvalue(), "bare .npy array"),
        ("random.npz", random.Random(0).randbytes(3000), "not an .npz archive"),
        ("pickle.npz", pickle.dumps(Boom(marker)), "pickle"),
        ("pickle-inside.npz", rebuild(data, arrays={"param.0.W": np.array([Boom(marker)], dtype=object)}),
         "stored as object"),
        ("empty.npz", b"", "empty file"),
        ("cut-10.npz", data[:10], "truncated or damaged"),
        ("cut-half.npz", data[:len(data) // 2], "truncated or damaged"),
        ("cut-last-byte.npz", data[:-1], "truncated or damaged"),
        ("flipped-byte.npz", bytes(flipped), "truncated or damaged model file (Bad CRC-32"),
        ("tampered-weight.npz", rebuild(data, arrays={"param.0.W": w + 1}), "fails its checksum"),
        ("missing-weight.npz", rebuild(data, drop={"param.0.W"}), "missing: ['param.0.W']"),
        ("newer-version.npz", rebuild(data, set_key(["version"], 2)), "newer cycnn"),
        # Python calls True and 1.0 equal to 1; a format version is an integer.
        ("version-true.npz", rebuild(data, set_key(["version"], True)), "unknown format version True"),
        ("version-float.npz", rebuild(data, set_key(["version"], 1.0)), "unknown format version 1.0"),
        ("input-shape-bool.npz", rebuild(data, set_key(["architecture", "input_shape"], [True, 28, 28])),
         "input_shape"),
        ("foreign-header.npz", rebuild(data, set_key(["format"], "something-else")), "not a cycnn model file"),
        ("unknown-kind.npz", rebuild(data, set_key(["kind"], "weights")), "unknown file kind"),
        ("huge-layer.npz", rebuild(data, set_key(["architecture", "layers", 3, "in_features"], 10**10)),
         "in_features must be at most"),
        # A large layer the stored weights do not match: refused without building it (placeholder weights).
        ("large-layer.npz", rebuild(rebuild(data, set_key(["architecture", "layers", 3, "out_features"], 1 << 20)),
                                    set_key(["architecture", "layers", 5, "in_features"], 1 << 20)),
         "the architecture needs"),
        ("bad-layer.npz", rebuild(data, set_key(["architecture", "layers", 0, "type"], "Conv9D")),
         "unknown layer type"),
        ("nan-weight.npz", nan_weight_file(data, w), "NaN or infinite"),
    ]


def nan_weight_file(data, w):
    """NaN weights with a matching checksum: the loader's own check must refuse them."""
    w = w.copy()
    w.flat[0] = np.nan
    return rebuild(rebuild(data, arrays={"param.0.W": w}),
                   set_key(["arrays", "param.0.W", "sha256"], _digest(w)))


def write_bad_files(directory, good):
    """The bad files made from ``good`` (a model or a checkpoint), written to ``directory``: ([(path, fragment)],
    the path that would exist if a pickle had been run)."""
    marker = str(directory / "UNPICKLED")
    files = []
    for name, content, fragment in bad_model_files(directory, good, marker):
        (directory / name).write_bytes(content)
        files.append((directory / name, fragment))
    files.append((directory / "missing.npz", "no such file"))
    (directory / "a-directory.npz").mkdir()
    files.append((directory / "a-directory.npz", "is a directory"))
    return files, marker


@pytest.fixture(scope="module")
def bad_models(tmp_path_factory, good_model):
    return write_bad_files(tmp_path_factory.mktemp("bad-models"), good_model)


@pytest.fixture(scope="module")
def bad_checkpoints(tmp_path_factory, good_checkpoint):
    return write_bad_files(tmp_path_factory.mktemp("bad-checkpoints"), good_checkpoint)


@pytest.mark.parametrize("source", ["bad_models", "bad_checkpoints"])
def test_bad_model_files_raise_model_file_error_naming_file_and_problem(source, request):
    files, marker = request.getfixturevalue(source)
    for path, fragment in files:
        with pytest.raises(ModelFileError) as error:
            load_model(path)
        message = str(error.value)
        assert message.startswith(f"{path}: ") and fragment in message, message
        assert "\n" not in message
    assert not os.path.exists(marker), "a pickle in a model file was executed"


@pytest.mark.parametrize("command", ["evaluate", "predict", "summary", "resume"])
def test_bad_model_files_in_the_cli(command, bad_models, bad_checkpoints, capsys, digit_png):
    files, marker = bad_checkpoints if command == "resume" else bad_models
    for path, fragment in files:
        argv = {"evaluate": ["evaluate", path], "predict": ["predict", path, digit_png],
                "summary": ["summary", path], "resume": ["train", "--resume", path]}[command]
        code, out, err = run_cli(argv, capsys)
        assert_one_line_error(code, err, str(path), fragment)
    assert not os.path.exists(marker)


@pytest.mark.slow
def test_a_real_process_prints_one_line_for_a_pickle(bad_models):
    """The installed entry point, not just main(): no traceback, exit 2, the file unpickled by nobody."""
    files, marker = bad_models
    path = next(p for p, fragment in files if p.name == "pickle.npz")
    done = subprocess.run([sys.executable, "-m", "cycnn", "evaluate", str(path)], capture_output=True, text=True,
                          timeout=120, cwd=path.parent)  # not the repository root: its cycnn/ is uncompiled
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [f"cycnn: error: {path}: a Python pickle, not a cycnn model file "
                                                "(cycnn never unpickles files)"]
    assert not os.path.exists(marker)


def test_a_model_file_is_not_a_checkpoint(good_model, capsys):
    code, out, err = run_cli(["train", "--resume", good_model], capsys)
    assert_one_line_error(code, err, f"{good_model}: is a model file, expected a checkpoint file")


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "run.ckpt.npz"
    model, optimizer = small_model(), make_optimizer("adam")
    optimizer.step([(key, param, np.ones_like(param)) for key, param, _ in model.parameters()])
    save_checkpoint(path, model, optimizer, TrainState(epoch=1, step=3, global_step=20), RunSettings(epochs=2, out="m.npz", limit_train=300, val_split=0.05, checkpoint_every=5))
    return path


@pytest.mark.parametrize("edit, fragment", [
    (set_key(["training", "state", "epoch"], -1), "epoch must be a non-negative integer"),
    (set_key(["training", "state", "epoch"], 7), "past the run's 2 epochs"),
    (set_key(["training", "settings", "batch_size"], 0), "batch_size must be a positive integer"),
    (set_key(["training", "optimizer", "name"], "rmsprop"), "unknown optimizer"),
    (set_key(["training", "optimizer", "beta1"], 1.0), "beta1 must be in [0, 1)"),
    (set_key(["training", "optimizer", "t"], "seven"), "optimizer step count t"),
    (set_key(["training", "settings", "out"], 5), "out must be a non-empty printable text"),
    (set_key(["training", "settings", "val_split"], 2), "val_split must be in [0, 1)"),
    (set_key(["training"], None), "training is not a table"),
    # The same validator as the flags': the values a crafted checkpoint tried.
    (set_key(["training", "settings", "seed"], -1), "seed must be a non-negative integer"),
    (set_key(["training", "settings", "seed"], "7"), "seed must be a non-negative integer"),
    (set_key(["training", "settings", "seed"], 1.5), "seed must be a non-negative integer"),
    (set_key(["training", "settings", "max_degrees"], float("nan")), "max_degrees must be a number from 0 to 180"),
    (set_key(["training", "settings", "max_shift"], "2"), "max_shift must be a number from 0 to 64"),
    (set_key(["training", "settings", "epochs"], 10 ** 9), "epochs must be a positive integer of at most"),
    (set_key(["training", "state", "train_seconds"], 1e300), "train_seconds must be a number from 0 to"),
    (set_key(["training", "state", "history"], [{}] * 5), "one per finished epoch"),
    (set_key(["training", "settings", "sneaky"], 1), "unknown run settings ['sneaky']"),
], ids=["negative-epoch", "epoch-past-end", "batch-size-0", "unknown-optimizer", "beta1-1", "t-not-int",
        "out-not-str", "val-split-2", "no-training", "seed-negative", "seed-string", "seed-float", "nan-rotation",
        "string-shift", "absurd-epochs", "absurd-time", "history-too-long", "unknown-setting"])
def test_damaged_training_state_is_refused(good_checkpoint, tmp_path, edit, fragment):
    path = tmp_path / "damaged.ckpt.npz"
    path.write_bytes(rebuild(good_checkpoint.read_bytes(), edit))
    with pytest.raises(ModelFileError) as error:
        load_checkpoint(path)
    assert str(error.value).startswith(f"{path}: damaged training state") and fragment in str(error.value)


def test_optimizer_slots_must_match_their_weights(good_checkpoint, tmp_path):
    """Moments of the wrong shape would only fail (or silently broadcast) in the middle of the resumed run."""
    data = good_checkpoint.read_bytes()
    bad = np.zeros((2, 2), dtype=np.float32)
    edited = rebuild(rebuild(data, arrays={"opt.m:0.W": bad}),
                     set_key(["arrays", "opt.m:0.W"], {"shape": [2, 2], "dtype": "float32", "sha256": _digest(bad)}))
    path = tmp_path / "slots.ckpt.npz"
    path.write_bytes(edited)
    with pytest.raises(ModelFileError, match=r"'opt.m:0.W' is declared \[2, 2\], the architecture needs \[4, 1, 3, 3\]"):
        load_checkpoint(path)


def test_checkpoint_round_trip(good_checkpoint):
    model, optimizer, state, settings = load_checkpoint(good_checkpoint)
    assert (state.epoch, state.step, state.global_step) == (1, 3, 20)
    assert optimizer.t == 1 and set(optimizer.state) == {f"{s}:{k}" for s in "mv" for k, _, _ in model.parameters()}
    assert settings.limit_train == 300 and settings.epochs == 2


def test_saved_files_get_the_usual_permissions(tmp_path):
    """mkstemp creates private files; a saved model gets what open() would give (0o666 less the umask)."""
    path = tmp_path / "m.npz"
    save_model(small_model(), path)
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask


def test_nan_weights_are_not_saved(tmp_path):
    model = small_model()
    model.layers[0].params["W"][0, 0, 0, 0] = np.inf
    with pytest.raises(ModelFileError, match="NaN or infinite"):
        save_model(model, tmp_path / "m.npz")
    assert not (tmp_path / "m.npz").exists()


# --- atomic saves under SIGKILL ---------------------------------------------------------------------------------

def big_model(seed):
    """About 17 MB of weights, so that a save takes long enough to be killed in the middle of it."""
    spec = {"input_shape": [1, 64, 64], "layers": [
        {"type": "Flatten"}, {"type": "Dense", "in_features": 4096, "out_features": 1024, "activation": "relu"},
        {"type": "Dense", "in_features": 1024, "out_features": 10}]}
    return architecture.build(spec, seed=seed)


def save_forever(models, path, ready):
    """The child: save model A once, say so, then save B, A, B... to the same path until killed."""
    save_model(models[0], path)
    ready.set()
    i = 1
    while True:
        save_model(models[i % 2], path)
        i += 1


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork and SIGKILL (POSIX)")
def test_a_save_killed_at_any_moment_leaves_the_old_or_the_new_file(tmp_path):
    path = tmp_path / "model.npz"
    models = [big_model(1), big_model(2)]  # the forked children inherit them
    temporaries = re.compile(r"^\.model\.npz\.(\d+)\.\w+\.tmp$")
    context = multiprocessing.get_context("fork")
    rng = random.Random(5)
    killed_mid_save = 0
    for trial in range(12):
        ready = context.Event()
        child = context.Process(target=save_forever, args=(models, str(path), ready))
        child.start()
        assert ready.wait(60), "the child never finished its first save"
        if trial % 2:  # at a random moment
            time.sleep(rng.uniform(0, 0.2))
        else:  # at a random moment while a temporary file is being written
            deadline = time.monotonic() + 10
            while not any(temporaries.match(name) for name in os.listdir(tmp_path)) and time.monotonic() < deadline:
                time.sleep(0.0005)
            time.sleep(rng.uniform(0, 0.01))
        os.kill(child.pid, signal.SIGKILL)
        child.join()
        assert child.exitcode == -signal.SIGKILL
        weights = [p for _, p, _ in load_model(path).parameters()]  # complete and valid, or this raises
        assert any(all(np.array_equal(a, b) for a, (_, b, _) in zip(weights, model.parameters()))
                   for model in models)
        others = [name for name in os.listdir(tmp_path) if name != path.name]
        assert all(temporaries.match(name) and int(temporaries.match(name).group(1)) == child.pid
                   for name in others), others
        killed_mid_save += bool(others)
    assert killed_mid_save > 0, "no kill landed in the middle of a save; the test proved nothing"
    save_model(big_model(3), path)  # the next save removes what killed writers left behind
    assert os.listdir(tmp_path) == [path.name]


@pytest.mark.parametrize("failure", [KeyboardInterrupt, OSError(28, "No space left on device")],
                         ids=["ctrl-c", "disk-full"])
def test_a_failed_save_leaves_the_old_file_and_no_temporary(tmp_path, failure):
    path = tmp_path / "model.npz"
    save_model(small_model(seed=1), path)
    before = path.read_bytes()

    def write_half_then_fail(fh):
        fh.write(before[:100])
        raise failure

    expected = KeyboardInterrupt if failure is KeyboardInterrupt else OutputError
    with pytest.raises(expected):
        write_atomic(path, write_half_then_fail)
    assert path.read_bytes() == before and os.listdir(tmp_path) == [path.name]


def test_unwritable_outputs_fail_before_training(tmp_path, capsys):
    (tmp_path / "out-dir").mkdir()
    code, out, err = run_cli(["train", "--out", tmp_path / "out-dir", "--limit-train", "100"], capsys)
    assert_one_line_error(code, err, "--out", "is a directory")
    code, out, err = run_cli(["train", "--out", tmp_path / "m.npz", "--checkpoint", tmp_path / "out-dir",
                              "--limit-train", "100"], capsys)
    assert_one_line_error(code, err, "--checkpoint", "is a directory")
    assert sorted(os.listdir(tmp_path)) == ["out-dir"]


# --- IDX datasets -----------------------------------------------------------------------------------------------

def idx(array, type_byte=0x08):
    array = np.asarray(array)
    return bytes([0, 0, type_byte, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_dataset(directory, **override):
    """A tiny dataset in MNIST's layout (8x8 images); ``override`` replaces a file's bytes by its key."""
    rng = np.random.default_rng(0)
    files = {"train-images-idx3-ubyte": idx(rng.integers(0, 256, (30, 8, 8), dtype=np.uint8)),
             "train-labels-idx1-ubyte": idx(np.arange(30, dtype=np.uint8) % 3),
             "t10k-images-idx3-ubyte": idx(rng.integers(0, 256, (10, 8, 8), dtype=np.uint8)),
             "t10k-labels-idx1-ubyte": idx(np.arange(10, dtype=np.uint8) % 3)}
    directory.mkdir()
    for name, content in files.items():
        content = override.get(name.replace("-", "_"), content)
        if content is not None:
            name = name + ".gz" if content[:2] == b"\x1f\x8b" else name
            (directory / name).write_bytes(content)
    return directory


GOOD_IMAGES = idx(np.zeros((30, 8, 8), dtype=np.uint8))
IDX_CASES = {
    "wrong-magic": ({"train_images_idx3_ubyte": b"\x01\x02" + GOOD_IMAGES[2:]}, "wrong magic number"),
    "unknown-type": ({"train_images_idx3_ubyte": b"\0\0\x07" + GOOD_IMAGES[3:]}, "unknown IDX data type"),
    "images-2d": ({"train_images_idx3_ubyte": idx(np.zeros((30, 64), dtype=np.uint8))}, "expected (N, H, W)"),
    "size-short": ({"train_images_idx3_ubyte": GOOD_IMAGES[:-1]}, "size disagrees with its header"),
    "size-long": ({"train_images_idx3_ubyte": GOOD_IMAGES + b"\0"}, "size disagrees with its header"),
    "truncated-gzip": ({"train_images_idx3_ubyte": gzip.compress(GOOD_IMAGES)[:-12]}, "truncated gzip"),
    "gzip-declares-too-much": ({"train_images_idx3_ubyte": gzip.compress(
        b"\0\0\x08\x03" + struct.pack(">3I", 2**31, 2**16, 2**16) + bytes(100))}, "more than the 2 GiB"),
    "counts-differ": ({"train_labels_idx1_ubyte": idx(np.zeros(29, dtype=np.uint8))}, "do not match"),
    "float-labels": ({"train_labels_idx1_ubyte": idx(np.zeros(30, dtype=">f4"), 0x0D)}, "expected integers"),
    "negative-labels": ({"train_labels_idx1_ubyte": idx(np.full(30, -1, dtype=np.int8), 0x09)},
                        "class numbers from 0"),
    "no-images": ({"train_images_idx3_ubyte": idx(np.zeros((0, 8, 8), dtype=np.uint8)),
                   "train_labels_idx1_ubyte": idx(np.zeros(0, dtype=np.uint8))}, "no train images"),
    "float-images": ({"t10k_images_idx3_ubyte": idx(np.zeros((10, 8, 8), dtype=">f4"), 0x0D)}, "expected 8-bit"),
    "missing-file": ({"t10k_labels_idx1_ubyte": None}, "no t10k-labels-idx1-ubyte"),
}


@pytest.mark.parametrize("case", IDX_CASES, ids=list(IDX_CASES))
def test_broken_idx_datasets(case, tmp_path, capsys):
    override, fragment = IDX_CASES[case]
    directory = write_dataset(tmp_path / "data", **override)
    with pytest.raises(DataError, match=re.escape(fragment)):
        load_idx_dataset(directory)
    code, out, err = run_cli(["train", "--data-dir", directory, "--out", tmp_path / "m.npz", "--quiet"], capsys)
    assert_one_line_error(code, err, fragment)


def test_the_tiny_dataset_itself_trains(tmp_path, capsys):
    directory = write_dataset(tmp_path / "data")
    code, out, err = run_cli(["train", "--data-dir", directory, "--out", tmp_path / "m.npz", "--quiet", "--epochs",
                              "1", "--conv", "2", "--dense", "4", "--val-split", "0"], capsys)
    assert code == 0, err
    assert load_model(tmp_path / "m.npz").num_classes == 3


# --- images -----------------------------------------------------------------------------------------------------

def digit_image(size=(60, 80)):
    img = Image.new("L", size, 255)
    ImageDraw.Draw(img).ellipse((15, 15, 45, 65), outline=0, width=6)
    return img


def png_with_size(width, height):
    """A PNG whose header claims width x height, with almost no data: what a decompression bomb looks like."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b""))


def encode(img, fmt, **kwargs):
    out = io.BytesIO()
    img.save(out, fmt, **kwargs)
    return out.getvalue()


def image_cases():
    """(file name, bytes, expected message fragment or None if the image must work)."""
    digit = digit_image()
    rgba = Image.new("RGBA", (60, 80), (0, 0, 0, 0))
    ImageDraw.Draw(rgba).ellipse((15, 15, 45, 65), outline=(0, 0, 0, 255), width=6)
    frames = [digit, digit.rotate(15)]
    nan_pixels = np.asarray(digit, dtype=np.float32).copy()
    nan_pixels[0, :5] = np.nan
    png = encode(digit, "PNG")
    return [
        ("empty.png", b"", "empty file"),
        ("text.png", b"this is not an image\n", "not an image file"),
        ("truncated.png", png[:len(png) // 2], "cannot decode image"),
        ("animated.gif", encode(frames[0], "GIF", save_all=True, append_images=frames[1:]), "animated image"),
        ("animated.png", encode(frames[0], "PNG", save_all=True, append_images=frames[1:]), "animated image"),
        ("one-pixel.png", encode(Image.new("L", (1, 1), 0), "PNG"), "blank"),
        ("blank.png", encode(Image.new("L", (40, 40), 255), "PNG"), "blank"),
        ("bomb.png", png_with_size(100_000, 100_000), "decompression bomb"),
        ("too-large.png", png_with_size(8000, 8000), "larger than the 50,000,000-pixel limit"),
        ("sixteen-bit.png", encode(Image.fromarray(np.asarray(digit, dtype=np.uint16) * 257), "PNG"), None),
        ("twelve-bit.png", encode(Image.fromarray(np.asarray(digit, dtype=np.uint16) * 16), "PNG"), None),
        ("palette.png", encode(digit.convert("P"), "PNG"), None),
        ("palette-4.png", encode(digit.convert("RGB").quantize(4), "PNG"), None),
        ("alpha.png", encode(rgba, "PNG"), None),
        ("gray-alpha.png", encode(digit.convert("LA"), "PNG"), None),
        ("bilevel.png", encode(digit.convert("1"), "PNG"), None),
        ("cmyk.jpg", encode(digit.convert("CMYK"), "JPEG"), None),
        ("float-nan.tif", encode(Image.fromarray(nan_pixels, "F"), "TIFF"), "NaN or infinite"),
    ]


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    directory = tmp_path_factory.mktemp("images")
    files = []
    for name, content, fragment in image_cases():
        (directory / name).write_bytes(content)
        files.append((directory / name, fragment))
    files.append((directory / "missing.png", "no such file"))
    return files


def test_images_in_predict(image_files, good_model, capsys):
    for path, fragment in image_files:
        code, out, err = run_cli(["predict", good_model, path], capsys)
        if fragment is None:
            assert code == 0 and err == "", (path.name, err)
            assert re.fullmatch(rf"{re.escape(str(path))}: \d \(\d+\.\d%; then .*\)", out.strip()), out
        else:
            assert_one_line_error(code, err, str(path), fragment)


def test_the_unusual_images_give_the_same_digit_as_the_plain_one(image_files):
    """16-bit, palette, alpha, CMYK... hold the same drawing: preprocessing gives (nearly) the same input."""
    plain = mnist_style(np.asarray(digit_image(), dtype=np.float64) / 255)
    for path, fragment in image_files:
        if fragment is None:
            assert np.abs(prepare_digit(path) - plain).mean() < 0.02, path.name


# --- flag values ------------------------------------------------------------------------------------------------

FLAG_CASES = {
    "epochs-0": (["--epochs", "0"], "epochs must be a positive integer"),
    "epochs-negative": (["--epochs", "-3"], "epochs must be a positive integer"),
    "batch-size-0": (["--batch-size", "0"], "batch_size must be a positive integer"),
    "batch-size-negative": (["--batch-size", "-64"], "batch_size must be a positive integer"),
    "lr-0": (["--lr", "0"], "learning rate must be a positive number"),
    "lr-negative": (["--lr", "-0.1"], "learning rate must be a positive number"),
    "lr-nan": (["--lr", "nan"], "learning rate must be a positive number"),
    "lr-inf": (["--lr", "inf"], "learning rate must be a positive number"),
    "dropout-1": (["--dropout", "1"], "dropout rate must be in [0, 1)"),
    "dropout-negative": (["--dropout", "-0.1"], "dropout rate must be in [0, 1)"),
    "dropout-1.5": (["--dropout", "1.5"], "dropout rate must be in [0, 1)"),
    "kernel-larger-than-input": (["--kernel", "29"], "layer 0 (Conv2D): Conv2D kernel 29x29 is larger than its "
                                                     "input 28x28"),
    "pool-larger-than-input": (["--kernel", "3", "--pool", "27"], "layer 1 (MaxPool2D): MaxPool2D window 27x27 is "
                                                                   "larger than its input 26x26"),
    "deep-stack-shrinks-to-nothing": (["--conv", "4,4,4,4,4"], "is larger than its input 1x1"),
    "pool-0": (["--pool", "0"], "pool size must be a positive integer"),
    "padding-negative": (["--padding", "-1"], "padding must be a non-negative integer"),
    "threads-0": (["--threads", "0"], "thread count must be a positive integer"),
    "limit-train-0": (["--limit-train", "0"], "limit_train must be a positive integer"),
    "val-split-1": (["--val-split", "1"], "val_split must be in [0, 1)"),
    "checkpoint-every-negative": (["--checkpoint-every", "-1"], "checkpoint_every must be a non-negative integer"),
    "optimizer-unknown": (["--optimizer", "rmsprop"], "unknown optimizer"),
    "epochs-not-a-number": (["--epochs", "many"], "--epochs"),
}


@pytest.mark.parametrize("case", FLAG_CASES, ids=list(FLAG_CASES))
def test_flag_values_out_of_range(case, tmp_path, capsys):
    args, fragment = FLAG_CASES[case]
    code, out, err = run_cli(["train", "--quiet", "--limit-train", "100", "--out", tmp_path / "m.npz", *args], capsys)
    assert_one_line_error(code, err, fragment)
    assert os.listdir(tmp_path) == []


def test_resume_refuses_settings_the_checkpoint_fixes(good_checkpoint, capsys):
    code, out, err = run_cli(["train", "--resume", good_checkpoint, "--epochs", "9", "--lr", "0.1"], capsys)
    assert_one_line_error(code, err, "--resume continues the run with the settings stored in", "drop --epochs, --lr")


def test_weights_declared_unlike_the_architecture_are_refused_before_any_is_read(good_model, tmp_path):
    """A header may declare a 100 MB weight that deflates from almost nothing; it is compared with the
    architecture first, so the reader never allocates it (before: 3.5 GB for a 1.2 GB bomb)."""
    import tracemalloc
    big = np.zeros(25_000_000, dtype=np.float32)
    data = rebuild(good_model.read_bytes(), set_key(["arrays", "param.0.W"],
                                                    {"shape": [25_000_000], "dtype": "float32", "sha256": _digest(big)}),
                   arrays={"param.0.W": big})
    path = tmp_path / "bomb.npz"
    path.write_bytes(data)
    del big, data
    tracemalloc.start()
    with pytest.raises(ModelFileError, match=r"'param.0.W' is declared \[25000000\], the architecture needs"):
        load_model(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 20_000_000, peak
