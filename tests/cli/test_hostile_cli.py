"""What a crafted checkpoint, an absurd flag or an interruption at a bad moment does to ``cycnn``: one line and exit
2 (130 for an interruption, with the command that resumes where a checkpoint exists), nothing written where a
file someone sent you says, nothing allocated that the machine cannot hold."""
import errno
import json
import socket

import numpy as np
import pytest

from cycnn.errors import ConfigError, TrainingDiverged
from cycnn.io import architecture
from cycnn.io.model_file import load_model, save_model
from cycnn.nn.optim import make_optimizer
from cycnn.train import run as training_run
from cycnn.train.trainer import Trainer
from cycnn.train.checkpoint import load_checkpoint, save_checkpoint
from cycnn.train.log import RunLog
from cycnn.train.settings import RunSettings
from cycnn.train.state import TrainState
from cycnn.viz.live import LiveServer

from cli_runner import assert_one_line_error, run_cli, write_tiny_dataset  # tests/cli_runner.py

TINY = ["--epochs", "1", "--conv", "2", "--dense", "4", "--quiet"]
QUICK = ["train", "--epochs", "1", "--limit-train", "64", "--val-split", "0", "--conv", "2", "--dense", "8",
         "--quiet"]


def tiny_model(class_names=None):
    spec = architecture.stack([2], [3], 2, [4], [0.0], input_shape=(1, 8, 8), num_classes=3)
    return architecture.build({**spec, "class_names": class_names or ["0", "1", "2"]}, seed=0)


@pytest.fixture
def crafted(tmp_path):
    """A checkpoint whose settings point outside its directory: a victim file, a shell start-up file, data."""
    victim, rc = tmp_path / "victim.txt", tmp_path / "bashrc"
    victim.write_text("keep me")
    rc.write_text("# keep me too\n")
    data = write_tiny_dataset(tmp_path / "data")
    sent = tmp_path / "sent"
    sent.mkdir()
    checkpoint = sent / "run.ckpt.npz"
    settings = RunSettings(epochs=1, out=str(victim), log=str(rc), data_dir=str(data))
    save_checkpoint(checkpoint, tiny_model(), make_optimizer("adam"), TrainState(), settings)
    return checkpoint, victim, rc, data


def test_a_crafted_checkpoint_never_chooses_where_cycnn_writes(crafted, capsys):
    checkpoint, victim, rc, data = crafted
    code, _, err = run_cli(["train", "--resume", checkpoint, "--data-dir", data, "--quiet"], capsys)
    assert code == 0, err
    assert victim.read_text() == "keep me" and rc.read_text() == "# keep me too\n"
    assert load_model(checkpoint.with_name("run.npz")).num_classes == 3  # beside the checkpoint
    assert checkpoint.with_name("run.log.jsonl").is_file()


def test_a_resumed_run_takes_its_data_and_outputs_from_the_user(crafted, tmp_path, capsys):
    checkpoint, _, _, data = crafted
    code, _, err = run_cli(["train", "--resume", checkpoint, "--quiet"], capsys)
    assert_one_line_error(code, err, "this run trained on the images in", "--data-dir")
    out = tmp_path / "chosen.npz"
    code, _, err = run_cli(["train", "--resume", checkpoint, "--data-dir", data, "--out", out, "--quiet"], capsys)
    assert code == 0 and out.is_file(), err


def test_class_names_with_terminal_escapes_are_refused():
    with pytest.raises(ConfigError, match=r"class name '\\x1b\[31mred'"):
        tiny_model(["\x1b[31mred", "1", "2"])
    with pytest.raises(ConfigError, match="has 65 characters, more than 64"):
        tiny_model(["x" * 65, "1", "2"])


