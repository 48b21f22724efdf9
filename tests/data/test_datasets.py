"""Datasets beyond the bundled MNIST: image folders (one subfolder per class), other IDX datasets, Fashion-MNIST."""
import gzip
import json
import os

import numpy as np
import pytest
from PIL import Image, ImageDraw

from cycnn.data import datasets
from cycnn.data import image_folder
from cycnn.errors import DataError, ImageError
from cycnn.io.model_file import load_model, save_model

from cli_runner import run_cli  # tests/cli_runner.py

SHAPES = ("circle", "cross", "square")  # sorted, as the class names come out


def draw_shape(kind, rng, size=64):
    """A dark outline shape of random size, position and stroke on light paper, as a Pillow image."""
    img = Image.new("L", (size, size), 255)
    draw = ImageDraw.Draw(img)
    s = int(rng.integers(26, 44))
    x0, y0 = (int(v) for v in rng.integers(3, size - s - 3, size=2))
    width = int(rng.integers(3, 6))
    if kind == "circle":
        draw.ellipse((x0, y0, x0 + s, y0 + s), outline=0, width=width)
    elif kind == "square":
        draw.rectangle((x0, y0, x0 + s, y0 + s), outline=0, width=width)
    elif kind == "cross":
        draw.line((x0, y0, x0 + s, y0 + s), fill=0, width=width)
        draw.line((x0, y0 + s, x0 + s, y0), fill=0, width=width)
    return img


def make_folder(root, per_class=40, seed=0, fmt="png"):
    """root/<shape>/<shape>_<k>.<fmt> for each shape; returns root."""
    rng = np.random.default_rng(seed)
    for kind in SHAPES:
        os.makedirs(root / kind, exist_ok=True)
        for k in range(per_class):
            draw_shape(kind, rng).save(root / kind / f"{kind}_{k:03d}.{fmt}")
    return root


@pytest.fixture(scope="module")
def shapes_dir(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("shapes"))


# --- image folders -------------------------------------------------------------------------------------------------
def test_image_folder_holds_out_a_fixed_fifth_of_each_class(shapes_dir):
    x_train, y_train, x_test, y_test, names, preparation = image_folder.load_image_folder(shapes_dir)
    assert names == list(SHAPES) and preparation.recipe == "digit"  # gray pictures: the digit recipe
    assert x_train.dtype == np.uint8 and x_train.shape == (96, 28, 28) and x_test.shape == (24, 28, 28)
    assert np.bincount(y_train).tolist() == [32, 32, 32] and np.bincount(y_test).tolist() == [8, 8, 8]
    assert x_train.max() == 255 and x_train[:, 0, :].max() == 0  # MNIST-style: light ink, dark empty border
    again = image_folder.load_image_folder(shapes_dir)
    for a, b in zip((x_train, y_train, x_test, y_test), again[:4]):
        np.testing.assert_array_equal(a, b)
    names_, train, test = image_folder.split_files(shapes_dir)
    train_files, test_files = {p for p, _ in train}, {p for p, _ in test}
    assert not train_files & test_files and len(train_files | test_files) == 120
    assert all(os.path.basename(os.path.dirname(p)) == SHAPES[label] for p, label in train + test)


def test_image_folder_preprocesses_like_predict(shapes_dir):
    from cycnn.data.images import prepare_digit
    x_train, _, x_test, _, _, _ = image_folder.load_image_folder(shapes_dir)
    first = np.rint(prepare_digit(shapes_dir / "circle" / "circle_000.png") * 255).astype(np.uint8)
    assert any(np.array_equal(first, img) for img in np.concatenate([x_train, x_test]))


def test_train_and_test_subfolders_are_used_as_given(tmp_path):
    make_folder(tmp_path / "train", per_class=5, seed=1)
    make_folder(tmp_path / "test", per_class=2, seed=2, fmt="jpg")
    (tmp_path / "train" / "circle" / "notes.txt").write_text("not an image")
    (tmp_path / "train" / "circle" / ".hidden.png").write_bytes(b"ignored")
    x_train, y_train, x_test, y_test, names, _ = datasets.load_data(tmp_path)
    assert names == list(SHAPES)
    assert len(x_train) == 15 and len(x_test) == 6
    assert np.bincount(y_test).tolist() == [2, 2, 2]


