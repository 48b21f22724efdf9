"""The pictures: every figure is a valid PNG of a sensible size that changes with the model, for several
architectures; ``cycnn visualize`` writes them all and ``cycnn report`` embeds them in one offline page."""
import base64
import io
import re

import numpy as np
import pytest
from PIL import Image

from cycnn.io import architecture
from cycnn.viz import change, figures, network, receptive, results, training
from cycnn.cli import main
from cycnn.data.datasets import to_input
from cycnn.nn.optim import make_optimizer
from cycnn.train.log import RunLog, read_log
from cycnn.train.settings import RunSettings
from cycnn.train.trainer import Trainer
from cycnn.train.evaluation import predict_images

from cli_runner import run_cli  # tests/cli_runner.py

TWO_CONV = architecture.stack([4, 6], [3, 3], 2, [16], [0.2], input_shape=(1, 28, 28), num_classes=10)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _trained(mnist, tmp_path, seed, spec=TWO_CONV):
    """A model trained for 10 steps with its log, and its predictions on the first 300 test images."""
    x, y, xt, yt = mnist
    model = architecture.build(spec, seed=seed)
    log = tmp_path / f"run{seed}.jsonl"
    Trainer(model, make_optimizer("adam", 0.01), RunSettings(epochs=1, batch_size=32, lr=0.01, seed=seed),
            [RunLog(log, every=2)]).fit(x[:320], y[:320], xt[:64], yt[:64])
    images = to_input(xt[:300])
    return {"model": model, "records": read_log(log), "images": images, "labels": yt[:300],
            "probs": predict_images(model, images)}


@pytest.fixture(scope="module")
def runs(mnist, tmp_path_factory):
    directory = tmp_path_factory.mktemp("viz")
    return _trained(mnist, directory, 1), _trained(mnist, directory, 2)


FIGURES = {
    "kernels_first": lambda r: network.kernel_figure(r["model"], 0),
    "kernels_deeper": lambda r: network.kernel_figure(r["model"], 2),
    "kernels_change": lambda r: change.kernel_change_figure(r["model"], change.initial_model(r["model"],
                                                                                             r["records"]), 0),
    "top_patches": lambda r: receptive.top_patches_figure(r["model"], 2, r["images"]),
    "convolution": lambda r: network.convolution_figure(r["model"], r["images"][0], "test image #0"),
    "feature_maps_conv": lambda r: network.feature_map_figure(r["model"], r["images"][0], 0, "test image #0"),
    "feature_maps_pool": lambda r: network.feature_map_figure(r["model"], r["images"][0], 3, "test image #0"),
    "dense": lambda r: network.dense_figure(r["model"], r["images"][0], "test image #0"),
    "predictions": lambda r: results.predictions_figure(r["images"], r["labels"], r["probs"],
                                                        r["model"].class_names, 12),
    "most_confused": lambda r: results.most_confused_figure(r["images"], r["labels"], r["probs"],
                                                            r["model"].class_names, 12),
    "confusion_matrix": lambda r: results.confusion_figure(r["labels"], r["probs"].argmax(axis=1),
                                                           r["model"].class_names),
    "training_curves": lambda r: training.training_curves_figure(r["records"]),
    "layer_times": lambda r: training.layer_times_figure(r["records"]),
}


def check_png(data):
    """A decodable PNG of a sensible size that is not one flat colour; returns it as an RGB array."""
    assert data[:8] == PNG_SIGNATURE
    Image.open(io.BytesIO(data)).verify()
    image = Image.open(io.BytesIO(data))
    assert 300 <= image.width <= 3000 and 200 <= image.height <= 3000, image.size
    pixels = np.asarray(image.convert("RGB"))
    colours = (pixels[..., 0].astype(np.int32) << 16) | (pixels[..., 1].astype(np.int32) << 8) | pixels[..., 2]
    assert len(np.unique(colours)) > 20  # axes, text and data, not a blank canvas
    return pixels


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FIGURES))
def test_figure_is_a_png_that_depends_on_the_model(runs, name):
    first, second = (figures.png_bytes(FIGURES[name](run)) for run in runs)
    a, b = check_png(first), check_png(second)
    assert a.shape != b.shape or np.any(a != b), f"{name}: the same picture for two different models"


@pytest.mark.slow
def test_pictures_lists_every_figure_for_each_chosen_image(runs):
    run = runs[0]
    chosen = [("test0", "test image #0", run["images"][0]), ("mine", "my digit", run["images"][5])]
    names = [p.name for p in figures.pictures(run["model"], run["images"], run["labels"], run["probs"], chosen,
                                              run["records"], count=6)]
    per_image = ["convolution_{}", "feature_maps_{}_layer0", "feature_maps_{}_layer1", "feature_maps_{}_layer2",
                 "feature_maps_{}_layer3", "dense_{}"]
    assert names == (["kernels_layer0", "kernels_change_layer0", "top_patches_layer2", "kernel_grid_layer2"]
                     + [n.format("test0") for n in per_image]
                     + [n.format("mine") for n in per_image]
                     + ["predictions", "most_confused", "confusion_matrix", "training_curves", "layer_times"])