@pytest.mark.parametrize("args, message", [
    (["--threads", "100000"], "thread count must be at most"),
    (["--threads", "12345678901234567890"], "thread count must be at most"),
    (["--seed", "-1"], "seed must be a non-negative integer"),
    (["--conv", "100000"], "of memory available; layer 0: Conv2D (relu) alone needs"),
    (["--padding", "150", "--batch-size", "8"], "of memory available; layer 5: Dense (relu) alone needs"),
    (["--kernel", "20000"], "is larger than its input"),
    (["--kernel", "12345678901234567890"], "--kernel takes comma-separated whole numbers"),
    (["--conv", "12345678901234567890"], "--conv takes comma-separated whole numbers"),
    (["--dense", "2000000"], "of memory available; layer 5: Dense (relu) alone needs"),
    (["--dense", "2000000000"], "--dense takes comma-separated whole numbers (at most 9 digits each)"),
    (["--padding", "12345678901234567890"], "padding must be at most"),
    (["--conv", "32,,64"], "--conv takes comma-separated whole numbers"),
    (["--conv", "３２"], "--conv takes comma-separated whole numbers"),
    (["--dense", "", "--dropout", "0.3"], "--dense '' asks for none"),
    (["--epochs", "100000"], "epochs must be a positive integer of at most 10000"),
    (["--out", ""], "is a directory; give a file name"),
    (["--out", "."], "is a directory"),
])
def test_absurd_flags_are_one_line_before_any_work(args, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = ["train", "--limit-train", "64", "--val-split", "0", "--quiet", *args]
    if "--out" not in args:
        argv += ["--out", tmp_path / "m.npz"]
    code, _, err = run_cli(argv, capsys)
    assert_one_line_error(code, err, message)
    assert not (tmp_path / "m.npz").exists()


def test_visualize_count_is_bounded(tmp_path, capsys):
    model = tmp_path / "m.npz"
    save_model(architecture.build(architecture.stack([2], [3], 2, [4], [0.0]), seed=0), model)
    code, _, err = run_cli(["visualize", model, "--out", tmp_path / "pics", "--count", "100000"], capsys)
    assert_one_line_error(code, err, "--count must be from 1 to 400")


def test_a_model_whose_header_would_not_load_is_not_saved(tmp_path):
    path = tmp_path / "m.npz"
    with pytest.raises(Exception, match="a model file may hold"):
        save_model(tiny_model(), path, metadata={"history": ["x" * 1000] * 20_000})
    assert not path.exists()


def test_evaluate_refuses_a_folder_whose_classes_are_not_the_models(tmp_path, capsys, draw_digit):
    for name in ("cats", "dogs"):
        for i in range(5):
            (tmp_path / "folder" / name).mkdir(parents=True, exist_ok=True)
            draw_digit("zero" if name == "cats" else "seven").save(tmp_path / "folder" / name / f"{i}.png")
    model = tmp_path / "m.npz"
    save_model(architecture.build(architecture.stack([2], [3], 2, [4], [0.0]), seed=0), model)
    code, _, err = run_cli(["evaluate", model, "--data-dir", tmp_path / "folder"], capsys)
    assert code == 2 and "are not the dataset's" in err


def test_nan_pixels_get_no_prediction():
    with pytest.raises(ConfigError, match="NaN or infinite"):
        tiny_model().predict_proba(np.full((1, 1, 8, 8), np.nan, np.float32))


def test_a_non_finite_optimizer_state_is_never_checkpointed(tmp_path):
    """Before, the save checked only the weights and the resume then refused the checkpoint it wrote."""
    model, optimizer = tiny_model(), make_optimizer("adam")
    optimizer.step([(key, param, np.full_like(param, np.inf)) for key, param, _ in model.parameters()])
    for _, param, _ in model.parameters():
        param[...] = 0  # finite weights, infinite moments
    with pytest.raises(TrainingDiverged, match="optimizer's state became NaN or infinite"):
        save_checkpoint(tmp_path / "c.npz", model, optimizer, TrainState(), RunSettings())
    assert not (tmp_path / "c.npz").exists()


def test_a_full_disk_while_logging_names_the_log_and_the_checkpoint(tmp_path, monkeypatch, capsys):
    class FullDisk:
        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")

        def close(self):
            pass
    original, calls = RunLog.write, []

    def write(self, record):  # the run record and a few steps' go through; then the disk is full
        calls.append(record)
        if len(calls) == 4:
            self.file.close()
            self.file = FullDisk()
        return original(self, record)
    monkeypatch.setattr(RunLog, "write", write)
    code, _, err = run_cli([*QUICK, "--limit-train", "640", "--log-every", "1", "--checkpoint-every", "2",
                            "--out", tmp_path / "m.npz"], capsys)
    assert_one_line_error(code, err, "cannot write the training log (No space left on device)",
                          "the last good checkpoint is")


@pytest.mark.slow
@pytest.mark.parametrize("when", ["loading the data", "the final test"])
def test_an_interruption_at_any_moment_ends_with_the_resume_hint(when, tmp_path, monkeypatch, capsys):
    out = tmp_path / "m.npz"
    code, _, err = run_cli([*QUICK, "--epochs", "2", "--checkpoint-every", "1", "--out", out], capsys)
    assert code == 0, err

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt
    checkpoint = tmp_path / "m.ckpt.npz"
    state = load_checkpoint(checkpoint)[2]
    state_epochs = state.epoch
    if when == "loading the data":
        monkeypatch.setattr(training_run, "load_data", interrupt)
    else:  # the final test runs through the trainer's evaluate (which a data-parallel trainer splits over ranks)
        monkeypatch.setattr(Trainer, "evaluate", interrupt)
    code, _, err = run_cli(["train", "--resume", checkpoint, "--quiet"], capsys)
    assert code == 130 and state_epochs == 2
    assert err.strip().splitlines()[-1].endswith(f"resume with: cycnn train --resume {checkpoint}"), err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_a_live_client_that_hangs_up_early_prints_nothing(capsys):
    server = LiveServer(0)
    try:
        for _ in range(20):  # send a request and close without reading the answer
            with socket.create_connection(("127.0.0.1", server.port)) as conn:
                conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        with socket.create_connection(("127.0.0.1", server.port)) as conn:  # still serving
            conn.sendall(b"GET /data.json HTTP/1.0\r\n\r\n")
            reply = b"".join(iter(lambda: conn.recv(65536), b""))
        assert json.loads(reply.split(b"\r\n\r\n", 1)[1])["status"] == "starting"
    finally:
        server.stop()
    assert capsys.readouterr().err == ""


def test_a_file_name_with_a_newline_or_an_escape_stays_one_escaped_line(tmp_path, capsys):
    model = tmp_path / "m.npz"
    save_model(architecture.build(architecture.stack([2], [3], 2, [4], [0.0]), seed=0), model)
    for name, shown in (("no\nsuch.png", "no\\nsuch.png"), ("\x1b[2Jx.png", "\\x1b[2Jx.png")):
        code, _, err = run_cli(["predict", model, tmp_path / name], capsys)
        assert_one_line_error(code, err, "no such file", shown)  # the character shown escaped, not obeyed


def test_a_training_log_that_is_a_fifo_is_refused_without_blocking(tmp_path, capsys):
    import os

    from cli_runner import deadline
    model = tmp_path / "m.npz"
    save_model(architecture.build(architecture.stack([2], [3], 2, [4], [0.0]), seed=0), model)
    os.mkfifo(tmp_path / "log.jsonl")
    with deadline(20):
        code, _, err = run_cli(["report", model, "--out", tmp_path / "r.html", "--log", tmp_path / "log.jsonl"], capsys)
    assert_one_line_error(code, err, "not a regular file")