@pytest.mark.parametrize("layout, message", [
    ("empty_class", "class folder without PNG or JPEG images"),
    ("one_class", "a classifier needs two or more"),
    ("train_without_test", "has a train/ folder but no test/ folder"),
    ("unknown_test_class", "have no training images"),
])
def test_bad_image_folders_are_refused(tmp_path, layout, message):
    rng = np.random.default_rng(0)
    if layout == "empty_class":
        make_folder(tmp_path, per_class=3)
        (tmp_path / "empty").mkdir()
    elif layout == "one_class":
        (tmp_path / "only").mkdir()
        for k in range(3):
            draw_shape("circle", rng).save(tmp_path / "only" / f"{k}.png")
    elif layout == "train_without_test":
        make_folder(tmp_path / "train", per_class=3)
    else:
        make_folder(tmp_path / "train", per_class=3)
        make_folder(tmp_path / "test", per_class=1)
        (tmp_path / "test" / "star").mkdir()
        draw_shape("cross", rng).save(tmp_path / "test" / "star" / "s.png")
    with pytest.raises(DataError, match=message):
        image_folder.load_image_folder(tmp_path)


def test_a_damaged_image_is_named(tmp_path):
    make_folder(tmp_path, per_class=3)
    (tmp_path / "square" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(ImageError, match="broken.png"):
        image_folder.load_image_folder(tmp_path)


def test_a_directory_that_is_no_dataset_is_refused(tmp_path, capsys):
    (tmp_path / "readme.txt").write_text("nothing here")
    with pytest.raises(DataError, match="neither MNIST's four IDX files"):
        datasets.load_data(tmp_path)
    code, _, err = run_cli(["evaluate", "unused.npz", "--data-dir", tmp_path / "missing"], capsys)
    assert code == 2 and err.count("\n") == 1


@pytest.mark.slow  # about a second: the fast tier stays under a minute
def test_image_folder_trains_and_predict_prints_class_names(shapes_dir, tmp_path, capsys):
    model_path = tmp_path / "shapes.npz"
    code, out, err = run_cli(["train", "--data-dir", shapes_dir, "--epochs", "6", "--batch-size", "16",
                              "--lr", "0.003", "--val-split", "0", "--threads", "1", "--quiet", "--json",
                              "--out", model_path], capsys)
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["test_accuracy"] >= 0.9  # 3 easy shapes; chance is 1/3
    model = load_model(model_path)
    assert model.class_names == list(SHAPES) and model.num_classes == 3 and model.input_shape == (1, 28, 28)

    rng = np.random.default_rng(99)  # new drawings, never seen in training
    images = []
    for kind in SHAPES:
        path = tmp_path / f"new_{kind}.png"
        draw_shape(kind, rng).save(path)
        images.append(path)
    code, out, err = run_cli(["predict", model_path, *images], capsys)
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 3
    for kind, line in zip(SHAPES, lines):
        assert line.startswith(f"{tmp_path / f'new_{kind}.png'}: {kind} (")
    code, out, err = run_cli(["predict", "--json", model_path, *images], capsys)
    assert [r["label"] for r in json.loads(out)] == list(SHAPES)
    assert set(json.loads(out)[0]["probabilities"]) == set(SHAPES)

    code, out, err = run_cli(["evaluate", model_path, "--data-dir", shapes_dir, "--json"], capsys)
    assert code == 0, err
    report = json.loads(out)
    assert report["images"] == 24 and [c["class"] for c in report["per_class"]] == list(SHAPES)


def test_a_model_is_not_evaluated_on_a_dataset_with_other_classes(shapes_dir, tmp_path, capsys):
    renamed = tmp_path / "renamed"
    for kind, new in zip(SHAPES, ("a", "b", "c")):
        os.makedirs(renamed / new)
        for path in sorted((shapes_dir / kind).iterdir())[:4]:
            os.link(path, renamed / new / path.name)
    from cycnn.io import architecture
    model = architecture.build({**architecture.fit_to_data(architecture.reference(), (1, 28, 28), 3),
                                "class_names": list(SHAPES)}, seed=0)
    save_model(model, tmp_path / "m.npz")
    code, _, err = run_cli(["evaluate", tmp_path / "m.npz", "--data-dir", renamed], capsys)
    assert code == 2 and "are not the dataset's (a, b, c)" in err and err.count("\n") == 1


# --- other IDX datasets: sizes and classes come from the data --------------------------------------------------------
def write_idx(path, array):
    """Write ``array`` (uint8) as a gzip IDX file."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def test_an_idx_dataset_of_another_size_and_class_count_trains(tmp_path, capsys):
    """16x16 images in 4 classes (a bright quadrant each): the reference network is fitted to them."""
    rng = np.random.default_rng(0)

    def make(n):
        labels = rng.integers(0, 4, size=n).astype(np.uint8)
        images = rng.integers(0, 40, size=(n, 16, 16)).astype(np.uint8)
        for img, label in zip(images, labels):
            r, c = divmod(int(label), 2)
            img[r * 8:(r + 1) * 8, c * 8:(c + 1) * 8] += 200
        return images, labels

    for split, n in (("train", 400), ("t10k", 100)):
        images, labels = make(n)
        write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", images)
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", labels)
    data = datasets.load_data(tmp_path)
    assert data.class_names is None and data.x_train.shape == (400, 16, 16)
    model_path = tmp_path / "m.npz"
    code, out, err = run_cli(["train", "--data-dir", tmp_path, "--epochs", "2", "--threads", "1", "--quiet",
                              "--json", "--out", model_path], capsys)
    assert code == 0, err
    assert json.loads(out.strip().splitlines()[-1])["test_accuracy"] > 0.9
    model = load_model(model_path)
    assert model.input_shape == (1, 16, 16) and model.class_names == ["0", "1", "2", "3"]
    assert [type(layer).__name__ for layer in model.layers] == [
        "Conv2D", "MaxPool2D", "Conv2D", "MaxPool2D", "Flatten", "Dense", "Dropout", "Dense"]
    code, out, err = run_cli(["evaluate", model_path, "--data-dir", tmp_path, "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["images"] == 100


# --- named datasets ------------------------------------------------------------------------------------------------
def test_mnist_by_name_is_the_bundled_copy():
    named = datasets.load_data(name="MNIST")
    assert named.class_names is None and named.x_train.shape == (60000, 28, 28) and len(named.y_test) == 10000


def test_missing_fashion_mnist_says_how_to_get_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(datasets, "FASHION_MNIST_DIR", str(tmp_path / "not-installed"))
    code, out, err = run_cli(["train", "--dataset", "fashion-mnist", "--epochs", "1"], capsys)
    assert code == 2 and err.count("\n") == 1
    assert "apt-get install dataset-fashion-mnist" in err and "--data-dir" in err


@pytest.mark.parametrize("args, message", [
    (["--dataset", "cifar-10"], "unknown dataset 'cifar-10'; known datasets: mnist, fashion-mnist"),
    (["--dataset", "mnist", "--data-dir", "."], "not both"),
])
def test_dataset_flag_errors(args, message, capsys):
    code, _, err = run_cli(["train", "--epochs", "1", *args], capsys)
    assert code == 2 and message in err and err.count("\n") == 1


@pytest.mark.skipif(not os.path.isdir(datasets.FASHION_MNIST_DIR),
                    reason="Debian's dataset-fashion-mnist package is not installed (apt-get install "
                           "dataset-fashion-mnist)")
def test_fashion_mnist_from_the_debian_package(tmp_path, capsys):
    data = datasets.load_data(name="fashion-mnist")
    assert data.x_train.shape == (60000, 28, 28) and data.x_test.shape == (10000, 28, 28)
    assert data.class_names[9] == "Ankle boot" and np.bincount(data.y_test).tolist() == [1000] * 10
    model_path = tmp_path / "fashion.npz"
    code, out, err = run_cli(["train", "--dataset", "fashion-mnist", "--epochs", "1", "--limit-train", "500",
                              "--threads", "1", "--quiet", "--json", "--out", model_path], capsys)
    assert code == 0, err
    assert json.loads(out.strip().splitlines()[-1])["test_accuracy"] > 0.3  # chance is 0.1
    assert load_model(model_path).class_names == datasets.FASHION_MNIST_CLASSES
