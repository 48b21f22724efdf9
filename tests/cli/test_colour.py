"""``cycnn`` on colour pictures (issue 14): train on a colour image folder (and --grayscale), then summary, predict,
evaluate --data-dir, export, visualize and report on the colour model; --conv-dropout; and the bad input refused
with one line. The acceptance runs (several epochs, many pictures) are marked slow; the fast tier trains one tiny
epoch in this process."""
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageDraw

from cycnn.data.image_folder import load_image_folder, split_files
from cycnn.data.preparation import Preparation, channel_statistics, for_model
from cycnn.io.model_file import load_model, save_model
from cycnn.nn.layers import Conv2D, Dropout, MaxPool2D, Normalize

from cli_runner import assert_one_line_error, run_cli  # tests/cli_runner.py
from colour_pictures import BACKGROUND, COLOURS, colour_only  # tests/colour_pictures.py

TINY = ["--epochs", "1", "--conv", "4", "--dense", "8", "--val-split", "0", "--quiet"]
CLASSES = sorted(COLOURS)
OTHER_SIZES = [(50, 30), (80, 80), (28, 60), (100, 70), (45, 45)]  # (width, height): none of the training sizes


def new_pictures(directory, per_colour=5, seed=7):
    """Discs and squares of the three colours on the gray of the same level, in sizes training never saw, saved
    in three modes (RGB PNG, RGBA PNG, RGB JPEG): [(path, colour)]."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    files = []
    for name, rgb in COLOURS.items():
        for k in range(per_colour):
            width, height = OTHER_SIZES[k % len(OTHER_SIZES)]
            image = Image.new("RGB", (width, height), BACKGROUND)
            r, cx, cy = min(width, height) * rng.uniform(0.25, 0.35), width / 2, height / 2
            box = [cx - r, cy - r, cx + r, cy + r]
            (ImageDraw.Draw(image).ellipse if k % 2 else ImageDraw.Draw(image).rectangle)(box, fill=rgb)
            path = directory / f"{name}_{k}.{'jpg' if k % 3 == 2 else 'png'}"
            (image.convert("RGBA") if k % 3 == 1 else image).save(path)
            files.append((path, name))
    return files


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("colour")
    return {"root": root, "small": colour_only(root / "small", per_class=8, seed=0),
            "new": colour_only(root / "new", per_class=5, seed=1)}


@pytest.fixture(scope="module")
def quick(folders):
    """A tiny colour model trained one epoch in this process on 8 pictures per colour (accuracy not checked)."""
    out = folders["root"] / "quick.npz"
    code, _, _ = run_cli(["train", "--data-dir", folders["small"], *TINY, "--out", out])
    assert code == 0
    return out


def probabilities(model, paths):
    return model.predict_proba(np.stack([for_model(model).prepare(p) for p in paths]))


# --- the fast tier: one tiny epoch --------------------------------------------------------------------------------

def test_a_colour_folder_trains_a_3_channel_model_with_its_statistics(quick, folders, capsys):
    model = load_model(quick)
    assert model.input_shape == (3, 32, 32) and model.class_names == CLASSES
    assert model.metadata["preparation"] == {"recipe": "resize", "channels": 3, "height": 32, "width": 32}
    first = model.layers[0]
    assert isinstance(first, Normalize) and isinstance(model.layers[1], Conv2D) and model.layers[1].in_channels == 3
    mean, std = channel_statistics(load_image_folder(folders["small"])[0])
    assert (first.mean, first.std) == (mean, std)
    code, out, _ = run_cli(["summary", quick], capsys)
    assert code == 0 and "Input: 32x32x3" in out
    assert "0: Normalize" in out and "1: Conv2D (relu)" in out


def test_grayscale_trains_a_1_channel_model(folders, tmp_path):
    code, _, _ = run_cli(["train", "--data-dir", folders["small"], *TINY, "--grayscale", "--out", tmp_path / "g.npz"])
    model = load_model(tmp_path / "g.npz")
    assert code == 0 and model.input_shape == (1, 32, 32)
    assert for_model(model) == Preparation("resize", 1, 32, 32)
    assert len(model.layers[0].mean) == 1 and model.layers[1].in_channels == 1


def test_the_image_size_sets_the_input(folders, tmp_path, capsys):
    model_path = tmp_path / "wide.npz"
    code, _, err = run_cli(["train", "--data-dir", folders["small"], *TINY, "--image-size", "24x40", "--out",
                            model_path], capsys)
    assert code == 0, err
    assert load_model(model_path).input_shape == (3, 24, 40)
    code, out, _ = run_cli(["predict", model_path, folders["new"] / "red" / "red_000.png", "--json"], capsys)
    assert code == 0 and json.loads(out)[0]["label"] in CLASSES


def test_predict_prepares_files_of_any_size_and_mode_as_in_training(quick, tmp_path, capsys, draw_digit):
    files = [path for path, _ in new_pictures(tmp_path / "new", per_colour=2)]
    gray = tmp_path / "gray.png"
    draw_digit("zero", size=(70, 40)).save(gray)  # a gray file given to a colour model
    files.append(gray)
    code, out, err = run_cli(["predict", quick, *files, "--json", "--save-input", tmp_path / "seen"], capsys)
    assert code == 0, err
    results = json.loads(out)
    expected = probabilities(load_model(quick), files)
    assert [r["file"] for r in results] == [str(f) for f in files]
    for result, p in zip(results, expected):
        assert list(result["probabilities"]) == CLASSES and result["label"] == CLASSES[int(p.argmax())]
        np.testing.assert_allclose(list(result["probabilities"].values()), p, atol=1e-6)
        seen = Image.open(result["saved_input"])
        assert seen.mode == "RGB" and seen.size == (32, 32)
    assert np.ptp(np.asarray(Image.open(results[-1]["saved_input"])), axis=2).max() == 0  # gray stays gray


def test_evaluate_on_a_new_folder_prepares_it_as_the_model_was(quick, folders, capsys):
    code, out, err = run_cli(["evaluate", quick, "--data-dir", folders["new"], "--json"], capsys)
    assert code == 0, err
    report = json.loads(out)
    model = load_model(quick)
    _, _, x_test, y_test, _, _ = load_image_folder(folders["new"], preparation=for_model(model))
    assert np.array(report["confusion_matrix"]).sum() == len(split_files(folders["new"])[2]) == len(y_test)
    accuracy = float(np.mean(model.predict_proba(x_test / np.float32(255)).argmax(axis=1) == y_test))
    assert report["accuracy"] == pytest.approx(accuracy)
    assert [c["class"] for c in report["per_class"]] == CLASSES


@pytest.mark.slow  # about a second: the fast tier stays under a minute
def test_export_of_a_colour_model_runs_in_onnx_runtime(quick, folders, tmp_path, capsys):
    pytest.importorskip("onnx", reason="the ONNX export needs the onnx extra: pip install 'cycnn[onnx]'")
    ort = pytest.importorskip("onnxruntime", reason="the ONNX check runs the file in ONNX Runtime")
    code, out, err = run_cli(["export", quick, tmp_path / "m.onnx"], capsys)
    assert code == 0, err
    assert "(N, 3, 32, 32)" in out
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == ["N", 3, 32, 32]
    model = load_model(quick)
    _, train, test = split_files(folders["new"])
    paths = [path for path, _ in train + test]
    x = np.stack([for_model(model).prepare(p) for p in paths])
    np.testing.assert_allclose(session.run(None, {"image": x})[0], model.predict_proba(x), atol=1e-5, rtol=0)


def test_flip_is_recorded_with_the_run(folders, tmp_path):
    code, _, _ = run_cli(["train", "--data-dir", folders["small"], *TINY, "--flip", "--out", tmp_path / "f.npz"])
    assert code == 0 and load_model(tmp_path / "f.npz").metadata["train"]["flip"] is True


def layer_types(model):
    return [type(layer) for layer in model.layers]


def test_conv_dropout_puts_a_dropout_after_each_conv_block(tmp_path, capsys):
    out = tmp_path / "d.npz"
    code, _, err = run_cli(["train", "--conv-dropout", "0.1,0.25", "--conv", "4,8", "--dense", "16", "--epochs", "1",
                            "--limit-train", "200", "--quiet", "--out", out], capsys)
    assert code == 0, err
    model = load_model(out)
    assert layer_types(model)[:6] == [Conv2D, MaxPool2D, Dropout, Conv2D, MaxPool2D, Dropout]
    assert [model.layers[i].p for i in (2, 5)] == [0.1, 0.25]
    assert {first for first, count, _ in model.steps if count == 2} == {0, 3}  # conv + pool stay fused
    code, text, _ = run_cli(["summary", out], capsys)
    lines = [line.split()[1] for line in text.splitlines() if line[:1].isdigit()]
    assert lines[:6] == ["Conv2D", "MaxPool2D", "Dropout", "Conv2D", "MaxPool2D", "Dropout"]


@pytest.mark.parametrize("flags, fragments", [
    (["--image-size", "4x4"], ["layer", "Conv2D", "--image-size"]),
    (["--image-size", "12"], ["--image-size", "HEIGHTxWIDTH"]),
    (["--image-size", "32x"], ["--image-size"]),
    (["--image-size", "2x32"], ["image"]),
    (["--prepare", "digit", "--image-size", "32x32"], ["--image-size"]),
    (["--prepare", "crop"], ["prepare"]),
    (["--conv-dropout", "0.1,0.1,0.1", "--conv", "4,8"], ["conv dropout"]),
    (["--conv-dropout", "1.5"], ["ropout"]),
], ids=["4x4", "12", "32x", "2x32", "digit-32x32", "crop", "three-rates", "rate-1.5"])
def test_bad_flags_give_one_line(folders, tmp_path, capsys, flags, fragments):
    code, _, err = run_cli(["train", "--data-dir", folders["small"], *TINY[:2], "--quiet", *flags, "--out",
                            tmp_path / "x.npz"], capsys)
    assert_one_line_error(code, err, *fragments)
    assert not (tmp_path / "x.npz").exists()


@pytest.mark.parametrize("flag", [["--grayscale"], ["--prepare", "resize"], ["--image-size", "32x32"]])
def test_image_flags_are_refused_for_mnist(tmp_path, capsys, flag):
    code, _, err = run_cli(["train", *TINY, *flag, "--out", tmp_path / "x.npz"], capsys)
    assert_one_line_error(code, err, "image folders")


def test_a_class_without_pictures_is_named(folders, tmp_path, capsys):
    directory = colour_only(tmp_path / "data", per_class=2)
    (directory / "violet").mkdir()
    code, _, err = run_cli(["train", "--data-dir", directory, *TINY, "--out", tmp_path / "x.npz"], capsys)
    assert_one_line_error(code, err, "violet")


def test_an_unreadable_picture_is_named(tmp_path, capsys):
    directory = colour_only(tmp_path / "data", per_class=2)
    (directory / "green" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    code, _, err = run_cli(["train", "--data-dir", directory, *TINY, "--out", tmp_path / "x.npz"], capsys)
    assert_one_line_error(code, err, "broken.png")


def test_a_model_file_with_a_float_channel_count_is_refused_in_one_line(quick, folders, tmp_path, capsys):
    model = load_model(quick)
    metadata = {**model.metadata, "preparation": {**model.metadata["preparation"], "channels": 3.0}}
    save_model(model, tmp_path / "float.npz", metadata=metadata)
    code, _, err = run_cli(["evaluate", tmp_path / "float.npz", "--data-dir", folders["new"]], capsys)
    assert_one_line_error(code, err, "channels")


# --- the slow tier: the acceptance runs ---------------------------------------------------------------------------

def cycnn(*args, cwd):
    """``python -m cycnn ARGS`` as a user runs it (outside the source tree): (exit code, stdout, stderr)."""
    done = subprocess.run([sys.executable, "-m", "cycnn", *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=600)
    return done.returncode, done.stdout, done.stderr


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The issue's acceptance run: colour_only with 40 pictures per colour, 8 epochs, in colour and --grayscale."""
    root = tmp_path_factory.mktemp("acceptance")
    data = colour_only(root / "data", per_class=40, seed=0)
    runs = {}
    for name, extra in (("colour", []), ("gray", ["--grayscale"])):
        code, out, err = cycnn("train", "--data-dir", data, "--epochs", "8", "--json", "--quiet", *extra,
                               "--out", root / f"{name}.npz", cwd=root)
        assert code == 0, err
        runs[name] = json.loads(out.strip().splitlines()[-1])
    print(f"colour_only, 8 epochs: colour test accuracy {runs['colour']['test_accuracy']:.3f}, "
          f"gray {runs['gray']['test_accuracy']:.3f}")
    return root, runs


