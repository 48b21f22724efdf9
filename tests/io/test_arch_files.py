"""Architectures as files: the shipped reference network, JSON/TOML descriptions, and refusing wrong ones."""
import json

import numpy as np
import pytest

from cycnn.io import architecture
from cycnn.errors import ArchitectureError, ConfigError
from cycnn.io.model_file import load_model, save_model

from cli_runner import run_cli  # tests/cli_runner.py

TOML_ARCH = """\
# Three 5x5 convolutions with padding 2 and two hidden dense layers.
input_shape = [1, 28, 28]

[[layers]]
type = "Conv2D"
in_channels = 1
out_channels = 8
kernel_size = [5, 5]
padding = 2
activation = "relu"

[[layers]]
type = "MaxPool2D"
pool_size = 2

[[layers]]
type = "Conv2D"
in_channels = 8
out_channels = 16
kernel_size = 5
padding = 2
activation = "relu"

[[layers]]
type = "MaxPool2D"
pool_size = 2

[[layers]]
type = "Conv2D"
in_channels = 16
out_channels = 16
kernel_size = 5
padding = 2
activation = "relu"

[[layers]]
type = "Flatten"

[[layers]]
type = "Dense"
in_features = 784
out_features = 32
activation = "relu"

[[layers]]
type = "Dropout"
p = 0.25

[[layers]]
type = "Dense"
in_features = 32
out_features = 10
"""


@pytest.fixture(scope="module")
def small_mnist(tmp_path_factory):
    """A directory with the first 200 MNIST training and test images as raw IDX files: quick to train and test."""
    from cycnn.data.idx import MNIST_FILES, load_idx_dataset
    directory = tmp_path_factory.mktemp("small-mnist")
    arrays = dict(zip(MNIST_FILES, load_idx_dataset()))
    for key, stem in MNIST_FILES.items():
        array = np.ascontiguousarray(arrays[key][:200], dtype=np.uint8)
        header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
        (directory / stem).write_bytes(header + array.tobytes())
    return directory


def test_the_shipped_reference_file_is_what_stack_describes_by_default():
    reference = architecture.reference()
    assert reference == architecture.stack()
    assert architecture.build(reference).parameter_count == 225_034
    assert architecture.stack(conv_channels=(8,))["layers"][0]["kernel_size"] == [3, 3]  # one size applies to all


def test_fitting_the_reference_to_mnist_changes_nothing():
    assert architecture.fit_to_data(architecture.reference(), (1, 28, 28), 10) == architecture.reference()


def test_fitting_the_reference_to_other_data_resizes_the_ends():
    spec = architecture.fit_to_data(architecture.reference(), (1, 32, 32), 3)
    model = architecture.build(spec)
    assert model.input_shape == (1, 32, 32) and model.num_classes == 3
    # 32 -> conv 30 -> pool 15 -> conv 13 -> pool 6: the first dense layer takes 64 * 6 * 6 features.
    assert spec["layers"][5]["in_features"] == 64 * 6 * 6
    with pytest.raises(ArchitectureError, match=r"layer 3 \(MaxPool2D\).*larger than its input 1x1"):
        architecture.fit_to_data(architecture.reference(), (1, 8, 8), 3)


@pytest.fixture
def toml_file(tmp_path):
    path = tmp_path / "deep.toml"
    path.write_text(TOML_ARCH)
    return path


