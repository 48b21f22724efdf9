"""The live view: its snapshots and server in process, and ``cycnn train --live`` as a subprocess, fetched over HTTP
while it trains."""
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from cycnn.io import architecture
from cycnn.viz import live
from cycnn.errors import CycnnError
from cycnn.nn.optim import make_optimizer
from cycnn.train.settings import RunSettings
from cycnn.nn.hooks import ActivationRecorder, LayerTimer
from cycnn.train.trainer import Trainer

SMALL = architecture.stack([4, 6], [3, 3], 2, [16], [0.2], input_shape=(1, 28, 28), num_classes=10)
TRAIN_LIVE = ["-m", "cycnn", "train", "--live", "--port", "0", "--live-interval", "0.05", "--epochs", "3",
              "--limit-train", "2000", "--batch-size", "32", "--conv", "8", "--kernel", "3", "--dense", "32",
              "--quiet"]


def fetch(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.status, response.headers.get("Content-Type"), response.read()


@pytest.fixture
def server():
    server = live.LiveServer(port=0)
    yield server
    server.stop()


def _train(mnist, server, steps_images=320, **view_options):
    x, y, xt, yt = mnist
    model = architecture.build(SMALL, seed=0)
    view = live.LiveView(server, xt[:16], yt[:16], **view_options)
    trainer = Trainer(model, make_optimizer("adam", 0.01), RunSettings(epochs=2, batch_size=32, lr=0.01), [view])
    trainer.fit(x[:steps_images], y[:steps_images], xt[:64], yt[:64])
    return model, trainer, view


def test_snapshot_shows_the_run(mnist, server):
    model, trainer, view = _train(mnist, server, interval=0.001)
    status, content_type, body = fetch(server.url + "data.json")
    data = json.loads(body)
    assert status == 200 and content_type == "application/json"
    assert data["status"] == "finished" and data["step"] == data["steps_total"] == 20
    assert data["epoch"] == data["epochs"] == 2 and data["parameters"] == model.parameter_count
    assert [p[0] for p in data["curve"]] == [5, 10, 15, 20]  # a point every 5 steps
    assert all(0 < loss < 10 and 0 <= acc <= 1 for _, loss, acc in data["curve"])
    assert [e["epoch"] for e in data["epoch_records"]] == [1, 2] and "val_accuracy" in data["epoch_records"][0]
    assert data["kernels"]["count"] == 4 and len(data["kernels"]["values"]) == 4 * 9
    np.testing.assert_allclose(data["kernels"]["values"], model.layers[0].params["W"].ravel(), atol=1e-4)
    assert [(m["channels"], m["h"], m["w"]) for m in data["maps"]] == [(4, 26, 26), (4, 13, 13), (6, 11, 11),
                                                                          (6, 5, 5)]
    assert [len(d["values"]) for d in data["dense"]] == [16, 10] and data["dense"][1]["probabilities"]
    assert sum(data["dense"][1]["values"]) == pytest.approx(1, abs=1e-3)
    probe = data["probe"]
    assert probe["count"] == 16 and len(probe["predicted"]) == 16 and probe["labels"] == mnist[3][:16].tolist()
    probs = model.predict_proba(mnist[2][:16].astype(np.float32)[:, None] / 255)
    assert probe["predicted"] == probs.argmax(axis=1).tolist()


def test_page_is_self_contained(server):
    status, content_type, body = fetch(server.url)
    page = body.decode("utf-8")
    assert status == 200 and content_type.startswith("text/html")
    assert "<canvas" in page and 'fetch("data.json"' in page
    # no element loads anything (a script may still set an <img>'s source to a blob of the user's own file)
    assert not re.search(r"<[a-z]+\s[^>]*\b(src|href)\s*=", page) and "http" not in page and "@import" not in page
    with pytest.raises(urllib.error.HTTPError) as missing:
        fetch(server.url + "elsewhere")
    assert missing.value.code == 404


def test_snapshots_leave_the_training_state_alone(mnist, server):
    """A snapshot runs the probe batch in eval mode, unseen by the training's observers; the mode stays."""
    x, y, xt, yt = mnist
    model = architecture.build(SMALL, seed=0)
    trainer = Trainer(model, make_optimizer("adam", 0.01), RunSettings(), [])
    view = live.LiveView(server, xt[:16], yt[:16])
    timer, recorder = LayerTimer().attach(model), ActivationRecorder().attach(model)
    recorder.armed = True
    model.forward(x[:8, None].astype(np.float32) / 255)
    timings, kept = (list(timer.forward), list(timer.backward)), recorder.outputs
    recorder.armed = True
    view.on_train_begin(trainer)
    assert model.training and recorder.armed and recorder.outputs is kept
    assert (timer.forward, timer.backward) == timings


def test_curve_keeps_its_span_when_merged(mnist, server, monkeypatch):
    monkeypatch.setattr(live, "MAX_CURVE_POINTS", 6)
    _, _, view = _train(mnist, server, steps_images=640, curve_every=1)  # 40 steps
    steps = [p[0] for p in view.curve]
    assert len(steps) <= 6 and steps[-1] == 40 and steps == sorted(steps)


def test_a_port_in_use_is_a_clear_error(server):
    with pytest.raises(CycnnError, match=f"cannot serve the live view on 127.0.0.1:{server.port}.*--port"):
        live.LiveServer(port=server.port)


def stop_process(process):
    """Kill ``process`` if it still runs and close its pipes."""
    if process.poll() is None:
        process.kill()
        process.wait()
    process.stdout.close()
    process.stderr.close()


def start_live_training(tmp_path, *extra):
    """Start ``cycnn train --live`` as a subprocess; returns (process, the page's URL)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, *TRAIN_LIVE, "--out", str(tmp_path / "m.npz"), *extra],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    line = process.stdout.readline()
    match = re.match(r"live view: (http://127\.0\.0\.1:\d+/)", line)
    if not match:
        process.kill()
        raise AssertionError(f"no live view URL: {line!r} {process.stderr.read()}")
    return process, match.group(1)


@pytest.mark.slow
def test_train_live_serves_the_run_while_it_trains(tmp_path):
    process, url = start_live_training(tmp_path)
    try:
        status, _, page = fetch(url)
        assert status == 200 and b"<canvas" in page
        seen = []
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            data = json.loads(fetch(url + "data.json")[2])
            seen.append((data["status"], data["step"]))
            if "test_accuracy" in data or data["status"] in ("failed", "stopped"):
                break  # the final snapshot, published after the test
            time.sleep(0.02)
        final = data
        assert final["status"] == "finished" and final["step"] == final["steps_total"] == 3 * 60
        assert "test_accuracy" in final
        training_steps = [step for status, step in seen if status == "training"]
        assert len(set(training_steps)) >= 2, seen  # the step count grew while training ran
        assert [step for _, step in seen] == sorted(step for _, step in seen)
        # without --keep-serving, the server stops with the run once the page has seen the end
        assert process.wait(timeout=60) == 0, process.stderr.read()
        with pytest.raises(urllib.error.URLError):
            fetch(url + "data.json", timeout=2)
    finally:
        stop_process(process)


@pytest.mark.slow
def test_keep_serving_stays_up_until_interrupted(tmp_path):
    process, url = start_live_training(tmp_path, "--keep-serving", "--epochs", "1", "--limit-train", "200", "--json")
    try:
        deadline = time.monotonic() + 300
        while "test_accuracy" not in json.loads(fetch(url + "data.json")[2]):  # the final snapshot
            assert time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(0.5)
        assert process.poll() is None  # still serving after the run
        assert json.loads(fetch(url + "data.json")[2])["status"] == "finished"
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
        # With --json the last stdout line is the JSON object (the "stays up" message goes to stderr).
        assert "test_accuracy" in json.loads(process.stdout.read().strip().splitlines()[-1])
    finally:
        stop_process(process)


@pytest.mark.slow
def test_a_diverging_live_run_ends_in_one_line(tmp_path):
    """--live with a divergence printed three RuntimeWarnings before the error line."""
    process, url = start_live_training(tmp_path, "--lr", "1000", "--lr-schedule", "constant", "--optimizer", "sgd",
                                       "--epochs", "1", "--limit-train", "640")
    try:
        assert process.wait(timeout=120) == 2
        lines = process.stderr.read().strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("cycnn: error: ") and "lower learning rate" in lines[0], lines
    finally:
        stop_process(process)
