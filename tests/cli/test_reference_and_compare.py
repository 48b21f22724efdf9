"""``predict --save-input``, ``cycnn layers`` and ``cycnn compare`` (issue 16): what a learner needs to see why an
answer went wrong, to write an architecture file without reading the source, and to set runs side by side."""
import inspect
import json
import re

import numpy as np
import pytest
from PIL import Image

from cli_runner import assert_one_line_error, run_cli
from cycnn.data.images import prepare_digit
from cycnn.io.architecture import build, load_file
from cycnn.nn.layers import LAYER_TYPES

TINY = ["train", "--epochs", "1", "--limit-train", "256", "--val-split", "0.1", "--conv", "2", "--dense", "8",
        "--quiet"]


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    """Two tiny models trained through the CLI, each with its log beside it; the second for two epochs."""
    directory = tmp_path_factory.mktemp("compare")
    paths = [directory / "small.npz", directory / "wider.npz"]
    assert run_cli([*TINY, "--out", paths[0]])[0] == 0
    assert run_cli([*TINY, "--conv", "4", "--epochs", "2", "--out", paths[1]])[0] == 0
    return paths


# --- predict --save-input -------------------------------------------------------------------------------------

@pytest.mark.slow
def test_save_input_writes_what_the_network_saw(two_models, tmp_path, draw_digit, capsys):
    (tmp_path / "in").mkdir()
    files = [tmp_path / "in" / "seven.png", tmp_path / "in" / "seven.jpg", tmp_path / "in" / "..odd name!.png"]
    for path in files:
        draw_digit("seven").convert("RGB").save(path)
    out = tmp_path / "new" / "inputs"
    code, stdout, err = run_cli(["predict", two_models[0], *files, "--save-input", out, "--json"], capsys)
    assert code == 0, err
    names = ["seven-28x28.png", "seven-2-28x28.png", "odd_name_-28x28.png"]
    assert sorted(p.name for p in out.iterdir()) == sorted(names)  # nothing else, nothing hidden or elsewhere
    assert [r["saved_input"] for r in json.loads(stdout)] == [str(out / n) for n in names]
    with Image.open(out / names[0]) as saved:
        assert saved.size == (28, 28) and saved.mode == "L"
        np.testing.assert_allclose(np.asarray(saved) / 255.0, prepare_digit(files[0]), atol=1 / 255)
    code, stdout, err = run_cli(["predict", two_models[0], files[0], "--save-input", out], capsys)
    assert code == 0 and re.fullmatch(r".*seven\.png: \d \(\d+\.\d%; then \d \d+\.\d%, \d \d+\.\d%\)\n", stdout)


def test_save_input_into_a_file_is_one_line(two_models, tmp_path, draw_digit, capsys):
    draw_digit("zero").save(tmp_path / "zero.png")
    (tmp_path / "taken").write_text("a file")
    for target in (tmp_path / "taken", tmp_path / "taken" / "below"):
        code, _, err = run_cli(["predict", two_models[0], tmp_path / "zero.png", "--save-input", target], capsys)
        assert_one_line_error(code, err, str(target))


# --- layers ---------------------------------------------------------------------------------------------------

def test_layers_lists_every_type_and_argument(capsys):
    code, text, _ = run_cli(["layers"], capsys)
    assert code == 0
    code, markdown, _ = run_cli(["layers", "--markdown"], capsys)
    assert code == 0 and markdown.startswith("| Layer | Argument | Type | Default | Meaning |")
    for name, cls in LAYER_TYPES.items():
        assert f"\n{name}: " in text and f"| `{name}` |" in markdown
        for argument in inspect.signature(cls).parameters:
            if argument not in ("seed", "dtype"):
                assert re.search(rf"^  {argument} +\S", text, re.MULTILINE), (name, argument)
                assert f"| `{argument}` |" in markdown, (name, argument)
    assert "seed" not in text and "dtype" not in text


def test_an_architecture_written_from_the_reference_builds(tmp_path, capsys):
    """A TOML file with one layer of every type, each setting every argument the reference names, builds."""
    code, stdout, _ = run_cli(["layers", "--json"], capsys)
    reference = {layer["type"]: layer for layer in json.loads(stdout)}
    values = {"in_channels": 1, "out_channels": 4, "kernel_size": [3, 3], "stride": 1, "padding": 1,
              "activation": "relu", "pool_size": 2, "in_features": 4 * 14 * 14, "out_features": 10, "p": 0.25,
              "mean": [0.5], "std": [0.25]}
    order = ["Normalize", "Conv2D", "ReLU", "MaxPool2D", "Dropout", "Flatten", "Dense"]
    assert sorted(order) == sorted(reference)
    tables = []
    for name in order:
        lines = [f'[[layers]]\ntype = "{name}"']
        for argument in reference[name]["arguments"]:
            value = 2 if (name, argument["name"]) == ("MaxPool2D", "stride") else values[argument["name"]]
            lines.append(f"{argument['name']} = {json.dumps(value)}")
        tables.append("\n".join(lines))
    path = tmp_path / "every_layer.toml"
    path.write_text("input_shape = [1, 28, 28]\n\n" + "\n\n".join(tables) + "\n")
    model = build(load_file(path), seed=0)
    assert [type(layer).__name__ for layer in model.layers] == order
    assert model.predict_proba(np.zeros((1, 1, 28, 28), np.float32)).shape == (1, 10)


# --- compare --------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_compare_table_json_and_plot(two_models, tmp_path, capsys):
    plot = tmp_path / "curves.png"
    code, stdout, err = run_cli(["compare", *two_models, "--plot", plot], capsys)
    assert code == 0, err
    lines = stdout.splitlines()
    assert lines[0].split()[:3] == ["model", "architecture", "parameters"]
    assert "conv2@3x3+relu pool2 flat dense8+relu" in lines[1] and "conv4@3x3+relu" in lines[2]
    with Image.open(plot) as image:
        assert image.format == "PNG" and image.size[0] > 800
    code, stdout, err = run_cli(["compare", *two_models, "--json"], capsys)
    rows = json.loads(stdout)["models"]
    assert [r["epochs"] for r in rows] == [1, 2]
    assert all(0 <= r["test_accuracy"] <= 1 and r["test_loss"] > 0 and r["seconds_per_epoch"] > 0 for r in rows)
    assert rows[0]["parameters"] < rows[1]["parameters"] and all(r["log"] for r in rows)


def test_compare_one_model_and_bad_inputs(two_models, tmp_path, capsys):
    code, stdout, _ = run_cli(["compare", two_models[0]], capsys)
    assert code == 0 and len(stdout.splitlines()) == 2
    (tmp_path / "notes.npz").write_text("not a model")
    for bad in (tmp_path / "missing.npz", tmp_path / "notes.npz"):
        code, _, err = run_cli(["compare", two_models[0], bad], capsys)
        assert_one_line_error(code, err, str(bad))
    code, _, err = run_cli(["compare", two_models[0], "--plot", tmp_path], capsys)
    assert_one_line_error(code, err, str(tmp_path))
