"""The live page's controls over HTTP: ``POST /api/control`` on a LiveServer whose run trains in a thread (pause,
single steps, resume, new settings, and refusals after which the run goes on), and ``cycnn train --live`` paused
and interrupted as a subprocess, with the explorer's API answering from the weights being trained."""
import http.client
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from cycnn.io import architecture
from cycnn.nn.optim import make_optimizer
from cycnn.train.callbacks import Callback
from cycnn.train.checkpoint import load_checkpoint
from cycnn.train.controls import TrainingControls
from cycnn.train.log import read_log
from cycnn.train.settings import RunSettings
from cycnn.train.trainer import Trainer
from cycnn.viz.live import LiveServer, LiveView, control_route
from test_live import stop_process  # tests/viz/test_live.py

SMALL = architecture.stack([4], [3], 2, [16], [0.2], input_shape=(1, 28, 28), num_classes=10)
LR = 0.01


class Throttle(Callback):
    """A few milliseconds per step, so that the run lasts as long as a test needs it (it is stopped at the end)."""

    def on_step_end(self, trainer, info):
        time.sleep(0.005)



def call(port, method, path, body=None, content_type="application/json"):
    """(status, Content-Type, decoded JSON) of one request on a connection of its own."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": content_type} if content_type else {})
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type"), json.loads(response.read())
    finally:
        conn.close()


def command(port, body, content_type="application/json"):
    """POST a control command (a dict, sent as JSON, or the raw bytes); (status, answer)."""
    data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
    status, _, answer = call(port, "POST", "/api/control", data, content_type)
    return status, answer


def snapshot(port):
    status, _, data = call(port, "GET", "/data.json")
    assert status == 200
    return data


def wait_for(port, predicate, timeout=2.0):
    """The first snapshot for which ``predicate`` holds; fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        data = snapshot(port)
        if predicate(data):
            return data
        assert time.monotonic() < deadline, {k: data.get(k) for k in ("status", "step", "lr", "events")}
        time.sleep(0.02)


class LiveRun:
    """A model training in a thread with TrainingControls and a LiveView on a LiveServer with /api/control."""

    def __init__(self, mnist):
        x, y, xt, yt = mnist
        self.controls = TrainingControls()
        self.server = LiveServer(port=0, routes={("POST", "/api/control"): control_route(self.controls)})
        self.port = self.server.port
        view = LiveView(self.server, xt[:16], yt[:16], interval=0.05, controls=self.controls)
        settings = RunSettings(epochs=1000, batch_size=32, lr=LR)  # far more than a test lasts
        self.trainer = Trainer(architecture.build(SMALL, seed=0), make_optimizer("adam", LR), settings,
                               [self.controls, view, Throttle()])
        self.thread = threading.Thread(target=self.trainer.fit, args=(x[:320], y[:320]), daemon=True)
        self.thread.start()
        wait_for(self.port, lambda d: d["status"] == "training" and d["step"] > 0, timeout=10)

    def close(self):
        self.trainer.stop_requested = True
        self.thread.join(5)
        self.server.stop()
        assert not self.thread.is_alive(), "the training thread did not end"


@pytest.fixture
def run(mnist):
    live_run = LiveRun(mnist)
    yield live_run
    live_run.close()


@pytest.fixture(scope="module")
def shared_run(mnist):
    """One run for the refusals, each of which must leave it training as before."""
    live_run = LiveRun(mnist)
    yield live_run
    live_run.close()


def held(port, data, seconds=0.5):
    """Whether the snapshots' step stays at ``data``'s for ``seconds``."""
    steps = set()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        steps.add(snapshot(port)["step"])
        time.sleep(0.02)
    return steps == {data["step"]}


@pytest.mark.slow  # about a second: the fast tier stays under a minute
def test_pause_step_and_resume_over_http(run):
    port = run.port
    assert command(port, {"action": "pause"}) == (200, {"action": "pause", "paused": True, "pending": {}})
    started = time.monotonic()
    paused = wait_for(port, lambda d: d["status"] == "paused" and [e["change"] for e in d["events"]] == ["paused"],
                      timeout=1.0)
    assert time.monotonic() - started < 1.0 and paused["controls"] is True
    assert held(port, paused)
    for extra in (1, 2):  # each step command: one step, published, and the run waits again
        assert command(port, {"action": "step"})[0] == 200
        stepped = wait_for(port, lambda d: d["step"] == paused["step"] + extra, timeout=1.0)
        assert stepped["status"] == "paused" and held(port, stepped, 0.3)
    assert command(port, {"action": "resume"})[0] == 200
    resumed = wait_for(port, lambda d: d["status"] == "training" and d["step"] > paused["step"] + 2, timeout=1.0)
    assert [e["change"] for e in resumed["events"]] == ["paused", "resumed"]
    assert resumed["events"][0]["step"] == paused["step"]