OTHER_ARCHITECTURES = {
    "5x5 kernels, padding, no pooling": architecture.stack([3], [5], 1, [8], [0], padding=2),
    "no convolution": architecture.stack([], [], 2, [12], [0]),
    "linear conv then ReLU layer": {"input_shape": [1, 28, 28], "layers": [
        {"type": "Conv2D", "in_channels": 1, "out_channels": 3, "kernel_size": [4, 2], "activation": None},
        {"type": "ReLU"}, {"type": "MaxPool2D", "pool_size": 3}, {"type": "Conv2D", "in_channels": 3,
                                                                  "out_channels": 2, "kernel_size": 3},
        {"type": "Flatten"}, {"type": "Dense", "in_features": 84, "out_features": 10}]},
    "no dense layer": {"input_shape": [1, 28, 28], "layers": [
        {"type": "Conv2D", "in_channels": 1, "out_channels": 4, "kernel_size": 3, "activation": "relu"},
        {"type": "MaxPool2D", "pool_size": 2},
        {"type": "Conv2D", "in_channels": 4, "out_channels": 10, "kernel_size": 13}, {"type": "Flatten"}]},
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(OTHER_ARCHITECTURES))
def test_other_architectures_draw(mnist, tmp_path, name):
    """The pictures that depend on the layers (up to the dense layers' one) for other layer stacks."""
    run = _trained(mnist, tmp_path, 0, OTHER_ARCHITECTURES[name])
    model = run["model"]
    chosen = [("test0", "test image #0", run["images"][0])]
    names = []
    for picture in figures.pictures(model, run["images"], run["labels"], run["probs"], chosen, run["records"]):
        names.append(picture.name)
        check_png(figures.png_bytes(picture.figure))
        if picture.name == "dense_test0":
            break  # the rest depends on the predictions only
    convs = network.conv_layers(model)
    weights = [f"kernels_layer{convs[0]}", f"kernels_change_layer{convs[0]}"] if convs else []
    for i in convs[1:]:
        weights += [f"top_patches_layer{i}", f"kernel_grid_layer{i}"]
    assert names == (weights + (["convolution_test0"] if convs else [])
                     + [f"feature_maps_test0_layer{i}" for i in network.map_layers(model)] + ["dense_test0"])


def test_most_confused_without_mistakes_says_so(runs):
    run = runs[0]
    perfect = np.eye(10)[run["labels"]]
    figure = results.most_confused_figure(run["images"], run["labels"], perfect, run["model"].class_names)
    texts = [t.get_text() for ax in figure.axes for t in ax.texts]
    assert any("no misclassified images" in t for t in texts)
    check_png(figures.png_bytes(figure))


# --- the commands -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli_model(tmp_path_factory):
    """A model trained through the CLI, with its log beside it (m.log.jsonl)."""
    directory = tmp_path_factory.mktemp("viz-cli")
    out = directory / "m.npz"
    with pytest.raises(SystemExit) as stop:
        main(["train", "--epochs", "1", "--limit-train", "400", "--batch-size", "32", "--conv", "4,6",
              "--kernel", "3", "--dense", "16", "--log-every", "3", "--quiet", "--out", str(out)])
    assert stop.value.code == 0
    return out


@pytest.mark.slow
def test_visualize_command_writes_every_picture(cli_model, tmp_path, capsys):
    out = tmp_path / "viz"
    code, stdout, err = run_cli(["visualize", cli_model, "--out", out, "--index", "7", "--count", "6"], capsys)
    assert code == 0, err
    files = sorted(p.name for p in out.iterdir())
    expected = {"kernels_layer0", "kernels_change_layer0", "top_patches_layer2", "kernel_grid_layer2",
                "predictions", "most_confused", "confusion_matrix", "training_curves", "layer_times", "progress_probe"}
    for image in ("test0", "test7"):  # test image 0 always, beside the one asked for
        expected |= {f"convolution_{image}", f"dense_{image}"} | {f"feature_maps_{image}_layer{i}" for i in range(4)}
    assert files == sorted(f"{n}.png" for n in expected)
    for path in out.iterdir():
        check_png(path.read_bytes())
    assert f"wrote {len(expected)} pictures" in stdout


@pytest.mark.slow
def test_report_is_one_offline_page_with_every_picture(cli_model, tmp_path, capsys, digit_png):
    """The report, here for an image file instead of a test image."""
    page = tmp_path / "report.html"
    code, stdout, err = run_cli(["report", cli_model, "--out", page, "--image", digit_png, "--count", "6"], capsys)
    assert code == 0, err
    text = page.read_text()
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    # 4 of the weights; for test image 0 and the file the convolution, 4 feature maps and dense; 3 of the test set;
    # 3 from the log
    assert len(images) == 22
    for data in images:
        check_png(base64.b64decode(data))
    assert not re.search(r"(src|href)=\"(?!data:|#)", text)  # nothing loaded from elsewhere
    markup = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", text)
    assert "<script" not in markup and "http" not in markup and "url(" not in markup
    assert "test accuracy" in text and "Total parameters" in text
    assert "Feature maps of layer 2: Conv2D (relu) for zero.png" in text


def test_visualize_refuses_a_bad_index_and_a_bad_log(cli_model, tmp_path, capsys):
    code, _, err = run_cli(["visualize", cli_model, "--out", tmp_path / "v", "--index", "10000"], capsys)
    assert code == 2 and "--index must be a test image number from 0 to 9999" in err
    bad = tmp_path / "bad.jsonl"
    bad.write_text("hello\nworld\n")
    code, _, err = run_cli(["visualize", cli_model, "--out", tmp_path / "v", "--log", bad], capsys)
    assert code == 2 and "not JSON" in err and "Traceback" not in err
