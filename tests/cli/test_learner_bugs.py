"""What a newcomer tripped over (issue 16's bug list): each fixed, each held here."""
import subprocess
import sys

import numpy as np
import pytest

from cycnn.io import architecture
from cycnn.io.model_file import load_model, save_model

from cli_runner import assert_one_line_error, run_cli  # tests/cli_runner.py

QUICK = ["train", "--epochs", "1", "--limit-train", "256", "--val-split", "0", "--conv", "2", "--dense", "8"]


def small_model_file(path):
    save_model(architecture.build(architecture.stack([2], [3], 2, [8], [0.5]), seed=0), path)
    return path


def test_a_loaded_model_answers_the_same_twice(tmp_path):
    """It was in training mode: dropout made two passes on one image differ (3.16 apart)."""
    model = load_model(small_model_file(tmp_path / "m.npz"))
    x = np.random.default_rng(0).random((4, 1, 28, 28), dtype=np.float32)
    assert not model.training
    np.testing.assert_array_equal(model.forward(x), model.forward(x))


@pytest.mark.slow
def test_visualize_draws_test_image_0_beside_the_users_images(tmp_path, capsys, draw_digit):
    model = small_model_file(tmp_path / "m.npz")
    images = [tmp_path / "a.png", tmp_path / "b.png"]
    draw_digit("zero").save(images[0])
    draw_digit("seven").save(images[1])
    code, _, err = run_cli(["visualize", model, "--out", tmp_path / "pics", "--image", images[0], "--image",
                            images[1], "--threads", "1"], capsys)
    assert code == 0, err
    names = {p.name for p in (tmp_path / "pics").iterdir()}
    for slug in ("test0", "image_a", "image_b"):
        assert f"dense_{slug}.png" in names, sorted(names)


@pytest.mark.slow
def test_every_command_that_computes_takes_threads(tmp_path, capsys, draw_digit):
    model = small_model_file(tmp_path / "m.npz")
    draw_digit("zero").save(tmp_path / "a.png")
    for argv in (["predict", model, tmp_path / "a.png"], ["evaluate", model],
                 ["report", model, "--out", tmp_path / "r.html"]):
        code, _, err = run_cli([*argv, "--threads", "1"], capsys)
        assert code == 0, (argv, err)
    code, _, err = run_cli(["predict", model, tmp_path / "a.png", "--threads", "0"], capsys)
    assert_one_line_error(code, err, "thread count must be a positive integer")


@pytest.mark.slow
def test_train_writes_nothing_but_messages_to_a_stderr_that_is_not_a_terminal(tmp_path):
    """The progress bar's leftovers were one blank line per epoch in `2> err`."""
    with open(tmp_path / "err", "w") as err:
        done = subprocess.run([sys.executable, "-m", "cycnn", *QUICK, "--epochs", "2", "--out", tmp_path / "m.npz"],
                              stdout=subprocess.DEVNULL, stderr=err, timeout=300, cwd=tmp_path)
    assert done.returncode == 0
    assert (tmp_path / "err").read_text() == ""


def test_a_loss_that_explodes_stops_like_a_nan(tmp_path, capsys):
    """--lr 10 trained to a loss of 214,024,971 and 9.86%, saved that model and exited 0."""
    out = tmp_path / "m.npz"
    code, _, err = run_cli([*QUICK, "--lr", "10", "--lr-schedule", "constant", "--quiet", "--out", out], capsys)
    assert_one_line_error(code, err, "the loss exploded", "try a lower learning rate")
    assert not out.exists()


@pytest.mark.slow
def test_python_dash_m_cycnn_is_the_cycnn_command(tmp_path):
    done = subprocess.run([sys.executable, "-m", "cycnn", "--help"], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path)  # (the source tree's cycnn, without its compiled kernels, is not on the path)
    assert done.returncode == 0 and "train" in done.stdout and "evaluate" in done.stdout