def test_set_over_http_shows_in_the_snapshot_with_its_event(run):
    port = run.port
    status, answer = command(port, {"action": "set", "lr": 0.003, "dropout": 0.4, "delay": 0.01})
    assert status == 200 and answer["pending"] == {"lr": 0.003, "dropout": 0.4, "delay": 0.01}
    data = wait_for(port, lambda d: d["lr"] == 0.003 and d["dropout"] == 0.4 and d["delay"] == 0.01)
    events = {e["change"]: e for e in data["events"]}
    assert set(events) == {"lr", "dropout", "delay"}
    assert (events["lr"]["from"], events["lr"]["to"]) == (LR, 0.003)
    assert (events["dropout"]["from"], events["dropout"]["to"]) == (0.2, 0.4)
    assert events["lr"]["step"] <= data["step"] and events["lr"]["epoch"] >= 1
    later = wait_for(port, lambda d: d["step"] > data["step"] + 3)
    assert later["lr"] == 0.003 and run.trainer.settings.lr == 0.003  # it stays


def test_snapshots_carry_vitals_and_probe_gradients(run):
    data = wait_for(run.port, lambda d: len(d["vitals"]) >= 2)
    record = data["vitals"][-1]
    assert record["step"] <= data["step"] and record["step"] > data["vitals"][0]["step"]
    assert set(record["weights"]) == set(record["grads"]) == set(record["update_ratio"]) == {"0.W", "3.W", "5.W"}
    for percentiles in (*record["weights"].values(), *record["grads"].values()):
        assert len(percentiles) == 7 and percentiles == sorted(percentiles)
    assert all(0 < ratio < 1 for ratio in record["update_ratio"].values())
    assert set(record["dead"]) == {"0: Conv2D (relu)", "3: Dense (relu)"}
    assert all(0 <= zeros <= 1 for zeros in record["dead"].values())
    gradients = data["probe_gradients"]
    assert gradients["label"] == data["probe"]["labels"][0]
    assert [m["layer"] for m in gradients["maps"]] == ["0: Conv2D (relu)", "1: MaxPool2D"]
    assert gradients["kernels"]["count"] == 4 and len(gradients["kernels"]["values"]) == 4 * 9


HUGE = b'{"action": "set", "lr": 1' + b"0" * 400 + b"}"
BAD_REQUESTS = [
    pytest.param(b'{"action": "pause"}', "text/plain", 415, id="text-plain"),
    pytest.param(b'{"action": "pause"}', None, 415, id="no-content-type"),
    pytest.param(b'{"action": "pause"}', "application/x-www-form-urlencoded", 415, id="form"),
    pytest.param(b"", "application/json", 400, id="empty"),
    pytest.param(b'{"action": "pau', "application/json", 400, id="cut-json"),
    pytest.param(b"\xff\xfe{}", "application/json", 400, id="not-utf8"),
    pytest.param(b'{"action": "set", "lr": NaN}', "application/json", 400, id="NaN"),
    pytest.param(b'{"action": "set", "lr": Infinity}', "application/json", 400, id="Infinity"),
    pytest.param(b'{"action": "set", "lr": 1e999}', "application/json", 400, id="overflowing-float"),
    pytest.param(b'"pause"', "application/json", 400, id="a-string"),
    pytest.param(b'["pause"]', "application/json", 400, id="a-list"),
    pytest.param(b"{}", "application/json", 400, id="no-action"),
    pytest.param(b'{"action": "jump"}', "application/json", 400, id="unknown-action"),
    pytest.param(b'{"action": 1}', "application/json", 400, id="action-number"),
    pytest.param(b'{"action": "pause", "lr": 0.1}', "application/json", 400, id="pause-with-fields"),
    pytest.param(b'{"action": "set"}', "application/json", 400, id="set-nothing"),
    pytest.param(b'{"action": "set", "momentum": 0.9}', "application/json", 400, id="unknown-field"),
    pytest.param(b'{"action": "set", "lr": "0.1"}', "application/json", 400, id="lr-string"),
    pytest.param(b'{"action": "set", "lr": true}', "application/json", 400, id="lr-bool"),
    pytest.param(b'{"action": "set", "lr": null}', "application/json", 400, id="lr-null"),
    pytest.param(b'{"action": "set", "lr": -0.01}', "application/json", 400, id="lr-negative"),
    pytest.param(b'{"action": "set", "lr": 0}', "application/json", 400, id="lr-zero"),
    pytest.param(b'{"action": "set", "lr": 11}', "application/json", 400, id="lr-too-large"),
    pytest.param(b'{"action": "set", "dropout": 1.0}', "application/json", 400, id="dropout-one"),
    pytest.param(b'{"action": "set", "delay": -1}', "application/json", 400, id="delay-negative"),
    pytest.param(b'{"action": "set", "lr": 0.1, "dropout": 2}', "application/json", 400, id="half-good"),
    pytest.param(b'{"action": "step"}', "application/json", 409, id="step-while-running"),
    pytest.param(b'{"action": "pause", "pad": "' + b"x" * 4100 + b'"}', "application/json", 413, id="too-large"),
    pytest.param(HUGE, "application/json", 400, id="lr-huge-integer"),
]