@pytest.mark.slow
def test_a_colour_model_learns_colour_and_a_gray_one_stays_at_chance(trained):
    root, runs = trained
    colour, gray = runs["colour"]["test_accuracy"], runs["gray"]["test_accuracy"]
    assert colour >= 0.9, f"colour {colour:.3f}, gray {gray:.3f}"
    assert gray < 0.55, f"colour {colour:.3f}, gray {gray:.3f}"  # 3 classes: chance is 1/3
    assert load_model(root / "colour.npz").input_shape == (3, 32, 32)
    assert load_model(root / "gray.npz").input_shape == (1, 32, 32)
    code, out, _ = cycnn("summary", root / "colour.npz", cwd=root)
    assert code == 0 and "Input: 32x32x3" in out and "0: Normalize" in out


@pytest.mark.slow
def test_predict_reads_new_colour_files_of_other_sizes_right(trained):
    root, _ = trained
    files = new_pictures(root / "unseen", per_colour=5, seed=11)
    code, out, err = cycnn("predict", root / "colour.npz", *[path for path, _ in files], "--json", cwd=root)
    assert code == 0, err
    labels = [result["label"] for result in json.loads(out)]
    right = sum(label == name for label, (_, name) in zip(labels, files))
    assert right >= len(files) - 1, list(zip(labels, [name for _, name in files]))


