"""Hostile architecture files and descriptions: deep nesting, huge files, FIFOs, absurd or mistyped values, names
with terminal escapes. Each is one ArchitectureError or ConfigError line, never a traceback or a hang."""
import json
import os
import re

import pytest

from cycnn.errors import ArchitectureError, ConfigError
from cycnn.io import architecture

from cli_runner import assert_one_line_error, deadline, run_cli  # tests/cli_runner.py


def nested(depth):
    """A list nested ``depth`` deep, built without recursion."""
    value = []
    for _ in range(depth):
        value = [value]
    return value


# --- the file itself ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, text, problem", [
    ("deep.json", "[\n" * 100_000 + "]\n" * 100_000, "nested too deeply"),
    ("deep.toml", "input_shape = " + "[\n" * 100_000 + "]\n" * 100_000, "nested too deeply"),
    ("deep-line.json", "[" * 100_000 + "]" * 100_000, "a line of 200,000 characters"),
    ("dotted.toml", "a" + ".b" * 100_000 + " = 1\n", "a line of 200,005 characters"),  # minutes of parsing
    ("deep-value.json", json.dumps({"layers": [{"type": "Flatten", "x": nested(500)}]}),
     "nested more than 16 levels deep"),
])
def test_deeply_nested_files_are_refused(tmp_path, capsys, name, text, problem):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError, match=f"^{re.escape(str(path))}: {problem}"):
        architecture.load_file(path)
    code, _, err = run_cli(["summary", path], capsys)
    assert_one_line_error(code, err, problem)


def test_a_huge_file_is_refused_before_reading_it(tmp_path):
    path = tmp_path / "huge.json"
    with open(path, "wb") as fh:
        fh.truncate(2 << 20)  # sparse: no 2 MB are written
    with pytest.raises(ConfigError, match=r"2,097,152 bytes, more than the 1 MB an architecture file may have"):
        architecture.load_file(path)


def test_a_fifo_or_a_directory_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "arch.json"
    os.mkfifo(fifo)
    with deadline():
        with pytest.raises(ConfigError, match=f"^{re.escape(str(fifo))}: not a regular file"):
            architecture.load_file(fifo)
    with pytest.raises(ConfigError, match="not a regular file"):
        architecture.load_file(tmp_path)


# --- absurd values --------------------------------------------------------------------------------------------------
def changed(layer, **values):
    spec = architecture.reference()
    spec["layers"][layer].update(values)
    return spec


HUGE = 10 ** 19 + 1  # 20 digits
ABSURD = {
    "in-features-int64-max": (changed(5, in_features=9223372036854775807), r"^layer 5 \(Dense\): in_features"),
    "kernel-20-digits": (changed(0, kernel_size=[HUGE, HUGE]), r"^layer 0 \(Conv2D\): kernel_size"),
    "channels-20-digits": (changed(2, out_channels=HUGE), r"^layer 2 \(Conv2D\): out_channels"),
    "padding-20-digits": (changed(0, padding=HUGE), r"^layer 0 \(Conv2D\): padding"),
    "boolean-channels": (changed(0, out_channels=True), r"^layer 0 \(Conv2D\): out_channels must be a positive"),
    "boolean-input-shape": ({**architecture.reference(), "input_shape": [True, 28, 28]},
                            r"^input_shape must be three positive integers .*\[True, 28, 28\]"),
    "huge-input-shape": ({**architecture.reference(), "input_shape": [1, HUGE, 28]},
                         r"^input_shape must be three positive integers"),
    "deep-kernel": (changed(0, kernel_size=[nested(5000), 3]), r"^layer 0 \(Conv2D\): a value nests too deeply"),
    "type-is-a-list": (changed(4, type=["Flatten"]), r"^layer 4: unknown layer type \['Flatten'\]"),
    "escape-in-a-key": (changed(4, **{"\x1b[2J": 1}), r"^layer 4 \(Flatten\): unknown setting '\\x1b\[2J'"),
    "class-names-a-number": ({**architecture.reference(), "class_names": 5}, r"^class_names must be a list of"),
}


@pytest.mark.parametrize("case", ABSURD, ids=list(ABSURD))
def test_absurd_values_are_one_line_errors(case, tmp_path, capsys):
    spec, message = ABSURD[case]
    with pytest.raises(ArchitectureError, match=message) as refused:
        architecture.build(spec, initialize=False)
    assert "\x1b" not in str(refused.value) and len(str(refused.value)) < 400
    if case != "deep-kernel":  # a file cannot hold it: load_file refuses the nesting
        path = tmp_path / "absurd.json"
        path.write_text(json.dumps(spec))
        code, _, err = run_cli(["summary", path], capsys)
        assert_one_line_error(code, err, "cycnn: error: ")


@pytest.mark.parametrize("layers, message", [
    ([1, {"type": "Dense", "in_features": 4, "out_features": 2}], "layer 0: each layer needs a 'type'"),
    ([{"type": ["Conv2D"]}, {"type": "Dense", "in_features": 4, "out_features": 2}], "unknown layer type"),
    ({"type": "Dense"}, "ends with a Dense layer"),
])
def test_fit_to_data_refuses_malformed_layer_lists(layers, message):
    with pytest.raises(ArchitectureError, match=re.escape(message)):
        architecture.fit_to_data({"layers": layers}, (1, 28, 28), 10)


def test_stack_turns_absurd_flag_values_into_layer_errors():
    with pytest.raises(ArchitectureError, match=r"^layer 0 \(Conv2D\): padding"):
        architecture.stack(padding=HUGE)
    with pytest.raises(ArchitectureError, match=r"^layer 0 \(Conv2D\): kernel_size"):
        architecture.stack(kernel_sizes=(HUGE,))
