"""The command line: train, evaluate, predict and summary through typer's test runner, and error handling through
``cycnn.cli.main`` (one line ``cycnn: error: ...`` on stderr, exit code 2, never a traceback)."""
import json
from importlib import resources

import numpy as np
import pytest
from typer.testing import CliRunner

from cycnn.cli import app, main
from cycnn.io.model_file import load_model

# 540 training images, 17 steps: a few seconds. With lr 0.003 the test accuracy measured 49-64% over seeds 0-3.
TRAIN_ARGS = ["train", "--epochs", "1", "--limit-train", "600", "--val-split", "0.1", "--batch-size", "32",
              "--lr", "0.003", "--conv", "8", "--kernel", "3", "--dense", "32", "--json", "--quiet"]
TEST_LABEL_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Train a tiny model once through the CLI: (model path, the train command's JSON summary)."""
    directory = tmp_path_factory.mktemp("cli")
    model_path = directory / "m.npz"
    result = CliRunner().invoke(app, [*TRAIN_ARGS, "--out", str(model_path)])
    assert result.exit_code == 0, result.output
    return model_path, json.loads(result.stdout.strip().splitlines()[-1])


def test_train_prints_a_json_summary_and_saves_the_model(trained):
    model_path, summary = trained
    assert {"test_accuracy", "test_loss", "epochs", "wall_s", "train_images_per_s"} <= set(summary)
    assert summary["epochs"] == 1
    assert 0.3 < summary["test_accuracy"] <= 1  # well above chance (10%)
    assert 0 < summary["test_loss"] < np.log(10)
    assert summary["wall_s"] > 0 and summary["train_images_per_s"] > 0
    assert model_path.is_file() and model_path.with_name("m.ckpt.npz").is_file()


def test_train_with_conv_widths_alone_uses_the_default_kernel_size(tmp_path):
    """``--conv 8`` without ``--kernel``: the default kernel size (3) applies to the one conv layer."""
    out = tmp_path / "one-conv.npz"
    result = CliRunner().invoke(app, ["train", "--epochs", "1", "--limit-train", "200", "--val-split", "0",
                                      "--conv", "8", "--dense", "32", "--quiet", "--out", str(out)])
    assert result.exit_code == 0, f"{result.exception!r}\n{result.output}"
    conv = load_model(out).layers[0]
    assert conv.out_channels == 8 and conv.kernel_size == (3, 3)


def test_evaluate_json(trained):
    model_path, summary = trained
    result = CliRunner().invoke(app, ["evaluate", str(model_path), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    confusion = np.array(report["confusion_matrix"])
    assert confusion.shape == (10, 10) and confusion.sum() == 10000
    assert confusion.sum(axis=1).tolist() == TEST_LABEL_COUNTS  # rows are the true classes
    assert report["accuracy"] == pytest.approx(np.trace(confusion) / 10000)
    assert report["accuracy"] == pytest.approx(summary["test_accuracy"])  # the same model on the same test set
    assert report["loss"] == pytest.approx(summary["test_loss"], rel=1e-6)
    assert [c["class"] for c in report["per_class"]] == [str(i) for i in range(10)]
    assert [c["support"] for c in report["per_class"]] == TEST_LABEL_COUNTS
    for c, row, column in zip(report["per_class"], confusion, confusion.T):
        assert c["recall"] == pytest.approx(row[int(c["class"])] / row.sum())
        assert c["precision"] == pytest.approx(column[int(c["class"])] / max(column.sum(), 1))


def test_evaluate_table(trained):
    result = CliRunner().invoke(app, ["evaluate", str(trained[0])])
    assert result.exit_code == 0, result.output
    assert "confusion matrix" in result.stdout and "precision" in result.stdout


def test_predict_json(trained, tmp_path, draw_digit):
    paths = [tmp_path / "zero.png", tmp_path / "seven.jpg"]
    draw_digit("zero").save(paths[0])
    draw_digit("seven").convert("RGB").save(paths[1])
    result = CliRunner().invoke(app, ["predict", str(trained[0]), *map(str, paths), "--json"])
    assert result.exit_code == 0, result.output
    predictions = json.loads(result.stdout)
    assert [p["file"] for p in predictions] == [str(p) for p in paths]
    for p in predictions:
        probs = p["probabilities"]
        assert sorted(probs) == [str(i) for i in range(10)]
        assert sum(probs.values()) == pytest.approx(1, abs=1e-9)
        assert all(0 <= v <= 1 for v in probs.values())
        assert p["label"] == max(probs, key=probs.get)


def test_summary_of_a_model_file_and_of_an_architecture_file(trained):
    result = CliRunner().invoke(app, ["summary", str(trained[0])])
    assert result.exit_code == 0, result.output
    for shape in ("26x26x8", "13x13x8", "1352", "32", "10"):
        assert shape in result.stdout
    assert "Total parameters: 43,706" in result.stdout  # 80 + (1352*32 + 32) + (32*10 + 10)
    reference = resources.files("cycnn.io").joinpath("architectures", "reference.json")
    result = CliRunner().invoke(app, ["summary", str(reference)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == "Total parameters: 225,034"


# --- errors -------------------------------------------------------------------------------------------------------

def run_main_expecting_error(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    captured = capsys.readouterr()
    assert exit_info.value.code == 2, captured
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("cycnn: error: "), captured.err
    assert "Traceback" not in captured.err + captured.out
    return lines[0]


@pytest.mark.parametrize("args, message", [
    (["--epochs", "0"], "epochs"),
    (["--batch-size", "-1"], "batch_size"),
    (["--lr", "0"], "learning rate"),
    (["--dropout", "1.0"], "dropout"),
    (["--conv", "8", "--kernel", "30"], "larger than its input"),
    (["--epochs", "two"], "--epochs"),
    (["--no-such-flag"], "no-such-flag"),
], ids=["epochs-0", "batch-size-negative", "lr-0", "dropout-1", "kernel-30", "epochs-not-a-number", "unknown-flag"])
def test_train_errors(args, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    line = run_main_expecting_error(["train", "--quiet", "--limit-train", "100", "--out", "m.npz", *args], capsys)
    assert message in line
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_missing_model_file(tmp_path, capsys):
    line = run_main_expecting_error(["evaluate", str(tmp_path / "missing.npz")], capsys)
    assert "missing.npz" in line and "no such file" in line


def test_predict_a_non_image_file(trained, tmp_path, capsys):
    notes = tmp_path / "notes.png"
    notes.write_text("shopping list: eggs, milk\n")
    line = run_main_expecting_error(["predict", str(trained[0]), str(notes)], capsys)
    assert "notes.png" in line and "not an image" in line


def test_model_file_that_is_not_a_model(tmp_path, capsys):
    fake = tmp_path / "fake.npz"
    np.savez(fake, weights=np.zeros(3))
    line = run_main_expecting_error(["summary", str(fake)], capsys)
    assert "fake.npz" in line