@pytest.mark.parametrize("body, content_type, status", BAD_REQUESTS)
def test_a_bad_request_is_a_one_line_json_error_and_the_run_goes_on(shared_run, body, content_type, status):
    port = shared_run.port
    before = snapshot(port)
    got, answer = command(port, body, content_type)
    assert (got, set(answer)) == (status, {"error"}), answer
    assert answer["error"] and "\n" not in answer["error"] and "Traceback" not in answer["error"]
    after = wait_for(port, lambda d: d["step"] > before["step"] + 2)  # still training, unchanged
    assert after["status"] == "training" and after["events"] == [] and after["lr"] == LR
    assert after["dropout"] == 0.2 and after["delay"] == 0.0 and not shared_run.controls.paused


# --- cycnn train --live as a subprocess ---------------------------------------------------------------------------
TRAIN = ["-m", "cycnn", "train", "--live", "--port", "0", "--live-interval", "0.05", "--epochs", "40",
         "--limit-train", "2000", "--batch-size", "32", "--conv", "8", "--kernel", "3", "--dense", "32", "--quiet"]


def start_training(tmp_path):
    """``cycnn train --live`` from outside the repository (the cycnn this test imports: installed, or from the
    PYTHONPATH the tests run with); (process, port)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, *TRAIN, "--out", str(tmp_path / "m.npz")], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    line = process.stdout.readline()
    match = re.match(r"live view: http://127\.0\.0\.1:(\d+)/", line)
    if not match:
        stop_process(process)
        raise AssertionError(f"no live view URL: {line!r}")
    return process, int(match.group(1))


def fetch_page(port, path):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type"), response.read()
    finally:
        conn.close()


def check_explorer(port, image):
    """The explorer's API answers from the weights of the latest snapshot: (its step from /api/model, the
    predicted class)."""
    status, _, model = call(port, "GET", "/api/model")
    assert status == 200 and model["live"] is True and model["input_shape"] == [1, 28, 28]
    body = json.dumps({"pixels": (image / 255.0).tolist()}).encode()
    status, _, answer = call(port, "POST", "/api/predict", body)
    assert status == 200 and 0 <= answer["class_index"] <= 9
    assert math.isclose(sum(answer["probabilities"].values()), 1, abs_tol=1e-4)
    assert answer["weights"]["step"] >= model["weights"]["step"]
    return model["weights"]["step"], answer["weights"]["step"]


@pytest.mark.slow
def test_train_live_paused_over_http_then_interrupted(tmp_path, mnist):
    """Paused from the page, given a new rate, then Ctrl-C: the run ends at once (no step waits for a resume)
    with its checkpoint and the command that resumes it."""
    process, port = start_training(tmp_path)
    try:
        first = wait_for(port, lambda d: d["status"] == "training" and d["step"] > 0, timeout=120)
        assert first["controls"] is True
        model_step, answer_step = check_explorer(port, mnist[2][0])
        wait_for(port, lambda d: d["step"] > answer_step + 20, timeout=60)
        assert min(check_explorer(port, mnist[2][1])) > answer_step  # the explorer follows the training
        status, content_type, page = fetch_page(port, "/explore")
        assert status == 200 and content_type.startswith("text/html") and page != fetch_page(port, "/")[2]
        assert command(port, {"action": "pause"})[0] == 200
        paused = wait_for(port, lambda d: d["status"] == "paused" and d["events"], timeout=5)
        assert held(port, paused, 1.0)
        assert command(port, {"action": "set", "lr": 0.001})[0] == 200
        wait_for(port, lambda d: any(e["change"] == "lr" for e in d["events"]), timeout=5)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 130
        lines = process.stderr.read().strip().splitlines()
        assert len(lines) == 1 and "resume with: cycnn train --resume" in lines[0], lines
    finally:
        stop_process(process)
    _, _, state, settings = load_checkpoint(tmp_path / "m.ckpt.npz")
    assert state.global_step == paused["step"] and settings.lr != 0.002  # the cosine's peak, rescaled
    events = [r for r in read_log(tmp_path / "m.log.jsonl") if r["type"] == "event"]
    assert [e["change"] for e in events] == ["paused", "lr"] and events[1]["to"] == pytest.approx(0.001)
