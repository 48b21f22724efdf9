"""Checkpoints and resume: a run killed (SIGKILL) or interrupted (SIGINT, SIGTERM) in the middle of an epoch and
resumed with ``cycnn train --resume`` ends bit for bit where the uninterrupted run ends; a diverging run stops
with the step named and keeps its last good checkpoint."""
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cycnn.io import architecture
from cycnn.train.checkpoint import load_checkpoint, save_checkpoint
from cycnn.errors import TrainingDiverged
from cycnn.nn.optim import make_optimizer
from cycnn.nn.runtime import default_threads, set_threads
from cycnn.io.model_file import load_model
from cycnn.train.settings import RunSettings
from cycnn.train.state import TrainState

from cli_runner import run_cli, write_tiny_dataset  # tests/cli_runner.py

# 760 training images in 24 steps per epoch, 4 epochs: about a second of training; checkpoints every 7 steps
# land in the middle of epochs. Augmentation and dropout make the run depend on every random stream.
RUN = ["train", "--conv", "4", "--dense", "16", "--limit-train", "800", "--val-split", "0.05", "--epochs", "4",
       "--batch-size", "32", "--checkpoint-every", "7", "--seed", "3", "--augment", "--threads", "1", "--quiet"]


@pytest.fixture(scope="module", autouse=True)
def restore_threads():
    """--threads 1 changes process-wide settings; give the rest of the session its default back."""
    yield
    set_threads(default_threads()).restore_original_limits()


def weights(path):
    return {key: param for key, param, _ in load_model(path).parameters()}


def assert_identical(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype and np.array_equal(a[key], b[key]), key


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted") / "m.npz"
    code, _, _ = run_cli([*RUN, "--out", out])
    assert code == 0
    return out


def start_run(out):
    # cwd: run from the output's folder, never the repository root, whose uncompiled cycnn/ would shadow the
    # installed package for `python -m`.
    return subprocess.Popen([sys.executable, "-m", "cycnn", *RUN, "--out", str(out)], cwd=Path(out).parent,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_mid_epoch_checkpoint(process, path, timeout=120):
    """Poll until the run has written a checkpoint in the middle of an epoch (saves are atomic, so reading while
    the run writes is safe); returns its TrainState."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the run ended (code {process.returncode}) before a mid-epoch checkpoint was seen: "
                        f"{process.stderr.read()}")
        if path.exists():
            state = load_checkpoint(path)[2]
            if state.step > 0 and state.epoch < 3:
                return state
        time.sleep(0.002)
    process.kill()
    pytest.fail("no mid-epoch checkpoint within the timeout")


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM], ids=["kill", "int", "term"])
def test_a_stopped_run_resumes_to_the_same_weights(sig, uninterrupted, tmp_path, capsys):
    out = tmp_path / "m.npz"
    checkpoint = tmp_path / "m.ckpt.npz"
    process = start_run(out)
    seen = wait_for_mid_epoch_checkpoint(process, checkpoint)
    process.send_signal(sig)
    stdout, stderr = process.communicate(timeout=120)
    assert not out.exists(), "the run finished before the signal arrived"
    state = load_checkpoint(checkpoint)[2]
    assert (state.epoch, state.step) >= (seen.epoch, seen.step) and state.epoch < 4
    if sig == signal.SIGKILL:
        assert process.returncode == -signal.SIGKILL
    else:  # stops after the current step, checkpoints it and says how to go on
        assert process.returncode == 130
        assert "Traceback" not in stderr
        assert stderr.strip().splitlines() == [f"interrupted at epoch {state.epoch + 1}, step {state.step}; "
                                               f"resume with: cycnn train --resume {checkpoint}"]
    code, _, err = run_cli(["train", "--resume", checkpoint, "--threads", "1", "--quiet"], capsys)
    assert code == 0, err
    assert_identical(weights(out), weights(uninterrupted))
    history = load_model(out).metadata["history"]
    reference = load_model(uninterrupted).metadata["history"]
    for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):  # every step counted once
        assert [r[key] for r in history] == [r[key] for r in reference], key


def test_divergence_names_the_step_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
    out, checkpoint = tmp_path / "m.npz", tmp_path / "m.ckpt.npz"
    out.write_bytes(b"the model the user had before")
    code, _, err = run_cli([*RUN, "--out", out, "--optimizer", "sgd", "--lr", "1e30", "--checkpoint-every", "1"],
                           capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err and "Warning" not in err, err
    match = re.fullmatch(r"cycnn: error: the loss became (nan|inf|-inf) at epoch 1, step (\d+); try a lower "
                         rf"learning rate; the last good checkpoint is {re.escape(str(checkpoint))}", lines[0])
    assert match, lines[0]
    model, optimizer, state, settings = load_checkpoint(checkpoint)
    assert state.global_step == int(match.group(2)) - 1  # the step before the one that diverged
    for _, param, _ in model.parameters():
        assert np.all(np.isfinite(param))
    assert out.read_bytes() == b"the model the user had before"


def test_divergence_before_any_checkpoint_says_so(tmp_path, capsys):
    """An older run's checkpoint at the same path is not this run's 'last good checkpoint'."""
    out, checkpoint = tmp_path / "m.npz", tmp_path / "m.ckpt.npz"
    checkpoint.write_bytes(b"an older run's checkpoint")
    code, _, err = run_cli([*RUN, "--out", out, "--optimizer", "sgd", "--lr", "1e30", "--checkpoint-every", "0"],
                           capsys)
    assert code == 2
    assert re.fullmatch(r"cycnn: error: the loss became \S+ at epoch 1, step \d+; try a lower learning rate; "
                        r"no checkpoint was written before it", err.strip()), err
    assert checkpoint.read_bytes() == b"an older run's checkpoint" and not out.exists()


def test_weights_that_became_infinite_are_never_checkpointed(tmp_path):
    spec = architecture.stack([2], [3], 2, [4], [0.0], input_shape=(1, 8, 8), num_classes=3)
    model = architecture.build(spec, seed=0)
    model.layers[-1].params["W"][0, 0] = np.inf
    path = tmp_path / "run.ckpt.npz"
    with pytest.raises(TrainingDiverged, match=r"weight param\.\d\.W.*after epoch 2, step 5"):
        save_checkpoint(path, model, make_optimizer("adam"), TrainState(epoch=1, step=5), RunSettings(epochs=2, out="m.npz"))
    assert not path.exists()


def test_resume_refuses_data_that_changed(tmp_path, capsys):
    data = write_tiny_dataset(tmp_path / "data")
    out = tmp_path / "m.npz"
    code, _, err = run_cli(["train", "--data-dir", data, "--out", out, "--epochs", "1", "--conv", "2", "--dense",
                            "4", "--quiet"], capsys)
    assert code == 0, err
    images = data / "train-images-idx3-ubyte"
    content = bytearray(images.read_bytes())
    content[-1] ^= 0xFF
    images.write_bytes(bytes(content))
    code, _, err = run_cli(["train", "--resume", tmp_path / "m.ckpt.npz"], capsys)
    assert code == 2 and err.strip() == (f"cycnn: error: {tmp_path / 'm.ckpt.npz'}: this run trained on the images in "
                                         f"{str(data)!r}; give them again with --data-dir DIR to resume it")
    code, _, err = run_cli(["train", "--resume", tmp_path / "m.ckpt.npz", "--data-dir", data], capsys)
    assert code == 2 and err.strip() == (f"cycnn: error: {tmp_path / 'm.ckpt.npz'}: the training data differs from "
                                         "the data this run started with; a resumed run must see the same images "
                                         "to continue exactly")