@pytest.mark.slow
def test_evaluate_on_a_new_colour_folder(trained):
    root, _ = trained
    new = colour_only(root / "other", per_class=20, seed=5)
    code, out, err = cycnn("evaluate", root / "colour.npz", "--data-dir", new, "--json", cwd=root)
    assert code == 0, err
    report = json.loads(out)
    assert report["accuracy"] >= 0.9 and np.array(report["confusion_matrix"]).sum() == 12


@pytest.mark.slow
def test_export_of_the_trained_colour_model_matches_onnx_runtime(trained):
    pytest.importorskip("onnx", reason="the ONNX export needs the onnx extra: pip install 'cycnn[onnx]'")
    ort = pytest.importorskip("onnxruntime", reason="the ONNX check runs the file in ONNX Runtime")
    root, _ = trained
    code, out, err = cycnn("export", root / "colour.npz", root / "colour.onnx", cwd=root)
    assert code == 0 and "(N, 3, 32, 32)" in out, err
    model = load_model(root / "colour.npz")
    x = np.stack([for_model(model).prepare(path) for path, _ in new_pictures(root / "onnx", 3, seed=12)])
    session = ort.InferenceSession(str(root / "colour.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == ["N", 3, 32, 32]
    np.testing.assert_allclose(session.run(None, {"image": x})[0], model.predict_proba(x), atol=1e-5, rtol=0)


@pytest.mark.slow
def test_visualize_and_report_draw_the_colour_model(trained):
    root, _ = trained
    picture = new_pictures(root / "shown", per_colour=1, seed=13)[0][0]
    code, _, err = cycnn("visualize", root / "colour.npz", "--data-dir", root / "data", "--out", root / "viz",
                         "--image", picture, cwd=root)
    assert code == 0, err
    for name in ("kernels_layer1", "kernel_grid_layer1", "predictions", "feature_maps_test0_layer1"):
        with Image.open(root / "viz" / f"{name}.png") as image:
            assert image.format == "PNG" and min(image.size) > 100, name
    code, out, err = cycnn("report", root / "colour.npz", "--data-dir", root / "data", "--out", root / "r.html",
                           cwd=root)
    assert code == 0, err
    page = (root / "r.html").read_text()
    assert page.count("<img") >= 10 and "Normalize" in page and "kernel_grid_layer1" in page


@pytest.mark.slow
def test_conv_dropout_on_mnist_with_the_reference_widths(tmp_path):
    code, out, err = cycnn("train", "--conv-dropout", "0.1", "--epochs", "1", "--limit-train", "500", "--quiet",
                           "--out", tmp_path / "d.npz", cwd=tmp_path)
    assert code == 0, err
    code, out, _ = cycnn("summary", tmp_path / "d.npz", cwd=tmp_path)
    names = [line.split()[1] for line in out.splitlines() if line[:1].isdigit()]
    assert names == ["Conv2D", "MaxPool2D", "Dropout", "Conv2D", "MaxPool2D", "Dropout", "Flatten", "Dense",
                     "Dropout", "Dense"]
    assert out.count("Dropout (p=0.1)") == 2