def test_summary_of_a_toml_architecture(toml_file, capsys):
    code, out, err = run_cli(["summary", toml_file], capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "Input: 28x28x1"
    rows = [line.split() for line in lines if line[:1].isdigit()]
    assert [row[-2] for row in rows] == ["28x28x8", "14x14x8", "14x14x16", "7x7x16", "7x7x16", "784", "32", "32",
                                         "10"]
    expected = (1 * 25 * 8 + 8) + (8 * 25 * 16 + 16) + (16 * 25 * 16 + 16) + (784 * 32 + 32) + (32 * 10 + 10)
    assert lines[-1] == f"Total parameters: {expected:,}"


def test_summary_of_json_architecture_and_model_files_agree(tmp_path, capsys):
    (tmp_path / "ref.json").write_text(json.dumps(architecture.reference()))
    save_model(architecture.build(architecture.reference(), seed=0), tmp_path / "ref.npz")
    _, from_json, _ = run_cli(["summary", tmp_path / "ref.json"], capsys)
    _, from_model, _ = run_cli(["summary", tmp_path / "ref.npz"], capsys)
    assert from_json == from_model and "Total parameters: 225,034" in from_json


def test_train_with_a_toml_architecture(toml_file, small_mnist, tmp_path, capsys):
    code, out, err = run_cli(["train", "--arch", toml_file, "--data-dir", small_mnist, "--epochs", "1",
                              "--val-split", "0", "--threads", "1", "--quiet", "--out", tmp_path / "m.npz"], capsys)
    assert code == 0, err
    import tomllib
    stored = load_model(tmp_path / "m.npz").get_config()
    assert stored["layers"] == architecture.build(tomllib.loads(TOML_ARCH)).get_config()["layers"]


def test_train_defaults_to_the_reference_file_and_flags_still_shape_the_network(small_mnist, tmp_path, capsys):
    common = ["--data-dir", small_mnist, "--epochs", "1", "--limit-train", "100", "--val-split", "0",
              "--threads", "1", "--quiet"]
    code, _, err = run_cli(["train", *common, "--out", tmp_path / "ref.npz"], capsys)
    assert code == 0, err
    assert load_model(tmp_path / "ref.npz").get_config()["layers"] == architecture.reference()["layers"]
    code, _, err = run_cli(["train", *common, "--dense", "64", "--kernel", "5", "--padding", "2",
                            "--out", tmp_path / "flags.npz"], capsys)
    assert code == 0, err
    layers = load_model(tmp_path / "flags.npz").get_config()["layers"]
    assert layers == architecture.stack(dense_units=(64,), kernel_sizes=(5,), padding=2)["layers"]
    code, _, err = run_cli(["train", *common, "--arch", tmp_path / "x.toml", "--conv", "8"], capsys)
    assert code == 2 and "drop --conv or the --arch file" in err


def set_in(layer, **values):
    def change(spec):
        spec["layers"][layer].update(values)
        return spec
    return change


def replace_layer(index, entry):
    def change(spec):
        spec["layers"][index] = entry
        return spec
    return change


WRONG = [
    (set_in(2, kernel_size=[14, 14]), r"layer 2 \(Conv2D\): Conv2D kernel 14x14 is larger than its input 13x13"),
    (replace_layer(3, {"type": "Conv3D"}), r"layer 3: unknown layer type 'Conv3D'; known types: Conv2D"),
    (set_in(5, out_features=-4), r"layer 5 \(Dense\): out_features must be a positive integer, "
                                 r"received out_features=-4"),
    (set_in(0, padding=-1), r"layer 0 \(Conv2D\): padding must be a non-negative integer"),
    (set_in(1, pool_size=[30, 30]), r"layer 1 \(MaxPool2D\): MaxPool2D window 30x30 is larger than its input 26x26"),
    (set_in(5, in_features=100), r"layer 5 \(Dense\): Dense expects input of shape \(100,\), received \(1600,\)"),
    (set_in(2, in_channels=16), r"layer 2 \(Conv2D\): Conv2D expects 16 input channels, received 32"),
    (replace_layer(4, {"kind": "Flatten"}), r"layer 4: each layer needs a 'type'"),
]


@pytest.mark.parametrize("change, message", WRONG)
def test_wrong_descriptions_are_refused_with_the_layer_and_shapes(change, message, tmp_path, capsys):
    spec = change(architecture.reference())
    with pytest.raises(ArchitectureError, match=message):
        architecture.build(spec)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(spec))
    code, out, err = run_cli(["summary", path], capsys)
    assert code == 2 and out == "" and err.count("\n") == 1 and err.startswith("cycnn: error: layer ")


def test_wrong_input_shape_and_unreadable_files(tmp_path, capsys):
    with pytest.raises(ArchitectureError, match=r"input_shape must be three positive integers.*-28"):
        architecture.build({**architecture.reference(), "input_shape": [1, -28, 28]})
    bad = tmp_path / "bad.toml"
    bad.write_text("[[layers]\ntype = 'Flatten'\n")
    with pytest.raises(ConfigError, match="not a valid architecture file"):
        architecture.load_file(bad)
    code, _, err = run_cli(["train", "--arch", bad, "--epochs", "1", "--limit-train", "10"], capsys)
    assert code == 2 and "bad.toml: not a valid architecture file" in err and err.count("\n") == 1


def test_stack_refuses_negative_sizes():
    with pytest.raises(ConfigError, match="pool size must be a positive integer"):
        architecture.stack(pool_size=-1)
    with pytest.raises(ArchitectureError, match=r"layer 0 \(Conv2D\): out_channels must be a positive integer"):
        architecture.stack(conv_channels=(-8,), kernel_sizes=(3,))
