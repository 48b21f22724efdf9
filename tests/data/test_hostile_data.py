"""Hostile data files: labels that teach nothing or one damaged label, NaN pixels, class folder names with terminal
escapes, FIFOs and devices where files belong, and training logs with broken lines."""
import json
import os
import re
import struct
import warnings

import numpy as np
import pytest
from PIL import Image

from cycnn.nn.sequential import check_class_name
from cycnn.data.datasets import Dataset, load_data
from cycnn.data.idx import load_idx_dataset, read_idx
from cycnn.data.images import load_image, prepare_digit
from cycnn.data.splits import training_data
from cycnn.errors import DataError, ImageError
from cycnn.train.log import read_log

from cli_runner import assert_one_line_error, deadline, run_cli  # tests/cli_runner.py


def idx(array, type_byte=0x08):
    array = np.asarray(array)
    return bytes([0, 0, type_byte, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_idx_dataset(directory, train_labels, test_labels, type_byte=0x08):
    """Four IDX files of 8x8 random images with these labels (``type_byte`` 0x0B: big-endian int16 labels)."""
    rng = np.random.default_rng(0)
    dtype = ">i2" if type_byte == 0x0B else np.uint8
    directory.mkdir()
    for prefix, labels in (("train", train_labels), ("t10k", test_labels)):
        images = rng.integers(0, 256, (len(labels), 8, 8), dtype=np.uint8)
        (directory / f"{prefix}-images-idx3-ubyte").write_bytes(idx(images))
        (directory / f"{prefix}-labels-idx1-ubyte").write_bytes(idx(np.asarray(labels, dtype=dtype), type_byte))
    return directory


# --- labels ---------------------------------------------------------------------------------------------------------
def test_training_labels_of_one_class_are_refused(tmp_path, capsys):
    data = write_idx_dataset(tmp_path / "data", np.full(600, 3), np.arange(100) % 10)
    with pytest.raises(DataError, match="^all 600 training labels are 3: there is nothing to learn$"):
        training_data(load_data(data))
    code, _, err = run_cli(["train", "--data-dir", data, "--out", tmp_path / "m.npz", "--quiet"], capsys)
    assert_one_line_error(code, err, "all 600 training labels are 3")
    assert not (tmp_path / "m.npz").exists()


def test_one_damaged_label_does_not_make_thousands_of_classes(tmp_path, capsys):
    labels = np.arange(600) % 10
    labels[123] = 30000
    data = write_idx_dataset(tmp_path / "data", labels, np.arange(100) % 10, type_byte=0x0B)
    message = "classes 10-29999 have no training images; is a label damaged?"
    with pytest.raises(DataError, match=f"^{re.escape(message)}$"):
        training_data(load_data(data))
    code, _, err = run_cli(["train", "--data-dir", data, "--out", tmp_path / "m.npz", "--quiet"], capsys)
    assert_one_line_error(code, err, message)


@pytest.mark.parametrize("train, test, message", [
    ([0, 1, 2, 4] * 5, [0, 1], "^class 3 has no training images; is a label damaged\\?$"),
    ([0, 1] * 5, [0, 30000], "^classes 2-30000 have no training images"),  # the stray label in the test set
    (list(range(0, 21, 2)), [0], r"^classes 1, 3, 5, 7, \.\.\. \(10 in all\) have no training images"),
])
def test_classes_without_training_images_are_named_compactly(train, test, message):
    dataset = Dataset(np.zeros((len(train), 8, 8), np.uint8), np.array(train), np.zeros((len(test), 8, 8), np.uint8),
                      np.array(test))
    with pytest.raises(DataError, match=message):
        training_data(dataset)


def test_labels_beyond_the_class_names_and_a_named_single_class_are_refused():
    images = np.zeros((6, 8, 8), np.uint8)
    with pytest.raises(DataError, match="a label is 7 but the dataset names only 2 classes"):
        training_data(Dataset(images, np.array([0, 1, 7, 0, 1, 0]), images, np.zeros(6, int), ["a", "b"]))
    with pytest.raises(DataError, match=r"all 3 training labels are 1 \(b\): there is nothing to learn"):
        training_data(Dataset(images, np.array([1, 1, 1, 0, 0, 0]), images, np.zeros(6, int), ["a", "b"]), limit=3)


def test_sound_labels_still_train():
    images = np.zeros((30, 8, 8), np.uint8)
    run = training_data(Dataset(images, np.arange(30) % 10, images[:5], np.arange(5)), val_split=0.2)
    assert run.num_classes == 10 and len(run.y_train) == 24


# --- pixels ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_float_images_with_nan_or_infinite_pixels_are_refused(tmp_path, bad):
    pixels = np.zeros((40, 40), np.float32)
    pixels[10:30, 18:22] = 1.0
    pixels[0, 0] = bad
    path = tmp_path / "digit.tif"
    Image.fromarray(pixels, "F").save(path)
    with pytest.raises(ImageError, match=f"^{re.escape(str(path))}: 1 of its 1,600 pixels are NaN or infinite"):
        prepare_digit(path)


# --- class names ----------------------------------------------------------------------------------------------------
def write_folder(root, names):
    for name in names:
        (root / name).mkdir(parents=True)
        for k in range(2):
            img = Image.new("L", (20, 20), 255)
            img.paste(0, (5 + k, 5, 12, 15))
            img.save(root / name / f"{k}.png")
    return root


@pytest.mark.parametrize("name, shown", [("\x1b[31mred", r"'\x1b[31mred'"), ("two\nlines", r"'two\nlines'"),
                                         ("\u202eevil", r"'\u202eevil'"), ("x" * 65, "'" + "x" * 64 + "'...")],
                         ids=["escape", "newline", "right-to-left", "65-characters"])
def test_class_folders_with_unprintable_or_long_names_are_refused_safely(tmp_path, capsys, name, shown):
    root = write_folder(tmp_path / "folder", ["plain", name])
    with pytest.raises(DataError, match="class name") as refused:
        load_data(root)
    assert str(refused.value).startswith(f"{root}: class name {shown} ")
    code, _, err = run_cli(["train", "--data-dir", root, "--out", tmp_path / "m.npz", "--quiet"], capsys)
    assert_one_line_error(code, err, shown)


@pytest.mark.parametrize("name", ["Ankle boot", "T-shirt/top", "chiffre_été", "数字", "x" * 64],
                         ids=["space", "slash", "accents", "cjk", "64-characters"])
def test_plain_class_names_pass(name):
    check_class_name(name, "model.npz")


@pytest.mark.parametrize("name, problem", [(3, "must be text, not int"), ("", "is blank"), ("  ", "is blank"),
                                           ("tab\there", "unprintable")])
def test_check_class_name_raises_the_callers_error(name, problem):
    with pytest.raises(ImageError, match=f"^model.npz: .*{problem}"):
        check_class_name(name, "model.npz", error=ImageError)


# --- FIFOs and devices ----------------------------------------------------------------------------------------------
def test_an_idx_file_that_is_a_fifo_is_refused_without_blocking(tmp_path):
    data = write_idx_dataset(tmp_path / "data", np.arange(30) % 3, np.arange(10) % 3)
    fifo = data / "train-images-idx3-ubyte"
    fifo.unlink()
    os.mkfifo(fifo)
    with deadline():
        with pytest.raises(DataError, match=f"^{re.escape(str(fifo))}: not a regular file"):
            load_idx_dataset(data)
        with pytest.raises(DataError, match="not a regular file"):
            read_idx(fifo)


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_an_image_path_that_is_a_fifo_or_a_device_is_refused_without_blocking(tmp_path, kind):
    path = tmp_path / "digit.png"
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path = "/dev/zero"  # endless: reading it would never finish
    with deadline():
        with pytest.raises(ImageError, match=f"^{re.escape(str(path))}: not a regular file"):
            load_image(path)


# --- training logs --------------------------------------------------------------------------------------------------
def write_log(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_broken_lines_in_the_middle_of_a_log_are_skipped_with_a_warning(tmp_path):
    rows = [json.dumps(r) for r in ({"type": "run"}, {"type": "step", "step": 1}, {"type": "step", "step": 2})]
    path = write_log(tmp_path / "log.jsonl", [rows[0], rows[1][:9] + rows[2], "[" * 100_000, rows[2], '{"no": 1}',
                                              '{"type": "st'])
    with pytest.warns(UserWarning, match=f"^{re.escape(str(path))}: skipped 3 broken lines"):
        records = read_log(path)
    assert [r.get("step") for r in records] == [None, 2]


def test_a_log_with_only_a_cut_last_line_gives_no_warning(tmp_path):
    path = write_log(tmp_path / "log.jsonl", ['{"type": "run"}', '{"type": "st'])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(read_log(path)) == 1


@pytest.mark.parametrize("content, problem", [(b'{"type": "st\n{"type": "run"}\n', "line 1 is not JSON"),
                                              (b'{"type": "step"}\n{"type": "run"}\n', "does not start with a run"),
                                              (b'{"type": "run"}\n\xff\xfe\n', "not UTF-8")])
def test_a_log_that_does_not_start_with_a_run_record_or_is_not_text_still_fails(tmp_path, content, problem):
    path = tmp_path / "log.jsonl"
    path.write_bytes(content)
    with pytest.raises(DataError, match=problem):
        read_log(path)
